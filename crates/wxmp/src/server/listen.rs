//! The accept loop: how many connections, what happens at the limit, and how serving stops.
//!
//! The limits exist because every socket is a file descriptor, and a process that runs out
//! of them cannot accept anything: with the open-files limit at 1024, about a thousand idle
//! connections used to stop every callback and `/v1` call (`accept error: Too many open
//! files`). So:
//!
//! - At start the process raises its soft open-files limit to the hard one, then holds at most
//!   `max_connections` connections, and never more than the limit minus a reserve for the
//!   sockets wxmp opens itself (store, upstream, webhooks) and its files. The effective cap
//!   is logged.
//! - At the cap, the connection idle the longest (no request in progress) is closed to make
//!   room, so idle sockets cannot lock out a client with something to say; when every
//!   connection is busy the new one waits up to a second for a slot and is then closed. The
//!   loop never spins: an `accept` error such as `EMFILE` pauses it for 100 ms.
//! - Each connection keeps its own deadlines (`connection`).
//! - On shutdown the listener is closed at once, idle connections are closed, requests in
//!   progress finish, and then the server waits for background work (replies still being
//!   handled, which may go out as 客服消息), all within a bounded grace period.
//!
//! Each request is served by the router current at that moment, read from [`Routes`]: a
//! reload swaps the router without touching a connection.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::connection::{self, Activity};
use crate::config::ServerConfig;

/// How long shutdown waits, at most, for open requests and background replies. A reply
/// deadline is at most 15 s, and the supervisors' own stop timeouts are longer (systemd: 90 s).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// How long the accept loop waits for a slot when every connection is busy.
const SLOT_WAIT: Duration = Duration::from_secs(1);
/// How long the accept loop pauses after an `accept` error such as `EMFILE`.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How often the same warning is logged at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The router each request is served by; swapped whole on reload. Cheap to clone.
#[derive(Clone)]
pub struct Routes(Arc<ArcSwap<Router>>);

impl Routes {
    /// Serves `router` until [`Routes::replace`].
    pub fn new(router: Router) -> Self {
        Routes(Arc::new(ArcSwap::from_pointee(router)))
    }

    /// The router for the next request.
    pub fn current(&self) -> Router {
        Router::clone(&self.0.load())
    }

    /// Serves `router` from the next request on; requests in progress finish on the old one.
    pub fn replace(&self, router: Router) {
        self.0.store(Arc::new(router));
    }
}

impl From<Router> for Routes {
    fn from(router: Router) -> Self {
        Routes::new(router)
    }
}

/// How to serve, besides the router.
#[derive(Clone)]
pub struct ServeOptions {
    /// The `[server]` limits.
    pub limits: ServerConfig,
    /// Work shutdown waits for after the last request: replies still being handled.
    pub background: Option<TaskTracker>,
    /// How long shutdown waits for requests and background work together.
    pub drain_limit: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            limits: ServerConfig::default(),
            background: None,
            drain_limit: DRAIN_LIMIT,
        }
    }
}

/// Raises the soft open-files limit to the hard one; the soft limit now in force, or `None`
/// where there is no such limit.
pub fn raise_open_files_limit() -> Option<u64> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    if soft < hard {
        match rlimit::increase_nofile_limit(hard) {
            Ok(raised) => {
                if raised > soft {
                    tracing::info!(from = soft, to = raised, "raised the open-files limit");
                }
                return Some(raised);
            }
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit"),
        }
    }
    Some(soft)
}

/// The connection cap for `configured` connections under a soft open-files limit of
/// `open_files`: a reserve of a quarter of the limit (at least 64, at most half) stays free for
/// the process's own files and outgoing sockets.
pub fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return configured.max(1);
    };
    let reserve = (limit / 4).max(64).min(limit / 2);
    let fits = usize::try_from(limit - reserve).unwrap_or(usize::MAX);
    configured.min(fits).max(1)
}

/// The open connections, for eviction at the cap.
#[derive(Default)]
struct Open {
    next: AtomicU64,
    /// A std mutex: held for map updates and one scan, never across an `.await`.
    map: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Open {
    fn insert(self: &Arc<Self>, activity: Arc<Activity>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, activity);
        Registered {
            open: self.clone(),
            id,
        }
    }

