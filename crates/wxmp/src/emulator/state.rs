//! The emulated platform's state machine: credentials, token families, quotas, tickets, faults.
//!
//! Everything WeChat decides about a call lives here, as plain synchronous code over plain data:
//! a request goes in ([`ApiRequest`], already split into path, method, query and body), a
//! [`Reply`] comes out. The clock is a parameter ([`Clock`]), so unit tests step time by hand and
//! the HTTP layer passes `tokio::time::Instant::now()`, which `tokio::time::pause()` controls.
//! Keeping it free of axum and `.await` lets the emulator hold a std `Mutex` around it for the
//! length of one call and never across a sleep.
//!
//! Token rules (WeChat's 获取Access token and 获取稳定版接口调用凭据 docs), shared by both families, classic (`/cgi-bin/token`) and stable
//! (`/cgi-bin/stable_token`), which never touch each other: when a family issues a new token,
//! the one it replaces stays valid for `overlap` more (never past its own expiry) and any older
//! one dies at once. A dead token answers 40001; a token past its natural expiry answers 42001.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::fault::{self, CallKind, Fault, FaultKind, FaultOutcome};
use super::menu::{EmulatedUser, MenuCall, Menus};
use super::stats::{AppStats, CallCount};
use super::EmulatorConfig;

/// Dead tokens are remembered this long (so they keep answering 40001/42001 rather than being
/// forgotten), then pruned so a long-running emulator does not grow without bound.
const KEEP_DEAD: Duration = Duration::from_secs(24 * 3600);

/// Characters of tokens and tickets: URL-safe, so they never need escaping in a query string.
const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// The moment a call is handled: a monotonic instant for expiry, a UTC day number for quotas.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub now: Instant,
    /// Days since 1970-01-01 UTC; the daily counters reset when it changes.
    pub day: u64,
}

impl Clock {
    /// The real time: tokio's instant (pausable in tests) and the system's UTC date.
    pub fn now() -> Self {
        let day = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0);
        Clock {
            now: Instant::now(),
            day,
        }
    }
}

/// The HTTP method, as far as WeChat cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Other,
}

/// Which WeChat interface a `/cgi-bin/` path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Token,
    StableToken,
    Ticket,
    CustomSend,
    /// `media/upload`: answered with what was received, so tests can check an upload
    /// arrived intact.
    MediaUpload,
    Menu(MenuCall),
    Other,
}

impl Route {
    fn of(path: &str) -> Route {
        if let Some(call) = MenuCall::of(path) {
            return Route::Menu(call);
        }
        match path {
            "/cgi-bin/token" => Route::Token,
            "/cgi-bin/stable_token" => Route::StableToken,
            "/cgi-bin/ticket/getticket" => Route::Ticket,
            "/cgi-bin/message/custom/send" => Route::CustomSend,
            "/cgi-bin/media/upload" => Route::MediaUpload,
            _ => Route::Other,
        }
    }

    fn kind(self) -> CallKind {
        match self {
            Route::Token => CallKind::Token,
            Route::StableToken => CallKind::StableToken,
            Route::Ticket => CallKind::Ticket,
            Route::CustomSend => CallKind::CustomSend,
            Route::MediaUpload | Route::Menu(_) | Route::Other => CallKind::OtherApi,
        }
    }
}

/// One `/cgi-bin/` call, taken apart by the HTTP layer.
#[derive(Debug)]
pub(crate) struct ApiRequest {
    route: Route,
    /// The request path, for the paths `Route::Other` answers with more than an echo.
    path: String,
    method: Method,
    /// Query parameters; the first occurrence of a name wins.
    query: HashMap<String, String>,
    body: Vec<u8>,
    /// The caller's address, for the IP whitelist; `None` when the server did not record it.
    peer: Option<IpAddr>,
}

impl ApiRequest {
    /// `path` is the request path (`/cgi-bin/...`), `raw_query` the undecoded query string.
    pub fn new(
        path: &str,
        method: Method,
        raw_query: Option<&str>,
        body: Vec<u8>,
        peer: Option<IpAddr>,
    ) -> Self {
        ApiRequest {
            route: Route::of(path),
            path: path.to_owned(),
            method,
            query: parse_query(raw_query),
            body,
            peer,
        }
    }

