//! The configuration file (`wxmp.toml`), parsed and validated before any port is bound.
//!
//! Parsing happens in two steps. serde reads the TOML into `Raw*` structs with
//! `deny_unknown_fields`, so a misspelt key is reported with its line by the toml crate. Then
//! [`Config::from_raw`] turns strings into checked protocol types (`AppId`, `Token`,
//! `EncodingAesKey`), resolves `"$NAME"` values from the environment and collects *every*
//! problem, so one run of `wxmp check` lists them all.
//!
//! One file per concern: `env` (`"$NAME"` values and [`Secret`]), `store` (`[store]`), `api`
//! (`[api]` keys and scoped clients), `ops` (`[ops]`), `server` (`[server]`), `app`
//! (`[apps.NAME]`), `auto_reply` (`[apps.NAME.auto_reply]`), `menu` (`[apps.NAME.menu]`); this
//! module holds the top level and the checker they share. New sections get a file of their
//! own rather than growing this one.

mod api;
mod app;
mod auto_reply;
mod env;
mod listen;
mod menu;
mod oauth;
mod ops;
mod server;
pub(crate) mod store;
mod subset;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use self::api::{api_config, RawApi};
pub use self::api::{ApiClient, Capability, DEFAULT_REFRESH_PER_MINUTE};
use self::app::{app_config, RawApp};
pub use self::app::{
    host_under_domain, AppConfig, Mode, TokenApi, DEFAULT_REPLAY_WINDOW_S,
    DEFAULT_REPLY_DEADLINE_MS, DEFAULT_WEBHOOK_CONCURRENCY,
};
pub use self::auto_reply::{AutoReply, KeywordRule, MatchMode, Pick, MAX_REPLIES};
use self::env::env_reference;
pub use self::env::{Environment, ProcessEnv, Secret};
pub use self::listen::parse_listen;
pub use self::oauth::DEFAULT_OPEN_PLATFORM;
pub use self::ops::OpsConfig;
use self::ops::{ops_config, RawOps};
pub use self::server::ServerConfig;
use self::server::{server_config, RawServer};
use self::store::{store_config, RawStore};
pub use self::store::{RedisConfig, RedisTarget, StoreConfig, DEFAULT_SQLITE_PATH};

/// Every problem found in a config file, one plain sentence each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in file order where possible.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(problem: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![problem.into()],
        }
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind.
    pub listen: SocketAddr,
    /// The WeChat API base URL (no trailing slash).
    pub upstream: Url,
    /// The store.
    pub store: StoreConfig,
    /// Unscoped bearer keys of the business API: every app, every endpoint.
    pub api_keys: Vec<Secret>,
    /// Named clients with scoped keys (`[api.clients.NAME]`).
    pub api_clients: Vec<Arc<ApiClient>>,
    /// How browsers and WeChat reach this server (the OAuth callback's base), if configured.
    pub public_url: Option<Url>,
    /// WeChat's OAuth authorize host (`/connect/oauth2/authorize`).
    pub open_platform: Url,
    /// Apps by name.
    pub apps: BTreeMap<String, Arc<AppConfig>>,
    /// `[ops]`: the admin listener and the alert webhook.
    pub ops: OpsConfig,
    /// Connection limits of the listener.
    pub server: ServerConfig,
}

impl Config {
    /// A config with no keys and no apps, every optional setting at its default. Like
    /// [`AppConfig::new`], hand-built configs start here and override fields with `..`.
    pub fn new(listen: SocketAddr, upstream: Url, store: StoreConfig) -> Config {
        // A constant that parses; the fallback only keeps this free of a panic path.
        let open_platform = Url::parse(DEFAULT_OPEN_PLATFORM).unwrap_or_else(|_| upstream.clone());
        Config {
            listen,
            upstream,
            store,
            api_keys: Vec::new(),
            api_clients: Vec::new(),
            public_url: None,
            open_platform,
            apps: BTreeMap::new(),
            ops: OpsConfig::default(),
            server: ServerConfig::default(),
        }
    }
}

