//! Changing the EncodingAESKey in the console loses no message: while
//! `encoding_aes_key_previous` is set, pushes sealed with either key are opened, and each reply
//! is sealed with the key its push used (the sender may not know the other one yet).

#[path = "callback_util/mod.rs"]
mod callback_util;

use callback_util::*;
use wxmp::config::{AutoReply, Mode};
use wxmp::store::Store;
use wxmp_proto::signature::Token;
use wxmp_proto::{AppId, EncodingAesKey, EncryptedReply, MsgCrypt};

const NEW_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
const OTHER_KEY: &str = "0000000000111111111122222222223333333333444";

fn crypt_of(key: &str) -> MsgCrypt {
    MsgCrypt::new(
        EncodingAesKey::parse(key).unwrap(),
        AppId::new(APPID).unwrap(),
    )
}

/// Opens `answer` with `crypt`, or says why not.
fn open_with(answer: &Answer, crypt: &MsgCrypt) -> Result<String, String> {
    let reply = EncryptedReply::parse(answer.body.as_bytes())
        .map_err(|e| format!("not an encrypted reply ({e}): {}", answer.body))?;
    reply
        .open(crypt, &Token::new(TOKEN).unwrap())
        .map(|p| p.msg)
        .map_err(|e| e.to_string())
}

async fn rotating(mode: Mode) -> Running {
    let app = wxmp::config::AppConfig {
        crypt: Some(crypt_of(NEW_KEY)),
        crypt_previous: Some(crypt()),
        auto_reply: AutoReply {
            keywords: keywords(&[("ping", "pong")]),
            ..AutoReply::default()
        },
        ..app("rot", mode)
    };
    start(config(NO_UPSTREAM, vec![app]), Store::memory()).await
}

#[tokio::test]
async fn both_keys_open_and_each_reply_uses_the_push_key() {
    for mode in [Mode::Safe, Mode::Compat] {
        let running = rotating(mode).await;
        let wechat = Wechat::new(&running, "rot");
        for (key, other) in [(NEW_KEY, AES_KEY), (AES_KEY, NEW_KEY)] {
            let (query, body, nonce) = wechat.sealed(&text_msg("ping", msg_id()), &crypt_of(key));
            let mut answer = wechat.post_raw(&query, body).await;
            answer.nonce = nonce;
            assert_eq!(answer.status, 200, "{mode:?} {}", answer.body);
            let xml = open_with(&answer, &crypt_of(key)).expect("sealed with the push's key");
            assert_eq!(text_of(&xml), "pong");
            assert!(
                open_with(&answer, &crypt_of(other)).is_err(),
                "{mode:?}: the reply must not be sealed with the other key"
            );
        }
        // A third key is neither: refused as undecryptable, not a 5xx.
        let (query, body, _) = wechat.sealed(&text_msg("ping", msg_id()), &crypt_of(OTHER_KEY));
        let answer = wechat.post_raw(&query, body).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert!(answer.body.contains("does not decrypt"), "{}", answer.body);
    }
}

#[tokio::test]
async fn without_the_previous_key_old_pushes_are_refused() {
    let app = wxmp::config::AppConfig {
        crypt: Some(crypt_of(NEW_KEY)),
        ..app("new_only", Mode::Safe)
    };
    let running = start(config(NO_UPSTREAM, vec![app]), Store::memory()).await;
    let wechat = Wechat::new(&running, "new_only");
    let (query, body, _) = wechat.sealed(&text_msg("ping", msg_id()), &crypt());
    assert_eq!(wechat.post_raw(&query, body).await.status, 400);
}

#[test]
fn the_config_key_is_parsed_and_checked() {
    let env = std::collections::HashMap::<String, String>::new();
    let base = format!(
        "[apps.a]\nappid = \"{APPID}\"\ntoken = \"{TOKEN}\"\nencoding_aes_key = \"{NEW_KEY}\"\n"
    );
    let ok = format!("{base}encoding_aes_key_previous = \"{AES_KEY}\"\n");
    let config = wxmp::config::Config::parse(&ok, &env).unwrap();
    assert!(config.app("a").unwrap().crypt_previous.is_some());

    let same = format!("{base}encoding_aes_key_previous = \"{NEW_KEY}\"\n");
    let err = wxmp::config::Config::parse(&same, &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is the same as"), "{err}");

    let bad = format!("{base}encoding_aes_key_previous = \"short\"\n");
    let err = wxmp::config::Config::parse(&bad, &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoding_aes_key_previous"), "{err}");

    let alone = format!(
        "[apps.a]\nappid = \"{APPID}\"\ntoken = \"{TOKEN}\"\nencoding_aes_key_previous = \"{AES_KEY}\"\n"
    );
    let err = wxmp::config::Config::parse(&alone, &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoding_aes_key is missing"), "{err}");
}
