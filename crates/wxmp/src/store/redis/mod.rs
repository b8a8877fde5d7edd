//! The Redis backend: several wxmp instances share one Redis, and with it one access_token
//! per app and one refresh lock. The Redis is one server (`redis://`, or `rediss://` for TLS)
//! or the master a set of Sentinels names ([`target`]).
//!
//! Why this shape:
//! - Commands go through a [`ConnectionManager`], which reconnects after the connection
//!   drops. Its own retry schedule is turned off (in redis 0.27 it sleeps a minute or more
//!   between later attempts); instead each operation that fails on a dropped connection is
//!   retried once, which waits for the manager's immediate reconnect. So the first operation
//!   after Redis comes back already succeeds, and while Redis is down every operation fails
//!   at once with "connection refused".
//! - With Sentinels, the manager's own reconnects would go back to the old master, which is
//!   dead or has come back as a read-only replica. So in that mode every failed operation
//!   also starts the background replacement below, which asks the Sentinels where the master
//!   is now; the pub/sub subscriber asks them too whenever it resubscribes. Operations fail
//!   fast during a failover and work again as soon as the Sentinels have promoted a replica.
//! - Every operation is bounded by [`OP_TIMEOUT`], so a Redis that stops answering (stalled,
//!   or cut off by the network so that no reset ever arrives) never hangs a caller. After
//!   such a timeout a fresh connection is built in the background and swapped in, since the
//!   old one may stay silently dead for many minutes.
//! - Atomicity is Redis's own: `SET NX PX` for `set_nx`, Lua compare-and-delete and
//!   compare-and-expire scripts for `delete_if_eq` and `expire_if_eq`. Every key is the configured prefix plus the caller's key, so
//!   deployments sharing one Redis never see each other.
//! - Changes are published on `{prefix}changes` with the un-prefixed key. One background
//!   task per store holds a dedicated pub/sub connection and forwards every message into the
//!   local broadcast; it resubscribes with backoff when that connection drops, and ends when
//!   the last clone of the store is dropped. Messages published while it was disconnected
//!   are lost, which is why waiters also poll. A store's own writes reach its local
//!   subscribers directly as well, so they may see a key twice.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{Client, Cmd, ErrorKind, FromRedisValue, RedisError, Script, ScriptInvocation};
use tokio::sync::{broadcast, watch};

use self::target::Target;
use super::{StoreError, NOTIFY_CAPACITY, OP_TIMEOUT};
use crate::config::RedisConfig;

mod target;

/// How long one connection attempt may take (half an operation, so a reconnect and the
/// command it enables both fit in [`OP_TIMEOUT`]).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// First and longest pause between the subscriber's reconnection attempts.
const SUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(100);
const SUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Deletes `KEYS[1]` only if it holds `ARGV[1]`; returns the number of keys deleted.
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
";

/// Sets the TTL of `KEYS[1]` to `ARGV[2]` ms only if it holds `ARGV[1]`; returns 1 if it did.
const COMPARE_AND_EXPIRE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// A key/value store in a shared Redis. Clones share the connections and the subscriber
/// task; the task ends when the last clone is dropped.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where (re)connections go.
    target: Arc<Target>,
    /// The command connection. A std `RwLock` because it is only held to clone the manager
    /// (a handle to a shared connection) or to swap in a fresh one, never across an await.
    conn: RwLock<ConnectionManager>,
    /// Set while a replacement connection is being built, so timeouts start only one.
    replacing: AtomicBool,
    /// Prepended to every key.
    prefix: String,
    /// `{prefix}changes`, where writes are announced.
    channel: String,
    /// `host:port` (or the Sentinels) for messages: never the URL, which may hold a password.
    addr: String,
    cas_delete: Script,
    cas_expire: Script,
    notify: broadcast::Sender<String>,
    /// Bumped when the command connection is replaced, telling the subscriber to reconnect
    /// too. Dropped with the last clone, which tells the subscriber to stop.
    generation: watch::Sender<u64>,
}

