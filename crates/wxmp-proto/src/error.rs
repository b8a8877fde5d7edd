//! The protocol's error type.
//!
//! One variant per error of the official WXBizMsgCrypt samples, so that every failure maps to
//! the code (-40001 … -40011) a WeChat developer already knows from the samples and forums
//! (the official WXBizMsgCrypt samples' error codes). The variants carry a short, secret-free reason: these messages end up in
//! HTTP responses and logs, so they never contain key material, tokens or plaintext.

use std::fmt;

/// A failure in the WeChat message protocol, mapped to the official sample error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// -40001: `signature` or `msg_signature` does not match.
    #[error("signature mismatch")]
    ValidateSignature,
    /// -40002: the XML is malformed, hostile (DOCTYPE, entities), too large or too deep, or
    /// lacks a required element.
    #[error("xml parse error: {0}")]
    ParseXml(String),
    /// -40003: computing a signature failed. SHA-1 over strings cannot fail, so wxmp never
    /// produces this; it exists so that `from_code(-40003)` round-trips.
    #[error("signature computation failed")]
    ComputeSignature,
    /// -40004: the EncodingAESKey is not 43 base64 characters.
    #[error("illegal EncodingAESKey: {0}")]
    IllegalAesKey(&'static str),
    /// -40005: the AppID inside the ciphertext is not the configured one.
    #[error("the AppID inside the ciphertext does not match the configured AppID")]
    ValidateAppid,
    /// -40006: encryption failed (the message is too large for the 32-bit length field).
    #[error("aes encryption failed: {0}")]
    EncryptAes(&'static str),
    /// -40007: the ciphertext is empty or not a whole number of AES blocks.
    #[error("aes decryption failed: {0}")]
    DecryptAes(&'static str),
    /// -40008: the decrypted buffer is malformed (bad padding, length out of bounds, not UTF-8).
    #[error("illegal buffer after decryption: {0}")]
    IllegalBuffer(&'static str),
    /// -40009: base64 encoding failed. Encoding cannot fail in Rust; kept for completeness.
    #[error("base64 encoding failed")]
    EncodeBase64,
    /// -40010: the `Encrypt` text is not valid base64.
    #[error("invalid base64 in Encrypt")]
    DecodeBase64,
    /// -40011: rendering the reply XML failed.
    #[error("failed to generate reply xml: {0}")]
    GenReturnXml(&'static str),
}

impl Error {
    /// The official sample error code for this error.
    pub fn code(&self) -> i32 {
        match self {
            Error::ValidateSignature => -40001,
            Error::ParseXml(_) => -40002,
            Error::ComputeSignature => -40003,
            Error::IllegalAesKey(_) => -40004,
            Error::ValidateAppid => -40005,
            Error::EncryptAes(_) => -40006,
            Error::DecryptAes(_) => -40007,
            Error::IllegalBuffer(_) => -40008,
            Error::EncodeBase64 => -40009,
            Error::DecodeBase64 => -40010,
            Error::GenReturnXml(_) => -40011,
        }
    }

    /// The official sample's name for the code, e.g. `ValidateSignature_Error`.
    pub fn official_name(&self) -> &'static str {
        match self {
            Error::ValidateSignature => "ValidateSignature_Error",
            Error::ParseXml(_) => "ParseXml_Error",
            Error::ComputeSignature => "ComputeSignature_Error",
            Error::IllegalAesKey(_) => "IllegalAesKey",
            Error::ValidateAppid => "ValidateAppid_Error",
            Error::EncryptAes(_) => "EncryptAES_Error",
            Error::DecryptAes(_) => "DecryptAES_Error",
            Error::IllegalBuffer(_) => "IllegalBuffer",
            Error::EncodeBase64 => "EncodeBase64_Error",
            Error::DecodeBase64 => "DecodeBase64_Error",
            Error::GenReturnXml(_) => "GenReturnXml_Error",
        }
    }

    pub(crate) fn xml(reason: impl fmt::Display) -> Self {
        Error::ParseXml(reason.to_string())
    }
}

/// Positive global return codes of the WeChat HTTP API (`errcode` in JSON answers) that wxmp
/// reacts to. Anything else is kept as [`ApiErrcode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiErrcode {
    /// -1: system busy, retry later.
    SystemBusy,
    /// 40001: wrong AppSecret on the token call; invalid or superseded access_token elsewhere.
    InvalidCredential,
    /// 40002: grant_type must be client_credential.
    InvalidGrantType,
    /// 40013: invalid AppID.
    InvalidAppid,
    /// 40014: invalid access_token.
    InvalidAccessToken,
    /// 40125: invalid AppSecret.
    InvalidAppsecret,
    /// 40164: the caller's IP is not in the whitelist.
    IpNotWhitelisted,
    /// 40243: AppSecret frozen.
    AppsecretFrozen,
    /// 41002: appid missing.
    AppidMissing,
    /// 41004: secret missing.
    SecretMissing,
    /// 42001: access_token expired.
    AccessTokenExpired,
    /// 43002: the API requires POST.
    RequirePost,
    /// 45009: the daily API quota is used up.
    DailyQuotaExceeded,
    /// 45011: the per-minute quota is used up.
    MinuteQuotaExceeded,
    /// 45015: the 客服消息 window for this user has closed.
    ResponseOutOfTimeLimit,
    /// 48006: clear_quota used too often this month.
    ClearQuotaExhausted,
    /// 50004 / 50007: token API forbidden, or account frozen.
    ApiForbidden,
    /// 89501 / 89503: the call awaits the administrator's confirmation.
    AwaitingAdminConfirmation,
    /// 89506 / 89507: the administrator refused; calls are banned for a while.
    AdminRefused,
    /// Any other code.
    Other(i64),
}

impl ApiErrcode {
    /// Classifies a raw `errcode` (0 is not an error and maps to `None`).
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => return None,
            -1 => ApiErrcode::SystemBusy,
            40001 => ApiErrcode::InvalidCredential,
            40002 => ApiErrcode::InvalidGrantType,
            40013 => ApiErrcode::InvalidAppid,
            40014 => ApiErrcode::InvalidAccessToken,
            40125 => ApiErrcode::InvalidAppsecret,
            40164 => ApiErrcode::IpNotWhitelisted,
            40243 => ApiErrcode::AppsecretFrozen,
            41002 => ApiErrcode::AppidMissing,
            41004 => ApiErrcode::SecretMissing,
            42001 => ApiErrcode::AccessTokenExpired,
            43002 => ApiErrcode::RequirePost,
            45009 => ApiErrcode::DailyQuotaExceeded,
            45011 => ApiErrcode::MinuteQuotaExceeded,
            45015 => ApiErrcode::ResponseOutOfTimeLimit,
            48006 => ApiErrcode::ClearQuotaExhausted,
            50004 | 50007 => ApiErrcode::ApiForbidden,
            89501 | 89503 => ApiErrcode::AwaitingAdminConfirmation,
            89506 | 89507 => ApiErrcode::AdminRefused,
            other => ApiErrcode::Other(other),
        })
    }

    /// True for the codes after which a fresh access_token and one retry may succeed
    /// (40001, 40014, 42001).
    pub fn is_stale_token(self) -> bool {
        matches!(
            self,
            ApiErrcode::InvalidCredential
                | ApiErrcode::InvalidAccessToken
                | ApiErrcode::AccessTokenExpired
        )
    }

    /// [`ApiErrcode::is_stale_token`] for a raw `errcode`, as found in a JSON answer.
    pub fn is_stale_token_code(errcode: i64) -> bool {
        Self::from_code(errcode).is_some_and(Self::is_stale_token)
    }

    /// True when retrying the same call later may succeed without anyone changing anything
    /// (only `-1`, system busy). Everything else needs a human or a new day.
    pub fn is_transient(self) -> bool {
        matches!(self, ApiErrcode::SystemBusy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_official_ones() {
        let all = [
            (Error::ValidateSignature, -40001),
            (Error::xml("x"), -40002),
            (Error::ComputeSignature, -40003),
            (Error::IllegalAesKey("x"), -40004),
            (Error::ValidateAppid, -40005),
            (Error::EncryptAes("x"), -40006),
            (Error::DecryptAes("x"), -40007),
            (Error::IllegalBuffer("x"), -40008),
            (Error::EncodeBase64, -40009),
            (Error::DecodeBase64, -40010),
            (Error::GenReturnXml("x"), -40011),
        ];
        for (err, code) in all {
            assert_eq!(err.code(), code, "{err}");
        }
    }

    #[test]
    fn api_errcodes_classify() {
        assert_eq!(ApiErrcode::from_code(0), None);
        assert!(ApiErrcode::from_code(42001).unwrap().is_stale_token());
        assert!(ApiErrcode::from_code(40014).unwrap().is_stale_token());
        assert!(!ApiErrcode::from_code(45009).unwrap().is_stale_token());
        assert!(ApiErrcode::is_stale_token_code(40001));
        assert!(!ApiErrcode::is_stale_token_code(0));
        assert!(!ApiErrcode::is_stale_token_code(45015));
        assert!(ApiErrcode::from_code(-1).unwrap().is_transient());
        assert!(!ApiErrcode::from_code(40164).unwrap().is_transient());
        assert_eq!(ApiErrcode::from_code(12345), Some(ApiErrcode::Other(12345)));
    }
}
