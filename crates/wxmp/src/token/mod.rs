//! The access_token central control server (中控): one refresher for every app, token and
//! ticket, however many instances share the store.
//!
//! Each (app, kind) pair — kind being the access_token, the `jsapi_ticket` or the `wx_card`
//! ticket — is a [`Slot`]: an in-memory copy of the credential, a local single-flight mutex,
//! and a background refresher. Serving reads the memory copy only (a std mutex, never held
//! across `.await`), so a token GET costs microseconds and keeps working while the store is
//! down. Getting a *new* credential goes through [`TokenCore::ensure`], the one place where
//! WeChat is called:
//!
//! 1. the local flight mutex: callers of this instance queue, and each re-checks the memory
//!    copy when its turn comes, so a crowd makes one attempt;
//! 2. the store: another instance may already have stored something acceptable;
//! 3. the store lock (`set_nx` with this instance's owner id and a 10-second lease): one
//!    instance fetches; the others wait for the store's change notification (polling slowly as
//!    a fallback) and take the stored result. A live holder renews its lease while it fetches
//!    (`expire_if_eq`, a compare-and-renew), so a WeChat that takes seconds to answer never
//!    lets a second instance in; a holder that dies simply lets its lease run out.
//!
//! What is "acceptable" is the caller's predicate: usable (a GET), not the stale token a
//! business server reported (passive refresh), or outside the refresh window (the
//! refresher). That one mechanism gives the conditional passive refresh, proactive refresh
//! and the fill of an empty store their single-flight for free.
//!
//! Errors that a retry cannot fix (40164, 40013, 45009 …) stop the attempt and put the slot
//! in a cooldown during which callers get the explanation without another upstream call;
//! `-1` and transport errors are retried with bounded backoff within the lease.

pub mod audit;
mod budget;
pub mod credential;
pub mod foreign;
mod reload;
mod requester;
pub mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::Rng;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use self::audit::Record;
use self::budget::Budget;
use self::credential::{now_ms, Backoff, Credential, Schedule};
use self::foreign::{Detection, ForeignStatus, ForeignWatch};
pub use self::reload::AppsApplied;
pub use self::requester::Requester;
pub use self::upstream::{TicketType, Upstream, UpstreamError};
use crate::alert::Alerter;
use crate::config::{AppConfig, TokenApi};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// The refresh lock's lease: a holder that dies frees the lock after at most this long. A
/// live holder renews it (see [`LEASE_RENEWAL`]), so it bounds the takeover after a kill -9,
/// not the length of a fetch.
pub const LOCK_LEASE: Duration = Duration::from_secs(10);
/// How often a holder renews its lease: three renewals per lease, so two may fail (a store
/// hiccup) before the lease runs out under a live holder.
const LEASE_RENEWAL: Duration = Duration::from_millis(3300);
/// How long a refresh keeps starting new upstream attempts (retries of `-1` and transport
/// errors). An attempt started within it may run for its whole
/// [`upstream::REQUEST_TIMEOUT`], so a refresh ends within the sum of the two.
pub const FETCH_BUDGET: Duration = Duration::from_secs(7);
/// How long a caller waits for another instance's refresh before giving up: longer than the
/// longest refresh ([`FETCH_BUDGET`] plus one [`upstream::REQUEST_TIMEOUT`]).
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);
/// How often a waiter re-reads the store when no notification arrives.
const WAIT_POLL: Duration = Duration::from_millis(500);
/// Cooldown after an error a retry cannot fix.
const PERMANENT_COOLDOWN: Duration = Duration::from_secs(60);
/// Cooldown after transient errors outlasted the fetch budget.
const TRANSIENT_COOLDOWN: Duration = Duration::from_secs(1);
/// Minimum spacing of `force_refresh` calls (WeChat ignores closer ones).
const FORCE_REFRESH_SPACING: Duration = Duration::from_secs(30);
/// `force_refresh` calls WeChat allows per app per day; wxmp counts them across instances and
/// refuses the next one itself, in plain words, instead of letting WeChat answer 45009.
pub const FORCE_REFRESH_DAILY: u32 = 20;
const FORCE_BUDGET: Budget = Budget {
    limit: FORCE_REFRESH_DAILY,
    window: Duration::from_secs(86_400),
};
/// WeChat's days start at midnight Beijing time (UTC+8).
const BEIJING_OFFSET_MS: u64 = 8 * 3_600_000;
/// Retry delays for `-1` and transport errors.
const RETRY: Backoff = Backoff {
    base: Duration::from_millis(200),
    cap: Duration::from_secs(2),
};

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The access_token.
    AccessToken,
    /// A ticket fetched with the access_token.
    Ticket(TicketType),
}

impl Kind {
    /// The name used in store keys, logs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AccessToken => "access_token",
            Kind::Ticket(t) => t.as_str(),
        }
    }

    const ALL: [Kind; 3] = [
        Kind::AccessToken,
        Kind::Ticket(TicketType::Jsapi),
        Kind::Ticket(TicketType::WxCard),
    ];
}

