//! # wxmp — everything a WeChat Official Account needs on its developer server
//!
//! One binary: the callback URL WeChat pushes messages to, the access_token central control
//! server (中控) the account's other servers borrow tokens from, JS-SDK signatures, and an
//! offline emulator of the WeChat platform. The protocol itself (signatures, crypto, XML) is
//! the separate, I/O-free `wxmp-proto` crate.
//!
//! ## Layout — data flows top to bottom
//! - [`server`]: builds the state and the router, runs the listener (connection limits,
//!   timeouts, graceful shutdown) and applies config reloads.
//! - [`state`]: the [`state::AppState`] every handler shares.
//! - [`callback`]: `GET`/`POST /wx/{app}` — WeChat's 服务器地址(URL).
//! - [`api`]: the `/v1` business API, bearer-key protected, with scoped clients.
//! - [`oauth`]: OAuth 网页授权 — the code exchange that needs the AppSecret, done here.
//! - [`alert`]: JSON alerts to `[ops] alert_webhook` (a foreign refresh).
//! - [`token`]: the 中控 — single-flight refresh across instances, passive refresh, cooldowns.
//! - [`store`]: memory, SQLite and Redis behind one small key/value contract.
//! - [`config`]: the TOML file, validated before any port is bound.
//! - [`menu`]: the 自定义菜单 as config — WeChat's rules, `wxmp menu diff|push|pull`.
//! - [`reply`]: a message for a user, in the JSON form the webhook and the config's
//!   auto-replies share.
//! - [`emulator`]: the offline WeChat platform.
//! - [`outbound`]: the HTTP client for WeChat and the webhook (no redirects, plain errors).
//! - [`error`], [`metrics`], [`signals`], [`logging`]: HTTP errors, Prometheus metrics,
//!   SIGTERM/SIGHUP, log format.
//! - [`redact`]: what logs and reports may show of secret URLs and attacker-chosen text.
#![forbid(unsafe_code)]

pub mod alert;
pub mod api;
pub mod callback;
pub mod check;
pub mod config;
pub mod dev;
pub mod emulator;
pub mod error;
pub mod logging;
pub mod menu;
pub mod metrics;
pub mod oauth;
pub mod ops;
pub mod outbound;
pub mod redact;
pub mod reply;
pub mod send;
pub mod server;
pub mod signals;
pub mod state;
pub mod store;
pub mod token;
