//! `[store]`: which backend keeps tokens, locks and the callback dedup records, and for Redis
//! how to reach it: one URL (`redis://`, or `rediss://` for TLS), or a set of Sentinels that
//! name the current master.
//!
//! Everything that can be checked without a network is checked here, so a typo (a sentinel
//! without a port, a `master_name` without sentinels, a CA file for a plain connection) is
//! reported with the other config problems before anything starts.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Checker, Secret};

/// The store backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A SQLite file (the default).
    Sqlite {
        /// The database file; its folder is created when missing.
        path: PathBuf,
    },
    /// A shared Redis.
    Redis(RedisConfig),
    /// In-process only; nothing survives a restart.
    Memory,
}

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// One server, or Sentinels.
    pub target: RedisTarget,
    /// ACL user on the Redis servers (Sentinel mode; with a URL it may also be in the URL).
    pub username: Option<String>,
    /// Password of the Redis servers; overrides one in the URL.
    pub password: Option<Secret>,
    /// Password of the Sentinels themselves, when they have `requirepass`.
    pub sentinel_password: Option<Secret>,
    /// A PEM file of the CA(s) to trust for TLS instead of the built-in web roots: for a
    /// deployment with its own (or a self-signed) certificate.
    pub tls_ca: Option<PathBuf>,
    /// Key prefix, so several deployments can share one Redis.
    pub prefix: String,
}

/// Which Redis server the store talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS.
    Url(String),
    /// Whatever server the Sentinels name as master of `master_name`; asked again after
    /// every connection failure, so a failover is followed.
    Sentinel {
        /// `host:port` of each Sentinel.
        sentinels: Vec<String>,
        /// The name in the Sentinels' `sentinel monitor` line.
        master_name: String,
        /// Database number on the master.
        db: i64,
        /// TLS to the Sentinels and to the master.
        tls: bool,
    },
}

impl RedisConfig {
    /// The Redis at `url`, keys under `prefix`, nothing else set.
    pub fn url(url: &str, prefix: &str) -> RedisConfig {
        RedisConfig {
            target: RedisTarget::Url(url.to_owned()),
            username: None,
            password: None,
            sentinel_password: None,
            tls_ca: None,
            prefix: prefix.to_owned(),
        }
    }

    /// True when connections use TLS.
    pub fn tls(&self) -> bool {
        match &self.target {
            RedisTarget::Url(url) => url.starts_with("rediss://"),
            RedisTarget::Sentinel { tls, .. } => *tls,
        }
    }
}

/// The default SQLite file.
pub const DEFAULT_SQLITE_PATH: &str = "wxmp-data/wxmp.db";

/// The default Redis URL.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    backend: Option<String>,
    path: Option<String>,
    url: Option<String>,
    prefix: Option<String>,
    sentinels: Option<Vec<String>>,
    master_name: Option<String>,
    db: Option<i64>,
    username: Option<String>,
    password: Option<String>,
    sentinel_password: Option<String>,
    tls: Option<bool>,
    tls_ca: Option<String>,
}

pub(super) fn store_config(c: &mut Checker<'_>, raw: RawStore) -> Option<StoreConfig> {
    let backend = raw.backend.as_deref().unwrap_or("sqlite");
    // Keys that do nothing under another backend: a mistake worth hearing about.
    let backend_only = [
        ("url", raw.url.is_some(), "redis"),
        ("sentinels", raw.sentinels.is_some(), "redis"),
        ("master_name", raw.master_name.is_some(), "redis"),
        ("db", raw.db.is_some(), "redis"),
        ("username", raw.username.is_some(), "redis"),
        ("password", raw.password.is_some(), "redis"),
        (
            "sentinel_password",
            raw.sentinel_password.is_some(),
            "redis",
        ),
        ("tls", raw.tls.is_some(), "redis"),
        ("tls_ca", raw.tls_ca.is_some(), "redis"),
        ("prefix", raw.prefix.is_some(), "redis"),
        ("path", raw.path.is_some(), "sqlite"),
    ];
    for (key, given, only) in backend_only {
        if given && backend != only {
            c.problem(format!(
                "store.{key} only applies to backend = \"{only}\" (backend is {backend:?})"
            ));
        }
    }
    match backend {
        "sqlite" => {
            let path = c.resolve(
                "store.path",
                raw.path.as_deref().unwrap_or(DEFAULT_SQLITE_PATH),
            )?;
            Some(StoreConfig::Sqlite { path: path.into() })
        }
        "redis" => redis_config(c, raw).map(StoreConfig::Redis),
        "memory" => Some(StoreConfig::Memory),
        other => {
            c.problem(format!(
                "store.backend = {other:?} is not one of \"sqlite\", \"redis\", \"memory\""
            ));
            None
        }
    }
}

