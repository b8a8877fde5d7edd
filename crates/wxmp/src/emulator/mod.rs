//! The offline WeChat platform: `api.weixin.qq.com` on your own machine.
//!
//! wxmp's token core, JS-SDK tickets and 客服消息 all talk to WeChat, which is slow to set up,
//! rate-limited and impossible to make fail on demand. The emulator answers the same URLs with
//! the same JSON and the same rules as WeChat documents them: `/cgi-bin/token` rotation with the 5-minute
//! overlap, `/cgi-bin/stable_token` normal and forced modes, daily quotas, the IP whitelist,
//! `getticket`, `message/custom/send`, the 自定义菜单 interfaces (judged by the same checks as
//! the config file, see `menu`) and a token check on every other `/cgi-bin/` path. Tests
//! can inject faults (`-1`, garbage, delays, HTTP errors), read call counters and expire tokens,
//! in process through [`Emulator`] or from another process through `/_emulator/` (see
//! [`Emulator::router`]).
//!
//! It is used three ways: `wxmp emulator --listen ADDR` ([`run`]), in-process by integration
//! tests ([`Emulator::spawn`] on `127.0.0.1:0`, then point `upstream` at
//! [`EmulatorHandle::base_url`]), and inside `wxmp serve --dev`.
//!
//! Layout: `state` is the platform's rules as synchronous code over plain data (clock passed
//! in, so it is unit-tested by stepping time); `fault` and `stats` are its data; `api` and
//! `control` are thin axum handlers. [`Emulator`] glues them with one std `Mutex`, held only for
//! the length of one decision and never across an `.await` (an injected delay sleeps outside).
//!
//! Time: expiry uses `tokio::time::Instant`, so `tokio::time::pause()` drives it. A "day" for
//! the quotas is the UTC calendar date from the system clock: the daily counters reset the
//! first time an app is called on a new date.

mod api;
mod control;
mod fault;
mod menu;
pub mod oauth;
mod state;
mod stats;
pub mod surface;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::routing::any;
use axum::Router;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use fault::{Endpoint, Fault, FaultKind, FaultShapeError};
pub use menu::EmulatedUser;
pub use oauth::OAuthStats;
pub use stats::{AppStats, CallCount, TicketCalls};

use state::{ApiRequest, Clock, Reply, State};

/// The largest `/cgi-bin/` request body the emulator reads: above WeChat's 10 MB media limit.
const MAX_API_BODY: usize = 16 << 20;

/// The appid of the app in [`EmulatorConfig::demo`] (the `serve --dev` app, docs/configuration.md's example).
pub const DEMO_APPID: &str = "wx0123456789abcdef";
/// The AppSecret of the app in [`EmulatorConfig::demo`]. Not a secret: the emulator is offline.
pub const DEMO_SECRET: &str = "wxmp-demo-secret";

/// One 公众号 the emulator knows: its AppID, AppSecret and optional IP whitelist.
#[derive(Clone, PartialEq, Eq)]
pub struct EmulatedApp {
    /// The AppID (`wx…`), as callers pass it in `appid`.
    pub appid: String,
    /// The AppSecret; a different one gets 40001 (`/cgi-bin/token`) or 40125 (`stable_token`).
    pub secret: String,
    /// IP白名单: when set, token calls from any other address get 40164. IPv4 addresses also
    /// match their IPv4-mapped IPv6 form.
    pub ip_whitelist: Option<Vec<IpAddr>>,
}

impl EmulatedApp {
    /// An app with no IP whitelist.
    pub fn new(appid: impl Into<String>, secret: impl Into<String>) -> Self {
        EmulatedApp {
            appid: appid.into(),
            secret: secret.into(),
            ip_whitelist: None,
        }
    }

    /// Sets the IP whitelist.
    #[must_use]
    pub fn with_ip_whitelist(mut self, ips: Vec<IpAddr>) -> Self {
        self.ip_whitelist = Some(ips);
        self
    }
}

