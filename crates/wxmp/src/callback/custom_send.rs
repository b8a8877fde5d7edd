//! A reply that missed the passive window, sent as a 客服消息 (customer-service message).
//!
//! WeChat closes a push after 5 seconds; an answer that comes later can only reach the user
//! through `POST /cgi-bin/message/custom/send` (WeChat's 客服消息), which is allowed for 48 hours
//! after the user's message. The JSON shapes differ from the passive XML in small ways
//! (`musicurl`, `picurl`, a video's `thumb_media_id`), so the mapping lives here, as a pure
//! function with its own tests. A 图文 material by `media_id` only exists in this form
//! (`mpnews`), and the messages after a rule's first reply (`pick = "all"`) use it too. The token comes from the 中控; a stale one (40001, 40014,
//! 42001) gets one conditional refresh and one retry, like the proxy does, so a crowd of late
//! replies still costs one token call.

use serde_json::{json, Value};
use wxmp_proto::{ApiErrcode, Reply};

use super::answer::Answer;
use crate::outbound;
use crate::reply::Outbound;
use crate::state::AppState;
use crate::token::upstream::REQUEST_TIMEOUT;

/// The `message/custom/send` body for `reply` to `touser`, or `None` for a reply that has no
/// customer-service form (`transfer_customer_service`).
pub(crate) fn body(
    touser: &str,
    reply: &Reply,
    video_thumb_media_id: Option<&str>,
) -> Option<Value> {
    let (msgtype, content) = match reply {
        Reply::Text { content } => ("text", json!({ "content": content })),
        Reply::Image { media_id } => ("image", json!({ "media_id": media_id })),
        Reply::Voice { media_id } => ("voice", json!({ "media_id": media_id })),
        Reply::Video {
            media_id,
            title,
            description,
        } => {
            let mut video = json!({ "media_id": media_id });
            insert_some(&mut video, "thumb_media_id", video_thumb_media_id);
            insert_some(&mut video, "title", title.as_deref());
            insert_some(&mut video, "description", description.as_deref());
            ("video", video)
        }
        Reply::Music {
            title,
            description,
            music_url,
            hq_music_url,
            thumb_media_id,
        } => {
            let mut music = json!({ "thumb_media_id": thumb_media_id });
            insert_some(&mut music, "title", title.as_deref());
            insert_some(&mut music, "description", description.as_deref());
            insert_some(&mut music, "musicurl", music_url.as_deref());
            insert_some(&mut music, "hqmusicurl", hq_music_url.as_deref());
            ("music", music)
        }
        Reply::News { articles } => {
            let articles: Vec<Value> = articles
                .iter()
                .map(|a| {
                    json!({
                        "title": a.title,
                        "description": a.description,
                        "url": a.url,
                        "picurl": a.pic_url,
                    })
                })
                .collect();
            ("news", json!({ "articles": articles }))
        }
        Reply::TransferCustomerService { .. } => return None,
    };
    let mut body = json!({ "touser": touser, "msgtype": msgtype });
    if let Value::Object(map) = &mut body {
        map.insert(msgtype.to_owned(), content);
    }
    Some(body)
}

/// The `message/custom/send` body for `outbound` to `touser` (`None`: no customer-service form).
pub(crate) fn outbound_body(touser: &str, outbound: &Outbound) -> Option<Value> {
    match outbound {
        Outbound::Reply {
            reply,
            video_thumb_media_id,
        } => body(touser, reply, video_thumb_media_id.as_deref()),
        Outbound::MpNews { media_id } => Some(json!({
            "touser": touser,
            "msgtype": "mpnews",
            "mpnews": { "media_id": media_id },
        })),
    }
}

