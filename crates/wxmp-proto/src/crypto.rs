//! WXBizMsgCrypt: the AES layer of 兼容模式 and 安全模式.
//!
//! The layout (WXBizMsgCrypt, as the official samples implement it) is
//! `AES-256-CBC(key, iv = key[..16])(random(16) ‖ be32(len(msg)) ‖ msg ‖ AppID ‖ PKCS#7/32)`,
//! base64-encoded. Two traps shape this module:
//!
//! * the EncodingAESKey's 43rd character carries two bits that base64 discards, and the
//!   official sample keys set them, so the key (and only the key) is decoded leniently;
//! * PKCS#7 here pads to 32 bytes, not to the AES block size, so padding is done by hand and
//!   the cipher runs with `NoPadding`.
//!
//! Decryption only accepts a [`VerifiedEncrypt`]: `msg_signature` is checked before any byte
//! is decrypted. Every malformed input maps to the official error code instead of panicking.

use std::fmt;

use aes::Aes256;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use zeroize::Zeroizing;

use crate::signature::VerifiedEncrypt;
use crate::Error;

/// The block size WXBizMsgCrypt pads to (twice the AES block size).
const PAD_BLOCK: usize = 32;
/// `random(16) ‖ be32(len)`.
const HEADER_LEN: usize = 20;

/// The EncodingAESKey's decoder: standard alphabet, tolerant of the non-zero trailing bits
/// the official sample keys carry, and of the "=" that may or may not be appended.
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The 32-byte AES key decoded from the 43-character EncodingAESKey (消息加解密密钥).
///
/// Wiped on drop; `Debug` prints `EncodingAesKey(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodingAesKey(Zeroizing<[u8; 32]>);

impl EncodingAesKey {
    /// Parses the 43-character key exactly as the console shows it.
    pub fn parse(encoding_aes_key: &str) -> Result<Self, Error> {
        if encoding_aes_key.len() != 43 {
            return Err(Error::IllegalAesKey("must be exactly 43 characters"));
        }
        if !encoding_aes_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            return Err(Error::IllegalAesKey(
                "may only contain letters, digits, '+' and '/'",
            ));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        let written = KEY_ENGINE
            .decode_slice(encoding_aes_key, &mut key[..])
            .map_err(|_| Error::IllegalAesKey("not valid base64"))?;
        if written != 32 {
            return Err(Error::IllegalAesKey("does not decode to 32 bytes"));
        }
        Ok(EncodingAesKey(key))
    }

    /// Builds a key from raw bytes (tests, the emulator).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        EncodingAesKey(Zeroizing::new(key))
    }

    /// The 43-character text form of this key (canonical: zero trailing bits).
    pub fn to_encoding_aes_key(&self) -> String {
        let mut text = STANDARD.encode(&self.0[..]);
        text.truncate(43);
        text
    }

    /// The AES-256 key.
    pub fn aes_key(&self) -> &[u8; 32] {
        &self.0
    }

    /// The CBC IV: the key's first 16 bytes.
    pub fn iv(&self) -> &[u8] {
        &self.0[..16]
    }
}

impl fmt::Debug for EncodingAesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncodingAesKey(***)")
    }
}

/// An official account's AppID (`wx…`), the last field of every plaintext.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AppId(String);

impl AppId {
    /// Accepts any non-empty printable ASCII id up to 64 bytes (WeCom corp ids and test ids
    /// differ in shape from `wx` + 16 hex, so the shape is the config checker's business).
    pub fn new(appid: impl Into<String>) -> Result<Self, Error> {
        let appid = appid.into();
        if appid.is_empty() || appid.len() > 64 || !appid.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::ValidateAppid);
        }
        Ok(AppId(appid))
    }

    /// The AppID text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppId({})", self.0)
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A decrypted payload: the message and the 16 random bytes that preceded it.
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext {
    /// The 16-byte random prefix (opaque; the official samples use ASCII alphanumerics).
    pub random: [u8; 16],
    /// The message, byte-exact (it may contain `\n`).
    pub msg: String,
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes)", self.msg.len())
    }
}

