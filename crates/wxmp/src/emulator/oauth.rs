//! OAuth 网页授权 on the emulated platform: WeChat's authorize page and the `/sns/` calls.
//!
//! - `GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state` stands
//!   for the page WeChat shows inside its app. There is no page and no person: a test user
//!   consents at once and the browser is sent straight back (`302`) to
//!   `redirect_uri?code=…&state=…`. The user is `wxmp_user=NAME` (default `demo-user`); with
//!   `wxmp_consent=deny` the user refuses, and the redirect carries the `state` only, as WeChat
//!   does when a user declines `snsapi_userinfo`. A malformed request gets a 400 text page
//!   with WeChat's code (10003 bad redirect_uri, 10011 unknown scope …), as the real page
//!   shows an error instead of redirecting.
//! - `GET /sns/oauth2/access_token` exchanges a code, with WeChat's rules: a code lives 5
//!   minutes (42003 after) and works once (40163 the second time); an unknown code, or one
//!   issued to another AppID, is 40029; the AppSecret must match (40125).
//! - `GET /sns/oauth2/refresh_token` (40030 for an unknown refresh_token), `GET /sns/userinfo`
//!   (48001 unless the token was granted `snsapi_userinfo`; 40003 for another OpenID) and
//!   `GET /sns/auth`.
//!
//! The OpenID is derived from the AppID and the user's name and the UnionID from the name
//! alone, so a test user is the same person every run and across apps, as on the platform.
//! Faults aimed at the `sns` endpoint (`{"endpoint":"sns","garbage":"…"}`) apply to the
//! `/sns/` calls. The state sits behind its own mutex, apart from the token state machine, and
//! uses the same pausable clock.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::fault::CallKind;
use super::state::{parse_query, Reply};
use super::Emulator;

/// How long a code may be exchanged.
pub const CODE_LIFETIME: Duration = Duration::from_secs(300);
/// `expires_in` of an OAuth access_token.
const SNS_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
/// How long a refresh_token lives.
const REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// The test user when the request names none.
pub const DEFAULT_USER: &str = "demo-user";

const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// What was counted, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OAuthStats {
    /// Codes handed out by the authorize page.
    pub codes_issued: u64,
    /// `sns/oauth2/access_token` calls, and how many exchanged a code.
    pub code_exchanges: u64,
    /// Of which succeeded.
    pub codes_exchanged: u64,
    /// `sns/userinfo` calls that answered a profile.
    pub userinfo_served: u64,
}

#[derive(Debug)]
struct Grant {
    appid: String,
    user: String,
    scope: String,
    expires_at: Instant,
}

#[derive(Debug)]
struct CodeRecord {
    grant: Grant,
    used: bool,
}

/// OAuth's part of the emulated platform.
pub(crate) struct OAuthState {
    /// AppID → AppSecret.
    secrets: HashMap<String, String>,
    codes: HashMap<String, CodeRecord>,
    tokens: HashMap<String, Grant>,
    refresh_tokens: HashMap<String, Grant>,
    rng: StdRng,
    stats: OAuthStats,
}

fn err(code: i64, msg: &str) -> Value {
    json!({ "errcode": code, "errmsg": msg })
}

/// A stable, URL-safe string of `len` characters derived from `parts`.
fn derived(parts: &[&str], len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut round = 0u64;
    while out.len() < len {
        // DefaultHasher::new() has fixed keys: the same input gives the same output.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        round.hash(&mut h);
        parts.hash(&mut h);
        let mut v = h.finish();
        for _ in 0..10 {
            if out.len() == len {
                break;
            }
            out.push(char::from(URL_SAFE[(v % 64) as usize]));
            v /= 64;
        }
        round += 1;
    }
    out
}

/// The OpenID of `user` for `appid`: 28 characters starting with `o`, like WeChat's.
pub fn openid_of(appid: &str, user: &str) -> String {
    format!("o{}", derived(&["openid", appid, user], 27))
}

/// The UnionID of `user`: the same under every app.
pub fn unionid_of(user: &str) -> String {
    format!("o{}", derived(&["unionid", user], 27))
}

