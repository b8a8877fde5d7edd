//! Who is calling the business API, and may they: bearer keys and scoped clients.
//!
//! Every request presents one key. It is compared, in constant time and without stopping at
//! a match, with every unscoped key and every client's key, so the time taken says nothing
//! about which key or how much of it matched. Keys are unique (the config refuses duplicates),
//! so at most one matches, and that match decides the [`Caller`]: an unscoped key may do
//! everything; a client only what its `apps` and `allow` list. The scope check runs here,
//! after routing, from the route's template ([`needs`]), so a handler never has to remember
//! it and a new endpoint is closed to clients until it is given a capability here.
//!
//! The caller is left in the request's extensions for handlers that care who asks: the
//! passive refresh and the proxy count refreshes against a client's `refresh_per_minute`,
//! and the refresh audit names it.

use std::sync::Arc;

use axum::extract::{MatchedPath, RawPathParams, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::RequestExt;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{ApiClient, Capability, Config};
use crate::error::AppError;
use crate::token::Requester;

/// The authenticated caller of a `/v1` request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An unscoped key from `[api] keys`.
    Key,
    /// A scoped client.
    Client(Arc<ApiClient>),
}

impl Caller {
    /// The `by` of the refresh audit, with the client's refresh budget.
    pub fn requester(&self) -> Requester {
        match self {
            Caller::Key => Requester::key(),
            Caller::Client(c) => Requester::client(&c.name, c.refresh_per_minute),
        }
    }

    /// True when the caller may see `app` at all.
    pub fn may_use_app(&self, app: &str) -> bool {
        match self {
            Caller::Key => true,
            Caller::Client(c) => c.may_use_app(app),
        }
    }
}

/// What a route needs beyond a valid key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing more (the app list, filtered to the caller's apps).
    Nothing,
    /// The app in the path must be in the client's `apps`.
    App,
    /// The app, and this capability in the client's `allow`.
    AppAnd(Capability),
}

/// The need of a `/v1` route, by its template. Unknown templates are closed to clients.
pub fn needs(template: &str) -> Option<Need> {
    use Capability::*;
    let rest = template.strip_prefix("/v1/apps")?;
    if rest.is_empty() {
        return Some(Need::Nothing);
    }
    let rest = rest.strip_prefix("/{app}")?;
    Some(match rest {
        "/refreshes" => Need::App,
        "/access_token" => Need::AppAnd(Token),
        "/access_token/refresh" => Need::AppAnd(Refresh),
        "/tickets/{kind}" => Need::AppAnd(Tickets),
        "/jssdk/config" | "/card_ext" => Need::AppAnd(Jssdk),
        _ if rest.starts_with("/proxy/") => Need::AppAnd(Proxy),
        _ if rest.starts_with("/oauth/") => Need::AppAnd(Oauth),
        _ => return None,
    })
}

/// The key after a case-insensitive `Bearer` scheme, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, key) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

/// Finds the caller of `presented` among every configured key, in constant time.
fn identify(config: &Config, presented: &str) -> Option<Caller> {
    // 0: no match; 1: an unscoped key; 2 + i: client i.
    let mut found = 0u32;
    for key in &config.api_keys {
        let eq = key.expose().as_bytes().ct_eq(presented.as_bytes());
        found.conditional_assign(&1, eq);
    }
    for (i, client) in config.api_clients.iter().enumerate() {
        let eq = client.key.expose().as_bytes().ct_eq(presented.as_bytes());
        found.conditional_assign(&(u32::try_from(i).unwrap_or(u32::MAX - 2) + 2), eq);
    }
    match found {
        0 => None,
        1 => Some(Caller::Key),
        n => config
            .api_clients
            .get(usize::try_from(n - 2).ok()?)
            .cloned()
            .map(Caller::Client),
    }
}

/// Authenticates `request` and checks its scope; on success the [`Caller`] is in its
/// extensions.
pub async fn authorize(config: &Config, request: &mut Request) -> Result<Caller, AppError> {
    let caller = bearer(request.headers())
        .and_then(|key| identify(config, key))
        .ok_or(AppError::Unauthorized)?;
    if let Caller::Client(client) = &caller {
        check_scope(client, request).await?;
    }
    request.extensions_mut().insert(caller.clone());
    Ok(caller)
}

async fn check_scope(client: &ApiClient, request: &mut Request) -> Result<(), AppError> {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let Some(need) = needs(&template) else {
        return Err(AppError::Forbidden(format!(
            "client {:?} may not call {template}: it is open to unscoped keys only",
            client.name
        )));
    };
    if need == Need::Nothing {
        return Ok(());
    }
    let params = request
        .extract_parts::<RawPathParams>()
        .await
        .map_err(|_| AppError::BadRequest("the app name in the path is not valid UTF-8".into()))?;
    let app = params
        .iter()
        .find(|(k, _)| *k == "app")
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    if !client.may_use_app(&app) {
        let apps: Vec<&String> = client.apps.iter().flatten().collect();
        return Err(AppError::Forbidden(format!(
            "client {:?} may not use app {app:?}: its apps are {apps:?} (api.clients.{}.apps)",
            client.name, client.name
        )));
    }
    if let Need::AppAnd(cap) = need {
        if !client.allow.contains(&cap) {
            let allowed: Vec<&str> = client.allow.iter().map(|c| c.as_str()).collect();
            return Err(AppError::Forbidden(format!(
                "client {:?} may not use the {cap} endpoints: it allows {allowed:?} \
                 (add \"{cap}\" to api.clients.{}.allow)",
                client.name, client.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for value in ["Bearer k", "bearer k", "BEARER  k ", "bEaReR\tk"] {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            assert_eq!(bearer(&h), Some("k"), "{value:?}");
        }
        for value in ["Basic k", "Bearer", "Bearer ", "Bearerk", "k"] {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            assert_eq!(bearer(&h), None, "{value:?}");
        }
    }

    #[test]
    fn every_route_has_a_need() {
        use Capability::*;
        assert_eq!(needs("/v1/apps"), Some(Need::Nothing));
        assert_eq!(needs("/v1/apps/{app}/refreshes"), Some(Need::App));
        assert_eq!(
            needs("/v1/apps/{app}/access_token"),
            Some(Need::AppAnd(Token))
        );
        assert_eq!(
            needs("/v1/apps/{app}/access_token/refresh"),
            Some(Need::AppAnd(Refresh))
        );
        assert_eq!(
            needs("/v1/apps/{app}/tickets/{kind}"),
            Some(Need::AppAnd(Tickets))
        );
        assert_eq!(needs("/v1/apps/{app}/card_ext"), Some(Need::AppAnd(Jssdk)));
        assert_eq!(
            needs("/v1/apps/{app}/proxy/{*path}"),
            Some(Need::AppAnd(Proxy))
        );
        assert_eq!(
            needs("/v1/apps/{app}/oauth/ticket"),
            Some(Need::AppAnd(Oauth))
        );
        assert_eq!(
            needs("/v1/apps/{app}/menu"),
            None,
            "closed until given a capability"
        );
        assert_eq!(needs("/status"), None);
    }
}
