//! Every signature and crypto vector of `vectors.json` (the project's copy of
//! `shared/protocol/vectors.json`): official samples, generated edge cases and negatives, each
//! negative to its official error code.
//!
//! The message and reply samples of the same file are checked in `messages.rs` and
//! `replies.rs`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use wxmp_proto::jssdk::{self, CardExt};
use wxmp_proto::signature::{self, Token};
use wxmp_proto::{AppId, EncodingAesKey, EncryptedReply, EncryptedRequest, Error, MsgCrypt};

const VECTORS: &str = include_str!("vectors/vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors.json is valid JSON")
}

fn list<T: for<'de> Deserialize<'de>>(key: &str) -> Vec<T> {
    serde_json::from_value(vectors()[key].clone()).unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn token(t: &str) -> Token {
    Token::new(t).unwrap()
}

#[derive(Deserialize)]
struct KeyDerivation {
    encoding_aes_key: String,
    aes_key_hex: String,
    iv_hex: String,
    last_char_nonzero_trailing_bits: bool,
}

#[test]
fn aes_key_derivation() {
    let all: Vec<KeyDerivation> = list("aes_key_derivation");
    assert!(!all.is_empty());
    for v in all {
        let key = EncodingAesKey::parse(&v.encoding_aes_key).unwrap();
        assert_eq!(hex::encode(key.aes_key()), v.aes_key_hex);
        assert_eq!(hex::encode(key.iv()), v.iv_hex);
        // The trap this vector documents: a strict decoder fails exactly on these keys.
        let strict = STANDARD.decode(format!("{}=", v.encoding_aes_key));
        assert_eq!(strict.is_err(), v.last_char_nonzero_trailing_bits);
    }
}

#[derive(Deserialize)]
struct UrlSignature {
    id: String,
    token: String,
    timestamp: String,
    nonce: String,
    sorted_concat: Option<String>,
    signature: String,
    echostr: Option<String>,
    expected_response_body: Option<String>,
}

#[test]
fn url_signatures() {
    let all: Vec<UrlSignature> = list("url_signature_plain");
    assert_eq!(all.len(), 6);
    for v in all {
        let tok = token(&v.token);
        let sig = signature::signature(&tok, &v.timestamp, &v.nonce);
        assert_eq!(sig.as_str(), v.signature, "{}", v.id);
        assert!(signature::verify_signature(&tok, &v.timestamp, &v.nonce, &v.signature).is_ok());
        if let Some(concat) = v.sorted_concat {
            let mut parts = [v.token.as_str(), &v.timestamp, &v.nonce];
            parts.sort_unstable();
            assert_eq!(parts.concat(), concat, "{}", v.id);
        }
        if let (Some(echostr), Some(body)) = (v.echostr, v.expected_response_body) {
            assert_eq!(echostr, body, "the handshake echoes echostr verbatim");
        }
    }
}

#[test]
fn url_signature_negatives() {
    let all: Vec<UrlSignature> = list("url_signature_plain_negative");
    assert!(!all.is_empty());
    for v in all {
        let result =
            signature::verify_signature(&token(&v.token), &v.timestamp, &v.nonce, &v.signature);
        assert_eq!(result, Err(Error::ValidateSignature), "{}", v.id);
        assert_eq!(Error::ValidateSignature.code(), -40001);
    }
}

#[derive(Deserialize)]
struct JssdkVector {
    id: String,
    jsapi_ticket: String,
    noncestr: String,
    timestamp: String,
    url: String,
    string1: String,
    signature: String,
}

#[test]
fn jssdk_signatures() {
    let all: Vec<JssdkVector> = list("jssdk_signature");
    assert_eq!(all.len(), 2);
    for v in all {
        let string1 = jssdk::jsapi_string1(&v.jsapi_ticket, &v.noncestr, &v.timestamp, &v.url);
        assert_eq!(string1, v.string1, "{}", v.id);
        let sig = jssdk::jsapi_signature(&v.jsapi_ticket, &v.noncestr, &v.timestamp, &v.url);
        assert_eq!(sig.as_str(), v.signature, "{}", v.id);
        let with_fragment = format!("{}#/route?x=1", v.url);
        let sig =
            jssdk::jsapi_signature(&v.jsapi_ticket, &v.noncestr, &v.timestamp, &with_fragment);
        assert_eq!(
            sig.as_str(),
            v.signature,
            "{}: fragment must not be signed",
            v.id
        );
    }
}

#[derive(Deserialize)]
struct CardVector {
    id: String,
    api_ticket: String,
    nonce_str: String,
    timestamp: String,
    card_id: String,
    code: String,
    openid: String,
    signature: String,
}

#[test]
fn wx_card_ext_signatures() {
    let all: Vec<CardVector> = list("wx_card_ext_signature");
    assert_eq!(all.len(), 4);
    for v in all {
        let sig = jssdk::card_ext_signature(&CardExt {
            api_ticket: &v.api_ticket,
            nonce_str: &v.nonce_str,
            timestamp: &v.timestamp,
            card_id: &v.card_id,
            code: &v.code,
            openid: &v.openid,
        });
        assert_eq!(sig.as_str(), v.signature, "{}", v.id);
    }
}

#[derive(Deserialize)]
struct CryptoVector {
    id: String,
    kind: String,
    token: String,
    encoding_aes_key: String,
    appid: String,
    timestamp: String,
    nonce: String,
    random_hex: Option<String>,
    random_recovered_hex: Option<String>,
    msg: String,
    msg_len: usize,
    pad_value: usize,
    padded_len: usize,
    ciphertext_hex: Option<String>,
    encrypt_b64: String,
    msg_signature: String,
    reply_xml_java_sample_format: Option<String>,
    post_body: Option<String>,
}

impl CryptoVector {
    fn crypt(&self) -> MsgCrypt {
        MsgCrypt::new(
            EncodingAesKey::parse(&self.encoding_aes_key).unwrap(),
            AppId::new(self.appid.clone()).unwrap(),
        )
    }

    fn random(&self) -> [u8; 16] {
        let hex = self
            .random_hex
            .as_ref()
            .or(self.random_recovered_hex.as_ref())
            .unwrap();
        hex::decode(hex).unwrap().try_into().unwrap()
    }
}

fn check_crypto_vector(v: &CryptoVector) {
    let crypt = v.crypt();
    let tok = token(&v.token);
    assert_eq!(v.msg.len(), v.msg_len, "{}", v.id);

    // Layout: the padded length and pad value follow from the message length alone.
    let full = 20 + v.msg_len + v.appid.len();
    assert_eq!(32 - full % 32, v.pad_value, "{}", v.id);
    assert_eq!(full + v.pad_value, v.padded_len, "{}", v.id);

    // Encryption with the vector's random prefix reproduces the ciphertext byte for byte.
    let encrypt = crypt.encrypt(&v.msg, v.random()).unwrap();
    assert_eq!(encrypt, v.encrypt_b64, "{}: Encrypt", v.id);
    if let Some(ct) = &v.ciphertext_hex {
        assert_eq!(
            hex::encode(STANDARD.decode(&encrypt).unwrap()),
            *ct,
            "{}",
            v.id
        );
    }

    // msg_signature, then decryption behind it, recovers message and random prefix.
    let sig = signature::msg_signature(&tok, &v.timestamp, &v.nonce, &v.encrypt_b64);
    assert_eq!(sig.as_str(), v.msg_signature, "{}: msg_signature", v.id);
    let verified = signature::verify_msg_signature(
        &tok,
        &v.timestamp,
        &v.nonce,
        &v.encrypt_b64,
        &v.msg_signature,
    )
    .unwrap();
    let plain = crypt.decrypt(verified).unwrap();
    assert_eq!(plain.msg, v.msg, "{}: byte-exact message", v.id);
    assert_eq!(plain.random, v.random(), "{}: random prefix", v.id);

    // The encrypted reply renders exactly like the official Java sample.
    if let Some(expected) = &v.reply_xml_java_sample_format {
        let reply =
            EncryptedReply::seal(&crypt, &tok, &v.msg, &v.timestamp, &v.nonce, v.random()).unwrap();
        assert_eq!(reply.render(), *expected, "{}: reply XML", v.id);
        let parsed = EncryptedReply::parse(expected.as_bytes()).unwrap();
        assert_eq!(parsed.open(&crypt, &tok).unwrap().msg, v.msg, "{}", v.id);
    }

    // The inbound POST body (safe or compat mode) yields the same Encrypt and opens.
    if let Some(body) = &v.post_body {
        let request = EncryptedRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(request.encrypt, v.encrypt_b64, "{}", v.id);
        let plain = request
            .open(&crypt, &tok, &v.timestamp, &v.nonce, &v.msg_signature)
            .unwrap();
        assert_eq!(plain.msg, v.msg, "{}", v.id);
    }
    assert!(v.kind == "encrypt" || v.kind == "decrypt", "{}", v.id);
}

#[test]
fn crypto_official() {
    let all: Vec<CryptoVector> = list("crypto_official");
    assert_eq!(all.len(), 12);
    all.iter().for_each(check_crypto_vector);
}

#[test]
fn crypto_generated() {
    let all: Vec<CryptoVector> = list("crypto_generated");
    assert_eq!(all.len(), 8);
    all.iter().for_each(check_crypto_vector);
}

#[derive(Deserialize)]
struct NegativeVector {
    id: String,
    token: Option<String>,
    encoding_aes_key: Option<String>,
    appid: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    msg_signature: Option<String>,
    post_body: Option<String>,
    encrypt_b64: Option<String>,
    expected_error: Option<i32>,
}

/// Runs a negative vector through the same path a callback takes and returns the error.
fn run_negative(v: &NegativeVector) -> Error {
    let encrypt = match (&v.post_body, &v.encrypt_b64) {
        (Some(body), _) => match EncryptedRequest::parse(body.as_bytes()) {
            Ok(request) => Some(request.encrypt),
            Err(e) => return e,
        },
        (None, b64) => b64.clone(),
    };
    let key = match EncodingAesKey::parse(v.encoding_aes_key.as_deref().unwrap_or("")) {
        Ok(key) => key,
        Err(e) => return e,
    };
    let encrypt = encrypt.unwrap_or_else(|| panic!("{}: nothing to decrypt", v.id));
    let crypt = MsgCrypt::new(key, AppId::new(v.appid.clone().unwrap()).unwrap());
    let tok = token(v.token.as_deref().unwrap());
    let (ts, nonce) = (v.timestamp.as_deref().unwrap(), v.nonce.as_deref().unwrap());
    signature::verify_msg_signature(
        &tok,
        ts,
        nonce,
        &encrypt,
        v.msg_signature.as_deref().unwrap(),
    )
    .and_then(|verified| crypt.decrypt(verified))
    .expect_err(&v.id)
}

#[test]
fn crypto_negative() {
    let all: Vec<NegativeVector> = list("crypto_negative");
    assert_eq!(all.len(), 8);
    for v in &all {
        let err = run_negative(v);
        match (v.id.as_str(), v.expected_error) {
            // The Java sample's lenient base64 reports -40007; the other samples -40010.
            ("NEG-06-invalid-base64", Some(-40010)) => assert_eq!(err.code(), -40010, "{}", v.id),
            // No single official code: the Java path reports -40005, strict ones -40008.
            ("NEG-08-bad-padding-byte-zero", None) => {
                assert!([-40005, -40008].contains(&err.code()), "{}: {err}", v.id)
            }
            (_, Some(code)) => assert_eq!(err.code(), code, "{}: {err}", v.id),
            (id, None) => panic!("{id}: no expectation"),
        }
    }
}

#[derive(Deserialize)]
struct ErrorCode {
    code: i32,
    name: String,
}

#[test]
fn error_codes_match_the_official_table() {
    let table: Vec<ErrorCode> = list("wxbizmsgcrypt_error_codes");
    let ours = [
        Error::ValidateSignature,
        Error::ParseXml(String::new()),
        Error::ComputeSignature,
        Error::IllegalAesKey(""),
        Error::ValidateAppid,
        Error::EncryptAes(""),
        Error::DecryptAes(""),
        Error::IllegalBuffer(""),
        Error::EncodeBase64,
        Error::DecodeBase64,
        Error::GenReturnXml(""),
    ];
    for entry in table.iter().filter(|e| e.code != 0) {
        let err = ours
            .iter()
            .find(|e| e.code() == entry.code)
            .unwrap_or_else(|| panic!("no variant for {}", entry.code));
        assert_eq!(err.official_name(), entry.name);
    }
    assert_eq!(table.iter().filter(|e| e.code != 0).count(), ours.len());
}
