//! The configuration file (`wxmp.toml`), parsed and validated before any port is bound.
//!
//! Parsing happens in two steps. serde reads the TOML into `Raw*` structs with
//! `deny_unknown_fields`, so a misspelt key is reported with its line by the toml crate. Then
//! [`Config::from_raw`] turns strings into checked protocol types (`AppId`, `Token`,
//! `EncodingAesKey`), resolves `"$NAME"` values from the environment and collects *every*
//! problem, so one run of `wxmp check` lists them all.
//!
//! The environment is read through the [`Environment`] trait, so tests pass a map instead of
//! mutating the process environment.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use url::Url;
use wxmp_proto::signature::Token;
use wxmp_proto::{AppId, EncodingAesKey, MsgCrypt};
use zeroize::Zeroizing;

/// Where `"$NAME"` values come from.
pub trait Environment {
    /// The value of variable `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

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

/// A secret string (AppSecret, API key): wiped on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret itself; call only where it is sent or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The callback's 消息加解密方式.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// 明文模式: plaintext XML.
    Plain,
    /// 兼容模式: plaintext and ciphertext side by side; encrypted requests get encrypted replies.
    Compat,
    /// 安全模式: ciphertext only.
    Safe,
}

/// Which WeChat endpoint issues access_tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenApi {
    /// `POST /cgi-bin/stable_token`: the same token until close to expiry; isolated from
    /// other token users of the same AppID.
    Stable,
    /// `GET /cgi-bin/token`: every call issues a new token and retires the previous one.
    Classic,
}

/// The store backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A SQLite file (the default).
    Sqlite {
        /// The database file; its folder is created when missing.
        path: PathBuf,
    },
    /// A shared Redis.
    Redis {
        /// `redis://…` URL.
        url: String,
        /// Key prefix, so several deployments can share one Redis.
        prefix: String,
    },
    /// In-process only; nothing survives a restart.
    Memory,
}

/// Replies configured like the console's 自动回复.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoReply {
    /// 被关注回复.
    pub subscribe: Option<String>,
    /// 收到消息回复.
    pub default: Option<String>,
    /// 关键词回复: whole-message match → reply text.
    pub keywords: BTreeMap<String, String>,
}

/// One official account.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The app's name in URLs (`/wx/{name}`, `/v1/apps/{name}`).
    pub name: String,
    /// The AppID.
    pub appid: AppId,
    /// The AppSecret; without it the app is callback-only.
    pub secret: Option<Secret>,
    /// The 服务器配置 Token.
    pub token: Token,
    /// The crypter, when an EncodingAESKey is configured.
    pub crypt: Option<MsgCrypt>,
    /// 消息加解密方式.
    pub mode: Mode,
    /// Which token endpoint to use.
    pub token_api: TokenApi,
    /// JS接口安全域名, lowercase.
    pub js_domains: Vec<String>,
    /// The business webhook.
    pub forward: Option<Url>,
    /// When to give up waiting for the webhook and answer `success`.
    pub reply_deadline_ms: u64,
    /// Console-style auto replies.
    pub auto_reply: AutoReply,
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
    /// Bearer keys of the business API.
    pub api_keys: Vec<Secret>,
    /// Apps by name.
    pub apps: BTreeMap<String, Arc<AppConfig>>,
}

/// The default upstream.
pub const DEFAULT_UPSTREAM: &str = "https://api.weixin.qq.com";
/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default SQLite file.
pub const DEFAULT_SQLITE_PATH: &str = "wxmp-data/wxmp.db";
/// The default reply deadline: WeChat gives up after 5 s.
pub const DEFAULT_REPLY_DEADLINE_MS: u64 = 4500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    upstream: Option<String>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    apps: BTreeMap<String, RawApp>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    backend: Option<String>,
    path: Option<String>,
    url: Option<String>,
    prefix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    appid: String,
    secret: Option<String>,
    token: String,
    encoding_aes_key: Option<String>,
    mode: Option<Mode>,
    token_api: Option<TokenApi>,
    #[serde(default)]
    js_domains: Vec<String>,
    forward: Option<String>,
    reply_deadline_ms: Option<u64>,
    #[serde(default)]
    auto_reply: RawAutoReply,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAutoReply {
    subscribe: Option<String>,
    default: Option<String>,
    #[serde(default)]
    keywords: BTreeMap<String, String>,
}

