//! `ANY /v1/apps/{app}/proxy/{path…}`: any WeChat API call, with the access_token added.
//!
//! The caller never handles the token. If WeChat answers 40001, 40014 or 42001 — the token
//! was superseded or expired — the proxy asks the 中控 for a conditional refresh with the
//! token it used and retries once; a crowd of such failures still causes one upstream token
//! call, and a second failure is returned as is (no loop).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use wxmp_proto::ApiErrcode;

use crate::error::AppError;
use crate::state::AppState;
use crate::token::upstream::REQUEST_TIMEOUT;

/// What WeChat answered.
struct Answer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl Answer {
    /// True when the body is WeChat JSON saying the token is stale.
    fn stale_token(&self) -> bool {
        #[derive(serde::Deserialize)]
        struct Errcode {
            errcode: i64,
        }
        serde_json::from_slice::<Errcode>(&self.body)
            .is_ok_and(|e| ApiErrcode::is_stale_token_code(e.errcode))
    }
}

pub(crate) async fn proxy(
    State(state): State<AppState>,
    Path((app, path)): Path<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    super::known_app(&state, &app)?;
    let send = |access_token: String| {
        forward(
            &state,
            &path,
            method.clone(),
            query.as_deref(),
            &headers,
            body.clone(),
            access_token,
        )
    };
    let answer = state
        .tokens
        .with_access_token(&app, send, |sent: &Result<Answer, AppError>| {
            sent.as_ref().is_ok_and(Answer::stale_token)
        })
        .await??;
    state.metrics.api(&app, "proxy");
    let mut response = (answer.status, answer.body).into_response();
    if let Some(ct) = answer.content_type {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, ct);
    }
    Ok(response)
}

async fn forward(
    state: &AppState,
    path: &str,
    method: Method,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
    access_token: String,
) -> Result<Answer, AppError> {
    let upstream = state.tokens.upstream();
    let mut url = upstream.url(path);
    {
        let mut pairs = url.query_pairs_mut();
        if let Some(q) = query {
            // Keep the caller's parameters, but never a caller-supplied access_token.
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                if k != "access_token" {
                    pairs.append_pair(&k, &v);
                }
            }
        }
        pairs.append_pair("access_token", &access_token);
    }
    let mut request = upstream
        .http()
        .request(method, url)
        .timeout(REQUEST_TIMEOUT)
        .body(body);
    if let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE) {
        request = request.header(axum::http::header::CONTENT_TYPE, ct);
    }
    let response = request
        .send()
        .await
        .map_err(|e| AppError::Upstream(e.without_url().to_string()))?;
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .cloned();
    let body = response
        .bytes()
        .await
        .map_err(|e| AppError::Upstream(e.without_url().to_string()))?;
    Ok(Answer {
        status,
        content_type,
        body,
    })
}
