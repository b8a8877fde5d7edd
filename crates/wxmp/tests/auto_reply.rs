//! The console's 自动回复 through `/wx/{app}`, over real HTTP: keyword rules in both match
//! modes, both pick modes (with the 客服消息 that follow arriving at the emulator in order),
//! menu click replies, and the order of the chain against legacy keywords and the webhook.

#[path = "callback_util/mod.rs"]
mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use util::*;
use wxmp::config::{AppConfig, KeywordRule, MatchMode, Mode, Pick, Secret};
use wxmp::reply::Outbound;
use wxmp::store::Store;
use wxmp_proto::Reply;

fn rule(mode: MatchMode, keywords: &[&str], replies: Vec<Outbound>, pick: Pick) -> KeywordRule {
    KeywordRule {
        match_mode: mode,
        keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        replies,
        pick,
    }
}

fn image(media_id: &str) -> Outbound {
    Outbound::Reply {
        reply: Reply::Image {
            media_id: media_id.to_owned(),
        },
        video_thumb_media_id: None,
    }
}

/// A plain-mode app that can send 客服消息 (it has the emulator's secret).
fn app_with_secret(name: &str) -> AppConfig {
    AppConfig {
        secret: Some(Secret::new(SECRET)),
        reply_deadline_ms: 2000,
        ..app(name, Mode::Plain)
    }
}

fn click(key: &str, create_time: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>\
         <EventKey><![CDATA[{key}]]></EventKey></xml>"
    )
}

fn reply_of(answer: &Answer) -> Reply {
    assert_eq!(answer.status, 200, "{}", answer.body);
    Reply::parse(answer.body.as_bytes())
        .unwrap_or_else(|e| panic!("not a reply ({e}): {}", answer.body))
        .reply
}

static CREATE_TIME: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_700_000_000);

