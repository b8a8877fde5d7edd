//! End-to-end tests of the callback URL's protocol side, over real HTTP: the handshake, the
//! three modes with good and bad signatures, every sample message and event, every reply type
//! a webhook can give, the order of answers, and hostile bodies.

#[path = "callback_util/mod.rs"]
mod util;

use std::time::Duration;

use serde_json::{json, Value};
use util::*;
use wxmp::config::Mode;
use wxmp::store::Store;
use wxmp_proto::{Article, Reply};

#[tokio::test]
async fn handshake_echoes_echostr_only_when_signed() {
    let running = start(
        config(NO_UPSTREAM, vec![app("demo", Mode::Safe)]),
        Store::memory(),
    )
    .await;
    let wechat = Wechat::new(&running, "demo");

    let ok = wechat.handshake("4375120948345356249").await;
    assert_eq!(ok.status(), 200);
    assert!(ok.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(ok.text().await.unwrap(), "4375120948345356249");
    // Echoed verbatim: a `+` is not a space.
    let plus = wechat.handshake("a+b/c=").await;
    assert_eq!(plus.text().await.unwrap(), "a+b/c=");

    let (ts, n) = (now(), nonce());
    let good = wxmp_proto::signature::signature(&wechat.token, &ts, &n).to_string();
    let bad = good.replace(&good[..1], if &good[..1] == "0" { "1" } else { "0" });
    for query in [
        format!("signature={bad}&timestamp={ts}&nonce={n}&echostr=1"),
        format!("timestamp={ts}&nonce={n}&echostr=1"),
        format!("signature={good}&nonce={n}&echostr=1"),
        format!("signature={good}&timestamp={ts}&echostr=1"),
        format!("signature={good}&timestamp={ts}&nonce={n}"),
        format!("signature={good}&timestamp={ts}1&nonce={n}&echostr=1"),
        String::new(),
    ] {
        let response = wechat.get(&query).await;
        assert_eq!(response.status(), 403, "{query}");
        assert!(!response.text().await.unwrap().contains('1'), "{query}");
    }

    let stranger = Wechat {
        app: "nope".to_owned(),
        ..wechat.clone()
    };
    assert_eq!(stranger.handshake("1").await.status(), 404);
    assert_eq!(
        stranger.push_plain(&text_msg("hi", msg_id())).await.status,
        404
    );
}

#[tokio::test]
async fn plain_mode_checks_the_signature_before_reading() {
    let mut plain = app("plain", Mode::Plain);
    plain.auto_reply.keywords = keywords(&[("ping", "pong")]);
    let running = start(config(NO_UPSTREAM, vec![plain]), Store::memory()).await;
    let wechat = Wechat::new(&running, "plain");

    let answer = wechat.push_plain(&text_msg("ping", msg_id())).await;
    assert_eq!(answer.status, 200);
    let reply = Reply::parse(answer.body.as_bytes()).unwrap();
    assert_eq!(reply.reply, Reply::text("pong"));
    assert_eq!(reply.to_user_name, "oUser");
    assert_eq!(reply.from_user_name, "gh_test");

    let (query, _) = wechat.signed_query();
    let forged = query.replace("timestamp=", "timestamp=9");
    assert_eq!(
        wechat
            .post_raw(&forged, text_msg("ping", msg_id()))
            .await
            .status,
        403
    );
    assert_eq!(
        wechat
            .post_raw("openid=oUser", text_msg("ping", msg_id()))
            .await
            .status,
        403
    );
    // Unsigned garbage is refused for its signature, not parsed.
    assert_eq!(wechat.post_raw("", "<!DOCTYPE x>").await.status, 403);
}

#[tokio::test]
async fn safe_mode_accepts_only_authentic_ciphertext() {
    let mut safe = app("safe", Mode::Safe);
    safe.auto_reply.keywords = keywords(&[("ping", "pong")]);
    let running = start(config(NO_UPSTREAM, vec![safe]), Store::memory()).await;
    let wechat = Wechat::new(&running, "safe");

    let answer = wechat.push_aes(&text_msg("ping", msg_id())).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(text_of(&open_encrypted(&answer)), "pong");
    // No reply: plain `success`, whatever the mode.
    let answer = wechat.push_aes(&text_msg("nothing", msg_id())).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));

    // A wrong msg_signature, a missing one, a tampered body.
    let (query, body, _) = wechat.sealed(&text_msg("ping", msg_id()), &crypt());
    let wrong = regex_replace_param(
        &query,
        "msg_signature",
        "0123456789abcdef0123456789abcdef01234567",
    );
    assert_eq!(wechat.post_raw(&wrong, body.clone()).await.status, 403);
    let missing = query.split("&msg_signature").next().unwrap().to_owned();
    assert_eq!(wechat.post_raw(&missing, body.clone()).await.status, 403);
    let tampered = body.replacen("<![CDATA[", "<![CDATA[A", 2);
    assert_eq!(wechat.post_raw(&query, tampered).await.status, 403);

    // A correctly signed plaintext push is still refused in safe mode.
    let answer = wechat.push_plain(&text_msg("ping", msg_id())).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("safe mode"), "{}", answer.body);

    // Authentic but undecryptable, or sealed for another AppID.
    let other = wxmp_proto::MsgCrypt::new(
        wxmp_proto::EncodingAesKey::parse(AES_KEY).unwrap(),
        wxmp_proto::AppId::new("wxffffffffffffffff").unwrap(),
    );
    let (query, body, _) = wechat.sealed(&text_msg("secret words", msg_id()), &other);
    let answer = wechat.post_raw(&query, body).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("another AppID"), "{}", answer.body);
    assert!(!answer.body.contains("secret words"));
    for encrypt in ["not base64!", "AAAA", "QUJD"] {
        let (query, body, _) = wechat.sealed_encrypt(encrypt);
        assert_eq!(wechat.post_raw(&query, body).await.status, 400, "{encrypt}");
    }
    // Decrypts, but is not a message: no MsgType, a DOCTYPE, not XML.
    for inner in [
        "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime></xml>",
        "<!DOCTYPE x [<!ENTITY e \"secret words\">]><xml>&e;</xml>",
        "secret words",
    ] {
        let (query, body, _) = wechat.sealed(inner, &crypt());
        let answer = wechat.post_raw(&query, body).await;
        assert_eq!(answer.status, 400, "{inner}");
        assert!(!answer.body.contains("secret"), "{}", answer.body);
    }
    // An envelope without <Encrypt>.
    let (query, _, _) = wechat.sealed("x", &crypt());
    let answer = wechat
        .post_raw(&query, "<xml><ToUserName>gh</ToUserName></xml>")
        .await;
    assert_eq!(answer.status, 400);
}

