//! The replay window and the cheap refusals, attacked over real sockets: stale, future and
//! non-numeric timestamps are refused; a captured (timestamp, nonce) cannot carry another body,
//! on this instance or another one sharing Redis; identical retries still work; and what the
//! query alone condemns is refused before the body is read.

#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "callback_util/mod.rs"]
mod util;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use util::*;
use wxmp::config::{AutoReply, Mode};
use wxmp::store::{RedisStore, Store};
use wxmp_proto::signature::{msg_signature, signature};

/// A plain-mode app answering `ping` with `pong`.
fn pinging(name: &str, mode: Mode) -> wxmp::config::AppConfig {
    wxmp::config::AppConfig {
        auto_reply: AutoReply {
            keywords: keywords(&[("ping", "pong")]),
            ..AutoReply::default()
        },
        ..app(name, mode)
    }
}

/// A plaintext query signed over `ts` and `nonce`.
fn plain_query(w: &Wechat, ts: &str, nonce: &str) -> String {
    let sig = signature(&w.token, ts, nonce);
    format!("signature={sig}&timestamp={ts}&nonce={nonce}&openid=oUser")
}

#[tokio::test]
async fn timestamps_outside_the_window_or_not_numbers_are_refused() {
    let running = start(
        config(
            NO_UPSTREAM,
            vec![pinging("plain", Mode::Plain), pinging("safe", Mode::Safe)],
        ),
        Store::memory(),
    )
    .await;
    let plain = Wechat::new(&running, "plain");
    let far_future = "99999999999".to_owned();
    let an_hour_ago = (now().parse::<u64>().unwrap() - 3600).to_string();
    for ts in ["1", &far_future, "abc", &an_hour_ago] {
        // Correctly signed: only the timestamp is wrong.
        let answer = plain
            .post_raw(
                &plain_query(&plain, ts, &nonce()),
                text_msg("ping", msg_id()),
            )
            .await;
        assert_eq!(answer.status, 403, "{ts}: {}", answer.body);
        assert!(answer.body.contains("timestamp"), "{ts}: {}", answer.body);
        // The handshake too.
        let n = nonce();
        let sig = signature(&plain.token, ts, &n);
        let r = plain
            .get(&format!(
                "signature={sig}&timestamp={ts}&nonce={n}&echostr=42"
            ))
            .await;
        assert_eq!(r.status(), 403, "{ts}");
        // And the encrypted push, signed over the ciphertext.
        let safe = Wechat::new(&running, "safe");
        let encrypt = crypt()
            .encrypt(&text_msg("ping", msg_id()), *b"0123456789abcdef")
            .unwrap();
        let n = nonce();
        let msig = msg_signature(&safe.token, ts, &n, &encrypt);
        let query = format!("timestamp={ts}&nonce={n}&encrypt_type=aes&msg_signature={msig}");
        let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
        let answer = safe.post_raw(&query, body).await;
        assert_eq!(answer.status, 403, "{ts}: {}", answer.body);
    }
    // A current timestamp passes.
    let answer = plain.push_plain(&text_msg("ping", msg_id())).await;
    assert_eq!(text_of(&answer.body), "pong");
    assert!(plain.handshake("4242").await.status() == 200);
    let metrics = running.metrics().await;
    assert!(
        metrics.contains(r#"wxmp_callback_requests_total{app="plain",outcome="replay"} 8"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn window_zero_accepts_any_timestamp() {
    // A fixed vector with a timestamp from 2014 needs the check off.
    let mut old = pinging("old", Mode::Plain);
    old.replay_window_s = 0;
    let running = start(config(NO_UPSTREAM, vec![old]), Store::memory()).await;
    let w = Wechat::new(&running, "old");
    for ts in ["1", "1409304348"] {
        let answer = w
            .post_raw(&plain_query(&w, ts, &nonce()), text_msg("ping", msg_id()))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(text_of(&answer.body), "pong");
    }
}

#[tokio::test]
async fn a_captured_url_cannot_carry_another_body_but_identical_retries_work() {
    let hook = text_hook(Duration::from_millis(800), "from the webhook").await;
    let mut plain = app("plain", Mode::Plain);
    plain.forward = Some(hook.url.clone());
    plain.reply_deadline_ms = 3000;
    let running = start(config(NO_UPSTREAM, vec![plain]), Store::memory()).await;
    let w = Wechat::new(&running, "plain");
    let query = plain_query(&w, &now(), &nonce());
    let genuine = text_msg("hello", msg_id());

    // WeChat's request: the client gives up before the webhook answers (like WeChat at 5 s).
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let first = w
        .clone()
        .with_http(impatient)
        .try_post_raw(&query, genuine.clone())
        .await;
    assert!(first.is_err(), "the first request should time out");

    // The attacker replays the captured URL with a message of their own.
    let forged = genuine.replace("hello", "transfer all my money");
    let answer = w.post_raw(&query, forged).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("different body"), "{}", answer.body);

    // The identical retry is answered like a retry: it receives the reply.
    let retry = w.post_raw(&query, genuine.clone()).await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(text_of(&retry.body), "from the webhook");
    // Once more, identical: the same reply again (WeChat retries only an answer it did not
    // receive, so each retry may carry it), and still no second webhook call.
    let again = w.post_raw(&query, genuine).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(text_of(&again.body), "from the webhook");
    let calls = hook.calls();
    assert_eq!(calls.len(), 1, "handled once: {calls:?}");
    assert_eq!(calls[0].json["Content"], "hello");
}

#[tokio::test]
async fn a_captured_encrypted_push_is_never_handled_twice() {
    let hook = text_hook(Duration::ZERO, "ok").await;
    let mut safe = app("safe", Mode::Safe);
    safe.forward = Some(hook.url.clone());
    let running = start(config(NO_UPSTREAM, vec![safe]), Store::memory()).await;
    let w = Wechat::new(&running, "safe");
    let (query, body, nonce) = w.sealed(&text_msg("hi", msg_id()), &crypt());
    let first = w.post_raw(&query, body.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    for _ in 0..3 {
        // Answered as a retry: the same reply, sealed anew, and no second handling.
        let mut replayed = w.post_raw(&query, body.clone()).await;
        assert_eq!(replayed.status, 200, "{}", replayed.body);
        replayed.nonce = nonce.clone();
        assert_eq!(text_of(&open_encrypted(&replayed)), "ok");
    }
    // Another ciphertext under the captured query fails its msg_signature.
    let (_, other, _) = w.sealed(&text_msg("hi", msg_id()), &crypt());
    assert_eq!(w.post_raw(&query, other).await.status, 403);
    assert_eq!(hook.calls().len(), 1);
}

#[tokio::test]
async fn the_pair_holds_across_instances_sharing_redis() {
    let url = redis_server::redis_url();
    let prefix = format!("wxmp-replay-test:{:016x}:", rand::random::<u64>());
    let store = |url: String, prefix: String| async move {
        Store::Redis(RedisStore::connect(&url, &prefix).await.unwrap())
    };
    let cfg = config(NO_UPSTREAM, vec![pinging("shared", Mode::Plain)]);
    let a = start(cfg.clone(), store(url.clone(), prefix.clone()).await).await;
    let b = start(cfg, store(url, prefix).await).await;
    let to_a = Wechat::new(&a, "shared");
    let to_b = Wechat::new(&b, "shared");
    let query = plain_query(&to_a, &now(), &nonce());
    let answer = to_a.post_raw(&query, text_msg("ping", msg_id())).await;
    assert_eq!(text_of(&answer.body), "pong");
    let forged = to_b.post_raw(&query, text_msg("ping", msg_id())).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
}

/// Sends a request head declaring a 1 MiB body and nothing of the body; returns the status
/// if the server answers within `wait`, `None` if it is still waiting for the body.
async fn head_only(addr: SocketAddr, target: &str, wait: Duration) -> Option<u16> {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml\r\n\
         Content-Length: {}\r\n\r\n",
        1 << 20
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    match tokio::time::timeout(wait, socket.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n])
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok()),
        Ok(_) => Some(0),
        Err(_) => None,
    }
}

