//! wxmp's outgoing calls under attack: redirects from the token endpoint, a proxied path or
//! the webhook are refused (the secret, the token or the message never reach the redirect
//! target), transport failures are named in plain words, and the proxy streams media uploads
//! up to 10 MiB while refusing `..` in any encoding before any upstream call.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wxmp::config::{AppConfig, TokenApi};
use wxmp::emulator::EmulatorConfig;
use wxmp::store::Store;

use common::{app, client, config, emulator, start, API_KEY, APPID, SECRET};

/// One request a test server received.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    body: Vec<u8>,
}

/// A tiny HTTP server recording every request and answering with `respond`.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(respond: impl Fn(&Seen) -> Response + Send + Sync + 'static) -> Recorder {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let respond = Arc::new(respond);
        let recorded = seen.clone();
        let router = Router::new().fallback(move |request: Request| {
            let recorded = recorded.clone();
            let respond = respond.clone();
            async move {
                let path_and_query = request
                    .uri()
                    .path_and_query()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let body = axum::body::to_bytes(request.into_body(), 64 << 20)
                    .await
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                let seen = Seen {
                    path_and_query,
                    body,
                };
                recorded.lock().unwrap().push(seen.clone());
                respond(&seen)
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Recorder { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn redirect_to(target: &str) -> Response {
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, target.to_owned())],
        "moved",
    )
        .into_response()
}

fn token_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"access_token": "tok-from-upstream", "expires_in": 7200}).to_string(),
    )
        .into_response()
}

