//! `/status` as a person sees it, in a real browser: headless Chromium loads the page from a
//! running wxmp and the test reads the rendered DOM for the app names, a time left that counts
//! down between two loads, and an error in plain words after the emulator is told to refuse
//! the token call. It keeps screenshots (laptop and phone widths) under
//! `target/test-artifacts/`. Also: who may open the page, on which listener.
//!
//! Chromium is required, never skipped: `.ci/run` installs Debian's `chromium` package.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::json;
use tokio::net::TcpListener;
use wxmp::config::{AppConfig, TokenApi};
use wxmp::emulator::{EmulatorConfig, Endpoint, Fault};
use wxmp::server::Server;
use wxmp::store::Store;
use wxmp_proto::signature::{signature, Token};
use wxmp_proto::AppId;

/// The Chromium binary, or a failure that says what to install.
fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "Chromium is not installed, so the /status browser test cannot run: \
         install Debian's chromium package (apt-get install chromium), or run `bash .ci/run`"
    );
}

/// Runs headless Chromium on `url` with `extra` arguments in a fresh profile; returns stdout.
fn headless(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish loading {url} within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The rendered DOM of `url`.
async fn dom(url: &str) -> String {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || headless(&url, &["--dump-dom"]))
        .await
        .unwrap()
}

/// A screenshot of `url` at `width`×`height`, written to `path`.
async fn screenshot(url: &str, path: &Path, width: u32, height: u32) {
    let url = url.to_owned();
    let arg = format!("--screenshot={}", path.display());
    let size = format!("--window-size={width},{height}");
    tokio::task::spawn_blocking(move || headless(&url, &[&arg, &size]))
        .await
        .unwrap();
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(len > 10_000, "no real screenshot at {}", path.display());
}

/// `target/test-artifacts/`, next to this test binary's own target directory.
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/status-… → target/
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of every element whose class list contains `class`.
fn texts_of(dom: &str, class: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find("class=\"") {
        rest = &rest[i + 7..];
        let Some(end) = rest.find('"') else { break };
        let classes = &rest[..end];
        if classes.split_whitespace().any(|c| c == class) {
            if let Some(gt) = rest.find('>') {
                let after = &rest[gt + 1..];
                let text: String = after.chars().take_while(|c| *c != '<').collect();
                out.push(text.trim().to_owned());
            }
        }
    }
    out
}

/// `h:mm:ss` → seconds.
fn seconds(clock: &str) -> u64 {
    let parts: Vec<u64> = clock
        .split(':')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("not h:mm:ss: {clock:?}"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "not h:mm:ss: {clock:?}");
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

/// Posts a plaintext text message to app `demo`, signed as WeChat would.
async fn push(base: &str, msg_id: u64) -> u16 {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let nonce = msg_id.to_string();
    let sig = signature(&Token::new("pamtest").unwrap(), &timestamp, &nonce);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oUser1]]></FromUserName>\
         <CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[hi]]></Content><MsgId>{msg_id}</MsgId></xml>"
    );
    reqwest::Client::new()
        .post(format!(
            "{base}/wx/demo?signature={sig}&timestamp={timestamp}&nonce={nonce}"
        ))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Serves the admin router of `server` on a port of its own.
