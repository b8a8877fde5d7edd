//! `[server]`: how many connections the listener holds and how long a client may take.
//!
//! Every limit here bounds what one client can make the server hold without authenticating:
//! a socket (`max_connections`), a socket that never finishes its request head
//! (`header_read_timeout_ms`) or body (`body_read_timeout_ms`), a keep-alive socket nobody uses
//! (`idle_timeout_ms`). The defaults suit WeChat, which sends small requests from fast
//! networks and opens new connections freely. The listener (`server::listen`) applies them.

use std::time::Duration;

use serde::Deserialize;

use super::Checker;

/// The `[server]` limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Connections open at once, at most; the process may lower it to fit its open-files
    /// limit.
    pub max_connections: usize,
    /// A connection that has not sent a complete request head this long after it opened (or,
    /// on a kept-alive connection, after the head's first byte) is closed.
    pub header_read_timeout: Duration,
    /// A request body that has not fully arrived this long after its head is abandoned.
    pub body_read_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed; so is one whose
    /// response makes no progress (the client stopped reading) for this long.
    pub idle_timeout: Duration,
}

/// `max_connections` when not set.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `header_read_timeout_ms` when not set.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// `body_read_timeout_ms` when not set: a 10 MiB proxied upload on a slow link fits.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// `idle_timeout_ms` when not set.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS),
            body_read_timeout: Duration::from_millis(DEFAULT_BODY_READ_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    max_connections: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

/// The largest `max_connections` accepted: beyond it the open-files limit decides anyway.
const MAX_CONNECTIONS_CEILING: u64 = 1_000_000;

pub(super) fn server_config(c: &mut Checker<'_>, raw: RawServer) -> Option<ServerConfig> {
    let before = c.problems.len();
    let max_connections = raw
        .max_connections
        .unwrap_or(DEFAULT_MAX_CONNECTIONS as u64);
    if !(1..=MAX_CONNECTIONS_CEILING).contains(&max_connections) {
        c.problem(format!(
            "server.max_connections = {max_connections} must be between 1 and {MAX_CONNECTIONS_CEILING}"
        ));
    }
    let mut millis = |key: &str, value: Option<u64>, default: u64, max: u64| {
        let ms = value.unwrap_or(default);
        if !(100..=max).contains(&ms) {
            c.problem(format!(
                "server.{key} = {ms} must be between 100 and {max} (milliseconds)"
            ));
        }
        Duration::from_millis(ms)
    };
    let header_read_timeout = millis(
        "header_read_timeout_ms",
        raw.header_read_timeout_ms,
        DEFAULT_HEADER_READ_TIMEOUT_MS,
        600_000,
    );
    let body_read_timeout = millis(
        "body_read_timeout_ms",
        raw.body_read_timeout_ms,
        DEFAULT_BODY_READ_TIMEOUT_MS,
        3_600_000,
    );
    let idle_timeout = millis(
        "idle_timeout_ms",
        raw.idle_timeout_ms,
        DEFAULT_IDLE_TIMEOUT_MS,
        3_600_000,
    );
    (c.problems.len() == before).then(|| ServerConfig {
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        header_read_timeout,
        body_read_timeout,
        idle_timeout,
    })
}
