//! OAuth 网页授权 in a real browser: `wxmp serve --dev` (the binary, as a newcomer runs it),
//! the demo page it prints, and headless Chromium clicking "Sign in" on that page. The click
//! goes to `/oauth/demo`, on to the emulated WeChat authorize page, back to wxmp's callback
//! (the state cookie set by the first hop must come back with the browser), and back to the
//! page with a ticket, which the page redeems. The test reads what the browser shows.
//!
//! Chromium is driven over the DevTools protocol (a WebSocket), so the test clicks the page's
//! own link rather than fetching URLs by hand. Chromium is required, never skipped: install
//! Debian's `chromium` package (`.ci/run` does).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "no Chromium at /usr/bin/chromium: install Debian's chromium package \
         (apt-get install chromium), or run `bash .ci/run`"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Lines of `reader` until one satisfies `done`, within `limit`.
fn lines_until(
    reader: impl std::io::Read + Send + 'static,
    limit: Duration,
    done: fn(&str) -> bool,
) -> Vec<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            let finished = done(&line);
            if tx.send(line).is_err() || finished {
                return;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let finished = done(&line);
        lines.push(line);
        if finished {
            return lines;
        }
    }
    panic!("the expected line never came: {lines:#?}");
}

/// A minimal DevTools client of one page.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws.send(Message::text(msg)).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("Chromium did not answer {method}"))
                .expect("the DevTools socket closed")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    async fn wait_for(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.eval(expression).await == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let url = self.eval("location.href").await;
                let body = self.eval("document.body && document.body.innerText").await;
                panic!("{what}: not reached within 60 s; at {url}: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_from_the_business_page_in_chromium() {
    let chromium = chromium();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_wxmp"))
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let banner = lines_until(
        server.stdout.take().unwrap(),
        Duration::from_secs(60),
        |l| l.contains("Ctrl-C to stop"),
    );
    let _server = Killed(server);
    let demo = banner
        .iter()
        .find(|l| l.contains("OAuth 网页授权 demo:"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .unwrap_or_else(|| panic!("no OAuth demo URL in the banner: {banner:#?}"))
        .to_owned();
    assert_eq!(demo, format!("http://127.0.0.1:{port}/dev/oauth"));

    let profile = tempfile::tempdir().unwrap();
    let mut browser = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            &format!("--user-data-dir={}", profile.path().display()),
            "about:blank",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let stderr = browser.stderr.take().unwrap();
    let _browser = Killed(browser);
    let lines = lines_until(stderr, Duration::from_secs(120), |l| {
        l.contains("DevTools listening on ws://")
    });
    let endpoint = lines.last().unwrap().split("ws://").nth(1).unwrap();
    let devtools = endpoint.split('/').next().unwrap().to_owned();
    // The page target of the tab Chromium opened.
    let targets: Value = reqwest::get(format!("http://{devtools}/json/list"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws_url = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .expect("a page target")
        .to_owned();
    let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    let mut page = Page { ws, next: 0 };

    // The business page, as a person opens it.
    page.call("Page.navigate", json!({ "url": demo })).await;
    page.wait_for(
        "document.readyState === 'complete' && !!document.getElementById('signin')",
        "the demo page",
    )
    .await;
    let href = page.eval("document.getElementById('signin').href").await;
    assert!(
        href.as_str().unwrap().contains("/oauth/demo?return="),
        "{href}"
    );

    // Click: /oauth/demo → emulated authorize page → /oauth/demo/callback → the page.
    page.eval("document.getElementById('signin').click(); true")
        .await;
    page.wait_for(
        "location.pathname === '/dev/oauth' && location.search.includes('wxmp_') \
         && document.readyState === 'complete'",
        "the return to the business page",
    )
    .await;
    let error = page
        .eval("(document.getElementById('error') || {}).textContent || ''")
        .await;
    assert_eq!(error, "", "the sign-in failed in the browser");
    let openid = page
        .eval("document.getElementById('openid').textContent")
        .await;
    let scope = page
        .eval("document.getElementById('scope').textContent")
        .await;
    let nickname = page
        .eval("document.getElementById('nickname').textContent")
        .await;
    assert_eq!(
        openid,
        wxmp::emulator::oauth::openid_of(wxmp::emulator::DEMO_APPID, "demo-user")
    );
    assert_eq!(scope, "snsapi_userinfo");
    assert_eq!(nickname, "demo-user");
    let identity = page
        .eval("document.getElementById('identity').textContent")
        .await;
    assert!(
        !identity.as_str().unwrap().contains("access_token"),
        "{identity}"
    );
    // The state cookie is HttpOnly and scoped to /oauth/demo: the page never sees it.
    let cookies = page.eval("document.cookie").await;
    assert!(
        !cookies.as_str().unwrap().contains("wxmp_oauth"),
        "{cookies}"
    );

    // Reloading sends the same ticket again: single use, so the page says it is gone.
    page.call("Page.reload", json!({})).await;
    page.wait_for(
        "document.readyState === 'complete' && !!document.getElementById('error')",
        "the reload",
    )
    .await;
    let error = page
        .eval("document.getElementById('error').textContent")
        .await;
    assert!(
        error.as_str().unwrap().contains("already redeemed"),
        "{error}"
    );
}