    /// A non-empty query parameter.
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Decodes a query string; the first occurrence of each name wins. Never fails: bad escapes are
/// decoded lossily, as a lenient server would.
pub(crate) fn parse_query(raw: Option<&str>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

/// What the platform answers. The HTTP layer renders it.
#[derive(Debug, PartialEq)]
pub(crate) enum Reply {
    /// HTTP 200 with this JSON, as WeChat answers both successes and errors.
    Json(Value),
    /// HTTP 200 with this raw body (an injected garbage answer).
    Garbage(String),
    /// This HTTP status with a gateway's HTML page (an injected fault); always in 200..=599.
    HttpStatus(u16),
}

impl Reply {
    /// `{"errcode":code,"errmsg":msg}`.
    fn error(code: i64, msg: impl Into<String>) -> Reply {
        Reply::Json(json!({ "errcode": code, "errmsg": msg.into() }))
    }

    fn ok() -> Reply {
        Reply::Json(json!({ "errcode": 0, "errmsg": "ok" }))
    }

    /// The answer an injected terminal fault gives.
    pub fn from_fault(kind: FaultKind) -> Reply {
        match kind {
            FaultKind::Errcode(code, msg) => Reply::error(code, msg),
            FaultKind::Garbage(body) => Reply::Garbage(body),
            FaultKind::HttpStatus(status) if (200..=599).contains(&status) => {
                Reply::HttpStatus(status)
            }
            FaultKind::HttpStatus(_) => Reply::HttpStatus(500),
            // A delay is never terminal (`fault::take` only returns terminal kinds); answer a
            // stray one as a system error rather than panic.
            FaultKind::Delay(_) => Reply::error(-1, "system error"),
        }
    }
}

mod errmsg {
    pub const INVALID_CREDENTIAL: &str =
        "invalid credential, access_token is invalid or not latest";
    pub const EXPIRED: &str = "access_token expired";
    pub const TOKEN_MISSING: &str = "access_token missing";
    pub const GRANT_TYPE: &str = "invalid grant_type";
    pub const APPID_MISSING: &str = "appid missing";
    pub const SECRET_MISSING: &str = "appsecret missing";
    pub const INVALID_APPID: &str = "invalid appid";
    pub const INVALID_SECRET: &str = "invalid appsecret";
    pub const REQUIRE_GET: &str = "require GET method";
    pub const REQUIRE_POST: &str = "require POST method";
    pub const DATA_FORMAT: &str = "data format error";
    pub const EMPTY_POST: &str = "empty post data";
    pub const INVALID_ARGS: &str = "invalid args";
    pub const QUOTA: &str = "reach max api daily quota limit";
}

/// What the emulator remembers of an issued token.
#[derive(Debug)]
struct TokenRecord {
    appid: String,
    /// Natural expiry: past it the token answers 42001.
    expires_at: Instant,
    /// When it was (or will be) superseded for good: past it the token answers 40001, unless
    /// it expired naturally first.
    killed_at: Option<Instant>,
}

/// Why a token is not usable.
#[derive(Debug, PartialEq, Eq)]
enum Dead {
    Killed,
    Expired,
}

impl TokenRecord {
    fn status(&self, now: Instant) -> Result<(), Dead> {
        match self.killed_at {
            Some(k) if k < self.expires_at && now >= k => Err(Dead::Killed),
            _ if now >= self.expires_at => Err(Dead::Expired),
            _ => Ok(()),
        }
    }

    /// When the token stops working, for whatever reason.
    fn death(&self) -> Instant {
        self.killed_at
            .map_or(self.expires_at, |k| k.min(self.expires_at))
    }
}

/// The newest token of a family and the one before it (the only one that may still be in its
/// overlap).
#[derive(Debug, Default)]
struct Slots {
    current: Option<String>,
    previous: Option<String>,
}

/// All issued tokens, and the randomness they are made from.
struct TokenTable {
    records: HashMap<String, TokenRecord>,
    rng: StdRng,
}

impl TokenTable {
    /// Issues a new token into `slots`: the current one gets `overlap` more life, the previous
    /// one dies now. Returns the new token.
    fn issue(
        &mut self,
        slots: &mut Slots,
        appid: &str,
        lifetime: Duration,
        overlap: Duration,
        now: Instant,
    ) -> String {
        self.records
            .retain(|_, r| now.saturating_duration_since(r.death()) < KEEP_DEAD);
        if let Some(old) = slots.previous.take() {
            self.kill_at(&old, now);
        }
        if let Some(cur) = slots.current.take() {
            self.kill_at(&cur, now + overlap);
            slots.previous = Some(cur);
        }
        let token = loop {
            let candidate = random_token(&mut self.rng);
            if !self.records.contains_key(&candidate) {
                break candidate;
            }
        };
        self.records.insert(
            token.clone(),
            TokenRecord {
                appid: appid.to_owned(),
                expires_at: now + lifetime,
                killed_at: None,
            },
        );
        slots.current = Some(token.clone());
        token
    }

    /// Sets a kill time, never postponing an earlier one.
    fn kill_at(&mut self, token: &str, at: Instant) {
        if let Some(r) = self.records.get_mut(token) {
            r.killed_at = Some(r.killed_at.map_or(at, |k| k.min(at)));
        }
    }

    /// The app a usable token belongs to, or WeChat's error for it.
    fn check(&self, token: Option<&str>, now: Instant) -> Result<&str, Reply> {
        let token = token.ok_or_else(|| Reply::error(41001, errmsg::TOKEN_MISSING))?;
        let record = self
            .records
            .get(token)
            .ok_or_else(|| Reply::error(40001, errmsg::INVALID_CREDENTIAL))?;
        match record.status(now) {
            Ok(()) => Ok(&record.appid),
            Err(Dead::Killed) => Err(Reply::error(40001, errmsg::INVALID_CREDENTIAL)),
            Err(Dead::Expired) => Err(Reply::error(42001, errmsg::EXPIRED)),
        }
    }

    /// The app a token was issued to, dead or alive (for counting attempts).
    fn owner(&self, token: Option<&str>) -> Option<&str> {
        token
            .and_then(|t| self.records.get(t))
            .map(|r| r.appid.as_str())
    }

    /// Life left in a token that is usable now.
    fn remaining(&self, token: &str, now: Instant) -> Option<Duration> {
        let r = self.records.get(token)?;
        r.status(now).ok()?;
        Some(r.death().saturating_duration_since(now))
    }
}

/// One emulated app.
struct AppState {
    secret: String,
    ip_whitelist: Option<Vec<IpAddr>>,
    classic: Slots,
    stable: Slots,
    last_forced_refresh: Option<Instant>,
    /// The UTC day the daily counters below belong to.
    quota_day: u64,
    token_calls_today: u32,
    stable_calls_today: u32,
    forced_refreshes_today: u32,
    stats: AppStats,
    messages: Vec<Value>,
    /// The 自定义菜单 and what menus know of followers.
    menus: Menus,
}

impl AppState {
    fn roll_day(&mut self, day: u64) {
        if self.quota_day != day {
            self.quota_day = day;
            self.token_calls_today = 0;
            self.stable_calls_today = 0;
            self.forced_refreshes_today = 0;
        }
    }

    /// `Err(40164)` unless the caller may fetch tokens from `peer`.
    fn check_ip(&self, peer: Option<IpAddr>, rng: &mut StdRng) -> Result<(), Reply> {
        let Some(list) = &self.ip_whitelist else {
            return Ok(());
        };
        let allowed =
            peer.is_some_and(|p| list.iter().any(|w| w.to_canonical() == p.to_canonical()));
        if allowed {
            return Ok(());
        }
        let (v4, v6) = match peer.map(|p| p.to_canonical()) {
            Some(IpAddr::V4(v4)) => (v4.to_string(), v4.to_ipv6_mapped().to_string()),
            Some(IpAddr::V6(v6)) => (v6.to_string(), v6.to_string()),
            None => ("unknown".to_owned(), "unknown".to_owned()),
        };
        let rid = rid(rng);
        Err(Reply::error(
            40164,
            format!("invalid ip {v4} ipv6 {v6}, not in whitelist rid: {rid}"),
        ))
    }
}

/// Durations and limits from [`EmulatorConfig`], minus the apps.
#[derive(Clone, Debug)]
struct Settings {
    token_lifetime: Duration,
    overlap: Duration,
    ticket_lifetime: Duration,
    daily_token_quota: u32,
    daily_stable_quota: u32,
    force_refresh_daily_limit: u32,
    force_refresh_min_interval: Duration,
}

/// The whole emulated platform.
pub(crate) struct State {
    settings: Settings,
    /// By appid; `BTreeMap` so listings come out sorted.
    apps: BTreeMap<String, AppState>,
    tokens: TokenTable,
    faults: Vec<Fault>,
}

/// The body of `POST /cgi-bin/stable_token`.
#[derive(Debug, Default, serde::Deserialize)]
struct StableBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    force_refresh: Option<bool>,
}

impl StableBody {
    fn parse(body: &[u8]) -> Option<StableBody> {
        serde_json::from_slice(body).ok()
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| !v.is_empty())
}

impl State {
    /// A fresh platform for `config`; if an appid is listed twice the first entry wins.
    pub fn new(config: &EmulatorConfig, rng: StdRng) -> Self {
        let mut apps = BTreeMap::new();
        for app in &config.apps {
            apps.entry(app.appid.clone()).or_insert_with(|| AppState {
                secret: app.secret.clone(),
                ip_whitelist: app.ip_whitelist.clone(),
                classic: Slots::default(),
                stable: Slots::default(),
                last_forced_refresh: None,
                quota_day: 0,
                token_calls_today: 0,
                stable_calls_today: 0,
                forced_refreshes_today: 0,
                stats: AppStats::default(),
                messages: Vec::new(),
                menus: Menus::default(),
            });
        }
        State {
            settings: Settings {
                token_lifetime: config.token_lifetime,
                overlap: config.overlap,
                ticket_lifetime: config.ticket_lifetime,
                daily_token_quota: config.daily_token_quota,
                daily_stable_quota: config.daily_stable_quota,
                force_refresh_daily_limit: config.force_refresh_daily_limit,
                force_refresh_min_interval: config.force_refresh_min_interval,
            },
            apps,
            tokens: TokenTable {
                records: HashMap::new(),
                rng,
            },
            faults: Vec::new(),
        }
    }

