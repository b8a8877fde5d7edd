//! Reading the callback's answer as WeChat would: `success` or nothing, a plaintext passive
//! reply, or an encrypted one whose `MsgSignature` must verify before it is decrypted.
//!
//! Pure, like [`super::build`], so every verdict can be tested without a server. The rules
//! are WeChat's (被动回复用户消息 and 消息加解密说明): `success` and an empty body mean "no reply"; in 安全模式
//! the reply must be encrypted, in 兼容模式 it may be either, and in 明文模式 it must be
//! plaintext. Anything else is what WeChat would turn into "该公众号暂时无法提供服务" for
//! the user, so it is an error here — the point of the tool is to find that before a user
//! does.

use std::fmt::Write as _;

use wxmp_proto::reply::MAX_NEWS_ARTICLES;
use wxmp_proto::xml::Quirks;
use wxmp_proto::{is_no_reply, xml, EncryptedReply, RenderedReply, Reply};

use super::build::{Credentials, Outgoing, Security};

/// What the callback answered, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// `success` or an empty body: WeChat shows nothing and does not retry.
    NoReply {
        /// True for an empty body, false for `success`.
        empty: bool,
    },
    /// A passive reply (boxed: it is much larger than the other variant).
    Reply(Box<OpenedReply>),
}

/// A passive reply that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedReply {
    /// True when it came encrypted (its `MsgSignature` verified).
    pub encrypted: bool,
    /// The reply XML: the body itself, or the decrypted plaintext.
    pub xml: String,
    /// The parsed reply.
    pub reply: RenderedReply,
    /// What the reply XML got wrong that was read anyway.
    pub quirks: Quirks,
}

/// Why WeChat would not accept the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The body is neither `success` nor well-formed XML.
    #[error("the reply is not XML (nor `success`): {0}")]
    NotXml(wxmp_proto::Error),
    /// An encrypted reply to a 明文模式 request.
    #[error("the reply is encrypted, but the request was plaintext (plain mode)")]
    EncryptedInPlainMode,
    /// A plaintext reply in 安全模式.
    #[error("the reply is plaintext, but in safe mode WeChat only accepts encrypted replies")]
    PlaintextInSafeMode,
    /// The encrypted reply lacks `Encrypt`, `MsgSignature`, `TimeStamp` or `Nonce`.
    #[error("the encrypted reply is malformed: {0}")]
    Envelope(wxmp_proto::Error),
    /// `MsgSignature` does not match token, `TimeStamp`, `Nonce` and `Encrypt`.
    #[error(
        "the reply's MsgSignature does not verify (-40001): it must be sha1 of the sorted \
         Token, TimeStamp, Nonce and Encrypt"
    )]
    BadSignature,
    /// The signature holds but the ciphertext does not decrypt for this AppID.
    #[error("the reply's Encrypt does not decrypt ({code}): {source}", code = .0.code(), source = .0)]
    Decrypt(wxmp_proto::Error),
    /// The (decrypted) XML is not a passive reply.
    #[error("the reply is not a valid passive reply: {0}")]
    NotAReply(wxmp_proto::Error),
}

/// Checks and opens the body of a `200` answer to a push sent with `credentials`.
pub fn open_reply(credentials: &Credentials, body: &[u8]) -> Result<Opened, ReplyError> {
    if is_no_reply(body) {
        return Ok(Opened::NoReply {
            empty: body.trim_ascii().is_empty(),
        });
    }
    let (root, body_quirks) = xml::parse_lenient(body).map_err(ReplyError::NotXml)?;
    let encrypted = root.child("Encrypt").is_some();
    let (root, quirks, xml, encrypted) = match (&credentials.security, encrypted) {
        (Security::Plain, true) => return Err(ReplyError::EncryptedInPlainMode),
        (Security::Safe(_), false) => return Err(ReplyError::PlaintextInSafeMode),
        (Security::Compat(crypt) | Security::Safe(crypt), true) => {
            let envelope = EncryptedReply::parse(body).map_err(|e| match e.code() {
                -40001 => ReplyError::BadSignature,
                _ => ReplyError::Envelope(e),
            })?;
            let plain = envelope
                .open(crypt, &credentials.token)
                .map_err(|e| match e.code() {
                    -40001 => ReplyError::BadSignature,
                    _ => ReplyError::Decrypt(e),
                })?;
            let (root, quirks) =
                xml::parse_lenient(plain.msg.as_bytes()).map_err(ReplyError::NotAReply)?;
            (root, quirks, plain.msg, true)
        }
        (Security::Plain | Security::Compat(_), false) => {
            // Parsed above, so it is UTF-8.
            let xml = String::from_utf8_lossy(body).into_owned();
            (root, body_quirks, xml, false)
        }
    };
    let reply = Reply::from_element(&root).map_err(ReplyError::NotAReply)?;
    Ok(Opened::Reply(Box::new(OpenedReply {
        encrypted,
        xml,
        reply,
        quirks,
    })))
}

