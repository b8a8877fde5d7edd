//! The in-memory backend: `HashMap`s behind std `Mutex`es, for tests and single-process use.
//!
//! The mutexes are never held across an `.await` (every method is synchronous inside), so a
//! std mutex is cheaper and simpler than tokio's. Keys are spread over [`SHARDS`] maps, each
//! with its own lock: a push writes several records, and with one map every growth of its
//! table and every sweep stalled all requests at once (a single map of a million dedup
//! records took tens of milliseconds to rehash or sweep, which set the callback's p99 under
//! load). Expiry is checked on read, with
//! `tokio::time::Instant` so that tests can pause time.
//!
//! Expired entries are freed two ways. A background sweeper wakes every [`SWEEP_INTERVAL`]
//! and drops them, whether or not anything is being written: after a flood of unique pushes
//! (each leaves a dedup record) the memory comes back within a minute of the records'
//! expiry, not at the next write. It holds only a `Weak` to the map, so it ends when the last
//! handle of the store is dropped, and it shrinks the map's table after a big sweep, since a
//! `HashMap` never gives capacity back by itself. Writes also sweep, amortised, so a flood
//! cannot outgrow the map between two ticks by more than the live set.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{StoreError, NOTIFY_CAPACITY};

/// The map plus the bookkeeping of the sweep of expired entries: every key is written with a
/// TTL by the callback dedup, so without a sweep the map would only grow.
#[derive(Debug)]
struct Entries {
    map: HashMap<String, Entry>,
    /// Inserts left before the next sweep.
    until_sweep: usize,
}

/// The fewest inserts into one shard between two sweeps of it.
const SWEEP_EVERY: usize = 64;

/// How many maps the keys are spread over.
const SHARDS: usize = 32;

/// How often the background sweeper frees expired entries: expired records are gone within
/// this long (plus the time of a sweep) with or without traffic.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

impl Default for Entries {
    fn default() -> Self {
        Entries {
            map: HashMap::new(),
            until_sweep: SWEEP_EVERY,
        }
    }
}

impl Entries {
    /// Inserts, sweeping expired entries first when due. A sweep scans the whole map, so the
    /// next one waits for at least as many inserts as the map then holds: the scan costs
    /// amortised O(1) per insert even when most entries are still live.
    fn insert(&mut self, key: &str, entry: Entry, now: Instant) {
        self.until_sweep = self.until_sweep.saturating_sub(1);
        if self.until_sweep == 0 {
            self.sweep(now);
        }
        self.map.insert(key.to_owned(), entry);
    }

    /// Drops expired entries, and gives the table's spare capacity back when most of it is
    /// unused (a table sized for a flood would otherwise stay that size).
    fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, e| e.live(now));
        self.until_sweep = self.map.len().max(SWEEP_EVERY);
        if self.map.capacity() > 4 * self.map.len() + SWEEP_EVERY {
            self.map.shrink_to_fit();
        }
    }
}

/// The background sweeper's settings and whether it runs.
#[derive(Debug)]
struct Sweeper {
    every: Duration,
    started: AtomicBool,
}

/// The maps, and the hasher that picks a key's map.
#[derive(Debug)]
struct Shards {
    maps: Box<[Mutex<Entries>]>,
    hasher: RandomState,
}

impl Default for Shards {
    fn default() -> Self {
        Shards {
            maps: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Shards {
    /// The locked map that holds `key`.
    fn of(&self, key: &str) -> MutexGuard<'_, Entries> {
        let i = self.hasher.hash_one(key) as usize % self.maps.len();
        lock(&self.maps[i])
    }

    /// Sweeps each map in turn, holding one lock at a time.
    fn sweep(&self, now: Instant) {
        for map in self.maps.iter() {
            lock(map).sweep(now);
        }
    }

    fn sum(&self, of: impl Fn(&Entries) -> usize) -> usize {
        self.maps.iter().map(|m| of(&lock(m))).sum()
    }
}

/// Sweeps `entries` every `every` until the store is dropped.
async fn sweep_loop(entries: Weak<Shards>, every: Duration) {
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(entries) = entries.upgrade() else {
            return;
        };
        entries.sweep(Instant::now());
    }
}

fn lock(entries: &Mutex<Entries>) -> MutexGuard<'_, Entries> {
    // A panic while holding the lock cannot leave a half-written entry, so recover.
    entries
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
struct Entry {
    value: String,
    expires_at: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// An in-process key/value store.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    entries: Arc<Shards>,
    notify: broadcast::Sender<String>,
    sweeper: Arc<Sweeper>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store, swept every [`SWEEP_INTERVAL`].
    pub fn new() -> Self {
        Self::with_sweep_interval(SWEEP_INTERVAL)
    }

    /// An empty store swept every `every` (tests use a short one).
    pub fn with_sweep_interval(every: Duration) -> Self {
        MemoryStore {
            entries: Arc::default(),
            notify: broadcast::channel(NOTIFY_CAPACITY).0,
            sweeper: Arc::new(Sweeper {
                every,
                started: AtomicBool::new(false),
            }),
        }
    }

    fn lock(&self, key: &str) -> MutexGuard<'_, Entries> {
        self.entries.of(key)
    }