/// The default upstream.
pub const DEFAULT_UPSTREAM: &str = "https://api.weixin.qq.com";
/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    listen: Option<String>,
    upstream: Option<String>,
    public_url: Option<String>,
    open_platform: Option<String>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    ops: RawOps,
    #[serde(default)]
    apps: BTreeMap<String, RawApp>,
}

/// Collects problems while resolving values.
pub(crate) struct Checker<'e> {
    env: &'e dyn Environment,
    /// The file's text, to turn the byte offsets of `Spanned` values into lines.
    source: &'e str,
    problems: Vec<String>,
}

impl Checker<'_> {
    /// The 1-based line of byte `offset` in the file.
    pub(crate) fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.source.len());
        1 + self.source.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    /// Resolves `"$NAME"` from the environment; other strings pass through.
    pub(crate) fn resolve(&mut self, key: &str, value: &str) -> Option<String> {
        match env_reference(value) {
            None => Some(value.to_owned()),
            Some(name) => match self.env.var(name) {
                Some(v) if !v.is_empty() => Some(v),
                _ => {
                    self.problems.push(format!(
                        "{key} refers to the environment variable {name}, which is not set"
                    ));
                    None
                }
            },
        }
    }

    pub(crate) fn problem(&mut self, text: String) {
        self.problems.push(text);
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::one(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Self::parse(&text, env).map_err(|mut e| {
            for p in &mut e.problems {
                *p = format!("{}: {p}", path.display());
            }
            e
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str, env: &dyn Environment) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError::one(e.to_string().trim_end().replace('\n', "\n    ")))?;
        Self::from_raw(raw, env, text)
    }

    fn from_raw(raw: RawConfig, env: &dyn Environment, text: &str) -> Result<Config, ConfigError> {
        let mut c = Checker {
            env,
            source: text,
            problems: Vec::new(),
        };

        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = c.resolve("listen", listen_text).and_then(|l| {
            parse_listen(&l)
                .map_err(|e| c.problem(format!("listen = {e}")))
                .ok()
        });

        let upstream_text = raw.upstream.as_deref().unwrap_or(DEFAULT_UPSTREAM);
        let upstream = c
            .resolve("upstream", upstream_text)
            .and_then(|u| parse_http_url(&mut c, "upstream", &u));

        let store = store_config(&mut c, raw.store);
        let ops = ops_config(&mut c, raw.ops);
        let server = server_config(&mut c, raw.server);

        let app_names = raw.apps.keys().cloned().collect();
        let (api_keys, api_clients) = api_config(&mut c, raw.api, &app_names);
        let public_url = oauth::public_url(&mut c, raw.public_url.as_deref());
        let open_platform = oauth::open_platform(&mut c, raw.open_platform.as_deref());

        let mut apps = BTreeMap::new();
        for (name, app) in raw.apps {
            if let Some(app) = app_config(&mut c, &name, app) {
                oauth::check_apps(&mut c, public_url.as_ref(), &app);
                apps.insert(name, Arc::new(app));
            }
        }

        match (listen, upstream, store, ops, open_platform, server) {
            (
                Some(listen),
                Some(upstream),
                Some(store),
                Some(ops),
                Some(open_platform),
                Some(server),
            ) if c.problems.is_empty() => Ok(Config {
                api_keys,
                api_clients: api_clients.into_iter().map(Arc::new).collect(),
                public_url,
                open_platform,
                apps,
                ops,
                server,
                ..Config::new(listen, upstream, store)
            }),
            _ => Err(ConfigError {
                problems: c.problems,
            }),
        }
    }

    /// The app named `name`.
    pub fn app(&self, name: &str) -> Option<&Arc<AppConfig>> {
        self.apps.get(name)
    }
}