fn redis_config(c: &mut Checker<'_>, raw: RawStore) -> Option<RedisConfig> {
    let prefix = c.resolve("store.prefix", raw.prefix.as_deref().unwrap_or("wxmp:"));
    let username = match raw.username {
        Some(u) => Some(c.resolve("store.username", &u)?),
        None => None,
    };
    let mut secret = |key: &str, value: Option<String>| -> Option<Option<Secret>> {
        match value {
            Some(v) => c.resolve(key, &v).map(|v| Some(Secret::new(v))),
            None => Some(None),
        }
    };
    let password = secret("store.password", raw.password);
    let sentinel_password = secret("store.sentinel_password", raw.sentinel_password);
    let tls_ca = match raw.tls_ca {
        Some(path) => Some(PathBuf::from(c.resolve("store.tls_ca", &path)?)),
        None => None,
    };
    let target = match (raw.url, raw.sentinels) {
        (Some(_), Some(_)) => {
            c.problem(
                "store.url and store.sentinels exclude each other: give the one Redis's url, \
                 or the sentinels that name the master"
                    .to_owned(),
            );
            None
        }
        (None, Some(sentinels)) => sentinel_target(c, sentinels, raw.master_name, raw.db, raw.tls),
        (url, None) => {
            for (key, given) in [
                ("master_name", raw.master_name.is_some()),
                ("db", raw.db.is_some()),
                (
                    "sentinel_password",
                    sentinel_password.as_ref().is_some_and(Option::is_some),
                ),
            ] {
                if given {
                    c.problem(format!(
                        "store.{key} only applies with store.sentinels (with a url, put the \
                         database in the url: redis://host:6379/2)"
                    ));
                }
            }
            let url = c.resolve("store.url", url.as_deref().unwrap_or(DEFAULT_REDIS_URL))?;
            url_target(c, url, raw.tls)
        }
    };
    let config = RedisConfig {
        target: target?,
        username,
        password: password?,
        sentinel_password: sentinel_password?,
        tls_ca,
        prefix: prefix?,
    };
    if config.tls_ca.is_some() && !config.tls() {
        c.problem(
            "store.tls_ca is only used for TLS: use a rediss:// url, or tls = true with sentinels"
                .to_owned(),
        );
        return None;
    }
    Some(config)
}

fn url_target(c: &mut Checker<'_>, url: String, tls: Option<bool>) -> Option<RedisTarget> {
    let tls_scheme = url.starts_with("rediss://");
    if !(url.starts_with("redis://") || tls_scheme) {
        c.problem("store.url must start with redis:// or rediss:// (TLS)".to_owned());
        return None;
    }
    if url.contains('#') {
        c.problem(
            "store.url must not carry a #fragment: to trust a self-signed certificate, give \
             its CA as store.tls_ca instead of turning verification off"
                .to_owned(),
        );
        return None;
    }
    if let Some(tls) = tls {
        if tls != tls_scheme {
            c.problem(format!(
                "store.tls = {tls} contradicts the url: with a url the scheme decides \
                 (rediss:// for TLS); drop store.tls"
            ));
            return None;
        }
    }
    if url::Url::parse(&url).map_or(true, |u| u.host_str().is_none_or(str::is_empty)) {
        c.problem("store.url is not a URL with a host (redis://host:6379/0)".to_owned());
        return None;
    }
    Some(RedisTarget::Url(url))
}

fn sentinel_target(
    c: &mut Checker<'_>,
    sentinels: Vec<String>,
    master_name: Option<String>,
    db: Option<i64>,
    tls: Option<bool>,
) -> Option<RedisTarget> {
    let mut ok = true;
    if sentinels.is_empty() {
        c.problem("store.sentinels is empty: list at least one \"host:port\"".to_owned());
        ok = false;
    }
    for s in &sentinels {
        if parse_host_port(s).is_none() {
            c.problem(format!(
                "store.sentinels: {s:?} is not \"host:port\" (a Sentinel's port is usually 26379)"
            ));
            ok = false;
        }
    }
    let master_name = match master_name.filter(|m| !m.is_empty()) {
        Some(m) => Some(m),
        None => {
            c.problem(
                "store.sentinels needs store.master_name: the name in the Sentinels' \
                 `sentinel monitor` line"
                    .to_owned(),
            );
            None
        }
    };
    let db = db.unwrap_or(0);
    if db < 0 {
        c.problem(format!("store.db = {db} must be 0 or more"));
        ok = false;
    }
    Some(RedisTarget::Sentinel {
        sentinels,
        master_name: master_name.filter(|_| ok)?,
        db,
        tls: tls.unwrap_or(false),
    })
}

