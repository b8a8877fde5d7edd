//! `[api]`: who may call the business API — unscoped `keys`, and named clients
//! (`[api.clients.NAME]`) each with its own key, apps, endpoints and passive-refresh budget.
//!
//! Unscoped keys reach every app and endpoint, as before clients existed. A client exists so a
//! leaked key of a small service exposes only what that service needs, and so one misbehaving
//! caller cannot burn an account's token quota: its passive refreshes are capped per minute.
//! Every key must be unique across both lists, because the key is how a request is tied to
//! its client (for scope checks and for the `by` of the refresh audit).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

use super::{Checker, Secret};

/// What a client may call; `allow` lists these by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// `GET …/access_token`.
    Token,
    /// `POST …/access_token/refresh`.
    Refresh,
    /// `GET …/tickets/{kind}`.
    Tickets,
    /// `POST …/jssdk/config` and `POST …/card_ext` (signatures made with tickets).
    Jssdk,
    /// `ANY …/proxy/{path}`.
    Proxy,
    /// `…/oauth/*`: redeeming OAuth tickets and codes, building authorize URLs.
    Oauth,
}

impl Capability {
    /// Every capability, in the order `allow` documents them.
    pub const ALL: [Capability; 6] = [
        Capability::Token,
        Capability::Refresh,
        Capability::Tickets,
        Capability::Jssdk,
        Capability::Proxy,
        Capability::Oauth,
    ];

    /// The name used in `allow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Token => "token",
            Capability::Refresh => "refresh",
            Capability::Tickets => "tickets",
            Capability::Jssdk => "jssdk",
            Capability::Proxy => "proxy",
            Capability::Oauth => "oauth",
        }
    }

    fn parse(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default `refresh_per_minute`: enough for a real stale-token burst (each refresh
/// replaces the token for every caller), far below what burns a daily quota.
pub const DEFAULT_REFRESH_PER_MINUTE: u32 = 6;
/// The largest `refresh_per_minute` accepted.
pub const MAX_REFRESH_PER_MINUTE: u32 = 60;

/// One `[api.clients.NAME]`.
#[derive(Debug, Clone)]
pub struct ApiClient {
    /// The client's name: shown as `by` in the refresh audit.
    pub name: String,
    /// Its bearer key.
    pub key: Secret,
    /// The apps it may use; `None` means every app.
    pub apps: Option<BTreeSet<String>>,
    /// What it may call.
    pub allow: BTreeSet<Capability>,
    /// Passive refreshes it may cause per app in any 60 seconds, across instances.
    pub refresh_per_minute: u32,
}

impl ApiClient {
    /// A client with every app and endpoint and the default budget.
    pub fn new(name: impl Into<String>, key: Secret) -> ApiClient {
        ApiClient {
            name: name.into(),
            key,
            apps: None,
            allow: Capability::ALL.into_iter().collect(),
            refresh_per_minute: DEFAULT_REFRESH_PER_MINUTE,
        }
    }

    /// True when the client may use `app`.
    pub fn may_use_app(&self, app: &str) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.contains(app))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    clients: BTreeMap<String, RawClient>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    key: String,
    apps: Option<Vec<String>>,
    allow: Option<Vec<String>>,
    refresh_per_minute: Option<u32>,
}

/// The shortest key accepted.
const MIN_KEY_LEN: usize = 16;

/// Checks `[api]`; `app_names` are the configured apps, which a client's `apps` must name.
pub(super) fn api_config(
    c: &mut Checker<'_>,
    raw: RawApi,
    app_names: &BTreeSet<String>,
) -> (Vec<Secret>, Vec<ApiClient>) {
    let mut seen: Vec<(String, Secret)> = Vec::new();
    let mut check_key = |c: &mut Checker<'_>, what: String, key: &Secret| {
        if key.expose().len() < MIN_KEY_LEN {
            c.problem(format!(
                "{what} is shorter than {MIN_KEY_LEN} characters: use a long random key"
            ));
        }
        if let Some((other, _)) = seen.iter().find(|(_, k)| k == key) {
            c.problem(format!(
                "{what} is the same key as {other}: every key must be unique, it is how a \
                 request is tied to its client"
            ));
        }
        seen.push((what, key.clone()));
    };

    let mut keys = Vec::new();
    for (i, key) in raw.keys.iter().enumerate() {
        let what = format!("api.keys[{i}]");
        if let Some(k) = c.resolve(&what, key) {
            let k = Secret::new(k);
            check_key(c, what, &k);
            keys.push(k);
        }
    }

    let mut clients = Vec::new();
    for (name, rc) in raw.clients {
        let at = |field: &str| format!("api.clients.{name}.{field}");
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            c.problem(format!(
                "client name {name:?} may only use letters, digits, '-' and '_'"
            ));
        }
        let key = c.resolve(&at("key"), &rc.key).map(Secret::new);
        if let Some(k) = &key {
            check_key(c, at("key"), k);
        }
        let apps = rc.apps.map(|apps| {
            for app in &apps {
                if !app_names.contains(app) {
                    c.problem(format!(
                        "{} names {app:?}, which is not a configured app (configured: {:?})",
                        at("apps"),
                        app_names
                    ));
                }
            }
            apps.into_iter().collect::<BTreeSet<_>>()
        });
        let allow = match rc.allow {
            None => Capability::ALL.into_iter().collect(),
            Some(names) => {
                let mut allow = BTreeSet::new();
                for n in &names {
                    match Capability::parse(n) {
                        Some(cap) => {
                            allow.insert(cap);
                        }
                        None => c.problem(format!(
                            "{} has {n:?}, which is not one of {}",
                            at("allow"),
                            Capability::ALL.map(Capability::as_str).join(", ")
                        )),
                    }
                }
                allow
            }
        };
        let refresh_per_minute = rc.refresh_per_minute.unwrap_or(DEFAULT_REFRESH_PER_MINUTE);
        if refresh_per_minute > MAX_REFRESH_PER_MINUTE {
            c.problem(format!(
                "{} = {refresh_per_minute} is above {MAX_REFRESH_PER_MINUTE}: a refresh replaces \
                 the token for every caller, so a few a minute are enough",
                at("refresh_per_minute")
            ));
        }
        if let Some(key) = key {
            clients.push(ApiClient {
                apps,
                allow,
                refresh_per_minute,
                ..ApiClient::new(name, key)
            });
        }
    }
    (keys, clients)
}
