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
//!   rows. A sweeper thread deletes them every [`SWEEP_INTERVAL`], off the request path, by
//!   an index on `expires_at_ms` and in batches of [`SWEEP_BATCH`] rows, taking the
//!   connection's lock for one batch at a time: a table of a million expired dedup records
//!   never holds a request up for more than one small batch. It holds a `Weak` to the
//!   connection and ends when the store is dropped.
//! - The file gives space back: it is in `auto_vacuum = INCREMENTAL` mode, and after a sweep
//!   the freed pages are returned in small `incremental_vacuum` steps and the WAL is
//!   checkpointed, so the file shrinks after a flood. A file made before this mode existed is
//!   converted once at open (expired rows deleted first, then `VACUUM`; live rows — tokens —
//!   are kept). If another process holds the file then, the conversion waits for the next
//!   start.
//! - The file is created with mode `0600` (its `-wal` and `-shm` inherit it): it holds
//!   access_tokens.
//! - Change notifications are local only: a broadcast fired by `set` and by a successful
//!   `delete_if_eq` of this handle. Another process's writes are not announced; waiters poll.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use tokio::sync::broadcast;

use super::{StoreError, NOTIFY_CAPACITY, OP_TIMEOUT};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(1500);

/// Opening may create the file, switch it to WAL, and convert an old file once (a `VACUUM`
/// of its live rows): allow much more than one operation's worth.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the sweeper thread deletes expired rows.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Rows deleted per batch: a few milliseconds of the connection's lock.
pub const SWEEP_BATCH: i64 = 500;

/// Free pages returned to the file system per `incremental_vacuum` step.
const VACUUM_STEP: i64 = 1000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at_ms) WHERE expires_at_ms IS NOT NULL;";

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
    /// True when the file is in `auto_vacuum = INCREMENTAL` mode, so freed pages can be given
    /// back (false only when converting an old file failed at open).
    incremental: bool,
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
        Self::open_with_sweep(path, SWEEP_INTERVAL)
    }

    /// Like [`SqliteStore::open_blocking`], with the sweeper waking every `every` (tests use a
    /// short interval).
    pub fn open_with_sweep(path: &Path, every: Duration) -> Result<Self, StoreError> {
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
        create_private(path)?;
        let (conn, incremental) = Connection::open(path)
            .and_then(|conn| prepare(&conn, path).map(|incremental| (conn, incremental)))
            .map_err(|e| open_error(path, &e))?;
        let store = SqliteStore {
            db: Arc::new(Mutex::new(Db { conn, incremental })),
            path: Arc::from(PathBuf::from(path)),
            notify: broadcast::channel(NOTIFY_CAPACITY).0,
        };
        spawn_sweeper(Arc::downgrade(&store.db), every, store.path.clone());
        Ok(store)
    }

    /// Deletes every expired row now, in batches, and gives the space back; the number of
    /// rows deleted. The sweeper thread calls this; tests may too.
    pub fn sweep_now(&self) -> Result<u64, StoreError> {
        sweep(&self.db).map_err(op_error)
    }

    /// The database file this store uses.
    pub fn path(&self) -> &Path {
        &self.path
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

/// Creates the database file, readable and writable by its owner only, when it does not
/// exist yet. SQLite creates `-wal` and `-shm` with the file's mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "sqlite: cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Wakes every `every` (first at once) and sweeps, until the store is dropped.
fn spawn_sweeper(db: Weak<Mutex<Db>>, every: Duration, path: Arc<Path>) {
    let spawned = std::thread::Builder::new()
        .name("wxmp-sqlite-sweep".to_owned())
        .spawn(move || loop {
            let Some(db) = db.upgrade() else { return };
            match sweep(&db) {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::debug!(path = %path.display(), deleted, "sqlite: expired rows swept");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "sqlite: sweeping expired rows failed; retrying later");
                }
            }
            drop(db);
            std::thread::sleep(every);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "sqlite: cannot start the sweeper thread; expired rows stay until restart");
    }
}

/// Deletes expired rows in batches of [`SWEEP_BATCH`], locking the connection for one batch
/// at a time, then returns the freed pages in steps and checkpoints the WAL.
fn sweep(db: &Mutex<Db>) -> rusqlite::Result<u64> {
    let mut deleted: u64 = 0;
    loop {
        let batch = lock(db)
            .conn
            .prepare_cached(
                "DELETE FROM kv WHERE rowid IN (SELECT rowid FROM kv
                 WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1 LIMIT ?2)",
            )?
            .execute(params![now_ms(), SWEEP_BATCH])?;
        deleted += batch as u64;
        if (batch as i64) < SWEEP_BATCH {
            break;
        }
        // Let a waiting request have the lock between batches.
        std::thread::yield_now();
    }
    if deleted > 0 {
        give_space_back(db)?;
    }
    Ok(deleted)
}

/// Returns the free pages to the file system, [`VACUUM_STEP`] at a time, then truncates the
/// WAL so the file's size on disk shows it.
fn give_space_back(db: &Mutex<Db>) -> rusqlite::Result<()> {
    if !lock(db).incremental {
        return Ok(());
    }
    loop {
        let guard = lock(db);
        let free: i64 = guard
            .conn
            .query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
        if free == 0 {
            break;
        }
        // Stepped to the end: SQLite frees one page per step of this pragma.
        let mut step = guard
            .conn
            .prepare(&format!("PRAGMA incremental_vacuum({VACUUM_STEP})"))?;
        let mut rows = step.query([])?;
        while rows.next()?.is_some() {}
        drop(rows);
        drop(step);
        let after: i64 = guard
            .conn
            .query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
        if after >= free {
            break;
        }
        drop(guard);
        std::thread::yield_now();
    }
    // Busy readers elsewhere make this return early; the next sweep tries again.
    lock(db)
        .conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Sets up a freshly opened connection; true when the file is in incremental auto-vacuum
/// mode. The busy timeout comes first so that the journal switch and the schema wait for a
/// process that is opening the same file; `auto_vacuum` comes before anything writes the
/// file, because on a file with tables it only takes effect through a `VACUUM`.
fn prepare(conn: &Connection, path: &Path) -> rusqlite::Result<bool> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), journal_mode = %mode,
            "sqlite: WAL journal mode unavailable; sharing the file between processes will be slower");
    }
    // With WAL, NORMAL only risks the last commits on power loss: a token fetched again.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |row| row.get(0))?;
    if auto_vacuum == 2 {
        return Ok(true);
    }
    // A file from before incremental auto-vacuum: convert it once. Expired rows go first, so
    // the VACUUM copies only live ones (tokens, current dedup records); it rewrites the file
    // in one transaction, so nothing is lost if it fails.
    conn.execute(
        "DELETE FROM kv WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1",
        params![now_ms()],
    )?;
    match conn.execute_batch("VACUUM") {
        Ok(()) => {
            tracing::info!(path = %path.display(), "sqlite: converted the file to incremental auto-vacuum, so it gives space back");
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "sqlite: cannot convert the file to incremental auto-vacuum now (another process uses it?); it will not shrink until a later start converts it");
            Ok(false)
        }
    }
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