/// `"host:port"` or `"[v6]:port"` → (host, port).
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains(['/', '@', ' '])).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    fn parse(store: &str, env: &[(&str, &str)]) -> Result<StoreConfig, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let text = format!(
            "listen = \"127.0.0.1:0\"\n[store]\n{store}\n[apps.demo]\nappid = \"wx1234567890abcdef\"\ntoken = \"pamtest\"\n"
        );
        Config::parse(&text, &env)
            .map(|c| c.store)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_redis_url_with_tls_and_a_ca() {
        let store = parse(
            "backend = \"redis\"\nurl = \"rediss://cache.internal:6380/1\"\ntls_ca = \"/etc/wxmp/ca.pem\"\npassword = \"$REDIS_PASSWORD\"",
            &[("REDIS_PASSWORD", "hunter2")],
        )
        .unwrap();
        let StoreConfig::Redis(redis) = store else {
            panic!("{store:?}")
        };
        assert_eq!(
            redis.target,
            RedisTarget::Url("rediss://cache.internal:6380/1".into())
        );
        assert!(redis.tls());
        assert_eq!(redis.password.as_ref().map(Secret::expose), Some("hunter2"));
        assert_eq!(redis.tls_ca, Some(PathBuf::from("/etc/wxmp/ca.pem")));
        assert!(!format!("{redis:?}").contains("hunter2"));
    }

    #[test]
    fn sentinels_with_password_and_tls() {
        let store = parse(
            "backend = \"redis\"\nsentinels = [\"10.0.0.1:26379\", \"[::1]:26380\"]\nmaster_name = \"mymaster\"\npassword = \"$P\"\ntls = true\ndb = 2",
            &[("P", "pw")],
        )
        .unwrap();
        let StoreConfig::Redis(redis) = store else {
            panic!("{store:?}")
        };
        assert_eq!(
            redis.target,
            RedisTarget::Sentinel {
                sentinels: vec!["10.0.0.1:26379".into(), "[::1]:26380".into()],
                master_name: "mymaster".into(),
                db: 2,
                tls: true,
            }
        );
        assert_eq!(redis.prefix, "wxmp:");
    }

    #[test]
    fn redis_mistakes_are_named() {
        for (store, expected) in [
            (
                "backend = \"redis\"\nurl = \"redis://h:1\"\nsentinels = [\"h:2\"]\nmaster_name = \"m\"",
                "exclude each other",
            ),
            ("backend = \"redis\"\nsentinels = [\"h:2\"]", "needs store.master_name"),
            ("backend = \"redis\"\nsentinels = [\"h\"]\nmaster_name = \"m\"", "is not \"host:port\""),
            ("backend = \"redis\"\nsentinels = []\nmaster_name = \"m\"", "is empty"),
            ("backend = \"redis\"\nmaster_name = \"m\"", "only applies with store.sentinels"),
            ("backend = \"redis\"\nurl = \"redis://h:1\"\ntls_ca = \"ca.pem\"", "only used for TLS"),
            ("backend = \"redis\"\nurl = \"redis://h:1\"\ntls = true", "contradicts the url"),
            ("backend = \"redis\"\nurl = \"rediss://h:1/#insecure\"", "store.tls_ca instead"),
            ("backend = \"redis\"\nurl = \"http://h:1\"", "must start with redis://"),
            ("backend = \"sqlite\"\nurl = \"redis://h:1\"", "only applies to backend = \"redis\""),
            ("backend = \"sqlite\"\nprefix = \"app:\"", "store.prefix only applies"),
            ("backend = \"redis\"\npath = \"w.db\"", "store.path only applies"),
            ("backend = \"memory\"\npath = \"w.db\"", "store.path only applies"),
            ("backend = \"redis\"\npassword = \"$NOPE\"", "NOPE, which is not set"),
        ] {
            let err = parse(store, &[]).unwrap_err();
            assert!(err.contains(expected), "{store}\n → {err}");
        }
    }

    #[test]
    fn host_port() {
        assert_eq!(parse_host_port("h:26379"), Some(("h".into(), 26379)));
        assert_eq!(parse_host_port("[::1]:1"), Some(("::1".into(), 1)));
        assert_eq!(parse_host_port("h"), None);
        assert_eq!(parse_host_port("h:0"), None);
        assert_eq!(parse_host_port(":1"), None);
        assert_eq!(parse_host_port("redis://h:1"), None);
    }
}
