//! Budgets counted across instances: how many passive refreshes a client caused in the last
//! minute, how many `force_refresh` calls an app made today.
//!
//! The store offers no increment, only `get`, `set`, `set_nx` and `delete_if_eq`. A counter
//! with a limit is built from `limit` numbered slots instead: a use claims a free slot with
//! `set_nx`, and when every slot is taken the budget is spent. Each `set_nx` is atomic in every
//! backend, so however many instances race, at most `limit` claims hold at once — the
//! guarantee that matters — without a lock or a read-modify-write.
//!
//! Two shapes:
//! - [`Budget`], per calendar window (a day, as WeChat counts `force_refresh`): the window is
//!   in the key and slots outlive it, so slots are taken in order and a binary search with
//!   `get` finds the first free one in O(log limit) round trips. A claim whose use did not
//!   happen (WeChat failed) is given back with `delete_if_eq`.
//! - [`claim_sliding`], per moving span (a client's passive refreshes in *any* 60 s): each
//!   slot lives exactly one span, so at most `limit` uses fall in any span, with no burst of
//!   twice the limit around a window's edge. Slots free up out of order, so a claim scans them
//!   (the limit is small).

use std::time::Duration;

use crate::store::{Store, StoreError};

/// One claimed slot, to give back if its use did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    key: String,
    owner: String,
}

/// A per-window budget: `limit` uses per window of `window` length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Uses allowed per window.
    pub limit: u32,
    /// The window's length.
    pub window: Duration,
}

impl Budget {
    /// The window number of `now_ms` (shifted by `offset_ms`, so a day can start at Beijing
    /// midnight as WeChat's quotas do).
    pub fn window_of(&self, now_ms: u64, offset_ms: u64) -> u64 {
        let len = u64::try_from(self.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        now_ms.saturating_add(offset_ms) / len
    }

    fn slot_key(base: &str, window: u64, n: u32) -> String {
        format!("{base}:{window}:{n}")
    }

    /// Claims one use in `window` under `base`, as `owner`; `None` when the budget is spent.
    pub async fn claim(
        &self,
        store: &Store,
        base: &str,
        window: u64,
        owner: &str,
    ) -> Result<Option<Claim>, StoreError> {
        // Slots outlive their window (twice its length), so none lapses while it is current.
        let ttl = self.window.saturating_mul(2);
        let mut n = self.first_free(store, base, window).await?;
        while n < self.limit {
            let key = Self::slot_key(base, window, n);
            if store.set_nx(&key, owner, ttl).await? {
                return Ok(Some(Claim {
                    key,
                    owner: owner.to_owned(),
                }));
            }
            n += 1;
        }
        Ok(None)
    }

    /// Gives a claim back (its use did not happen).
    pub async fn release(store: &Store, claim: &Claim) -> Result<(), StoreError> {
        store.delete_if_eq(&claim.key, &claim.owner).await.map(drop)
    }

    /// Uses counted in `window` so far.
    pub async fn used(&self, store: &Store, base: &str, window: u64) -> Result<u32, StoreError> {
        self.first_free(store, base, window).await
    }

    /// The lowest slot number that is free, assuming slots are taken in order (a given-back
    /// slot below it is simply not reused, which only errs on the side of fewer uses).
    async fn first_free(&self, store: &Store, base: &str, window: u64) -> Result<u32, StoreError> {
        let (mut lo, mut hi) = (0u32, self.limit);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if store
                .get(&Self::slot_key(base, window, mid))
                .await?
                .is_some()
            {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

/// Claims one of `limit` slots under `base`, each held for `span`: at most `limit` claims
/// succeed in any `span`. True when claimed.
pub(crate) async fn claim_sliding(
    store: &Store,
    base: &str,
    limit: u32,
    span: Duration,
    owner: &str,
) -> Result<bool, StoreError> {
    for n in 0..limit {
        if store.set_nx(&format!("{base}:{n}"), owner, span).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_limit_claims_per_window_however_many_race() {
        let store = Store::memory();
        let budget = Budget {
            limit: 5,
            window: Duration::from_secs(60),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let store = store.clone();
            tasks.spawn(async move {
                budget
                    .claim(&store, "b", 7, &format!("o{i}"))
                    .await
                    .unwrap()
            });
        }
        let mut won = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Some(c) = r.unwrap() {
                won.push(c);
            }
        }
        assert_eq!(won.len(), 5);
        assert_eq!(budget.used(&store, "b", 7).await.unwrap(), 5);
        assert_eq!(
            budget.used(&store, "b", 8).await.unwrap(),
            0,
            "a new window"
        );
        // A use that did not happen is given back and can be claimed again.
        Budget::release(&store, &won[4]).await.unwrap();
        assert!(budget
            .claim(&store, "b", 7, "again")
            .await
            .unwrap()
            .is_some());
        assert!(budget
            .claim(&store, "b", 7, "over")
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn sliding_budgets_free_up_one_span_after_each_use() {
        let store = Store::memory();
        let span = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(claim_sliding(&store, "s", 3, span, "o").await.unwrap());
        }
        assert!(!claim_sliding(&store, "s", 3, span, "o").await.unwrap());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!claim_sliding(&store, "s", 3, span, "o").await.unwrap());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(claim_sliding(&store, "s", 3, span, "o").await.unwrap());
        assert!(
            !claim_sliding(&store, "s", 0, span, "o").await.unwrap(),
            "0 allows none"
        );
    }

    #[test]
    fn beijing_days_start_at_16_utc() {
        let day = Budget {
            limit: 20,
            window: Duration::from_secs(86_400),
        };
        let offset = 8 * 3_600_000;
        let utc_1559 = 15 * 3_600_000 + 59 * 60_000;
        assert_eq!(day.window_of(utc_1559, offset), 0);
        assert_eq!(day.window_of(16 * 3_600_000, offset), 1);
    }
}