    /// First step of every call: count the attempt against the app it belongs to, then consult
    /// the injected faults.
    pub fn begin(&mut self, req: &ApiRequest) -> FaultOutcome {
        let token = req.param("access_token");
        let (appid, ticket_type, forced) = match req.route {
            Route::Token => (req.param("appid").map(str::to_owned), None, false),
            Route::StableToken => {
                let body = StableBody::parse(&req.body).unwrap_or_default();
                let forced = body.force_refresh == Some(true);
                (non_empty(&body.appid).map(str::to_owned), None, forced)
            }
            Route::Ticket => (
                self.tokens.owner(token).map(str::to_owned),
                Some(req.param("type")),
                false,
            ),
            Route::CustomSend | Route::MediaUpload | Route::Menu(_) | Route::Other => {
                (self.tokens.owner(token).map(str::to_owned), None, false)
            }
        };
        if let Some(app) = appid.and_then(|a| self.apps.get_mut(&a)) {
            let s = &mut app.stats;
            match req.route {
                Route::Token => s.token_calls.attempt(),
                Route::StableToken => {
                    s.stable_token_calls.attempt();
                    if forced {
                        s.force_refresh_calls.attempt();
                    }
                }
                Route::Ticket => ticket_count(s, ticket_type.flatten()).attempt(),
                Route::CustomSend => s.custom_send_calls.attempt(),
                Route::MediaUpload | Route::Menu(_) | Route::Other => s.other_api_calls.attempt(),
            }
        }
        fault::take(&mut self.faults, req.route.kind())
    }

