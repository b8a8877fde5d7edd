//! The encrypted callback path end to end: envelope XML → `msg_signature` check → AES
//! decryption → message parse, with the fuzzer choosing the plaintext, the Token, timestamp,
//! nonce and AppID, and one mutation.
//!
//! Random ciphertext would almost never pass the signature check, so this target builds a
//! *valid* request from the fuzzer's plaintext first, then applies the chosen mutation and
//! re-signs where the mutation is meant to reach the checks behind the signature. Input
//! layout: `op, pos(2, LE), value, random(16)`, then `token \xFF timestamp \xFF nonce \xFF
//! appid \xFF plaintext` (empty fields take the official sample's values).
//!
//! The oracles: an untouched request opens to exactly its plaintext and parses as the
//! plaintext does; a wrong signature, timestamp or AppID is refused with its code; a body
//! tampered under a kept signature never opens to anything else; an encrypted reply survives
//! seal → render → parse → open; and for fuzzer-chosen decrypted bytes (`random ‖ len ‖ msg ‖
//! AppID ‖ padding`, encrypted here with the raw cipher) `decrypt` agrees with a reference
//! model of the layout.
#![no_main]

use aes::Aes256;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use libfuzzer_sys::fuzz_target;
use wxmp_fuzz::{split_fields, text_or};
use wxmp_proto::signature::msg_signature;
use wxmp_proto::xml::{self, MAX_ELEMENTS, MAX_XML_BYTES};
use wxmp_proto::{
    AppId, EncodingAesKey, EncryptedReply, EncryptedRequest, Message, MsgCrypt, Plaintext, Token,
};

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const HEADER: usize = 20;
const BASE64: &[u8; 65] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";

/// One request as WeChat would send it in 安全模式.
struct Request {
    body: String,
    encrypt: String,
    timestamp: String,
    nonce: String,
    msg_signature: String,
}

impl Request {
    fn new(token: &Token, timestamp: &str, nonce: &str, encrypt: String) -> Request {
        let mut body = String::from("<xml><ToUserName><![CDATA[gh_fuzz]]></ToUserName>");
        xml::push_cdata_element(&mut body, "Encrypt", &encrypt);
        body.push_str("</xml>");
        Request {
            msg_signature: msg_signature(token, timestamp, nonce, &encrypt).to_string(),
            body,
            encrypt,
            timestamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
        }
    }

    /// What the callback server does with it.
    fn open(&self, crypt: &MsgCrypt, token: &Token) -> Result<Plaintext, wxmp_proto::Error> {
        let request = EncryptedRequest::parse(self.body.as_bytes())?;
        let plain = request.open(
            crypt,
            token,
            &self.timestamp,
            &self.nonce,
            &self.msg_signature,
        )?;
        // Whatever decrypts goes on to the parser, as on the server.
        let _ = Message::parse(plain.msg.as_bytes());
        Ok(plain)
    }
}

/// The reference model of a decrypted buffer: `random(16) ‖ be32(len) ‖ msg ‖ AppID`,
/// PKCS#7-padded to 32 bytes. Returns the error code `decrypt` must give, or the message.
fn model(buf: &[u8], appid: &[u8]) -> Result<([u8; 16], String), i32> {
    let Some(&last) = buf.last() else {
        return Err(-40007);
    };
    let pad = usize::from(last);
    if pad == 0 || pad > 32 || pad > buf.len() || buf[buf.len() - pad..].iter().any(|&b| b != last)
    {
        return Err(-40008);
    }
    let content = &buf[..buf.len() - pad];
    if content.len() < 20 {
        return Err(-40008);
    }
    let len = u32::from_be_bytes([content[16], content[17], content[18], content[19]]) as usize;
    if len > content.len() - 20 {
        return Err(-40008);
    }
    if &content[20 + len..] != appid {
        return Err(-40005);
    }
    let msg = String::from_utf8(content[20..20 + len].to_vec()).map_err(|_| -40008)?;
    let mut random = [0u8; 16];
    random.copy_from_slice(&content[..16]);
    Ok((random, msg))
}

