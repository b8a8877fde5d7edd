//! Signals to a real `wxmp serve`: SIGHUP re-reads the config file and applies it without
//! dropping a connection or a held token, and refuses a broken file; SIGTERM stops
//! accepting but lets a reply that is still being handled go out as a 客服消息 first.

#[path = "callback_util/mod.rs"]
mod callback_util;
mod process;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use callback_util::{eventually, hook};
use process::*;
use serde_json::json;
use tokio::task::block_in_place;
use wxmp::emulator::{Emulator, EmulatorConfig, EmulatorHandle};

const APPID: &str = "wx5151515151515151";
const SECRET: &str = "signals-secret-0123456789";
const APPID2: &str = "wx6262626262626262";
const SECRET2: &str = "signals-second-secret-0123";
const KEY1: &str = "signals-api-key-one-0123456789";
const KEY2: &str = "signals-api-key-two-0123456789";

async fn emulator() -> EmulatorHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::new(
        EmulatorConfig::default()
            .with_app(APPID, SECRET)
            .with_app(APPID2, SECRET2),
    )
    .spawn(listener)
    .await
}

/// The first config: `demo` (with a secret), a callback-only `gone`, one API key.
fn first_config(upstream: &str) -> String {
    format!(
        "upstream = \"{upstream}\"\n[store]\nbackend = \"memory\"\n[api]\nkeys = [\"{KEY1}\"]\n\
         [apps.demo]\nappid = \"{APPID}\"\nsecret = \"{SECRET}\"\ntoken = \"pamtest\"\nmode = \"plain\"\n\
         [apps.demo.auto_reply.keywords]\nping = \"pong\"\n\
         [apps.gone]\nappid = \"wx7373737373737373\"\ntoken = \"gonetoken\"\nmode = \"plain\"\n"
    )
}

/// The second: `demo`'s keyword changed, `gone` removed, `second` added, the key replaced.
fn second_config(upstream: &str) -> String {
    format!(
        "upstream = \"{upstream}\"\n[store]\nbackend = \"memory\"\n[api]\nkeys = [\"{KEY2}\"]\n\
         [apps.demo]\nappid = \"{APPID}\"\nsecret = \"{SECRET}\"\ntoken = \"pamtest\"\nmode = \"plain\"\n\
         [apps.demo.auto_reply.keywords]\nping = \"pong v2\"\n\
         [apps.second]\nappid = \"{APPID2}\"\nsecret = \"{SECRET2}\"\ntoken = \"second1\"\nmode = \"plain\"\n\
         [apps.second.auto_reply.keywords]\nhi = \"hello from second\"\n"
    )
}