    /// Second step: what WeChat answers to the call at `clock`.
    pub fn answer(&mut self, req: &ApiRequest, clock: Clock) -> Reply {
        let result = match req.route {
            Route::Token => self.classic_token(req, clock),
            Route::StableToken => self.stable_token(req, clock),
            Route::Ticket => self.ticket(req, clock),
            Route::CustomSend => self.custom_send(req, clock),
            Route::MediaUpload => self.media_upload(req, clock),
            Route::Menu(call) => self.menu(call, req, clock),
            Route::Other => self.other_api(req, clock),
        };
        result.unwrap_or_else(|err| err)
    }

    /// `GET /cgi-bin/token`.
    fn classic_token(&mut self, req: &ApiRequest, clock: Clock) -> Result<Reply, Reply> {
        if req.method != Method::Get {
            return Err(Reply::error(43001, errmsg::REQUIRE_GET));
        }
        if req.param("grant_type") != Some("client_credential") {
            return Err(Reply::error(40002, errmsg::GRANT_TYPE));
        }
        let appid = req
            .param("appid")
            .ok_or_else(|| Reply::error(41002, errmsg::APPID_MISSING))?;
        let secret = req
            .param("secret")
            .ok_or_else(|| Reply::error(41004, errmsg::SECRET_MISSING))?;
        let app = self
            .apps
            .get_mut(appid)
            .ok_or_else(|| Reply::error(40013, errmsg::INVALID_APPID))?;
        if app.secret != secret {
            return Err(Reply::error(40001, errmsg::INVALID_CREDENTIAL));
        }
        app.check_ip(req.peer, &mut self.tokens.rng)?;
        app.roll_day(clock.day);
        if app.token_calls_today >= self.settings.daily_token_quota {
            return Err(quota_exceeded(&mut self.tokens.rng));
        }
        app.token_calls_today += 1;
        let s = &self.settings;
        let token = self.tokens.issue(
            &mut app.classic,
            appid,
            s.token_lifetime,
            s.overlap,
            clock.now,
        );
        app.stats.token_calls.success();
        tracing::debug!(appid, "emulator issued a classic access_token");
        Ok(Reply::Json(json!({
            "access_token": token,
            "expires_in": s.token_lifetime.as_secs(),
        })))
    }

    /// `POST /cgi-bin/stable_token`.
    fn stable_token(&mut self, req: &ApiRequest, clock: Clock) -> Result<Reply, Reply> {
        if req.method != Method::Post {
            return Err(Reply::error(43002, errmsg::REQUIRE_POST));
        }
        let body =
            StableBody::parse(&req.body).ok_or_else(|| Reply::error(47001, errmsg::DATA_FORMAT))?;
        if body.grant_type.as_deref() != Some("client_credential") {
            return Err(Reply::error(40002, errmsg::GRANT_TYPE));
        }
        let appid =
            non_empty(&body.appid).ok_or_else(|| Reply::error(41002, errmsg::APPID_MISSING))?;
        let secret =
            non_empty(&body.secret).ok_or_else(|| Reply::error(41004, errmsg::SECRET_MISSING))?;
        let app = self
            .apps
            .get_mut(appid)
            .ok_or_else(|| Reply::error(40013, errmsg::INVALID_APPID))?;
        if app.secret != secret {
            return Err(Reply::error(40125, errmsg::INVALID_SECRET));
        }
        app.check_ip(req.peer, &mut self.tokens.rng)?;
        app.roll_day(clock.day);
        let s = &self.settings;
        if app.stable_calls_today >= s.daily_stable_quota {
            return Err(quota_exceeded(&mut self.tokens.rng));
        }
        let forced = body.force_refresh == Some(true);
        let mut refresh = false;
        if forced {
            if app.forced_refreshes_today >= s.force_refresh_daily_limit {
                return Err(quota_exceeded(&mut self.tokens.rng));
            }
            // "consecutive forced calls must be ≥ 30 s apart, 否则不会刷新": too soon after the
            // last forced refresh, the call is answered in normal mode.
            let too_soon = app.last_forced_refresh.is_some_and(|t| {
                clock.now.saturating_duration_since(t) < s.force_refresh_min_interval
            });
            if !too_soon {
                refresh = true;
                app.forced_refreshes_today += 1;
                app.last_forced_refresh = Some(clock.now);
            }
        }
        app.stable_calls_today += 1;
        // Normal mode: the current token while it has more than `overlap` left.
        let current = app
            .stable
            .current
            .as_deref()
            .and_then(|t| Some((t, self.tokens.remaining(t, clock.now)?)))
            .filter(|(_, left)| *left > s.overlap);
        let (token, expires_in) = match current {
            Some((token, left)) if !refresh => (token.to_owned(), left.as_secs()),
            _ => {
                let token = self.tokens.issue(
                    &mut app.stable,
                    appid,
                    s.token_lifetime,
                    s.overlap,
                    clock.now,
                );
                app.stats.stable_tokens_issued += 1;
                tracing::debug!(appid, forced, "emulator issued a stable access_token");
                (token, s.token_lifetime.as_secs())
            }
        };
        app.stats.stable_token_calls.success();
        if forced {
            app.stats.force_refresh_calls.success();
        }
        Ok(Reply::Json(json!({
            "access_token": token,
            "expires_in": expires_in,
        })))
    }

