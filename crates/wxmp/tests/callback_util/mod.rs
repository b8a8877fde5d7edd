//! Harness of the callback tests: configs built in code, wxmp on a loopback port, a client
//! that acts as WeChat (signs, encrypts, opens replies), and a tiny recording webhook.
//!
//! It lives in a folder so cargo does not take it for a test of its own; the `callback*.rs`
//! tests include it with `#[path]`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use url::Url;
use wxmp::config::{AppConfig, Config, Mode, Secret, StoreConfig};
use wxmp::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use wxmp::server::Server;
use wxmp::store::Store;
use wxmp_proto::signature::{msg_signature, signature, Token};
use wxmp_proto::{AppId, EncodingAesKey, EncryptedReply, MsgCrypt};

pub const APPID: &str = "wxcb0123456789abcd";
pub const SECRET: &str = "callback-test-secret-0123";
pub const TOKEN: &str = "cbtoken";
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

pub fn crypt() -> MsgCrypt {
    MsgCrypt::new(
        EncodingAesKey::parse(AES_KEY).unwrap(),
        AppId::new(APPID).unwrap(),
    )
}

/// A callback-only app (no secret) named `name` in `mode`, 300 ms deadline, nothing else.
pub fn app(name: &str, mode: Mode) -> AppConfig {
    AppConfig {
        crypt: Some(crypt()),
        mode,
        reply_deadline_ms: 300,
        ..AppConfig::new(name, AppId::new(APPID).unwrap(), Token::new(TOKEN).unwrap())
    }
}

/// Keywords for [`AutoReply`].
pub fn keywords(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The API key of [`config`], which `/metrics` and `/status` also need.
pub const API_KEY: &str = "callback-test-api-key-0123456789";

/// A config of `apps` against `upstream` (an emulator, or a closed port when unused).
pub fn config(upstream: &str, apps: Vec<AppConfig>) -> Config {
    Config {
        api_keys: vec![Secret::new(API_KEY)],
        apps: apps
            .into_iter()
            .map(|a| (a.name.clone(), Arc::new(a)))
            .collect(),
        ..Config::new(
            "127.0.0.1:0".parse().unwrap(),
            Url::parse(upstream).unwrap(),
            StoreConfig::Memory,
        )
    }
}

/// An upstream nobody listens on, for tests that never call WeChat.
pub const NO_UPSTREAM: &str = "http://127.0.0.1:9";

/// A running wxmp.
pub struct Running {
    pub addr: SocketAddr,
    pub server: Server,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The `/metrics` text, read with the API key.
    pub async fn metrics(&self) -> String {
        http()
            .get(self.url("/metrics"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts wxmp for `config` on `store`. `RUST_LOG=wxmp=debug` shows its logs.
pub async fn start(config: Config, store: Store) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let server = Server::with_store(config, store);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.router();
    let task = tokio::spawn(async move {
        let _ = wxmp::server::run(listener, router, std::future::pending()).await;
    });
    Running { addr, server, task }
}

/// An emulator knowing [`APPID`].
pub async fn emulator() -> EmulatorHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::new(EmulatorConfig::default().with_app(APPID, SECRET))
        .spawn(listener)
        .await
}

/// A plain HTTP client (no keep-alive surprises: each test builds its own).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

static NONCE: AtomicU64 = AtomicU64::new(1_000_000);

/// A fresh numeric nonce.
pub fn nonce() -> String {
    NONCE.fetch_add(1, Ordering::Relaxed).to_string()
}

pub fn now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

/// What wxmp answered, status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// The `nonce` the request carried (an encrypted reply must echo it).
    pub nonce: String,
}

/// Acts as WeChat for one app of a running wxmp.
#[derive(Clone)]
pub struct Wechat {
    pub base: String,
    pub app: String,
    pub http: reqwest::Client,
    pub token: Token,
}

impl Wechat {
    pub fn new(running: &Running, app: &str) -> Self {
        Wechat {
            base: running.url(""),
            app: app.to_owned(),
            http: http(),
            token: Token::new(TOKEN).unwrap(),
        }
    }

    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    pub fn url(&self, query: &str) -> String {
        format!("{}/wx/{}?{query}", self.base, self.app)
    }

    /// The signed query of a plaintext push.
    pub fn signed_query(&self) -> (String, String) {
        let (ts, n) = (now(), nonce());
        let sig = signature(&self.token, &ts, &n);
        (
            format!("signature={sig}&timestamp={ts}&nonce={n}&openid=oUser"),
            n,
        )
    }

    pub async fn get(&self, query: &str) -> reqwest::Response {
        self.http.get(self.url(query)).send().await.unwrap()
    }

    /// The echostr handshake with a correct signature.
    pub async fn handshake(&self, echostr: &str) -> reqwest::Response {
        let (ts, n) = (now(), nonce());
        let sig = signature(&self.token, &ts, &n);
        let echostr = echostr.replace('+', "%2B");
        self.get(&format!(
            "signature={sig}&timestamp={ts}&nonce={n}&echostr={echostr}"
        ))
        .await
    }

    /// POSTs `body` under `query` as is.
    pub async fn post_raw(&self, query: &str, body: impl Into<reqwest::Body>) -> Answer {
        self.try_post_raw(query, body).await.unwrap()
    }

    pub async fn try_post_raw(
        &self,
        query: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Answer, reqwest::Error> {
        let response = self.http.post(self.url(query)).body(body).send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok(Answer {
            status,
            body,
            nonce: String::new(),
        })
    }

    /// A correctly signed plaintext push.
    pub async fn push_plain(&self, xml: &str) -> Answer {
        self.try_push_plain(xml).await.unwrap()
    }

    pub async fn try_push_plain(&self, xml: &str) -> Result<Answer, reqwest::Error> {
        let (query, n) = self.signed_query();
        let mut answer = self.try_post_raw(&query, xml.to_owned()).await?;
        answer.nonce = n;
        Ok(answer)
    }

    /// The query and body of a correctly signed encrypted push of `xml`, sealed by `crypt`.
    pub fn sealed(&self, xml: &str, crypt: &MsgCrypt) -> (String, String, String) {
        let encrypt = crypt.encrypt(xml, *b"0123456789abcdef").unwrap();
        self.sealed_encrypt(&encrypt)
    }

    /// The query and body for an arbitrary `Encrypt` text, correctly signed.
    pub fn sealed_encrypt(&self, encrypt: &str) -> (String, String, String) {
        let (ts, n) = (now(), nonce());
        let sig = signature(&self.token, &ts, &n);
        let msig = msg_signature(&self.token, &ts, &n, encrypt);
        let query = format!(
            "signature={sig}&timestamp={ts}&nonce={n}&openid=oUser&encrypt_type=aes&msg_signature={msig}"
        );
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        );
        (query, body, n)
    }

    /// A correctly signed encrypted push.
    pub async fn push_aes(&self, xml: &str) -> Answer {
        self.try_push_aes(xml).await.unwrap()
    }

    pub async fn try_push_aes(&self, xml: &str) -> Result<Answer, reqwest::Error> {
        let (query, body, n) = self.sealed(xml, &crypt());
        let mut answer = self.try_post_raw(&query, body).await?;
        answer.nonce = n;
        Ok(answer)
    }
}

/// Opens an encrypted reply: checks its signature and nonce, returns the plaintext XML.
pub fn open_encrypted(answer: &Answer) -> String {
    let reply = EncryptedReply::parse(answer.body.as_bytes())
        .unwrap_or_else(|e| panic!("not an encrypted reply ({e}): {}", answer.body));
    assert_eq!(reply.nonce, answer.nonce, "the reply must echo the nonce");
    reply
        .open(&crypt(), &Token::new(TOKEN).unwrap())
        .unwrap()
        .msg
}

/// The `Content` of a plaintext text reply.
pub fn text_of(xml: &str) -> String {
    match wxmp_proto::Reply::parse(xml.as_bytes()).unwrap().reply {
        wxmp_proto::Reply::Text { content } => content,
        other => panic!("not a text reply: {other:?}"),
    }
}

/// A text message.
pub fn text_msg(content: &str, msg_id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>",
        now()
    )
}

/// An event from `oUser` at `create_time`.
pub fn event_msg(event: &str, create_time: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>\
         <EventKey><![CDATA[key]]></EventKey></xml>"
    )
}

