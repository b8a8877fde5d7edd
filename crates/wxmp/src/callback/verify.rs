//! Turning a callback request into a verified message, or into a 4xx with a short reason.
//!
//! The steps run in a fixed order, each one's failure answered before the next runs:
//! find the app (`404`), pick the transport from the app's mode and `encrypt_type` (`400` for a
//! plaintext push to a safe app), check what the query alone can tell — the signature
//! parameters are present, the plaintext `signature` holds, the `timestamp` is inside the
//! replay window (`403`) — and only then read the body (`413` over 1 MiB), authenticate it
//! (`403`), check the (timestamp, nonce) pair (`403`, see `replay`), decrypt (`400`), parse
//! (`400`). An anonymous client therefore cannot make the server read, let alone parse, a
//! body without a current timestamp and the signature parameters. Authentication comes first because everything after it is
//! work an anonymous sender should not be able to cause, and, for ciphertext, an oracle: the
//! padding and AppID checks of decryption would otherwise answer a forger's questions. The types
//! enforce the order: parsing a plaintext body takes a [`SignatureVerified`], which only
//! [`check_signature`] makes, and `MsgCrypt::decrypt` takes a `VerifiedEncrypt`, which only
//! `verify_msg_signature` makes. In plaintext transports the signature covers only the
//! query, so it is checked before a byte of the body is read. In encrypted ones only
//! `msg_signature` is checked, as WeChat's docs ask: it covers the ciphertext as well.
//!
//! Reasons are short and never carry secrets or decrypted text: for a plaintext body the XML
//! parser's own message is passed on (it only echoes the sender's bytes back to the sender);
//! for a decrypted one only a category is.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::distributions::Alphanumeric;
use rand::Rng;
use wxmp_proto::signature::{verify_msg_signature, verify_signature};
use wxmp_proto::{EncryptedReply, EncryptedRequest, Message};

use super::{replay, Outcome};
use crate::config::{AppConfig, Mode};
use crate::state::AppState;

/// The app named in the path; rejects with `404` when no such app is configured.
pub(crate) struct CallbackApp(pub Arc<AppConfig>);

impl FromRequestParts<AppState> for CallbackApp {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| Refusal::UnknownApp)?;
        state
            .config
            .apps
            .get(&name)
            .cloned()
            .map(CallbackApp)
            .ok_or(Refusal::UnknownApp)
    }
}

/// The query parameters WeChat sends. Never rejects: a missing parameter is a failed
/// signature check (`403`), not a malformed request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CallbackQuery {
    /// `signature`: the 3-field signature.
    pub signature: Option<String>,
    /// `timestamp`.
    pub timestamp: Option<String>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `echostr` of the handshake.
    pub echostr: Option<String>,
    /// `encrypt_type`: `aes`, `raw` or absent.
    pub encrypt_type: Option<String>,
    /// `msg_signature`: the 4-field signature of encrypted pushes.
    pub msg_signature: Option<String>,
}

impl CallbackQuery {
    /// Reads the parameters from a raw query string; the first occurrence of each wins.
    ///
    /// Percent-escapes are decoded but a literal `+` stays a `+`: WeChat escapes what it means
    /// (`%2B`, `%20`), and form decoding would turn a `+` in an echostr into a space.
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let mut query = CallbackQuery::default();
        let Some(raw) = raw else { return query };
        let raw = raw.replace('+', "%2B");
        for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let slot = match &*name {
                "signature" => &mut query.signature,
                "timestamp" => &mut query.timestamp,
                "nonce" => &mut query.nonce,
                "echostr" => &mut query.echostr,
                "encrypt_type" => &mut query.encrypt_type,
                "msg_signature" => &mut query.msg_signature,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        query
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CallbackQuery {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(CallbackQuery::parse(parts.uri.query()))
    }
}

/// Proof that a request's 3-field `signature` holds. Zero-sized; only [`check_signature`]
/// makes one, and parsing a plaintext body requires one.
#[derive(Debug)]
pub(crate) struct SignatureVerified {
    _sealed: (),
}

/// Checks `signature` over the app's Token, `timestamp` and `nonce` in constant time.
pub(crate) fn check_signature(
    app: &AppConfig,
    query: &CallbackQuery,
) -> Result<SignatureVerified, Refusal> {
    let (Some(signature), Some(timestamp), Some(nonce)) =
        (&query.signature, &query.timestamp, &query.nonce)
    else {
        return Err(Refusal::BadSignature);
    };
    verify_signature(&app.token, timestamp, nonce, signature).map_err(|_| Refusal::BadSignature)?;
    Ok(SignatureVerified { _sealed: () })
}

/// The `GET` handshake: the echostr to send back verbatim, once the signature holds and the
/// timestamp is inside the replay window.
pub(crate) fn handshake(app: &AppConfig, query: &CallbackQuery) -> Result<String, Refusal> {
    check_signature(app, query)?;
    check_window(app, query)?;
    query.echostr.clone().ok_or(Refusal::BadSignature)
}

/// How the push came, and so how its reply must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplyChannel {
    /// Plaintext XML.
    Plain,
    /// Encrypted XML, echoing the request's `nonce` (as the docs suggest).
    Encrypted {
        /// The request's `nonce`.
        nonce: String,
        /// The push was encrypted with `encoding_aes_key_previous`, so the reply is too: while
        /// the console's key change spreads, the sender only knows the key it used.
        previous_key: bool,
    },
}

