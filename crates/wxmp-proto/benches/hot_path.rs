//! The callback hot path, both directions, for a safe-mode text message of about 300 bytes:
//!
//! - inbound: parse the `<Encrypt>` envelope, verify `msg_signature`, decrypt, parse the
//!   message into its typed value;
//! - outbound: render the text reply, encrypt it, sign it, render the reply envelope.
//!
//! Target (issue #2): each side ≤ 5 µs on the 2-core CI machine. Results: docs/performance.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use wxmp_proto::signature::{msg_signature, Token};
use wxmp_proto::{
    AppId, EncodingAesKey, EncryptedReply, EncryptedRequest, Message, MsgCrypt, Reply,
};

const TOKEN: &str = "pamtest";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wxb11529c136998cb6";
const TIMESTAMP: &str = "1409304348";
const NONCE: &str = "1320562132";

/// A realistic ~300-byte text push.
fn inbound_xml() -> String {
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\
     <FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\
     <CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType>\
     <Content><![CDATA[你好，wxmp! ping ping ping 1234567890]]></Content>\
     <MsgId>6054768590064713728</MsgId></xml>"
        .to_owned()
}

fn setup() -> (MsgCrypt, Token) {
    let crypt = MsgCrypt::new(
        EncodingAesKey::parse(KEY).expect("sample key"),
        AppId::new(APPID).expect("appid"),
    );
    (crypt, Token::new(TOKEN).expect("token"))
}

fn bench(c: &mut Criterion) {
    let (crypt, token) = setup();
    let xml = inbound_xml();
    let encrypt = crypt.encrypt(&xml, *b"0123456789abcdef").expect("encrypt");
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    let sig = msg_signature(&token, TIMESTAMP, NONCE, &encrypt).to_string();

    let mut group = c.benchmark_group("safe_mode_text");
    group.throughput(Throughput::Bytes(xml.len() as u64));
    group.bench_function("inbound: verify + decrypt + parse", |b| {
        b.iter(|| {
            let request = EncryptedRequest::parse(black_box(body.as_bytes())).expect("envelope");
            let plain = request
                .open(&crypt, &token, TIMESTAMP, NONCE, black_box(&sig))
                .expect("open");
            Message::parse(plain.msg.as_bytes()).expect("message")
        })
    });

    let message = Message::parse(xml.as_bytes()).expect("message");
    let reply = Reply::text("pong! 你好，这是自动回复。");
    group.bench_function("outbound: render + encrypt + sign", |b| {
        b.iter(|| {
            let rendered = reply
                .render_for(black_box(&message), 1409735669)
                .expect("render");
            let sealed = EncryptedReply::seal(
                &crypt,
                &token,
                &rendered,
                TIMESTAMP,
                NONCE,
                *b"fedcba9876543210",
            )
            .expect("seal");
            sealed.render()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
