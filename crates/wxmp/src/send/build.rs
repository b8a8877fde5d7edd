//! What `wxmp send` puts on the wire, computed without I/O: the plaintext message or event
//! XML, and the signed (and, in 兼容/安全模式, encrypted) request around it.
//!
//! It is kept apart from the HTTP code so that every byte WeChat would send can be checked
//! in a test: the clock, the nonce and the 16 random bytes of encryption are parameters, as
//! in `wxmp-proto`. The message kinds double as the CLI's subcommands (`text`, `event
//! subscribe`, …): clap's derive only adds trait impls, so the same enum is both what the
//! user types and what the builder reads, with no second copy of every field.
//!
//! The XML follows the official samples of 接收普通消息 and 接收事件推送: no
//! whitespace, strings in CDATA (split around `]]>`), numbers bare, `MsgId` last and only on
//! ordinary messages — events have none and are deduplicated by `FromUserName` +
//! `CreateTime` instead.

use std::fmt;

use clap::Subcommand;
use wxmp_proto::signature::{msg_signature, signature, Token};
use wxmp_proto::{xml, Message, MsgCrypt};

/// The OpenID messages come from unless `--from` says otherwise (28 characters, like a real
/// OpenID).
pub const DEFAULT_OPENID: &str = "oWxmpTestUser000000000000000";
/// The account's original id (`gh_…`) messages are addressed to unless `--to` says otherwise.
pub const DEFAULT_ACCOUNT: &str = "gh_wxmp_test";
/// The QR-code `Ticket` of scan events unless `--ticket` says otherwise.
pub const TEST_TICKET: &str = "wxmp-test-ticket";

/// How a request is protected: the callback's 消息加解密方式, with the crypter the encrypted
/// modes need (so an encrypted mode without a key cannot be represented).
#[derive(Debug, Clone)]
pub enum Security {
    /// 明文模式: plaintext XML, `signature` only.
    Plain,
    /// 兼容模式: the plaintext fields plus `<Encrypt>`, and `msg_signature` in the URL.
    Compat(MsgCrypt),
    /// 安全模式: only `<ToUserName>` and `<Encrypt>`, and `msg_signature` in the URL.
    Safe(MsgCrypt),
}

impl Security {
    /// The mode's name as the config spells it (`plain`, `compat`, `safe`).
    pub fn name(&self) -> &'static str {
        match self {
            Security::Plain => "plain",
            Security::Compat(_) => "compat",
            Security::Safe(_) => "safe",
        }
    }

    /// The crypter, in the encrypted modes.
    pub fn crypt(&self) -> Option<&MsgCrypt> {
        match self {
            Security::Plain => None,
            Security::Compat(crypt) | Security::Safe(crypt) => Some(crypt),
        }
    }
}

/// What WeChat and the callback share: the 服务器配置 Token and the encryption setup.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The Token every `signature` and `msg_signature` is keyed with.
    pub token: Token,
    /// The mode, with its key and AppID when encrypted.
    pub security: Security,
}

/// The common header of a push: who sends, to whom, when, and the message's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `ToUserName`: the account's original id (`gh_…`).
    pub to_user_name: String,
    /// `FromUserName`: the user's OpenID; also the `openid` URL parameter.
    pub from_user_name: String,
    /// `CreateTime`, Unix seconds. Kept across retries, as WeChat does.
    pub create_time: u64,
    /// `MsgId` for an ordinary message (kept across retries); must be `None` for events.
    pub msg_id: Option<u64>,
}