/// `query` with parameter `name` set to `value`.
fn regex_replace_param(query: &str, name: &str, value: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            if pair.starts_with(&format!("{name}=")) {
                format!("{name}={value}")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn compat_mode_answers_in_kind() {
    let mut compat = app("compat", Mode::Compat);
    compat.auto_reply.keywords = keywords(&[("ping", "pong")]);
    let running = start(config(NO_UPSTREAM, vec![compat]), Store::memory()).await;
    let wechat = Wechat::new(&running, "compat");

    let encrypted = wechat.push_aes(&text_msg("ping", msg_id())).await;
    assert_eq!(encrypted.status, 200);
    assert_eq!(text_of(&open_encrypted(&encrypted)), "pong");

    let plain = wechat.push_plain(&text_msg("ping", msg_id())).await;
    assert_eq!(plain.status, 200);
    assert_eq!(text_of(&plain.body), "pong");

    let (query, _) = wechat.signed_query();
    let raw = wechat
        .post_raw(
            &format!("{query}&encrypt_type=raw"),
            text_msg("ping", msg_id()),
        )
        .await;
    assert_eq!(text_of(&raw.body), "pong");

    // Bad signatures both ways.
    let (query, body, _) = wechat.sealed(&text_msg("ping", msg_id()), &crypt());
    let wrong = regex_replace_param(
        &query,
        "msg_signature",
        "0000000000000000000000000000000000000000",
    );
    assert_eq!(wechat.post_raw(&wrong, body).await.status, 403);
    let wrong = regex_replace_param(
        &query,
        "signature",
        "0000000000000000000000000000000000000000",
    );
    let plain_query = wrong.split("&encrypt_type").next().unwrap().to_owned();
    assert_eq!(
        wechat
            .post_raw(&plain_query, text_msg("ping", msg_id()))
            .await
            .status,
        403
    );
    // An encryption WeChat does not have.
    let (query, _) = wechat.signed_query();
    assert_eq!(
        wechat
            .post_raw(
                &format!("{query}&encrypt_type=des"),
                text_msg("ping", msg_id())
            )
            .await
            .status,
        400
    );
}

/// The value at `path` (`A.B[0].C`) of `json`.
fn at<'a>(json: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = json;
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        value = value.get(name)?;
        if let Some(i) = index {
            value = value.get(i)?;
        }
    }
    Some(value)
}

