//! Where the Redis store's connections go: one configured server, or the master that a set of
//! Sentinels names at the moment of connecting.
//!
//! Why this shape:
//! - The store asks [`Target::client`] for a client every time it (re)connects, so one code
//!   path serves both cases: a fixed server returns the same client each time, and Sentinel
//!   mode asks again, which is how a failover is followed. The caller decides *when* to ask
//!   again (after a connection error, see the store's module docs).
//! - Sentinel discovery is the documented client protocol, written out here rather than taken
//!   from the redis crate's `sentinel` module: ask each Sentinel in turn for
//!   `SENTINEL GET-MASTER-ADDR-BY-NAME`, then check with `ROLE` that the named server really is
//!   a master (a Sentinel may not have noticed a failover yet). The crate's version cannot
//!   attach a custom CA to the master connections it opens, so it cannot reach a TLS
//!   deployment with its own certificates, which is the common case for Sentinel with TLS.
//! - TLS is rustls with the built-in web roots, or only the CAs of `tls_ca` when given. There
//!   is deliberately no switch that turns verification off: a self-signed deployment gives its
//!   CA instead.
//! - Nothing here ever prints a password: [`Target::describe`] names hosts only.

use std::time::Duration;

use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
    TlsCertificates, Value,
};

use crate::config::{store::parse_host_port, RedisConfig, RedisTarget};

/// How long one Sentinel or one candidate master may take to answer during discovery.
const DISCOVERY_STEP_TIMEOUT: Duration = Duration::from_secs(1);

/// Where connections go. Cheap to share (the store keeps it in an `Arc`).
pub(super) struct Target {
    kind: Kind,
    /// The PEM of `tls_ca`, read once at start.
    ca: Option<Vec<u8>>,
}

enum Kind {
    /// One server.
    Fixed(Client),
    /// The master of `master_name`, as the Sentinels say.
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        master_name: String,
        /// Database, user and password for the master.
        node: RedisConnectionInfo,
        tls: bool,
    },
}

impl Target {
    /// Builds the target of `config`, reading the CA file if one is configured.
    pub(super) fn new(config: &RedisConfig) -> Result<Target, String> {
        let ca = match &config.tls_ca {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("cannot read store.tls_ca {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let password = config.password.as_ref().map(|p| p.expose().to_owned());
        let kind = match &config.target {
            RedisTarget::Url(url) => {
                let mut info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| format!("invalid url {}: {e}", super::redact(url)))?;
                if password.is_some() {
                    info.redis.password = password;
                }
                if config.username.is_some() {
                    info.redis.username = config.username.clone();
                }
                Kind::Fixed(client(info, ca.as_deref()).map_err(|e| e.to_string())?)
            }
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                db,
                tls,
            } => {
                let sentinel_auth = RedisConnectionInfo {
                    password: config
                        .sentinel_password
                        .as_ref()
                        .map(|p| p.expose().to_owned()),
                    ..RedisConnectionInfo::default()
                };
                let sentinels = sentinels
                    .iter()
                    .map(|s| {
                        let (host, port) = parse_host_port(s)
                            .ok_or_else(|| format!("sentinel {s:?} is not host:port"))?;
                        Ok(ConnectionInfo {
                            addr: addr(host, port, *tls),
                            redis: sentinel_auth.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Kind::Sentinel {
                    sentinels,
                    master_name: master_name.clone(),
                    node: RedisConnectionInfo {
                        db: *db,
                        username: config.username.clone(),
                        password,
                        ..RedisConnectionInfo::default()
                    },
                    tls: *tls,
                }
            }
        };
        Ok(Target { kind, ca })
    }

    /// True when the server behind the target can change (Sentinel), so that a connection
    /// error is a reason to ask again where it is.
    pub(super) fn follows_failover(&self) -> bool {
        matches!(self.kind, Kind::Sentinel { .. })
    }

    /// Hosts only, for messages: `host:port`, or `master NAME via sentinels a:1, b:2`.
    pub(super) fn describe(&self) -> String {
        match &self.kind {
            Kind::Fixed(client) => client.get_connection_info().addr.to_string(),
            Kind::Sentinel {
                sentinels,
                master_name,
                ..
            } => {
                let list: Vec<String> = sentinels.iter().map(|s| s.addr.to_string()).collect();
                format!("master {master_name} via sentinels {}", list.join(", "))
            }
        }
    }

    /// A client for the server to use now: the fixed one, or the master the Sentinels name
    /// (checked with `ROLE`). Bounded: each Sentinel and each candidate gets
    /// [`DISCOVERY_STEP_TIMEOUT`].
    pub(super) async fn client(&self) -> Result<Client, String> {
        let (sentinels, master_name, node, tls) = match &self.kind {
            Kind::Fixed(client) => return Ok(client.clone()),
            Kind::Sentinel {
                sentinels,
                master_name,
                node,
                tls,
            } => (sentinels, master_name, node, *tls),
        };
        let mut failures = Vec::new();
        for sentinel in sentinels {
            let at = sentinel.addr.to_string();
            match self.ask(sentinel, master_name).await {
                Ok(Some((host, port))) => {
                    let info = ConnectionInfo {
                        addr: addr(host.clone(), port, tls),
                        redis: node.clone(),
                    };
                    let master = client(info, self.ca.as_deref()).map_err(|e| e.to_string())?;
                    match is_master(&master).await {
                        Ok(true) => return Ok(master),
                        Ok(false) => failures.push(format!(
                            "{at} named {host}:{port}, which is not a master (yet)"
                        )),
                        Err(e) => failures.push(format!("{at} named {host}:{port}: {e}")),
                    }
                }
                Ok(None) => failures.push(format!("{at} knows no master {master_name:?}")),
                Err(e) => failures.push(format!("{at}: {e}")),
            }
        }
        Err(format!(
            "no sentinel named a reachable master {master_name:?} ({})",
            failures.join("; ")
        ))
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME` on one Sentinel.
    async fn ask(
        &self,
        sentinel: &ConnectionInfo,
        master_name: &str,
    ) -> Result<Option<(String, u16)>, String> {
        let client = client(sentinel.clone(), self.ca.as_deref()).map_err(|e| e.to_string())?;
        let query = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(master_name)
                .query_async::<Option<(String, u16)>>(&mut conn)
                .await
        };
        match tokio::time::timeout(DISCOVERY_STEP_TIMEOUT, query).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {DISCOVERY_STEP_TIMEOUT:?}")),
        }
    }
}

/// True when `client`'s server says `ROLE` master.
async fn is_master(client: &Client) -> Result<bool, String> {
    let query = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("ROLE")
            .query_async::<Vec<Value>>(&mut conn)
            .await
    };
    match tokio::time::timeout(DISCOVERY_STEP_TIMEOUT, query).await {
        Ok(Ok(role)) => Ok(matches!(
            role.first(),
            Some(Value::BulkString(r)) if r == b"master"
        ) || matches!(role.first(), Some(Value::SimpleString(r)) if r == "master")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {DISCOVERY_STEP_TIMEOUT:?}")),
    }
}

fn addr(host: String, port: u16, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    }
}

/// A client for `info`, trusting only the CAs in `ca` (PEM) when given and the connection
/// uses TLS.
fn client(info: ConnectionInfo, ca: Option<&[u8]>) -> redis::RedisResult<Client> {
    match (&info.addr, ca) {
        (ConnectionAddr::TcpTls { .. }, Some(ca)) => Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.to_vec()),
            },
        ),
        _ => Client::open(info),
    }
}
