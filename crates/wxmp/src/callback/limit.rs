//! `webhook_concurrency`: at most that many calls to an app's webhook in flight.
//!
//! A webhook that hangs must not take wxmp down with it. Without a bound, every push opens
//! another connection to the hung webhook and holds it for the webhook timeout: at WeChat's
//! rates that is thousands of sockets, and the process runs out of file descriptors for
//! everything else. With a semaphore per app, a push that finds every slot taken does not
//! wait — waiting would only move the pile-up into memory and past the reply deadline — it
//! skips the webhook at once and falls through to the default reply (or `success`), and the
//! skip is counted (`wxmp_webhook_saturated_total{app}`), so the saturation shows on a
//! dashboard instead of as lost replies.
//!
//! The semaphores live with the router's deliveries (router-local state), keyed by app name.
//! A semaphore is replaced when the app's configured bound changes (a config reload); calls
//! holding permits of the old one finish against it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AppConfig;

/// One semaphore per app, created on first use.
#[derive(Default)]
pub(crate) struct WebhookLimits {
    /// A std `Mutex`: held only for a map lookup, never across an `.await`.
    slots: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
}

impl WebhookLimits {
    /// A slot for one webhook call of `app`, or `None` at once when all are taken.
    pub(crate) fn try_acquire(&self, app: &AppConfig) -> Option<OwnedSemaphorePermit> {
        let bound = app.webhook_concurrency.max(1);
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = slots
                .entry(app.name.clone())
                .or_insert_with(|| (bound, Arc::new(Semaphore::new(bound))));
            if entry.0 != bound {
                *entry = (bound, Arc::new(Semaphore::new(bound)));
            }
            entry.1.clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxmp_proto::signature::Token;
    use wxmp_proto::AppId;

    fn app(name: &str, bound: usize) -> AppConfig {
        AppConfig {
            webhook_concurrency: bound,
            ..AppConfig::new(
                name,
                AppId::new("wx0123456789abcdef").unwrap(),
                Token::new("tok").unwrap(),
            )
        }
    }

    #[test]
    fn permits_are_bounded_per_app_and_come_back_when_dropped() {
        let limits = WebhookLimits::default();
        let a = app("a", 2);
        let first = limits.try_acquire(&a).unwrap();
        let _second = limits.try_acquire(&a).unwrap();
        assert!(limits.try_acquire(&a).is_none());
        // Another app has slots of its own.
        assert!(limits.try_acquire(&app("b", 2)).is_some());
        drop(first);
        assert!(limits.try_acquire(&a).is_some());
        // A changed bound starts afresh.
        assert!(limits.try_acquire(&app("a", 5)).is_some());
    }
}
