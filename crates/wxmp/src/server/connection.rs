//! One client connection: hyper's HTTP/1.1 state machine plus the clock hyper does not keep.
//!
//! hyper parses requests and writes responses, but on its own it waits as long as a client
//! likes: for a request head that never completes, for a body that never arrives, for the next
//! request on a kept-alive connection, for a client that stopped reading its response. Each
//! of these holds a socket, and sockets are what a hostile client exhausts. So every
//! connection runs under a watchdog that knows which phase it is in, from an [`Activity`]
//! record the I/O wrapper and the service wrapper keep up to date:
//!
//! - **waiting for a request head**: the first head must be complete `header_read_timeout`
//!   after the connection opened; a later one `header_read_timeout` after its first byte; a
//!   kept-alive connection where no byte comes is closed `idle_timeout` after its last response.
//! - **handling**: the router has the request. No deadline here: the body has its own
//!   (`body_read_timeout`, from the head, for the whole body, so a body dripping one byte at a
//!   time does not keep it alive), and every handler bounds its own waits.
//! - **responding**: closed when no byte could be written for `idle_timeout` (a client that
//!   stopped reading).
//!
//! hyper's own `header_read_timeout` is not used: it restarts on every kept-alive wait, so it
//! would also be the idle timeout and `idle_timeout_ms` could not be longer. Only HTTP/1.1 is
//! served: it is what WeChat and reverse proxies speak.
//!
//! The same record tells the accept loop which connection has been idle longest, so that at
//! the connection cap it can close that one to make room (see `listen`), and lets shutdown
//! close idle connections at once while requests in progress finish.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::{sleep_until, Instant, Sleep};
use tower::ServiceExt;

use super::listen::Routes;
use crate::config::ServerConfig;

/// What a connection is doing, as far as its deadlines are concerned. Times are milliseconds
/// since `opened`, in atomics, so the I/O path records them without a lock.
pub(super) struct Activity {
    opened: Instant,
    /// Requests the router is working on.
    handling: AtomicUsize,
    /// Responses hyper is still writing.
    responding: AtomicUsize,
    /// Requests received so far.
    requests: AtomicU64,
    /// When the last response finished.
    last_response: AtomicU64,
    /// 1 + when the first byte of the next head arrived; 0 while none has.
    head_started: AtomicU64,
    /// When a byte was last written.
    last_write: AtomicU64,
    /// When anything last happened: the accept loop closes the connection with the oldest.
    last_seen: AtomicU64,
    /// Wakes the watchdog when a deadline may have come closer.
    changed: Notify,
    /// Asks the watchdog to close the connection if it is idle.
    evict: Notify,
}

