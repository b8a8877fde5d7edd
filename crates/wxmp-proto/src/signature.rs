//! `signature` and `msg_signature`: SHA-1 over the byte-sorted concatenation of strings.
//!
//! WeChat signs a callback by sorting `[token, timestamp, nonce]` (plus `Encrypt` for
//! `msg_signature`) as *strings* — `"1714112445" < "415670741"` — concatenating them and
//! taking the lowercase hex SHA-1 (服务器配置 verification and WXBizMsgCrypt). Checking goes through
//! [`Signature::verify`], which compares in constant time so that an attacker timing our
//! answers learns nothing about the expected value.
//!
//! The `msg_signature` check returns a [`VerifiedEncrypt`] proof: the only way to obtain one is
//! to pass the check, and [`crate::MsgCrypt::decrypt`] takes one, so no code path can decrypt
//! an unauthenticated ciphertext (the padding and length checks of decryption would otherwise
//! be an oracle for a forger).

use std::fmt;

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Error;

/// The 服务器配置 Token shared between WeChat and the developer server.
///
/// It is a secret: it never prints (`Debug` shows `Token(***)`) and is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Zeroizing<String>);

impl Token {
    /// Wraps a Token. It must not be empty; the console's own 3–32 alphanumeric rule is
    /// enforced by the config checker, not here, so that test vectors with other tokens work.
    pub fn new(token: impl Into<String>) -> Result<Self, Error> {
        let token = token.into();
        if token.is_empty() {
            return Err(Error::ValidateSignature);
        }
        Ok(Token(Zeroizing::new(token)))
    }

    /// The Token itself, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// A SHA-1 signature as the 40 lowercase hex characters WeChat sends.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 40]);

impl Signature {
    /// SHA-1 of the concatenation of `parts` after sorting them byte-wise. The order of
    /// `parts` does not matter.
    pub fn of_sorted(parts: &mut [&str]) -> Self {
        parts.sort_unstable();
        let mut hasher = Sha1::new();
        for part in parts.iter() {
            hasher.update(part.as_bytes());
        }
        Self::from_digest(&hasher.finalize())
    }

    /// SHA-1 of exactly these bytes (for the JS-SDK `string1`).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::from_digest(&Sha1::digest(bytes))
    }

    /// Builds a signature from a raw 20-byte SHA-1 digest (e.g. one decoded from hex).
    pub fn from_raw_digest(digest: &[u8]) -> Self {
        Self::from_digest(digest)
    }

    fn from_digest(digest: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 40];
        for (i, byte) in digest.iter().take(20).enumerate() {
            out[2 * i] = HEX[usize::from(byte >> 4)];
            out[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        Signature(out)
    }

    /// The lowercase hex text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into the array.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Compares `provided` (as found in the request) with this signature in constant time.
    /// Uppercase hex is accepted; anything that is not 40 characters is a mismatch.
    pub fn verify(&self, provided: &str) -> Result<(), Error> {
        let provided = provided.as_bytes();
        if provided.len() != 40 {
            return Err(Error::ValidateSignature);
        }
        let mut lower = [0u8; 40];
        for (dst, src) in lower.iter_mut().zip(provided) {
            *dst = src.to_ascii_lowercase();
        }
        if bool::from(self.0.ct_eq(&lower)) {
            Ok(())
        } else {
            Err(Error::ValidateSignature)
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.as_str())
    }
}

/// The 3-field `signature` of the GET handshake and of every POST:
/// `sha1(sort([token, timestamp, nonce]))`.
pub fn signature(token: &Token, timestamp: &str, nonce: &str) -> Signature {
    Signature::of_sorted(&mut [token.expose(), timestamp, nonce])
}

/// Checks the 3-field `signature` of a callback request in constant time.
pub fn verify_signature(
    token: &Token,
    timestamp: &str,
    nonce: &str,
    provided: &str,
) -> Result<(), Error> {
    signature(token, timestamp, nonce).verify(provided)
}

/// The 4-field `msg_signature` of encrypted mode:
/// `sha1(sort([token, timestamp, nonce, Encrypt]))`, with `Encrypt` exactly as found in the XML.
pub fn msg_signature(token: &Token, timestamp: &str, nonce: &str, encrypt: &str) -> Signature {
    Signature::of_sorted(&mut [token.expose(), timestamp, nonce, encrypt])
}

/// Proof that an `Encrypt` value passed the `msg_signature` check; the only input
/// [`crate::MsgCrypt::decrypt`] accepts.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedEncrypt<'a> {
    encrypt: &'a str,
}

impl<'a> VerifiedEncrypt<'a> {
    /// The verified base64 text.
    pub fn as_str(&self) -> &'a str {
        self.encrypt
    }
}

/// Checks `msg_signature` over `encrypt` in constant time and, if it holds, returns the proof
/// that lets the ciphertext be decrypted.
pub fn verify_msg_signature<'a>(
    token: &Token,
    timestamp: &str,
    nonce: &str,
    encrypt: &'a str,
    provided: &str,
) -> Result<VerifiedEncrypt<'a>, Error> {
    msg_signature(token, timestamp, nonce, encrypt).verify(provided)?;
    Ok(VerifiedEncrypt { encrypt })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str) -> Token {
        Token::new(t).unwrap()
    }

    #[test]
    fn official_get_example() {
        let sig = signature(&token("AAAAA"), "1714036504", "1514711492");
        assert_eq!(sig.as_str(), "f464b24fc39322e44b38aa78f5edd27bd1441696");
    }

    #[test]
    fn verify_accepts_uppercase_and_rejects_other_lengths() {
        let tok = token("AAAAA");
        let ok = "F464B24FC39322E44B38AA78F5EDD27BD1441696";
        assert!(verify_signature(&tok, "1714036504", "1514711492", ok).is_ok());
        for bad in ["", "f464", "f464b24fc39322e44b38aa78f5edd27bd14416960", "é"] {
            assert_eq!(
                verify_signature(&tok, "1714036504", "1514711492", bad),
                Err(Error::ValidateSignature)
            );
        }
    }

    #[test]
    fn token_does_not_print() {
        assert_eq!(format!("{:?}", token("secret-token")), "Token(***)");
        assert!(Token::new("").is_err());
    }
}