/// Prints the secret as `***`, so configs can be logged.
impl fmt::Debug for EmulatedApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedApp")
            .field("appid", &self.appid)
            .field("secret", &"***")
            .field("ip_whitelist", &self.ip_whitelist)
            .finish()
    }
}

/// Parses `APPID:SECRET` (for a command-line flag); the secret may itself contain `:`.
impl FromStr for EmulatedApp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((appid, secret)) if !appid.is_empty() && !secret.is_empty() => {
                Ok(EmulatedApp::new(appid, secret))
            }
            _ => Err("expected APPID:SECRET".to_owned()),
        }
    }
}

/// How the emulated platform behaves. [`Default`] is WeChat's production numbers with no apps.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// The apps that exist; any other appid gets 40013.
    pub apps: Vec<EmulatedApp>,
    /// Validity of an access_token, returned as `expires_in` (whole seconds, rounded down).
    /// Default 7200 s.
    pub token_lifetime: Duration,
    /// How long a superseded token keeps working, and the stable-token renewal window.
    /// Default 300 s ("公众平台后台会保证在5分钟内，新老access_token都可用").
    pub overlap: Duration,
    /// `expires_in` of tickets. Default 7200 s.
    pub ticket_lifetime: Duration,
    /// Successful `/cgi-bin/token` calls per app per day. Default 2000.
    pub daily_token_quota: u32,
    /// Successful `/cgi-bin/stable_token` calls per app per day. Default 500 000.
    pub daily_stable_quota: u32,
    /// Forced stable refreshes per app per day. Default 20.
    pub force_refresh_daily_limit: u32,
    /// A forced call sooner than this after the last forced refresh refreshes nothing.
    /// Default 30 s.
    pub force_refresh_min_interval: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            apps: Vec::new(),
            token_lifetime: Duration::from_secs(7200),
            overlap: Duration::from_secs(300),
            ticket_lifetime: Duration::from_secs(7200),
            daily_token_quota: 2000,
            daily_stable_quota: 500_000,
            force_refresh_daily_limit: 20,
            force_refresh_min_interval: Duration::from_secs(30),
        }
    }
}

impl EmulatorConfig {
    /// The defaults with one app, [`DEMO_APPID`] / [`DEMO_SECRET`].
    pub fn demo() -> Self {
        EmulatorConfig::default().with_app(DEMO_APPID, DEMO_SECRET)
    }

    /// Adds an app (no IP whitelist).
    #[must_use]
    pub fn with_app(mut self, appid: impl Into<String>, secret: impl Into<String>) -> Self {
        self.apps.push(EmulatedApp::new(appid, secret));
        self
    }
}

