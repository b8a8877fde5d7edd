//! The WeChat-facing HTTP layer: `/cgi-bin/…` in, WeChat-shaped answers out.
//!
//! One handler serves every `/cgi-bin/` path, because the platform's decisions — which
//! interface a path is, what its parameters mean, which errcode a bad call earns — all live in
//! the state machine (`state.rs`), where they are unit-tested without HTTP. This file only takes
//! the request apart (method, path, raw query, body bytes, peer IP) and renders the
//! [`Reply`]: JSON with HTTP 200 like WeChat, or an injected garbage body or gateway error.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, Method as HttpMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::state::{ApiRequest, Method, Reply};
use super::Emulator;

/// The `Content-Type` WeChat sends with its JSON.
const JSON_CONTENT_TYPE: &str = "application/json; encoding=utf-8";

/// The caller's IP, when the server recorded connection info; never rejects.
pub(crate) struct PeerIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let info = ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await;
        Ok(PeerIp(info.ok().map(|ConnectInfo(addr)| addr.ip())))
    }
}

/// Every `/cgi-bin/…` call.
pub(crate) async fn cgi_bin(
    State(emulator): State<Emulator>,
    method: HttpMethod,
    uri: Uri,
    PeerIp(peer): PeerIp,
    body: Bytes,
) -> Response {
    let method = match method {
        HttpMethod::GET => Method::Get,
        HttpMethod::POST => Method::Post,
        _ => Method::Other,
    };
    let req = ApiRequest::new(uri.path(), method, uri.query(), body.to_vec(), peer);
    render(emulator.call(req).await)
}

/// Paths outside `/cgi-bin/` and `/_emulator/`.
pub(crate) async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

pub(crate) fn render(reply: Reply) -> Response {
    match reply {
        Reply::Json(value) => (
            [(header::CONTENT_TYPE, JSON_CONTENT_TYPE)],
            value.to_string(),
        )
            .into_response(),
        Reply::Garbage(body) => ([(header::CONTENT_TYPE, JSON_CONTENT_TYPE)], body).into_response(),
        Reply::HttpStatus(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = status.as_u16();
            let reason = status.canonical_reason().unwrap_or("Error");
            let page = format!(
                "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n\
                 <center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
                 </body>\r\n</html>\r\n"
            );
            (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
        }
    }
}