    /// `GET /cgi-bin/ticket/getticket`.
    fn ticket(&mut self, req: &ApiRequest, clock: Clock) -> Result<Reply, Reply> {
        if req.method != Method::Get {
            return Err(Reply::error(43001, errmsg::REQUIRE_GET));
        }
        let appid = self
            .tokens
            .check(req.param("access_token"), clock.now)?
            .to_owned();
        let ticket_type = req.param("type");
        if !matches!(ticket_type, Some("jsapi" | "wx_card")) {
            return Err(Reply::error(40097, errmsg::INVALID_ARGS));
        }
        let ticket = random_string(&mut self.tokens.rng, 86);
        if let Some(app) = self.apps.get_mut(&appid) {
            ticket_count(&mut app.stats, ticket_type).success();
        }
        tracing::debug!(appid, ticket_type, "emulator issued a ticket");
        Ok(Reply::Json(json!({
            "errcode": 0,
            "errmsg": "ok",
            "ticket": ticket,
            "expires_in": self.settings.ticket_lifetime.as_secs(),
        })))
    }

    /// `POST /cgi-bin/message/custom/send`.
    fn custom_send(&mut self, req: &ApiRequest, clock: Clock) -> Result<Reply, Reply> {
        if req.method != Method::Post {
            return Err(Reply::error(43002, errmsg::REQUIRE_POST));
        }
        let appid = self
            .tokens
            .check(req.param("access_token"), clock.now)?
            .to_owned();
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return Err(Reply::error(44002, errmsg::EMPTY_POST));
        }
        let message: Value = serde_json::from_slice(&req.body)
            .map_err(|_| Reply::error(47001, errmsg::DATA_FORMAT))?;
        let has = |field: &str| {
            message
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        };
        if !has("touser") || !has("msgtype") {
            return Err(Reply::error(47001, errmsg::DATA_FORMAT));
        }
        if let Some(app) = self.apps.get_mut(&appid) {
            app.stats.custom_send_calls.success();
            app.messages.push(message);
        }
        tracing::debug!(appid, "emulator recorded a customer-service message");
        Ok(Reply::ok())
    }

    /// The 自定义菜单 interfaces (`menu.rs`), behind the token check.
    fn menu(&mut self, call: MenuCall, req: &ApiRequest, clock: Clock) -> Result<Reply, Reply> {
        let appid = self
            .tokens
            .check(req.param("access_token"), clock.now)?
            .to_owned();
        let Some(app) = self.apps.get_mut(&appid) else {
            return Err(Reply::error(40013, errmsg::INVALID_APPID));
        };
        match app
            .menus
            .answer(call, req.method == Method::Post, &req.body)
        {
            Ok(answer) => {
                app.stats.other_api_calls.success();
                Ok(Reply::Json(answer))
            }
            Err(refusal) => Err(Reply::error(refusal.errcode, refusal.errmsg)),
        }
    }

    /// Sets what the menus know of a follower; false for an unknown appid.
    pub fn set_user(&mut self, appid: &str, openid: &str, user: EmulatedUser) -> bool {
        match self.apps.get_mut(appid) {
            Some(app) => {
                app.menus.users.insert(openid.to_owned(), user);
                true
            }
            None => false,
        }
    }

    /// Any other `/cgi-bin/` path: a valid token is all it takes.
    fn other_api(&mut self, req: &ApiRequest, clock: Clock) -> Result<Reply, Reply> {
        let appid = self
            .tokens
            .check(req.param("access_token"), clock.now)?
            .to_owned();
        if let Some(app) = self.apps.get_mut(&appid) {
            app.stats.other_api_calls.success();
        }
        Ok(super::surface::address_list(&req.path).map_or_else(Reply::ok, Reply::Json))
    }

