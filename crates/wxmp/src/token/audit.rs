//! The refresh audit: when each credential was refreshed, why, for whom, and what came of it —
//! kept in the store, so every instance answers `GET /v1/apps/{app}/refreshes` the same.
//!
//! Each (app, kind) keeps its last [`KEEP`] records as one JSON list under `audit:{app}:{kind}`,
//! newest first. The list is only rewritten by the holder of that slot's refresh lock (records
//! are written where WeChat is called, which is under the lock), so the read-modify-write of
//! the list needs no lock of its own and loses no record. The store's five operations are
//! enough; a backend-specific list type (Redis `LPUSH`/`LTRIM`) would have been a sixth.
//! When the store is down the record is dropped with a debug line: the audit must never stand
//! in the way of a refresh.

use serde::{Deserialize, Serialize};

use super::Kind;
pub use super::RefreshReason as Reason;
use crate::store::{Store, StoreError};

/// Records kept per app and credential kind.
pub const KEEP: usize = 100;

/// One refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When, as RFC 3339 UTC with milliseconds.
    pub at: String,
    /// `access_token`, `jsapi` or `wx_card`.
    pub kind: String,
    /// Why.
    pub reason: Reason,
    /// Who asked: a client's name, `key` for an unscoped key, `wxmp` for wxmp itself.
    pub by: String,
    /// `ok`, `refused: …` (wxmp did not call WeChat) or `error: …` (WeChat failed).
    pub result: String,
}

fn key(app: &str, kind: Kind) -> String {
    format!("audit:{app}:{}", kind.as_str())
}

/// Adds `record` in front of the slot's list. Call only while holding the slot's refresh lock.
pub(crate) async fn append(store: &Store, app: &str, kind: Kind, record: Record) {
    let key = key(app, kind);
    let result: Result<(), StoreError> = async {
        let mut list = read_list(store, &key).await?;
        list.insert(0, record);
        list.truncate(KEEP);
        let text = serde_json::to_string(&list).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        store.set(&key, &text, None).await
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(app, kind = kind.as_str(), error = %e, "refresh audit record not stored");
    }
}

/// The app's last refreshes of every kind, newest first, at most [`KEEP`].
pub async fn read(store: &Store, app: &str) -> Result<Vec<Record>, StoreError> {
    let mut all = Vec::new();
    for kind in Kind::ALL {
        all.extend(read_list(store, &key(app, kind)).await?);
    }
    // RFC 3339 UTC with fixed-width fields sorts as text.
    all.sort_by(|a, b| b.at.cmp(&a.at));
    all.truncate(KEEP);
    Ok(all)
}

async fn read_list(store: &Store, key: &str) -> Result<Vec<Record>, StoreError> {
    match store.get(key).await? {
        // An unreadable list (written by a future version) starts over rather than blocking.
        Some(text) => Ok(serde_json::from_str(&text).unwrap_or_default()),
        None => Ok(Vec::new()),
    }
}

/// `ms` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let (y, m, d) = civil_from_days(days);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Howard Hinnant's days-to-civil: the proleptic Gregorian date of a day number.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_714_036_504_123), "2024-04-25T09:15:04.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[tokio::test]
    async fn keeps_the_newest_hundred_of_each_kind() {
        let store = Store::memory();
        for i in 0..(KEEP as u64 + 5) {
            let record = Record {
                at: rfc3339_ms(1_000_000 + i),
                kind: "access_token".into(),
                reason: Reason::Proactive,
                by: "wxmp".into(),
                result: "ok".into(),
            };
            append(&store, "a", Kind::AccessToken, record).await;
        }
        let ticket = Record {
            at: rfc3339_ms(2_000_000),
            kind: "jsapi".into(),
            reason: Reason::EmptyStore,
            by: "wxmp".into(),
            result: "ok".into(),
        };
        append(
            &store,
            "a",
            Kind::Ticket(super::super::TicketType::Jsapi),
            ticket,
        )
        .await;
        let all = read(&store, "a").await.unwrap();
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].kind, "jsapi", "newest first across kinds");
        assert_eq!(all[1].at, rfc3339_ms(1_000_000 + KEEP as u64 + 4));
        assert!(read(&store, "b").await.unwrap().is_empty());
    }
}
