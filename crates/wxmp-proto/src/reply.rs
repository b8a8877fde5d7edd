//! Passive replies (被动回复用户消息): the XML a server returns as the body of
//! WeChat's POST, and the `success` that means "no reply".
//!
//! [`Reply::render`] writes the layouts of the official doc byte for byte — no whitespace,
//! strings in CDATA, `CreateTime` and `ArticleCount` as plain numbers, optional elements left
//! out when `None` — because that is what WeChat is known to accept; the test suite checks
//! every official sample. Rendering is on the hot path of every callback, so it writes into
//! one pre-sized `String` and allocates nothing else.
//!
//! Rendering can fail (-40011), for two reasons WeChat would otherwise report to the user as
//! "该公众号暂时无法提供服务": a `news` reply outside 1 … 8 articles, and text that XML 1.0
//! cannot carry at all (C0 control characters other than tab, LF and CR; U+FFFE, U+FFFF).
//! Such text is refused rather than silently stripped, so the bug that produced it shows.
//! Note that XML parsers normalise line ends, so a `\r\n` may reach the user as `\n`.
//!
//! [`Reply::parse`] reads a rendered reply back: `wxmp send` prints what a server answered,
//! and the property tests check that every reply survives render → parse unchanged.

use std::fmt::Write as _;

use crate::message::fields::{container, required, u64_field};
use crate::message::Message;
use crate::xml::{self, Element};
use crate::Error;

/// The body that tells WeChat "no passive reply": `success`.
///
/// WeChat treats `success` and an empty body (0 bytes — not an XML with an empty
/// `Content`) alike: it shows nothing and does not retry (WeChat's 被动回复 docs). `success` is the
/// documented recommendation. A server that needs longer than the 5-second deadline answers
/// this and sends the real answer later as a 客服消息. It needs no encryption in 安全模式.
pub const NO_REPLY: &str = "success";

/// The most articles a `news` reply may carry (the older API allowed 10).
///
/// The docs also say that replying to a text, image, voice, video, news or location message
/// allows only one article; that rule is not enforced here (its current wording is
/// unverified).
pub const MAX_NEWS_ARTICLES: usize = 8;

/// True when `body` is a "no reply" answer: `success` or empty, ignoring surrounding ASCII
/// whitespace. `success` is matched case-sensitively, as WeChat documents it.
pub fn is_no_reply(body: &[u8]) -> bool {
    let body = body.trim_ascii();
    body.is_empty() || body == NO_REPLY.as_bytes()
}

/// A passive reply, one variant per reply `MsgType`.
///
/// WeChat doc: 被动回复用户消息. Media ids refer to media uploaded through 素材管理.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reply {
    /// `text` — 回复文本消息. Newlines are kept; `<a href>` links are allowed by WeChat.
    Text {
        /// `Content`.
        content: String,
    },
    /// `image` — 回复图片消息.
    Image {
        /// `Image/MediaId`.
        media_id: String,
    },
    /// `voice` — 回复语音消息.
    Voice {
        /// `Voice/MediaId`.
        media_id: String,
    },
    /// `video` — 回复视频消息.
    Video {
        /// `Video/MediaId`.
        media_id: String,
        /// `Video/Title`, left out when `None`.
        title: Option<String>,
        /// `Video/Description`, left out when `None`.
        description: Option<String>,
    },
    /// `music` — 回复音乐消息.
    Music {
        /// `Music/Title`, left out when `None`.
        title: Option<String>,
        /// `Music/Description`, left out when `None`.
        description: Option<String>,
        /// `Music/MusicUrl`, left out when `None`.
        music_url: Option<String>,
        /// `Music/HQMusicUrl` (played on Wi-Fi), left out when `None`.
        hq_music_url: Option<String>,
        /// `Music/ThumbMediaId`: the cover, required by WeChat.
        thumb_media_id: String,
    },
    /// `news` — 回复图文消息: 1 to [`MAX_NEWS_ARTICLES`] articles.
    News {
        /// `Articles/item`, in display order; the first is the large one.
        articles: Vec<Article>,
    },
    /// `transfer_customer_service` — hands the conversation to 客服 (the customer-service
    /// system); the message is delivered to the agents instead of being answered.
    TransferCustomerService {
        /// `TransInfo/KfAccount`: a specific agent (`account@wechat_id`); any online agent
        /// when `None`.
        kf_account: Option<String>,
    },
}

