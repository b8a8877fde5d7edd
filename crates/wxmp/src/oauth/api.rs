//! The business endpoints of OAuth 网页授权, behind the API key (capability `oauth`):
//! redeem a ticket, exchange a code, build an authorize URL.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::sns::{self, Identity};
use super::{authorize_url as build_url, check_return_url, check_scope, flow, OAuthError};
use crate::error::AppError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TicketBody {
    ticket: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    code: String,
}

fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    shape: &str,
) -> Result<T, AppError> {
    body.map(|Json(b)| b)
        .map_err(|e| AppError::BadRequest(format!("expected a JSON body {shape}: {e}")))
}

fn answer(
    state: &AppState,
    app: &str,
    result: Result<Identity, OAuthError>,
) -> Result<Json<Value>, AppError> {
    state.metrics.api(
        app,
        if result.is_ok() {
            "oauth_ok"
        } else {
            "oauth_error"
        },
    );
    Ok(Json(json!(result?)))
}

/// `POST /v1/apps/{app}/oauth/ticket` `{"ticket"}`.
pub(crate) async fn ticket(
    State(state): State<AppState>,
    Path(app): Path<String>,
    body: Result<Json<TicketBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, AppError> {
    crate::api::known_app(&state, &app)?;
    let body = json_body(body, "{\"ticket\":\"…\"}")?;
    let result = flow::redeem_ticket(&state, &app, &body.ticket).await;
    answer(&state, &app, result)
}

/// `POST /v1/apps/{app}/oauth/code` `{"code"}`.
pub(crate) async fn code(
    State(state): State<AppState>,
    Path(app): Path<String>,
    body: Result<Json<CodeBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, AppError> {
    let config = state
        .config
        .app(&app)
        .cloned()
        .ok_or_else(|| AppError::UnknownApp(app.clone()))?;
    let body = json_body(body, "{\"code\":\"…\"}")?;
    if body.code.is_empty()
        || body.code.len() > 512
        || !body.code.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(AppError::BadRequest(
            "code must be the code WeChat added to the redirect (printable, at most 512 characters)"
                .to_owned(),
        ));
    }
    let result = sns::identify(state.tokens.upstream(), &config, &body.code).await;
    answer(&state, &app, result)
}

/// `GET /v1/apps/{app}/oauth/authorize_url?redirect_uri&scope&state`.
pub(crate) async fn authorize_url(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    let config = state
        .config
        .app(&app)
        .cloned()
        .ok_or_else(|| AppError::UnknownApp(app.clone()))?;
    let redirect = q
        .get("redirect_uri")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| AppError::BadRequest("redirect_uri is required".to_owned()))?;
    let redirect =
        check_return_url(&config, redirect, "redirect_uri").map_err(AppError::BadRequest)?;
    let scope = check_scope(q.get("scope").map(String::as_str)).map_err(AppError::BadRequest)?;
    let st = q.get("state").map(String::as_str).unwrap_or_default();
    if st.len() > 128 || !st.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AppError::BadRequest(
            "state may only hold letters and digits, at most 128 (WeChat's rule)".to_owned(),
        ));
    }
    let url = build_url(
        &state.config.open_platform,
        config.appid.as_str(),
        redirect.as_str(),
        scope,
        st,
    );
    Ok(Json(json!({ "url": url })))
}
