//! `ANY /v1/apps/{app}/proxy/{path…}`: any WeChat API call, with the access_token added.
//!
//! The caller never handles the token. If WeChat answers 40001, 40014 or 42001 — the token
//! was superseded or expired — the proxy asks the 中控 for a conditional refresh with the
//! token it used and retries once; a crowd of such failures still causes one upstream token
//! call, and a second failure is returned as is (no loop).
//!
//! Bodies go through as streams, because media uploads (`media/upload`, `material/add_material`)
//! are up to 10 MB and an instance must not hold ten of them in memory per connection. That
//! decides the shape:
//! - The route has a limit of its own, [`MAX_PROXY_BODY`] (10 MiB), instead of the server's
//!   1 MiB: a declared `Content-Length` above it is refused with `413` before WeChat is
//!   called; a chunked body that grows past it is cut off and answered `413`.
//! - A request body is read ahead up to [`RETRY_BODY_MAX`]. One that ends by then (every
//!   ordinary JSON call) is kept, so the stale-token retry can send it again. A longer one is
//!   streamed once: if WeChat calls the token stale, the token is still refreshed (so the
//!   caller's own retry works) but the answer goes back as is.
//! - An answer is read ahead up to [`STALE_CHECK_MAX`], enough for any errcode JSON; a longer
//!   one (a media download) is streamed back without being looked at.
//!
//! The path is refused with `400`, before anything else, if it holds a `..` segment in any
//! spelling — `..`, `%2e%2e`, `%2E.`, double-encoded `%252e%252e`, or with `\` for `/` —
//! because URL normalization (ours, a proxy's, or WeChat's) would resolve it and walk out of a
//! configured upstream base path. A `3xx` from WeChat is refused (`502`) rather than passed on:
//! the client follows no redirect, and another host's answer has no business here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::stream::{self, BoxStream, StreamExt};
use wxmp_proto::ApiErrcode;

use crate::error::AppError;
use crate::outbound;
use crate::state::AppState;
use crate::token::upstream::REQUEST_TIMEOUT;

/// The largest request body the proxy passes on: WeChat takes media up to 10 MB.
pub const MAX_PROXY_BODY: u64 = 10 << 20;

/// Request bodies up to this size are kept for the stale-token retry.
pub const RETRY_BODY_MAX: usize = 1 << 20;

/// Answers up to this size are looked at for a stale-token errcode; longer ones stream.
const STALE_CHECK_MAX: usize = 64 << 10;

/// How long an upload may take: 10 MiB over a slow uplink needs more than a JSON call.
const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A body read ahead up to a limit: all of it, or what was read plus the rest as a stream.
enum Peeked {
    Whole(Bytes),
    Stream(ByteStream),
}

/// Reads `stream` until it ends or more than `limit` bytes came.
async fn peek(mut stream: ByteStream, limit: usize) -> Result<Peeked, std::io::Error> {
    let mut head: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        len += chunk.len();
        head.push(chunk);
        if len > limit {
            let rest = stream::iter(head.into_iter().map(Ok)).chain(stream);
            return Ok(Peeked::Stream(rest.boxed()));
        }
    }
    let mut whole = Vec::with_capacity(len);
    for chunk in head {
        whole.extend_from_slice(&chunk);
    }
    Ok(Peeked::Whole(Bytes::from(whole)))
}

/// What WeChat answered.
struct Answer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Peeked,
}

impl Answer {
    /// True when the body is WeChat JSON saying the token is stale.
    fn stale_token(&self) -> bool {
        #[derive(serde::Deserialize)]
        struct Errcode {
            errcode: i64,
        }
        let Peeked::Whole(body) = &self.body else {
            return false;
        };
        serde_json::from_slice::<Errcode>(body)
            .is_ok_and(|e| ApiErrcode::is_stale_token_code(e.errcode))
    }

