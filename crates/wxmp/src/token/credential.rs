//! A stored access_token or ticket, and the arithmetic of when to refresh it.
//!
//! Times are wall-clock Unix milliseconds because a credential outlives the process (SQLite)
//! and is shared between machines (Redis); a monotonic clock means nothing to either.
//!
//! The schedule (docs/token-core.md): refresh when about a fifth of the lifetime WeChat
//! returned is left, never earlier than 5 minutes before expiry (the overlap WeChat
//! guarantees between old and new token), with a little jitter so instances and apps do not
//! all wake at once. Where that jitter goes depends on the token API ([`Schedule`]): a classic
//! token or a ticket is new on every call, so it is refreshed a little *before* that point; a
//! stable token is the same one on every call until WeChat's own 5-minute renewal window
//! opens, so it is refreshed a little *after* it, inside the window, where one call brings the
//! new token. A credential is *usable* — may be handed out — only while more than a small
//! margin is left, so a caller never receives a token that dies in its hands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The longest lead before expiry at which a refresh starts (WeChat's 5-minute overlap).
pub const MAX_REFRESH_LEAD_MS: u64 = 5 * 60 * 1000;
/// The longest margin before expiry under which a credential is no longer handed out.
pub const MAX_USABLE_MARGIN_MS: u64 = 60 * 1000;

/// The current wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where the refresh goes relative to the refresh lead ([`Credential::refresh_lead_ms`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// At the lead or up to a tenth of it earlier: for credentials that every call renews
    /// (`/cgi-bin/token`, tickets).
    Ahead,
    /// Between 5% and 15% of the lead later, so the call falls inside WeChat's renewal
    /// window: `stable_token` in normal mode returns the token it already issued until fewer
    /// than 5 minutes (the longest lead) are left, so a call just before that window costs a
    /// call and brings nothing new. The 5% keeps clear of WeChat rounding `expires_in` down to
    /// whole seconds and of clock skew (15 s of a 300 s window).
    InsideWindow,
}

/// An access_token or ticket with its validity.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The token or ticket.
    pub value: String,
    /// When WeChat issued it (our clock).
    pub fetched_at_ms: u64,
    /// When it dies: `fetched_at_ms + expires_in * 1000`.
    pub expires_at_ms: u64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential(***, fetched_at_ms={}, expires_at_ms={})",
            self.fetched_at_ms, self.expires_at_ms
        )
    }
}

impl Credential {
    /// A credential fetched at `now_ms` with WeChat's `expires_in` seconds.
    pub fn new(value: String, now_ms: u64, expires_in_s: u64) -> Self {
        Credential {
            value,
            fetched_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(expires_in_s.saturating_mul(1000)),
        }
    }

    /// The lifetime WeChat announced.
    pub fn lifetime_ms(&self) -> u64 {
        self.expires_at_ms.saturating_sub(self.fetched_at_ms)
    }

    /// Milliseconds left at `now_ms`.
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms)
    }

    /// How long before expiry a refresh starts: a fifth of the lifetime, at most 5 minutes.
    pub fn refresh_lead_ms(&self) -> u64 {
        (self.lifetime_ms() / 5).min(MAX_REFRESH_LEAD_MS)
    }

    /// The margin under which the credential is no longer handed out: a twentieth of the
    /// lifetime, at least 500 ms and at most a minute (always less than the refresh lead for
    /// any lifetime over a few seconds).
    pub fn usable_margin_ms(&self) -> u64 {
        (self.lifetime_ms() / 20).clamp(500, MAX_USABLE_MARGIN_MS)
    }

    /// True while the credential may be handed out.
    pub fn is_usable(&self, now_ms: u64) -> bool {
        self.remaining_ms(now_ms) > self.usable_margin_ms()
    }

    /// How long before expiry this credential is refreshed under `schedule`, with this
    /// instance's `random` in [0, 1) placing it within the jitter.
    pub fn lead_ms(&self, schedule: Schedule, random: f64) -> u64 {
        let lead = self.refresh_lead_ms();
        let jitter = self.jitter_ms(random);
        match schedule {
            Schedule::Ahead => lead.saturating_add(jitter),
            Schedule::InsideWindow => lead.saturating_sub(lead / 20).saturating_sub(jitter),
        }
    }

    /// True once no more than `lead_ms` (from [`Credential::lead_ms`]) is left.
    pub fn needs_refresh(&self, now_ms: u64, lead_ms: u64) -> bool {
        self.remaining_ms(now_ms) <= lead_ms
    }

    /// When the refresher should wake, relative to `now_ms`, for a refresh `lead_ms` before
    /// expiry.
    pub fn refresh_in(&self, now_ms: u64, lead_ms: u64) -> Duration {
        let at = self.expires_at_ms.saturating_sub(lead_ms);
        Duration::from_millis(at.saturating_sub(now_ms))
    }

    /// A jitter for this credential: up to a tenth of its refresh lead, from `random` in 0..1.
    pub fn jitter_ms(&self, random: f64) -> u64 {
        let span = self.refresh_lead_ms() / 10;
        // `random` is in [0, 1), so the product stays within `span`.
        (span as f64 * random.clamp(0.0, 1.0)) as u64
    }

    /// `expires_in` to tell a caller: whole seconds left.
    pub fn expires_in_s(&self, now_ms: u64) -> u64 {
        self.remaining_ms(now_ms) / 1000
    }
}

