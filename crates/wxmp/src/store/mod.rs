//! Where wxmp keeps what must outlive a request: access_tokens and tickets, refresh locks, and
//! the dedup records of callback deliveries.
//!
//! Every backend offers the same small key/value contract — `get`, `set` with an optional
//! TTL, `set_nx` (create only if absent), `delete_if_eq` (compare-and-delete),
//! `expire_if_eq` (compare-and-renew a lease) — plus a stream of "this key changed"
//! notifications. The token core and the callback dedup build their locks and records on top
//! of these operations, so the consistency argument is made once (in `token/`) and each
//! backend only has to get each operation atomic:
//!
//! - [`memory`]: a `HashMap` behind a std `Mutex`; tests and single-process use.
//! - [`sqlite`]: rusqlite with bundled SQLite; survives restarts, so a restart costs no quota.
//! - [`redis`]: several instances share one Redis; `SET NX PX` and Lua compare-and-delete /
//!   compare-and-expire, notifications over pub/sub.
//!
//! Backends are an enum rather than a trait object: there are exactly three, and an enum keeps
//! the async methods free of boxing.

pub mod memory;
pub mod redis;
pub mod sqlite;

use std::time::Duration;

use tokio::sync::broadcast;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
pub use self::sqlite::SqliteStore;

/// How long any single store operation may take before the store counts as unreachable.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// A store failure. Messages never contain stored values (they may be tokens).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The backend cannot be reached or timed out (Redis down, disk error).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with something this version cannot read.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
}

/// The configured backend.
#[derive(Clone, Debug)]
pub enum Store {
    /// In-process only.
    Memory(MemoryStore),
    /// A SQLite file.
    Sqlite(SqliteStore),
    /// A shared Redis.
    Redis(RedisStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Memory($s) => $call,
            Store::Sqlite($s) => $call,
            Store::Redis($s) => $call,
        }
    };
}

impl Store {
    /// A fresh in-memory store.
    pub fn memory() -> Self {
        Store::Memory(MemoryStore::new())
    }

    /// The SQLite file at `path`, its folder created when missing (see [`SqliteStore::open`]).
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Self, StoreError> {
        SqliteStore::open(path).await.map(Store::Sqlite)
    }

    /// The Redis at `url`, every key under `prefix` (see [`RedisStore::connect`]).
    pub async fn open_redis(url: &str, prefix: &str) -> Result<Self, StoreError> {
        RedisStore::connect(url, prefix).await.map(Store::Redis)
    }

    /// The value at `key`, unless absent or expired.
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.get(key).await)
    }

    /// Sets `key` (replacing any value), expiring after `ttl` if given, and notifies watchers.
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.set(key, value, ttl).await)
    }

    /// Sets `key` only if it is absent or expired; true if this call set it. Does not notify.
    pub async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        dispatch!(self, s => s.set_nx(key, value, ttl).await)
    }

    /// Deletes `key` only if it holds `value`; true if it was deleted. Notifies watchers when
    /// it deletes.
    pub async fn delete_if_eq(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_if_eq(key, value).await)
    }

    /// Gives `key` a new TTL of `ttl` from now, only if it still holds `value` (and has not
    /// expired); true if it did. A lock holder renews its lease with it, and learns when it
    /// has lost the lock. Does not notify: the value did not change.
    pub async fn expire_if_eq(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.expire_if_eq(key, value, ttl).await)
    }

    /// Keys changed by `set` or `delete_if_eq` — by this process, and for Redis by every
    /// instance. Best effort: a lagging receiver may miss some, so waiters also poll slowly.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        dispatch!(self, s => s.subscribe())
    }

    /// A short name of the backend for status pages.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Sqlite(_) => "sqlite",
            Store::Redis(_) => "redis",
        }
    }
}

/// Capacity of the notification channels; a slow receiver lags and falls back to polling.
pub(crate) const NOTIFY_CAPACITY: usize = 1024;
