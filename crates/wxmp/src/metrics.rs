//! Prometheus metrics, served at `/metrics`, and the recent activity behind `/status`.
//!
//! [`Metrics`] is the one place the rest of the server reports to: a handler or the token core
//! calls one method (`callback`, `refreshed`, `token_error` …) and it both counts the event in
//! its typed family and notes it in the per-minute [`Activity`] the status page draws. Counters
//! and histograms are updated where things happen; the per-credential gauges (seconds to
//! expiry, upstream calls today) are read from the token core at scrape time, so they are never
//! stale and cost nothing between scrapes. Label values come from small closed sets (app names
//! from the config, outcomes, errcodes WeChat defines, a handful of call names), so the number
//! of series stays bounded.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ops::activity::Activity;
use crate::token::credential::now_ms;
use crate::token::TokenCore;

/// Labels of per-app counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppOutcome {
    /// The app name.
    pub app: String,
    /// A short closed set: `ok`, `bad_signature`, `bad_request`, `error`, …
    pub outcome: String,
}

/// Labels of per-credential gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppKind {
    /// The app name.
    pub app: String,
    /// `access_token`, `jsapi` or `wx_card`.
    pub kind: String,
}

/// Labels of the per-app histograms and counters with one more dimension.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    /// The app name.
    pub app: String,
}

/// Labels of upstream call latencies.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppCall {
    /// The app name.
    pub app: String,
    /// `token`, `stable_token`, `ticket`, `proxy` or `custom_send`.
    pub call: String,
}

/// Labels of token errors and cooldowns.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppKindErrcode {
    /// The app name.
    pub app: String,
    /// `access_token`, `jsapi` or `wx_card`.
    pub kind: String,
    /// WeChat's errcode, or `none` when WeChat gave none (unreachable, timeout, bad answer).
    pub errcode: String,
}

/// Labels of refreshes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppKindReason {
    /// The app name.
    pub app: String,
    /// `access_token`, `jsapi` or `wx_card`.
    pub kind: String,
    /// Why: `proactive`, `passive`, `empty_store`, `force_refresh`, `foreign_suspected`.
    pub reason: String,
}

/// Labels of store errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Source {
    /// Who met the error: `probe`, `token`, `dedup`.
    pub source: String,
}