async fn admin_listener(server: &Server) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.ops_router();
    tokio::spawn(async move {
        let _ = wxmp::server::run(listener, router, std::future::pending()).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_a_browser() {
    chromium();
    let emu = emulator(EmulatorConfig::default()).await;
    let shop = AppConfig::new(
        "shop",
        AppId::new("wx00000000000000ff").unwrap(),
        Token::new("shoptoken").unwrap(),
    );
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable), shop]),
        Store::memory(),
    )
    .await;
    let api = client();
    let token: serde_json::Value = api
        .get(instance.url("/v1/apps/demo/access_token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let base = instance.url("");
    for id in 0..5 {
        assert_eq!(push(&base, 9100 + id).await, 200);
    }
    let forged = reqwest::Client::new()
        .post(instance.url("/wx/demo?signature=0&timestamp=1&nonce=2"))
        .body("<xml/>")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    let admin = admin_listener(&instance.server).await;
    let url = format!("{admin}/status");

    // What a person sees: both apps, the token's time left, no error yet.
    let first = dom(&url).await;
    let names = texts_of(&first, "name");
    assert_eq!(names, ["demo", "shop"], "{first}");
    let left1 = texts_of(&first, "time-left");
    assert_eq!(left1.len(), 1, "one app holds a token: {left1:?}");
    let left1 = seconds(&left1[0]);
    assert!((7000..=7200).contains(&left1), "{left1}");
    assert!(first.contains("Callback only"), "shop has no secret");
    assert!(
        first.contains("no reply 5"),
        "callbacks by outcome: {first}"
    );
    assert!(first.contains("bad signature 1"), "{first}");
    assert_eq!(texts_of(&first, "last-error")[0], "none");

    // Three seconds later the same page shows less time left.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = dom(&url).await;
    let left2 = seconds(&texts_of(&second, "time-left")[0]);
    assert!(
        left2 < left1 && left1 - left2 <= 60,
        "time left did not count down: {left1} then {left2}"
    );

    // WeChat refuses the next token call: the page says so in plain words.
    emu.emulator().inject(Fault::errcode(
        Endpoint::StableToken,
        40164,
        "invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist",
    ));
    let refused = api
        .post(instance.url("/v1/apps/demo/access_token/refresh"))
        .json(&json!({ "stale": token }))
        .send()
        .await
        .unwrap();
    assert!(!refused.status().is_success());
    let third = dom(&url).await;
    let error = &texts_of(&third, "last-error")[0];
    assert!(
        error.contains("203.0.113.9") && error.contains("IP whitelist"),
        "no plain-words error on the page: {error:?}"
    );

    // No credential and no secret anywhere in the page.
    for page in [&first, &second, &third] {
        assert!(!page.contains(&token), "the access_token is on the page");
        assert!(!page.contains(SECRET), "the AppSecret is on the page");
        assert!(!page.contains(API_KEY), "the API key is on the page");
    }

    let dir = artifacts();
    screenshot(&url, &dir.join("status.png"), 1280, 900).await;
    screenshot(&url, &dir.join("status-phone.png"), 390, 1400).await;
    std::fs::write(dir.join("status.html"), &third).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_need_a_key_on_the_main_listener() {
    let emu = emulator(EmulatorConfig::default()).await;
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable)]),
        Store::memory(),
    )
    .await;
    let http = reqwest::Client::new();
    for path in ["/status", "/metrics"] {
        let url = instance.url(path);
        let anonymous = http.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
        let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Basic "), "{challenge}");
        let wrong = http
            .get(&url)
            .bearer_auth("not-the-key")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let bearer = http.get(&url).bearer_auth(API_KEY).send().await.unwrap();
        assert_eq!(bearer.status(), 200, "{path}");
        let lower = http
            .get(&url)
            .header("authorization", format!("bearer {API_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(lower.status(), 200, "scheme names are case-insensitive");
        // What a browser sends after its login prompt: any user, the key as the password.
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("ops:{API_KEY}"));
        let browser = http
            .get(&url)
            .header("authorization", format!("Basic {basic}"))
            .send()
            .await
            .unwrap();
        assert_eq!(browser.status(), 200, "{path}");
        let garbage = http
            .get(&url)
            .header("authorization", "Basic %%%")
            .send()
            .await
            .unwrap();
        assert_eq!(garbage.status(), 401, "{path}");
    }
    let page = http
        .get(instance.url("/status"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(page.text().await.unwrap().contains("demo"));
    let health = http.get(instance.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "/healthz is always open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_ops_listener_the_pages_move_there_without_a_key() {
    let emu = emulator(EmulatorConfig::default()).await;
    let mut c = config(&emu.base_url(), vec![app(TokenApi::Stable)]);
    c.ops.listen = Some("127.0.0.1:0".parse().unwrap());
    let instance = start(c, Store::memory()).await;
    let admin = admin_listener(&instance.server).await;
    let http = reqwest::Client::new();
    for path in ["/status", "/metrics", "/healthz"] {
        let r = http.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} on the ops listener");
    }
    for path in ["/status", "/metrics"] {
        let r = http
            .get(instance.url(path))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path} is not on the main listener");
    }
    let r = http.get(instance.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// `wxmp serve` with `[ops] listen` binds the admin listener too.
#[test]
fn serve_binds_the_ops_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (main_port, ops_port) = (free_port(), free_port());
    let path = dir.path().join("wxmp.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{main_port}\"\n[store]\nbackend = \"memory\"\n\
             [ops]\nlisten = \"127.0.0.1:{ops_port}\"\n\
             [apps.demo]\nappid = \"{APPID}\"\ntoken = \"pamtest\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxmp"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let get = |port: u16, path: &str| -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        Some(answer)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(a) = get(ops_port, "/status") {
            break a;
        }
        assert!(Instant::now() < deadline, "the ops listener never answered");
        std::thread::sleep(Duration::from_millis(100));
    };
    let main = get(main_port, "/status").unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(status.contains("demo"), "{status}");
    assert!(main.starts_with("HTTP/1.1 404"), "{main}");
}