#[tokio::test]
async fn every_sample_message_and_event_is_parsed_forwarded_and_answered() {
    let vectors: Value =
        serde_json::from_str(include_str!("../../wxmp-proto/tests/vectors/vectors.json")).unwrap();
    let samples = vectors["xml_inbound_samples"].as_object().unwrap();
    let hook = hook(Duration::ZERO, |json| {
        let what = format!(
            "{}/{}",
            json["MsgType"].as_str().unwrap_or("?"),
            json["Event"].as_str().unwrap_or("")
        );
        (200, json!({"type":"text","content":what}).to_string())
    })
    .await;
    // One app per sample: several samples share a MsgId or a sender and CreateTime.
    let apps = samples
        .keys()
        .map(|name| {
            let mut a = app(name, Mode::Safe);
            a.forward = Some(hook.url.clone());
            a.reply_deadline_ms = 3000;
            a
        })
        .collect();
    let running = start(config(NO_UPSTREAM, apps), Store::memory()).await;

    for (name, sample) in samples {
        let xml = sample["xml"].as_str().unwrap();
        let message = wxmp_proto::Message::parse(xml.as_bytes()).unwrap();
        let wechat = Wechat::new(&running, name);
        let answer = wechat.push_aes(xml).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        let reply = Reply::parse(open_encrypted(&answer).as_bytes()).unwrap();
        let event = message.event().map_or("", |e| e.name());
        assert_eq!(
            reply.reply,
            Reply::text(format!("{}/{event}", message.msg_type())),
            "{name}"
        );
        assert_eq!(reply.to_user_name, message.from_user_name, "{name}");
        assert_eq!(reply.from_user_name, message.to_user_name, "{name}");

        let call = hook
            .calls()
            .into_iter()
            .find(|c| c.json["app"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} was not forwarded"));
        assert_eq!(
            call.delivery.as_deref(),
            Some(message.dedup_key().to_string().as_str()),
            "{name}"
        );
        for (path, expected) in sample["expected_fields"].as_object().unwrap() {
            if matches!(path.as_str(), "dedup_key" | "scene") {
                continue;
            }
            // The vectors index the docs' list; the JSON keeps its `item` element by name.
            let path = path.replace("PicList[", "PicList.item[");
            assert_eq!(at(&call.json, &path), Some(expected), "{name}: {path}");
        }
        // Every top-level XML field is there, named as in the XML.
        for child in &message.raw.children {
            assert!(
                call.json.get(&child.name).is_some(),
                "{name}: {}",
                child.name
            );
        }
    }
    assert_eq!(hook.calls().len(), samples.len());
}

#[tokio::test]
async fn every_webhook_reply_type_is_rendered() {
    let articles = json!([
        {"title":"t1","description":"d1","pic_url":"p1","url":"u1"},
        {"title":"t2","description":"d2","pic_url":"p2","url":"u2"}
    ]);
    let nine: Vec<Value> = (0..9).map(|i| json!({"title": format!("t{i}")})).collect();
    let answers: Vec<(&str, u16, String)> = vec![
        ("text", 200, json!({"type":"text","content":"你好 <b>&"}).to_string()),
        ("image", 200, json!({"type":"image","media_id":"img"}).to_string()),
        ("voice", 200, json!({"type":"voice","media_id":"vo"}).to_string()),
        (
            "video",
            200,
            json!({"type":"video","media_id":"vid","title":"T","description":"D"}).to_string(),
        ),
        (
            "music",
            200,
            json!({"type":"music","title":"T","description":"D","music_url":"m","hq_music_url":"hq","thumb_media_id":"th"}).to_string(),
        ),
        ("news", 200, json!({"type":"news","articles":articles}).to_string()),
        (
            "transfer",
            200,
            json!({"type":"transfer_customer_service","kf_account":"kf@wx"}).to_string(),
        ),
        ("none", 204, String::new()),
        ("empty", 200, String::new()),
        ("garbage", 200, "<xml>not json</xml>".to_owned()),
        ("unknown", 200, json!({"type":"poem","content":"x"}).to_string()),
        ("failing", 500, "oops".to_owned()),
        ("nine", 200, json!({"type":"news","articles":nine}).to_string()),
    ];
    let table = answers.clone();
    let hook = hook(Duration::ZERO, move |json| {
        let content = json["Content"].as_str().unwrap_or_default();
        table
            .iter()
            .find(|(name, _, _)| *name == content)
            .map_or((500, String::new()), |(_, status, body)| {
                (*status, body.clone())
            })
    })
    .await;
    let mut plain = app("hooked", Mode::Plain);
    plain.forward = Some(hook.url.clone());
    plain.reply_deadline_ms = 3000;
    plain.auto_reply.default = Some("default".to_owned());
    let running = start(config(NO_UPSTREAM, vec![plain]), Store::memory()).await;
    let wechat = Wechat::new(&running, "hooked");

    let reply_to = |content: &'static str| {
        let wechat = wechat.clone();
        async move {
            let answer = wechat.push_plain(&text_msg(content, msg_id())).await;
            assert_eq!(answer.status, 200, "{content}");
            answer.body
        }
    };
    let parsed = |body: String| Reply::parse(body.as_bytes()).unwrap().reply;
    assert_eq!(parsed(reply_to("text").await), Reply::text("你好 <b>&"));
    assert_eq!(
        parsed(reply_to("image").await),
        Reply::Image {
            media_id: "img".into()
        }
    );
    assert_eq!(
        parsed(reply_to("voice").await),
        Reply::Voice {
            media_id: "vo".into()
        }
    );
    assert_eq!(
        parsed(reply_to("video").await),
        Reply::Video {
            media_id: "vid".into(),
            title: Some("T".into()),
            description: Some("D".into())
        }
    );
    assert_eq!(
        parsed(reply_to("music").await),
        Reply::Music {
            title: Some("T".into()),
            description: Some("D".into()),
            music_url: Some("m".into()),
            hq_music_url: Some("hq".into()),
            thumb_media_id: "th".into()
        }
    );
    assert_eq!(
        parsed(reply_to("news").await),
        Reply::News {
            articles: vec![
                Article {
                    title: "t1".into(),
                    description: "d1".into(),
                    pic_url: "p1".into(),
                    url: "u1".into()
                },
                Article {
                    title: "t2".into(),
                    description: "d2".into(),
                    pic_url: "p2".into(),
                    url: "u2".into()
                }
            ]
        }
    );
    assert_eq!(
        parsed(reply_to("transfer").await),
        Reply::TransferCustomerService {
            kf_account: Some("kf@wx".into())
        }
    );
    // Handled, nothing to say (204, or 200 and nothing): `success`, no default after it.
    for handled in ["none", "empty"] {
        assert_eq!(reply_to(handled).await, "success", "{handled}");
    }
    // Nothing usable: nobody handled it, so the default reply.
    for fallthrough in ["garbage", "unknown", "failing", "nine"] {
        assert_eq!(
            parsed(reply_to(fallthrough).await),
            Reply::text("default"),
            "{fallthrough}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_webhook_falls_through_to_the_default() {
    let mut a = app("unreachable", Mode::Plain);
    a.forward = Some("http://127.0.0.1:9/hook".parse().unwrap());
    a.reply_deadline_ms = 3000;
    a.auto_reply.default = Some("default".to_owned());
    let running = start(config(NO_UPSTREAM, vec![a]), Store::memory()).await;
    let wechat = Wechat::new(&running, "unreachable");
    let answer = wechat.push_plain(&text_msg("anyone?", msg_id())).await;
    assert_eq!(text_of(&answer.body), "default");
}

#[tokio::test]
async fn a_typed_event_of_unexpected_shape_is_forwarded_not_refused() {
    let hook = text_hook(Duration::ZERO, "noted").await;
    let mut a = app("shapes", Mode::Safe);
    a.forward = Some(hook.url.clone());
    a.reply_deadline_ms = 3000;
    let running = start(config(NO_UPSTREAM, vec![a]), Store::memory()).await;
    let wechat = Wechat::new(&running, "shapes");
    let xml = "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\
               <CreateTime>1700000100</CreateTime><MsgType><![CDATA[event]]></MsgType>\
               <Event><![CDATA[LOCATION]]></Event><Latitude>23°N</Latitude>\
               <Longitude>113.352425</Longitude><Precision>119.385040</Precision></xml>";
    let answer = wechat.push_aes(xml).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(text_of(&open_encrypted(&answer)), "noted");
    let calls = hook.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].json["Event"], "LOCATION");
    assert_eq!(calls[0].json["Latitude"], "23°N");
    assert_eq!(calls[0].json["Longitude"], "113.352425");
    // A message of a known type with a field of unexpected shape, likewise.
    let xml = "<xml><ToUserName>gh_test</ToUserName><FromUserName>oUser</FromUserName>\
               <CreateTime>1700000101</CreateTime><MsgType>location</MsgType>\
               <Location_X>north</Location_X><MsgId>77001</MsgId></xml>";
    let answer = wechat.push_aes(xml).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(hook.calls()[1].json["Location_X"], "north");
    assert_eq!(hook.calls()[1].delivery.as_deref(), Some("msgid:77001"));
}