/// Why a credential was fetched from WeChat: the `reason` of refresh metrics, the status page
/// and the refresh audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshReason {
    /// Ahead of expiry, by the refresher.
    Proactive,
    /// A business server reported the current token stale.
    Passive,
    /// Nothing usable was held or stored (first start, an emptied store, expiry while idle).
    EmptyStore,
    /// A `force_refresh` of a stable token that came back unchanged while reported stale.
    ForceRefresh,
    /// WeChat rejected a token wxmp issued and had not replaced: someone else refreshed (see
    /// [`foreign`]).
    ForeignSuspected,
}

impl RefreshReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshReason::Proactive => "proactive",
            RefreshReason::Passive => "passive",
            RefreshReason::EmptyStore => "empty_store",
            RefreshReason::ForceRefresh => "force_refresh",
            RefreshReason::ForeignSuspected => "foreign_suspected",
        }
    }
}

/// Why no credential could be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No app of that name is configured.
    #[error("no app named {0:?} is configured")]
    UnknownApp(String),
    /// The app has no `secret`, so it is callback-only.
    #[error(
        "app {0:?} has no secret configured: it is callback-only, with no access_token or tickets"
    )]
    NoSecret(String),
    /// WeChat refused or failed; `explanation` says what to do.
    #[error("{explanation}")]
    Upstream {
        /// WeChat's errcode, if it gave one.
        errcode: Option<i64>,
        /// True when wxmp will succeed on its own once WeChat recovers.
        transient: bool,
        /// Plain words: what happened and what to do.
        explanation: String,
    },
    /// The store cannot be reached, and the current token is still valid: refresh later.
    #[error(
        "{0}; the current token is still valid and served, refresh again once the store is back"
    )]
    StoreUnavailable(String),
    /// Another instance holds the refresh lock and did not finish in time.
    #[error("another instance is refreshing and did not finish within {0:?}")]
    Timeout(Duration),
    /// A client reported stale tokens faster than its `refresh_per_minute`.
    #[error(
        "client {client:?} has caused {limit} passive refreshes of app {app:?} in the last 60 s, \
         its refresh_per_minute: this one is refused and the current token stays; a refresh \
         replaces the token for every caller, so retry with the token GET …/access_token serves"
    )]
    RateLimited {
        /// The client's name.
        client: String,
        /// The app.
        app: String,
        /// Its `refresh_per_minute`.
        limit: u32,
    },
    /// The day's `force_refresh` calls are used up.
    #[error(
        "app {0:?} has used the {FORCE_REFRESH_DAILY} force_refresh calls WeChat allows per day \
         (the count restarts at midnight Beijing time): the stable token WeChat keeps returning \
         was not renewed. If WeChat keeps rejecting it, someone else may be refreshing with the \
         AppSecret: see foreign_refreshes in GET /v1/apps"
    )]
    ForceRefreshExhausted(String),
}

impl TokenError {
    fn from_upstream(e: &UpstreamError) -> Self {
        TokenError::Upstream {
            errcode: e.errcode(),
            transient: e.is_transient(),
            explanation: e.explain(),
        }
    }
}

/// A credential as handed to a caller.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The access_token or ticket.
    pub value: String,
    /// Whole seconds of validity left.
    pub expires_in: u64,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Issued(***, expires_in={})", self.expires_in)
    }
}

impl Issued {
    fn from(c: &Credential, now: u64) -> Self {
        Issued {
            value: c.value.clone(),
            expires_in: c.expires_in_s(now),
        }
    }
}

/// The result of a passive refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    /// The token to use now.
    pub issued: Issued,
    /// True when the reported token was still the current one when this request got its turn
    /// and has now been replaced (by this request or the crowd it joined); false when it had
    /// already been replaced, so no upstream call was made for it.
    pub refreshed: bool,
}

/// What `/v1/apps` shows about one credential.
#[derive(Debug, Clone, Serialize, Default)]
pub struct KindStatus {
    /// Seconds since it was fetched, if held.
    pub age_s: Option<u64>,
    /// Seconds until it expires, if held.
    pub expires_in_s: Option<u64>,
    /// Unix ms of this instance's last successful upstream fetch.
    pub last_refresh_ms: Option<u64>,
    /// Why that fetch happened (see [`RefreshReason`]).
    pub last_refresh_reason: Option<&'static str>,
    /// Upstream calls made by this instance today (UTC).
    pub upstream_calls_today: u64,
    /// The last error, in plain words.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct SlotStatus {
    last_refresh_ms: Option<u64>,
    last_refresh_reason: Option<&'static str>,
    calls_day: u64,
    upstream_calls_today: u64,
    last_error: Option<String>,
    /// While set and in the future, `ensure` answers `cooldown_error` without calling WeChat.
    cooldown_until: Option<Instant>,
    cooldown_error: Option<TokenError>,
}