/// One command, so that [`RedisStore::run`] can send it again after a reconnect.
enum Op<'a> {
    Cmd(&'a Cmd),
    Script(&'a ScriptInvocation<'a>),
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS) and subscribes to change notifications; every key will be
    /// `prefix` + key. See [`RedisStore::open`].
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::open(&RedisConfig::url(url, prefix)).await
    }

    /// Connects to the Redis of `config` — one server, or the master its Sentinels name —
    /// and subscribes to change notifications.
    ///
    /// Fails with [`StoreError::Unavailable`] naming the hosts (never a password) when the
    /// configuration cannot be used or Redis cannot be reached within [`OP_TIMEOUT`].
    pub async fn open(config: &RedisConfig) -> Result<Self, StoreError> {
        let target =
            Target::new(config).map_err(|e| StoreError::Unavailable(format!("redis: {e}")))?;
        let addr = target.describe();
        let channel = format!("{}changes", config.prefix);
        let unavailable =
            |e: String| StoreError::Unavailable(format!("redis: cannot connect to {addr}: {e}"));

        let client = target.client().await.map_err(unavailable)?;
        let conn = bounded(ConnectionManager::new_with_config(
            client.clone(),
            manager_config(),
        ))
        .await
        .map_err(unavailable)?;
        let pubsub = bounded(subscribe(&client, &channel))
            .await
            .map_err(unavailable)?;

        let target = Arc::new(target);
        let notify = broadcast::channel(NOTIFY_CAPACITY).0;
        let (generation, generation_rx) = watch::channel(0);
        tokio::spawn(forward_changes(
            Subscriber {
                target: target.clone(),
                channel: channel.clone(),
                addr: addr.clone(),
                notify: notify.clone(),
                generation: generation_rx,
            },
            pubsub,
        ));
        Ok(RedisStore {
            inner: Arc::new(Inner {
                target,
                conn: RwLock::new(conn),
                replacing: AtomicBool::new(false),
                prefix: config.prefix.clone(),
                channel,
                addr,
                cas_delete: Script::new(COMPARE_AND_DELETE),
                cas_expire: Script::new(COMPARE_AND_EXPIRE),
                notify,
                generation,
            }),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// Sends `op`, once more if the connection had dropped, all within [`OP_TIMEOUT`].
    async fn run<T: FromRedisValue>(&self, op: Op<'_>) -> Result<T, StoreError> {
        let attempt = async {
            match self.inner.send(&op).await {
                // The manager has started reconnecting; the retry waits for it.
                Err(e) if e.is_io_error() => self.inner.send(&op).await,
                result => result,
            }
        };
        match tokio::time::timeout(OP_TIMEOUT, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let error = self.inner.error(&e);
                if self.inner.target.follows_failover()
                    && matches!(error, StoreError::Unavailable(_))
                {
                    // The master may have moved: ask the Sentinels (in the background).
                    self.replace_connection();
                }
                Err(error)
            }
            Err(_) => {
                self.replace_connection();
                Err(StoreError::Unavailable(format!(
                    "redis: {}: no answer within {OP_TIMEOUT:?}",
                    self.inner.addr
                )))
            }
        }
    }

    /// Builds a fresh command connection in the background (to wherever the target now is)
    /// and swaps it in, unless one is already being built. Holds the store only weakly, so it
    /// never keeps it alive.
    fn replace_connection(&self) {
        if self.inner.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        let target = self.inner.target.clone();
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let fresh = match target.client().await {
                Ok(client) => {
                    bounded(ConnectionManager::new_with_config(client, manager_config())).await
                }
                Err(e) => Err(e),
            };
            let Some(inner) = inner.upgrade() else { return };
            match fresh {
                Ok(conn) => {
                    *inner.conn.write().unwrap_or_else(PoisonError::into_inner) = conn;
                    inner.generation.send_modify(|g| *g = g.wrapping_add(1));
                    tracing::debug!(addr = %inner.addr, "redis: replaced the command connection");
                }
                Err(e) => {
                    tracing::debug!(addr = %inner.addr, error = %e, "redis: reconnect failed");
                }
            }
            inner.replacing.store(false, Ordering::Release);
        });
    }

    /// Announces a change to local subscribers at once and to other instances through
    /// Redis. Publishing is best effort: the write already happened.
    async fn announce(&self, key: &str) {
        let _ = self.inner.notify.send(key.to_owned());
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.inner.channel).arg(key);
        if let Err(e) = self.run::<i64>(Op::Cmd(&publish)).await {
            tracing::debug!(error = %e, "redis: could not publish a change");
        }
    }

    /// See [`super::Store::get`].
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut get = redis::cmd("GET");
        get.arg(self.key(key));
        self.run(Op::Cmd(&get)).await
    }

    /// See [`super::Store::set`].
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let mut set = redis::cmd("SET");
        set.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            set.arg("PX").arg(ttl_ms(ttl));
        }
        self.run::<()>(Op::Cmd(&set)).await?;
        self.announce(key).await;
        Ok(())
    }

    /// See [`super::Store::set_nx`].
    pub async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut set = redis::cmd("SET");
        set.arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl));
        // "OK" when set, nil when the key exists.
        Ok(self.run::<Option<String>>(Op::Cmd(&set)).await?.is_some())
    }

    /// See [`super::Store::delete_if_eq`].
    pub async fn delete_if_eq(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let mut invocation = self.inner.cas_delete.key(self.key(key));
        invocation.arg(value);
        let deleted = self.run::<i64>(Op::Script(&invocation)).await? == 1;
        if deleted {
            self.announce(key).await;
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
        let mut invocation = self.inner.cas_expire.key(self.key(key));
        invocation.arg(value).arg(ttl_ms(ttl));
        Ok(self.run::<i64>(Op::Script(&invocation)).await? == 1)
    }

    /// See [`super::Store::subscribe`]: this store's writes and every other instance's
    /// writes under the same prefix.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.inner.notify.subscribe()
    }
}