fn create_time() -> u64 {
    CREATE_TIME.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn exact_and_contains_rules_before_keywords_and_the_webhook() {
    let hook = text_hook(Duration::ZERO, "from the webhook").await;
    let mut demo = app("demo", Mode::Plain);
    demo.forward = Some(hook.url.clone());
    demo.auto_reply.rules = vec![
        rule(
            MatchMode::Exact,
            &["价格", "menu"],
            vec![Outbound::text("exact")],
            Pick::All,
        ),
        rule(
            MatchMode::Contains,
            &["price", "价格"],
            vec![Outbound::text("contains")],
            Pick::All,
        ),
    ];
    demo.auto_reply.keywords = keywords(&[("ping", "pong"), ("价格", "legacy keyword")]);
    let running = start(config(NO_UPSTREAM, vec![demo]), Store::memory()).await;
    let wechat = Wechat::new(&running, "demo");
    let say = |text: &str| {
        let wechat = wechat.clone();
        let text = text.to_owned();
        async move { reply_of(&wechat.push_plain(&text_msg(&text, msg_id())).await) }
    };

    // 全匹配: the whole message, trimmed, letters in any case; first rule wins over later
    // rules and over the legacy keywords.
    assert_eq!(say("价格").await, Reply::text("exact"));
    assert_eq!(say("  Menu \n").await, Reply::text("exact"));
    // 半匹配: anywhere in the message.
    assert_eq!(say("请问价格是多少？").await, Reply::text("contains"));
    assert_eq!(
        say("What's the PRICE of this?").await,
        Reply::text("contains")
    );
    // Legacy keywords still answer what no rule matches.
    assert_eq!(say("ping").await, Reply::text("pong"));
    assert!(
        hook.calls().is_empty(),
        "answered by rules: nothing forwarded"
    );
    // Everything else reaches the webhook.
    assert_eq!(say("menus").await, Reply::text("from the webhook"));
    assert_eq!(hook.calls().len(), 1);
}

#[tokio::test]
async fn pick_all_sends_the_rest_as_customer_service_messages_in_order() {
    let emu = emulator().await;
    let mut demo = app_with_secret("demo");
    demo.auto_reply.rules = vec![rule(
        MatchMode::Contains,
        &["hello"],
        vec![
            Outbound::text("first, passive"),
            image("MEDIA_2"),
            Outbound::text("third"),
            Outbound::MpNews {
                media_id: "NEWS_4".into(),
            },
        ],
        Pick::All,
    )];
    let running = start(config(&emu.base_url(), vec![demo]), Store::memory()).await;
    let wechat = Wechat::new(&running, "demo");

    let push = text_msg("hello there", msg_id());
    let answer = wechat.push_plain(&push).await;
    assert_eq!(reply_of(&answer), Reply::text("first, passive"));
    let arrived = eventually(Duration::from_secs(20), || {
        emu.emulator().custom_messages(APPID).len() >= 3
    })
    .await;
    let messages = emu.emulator().custom_messages(APPID);
    assert!(arrived, "{messages:#?}");
    assert_eq!(
        messages,
        vec![
            json!({"touser":"oUser","msgtype":"image","image":{"media_id":"MEDIA_2"}}),
            json!({"touser":"oUser","msgtype":"text","text":{"content":"third"}}),
            json!({"touser":"oUser","msgtype":"mpnews","mpnews":{"media_id":"NEWS_4"}}),
        ]
    );
    // WeChat's retry of the same push (its first answer may have been lost) carries the
    // passive reply again; the 客服消息 are not sent twice.
    let retry = wechat.push_plain(&push).await;
    assert_eq!(reply_of(&retry), Reply::text("first, passive"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(emu.emulator().custom_messages(APPID).len(), 3);
}

#[tokio::test]
async fn pick_random_answers_with_one_of_the_replies() {
    let emu = emulator().await;
    let mut demo = app_with_secret("demo");
    demo.auto_reply.rules = vec![rule(
        MatchMode::Exact,
        &["dice"],
        vec![Outbound::text("one"), Outbound::text("two")],
        Pick::Random,
    )];
    let running = start(config(&emu.base_url(), vec![demo]), Store::memory()).await;
    let wechat = Wechat::new(&running, "demo");
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        let reply = reply_of(&wechat.push_plain(&text_msg("dice", msg_id())).await);
        *seen.entry(text_of_reply(&reply)).or_insert(0) += 1;
    }
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        vec!["one".to_owned(), "two".to_owned()],
        "both replies come up: {seen:?}"
    );
    assert!(
        emu.emulator().custom_messages(APPID).is_empty(),
        "random sends one reply, passively"
    );
}

fn text_of_reply(reply: &Reply) -> String {
    match reply {
        Reply::Text { content } => content.clone(),
        other => panic!("not text: {other:?}"),
    }
}

#[tokio::test]
async fn a_news_material_goes_out_as_a_customer_service_message() {
    let emu = emulator().await;
    let mut demo = app_with_secret("demo");
    demo.auto_reply.rules = vec![rule(
        MatchMode::Exact,
        &["news"],
        vec![Outbound::MpNews {
            media_id: "NEWS_1".into(),
        }],
        Pick::All,
    )];
    let running = start(config(&emu.base_url(), vec![demo]), Store::memory()).await;
    let wechat = Wechat::new(&running, "demo");
    let answer = wechat.push_plain(&text_msg("news", msg_id())).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    assert!(
        eventually(Duration::from_secs(20), || {
            emu.emulator().custom_messages(APPID)
                == vec![json!({"touser":"oUser","msgtype":"mpnews","mpnews":{"media_id":"NEWS_1"}})]
        })
        .await,
        "{:#?}",
        emu.emulator().custom_messages(APPID)
    );
}

#[tokio::test]
async fn menu_clicks_are_answered_by_their_key() {
    let hook = hook(Duration::ZERO, |_: &Value| (204, String::new())).await;
    let mut demo = app("demo", Mode::Safe);
    demo.forward = Some(hook.url.clone());
    demo.auto_reply
        .clicks
        .insert("V1001_TODAY".into(), Outbound::text("today's pick"));
    demo.auto_reply
        .clicks
        .insert("V1001_PIC".into(), image("MEDIA_9"));
    // A click reply for a key that is also a keyword: clicks only answer CLICK events.
    demo.auto_reply.keywords = keywords(&[("V1001_PIC", "typed, not clicked")]);
    let running = start(config(NO_UPSTREAM, vec![demo]), Store::memory()).await;
    let wechat = Wechat::new(&running, "demo");

    let answer = wechat.push_aes(&click("V1001_TODAY", create_time())).await;
    assert_eq!(text_of(&open_encrypted(&answer)), "today's pick");
    let answer = wechat.push_aes(&click("V1001_PIC", create_time())).await;
    assert_eq!(
        Reply::parse(open_encrypted(&answer).as_bytes())
            .unwrap()
            .reply,
        Reply::Image {
            media_id: "MEDIA_9".into()
        }
    );
    assert!(hook.calls().is_empty(), "answered clicks are not forwarded");
    let answer = wechat.push_aes(&text_msg("V1001_PIC", msg_id())).await;
    assert_eq!(text_of(&open_encrypted(&answer)), "typed, not clicked");
    // A key without a reply goes to the webhook, whose 204 means nothing to say.
    let answer = wechat.push_aes(&click("V1001_OTHER", create_time())).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    assert_eq!(hook.calls().len(), 1);
    assert_eq!(hook.calls()[0].json["EventKey"], "V1001_OTHER");
}
