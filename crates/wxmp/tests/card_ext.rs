//! 卡券 cardExt: `POST /v1/apps/{app}/card_ext` signs with the 中控's wx_card api_ticket, and
//! `wxmp sign card-ext` computes the same signature offline (checked against every
//! `wx_card_ext_signature` vector).

mod common;

use common::*;
use serde_json::{json, Value};
use wxmp::config::TokenApi;
use wxmp::emulator::EmulatorConfig;
use wxmp::store::Store;
use wxmp_proto::jssdk::{card_ext_signature, CardExt};

async fn post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let r = client.post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn card_ext_is_signed_with_the_wx_card_ticket() {
    let emu = emulator(EmulatorConfig::default()).await;
    let running = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable)]),
        Store::memory(),
    )
    .await;
    let client = client();
    let url = running.url("/v1/apps/demo/card_ext");
    let (status, ext) = post(
        &client,
        &url,
        json!({"card_id": "pFS7Fjg8kV1IdDz01r4SQwMkuCKc", "code": "c1", "openid": "oUser"}),
    )
    .await;
    assert_eq!(status, 200, "{ext}");
    let (_, ticket) = {
        let r = client
            .get(running.url("/v1/apps/demo/tickets/wx_card"))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let ticket = ticket["ticket"].as_str().unwrap();
    let s = |k: &str| ext[k].as_str().unwrap().to_owned();
    let expected = card_ext_signature(&CardExt {
        api_ticket: ticket,
        nonce_str: &s("nonce_str"),
        timestamp: &s("timestamp"),
        card_id: "pFS7Fjg8kV1IdDz01r4SQwMkuCKc",
        code: "c1",
        openid: "oUser",
    });
    assert_eq!(s("signature"), expected.as_str());
    assert_eq!(s("card_id"), "pFS7Fjg8kV1IdDz01r4SQwMkuCKc");
    // The ready-made string carries exactly what was signed.
    let inner: Value = serde_json::from_str(&s("card_ext")).unwrap();
    assert_eq!(inner["signature"], ext["signature"]);
    assert_eq!(inner["code"], "c1");
    assert_eq!(inner["openid"], "oUser");
    assert_eq!(inner["nonce_str"], ext["nonce_str"]);
    assert_eq!(inner["timestamp"], ext["timestamp"]);
    assert_eq!(emu.emulator().stats(APPID).ticket_calls.wx_card.ok, 1);

    // Without code and openid, both are signed as empty and left out of the card_ext.
    let (status, bare) = post(&client, &url, json!({"card_id": "p1"})).await;
    assert_eq!(status, 200, "{bare}");
    let inner: Value = serde_json::from_str(bare["card_ext"].as_str().unwrap()).unwrap();
    assert!(
        inner.get("code").is_none() && inner.get("openid").is_none(),
        "{inner}"
    );
    let expected = card_ext_signature(&CardExt {
        api_ticket: ticket,
        nonce_str: bare["nonce_str"].as_str().unwrap(),
        timestamp: bare["timestamp"].as_str().unwrap(),
        card_id: "p1",
        ..CardExt::default()
    });
    assert_eq!(bare["signature"], expected.as_str());
    assert_eq!(
        emu.emulator().stats(APPID).ticket_calls.wx_card.ok,
        1,
        "the ticket is held, not fetched per card"
    );
}

#[tokio::test]
async fn bad_card_ext_requests_get_plain_errors() {
    let emu = emulator(EmulatorConfig::default()).await;
    let callback_only = wxmp::config::AppConfig {
        secret: None,
        ..wxmp::config::AppConfig {
            name: "cbonly".into(),
            ..app(TokenApi::Stable)
        }
    };
    let running = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable), callback_only]),
        Store::memory(),
    )
    .await;
    let client = client();
    let url = running.url("/v1/apps/demo/card_ext");
    for body in [
        json!({}),
        json!({"card_id": ""}),
        json!({"card_id": "a b"}),
        json!({"card_id": "p1", "code": "x".repeat(500)}),
        json!({"card_id": "p1", "cardid": "typo"}),
    ] {
        let (status, v) = post(&client, &url, body.clone()).await;
        assert_eq!(status, 400, "{body} → {v}");
        assert_eq!(v["error"]["code"], "bad_request");
    }
    let (status, _) = post(
        &client,
        &running.url("/v1/apps/nope/card_ext"),
        json!({"card_id": "p1"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, v) = post(
        &client,
        &running.url("/v1/apps/cbonly/card_ext"),
        json!({"card_id": "p1"}),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    let r = reqwest::Client::new()
        .post(&url)
        .json(&json!({"card_id": "p1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn sign_card_ext_matches_every_vector() {
    let vectors: Value =
        serde_json::from_str(include_str!("../../wxmp-proto/tests/vectors/vectors.json")).unwrap();
    let all = vectors["wx_card_ext_signature"].as_array().unwrap();
    assert!(all.len() >= 4);
    for v in all {
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxmp"))
            .args([
                "sign",
                "card-ext",
                "--ticket",
                &s("api_ticket"),
                "--nonce-str",
                &s("nonce_str"),
                "--timestamp",
                &s("timestamp"),
                "--card-id",
                &s("card_id"),
                "--code",
                &s("code"),
                "--openid",
                &s("openid"),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", s("id"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            s("signature"),
            "{}",
            s("id")
        );
    }
}