/// An ordinary message (接收普通消息), one subcommand per `MsgType`, or an event.
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum Body {
    /// A text message (MsgType text).
    Text {
        /// What the user typed (keyword replies match it whole).
        #[arg(allow_hyphen_values = true)]
        content: String,
    },
    /// A picture (MsgType image).
    Image {
        /// MediaId of the picture.
        #[arg(long, value_name = "ID")]
        media_id: String,
        /// PicUrl: where WeChat stored the picture.
        #[arg(
            long,
            value_name = "URL",
            default_value = "http://mmbiz.qpic.cn/wxmp-test.jpg"
        )]
        pic_url: String,
    },
    /// A voice message (MsgType voice).
    Voice {
        /// MediaId of the recording.
        #[arg(long, value_name = "ID")]
        media_id: String,
        /// Format: the codec.
        #[arg(long, default_value = "amr")]
        format: String,
        /// Recognition: the speech-recognition text (sent only when 语音识别 is on).
        #[arg(long, value_name = "TEXT")]
        recognition: Option<String>,
    },
    /// A video (MsgType video).
    Video {
        /// MediaId of the video.
        #[arg(long, value_name = "ID")]
        media_id: String,
        /// ThumbMediaId of its thumbnail.
        #[arg(long, value_name = "ID", default_value = "wxmp-test-thumb")]
        thumb_media_id: String,
    },
    /// A short video (MsgType shortvideo).
    Shortvideo {
        /// MediaId of the video.
        #[arg(long, value_name = "ID")]
        media_id: String,
        /// ThumbMediaId of its thumbnail.
        #[arg(long, value_name = "ID", default_value = "wxmp-test-thumb")]
        thumb_media_id: String,
    },
    /// A place the user sent (MsgType location).
    Location {
        /// Location_X: latitude in degrees.
        #[arg(long, value_parser = finite_f64, allow_hyphen_values = true)]
        lat: f64,
        /// Location_Y: longitude in degrees.
        #[arg(long, value_parser = finite_f64, allow_hyphen_values = true)]
        lng: f64,
        /// Scale: the map zoom level.
        #[arg(long, default_value_t = 15)]
        scale: u32,
        /// Label: the place's name or address.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// A shared link (MsgType link).
    Link {
        /// Title.
        #[arg(long)]
        title: String,
        /// Url.
        #[arg(long)]
        url: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// An event push (MsgType event); events carry no MsgId.
    #[command(subcommand)]
    Event(EventBody),
}

/// The events `wxmp send` builds (接收事件推送). Any other push can be sent from a file with
/// `--xml`.
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum EventBody {
    /// The user followed the account (Event subscribe), optionally by scanning a QR code.
    Subscribe {
        /// A 带参数二维码 scene: sends EventKey qrscene_SCENE and a Ticket.
        #[arg(long)]
        scene: Option<String>,
        /// The QR code's Ticket (with --scene) [default: wxmp-test-ticket].
        #[arg(long, requires = "scene")]
        ticket: Option<String>,
    },
    /// The user unfollowed (Event unsubscribe).
    Unsubscribe,
    /// A follower scanned a 带参数二维码 (Event SCAN).
    Scan {
        /// EventKey: the scene value (scene_id or scene_str).
        #[arg(long)]
        key: String,
        /// The QR code's Ticket.
        #[arg(long, default_value = TEST_TICKET)]
        ticket: String,
    },
    /// Location reporting (Event LOCATION).
    Location {
        /// Latitude in degrees.
        #[arg(long, value_parser = finite_f64, allow_hyphen_values = true)]
        lat: f64,
        /// Longitude in degrees.
        #[arg(long, value_parser = finite_f64, allow_hyphen_values = true)]
        lng: f64,
        /// Precision in metres.
        #[arg(long, value_parser = finite_f64, default_value_t = 30.0)]
        precision: f64,
    },
    /// A click menu button (Event CLICK).
    Click {
        /// EventKey: the button's key.
        #[arg(long)]
        key: String,
    },
    /// A view menu button opened a URL (Event VIEW).
    View {
        /// EventKey: the URL.
        #[arg(long)]
        key: String,
        /// MenuId of a personalised menu.
        #[arg(long, value_name = "ID")]
        menu_id: Option<String>,
    },
}

/// Parses a finite float (`NaN` and infinities are not coordinates).
fn finite_f64(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("{text:?} is not a finite number")),
    }
}

impl Body {
    /// True for event pushes (which have no `MsgId`).
    pub fn is_event(&self) -> bool {
        matches!(self, Body::Event(_))
    }

    /// The `MsgType`.
    pub fn msg_type(&self) -> &'static str {
        match self {
            Body::Text { .. } => "text",
            Body::Image { .. } => "image",
            Body::Voice { .. } => "voice",
            Body::Video { .. } => "video",
            Body::Shortvideo { .. } => "shortvideo",
            Body::Location { .. } => "location",
            Body::Link { .. } => "link",
            Body::Event(_) => "event",
        }
    }

    /// Appends the elements between `MsgType` and `MsgId`.
    fn push_fields(&self, out: &mut Fields) {
        match self {
            Body::Text { content } => out.cdata("Content", content),
            Body::Image { media_id, pic_url } => {
                out.cdata("PicUrl", pic_url);
                out.cdata("MediaId", media_id);
            }
            Body::Voice {
                media_id,
                format,
                recognition,
            } => {
                out.cdata("MediaId", media_id);
                out.cdata("Format", format);
                if let Some(recognition) = recognition {
                    out.cdata("Recognition", recognition);
                }
            }
            Body::Video {
                media_id,
                thumb_media_id,
            }
            | Body::Shortvideo {
                media_id,
                thumb_media_id,
            } => {
                out.cdata("MediaId", media_id);
                out.cdata("ThumbMediaId", thumb_media_id);
            }
            Body::Location {
                lat,
                lng,
                scale,
                label,
            } => {
                out.number("Location_X", lat);
                out.number("Location_Y", lng);
                out.number("Scale", scale);
                out.cdata("Label", label);
            }
            Body::Link {
                title,
                url,
                description,
            } => {
                out.cdata("Title", title);
                out.cdata("Description", description);
                out.cdata("Url", url);
            }
            Body::Event(event) => event.push_fields(out),
        }
    }
}

