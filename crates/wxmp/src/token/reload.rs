//! Applying a changed set of apps to the running 中控 (a config reload), keeping what it holds.
//!
//! A reload must not cost an upstream call or drop a token callers already have, so the slots
//! are reused wherever the account and its credentials are unchanged, and only the slot table
//! is swapped:
//!
//! - an app whose `appid`, `secret` and `token_api` are unchanged keeps its slots as they are
//!   (held credentials, status, refreshers); a slot's `AppConfig` is only read for those
//!   fields, so edits elsewhere (keywords, mode, forward) do not concern it;
//! - an app whose `secret` or `token_api` changed gets new slots that start with the held
//!   credentials and status (same account: its tokens stay valid) and new refreshers that use
//!   the new settings;
//! - an app whose `appid` changed is another account: new, empty slots, and the stored
//!   credentials this instance held for the old AppID are deleted, so they are not served
//!   for the new one;
//! - added apps get new slots and refreshers, removed apps lose theirs.
//!
//! Refreshers of replaced slots are aborted. One caught mid-refresh leaves its store lock to
//! expire with its lease (10 s): the new refresher then waits for it, while the held token is
//! still served.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::credential::Credential;
use super::{lock, Kind, RefresherGuard, Slot, TokenCore};
use crate::config::AppConfig;

/// What applying a new set of apps changed, by app name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppsApplied {
    /// Apps that are new.
    pub added: Vec<String>,
    /// Apps that are gone.
    pub removed: Vec<String>,
    /// Apps whose `appid`, `secret` or `token_api` changed.
    pub recredentialed: Vec<String>,
}

/// True when a slot made for `old` serves `new` as well.
fn same_credentials(old: &AppConfig, new: &AppConfig) -> bool {
    old.appid == new.appid && old.secret == new.secret && old.token_api == new.token_api
}

impl TokenCore {
    /// Serves `apps` from now on (see the module docs); `refreshers` is the guard
    /// [`TokenCore::start`] returned, whose refreshers are stopped and started to match.
    pub async fn apply_apps(
        &self,
        apps: &BTreeMap<String, Arc<AppConfig>>,
        refreshers: &mut RefresherGuard,
    ) -> AppsApplied {
        let old_slots = self.inner.slots.load_full();
        let old_apps = self.inner.apps.load_full();
        let mut applied = AppsApplied::default();
        let mut slots = HashMap::new();
        let mut fresh = Vec::new();
        let mut other_account = Vec::new();
        for (name, app) in apps {
            let old = old_apps.get(name);
            if old.is_some_and(|old| same_credentials(old, app)) {
                for kind in Kind::ALL {
                    if let Some(slot) = old_slots.get(&(name.clone(), kind)) {
                        slots.insert((name.clone(), kind), slot.clone());
                    }
                }
                continue;
            }
            match old {
                Some(_) => applied.recredentialed.push(name.clone()),
                None => applied.added.push(name.clone()),
            }
            let same_account = old.is_some_and(|old| old.appid == app.appid);
            for kind in Kind::ALL {
                let slot = Arc::new(Slot::new(app, kind));
                if let Some(previous) = old_slots.get(&(name.clone(), kind)) {
                    if same_account {
                        if let Some(held) = previous.cached() {
                            slot.adopt(&held);
                        }
                        let status = std::mem::take(&mut *lock(&previous.status));
                        *lock(&slot.status) = status;
                    } else if let Some(held) = previous.cached() {
                        other_account.push((previous.key.clone(), held));
                    }
                }
                slots.insert((name.clone(), kind), slot.clone());
                fresh.push((name.clone(), kind, slot));
            }
        }
        for name in old_apps.keys() {
            if !apps.contains_key(name) {
                applied.removed.push(name.clone());
            }
        }
        for (key, old) in old_slots.iter() {
            let kept = slots.get(key).is_some_and(|slot| Arc::ptr_eq(slot, old));
            if !kept {
                if let Some(refresher) = refreshers.by_slot.remove(key) {
                    refresher.abort();
                }
            }
        }
        // Before the new refreshers start, as they begin by reading the store.
        for (key, held) in other_account {
            self.forget_stored(&key, &held).await;
        }
        self.inner.slots.store(Arc::new(slots));
        self.inner.apps.store(Arc::new(apps.clone()));
        for (name, kind, slot) in fresh {
            self.start_refresher(refreshers, &name, kind, &slot);
        }
        applied
    }

    /// Deletes the stored credential at `key` if it is still the one `held` (another
    /// instance may already have stored one for the new AppID).
    async fn forget_stored(&self, key: &str, held: &Credential) {
        let store = &self.inner.store;
        let Ok(Some(text)) = store.get(key).await else {
            return;
        };
        let same = serde_json::from_str::<Credential>(&text).is_ok_and(|c| c.value == held.value);
        if same {
            if let Err(e) = store.delete_if_eq(key, &text).await {
                tracing::warn!(key, error = %e, "cannot delete a credential of the previous AppID");
            }
        }
    }
}