/// One `item` of a `news` reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Article {
    /// `Title`.
    pub title: String,
    /// `Description`.
    pub description: String,
    /// `PicUrl`: the picture (large 360×200, small 200×200 per the docs).
    pub pic_url: String,
    /// `Url`: where a tap leads.
    pub url: String,
}

/// A passive reply read back from XML, with its header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RenderedReply {
    /// `ToUserName`: the user's OpenID.
    pub to_user_name: String,
    /// `FromUserName`: the account's `gh_…` id.
    pub from_user_name: String,
    /// `CreateTime`.
    pub create_time: u64,
    /// The reply itself.
    pub reply: Reply,
}

/// Room for the fixed tags of the header and `<xml></xml>`.
const HEADER_BYTES: usize = 192;
/// Room for one element's tags around its text, generously.
const ELEMENT_BYTES: usize = 48;

impl Reply {
    /// A `text` reply.
    pub fn text(content: impl Into<String>) -> Self {
        Reply::Text {
            content: content.into(),
        }
    }

    /// The reply's `MsgType`.
    pub fn msg_type(&self) -> &'static str {
        match self {
            Reply::Text { .. } => "text",
            Reply::Image { .. } => "image",
            Reply::Voice { .. } => "voice",
            Reply::Video { .. } => "video",
            Reply::Music { .. } => "music",
            Reply::News { .. } => "news",
            Reply::TransferCustomerService { .. } => "transfer_customer_service",
        }
    }

    /// Renders the reply XML. `to_user_name` is the user's OpenID, `from_user_name` the
    /// account's id, `create_time` the current Unix time.
    ///
    /// Errors (-40011): a `news` reply with 0 or more than [`MAX_NEWS_ARTICLES`] articles,
    /// or a string containing a character XML 1.0 forbids.
    pub fn render(
        &self,
        to_user_name: &str,
        from_user_name: &str,
        create_time: u64,
    ) -> Result<String, Error> {
        if let Reply::News { articles } = self {
            if articles.is_empty() || articles.len() > MAX_NEWS_ARTICLES {
                return Err(Error::GenReturnXml("a news reply needs 1 to 8 articles"));
            }
        }
        let capacity = HEADER_BYTES + to_user_name.len() + from_user_name.len() + self.body_len();
        let mut out = String::with_capacity(capacity);
        out.push_str("<xml>");
        push_cdata(&mut out, "ToUserName", to_user_name)?;
        push_cdata(&mut out, "FromUserName", from_user_name)?;
        push_number(&mut out, "CreateTime", create_time);
        push_cdata(&mut out, "MsgType", self.msg_type())?;
        self.push_body(&mut out)?;
        out.push_str("</xml>");
        Ok(out)
    }

    /// Renders the reply to `inbound`: `ToUserName` is the inbound `FromUserName` (the user)
    /// and `FromUserName` the inbound `ToUserName` (the account).
    pub fn render_for(&self, inbound: &Message, create_time: u64) -> Result<String, Error> {
        self.render(&inbound.from_user_name, &inbound.to_user_name, create_time)
    }

    /// Parses a passive reply (not `success` or an empty body: check [`is_no_reply`] first).
    ///
    /// Optional elements map to `Some` whenever present, even empty, so that every rendered
    /// reply parses back to itself. The article limit is not checked, but `ArticleCount`
    /// must match the items. Errors (-40002): malformed XML, a root other than `<xml>`, a
    /// missing header or required element, an unknown reply `MsgType`.
    pub fn parse(xml: &[u8]) -> Result<RenderedReply, Error> {
        Self::from_element(&xml::parse(xml)?)
    }

    /// Reads a passive reply out of an already parsed document (e.g. one read with
    /// [`xml::parse_lenient`]); the same checks as [`Reply::parse`].
    pub fn from_element(root: &Element) -> Result<RenderedReply, Error> {
        if root.name != "xml" {
            return Err(Error::xml("the root element is not <xml>"));
        }
        Ok(RenderedReply {
            to_user_name: required(root, "ToUserName")?.to_owned(),
            from_user_name: required(root, "FromUserName")?.to_owned(),
            create_time: u64_field(root, "CreateTime")?,
            reply: Self::from_root(root)?,
        })
    }

    /// Reads the body of a reply whose header has been read.
    fn from_root(root: &Element) -> Result<Reply, Error> {
        let text = |parent: &Element, name: &str| required(parent, name).map(str::to_owned);
        let present = |parent: &Element, name: &str| parent.child_text(name).map(str::to_owned);
        Ok(match required(root, "MsgType")? {
            "text" => Reply::Text {
                content: text(root, "Content")?,
            },
            "image" => Reply::Image {
                media_id: text(container(root, "Image")?, "MediaId")?,
            },
            "voice" => Reply::Voice {
                media_id: text(container(root, "Voice")?, "MediaId")?,
            },
            "video" => {
                let video = container(root, "Video")?;
                Reply::Video {
                    media_id: text(video, "MediaId")?,
                    title: present(video, "Title"),
                    description: present(video, "Description"),
                }
            }
            "music" => {
                let music = container(root, "Music")?;
                Reply::Music {
                    title: present(music, "Title"),
                    description: present(music, "Description"),
                    music_url: present(music, "MusicUrl"),
                    hq_music_url: present(music, "HQMusicUrl"),
                    thumb_media_id: text(music, "ThumbMediaId")?,
                }
            }
            "news" => Reply::News {
                articles: parse_articles(root)?,
            },
            "transfer_customer_service" => Reply::TransferCustomerService {
                kf_account: root
                    .child("TransInfo")
                    .and_then(|info| present(info, "KfAccount")),
            },
            _ => return Err(Error::xml("unknown reply <MsgType>")),
        })
    }

    /// Appends the elements after `MsgType`.
    fn push_body(&self, out: &mut String) -> Result<(), Error> {
        match self {
            Reply::Text { content } => push_cdata(out, "Content", content)?,
            Reply::Image { media_id } => push_media(out, "Image", media_id)?,
            Reply::Voice { media_id } => push_media(out, "Voice", media_id)?,
            Reply::Video {
                media_id,
                title,
                description,
            } => {
                out.push_str("<Video>");
                push_cdata(out, "MediaId", media_id)?;
                push_optional(out, "Title", title)?;
                push_optional(out, "Description", description)?;
                out.push_str("</Video>");
            }
            Reply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => {
                out.push_str("<Music>");
                push_optional(out, "Title", title)?;
                push_optional(out, "Description", description)?;
                push_optional(out, "MusicUrl", music_url)?;
                push_optional(out, "HQMusicUrl", hq_music_url)?;
                push_cdata(out, "ThumbMediaId", thumb_media_id)?;
                out.push_str("</Music>");
            }
            Reply::News { articles } => push_articles(out, articles)?,
            Reply::TransferCustomerService { kf_account } => {
                if let Some(kf_account) = kf_account {
                    out.push_str("<TransInfo>");
                    push_cdata(out, "KfAccount", kf_account)?;
                    out.push_str("</TransInfo>");
                }
            }
        }
        Ok(())
    }

    /// An upper bound on the body's length in the common case, for pre-sizing (CDATA
    /// splitting of `]]>` may still grow the string, which is fine).
    fn body_len(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + ELEMENT_BYTES);
        match self {
            Reply::Text { content } => content.len() + ELEMENT_BYTES,
            Reply::Image { media_id } | Reply::Voice { media_id } => {
                media_id.len() + 2 * ELEMENT_BYTES
            }
            Reply::Video {
                media_id,
                title,
                description,
            } => media_id.len() + 2 * ELEMENT_BYTES + opt(title) + opt(description),
            Reply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => {
                thumb_media_id.len()
                    + 2 * ELEMENT_BYTES
                    + opt(title)
                    + opt(description)
                    + opt(music_url)
                    + opt(hq_music_url)
            }
            Reply::News { articles } => {
                2 * ELEMENT_BYTES
                    + articles
                        .iter()
                        .map(|a| {
                            a.title.len()
                                + a.description.len()
                                + a.pic_url.len()
                                + a.url.len()
                                + 5 * ELEMENT_BYTES
                        })
                        .sum::<usize>()
            }
            Reply::TransferCustomerService { kf_account } => opt(kf_account) + ELEMENT_BYTES,
        }
    }
}