impl EventBody {
    /// The `Event` name, spelt as WeChat sends it (`SCAN`, `LOCATION`, `CLICK` and `VIEW` in
    /// capitals).
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::Subscribe { .. } => "subscribe",
            EventBody::Unsubscribe => "unsubscribe",
            EventBody::Scan { .. } => "SCAN",
            EventBody::Location { .. } => "LOCATION",
            EventBody::Click { .. } => "CLICK",
            EventBody::View { .. } => "VIEW",
        }
    }

    fn push_fields(&self, out: &mut Fields) {
        out.cdata("Event", self.name());
        match self {
            // A plain follow carries an empty EventKey, a QR-code follow the scene and ticket.
            EventBody::Subscribe { scene, ticket } => match scene {
                Some(scene) => {
                    out.cdata("EventKey", &format!("qrscene_{scene}"));
                    out.cdata("Ticket", ticket.as_deref().unwrap_or(TEST_TICKET));
                }
                None => out.cdata("EventKey", ""),
            },
            EventBody::Unsubscribe => out.cdata("EventKey", ""),
            EventBody::Scan { key, ticket } => {
                out.cdata("EventKey", key);
                out.cdata("Ticket", ticket);
            }
            EventBody::Location {
                lat,
                lng,
                precision,
            } => {
                out.number("Latitude", lat);
                out.number("Longitude", lng);
                out.number("Precision", precision);
            }
            EventBody::Click { key } => out.cdata("EventKey", key),
            EventBody::View { key, menu_id } => {
                out.cdata("EventKey", key);
                if let Some(menu_id) = menu_id {
                    out.cdata("MenuId", menu_id);
                }
            }
        }
    }
}

/// Why a message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// `MsgId` was given for an event.
    #[error(
        "events carry no MsgId (WeChat deduplicates them by FromUserName + CreateTime; \
         use --create-time to repeat one)"
    )]
    MsgIdOnEvent,
    /// A string holds a character XML 1.0 cannot carry.
    #[error("<{0}> contains a control character XML cannot carry")]
    ForbiddenCharacter(String),
    /// A `--xml` document is not a push WeChat could send.
    #[error("the XML is not a WeChat push: {0}")]
    NotAPush(wxmp_proto::Error),
    /// A `--xml` document does not end with `</xml>`, so `<Encrypt>` cannot be appended.
    #[error("the XML must end with </xml>")]
    NoClosingTag,
}

/// Writes a flat `<xml>` body, remembering the first string XML cannot carry.
struct Fields {
    xml: String,
    bad: Option<String>,
}

impl Fields {
    fn new() -> Self {
        let mut xml = String::with_capacity(512);
        xml.push_str("<xml>");
        Fields { xml, bad: None }
    }

    fn cdata(&mut self, name: &str, text: &str) {
        if self.bad.is_none() && !is_xml_text(text) {
            self.bad = Some(name.to_owned());
        }
        xml::push_cdata_element(&mut self.xml, name, text);
    }

    fn number(&mut self, name: &str, value: &dyn fmt::Display) {
        xml::push_text_element(&mut self.xml, name, &value.to_string());
    }

    fn finish(mut self) -> Result<String, BuildError> {
        if let Some(name) = self.bad {
            return Err(BuildError::ForbiddenCharacter(name));
        }
        self.xml.push_str("</xml>");
        Ok(self.xml)
    }
}

/// True when every character matches XML 1.0's `Char` production.
fn is_xml_text(text: &str) -> bool {
    text.chars()
        .all(|c| !matches!(c, '\0'..='\x08' | '\x0B' | '\x0C' | '\x0E'..='\x1F' | '\u{FFFE}' | '\u{FFFF}'))
}

/// One push, ready to be signed: its plaintext XML and the header fields the envelope, the
/// URL and the reply check need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The plaintext `<xml>…</xml>`, exactly as encrypted or sent.
    pub xml: String,
    /// `ToUserName`: repeated in the 安全模式 envelope.
    pub to_user_name: String,
    /// `FromUserName`: the `openid` URL parameter, and whom the reply must address.
    pub from_user_name: String,
    /// `CreateTime`.
    pub create_time: u64,
    /// `MsgId`, for ordinary messages.
    pub msg_id: Option<u64>,
    /// A short description for progress lines: `text`, `event subscribe`, ….
    pub summary: String,
}

