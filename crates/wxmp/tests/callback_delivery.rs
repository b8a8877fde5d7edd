//! End-to-end tests of WeChat's retry contract, over real HTTP: a push reaches the webhook
//! once however often (and wherever) it is delivered, and its reply reaches the user —
//! passively, to every request of the push until one is received, or as a 客服消息 after the
//! deadline, never both.

#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "callback_util/mod.rs"]
mod util;

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use util::*;
use wxmp::config::{Mode, Secret};
use wxmp::store::{RedisStore, Store};

/// The answers' bodies, with `success` counted apart.
fn replies(answers: &[Answer]) -> (Vec<String>, usize) {
    let mut replies = Vec::new();
    let mut successes = 0;
    for answer in answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.body == "success" {
            successes += 1;
        } else {
            replies.push(answer.body.clone());
        }
    }
    (replies, successes)
}

#[tokio::test]
async fn three_deliveries_of_one_message_reach_the_webhook_once() {
    let hook = text_hook(Duration::from_millis(200), "handled").await;
    let mut a = app("dedup", Mode::Plain);
    a.forward = Some(hook.url.clone());
    a.reply_deadline_ms = 3000;
    let running = start(config(NO_UPSTREAM, vec![a]), Store::memory()).await;
    let wechat = Wechat::new(&running, "dedup");

    // Three deliveries in flight at once (each with its own timestamp and nonce): WeChat
    // only reads one of them, so each may carry the reply.
    let message = text_msg("hello", msg_id());
    let answers = futures::future::join_all((0..3).map(|_| wechat.push_plain(&message))).await;
    let (bodies, successes) = replies(&answers);
    assert_eq!((bodies.len(), successes), (3, 0), "{answers:?}");
    for body in &bodies {
        assert_eq!(text_of(body), "handled");
    }
    // A retry after the handling finished gets it too, and still no second webhook call.
    let late = wechat.push_plain(&message).await;
    assert_eq!(text_of(&late.body), "handled");
    assert_eq!(hook.calls().len(), 1);

    // Events deduplicate by sender, CreateTime, Event and EventKey.
    let event = event_msg("CLICK", 1_700_000_000);
    for _ in 0..3 {
        wechat.push_plain(&event).await;
    }
    assert_eq!(hook.calls().len(), 2);
    assert_eq!(
        hook.calls()[1].delivery.as_deref(),
        Some("event:oUser:1700000000:CLICK:key")
    );
}

