//! `POST /v1/apps/{app}/card_ext`: the `cardExt` of one card for `wx.addCard` / `wx.chooseCard`.
//!
//! A 卡券 page passes each card as `{cardId, cardExt}`, where `cardExt` is a JSON *string*
//! signed with the `wx_card` api_ticket — a credential the 中控 holds, so the page's server asks
//! here instead of fetching tickets itself. The signature is the sorted-values SHA-1 of
//! `wxmp_proto::jssdk::card_ext_signature`; the timestamp and `nonce_str` are generated here,
//! and the answer carries both the separate fields and the ready-made `card_ext` string, so a
//! page can paste it without re-serialising (which would risk changing what was signed).

use axum::extract::{Path, State};
use axum::Json;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use wxmp_proto::jssdk::{self, CardExt};

use crate::error::AppError;
use crate::state::AppState;
use crate::token::TicketType;

/// The longest `card_id`, `code` or `openid` accepted (WeChat's are 28–32 characters).
const MAX_FIELD: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CardExtBody {
    card_id: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    openid: Option<String>,
}

/// A field that goes into the signature and the page: printable ASCII, bounded.
fn check_field(name: &str, value: &str, required: bool) -> Result<(), AppError> {
    if required && value.is_empty() {
        return Err(AppError::BadRequest(format!("{name} must not be empty")));
    }
    if value.len() > MAX_FIELD || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::BadRequest(format!(
            "{name} must be at most {MAX_FIELD} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

pub(crate) async fn card_ext(
    State(state): State<AppState>,
    Path(app): Path<String>,
    body: Result<Json<CardExtBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, AppError> {
    super::known_app(&state, &app)?;
    let Json(body) = body.map_err(|e| {
        AppError::BadRequest(format!(
            "expected a JSON body {{\"card_id\":\"…\",\"code\"?:\"…\",\"openid\"?:\"…\"}}: {e}"
        ))
    })?;
    let code = body.code.unwrap_or_default();
    let openid = body.openid.unwrap_or_default();
    check_field("card_id", &body.card_id, true)?;
    check_field("code", &code, false)?;
    check_field("openid", &openid, false)?;
    let ticket = state.tokens.ticket(&app, TicketType::WxCard).await;
    state
        .metrics
        .api(&app, if ticket.is_ok() { "ok" } else { "error" });
    let ticket = ticket?;
    let nonce_str: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    let timestamp = (crate::token::credential::now_ms() / 1000).to_string();
    let signature = jssdk::card_ext_signature(&CardExt {
        api_ticket: &ticket.value,
        nonce_str: &nonce_str,
        timestamp: &timestamp,
        card_id: &body.card_id,
        code: &code,
        openid: &openid,
    });
    let mut ext = serde_json::Map::new();
    if !code.is_empty() {
        ext.insert("code".into(), json!(code));
    }
    if !openid.is_empty() {
        ext.insert("openid".into(), json!(openid));
    }
    ext.insert("timestamp".into(), json!(timestamp));
    ext.insert("nonce_str".into(), json!(nonce_str));
    ext.insert("signature".into(), json!(signature.as_str()));
    let card_ext = Value::Object(ext.clone()).to_string();
    ext.insert("card_id".into(), json!(body.card_id));
    ext.insert("card_ext".into(), json!(card_ext));
    Ok(Json(Value::Object(ext)))
}
