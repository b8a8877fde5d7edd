//! OAuth 网页授权 without the AppSecret on business servers.
//!
//! Getting a WeChat user's OpenID in a web page takes an exchange — `sns/oauth2/access_token`
//! with `appid`, `secret` and the `code` WeChat gave the browser — so without wxmp every page
//! that needs the OpenID must hold the AppSecret again. wxmp does the exchange instead, two
//! ways:
//!
//! - **The browser flow** ([`flow`]): a page links to `/oauth/{app}?return=URL[&scope=…]`;
//!   wxmp sends the browser to WeChat's authorize page with its own callback as
//!   `redirect_uri`, exchanges the code there, and sends the browser back to `return` with a
//!   single-use `wxmp_ticket` (valid 5 minutes). The page's server redeems the ticket with
//!   `POST /v1/apps/{app}/oauth/ticket`. The `state` is random, kept in the store (so any
//!   instance can finish the flow) for 10 minutes, and bound to the browser that started it
//!   by an `HttpOnly; SameSite=Lax` cookie scoped to `/oauth/{app}`: a callback carrying a
//!   state this browser did not start (login CSRF) is refused, and a state works once.
//! - **The code endpoint** ([`api`]): a page that runs its own redirect sends the code it got
//!   to `POST /v1/apps/{app}/oauth/code`; `GET /v1/apps/{app}/oauth/authorize_url` builds the
//!   authorize URL for it, checking `redirect_uri` against `oauth_domains`.
//!
//! Both answer `{"openid","scope","unionid"?,"userinfo"?}` ([`sns::Identity`]). The user's
//! OAuth access_token and refresh_token stay inside [`sns`] and are dropped after use. Return
//! URLs must be http(s) and under the app's `oauth_domains` (checked like `js_domains`), so
//! wxmp is no open redirector. [`demo`] is the page `serve --dev` adds to try it all in a
//! browser.

pub mod api;
pub mod demo;
pub mod flow;
pub mod sns;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use rand::distributions::Alphanumeric;
use rand::Rng;
use url::Url;

use crate::config::{host_under_domain, AppConfig};
use crate::state::AppState;

/// The scopes WeChat knows.
pub const SCOPES: [&str; 2] = ["snsapi_base", "snsapi_userinfo"];

/// Why an OAuth request failed. Every message is plain words; none carries a secret, a code
/// or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The app has no AppSecret.
    #[error("app {0:?} has no secret configured: OAuth needs it for the code exchange")]
    NoSecret(String),
    /// `public_url` or `oauth_domains` is missing.
    #[error("{0}")]
    NotConfigured(String),
    /// WeChat refused the code (wrong, used, expired, missing).
    #[error("{0}")]
    CodeRefused(String),
    /// WeChat refused for another reason; the message says what to fix.
    #[error("{0}")]
    Refused(String),
    /// WeChat is busy (`-1`): try again.
    #[error("{0}")]
    Busy(String),
    /// WeChat could not be reached.
    #[error("cannot reach WeChat: {0}")]
    Unreachable(String),
    /// WeChat answered something that is not what it documents.
    #[error("unexpected answer from WeChat: {0}")]
    Garbage(String),
    /// The ticket was used, expired or never issued.
    #[error(
        "this ticket was already redeemed, has expired (tickets live 5 minutes) or was never \
         issued for this app: send the browser through /oauth/{{app}} again"
    )]
    TicketGone,
    /// The store cannot be reached.
    #[error("{0}")]
    Store(String),
}

impl OAuthError {
    /// WeChat's OAuth errcodes in plain words.
    pub fn from_errcode(errcode: i64, errmsg: &str) -> OAuthError {
        let said = format!("errcode {errcode} ({errmsg})");
        match errcode {
            40029 => OAuthError::CodeRefused(format!(
                "WeChat does not know this code, {said}: it is mistyped, was issued for another \
                 AppID, or did not come from WeChat's authorize page"
            )),
            40163 => OAuthError::CodeRefused(format!(
                "this code was already exchanged, {said}: a code works once (a page reload sends \
                 it again); start the sign-in again"
            )),
            42003 => OAuthError::CodeRefused(format!(
                "this code has expired, {said}: a code must be exchanged within 5 minutes; start \
                 the sign-in again"
            )),
            41008 => OAuthError::CodeRefused(format!("no code was sent, {said}")),
            40030 | 42002 => OAuthError::Refused(format!(
                "WeChat refused the refresh_token, {said}: sign the user in again"
            )),
            48001 => OAuthError::Refused(format!(
                "WeChat refused the call as unauthorized, {said}: the account lacks 网页授权 for \
                 this scope (snsapi_userinfo needs a verified service account, 认证服务号), or the \
                 grant was only snsapi_base"
            )),
            40003 => OAuthError::Refused(format!(
                "WeChat refused the OpenID, {said}: it does not belong to this user's grant"
            )),
            40001 | 40125 | 41004 => OAuthError::Refused(format!(
                "WeChat refused the AppSecret, {said}: check the app's `secret` (基本配置 → \
                 开发者密码; a reset invalidates the old one)"
            )),
            40013 | 41002 => OAuthError::Refused(format!(
                "WeChat does not know this AppID, {said}: check the app's `appid`"
            )),
            40164 => OAuthError::Refused(format!(
                "this server's IP is not in the account's IP whitelist, {said}: add it under \
                 基本配置 → IP白名单"
            )),
            -1 | 45011 => {
                OAuthError::Busy(format!("WeChat is busy, {said}: try again in a moment"))
            }
            _ => OAuthError::Refused(format!("WeChat refused the OAuth call, {said}")),
        }
    }