#[tokio::test]
async fn auto_replies_come_first_and_default_only_answers_messages() {
    let hook = hook(Duration::ZERO, |_| (204, String::new())).await;
    let mut a = app("auto", Mode::Plain);
    a.forward = Some(hook.url.clone());
    a.reply_deadline_ms = 3000;
    a.auto_reply.keywords = keywords(&[("ping", "pong"), ("你好", "您好")]);
    a.auto_reply.subscribe = Some("welcome".to_owned());
    a.auto_reply.default = Some("got it".to_owned());
    let running = start(config(NO_UPSTREAM, vec![a]), Store::memory()).await;
    let wechat = Wechat::new(&running, "auto");

    // Keywords: whole message, trimmed, before the webhook.
    let answer = wechat.push_plain(&text_msg("  ping\n", msg_id())).await;
    assert_eq!(text_of(&answer.body), "pong");
    assert_eq!(
        text_of(&wechat.push_plain(&text_msg("你好", msg_id())).await.body),
        "您好"
    );
    assert!(hook.calls().is_empty());
    // Not a whole-message match: the webhook, which handled it (204): no default after it.
    let answer = wechat.push_plain(&text_msg("ping pong", msg_id())).await;
    assert_eq!(answer.body, "success");
    assert_eq!(hook.calls().len(), 1);
    // Subscribe: the subscribe reply, before the webhook.
    let answer = wechat
        .push_plain(&event_msg("subscribe", 1_700_000_001))
        .await;
    assert_eq!(text_of(&answer.body), "welcome");
    assert_eq!(hook.calls().len(), 1);
    // Other events: webhook, but never the default.
    let answer = wechat.push_plain(&event_msg("CLICK", 1_700_000_002)).await;
    assert_eq!(answer.body, "success");
    assert_eq!(hook.calls().len(), 2);
}