/// One (app, kind) pair.
struct Slot {
    app: Arc<AppConfig>,
    kind: Kind,
    /// Store key of the credential.
    key: String,
    /// Store key of the refresh lock.
    lock_key: String,
    /// The in-memory copy; a std mutex because it is only held for a clone.
    cached: Mutex<Option<Credential>>,
    /// Local single-flight: one `ensure` at a time per slot in this instance.
    flight: tokio::sync::Mutex<()>,
    /// Wakes the refresher early (the copy entered its refresh window, or a ticket was
    /// asked for the first time).
    wake: Notify,
    /// A fixed jitter for this slot in this instance, in [0, 1).
    jitter: f64,
    status: Mutex<SlotStatus>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Slot {
    fn new(app: &Arc<AppConfig>, kind: Kind) -> Self {
        let name = &app.name;
        Slot {
            app: app.clone(),
            kind,
            key: format!("token:{name}:{}", kind.as_str()),
            lock_key: format!("lock:{name}:{}", kind.as_str()),
            cached: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            jitter: rand::thread_rng().gen::<f64>(),
            status: Mutex::default(),
        }
    }

    fn cached(&self) -> Option<Credential> {
        lock(&self.cached).clone()
    }

    /// Keeps the newer of the held and the offered credential.
    fn adopt(&self, offered: &Credential) {
        let mut held = lock(&self.cached);
        let newer = held.as_ref().is_none_or(|h| {
            offered.expires_at_ms > h.expires_at_ms
                || (offered.fetched_at_ms > h.fetched_at_ms && offered.value != h.value)
        });
        if newer {
            *held = Some(offered.clone());
        }
    }

    /// How a refresh of this slot is placed: a stable access_token inside WeChat's renewal
    /// window (see [`Schedule`]), everything else ahead of it.
    fn schedule(&self) -> Schedule {
        if self.kind == Kind::AccessToken && self.app.token_api == TokenApi::Stable {
            Schedule::InsideWindow
        } else {
            Schedule::Ahead
        }
    }

    /// How long before expiry this instance refreshes `c`.
    fn lead_ms(&self, c: &Credential) -> u64 {
        c.lead_ms(self.schedule(), self.jitter)
    }

    fn count_call(&self) {
        let mut s = lock(&self.status);
        let day = now_ms() / 86_400_000;
        if s.calls_day != day {
            s.calls_day = day;
            s.upstream_calls_today = 0;
        }
        s.upstream_calls_today += 1;
    }

    fn cooldown(&self) -> Option<TokenError> {
        let s = lock(&self.status);
        match s.cooldown_until {
            Some(until) if Instant::now() < until => s.cooldown_error.clone(),
            _ => None,
        }
    }

    fn record_error(&self, e: &TokenError, cooldown: Option<Duration>) {
        let mut s = lock(&self.status);
        s.last_error = Some(e.to_string());
        if let Some(d) = cooldown {
            s.cooldown_until = Some(Instant::now() + d);
            s.cooldown_error = Some(e.clone());
        }
    }

    fn record_success(&self, reason: RefreshReason) {
        let mut s = lock(&self.status);
        s.last_refresh_ms = Some(now_ms());
        s.last_refresh_reason = Some(reason.as_str());
        s.last_error = None;
        s.cooldown_until = None;
        s.cooldown_error = None;
    }
}

struct Inner {
    store: Store,
    upstream: Upstream,
    /// This instance's lock owner id.
    owner: String,
    /// Swapped whole when a reload changes the apps (`reload`); readers take a snapshot.
    slots: ArcSwap<HashMap<(String, Kind), Arc<Slot>>>,
    apps: ArcSwap<BTreeMap<String, Arc<AppConfig>>>,
    /// Where refreshes, errors and upstream latencies are reported.
    metrics: Arc<Metrics>,
    /// Foreign-refresh alerts.
    foreign: ForeignWatch,
}

/// The 中控. Cheap to clone.
#[derive(Clone)]
pub struct TokenCore {
    inner: Arc<Inner>,
}

/// Stops the refreshers when dropped.
pub struct RefresherGuard {
    tasks: JoinSet<()>,
    /// Each slot's refresher, so a reload can stop the ones of removed or changed apps.
    by_slot: HashMap<(String, Kind), AbortHandle>,
}

impl RefresherGuard {
    /// Stops every refresher now.
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

impl Drop for RefresherGuard {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl TokenCore {
    /// A 中控 for `apps`, storing in `store` and calling `upstream`, with metrics of its own.
    pub fn new(apps: &BTreeMap<String, Arc<AppConfig>>, store: Store, upstream: Upstream) -> Self {
        Self::with_metrics(
            apps,
            store,
            upstream,
            Arc::new(Metrics::new()),
            Alerter::default(),
        )
    }

    /// Like [`TokenCore::new`], reporting to the server's `metrics` and sending foreign-refresh
    /// alerts through `alerter`.
    pub fn with_metrics(
        apps: &BTreeMap<String, Arc<AppConfig>>,
        store: Store,
        upstream: Upstream,
        metrics: Arc<Metrics>,
        alerter: Alerter,
    ) -> Self {
        let mut rng = rand::thread_rng();
        let owner = format!("{:016x}{:016x}", rng.gen::<u64>(), rng.gen::<u64>());
        let mut slots = HashMap::new();
        for (name, app) in apps {
            for kind in Kind::ALL {
                slots.insert((name.clone(), kind), Arc::new(Slot::new(app, kind)));
            }
        }
        TokenCore {
            inner: Arc::new(Inner {
                store,
                upstream,
                owner,
                slots: ArcSwap::from_pointee(slots),
                apps: ArcSwap::from_pointee(apps.clone()),
                metrics,
                foreign: ForeignWatch::new(alerter),
            }),
        }
    }