    fn into_response(self) -> Response {
        let body = match self.body {
            Peeked::Whole(bytes) => Body::from(bytes),
            Peeked::Stream(stream) => Body::from_stream(stream),
        };
        let mut response = (self.status, body).into_response();
        if let Some(ct) = self.content_type {
            response.headers_mut().insert(CONTENT_TYPE, ct);
        }
        response
    }
}

/// The request body as the upstream call takes it.
enum Outgoing {
    /// Kept, so it can be sent twice.
    Kept(Bytes),
    /// Streamed once; `None` once taken.
    Once(Mutex<Option<ByteStream>>),
}

pub(crate) async fn proxy(
    State(state): State<AppState>,
    Extension(caller): Extension<super::Caller>,
    Path((app, _)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, AppError> {
    super::known_app(&state, &app)?;
    let by = caller.requester();
    let (parts, body) = request.into_parts();
    let path = upstream_path(&parts.uri)?;
    if declared_length(&parts.headers).is_some_and(|len| len > MAX_PROXY_BODY) {
        return Err(AppError::TooLarge(too_large()));
    }
    let over_limit = Arc::new(AtomicBool::new(false));
    let body = limited(body, over_limit.clone());
    let outgoing = match peek(body, RETRY_BODY_MAX).await {
        Ok(Peeked::Whole(bytes)) => Outgoing::Kept(bytes),
        Ok(Peeked::Stream(stream)) => Outgoing::Once(Mutex::new(Some(stream))),
        Err(_) if over_limit.load(Ordering::Acquire) => {
            return Err(AppError::TooLarge(too_large()))
        }
        Err(e) => {
            return Err(AppError::BadRequest(format!(
                "could not read the request body: {e}"
            )))
        }
    };
    let call = Call {
        state: &state,
        path: &path,
        method: parts.method.clone(),
        query: query.as_deref(),
        content_type: parts.headers.get(CONTENT_TYPE),
    };
    // One observation per proxied request, its one stale-token retry included.
    let started = std::time::Instant::now();
    let answer: Result<Answer, AppError> = async {
        Ok(match &outgoing {
            Outgoing::Kept(bytes) => {
                state
                    .tokens
                    .with_access_token_by(
                        &app,
                        &by,
                        |token| call.send(reqwest::Body::from(bytes.clone()), token, REQUEST_TIMEOUT),
                        |sent: &Result<Answer, AppError>| sent.as_ref().is_ok_and(Answer::stale_token),
                    )
                    .await??
            }
            Outgoing::Once(stream) => {
                let stream = stream
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .unwrap_or_else(|| stream::empty().boxed());
                let token = state.tokens.access_token(&app).await?;
                let sent = call
                    .send(
                        reqwest::Body::wrap_stream(stream),
                        token.value.clone(),
                        UPLOAD_TIMEOUT,
                    )
                    .await;
                if over_limit.load(Ordering::Acquire) {
                    return Err(AppError::TooLarge(too_large()));
                }
                let answer = sent?;
                if answer.stale_token() {
                    // The body is spent, so no retry; the refresh lets the caller's own retry work.
                    if let Err(e) = state
                        .tokens
                        .refresh_access_token_by(&app, &token.value, &by)
                        .await
                    {
                        tracing::warn!(app, error = %e, "stale token on a streamed upload; refresh failed");
                    }
                }
                answer
            }
        })
    }
    .await;
    state
        .metrics
        .upstream_latency(&app, "proxy", started.elapsed());
    let answer = answer?;
    state.metrics.api(&app, "proxy");
    Ok(answer.into_response())
}

fn too_large() -> String {
    format!(
        "the request body is larger than {} MiB, the most the proxy passes on",
        MAX_PROXY_BODY >> 20
    )
}

fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The body as a stream that fails (and sets `over`) once it passes [`MAX_PROXY_BODY`].
fn limited(body: Body, over: Arc<AtomicBool>) -> ByteStream {
    let mut seen: u64 = 0;
    body.into_data_stream()
        .map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            seen += chunk.len() as u64;
            if seen > MAX_PROXY_BODY {
                over.store(true, Ordering::Release);
                return Err(std::io::Error::other(too_large()));
            }
            Ok(chunk)
        })
        .boxed()
}

