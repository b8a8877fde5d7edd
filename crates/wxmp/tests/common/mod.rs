//! Shared harness of the end-to-end tests: an emulator, wxmp instances on loopback ports,
//! configs built in code, and Redis (see [`redis_server`]: always there, never skipped).

#![allow(dead_code)]

pub mod redis_server;

#[allow(unused_imports)]
pub use redis_server::{free_port, redis_url, RedisServer, TestCa};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::net::TcpListener;
use url::Url;
use wxmp::config::{AppConfig, Config, Secret, StoreConfig, TokenApi};
use wxmp::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use wxmp::server::Server;
use wxmp::store::Store;
use wxmp_proto::signature::Token;
use wxmp_proto::AppId;

pub const APPID: &str = "wx1234567890abcdef";
pub const SECRET: &str = "test-secret-0123456789";
pub const API_KEY: &str = "test-api-key-0123456789abcdef";

/// An emulator with one app.
pub async fn emulator(config: EmulatorConfig) -> EmulatorHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::new(config.with_app(APPID, SECRET))
        .spawn(listener)
        .await
}

/// An app `demo` using the token API `api`.
pub fn app(api: TokenApi) -> AppConfig {
    AppConfig {
        secret: Some(Secret::new(SECRET)),
        token_api: api,
        js_domains: vec!["example.com".to_owned()],
        ..AppConfig::new(
            "demo",
            AppId::new(APPID).unwrap(),
            Token::new("pamtest").unwrap(),
        )
    }
}

/// A config with `apps` pointed at `upstream`.
pub fn config(upstream: &str, apps: Vec<AppConfig>) -> Config {
    let mut map = BTreeMap::new();
    for a in apps {
        map.insert(a.name.clone(), Arc::new(a));
    }
    Config {
        api_keys: vec![Secret::new(API_KEY)],
        apps: map,
        ..Config::new(
            "127.0.0.1:0".parse().unwrap(),
            Url::parse(upstream).unwrap(),
            StoreConfig::Memory,
        )
    }
}

/// A running wxmp instance.
pub struct Instance {
    pub addr: SocketAddr,
    pub server: Server,
    task: tokio::task::JoinHandle<()>,
}

impl Instance {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The `/metrics` text, read with the API key.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an instance of `config` on `store`.
pub async fn start(config: Config, store: Store) -> Instance {
    let server = Server::with_store(config, store);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.router();
    let task = tokio::spawn(async move {
        let _ = wxmp::server::run(listener, router, std::future::pending()).await;
    });
    Instance { addr, server, task }
}

/// An HTTP client with the API key.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {API_KEY}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A fresh key prefix, so tests never see each other's data.
pub fn unique_prefix() -> String {
    format!("wxmp-test:{:016x}:", rand::thread_rng().gen::<u64>())
}

/// A Redis-backed store under `prefix`.
pub async fn redis_store(url: &str, prefix: &str) -> Store {
    Store::Redis(wxmp::store::RedisStore::connect(url, prefix).await.unwrap())
}

/// Calls a token-checked emulator API with `token`; returns WeChat's errcode.
pub async fn use_token(upstream: &str, token: &str) -> i64 {
    let v: serde_json::Value = reqwest::get(format!(
        "{upstream}/cgi-bin/user/info?access_token={token}&openid=o1"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    v["errcode"].as_i64().unwrap_or(-999)
}