/// Encrypts and decrypts messages for one app: its EncodingAESKey and AppID.
#[derive(Clone, Debug)]
pub struct MsgCrypt {
    key: EncodingAesKey,
    appid: AppId,
}

impl MsgCrypt {
    /// A crypter for `appid` under `key`.
    pub fn new(key: EncodingAesKey, appid: AppId) -> Self {
        MsgCrypt { key, appid }
    }

    /// The AppID this crypter writes and expects.
    pub fn appid(&self) -> &AppId {
        &self.appid
    }

    /// Encrypts `msg` with the caller's 16 random bytes and returns the base64 `Encrypt` text.
    ///
    /// Randomness is a parameter so that this crate needs no RNG and tests can pin it.
    pub fn encrypt(&self, msg: &str, random: [u8; 16]) -> Result<String, Error> {
        let msg_len =
            u32::try_from(msg.len()).map_err(|_| Error::EncryptAes("message longer than 4 GiB"))?;
        let appid = self.appid.as_str().as_bytes();
        let full_len = HEADER_LEN + msg.len() + appid.len();
        let pad = PAD_BLOCK - full_len % PAD_BLOCK;
        let mut buf = Zeroizing::new(Vec::with_capacity(full_len + pad));
        buf.extend_from_slice(&random);
        buf.extend_from_slice(&msg_len.to_be_bytes());
        buf.extend_from_slice(msg.as_bytes());
        buf.extend_from_slice(appid);
        // `pad` is in 1..=32, so the cast is lossless.
        buf.resize(full_len + pad, pad as u8);

        let total = buf.len();
        let cipher = cbc::Encryptor::<Aes256>::new(self.key.aes_key().into(), self.key.iv().into());
        let ciphertext = cipher
            .encrypt_padded_mut::<NoPadding>(&mut buf, total)
            .map_err(|_| Error::EncryptAes("buffer is not a whole number of blocks"))?;
        Ok(STANDARD.encode(ciphertext))
    }

    /// Decrypts a verified `Encrypt` text and checks that it was written for this AppID.
    pub fn decrypt(&self, encrypt: VerifiedEncrypt<'_>) -> Result<Plaintext, Error> {
        let mut buf = Zeroizing::new(
            STANDARD
                .decode(encrypt.as_str())
                .map_err(|_| Error::DecodeBase64)?,
        );
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(Error::DecryptAes(
                "ciphertext is not a whole number of AES blocks",
            ));
        }
        let cipher = cbc::Decryptor::<Aes256>::new(self.key.aes_key().into(), self.key.iv().into());
        let plain = cipher
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| Error::DecryptAes("ciphertext is not a whole number of AES blocks"))?;

        let content = strip_pkcs7_32(plain)?;
        if content.len() < HEADER_LEN {
            return Err(Error::IllegalBuffer("shorter than the 20-byte header"));
        }
        let mut random = [0u8; 16];
        random.copy_from_slice(&content[..16]);
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&content[16..HEADER_LEN]);
        let msg_len = usize::try_from(u32::from_be_bytes(len_bytes))
            .map_err(|_| Error::IllegalBuffer("msg_len does not fit in memory"))?;
        let body = &content[HEADER_LEN..];
        if msg_len > body.len() {
            return Err(Error::IllegalBuffer(
                "msg_len runs past the end of the buffer",
            ));
        }
        let (msg, from_appid) = body.split_at(msg_len);
        if from_appid != self.appid.as_str().as_bytes() {
            return Err(Error::ValidateAppid);
        }
        let msg = std::str::from_utf8(msg)
            .map_err(|_| Error::IllegalBuffer("message is not UTF-8"))?
            .to_owned();
        Ok(Plaintext { random, msg })
    }
}

