//! `POST /v1/apps/{app}/jssdk/config`: the `wx.config` parameters for one page.
//!
//! WeChat only lets JS-SDK pages run under the account's JS接口安全域名, and a signature for
//! any other host would fail in the browser with a cryptic `invalid url domain`. So the
//! page's host is checked against the app's `js_domains` first and refused with a clear 400.
//! The `#fragment` is dropped before signing, as WeChat does.

use axum::extract::{Path, State};
use axum::Json;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;
use wxmp_proto::jssdk;

use crate::config::host_under_domain;
use crate::error::AppError;
use crate::state::AppState;
use crate::token::TicketType;

#[derive(Deserialize)]
pub(crate) struct ConfigBody {
    url: String,
}

pub(crate) async fn config(
    State(state): State<AppState>,
    Path(app): Path<String>,
    body: Result<Json<ConfigBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, AppError> {
    let app_config = state
        .config
        .app(&app)
        .ok_or_else(|| AppError::UnknownApp(app.clone()))?
        .clone();
    let Json(body) = body.map_err(|e| {
        AppError::BadRequest(format!(
            "expected a JSON body {{\"url\":\"https://…\"}}: {e}"
        ))
    })?;
    let page = Url::parse(&body.url).map_err(|e| {
        AppError::BadRequest(format!("url {:?} is not a full page URL: {e}", body.url))
    })?;
    if !matches!(page.scheme(), "http" | "https") {
        return Err(AppError::BadRequest(
            "url must be an http(s) page URL".to_owned(),
        ));
    }
    let host = page.host_str().unwrap_or_default();
    if app_config.js_domains.is_empty() {
        return Err(AppError::JsDomain(format!(
            "app {app:?} has no js_domains configured: add the page's domain to js_domains \
             (and to 公众号设置 → 功能设置 → JS接口安全域名)"
        )));
    }
    if !app_config
        .js_domains
        .iter()
        .any(|d| host_under_domain(host, d))
    {
        return Err(AppError::JsDomain(format!(
            "host {host:?} is not under the app's JS接口安全域名 {:?}: WeChat would refuse wx.config there",
            app_config.js_domains
        )));
    }
    let ticket = state.tokens.ticket(&app, TicketType::Jsapi).await?;
    let nonce: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    let timestamp = crate::token::credential::now_ms() / 1000;
    let signature =
        jssdk::jsapi_signature(&ticket.value, &nonce, &timestamp.to_string(), &body.url);
    state.metrics.api(&app, "ok");
    Ok(Json(json!({
        "appId": app_config.appid.as_str(),
        "timestamp": timestamp,
        "nonceStr": nonce,
        "signature": signature.as_str(),
    })))
}
