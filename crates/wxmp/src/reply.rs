//! A message wxmp sends a user, and the JSON form it is written in.
//!
//! Two places describe replies: the forward webhook answers with JSON, and the config's
//! `auto_reply.rules` and `auto_reply.clicks` hold the same JSON as TOML tables. Both are read
//! into one DTO, [`ReplyJson`], and turned into one [`Outbound`], so a reply type added once
//! works in both and the two can never disagree about a field's name.
//!
//! An [`Outbound`] is a passive reply when it has one; a 图文 given by `media_id` (a permanent
//! material) has no passive form at all — the passive `news` reply needs the articles spelled
//! out — so it only ever goes out as a 客服消息 (`mpnews`).

use serde::Deserialize;
use wxmp_proto::{Article, Reply};

/// A reply in its JSON form (the webhook's answer, a config reply table):
///
/// ```json
/// {"type":"text","content":"…"}
/// {"type":"image","media_id":"…"}            // also "voice"
/// {"type":"video","media_id":"…","title":"…","description":"…","thumb_media_id":"…"}
/// {"type":"music","title":"…","description":"…","music_url":"…","hq_music_url":"…","thumb_media_id":"…"}
/// {"type":"news","articles":[{"title":"…","description":"…","pic_url":"…","url":"…"}]}
/// {"type":"news","media_id":"…"}             // a permanent 图文 material: 客服消息 only
/// {"type":"transfer_customer_service","kf_account":"…"}
/// ```
///
/// Unknown fields are ignored here (a webhook may send more); the config checks its tables
/// against [`ReplyJson::fields`] itself, so a misspelt key in the file is still an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplyJson {
    /// `text`.
    Text {
        /// The text.
        content: String,
    },
    /// `image`.
    Image {
        /// The image's media_id.
        media_id: String,
    },
    /// `voice`.
    Voice {
        /// The voice's media_id.
        media_id: String,
    },
    /// `video`.
    Video {
        /// The video's media_id.
        media_id: String,
        /// Title.
        title: Option<String>,
        /// Description.
        description: Option<String>,
        /// Only used when the reply goes out as a 客服消息, which needs it.
        thumb_media_id: Option<String>,
    },
    /// `music`.
    Music {
        /// Title.
        title: Option<String>,
        /// Description.
        description: Option<String>,
        /// The music's URL.
        music_url: Option<String>,
        /// The high-quality URL (Wi-Fi).
        hq_music_url: Option<String>,
        /// The cover's media_id.
        thumb_media_id: String,
    },
    /// `news`: 1 to 8 `articles`, or the `media_id` of a permanent 图文 material.
    News(NewsJson),
    /// `transfer_customer_service`: hand the conversation to 多客服.
    TransferCustomerService {
        /// A particular agent.
        kf_account: Option<String>,
    },
}

/// A `news` reply's content: exactly one of `articles` and `media_id`. Checked while
/// deserialising, so a wrong one is refused like any other malformed answer (serde's category
/// and position, never the answer's text).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "NewsFields")]
pub enum NewsJson {
    /// The articles, spelled out.
    Articles(Vec<ArticleJson>),
    /// A permanent 图文 material.
    MediaId(String),
}

#[derive(Deserialize)]
struct NewsFields {
    #[serde(default)]
    articles: Vec<ArticleJson>,
    media_id: Option<String>,
}

impl TryFrom<NewsFields> for NewsJson {
    type Error = &'static str;

    fn try_from(fields: NewsFields) -> Result<Self, Self::Error> {
        match (fields.articles.is_empty(), fields.media_id) {
            (true, Some(media_id)) => Ok(NewsJson::MediaId(media_id)),
            (false, None) => Ok(NewsJson::Articles(fields.articles)),
            _ => Err("a news reply has either articles or media_id (exactly one of them)"),
        }
    }
}

/// One article of a `news` reply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ArticleJson {
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Picture URL.
    #[serde(default)]
    pub pic_url: String,
    /// Link.
    #[serde(default)]
    pub url: String,
}

impl ReplyJson {
    /// The fields a reply of `reply_type` may have (besides `type`), or `None` for a type
    /// that does not exist.
    pub fn fields(reply_type: &str) -> Option<&'static [&'static str]> {
        Some(match reply_type {
            "text" => &["content"],
            "image" | "voice" => &["media_id"],
            "video" => &["media_id", "title", "description", "thumb_media_id"],
            "music" => &[
                "title",
                "description",
                "music_url",
                "hq_music_url",
                "thumb_media_id",
            ],
            "news" => &["articles", "media_id"],
            "transfer_customer_service" => &["kf_account"],
            _ => return None,
        })
    }

    /// The fields of a `news` article.
    pub const ARTICLE_FIELDS: &'static [&'static str] = &["title", "description", "pic_url", "url"];
}