/// The most digits a `CreateTime` in Unix seconds has until the year 2286.
const SECONDS_DIGITS: usize = 10;

/// Things WeChat may not do as the developer expects, though the reply was read: see the
/// module docs.
pub fn warnings(opened: &OpenedReply, sent: &Outgoing) -> Vec<String> {
    let reply = &opened.reply;
    let mut warnings = Vec::new();
    if opened.quirks.raw_cdata_end {
        warnings.push(
            "the reply has a raw `]]>` outside CDATA, which is not well-formed XML: an XML \
             parser may refuse the whole reply; write it as `]]&gt;`, or split the CDATA \
             section (`]]]]><![CDATA[>`)"
                .to_owned(),
        );
    }
    if reply.to_user_name != sent.from_user_name {
        warnings.push(format!(
            "the reply's ToUserName is {:?}, not the sender's OpenID {:?}: WeChat delivers a \
             passive reply only to the user who sent the message",
            reply.to_user_name, sent.from_user_name
        ));
    }
    if reply.from_user_name != sent.to_user_name {
        warnings.push(format!(
            "the reply's FromUserName is {:?}, not the account's id {:?} (the push's \
             ToUserName), which is what WeChat expects there",
            reply.from_user_name, sent.to_user_name
        ));
    }
    let digits = reply.create_time.to_string().len();
    if digits > SECONDS_DIGITS {
        warnings.push(format!(
            "the reply's CreateTime {} has {digits} digits: it looks like milliseconds, but \
             WeChat expects Unix seconds ({SECONDS_DIGITS} digits)",
            reply.create_time
        ));
    }
    match &reply.reply {
        Reply::News { articles } if articles.len() > MAX_NEWS_ARTICLES => {
            warnings.push(format!(
                "the news reply carries {} articles; WeChat accepts at most {MAX_NEWS_ARTICLES}",
                articles.len()
            ));
        }
        Reply::Text { content } if content.trim().is_empty() => {
            warnings.push(
                "the text reply's Content is empty: to say nothing, WeChat documents `success` \
                 (or an empty body), not an empty message"
                    .to_owned(),
            );
        }
        _ => {}
    }
    warnings
}

/// A readable rendering of a reply: a title line, then one `Name  value` line per field,
/// named as in the XML.
pub fn describe(opened: &OpenedReply) -> String {
    let reply = &opened.reply;
    let mut out = String::new();
    let how = if opened.encrypted {
        "encrypted, MsgSignature verified"
    } else {
        "plaintext"
    };
    let _ = writeln!(out, "{} reply ({how})", reply.reply.msg_type());
    field(&mut out, 2, "ToUserName", &reply.to_user_name);
    field(&mut out, 2, "FromUserName", &reply.from_user_name);
    field(&mut out, 2, "CreateTime", &reply.create_time.to_string());
    match &reply.reply {
        Reply::Text { content } => field(&mut out, 2, "Content", content),
        Reply::Image { media_id } | Reply::Voice { media_id } => {
            field(&mut out, 2, "MediaId", media_id);
        }
        Reply::Video {
            media_id,
            title,
            description,
        } => {
            field(&mut out, 2, "MediaId", media_id);
            optional(&mut out, "Title", title);
            optional(&mut out, "Description", description);
        }
        Reply::Music {
            title,
            description,
            music_url,
            hq_music_url,
            thumb_media_id,
        } => {
            optional(&mut out, "Title", title);
            optional(&mut out, "Description", description);
            optional(&mut out, "MusicUrl", music_url);
            optional(&mut out, "HQMusicUrl", hq_music_url);
            field(&mut out, 2, "ThumbMediaId", thumb_media_id);
        }
        Reply::News { articles } => {
            field(&mut out, 2, "ArticleCount", &articles.len().to_string());
            for (i, article) in articles.iter().enumerate() {
                let _ = writeln!(out, "  item {}", i + 1);
                field(&mut out, 4, "Title", &article.title);
                field(&mut out, 4, "Description", &article.description);
                field(&mut out, 4, "PicUrl", &article.pic_url);
                field(&mut out, 4, "Url", &article.url);
            }
        }
        Reply::TransferCustomerService { kf_account } => match kf_account {
            Some(account) => field(&mut out, 2, "KfAccount", account),
            None => field(&mut out, 2, "KfAccount", "(any online agent)"),
        },
    }
    out
}

/// Width of the name column.
const NAME_WIDTH: usize = 13;

/// Appends `name  value`; continuation lines of a multi-line value line up under it.
fn field(out: &mut String, indent: usize, name: &str, value: &str) {
    let mut lines = value.split('\n');
    let first = lines.next().unwrap_or_default();
    let _ = writeln!(out, "{:indent$}{name:<NAME_WIDTH$} {first}", "");
    for line in lines {
        let _ = writeln!(out, "{:width$}{line}", "", width = indent + NAME_WIDTH + 1);
    }
}

fn optional(out: &mut String, name: &str, value: &Option<String>) {
    if let Some(value) = value {
        field(out, 2, name, value);
    }
}