    /// Asks the connection idle the longest to close; false when none is idle.
    fn evict_idlest(&self) -> bool {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let idlest = map
            .values()
            .filter(|a| a.is_idle())
            .min_by_key(|a| a.last_seen());
        match idlest {
            Some(activity) => {
                activity.evict();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from [`Open`] when its task ends.
struct Registered {
    open: Arc<Open>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// A warning logged at most every [`WARN_EVERY`], with the count of those left out.
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn new() -> Self {
        Throttled {
            last: None,
            suppressed: 0,
        }
    }

    /// True when this occurrence should be logged; then `suppressed` says how many were not.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + WARN_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Errors of one connection that `accept` reports: the next one may be fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::Interrupted
    )
}

/// Serves `routes` on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn serve(
    listener: TcpListener,
    routes: impl Into<Routes>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let routes = routes.into();
    let limits = options.limits.clone();
    let open_files = raise_open_files_limit();
    let cap = connection_cap(limits.max_connections, open_files);
    if cap < limits.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_files_limit = open_files,
            cap,
            "the open-files limit allows fewer connections than max_connections; raise the limit (LimitNOFILE=, ulimit -n) to serve more"
        );
    } else {
        tracing::info!(cap, open_files_limit = open_files, "connection limit");
    }
    let slots = Arc::new(Semaphore::new(cap));
    let open = Arc::new(Open::default());
    let tracker = TaskTracker::new();
    let (stopping_tx, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_warning = Throttled::new();
    let mut full_warning = Throttled::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                if let Some(suppressed) = accept_warning.due() {
                    tracing::warn!(error = %e, suppressed, "accept failed; pausing before the next");
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                }
            }
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => match make_room(&open, &slots).await {
                Some(slot) => slot,
                None => {
                    if let Some(suppressed) = full_warning.due() {
                        tracing::warn!(
                            cap,
                            suppressed,
                            "every connection is busy: closing a new one"
                        );
                    }
                    continue;
                }
            },
        };
        spawn_connection(
            &tracker,
            Spawned {
                stream,
                peer,
                slot,
                routes: routes.clone(),
                limits: limits.clone(),
                open: &open,
                stopping: stopping.clone(),
            },
        );
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    tracker.close();
    let open_count = open
        .map
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len();
    tracing::info!(
        connections = open_count,
        "stopped accepting; finishing requests in progress"
    );
    let drained = tokio::time::timeout(options.drain_limit, async {
        tracker.wait().await;
        if let Some(background) = &options.background {
            background.close();
            if !background.is_empty() {
                tracing::info!(
                    replies = background.len(),
                    "waiting for replies still being handled"
                );
            }
            background.wait().await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tracker.len(),
            replies = options.background.as_ref().map_or(0, TaskTracker::len),
            limit_s = options.drain_limit.as_secs(),
            "still busy at the end of the shutdown grace period; exiting anyway"
        );
    }
    Ok(())
}

/// At the cap: asks the idlest connection to close and waits (briefly) for its slot.
async fn make_room(open: &Open, slots: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    open.evict_idlest();
    tokio::time::timeout(SLOT_WAIT, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// What a connection task takes.
struct Spawned<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    routes: Routes,
    limits: ServerConfig,
    open: &'a Arc<Open>,
    stopping: watch::Receiver<bool>,
}

fn spawn_connection(tracker: &TaskTracker, spawned: Spawned<'_>) {
    let Spawned {
        stream,
        peer,
        slot,
        routes,
        limits,
        open,
        stopping,
    } = spawned;
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let registered = open.insert(activity.clone());
    tracker.spawn(async move {
        connection::serve(stream, peer, routes, limits, activity, stopping).await;
        drop(registered);
        drop(slot);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_under_the_open_files_limit() {
        assert_eq!(connection_cap(10_000, Some(1024)), 768);
        assert_eq!(connection_cap(10_000, Some(1_048_576)), 10_000);
        assert_eq!(connection_cap(100, Some(1024)), 100);
        assert_eq!(connection_cap(10_000, Some(100)), 50);
        assert_eq!(connection_cap(10_000, Some(1)), 1);
        assert_eq!(connection_cap(10_000, None), 10_000);
    }
}
