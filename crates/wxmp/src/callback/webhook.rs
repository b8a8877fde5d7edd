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
//!   64-bit `MsgId` would lose digits as a JavaScript number. An empty element is `""`, even
//!   an empty container (`<ResultList></ResultList>`): the XML cannot tell them apart.
//! - An element with children is an object of its children, by the same rules
//!   (`"ScanCodeInfo":{"ScanType":"qrcode",…}`).
//! - A name that occurs more than once among siblings is an array of their values, in order,
//!   so nothing is dropped and every name is kept:
//!   `"SubscribeMsgPopupEvent":{"List":[{"TemplateId":…,"SubscribeStatusString":…,"PopupScene":…},…]}`.
//! - The names WeChat uses for list entries — `item`, `List` and `fail_idx` — are arrays even
//!   when only one occurs (WeChat sends a single `<List>` for a popup with one template), so
//!   a webhook reads a list the same way whatever its length:
//!   `"SendPicsInfo":{"Count":"1","PicList":{"item":[{"PicMd5Sum":"…"}]}}`. Any other name
//!   that occurs once is a plain value.
//!
//! These rules map the tree back without loss: every name and every value of the XML can be
//! recovered from the JSON (the property tests check it for arbitrary trees), only the order
//! of differently named siblings is not kept.
//!
//! The request is `POST` with `Content-Type: application/json` and
//! `X-Wxmp-Delivery: <dedup key>` (`msgid:…` or `event:<openid>:<CreateTime>:<Event>:<EventKey>`,
//! percent-encoded outside `A-Z a-z 0-9 - _ .`): the same value
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
//! {"type":"news","media_id":"…"}   // a permanent 图文 material: sent as a 客服消息 (mpnews)
//! {"type":"transfer_customer_service","kf_account":"…"}
//! ```
//!
//! Only `content`, `media_id`, music's `thumb_media_id` and news' `articles` (1 to 8) or
//! `media_id` are required; other fields may be left out, and unknown fields are ignored.
//! `thumb_media_id` of a video is only used when the reply has to go out as a 客服消息, which
//! needs it. The JSON form is shared with the config's auto-replies ([`crate::outbound`]).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;
use wxmp_proto::xml::Element;
use wxmp_proto::Message;

use crate::outbound;
use crate::reply::{Outbound, ReplyJson};

/// How long the webhook may take. Beyond the reply deadline its answer goes out as a
/// 客服消息, so this only bounds how late that may be.
pub(crate) const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest webhook answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The header carrying the delivery's dedup key.
pub(crate) const DELIVERY_HEADER: &str = "X-Wxmp-Delivery";

/// The names that are always arrays: WeChat's list entries (see the module docs).
const LIST_NAMES: [&str; 3] = ["item", "List", "fail_idx"];

/// The message as the webhook receives it.
pub(crate) fn message_json(app: &str, message: &Message) -> Value {
    let mut object = children_object(&message.raw.children);
    object.insert("app".to_owned(), Value::String(app.to_owned()));
    Value::Object(object)
}