/// The WeChat path of a proxy request, taken from the raw URI (the decoded one would hide
/// encodings), refused when it holds a `..` segment in any spelling.
fn upstream_path(uri: &Uri) -> Result<String, AppError> {
    let raw = uri.path();
    let Some((_, rest)) = raw.split_once("/proxy/") else {
        return Err(AppError::BadRequest(
            "no WeChat path after /proxy/".to_owned(),
        ));
    };
    let refused = || {
        AppError::BadRequest(
            "the proxied path must not contain `..` segments (in any encoding) or control characters"
                .to_owned(),
        )
    };
    // Decode until nothing changes, so double (and deeper) encodings are seen as what a
    // lenient server downstream might finally read.
    let mut decoded = rest.to_owned();
    for _ in 0..4 {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    if decoded.chars().any(char::is_control)
        || decoded.split(['/', '\\']).any(|segment| segment == "..")
    {
        return Err(refused());
    }
    // The single-decoded path goes upstream, as axum would have given it.
    Ok(percent_decode(rest))
}

/// Percent-decodes `s` (lossily: invalid UTF-8 becomes U+FFFD, which no check relies on).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One upstream call's fixed parts.
struct Call<'a> {
    state: &'a AppState,
    path: &'a str,
    method: Method,
    query: Option<&'a str>,
    content_type: Option<&'a HeaderValue>,
}

impl Call<'_> {
    async fn send(
        &self,
        body: reqwest::Body,
        access_token: String,
        timeout: std::time::Duration,
    ) -> Result<Answer, AppError> {
        let upstream = self.state.tokens.upstream();
        let mut url = upstream.url(self.path);
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(q) = self.query {
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
            .request(self.method.clone(), url)
            .timeout(timeout)
            .body(body);
        if let Some(ct) = self.content_type {
            request = request.header(CONTENT_TYPE, ct);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AppError::Upstream(outbound::describe(&e)))?;
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        if status.is_redirection() {
            return Err(AppError::Upstream(outbound::redirect_refused(
                "WeChat",
                status.as_u16(),
            )));
        }
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let stream = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| std::io::Error::other(outbound::describe(&e))))
            .boxed();
        let body = peek(stream, STALE_CHECK_MAX)
            .await
            .map_err(|e| AppError::Upstream(e.to_string()))?;
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(p: &str) -> Result<String, AppError> {
        upstream_path(&Uri::try_from(format!("/v1/apps/demo/proxy/{p}")).unwrap())
    }

    #[test]
    fn dot_dot_segments_are_refused_in_every_spelling() {
        for bad in [
            "..",
            "cgi-bin/../token",
            "cgi-bin/%2e%2e/x",
            "cgi-bin/%2E./x",
            "cgi-bin/.%2e/x",
            "cgi-bin/%252e%252e/x",
            "cgi-bin/%25252e%25252E/x",
            "cgi-bin/..%5cx",
            "cgi-bin%5c..%5cx",
            "cgi-bin%2f..%2fx",
            "cgi-bin/%00",
        ] {
            assert!(
                matches!(path_of(bad), Err(AppError::BadRequest(_))),
                "{bad} was not refused"
            );
        }
        for good in [
            "cgi-bin/media/upload",
            "cgi-bin/a..b/c",
            "cgi-bin/.hidden",
            "cgi-bin/x%20y",
            "cgi-bin/./x",
        ] {
            assert!(path_of(good).is_ok(), "{good} was refused");
        }
        assert_eq!(path_of("cgi-bin/x%20y").unwrap(), "cgi-bin/x y");
    }

    #[test]
    fn percent_decoding_leaves_broken_escapes_alone() {
        assert_eq!(percent_decode("%2e%2E%zz%4"), "..%zz%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%41"), "aA");
    }
}