#[tokio::test]
async fn two_different_events_in_one_second_are_two_deliveries() {
    let hook = hook(Duration::ZERO, |_| (204, String::new())).await;
    let mut a = app("second", Mode::Safe);
    a.forward = Some(hook.url.clone());
    a.reply_deadline_ms = 3000;
    let running = start(config(NO_UPSTREAM, vec![a]), Store::memory()).await;
    let wechat = Wechat::new(&running, "second");
    let header = "<ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\
                  <CreateTime>1700000500</CreateTime><MsgType><![CDATA[event]]></MsgType>";
    // A follow, and the location report WeChat sends in the same second.
    let subscribe = format!(
        "<xml>{header}<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey></xml>"
    );
    let location = format!(
        "<xml>{header}<Event><![CDATA[LOCATION]]></Event><Latitude>23.137466</Latitude>\
         <Longitude>113.352425</Longitude><Precision>119.385040</Precision></xml>"
    );
    for xml in [&subscribe, &location] {
        let answer = wechat.push_aes(xml).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    }
    let events: Vec<String> = hook
        .calls()
        .iter()
        .map(|c| c.json["Event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(events, ["subscribe", "LOCATION"]);
    // WeChat's retries of each are still one delivery apiece.
    for xml in [&subscribe, &location] {
        wechat.push_aes(xml).await;
    }
    assert_eq!(hook.calls().len(), 2);
    assert_eq!(
        hook.calls()[1].delivery.as_deref(),
        Some("event:oUser:1700000500:LOCATION:")
    );
}

#[tokio::test]
async fn a_webhook_slower_than_the_deadline_replies_by_customer_service() {
    let emulator = emulator().await;
    let hook = hook(Duration::from_millis(1200), |json| {
        let reply = format!("late answer to {}", json["Content"].as_str().unwrap_or("?"));
        (200, json!({"type":"text","content":reply}).to_string())
    })
    .await;
    let mut a = app("slow", Mode::Safe);
    a.secret = Some(Secret::new(SECRET));
    a.forward = Some(hook.url.clone());
    a.reply_deadline_ms = 300;
    let running = start(config(&emulator.base_url(), vec![a]), Store::memory()).await;
    let wechat = Wechat::new(&running, "slow");

    // Let the 中控 hold a token, then make it stale: the late send must refresh and retry.
    let tokens = running.server.state.tokens.clone();
    tokens.access_token("slow").await.unwrap();
    emulator.emulator().expire_all_tokens(APPID);

    let started = Instant::now();
    let message = text_msg("question", msg_id());
    let answer = wechat.push_aes(&message).await;
    let answered_in = started.elapsed();
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    assert!(answered_in >= Duration::from_millis(290), "{answered_in:?}");
    assert!(answered_in < Duration::from_millis(1000), "{answered_in:?}");

    let emu = emulator.emulator().clone();
    assert!(
        eventually(Duration::from_secs(5), || !emu
            .custom_messages(APPID)
            .is_empty())
        .await,
        "no customer-service message"
    );
    assert_eq!(
        emu.custom_messages(APPID),
        vec![
            json!({"touser":"oUser","msgtype":"text","text":{"content":"late answer to question"}})
        ]
    );
    let stats = emu.stats(APPID);
    assert_eq!(stats.custom_send_calls.ok, 1);
    assert_eq!(hook.calls().len(), 1);

    // The reply went out as a 客服消息: retries get `success`, so the user never gets both,
    // and nothing is sent twice.
    for _ in 0..2 {
        let retry = wechat.push_aes(&message).await;
        assert_eq!((retry.status, retry.body.as_str()), (200, "success"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(emu.custom_messages(APPID).len(), 1);
    assert_eq!(hook.calls().len(), 1);
}

/// POSTs a signed plaintext push over a raw connection and returns it unread.
async fn post_unread(running: &Running, wechat: &Wechat, xml: &str) -> TcpStream {
    let (query, _) = wechat.signed_query();
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    let head = format!(
        "POST /wx/{}?{query} HTTP/1.1\r\nHost: wxmp\r\nContent-Type: text/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        wechat.app,
        xml.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(xml.as_bytes()).await.unwrap();
    stream
}

/// Waits until `/metrics` counts `outcome` for `app` at least once.
async fn counted(running: &Running, app: &str, outcome: &str) -> bool {
    let line = format!("wxmp_callback_requests_total{{app=\"{app}\",outcome=\"{outcome}\"}}");
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let metrics = running.metrics().await;
        if metrics.lines().any(|l| l.starts_with(&line)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_reply_lost_on_its_way_to_wechat_is_carried_by_the_retry() {
    let emulator = emulator().await;
    let hook = text_hook(Duration::from_millis(300), "the answer").await;
    let mut a = app("lost", Mode::Plain);
    a.secret = Some(Secret::new(SECRET));
    a.forward = Some(hook.url.clone());
    a.reply_deadline_ms = 1000;
    let running = start(config(&emulator.base_url(), vec![a]), Store::memory()).await;
    let wechat = Wechat::new(&running, "lost");

    // The reply is produced and written, but never reaches WeChat: the connection is
    // dropped unread (a proxy's timeout, WeChat hanging up just as it was written).
    let message = text_msg("did you get this?", msg_id());
    let first = post_unread(&running, &wechat, &message).await;
    assert!(
        counted(&running, "lost", "replied").await,
        "the first request was never answered"
    );
    drop(first);
    // WeChat took no answer, so it retries: the retry carries the reply, and so does the next.
    for _ in 0..2 {
        let retry = wechat.push_plain(&message).await;
        assert_eq!(retry.status, 200);
        assert_ne!(retry.body, "success", "the retry lost the reply");
        assert_eq!(text_of(&retry.body), "the answer");
    }
    assert_eq!(hook.calls().len(), 1);

    // Dropped before the answer was ready: the retry carries it as well.
    let other = text_msg("and this?", msg_id());
    let early = post_unread(&running, &wechat, &other).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(early);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let retry = wechat.push_plain(&other).await;
    assert_eq!(text_of(&retry.body), "the answer");
    assert_eq!(hook.calls().len(), 2);

    // The replies went passively: past the deadline no 客服消息 follows (never both).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(emulator.emulator().custom_messages(APPID).is_empty());
    assert_eq!(
        emulator.emulator().stats(APPID).custom_send_calls.attempts,
        0
    );
}

#[tokio::test]
async fn a_push_is_handled_even_when_wechat_hangs_up_at_once() {
    let emulator = emulator().await;
    // The client hangs up at 300 ms, well after the push has reached wxmp even on a loaded
    // machine (at 30 ms it sometimes had not, and the test then proved nothing), and well
    // before the 1 s deadline and the webhook's answer at 1.5 s.
    let hook = text_hook(Duration::from_millis(1500), "still answered").await;
    let mut a = app("hangup", Mode::Plain);
    a.secret = Some(Secret::new(SECRET));
    a.forward = Some(hook.url.clone());
    a.reply_deadline_ms = 1000;
    let running = start(config(&emulator.base_url(), vec![a]), Store::memory()).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let wechat = Wechat::new(&running, "hangup").with_http(impatient);

    let result = wechat.try_push_plain(&text_msg("hi", msg_id())).await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    let emu = emulator.emulator().clone();
    assert!(
        eventually(Duration::from_secs(5), || emu.custom_messages(APPID).len()
            == 1)
        .await,
        "the push was dropped with its request"
    );
    assert_eq!(
        emu.custom_messages(APPID)[0]["text"]["content"],
        "still answered"
    );
    assert_eq!(hook.calls().len(), 1);
}

#[tokio::test]
async fn a_webhook_slower_than_5s_is_answered_on_the_retry() {
    let emulator = emulator().await;
    let hook = text_hook(Duration::from_secs(6), "worth the wait").await;
    let mut a = app("patient", Mode::Safe);
    a.secret = Some(Secret::new(SECRET));
    a.forward = Some(hook.url.clone());
    a.reply_deadline_ms = 8000;
    let running = start(config(&emulator.base_url(), vec![a]), Store::memory()).await;
    // WeChat: 5 seconds per attempt, then the same push again.
    let like_wechat = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let wechat = Wechat::new(&running, "patient").with_http(like_wechat);

    let started = Instant::now();
    let message = text_msg("slow question", msg_id());
    let first = wechat.try_push_aes(&message).await;
    assert!(
        first.is_err_and(|e| e.is_timeout()),
        "the first attempt must hang"
    );
    let retry = wechat.try_push_aes(&message).await.unwrap();
    let answered_at = started.elapsed();
    assert_eq!(retry.status, 200);
    // Encrypted for the retry itself: its own nonce, checked by `open_encrypted`.
    assert_eq!(text_of(&open_encrypted(&retry)), "worth the wait");
    assert!(answered_at >= Duration::from_secs(6), "{answered_at:?}");
    assert!(answered_at < Duration::from_millis(7500), "{answered_at:?}");
    assert_eq!(hook.calls().len(), 1);
    // hyper dropped the first request when the client hung up; the handling went on.
    let metrics = running.metrics().await;
    for outcome in ["abandoned", "replied"] {
        let line =
            format!("wxmp_callback_requests_total{{app=\"patient\",outcome=\"{outcome}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    // Past the deadline and its hand-over margin: no 客服消息, the reply went passively.
    tokio::time::sleep_until(started + Duration::from_millis(8600)).await;
    assert!(emulator.emulator().custom_messages(APPID).is_empty());
    assert_eq!(
        emulator.emulator().stats(APPID).custom_send_calls.attempts,
        0
    );
}

/// Two stores on the test Redis under a fresh prefix, like two processes.
async fn redis_pair() -> (Store, Store) {
    let url = redis_server::redis_url();
    let prefix = format!("wxmp-callback-test:{:016x}:", rand::random::<u64>());
    let a = RedisStore::connect(&url, &prefix).await.unwrap();
    let b = RedisStore::connect(&url, &prefix).await.unwrap();
    (Store::Redis(a), Store::Redis(b))
}

#[tokio::test]
async fn two_instances_sharing_redis_call_the_webhook_once() {
    let (store_a, store_b) = redis_pair().await;
    let hook = text_hook(Duration::from_millis(300), "once").await;
    let mut a = app("shared", Mode::Safe);
    a.forward = Some(hook.url.clone());
    a.reply_deadline_ms = 3000;
    let cfg = config(NO_UPSTREAM, vec![a]);
    let first = start(cfg.clone(), store_a).await;
    let second = start(cfg, store_b).await;
    let to_a = Wechat::new(&first, "shared");
    let to_b = Wechat::new(&second, "shared");

    let message = text_msg("across instances", msg_id());
    let (on_a, on_b) = tokio::join!(to_a.push_aes(&message), async {
        // WeChat's retries land wherever the load balancer sends them.
        tokio::time::sleep(Duration::from_millis(50)).await;
        futures::future::join(to_b.push_aes(&message), to_b.push_aes(&message)).await
    });
    let answers = [on_a, on_b.0, on_b.1];
    let (bodies, successes) = replies(&answers);
    assert_eq!((bodies.len(), successes), (3, 0), "{answers:?}");
    for answer in &answers {
        // Each sealed for its own request.
        assert_eq!(text_of(&open_encrypted(answer)), "once");
    }
    assert_eq!(hook.calls().len(), 1);

    // Later retries on either instance find the result in Redis, and the reply with it.
    for wechat in [&to_b, &to_a] {
        let retry = wechat.push_aes(&message).await;
        assert_eq!(text_of(&open_encrypted(&retry)), "once");
    }
    assert_eq!(hook.calls().len(), 1);

    // A push first seen by the second instance is handled there, once.
    let other = text_msg("the other way", msg_id());
    let (x, y) = tokio::join!(to_b.push_aes(&other), to_a.push_aes(&other));
    let (bodies, _) = replies(&[x, y]);
    assert_eq!(bodies.len(), 2);
    assert_eq!(hook.calls().len(), 2);
}

#[tokio::test]
async fn with_redis_down_a_retry_to_the_same_instance_is_not_handled_again() {
    let mut redis = redis_server::RedisServer::start();
    let prefix = format!("wxmp-callback-test:{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&redis.url(), &prefix).await.unwrap();
    let hook = text_hook(Duration::from_millis(100), "handled once").await;
    let mut a = app("outage", Mode::Plain);
    a.forward = Some(hook.url.clone());
    let running = start(config(NO_UPSTREAM, vec![a]), Store::Redis(store)).await;
    let wechat = Wechat::new(&running, "outage");

    redis.kill();
    // Handled while the store is away: neither the claim nor the result reaches it.
    let message = text_msg("during the outage", msg_id());
    let first = wechat.push_plain(&message).await;
    assert_eq!(text_of(&first.body), "handled once");
    // WeChat's retries (each signed afresh) come after the handling finished, to the same
    // instance: it remembers the push, so the webhook is not called again and each retry
    // carries the reply, as it would with the store up.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let retry = wechat.push_plain(&message).await;
        assert_eq!(text_of(&retry.body), "handled once");
    }
    assert_eq!(hook.calls().len(), 1);
}