fuzz_target!(|data: &[u8]| {
    let mut header = [0u8; HEADER];
    let split = data.len().min(HEADER);
    header[..split].copy_from_slice(&data[..split]);
    let op = header[0] % 10;
    let pos = usize::from(u16::from_le_bytes([header[1], header[2]]));
    let value = header[3];
    let mut random = [0u8; 16];
    random.copy_from_slice(&header[4..20]);

    let fields = split_fields(&data[split..], 5);
    let Ok(token) = Token::new(text_or(fields.first(), "pamtest")) else {
        return;
    };
    let timestamp = text_or(fields.get(1), "1409304348");
    let nonce = text_or(fields.get(2), "xxxxxx");
    let Ok(appid) = AppId::new(text_or(fields.get(3), "wxb11529c136998cb6")) else {
        return;
    };
    let raw_plaintext: &[u8] = fields.get(4).copied().unwrap_or_default();
    let plaintext = String::from_utf8_lossy(raw_plaintext);

    let key = EncodingAesKey::parse(KEY).expect("the sample key parses");
    let crypt = MsgCrypt::new(key.clone(), appid.clone());
    let encrypt = crypt
        .encrypt(&plaintext, random)
        .expect("encryption succeeds");
    let request = Request::new(&token, timestamp, nonce, encrypt);
    let expect_original = |result: &Result<Plaintext, wxmp_proto::Error>| {
        let plain = result.as_ref().expect("the untouched request opens");
        assert_eq!(plain.msg, plaintext);
        assert_eq!(plain.random, random);
    };

    match op {
        // Untouched: opens to exactly the plaintext, which parses as the plaintext does.
        0 => {
            let opened = request.open(&crypt, &token);
            expect_original(&opened);
            if let Ok(plain) = opened {
                let direct = Message::parse(plaintext.as_bytes());
                let via = Message::parse(plain.msg.as_bytes());
                assert_eq!(direct.is_ok(), via.is_ok());
                assert_eq!(direct.ok(), via.ok());
            }
        }
        // One character of the ciphertext replaced, re-signed: reaches base64, AES, padding.
        1 => {
            let mut bytes = request.encrypt.clone().into_bytes();
            if bytes.is_empty() {
                return;
            }
            let at = pos % bytes.len();
            let new = BASE64[usize::from(value) % BASE64.len()];
            if bytes[at] == new {
                return;
            }
            bytes[at] = new;
            let encrypt = String::from_utf8(bytes).expect("base64 is ASCII");
            let mutated = Request::new(&token, timestamp, nonce, encrypt);
            if let Ok(plain) = mutated.open(&crypt, &token) {
                assert!(
                    plain.msg != plaintext || plain.random != random,
                    "a changed ciphertext opened unchanged"
                );
            }
        }
        // Truncated ciphertext, re-signed.
        2 => {
            let cut = pos % (request.encrypt.len() + 1);
            let mutated = Request::new(&token, timestamp, nonce, request.encrypt[..cut].to_owned());
            if let Err(e) = mutated.open(&crypt, &token) {
                assert!(matches!(e.code(), -40005 | -40007 | -40008 | -40010), "{e}");
            }
        }
        // The fuzzer's bytes *are* the decrypted buffer: decrypt must agree with the model.
        3 => {
            let mut buf = raw_plaintext.to_vec();
            buf.resize(buf.len().div_ceil(16) * 16, 0);
            let expected = model(&buf, appid.as_str().as_bytes());
            let len = buf.len();
            let cipher = cbc::Encryptor::<Aes256>::new(key.aes_key().into(), key.iv().into());
            let ciphertext = cipher
                .encrypt_padded_mut::<NoPadding>(&mut buf, len)
                .expect("whole blocks");
            let mutated = Request::new(&token, timestamp, nonce, STANDARD.encode(ciphertext));
            match (mutated.open(&crypt, &token), expected) {
                (Ok(plain), Ok((random, msg))) => {
                    assert_eq!(plain.msg, msg);
                    assert_eq!(plain.random, random);
                }
                (Err(e), Err(code)) => assert_eq!(e.code(), code, "{e}"),
                (got, want) => panic!("decrypt gave {got:?}, the model {want:?}"),
            }
        }
        // A wrong msg_signature (one hex digit changed) is -40001, whatever the rest.
        4 => {
            let mut signature = request.msg_signature.clone().into_bytes();
            let at = pos % signature.len();
            let digits = b"0123456789abcdef";
            let old = digits.iter().position(|&d| d == signature[at]).unwrap_or(0);
            signature[at] = digits[(old + 1 + usize::from(value) % 15) % 16];
            let mutated = Request {
                msg_signature: String::from_utf8(signature).expect("hex"),
                ..request
            };
            assert_eq!(
                mutated.open(&crypt, &token).map(|_| ()).unwrap_err().code(),
                -40001
            );
        }
        // The body tampered, the signature kept: it either fails or opens to the original.
        5 => {
            let mut body = request.body.clone().into_bytes();
            let at = pos % body.len();
            body[at] = value;
            let Ok(body) = String::from_utf8(body) else {
                return;
            };
            let mutated = Request { body, ..request };
            let opened = mutated.open(&crypt, &token);
            if opened.is_ok() {
                expect_original(&opened);
            }
        }
        // Another timestamp under the same signature: -40001.
        6 => {
            let mutated = Request {
                timestamp: format!("{timestamp}1"),
                ..request
            };
            assert_eq!(
                mutated.open(&crypt, &token).map(|_| ()).unwrap_err().code(),
                -40001
            );
        }
        // Opened by an app with another AppID: -40005.
        7 => {
            let Ok(other) = AppId::new(format!("{}x", appid.as_str())) else {
                return;
            };
            let other = MsgCrypt::new(key, other);
            assert_eq!(
                request.open(&other, &token).map(|_| ()).unwrap_err().code(),
                -40005
            );
        }
        // The encrypted passive reply: seal → render → parse → open is the identity.
        8 => {
            let sealed = EncryptedReply::seal(&crypt, &token, &plaintext, timestamp, nonce, random)
                .expect("sealing succeeds");
            let wire = sealed.render();
            let parsed = EncryptedReply::parse(wire.as_bytes()).expect("a rendered reply parses");
            assert_eq!(parsed, sealed);
            let plain = parsed.open(&crypt, &token).expect("a sealed reply opens");
            assert_eq!(plain.msg, plaintext);
            assert_eq!(plain.random, random);
        }
        // 兼容模式: the plaintext fields next to <Encrypt> in one body.
        _ => {
            let Ok(root) = xml::parse(plaintext.as_bytes()) else {
                return;
            };
            let Some(head) = plaintext.trim_end().strip_suffix("</xml>") else {
                return;
            };
            if root.name != "xml" || root.child("Encrypt").is_some() {
                return;
            }
            let mut body = head.to_owned();
            xml::push_cdata_element(&mut body, "Encrypt", &request.encrypt);
            body.push_str("</xml>");
            let elements = wxmp_fuzz::check_tree(&root);
            let parsed = EncryptedRequest::parse(body.as_bytes());
            if elements >= MAX_ELEMENTS || body.len() > MAX_XML_BYTES {
                return;
            }
            let parsed = parsed.expect("a compat body parses");
            assert_eq!(parsed.encrypt, request.encrypt);
            let mutated = Request { body, ..request };
            expect_original(&mutated.open(&crypt, &token));
        }
    }
});