fn insert_some(object: &mut Value, key: &str, value: Option<&str>) {
    if let (Value::Object(map), Some(value)) = (object, value) {
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

/// Why a 客服消息 could not be sent. Never contains the access_token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The reply has no customer-service form.
    #[error("a transfer_customer_service reply cannot be sent as a customer-service message")]
    NotSendable,
    /// No access_token (callback-only app, upstream refusing, …).
    #[error("no access_token: {0}")]
    Token(#[from] crate::token::TokenError),
    /// The request failed or WeChat answered garbage.
    #[error("cannot reach WeChat: {0}")]
    Transport(String),
    /// WeChat refused (e.g. 45015: the user's 48-hour window is closed).
    #[error("WeChat answered errcode {errcode}: {errmsg}")]
    Api {
        /// `errcode`.
        errcode: i64,
        /// `errmsg`.
        errmsg: String,
    },
}

/// Sends `outbound` to `touser` as a 客服消息 of `app`.
pub(crate) async fn send(
    state: &AppState,
    app: &str,
    touser: &str,
    outbound: &Outbound,
) -> Result<(), SendError> {
    let body = outbound_body(touser, outbound).ok_or(SendError::NotSendable)?;
    let started = std::time::Instant::now();
    let sent = state
        .tokens
        .with_access_token(
            app,
            |token| {
                let body = &body;
                async move { post(state, &token, body).await }
            },
            |sent| {
                matches!(sent, Err(SendError::Api { errcode, .. })
                    if ApiErrcode::is_stale_token_code(*errcode))
            },
        )
        .await;
    state
        .metrics
        .upstream_latency(app, "custom_send", started.elapsed());
    sent?
}

/// Sends the messages that follow an answer's first one, in order, each after the previous
/// one was accepted: WeChat shows 客服消息 in the order it accepts them. A failure is logged
/// and the rest are still tried, since one bad media_id should not silence the others.
/// `delivery` is the delivery as logs may show it (OpenID masked).
pub(crate) async fn send_follow_ups(
    state: &AppState,
    answer: &Answer,
    app: &str,
    touser: &str,
    delivery: &str,
) {
    let total = answer.follow_ups.len();
    for (i, outbound) in answer.follow_ups.iter().enumerate() {
        match send(state, app, touser, outbound).await {
            Ok(()) => {
                tracing::debug!(
                    app,
                    delivery,
                    n = i + 1,
                    total,
                    "follow-up sent as a customer-service message"
                )
            }
            Err(e) => {
                tracing::warn!(app, delivery, n = i + 1, total, error = %e, "follow-up could not be sent as a customer-service message")
            }
        }
    }
}

/// One `message/custom/send` call.
async fn post(state: &AppState, access_token: &str, body: &Value) -> Result<(), SendError> {
    #[derive(serde::Deserialize)]
    struct Status {
        #[serde(default)]
        errcode: i64,
        #[serde(default)]
        errmsg: String,
    }
    let upstream = state.tokens.upstream();
    let mut url = upstream.url("cgi-bin/message/custom/send");
    url.query_pairs_mut()
        .append_pair("access_token", access_token);
    let transport = |e: reqwest::Error| SendError::Transport(outbound::describe(&e));
    let response = upstream
        .http()
        .post(url)
        .timeout(REQUEST_TIMEOUT)
        .json(body)
        .send()
        .await
        .map_err(transport)?;
    if response.status().is_redirection() {
        return Err(SendError::Transport(outbound::redirect_refused(
            "WeChat",
            response.status().as_u16(),
        )));
    }
    let status: Status = response.json().await.map_err(transport)?;
    if status.errcode == 0 {
        Ok(())
    } else {
        Err(SendError::Api {
            errcode: status.errcode,
            errmsg: status.errmsg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxmp_proto::Article;

    #[test]
    fn every_reply_maps_to_the_customer_service_shape() {
        let to = "oUser";
        assert_eq!(
            body(to, &Reply::text("你好"), None),
            Some(json!({"touser":"oUser","msgtype":"text","text":{"content":"你好"}}))
        );
        assert_eq!(
            body(
                to,
                &Reply::Voice {
                    media_id: "m".into()
                },
                None
            ),
            Some(json!({"touser":"oUser","msgtype":"voice","voice":{"media_id":"m"}}))
        );
        let video = Reply::Video {
            media_id: "m".into(),
            title: Some("t".into()),
            description: None,
        };
        assert_eq!(
            body(to, &video, Some("th")),
            Some(json!({"touser":"oUser","msgtype":"video",
                        "video":{"media_id":"m","thumb_media_id":"th","title":"t"}}))
        );
        let music = Reply::Music {
            title: Some("t".into()),
            description: Some("d".into()),
            music_url: Some("u".into()),
            hq_music_url: Some("hq".into()),
            thumb_media_id: "th".into(),
        };
        assert_eq!(
            body(to, &music, None),
            Some(json!({"touser":"oUser","msgtype":"music","music":{
                "title":"t","description":"d","musicurl":"u","hqmusicurl":"hq","thumb_media_id":"th"}}))
        );
        let news = Reply::News {
            articles: vec![Article {
                title: "t".into(),
                description: "d".into(),
                pic_url: "p".into(),
                url: "u".into(),
            }],
        };
        assert_eq!(
            body(to, &news, None),
            Some(
                json!({"touser":"oUser","msgtype":"news","news":{"articles":[
                {"title":"t","description":"d","url":"u","picurl":"p"}]}})
            )
        );
        assert_eq!(
            body(
                to,
                &Reply::TransferCustomerService { kf_account: None },
                None
            ),
            None
        );
        assert_eq!(
            outbound_body(
                to,
                &Outbound::MpNews {
                    media_id: "m".into()
                }
            ),
            Some(json!({"touser":"oUser","msgtype":"mpnews","mpnews":{"media_id":"m"}}))
        );
    }
}
