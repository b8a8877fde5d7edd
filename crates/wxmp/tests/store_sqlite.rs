//! The SQLite store against real files: the key/value contract with real TTLs, restarts on
//! the same file, two handles on one file standing in for two processes, and clean errors
//! for paths that cannot hold a database.
//!
//! TTLs here are wall-clock (the backend's expiry must survive restarts), so the tests sleep
//! for real, keeping TTLs around a second.

use std::path::Path;
use std::time::Duration;

use tokio::time::{sleep, timeout};
use wxmp::store::{SqliteStore, Store, StoreError};

const LONG: Duration = Duration::from_secs(60);

async fn open(path: &Path) -> SqliteStore {
    match SqliteStore::open(path).await {
        Ok(store) => store,
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}

#[tokio::test]
async fn kv_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("wxmp.db")).await;
    let mut events = store.subscribe();

    assert_eq!(store.get("k").await.unwrap(), None);
    assert!(store.set_nx("k", "a", LONG).await.unwrap());
    assert!(!store.set_nx("k", "b", LONG).await.unwrap());
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("a"));
    assert!(events.try_recv().is_err(), "set_nx does not notify");
    assert!(!store.delete_if_eq("k", "b").await.unwrap());
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("a"));
    assert!(store.delete_if_eq("k", "a").await.unwrap());
    assert_eq!(events.recv().await.unwrap(), "k");
    assert_eq!(store.get("k").await.unwrap(), None);
    assert!(!store.delete_if_eq("k", "a").await.unwrap(), "already gone");

    // set replaces, with or without a TTL, and notifies.
    store.set("t", "v1", None).await.unwrap();
    assert_eq!(events.recv().await.unwrap(), "t");
    store
        .set("t", "v2", Some(Duration::from_millis(1000)))
        .await
        .unwrap();
    assert_eq!(events.recv().await.unwrap(), "t");
    assert_eq!(store.get("t").await.unwrap().as_deref(), Some("v2"));
    assert!(
        !store.set_nx("t", "w", LONG).await.unwrap(),
        "live until its TTL"
    );

    sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.get("t").await.unwrap(), None, "expired");
    assert!(
        !store.delete_if_eq("t", "v2").await.unwrap(),
        "an expired value is not deleted"
    );
    assert!(
        store
            .set_nx("t", "w", Duration::from_millis(500))
            .await
            .unwrap(),
        "expired counts as absent"
    );
    assert_eq!(store.get("t").await.unwrap().as_deref(), Some("w"));

    // A lease expires and another owner takes it.
    sleep(Duration::from_millis(600)).await;
    assert!(store.set_nx("t", "x", LONG).await.unwrap());
    assert!(
        !store.delete_if_eq("t", "w").await.unwrap(),
        "the old owner cannot release it"
    );
    assert_eq!(store.get("t").await.unwrap().as_deref(), Some("x"));

    // A value without TTL stays; a set without TTL clears an earlier TTL.
    store
        .set("p", "v", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    store.set("p", "v", None).await.unwrap();
    sleep(Duration::from_millis(400)).await;
    assert_eq!(store.get("p").await.unwrap().as_deref(), Some("v"));

    // Arbitrary text round-trips.
    let odd = "令牌 'quoted' \"double\" \n; DROP TABLE kv; --";
    store.set(odd, odd, None).await.unwrap();
    assert_eq!(store.get(odd).await.unwrap().as_deref(), Some(odd));

    // Through the enum too.
    let store = Store::Sqlite(store);
    assert_eq!(store.backend(), "sqlite");
    assert_eq!(store.get("p").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn a_lease_is_renewed_only_by_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("wxmp.db")).await;
    let mut events = store.subscribe();
    let lease = Duration::from_millis(800);
    assert!(store.set_nx("lock", "owner-a", lease).await.unwrap());
    sleep(Duration::from_millis(500)).await;
    assert!(
        !store.expire_if_eq("lock", "owner-b", LONG).await.unwrap(),
        "not the owner"
    );
    assert!(store.expire_if_eq("lock", "owner-a", lease).await.unwrap());
    // Past the first lease, within the renewed one.
    sleep(Duration::from_millis(500)).await;
    assert_eq!(store.get("lock").await.unwrap().as_deref(), Some("owner-a"));
    assert!(
        !store.set_nx("lock", "owner-b", LONG).await.unwrap(),
        "still held"
    );
    // Without further renewals the lease runs out; a renewal then changes nothing.
    sleep(Duration::from_millis(700)).await;
    assert!(!store.expire_if_eq("lock", "owner-a", LONG).await.unwrap());
    assert_eq!(store.get("lock").await.unwrap(), None, "not recreated");
    assert!(store.set_nx("lock", "owner-b", LONG).await.unwrap());
    assert!(
        !store.expire_if_eq("lock", "owner-a", LONG).await.unwrap(),
        "the old owner cannot extend the new owner's lease"
    );
    assert!(
        timeout(Duration::from_millis(200), async {
            loop {
                if events.recv().await.as_deref() == Ok("lock") {
                    return;
                }
            }
        })
        .await
        .is_err(),
        "renewals announce nothing"
    );
}