/// One message for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A reply that has a passive form (and, except `transfer_customer_service`, a 客服消息
    /// form).
    Reply {
        /// The reply.
        reply: Reply,
        /// A video's `thumb_media_id`, needed if the reply goes out as a 客服消息.
        video_thumb_media_id: Option<String>,
    },
    /// A permanent 图文 material: a 客服消息 (`mpnews`) only.
    MpNews {
        /// Its media_id.
        media_id: String,
    },
}

impl Outbound {
    /// A text reply.
    pub fn text(content: impl Into<String>) -> Outbound {
        Outbound::Reply {
            reply: Reply::text(content),
            video_thumb_media_id: None,
        }
    }

    /// The passive reply, when there is one.
    pub fn passive(&self) -> Option<&Reply> {
        match self {
            Outbound::Reply { reply, .. } => Some(reply),
            Outbound::MpNews { .. } => None,
        }
    }

    /// True when it can be sent as a 客服消息 (everything but `transfer_customer_service`).
    pub fn has_customer_service_form(&self) -> bool {
        !matches!(
            self,
            Outbound::Reply {
                reply: Reply::TransferCustomerService { .. },
                ..
            }
        )
    }
}

impl From<ReplyJson> for Outbound {
    fn from(json: ReplyJson) -> Self {
        let reply = match json {
            ReplyJson::Text { content } => Reply::Text { content },
            ReplyJson::Image { media_id } => Reply::Image { media_id },
            ReplyJson::Voice { media_id } => Reply::Voice { media_id },
            ReplyJson::Video {
                media_id,
                title,
                description,
                thumb_media_id,
            } => {
                return Outbound::Reply {
                    reply: Reply::Video {
                        media_id,
                        title,
                        description,
                    },
                    video_thumb_media_id: thumb_media_id,
                }
            }
            ReplyJson::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => Reply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            },
            ReplyJson::News(NewsJson::MediaId(media_id)) => return Outbound::MpNews { media_id },
            ReplyJson::News(NewsJson::Articles(articles)) => Reply::News {
                articles: articles
                    .into_iter()
                    .map(|a| Article {
                        title: a.title,
                        description: a.description,
                        pic_url: a.pic_url,
                        url: a.url,
                    })
                    .collect(),
            },
            ReplyJson::TransferCustomerService { kf_account } => {
                Reply::TransferCustomerService { kf_account }
            }
        };
        Outbound::Reply {
            reply,
            video_thumb_media_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Outbound, String> {
        let dto: ReplyJson = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Ok(Outbound::from(dto))
    }

    #[test]
    fn news_by_articles_or_media_id() {
        assert_eq!(
            parse(r#"{"type":"news","media_id":"m1"}"#).unwrap(),
            Outbound::MpNews {
                media_id: "m1".into()
            }
        );
        assert!(matches!(
            parse(r#"{"type":"news","articles":[{"title":"t"}]}"#).unwrap(),
            Outbound::Reply {
                reply: Reply::News { .. },
                ..
            }
        ));
        let neither = parse(r#"{"type":"news"}"#).unwrap_err();
        assert!(neither.contains("either articles or media_id"), "{neither}");
        assert!(parse(r#"{"type":"news","media_id":"m","articles":[{"title":"t"}]}"#).is_err());
        let video = parse(r#"{"type":"video","media_id":"m","thumb_media_id":"t"}"#).unwrap();
        assert_eq!(
            video,
            Outbound::Reply {
                reply: Reply::Video {
                    media_id: "m".into(),
                    title: None,
                    description: None
                },
                video_thumb_media_id: Some("t".into())
            }
        );
        assert!(!parse(r#"{"type":"transfer_customer_service"}"#)
            .unwrap()
            .has_customer_service_form());
    }

    #[test]
    fn every_type_lists_its_fields() {
        for t in [
            "text",
            "image",
            "voice",
            "video",
            "music",
            "news",
            "transfer_customer_service",
        ] {
            assert!(ReplyJson::fields(t).is_some(), "{t}");
        }
        assert_eq!(ReplyJson::fields("poem"), None);
    }
}