    /// `POST /cgi-bin/media/upload`: WeChat's answer (`type`, `media_id`, `created_at`) plus
    /// two fields of the emulator's own, `received_bytes` and `received_sha256` of the raw
    /// request body, so a test can tell the upload arrived whole.
    fn media_upload(&mut self, req: &ApiRequest, clock: Clock) -> Result<Reply, Reply> {
        use sha2::{Digest, Sha256};
        let Reply::Json(_) = self.other_api(req, clock)? else {
            return Err(Reply::error(-1, "system error"));
        };
        let digest = hex::encode(Sha256::digest(&req.body));
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Reply::Json(json!({
            "type": req.param("type").unwrap_or("image"),
            "media_id": format!("emu-media-{}", &digest[..16]),
            "created_at": created_at,
            "received_bytes": req.body.len(),
            "received_sha256": digest,
        })))
    }

    // ---- controls ----

    /// The appids, sorted.
    pub fn appids(&self) -> Vec<String> {
        self.apps.keys().cloned().collect()
    }

    pub fn has_app(&self, appid: &str) -> bool {
        self.apps.contains_key(appid)
    }

    /// The configuration without secrets, for `GET /_emulator/`.
    pub fn summary(&self) -> Value {
        let s = &self.settings;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        json!({
            "apps": self.appids(),
            "token_lifetime_ms": ms(s.token_lifetime),
            "overlap_ms": ms(s.overlap),
            "ticket_lifetime_ms": ms(s.ticket_lifetime),
            "daily_token_quota": s.daily_token_quota,
            "daily_stable_quota": s.daily_stable_quota,
            "force_refresh_daily_limit": s.force_refresh_daily_limit,
            "force_refresh_min_interval_ms": ms(s.force_refresh_min_interval),
            "faults": self.faults.len(),
            "implemented": super::surface::IMPLEMENTED,
            "echoed": "any other /cgi-bin/ path: its access_token is checked, then it answers {\"errcode\":0,\"errmsg\":\"ok\"}",
        })
    }

    pub fn stats(&self, appid: &str) -> Option<AppStats> {
        self.apps.get(appid).map(|a| a.stats)
    }

    pub fn all_stats(&self) -> BTreeMap<String, AppStats> {
        self.apps
            .iter()
            .map(|(id, a)| (id.clone(), a.stats))
            .collect()
    }

    pub fn messages(&self, appid: &str) -> Option<Vec<Value>> {
        self.apps.get(appid).map(|a| a.messages.clone())
    }

    /// Consults the faults for a call answered outside this state machine (the OAuth calls).
    pub fn take_fault(&mut self, kind: CallKind) -> FaultOutcome {
        fault::take(&mut self.faults, kind)
    }

    pub fn inject(&mut self, fault: Fault) {
        if fault.times != Some(0) {
            self.faults.push(fault);
        }
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.faults.clone()
    }

    /// Removes every fault; returns how many there were.
    pub fn clear_faults(&mut self) -> usize {
        std::mem::take(&mut self.faults).len()
    }

    /// Returns false for an unknown appid.
    pub fn set_ip_whitelist(&mut self, appid: &str, list: Option<Vec<IpAddr>>) -> bool {
        match self.apps.get_mut(appid) {
            Some(app) => {
                app.ip_whitelist = list;
                true
            }
            None => false,
        }
    }

    /// Makes every usable token of the app expire now (42001 from then on); returns how many.
    pub fn expire_all_tokens(&mut self, appid: &str, now: Instant) -> usize {
        let mut n = 0;
        for r in self.tokens.records.values_mut() {
            if r.appid == appid && r.status(now).is_ok() {
                r.expires_at = now;
                n += 1;
            }
        }
        n
    }

    /// Acts out a refresh by someone else holding the AppSecret (an old server, a script): each
    /// family that has issued a token issues a new one to that other party, and every token the
    /// app held so far dies now with 40001, as once WeChat's overlap after a foreign refresh is
    /// over. A stable_token call in normal mode then gets the other party's token, as on the
    /// real platform. Returns how many usable tokens died.
    pub fn revoke_tokens(&mut self, appid: &str, now: Instant) -> usize {
        let Some(app) = self.apps.get_mut(appid) else {
            return 0;
        };
        let s = &self.settings;
        let mut revoked = 0;
        for slots in [&mut app.classic, &mut app.stable] {
            if slots.current.is_none() {
                continue;
            }
            let old = [slots.current.clone(), slots.previous.clone()];
            self.tokens
                .issue(slots, appid, s.token_lifetime, s.overlap, now);
            for token in old.iter().flatten() {
                if self.tokens.remaining(token, now).is_some() {
                    revoked += 1;
                }
                self.tokens.kill_at(token, now);
            }
        }
        revoked
    }

    /// The newest token of a family, dead or alive.
    pub fn current_token(&self, appid: &str, stable: bool) -> Option<String> {
        let app = self.apps.get(appid)?;
        let slots = if stable { &app.stable } else { &app.classic };
        slots.current.clone()
    }
}

/// The ticket counter for a `type` parameter.
fn ticket_count<'a>(stats: &'a mut AppStats, ticket_type: Option<&str>) -> &'a mut CallCount {
    match ticket_type {
        Some("jsapi") => &mut stats.ticket_calls.jsapi,
        Some("wx_card") => &mut stats.ticket_calls.wx_card,
        _ => &mut stats.ticket_calls.invalid_type,
    }
}

fn quota_exceeded(rng: &mut StdRng) -> Reply {
    Reply::error(45009, format!("{} rid: {}", errmsg::QUOTA, rid(rng)))
}

/// A request id as WeChat appends to some errmsgs: `6523e2f5-1b2f3c4d-5e6f7a8b`.
fn rid(rng: &mut StdRng) -> String {
    let [a, b, c]: [u32; 3] = rng.gen();
    format!("{a:08x}-{b:08x}-{c:08x}")
}

fn random_string(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(URL_SAFE[rng.gen_range(0..URL_SAFE.len())]))
        .collect()
}

/// An access_token shaped like WeChat's: two digits, `_`, then 133 URL-safe characters
/// (136 in all, ~800 random bits).
fn random_token(rng: &mut StdRng) -> String {
    let prefix: u8 = rng.gen_range(10..100);
    format!("{prefix}_{}", random_string(rng, 133))
}

#[cfg(test)]
mod tests {
    use super::super::{EmulatedApp, EmulatorConfig};
    use super::*;
    use rand::SeedableRng;

    const APPID: &str = "wx_test_app";
    const SECRET: &str = "s3cret";

    fn config() -> EmulatorConfig {
        EmulatorConfig {
            apps: vec![EmulatedApp::new(APPID, SECRET)],
            ..EmulatorConfig::default()
        }
    }

    struct Rig {
        state: State,
        clock: Clock,
    }

    impl Rig {
        fn new(config: EmulatorConfig) -> Self {
            Rig {
                state: State::new(&config, StdRng::seed_from_u64(7)),
                clock: Clock {
                    now: Instant::now(),
                    day: 20_000,
                },
            }
        }

        fn advance(&mut self, secs: u64) {
            self.clock.now += Duration::from_secs(secs);
        }

