//! The replay window: a captured callback request cannot be used again.
//!
//! In 明文模式 the `signature` covers only Token, `timestamp` and `nonce` — not the body. Whoever
//! sees one callback URL (a proxy's access log is enough) could otherwise post any message from
//! any OpenID under it, forever. In the encrypted modes a captured push could be posted again
//! once its dedup record had expired, and be handled a second time. Two checks close both:
//!
//! 1. **The timestamp.** A `timestamp` that is not a number of seconds, or is further than the
//!    app's `replay_window_s` from this server's clock, is refused (`403`). The check needs only
//!    the query, so it runs before the body is read. The `GET` handshake is held to it too:
//!    WeChat sends the current time there as well, and a server whose clock is off should find
//!    out when the URL is set up, not from the first lost push.
//! 2. **The (timestamp, nonce) pair.** After the request is authenticated, the pair is recorded
//!    with a SHA-256 of the body, by `set_nx` in the shared store (so every instance on one
//!    Redis sees it), for longer than a timestamp can stay inside the window. The same pair
//!    with a different body is refused (`403`): that is a forged body under a captured
//!    signature. The same pair with the same body is a byte-for-byte repeat — a client or proxy
//!    retrying — and passes; the callback dedup then answers it as the retry it is. Only
//!    authenticated requests are recorded, so an anonymous sender cannot fill the store.
//!
//! The dedup records outlive the window as well ([`outlives_window`]), so an exact replay that
//! passes both checks finds its delivery already handled. `replay_window_s = 0` turns the
//! checks off (for fixed test vectors with old timestamps).
//!
//! A store failure does not refuse WeChat's pushes: the pair check is skipped with a warning
//! and the timestamp check still holds — the same trade as the dedup, which degrades to
//! per-instance when the store is away.

use std::borrow::Cow;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::verify::Refusal;
use crate::config::AppConfig;
use crate::state::AppState;

/// Slack added to every record lifetime derived from the window, for clock steps and
/// instances whose clocks differ slightly.
const SLACK: Duration = Duration::from_secs(60);

/// How long a record must live to outlast every request the window still accepts: a
/// timestamp up to one window ahead of the clock stays acceptable for another window.
pub(crate) fn outlives_window(app: &AppConfig) -> Duration {
    Duration::from_secs(app.replay_window_s.saturating_mul(2)) + SLACK
}

/// Refuses a `timestamp` that is not a number of seconds, or is further than the app's window
/// from `now` (Unix seconds). Always passes when the window is `0`.
pub(crate) fn check_timestamp(app: &AppConfig, timestamp: &str, now: u64) -> Result<(), Refusal> {
    let window = app.replay_window_s;
    if window == 0 {
        return Ok(());
    }
    let seconds = (!timestamp.is_empty()
        && timestamp.len() <= 19
        && timestamp.bytes().all(|b| b.is_ascii_digit()))
    .then(|| timestamp.parse::<u64>().ok())
    .flatten()
    .ok_or(Refusal::Replay(Cow::Borrowed(
        "timestamp is not a number of seconds since 1970",
    )))?;
    let (distance, side) = if seconds >= now {
        (seconds - now, "ahead of")
    } else {
        (now - seconds, "behind")
    };
    if distance > window {
        return Err(Refusal::Replay(Cow::Owned(format!(
            "timestamp {seconds} is {distance} s {side} this server's clock, outside \
             replay_window_s = {window} (a replayed request, or a server clock that needs NTP)"
        ))));
    }
    Ok(())
}

/// Records the authenticated request's (`timestamp`, `nonce`) with a hash of its body, and
/// refuses the pair when it was seen with a different body.
pub(crate) async fn check_pair(
    state: &AppState,
    app: &AppConfig,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Result<(), Refusal> {
    if app.replay_window_s == 0 {
        return Ok(());
    }
    // The key is a hash: a nonce can be long, and a store key should not be.
    let mut pair = Sha256::new();
    pair.update(timestamp.as_bytes());
    pair.update([0]);
    pair.update(nonce.as_bytes());
    let key = format!(
        "replay:{}:{}",
        app.name,
        hex::encode(&pair.finalize()[..16])
    );
    let digest = hex::encode(Sha256::digest(body));
    let store = state.tokens.store();
    let ttl = outlives_window(app);
    // Twice at most: the record can expire between a failed `set_nx` and the `get`.
    for _ in 0..2 {
        let claimed = match store.set_nx(&key, &digest, ttl).await {
            Ok(claimed) => claimed,
            Err(e) => return skipped(app, &e),
        };
        if claimed {
            return Ok(());
        }
        match store.get(&key).await {
            Ok(Some(seen)) if bool::from(seen.as_bytes().ct_eq(digest.as_bytes())) => return Ok(()),
            Ok(Some(_)) => {
                return Err(Refusal::Replay(Cow::Borrowed(
                    "this timestamp and nonce were already used with a different body",
                )))
            }
            Ok(None) => continue,
            Err(e) => return skipped(app, &e),
        }
    }
    Ok(())
}

/// A store failure: the pair check is skipped (logged), the request goes on.
fn skipped(app: &AppConfig, e: &crate::store::StoreError) -> Result<(), Refusal> {
    // Every push would write it while the store is away: one line per 10 s, with a count.
    static WARN: crate::logging::Throttle = crate::logging::Throttle::every_ms(10_000);
    if let Some(suppressed) = WARN.admit() {
        tracing::warn!(app = %app.name, error = %e, suppressed, "store unavailable: (timestamp, nonce) pairs are not checked; the timestamp window still is");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxmp_proto::signature::Token;
    use wxmp_proto::AppId;

    fn app(window: u64) -> AppConfig {
        AppConfig {
            replay_window_s: window,
            ..AppConfig::new(
                "a",
                AppId::new("wx0123456789abcdef").unwrap(),
                Token::new("tok").unwrap(),
            )
        }
    }

    #[test]
    fn timestamps_outside_the_window_or_not_numbers_are_refused() {
        let now = 1_800_000_000;
        let app = app(300);
        for bad in [
            "1",
            "99999999999",
            "abc",
            "",
            "-5",
            "+1800000000",
            " 1800000000",
            "1800000000.5",
            "18446744073709551616",
            "1799999699",
            "1800000301",
        ] {
            assert!(
                matches!(check_timestamp(&app, bad, now), Err(Refusal::Replay(_))),
                "{bad:?} passed"
            );
        }
        for good in ["1800000000", "1799999700", "1800000300", "01800000000"] {
            assert!(check_timestamp(&app, good, now).is_ok(), "{good:?} refused");
        }
        let Err(Refusal::Replay(reason)) = check_timestamp(&app, "1", now) else {
            panic!()
        };
        assert!(
            reason.contains("behind") && reason.contains("300"),
            "{reason}"
        );
    }

    #[test]
    fn window_zero_turns_the_check_off() {
        assert!(check_timestamp(&app(0), "abc", 1_800_000_000).is_ok());
        assert!(check_timestamp(&app(0), "1", 1_800_000_000).is_ok());
    }

    #[test]
    fn records_outlive_twice_the_window() {
        assert!(outlives_window(&app(300)) > Duration::from_secs(600));
        assert!(outlives_window(&app(0)) > Duration::ZERO);
    }
}