    /// The upstream client (shared with the proxy).
    pub fn upstream(&self) -> &Upstream {
        &self.inner.upstream
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The metrics this core reports to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    fn slot(&self, app: &str, kind: Kind) -> Result<Arc<Slot>, TokenError> {
        let slot = self
            .inner
            .slots
            .load()
            .get(&(app.to_owned(), kind))
            .cloned()
            .ok_or_else(|| TokenError::UnknownApp(app.to_owned()))?;
        if slot.app.secret.is_none() {
            return Err(TokenError::NoSecret(app.to_owned()));
        }
        Ok(slot)
    }

    /// Starts one refresher per credential of every app with a secret, and the watcher that
    /// applies other instances' refreshes. Dropping the guard stops them.
    pub fn start(&self) -> RefresherGuard {
        let mut guard = RefresherGuard {
            tasks: JoinSet::new(),
            by_slot: HashMap::new(),
        };
        for ((name, kind), slot) in self.inner.slots.load().iter() {
            self.start_refresher(&mut guard, name, *kind, slot);
        }
        guard.tasks.spawn(self.clone().watcher());
        guard
    }

    /// Starts `slot`'s refresher when its app has a secret.
    fn start_refresher(
        &self,
        guard: &mut RefresherGuard,
        name: &str,
        kind: Kind,
        slot: &Arc<Slot>,
    ) {
        if slot.app.secret.is_some() {
            let handle = guard.tasks.spawn(self.clone().refresher(slot.clone()));
            guard.by_slot.insert((name.to_owned(), kind), handle);
        }
    }

    /// The current access_token of `app`, fetching one only if none is usable.
    pub async fn access_token(&self, app: &str) -> Result<Issued, TokenError> {
        self.get(app, Kind::AccessToken).await
    }

    /// A ticket of `app`.
    pub async fn ticket(&self, app: &str, ticket: TicketType) -> Result<Issued, TokenError> {
        self.get(app, Kind::Ticket(ticket)).await
    }

    async fn get(&self, app: &str, kind: Kind) -> Result<Issued, TokenError> {
        let slot = self.slot(app, kind)?;
        let now = now_ms();
        if let Some(c) = slot.cached().filter(|c| c.is_usable(now)) {
            if c.needs_refresh(now, slot.lead_ms(&c)) {
                slot.wake.notify_one();
            }
            return Ok(Issued::from(&c, now));
        }
        slot.wake.notify_one();
        let ensured = self
            .ensure(
                &slot,
                |c: Option<&Credential>| c.is_none_or(|c| !c.is_usable(now_ms())),
                None,
                &Requester::wxmp(),
            )
            .await?;
        Ok(Issued::from(&ensured, now_ms()))
    }

    /// Passive refresh: replaces the access_token only if `stale` is still the current one.
    pub async fn refresh_access_token(
        &self,
        app: &str,
        stale: &str,
    ) -> Result<Refreshed, TokenError> {
        self.refresh(app, Kind::AccessToken, stale).await
    }

    /// [`TokenCore::refresh_access_token`] on behalf of `by`: counted against its
    /// `refresh_per_minute` and named in the refresh audit.
    pub async fn refresh_access_token_by(
        &self,
        app: &str,
        stale: &str,
        by: &Requester,
    ) -> Result<Refreshed, TokenError> {
        self.refresh_by(app, Kind::AccessToken, stale, by).await
    }

    /// Passive refresh of any credential: see [`TokenCore::refresh_access_token`].
    pub async fn refresh(
        &self,
        app: &str,
        kind: Kind,
        stale: &str,
    ) -> Result<Refreshed, TokenError> {
        self.refresh_by(app, kind, stale, &Requester::wxmp()).await
    }

    /// [`TokenCore::refresh`] on behalf of `by`.
    pub async fn refresh_by(
        &self,
        app: &str,
        kind: Kind,
        stale: &str,
        by: &Requester,
    ) -> Result<Refreshed, TokenError> {
        let slot = self.slot(app, kind)?;
        let now = now_ms();
        // Cheap answer first: our copy is already something else, and usable.
        if let Some(c) = slot
            .cached()
            .filter(|c| c.value != stale && c.is_usable(now))
        {
            return Ok(Refreshed {
                issued: Issued::from(&c, now),
                refreshed: false,
            });
        }
        let want =
            |c: Option<&Credential>| c.is_none_or(|c| c.value == stale || !c.is_usable(now_ms()));
        let ensured = self.ensure(&slot, want, Some(stale), by).await?;
        Ok(Refreshed {
            refreshed: ensured.value != stale,
            issued: Issued::from(&ensured, now_ms()),
        })
    }

    /// Calls WeChat through `call` with the app's access_token. When `saw_stale_token` says
    /// WeChat rejected that token (40001, 40014, 42001), asks for a conditional refresh with
    /// exactly that token and calls once more. A second rejection is returned as it is, so
    /// this never loops, and a crowd of rejections still costs one upstream token call.
    pub async fn with_access_token<R, F, Fut>(
        &self,
        app: &str,
        call: F,
        saw_stale_token: impl Fn(&R) -> bool,
    ) -> Result<R, TokenError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = R>,
    {
        self.with_access_token_by(app, &Requester::wxmp(), call, saw_stale_token)
            .await
    }

    /// [`TokenCore::with_access_token`] on behalf of `by`, whose budget the refresh counts
    /// against.
    pub async fn with_access_token_by<R, F, Fut>(
        &self,
        app: &str,
        by: &Requester,
        call: F,
        saw_stale_token: impl Fn(&R) -> bool,
    ) -> Result<R, TokenError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = R>,
    {
        let token = self.access_token(app).await?;
        let first = call(token.value.clone()).await;
        if !saw_stale_token(&first) {
            return Ok(first);
        }
        let fresh = self.refresh_access_token_by(app, &token.value, by).await?;
        tracing::info!(
            app,
            refreshed = fresh.refreshed,
            "WeChat called the access_token stale; retrying once"
        );
        Ok(call(fresh.issued.value).await)
    }

    /// Per app and credential kind, what this instance knows.
    pub fn status(&self) -> BTreeMap<String, BTreeMap<&'static str, KindStatus>> {
        let now = now_ms();
        let mut out: BTreeMap<String, BTreeMap<&'static str, KindStatus>> = BTreeMap::new();
        for ((app, kind), slot) in self.inner.slots.load().iter() {
            let cached = slot.cached();
            let s = lock(&slot.status);
            let status = KindStatus {
                age_s: cached
                    .as_ref()
                    .map(|c| now.saturating_sub(c.fetched_at_ms) / 1000),
                expires_in_s: cached.as_ref().map(|c| c.expires_in_s(now)),
                last_refresh_ms: s.last_refresh_ms,
                last_refresh_reason: s.last_refresh_reason,
                upstream_calls_today: if s.calls_day == now / 86_400_000 {
                    s.upstream_calls_today
                } else {
                    0
                },
                last_error: s.last_error.clone(),
            };
            out.entry(app.clone())
                .or_default()
                .insert(kind.as_str(), status);
        }
        out
    }

