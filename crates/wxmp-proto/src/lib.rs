//! # wxmp-proto — the WeChat Official Account (公众号) server protocol, without I/O
//!
//! Everything a 公众号 developer server must compute, as pure functions over bytes and
//! strings: no sockets, no clocks, no RNG, no async. The current time and the 16 random bytes
//! of encryption are parameters, so every function can be tested against the official vectors,
//! fuzzed and benchmarked alone.
//!
//! ## Layout
//! - [`signature`]: the GET/POST `signature` and the encrypted-mode `msg_signature`, compared
//!   in constant time; [`signature::VerifiedEncrypt`] is the proof decryption requires.
//! - [`crypto`]: WXBizMsgCrypt — EncodingAESKey, AES-256-CBC with 32-byte PKCS#7,
//!   `random ‖ len ‖ msg ‖ AppID`.
//! - [`envelope`]: the `<Encrypt>` request body and the encrypted reply XML.
//! - [`xml`]: a bounded XML reader that refuses DOCTYPE, entities and what is not
//!   well-formed; the element tree every push is read into, and its writer.
//! - [`message`] and [`event`]: every inbound message and event as typed values, unknown and
//!   malformed ones kept as raw fields; the retry dedup key.
//! - [`reply`]: passive replies, rendered as the official docs show them.
//! - [`jssdk`]: the `wx.config` and `cardExt` signatures.
//! - [`error`]: one error type mapped to the official -40001 … -40011 codes, and the API's
//!   positive `errcode`s.
//!
//! ## Why the checks come in this order
//! A callback is authenticated before it is decrypted and decrypted before it is parsed:
//! the `msg_signature` check is cheap and constant-time, while decryption and XML parsing
//! report errors whose kind could otherwise leak information to a forger. The types enforce
//! it: [`crypto::MsgCrypt::decrypt`] only takes a [`signature::VerifiedEncrypt`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crypto;
pub mod envelope;
pub mod error;
pub mod event;
pub mod jssdk;
pub mod message;
pub mod reply;
pub mod signature;
pub mod xml;

pub use crypto::{AppId, EncodingAesKey, MsgCrypt, Plaintext};
pub use envelope::{EncryptedReply, EncryptedRequest};
pub use error::{ApiErrcode, Error};
pub use event::{
    Event, PublishEventInfo, PublishedArticle, ScanCodeInfo, SendLocationInfo, SendPicsInfo,
    SubscribeMsgChange, SubscribeMsgPopup, SubscribeMsgSent,
};
pub use message::{DedupKey, Message, MessageKind};
pub use reply::{is_no_reply, Article, RenderedReply, Reply, NO_REPLY};
pub use signature::{Signature, Token, VerifiedEncrypt};