impl ReplyChannel {
    /// The HTTP answer: `success` when there is no reply, else the reply XML, encrypted for
    /// this request (its own timestamp and random prefix) when the push was encrypted.
    /// `success` is never encrypted: WeChat accepts it plain in every mode.
    pub(crate) fn respond(&self, app: &AppConfig, reply: Option<&str>) -> Response {
        let Some(xml) = reply else {
            return success();
        };
        let Self::Encrypted {
            nonce,
            previous_key,
        } = self
        else {
            return xml_response(xml.to_owned());
        };
        let key = if *previous_key {
            &app.crypt_previous
        } else {
            &app.crypt
        };
        let Some(crypt) = key else {
            // Unreachable: the request was decrypted with this very key.
            tracing::error!(app = %app.name, "encrypted push but no EncodingAESKey; answering success");
            return success();
        };
        let timestamp = unix_seconds().to_string();
        let mut random = [0u8; 16];
        let mut rng = rand::thread_rng();
        for byte in &mut random {
            // Alphanumeric like the official samples, for decoders that expect text.
            *byte = rng.sample(Alphanumeric);
        }
        match EncryptedReply::seal(crypt, &app.token, xml, &timestamp, nonce, random) {
            Ok(sealed) => xml_response(sealed.render()),
            Err(e) => {
                tracing::error!(app = %app.name, error = %e, "cannot encrypt the reply; answering success");
                success()
            }
        }
    }
}

/// The `success` answer: "nothing to say", and no retry.
pub(crate) fn success() -> Response {
    (
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        wxmp_proto::NO_REPLY,
    )
        .into_response()
}

