//! Assembling and running the server: the store, the token core, the router.
//!
//! [`Server::build`] does everything that can fail before a port is bound is touched (open the
//! store, build the HTTP client); [`run`] serves a listener until the shutdown future
//! resolves, then drains in-flight requests. `main` only parses the CLI and config, binds and
//! calls these, which is also how the end-to-end tests start real servers on port 0.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;

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
    /// The state handlers share.
    pub state: AppState,
    _refreshers: RefresherGuard,
    _store_probe: crate::ops::ProbeGuard,
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
        Server {
            state: AppState {
                config: Arc::new(config),
                tokens,
                metrics,
            },
            _refreshers: refreshers,
            _store_probe: store_probe,
        }
    }

    /// The router of every endpoint.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// The admin listener's router (`[ops] listen`): `/status`, `/metrics`, `/healthz`.
    pub fn ops_router(&self) -> Router {
        crate::ops::admin_router(self.state.clone())
    }
}

/// Every route of INTERFACE.md.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::ops::main_routes(&state))
        .merge(crate::api::routes(state.clone()))
        .merge(crate::callback::routes())
        .merge(crate::oauth::browser_routes())
        // Applies to the routes above only: the proxy, merged after, streams up to 10 MiB.
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .merge(crate::api::proxy_routes(state.clone()))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains open requests for
/// at most 10 seconds.
pub async fn run(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = drained_tx.send(());
    };
    let serve = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown);
    let mut serve = std::pin::pin!(std::future::IntoFuture::into_future(serve));
    tokio::select! {
        result = &mut serve => return result,
        _ = drained_rx => {}
    }
    match tokio::time::timeout(Duration::from_secs(10), serve).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("requests still open after 10 s of draining; exiting anyway");
            Ok(())
        }
    }
}
