//! Property tests of the crypto layer: encryption round-trips for any message, key, AppID and
//! random prefix; and no input — key text, ciphertext, envelope — can make it panic.

use proptest::prelude::*;
use wxmp_proto::signature::{self, Token};
use wxmp_proto::{AppId, EncodingAesKey, EncryptedReply, EncryptedRequest, MsgCrypt};

fn appid() -> impl Strategy<Value = String> {
    "[!-~]{1,64}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encrypt_then_decrypt_is_identity(
        msg in any::<String>(),
        key in any::<[u8; 32]>(),
        appid in appid(),
        random in any::<[u8; 16]>(),
        token in "[A-Za-z0-9]{3,32}",
        timestamp in "[0-9]{1,10}",
        nonce in "[0-9A-Za-z]{1,16}",
    ) {
        let crypt = MsgCrypt::new(EncodingAesKey::from_bytes(key), AppId::new(appid).unwrap());
        let token = Token::new(token).unwrap();
        let reply = EncryptedReply::seal(&crypt, &token, &msg, &timestamp, &nonce, random).unwrap();
        let parsed = EncryptedReply::parse(reply.render().as_bytes()).unwrap();
        let plain = parsed.open(&crypt, &token).unwrap();
        prop_assert_eq!(plain.msg, msg);
        prop_assert_eq!(plain.random, random);
    }

    #[test]
    fn the_key_text_round_trips(key in any::<[u8; 32]>()) {
        let key = EncodingAesKey::from_bytes(key);
        prop_assert_eq!(EncodingAesKey::parse(&key.to_encoding_aes_key()).unwrap(), key);
    }

    #[test]
    fn any_key_text_parses_or_fails_with_40004(text in any::<String>()) {
        if let Err(e) = EncodingAesKey::parse(&text) {
            prop_assert_eq!(e.code(), -40004);
        }
    }

    #[test]
    fn any_signed_ciphertext_decrypts_or_fails_cleanly(encrypt in any::<String>(), key in any::<[u8; 32]>()) {
        let crypt = MsgCrypt::new(EncodingAesKey::from_bytes(key), AppId::new("wx1").unwrap());
        let token = Token::new("tok").unwrap();
        let sig = signature::msg_signature(&token, "1", "n", &encrypt);
        let verified = signature::verify_msg_signature(&token, "1", "n", &encrypt, sig.as_str()).unwrap();
        if let Err(e) = crypt.decrypt(verified) {
            prop_assert!([-40005, -40007, -40008, -40010].contains(&e.code()), "{e}");
        }
    }

    #[test]
    fn any_base64_block_decrypts_or_fails_cleanly(cipher in proptest::collection::vec(any::<u8>(), 0..200), key in any::<[u8; 32]>()) {
        use base64::Engine;
        let encrypt = base64::engine::general_purpose::STANDARD.encode(&cipher);
        let crypt = MsgCrypt::new(EncodingAesKey::from_bytes(key), AppId::new("wx1").unwrap());
        let token = Token::new("tok").unwrap();
        let sig = signature::msg_signature(&token, "1", "n", &encrypt);
        let verified = signature::verify_msg_signature(&token, "1", "n", &encrypt, sig.as_str()).unwrap();
        if let Err(e) = crypt.decrypt(verified) {
            prop_assert!([-40005, -40007, -40008].contains(&e.code()), "{e}");
        }
    }

    #[test]
    fn any_envelope_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = EncryptedRequest::parse(&body);
        let _ = EncryptedReply::parse(&body);
    }

    #[test]
    fn signature_is_order_independent(a in any::<String>(), b in any::<String>(), c in any::<String>()) {
        let one = wxmp_proto::Signature::of_sorted(&mut [&a, &b, &c]);
        let two = wxmp_proto::Signature::of_sorted(&mut [&c, &a, &b]);
        prop_assert_eq!(one, two);
        prop_assert!(one.verify(one.as_str()).is_ok());
    }
}