/// Seconds: 5 ms to 10 s, the range between a local keyword reply and WeChat's patience.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric wxmp exports, and the recent activity per app.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Callback requests by outcome.
    pub callbacks: Family<AppOutcome, Counter>,
    /// Business API token/ticket requests by outcome.
    pub api_requests: Family<AppOutcome, Counter>,
    expires_in: Family<AppKind, Gauge>,
    upstream_calls: Family<AppKind, Gauge>,
    callback_seconds: Latencies<AppLabel>,
    webhook_seconds: Latencies<AppOutcome>,
    upstream_seconds: Latencies<AppCall>,
    token_errors: Family<AppKindErrcode, Counter>,
    cooldowns: Family<AppKindErrcode, Counter>,
    refreshes: Family<AppKindReason, Counter>,
    foreign_refreshes: Family<AppLabel, Counter>,
    dedup_hits: Family<AppLabel, Counter>,
    webhook_saturated: Family<AppLabel, Counter>,
    store_up: Gauge,
    store_errors: Family<Source, Counter>,
    /// Per-minute history for `/status`.
    pub activity: Activity,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn errcode_label(errcode: Option<i64>) -> String {
    errcode.map_or_else(|| "none".to_owned(), |c| c.to_string())
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wxmp");
        let mut m = Metrics {
            registry: Mutex::new(Registry::default()),
            callbacks: Family::default(),
            api_requests: Family::default(),
            expires_in: Family::default(),
            upstream_calls: Family::default(),
            callback_seconds: Family::new_with_constructor(latency),
            webhook_seconds: Family::new_with_constructor(latency),
            upstream_seconds: Family::new_with_constructor(latency),
            token_errors: Family::default(),
            cooldowns: Family::default(),
            refreshes: Family::default(),
            foreign_refreshes: Family::default(),
            dedup_hits: Family::default(),
            webhook_saturated: Family::default(),
            store_up: Gauge::default(),
            store_errors: Family::default(),
            activity: Activity::default(),
        };
        // Up until a probe or an operation says otherwise: the store opened at start.
        m.store_up.set(1);
        registry.register(
            "callback_requests",
            "Callback requests from WeChat, by outcome",
            m.callbacks.clone(),
        );
        registry.register(
            "callback_duration_seconds",
            "Time from a push's arrival to its answer (passive reply or success)",
            m.callback_seconds.clone(),
        );
        registry.register(
            "callback_dedup_hits",
            "Pushes that were retries (or repeats) of one already being handled or handled",
            m.dedup_hits.clone(),
        );
        registry.register(
            "webhook_duration_seconds",
            "Forward webhook calls, by outcome (reply, no_reply, error)",
            m.webhook_seconds.clone(),
        );
        registry.register(
            "api_requests",
            "Business API requests",
            m.api_requests.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Calls to WeChat, by call (token, stable_token, ticket, proxy, custom_send)",
            m.upstream_seconds.clone(),
        );
        registry.register(
            "token_refreshes",
            "Credentials fetched from WeChat, by reason",
            m.refreshes.clone(),
        );
        registry.register(
            "foreign_refresh",
            "Times WeChat rejected an access_token wxmp had not replaced (someone else refreshed)",
            m.foreign_refreshes.clone(),
        );
        registry.register(
            "token_errors",
            "Failed token and ticket calls to WeChat, by errcode (none: no answer)",
            m.token_errors.clone(),
        );
        registry.register(
            "token_cooldowns",
            "Times a credential entered a cooldown (no upstream call for a while), by errcode",
            m.cooldowns.clone(),
        );
        registry.register(
            "credential_expires_in_seconds",
            "Seconds until the held access_token or ticket expires",
            m.expires_in.clone(),
        );
        registry.register(
            "upstream_calls_today",
            "Token and ticket calls to WeChat made by this instance today (UTC)",
            m.upstream_calls.clone(),
        );
        registry.register(
            "webhook_saturated",
            "Pushes that skipped the webhook because webhook_concurrency calls were in flight",
            m.webhook_saturated.clone(),
        );
        registry.register(
            "store_up",
            "1 when the store answered its last operation or probe, 0 when it failed",
            m.store_up.clone(),
        );
        registry.register(
            "store_errors",
            "Store operations that failed, by who met the failure",
            m.store_errors.clone(),
        );
        *m.registry.get_mut().unwrap_or_else(|p| p.into_inner()) = registry;
        m
    }

    /// Counts one callback request.
    pub fn callback(&self, app: &str, outcome: &str) {
        self.callbacks
            .get_or_create(&AppOutcome {
                app: app.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.activity.callback(app, outcome, now_ms());
    }

    /// Counts one business API request.
    pub fn api(&self, app: &str, outcome: &str) {
        self.api_requests
            .get_or_create(&AppOutcome {
                app: app.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// How long a push took to be answered.
    pub fn callback_latency(&self, app: &str, took: Duration) {
        self.callback_seconds
            .get_or_create(&AppLabel {
                app: app.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A push that skipped the webhook: `webhook_concurrency` calls were already in flight.
    pub fn webhook_saturated(&self, app: &str) {
        self.webhook_saturated
            .get_or_create(&AppLabel {
                app: app.to_owned(),
            })
            .inc();
    }

    /// A push that was a retry of one already claimed (here or on another instance).
    pub fn dedup_hit(&self, app: &str) {
        self.dedup_hits
            .get_or_create(&AppLabel {
                app: app.to_owned(),
            })
            .inc();
    }

    /// One forward webhook call: `outcome` is `reply`, `no_reply` or `error` (with `error`'s
    /// text, which then becomes the app's last error).
    pub fn webhook(&self, app: &str, took: Duration, outcome: &str, error: Option<&str>) {
        self.webhook_seconds
            .get_or_create(&AppOutcome {
                app: app.to_owned(),
                outcome: outcome.to_owned(),
            })
            .observe(took.as_secs_f64());
        if let Some(text) = error {
            self.activity.error(app, "webhook", text, now_ms());
        }
    }

    /// One call to WeChat.
    pub fn upstream_latency(&self, app: &str, call: &str, took: Duration) {
        self.upstream_seconds
            .get_or_create(&AppCall {
                app: app.to_owned(),
                call: call.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// WeChat rejected an access_token of `app` that wxmp had not replaced.
    pub fn foreign_refresh(&self, app: &str) {
        self.foreign_refreshes
            .get_or_create(&AppLabel {
                app: app.to_owned(),
            })
            .inc();
    }

    /// A credential was fetched from WeChat for `reason`.
    pub fn refreshed(&self, app: &str, kind: &str, reason: &str) {
        self.refreshes
            .get_or_create(&AppKindReason {
                app: app.to_owned(),
                kind: kind.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
        self.activity.refresh(app, now_ms());
    }

    /// A token or ticket call to WeChat failed; `text` is the plain-words explanation.
    pub fn token_error(&self, app: &str, kind: &str, errcode: Option<i64>, text: &str) {
        self.token_errors
            .get_or_create(&AppKindErrcode {
                app: app.to_owned(),
                kind: kind.to_owned(),
                errcode: errcode_label(errcode),
            })
            .inc();
        self.activity.error(app, kind, text, now_ms());
    }

    /// A credential entered a cooldown after `errcode`.
    pub fn cooldown(&self, app: &str, kind: &str, errcode: Option<i64>) {
        self.cooldowns
            .get_or_create(&AppKindErrcode {
                app: app.to_owned(),
                kind: kind.to_owned(),
                errcode: errcode_label(errcode),
            })
            .inc();
    }

    /// The store answered (a probe or an operation).
    pub fn store_ok(&self) {
        self.store_up.set(1);
    }

    /// A store operation failed; `app` (when the operation served one) gets it as its last
    /// error.
    pub fn store_error(&self, source: &str, app: Option<&str>, text: &str) {
        self.store_up.set(0);
        self.store_errors
            .get_or_create(&Source {
                source: source.to_owned(),
            })
            .inc();
        if let Some(app) = app {
            self.activity.error(app, "store", text, now_ms());
        }
    }

    /// True unless the last store probe or operation failed.
    pub fn store_is_up(&self) -> bool {
        self.store_up.get() == 1
    }

    /// The text exposition, with gauges refreshed from `tokens`.
    pub fn render(&self, tokens: &TokenCore) -> String {
        for (app, kinds) in tokens.status() {
            for (kind, status) in kinds {
                let labels = AppKind {
                    app: app.clone(),
                    kind: kind.to_owned(),
                };
                let expires = status
                    .expires_in_s
                    .map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
                self.expires_in.get_or_create(&labels).set(expires);
                let calls = i64::try_from(status.upstream_calls_today).unwrap_or(i64::MAX);
                self.upstream_calls.get_or_create(&labels).set(calls);
            }
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}