/// Removes WXBizMsgCrypt's PKCS#7 padding (block size 32). Every pad byte must equal the pad
/// length, which must be 1..=32.
fn strip_pkcs7_32(plain: &[u8]) -> Result<&[u8], Error> {
    let pad = usize::from(
        *plain
            .last()
            .ok_or(Error::IllegalBuffer("empty plaintext"))?,
    );
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(Error::IllegalBuffer("invalid PKCS#7 padding"));
    }
    let (content, padding) = plain.split_at(plain.len() - pad);
    if padding.iter().any(|&b| usize::from(b) != pad) {
        return Err(Error::IllegalBuffer("invalid PKCS#7 padding"));
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{msg_signature, verify_msg_signature, Token};

    const SAMPLE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn crypter() -> MsgCrypt {
        MsgCrypt::new(
            EncodingAesKey::parse(SAMPLE_KEY).unwrap(),
            AppId::new("wxb11529c136998cb6").unwrap(),
        )
    }

    fn open(c: &MsgCrypt, encrypt: &str) -> Result<Plaintext, Error> {
        let token = Token::new("t").unwrap();
        let sig = msg_signature(&token, "1", "n", encrypt);
        let verified = verify_msg_signature(&token, "1", "n", encrypt, sig.as_str())?;
        c.decrypt(verified)
    }

    #[test]
    fn sample_key_decodes_despite_trailing_bits() {
        let key = EncodingAesKey::parse(SAMPLE_KEY).unwrap();
        assert_eq!(
            hex::encode(key.aes_key()),
            "69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051"
        );
        assert_eq!(hex::encode(key.iv()), "69b71d79f8218a39259a7a29aabb2dba");
        assert_eq!(format!("{key:?}"), "EncodingAesKey(***)");
    }

    #[test]
    fn bad_keys_are_rejected_with_40004() {
        for bad in [
            "",
            "abc",
            &SAMPLE_KEY[..42],
            &format!("{SAMPLE_KEY}A"),
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF=",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF-",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEé",
        ] {
            assert_eq!(
                EncodingAesKey::parse(bad).unwrap_err().code(),
                -40004,
                "{bad}"
            );
        }
    }

    #[test]
    fn canonical_text_form_round_trips() {
        let key = EncodingAesKey::from_bytes([7u8; 32]);
        let text = key.to_encoding_aes_key();
        assert_eq!(text.len(), 43);
        assert_eq!(EncodingAesKey::parse(&text).unwrap(), key);
    }

    #[test]
    fn pad_32_round_trip() {
        // 16 + 4 + 26 + 18 = 64: a whole extra block of padding.
        let c = crypter();
        let enc = c
            .encrypt("abcdefghijklmnopqrstuvwxyz", *b"aaaabbbbccccdddd")
            .unwrap();
        assert_eq!(STANDARD.decode(&enc).unwrap().len(), 96);
        assert_eq!(open(&c, &enc).unwrap().msg, "abcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn other_appid_is_40005() {
        let other = MsgCrypt::new(
            EncodingAesKey::parse(SAMPLE_KEY).unwrap(),
            AppId::new("wx0000000000000000").unwrap(),
        );
        let enc = other.encrypt("hi", [0; 16]).unwrap();
        assert_eq!(open(&crypter(), &enc).unwrap_err().code(), -40005);
    }

    #[test]
    fn short_and_unaligned_ciphertexts_fail_cleanly() {
        let c = crypter();
        assert_eq!(open(&c, "").unwrap_err().code(), -40007);
        assert_eq!(open(&c, "AQID").unwrap_err().code(), -40007);
        // One AES block decrypts to garbage: a padding or header error, never a panic.
        let one_block = STANDARD.encode([0u8; 16]);
        assert_eq!(open(&c, &one_block).unwrap_err().code(), -40008);
        assert_eq!(open(&c, "@@@@").unwrap_err().code(), -40010);
    }
}
