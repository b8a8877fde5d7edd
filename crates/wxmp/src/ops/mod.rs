//! The operator's window: `/status` (a page for people), `/metrics` (Prometheus text) and
//! `/healthz`, who may see them, and the store probe that keeps "store up" honest.
//!
//! Where they are served follows one rule. With `[ops] listen`, an admin listener of its own
//! serves all three without authentication: it is meant for loopback or a private network,
//! where a scraper should not need a secret. Without it they share the main listener, which
//! faces WeChat and the internet, so `/status` and `/metrics` need an API key there: `Bearer`
//! for scripts, or HTTP Basic with the key as the password, so a browser's own login prompt
//! opens the page. `/healthz` tells nothing and stays open everywhere, for load balancers.
//!
//! - [`activity`]: the per-minute history behind the page's timeline.
//! - [`status`]: the page itself.

pub mod activity;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::{Store, OP_TIMEOUT};
use crate::token::credential::now_ms;

/// How often the store is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// The admin listener's router: `/status`, `/metrics`, `/healthz`, no authentication.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// What the main listener serves of the operator's routes: `/healthz` always; `/status` and
/// `/metrics` behind an API key, unless `[ops] listen` moved them to the admin listener.
pub fn main_routes(state: &AppState) -> Router<AppState> {
    let open = Router::new().route("/healthz", get(healthz));
    if state.config.ops.listen.is_some() {
        return open;
    }
    open.merge(
        Router::new()
            .route("/status", get(status))
            .route("/metrics", get(metrics))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                require_operator,
            )),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&state.tokens),
    )
        .into_response()
}

async fn status(State(state): State<AppState>) -> Response {
    let mut snapshot = status::Snapshot::take(&state, now_ms());
    // Cluster-wide, from the store: every instance's page shows the same count. Left out
    // (not shown as 0) when the store cannot be read.
    for app in snapshot.apps.iter_mut().filter(|a| a.has_secret) {
        app.foreign_refreshes = state
            .tokens
            .foreign_status(&app.name)
            .await
            .ok()
            .map(|f| f.count);
    }
    let page = status::render(&snapshot);
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            // Nothing from elsewhere, and no script at all: the page is inline CSS and SVG.
            (
                CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ],
        page,
    )
        .into_response()
}

/// The key presented with a request: `Bearer <key>`, or `Basic base64(user:key)` with any user
/// name. Scheme names are case-insensitive (RFC 9110).
fn presented_key(request: &Request) -> Option<String> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_user, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

async fn require_operator(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = presented_key(&request).unwrap_or_default();
    // Every key is compared, without short-circuit, as for /v1.
    let mut matched = subtle::Choice::from(0u8);
    for key in &state.config.api_keys {
        matched |= key.expose().as_bytes().ct_eq(presented.as_bytes());
    }
    if presented.is_empty() || !bool::from(matched) {
        return (
            StatusCode::UNAUTHORIZED,
            [
                (WWW_AUTHENTICATE, "Basic realm=\"wxmp\", charset=\"UTF-8\""),
                (CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            "401: /status and /metrics need a key from [api] keys: send `Authorization: Bearer <key>`, \
             or log in with any user name and the key as the password. Or set [ops] listen to \
             serve them, without a key, on an address of their own.\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// Stops the store probe when dropped.
pub struct ProbeGuard(tokio::task::JoinHandle<()>);

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one key from the store every [`PROBE_INTERVAL`], setting `wxmp_store_up` from the
/// answer: without it, an idle server whose Redis died would look healthy until the next
/// refresh. Must be called inside a Tokio runtime.
pub fn spawn_store_probe(store: Store, metrics: Arc<Metrics>) -> ProbeGuard {
    ProbeGuard(tokio::spawn(async move {
        loop {
            match tokio::time::timeout(OP_TIMEOUT * 2, store.get("health:probe")).await {
                Ok(Ok(_)) => metrics.store_ok(),
                Ok(Err(e)) => metrics.store_error("probe", None, &e.to_string()),
                Err(_) => metrics.store_error("probe", None, "store probe timed out"),
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }))
}