pub(crate) fn parse_http_url(c: &mut Checker<'_>, key: &str, text: &str) -> Option<Url> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        _ => {
            c.problem(format!(
                "{key} = {:?} is not an http(s) URL",
                crate::redact::url_text(text)
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const EXAMPLE: &str = r#"
listen = "127.0.0.1:8080"
upstream = "https://api.weixin.qq.com"

[store]
backend = "sqlite"
path = "wxmp-data/wxmp.db"

[api]
keys = ["$WXMP_API_KEY"]

[apps.demo]
appid = "wx0123456789abcdef"
secret = "$WXMP_DEMO_SECRET"
token = "pamtest"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
mode = "safe"
token_api = "stable"
js_domains = ["example.com"]
forward = "http://127.0.0.1:9000/wechat"
reply_deadline_ms = 4500

[apps.demo.auto_reply]
subscribe = "Welcome!"
default = "Got it."
[apps.demo.auto_reply.keywords]
ping = "pong"
"#;

    #[test]
    fn the_interface_example_parses() {
        let e = env(&[
            ("WXMP_API_KEY", "0123456789abcdef0123"),
            ("WXMP_DEMO_SECRET", "s3cret"),
        ]);
        let config = Config::parse(EXAMPLE, &e).unwrap();
        let demo = config.app("demo").unwrap();
        assert_eq!(demo.appid.as_str(), "wx0123456789abcdef");
        assert_eq!(demo.secret.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(demo.mode, Mode::Safe);
        assert_eq!(demo.token_api, TokenApi::Stable);
        assert_eq!(demo.replay_window_s, DEFAULT_REPLAY_WINDOW_S);
        assert_eq!(demo.webhook_concurrency, DEFAULT_WEBHOOK_CONCURRENCY);
        assert!(demo.crypt.is_some());
        assert_eq!(demo.auto_reply.keywords["ping"], "pong");
        assert_eq!(config.api_keys[0].expose(), "0123456789abcdef0123");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let text = "listen = \"127.0.0.1:1\"\nlisten_port = 8080\n";
        let err = Config::parse(text, &env(&[])).unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = r#"
upstream = "ftp://x"
[api]
keys = ["$MISSING_KEY"]
[apps.a]
appid = "wx1"
token = "x"
mode = "safe"
js_domains = ["https://example.com", "1.2.3.4", "example.com:8080"]
reply_deadline_ms = 60000
replay_window_s = 100000
webhook_concurrency = 0
"#;
        let err = Config::parse(text, &env(&[])).unwrap_err();
        let all = err.to_string();
        for needle in [
            "upstream",
            "MISSING_KEY",
            "apps.a.token",
            "https://",
            "IP address",
            "port",
            "reply_deadline_ms",
            "replay_window_s",
            "webhook_concurrency",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(err.problems.len() >= 7, "{all}");
    }

    #[test]
    fn server_limits_have_defaults_and_bounds() {
        let config = Config::parse("", &env(&[])).unwrap();
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.server.max_connections, 10_000);
        let text = "[server]\nmax_connections = 50\nheader_read_timeout_ms = 500\n\
                    idle_timeout_ms = 2000\nbody_read_timeout_ms = 700\n";
        let server = Config::parse(text, &env(&[])).unwrap().server;
        assert_eq!(server.max_connections, 50);
        assert_eq!(server.header_read_timeout.as_millis(), 500);
        assert_eq!(server.idle_timeout.as_millis(), 2000);
        assert_eq!(server.body_read_timeout.as_millis(), 700);
        let bad =
            "[server]\nmax_connections = 0\nheader_read_timeout_ms = 5\nidle_timeout_ms = 0\n";
        let err = Config::parse(bad, &env(&[])).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        let all = err.to_string();
        assert!(
            all.contains("server.max_connections") && all.contains("server.idle_timeout_ms"),
            "{all}"
        );
        let unknown = Config::parse("[server]\nmax_conns = 5\n", &env(&[])).unwrap_err();
        assert!(unknown.to_string().contains("max_conns"), "{unknown}");
    }

    #[test]
    fn encrypted_mode_needs_a_key() {
        let text = "[apps.a]\nappid = \"wx1\"\ntoken = \"abc\"\nmode = \"compat\"\n";
        let err = Config::parse(text, &env(&[])).unwrap_err().to_string();
        assert!(err.contains("encoding_aes_key is missing"), "{err}");
    }

    #[test]
    fn js_domains_match_hosts_and_subdomains() {
        assert!(host_under_domain("example.com", "example.com"));
        assert!(host_under_domain("m.Example.com", "example.com"));
        assert!(!host_under_domain("badexample.com", "example.com"));
        assert!(!host_under_domain("example.com.evil.cn", "example.com"));
    }
}
