//! The Redis store against a real Redis: the key/value contract with real TTLs, one
//! `set_nx` winner across instances, leases, cross-instance notifications, prefix isolation,
//! and what happens when Redis dies, stalls and comes back.
//!
//! Most tests share the test Redis (`WXMP_TEST_REDIS_URL`, or one the test process starts),
//! each under its own random key prefix that is deleted afterwards. The outage tests start a
//! `redis-server` of their own, so they can kill and stall it.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, redis_url, RedisServer};

use tokio::sync::broadcast;
use tokio::time::{sleep, timeout};
use wxmp::store::{RedisStore, Store, StoreError, OP_TIMEOUT};

const LONG: Duration = Duration::from_secs(60);

/// A random key prefix whose keys are deleted when the guard drops, even after a failure.
struct Prefix {
    url: String,
    prefix: String,
}

impl Prefix {
    fn new(url: &str) -> Self {
        Prefix {
            url: url.to_owned(),
            prefix: format!("wxmp-test:{:016x}:", rand::random::<u64>()),
        }
    }

    async fn store(&self) -> RedisStore {
        RedisStore::connect(&self.url, &self.prefix).await.unwrap()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let cleanup = || -> redis::RedisResult<()> {
            let mut conn = redis::Client::open(self.url.as_str())?.get_connection()?;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut conn)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).exec(&mut conn)?;
            }
            Ok(())
        };
        if let Err(e) = cleanup() {
            eprintln!("note: could not clean up {}*: {e}", self.prefix);
        }
    }
}