    /// The configured apps (a snapshot: a reload may change them).
    pub fn apps(&self) -> Arc<BTreeMap<String, Arc<AppConfig>>> {
        self.inner.apps.load_full()
    }

    /// The app's last refreshes, newest first, as every instance sees them.
    pub async fn refreshes(&self, app: &str) -> Result<Vec<Record>, StoreError> {
        audit::read(&self.inner.store, app).await
    }

    /// Foreign refreshes detected for `app` by any instance.
    pub async fn foreign_status(&self, app: &str) -> Result<ForeignStatus, StoreError> {
        foreign::status(&self.inner.store, app).await
    }

    /// `force_refresh` calls made for `app` today (Beijing time), by any instance.
    pub async fn force_refreshes_today(&self, app: &str) -> Result<u32, StoreError> {
        let day = FORCE_BUDGET.window_of(now_ms(), BEIJING_OFFSET_MS);
        FORCE_BUDGET
            .used(&self.inner.store, &format!("force-day:{app}"), day)
            .await
    }

    /// Makes sure the slot holds a credential that `want` does not reject, calling WeChat at
    /// most once across every caller and instance (see the module docs).
    async fn ensure<W>(
        &self,
        slot: &Slot,
        want: W,
        stale: Option<&str>,
        by: &Requester,
    ) -> Result<Credential, TokenError>
    where
        W: Fn(Option<&Credential>) -> bool,
    {
        let _flight = slot.flight.lock().await;
        let held = slot.cached();
        if !want(held.as_ref()) {
            return held.ok_or_else(|| internal("want accepted nothing"));
        }
        let store = &self.inner.store;
        let held_usable = held.as_ref().is_some_and(|c| c.is_usable(now_ms()));
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut notifications = store.subscribe();
        loop {
            match self.read_store(slot).await {
                Ok(Some(c)) if !want(Some(&c)) => return Ok(c),
                Ok(_) => {}
                Err(e) => return self.degraded(slot, e, held_usable, stale).await,
            }
            if let Some(e) = slot.cooldown() {
                return Err(e);
            }
            match store
                .set_nx(&slot.lock_key, &self.inner.owner, LOCK_LEASE)
                .await
            {
                Ok(true) => {
                    // The watchdog only ever returns if it is dropped, so the fetch decides.
                    let result = tokio::select! {
                        result = self.fetch_under_lock(slot, &want, stale, by) => result,
                        never = self.keep_lease(slot) => match never {},
                    };
                    if let Err(e) = store.delete_if_eq(&slot.lock_key, &self.inner.owner).await {
                        tracing::warn!(app = %slot.app.name, kind = slot.kind.as_str(), error = %e,
                            "could not release the refresh lock; its lease frees it");
                    }
                    return result;
                }
                Ok(false) => {}
                Err(e) => return self.degraded(slot, e, held_usable, stale).await,
            }
            // Another instance holds the lock: wait for its result (or its lease to lapse).
            if Instant::now() >= deadline {
                let e = TokenError::Timeout(WAIT_LIMIT);
                slot.record_error(&e, None);
                return Err(e);
            }
            let _ = tokio::time::timeout(WAIT_POLL, async {
                loop {
                    match notifications.recv().await {
                        Ok(key) if key == slot.key || key == slot.lock_key => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                }
            })
            .await;
        }
    }

    /// The lease watchdog: while its holder is alive, renews the refresh lock every third of
    /// [`LOCK_LEASE`], so a slow WeChat never outlasts the lease while a killed holder still
    /// frees the lock within one lease. Runs until dropped (when the fetch ends). A failed
    /// renewal is retried at the next beat; a lock found in other hands (the store was
    /// unreachable for a whole lease) is reported once and no longer renewed.
    async fn keep_lease(&self, slot: &Slot) -> std::convert::Infallible {
        let mut held = true;
        loop {
            tokio::time::sleep(LEASE_RENEWAL).await;
            if !held {
                continue;
            }
            match self
                .inner
                .store
                .expire_if_eq(&slot.lock_key, &self.inner.owner, LOCK_LEASE)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    held = false;
                    tracing::warn!(app = %slot.app.name, kind = slot.kind.as_str(),
                        "the refresh lock lapsed while this instance was still fetching \
                         (the store was unreachable for a whole lease); another instance may fetch too");
                }
                Err(e) => tracing::warn!(app = %slot.app.name, kind = slot.kind.as_str(),
                    error = %e, "could not renew the refresh lock; retrying"),
            }
        }
    }

