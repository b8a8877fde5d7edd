//! The SQLite backend: one file that survives restarts, so a restart serves the stored
//! access_token instead of spending quota on a new one, and that several processes on one host
//! may share.
//!
//! Why this shape:
//! - rusqlite is blocking, so every operation runs on tokio's blocking pool, under
//!   [`OP_TIMEOUT`] like every other backend, and the connection sits behind a std `Mutex`
//!   (see [`SqliteStore`]).
//! - Each operation is one statement. SQLite runs a writing statement under its database-wide
//!   write lock, so a conditional statement is atomic across connections and processes:
//!   `set_nx` is an upsert whose update only applies over an expired row, `delete_if_eq` a
//!   `DELETE … WHERE value = ?`, `expire_if_eq` an `UPDATE … WHERE value = ?`; the number of
//!   changed rows says who won.
//! - WAL journal mode lets readers run beside the single writer; `busy_timeout` makes a writer
//!   wait for another process's write instead of failing at once. It is shorter than
//!   [`OP_TIMEOUT`], so contention comes back as a SQLite error rather than leaving a
//!   statement running after its caller gave up.
//! - Expiry is wall-clock Unix milliseconds (`expires_at_ms`, NULL = never), because it must
//!   survive restarts; tokio's paused test clock does not move it. Readers ignore expired
//!   rows; writers sweep them out about once a minute, so one-off keys (delivery dedup
//!   records) do not pile up.
//! - Change notifications are local only: a broadcast fired by `set` and by a successful
//!   `delete_if_eq` of this handle. Another process's writes are not announced; waiters poll.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use tokio::sync::broadcast;

use super::{StoreError, NOTIFY_CAPACITY, OP_TIMEOUT};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(1500);

/// Opening may create the file and switch it to WAL: allow more than one operation's worth.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often (at most) a write also deletes expired rows.
const SWEEP_INTERVAL_MS: i64 = 60_000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at_ms INTEGER
)";

/// A key/value store in one SQLite file. Clones share the connection.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// The connection, locked only inside `spawn_blocking` closures. Those are synchronous
    /// and never await, so a std `Mutex` is the right tool: tokio's would add nothing but a
    /// `blocking_lock` call. One connection per store is enough, as SQLite serializes
    /// writers anyway and each statement takes well under a millisecond.
    db: Arc<Mutex<Db>>,
    /// The file, for error messages.
    path: Arc<Path>,
    /// Fired with the key on `set` and on a successful `delete_if_eq`.
    notify: broadcast::Sender<String>,
}

