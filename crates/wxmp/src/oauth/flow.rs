//! The browser flow: `GET /oauth/{app}` → WeChat's authorize page → `GET /oauth/{app}/callback`
//! → back to the page with a single-use ticket.
//!
//! Store records (so whichever instance the callback reaches can finish the flow):
//! - `oauth-state:{app}:{state}` → `{return, scope, binding}` for [`STATE_TTL`]. `binding` is a
//!   second random value, also set in the browser as the cookie `wxmp_oauth_{state}`
//!   (`HttpOnly; SameSite=Lax; Path=/oauth/{app}`, `Secure` under https). A callback is only
//!   honoured when that cookie matches (compared in constant time): a `state` is visible in
//!   URLs, the cookie is not, so an attacker cannot make a victim's browser finish a sign-in
//!   the attacker started. `Lax` still sends the cookie on the top-level redirect back from
//!   WeChat. One cookie per state lets two tabs sign in at once.
//! - `oauth-ticket:{app}:{ticket}` → the [`Identity`] for [`TICKET_TTL`].
//!
//! Both are single-use by `delete_if_eq`, the store's compare-and-delete: of two requests
//! racing with the same state or ticket, exactly one deletes the record and goes on.
//!
//! Errors a person should read (a forged, replayed or expired `state`, a bad `return`) are
//! plain-text pages. Once the state is good, the browser always goes back to its page: with
//! `wxmp_ticket`, or with `wxmp_error` (`access_denied`, `code_refused`, `upstream_error`,
//! `server_error`) when the user declined or WeChat refused, the plain words going to the log.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use url::Url;

use super::sns::{self, Identity};
use super::{authorize_url, check_return_url, check_scope, random_token, OAuthError};
use crate::config::AppConfig;
use crate::state::AppState;

/// How long a started sign-in may take to come back.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// How long a ticket may wait to be redeemed.
pub const TICKET_TTL: Duration = Duration::from_secs(300);

#[derive(Serialize, Deserialize)]
struct Started {
    #[serde(rename = "return")]
    return_url: String,
    scope: String,
    binding: String,
}

fn state_key(app: &str, state: &str) -> String {
    format!("oauth-state:{app}:{state}")
}

fn ticket_key(app: &str, ticket: &str) -> String {
    format!("oauth-ticket:{app}:{ticket}")
}

fn cookie_name(state: &str) -> String {
    format!("wxmp_oauth_{state}")
}

/// A plain-text page for a person.
fn page(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    text.push('\n');
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut response = (StatusCode::FOUND, [(LOCATION, location.to_owned())]).into_response();
    if let Some(c) = cookie.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert(SET_COOKIE, c);
    }
    response
}

/// The app, if it can run the flow; else the status and text of the page saying why.
fn oauth_app(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<AppConfig>, (StatusCode, String)> {
    let app = state
        .config
        .app(name)
        .cloned()
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no app named {name:?}")))?;
    if app.secret.is_none() {
        return Err((
            StatusCode::CONFLICT,
            OAuthError::NoSecret(app.name.clone()).to_string(),
        ));
    }
    Ok(app)
}

/// `GET /oauth/{app}?return=URL[&scope=snsapi_base|snsapi_userinfo]`.
pub(crate) async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let app = match oauth_app(&state, &name) {
        Ok(app) => app,
        Err((status, text)) => return page(status, text),
    };
    let Some(public_url) = state.config.public_url.clone() else {
        return page(
            StatusCode::CONFLICT,
            "public_url is not configured: WeChat must be told where to send the browser back \
             ({public_url}/oauth/{app}/callback)",
        );
    };
    let q = parse(query.as_deref());
    let Some(return_text) = q.get("return").filter(|r| !r.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "missing return: link to /oauth/{app}?return=<the page to come back to>",
        );
    };
    let return_url = match check_return_url(&app, return_text, "return") {
        Ok(url) => url,
        Err(why) => return page(StatusCode::BAD_REQUEST, why),
    };
    let scope = match check_scope(q.get("scope").map(String::as_str)) {
        Ok(s) => s,
        Err(why) => return page(StatusCode::BAD_REQUEST, why),
    };
    let (st, binding) = (random_token(32), random_token(32));
    let record = Started {
        return_url: return_url.to_string(),
        scope: scope.to_owned(),
        binding: binding.clone(),
    };
    let Ok(text) = serde_json::to_string(&record) else {
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot record the sign-in",
        );
    };
    if let Err(e) = state
        .tokens
        .store()
        .set(&state_key(&name, &st), &text, Some(STATE_TTL))
        .await
    {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot start the sign-in now: {e}; try again shortly"),
        );
    }
    let callback = format!(
        "{}/oauth/{name}/callback",
        public_url.as_str().trim_end_matches('/')
    );
    let location = authorize_url(
        &state.config.open_platform,
        app.appid.as_str(),
        &callback,
        scope,
        &st,
    );
    let secure = if public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={binding}; Path=/oauth/{name}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        cookie_name(&st),
        STATE_TTL.as_secs()
    );
    redirect(&location, Some(cookie))
}