    /// Reads the stored credential and adopts it if it is newer than the held one.
    async fn read_store(&self, slot: &Slot) -> Result<Option<Credential>, StoreError> {
        let Some(text) = self.inner.store.get(&slot.key).await? else {
            return Ok(None);
        };
        match serde_json::from_str::<Credential>(&text) {
            Ok(c) => {
                slot.adopt(&c);
                Ok(Some(c))
            }
            Err(_) => {
                tracing::warn!(app = %slot.app.name, kind = slot.kind.as_str(),
                    "ignoring an unreadable stored credential");
                Ok(None)
            }
        }
    }

    /// Holding the lock: re-check nothing changed, fetch, store.
    async fn fetch_under_lock<W>(
        &self,
        slot: &Slot,
        want: &W,
        stale: Option<&str>,
        by: &Requester,
    ) -> Result<Credential, TokenError>
    where
        W: Fn(Option<&Credential>) -> bool,
    {
        // The previous holder may have stored its result just before we took the lock.
        let stored = self.read_store(slot).await.ok().flatten();
        if let Some(c) = &stored {
            if !want(Some(c)) {
                return Ok(c.clone());
            }
        }
        let current = stored.or_else(|| slot.cached());
        let reason = self.before_fetch(slot, current.as_ref(), stale, by).await?;
        let mut made = reason;
        let fetched = self.fetch(slot, want, stale, reason, &mut made).await;
        self.audit(slot, made, by, fetched.as_ref().err(), false)
            .await;
        let credential = fetched?;
        let ttl = Duration::from_millis(credential.remaining_ms(now_ms()).max(1));
        match serde_json::to_string(&credential) {
            Ok(text) => {
                if let Err(e) = self.inner.store.set(&slot.key, &text, Some(ttl)).await {
                    tracing::warn!(app = %slot.app.name, kind = slot.kind.as_str(), error = %e,
                        "fetched a new credential but could not store it; serving it from memory");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot serialise a credential"),
        }
        slot.adopt(&credential);
        Ok(credential)
    }

    /// The store failed. A still-usable credential stays served and the refresh is refused;
    /// without one, fetch anyway (single-flight within this instance only) so service goes on.
    async fn degraded(
        &self,
        slot: &Slot,
        e: StoreError,
        held_usable: bool,
        stale: Option<&str>,
    ) -> Result<Credential, TokenError> {
        self.inner
            .metrics
            .store_error("token", Some(&slot.app.name), &e.to_string());
        if held_usable {
            let e = TokenError::StoreUnavailable(e.to_string());
            slot.record_error(&e, None);
            return Err(e);
        }
        if let Some(e) = slot.cooldown() {
            return Err(e);
        }
        tracing::warn!(app = %slot.app.name, kind = slot.kind.as_str(), error = %e,
            "store unreachable and no valid credential held: fetching without the shared lock");
        let want = |c: Option<&Credential>| c.is_none_or(|c| !c.is_usable(now_ms()));
        let reason = if stale.is_some() {
            RefreshReason::Passive
        } else {
            RefreshReason::EmptyStore
        };
        let mut made = reason;
        let credential = self.fetch(slot, &want, stale, reason, &mut made).await?;
        slot.adopt(&credential);
        Ok(credential)
    }

    /// Under the refresh lock, before calling WeChat: why this refresh happens, whether the
    /// requester's budget allows it (refused → audited, `RateLimited`), and whether the
    /// reported token was one wxmp never replaced (a foreign refresh, reported).
    async fn before_fetch(
        &self,
        slot: &Slot,
        current: Option<&Credential>,
        stale: Option<&str>,
        by: &Requester,
    ) -> Result<RefreshReason, TokenError> {
        let now = now_ms();
        let Some(stale) = stale else {
            return Ok(match current {
                Some(c) if c.is_usable(now) => RefreshReason::Proactive,
                _ => RefreshReason::EmptyStore,
            });
        };
        if let Some(limit) = by.refresh_per_minute {
            let base = format!("refresh-budget:{}:{}", slot.app.name, by.name);
            let claimed = budget::claim_sliding(
                &self.inner.store,
                &base,
                limit,
                Duration::from_secs(60),
                &self.inner.owner,
            )
            .await;
            // A store that cannot count does not block a needed refresh.
            if let Ok(false) = claimed {
                let e = TokenError::RateLimited {
                    client: by.name.clone(),
                    app: slot.app.name.clone(),
                    limit,
                };
                tracing::warn!(app = %slot.app.name, client = %by.name, limit,
                    "passive refresh refused: the client is over its refresh_per_minute");
                self.audit(slot, RefreshReason::Passive, by, Some(&e), true)
                    .await;
                return Err(e);
            }
        }
        // Rejected while still current and, by wxmp's clock, alive: wxmp did not cause it.
        let foreign = slot.kind == Kind::AccessToken
            && current.is_some_and(|c| c.value == stale && c.is_usable(now));
        if !foreign {
            return Ok(RefreshReason::Passive);
        }
        self.inner.metrics.foreign_refresh(&slot.app.name);
        let detection = Detection {
            app: &slot.app.name,
            appid: slot.app.appid.as_str(),
            by: &by.name,
            issued_at_ms: current.map_or(now, |c| c.fetched_at_ms),
            now_ms: now,
        };
        self.inner
            .foreign
            .detected(&self.inner.store, &self.inner.owner, detection)
            .await;
        Ok(RefreshReason::ForeignSuspected)
    }

    /// Adds a record to the slot's refresh audit (see [`audit`]); under the refresh lock.
    async fn audit(
        &self,
        slot: &Slot,
        reason: RefreshReason,
        by: &Requester,
        error: Option<&TokenError>,
        refused: bool,
    ) {
        let result = match error {
            None => "ok".to_owned(),
            Some(e) if refused => format!("refused: {e}"),
            Some(e) => format!("error: {e}"),
        };
        let record = Record {
            at: audit::rfc3339_ms(now_ms()),
            kind: slot.kind.as_str().to_owned(),
            reason,
            by: by.name.clone(),
            result,
        };
        audit::append(&self.inner.store, &slot.app.name, slot.kind, record).await;
    }

    /// Calls WeChat, retrying transient errors within [`FETCH_BUDGET`]. For a stable
    /// access_token that came back unchanged while a caller reported it stale, one
    /// `force_refresh` follows, spaced at least 30 s from the last one across instances.
    /// `reason` is why this refresh happens; `made` ends up as the reason of the call that
    /// produced the result (`force_refresh` when one followed), for the audit.
    async fn fetch<W>(
        &self,
        slot: &Slot,
        want: &W,
        stale: Option<&str>,
        reason: RefreshReason,
        made: &mut RefreshReason,
    ) -> Result<Credential, TokenError>
    where
        W: Fn(Option<&Credential>) -> bool,
    {
        let credential = self.fetch_with_retries(slot, reason).await?;
        let force_allowed = slot.kind == Kind::AccessToken
            && slot.app.token_api == TokenApi::Stable
            && stale.is_some()
            && want(Some(&credential));
        if force_allowed {
            let store = &self.inner.store;
            let owner = &self.inner.owner;
            // The day's budget first: a spent budget is said in plain words, before WeChat
            // would answer 45009. A store that cannot count leaves the 30 s spacing in charge.
            let day = FORCE_BUDGET.window_of(now_ms(), BEIJING_OFFSET_MS);
            let base = format!("force-day:{}", slot.app.name);
            let claim = match FORCE_BUDGET.claim(store, &base, day, owner).await {
                Ok(Some(claim)) => Some(claim),
                Ok(None) => {
                    let e = TokenError::ForceRefreshExhausted(slot.app.name.clone());
                    tracing::warn!(app = %slot.app.name, "{e}");
                    slot.record_error(&e, None);
                    *made = RefreshReason::ForceRefresh;
                    return Err(e);
                }
                Err(_) => None,
            };
            let force_key = format!("force:{}", slot.app.name);
            match store.set_nx(&force_key, owner, FORCE_REFRESH_SPACING).await {
                Ok(true) => {
                    tracing::info!(app = %slot.app.name, "stable token reported stale: force_refresh");
                    if *made != RefreshReason::ForeignSuspected {
                        *made = RefreshReason::ForceRefresh;
                    }
                    let result = self
                        .fetch_with_retries(slot, RefreshReason::ForceRefresh)
                        .await;
                    if let (Err(_), Some(claim)) = (&result, &claim) {
                        // WeChat did not refresh: the use did not happen.
                        let _ = Budget::release(store, claim).await;
                    }
                    return result;
                }
                _ => {
                    if let Some(claim) = &claim {
                        let _ = Budget::release(store, claim).await;
                    }
                    tracing::info!(app = %slot.app.name,
                        "stable token reported stale but a force_refresh ran less than 30 s ago");
                }
            }
        }
        Ok(credential)
    }

    async fn fetch_with_retries(
        &self,
        slot: &Slot,
        reason: RefreshReason,
    ) -> Result<Credential, TokenError> {
        let force = reason == RefreshReason::ForceRefresh;
        let metrics = &self.inner.metrics;
        let (app, kind) = (slot.app.name.as_str(), slot.kind.as_str());
        let deadline = Instant::now() + FETCH_BUDGET;
        let mut attempt = 0;
        loop {
            slot.count_call();
            let result = match slot.kind {
                Kind::AccessToken => {
                    let started = std::time::Instant::now();
                    let result = self.inner.upstream.access_token(&slot.app, force).await;
                    let call = match slot.app.token_api {
                        TokenApi::Stable => "stable_token",
                        TokenApi::Classic => "token",
                    };
                    metrics.upstream_latency(app, call, started.elapsed());
                    result
                }
                Kind::Ticket(t) => self.fetch_ticket(slot, t).await,
            };
            if let Err(e) = &result {
                metrics.token_error(app, kind, e.errcode(), &e.explain());
            }
            match result {
                Ok(f) => {
                    slot.record_success(reason);
                    metrics.refreshed(app, kind, reason.as_str());
                    tracing::info!(app = %slot.app.name, kind = slot.kind.as_str(),
                        expires_in = f.expires_in, "fetched from WeChat");
                    return Ok(Credential::new(f.value, now_ms(), f.expires_in));
                }
                Err(e) => {
                    let delay = RETRY.delay(attempt);
                    attempt += 1;
                    if e.is_transient() && Instant::now() + delay < deadline {
                        tracing::warn!(app = %slot.app.name, kind = slot.kind.as_str(), error = %e,
                            attempt, "upstream failed, retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    let err = TokenError::from_upstream(&e);
                    let cooldown = if e.is_transient() {
                        TRANSIENT_COOLDOWN
                    } else {
                        PERMANENT_COOLDOWN
                    };
                    tracing::error!(app = %slot.app.name, kind = slot.kind.as_str(), error = %err,
                        "giving up on this refresh");
                    slot.record_error(&err, Some(cooldown));
                    metrics.cooldown(app, kind, e.errcode());
                    return Err(err);
                }
            }
        }
    }

    /// A ticket needs an access_token; if WeChat calls that token stale, it is refreshed
    /// conditionally and the ticket asked for once more.
    async fn fetch_ticket(
        &self,
        slot: &Slot,
        ticket: TicketType,
    ) -> Result<upstream::Fetched, UpstreamError> {
        let upstream = &self.inner.upstream;
        let (metrics, app) = (&self.inner.metrics, slot.app.name.as_str());
        // Boxed: fetching a ticket goes through `ensure` for the access_token, which is
        // itself called from `ensure`.
        Box::pin(self.with_access_token(
            &slot.app.name,
            |token| async move {
                let started = std::time::Instant::now();
                let result = upstream.ticket(&token, ticket).await;
                metrics.upstream_latency(app, "ticket", started.elapsed());
                result
            },
            |result| {
                matches!(result, Err(UpstreamError::Api { errcode, .. })
                    if wxmp_proto::ApiErrcode::is_stale_token_code(*errcode))
            },
        ))
        .await
        .map_err(|e| UpstreamError::BadResponse(format!("no access_token for the ticket: {e}")))?
    }

    /// Keeps one slot fresh: loads the stored credential at start, then wakes in each refresh
    /// window. Tickets are only kept fresh once someone has asked for one.
    async fn refresher(self, slot: Arc<Slot>) {
        let mut failures = 0u32;
        if let Ok(Some(_)) = self.read_store(&slot).await {
            tracing::debug!(app = %slot.app.name, kind = slot.kind.as_str(), "loaded from the store");
        }
        loop {
            let held = slot.cached();
            let is_ticket = matches!(slot.kind, Kind::Ticket(_));
            let sleep_for = match &held {
                None if is_ticket => None,
                None => Some(Duration::ZERO),
                Some(c) => Some(c.refresh_in(now_ms(), slot.lead_ms(c))),
            };
            match sleep_for {
                None => slot.wake.notified().await,
                Some(d) if !d.is_zero() => {
                    tokio::select! {
                        () = tokio::time::sleep(d) => {}
                        () = slot.wake.notified() => {}
                    }
                }
                Some(_) => {}
            }
            let now = now_ms();
            let due = slot
                .cached()
                .is_none_or(|c| c.needs_refresh(now, slot.lead_ms(&c)));
            if !due {
                continue;
            }
            let (schedule, jitter) = (slot.schedule(), slot.jitter);
            let want = move |c: Option<&Credential>| {
                c.is_none_or(|c| c.needs_refresh(now_ms(), c.lead_ms(schedule, jitter)))
            };
            match self.ensure(&slot, want, None, &Requester::wxmp()).await {
                Ok(_) => failures = 0,
                Err(e) => {
                    let pause = match &e {
                        TokenError::Upstream {
                            transient: false, ..
                        } => PERMANENT_COOLDOWN,
                        _ => Backoff {
                            base: Duration::from_millis(500),
                            cap: Duration::from_secs(5),
                        }
                        .delay(failures),
                    };
                    failures = failures.saturating_add(1);
                    tracing::warn!(app = %slot.app.name, kind = slot.kind.as_str(), error = %e,
                        retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX), "refresh failed");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Applies credentials other instances store as soon as the store says they changed, so
    /// a passive refresh elsewhere reaches this instance's copy before the overlap ends.
    async fn watcher(self) {
        let mut notifications = self.inner.store.subscribe();
        loop {
            match notifications.recv().await {
                Ok(key) => {
                    // Looked up in the current slots, which a reload may have changed.
                    let slot = self
                        .inner
                        .slots
                        .load()
                        .values()
                        .find(|s| s.key == key)
                        .cloned();
                    if let Some(slot) = slot {
                        let _ = self.read_store(&slot).await;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let slots = self.inner.slots.load_full();
                    for slot in slots.values() {
                        let _ = self.read_store(slot).await;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

fn internal(what: &str) -> TokenError {
    TokenError::Upstream {
        errcode: None,
        transient: true,
        explanation: format!("internal error: {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_stable_names() {
        let names: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["access_token", "jsapi", "wx_card"]);
    }
}