#[derive(Debug)]
struct Db {
    conn: Connection,
    /// Wall-clock milliseconds after which the next write sweeps expired rows.
    next_sweep_ms: i64,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, creating its folder when missing, and
    /// prepares it for sharing with other processes (WAL, busy timeout).
    ///
    /// Fails with [`StoreError::Unavailable`] naming the path when the file cannot be created
    /// or opened, and with [`StoreError::Corrupt`] when it is not a SQLite database.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let owned = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || Self::open_blocking(&owned));
        match tokio::time::timeout(OPEN_TIMEOUT, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(StoreError::Unavailable(format!(
                "sqlite: cannot open {}: {join}",
                path.display()
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "sqlite: cannot open {}: no answer within {OPEN_TIMEOUT:?}",
                path.display()
            ))),
        }
    }

    /// The blocking part of [`SqliteStore::open`], for callers outside a tokio runtime.
    pub fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if parent.exists() && !parent.is_dir() {
                return Err(StoreError::Unavailable(format!(
                    "sqlite: cannot open {}: {} is not a folder",
                    path.display(),
                    parent.display()
                )));
            }
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!(
                    "sqlite: cannot create the folder {} for {}: {e}",
                    parent.display(),
                    path.display()
                ))
            })?;
        }
        let conn = Connection::open(path)
            .and_then(|conn| prepare(&conn, path).map(|()| conn))
            .map_err(|e| open_error(path, &e))?;
        let store = SqliteStore {
            db: Arc::new(Mutex::new(Db {
                conn,
                next_sweep_ms: 0,
            })),
            path: Arc::from(PathBuf::from(path)),
            notify: broadcast::channel(NOTIFY_CAPACITY).0,
        };
        store
            .lock()
            .sweep(now_ms())
            .map_err(|e| open_error(path, &e))?;
        Ok(store)
    }

    /// The database file this store uses.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Db> {
        lock(&self.db)
    }

    /// Runs `op` on the blocking pool with the connection locked, within [`OP_TIMEOUT`].
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db, i64) -> rusqlite::Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let task = tokio::task::spawn_blocking(move || {
            let mut db = lock(&db);
            op(&mut db, now_ms())
        });
        match tokio::time::timeout(OP_TIMEOUT, task).await {
            Ok(Ok(result)) => result.map_err(op_error),
            Ok(Err(join)) => Err(StoreError::Unavailable(format!("sqlite: {join}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "sqlite: no answer within {OP_TIMEOUT:?} from {}",
                self.path.display()
            ))),
        }
    }

    /// See [`super::Store::get`].
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.run(move |db, now| {
            db.conn
                .prepare_cached(
                    "SELECT value FROM kv
                     WHERE key = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?2)",
                )?
                .query_row(params![key, now], |row| row.get(0))
                .optional()
        })
        .await
    }

    /// See [`super::Store::set`].
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let (k, value) = (key.to_owned(), value.to_owned());
        self.run(move |db, now| {
            db.sweep(now)?;
            let expires_at_ms = ttl.map(|ttl| expiry(now, ttl));
            db.conn
                .prepare_cached(
                    "INSERT INTO kv (key, value, expires_at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE
                     SET value = excluded.value, expires_at_ms = excluded.expires_at_ms",
                )?
                .execute(params![k, value, expires_at_ms])?;
            Ok(())
        })
        .await?;
        let _ = self.notify.send(key.to_owned());
        Ok(())
    }

    /// See [`super::Store::set_nx`].
    pub async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run(move |db, now| {
            db.sweep(now)?;
            // The update applies only over an expired row, so a live row makes this a no-op
            // (0 rows changed). One statement: atomic under SQLite's write lock.
            let changed = db
                .conn
                .prepare_cached(
                    "INSERT INTO kv (key, value, expires_at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE
                     SET value = excluded.value, expires_at_ms = excluded.expires_at_ms
                     WHERE kv.expires_at_ms IS NOT NULL AND kv.expires_at_ms <= ?4",
                )?
                .execute(params![key, value, expiry(now, ttl), now])?;
            Ok(changed == 1)
        })
        .await
    }

    /// See [`super::Store::delete_if_eq`].
    pub async fn delete_if_eq(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let (k, value) = (key.to_owned(), value.to_owned());
        let deleted = self
            .run(move |db, now| {
                let changed = db
                    .conn
                    .prepare_cached(
                        "DELETE FROM kv WHERE key = ?1 AND value = ?2
                         AND (expires_at_ms IS NULL OR expires_at_ms > ?3)",
                    )?
                    .execute(params![k, value, now])?;
                Ok(changed == 1)
            })
            .await?;
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
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run(move |db, now| {
            let changed = db
                .conn
                .prepare_cached(
                    "UPDATE kv SET expires_at_ms = ?3 WHERE key = ?1 AND value = ?2
                     AND (expires_at_ms IS NULL OR expires_at_ms > ?4)",
                )?
                .execute(params![key, value, expiry(now, ttl), now])?;
            Ok(changed == 1)
        })
        .await
    }

    /// See [`super::Store::subscribe`]. Only this handle's own writes are announced.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.notify.subscribe()
    }
}

impl Db {
    /// Deletes expired rows if the last sweep is more than [`SWEEP_INTERVAL_MS`] old.
    fn sweep(&mut self, now: i64) -> rusqlite::Result<()> {
        if now < self.next_sweep_ms {
            return Ok(());
        }
        self.conn
            .prepare_cached(
                "DELETE FROM kv WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1",
            )?
            .execute(params![now])?;
        self.next_sweep_ms = now.saturating_add(SWEEP_INTERVAL_MS);
        Ok(())
    }
}

/// Sets up a freshly opened connection. The busy timeout comes first so that the journal
/// switch and the schema wait for a process that is opening the same file.
fn prepare(conn: &Connection, path: &Path) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), journal_mode = %mode,
            "sqlite: WAL journal mode unavailable; sharing the file between processes will be slower");
    }
    // With WAL, NORMAL only risks the last commits on power loss: a token fetched again.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)
}

/// A poisoned mutex still guards a consistent connection (SQLite rolls back a statement
/// that did not finish), so recover it.
fn lock(db: &Mutex<Db>) -> MutexGuard<'_, Db> {
    db.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

fn open_error(path: &Path, e: &rusqlite::Error) -> StoreError {
    let message = format!("sqlite: cannot open {}: {e}", path.display());
    if is_corrupt(e) {
        StoreError::Corrupt(message)
    } else {
        StoreError::Unavailable(message)
    }
}

/// Maps an operation's error. Neither branch can carry a stored value: SQLite's messages do
/// not quote data, and a column of the wrong type is reported by its type alone.
fn op_error(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::FromSqlConversionFailure(..) => {
            StoreError::Corrupt("sqlite: a stored value is not text".to_owned())
        }
        e if is_corrupt(&e) => StoreError::Corrupt(format!("sqlite: {e}")),
        e => StoreError::Unavailable(format!("sqlite: {e}")),
    }
}

/// Wall-clock Unix milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `now + ttl` in Unix milliseconds, at least 1 ms ahead.
fn expiry(now: i64, ttl: Duration) -> i64 {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
    now.saturating_add(ttl_ms)
}