        fn call(&mut self, path: &str, method: Method, query: &str, body: &str) -> Value {
            let req = ApiRequest::new(
                path,
                method,
                Some(query),
                body.as_bytes().to_vec(),
                Some(IpAddr::from([127, 0, 0, 1])),
            );
            let outcome = self.state.begin(&req);
            let reply = match outcome.answer {
                Some(kind) => Reply::from_fault(kind),
                None => self.state.answer(&req, self.clock),
            };
            match reply {
                Reply::Json(v) => v,
                Reply::Garbage(body) => Value::String(body),
                Reply::HttpStatus(s) => json!(s),
            }
        }

        fn classic(&mut self) -> Value {
            let q = format!("grant_type=client_credential&appid={APPID}&secret={SECRET}");
            self.call("/cgi-bin/token", Method::Get, &q, "")
        }

        fn stable(&mut self, force: bool) -> Value {
            let body = json!({"grant_type":"client_credential","appid":APPID,"secret":SECRET,"force_refresh":force});
            self.call("/cgi-bin/stable_token", Method::Post, "", &body.to_string())
        }

        fn use_token(&mut self, token: &Value) -> i64 {
            let q = format!("access_token={}", token.as_str().unwrap());
            let v = self.call("/cgi-bin/user/get", Method::Get, &q, "");
            v["errcode"].as_i64().unwrap()
        }
    }

    #[test]
    fn classic_rotation_overlap_and_expiry() {
        let mut rig = Rig::new(config());
        let t1 = rig.classic()["access_token"].clone();
        assert!(t1.as_str().unwrap().len() >= 100);
        let t2 = rig.classic()["access_token"].clone();
        assert_eq!(rig.use_token(&t1), 0, "previous token within overlap");
        rig.advance(299);
        assert_eq!(rig.use_token(&t1), 0);
        rig.advance(1);
        assert_eq!(rig.use_token(&t1), 40001, "overlap over");
        let t3 = rig.classic()["access_token"].clone();
        let t4 = rig.classic()["access_token"].clone();
        assert_eq!(
            rig.use_token(&t2),
            40001,
            "older than previous dies at once"
        );
        assert_eq!(rig.use_token(&t3), 0);
        rig.advance(7100);
        rig.classic();
        assert_eq!(rig.use_token(&t4), 0, "superseded 100 s before its expiry");
        rig.advance(100);
        assert_eq!(
            rig.use_token(&t4),
            42001,
            "overlap capped at its own expiry"
        );
    }

    #[test]
    fn natural_expiry_is_42001() {
        let mut rig = Rig::new(config());
        let t = rig.classic()["access_token"].clone();
        rig.advance(7199);
        assert_eq!(rig.use_token(&t), 0);
        rig.advance(1);
        assert_eq!(rig.use_token(&t), 42001);
        assert_eq!(
            rig.use_token(&json!("never-issued")),
            40001,
            "unknown tokens are invalid credentials"
        );
    }

    #[test]
    fn quota_resets_on_a_new_day() {
        let mut rig = Rig::new(EmulatorConfig {
            daily_token_quota: 2,
            ..config()
        });
        assert!(rig.classic()["access_token"].is_string());
        assert!(rig.classic()["access_token"].is_string());
        let over = rig.classic();
        assert_eq!(over["errcode"], 45009);
        assert!(over["errmsg"].as_str().unwrap().contains(" rid: "));
        let stats = rig.state.stats(APPID).unwrap();
        assert_eq!(stats.token_calls, CallCount { ok: 2, attempts: 3 });
        rig.clock.day += 1;
        assert!(rig.classic()["access_token"].is_string());
    }

    #[test]
    fn stable_normal_mode_reuses_then_renews_in_the_last_overlap() {
        let mut rig = Rig::new(config());
        let a = rig.stable(false);
        assert_eq!(a["expires_in"], 7200);
        rig.advance(100);
        let b = rig.stable(false);
        assert_eq!(b["access_token"], a["access_token"]);
        assert_eq!(b["expires_in"], 7100);
        rig.advance(6800); // 300 s left: no longer more than the overlap
        let c = rig.stable(false);
        assert_ne!(c["access_token"], a["access_token"]);
        assert_eq!(c["expires_in"], 7200);
        assert_eq!(
            rig.use_token(&a["access_token"]),
            0,
            "old one lives to its expiry"
        );
        rig.advance(300);
        assert_eq!(rig.use_token(&a["access_token"]), 42001);
        assert_eq!(rig.state.stats(APPID).unwrap().stable_tokens_issued, 2);
    }

    #[test]
    fn stable_force_refresh_interval_leak_and_limit() {
        let mut rig = Rig::new(EmulatorConfig {
            force_refresh_daily_limit: 3,
            ..config()
        });
        let leaked = rig.stable(false)["access_token"].clone();
        let f1 = rig.stable(true)["access_token"].clone();
        assert_ne!(f1, leaked);
        assert_eq!(rig.use_token(&leaked), 0, "still in its overlap");
        rig.advance(10);
        let same = rig.stable(true)["access_token"].clone();
        assert_eq!(same, f1, "too soon: not refreshed");
        rig.advance(20);
        let f2 = rig.stable(true)["access_token"].clone();
        assert_ne!(f2, f1);
        assert_eq!(
            rig.use_token(&leaked),
            40001,
            "two forced refreshes kill a leak"
        );
        assert_eq!(rig.use_token(&f1), 0);
        rig.advance(30);
        assert!(rig.stable(true)["access_token"].is_string());
        rig.advance(30);
        assert_eq!(rig.stable(true)["errcode"], 45009, "daily limit of 3");
        assert!(
            rig.stable(false)["access_token"].is_string(),
            "normal mode still works"
        );
        let st = rig.state.stats(APPID).unwrap();
        assert_eq!(st.force_refresh_calls, CallCount { ok: 4, attempts: 5 });
        assert_eq!(st.stable_tokens_issued, 4);
    }

