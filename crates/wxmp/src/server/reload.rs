//! Applying a re-read config file to the running server: what `SIGHUP` does.
//!
//! A reload must not drop a connection, a held token or a reply in progress, so it replaces
//! as little as it can: a new [`AppState`] carrying the new config but the same token core and
//! metrics, a new router on it (swapped into the live [`Routes`], so the next request on
//! every connection sees it), and the token core's slots of the apps that changed. Apps,
//! their Token, EncodingAESKey, mode, forward, auto-replies and deadlines, and the API keys
//! take effect this way. What the listener or the token core were built from — `listen`,
//! `upstream`, `[store]`, `[server]` — cannot change under them: the running values are kept
//! and the log says a restart is needed. The file is validated in full before anything is
//! applied (by the caller, with `Config::load`), so a broken file changes nothing.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::{router_with, ServeOptions, Server};
use crate::config::{Config, Environment};
use crate::signals::Reloads;
use crate::state::AppState;
use crate::token::AppsApplied;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Apps added, removed, or given new credentials.
    pub apps: AppsApplied,
    /// Settings that differ in the file but only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Server {
    /// Serves `config` from the next request on (see the module docs).
    pub async fn reload(&mut self, mut config: Config) -> Reloaded {
        if let Some(listen) = self.listen_override {
            config.listen = listen;
        }
        let running = &self.state.config;
        let mut needs_restart = Vec::new();
        if config.listen != running.listen {
            needs_restart.push("listen");
        }
        if config.upstream != running.upstream {
            needs_restart.push("upstream");
        }
        if config.store != running.store {
            needs_restart.push("store");
        }
        if config.server != running.server {
            needs_restart.push("server");
        }
        if config.ops != running.ops {
            needs_restart.push("ops");
        }
        config.listen = running.listen;
        config.upstream = running.upstream.clone();
        config.store = running.store.clone();
        config.server = running.server.clone();
        config.ops = running.ops.clone();
        let apps = self
            .state
            .tokens
            .apply_apps(&config.apps, &mut self.refreshers)
            .await;
        let state = AppState {
            config: Arc::new(config),
            ..self.state.clone()
        };
        self.routes
            .replace(router_with(state.clone(), &self.deliveries));
        self.ops_routes
            .replace(crate::ops::admin_router(state.clone()));
        self.state = state;
        Reloaded {
            apps,
            needs_restart,
        }
    }
}

/// Connections the `[ops] listen` listener accepts at most.
const OPS_MAX_CONNECTIONS: usize = 32;

/// Where a server listens: the main listener and the optional admin one (`[ops] listen`).
pub struct Listeners {
    /// Callbacks, `/v1` and the rest.
    pub main: TcpListener,
    /// `/status`, `/metrics`, `/healthz` without a key.
    pub ops: Option<TcpListener>,
}

/// Serves `server` on `listeners` with its `[server]` limits until `terminate` resolves, and
/// on every SIGHUP re-reads `config_file` and applies it; a file with problems is refused
/// with a warning that lists them, and the running config stays. `None` (`serve --dev`) has
/// no file: a SIGHUP is only logged. `reloads` must have been created before the server
/// started, so an early SIGHUP cannot kill the process.
pub async fn serve_reloading(
    mut server: Server,
    listeners: Listeners,
    config_file: Option<&Path>,
    env: &(dyn Environment + Sync),
    mut reloads: Reloads,
    terminate: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let terminate = futures::FutureExt::shared(Box::pin(terminate));
    let main = super::serve(
        listeners.main,
        server.routes(),
        server.serve_options(),
        terminate.clone(),
    );
    // The admin listener serves a scraper and a person or two: a small cap of its own, taken
    // from the reserve the main listener's cap leaves under the open-files limit, so the two
    // together stay within it.
    let ops_options = ServeOptions {
        limits: crate::config::ServerConfig {
            max_connections: OPS_MAX_CONNECTIONS.min(server.state.config.server.max_connections),
            ..server.state.config.server.clone()
        },
        ..ServeOptions::default()
    };
    let ops_routes = server.ops_routes();
    let ops = async move {
        match listeners.ops {
            Some(listener) => super::serve(listener, ops_routes, ops_options, terminate).await,
            None => Ok(()),
        }
    };
    let serving = async move { tokio::try_join!(main, ops).map(|_| ()) };
    let mut serving = std::pin::pin!(serving);
    loop {
        tokio::select! {
            result = &mut serving => return result,
            () = reloads.recv() => match config_file {
                Some(path) => reload_file(&mut server, path, env).await,
                None => tracing::info!("SIGHUP received: this server has no config file; nothing to reload"),
            },
        }
    }
}

/// Re-reads `path` and applies it, or logs why not.
async fn reload_file(server: &mut Server, path: &Path, env: &(dyn Environment + Sync)) {
    tracing::info!(path = %path.display(), "SIGHUP received: re-reading the config");
    let config = match Config::load(path, env) {
        Ok(config) => config,
        Err(e) => {
            // One line: a TOML syntax error spans several.
            let problems: Vec<String> = e
                .problems
                .iter()
                .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            tracing::warn!(
                problems = %problems.join("; "),
                "config not reloaded: the file has {} problem(s); the running config stays",
                e.problems.len()
            );
            return;
        }
    };
    let Reloaded {
        apps,
        needs_restart,
    } = server.reload(config).await;
    tracing::info!(
        apps = server.state.config.apps.len(),
        added = ?apps.added,
        removed = ?apps.removed,
        new_credentials = ?apps.recredentialed,
        "config reloaded"
    );
    if !needs_restart.is_empty() {
        tracing::warn!(
            settings = ?needs_restart,
            "these settings changed in the file but only take effect after a restart"
        );
    }
}