/// `GET /oauth/{app}/callback?code&state`.
pub(crate) async fn callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let app = match oauth_app(&state, &name) {
        Ok(app) => app,
        Err((status, text)) => return page(status, text),
    };
    let q = parse(query.as_deref());
    let st = q.get("state").map(String::as_str).unwrap_or_default();
    if st.is_empty() || st.len() > 128 || !st.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return page(
            StatusCode::BAD_REQUEST,
            "this sign-in link has no valid state: start again from the page",
        );
    }
    let store = state.tokens.store();
    let key = state_key(&name, st);
    let raw = match store.get(&key).await {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "this sign-in is unknown, was already completed, or is older than 10 minutes: \
                 start again from the page",
            )
        }
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot finish the sign-in now: {e}"),
            )
        }
    };
    let Ok(started) = serde_json::from_str::<Started>(&raw) else {
        return page(
            StatusCode::BAD_REQUEST,
            "this sign-in record is unreadable: start again",
        );
    };
    let cookie = cookie_value(&headers, &cookie_name(st)).unwrap_or_default();
    if !bool::from(cookie.as_bytes().ct_eq(started.binding.as_bytes())) {
        tracing::warn!(app = %name, "OAuth callback refused: its state was started in another browser");
        return page(
            StatusCode::BAD_REQUEST,
            "this sign-in was not started in this browser (its cookie is missing): start again \
             from the page. If you did not start a sign-in, someone may have sent you this link",
        );
    }
    match store.delete_if_eq(&key, &raw).await {
        Ok(true) => {}
        Ok(false) => {
            return page(
                StatusCode::BAD_REQUEST,
                "this sign-in was already completed: start again from the page",
            )
        }
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot finish the sign-in now: {e}"),
            )
        }
    }
    let clear = format!(
        "{}=; Path=/oauth/{name}; Max-Age=0; HttpOnly; SameSite=Lax",
        cookie_name(st)
    );
    let Ok(mut back) = Url::parse(&started.return_url) else {
        return page(
            StatusCode::BAD_REQUEST,
            "the stored return URL is unreadable",
        );
    };
    let code = q.get("code").map(String::as_str).unwrap_or_default();
    if code.is_empty() {
        back.query_pairs_mut()
            .append_pair("wxmp_error", "access_denied");
        return redirect(back.as_str(), Some(clear));
    }
    let outcome = match sns::identify(state.tokens.upstream(), &app, code).await {
        Ok(identity) => issue_ticket(&state, &name, &identity).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(ticket) => {
            back.query_pairs_mut().append_pair("wxmp_ticket", &ticket);
            state.metrics.api(&name, "oauth_ok");
        }
        Err(e) => {
            tracing::warn!(app = %name, error = %e, "OAuth sign-in failed");
            state.metrics.api(&name, "oauth_error");
            back.query_pairs_mut()
                .append_pair("wxmp_error", e.browser_code());
        }
    }
    redirect(back.as_str(), Some(clear))
}

/// Stores `identity` under a new single-use ticket.
pub(crate) async fn issue_ticket(
    state: &AppState,
    app: &str,
    identity: &Identity,
) -> Result<String, OAuthError> {
    let ticket = random_token(32);
    let text = serde_json::to_string(identity).map_err(|e| OAuthError::Store(e.to_string()))?;
    state
        .tokens
        .store()
        .set(&ticket_key(app, &ticket), &text, Some(TICKET_TTL))
        .await
        .map_err(|e| OAuthError::Store(e.to_string()))?;
    Ok(ticket)
}

/// Redeems a ticket once: the identity, or [`OAuthError::TicketGone`].
pub async fn redeem_ticket(
    state: &AppState,
    app: &str,
    ticket: &str,
) -> Result<Identity, OAuthError> {
    if ticket.is_empty() || ticket.len() > 128 || !ticket.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(OAuthError::TicketGone);
    }
    let store = state.tokens.store();
    let key = ticket_key(app, ticket);
    let stored = |e: crate::store::StoreError| OAuthError::Store(e.to_string());
    let raw = store.get(&key).await.map_err(stored)?;
    let Some(raw) = raw else {
        return Err(OAuthError::TicketGone);
    };
    if !store.delete_if_eq(&key, &raw).await.map_err(stored)? {
        return Err(OAuthError::TicketGone);
    }
    serde_json::from_str(&raw).map_err(|_| OAuthError::TicketGone)
}

fn parse(query: Option<&str>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

/// The value of cookie `name`, from any `Cookie` header.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; wxmp_oauth_S=xyz"));
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie_value(&h, "wxmp_oauth_S").as_deref(), Some("xyz"));
        assert_eq!(cookie_value(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie_value(&h, "wxmp_oauth_T"), None);
    }
}