impl Inner {
    async fn send<T: FromRedisValue>(&self, op: &Op<'_>) -> redis::RedisResult<T> {
        let mut conn = self
            .conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match op {
            Op::Cmd(cmd) => cmd.query_async(&mut conn).await,
            Op::Script(invocation) => invocation.invoke_async(&mut conn).await,
        }
    }

    /// Maps an error without its detail where that could quote a stored value.
    fn error(&self, e: &RedisError) -> StoreError {
        if e.kind() == ErrorKind::TypeError {
            // redis-rs quotes the offending reply in this one: it may be a token.
            StoreError::Corrupt(format!("redis: {}: a stored value is not text", self.addr))
        } else if e.code() == Some("WRONGTYPE") {
            StoreError::Corrupt(format!(
                "redis: {}: a key holds a non-string value",
                self.addr
            ))
        } else {
            StoreError::Unavailable(format!("redis: {}: {e}", self.addr))
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.inner.addr)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// What the subscriber task needs; it holds no reference to the store itself.
struct Subscriber {
    target: Arc<Target>,
    channel: String,
    addr: String,
    notify: broadcast::Sender<String>,
    generation: watch::Receiver<u64>,
}

/// Forwards `{prefix}changes` messages into the local broadcast until the store is dropped,
/// resubscribing with backoff whenever the pub/sub connection drops or the store replaced
/// its command connection.
async fn forward_changes(mut sub: Subscriber, first: PubSub) {
    let mut pubsub = Some(first);
    let mut backoff = SUBSCRIBE_BACKOFF_MIN;
    loop {
        let mut current = match pubsub.take() {
            Some(current) => current,
            None => {
                let attempt = tokio::select! {
                    attempt = subscribe_target(&sub.target, &sub.channel) => attempt,
                    changed = sub.generation.changed() => match changed {
                        Ok(()) => continue,
                        Err(_) => return,
                    },
                };
                match attempt {
                    Ok(current) => {
                        tracing::debug!(addr = %sub.addr, "redis: change notifications resubscribed");
                        backoff = SUBSCRIBE_BACKOFF_MIN;
                        current
                    }
                    Err(e) => {
                        tracing::debug!(addr = %sub.addr, error = %e, retry_in = ?backoff,
                            "redis: cannot subscribe to change notifications");
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            changed = sub.generation.changed() => if changed.is_err() { return },
                        }
                        backoff = (backoff * 2).min(SUBSCRIBE_BACKOFF_MAX);
                        continue;
                    }
                }
            }
        };
        let mut messages = current.on_message();
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => match message.get_payload::<String>() {
                        Ok(key) => { let _ = sub.notify.send(key); }
                        Err(_) => tracing::debug!(addr = %sub.addr, "redis: ignored a non-text change notification"),
                    },
                    None => {
                        tracing::debug!(addr = %sub.addr, "redis: change notification connection dropped");
                        break;
                    }
                },
                changed = sub.generation.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => return,
                },
            }
        }
    }
}

/// A dedicated connection to wherever `target` is now, subscribed to `channel`, bounded.
async fn subscribe_target(target: &Target, channel: &str) -> Result<PubSub, String> {
    let client = target.client().await?;
    bounded(subscribe(&client, channel)).await
}

/// A dedicated connection subscribed to `channel`.
async fn subscribe(client: &Client, channel: &str) -> redis::RedisResult<PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// `fut` within [`OP_TIMEOUT`], its error as text.
async fn bounded<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {OP_TIMEOUT:?}")),
    }
}

/// One connection attempt per reconnect (see the module docs), each bounded.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(CONNECT_TIMEOUT)
}

/// A TTL in whole milliseconds, at least 1.
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `url` without its user and password, for an error message about the URL itself.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => match url.rsplit_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => url.to_owned(),
        },
    }
}