/// An object of `children`: repeated names, and list names, collected into arrays.
fn children_object(children: &[Element]) -> Map<String, Value> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for child in children {
        *counts.entry(child.name.as_str()).or_default() += 1;
    }
    let mut object = Map::new();
    for child in children {
        let value = element_value(child);
        let name = child.name.as_str();
        if LIST_NAMES.contains(&name) || counts.get(name).copied().unwrap_or(0) > 1 {
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

/// One element's JSON value: its text for a leaf, else the object of its children.
fn element_value(element: &Element) -> Value {
    if element.children.is_empty() {
        Value::String(element.text.clone())
    } else {
        Value::Object(children_object(&element.children))
    }
}

/// Why the webhook gave no usable answer. Messages never contain the URL (it may carry a
/// secret) or the answer's body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    /// Connect error or timeout.
    #[error("cannot reach the webhook: {0}")]
    Transport(String),
    /// A `3xx`: redirects are not followed.
    #[error("{}", outbound::redirect_refused("the webhook", *.0))]
    Redirect(u16),
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
pub(super) fn parse_answer(body: &[u8]) -> Result<Option<Outbound>, WebhookError> {
    if body.trim_ascii().is_empty() {
        return Ok(None);
    }
    serde_json::from_slice::<ReplyJson>(body)
        .map(|json| Some(json.into()))
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
) -> Result<Option<Outbound>, WebhookError> {
    let transport = |e: reqwest::Error| WebhookError::Transport(outbound::describe(&e));
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
        // Following it would hand the decrypted message to another host.
        redirect @ 300..=399 => return Err(WebhookError::Redirect(redirect)),
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
    use proptest::prelude::*;
    use serde_json::json;
    use wxmp_proto::xml;
    use wxmp_proto::Reply;

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
    fn subscribe_msg_popup_event_keeps_every_name() {
        let header = "<ToUserName><![CDATA[gh_123456789abc]]></ToUserName>\
             <FromUserName><![CDATA[otFpruAK8D-E6EfStSYonYSBZ8_4]]></FromUserName>\
             <CreateTime>1610969440</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[subscribe_msg_popup_event]]></Event>";
        let two = json_of(&format!(
            "<xml>{header}<SubscribeMsgPopupEvent>\n<List>\n\
             <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>\n\
             <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>\n\
             <PopupScene>2</PopupScene>\n</List>\n<List>\n\
             <TemplateId><![CDATA[9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI]]></TemplateId>\n\
             <SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>\n\
             <PopupScene>2</PopupScene>\n</List>\n</SubscribeMsgPopupEvent></xml>"
        ));
        assert_eq!(
            two["SubscribeMsgPopupEvent"],
            json!({"List":[
                {"TemplateId":"VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc",
                 "SubscribeStatusString":"accept","PopupScene":"2"},
                {"TemplateId":"9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI",
                 "SubscribeStatusString":"reject","PopupScene":"2"}
            ]})
        );
        // One template: still an array of one object.
        let one = json_of(&format!(
            "<xml>{header}<SubscribeMsgPopupEvent><List><TemplateId>t</TemplateId>\
             <SubscribeStatusString>accept</SubscribeStatusString><PopupScene>2</PopupScene>\
             </List></SubscribeMsgPopupEvent></xml>"
        ));
        assert_eq!(
            one["SubscribeMsgPopupEvent"],
            json!({"List":[{"TemplateId":"t","SubscribeStatusString":"accept","PopupScene":"2"}]})
        );
    }

    #[test]
    fn publish_job_finish_lists() {
        let v = json_of(
            "<xml><ToUserName>a</ToUserName><FromUserName>mphelper</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>event</MsgType><Event>PUBLISHJOBFINISH</Event><PublishEventInfo>\
             <publish_id>2247503051</publish_id><publish_status>2</publish_status>\
             <fail_idx>1</fail_idx></PublishEventInfo></xml>",
        );
        assert_eq!(
            v["PublishEventInfo"],
            json!({"publish_id":"2247503051","publish_status":"2","fail_idx":["1"]})
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
            json!({"Count":"2","PicList":{"item":[{"PicMd5Sum":"m1"},{"PicMd5Sum":"m2"}]}})
        );
        assert_eq!(v["Extra"], json!({"ResultList":"","Tag":["x","y"]}));
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
        assert_eq!(
            one["SendPicsInfo"]["PicList"],
            json!({"item":[{"PicMd5Sum":"m"}]})
        );
    }

    #[test]
    fn replies_parse_from_json() {
        let parse = |s: &str| parse_answer(s.as_bytes()).unwrap().unwrap();
        assert_eq!(
            parse(r#"{"type":"text","content":"hi"}"#),
            Outbound::text("hi")
        );
        let video = parse(r#"{"type":"video","media_id":"m","thumb_media_id":"t","extra":1}"#);
        assert!(matches!(
            video,
            Outbound::Reply { video_thumb_media_id: Some(t), .. } if t == "t"
        ));
        assert_eq!(
            parse(r#"{"type":"transfer_customer_service"}"#).passive(),
            Some(&Reply::TransferCustomerService { kf_account: None })
        );
        assert_eq!(
            parse(r#"{"type":"news","media_id":"m"}"#),
            Outbound::MpNews {
                media_id: "m".into()
            }
        );
        assert_eq!(parse_answer(b"  \n").unwrap(), None);
        for bad in [
            "<xml/>",
            "{}",
            r#"{"type":"text"}"#,
            r#"{"type":"poem","content":"x"}"#,
            r#"{"type":"music","title":"no thumb"}"#,
            r#"{"type":"news"}"#,
        ] {
            assert!(parse_answer(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    /// Element names: WeChat's list names and arbitrary ones.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["item", "List", "fail_idx", "PicList", "Count"])
                .prop_map(String::from),
            "[A-Za-z_][A-Za-z0-9_]{0,8}",
        ]
    }

    /// Leaf text, with what needs escaping over-represented (no `\r`: parsers normalise it).
    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("]]>".to_owned()),
                Just("<&>\"'".to_owned()),
                Just(" \n\t".to_owned()),
                "[a-z0-9]{1,4}",
                "[\u{4e00}-\u{9fff}😀]{1,2}",
            ],
            0..5,
        )
        .prop_map(|parts| parts.concat())
    }

    fn element() -> impl Strategy<Value = Element> {
        let leaf = (name(), text()).prop_map(|(name, text)| Element {
            name,
            text,
            children: vec![],
        });
        leaf.prop_recursive(4, 40, 5, |inner| {
            (name(), prop::collection::vec(inner, 1..5)).prop_map(|(name, children)| Element {
                name,
                text: String::new(),
                children,
            })
        })
    }

    /// A push: the header, then arbitrary fields (none named like the header or `app`).
    fn push() -> impl Strategy<Value = Element> {
        let header = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "app"];
        prop::collection::vec(
            element().prop_filter("not a header name", move |e| {
                !header.contains(&e.name.as_str())
            }),
            0..8,
        )
        .prop_map(|fields| {
            let leaf = |name: &str, text: &str| Element {
                name: name.to_owned(),
                text: text.to_owned(),
                children: vec![],
            };
            let mut children = vec![
                leaf("ToUserName", "gh_1"),
                leaf("FromUserName", "oUser"),
                leaf("CreateTime", "1700000000"),
                leaf("MsgType", "future_type"),
            ];
            children.extend(fields);
            Element {
                name: "xml".to_owned(),
                text: String::new(),
                children,
            }
        })
    }

    /// The elements a JSON value stands for under `name`: the mapping read backwards.
    fn elements_of(name: &str, value: &Value) -> Vec<Element> {
        match value {
            Value::String(text) => vec![Element {
                name: name.to_owned(),
                text: text.clone(),
                children: vec![],
            }],
            Value::Object(map) => vec![Element {
                name: name.to_owned(),
                text: String::new(),
                children: map.iter().flat_map(|(k, v)| elements_of(k, v)).collect(),
            }],
            Value::Array(values) => values.iter().flat_map(|v| elements_of(name, v)).collect(),
            other => panic!("the mapping never writes {other}"),
        }
    }

    /// Siblings grouped by name, each group in document order: what the JSON keeps.
    fn grouped(mut element: Element) -> Element {
        element.children = element.children.into_iter().map(grouped).collect();
        element.children.sort_by(|a, b| a.name.cmp(&b.name));
        element
    }

    proptest! {
        #[test]
        fn json_keeps_every_name_and_value(root in push()) {
            let text = xml::render(&root);
            let message = Message::parse(text.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            let Value::Object(mut object) = message_json("demo", &message) else {
                return Err(TestCaseError::fail("not an object"));
            };
            prop_assert_eq!(object.remove("app"), Some(Value::String("demo".into())));
            let back = Element {
                name: "xml".to_owned(),
                text: String::new(),
                children: object.iter().flat_map(|(k, v)| elements_of(k, v)).collect(),
            };
            prop_assert_eq!(grouped(back), grouped(root));
        }

        #[test]
        fn list_names_are_always_arrays(root in push()) {
            fn check(value: &Value) -> Result<(), TestCaseError> {
                if let Value::Object(map) = value {
                    for (name, v) in map {
                        if LIST_NAMES.contains(&name.as_str()) {
                            prop_assert!(v.is_array(), "{} is {}", name, v);
                        }
                        match v {
                            Value::Array(items) => items.iter().try_for_each(check)?,
                            v => check(v)?,
                        }
                    }
                }
                Ok(())
            }
            let message = Message::parse(xml::render(&root).as_bytes()).unwrap();
            check(&message_json("demo", &message))?;
        }
    }
}
