//! The top-level keys of OAuth 网页授权: `public_url` (how browsers and WeChat reach this
//! server) and `open_platform` (WeChat's authorize host).
//!
//! The OAuth callback WeChat redirects browsers to is `{public_url}/oauth/{app}/callback`,
//! and its host must be the 网页授权域名 set in the console; wxmp cannot learn that address
//! from a request (a `Host` header is the client's to choose), so it is configured. An app
//! with `oauth_domains` but no `public_url` is refused at load time, when the fix is easy.

use url::Url;

use super::{parse_http_url, AppConfig, Checker};

/// The default `open_platform`.
pub const DEFAULT_OPEN_PLATFORM: &str = "https://open.weixin.qq.com";

/// Checks `public_url`: an http(s) base with no query or fragment; the trailing `/` dropped.
pub(super) fn public_url(c: &mut Checker<'_>, raw: Option<&str>) -> Option<Url> {
    let text = c.resolve("public_url", raw?)?;
    let mut url = parse_http_url(c, "public_url", &text)?;
    if url.query().is_some() || url.fragment().is_some() {
        c.problem(format!(
            "public_url = {text:?} must be a base URL without ?query or #fragment"
        ));
        return None;
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Some(url)
}

/// Checks `open_platform` (default [`DEFAULT_OPEN_PLATFORM`]).
pub(super) fn open_platform(c: &mut Checker<'_>, raw: Option<&str>) -> Option<Url> {
    let text = c.resolve("open_platform", raw.unwrap_or(DEFAULT_OPEN_PLATFORM))?;
    parse_http_url(c, "open_platform", &text)
}

/// An app that lists `oauth_domains` needs `public_url` for its callback.
pub(super) fn check_apps(c: &mut Checker<'_>, public_url: Option<&Url>, app: &AppConfig) {
    if public_url.is_none() && !app.oauth_domains.is_empty() {
        c.problem(format!(
            "apps.{}.oauth_domains is set but public_url is missing: WeChat sends browsers back to \
             {{public_url}}/oauth/{}/callback, so set public_url to this server's address as \
             browsers see it (its host is the 网页授权域名 to enter in the console)",
            app.name, app.name
        ));
    }
}
