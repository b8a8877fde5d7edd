//! What happened lately, per app, for the status page: a 24-hour ring of per-minute counts
//! (refreshes, errors, callbacks), the last hour's callbacks by outcome, and the last error in
//! plain words.
//!
//! Prometheus keeps history for whoever scrapes it; the status page must work without one, so
//! this instance keeps a small history of its own. It is bounded by construction: 1440 minute
//! slots per app, each slot remembering which minute it holds, so a slot left over from an
//! earlier day reads as zero and is reset on the next write. Nothing is stored per event, and a
//! cap on the number of apps keeps a flood of made-up names from growing it. A std `Mutex` is
//! enough: each event holds it for a few additions, never across an `.await`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Minutes in the timeline.
pub const MINUTES: usize = 24 * 60;
/// Minutes in the "last hour" outcome counts.
const HOUR: usize = 60;
/// More apps than this are not tracked (only configured app names reach here; this is a
/// backstop, far above any real config).
const MAX_APPS: usize = 1024;

/// Callback outcomes the page names; anything else counts as `other`.
pub const OUTCOMES: [&str; 13] = [
    "replied",
    "no_reply",
    "deadline",
    "duplicate",
    "verified",
    "abandoned",
    "bad_signature",
    "bad_request",
    "too_large",
    "webhook_failed",
    "late_reply_sent",
    "late_reply_failed",
    "other",
];

/// One minute of one app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Minutes since the Unix epoch this slot holds.
    pub minute: u64,
    /// Credentials fetched from WeChat.
    pub refreshes: u32,
    /// Errors: failed upstream calls, webhook failures, store errors.
    pub errors: u32,
    /// Callback requests answered (any outcome).
    pub callbacks: u32,
}

/// The last error of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Where it happened: `access_token`, `jsapi`, `webhook`, `store` …
    pub source: String,
    /// Plain words, never a secret (token errors quote WeChat's errmsg and our advice).
    pub text: String,
}

struct AppActivity {
    minutes: Vec<Minute>,
    hour: Vec<(u64, [u32; OUTCOMES.len()])>,
    last_error: Option<LastError>,
}

impl AppActivity {
    fn new() -> Self {
        AppActivity {
            minutes: vec![Minute::default(); MINUTES],
            hour: vec![(0, [0; OUTCOMES.len()]); HOUR],
            last_error: None,
        }
    }

    fn minute(&mut self, minute: u64) -> &mut Minute {
        let slot = &mut self.minutes[(minute % MINUTES as u64) as usize];
        if slot.minute != minute {
            *slot = Minute {
                minute,
                ..Minute::default()
            };
        }
        slot
    }
}

/// Every app's recent activity.
#[derive(Default)]
pub struct Activity {
    apps: Mutex<HashMap<String, AppActivity>>,
}

fn minute_of(ms: u64) -> u64 {
    ms / 60_000
}

