//! `AppError`: every way an HTTP request to wxmp can fail, with its status and JSON body.
//!
//! Each variant picks an HTTP status and a stable machine-readable `code`; the message is
//! plain words for a human. Nothing secret ever goes into either (token errors are built from
//! WeChat's `errmsg` and our own text, never from values).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::token::TokenError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Missing or wrong bearer key.
    #[error(
        "missing or invalid API key: send `Authorization: Bearer <key>` with a key from [api] keys or an [api.clients.NAME] key"
    )]
    Unauthorized,
    /// A scoped client's key used outside its scope.
    #[error("{0}")]
    Forbidden(String),
    /// No such app.
    #[error("no app named {0:?} is configured")]
    UnknownApp(String),
    /// The request itself is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// A JS-SDK page outside the app's JS接口安全域名.
    #[error("{0}")]
    JsDomain(String),
    /// OAuth 网页授权 failed (see `crate::oauth::OAuthError`).
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
    /// The 中控 could not produce a credential.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The request body is over the route's limit.
    #[error("{0}")]
    TooLarge(String),
    /// The upstream could not be reached for a proxied call, or answered a redirect.
    #[error("the WeChat call failed: {0}")]
    Upstream(String),
}

impl AppError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::OAuth(e) => e.status_and_code(),
            AppError::UnknownApp(_) => (StatusCode::NOT_FOUND, "unknown_app"),
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::JsDomain(_) => (StatusCode::BAD_REQUEST, "js_domain_not_allowed"),
            AppError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            AppError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_unreachable"),
            AppError::Token(e) => match e {
                TokenError::UnknownApp(_) => (StatusCode::NOT_FOUND, "unknown_app"),
                TokenError::NoSecret(_) => (StatusCode::CONFLICT, "callback_only_app"),
                TokenError::Upstream {
                    transient: true, ..
                } => (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"),
                TokenError::Upstream { .. } => (StatusCode::BAD_GATEWAY, "upstream_refused"),
                TokenError::StoreUnavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
                }
                TokenError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "refresh_timeout"),
                TokenError::RateLimited { .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, "refresh_rate_limited")
                }
                TokenError::ForceRefreshExhausted(_) => {
                    (StatusCode::TOO_MANY_REQUESTS, "force_refresh_exhausted")
                }
            },
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(code, error = %self, "request failed");
        }
        let body = serde_json::json!({"error": {"code": code, "message": self.to_string()}});
        (status, Json(body)).into_response()
    }
}
