//! Alerts to `[ops] alert_webhook`: a JSON POST when something needs a person.
//!
//! An alert must never slow down or break what raised it, so it is sent from a task of its own,
//! with a short timeout and no redirects (a redirect could carry the alert, which names apps,
//! to a host nobody configured). Failures are logged with the URL masked, and dropped: the
//! `WARN` line and the metrics that accompany every alert remain the record.

use std::time::Duration;

use url::Url;

/// How long one alert POST may take.
pub const ALERT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends alerts, or nothing when no webhook is configured. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Alerter {
    target: Option<(Url, reqwest::Client)>,
}

impl Alerter {
    /// An alerter posting to `webhook`, if any.
    pub fn new(webhook: Option<Url>) -> Self {
        let target = webhook.map(|url| (url, crate::outbound::client()));
        Alerter { target }
    }

    /// POSTs `event` in the background.
    pub fn send(&self, event: serde_json::Value) {
        let Some((url, http)) = self.target.clone() else {
            return;
        };
        tokio::spawn(async move {
            let shown = crate::redact::url(&url);
            match http
                .post(url)
                .timeout(ALERT_TIMEOUT)
                .json(&event)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(webhook = %shown, "alert delivered");
                }
                Ok(r) if r.status().is_redirection() => tracing::warn!(webhook = %shown,
                    "{}", crate::outbound::redirect_refused("the alert webhook", r.status().as_u16())),
                Ok(r) => tracing::warn!(webhook = %shown, status = %r.status(),
                    "the alert webhook refused an alert"),
                Err(e) => tracing::warn!(webhook = %shown, error = %crate::outbound::describe(&e),
                    "cannot deliver an alert to the alert webhook"),
            }
        });
    }
}