#[tokio::test]
async fn hostile_bodies_get_a_4xx_and_the_server_stays_healthy() {
    let plain = app("plain", Mode::Plain);
    let safe = app("safe", Mode::Safe);
    let running = start(config(NO_UPSTREAM, vec![plain, safe]), Store::memory()).await;
    let wechat = Wechat::new(&running, "plain");
    let safe = Wechat::new(&running, "safe");

    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">{}]><xml><Content>&lol9;</Content></xml>",
        (1..10)
            .map(|i| format!("<!ENTITY lol{i} \"{}\">", format!("&lol{};", i - 1).repeat(10)))
            .collect::<String>()
    );
    let complete = text_msg("hi", msg_id());
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x01garbage\xff".to_vec()),
        ("empty", Vec::new()),
        ("json", br#"{"MsgType":"text"}"#.to_vec()),
        ("truncated", complete.as_bytes()[..complete.len() / 2].to_vec()),
        ("bomb", bomb.into_bytes()),
        (
            "xxe",
            b"<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><xml><Content>&xxe;</Content></xml>"
                .to_vec(),
        ),
        (
            "no MsgType",
            b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime></xml>"
                .to_vec(),
        ),
        ("deep", format!("{}{}", "<a>".repeat(100), "</a>".repeat(100)).into_bytes()),
        ("many roots", b"<xml></xml><xml></xml>".to_vec()),
        (
            "raw ]]>",
            complete.replace("[CDATA[hi]]>", "[CDATA[hi]]>]]>").into_bytes(),
        ),
        (
            "raw ]]> in a number",
            complete.replace("<MsgId>", "<MsgId>]]>").into_bytes(),
        ),
    ];
    for (name, body) in &hostile {
        let (query, _) = wechat.signed_query();
        let answer = wechat.post_raw(&query, body.clone()).await;
        assert_eq!(answer.status, 400, "{name}: {}", answer.body);
        assert!(answer.body.len() < 400, "{name}: a short reason");
        // The same as the ciphertext envelope of a safe app.
        let (query, _, _) = safe.sealed("x", &crypt());
        let answer = safe.post_raw(&query, body.clone()).await;
        assert_eq!(answer.status, 400, "safe {name}: {}", answer.body);
    }

    // 8 MiB, announced by Content-Length: refused without reading it (or the connection
    // is closed while the client is still sending).
    let big = vec![b'<'; 8 << 20];
    let (query, _) = wechat.signed_query();
    match wechat.try_post_raw(&query, big.clone()).await {
        Ok(answer) => assert_eq!(answer.status, 413),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    // 8 MiB streamed without a length: the body limit surfaces in the extractor.
    let (query, _) = wechat.signed_query();
    let status = chunked_post(running.addr, &format!("/wx/plain?{query}"), 8 << 20).await;
    assert!(matches!(status, None | Some(413)), "{status:?}");

    // Decrypted text that is not well-formed is refused the same way.
    let (query, body, _) = safe.sealed(&complete.replace("[CDATA[hi]]>", "hi]]>"), &crypt());
    let answer = safe.post_raw(&query, body).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("not well-formed"), "{}", answer.body);

    let health = http().get(running.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // And it still answers real pushes.
    let answer = wechat.push_plain(&text_msg("still here", msg_id())).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
}

/// POSTs `len` bytes with `Transfer-Encoding: chunked` over a raw connection; the status, or
/// `None` when the server closed the connection first.
async fn chunked_post(addr: std::net::SocketAddr, path: &str, len: usize) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    let chunk = vec![b' '; 64 << 10];
    let mut sent = 0;
    while sent < len {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test]
async fn outcomes_are_counted_in_the_metrics() {
    let mut a = app("counted", Mode::Plain);
    a.auto_reply.keywords = keywords(&[("ping", "pong")]);
    let running = start(config(NO_UPSTREAM, vec![a]), Store::memory()).await;
    let wechat = Wechat::new(&running, "counted");
    wechat.handshake("1").await;
    wechat.push_plain(&text_msg("ping", msg_id())).await;
    wechat.push_plain(&text_msg("other", msg_id())).await;
    wechat.post_raw("signature=x", "x").await;
    let (query, _) = wechat.signed_query();
    wechat.post_raw(&query, "x").await;
    let metrics = running.metrics().await;
    for outcome in [
        "verified",
        "replied",
        "no_reply",
        "bad_signature",
        "bad_request",
    ] {
        let line =
            format!("wxmp_callback_requests_total{{app=\"counted\",outcome=\"{outcome}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}