/// Reads `ArticleCount` and `Articles/item`, checking that they agree.
fn parse_articles(root: &Element) -> Result<Vec<Article>, Error> {
    let count = u64_field(root, "ArticleCount")?;
    let articles: Vec<Article> = container(root, "Articles")?
        .children_named("item")
        .map(|item| {
            let text = |name: &str| required(item, name).map(str::to_owned);
            Ok(Article {
                title: text("Title")?,
                description: text("Description")?,
                pic_url: text("PicUrl")?,
                url: text("Url")?,
            })
        })
        .collect::<Result<_, Error>>()?;
    if u64::try_from(articles.len()).ok() != Some(count) {
        return Err(Error::xml(
            "<ArticleCount> does not match the <item>s in <Articles>",
        ));
    }
    Ok(articles)
}

/// Appends `ArticleCount` and `Articles`.
fn push_articles(out: &mut String, articles: &[Article]) -> Result<(), Error> {
    push_number(out, "ArticleCount", articles.len() as u64);
    out.push_str("<Articles>");
    for article in articles {
        out.push_str("<item>");
        push_cdata(out, "Title", &article.title)?;
        push_cdata(out, "Description", &article.description)?;
        push_cdata(out, "PicUrl", &article.pic_url)?;
        push_cdata(out, "Url", &article.url)?;
        out.push_str("</item>");
    }
    out.push_str("</Articles>");
    Ok(())
}