async fn get_json(url: &str) -> (u16, Value) {
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_token_endpoint_never_gets_the_secret_resent() {
    let target = Recorder::start(|_| token_json()).await;
    let location = format!("{}/steal", target.url());
    let redirector = Recorder::start(move |_| redirect_to(&location)).await;
    for api in [TokenApi::Stable, TokenApi::Classic] {
        let instance = start(config(&redirector.url(), vec![app(api)]), Store::memory()).await;
        let (status, body) = get_json(&instance.url("/v1/apps/demo/access_token")).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(status >= 500, "{api:?}: {status} {body}");
        assert!(
            message.contains("307 redirect") && message.contains("does not follow redirects"),
            "{api:?}: {message}"
        );
        assert!(!message.contains(SECRET), "{message}");
        assert!(!message.contains("/steal"), "{message}");
    }
    assert!(
        !redirector.seen().is_empty(),
        "the token endpoint was called"
    );
    assert!(
        target.seen().is_empty(),
        "the redirect target got {:?}",
        target.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_proxied_path_is_refused_not_followed() {
    let target = Recorder::start(|_| {
        (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"errcode":0,"errmsg":"another host's body"}"#,
        )
            .into_response()
    })
    .await;
    let location = format!("{}/elsewhere", target.url());
    let upstream = Recorder::start(move |seen| {
        if seen.path_and_query.starts_with("/cgi-bin/stable_token") {
            token_json()
        } else {
            redirect_to(&location)
        }
    })
    .await;
    let instance = start(
        config(&upstream.url(), vec![app(TokenApi::Stable)]),
        Store::memory(),
    )
    .await;
    let r = client()
        .post(instance.url("/v1/apps/demo/proxy/cgi-bin/message/custom/send"))
        .json(&json!({"touser":"o1","msgtype":"text","text":{"content":"hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("307 redirect"), "{message}");
    assert!(!message.contains("another host"), "{message}");
    assert!(!message.contains("tok-from-upstream"), "{message}");
    assert!(target.seen().is_empty(), "followed: {:?}", target.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_webhook_gets_no_message_and_the_default_reply_goes_out() {
    let target = Recorder::start(|_| {
        (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"type":"text","content":"from the thief"}"#,
        )
            .into_response()
    })
    .await;
    let location = format!("{}/steal", target.url());
    let hook = Recorder::start(move |_| redirect_to(&location)).await;
    let mut demo: AppConfig = app(TokenApi::Stable);
    demo.secret = None;
    demo.forward = Some(url::Url::parse(&format!("{}/hook", hook.url())).unwrap());
    demo.auto_reply.default = Some("default reply".to_owned());
    let instance = start(config("http://127.0.0.1:9", vec![demo]), Store::memory()).await;

    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let token = wxmp_proto::signature::Token::new("pamtest").unwrap();
    let sig = wxmp_proto::signature::signature(&token, &ts, "42");
    let xml = format!(
        "<xml><ToUserName>gh</ToUserName><FromUserName>oUser</FromUserName><CreateTime>{ts}</CreateTime>\
         <MsgType>text</MsgType><Content>secret words</Content><MsgId>77001</MsgId></xml>"
    );
    let r = reqwest::Client::new()
        .post(instance.url(&format!("/wx/demo?signature={sig}&timestamp={ts}&nonce=42")))
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reply = r.text().await.unwrap();
    assert!(reply.contains("default reply"), "{reply}");
    let calls = hook.seen();
    assert_eq!(calls.len(), 1, "the webhook was called once");
    assert!(String::from_utf8_lossy(&calls[0].body).contains("secret words"));
    assert!(target.seen().is_empty(), "followed: {:?}", target.seen());
    let metrics = instance.metrics().await;
    assert!(
        metrics.contains(r#"wxmp_callback_requests_total{app="demo",outcome="webhook_failed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_failures_say_their_cause_in_plain_words() {
    // Nothing listens on port 9 (discard): connection refused.
    let instance = start(
        config("http://127.0.0.1:9", vec![app(TokenApi::Classic)]),
        Store::memory(),
    )
    .await;
    let (status, body) = get_json(&instance.url("/v1/apps/demo/access_token")).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(status, 503, "{body}");
    assert!(message.contains("connection refused"), "{message}");
    assert!(message.contains("127.0.0.1:9"), "{message}");
    assert!(!message.contains("error sending request"), "{message}");
    assert!(!message.contains(SECRET), "{message}");

    let instance = start(
        config(
            "http://wxmp-test-host.invalid",
            vec![app(TokenApi::Classic)],
        ),
        Store::memory(),
    )
    .await;
    let (_, body) = get_json(&instance.url("/v1/apps/demo/access_token")).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("DNS lookup"), "{message}");
    assert!(!message.contains(SECRET), "{message}");
}

/// A multipart body of `len` bytes of file content, as `curl -F media=@file` sends it.
fn multipart(len: usize) -> (String, Vec<u8>) {
    let boundary = "------------------------wxmpboundary7f3a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"big.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend((0..len).map(|i| (i * 7 % 251) as u8));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_uploads_up_to_10_mib_stream_through_and_11_mib_is_refused() {
    let emu = emulator(EmulatorConfig::default()).await;
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable)]),
        Store::memory(),
    )
    .await;
    let upload = instance.url("/v1/apps/demo/proxy/cgi-bin/media/upload?type=image");
    let (content_type, body) = multipart(5 << 20);
    let digest = hex::encode(Sha256::digest(&body));

    // With a Content-Length.
    let r = client()
        .post(&upload)
        .header(header::CONTENT_TYPE, &content_type)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["received_bytes"], body.len(), "{answer}");
    assert_eq!(answer["received_sha256"], digest.as_str(), "{answer}");
    assert_eq!(answer["type"], "image");

    // Chunked, without a Content-Length.
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let r = client()
        .post(&upload)
        .header(header::CONTENT_TYPE, &content_type)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["received_sha256"], digest.as_str(), "{answer}");
    let uploads_before = emu.emulator().stats(APPID).other_api_calls.attempts;
    assert_eq!(uploads_before, 2);

    // 11 MiB with a Content-Length: refused before WeChat is called.
    let (_, big) = multipart(11 << 20);
    let r = client()
        .post(&upload)
        .header(header::CONTENT_TYPE, &content_type)
        .body(big.clone())
        .send()
        .await;
    // The server may close the connection while the client is still sending; a 413 that
    // arrived is what counts, and either way WeChat saw nothing.
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("10 MiB"),
            "{body}"
        );
    }
    assert_eq!(
        emu.emulator().stats(APPID).other_api_calls.attempts,
        uploads_before
    );

    // 11 MiB chunked: cut off at 10 MiB and answered 413.
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let r = client()
        .post(&upload)
        .header(header::CONTENT_TYPE, &content_type)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    // The instance still serves.
    let (status, _) = get_json(&instance.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200);
    // Other routes keep their 1 MiB limit.
    let r = client()
        .post(instance.url("/v1/apps/demo/jssdk/config"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
}

/// Sends a raw request line (clients normalize `..` away, so a raw socket is needed) and
/// returns the status code.
async fn raw_get(addr: SocketAddr, target: &str) -> u16 {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_KEY}\r\n\
         Connection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_dot_segments_are_refused_in_every_encoding_before_any_upstream_call() {
    let upstream = Recorder::start(|seen| {
        if seen
            .path_and_query
            .starts_with("/base/cgi-bin/stable_token")
        {
            token_json()
        } else {
            (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"errcode":0,"errmsg":"ok"}"#,
            )
                .into_response()
        }
    })
    .await;
    let instance = start(
        config(
            &format!("{}/base", upstream.url()),
            vec![app(TokenApi::Stable)],
        ),
        Store::memory(),
    )
    .await;
    let proxy = "/v1/apps/demo/proxy";
    for path in [
        "cgi-bin/../../admin",
        "cgi-bin/%2e%2e/%2e%2e/admin",
        "cgi-bin/%2E./%2E./admin",
        "cgi-bin/.%2e/.%2e/admin",
        "cgi-bin/%252e%252e/%252e%252e/admin",
        "cgi-bin/..%5c..%5cadmin",
        "cgi-bin\\..\\..\\admin",
        "cgi-bin%2f..%2f..%2fadmin",
    ] {
        assert_eq!(
            raw_get(instance.addr, &format!("{proxy}/{path}")).await,
            400,
            "{path}"
        );
    }
    let calls: Vec<String> = upstream
        .seen()
        .into_iter()
        .map(|s| s.path_and_query)
        .filter(|p| !p.starts_with("/base/cgi-bin/stable_token"))
        .collect();
    assert!(calls.is_empty(), "the upstream saw {calls:?}");
    // An ordinary path still goes through, under the base path.
    assert_eq!(
        raw_get(
            instance.addr,
            &format!("{proxy}/cgi-bin/user/info?openid=o1")
        )
        .await,
        200
    );
    let calls: Vec<String> = upstream
        .seen()
        .into_iter()
        .map(|s| s.path_and_query)
        .filter(|p| !p.starts_with("/base/cgi-bin/stable_token"))
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].starts_with("/base/cgi-bin/user/info?openid=o1&access_token="),
        "{calls:?}"
    );
}
