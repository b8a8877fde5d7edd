//! `wxmp send` acting as WeChat: the pure parts (message XML, signatures, the three modes'
//! bodies, the verdicts on a reply) against `wxmp-proto`'s own checks, then whole exchanges
//! with a small fake callback server that verifies requests the way a real one must and
//! answers encrypted — including a tampered reply, a server slower than WeChat's 5-second
//! deadline, and the GET handshake — and finally the real binary's exit codes.
//!
//! The fake server is written here, against `wxmp-proto` only, rather than reusing wxmp's own
//! callback server: the point is to check `wxmp send` against the protocol, not against
//! another part of wxmp that could share its mistakes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use tokio::net::TcpListener;
use wxmp::send::{
    execute, open_reply, sign_request, Body, BuildError, Credentials, EventBody, Header, Opened,
    Outgoing, ReplyError, Security, SendArgs, SendError,
};
use wxmp_proto::signature::{verify_msg_signature, verify_signature, Token};
use wxmp_proto::{AppId, EncodingAesKey, EncryptedReply, EncryptedRequest, Message, MsgCrypt};

const TOKEN: &str = "pamtest";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wx0123456789abcdef";
const OPENID: &str = "oWxmpTestUser000000000000000";

fn token() -> Token {
    Token::new(TOKEN).unwrap()
}

fn crypt() -> MsgCrypt {
    MsgCrypt::new(
        EncodingAesKey::parse(AES_KEY).unwrap(),
        AppId::new(APPID).unwrap(),
    )
}

fn credentials(security: Security) -> Credentials {
    Credentials {
        token: token(),
        security,
    }
}

fn header(msg_id: Option<u64>) -> Header {
    Header {
        to_user_name: "gh_wxmp_test".to_owned(),
        from_user_name: OPENID.to_owned(),
        create_time: 1_714_036_504,
        msg_id,
    }
}