fn xml_response(xml: String) -> Response {
    ([(CONTENT_TYPE, "application/xml; charset=utf-8")], xml).into_response()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A `POST` that passed every check: the app, its message, and how to answer.
pub(crate) struct VerifiedPush {
    /// The app named in the path.
    pub app: Arc<AppConfig>,
    /// The decrypted, parsed message.
    pub message: Message,
    /// How the reply must be sent.
    pub channel: ReplyChannel,
}

impl FromRequest<AppState> for VerifiedPush {
    type Rejection = Refusal;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Refusal> {
        let (mut parts, body) = request.into_parts();
        let CallbackApp(app) = CallbackApp::from_request_parts(&mut parts, state).await?;
        let query = CallbackQuery::parse(parts.uri.query());
        let request = Request::from_parts(parts, body);
        match open(&app, &query, request, state).await {
            Ok((message, channel)) => Ok(VerifiedPush {
                app,
                message,
                channel,
            }),
            Err(refusal) => Err(refusal.count(state, &app.name)),
        }
    }
}

/// The transport of one push.
enum Transport {
    Plain,
    Aes,
}

/// Picks the transport from the app's mode and the request's `encrypt_type`.
fn transport(mode: Mode, encrypt_type: Option<&str>) -> Result<Transport, Refusal> {
    match (mode, encrypt_type) {
        // 明文模式 ignores encryption parameters: the body is plaintext or it is refused.
        (Mode::Plain, _) => Ok(Transport::Plain),
        (Mode::Compat | Mode::Safe, Some("aes")) => Ok(Transport::Aes),
        (Mode::Compat, None | Some("raw")) => Ok(Transport::Plain),
        (Mode::Safe, None | Some("raw")) => Err(Refusal::BadRequest(Cow::Borrowed(
            "this app is in safe mode: only encrypted (encrypt_type=aes) pushes are accepted",
        ))),
        (_, Some(_)) => Err(Refusal::BadRequest(Cow::Borrowed(
            "unsupported encrypt_type (expected aes or raw)",
        ))),
    }
}

/// Authenticates, reads, decrypts and parses one push, in that order.
async fn open(
    app: &AppConfig,
    query: &CallbackQuery,
    request: Request,
    state: &AppState,
) -> Result<(Message, ReplyChannel), Refusal> {
    match transport(app.mode, query.encrypt_type.as_deref())? {
        Transport::Plain => {
            let proof = check_signature(app, query)?;
            check_window(app, query)?;
            let body = read_body(request, state).await?;
            check_pair(state, app, query, &body).await?;
            Ok((parse_plain(proof, &body)?, ReplyChannel::Plain))
        }
        Transport::Aes => {
            let crypt = app.crypt.as_ref().ok_or(Refusal::Misconfigured)?;
            let (Some(timestamp), Some(nonce), Some(msg_signature)) =
                (&query.timestamp, &query.nonce, &query.msg_signature)
            else {
                return Err(Refusal::BadSignature);
            };
            check_window(app, query)?;
            let body = read_body(request, state).await?;
            let envelope =
                EncryptedRequest::parse(&body).map_err(|e| Refusal::bad_xml(&e, false))?;
            let verified = verify_msg_signature(
                &app.token,
                timestamp,
                nonce,
                &envelope.encrypt,
                msg_signature,
            )
            .map_err(|_| Refusal::BadSignature)?;
            check_pair(state, app, query, &body).await?;
            let (plaintext, previous_key) = match crypt.decrypt(verified) {
                Ok(plaintext) => (plaintext, false),
                // `msg_signature` does not involve the key, so a push sealed with the key
                // being replaced passes the check above and only fails here.
                Err(e) => match &app.crypt_previous {
                    Some(previous) => match previous.decrypt(verified) {
                        Ok(plaintext) => {
                            tracing::debug!(app = %app.name, "push decrypted with encoding_aes_key_previous");
                            (plaintext, true)
                        }
                        Err(_) => return Err(Refusal::undecryptable(e)),
                    },
                    None => return Err(Refusal::undecryptable(e)),
                },
            };
            let message =
                Message::parse(plaintext.msg.as_bytes()).map_err(|e| Refusal::bad_xml(&e, true))?;
            Ok((
                message,
                ReplyChannel::Encrypted {
                    nonce: nonce.clone(),
                    previous_key,
                },
            ))
        }
    }
}

/// The replay window's timestamp check (see `replay`): query only, before the body is read.
fn check_window(app: &AppConfig, query: &CallbackQuery) -> Result<(), Refusal> {
    let timestamp = query.timestamp.as_deref().ok_or(Refusal::BadSignature)?;
    replay::check_timestamp(app, timestamp, unix_seconds())
}

/// The replay window's (timestamp, nonce) check; only for authenticated requests.
async fn check_pair(
    state: &AppState,
    app: &AppConfig,
    query: &CallbackQuery,
    body: &[u8],
) -> Result<(), Refusal> {
    let (Some(timestamp), Some(nonce)) = (&query.timestamp, &query.nonce) else {
        return Err(Refusal::BadSignature);
    };
    replay::check_pair(state, app, timestamp, nonce, body).await
}

/// Parses a plaintext body; only after its signature was checked.
fn parse_plain(_proof: SignatureVerified, body: &[u8]) -> Result<Message, Refusal> {
    Message::parse(body).map_err(|e| Refusal::bad_xml(&e, false))
}

/// Buffers the body. The server's body limit surfaces here as a `413` rejection (when the
/// client sent no `Content-Length`; with one, the limit layer answers before the handler).
async fn read_body(request: Request, state: &AppState) -> Result<Bytes, Refusal> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Refusal::TooLarge
            } else {
                Refusal::BadRequest(Cow::Borrowed("could not read the request body"))
            }
        })
}

