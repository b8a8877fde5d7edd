//! Prometheus metrics, served at `/metrics`.
//!
//! Counters are incremented where things happen; the per-credential gauges (seconds to
//! expiry, upstream calls today) are read from the token core's status at scrape time, so
//! they are never stale and cost nothing between scrapes.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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

/// Every metric wxmp exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Callback requests by outcome.
    pub callbacks: Family<AppOutcome, Counter>,
    /// Business API token/ticket requests by outcome.
    pub api_requests: Family<AppOutcome, Counter>,
    expires_in: Family<AppKind, Gauge>,
    upstream_calls: Family<AppKind, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wxmp");
        let callbacks = Family::<AppOutcome, Counter>::default();
        let api_requests = Family::<AppOutcome, Counter>::default();
        let expires_in = Family::<AppKind, Gauge>::default();
        let upstream_calls = Family::<AppKind, Gauge>::default();
        registry.register(
            "callback_requests",
            "Callback requests from WeChat",
            callbacks.clone(),
        );
        registry.register(
            "api_requests",
            "Business API requests",
            api_requests.clone(),
        );
        registry.register(
            "credential_expires_in_seconds",
            "Seconds until the held access_token or ticket expires",
            expires_in.clone(),
        );
        registry.register(
            "upstream_calls_today",
            "Token and ticket calls to WeChat made by this instance today (UTC)",
            upstream_calls.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            callbacks,
            api_requests,
            expires_in,
            upstream_calls,
        }
    }

    /// Counts one callback request.
    pub fn callback(&self, app: &str, outcome: &str) {
        self.callbacks
            .get_or_create(&AppOutcome {
                app: app.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
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