fn text(content: &str) -> Body {
    Body::Text {
        content: content.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// The pure parts
// ---------------------------------------------------------------------------------------

#[test]
fn text_message_xml_is_the_official_layout() {
    let message = Outgoing::build(&header(Some(6_054_768_590_064_713_728)), &text("ping")).unwrap();
    assert_eq!(
        message.xml,
        "<xml><ToUserName><![CDATA[gh_wxmp_test]]></ToUserName>\
         <FromUserName><![CDATA[oWxmpTestUser000000000000000]]></FromUserName>\
         <CreateTime>1714036504</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[ping]]></Content><MsgId>6054768590064713728</MsgId></xml>"
    );
    let parsed = Message::parse(message.xml.as_bytes()).unwrap();
    assert_eq!(parsed.msg_id(), Some(6_054_768_590_064_713_728));
}

#[test]
fn cdata_terminators_and_cjk_survive_and_control_characters_are_refused() {
    let content = "a]]>b <c> & 你好 😀";
    let message = Outgoing::build(&header(Some(1)), &text(content)).unwrap();
    let parsed = Message::parse(message.xml.as_bytes()).unwrap();
    assert_eq!(parsed.raw.child_text("Content"), Some(content));
    assert_eq!(
        Outgoing::build(&header(Some(1)), &text("bell\u{7}")).unwrap_err(),
        BuildError::ForbiddenCharacter("Content".to_owned())
    );
}

#[test]
fn events_carry_no_msg_id_and_use_wechats_spelling() {
    let click = Body::Event(EventBody::Click {
        key: "V1001_TODAY_MUSIC".to_owned(),
    });
    assert_eq!(
        Outgoing::build(&header(Some(1)), &click).unwrap_err(),
        BuildError::MsgIdOnEvent
    );
    let message = Outgoing::build(&header(None), &click).unwrap();
    assert!(!message.xml.contains("MsgId"));
    let parsed = Message::parse(message.xml.as_bytes()).unwrap();
    assert_eq!(parsed.event().unwrap().name(), "CLICK");
    assert_eq!(
        parsed.event().unwrap().event_key(),
        Some("V1001_TODAY_MUSIC")
    );

    let subscribe = Body::Event(EventBody::Subscribe {
        scene: Some("123123".to_owned()),
        ticket: None,
    });
    let parsed = Message::parse(
        Outgoing::build(&header(None), &subscribe)
            .unwrap()
            .xml
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(parsed.event().unwrap().scene(), Some("123123"));

    let location = Body::Event(EventBody::Location {
        lat: 23.137466,
        lng: 113.352425,
        precision: 119.385,
    });
    let xml = Outgoing::build(&header(None), &location).unwrap().xml;
    assert!(
        xml.contains("<Event><![CDATA[LOCATION]]></Event><Latitude>23.137466</Latitude>"),
        "{xml}"
    );
    Message::parse(xml.as_bytes()).unwrap();
}

#[test]
fn safe_body_decrypts_to_the_built_xml_and_msg_signature_verifies() {
    let message = Outgoing::build(&header(Some(42)), &text("ping")).unwrap();
    let signed = sign_request(
        &credentials(Security::Safe(crypt())),
        &message,
        "1714036504",
        "1514711492",
        *b"aaaabbbbccccdddd",
    )
    .unwrap();
    let p = |name| signed.param(name).unwrap();
    assert_eq!(p("encrypt_type"), "aes");
    assert_eq!(p("openid"), OPENID);
    verify_signature(&token(), p("timestamp"), p("nonce"), p("signature")).unwrap();

    let request = EncryptedRequest::parse(signed.body.as_bytes()).unwrap();
    assert_eq!(request.to_user_name.as_deref(), Some("gh_wxmp_test"));
    // 安全模式: nothing but ToUserName and Encrypt.
    let names: Vec<&str> = request
        .body
        .children
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["ToUserName", "Encrypt"]);
    let plain = request
        .open(
            &crypt(),
            &token(),
            "1714036504",
            "1514711492",
            p("msg_signature"),
        )
        .unwrap();
    assert_eq!(plain.msg, message.xml);
    assert_eq!(&plain.random, b"aaaabbbbccccdddd");
    // The signature covers the timestamp: another one must not verify.
    assert!(verify_msg_signature(
        &token(),
        "1714036505",
        "1514711492",
        &request.encrypt,
        p("msg_signature")
    )
    .is_err());
}

#[test]
fn compat_body_carries_the_plaintext_fields_and_encrypt() {
    let message = Outgoing::build(&header(Some(7)), &text("ping")).unwrap();
    let signed = sign_request(
        &credentials(Security::Compat(crypt())),
        &message,
        "1714036504",
        "1514711492",
        [9; 16],
    )
    .unwrap();
    let plain_fields = Message::parse(signed.body.as_bytes()).unwrap();
    assert_eq!(plain_fields.raw.child_text("Content"), Some("ping"));
    assert_eq!(plain_fields.msg_id(), Some(7));
    let last = plain_fields.raw.children.last().unwrap();
    assert_eq!(last.name, "Encrypt");
    let request = EncryptedRequest::parse(signed.body.as_bytes()).unwrap();
    let opened = request
        .open(
            &crypt(),
            &token(),
            "1714036504",
            "1514711492",
            signed.param("msg_signature").unwrap(),
        )
        .unwrap();
    assert_eq!(opened.msg, message.xml);
    assert_eq!(signed.param("encrypt_type"), Some("aes"));
}

#[test]
fn plain_request_has_the_signature_only() {
    let message = Outgoing::build(&header(Some(7)), &text("ping")).unwrap();
    let signed = sign_request(
        &credentials(Security::Plain),
        &message,
        "1714036504",
        "1514711492",
        [0; 16],
    )
    .unwrap();
    assert_eq!(signed.body, message.xml);
    let names: Vec<&str> = signed.query.iter().map(|(k, _)| *k).collect();
    assert_eq!(names, ["signature", "timestamp", "nonce", "openid"]);
    verify_signature(
        &token(),
        "1714036504",
        "1514711492",
        signed.param("signature").unwrap(),
    )
    .unwrap();
}

#[test]
fn replies_are_judged_like_wechat_judges_them() {
    let safe = credentials(Security::Safe(crypt()));
    let plain = credentials(Security::Plain);
    let compat = credentials(Security::Compat(crypt()));
    assert_eq!(
        open_reply(&safe, b"success").unwrap(),
        Opened::NoReply { empty: false }
    );
    assert_eq!(
        open_reply(&safe, b"").unwrap(),
        Opened::NoReply { empty: true }
    );

    let reply_xml = wxmp_proto::Reply::text("pong")
        .render(OPENID, "gh_wxmp_test", 1)
        .unwrap();
    let sealed = EncryptedReply::seal(&crypt(), &token(), &reply_xml, "1", "2", [3; 16])
        .unwrap()
        .render();

    let Opened::Reply(opened) = open_reply(&safe, sealed.as_bytes()).unwrap() else {
        panic!("expected a reply")
    };
    assert!(opened.encrypted);
    assert_eq!(opened.xml, reply_xml);
    assert_eq!(opened.reply.reply, wxmp_proto::Reply::text("pong"));

    // Compat accepts both; safe refuses plaintext; plain refuses ciphertext.
    assert!(matches!(
        open_reply(&compat, reply_xml.as_bytes()).unwrap(),
        Opened::Reply(r) if !r.encrypted
    ));
    assert_eq!(
        open_reply(&safe, reply_xml.as_bytes()).unwrap_err(),
        ReplyError::PlaintextInSafeMode
    );
    assert_eq!(
        open_reply(&plain, sealed.as_bytes()).unwrap_err(),
        ReplyError::EncryptedInPlainMode
    );

    // A forged signature, another AppID, garbage.
    let tampered = sealed.replace("<TimeStamp>1<", "<TimeStamp>9<");
    assert_eq!(
        open_reply(&safe, tampered.as_bytes()).unwrap_err(),
        ReplyError::BadSignature
    );
    let other = MsgCrypt::new(
        EncodingAesKey::parse(AES_KEY).unwrap(),
        AppId::new("wx0000000000000000").unwrap(),
    );
    let foreign = EncryptedReply::seal(&other, &token(), &reply_xml, "1", "2", [3; 16])
        .unwrap()
        .render();
    let err = open_reply(&safe, foreign.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("-40005"), "{err}");
    assert!(matches!(
        open_reply(&plain, b"{\"json\":1}").unwrap_err(),
        ReplyError::NotXml(_)
    ));
}

// ---------------------------------------------------------------------------------------
// A fake callback server
// ---------------------------------------------------------------------------------------

/// How the fake server misbehaves.
#[derive(Clone, Default)]
struct Behaviour {
    /// Answer the GET handshake with this instead of the echostr.
    wrong_echo: Option<String>,
    /// Corrupt the reply's MsgSignature.
    tamper: bool,
    /// Sleep this long before answering attempts up to `slow_attempts`.
    slow: Option<Duration>,
    slow_attempts: usize,
    /// Answer `success` instead of a text reply.
    no_reply: bool,
    /// Answer in plaintext even when the request was encrypted.
    plaintext_reply: bool,
    /// Answer this reply XML (encrypted when the request was) instead of `pong: …`.
    reply_xml: Option<fn(&Message) -> String>,
}

/// What the server saw of one POST.
#[derive(Clone, Debug)]
struct Seen {
    query: HashMap<String, String>,
    message: Message,
    encrypted: bool,
}

struct FakeState {
    token: Token,
    crypt: MsgCrypt,
    behaviour: Behaviour,
    posts: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

struct Fake {
    url: String,
    state: Arc<FakeState>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

async fn fake(behaviour: Behaviour) -> Fake {
    fake_with_token(TOKEN, behaviour).await
}

async fn fake_with_token(server_token: &str, behaviour: Behaviour) -> Fake {
    let state = Arc::new(FakeState {
        token: Token::new(server_token).unwrap(),
        crypt: crypt(),
        behaviour,
        posts: AtomicUsize::new(0),
        seen: Mutex::new(Vec::new()),
    });
    let router = Router::new()
        .route("/wx/demo", get(handshake).post(push))
        .with_state(Arc::clone(&state));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Fake {
        url: format!("http://{addr}/wx/demo"),
        state,
    }
}

type Params = Query<HashMap<String, String>>;

async fn handshake(State(s): State<Arc<FakeState>>, Query(q): Params) -> (StatusCode, String) {
    let param = |name: &str| q.get(name).map(String::as_str).unwrap_or_default();
    if verify_signature(
        &s.token,
        param("timestamp"),
        param("nonce"),
        param("signature"),
    )
    .is_err()
    {
        return (StatusCode::FORBIDDEN, "bad signature".to_owned());
    }
    match &s.behaviour.wrong_echo {
        Some(body) => (StatusCode::OK, body.clone()),
        None => (StatusCode::OK, param("echostr").to_owned()),
    }
}

/// Checks a push as a callback server must (signature, then msg_signature, then decrypt),
/// and answers `pong: <content>` — encrypted when the request was.
async fn push(
    State(s): State<Arc<FakeState>>,
    Query(q): Params,
    body: Bytes,
) -> (StatusCode, String) {
    let attempt = s.posts.fetch_add(1, Ordering::SeqCst) + 1;
    let param = |name: &str| q.get(name).map(String::as_str).unwrap_or_default();
    let (ts, nonce) = (param("timestamp"), param("nonce"));
    if verify_signature(&s.token, ts, nonce, param("signature")).is_err() {
        return (StatusCode::FORBIDDEN, "bad signature".to_owned());
    }
    let encrypted = param("encrypt_type") == "aes";
    let xml = if encrypted {
        let Ok(request) = EncryptedRequest::parse(&body) else {
            return (StatusCode::BAD_REQUEST, "no Encrypt".to_owned());
        };
        match request.open(&s.crypt, &s.token, ts, nonce, param("msg_signature")) {
            Ok(plain) => plain.msg,
            Err(e) => return (StatusCode::FORBIDDEN, e.to_string()),
        }
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let Ok(message) = Message::parse(xml.as_bytes()) else {
        return (StatusCode::BAD_REQUEST, "bad xml".to_owned());
    };
    s.seen.lock().unwrap().push(Seen {
        query: q.clone(),
        message: message.clone(),
        encrypted,
    });
    if let Some(slow) = s.behaviour.slow {
        if attempt <= s.behaviour.slow_attempts {
            tokio::time::sleep(slow).await;
        }
    }
    if s.behaviour.no_reply {
        return (StatusCode::OK, "success".to_owned());
    }
    let content = message.raw.child_text("Content").unwrap_or("event");
    let reply = match s.behaviour.reply_xml {
        Some(reply_xml) => reply_xml(&message),
        None => wxmp_proto::Reply::text(format!("pong: {content}"))
            .render_for(&message, 1_714_036_600)
            .unwrap(),
    };
    if !encrypted || s.behaviour.plaintext_reply {
        return (StatusCode::OK, reply);
    }
    let mut sealed =
        EncryptedReply::seal(&s.crypt, &s.token, &reply, "1714036600", nonce, [5; 16]).unwrap();
    let mut wire = sealed.render();
    if s.behaviour.tamper {
        sealed.timestamp = "1714036601".to_owned();
        wire = sealed.render();
    }
    (StatusCode::OK, wire)
}

// ---------------------------------------------------------------------------------------
// Whole exchanges, in process
// ---------------------------------------------------------------------------------------

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SendArgs,
}

fn args(url: &str, rest: &[&str]) -> SendArgs {
    let mut argv = vec!["wxmp-send", "--url", url];
    argv.extend_from_slice(rest);
    Cli::try_parse_from(argv).unwrap().args
}

const SAFE: &[&str] = &[
    "--token",
    TOKEN,
    "--aes-key",
    AES_KEY,
    "--appid",
    APPID,
    "--mode",
    "safe",
];

/// Runs `wxmp send` in process and returns (result, stdout, stderr).
async fn send(args: SendArgs) -> (Result<(), SendError>, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let result = execute(args, &mut out, &mut err).await;
    (
        result,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn safe_args(url: &str, rest: &[&str]) -> SendArgs {
    let mut all = SAFE.to_vec();
    all.extend_from_slice(rest);
    args(url, &all)
}

fn failure(result: Result<(), SendError>) -> String {
    match result {
        Err(SendError::Failed(e)) => format!("{e:#}"),
        Err(SendError::Usage(e)) => panic!("usage error instead of a failure: {e}"),
        Ok(()) => panic!("expected a failure"),
    }
}

#[tokio::test]
async fn safe_mode_reply_is_verified_decrypted_and_printed() {
    let server = fake(Behaviour::default()).await;
    let (result, out, err) = send(safe_args(&server.url, &["--raw", "text", "ping"])).await;
    result.unwrap();
    assert!(
        out.contains("text reply (encrypted, MsgSignature verified)"),
        "{out}"
    );
    assert!(out.contains("Content       pong: ping"), "{out}");
    assert!(
        out.contains("ToUserName    oWxmpTestUser000000000000000"),
        "{out}"
    );
    // --raw: the envelope as received, then the decrypted XML.
    assert!(out.contains("<MsgSignature>"), "{out}");
    assert!(
        out.contains("<Content><![CDATA[pong: ping]]></Content>"),
        "{out}"
    );
    assert!(err.contains("attempt 1/3: POST"), "{err}");
    assert!(err.contains("HTTP 200 OK"), "{err}");

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].encrypted);
    assert_eq!(
        seen[0].query.get("openid").map(String::as_str),
        Some(OPENID)
    );
    assert_eq!(seen[0].message.to_user_name, "gh_wxmp_test");
    assert!(seen[0].message.msg_id().is_some());
}

#[tokio::test]
async fn tampered_reply_signature_is_an_error() {
    let server = fake(Behaviour {
        tamper: true,
        ..Behaviour::default()
    })
    .await;
    let (result, out, _) = send(safe_args(&server.url, &["text", "ping"])).await;
    let error = failure(result);
    assert!(error.contains("MsgSignature does not verify"), "{error}");
    assert!(out.is_empty(), "{out}");
}

#[tokio::test]
async fn plaintext_reply_is_refused_in_safe_mode_and_accepted_in_compat_mode() {
    let server = fake(Behaviour {
        plaintext_reply: true,
        ..Behaviour::default()
    })
    .await;
    let (result, _, _) = send(safe_args(&server.url, &["text", "ping"])).await;
    assert!(failure(result).contains("safe mode"));

    let compat = [
        "--token",
        TOKEN,
        "--aes-key",
        AES_KEY,
        "--appid",
        APPID,
        "--mode",
        "compat",
        "text",
        "ping",
    ];
    let (result, out, err) = send(args(&server.url, &compat)).await;
    result.unwrap();
    assert!(out.contains("text reply (plaintext)"), "{out}");
    assert!(err.contains("accepted in compat mode"), "{err}");
    assert!(server.seen().iter().all(|s| s.encrypted));
}

#[tokio::test]
async fn plain_mode_event_and_no_reply() {
    let server = fake(Behaviour {
        no_reply: true,
        ..Behaviour::default()
    })
    .await;
    let (result, out, _) = send(args(
        &server.url,
        &["--token", TOKEN, "event", "subscribe", "--scene", "42"],
    ))
    .await;
    result.unwrap();
    assert_eq!(out, "(no reply: success)\n");
    let seen = server.seen();
    assert!(!seen[0].encrypted);
    assert_eq!(seen[0].message.event().unwrap().scene(), Some("42"));
    assert_eq!(seen[0].message.msg_id(), None);
}

#[tokio::test]
async fn a_reply_to_someone_else_is_warned_about() {
    let server = fake(Behaviour::default()).await;
    // A server answers whoever sent the message: no warning.
    let (result, _, err) = send(safe_args(&server.url, &["--from", "oOther", "text", "x"])).await;
    result.unwrap();
    assert!(!err.contains("warning"), "{err}");
    // A reply addressed to someone else is warned about.
    let reply = wxmp_proto::Reply::text("x")
        .render("oSomeoneElse", "gh_wxmp_test", 1)
        .unwrap();
    let Opened::Reply(opened) =
        open_reply(&credentials(Security::Plain), reply.as_bytes()).unwrap()
    else {
        panic!("expected a reply")
    };
    let sent = Outgoing::build(&header(Some(1)), &text("x")).unwrap();
    let warnings = wxmp::send::warnings(&opened, &sent);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("oSomeoneElse"), "{warnings:?}");
}

#[tokio::test]
async fn replies_wechat_may_refuse_are_warned_about_but_shown() {
    // A raw `]]>` outside CDATA and a CreateTime in milliseconds, sealed in safe mode.
    let server = fake(Behaviour {
        reply_xml: Some(|m: &Message| {
            format!(
                "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[{}]]></FromUserName>\
                 <CreateTime>1714036600123</CreateTime><MsgType><![CDATA[text]]></MsgType>\
                 <Content>a]]>b</Content></xml>",
                m.from_user_name, m.to_user_name
            )
        }),
        ..Behaviour::default()
    })
    .await;
    let (result, out, err) = send(safe_args(&server.url, &["text", "hi"])).await;
    result.unwrap();
    assert!(out.contains("a]]>b"), "{out}");
    assert!(
        err.contains("warning: the reply has a raw `]]>` outside CDATA"),
        "{err}"
    );
    assert!(
        err.contains("warning: the reply's CreateTime 1714036600123 has 13 digits"),
        "{err}"
    );
    assert_eq!(err.matches("warning:").count(), 2, "{err}");

    // Each warning alone, on plaintext replies read back.
    let sent = Outgoing::build(&header(Some(1)), &text("x")).unwrap();
    let check = |xml: String, needle: &str| {
        let Opened::Reply(opened) =
            open_reply(&credentials(Security::Plain), xml.as_bytes()).unwrap()
        else {
            panic!("expected a reply")
        };
        let warnings = wxmp::send::warnings(&opened, &sent);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(needle), "{warnings:?}");
    };
    let to = sent.from_user_name.clone();
    let account = sent.to_user_name.clone();
    let reply = |from: &str, create_time: u64, content: &str| {
        wxmp_proto::Reply::text(content)
            .render(&to, from, create_time)
            .unwrap()
    };
    check(
        reply("gh_other", 1_714_036_600, "x"),
        "FromUserName is \"gh_other\"",
    );
    check(
        reply(&account, 1_714_036_600_000, "x"),
        "looks like milliseconds",
    );
    check(reply(&account, 1_714_036_600, " "), "Content is empty");
    check(
        reply(&account, 1_714_036_600, "x").replace("<![CDATA[x]]>", "x]]>"),
        "raw `]]>`",
    );
    // A reply WeChat documents draws no warning.
    let Opened::Reply(opened) = open_reply(
        &credentials(Security::Plain),
        reply(&account, 1_714_036_600, "a]]>b").as_bytes(),
    )
    .unwrap() else {
        panic!("expected a reply")
    };
    assert_eq!(wxmp::send::warnings(&opened, &sent), Vec::<String>::new());
}

#[tokio::test]
async fn a_server_slower_than_five_seconds_gets_the_same_message_again() {
    let server = fake(Behaviour {
        slow: Some(Duration::from_secs(6)),
        slow_attempts: 1,
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    // The default deadline: 5 s, as WeChat.
    let (result, out, err) = send(safe_args(&server.url, &["text", "ping"])).await;
    let elapsed = started.elapsed();
    result.unwrap();
    assert!(out.contains("pong: ping"), "{out}");
    assert!(
        err.contains("attempt 1/3: no answer within 5000 ms"),
        "{err}"
    );
    assert!(err.contains("attempt 2/3: HTTP 200 OK"), "{err}");
    assert!(elapsed >= Duration::from_secs(5), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(12), "{elapsed:?}");

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    // The same message, freshly signed.
    assert_eq!(seen[0].message.msg_id(), seen[1].message.msg_id());
    assert_eq!(seen[0].message.create_time, seen[1].message.create_time);
    assert_eq!(seen[0].message.raw, seen[1].message.raw);
    assert_ne!(seen[0].query.get("nonce"), seen[1].query.get("nonce"));
    assert_ne!(
        seen[0].query.get("msg_signature"),
        seen[1].query.get("msg_signature")
    );
}

#[tokio::test]
async fn retries_are_bounded_and_configurable() {
    let server = fake(Behaviour {
        slow: Some(Duration::from_secs(3)),
        slow_attempts: usize::MAX,
        ..Behaviour::default()
    })
    .await;
    let (result, _, err) = send(safe_args(
        &server.url,
        &["--timeout-ms", "200", "--retries", "1", "text", "ping"],
    ))
    .await;
    let error = failure(result);
    assert!(error.contains("after 2 attempt(s)"), "{error}");
    assert!(error.contains("no answer within 200 ms"), "{error}");
    assert!(err.contains("attempt 2/2"), "{err}");
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn repeated_msg_id_and_create_time_are_sent_as_given() {
    let server = fake(Behaviour::default()).await;
    for _ in 0..2 {
        let (result, _, _) = send(safe_args(
            &server.url,
            &[
                "--msg-id",
                "1234567890123456",
                "--create-time",
                "1700000000",
                "text",
                "hi",
            ],
        ))
        .await;
        result.unwrap();
    }
    for seen in server.seen() {
        assert_eq!(seen.message.msg_id(), Some(1_234_567_890_123_456));
        assert_eq!(seen.message.create_time, 1_700_000_000);
    }
}

#[tokio::test]
async fn verify_handshake_good_and_bad() {
    let good = fake(Behaviour::default()).await;
    let (result, out, _) = send(args(&good.url, &["--token", TOKEN, "--verify"])).await;
    result.unwrap();
    assert!(out.starts_with("URL verified:"), "{out}");

    // A body that is not the echostr verbatim (here with a trailing newline).
    let bad = fake(Behaviour {
        wrong_echo: Some("\"12345\"\n".to_owned()),
        ..Behaviour::default()
    })
    .await;
    let (result, _, _) = send(args(&bad.url, &["--token", TOKEN, "--verify"])).await;
    let error = failure(result);
    assert!(error.contains("verbatim"), "{error}");

    // A server with another Token refuses.
    let other = fake_with_token("another", Behaviour::default()).await;
    let (result, _, _) = send(args(&other.url, &["--token", TOKEN, "--verify"])).await;
    let error = failure(result);
    assert!(error.contains("403"), "{error}");
}

#[tokio::test]
async fn credentials_come_from_the_config_file() {
    let server = fake(Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxmp.toml");
    std::fs::write(
        &path,
        format!(
            "[apps.other]\nappid = \"wx1111111111111111\"\ntoken = \"nottheone\"\n\n\
             [apps.demo]\nappid = \"{APPID}\"\ntoken = \"{TOKEN}\"\n\
             encoding_aes_key = \"{AES_KEY}\"\nmode = \"safe\"\n"
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    // The app is inferred from /wx/demo.
    let (result, out, _) = send(args(&server.url, &["--config", config, "text", "ping"])).await;
    result.unwrap();
    assert!(out.contains("(encrypted, MsgSignature verified)"), "{out}");
    // Named explicitly, a wrong app is refused by the server.
    let (result, _, _) = send(args(
        &server.url,
        &["--config", config, "--app", "other", "text", "ping"],
    ))
    .await;
    assert!(failure(result).contains("HTTP 403"));
    let (result, _, _) = send(args(
        &server.url,
        &["--config", config, "--app", "nope", "text", "ping"],
    ))
    .await;
    assert!(failure(result).contains("no app \"nope\""));
}

#[tokio::test]
async fn a_hand_written_push_is_sent_as_is() {
    let server = fake(Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("push.xml");
    std::fs::write(
        &path,
        "<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[oHand]]></FromUserName>\
         <CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>\
         <Status><![CDATA[success]]></Status></xml>\n",
    )
    .unwrap();
    let (result, out, _) = send(safe_args(&server.url, &["--xml", path.to_str().unwrap()])).await;
    result.unwrap();
    assert!(out.contains("ToUserName    oHand"), "{out}");
    let seen = server.seen();
    assert_eq!(
        seen[0].message.event().unwrap().name(),
        "TEMPLATESENDJOBFINISH"
    );
    assert_eq!(
        seen[0].query.get("openid").map(String::as_str),
        Some("oHand")
    );
}

#[tokio::test]
async fn usage_mistakes_are_usage_errors() {
    let url = "http://127.0.0.1:9/wx/demo";
    for argv in [
        &["--token", TOKEN][..],
        &["--token", TOKEN, "--mode", "safe", "text", "x"],
        &["--token", TOKEN, "--msg-id", "1", "event", "unsubscribe"],
        &["--token", TOKEN, "--verify", "text", "x"],
    ] {
        let (result, _, _) = send(args(url, argv)).await;
        assert!(matches!(result, Err(SendError::Usage(_))), "{argv:?}");
    }
}

// ---------------------------------------------------------------------------------------
// The real binary: exit codes
// ---------------------------------------------------------------------------------------

async fn wxmp(argv: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wxmp"))
        .arg("send")
        .args(argv)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_binary_exits_0_1_and_2() {
    let server = fake(Behaviour::default()).await;
    let mut ok = vec!["--url", server.url.as_str()];
    ok.extend_from_slice(SAFE);
    ok.extend_from_slice(&["text", "ping"]);
    let out = wxmp(&ok).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("pong: ping"));

    // Refused signature: the server has another Token.
    let other = fake_with_token("another", Behaviour::default()).await;
    let out = wxmp(&["--url", &other.url, "--token", TOKEN, "text", "ping"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 403"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("wxmp:")).count(), 1);

    // Unreachable: a port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("http://{closed}/wx/demo");
    let out = wxmp(&["--url", &url, "--token", TOKEN, "text", "ping"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("attempt 3/3"), "{stderr}");
    assert!(stderr.contains("connection failed"), "{stderr}");

    // Bad usage.
    for argv in [
        &["--url", &url, "text", "ping"][..],
        &["--url", &url, "--token", TOKEN],
        &["--url", "ftp://x", "--token", TOKEN, "text", "x"],
        &[
            "--url", &url, "--token", TOKEN, "--mode", "secret", "text", "x",
        ],
        &[
            "--url",
            &url,
            "--token",
            TOKEN,
            "--aes-key",
            "short",
            "--appid",
            APPID,
            "text",
            "x",
        ],
    ] {
        let out = wxmp(argv).await;
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {out:?}");
    }
}