    #[test]
    fn families_are_isolated() {
        let mut rig = Rig::new(config());
        let s = rig.stable(false)["access_token"].clone();
        for _ in 0..3 {
            rig.classic();
        }
        assert_eq!(rig.use_token(&s), 0);
        let c = rig.classic()["access_token"].clone();
        rig.stable(true);
        rig.advance(31);
        rig.stable(true);
        assert_eq!(rig.use_token(&c), 0);
    }

    #[test]
    fn expire_all_makes_tokens_42001() {
        let mut rig = Rig::new(config());
        let c = rig.classic()["access_token"].clone();
        let s = rig.stable(false)["access_token"].clone();
        assert_eq!(rig.state.expire_all_tokens(APPID, rig.clock.now), 2);
        assert_eq!(rig.use_token(&c), 42001);
        assert_eq!(rig.use_token(&s), 42001);
        let s2 = rig.stable(false)["access_token"].clone();
        assert_ne!(s2, s, "stable renews an expired token");
    }

    #[test]
    fn revoke_acts_out_a_foreign_refresh() {
        let mut rig = Rig::new(config());
        let c = rig.classic()["access_token"].clone();
        let s = rig.stable(false)["access_token"].clone();
        assert_eq!(rig.state.revoke_tokens(APPID, rig.clock.now), 2);
        assert_eq!(rig.use_token(&c), 40001, "no overlap left");
        assert_eq!(rig.use_token(&s), 40001);
        let foreign = rig.state.current_token(APPID, true).unwrap();
        let s2 = rig.stable(false)["access_token"].clone();
        assert_eq!(
            s2,
            foreign.as_str(),
            "normal mode hands out the other party's token"
        );
        assert_eq!(rig.use_token(&s2), 0);
        assert_eq!(rig.state.revoke_tokens("wx_unknown", rig.clock.now), 0);
    }

    #[test]
    fn whitelist_message_names_the_ip() {
        let mut rig = Rig::new(config());
        assert!(rig
            .state
            .set_ip_whitelist(APPID, Some(vec![IpAddr::from([10, 0, 0, 1])])));
        let v = rig.classic();
        assert_eq!(v["errcode"], 40164);
        let msg = v["errmsg"].as_str().unwrap();
        assert!(
            msg.starts_with("invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist rid: "),
            "{msg}"
        );
        rig.state
            .set_ip_whitelist(APPID, Some(vec!["::ffff:127.0.0.1".parse().unwrap()]));
        assert!(
            rig.classic()["access_token"].is_string(),
            "mapped form matches"
        );
    }

    #[test]
    fn malformed_input_gets_wechat_errors() {
        let mut rig = Rig::new(config());
        let post = |rig: &mut Rig, path: &str, q: &str, body: &str| {
            rig.call(path, Method::Post, q, body)["errcode"].clone()
        };
        assert_eq!(post(&mut rig, "/cgi-bin/stable_token", "", "{"), 47001);
        assert_eq!(post(&mut rig, "/cgi-bin/stable_token", "", "[1]"), 47001);
        assert_eq!(
            post(
                &mut rig,
                "/cgi-bin/stable_token",
                "",
                r#"{"grant_type":"client_credential","appid":1}"#
            ),
            47001
        );
        assert_eq!(post(&mut rig, "/cgi-bin/token", "", ""), 43001);
        let t = rig.classic()["access_token"].as_str().unwrap().to_owned();
        let q = format!("access_token={t}");
        assert_eq!(
            post(&mut rig, "/cgi-bin/message/custom/send", &q, " "),
            44002
        );
        assert_eq!(
            post(&mut rig, "/cgi-bin/message/custom/send", &q, "\u{0}\u{ff}"),
            47001
        );
        assert_eq!(
            post(
                &mut rig,
                "/cgi-bin/message/custom/send",
                &q,
                r#"{"touser":"o"}"#
            ),
            47001
        );
        assert_eq!(
            post(
                &mut rig,
                "/cgi-bin/message/custom/send",
                "access_token=",
                "{}"
            ),
            41001
        );
        let q = format!("access_token={t}&type=nope");
        assert_eq!(
            rig.call("/cgi-bin/ticket/getticket", Method::Get, &q, "")["errcode"],
            40097
        );
    }

    #[test]
    fn tokens_are_url_safe_and_distinct() {
        let mut rng = StdRng::seed_from_u64(1);
        let a = random_token(&mut rng);
        let b = random_token(&mut rng);
        assert_ne!(a, b);
        assert_eq!(a.len(), 136);
        assert!(a.bytes().all(|c| URL_SAFE.contains(&c)));
    }

    #[test]
    fn dead_tokens_are_pruned_after_a_day() {
        let mut rig = Rig::new(config());
        rig.classic();
        rig.classic();
        rig.classic();
        assert_eq!(rig.state.tokens.records.len(), 3);
        rig.advance(7200 + KEEP_DEAD.as_secs());
        rig.classic();
        assert_eq!(rig.state.tokens.records.len(), 1);
    }
}