/// A running emulated platform. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct Emulator {
    /// A std `Mutex`, not tokio's: every critical section is a short synchronous decision and
    /// none spans an `.await`, so a blocking lock is both correct and cheaper.
    state: Arc<Mutex<State>>,
    /// OAuth 网页授权's codes and tokens, apart from the token state machine (same reasoning
    /// for a std `Mutex`).
    oauth: Arc<Mutex<oauth::OAuthState>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("apps", &self.appids())
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// A fresh platform: no tokens issued, no faults, counters at zero.
    pub fn new(config: EmulatorConfig) -> Self {
        let secrets = config
            .apps
            .iter()
            .map(|a| (a.appid.as_str(), a.secret.as_str()));
        Emulator {
            state: Arc::new(Mutex::new(State::new(&config, StdRng::from_entropy()))),
            oauth: Arc::new(Mutex::new(oauth::OAuthState::new(
                secrets,
                StdRng::from_entropy(),
            ))),
        }
    }

    /// All routes, ready to serve (or to `nest` under a prefix):
    ///
    /// * `/cgi-bin/token`, `/cgi-bin/stable_token`, `/cgi-bin/ticket/getticket`,
    ///   `/cgi-bin/message/custom/send`, `/cgi-bin/getcallbackip` and
    ///   `/cgi-bin/get_api_domain_ip` (`{"ip_list":["127.0.0.1"]}`), the 自定义菜单 interfaces
    ///   (`/cgi-bin/menu/{create,get,delete,addconditional,delconditional,trymatch}`,
    ///   `/cgi-bin/get_current_selfmenu_info`), and any other `/cgi-bin/…` path (token check,
    ///   then `{"errcode":0,"errmsg":"ok"}`: see [`surface`]);
    ///   `/cgi-bin/media/upload` answers `type`, `media_id` and `created_at` like WeChat, plus
    ///   `received_bytes` and `received_sha256` of the body.
    /// * Controls (JSON; errors are `{"error":{"code","message"}}` with 400/404):
    ///   - `GET /_emulator/` — settings, appids and the implemented paths, never secrets.
    ///   - `GET /_emulator/stats[?appid=]` — one app's [`AppStats`], or `{appid: AppStats}`.
    ///   - `GET /_emulator/messages?appid=` — the 客服消息 bodies received, oldest first.
    ///   - `GET /_emulator/faults` — `{"faults":[…]}`, the active faults with `times` left.
    ///   - `POST /_emulator/faults` — body: one [`Fault`] in its flat JSON form, e.g.
    ///     `{"endpoint":"token","errcode":-1,"errmsg":"system error","times":3}`; answers the
    ///     active faults.
    ///   - `DELETE /_emulator/faults` — `{"cleared":n}`.
    ///   - `POST /_emulator/expire?appid=` — `{"appid","expired":n}`: every usable token of the
    ///     app now answers 42001.
    ///   - `POST /_emulator/revoke?appid=` — `{"appid","revoked":n}`: another party holding the
    ///     AppSecret refreshed; every token the app held answers 40001 now.
    ///   - `PUT /_emulator/whitelist?appid=` — body `{"ips":["127.0.0.1"]}`; `{"ips":null}`
    ///     removes the whitelist.
    /// * OAuth 网页授权 (see [`oauth`]): `GET /connect/oauth2/authorize` (a consenting test
    ///   user, `wxmp_user=NAME`), `GET /sns/oauth2/access_token`, `/sns/oauth2/refresh_token`,
    ///   `/sns/userinfo`, `/sns/auth`.
    /// * Anything else: 404.
    ///
    /// The IP whitelist needs the peer address: serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()` (as [`Emulator::spawn`] and
    /// [`run`] do); without it the caller's IP is unknown and fails any whitelist.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/cgi-bin/{*path}", any(api::cgi_bin))
            // Media uploads reach 10 MB; axum's default for a buffered body is 2 MB.
            .layer(axum::extract::DefaultBodyLimit::max(MAX_API_BODY))
            .merge(control::routes())
            .merge(oauth::routes())
            .fallback(api::not_found)
            .with_state(self.clone())
    }

    /// Serves the emulator on `listener` in a background task. The server stops when the
    /// handle is dropped or [`EmulatorHandle::shutdown`] is called.
    pub async fn spawn(self, listener: TcpListener) -> EmulatorHandle {
        let addr = listener.local_addr().unwrap_or_else(|err| {
            tracing::warn!(%err, "emulator listener has no local address");
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let service = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            let signal = async {
                // Fires on `send` and on the sender being dropped alike.
                let _ = stopped.await;
            };
            if let Err(err) = axum::serve(listener, service)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(%err, "emulator server failed");
            }
        });
        EmulatorHandle {
            addr,
            emulator: self,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The configured appids, sorted.
    pub fn appids(&self) -> Vec<String> {
        self.lock().appids()
    }

    /// What was counted for `appid` so far (all zero for an unknown appid).
    pub fn stats(&self, appid: &str) -> AppStats {
        self.lock().stats(appid).unwrap_or_default()
    }

    /// The bodies `message/custom/send` accepted for `appid`, oldest first.
    pub fn custom_messages(&self, appid: &str) -> Vec<serde_json::Value> {
        self.lock().messages(appid).unwrap_or_default()
    }

    /// Tells the menus about a follower of `appid` (tags, phone), for `menu/trymatch`.
    /// Returns false for an unknown appid.
    pub fn set_user(&self, appid: &str, openid: &str, user: EmulatedUser) -> bool {
        self.lock().set_user(appid, openid, user)
    }

    /// Adds a fault after the existing ones (a fault with `times: Some(0)` is ignored).
    pub fn inject(&self, fault: Fault) {
        self.lock().inject(fault);
    }

    /// The active faults, with the `times` they have left.
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults()
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.lock().clear_faults();
    }

    /// Replaces an app's IP whitelist (`None` = any IP). Returns false for an unknown appid.
    pub fn set_ip_whitelist(&self, appid: &str, ips: Option<Vec<IpAddr>>) -> bool {
        self.lock().set_ip_whitelist(appid, ips)
    }

    /// Makes every still-usable token of the app (both families) expire now: they answer 42001
    /// from then on, and the next stable_token call issues a new one. Returns how many.
    pub fn expire_all_tokens(&self, appid: &str) -> usize {
        self.lock()
            .expire_all_tokens(appid, tokio::time::Instant::now())
    }

    /// Acts out another party refreshing with the app's AppSecret: every token the app held
    /// answers 40001 from now on, and each token family has a new current token that wxmp never
    /// saw (see `/_emulator/revoke`). Returns how many usable tokens died.
    pub fn revoke_tokens(&self, appid: &str) -> usize {
        self.lock()
            .revoke_tokens(appid, tokio::time::Instant::now())
    }

    /// The newest `/cgi-bin/token` token issued to the app, usable or not.
    pub fn current_token(&self, appid: &str) -> Option<String> {
        self.lock().current_token(appid, false)
    }

    /// The newest `/cgi-bin/stable_token` token issued to the app, usable or not.
    pub fn current_stable_token(&self, appid: &str) -> Option<String> {
        self.lock().current_token(appid, true)
    }

    /// Answers one `/cgi-bin/` call: count and consult faults, sleep any injected delay with
    /// the lock released, then let the state machine decide.
    async fn call(&self, req: ApiRequest) -> Reply {
        let outcome = self.lock().begin(&req);
        if !outcome.delay.is_zero() {
            tokio::time::sleep(outcome.delay).await;
        }
        if let Some(kind) = outcome.answer {
            return Reply::from_fault(kind);
        }
        self.lock().answer(&req, Clock::now())
    }

    /// What the OAuth endpoints counted so far.
    pub fn oauth_stats(&self) -> OAuthStats {
        self.oauth_lock().stats()
    }

    fn oauth_lock(&self) -> MutexGuard<'_, oauth::OAuthState> {
        self.oauth.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state; a panic elsewhere while holding it cannot leave it half-updated in a way
    /// that matters to an emulator, so poisoning is ignored rather than propagated.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An emulator serving in a background task (from [`Emulator::spawn`]).
///
/// Dropping it stops the server: it stops accepting, idle keep-alive connections are closed and
/// calls in flight are finished.
#[derive(Debug)]
pub struct EmulatorHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    emulator: Emulator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT` (loopback when bound to an unspecified address): the value for
    /// a client's `upstream`.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The emulator being served, for its controls.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops the server and waits until its listener is closed.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Serves a fresh emulator for `config` on `listener` until `shutdown` completes, then drains
/// connections (graceful). For `wxmp emulator --listen ADDR`.
pub async fn run(
    listener: TcpListener,
    config: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let emulator = Emulator::new(config);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, apps = ?emulator.appids(), "WeChat emulator listening");
    }
    let service = emulator
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}