/// Appends `<wrapper><MediaId>…</MediaId></wrapper>`.
fn push_media(out: &mut String, wrapper: &str, media_id: &str) -> Result<(), Error> {
    out.push('<');
    out.push_str(wrapper);
    out.push('>');
    push_cdata(out, "MediaId", media_id)?;
    out.push_str("</");
    out.push_str(wrapper);
    out.push('>');
    Ok(())
}

/// Appends a CDATA element when `text` is `Some`.
fn push_optional(out: &mut String, name: &str, text: &Option<String>) -> Result<(), Error> {
    match text {
        Some(text) => push_cdata(out, name, text),
        None => Ok(()),
    }
}

/// Appends a CDATA element after checking that XML can carry `text`.
fn push_cdata(out: &mut String, name: &str, text: &str) -> Result<(), Error> {
    if !is_xml_text(text) {
        return Err(Error::GenReturnXml(
            "reply text contains a character XML 1.0 forbids (a control character other than \
             tab, LF and CR, or U+FFFE/U+FFFF)",
        ));
    }
    xml::push_cdata_element(out, name, text);
    Ok(())
}

/// Appends `<name>n</name>` without allocating.
fn push_number(out: &mut String, name: &str, n: u64) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    // Writing into a String cannot fail.
    let _ = write!(out, "{n}");
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// True when every character matches XML 1.0's `Char` production (Rust strings hold no
/// surrogates, so only C0 controls and U+FFFE/U+FFFF can be wrong).
fn is_xml_text(text: &str) -> bool {
    text.chars()
        .all(|c| !matches!(c, '\0'..='\x08' | '\x0B' | '\x0C' | '\x0E'..='\x1F' | '\u{FFFE}' | '\u{FFFF}'))
}