#[tokio::test]
async fn creates_the_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("wxmp.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    store.set("k", "v", None).await.unwrap();
    assert!(path.is_file());
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxmp.db");
    {
        let store = open(&path).await;
        store.set("token", "t1", Some(LONG)).await.unwrap();
        store.set("forever", "f", None).await.unwrap();
        store
            .set("short", "s", Some(Duration::from_millis(800)))
            .await
            .unwrap();
        assert!(store.set_nx("lock", "owner-1", LONG).await.unwrap());
    }
    let store = open(&path).await;
    assert_eq!(store.get("token").await.unwrap().as_deref(), Some("t1"));
    assert_eq!(store.get("forever").await.unwrap().as_deref(), Some("f"));
    assert_eq!(store.get("short").await.unwrap().as_deref(), Some("s"));
    assert!(
        !store.set_nx("lock", "owner-2", LONG).await.unwrap(),
        "the lease survives too"
    );
    assert!(store.delete_if_eq("lock", "owner-1").await.unwrap());
    drop(store);

    // Expiry is wall-clock: it runs on while no process has the file open.
    sleep(Duration::from_millis(900)).await;
    let store = open(&path).await;
    assert_eq!(store.get("short").await.unwrap(), None);
    assert_eq!(store.get("token").await.unwrap().as_deref(), Some("t1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_have_one_set_nx_winner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let (a, b) = tokio::join!(SqliteStore::open(&path), SqliteStore::open(&path));
    let (a, b) = (a.unwrap(), b.unwrap());

    for round in 0..3 {
        let key = format!("lock-{round}");
        let mut tasks = Vec::new();
        for i in 0..100 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                store.set_nx(&key, &format!("owner-{i}"), LONG).await
            }));
        }
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            if task.await.unwrap().unwrap() {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let owner = format!("owner-{}", winners[0]);
        // Both handles see the winner's value; only the winner's value deletes it.
        assert_eq!(b.get(&key).await.unwrap().as_deref(), Some(owner.as_str()));
        assert_eq!(a.get(&key).await.unwrap().as_deref(), Some(owner.as_str()));
        assert!(!a.delete_if_eq(&key, "owner-none").await.unwrap());
        assert!(!b.delete_if_eq(&key, "owner-none").await.unwrap());
        assert!(b.delete_if_eq(&key, &owner).await.unwrap());
        assert_eq!(a.get(&key).await.unwrap(), None);
    }

    // A write through one handle is read through the other; notifications stay local.
    let mut b_events = b.subscribe();
    let mut a_events = a.subscribe();
    a.set("token", "t", None).await.unwrap();
    assert_eq!(b.get("token").await.unwrap().as_deref(), Some("t"));
    assert_eq!(a_events.recv().await.unwrap(), "token");
    assert!(b_events.try_recv().is_err());
}

#[tokio::test]
async fn concurrent_writers_on_one_file_do_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let stores = [open(&path).await, open(&path).await, open(&path).await];
    let mut tasks = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        for i in 0..30 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .set(&format!("k{i}"), &format!("v{n}"), Some(LONG))
                    .await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for i in 0..30 {
        assert!(stores[0].get(&format!("k{i}")).await.unwrap().is_some());
    }
}

fn assert_unavailable_naming(result: Result<SqliteStore, StoreError>, path: &Path) {
    match result {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.starts_with("sqlite: "), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        other => panic!("expected Unavailable naming {}: {other:?}", path.display()),
    }
}

#[tokio::test]
async fn a_directory_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let result = SqliteStore::open(dir.path()).await;
    assert_unavailable_naming(result, dir.path());
}

#[tokio::test]
async fn a_file_where_the_folder_should_be() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").unwrap();
    let path = blocker.join("wxmp.db");
    let result = SqliteStore::open(&path).await;
    assert_unavailable_naming(result, &path);
}

