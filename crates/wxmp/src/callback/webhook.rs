//! The forward webhook: the decrypted message as JSON out, a reply as JSON back.
//!
//! The business server behind wxmp should not need to know XML, signatures or AES, so it gets
//! the message as plain JSON and answers plain JSON. The mapping from XML is generic rather
//! than per message type, so fields WeChat adds tomorrow reach the webhook without a wxmp
//! release:
//!
//! - The object holds every child of `<xml>`, named exactly as in the XML (`ToUserName`,
//!   `MsgType`, `Location_X`, `MsgID`), plus `"app"`: the app's name in wxmp (it wins over an
//!   XML field of that name, which WeChat does not send).
//! - Every leaf value is a JSON **string**, byte-exact as in the XML — numbers too
//!   (`"CreateTime":"1348831860"`, `"MsgId":"1234567890123456"`): the XML has no types, and a
//!   64-bit `MsgId` would lose digits as a JavaScript number.
//! - An element with children is an object (`"ScanCodeInfo":{"ScanType":"qrcode",…}`).
//! - A list is an array: an element whose children are all `<item>`, or whose name ends in
//!   `List` (an empty one is `[]`): `"SendPicsInfo":{"Count":"1","PicList":[{"PicMd5Sum":"…"}]}`,
//!   `"CopyrightCheckResult":{"ResultList":[{…}]}`.
//! - A name repeated among siblings becomes an array of its values, so nothing is dropped.
//!
//! The request is `POST` with `Content-Type: application/json` and
//! `X-Wxmp-Delivery: <dedup key>` (`msgid:…` or `event:<openid>:<CreateTime>`): the same value
//! for WeChat's retries of one push, which wxmp never forwards twice, so a webhook can use it as
//! an idempotency key of its own. The webhook answers `204` (or `200` with an empty body) for
//! no reply, or `200` with one of:
//!
//! ```json
//! {"type":"text","content":"…"}
//! {"type":"image","media_id":"…"}            // also "voice"
//! {"type":"video","media_id":"…","title":"…","description":"…","thumb_media_id":"…"}
//! {"type":"music","title":"…","description":"…","music_url":"…","hq_music_url":"…","thumb_media_id":"…"}
//! {"type":"news","articles":[{"title":"…","description":"…","pic_url":"…","url":"…"}]}
//! {"type":"transfer_customer_service","kf_account":"…"}
//! ```
//!
//! Only `content`, `media_id`, music's `thumb_media_id` and `articles` (1 to 8) are required;
//! other fields may be left out, and unknown fields are ignored. `thumb_media_id` of a video is
//! only used when the reply has to go out as a 客服消息, which needs it.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;
use wxmp_proto::xml::Element;
use wxmp_proto::{Article, Message, Reply};

/// How long the webhook may take. Beyond the reply deadline its answer goes out as a
/// 客服消息, so this only bounds how late that may be.
pub(crate) const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest webhook answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The header carrying the delivery's dedup key.
pub(crate) const DELIVERY_HEADER: &str = "X-Wxmp-Delivery";

/// The message as the webhook receives it.
pub(crate) fn message_json(app: &str, message: &Message) -> Value {
    let mut object = children_object(&message.raw.children);
    object.insert("app".to_owned(), Value::String(app.to_owned()));
    Value::Object(object)
}

/// An object of `children`, repeated names collected into arrays.
fn children_object(children: &[Element]) -> Map<String, Value> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for child in children {
        *counts.entry(child.name.as_str()).or_default() += 1;
    }
    let mut object = Map::new();
    for child in children {
        let value = element_value(child);
        if counts.get(child.name.as_str()).copied().unwrap_or(0) > 1 {
            let slot = object
                .entry(child.name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(values) = slot {
                values.push(value);
            }
        } else {
            object.insert(child.name.clone(), value);
        }
    }
    object
}

/// True for elements that hold a list.
fn is_list(element: &Element) -> bool {
    element.name.ends_with("List")
        || (!element.children.is_empty() && element.children.iter().all(|c| c.name == "item"))
}

/// One element's JSON value, by the rules in the module docs.
fn element_value(element: &Element) -> Value {
    if is_list(element) {
        if element.children.is_empty() && !element.text.trim().is_empty() {
            // A `…List` leaf with text: not a list after all.
            return Value::String(element.text.clone());
        }
        return Value::Array(element.children.iter().map(element_value).collect());
    }
    if element.children.is_empty() {
        return Value::String(element.text.clone());
    }
    Value::Object(children_object(&element.children))
}

/// A reply as the webhook writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WebhookReply {
    Text {
        content: String,
    },
    Image {
        media_id: String,
    },
    Voice {
        media_id: String,
    },
    Video {
        media_id: String,
        title: Option<String>,
        description: Option<String>,
        thumb_media_id: Option<String>,
    },
    Music {
        title: Option<String>,
        description: Option<String>,
        music_url: Option<String>,
        hq_music_url: Option<String>,
        thumb_media_id: String,
    },
    News {
        articles: Vec<WebhookArticle>,
    },
    TransferCustomerService {
        kf_account: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct WebhookArticle {
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    pic_url: String,
    #[serde(default)]
    url: String,
}

/// A webhook's reply: the passive reply, plus what only a 客服消息 can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebhookAnswer {
    /// The reply.
    pub reply: Reply,
    /// A video's `thumb_media_id`, needed if the reply goes out as a 客服消息.
    pub video_thumb_media_id: Option<String>,
}