/// Bounded exponential backoff: `base · 2^attempt`, capped.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// The largest delay.
    pub cap: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_7200s_token_refreshes_5_minutes_early() {
        let c = Credential::new("t".into(), 0, 7200);
        assert_eq!(c.refresh_lead_ms(), 300_000);
        let lead = c.lead_ms(Schedule::Ahead, 0.0);
        assert_eq!(lead, 300_000);
        assert!(!c.needs_refresh(7_200_000 - 300_001, lead));
        assert!(c.needs_refresh(7_200_000 - 300_000, lead));
        assert_eq!(c.usable_margin_ms(), 60_000);
    }

    #[test]
    fn a_stable_token_refreshes_inside_the_5_minute_window() {
        let c = Credential::new("t".into(), 0, 7200);
        for r in [0.0, 0.5, 0.999] {
            let lead = c.lead_ms(Schedule::InsideWindow, r);
            assert!((255_000..=285_000).contains(&lead), "{lead}");
            assert!(c.is_usable(7_200_000 - lead));
        }
        // A classic token's jitter goes the other way, ahead of the window.
        assert!(c.lead_ms(Schedule::Ahead, 0.999) > 300_000);
    }

    #[test]
    fn a_20s_token_refreshes_with_4s_left() {
        let c = Credential::new("t".into(), 1_000, 20);
        assert_eq!(c.refresh_lead_ms(), 4_000);
        assert_eq!(c.usable_margin_ms(), 1_000);
        assert_eq!(
            c.refresh_in(1_000, c.lead_ms(Schedule::Ahead, 0.0)),
            Duration::from_secs(16)
        );
        assert!(c.is_usable(19_999));
        assert!(!c.is_usable(20_000));
        assert_eq!(c.expires_in_s(11_000), 10);
    }

    proptest! {
        #[test]
        fn refresh_starts_before_the_token_stops_being_usable(
            expires_in in 2u64..100_000, now in 0u64..1_000_000_000, r in 0.0f64..1.0
        ) {
            let c = Credential::new("t".into(), now, expires_in);
            let jitter = c.jitter_ms(r);
            prop_assert!(jitter <= c.refresh_lead_ms() / 10);
            // The refresher wakes while the token can still be handed out, for tokens of at
            // least 10 seconds (shorter ones are refreshed on demand).
            for schedule in [Schedule::Ahead, Schedule::InsideWindow] {
                let lead = c.lead_ms(schedule, r);
                if expires_in >= 10 {
                    let wake = now + u64::try_from(c.refresh_in(now, lead).as_millis()).unwrap();
                    prop_assert!(c.is_usable(wake));
                    prop_assert!(c.needs_refresh(wake, lead));
                }
            }
            // A stable refresh always falls inside WeChat's 5-minute window, with room to spare.
            let inside = c.lead_ms(Schedule::InsideWindow, r);
            prop_assert!(inside <= c.refresh_lead_ms() - c.refresh_lead_ms() / 20);
            prop_assert!(inside <= MAX_REFRESH_LEAD_MS * 19 / 20);
        }

        #[test]
        fn backoff_stays_within_bounds(attempt in 0u32..1000, base_ms in 1u64..1000, cap_ms in 1u64..60_000) {
            let b = Backoff { base: Duration::from_millis(base_ms), cap: Duration::from_millis(cap_ms) };
            let d = b.delay(attempt);
            prop_assert!(d <= b.cap);
            prop_assert!(d >= b.base.min(b.cap));
            prop_assert!(b.delay(attempt + 1) >= d);
        }
    }
}