impl Outgoing {
    /// Builds the XML of `body` under `header`.
    pub fn build(header: &Header, body: &Body) -> Result<Outgoing, BuildError> {
        if body.is_event() && header.msg_id.is_some() {
            return Err(BuildError::MsgIdOnEvent);
        }
        let mut out = Fields::new();
        out.cdata("ToUserName", &header.to_user_name);
        out.cdata("FromUserName", &header.from_user_name);
        out.number("CreateTime", &header.create_time);
        out.cdata("MsgType", body.msg_type());
        body.push_fields(&mut out);
        if let Some(msg_id) = header.msg_id {
            out.number("MsgId", &msg_id);
        }
        let summary = match body {
            Body::Event(event) => format!("event {}", event.name()),
            other => other.msg_type().to_owned(),
        };
        Ok(Outgoing {
            xml: out.finish()?,
            to_user_name: header.to_user_name.clone(),
            from_user_name: header.from_user_name.clone(),
            create_time: header.create_time,
            msg_id: header.msg_id,
            summary,
        })
    }

    /// Takes a push written by hand (`--xml FILE`) as it is. It must parse as a WeChat
    /// push (header present, no DOCTYPE); its header is read back for the envelope.
    pub fn from_xml(text: &str) -> Result<Outgoing, BuildError> {
        let xml = text.trim();
        let message = Message::parse(xml.as_bytes()).map_err(BuildError::NotAPush)?;
        if !xml.ends_with("</xml>") {
            return Err(BuildError::NoClosingTag);
        }
        let summary = match message.event() {
            Some(event) => format!("event {}", event.name()),
            None => message.msg_type().to_owned(),
        };
        Ok(Outgoing {
            msg_id: message.msg_id(),
            xml: xml.to_owned(),
            to_user_name: message.to_user_name,
            from_user_name: message.from_user_name,
            create_time: message.create_time,
            summary,
        })
    }
}

/// A signed request: the URL parameters to add and the POST body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// `signature`, `timestamp`, `nonce`, `openid`, and in the encrypted modes
    /// `encrypt_type=aes` and `msg_signature`, in the order WeChat sends them.
    pub query: Vec<(&'static str, String)>,
    /// The POST body.
    pub body: String,
}

impl SignedRequest {
    /// The value of URL parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Signs (and in the encrypted modes encrypts) `message` as WeChat would, with this
/// attempt's `timestamp`, `nonce` and 16 random bytes.
///
/// The only error is -40006, for a message over 4 GiB.
pub fn sign_request(
    credentials: &Credentials,
    message: &Outgoing,
    timestamp: &str,
    nonce: &str,
    random: [u8; 16],
) -> Result<SignedRequest, wxmp_proto::Error> {
    let token = &credentials.token;
    let mut query = vec![
        ("signature", signature(token, timestamp, nonce).to_string()),
        ("timestamp", timestamp.to_owned()),
        ("nonce", nonce.to_owned()),
        ("openid", message.from_user_name.clone()),
    ];
    let body = match &credentials.security {
        Security::Plain => message.xml.clone(),
        Security::Compat(crypt) | Security::Safe(crypt) => {
            let encrypt = crypt.encrypt(&message.xml, random)?;
            let msg_sig = msg_signature(token, timestamp, nonce, &encrypt);
            query.push(("encrypt_type", "aes".to_owned()));
            query.push(("msg_signature", msg_sig.to_string()));
            let mut body = String::with_capacity(message.xml.len() + encrypt.len() + 96);
            if let Security::Compat(_) = credentials.security {
                // The plaintext fields, then <Encrypt>, as in the official 兼容模式 sample.
                // Both builders guarantee the closing tag.
                let open = message
                    .xml
                    .strip_suffix("</xml>")
                    .unwrap_or(message.xml.as_str());
                body.push_str(open);
            } else {
                body.push_str("<xml>");
                xml::push_cdata_element(&mut body, "ToUserName", &message.to_user_name);
            }
            xml::push_cdata_element(&mut body, "Encrypt", &encrypt);
            body.push_str("</xml>");
            body
        }
    };
    Ok(SignedRequest { query, body })
}

/// The URL parameters of the GET handshake (服务器地址验证): `signature`, `timestamp`,
/// `nonce`, `echostr`. The callback must answer `200` with `echostr` verbatim.
pub fn handshake_query(
    token: &Token,
    timestamp: &str,
    nonce: &str,
    echostr: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("signature", signature(token, timestamp, nonce).to_string()),
        ("timestamp", timestamp.to_owned()),
        ("nonce", nonce.to_owned()),
        ("echostr", echostr.to_owned()),
    ]
}