impl OAuthState {
    pub fn new<'a>(apps: impl IntoIterator<Item = (&'a str, &'a str)>, rng: StdRng) -> Self {
        OAuthState {
            secrets: apps
                .into_iter()
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
                .collect(),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            rng,
            stats: OAuthStats::default(),
        }
    }

    pub fn stats(&self) -> OAuthStats {
        self.stats
    }

    fn random(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(URL_SAFE[self.rng.gen_range(0..URL_SAFE.len())]))
            .collect()
    }

    fn prune(&mut self, now: Instant) {
        self.codes.retain(|_, c| c.grant.expires_at > now);
        self.tokens.retain(|_, g| g.expires_at > now);
        self.refresh_tokens.retain(|_, g| g.expires_at > now);
    }

    /// The authorize page: `Ok(location)` to redirect to, or `Err((status, page))`.
    pub fn authorize(
        &mut self,
        q: &HashMap<String, String>,
        now: Instant,
    ) -> Result<String, (StatusCode, String)> {
        let page = |code: u32, what: &str| {
            (
                StatusCode::BAD_REQUEST,
                format!("emulated WeChat authorize page: error {code}: {what}\n"),
            )
        };
        let param = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let appid = param("appid").ok_or_else(|| page(10002, "appid is missing"))?;
        if !self.secrets.contains_key(appid) {
            return Err(page(10002, "appid is not an emulated app"));
        }
        let redirect = param("redirect_uri")
            .and_then(|r| url::Url::parse(r).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| page(10003, "redirect_uri is missing or not an http(s) URL"))?;
        if param("response_type") != Some("code") {
            return Err(page(10004, "response_type must be code"));
        }
        let scope = match param("scope") {
            None => return Err(page(10010, "scope is missing")),
            Some(s @ ("snsapi_base" | "snsapi_userinfo")) => s.to_owned(),
            Some(_) => return Err(page(10011, "scope must be snsapi_base or snsapi_userinfo")),
        };
        let state = param("state").unwrap_or_default();
        if state.len() > 128 {
            return Err(page(10015, "state is longer than 128 bytes"));
        }
        let mut location = redirect;
        if param("wxmp_consent") == Some("deny") {
            location.query_pairs_mut().append_pair("state", state);
            return Ok(location.to_string());
        }
        let user = param("wxmp_user").unwrap_or(DEFAULT_USER).to_owned();
        self.prune(now);
        let code = self.random(32);
        self.codes.insert(
            code.clone(),
            CodeRecord {
                grant: Grant {
                    appid: appid.to_owned(),
                    user,
                    scope,
                    expires_at: now + CODE_LIFETIME,
                },
                used: false,
            },
        );
        self.stats.codes_issued += 1;
        location
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", state);
        Ok(location.to_string())
    }

    /// `GET /sns/oauth2/access_token`.
    pub fn access_token(&mut self, q: &HashMap<String, String>, now: Instant) -> Value {
        self.stats.code_exchanges += 1;
        let param = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let Some(appid) = param("appid") else {
            return err(41002, "appid missing");
        };
        let Some(secret) = param("secret") else {
            return err(41004, "appsecret missing");
        };
        let Some(code) = param("code") else {
            return err(41008, "missing code");
        };
        if param("grant_type") != Some("authorization_code") {
            return err(40002, "invalid grant_type");
        }
        match self.secrets.get(appid) {
            None => return err(40013, "invalid appid"),
            Some(s) if s != secret => return err(40125, "invalid appsecret"),
            Some(_) => {}
        }
        let Some(record) = self.codes.get_mut(code).filter(|c| c.grant.appid == appid) else {
            return err(40029, "invalid code");
        };
        if record.used {
            return err(40163, "code been used");
        }
        if record.grant.expires_at <= now {
            return err(42003, "code expired");
        }
        record.used = true;
        let (user, scope) = (record.grant.user.clone(), record.grant.scope.clone());
        self.stats.codes_exchanged += 1;
        self.issue(appid, &user, &scope, now, None)
    }

    /// Issues an access_token (and a refresh_token unless one is being used).
    fn issue(
        &mut self,
        appid: &str,
        user: &str,
        scope: &str,
        now: Instant,
        refresh: Option<String>,
    ) -> Value {
        self.prune(now);
        let access_token = self.random(86);
        self.tokens.insert(
            access_token.clone(),
            Grant {
                appid: appid.to_owned(),
                user: user.to_owned(),
                scope: scope.to_owned(),
                expires_at: now + SNS_TOKEN_LIFETIME,
            },
        );
        let refresh_token = match refresh {
            Some(r) => r,
            None => {
                let r = self.random(86);
                self.refresh_tokens.insert(
                    r.clone(),
                    Grant {
                        appid: appid.to_owned(),
                        user: user.to_owned(),
                        scope: scope.to_owned(),
                        expires_at: now + REFRESH_LIFETIME,
                    },
                );
                r
            }
        };
        json!({
            "access_token": access_token,
            "expires_in": SNS_TOKEN_LIFETIME.as_secs(),
            "refresh_token": refresh_token,
            "openid": openid_of(appid, user),
            "scope": scope,
            "is_snapshotuser": 0,
            "unionid": unionid_of(user),
        })
    }

    /// `GET /sns/oauth2/refresh_token`.
    pub fn refresh_token(&mut self, q: &HashMap<String, String>, now: Instant) -> Value {
        let param = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let Some(appid) = param("appid") else {
            return err(41002, "appid missing");
        };
        if param("grant_type") != Some("refresh_token") {
            return err(40002, "invalid grant_type");
        }
        let Some(refresh) = param("refresh_token") else {
            return err(40030, "invalid refresh_token");
        };
        let grant = match self.refresh_tokens.get(refresh) {
            Some(g) if g.appid == appid && g.expires_at > now => (g.user.clone(), g.scope.clone()),
            Some(g) if g.appid == appid => return err(42002, "refresh_token expired"),
            _ => return err(40030, "invalid refresh_token"),
        };
        self.issue(appid, &grant.0, &grant.1, now, Some(refresh.to_owned()))
    }

    /// The grant of a usable OAuth access_token for `openid`, or WeChat's error.
    fn grant(&self, q: &HashMap<String, String>, now: Instant) -> Result<&Grant, Value> {
        let param = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let token = param("access_token").ok_or_else(|| err(41001, "access_token missing"))?;
        let grant = self.tokens.get(token).ok_or_else(|| {
            err(
                40001,
                "invalid credential, access_token is invalid or not latest",
            )
        })?;
        if grant.expires_at <= now {
            return Err(err(42001, "access_token expired"));
        }
        if param("openid") != Some(openid_of(&grant.appid, &grant.user).as_str()) {
            return Err(err(40003, "invalid openid"));
        }
        Ok(grant)
    }

    /// `GET /sns/userinfo`.
    pub fn userinfo(&mut self, q: &HashMap<String, String>, now: Instant) -> Value {
        let grant = match self.grant(q, now) {
            Ok(g) => g,
            Err(e) => return e,
        };
        if grant.scope != "snsapi_userinfo" {
            return err(48001, "api unauthorized");
        }
        let user = grant.user.clone();
        let openid = openid_of(&grant.appid, &user);
        self.stats.userinfo_served += 1;
        json!({
            "openid": openid,
            "nickname": user,
            "sex": 0,
            "province": "",
            "city": "",
            "country": "",
            "headimgurl": format!("https://thirdwx.qlogo.cn/mmopen/emulated/{user}/132"),
            "privilege": [],
            "unionid": unionid_of(&user),
        })
    }

    /// `GET /sns/auth`.
    pub fn auth(&self, q: &HashMap<String, String>, now: Instant) -> Value {
        match self.grant(q, now) {
            Ok(_) => err(0, "ok"),
            Err(e) => e,
        }
    }
}