/// Waits up to `within` for `key` on `events`, skipping other keys.
async fn receive(events: &mut broadcast::Receiver<String>, key: &str, within: Duration) -> bool {
    timeout(within, async {
        loop {
            match events.recv().await {
                Ok(k) if k == key => return true,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn kv_contract() {
    let url = redis_url();
    let prefix = Prefix::new(&url);
    let store = prefix.store().await;
    let mut events = store.subscribe();

    assert_eq!(store.get("k").await.unwrap(), None);
    assert!(store.set_nx("k", "a", LONG).await.unwrap());
    assert!(!store.set_nx("k", "b", LONG).await.unwrap());
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("a"));
    assert!(!store.delete_if_eq("k", "b").await.unwrap());
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("a"));
    assert!(store.delete_if_eq("k", "a").await.unwrap());
    assert!(receive(&mut events, "k", Duration::from_secs(1)).await);
    assert_eq!(store.get("k").await.unwrap(), None);
    assert!(!store.delete_if_eq("k", "a").await.unwrap(), "already gone");

    store.set("t", "v1", None).await.unwrap();
    assert!(receive(&mut events, "t", Duration::from_secs(1)).await);
    store
        .set("t", "v2", Some(Duration::from_millis(1000)))
        .await
        .unwrap();
    assert_eq!(store.get("t").await.unwrap().as_deref(), Some("v2"));
    assert!(
        !store.set_nx("t", "w", LONG).await.unwrap(),
        "live until its TTL"
    );
    sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.get("t").await.unwrap(), None, "expired");
    assert!(!store.delete_if_eq("t", "v2").await.unwrap());
    assert!(
        store
            .set_nx("t", "w", Duration::from_millis(500))
            .await
            .unwrap(),
        "expired counts as absent"
    );

    // A set without TTL clears an earlier TTL.
    store
        .set("p", "v", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    store.set("p", "v", None).await.unwrap();
    sleep(Duration::from_millis(400)).await;
    assert_eq!(store.get("p").await.unwrap().as_deref(), Some("v"));

    // A zero TTL still sets (rounded up to 1 ms) rather than erroring.
    assert!(store.set_nx("z", "v", Duration::ZERO).await.unwrap());

    let odd = "令牌 'quoted' \"double\" \n {braces} *glob*";
    store.set(odd, odd, None).await.unwrap();
    assert_eq!(store.get(odd).await.unwrap().as_deref(), Some(odd));

    let store = Store::Redis(store);
    assert_eq!(store.backend(), "redis");
    assert_eq!(store.get("p").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_set_nx_winner_across_instances() {
    let url = redis_url();
    let prefix = Prefix::new(&url);
    let stores = [
        prefix.store().await,
        prefix.store().await,
        prefix.store().await,
    ];
    for round in 0..3 {
        let key = format!("lock-{round}");
        let mut tasks = Vec::new();
        for (n, store) in stores.iter().enumerate() {
            for i in 0..100 {
                let (store, key) = (store.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    let owner = format!("owner-{n}-{i}");
                    store
                        .set_nx(&key, &owner, LONG)
                        .await
                        .map(|won| won.then_some(owner))
                }));
            }
        }
        let mut winners = Vec::new();
        for task in tasks {
            if let Some(owner) = task.await.unwrap().unwrap() {
                winners.push(owner);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        for store in &stores {
            assert_eq!(store.get(&key).await.unwrap().as_ref(), Some(&winners[0]));
        }
    }
}

#[tokio::test]
async fn an_expired_lease_lets_another_owner_in() {
    let url = redis_url();
    let prefix = Prefix::new(&url);
    let (a, b) = (prefix.store().await, prefix.store().await);

    assert!(a
        .set_nx("lock", "owner-a", Duration::from_millis(400))
        .await
        .unwrap());
    assert!(!b.set_nx("lock", "owner-b", LONG).await.unwrap());
    assert!(
        !b.delete_if_eq("lock", "owner-b").await.unwrap(),
        "not the owner"
    );
    assert_eq!(a.get("lock").await.unwrap().as_deref(), Some("owner-a"));

    sleep(Duration::from_millis(500)).await;
    assert!(
        b.set_nx("lock", "owner-b", LONG).await.unwrap(),
        "the lease lapsed"
    );
    assert!(
        !a.delete_if_eq("lock", "owner-a").await.unwrap(),
        "the old owner cannot release it"
    );
    assert_eq!(a.get("lock").await.unwrap().as_deref(), Some("owner-b"));
    assert!(b.delete_if_eq("lock", "owner-b").await.unwrap());
    assert_eq!(a.get("lock").await.unwrap(), None);
}

#[tokio::test]
async fn a_lease_is_renewed_only_by_its_owner() {
    let url = redis_url();
    let prefix = Prefix::new(&url);
    let store = prefix.store().await;
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
async fn notifications_cross_instances() {
    let url = redis_url();
    let prefix = Prefix::new(&url);
    let (a, b) = (prefix.store().await, prefix.store().await);
    let mut b_events = b.subscribe();
    let mut a_events = a.subscribe();

    a.set("token", "t1", Some(LONG)).await.unwrap();
    assert!(
        receive(&mut b_events, "token", Duration::from_secs(1)).await,
        "set on A reaches B"
    );
    assert!(
        receive(&mut a_events, "token", Duration::from_secs(1)).await,
        "and A itself"
    );

    assert!(a.set_nx("lock", "owner-a", LONG).await.unwrap());
    assert!(a.delete_if_eq("lock", "owner-a").await.unwrap());
    assert!(
        receive(&mut b_events, "lock", Duration::from_secs(1)).await,
        "a delete reaches B"
    );

    // Failed writes announce nothing.
    assert!(!a.delete_if_eq("lock", "owner-a").await.unwrap());
    assert!(!receive(&mut b_events, "lock", Duration::from_millis(300)).await);
}

#[tokio::test]
async fn prefixes_are_isolated() {
    let url = redis_url();
    let (p1, p2) = (Prefix::new(&url), Prefix::new(&url));
    let (one, two) = (p1.store().await, p2.store().await);
    let mut two_events = two.subscribe();

    one.set("token", "from-one", None).await.unwrap();
    assert_eq!(two.get("token").await.unwrap(), None);
    assert!(two.set_nx("token", "from-two", LONG).await.unwrap());
    assert!(!two.delete_if_eq("token", "from-one").await.unwrap());
    assert_eq!(one.get("token").await.unwrap().as_deref(), Some("from-one"));
    assert_eq!(two.get("token").await.unwrap().as_deref(), Some("from-two"));
    assert_eq!(two.prefix(), p2.prefix);

    // two's own set_nx announced nothing; one's set must not leak across prefixes.
    one.set("other", "x", None).await.unwrap();
    assert!(!receive(&mut two_events, "other", Duration::from_millis(300)).await);
}

#[tokio::test]
async fn dropping_the_store_stops_its_subscriber() {
    let url = redis_url();
    let prefix = Prefix::new(&url);
    let store = prefix.store().await;
    let mut events = store.subscribe();
    let clone = store.clone();
    drop(store);
    clone.set("k", "v", None).await.unwrap();
    assert!(
        receive(&mut events, "k", Duration::from_secs(1)).await,
        "a clone keeps it running"
    );
    drop(clone);
    // The forwarding task holds the last sender: the channel closes only once it has ended.
    let closed = timeout(Duration::from_secs(2), async {
        loop {
            if let Err(broadcast::error::RecvError::Closed) = events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the subscriber task outlived the store");
}

#[tokio::test]
async fn connect_errors_name_the_host_but_not_the_password() {
    let port = free_port();
    let url = format!("redis://user:sekrit@127.0.0.1:{port}/");
    match RedisStore::connect(&url, "p:").await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
            assert!(!message.contains("sekrit"), "{message}");
        }
        other => panic!("expected Unavailable: {other:?}"),
    }
    match RedisStore::connect("http://user:sekrit@127.0.0.1/", "p:").await {
        Err(StoreError::Unavailable(message)) => assert!(!message.contains("sekrit"), "{message}"),
        other => panic!("expected Unavailable: {other:?}"),
    }
}

// --- Outages, against a redis-server of our own -------------------------------------------

/// Retries `op` until it succeeds, for at most `within`; how long it took.
async fn until_ok<F, Fut, T>(within: Duration, mut op: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if op().await.is_ok() {
            return Some(start.elapsed());
        }
        sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Sets `key` on `writer` every 100 ms until `reader`'s subscription delivers it (which
/// needs the pub/sub connection); how long that took.
async fn until_notified(
    writer: &RedisStore,
    reader: &mut broadcast::Receiver<String>,
    key: &str,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        while reader.try_recv().is_ok() {}
        let _ = writer.set(key, "v", None).await;
        if receive(reader, key, Duration::from_millis(100)).await {
            return Some(start.elapsed());
        }
    }
    None
}

#[tokio::test]
async fn a_killed_redis_fails_fast_and_recovers() {
    let mut server = RedisServer::start();
    let url = server.url();
    let (a, b) = (
        RedisStore::connect(&url, "t:").await.unwrap(),
        RedisStore::connect(&url, "t:").await.unwrap(),
    );
    let mut b_events = b.subscribe();
    a.set("token", "t1", None).await.unwrap();
    assert!(receive(&mut b_events, "token", Duration::from_secs(1)).await);

    server.kill();
    // Down for a while (long enough for the subscriber to back off), every call failing fast.
    let down = Instant::now();
    let mut slowest = Duration::ZERO;
    while down.elapsed() < Duration::from_millis(1200) {
        let start = Instant::now();
        let result = b.get("token").await;
        slowest = slowest.max(start.elapsed());
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    eprintln!("killed: every call failed, the slowest after {slowest:?}");
    assert!(
        slowest < OP_TIMEOUT + Duration::from_millis(500),
        "took {slowest:?}"
    );
    let start = Instant::now();
    let result = a.set_nx("lock", "owner", LONG).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(start.elapsed() < OP_TIMEOUT + Duration::from_millis(500));

    server.restart();
    let took = until_ok(Duration::from_secs(5), || b.get("token")).await;
    eprintln!("restarted: commands back after {took:?}");
    let took = took.expect("commands work again within 5 s");
    assert!(
        took < Duration::from_secs(1),
        "the first command after the restart should succeed, took {took:?}"
    );
    assert_eq!(
        b.get("token").await.unwrap(),
        None,
        "a restarted Redis is empty"
    );
    assert!(a.set_nx("lock", "owner", LONG).await.unwrap());
    assert!(
        a.delete_if_eq("lock", "owner").await.unwrap(),
        "the script is loaded again"
    );

    let took = until_notified(&a, &mut b_events, "token").await;
    eprintln!("restarted: notifications back after {took:?}");
    assert!(took.expect("notifications resume") < Duration::from_secs(5));
}

#[tokio::test]
async fn a_stalled_redis_times_out_and_recovers() {
    let server = RedisServer::start();
    let url = server.url();
    let (a, b) = (
        RedisStore::connect(&url, "t:").await.unwrap(),
        RedisStore::connect(&url, "t:").await.unwrap(),
    );
    let mut b_events = b.subscribe();

    server.signal("STOP");
    let start = Instant::now();
    let (got, set) = tokio::join!(a.get("token"), b.set("token", "t", None));
    let took = start.elapsed();
    eprintln!("stalled: get -> {got:?}, set -> {set:?} after {took:?}");
    assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
    assert!(matches!(set, Err(StoreError::Unavailable(_))), "{set:?}");
    assert!(
        took < OP_TIMEOUT + Duration::from_millis(500),
        "took {took:?}"
    );

    server.signal("CONT");
    let took = until_ok(Duration::from_secs(5), || a.get("token")).await;
    eprintln!("resumed: commands back after {took:?}");
    assert!(took.is_some(), "commands work again");
    let took = until_notified(&a, &mut b_events, "token2").await;
    eprintln!("resumed: notifications back after {took:?}");
    assert!(took.expect("notifications resume") < Duration::from_secs(5));
}

// --- TLS, against a redis-server of our own with a throwaway CA ----------------------------

#[tokio::test]
async fn tls_with_the_deployments_own_ca() {
    let ca = common::TestCa::new();
    let server = RedisServer::start_tls(&ca);
    let config = wxmp::config::RedisConfig {
        tls_ca: Some(ca.ca()),
        ..wxmp::config::RedisConfig::url(&server.tls_url(), "tls:")
    };
    let (a, b) = (
        RedisStore::open(&config).await.unwrap(),
        RedisStore::open(&config).await.unwrap(),
    );
    let mut b_events = b.subscribe();
    assert!(a.set_nx("lock", "owner-a", LONG).await.unwrap());
    assert!(!b.set_nx("lock", "owner-b", LONG).await.unwrap());
    assert!(a.expire_if_eq("lock", "owner-a", LONG).await.unwrap());
    assert!(a.delete_if_eq("lock", "owner-a").await.unwrap());
    a.set("token", "t1", Some(LONG)).await.unwrap();
    assert_eq!(b.get("token").await.unwrap().as_deref(), Some("t1"));
    assert!(
        receive(&mut b_events, "token", Duration::from_secs(2)).await,
        "notifications cross over TLS too"
    );

    // Verification is on: without the CA the server's certificate is refused.
    let untrusting = RedisStore::connect(&server.tls_url(), "tls:").await;
    match untrusting {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1"), "{message}");
            eprintln!("without the CA: {message}");
        }
        other => panic!("connected without trusting the CA: {other:?}"),
    }
    // And a plain connection to the TLS port gets nowhere.
    let plain = RedisStore::connect(&format!("redis://127.0.0.1:{}/0", server.port()), "p:").await;
    assert!(
        matches!(plain, Err(StoreError::Unavailable(_))),
        "{plain:?}"
    );
    // A CA file that is not there is named.
    let missing = wxmp::config::RedisConfig {
        tls_ca: Some("/nonexistent/ca.pem".into()),
        ..wxmp::config::RedisConfig::url(&server.tls_url(), "tls:")
    };
    match RedisStore::open(&missing).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("/nonexistent/ca.pem"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
