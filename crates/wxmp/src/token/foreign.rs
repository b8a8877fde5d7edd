//! Foreign-refresh detection: noticing that someone else holds the AppSecret.
//!
//! wxmp knows every access_token it issued and when it replaced one. So when WeChat rejects
//! (40001, 40014, 42001) the token that is *still the current one* in the store, and wxmp's
//! clock says it has not expired, wxmp did not cause the rejection: another party refreshed
//! with the same AppSecret — an old server, a colleague's script, an SDK refreshing on its own.
//! Left alone the two refreshers keep killing each other's tokens (the "40001 invalid
//! credential" war); wxmp recovers either way, but only a person can end the war, so it says
//! so: a `WARN` with what to do, `wxmp_foreign_refresh_total{app}`, `foreign_refreshes` and
//! `last_foreign_refresh` in `/v1/apps`, and an `[ops] alert_webhook` POST.
//!
//! The check runs where the passive refresh holds the access_token's refresh lock, so the
//! store's view of "current" cannot change under it, and the cluster-wide count under
//! `foreign:{app}` is updated by one instance at a time. The metric counts what this instance
//! detected, as Prometheus counters do. Alerts are limited to one per app per
//! [`ALERT_SPACING`] across instances, so a crowd of rejections is one page, not a hundred.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::audit::rfc3339_ms;
use crate::alert::Alerter;
use crate::store::{Store, StoreError};

/// At most one alert per app this often, across instances.
pub const ALERT_SPACING: Duration = Duration::from_secs(300);

/// What the store remembers of an app's foreign refreshes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignStatus {
    /// Foreign refreshes detected, by any instance.
    pub count: u64,
    /// The last one, RFC 3339 UTC.
    pub last_at: Option<String>,
}

fn key(app: &str) -> String {
    format!("foreign:{app}")
}

/// The cluster-wide status of `app`.
pub async fn status(store: &Store, app: &str) -> Result<ForeignStatus, StoreError> {
    Ok(match store.get(&key(app)).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
        None => ForeignStatus::default(),
    })
}

/// One detection: whose token, reported by whom, issued when.
pub(crate) struct Detection<'a> {
    pub app: &'a str,
    pub appid: &'a str,
    /// The client whose call WeChat rejected (`key`, a client name, or `wxmp`).
    pub by: &'a str,
    pub issued_at_ms: u64,
    pub now_ms: u64,
}

/// Where detections are announced beyond the log and the store.
pub(crate) struct ForeignWatch {
    alerter: Alerter,
}

impl ForeignWatch {
    pub fn new(alerter: Alerter) -> Self {
        ForeignWatch { alerter }
    }

    /// Reports one detection. Call while holding the app's access_token refresh lock.
    pub async fn detected(&self, store: &Store, owner: &str, d: Detection<'_>) {
        let Detection {
            app,
            appid,
            by,
            issued_at_ms,
            now_ms,
        } = d;
        let at = rfc3339_ms(now_ms);
        let count = match status(store, app).await {
            Ok(mut s) => {
                s.count += 1;
                s.last_at = Some(at.clone());
                if let Ok(text) = serde_json::to_string(&s) {
                    let _ = store.set(&key(app), &text, None).await;
                }
                s.count
            }
            Err(_) => 0,
        };
        let age_s = now_ms.saturating_sub(issued_at_ms) / 1000;
        tracing::warn!(
            app,
            reported_by = by,
            token_age_s = age_s,
            "WeChat rejected the access_token wxmp issued {age_s} s ago and has not replaced: \
             someone else holding this app's AppSecret refreshed it (an old server, a script, \
             an SDK that refreshes on its own). wxmp refreshed and carries on, but the other \
             party will keep knocking wxmp's tokens out. Find it and make it borrow tokens from \
             wxmp (GET /v1/apps/{{app}}/access_token or the proxy); if it cannot be found, reset \
             the AppSecret (基本配置 → 开发者密码) and give the new one to wxmp only"
        );
        let first = store
            .set_nx(&format!("foreign-alert:{app}"), owner, ALERT_SPACING)
            .await
            .unwrap_or(true);
        if first {
            self.alerter.send(json!({
                "event": "foreign_refresh",
                "app": app,
                "appid": appid,
                "at": at,
                "reported_by": by,
                "token_age_s": age_s,
                "foreign_refreshes": count,
                "message": format!(
                    "WeChat rejected app {app}'s access_token that wxmp had not replaced: another \
                     party holding the AppSecret refreshed it. Find it and point it at wxmp, or \
                     reset the AppSecret and give the new one to wxmp only."
                ),
            }));
        }
    }
}