impl Activity {
    pub(super) fn new() -> Self {
        Activity {
            opened: Instant::now(),
            handling: AtomicUsize::new(0),
            responding: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_response: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            last_seen: AtomicU64::new(0),
            changed: Notify::new(),
            evict: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    /// No request in progress: nothing is lost by closing the connection.
    pub(super) fn is_idle(&self) -> bool {
        self.handling.load(Ordering::Acquire) == 0 && self.responding.load(Ordering::Acquire) == 0
    }

    /// When anything last happened on this connection.
    pub(super) fn last_seen(&self) -> Instant {
        self.at(self.last_seen.load(Ordering::Relaxed))
    }

    /// Asks the connection to close if it is idle (the accept loop needs its slot).
    pub(super) fn evict(&self) {
        self.evict.notify_one();
    }

    /// When the connection must be closed if nothing changes, and why; `None` while the
    /// router handles a request.
    fn deadline(&self, limits: &ServerConfig) -> Option<(Instant, &'static str)> {
        if self.handling.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.responding.load(Ordering::Acquire) > 0 {
            let last = self.last_write.load(Ordering::Acquire);
            return Some((
                self.at(last) + limits.idle_timeout,
                "the client stopped reading its response",
            ));
        }
        if self.requests.load(Ordering::Acquire) == 0 {
            return Some((
                self.opened + limits.header_read_timeout,
                "no complete request head in time",
            ));
        }
        match self.head_started.load(Ordering::Acquire) {
            0 => Some((
                self.at(self.last_response.load(Ordering::Acquire)) + limits.idle_timeout,
                "idle keep-alive connection",
            )),
            started => Some((
                self.at(started - 1) + limits.header_read_timeout,
                "no complete request head in time",
            )),
        }
    }

    fn read_some(&self) {
        let now = self.now();
        self.last_seen.store(now, Ordering::Relaxed);
        if self.is_idle() && self.head_started.load(Ordering::Acquire) == 0 {
            self.head_started.store(now + 1, Ordering::Release);
            // A head deadline may be sooner than the idle one it replaces.
            self.changed.notify_one();
        }
    }

    fn wrote_some(&self) {
        let now = self.now();
        self.last_write.store(now, Ordering::Release);
        self.last_seen.store(now, Ordering::Relaxed);
    }
}

/// Counts a request from its head until its response body is written (or dropped).
struct Handling(Arc<Activity>);

impl Handling {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.handling.fetch_add(1, Ordering::AcqRel);
        activity.requests.fetch_add(1, Ordering::AcqRel);
        activity.head_started.store(0, Ordering::Release);
        Handling(activity.clone())
    }

    /// The router answered: from now on the response is being written.
    fn responding(self) -> Responding {
        let activity = self.0.clone();
        activity.responding.fetch_add(1, Ordering::AcqRel);
        activity.wrote_some();
        // Dropping `self` ends the handling phase and wakes the watchdog.
        drop(self);
        Responding(activity)
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// Held by a response body until hyper has written (or dropped) it.
struct Responding(Arc<Activity>);

impl Drop for Responding {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.now();
        activity.last_response.store(now, Ordering::Release);
        activity.last_seen.store(now, Ordering::Relaxed);
        activity.responding.fetch_sub(1, Ordering::AcqRel);
        activity.changed.notify_one();
    }
}

/// A response body that ends the responding phase when hyper is done with it.
struct Tracked<B> {
    inner: B,
    _responding: Responding,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body was abandoned.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(Duration);

/// A request body that fails once its deadline passes: the handler reading it gets an error
/// (and answers 4xx), and hyper, left with an unread body, closes the connection.
pub(super) struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    /// Armed at the first wait, so bodies that arrive whole never touch the timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(self.limit).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future as _;

/// The socket, recording reads and writes in the connection's [`Activity`].
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote_some();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote_some();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves one connection until it ends, a deadline passes, the accept loop evicts it while
/// idle, or shutdown finds it idle.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    routes: Routes,
    limits: ServerConfig,
    activity: Arc<Activity>,
    mut stopping: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let body_limit = limits.body_read_timeout;
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let handling = Handling::begin(&service_activity);
        let router = routes.current();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(peer));
        let body = TimedBody {
            inner: body,
            deadline: Instant::now() + body_limit,
            limit: body_limit,
            sleep: None,
        };
        let request = hyper::Request::from_parts(parts, body);
        async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let responding = handling.responding();
            Ok::<_, Infallible>(response.map(|inner| Tracked {
                inner,
                _responding: responding,
            }))
        }
    });
    let mut builder = http1::Builder::new();
    // Deadlines are the watchdog's (see the module docs); `None` also keeps hyper from
    // wanting a timer for its default.
    builder.header_read_timeout(None).keep_alive(true);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut draining = *stopping.borrow();
    loop {
        if draining && activity.is_idle() {
            return;
        }
        let deadline = activity.deadline(&limits);
        let expiry = async {
            match deadline {
                Some((at, _)) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = expiry => {
                // Re-read: activity may have moved the deadline while the timer ran.
                if let Some((at, why)) = activity.deadline(&limits) {
                    if Instant::now() >= at {
                        tracing::debug!(%peer, why, "closing the connection");
                        return;
                    }
                }
            }
            () = activity.changed.notified() => {}
            () = activity.evict.notified() => {
                if activity.is_idle() {
                    tracing::debug!(%peer, "closing an idle connection to make room for a new one");
                    return;
                }
            }
            changed = stopping.changed(), if !draining => {
                if changed.is_err() || *stopping.borrow() {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