impl From<WebhookReply> for WebhookAnswer {
    fn from(reply: WebhookReply) -> Self {
        let mut video_thumb_media_id = None;
        let reply = match reply {
            WebhookReply::Text { content } => Reply::Text { content },
            WebhookReply::Image { media_id } => Reply::Image { media_id },
            WebhookReply::Voice { media_id } => Reply::Voice { media_id },
            WebhookReply::Video {
                media_id,
                title,
                description,
                thumb_media_id,
            } => {
                video_thumb_media_id = thumb_media_id;
                Reply::Video {
                    media_id,
                    title,
                    description,
                }
            }
            WebhookReply::Music {
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
            WebhookReply::News { articles } => Reply::News {
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
            WebhookReply::TransferCustomerService { kf_account } => {
                Reply::TransferCustomerService { kf_account }
            }
        };
        WebhookAnswer {
            reply,
            video_thumb_media_id,
        }
    }
}

/// Why the webhook gave no usable answer. Messages never contain the URL (it may carry a
/// secret) or the answer's body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    /// Connect error or timeout.
    #[error("cannot reach the webhook: {0}")]
    Transport(String),
    /// A status other than 200 or 204.
    #[error("the webhook answered HTTP {0}")]
    Status(u16),
    /// A 200 whose body is not a documented reply.
    #[error(
        "the webhook's answer is not a documented reply (e.g. {{\"type\":\"text\",\"content\":\"…\"}}): {0}"
    )]
    BadAnswer(String),
}

/// Parses a `200` answer's body; blank means no reply.
fn parse_answer(body: &[u8]) -> Result<Option<WebhookAnswer>, WebhookError> {
    if body.trim_ascii().is_empty() {
        return Ok(None);
    }
    serde_json::from_slice::<WebhookReply>(body)
        .map(|reply| Some(reply.into()))
        // Position and category only: serde's message may quote the answer's strings.
        .map_err(|e| {
            WebhookError::BadAnswer(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })
}

/// POSTs the message to the webhook and reads its reply (`Ok(None)`: nothing to say).
pub(crate) async fn call(
    http: &reqwest::Client,
    url: &Url,
    app: &str,
    message: &Message,
    delivery: &str,
) -> Result<Option<WebhookAnswer>, WebhookError> {
    let transport = |e: reqwest::Error| WebhookError::Transport(e.without_url().to_string());
    let mut response = http
        .post(url.clone())
        .timeout(WEBHOOK_TIMEOUT)
        .header(DELIVERY_HEADER, delivery)
        .json(&message_json(app, message))
        .send()
        .await
        .map_err(transport)?;
    match response.status().as_u16() {
        204 => return Ok(None),
        200 => {}
        other => return Err(WebhookError::Status(other)),
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(WebhookError::BadAnswer("larger than 1 MiB".to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    parse_answer(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_of(xml: &str) -> Value {
        message_json("demo", &Message::parse(xml.as_bytes()).unwrap())
    }

    #[test]
    fn flat_fields_are_strings_named_as_in_the_xml() {
        let v = json_of(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
             <CreateTime>1348831860</CreateTime><MsgType><![CDATA[location]]></MsgType>\
             <Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y><Scale>20</Scale>\
             <Label><![CDATA[位置]]></Label><MsgId>18446744073709551615</MsgId></xml>",
        );
        assert_eq!(
            v,
            json!({"ToUserName":"gh_1","FromUserName":"o1","CreateTime":"1348831860",
                   "MsgType":"location","Location_X":"23.134521","Location_Y":"113.358803",
                   "Scale":"20","Label":"位置","MsgId":"18446744073709551615","app":"demo"})
        );
    }

    #[test]
    fn nested_containers_and_lists() {
        let v = json_of(
            "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>event</MsgType><Event>pic_weixin</Event><EventKey>k</EventKey>\
             <SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum>m1</PicMd5Sum></item>\
             <item><PicMd5Sum>m2</PicMd5Sum></item></PicList></SendPicsInfo>\
             <Extra><ResultList></ResultList><Tag>x</Tag><Tag>y</Tag></Extra></xml>",
        );
        assert_eq!(
            v["SendPicsInfo"],
            json!({"Count":"2","PicList":[{"PicMd5Sum":"m1"},{"PicMd5Sum":"m2"}]})
        );
        assert_eq!(v["Extra"], json!({"ResultList":[],"Tag":["x","y"]}));
        let one = json_of(
            "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>event</MsgType><Event>scancode_push</Event><EventKey>6</EventKey>\
             <ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult>1</ScanResult></ScanCodeInfo>\
             <SendPicsInfo><Count>1</Count><PicList><item><PicMd5Sum>m</PicMd5Sum></item></PicList></SendPicsInfo></xml>",
        );
        assert_eq!(
            one["ScanCodeInfo"],
            json!({"ScanType":"qrcode","ScanResult":"1"})
        );
        assert_eq!(one["SendPicsInfo"]["PicList"], json!([{"PicMd5Sum":"m"}]));
    }

    #[test]
    fn replies_parse_from_json() {
        let parse = |s: &str| parse_answer(s.as_bytes()).unwrap().unwrap();
        assert_eq!(
            parse(r#"{"type":"text","content":"hi"}"#).reply,
            Reply::text("hi")
        );
        let video = parse(r#"{"type":"video","media_id":"m","thumb_media_id":"t","extra":1}"#);
        assert_eq!(video.video_thumb_media_id.as_deref(), Some("t"));
        assert_eq!(
            parse(r#"{"type":"transfer_customer_service"}"#).reply,
            Reply::TransferCustomerService { kf_account: None }
        );
        assert_eq!(parse_answer(b"  \n").unwrap(), None);
        for bad in [
            "<xml/>",
            "{}",
            r#"{"type":"text"}"#,
            r#"{"type":"poem","content":"x"}"#,
            r#"{"type":"music","title":"no thumb"}"#,
        ] {
            assert!(parse_answer(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