static MSG_ID: AtomicU64 = AtomicU64::new(5_000_000_000);

/// A fresh MsgId.
pub fn msg_id() -> u64 {
    MSG_ID.fetch_add(1, Ordering::Relaxed)
}

/// One call the webhook received.
#[derive(Debug, Clone)]
pub struct Call {
    pub delivery: Option<String>,
    pub json: Value,
}

/// A recording webhook.
pub struct Hook {
    pub url: Url,
    pub calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hook {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Spawns a webhook that records each call, sleeps `delay`, then answers `respond(json)`.
pub async fn hook<F>(delay: Duration, respond: F) -> Hook
where
    F: Fn(&Value) -> (u16, String) + Send + Sync + 'static,
{
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let respond = Arc::new(respond);
    let recorded = calls.clone();
    let router = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let recorded = recorded.clone();
            let respond = respond.clone();
            async move {
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let delivery = headers
                    .get("x-wxmp-delivery")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                recorded.lock().unwrap().push(Call {
                    delivery,
                    json: json.clone(),
                });
                tokio::time::sleep(delay).await;
                let (status, body) = respond(&json);
                (
                    StatusCode::from_u16(status).unwrap(),
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Hook {
        url: Url::parse(&format!("http://{addr}/hook")).unwrap(),
        calls,
        task,
    }
}

/// A webhook answering every message with the text `reply`.
pub async fn text_hook(delay: Duration, reply: &str) -> Hook {
    let body = serde_json::json!({"type":"text","content":reply}).to_string();
    hook(delay, move |_| (200, body.clone())).await
}

/// Waits up to `within` for `check` to hold, polling.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