/// Why a callback request is refused. The response is plain text, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `404`: no app of that name.
    UnknownApp,
    /// `403`: `signature`/`msg_signature` missing or wrong.
    BadSignature,
    /// `403`: outside the replay window, or a (timestamp, nonce) reused with another body.
    Replay(Cow<'static, str>),
    /// `400`, with the reason.
    BadRequest(Cow<'static, str>),
    /// `413`: body over the limit.
    TooLarge,
    /// `500`: an encrypted mode without a key, which config validation rules out.
    Misconfigured,
}

impl Refusal {
    /// A `400` for XML that does not parse or is not a message. For decrypted text only the
    /// category is told: the parser's message could quote the plaintext.
    fn bad_xml(e: &wxmp_proto::Error, decrypted: bool) -> Refusal {
        let text = e.to_string();
        let code = e.code();
        let reason = if text.contains("DOCTYPE") {
            format!("DOCTYPE and entity declarations are not allowed ({code})")
        } else if decrypted
            && (text.contains("malformed XML")
                || text.contains("bad text or entity")
                || text.contains("not UTF-8"))
        {
            format!("the decrypted message is not well-formed XML ({code})")
        } else if decrypted {
            format!("the decrypted message is not a WeChat message: {text} ({code})")
        } else {
            let mut text = text;
            if text.len() > 200 {
                let mut cut = 200;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push('…');
            }
            format!("{text} ({code})")
        };
        Refusal::BadRequest(Cow::Owned(reason))
    }

    /// A `400` for ciphertext that does not decrypt or was written for another AppID.
    fn undecryptable(e: wxmp_proto::Error) -> Refusal {
        let code = e.code();
        let reason = match e {
            wxmp_proto::Error::ValidateAppid => {
                format!("the ciphertext was written for another AppID ({code})")
            }
            other => format!("the ciphertext does not decrypt: {other} ({code})"),
        };
        Refusal::BadRequest(Cow::Owned(reason))
    }

    fn status(&self) -> StatusCode {
        match self {
            Refusal::UnknownApp => StatusCode::NOT_FOUND,
            Refusal::BadSignature | Refusal::Replay(_) => StatusCode::FORBIDDEN,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn outcome(&self) -> Option<Outcome> {
        match self {
            Refusal::UnknownApp | Refusal::Misconfigured => None,
            Refusal::BadSignature => Some(Outcome::BadSignature),
            Refusal::Replay(_) => Some(Outcome::Replay),
            Refusal::BadRequest(_) => Some(Outcome::BadRequest),
            Refusal::TooLarge => Some(Outcome::TooLarge),
        }
    }

    fn reason(&self) -> &str {
        match self {
            Refusal::UnknownApp => "no such app",
            Refusal::BadSignature => "signature mismatch",
            Refusal::BadRequest(reason) | Refusal::Replay(reason) => reason,
            Refusal::TooLarge => "request body larger than 1 MiB",
            Refusal::Misconfigured => "this app has no EncodingAESKey configured",
        }
    }

    /// Counts the refusal in the metrics and logs it (debug: refusals are the sender's
    /// problem, and a flood of them must not flood the log).
    pub(crate) fn count(self, state: &AppState, app: &str) -> Self {
        if let Some(outcome) = self.outcome() {
            state.metrics.callback(app, outcome.as_str());
        }
        if matches!(self, Refusal::Misconfigured) {
            tracing::error!(app, "encrypted push to an app without an EncodingAESKey");
        } else {
            tracing::debug!(
                app,
                status = self.status().as_u16(),
                reason = self.reason(),
                "callback refused"
            );
        }
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = format!("{}\n", self.reason());
        (
            self.status(),
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_literal_plus_and_decodes_escapes() {
        let q = CallbackQuery::parse(Some(
            "signature=abc&timestamp=1&nonce=2&echostr=a+b%2Bc%20d&echostr=second&x=y",
        ));
        assert_eq!(q.echostr.as_deref(), Some("a+b+c d"));
        assert_eq!(q.signature.as_deref(), Some("abc"));
        assert_eq!(q.msg_signature, None);
        assert_eq!(CallbackQuery::parse(None), CallbackQuery::default());
        assert_eq!(
            CallbackQuery::parse(Some("%%%&&==")),
            CallbackQuery::default()
        );
    }

    #[test]
    fn transport_follows_mode_and_encrypt_type() {
        assert!(matches!(
            transport(Mode::Plain, Some("aes")),
            Ok(Transport::Plain)
        ));
        assert!(matches!(
            transport(Mode::Compat, None),
            Ok(Transport::Plain)
        ));
        assert!(matches!(
            transport(Mode::Compat, Some("raw")),
            Ok(Transport::Plain)
        ));
        assert!(matches!(
            transport(Mode::Compat, Some("aes")),
            Ok(Transport::Aes)
        ));
        assert!(matches!(
            transport(Mode::Safe, Some("aes")),
            Ok(Transport::Aes)
        ));
        assert!(matches!(
            transport(Mode::Safe, None),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            transport(Mode::Compat, Some("des")),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn decrypted_parse_errors_do_not_quote_the_plaintext() {
        let err = Message::parse(b"<xml><A>&secret_entity;</A></xml>").unwrap_err();
        let Refusal::BadRequest(reason) = Refusal::bad_xml(&err, true) else {
            panic!("not a 400")
        };
        assert!(!reason.contains("secret"), "{reason}");
        let err = Message::parse(b"<xml><ToUserName>a</ToUserName></xml>").unwrap_err();
        let Refusal::BadRequest(reason) = Refusal::bad_xml(&err, false) else {
            panic!("not a 400")
        };
        assert!(reason.contains("FromUserName"), "{reason}");
    }
}