async fn access_token(serve: &Serve, app: &str, key: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .get(serve.url(&format!("/v1/apps/{app}/access_token")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Pushes a text message on `stream` (kept alive) and returns the reply's body.
fn push_text(stream: &mut TcpStream, app: &str, token: &str, content: &str) -> (u16, String) {
    let xml = text_xml("oUser", content, rand::random::<u32>().into());
    http_exchange(stream, &push_request(app, token, &xml, true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_new_config_keeping_connections_and_tokens() {
    let emulator = emulator().await;
    let upstream = emulator.base_url();
    let serve = block_in_place(|| Serve::start(&first_config(&upstream)));
    let (status, first) = access_token(&serve, "demo", KEY1).await;
    assert_eq!(status, 200, "{first}");
    let token = first["access_token"].as_str().unwrap().to_owned();
    let calls_before = emulator.emulator().stats(APPID).stable_token_calls.ok;
    assert!(calls_before >= 1);

    let mut kept = TcpStream::connect(serve.addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (status, reply) = push_text(&mut kept, "demo", "pamtest", "ping");
    assert_eq!(status, 200);
    assert!(reply.contains("<![CDATA[pong]]>"), "{reply}");

    std::fs::write(serve.config_path(), second_config(&upstream)).unwrap();
    let seen = serve.lines().len();
    serve.signal("HUP");
    let reloaded = block_in_place(|| {
        serve.wait_line_after(seen, Duration::from_secs(30), |l| {
            l.contains("config reloaded")
        })
    });
    assert!(reloaded.is_some(), "{}", serve.log());

    // Same connection, new keyword reply.
    let (status, reply) = push_text(&mut kept, "demo", "pamtest", "ping");
    assert_eq!(status, 200);
    assert!(reply.contains("<![CDATA[pong v2]]>"), "{reply}");
    // The new app answers, the removed one is gone.
    let (status, reply) = push_text(&mut kept, "second", "second1", "hi");
    assert_eq!(status, 200);
    assert!(reply.contains("hello from second"), "{reply}");
    let (status, _) = push_text(&mut kept, "gone", "gonetoken", "ping");
    assert_eq!(status, 404);

    // The held token is still served, without another upstream call; keys were replaced.
    let (status, again) = access_token(&serve, "demo", KEY2).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["access_token"].as_str(), Some(token.as_str()));
    assert_eq!(
        emulator.emulator().stats(APPID).stable_token_calls.ok,
        calls_before
    );
    assert_eq!(access_token(&serve, "demo", KEY1).await.0, 401);
    let (status, second) = access_token(&serve, "second", KEY2).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["access_token"].as_str().map(str::to_owned),
        emulator.emulator().current_stable_token(APPID2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_file_keeps_the_running_config() {
    let emulator = emulator().await;
    let upstream = emulator.base_url();
    let mut serve = block_in_place(|| Serve::start(&first_config(&upstream)));
    let broken = first_config(&upstream).replace("token = \"pamtest\"", "token = \"p!\"")
        + "[server]\nmax_connections = 0\n";
    std::fs::write(serve.config_path(), broken).unwrap();
    let seen = serve.lines().len();
    serve.signal("HUP");
    let refused = block_in_place(|| {
        serve.wait_line_after(seen, Duration::from_secs(30), |l| {
            l.contains("config not reloaded")
        })
    })
    .unwrap_or_else(|| panic!("no refusal logged:\n{}", serve.log()));
    assert!(refused.contains("WARN"), "{refused}");
    assert!(refused.contains("server.max_connections"), "{refused}");
    assert!(refused.contains("apps.demo.token"), "{refused}");
    assert!(serve.is_running());
    let mut stream = TcpStream::connect(serve.addr).unwrap();
    let (status, reply) = push_text(&mut stream, "demo", "pamtest", "ping");
    assert_eq!(status, 200);
    assert!(reply.contains("<![CDATA[pong]]>"), "{reply}");
    assert_eq!(access_token(&serve, "demo", KEY1).await.0, 200);

    // A file that is not even TOML is refused the same way, on one log line.
    std::fs::write(serve.config_path(), "listen = [unclosed\n").unwrap();
    let seen = serve.lines().len();
    serve.signal("HUP");
    let refused = block_in_place(|| {
        serve.wait_line_after(seen, Duration::from_secs(30), |l| {
            l.contains("config not reloaded")
        })
    })
    .unwrap_or_else(|| panic!("no refusal logged:\n{}", serve.log()));
    assert!(refused.contains("TOML parse error"), "{refused}");
    assert!(serve.is_running());
    assert_eq!(serve.get("/healthz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_a_late_reply_to_go_out_as_a_customer_service_message() {
    let emulator = emulator().await;
    let upstream = emulator.base_url();
    // The webhook answers 2.5 s after the push, well past the 1 s reply deadline.
    let hook = hook(Duration::from_millis(2500), |_| {
        (
            200,
            json!({"type":"text","content":"late but sent"}).to_string(),
        )
    })
    .await;
    let config = format!(
        "upstream = \"{upstream}\"\n[store]\nbackend = \"memory\"\n\
         [apps.demo]\nappid = \"{APPID}\"\nsecret = \"{SECRET}\"\ntoken = \"pamtest\"\nmode = \"plain\"\n\
         forward = \"{}\"\nreply_deadline_ms = 1000\n",
        hook.url
    );
    let mut serve = block_in_place(|| Serve::start(&config));
    let addr = serve.addr;
    let push = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let xml = text_xml("oLateUser", "question", 42_000_001);
        stream
            .write_all(push_request("demo", "pamtest", &xml, false).as_bytes())
            .unwrap();
        read_response(&mut stream)
    });
    assert!(
        eventually(Duration::from_secs(30), || !hook.calls().is_empty()).await,
        "the webhook was never called:\n{}",
        serve.log()
    );
    serve.signal("TERM");
    // It stops accepting at once…
    let refused = block_in_place(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(addr).is_err() {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert!(refused, "still accepting after SIGTERM");
    // …answers the request in progress at its deadline…
    let (status, body) = block_in_place(|| push.join().unwrap());
    assert_eq!((status, body.as_str()), (200, "success"));
    // …and exits only after the late reply went out.
    let exit = block_in_place(|| serve.wait_exit(Duration::from_secs(30)))
        .unwrap_or_else(|| panic!("still running 30 s after SIGTERM:\n{}", serve.log()));
    assert!(exit.success(), "{exit:?}\n{}", serve.log());
    assert_eq!(
        emulator.emulator().custom_messages(APPID),
        vec![json!({"touser":"oLateUser","msgtype":"text","text":{"content":"late but sent"}})],
        "{}",
        serve.log()
    );
}
