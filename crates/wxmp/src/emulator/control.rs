//! The emulator's own control API under `/_emulator/`, for tests and scripts in another process.
//!
//! A standalone `wxmp emulator` is driven over HTTP the same way an in-process test drives
//! [`Emulator`]: read counters and received 客服消息, inject and clear faults, expire or revoke
//! tokens, set an IP whitelist. Each handler maps one [`Emulator`] method to JSON; the route list and body
//! shapes are documented on [`Emulator::router`]. Errors use the business API's shape,
//! `{"error":{"code":"…","message":"…"}}`, so they cannot be mistaken for WeChat's. Secrets are
//! never returned.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::state::parse_query;
use super::{Emulator, Fault};

/// The `/_emulator` routes, to be merged into [`Emulator::router`].
pub(crate) fn routes() -> Router<Emulator> {
    Router::new()
        .route("/_emulator", get(summary))
        .route("/_emulator/", get(summary))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/messages", get(messages))
        .route(
            "/_emulator/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_emulator/expire", post(expire))
        .route("/_emulator/revoke", post(revoke))
        .route("/_emulator/whitelist", put(whitelist))
}

/// A refused control call: `{"error":{"code","message"}}` with a 4xx status.
struct ControlError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ControlError {
    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ControlError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

type Answer = Result<Response, ControlError>;

/// The `appid` query parameter, which must name a configured app.
fn known_appid(emulator: &Emulator, raw_query: Option<&str>) -> Result<String, ControlError> {
    let appid = parse_query(raw_query)
        .remove("appid")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ControlError::bad_request("bad_request", "`appid` is required"))?;
    if emulator.lock().has_app(&appid) {
        Ok(appid)
    } else {
        Err(ControlError {
            status: StatusCode::NOT_FOUND,
            code: "unknown_app",
            message: format!("no emulated app has appid {appid:?}"),
        })
    }
}

/// `GET /_emulator/`: the settings and appids.
async fn summary(State(emulator): State<Emulator>) -> Response {
    Json(emulator.lock().summary()).into_response()
}

/// `GET /_emulator/stats[?appid=]`.
async fn stats(State(emulator): State<Emulator>, RawQuery(q): RawQuery) -> Answer {
    if !parse_query(q.as_deref()).contains_key("appid") {
        return Ok(Json(emulator.lock().all_stats()).into_response());
    }
    let appid = known_appid(&emulator, q.as_deref())?;
    Ok(Json(emulator.stats(&appid)).into_response())
}

/// `GET /_emulator/messages?appid=`.
async fn messages(State(emulator): State<Emulator>, RawQuery(q): RawQuery) -> Answer {
    let appid = known_appid(&emulator, q.as_deref())?;
    Ok(Json(emulator.custom_messages(&appid)).into_response())
}

/// `GET /_emulator/faults`: the active faults.
async fn list_faults(State(emulator): State<Emulator>) -> Response {
    Json(json!({ "faults": emulator.faults() })).into_response()
}

/// `POST /_emulator/faults` with one fault in its flat JSON form; answers the active faults.
async fn add_fault(State(emulator): State<Emulator>, body: Bytes) -> Answer {
    let fault = serde_json::from_slice::<Fault>(&body)
        .map_err(|err| ControlError::bad_request("bad_fault", format!("not a fault: {err}")))?;
    emulator.inject(fault);
    Ok(list_faults(State(emulator)).await)
}

/// `DELETE /_emulator/faults`.
async fn clear_faults(State(emulator): State<Emulator>) -> Response {
    let cleared = emulator.lock().clear_faults();
    Json(json!({ "cleared": cleared })).into_response()
}

/// `POST /_emulator/expire?appid=`.
async fn expire(State(emulator): State<Emulator>, RawQuery(q): RawQuery) -> Answer {
    let appid = known_appid(&emulator, q.as_deref())?;
    let expired = emulator.expire_all_tokens(&appid);
    Ok(Json(json!({ "appid": appid, "expired": expired })).into_response())
}

/// `POST /_emulator/revoke?appid=`: a foreign refresh, as far as wxmp can tell.
async fn revoke(State(emulator): State<Emulator>, RawQuery(q): RawQuery) -> Answer {
    let appid = known_appid(&emulator, q.as_deref())?;
    let revoked = emulator.revoke_tokens(&appid);
    Ok(Json(json!({ "appid": appid, "revoked": revoked })).into_response())
}

/// The body of `PUT /_emulator/whitelist`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhitelistBody {
    /// `null` or absent: no whitelist.
    #[serde(default)]
    ips: Option<Vec<IpAddr>>,
}

/// `PUT /_emulator/whitelist?appid=` with `{"ips":[…]|null}`.
async fn whitelist(State(emulator): State<Emulator>, RawQuery(q): RawQuery, body: Bytes) -> Answer {
    let appid = known_appid(&emulator, q.as_deref())?;
    let WhitelistBody { ips } = serde_json::from_slice(&body).map_err(|err| {
        ControlError::bad_request(
            "bad_whitelist",
            format!("expected {{\"ips\":[\"1.2.3.4\", …]|null}}: {err}"),
        )
    })?;
    emulator.set_ip_whitelist(&appid, ips.clone());
    Ok(Json(json!({ "appid": appid, "ips": ips })).into_response())
}

#[cfg(test)]
mod tests {
    use super::super::EmulatorConfig;
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt;

    async fn send(emulator: &Emulator, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = emulator.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn control_errors_are_json() {
        let emulator = Emulator::new(EmulatorConfig::demo());
        let (status, v) = send(&emulator, "GET", "/_emulator/messages", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["code"], "bad_request");
        let (status, _) = send(&emulator, "POST", "/_emulator/expire?appid=nope", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = send(&emulator, "POST", "/_emulator/revoke?appid=nope", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, v) = send(
            &emulator,
            "POST",
            "/_emulator/revoke?appid=wx0123456789abcdef",
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["revoked"], 0, "nothing issued yet");
        let (status, v) = send(&emulator, "POST", "/_emulator/faults", "{\"errcode\":").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["code"], "bad_fault");
        let (status, _) = send(
            &emulator,
            "PUT",
            "/_emulator/whitelist?appid=wx0123456789abcdef",
            "{\"ips\":[\"x\"]}",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn summary_never_shows_secrets() {
        let emulator = Emulator::new(EmulatorConfig::demo());
        let (status, v) = send(&emulator, "GET", "/_emulator/", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["apps"], json!(["wx0123456789abcdef"]));
        assert!(!v.to_string().contains(super::super::DEMO_SECRET));
    }

    #[tokio::test]
    async fn without_connect_info_a_whitelist_refuses() {
        let emulator = Emulator::new(EmulatorConfig::demo());
        emulator.set_ip_whitelist("wx0123456789abcdef", Some(vec![[127, 0, 0, 1].into()]));
        let uri = "/cgi-bin/token?grant_type=client_credential&appid=wx0123456789abcdef&secret=wxmp-demo-secret";
        let (status, v) = send(&emulator, "GET", uri, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["errcode"], 40164);
    }
}