    /// Starts the background sweeper on the first write. Lazily, because a store may be
    /// made outside a runtime; every write runs inside one.
    fn ensure_sweeper(&self) {
        // Every write calls this: a plain load keeps the common case off the shared cache
        // line's write path; only the first writers race on the swap.
        if self.sweeper.started.load(Ordering::Acquire)
            || self.sweeper.started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(sweep_loop(
                    Arc::downgrade(&self.entries),
                    self.sweeper.every,
                ));
            }
            Err(_) => self.sweeper.started.store(false, Ordering::Release),
        }
    }

    /// How many entries the map holds, expired ones included (for tests of the sweeper).
    pub fn held(&self) -> usize {
        self.entries.sum(|e| e.map.len())
    }

    /// The map's capacity (for tests that memory is given back).
    pub fn capacity(&self) -> usize {
        self.entries.sum(|e| e.map.capacity())
    }

    /// See [`super::Store::get`].
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        Ok(self
            .lock(key)
            .map
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.clone()))
    }

    /// See [`super::Store::set`].
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let expires_at = ttl.map(|ttl| now + ttl);
        let entry = Entry {
            value: value.to_owned(),
            expires_at,
        };
        self.ensure_sweeper();
        self.lock(key).insert(key, entry, now);
        let _ = self.notify.send(key.to_owned());
        Ok(())
    }

    /// See [`super::Store::set_nx`].
    pub async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.ensure_sweeper();
        let now = Instant::now();
        let mut entries = self.lock(key);
        if entries.map.get(key).is_some_and(|e| e.live(now)) {
            return Ok(false);
        }
        let entry = Entry {
            value: value.to_owned(),
            expires_at: Some(now + ttl),
        };
        entries.insert(key, entry, now);
        Ok(true)
    }

    /// See [`super::Store::delete_if_eq`].
    pub async fn delete_if_eq(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let deleted = {
            let mut entries = self.lock(key);
            let matches = entries
                .map
                .get(key)
                .is_some_and(|e| e.live(now) && e.value == value);
            if matches {
                entries.map.remove(key);
            }
            matches
        };
        if deleted {
            let _ = self.notify.send(key.to_owned());
        }
        Ok(deleted)
    }

    /// See [`super::Store::expire_if_eq`].
    pub async fn expire_if_eq(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut entries = self.lock(key);
        match entries.map.get_mut(key) {
            Some(e) if e.live(now) && e.value == value => {
                e.expires_at = Some(now + ttl);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// See [`super::Store::subscribe`].
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.notify.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn kv_contract() {
        let store = MemoryStore::new();
        let mut events = store.subscribe();
        assert_eq!(store.get("k").await.unwrap(), None);
        assert!(store
            .set_nx("k", "a", Duration::from_secs(10))
            .await
            .unwrap());
        assert!(!store
            .set_nx("k", "b", Duration::from_secs(10))
            .await
            .unwrap());
        assert!(!store.delete_if_eq("k", "b").await.unwrap());
        // Renewing a lease: only its owner can, and the new TTL counts from now.
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(!store
            .expire_if_eq("k", "b", Duration::from_secs(10))
            .await
            .unwrap());
        assert!(store
            .expire_if_eq("k", "a", Duration::from_secs(10))
            .await
            .unwrap());
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some("a"));
        assert!(events.try_recv().is_err(), "a renewal announces nothing");
        assert!(store.delete_if_eq("k", "a").await.unwrap());
        assert_eq!(events.recv().await.unwrap(), "k");
        assert!(
            !store
                .expire_if_eq("k", "a", Duration::from_secs(10))
                .await
                .unwrap(),
            "a deleted key is not recreated"
        );
        store
            .set("t", "v", Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(store.get("t").await.unwrap().as_deref(), Some("v"));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(store.get("t").await.unwrap(), None);
        assert!(store
            .set_nx("t", "w", Duration::from_secs(1))
            .await
            .unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_swept() {
        let store = MemoryStore::new();
        // Enough writes that every shard reaches its sweep (keys spread at random, so with a
        // wide margin): each shard then holds only live entries.
        let expiring = 2 * SHARDS * SWEEP_EVERY;
        for i in 0..expiring {
            store
                .set_nx(&format!("d{i}"), "x", Duration::from_secs(1))
                .await
                .unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        let live = 3 * expiring;
        for i in 0..live {
            store.set(&format!("e{i}"), "y", None).await.unwrap();
        }
        assert_eq!(store.held(), live, "expired entries kept");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_freed_on_a_timer_without_traffic() {
        let store = MemoryStore::with_sweep_interval(Duration::from_secs(10));
        for i in 0..50_000 {
            store
                .set_nx(&format!("delivery:{i}"), "x", Duration::from_secs(5))
                .await
                .unwrap();
        }
        store.set("token", "live", None).await.unwrap();
        let flooded = store.capacity();
        assert!(store.held() > 40_000);
        // No further writes or reads: only the timer can free them.
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(store.held(), 1, "expired entries still held");
        assert!(
            store.capacity() * 10 < flooded,
            "{} of {flooded}",
            store.capacity()
        );
        assert_eq!(store.get("token").await.unwrap().as_deref(), Some("live"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_ends_with_the_store() {
        let store = MemoryStore::with_sweep_interval(Duration::from_secs(1));
        store.set("k", "v", None).await.unwrap();
        let weak = Arc::downgrade(&store.entries);
        drop(store);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(weak.upgrade().is_none());
    }
}