    /// The HTTP status and stable code of the business API's error body.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            OAuthError::NoSecret(_) => (StatusCode::CONFLICT, "callback_only_app"),
            OAuthError::NotConfigured(_) => (StatusCode::CONFLICT, "oauth_not_configured"),
            OAuthError::CodeRefused(_) => (StatusCode::BAD_REQUEST, "oauth_code_refused"),
            OAuthError::Refused(_) => (StatusCode::BAD_GATEWAY, "upstream_refused"),
            OAuthError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"),
            OAuthError::Unreachable(_) => (StatusCode::BAD_GATEWAY, "upstream_unreachable"),
            OAuthError::Garbage(_) => (StatusCode::BAD_GATEWAY, "upstream_garbage"),
            OAuthError::TicketGone => (StatusCode::GONE, "ticket_gone"),
            OAuthError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        }
    }

    /// The short code a browser is sent back with (`wxmp_error=…`).
    pub fn browser_code(&self) -> &'static str {
        match self {
            OAuthError::CodeRefused(_) => "code_refused",
            OAuthError::Busy(_) | OAuthError::Unreachable(_) | OAuthError::Garbage(_) => {
                "upstream_error"
            }
            _ => "server_error",
        }
    }
}

/// The OAuth routes: the browser flow (no key) and the business endpoints (behind the key, see
/// `crate::api::routes`).
pub fn browser_routes() -> Router<AppState> {
    Router::new()
        .route("/oauth/{app}", get(flow::start))
        .route("/oauth/{app}/callback", get(flow::callback))
}

/// The `/v1/apps/{app}/oauth/*` routes; the caller puts them behind the API key.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/apps/{app}/oauth/ticket", post(api::ticket))
        .route("/v1/apps/{app}/oauth/code", post(api::code))
        .route(
            "/v1/apps/{app}/oauth/authorize_url",
            get(api::authorize_url),
        )
}

/// WeChat's authorize URL. The parameters go in the order WeChat's page expects, and the
/// `#wechat_redirect` fragment it requires is kept.
pub fn authorize_url(
    open_platform: &Url,
    appid: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{}/connect/oauth2/authorize?appid={}&redirect_uri={}&response_type=code&scope={}&state={}#wechat_redirect",
        open_platform.as_str().trim_end_matches('/'),
        enc(appid),
        enc(redirect_uri),
        enc(scope),
        enc(state)
    )
}

/// Checks a URL a browser will be sent to: http(s), and its host under `oauth_domains`.
pub fn check_return_url(app: &AppConfig, text: &str, what: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{what} {text:?} is not a full URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{what} must be an http(s) URL"));
    }
    if app.oauth_domains.is_empty() {
        return Err(format!(
            "app {:?} has no oauth_domains configured: add the page's domain to oauth_domains",
            app.name
        ));
    }
    let host = url.host_str().unwrap_or_default();
    if !app.oauth_domains.iter().any(|d| host_under_domain(host, d)) {
        return Err(format!(
            "{what} host {host:?} is not under the app's oauth_domains {:?}",
            app.oauth_domains
        ));
    }
    Ok(url)
}

/// `scope`, defaulting to `snsapi_base`; an unknown one is refused.
pub fn check_scope(scope: Option<&str>) -> Result<&'static str, String> {
    match scope.filter(|s| !s.is_empty()) {
        None => Ok("snsapi_base"),
        Some(s) => SCOPES
            .into_iter()
            .find(|known| *known == s)
            .ok_or_else(|| format!("scope {s:?} is not snsapi_base or snsapi_userinfo")),
    }
}

/// A random string of letters and digits (WeChat's `state` allows only those).
pub(crate) fn random_token(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_urls_keep_wechats_order_and_fragment() {
        let url = authorize_url(
            &Url::parse("https://open.weixin.qq.com").unwrap(),
            "wx1",
            "https://wx.example.com/oauth/demo/callback?a=1&b=2",
            "snsapi_base",
            "abc",
        );
        assert_eq!(
            url,
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx1&redirect_uri=\
             https%3A%2F%2Fwx.example.com%2Foauth%2Fdemo%2Fcallback%3Fa%3D1%26b%3D2\
             &response_type=code&scope=snsapi_base&state=abc#wechat_redirect"
        );
    }

    #[test]
    fn errcodes_have_plain_words() {
        for (code, needle) in [
            (40029, "does not know this code"),
            (40163, "already exchanged"),
            (42003, "expired"),
            (48001, "unauthorized"),
            (40030, "refresh_token"),
            (40003, "OpenID"),
        ] {
            let e = OAuthError::from_errcode(code, "msg");
            assert!(e.to_string().contains(needle), "{code}: {e}");
            assert!(e.to_string().contains(&code.to_string()));
        }
        assert_eq!(
            OAuthError::from_errcode(40163, "x").status_and_code().0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            OAuthError::Garbage("x".into()).status_and_code().0,
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn scopes_default_to_base() {
        assert_eq!(check_scope(None), Ok("snsapi_base"));
        assert_eq!(check_scope(Some("snsapi_userinfo")), Ok("snsapi_userinfo"));
        assert!(check_scope(Some("snsapi_login")).is_err());
    }
}