#[tokio::test]
async fn what_the_query_condemns_is_refused_before_the_body_is_read() {
    let running = start(
        config(
            NO_UPSTREAM,
            vec![pinging("plain", Mode::Plain), pinging("safe", Mode::Safe)],
        ),
        Store::memory(),
    )
    .await;
    let plain = Wechat::new(&running, "plain");
    let safe = Wechat::new(&running, "safe");
    let ts = now();
    let n = nonce();
    let good_plain = plain_query(&plain, &ts, &n);
    let stale_plain = plain_query(&plain, "1", &n);
    let refused = [
        // Plaintext: no signature, a wrong one, a stale timestamp.
        format!("/wx/plain?timestamp={ts}&nonce={n}"),
        format!(
            "/wx/plain?{}",
            good_plain.replace("signature=", "signature=0")
        ),
        format!("/wx/plain?{stale_plain}"),
        // Safe mode: not encrypted, no msg_signature, a stale timestamp.
        format!("/wx/safe?{good_plain}"),
        format!("/wx/safe?{good_plain}&encrypt_type=aes"),
        format!("/wx/safe?timestamp=1&nonce={n}&encrypt_type=aes&msg_signature=00"),
    ];
    // Generous: the machine may be slow, and the server needs no body to answer these.
    for target in &refused {
        let status = head_only(running.addr, target, Duration::from_secs(20)).await;
        assert!(
            matches!(status, Some(400 | 403)),
            "{target}: answered {status:?} without the body"
        );
    }
    // The control: a request whose query passes must wait for its body (the msg_signature
    // covers it), so no answer comes while the body is missing.
    let waiting = format!("/wx/safe?timestamp={ts}&nonce={n}&encrypt_type=aes&msg_signature=00");
    assert_eq!(
        head_only(running.addr, &waiting, Duration::from_millis(1500)).await,
        None
    );
    // The server is still healthy.
    let answer = safe.push_aes(&text_msg("ping", msg_id())).await;
    assert_eq!(text_of(&open_encrypted(&answer)), "pong");
}