/// Collects problems while resolving values.
struct Checker<'e> {
    env: &'e dyn Environment,
    problems: Vec<String>,
}

impl Checker<'_> {
    /// Resolves `"$NAME"` from the environment; other strings pass through.
    fn resolve(&mut self, key: &str, value: &str) -> Option<String> {
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

    fn problem(&mut self, text: String) {
        self.problems.push(text);
    }
}

/// `"$NAME"` → `Some("NAME")`.
fn env_reference(value: &str) -> Option<&str> {
    let name = value.strip_prefix('$')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some(name)
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
        Self::from_raw(raw, env)
    }

    fn from_raw(raw: RawConfig, env: &dyn Environment) -> Result<Config, ConfigError> {
        let mut c = Checker {
            env,
            problems: Vec::new(),
        };

        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = c.resolve("listen", listen_text).and_then(|l| {
            l.parse::<SocketAddr>()
                .map_err(|_| {
                    c.problem(format!(
                        "listen = {l:?} is not an address like \"127.0.0.1:8080\""
                    ))
                })
                .ok()
        });

        let upstream_text = raw.upstream.as_deref().unwrap_or(DEFAULT_UPSTREAM);
        let upstream = c
            .resolve("upstream", upstream_text)
            .and_then(|u| parse_http_url(&mut c, "upstream", &u));

        let store = store_config(&mut c, raw.store);

        let mut api_keys = Vec::new();
        for (i, key) in raw.api.keys.iter().enumerate() {
            if let Some(k) = c.resolve(&format!("api.keys[{i}]"), key) {
                if k.len() < 16 {
                    c.problem(format!(
                        "api.keys[{i}] is shorter than 16 characters: use a long random key"
                    ));
                }
                api_keys.push(Secret::new(k));
            }
        }

        let mut apps = BTreeMap::new();
        for (name, app) in raw.apps {
            if let Some(app) = app_config(&mut c, &name, app) {
                apps.insert(name, Arc::new(app));
            }
        }

        match (listen, upstream, store) {
            (Some(listen), Some(upstream), Some(store)) if c.problems.is_empty() => Ok(Config {
                listen,
                upstream,
                store,
                api_keys,
                apps,
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

fn parse_http_url(c: &mut Checker<'_>, key: &str, text: &str) -> Option<Url> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        _ => {
            c.problem(format!("{key} = {text:?} is not an http(s) URL"));
            None
        }
    }
}

fn store_config(c: &mut Checker<'_>, raw: RawStore) -> Option<StoreConfig> {
    let backend = raw.backend.as_deref().unwrap_or("sqlite");
    match backend {
        "sqlite" => {
            let path = c.resolve(
                "store.path",
                raw.path.as_deref().unwrap_or(DEFAULT_SQLITE_PATH),
            )?;
            Some(StoreConfig::Sqlite { path: path.into() })
        }
        "redis" => {
            let url = c.resolve(
                "store.url",
                raw.url.as_deref().unwrap_or("redis://127.0.0.1:6379/0"),
            )?;
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                c.problem("store.url must start with redis:// or rediss://".to_owned());
                return None;
            }
            let prefix = c.resolve("store.prefix", raw.prefix.as_deref().unwrap_or("wxmp:"))?;
            Some(StoreConfig::Redis { url, prefix })
        }
        "memory" => Some(StoreConfig::Memory),
        other => {
            c.problem(format!(
                "store.backend = {other:?} is not one of \"sqlite\", \"redis\", \"memory\""
            ));
            None
        }
    }
}

fn app_config(c: &mut Checker<'_>, name: &str, raw: RawApp) -> Option<AppConfig> {
    let before = c.problems.len();
    let key = |field: &str| format!("apps.{name}.{field}");
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        c.problem(format!(
            "app name {name:?} may only use letters, digits, '-' and '_' (it is part of the URL /wx/{name})"
        ));
    }

    let appid = c.resolve(&key("appid"), &raw.appid).and_then(|a| {
        AppId::new(a)
            .map_err(|_| {
                c.problem(format!(
                    "{} must be the account's AppID (printable, like wx0123456789abcdef)",
                    key("appid")
                ))
            })
            .ok()
    });
    let secret = match raw.secret {
        Some(s) => c.resolve(&key("secret"), &s).map(Secret::new),
        None => None,
    };
    let token = c.resolve(&key("token"), &raw.token).and_then(|t| {
        let shape_ok = (3..=32).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric());
        if !shape_ok {
            c.problem(format!(
                "{} must be 3 to 32 letters or digits, as the console's 服务器配置 requires",
                key("token")
            ));
            return None;
        }
        Token::new(t).ok()
    });
    let aes_key = match raw.encoding_aes_key {
        Some(k) => c.resolve(&key("encoding_aes_key"), &k).and_then(|k| {
            EncodingAesKey::parse(&k)
                .map_err(|e| {
                    c.problem(format!(
                        "{}: {e} (copy the 43-character EncodingAESKey from the console)",
                        key("encoding_aes_key")
                    ))
                })
                .ok()
        }),
        None => None,
    };
    let mode = raw.mode.unwrap_or(if aes_key.is_some() {
        Mode::Safe
    } else {
        Mode::Plain
    });
    if mode != Mode::Plain && aes_key.is_none() && c.problems.len() == before {
        c.problem(format!(
            "{} is {mode:?} but {} is missing: encrypted modes need the EncodingAESKey",
            key("mode"),
            key("encoding_aes_key")
        ));
    }
    let mut js_domains = Vec::new();
    for d in &raw.js_domains {
        match normalize_js_domain(d) {
            Ok(d) => js_domains.push(d),
            Err(why) => c.problem(format!("{}: {d:?} {why}", key("js_domains"))),
        }
    }
    let forward = match raw.forward {
        Some(f) => c
            .resolve(&key("forward"), &f)
            .and_then(|f| parse_http_url(c, &key("forward"), &f)),
        None => None,
    };
    let reply_deadline_ms = raw.reply_deadline_ms.unwrap_or(DEFAULT_REPLY_DEADLINE_MS);
    if !(100..=15_000).contains(&reply_deadline_ms) {
        c.problem(format!(
            "{} = {reply_deadline_ms} must be between 100 and 15000 (WeChat stops waiting after 5000 ms \
             and retries; above that, a late reply can only reach the user on a retry)",
            key("reply_deadline_ms")
        ));
    }
    if c.problems.len() != before {
        return None;
    }
    let appid = appid?;
    let crypt = aes_key.map(|k| MsgCrypt::new(k, appid.clone()));
    Some(AppConfig {
        name: name.to_owned(),
        appid,
        secret,
        token: token?,
        crypt,
        mode,
        token_api: raw.token_api.unwrap_or(TokenApi::Stable),
        js_domains,
        forward,
        reply_deadline_ms,
        auto_reply: AutoReply {
            subscribe: raw.auto_reply.subscribe,
            default: raw.auto_reply.default,
            keywords: raw.auto_reply.keywords,
        },
    })
}

/// A JS接口安全域名 is a bare host name: no scheme, port, path or IP address.
fn normalize_js_domain(domain: &str) -> Result<String, &'static str> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if d.contains("://") {
        return Err("must be a bare domain without http:// or https://");
    }
    if d.contains('/') || d.contains(':') {
        return Err("must be a bare domain without a port or path");
    }
    if d.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; WeChat only accepts domain names");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !d.contains('.') || !d.split('.').all(label_ok) {
        return Err("is not a valid domain name like example.com");
    }
    Ok(d)
}

/// True when `host` is `domain` or a subdomain of it (pages under a JS接口安全域名).
pub fn host_under_domain(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(err.problems.len() >= 7, "{all}");
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
