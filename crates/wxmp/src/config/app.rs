//! `[apps.NAME]`: one official account — its credentials, callback mode (with the key being
//! replaced during an EncodingAESKey change), JS-SDK domains, webhook, and (in files of their
//! own) console-style auto replies and its menu.

use serde::Deserialize;
use url::Url;
use wxmp_proto::signature::Token;
use wxmp_proto::{AppId, EncodingAesKey, MsgCrypt};

use super::auto_reply::{auto_reply, AutoReply, RawAutoReply};
use super::menu::{menu_config, RawMenu};
use super::{parse_http_url, Checker, Secret};
use crate::menu::AppMenu;

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
    /// The crypter of the key being replaced (`encoding_aes_key_previous`): tried when the
    /// current one cannot decrypt a push, so messages WeChat encrypted with the old key during
    /// a change in the console are not lost.
    pub crypt_previous: Option<MsgCrypt>,
    /// 消息加解密方式.
    pub mode: Mode,
    /// Which token endpoint to use.
    pub token_api: TokenApi,
    /// JS接口安全域名, lowercase.
    pub js_domains: Vec<String>,
    /// 网页授权域名, lowercase: where the OAuth flow may send a browser back to.
    pub oauth_domains: Vec<String>,
    /// The business webhook.
    pub forward: Option<Url>,
    /// When to give up waiting for the webhook and answer `success`.
    pub reply_deadline_ms: u64,
    /// Pushes whose `timestamp` is further than this from now are refused, and a
    /// (`timestamp`, `nonce`) pair is remembered this long; `0` turns both off.
    pub replay_window_s: u64,
    /// Webhook calls in flight at most; a push beyond it falls through at once.
    pub webhook_concurrency: usize,
    /// Console-style auto replies.
    pub auto_reply: AutoReply,
    /// The 自定义菜单 `wxmp menu push` publishes; `None` when the file has no
    /// `[apps.NAME.menu]` (the live menu is left alone).
    pub menu: Option<AppMenu>,
}

/// The default reply deadline: WeChat gives up after 5 s.
pub const DEFAULT_REPLY_DEADLINE_MS: u64 = 4500;

/// The default replay window: WeChat's pushes arrive within seconds of their `timestamp`, and
/// five minutes leaves room for a server clock that is a little off.
pub const DEFAULT_REPLAY_WINDOW_S: u64 = 300;

/// The largest replay window accepted: a day. Beyond that the window protects nothing.
pub const MAX_REPLAY_WINDOW_S: u64 = 86_400;

/// The default number of webhook calls in flight per app.
pub const DEFAULT_WEBHOOK_CONCURRENCY: usize = 64;

impl AppConfig {
    /// A plain-mode app with every optional setting at its default. Code that builds an app
    /// by hand (`serve --dev`, tests) starts here and overrides fields with `..`, so a new
    /// setting only needs its default written once.
    pub fn new(name: impl Into<String>, appid: AppId, token: Token) -> AppConfig {
        AppConfig {
            name: name.into(),
            appid,
            secret: None,
            token,
            crypt: None,
            crypt_previous: None,
            mode: Mode::Plain,
            token_api: TokenApi::Stable,
            js_domains: Vec::new(),
            oauth_domains: Vec::new(),
            forward: None,
            reply_deadline_ms: DEFAULT_REPLY_DEADLINE_MS,
            replay_window_s: DEFAULT_REPLAY_WINDOW_S,
            webhook_concurrency: DEFAULT_WEBHOOK_CONCURRENCY,
            auto_reply: AutoReply::default(),
            menu: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    appid: String,
    secret: Option<String>,
    token: String,
    encoding_aes_key: Option<String>,
    encoding_aes_key_previous: Option<String>,
    mode: Option<Mode>,
    token_api: Option<TokenApi>,
    #[serde(default)]
    js_domains: Vec<String>,
    #[serde(default)]
    oauth_domains: Vec<String>,
    forward: Option<String>,
    reply_deadline_ms: Option<u64>,
    replay_window_s: Option<u64>,
    webhook_concurrency: Option<usize>,
    #[serde(default)]
    auto_reply: RawAutoReply,
    menu: Option<RawMenu>,
}

pub(super) fn app_config(c: &mut Checker<'_>, name: &str, raw: RawApp) -> Option<AppConfig> {
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
    let aes_key_previous = match raw.encoding_aes_key_previous {
        Some(k) => c
            .resolve(&key("encoding_aes_key_previous"), &k)
            .and_then(|k| {
                EncodingAesKey::parse(&k)
                    .map_err(|e| {
                        c.problem(format!(
                            "{}: {e} (the 43-character EncodingAESKey being replaced)",
                            key("encoding_aes_key_previous")
                        ))
                    })
                    .ok()
            }),
        None => None,
    };
    if let Some(previous) = &aes_key_previous {
        match &aes_key {
            None if c.problems.len() == before => c.problem(format!(
                "{} is set but {} is missing: the previous key only helps next to the current one",
                key("encoding_aes_key_previous"),
                key("encoding_aes_key")
            )),
            Some(current) if current == previous => c.problem(format!(
                "{} is the same as {}: set it to the key being replaced, or remove it",
                key("encoding_aes_key_previous"),
                key("encoding_aes_key")
            )),
            _ => {}
        }
    }
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
    let mut oauth_domains = Vec::new();
    for d in &raw.oauth_domains {
        match normalize_js_domain(d) {
            Ok(d) => oauth_domains.push(d),
            Err(why) => c.problem(format!("{}: {d:?} {why}", key("oauth_domains"))),
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
    let replay_window_s = raw.replay_window_s.unwrap_or(DEFAULT_REPLAY_WINDOW_S);
    if replay_window_s > MAX_REPLAY_WINDOW_S {
        c.problem(format!(
            "{} = {replay_window_s} must be at most {MAX_REPLAY_WINDOW_S} (a day), or 0 to turn the \
             replay check off; WeChat's pushes carry the current time",
            key("replay_window_s")
        ));
    }
    let webhook_concurrency = raw
        .webhook_concurrency
        .unwrap_or(DEFAULT_WEBHOOK_CONCURRENCY);
    if !(1..=10_000).contains(&webhook_concurrency) {
        c.problem(format!(
            "{} = {webhook_concurrency} must be between 1 and 10000",
            key("webhook_concurrency")
        ));
    }
    let auto_reply = auto_reply(c, name, raw.auto_reply);
    let menu = raw.menu.and_then(|m| menu_config(c, name, m));
    if c.problems.len() != before {
        return None;
    }
    let appid = appid?;
    let crypt = aes_key.map(|k| MsgCrypt::new(k, appid.clone()));
    let crypt_previous = aes_key_previous.map(|k| MsgCrypt::new(k, appid.clone()));
    Some(AppConfig {
        secret,
        crypt,
        crypt_previous,
        mode,
        token_api: raw.token_api.unwrap_or(TokenApi::Stable),
        js_domains,
        oauth_domains,
        forward,
        reply_deadline_ms,
        replay_window_s,
        webhook_concurrency,
        auto_reply,
        menu,
        ..AppConfig::new(name, appid, token?)
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
