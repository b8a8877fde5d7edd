//! Assembling and running the server: the store, the token core, the router.
//!
//! [`Server::build`] does everything that can fail before a port is bound is touched (open the
//! store, build the HTTP client); [`serve`] (or [`run`], with default limits) serves a
//! listener until the shutdown future resolves, then drains in-flight requests. `main` only
//! parses the CLI and config, binds and calls these, which is also how the end-to-end tests
//! start real servers on port 0.
//!
//! The pieces: `listen` (the accept loop, connection cap, shutdown drain) and `connection`
//! (one connection's deadlines) replace `axum::serve`, which has no timeouts and no cap;
//! `reload` applies a re-read config file to the running server (SIGHUP). What a reload
//! replaces is the [`AppState`] and the router built on it; the token core, the metrics and
//! the callback deliveries in progress are the same objects before and after, so held tokens,
//! counters and late replies survive it.

mod connection;
mod listen;
mod reload;

pub use self::connection::BodyTimeout;
pub use self::listen::{
    connection_cap, raise_open_files_limit, serve, Routes, ServeOptions, DRAIN_LIMIT,
};
pub use self::reload::{serve_reloading, Listeners, Reloaded};

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;

use crate::callback::Deliveries;
use crate::config::{Config, StoreConfig};
use crate::metrics::Metrics;
pub use crate::state::AppState;
use crate::store::{MemoryStore, RedisStore, SqliteStore, Store, StoreError};
use crate::token::{RefresherGuard, TokenCore, Upstream};

/// The largest request body accepted anywhere but the proxy (WeChat pushes are a few KiB;
/// the proxy's limit is [`crate::api::proxy::MAX_PROXY_BODY`]).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A built server: state plus the refreshers it keeps alive.
pub struct Server {
    /// The state handlers share; [`Server::reload`] replaces it (the token core and metrics
    /// in it stay the same).
    pub state: AppState,
    deliveries: Arc<Deliveries>,
    routes: Routes,
    ops_routes: Routes,
    refreshers: RefresherGuard,
    _store_probe: crate::ops::ProbeGuard,
    /// `serve --listen`: it overrides the file's `listen` at every reload too, so a reload
    /// does not report a `listen` change the operator never made.
    pub listen_override: Option<std::net::SocketAddr>,
}

/// Opens the configured store.
pub async fn open_store(config: &StoreConfig) -> Result<Store, StoreError> {
    Ok(match config {
        StoreConfig::Memory => Store::Memory(MemoryStore::new()),
        StoreConfig::Sqlite { path } => Store::Sqlite(SqliteStore::open(path).await?),
        StoreConfig::Redis(redis) => Store::Redis(RedisStore::open(redis).await?),
    })
}

/// The HTTP client for WeChat and the webhook: see [`crate::outbound::client`] (no redirects).
pub fn http_client() -> reqwest::Client {
    crate::outbound::client()
}

impl Server {
    /// Opens the store and starts the token refreshers.
    pub async fn build(config: Config) -> Result<Server, StoreError> {
        let store = open_store(&config.store).await?;
        Ok(Self::with_store(config, store))
    }

    /// Like [`Server::build`] with an already opened store (tests share one between instances).
    pub fn with_store(config: Config, store: Store) -> Server {
        let upstream = Upstream::new(http_client(), config.upstream.clone());
        let metrics = Arc::new(Metrics::new());
        let store_probe = crate::ops::spawn_store_probe(store.clone(), metrics.clone());
        let alerter = crate::alert::Alerter::new(config.ops.alert_webhook.clone());
        let tokens =
            TokenCore::with_metrics(&config.apps, store, upstream, metrics.clone(), alerter);
        let refreshers = tokens.start();
        let state = AppState {
            config: Arc::new(config),
            tokens,
            metrics,
        };
        let deliveries = Arc::new(Deliveries::default());
        let routes = Routes::new(router_with(state.clone(), &deliveries));
        let ops_routes = Routes::new(crate::ops::admin_router(state.clone()));
        Server {
            state,
            deliveries,
            routes,
            ops_routes,
            refreshers,
            _store_probe: store_probe,
            listen_override: None,
        }
    }

    /// The router of every endpoint, on the current state.
    pub fn router(&self) -> Router {
        router_with(self.state.clone(), &self.deliveries)
    }

    /// The live router [`Server::reload`] swaps: what [`serve`] should serve.
    pub fn routes(&self) -> Routes {
        self.routes.clone()
    }

    /// How to serve this server: its `[server]` limits, and its deliveries as the background
    /// work shutdown waits for.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            limits: self.state.config.server.clone(),
            background: Some(self.deliveries.tasks()),
            ..ServeOptions::default()
        }
    }

    /// The admin listener's router (`[ops] listen`): `/status`, `/metrics`, `/healthz`.
    pub fn ops_router(&self) -> Router {
        crate::ops::admin_router(self.state.clone())
    }

    /// The live admin router, swapped by [`Server::reload`] like [`Server::routes`].
    pub fn ops_routes(&self) -> Routes {
        self.ops_routes.clone()
    }
}

/// Every route (docs/http.md lists them), with a deliveries registry of its own.
pub fn router(state: AppState) -> Router {
    router_with(state, &Arc::new(Deliveries::default()))
}

fn router_with(state: AppState, deliveries: &Arc<Deliveries>) -> Router {
    Router::new()
        .merge(crate::ops::main_routes(&state))
        .merge(crate::api::routes(state.clone()))
        .merge(crate::callback::routes(deliveries.clone()))
        .merge(crate::oauth::browser_routes())
        // Applies to the routes above only: the proxy, merged after, streams up to 10 MiB.
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .merge(crate::api::proxy_routes(state.clone()))
        .with_state(state)
}

/// Serves `router` on `listener` with the default `[server]` limits until `shutdown`
/// resolves, then drains open requests (see [`serve`]).
pub async fn run(
    listener: TcpListener,
    router: impl Into<Routes>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve(listener, router, ServeOptions::default(), shutdown).await
}