impl Activity {
    fn with_app(&self, app: &str, f: impl FnOnce(&mut AppActivity)) {
        let mut apps = self.lock();
        if let Some(a) = apps.get_mut(app) {
            f(a);
        } else if apps.len() < MAX_APPS {
            f(apps.entry(app.to_owned()).or_insert_with(AppActivity::new));
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, AppActivity>> {
        self.apps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A callback request of `app` ended with `outcome` at `now_ms`.
    pub fn callback(&self, app: &str, outcome: &str, now_ms: u64) {
        let minute = minute_of(now_ms);
        let index = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(OUTCOMES.len() - 1);
        self.with_app(app, |a| {
            a.minute(minute).callbacks += 1;
            let slot = &mut a.hour[(minute % HOUR as u64) as usize];
            if slot.0 != minute {
                *slot = (minute, [0; OUTCOMES.len()]);
            }
            slot.1[index] += 1;
        });
    }

    /// A credential of `app` was fetched from WeChat.
    pub fn refresh(&self, app: &str, now_ms: u64) {
        self.with_app(app, |a| a.minute(minute_of(now_ms)).refreshes += 1);
    }

    /// Something failed for `app`; `text` must be fit to show (plain words, no secret).
    pub fn error(&self, app: &str, source: &str, text: &str, now_ms: u64) {
        self.with_app(app, |a| {
            a.minute(minute_of(now_ms)).errors += 1;
            a.last_error = Some(LastError {
                at_ms: now_ms,
                source: source.to_owned(),
                text: text.to_owned(),
            });
        });
    }

    /// The last 24 hours of `app`, oldest minute first, ending with the minute of `now_ms`.
    pub fn timeline(&self, app: &str, now_ms: u64) -> Vec<Minute> {
        let now = minute_of(now_ms);
        let first = now + 1 - MINUTES as u64;
        let apps = self.lock();
        (first..=now)
            .map(|minute| {
                apps.get(app)
                    .map(|a| a.minutes[(minute % MINUTES as u64) as usize])
                    .filter(|m| m.minute == minute)
                    .unwrap_or(Minute {
                        minute,
                        ..Minute::default()
                    })
            })
            .collect()
    }

    /// Callbacks of `app` in the last 60 minutes, by outcome, leaving out zeros.
    pub fn last_hour(&self, app: &str, now_ms: u64) -> Vec<(&'static str, u64)> {
        let now = minute_of(now_ms);
        let mut totals = [0u64; OUTCOMES.len()];
        if let Some(a) = self.lock().get(app) {
            for (minute, counts) in &a.hour {
                if *minute + (HOUR as u64) > now && *minute <= now {
                    for (t, c) in totals.iter_mut().zip(counts) {
                        *t += u64::from(*c);
                    }
                }
            }
        }
        OUTCOMES
            .iter()
            .zip(totals)
            .filter(|(_, n)| *n > 0)
            .map(|(o, n)| (*o, n))
            .collect()
    }

    /// The last error of `app`, if any since start.
    pub fn last_error(&self, app: &str) -> Option<LastError> {
        self.lock().get(app).and_then(|a| a.last_error.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn minutes_land_in_their_slot_and_old_days_read_as_zero() {
        let a = Activity::default();
        a.callback("demo", "replied", T0);
        a.callback("demo", "replied", T0 + 1000);
        a.refresh("demo", T0 + 60_000);
        a.error("demo", "access_token", "WeChat said 40013", T0 + 120_000);
        let line = a.timeline("demo", T0 + 120_000);
        assert_eq!(line.len(), MINUTES);
        let last3: Vec<_> = line[MINUTES - 3..]
            .iter()
            .map(|m| (m.callbacks, m.refreshes, m.errors))
            .collect();
        assert_eq!(last3, [(2, 0, 0), (0, 1, 0), (0, 0, 1)]);
        // A day later the same slots hold nothing.
        let later = a.timeline("demo", T0 + 86_400_000 + 120_000);
        assert!(later
            .iter()
            .all(|m| m.callbacks + m.refreshes + m.errors == 0));
        // Writing a day later resets the slot instead of adding to yesterday's count.
        a.callback("demo", "replied", T0 + 86_400_000);
        let today = a.timeline("demo", T0 + 86_400_000);
        assert_eq!(today[MINUTES - 1].callbacks, 1);
        assert_eq!(
            a.last_error("demo").map(|e| e.text),
            Some("WeChat said 40013".to_owned())
        );
        assert!(a.timeline("nobody", T0).iter().all(|m| m.callbacks == 0));
    }

    #[test]
    fn the_last_hour_counts_outcomes_of_60_minutes_only() {
        let a = Activity::default();
        a.callback("demo", "replied", T0);
        a.callback("demo", "bad_signature", T0 + 30 * 60_000);
        a.callback("demo", "something_new", T0 + 30 * 60_000);
        assert_eq!(
            a.last_hour("demo", T0 + 59 * 60_000),
            [("replied", 1), ("bad_signature", 1), ("other", 1)]
        );
        assert_eq!(
            a.last_hour("demo", T0 + 60 * 60_000),
            [("bad_signature", 1), ("other", 1)]
        );
    }

    #[test]
    fn app_names_are_capped() {
        let a = Activity::default();
        for i in 0..MAX_APPS + 10 {
            a.callback(&format!("app{i}"), "replied", T0);
        }
        assert_eq!(a.lock().len(), MAX_APPS);
    }
}
