//! The business API (`/v1`): what the account's own servers call instead of WeChat's token
//! endpoints.
//!
//! Handlers are thin: extract, call the token core once, map the result. Authentication and
//! the scope of named clients are a middleware (see [`auth`]), which leaves the [`Caller`] in
//! the request for the handlers that count or record who asked.

pub mod auth;
pub mod card_ext;
pub mod jssdk;
pub mod proxy;

use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub use self::auth::Caller;

use crate::error::AppError;
use crate::state::AppState;
use crate::token::{Issued, TicketType};

/// The `/v1` routes, behind bearer-key authentication.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/apps", get(list_apps))
        .route("/v1/apps/{app}/access_token", get(access_token))
        .route(
            "/v1/apps/{app}/access_token/refresh",
            post(refresh_access_token),
        )
        .route("/v1/apps/{app}/refreshes", get(refreshes))
        .route("/v1/apps/{app}/tickets/{kind}", get(ticket))
        .route("/v1/apps/{app}/jssdk/config", post(jssdk::config))
        .route("/v1/apps/{app}/card_ext", post(card_ext::card_ext))
        .merge(crate::oauth::api_routes())
        .route_layer(middleware::from_fn_with_state(state, require_api_key))
}

/// The proxy route, behind the same authentication. Apart from [`routes`] because its body
/// limit is its own (10 MiB, streamed; see [`proxy`]), not the server's 1 MiB.
pub fn proxy_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/apps/{app}/proxy/{*path}", any(proxy::proxy))
        .route_layer(middleware::from_fn_with_state(state, require_api_key))
}

async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, AppError> {
    auth::authorize(&state.config, &mut request).await?;
    Ok(next.run(request).await)
}

fn issued_json(issued: &Issued, field: &str) -> Json<Value> {
    Json(json!({ field: issued.value, "expires_in": issued.expires_in }))
}

/// Maps a name to its configured app, or 404.
pub(crate) fn known_app(state: &AppState, app: &str) -> Result<(), AppError> {
    if state.config.apps.contains_key(app) {
        Ok(())
    } else {
        Err(AppError::UnknownApp(app.to_owned()))
    }
}

async fn access_token(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Value>, AppError> {
    known_app(&state, &app)?;
    let result = state.tokens.access_token(&app).await;
    state
        .metrics
        .api(&app, if result.is_ok() { "ok" } else { "error" });
    Ok(issued_json(&result?, "access_token"))
}

#[derive(Deserialize)]
struct RefreshBody {
    stale: String,
}

async fn refresh_access_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(app): Path<String>,
    body: Result<Json<RefreshBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, AppError> {
    known_app(&state, &app)?;
    let Json(body) = body.map_err(|e| {
        AppError::BadRequest(format!(
            "expected a JSON body {{\"stale\":\"<token that failed>\"}}: {e}"
        ))
    })?;
    let result = state
        .tokens
        .refresh_access_token_by(&app, &body.stale, &caller.requester())
        .await;
    state
        .metrics
        .api(&app, if result.is_ok() { "ok" } else { "error" });
    let refreshed = result?;
    Ok(Json(json!({
        "access_token": refreshed.issued.value,
        "expires_in": refreshed.issued.expires_in,
        "refreshed": refreshed.refreshed,
    })))
}

async fn ticket(
    State(state): State<AppState>,
    Path((app, kind)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    known_app(&state, &app)?;
    let ticket = match kind.as_str() {
        "jsapi" => TicketType::Jsapi,
        "wx_card" => TicketType::WxCard,
        other => {
            return Err(AppError::BadRequest(format!(
                "unknown ticket type {other:?}: use jsapi or wx_card"
            )))
        }
    };
    let result = state.tokens.ticket(&app, ticket).await;
    state
        .metrics
        .api(&app, if result.is_ok() { "ok" } else { "error" });
    Ok(issued_json(&result?, "ticket"))
}

async fn list_apps(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let status = state.tokens.status();
    let mut apps = serde_json::Map::new();
    for (name, app) in &state.config.apps {
        if !caller.may_use_app(name) {
            continue;
        }
        let credentials = status.get(name).map(|s| json!(s)).unwrap_or(Value::Null);
        let mut entry = json!({
            "appid": app.appid.as_str(),
            "mode": format!("{:?}", app.mode).to_lowercase(),
            "token_api": format!("{:?}", app.token_api).to_lowercase(),
            "has_secret": app.secret.is_some(),
            "credentials": if app.secret.is_some() { credentials } else { Value::Null },
        });
        if app.secret.is_some() {
            // Cluster-wide figures from the store; null when it cannot be read.
            let foreign = state.tokens.foreign_status(name).await.ok();
            let forced = state.tokens.force_refreshes_today(name).await.ok();
            entry["foreign_refreshes"] = json!(foreign.as_ref().map(|f| f.count));
            entry["last_foreign_refresh"] = json!(foreign.and_then(|f| f.last_at));
            entry["force_refreshes_today"] = json!(forced);
        }
        apps.insert(name.clone(), entry);
    }
    Json(json!({ "store": state.tokens.store().backend(), "apps": apps }))
}

/// `GET /v1/apps/{app}/refreshes`: the refresh audit, newest first.
async fn refreshes(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Value>, AppError> {
    known_app(&state, &app)?;
    let records =
        state.tokens.refreshes(&app).await.map_err(|e| {
            AppError::Token(crate::token::TokenError::StoreUnavailable(e.to_string()))
        })?;
    Ok(Json(json!({ "app": app, "refreshes": records })))
}