#[tokio::test]
async fn a_corrupt_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    match SqliteStore::open(&path).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        other => panic!("expected Corrupt: {other:?}"),
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_read_only_folder_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    let path = locked.join("wxmp.db");
    let probe = locked.join("probe");
    if std::fs::write(&probe, b"x").is_ok() {
        // Running as root: permissions do not apply, nothing to test.
        eprintln!("note: skipping the read-only folder check (permissions not enforced)");
        return;
    }
    let result = SqliteStore::open(&path).await;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_unavailable_naming(result, &path);
}

#[tokio::test]
async fn operations_answer_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("wxmp.db")).await;
    let ops = async {
        for i in 0..200 {
            store.set("k", &i.to_string(), None).await.unwrap();
        }
    };
    timeout(Duration::from_secs(10), ops)
        .await
        .expect("200 writes within 10 s");
}

/// Writes `n` rows that expired a minute ago, `value_len` bytes each, through a connection of
/// the test's own (quicker than `n` store calls, and the store must cope with other writers).
fn insert_expired(path: &Path, prefix: &str, n: usize, value_len: usize) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 60_000;
    let value = "x".repeat(value_len);
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO kv (key, value, expires_at_ms) VALUES (?1, ?2, ?3)")
            .unwrap();
        for i in 0..n {
            insert
                .execute(rusqlite::params![format!("{prefix}{i}"), value, past])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn count_rows(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
        .unwrap()
}

/// The database's size on disk, WAL included.
fn size_on_disk(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    len(path) + len(&wal)
}

#[cfg(unix)]
#[tokio::test]
async fn expired_rows_are_swept_without_traffic_and_the_file_shrinks() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxmp.db");
    let store = SqliteStore::open_with_sweep(&path, Duration::from_secs(1)).unwrap();
    store.set("token", "live-token", None).await.unwrap();
    for file in [
        path.clone(),
        path.with_extension("db-wal"),
        path.with_extension("db-shm"),
    ] {
        if let Ok(meta) = std::fs::metadata(&file) {
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o600,
                "{} is readable by others",
                file.display()
            );
        }
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    insert_expired(&path, "delivery:", 20_000, 1000);
    let flooded = size_on_disk(&path);
    assert!(flooded > 15_000_000, "{flooded}");

    // No store traffic from here on: the sweeper alone must clear the rows and shrink the file.
    let mut waited = Duration::ZERO;
    while (count_rows(&path) > 1 || size_on_disk(&path) > flooded / 4) && waited < LONG {
        sleep(Duration::from_millis(250)).await;
        waited += Duration::from_millis(250);
    }
    assert_eq!(count_rows(&path), 1, "expired rows left");
    let swept = size_on_disk(&path);
    assert!(
        swept < flooded / 4,
        "the file kept {swept} of {flooded} bytes"
    );
    assert_eq!(
        store.get("token").await.unwrap().as_deref(),
        Some("live-token")
    );
}

#[tokio::test]
async fn requests_are_served_while_a_large_table_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxmp.db");
    // The timer sweeper is kept out of the way; the test runs the sweep itself.
    let store = SqliteStore::open_with_sweep(&path, Duration::from_secs(3600)).unwrap();
    store.set("token", "live-token", None).await.unwrap();
    insert_expired(&path, "old:", 100_000, 100);
    let sweeper = {
        let store = store.clone();
        std::thread::spawn(move || store.sweep_now())
    };
    // Every operation during the sweep answers (within OP_TIMEOUT, or it would be an error).
    let mut served = 0;
    while !sweeper.is_finished() || served < 20 {
        assert_eq!(
            store.get("token").await.unwrap().as_deref(),
            Some("live-token")
        );
        assert!(store
            .set_nx(&format!("new:{served}"), "v", LONG)
            .await
            .unwrap());
        served += 1;
    }
    let deleted = sweeper.join().unwrap().unwrap();
    assert_eq!(deleted, 100_000);
    assert_eq!(count_rows(&path), 1 + served);
}

#[tokio::test]
async fn an_old_file_is_converted_without_losing_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // The schema of earlier versions: no index, no auto-vacuum.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at_ms INTEGER);
             INSERT INTO kv VALUES ('token:demo', 'held-token', NULL);",
        )
        .unwrap();
        let auto_vacuum: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto_vacuum, 0);
    }
    insert_expired(&path, "delivery:", 5000, 200);
    let store = open(&path).await;
    assert_eq!(
        store.get("token:demo").await.unwrap().as_deref(),
        Some("held-token")
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let auto_vacuum: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(auto_vacuum, 2, "not converted to incremental auto-vacuum");
    let indexed: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'kv_expires_at'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexed, 1);
    assert_eq!(count_rows(&path), 1);
}