/// The OAuth routes, merged into [`Emulator::router`].
pub(crate) fn routes() -> Router<Emulator> {
    Router::new()
        .route("/connect/oauth2/authorize", get(authorize))
        .route("/sns/{*path}", get(sns).post(sns))
}

async fn authorize(State(emulator): State<Emulator>, RawQuery(q): RawQuery) -> Response {
    let query = parse_query(q.as_deref());
    let decided = emulator.oauth_lock().authorize(&query, Instant::now());
    match decided {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err((status, page)) => (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            page,
        )
            .into_response(),
    }
}

async fn sns(
    State(emulator): State<Emulator>,
    axum::extract::Path(path): axum::extract::Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let outcome = emulator.lock().take_fault(CallKind::Sns);
    if !outcome.delay.is_zero() {
        tokio::time::sleep(outcome.delay).await;
    }
    if let Some(kind) = outcome.answer {
        return super::api::render(Reply::from_fault(kind));
    }
    let query = parse_query(q.as_deref());
    let now = Instant::now();
    let answer = {
        let mut oauth = emulator.oauth_lock();
        match path.as_str() {
            "oauth2/access_token" => Some(oauth.access_token(&query, now)),
            "oauth2/refresh_token" => Some(oauth.refresh_token(&query, now)),
            "userinfo" => Some(oauth.userinfo(&query, now)),
            "auth" => Some(oauth.auth(&query, now)),
            _ => None,
        }
    };
    match answer {
        Some(answer) => super::api::render(Reply::Json(answer)),
        None => super::api::not_found().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const APPID: &str = "wx_oauth_app";

    fn state() -> OAuthState {
        OAuthState::new([(APPID, "s3cret")], StdRng::seed_from_u64(3))
    }

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn code_from(location: &str) -> String {
        let url = url::Url::parse(location).unwrap();
        let pairs: HashMap<String, String> = url.query_pairs().into_owned().collect();
        pairs["code"].clone()
    }

    fn authorize(s: &mut OAuthState, scope: &str, now: Instant) -> String {
        let location = s
            .authorize(
                &q(&[
                    ("appid", APPID),
                    ("redirect_uri", "https://example.com/cb?x=1"),
                    ("response_type", "code"),
                    ("scope", scope),
                    ("state", "st"),
                    ("wxmp_user", "alice"),
                ]),
                now,
            )
            .unwrap();
        assert!(
            location.starts_with("https://example.com/cb?x=1&code="),
            "{location}"
        );
        assert!(location.ends_with("&state=st"));
        code_from(&location)
    }

    fn exchange(s: &mut OAuthState, code: &str, now: Instant) -> Value {
        s.access_token(
            &q(&[
                ("appid", APPID),
                ("secret", "s3cret"),
                ("code", code),
                ("grant_type", "authorization_code"),
            ]),
            now,
        )
    }

    #[test]
    fn codes_work_once_and_for_five_minutes() {
        let mut s = state();
        let now = Instant::now();
        let code = authorize(&mut s, "snsapi_base", now);
        let t = exchange(&mut s, &code, now);
        assert_eq!(t["openid"], openid_of(APPID, "alice"));
        assert_eq!(t["scope"], "snsapi_base");
        assert_eq!(exchange(&mut s, &code, now)["errcode"], 40163);
        let late = authorize(&mut s, "snsapi_base", now);
        assert_eq!(
            exchange(&mut s, &late, now + CODE_LIFETIME)["errcode"],
            42003
        );
        assert_eq!(exchange(&mut s, "forged", now)["errcode"], 40029);
        let fresh = authorize(&mut s, "snsapi_base", now);
        let wrong_secret = s.access_token(
            &q(&[
                ("appid", APPID),
                ("secret", "nope"),
                ("code", &fresh),
                ("grant_type", "authorization_code"),
            ]),
            now,
        );
        assert_eq!(wrong_secret["errcode"], 40125);
    }

    #[test]
    fn userinfo_needs_the_userinfo_scope_and_the_right_openid() {
        let mut s = state();
        let now = Instant::now();
        let code = authorize(&mut s, "snsapi_base", now);
        let base = exchange(&mut s, &code, now);
        let token = base["access_token"].as_str().unwrap();
        let openid = base["openid"].as_str().unwrap();
        let ask = |s: &mut OAuthState, openid: &str| {
            s.userinfo(&q(&[("access_token", token), ("openid", openid)]), now)
        };
        assert_eq!(ask(&mut s, openid)["errcode"], 48001);
        let code = authorize(&mut s, "snsapi_userinfo", now);
        let full = exchange(&mut s, &code, now);
        let token = full["access_token"].as_str().unwrap().to_owned();
        let info = s.userinfo(&q(&[("access_token", &token), ("openid", openid)]), now);
        assert_eq!(info["nickname"], "alice");
        assert_eq!(info["unionid"], unionid_of("alice"));
        let other = s.userinfo(&q(&[("access_token", &token), ("openid", "oX")]), now);
        assert_eq!(other["errcode"], 40003);
        assert_eq!(
            s.auth(&q(&[("access_token", &token), ("openid", openid)]), now)["errcode"],
            0
        );
        let refreshed = s.refresh_token(
            &q(&[
                ("appid", APPID),
                ("grant_type", "refresh_token"),
                ("refresh_token", full["refresh_token"].as_str().unwrap()),
            ]),
            now,
        );
        assert_eq!(refreshed["openid"], openid);
        let bad = s.refresh_token(
            &q(&[
                ("appid", APPID),
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
            ]),
            now,
        );
        assert_eq!(bad["errcode"], 40030);
    }

    #[test]
    fn bad_authorize_requests_get_an_error_page_and_denial_keeps_the_state() {
        let mut s = state();
        let now = Instant::now();
        let base = [
            ("appid", APPID),
            ("redirect_uri", "https://example.com/cb"),
            ("response_type", "code"),
            ("scope", "snsapi_base"),
            ("state", "st"),
        ];
        for (k, v, code) in [
            ("scope", "snsapi_all", "10011"),
            ("redirect_uri", "javascript:alert(1)", "10003"),
            ("appid", "wx_unknown", "10002"),
        ] {
            let mut query = q(&base);
            query.insert(k.to_owned(), v.to_owned());
            let (status, page) = s.authorize(&query, now).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(page.contains(code), "{page}");
        }
        let mut query = q(&base);
        query.insert("wxmp_consent".into(), "deny".into());
        assert_eq!(
            s.authorize(&query, now).unwrap(),
            "https://example.com/cb?state=st"
        );
        assert_eq!(openid_of(APPID, "alice").len(), 28);
        assert_ne!(openid_of(APPID, "alice"), openid_of("wx_other", "alice"));
    }
}
