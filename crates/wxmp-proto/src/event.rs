//! Event pushes (`MsgType` = `event`, 接收事件推送) as typed values.
//!
//! WeChat tells a server about things users *did* — followed, scanned a 带参数二维码, tapped a
//! 自定义菜单 button, shared a location, answered a 订阅通知 popup, talked to 客服 — and about
//! things that happened to the account (jobs finished, 微信认证 results, users revoking what
//! they authorised), all as `<xml>` bodies with an `Event` name. [`Event`] has one variant
//! per documented name, with the fields that event carries, and [`Event::Unknown`] for every
//! other name: WeChat adds events without notice and a server must still answer them. Names
//! are matched exactly, as the docs spell them (`SCAN`, `LOCATION`, `CLICK`, `VIEW` upper
//! case; the others lower; the job events all caps).
//!
//! Fields are read by the rules in [`crate::message`]: missing text is `""`, conditional
//! fields are `None` when absent or empty, numbers must parse. The containers that are the
//! point of an event (`ScanCodeInfo`, `SendPicsInfo`, `SendLocationInfo`,
//! `SubscribeMsgPopupEvent`, `PublishEventInfo`, …) are required. A known event whose fields
//! break these rules (a `Latitude` that is not a number) is [`Event::Malformed`], with the
//! reason: the push passed its signature check, so it came from WeChat, and answering it
//! with an error would show the user "该公众号暂时无法提供服务" over a field the server may
//! not even read. It is forwarded like an unknown event, its fields in
//! [`crate::Message::raw`].

use crate::message::fields::{
    container, f64_field, i64_field, optional, required, string, u32_field, u64_field,
};
use crate::xml::Element;
use crate::Error;

/// An event push, keyed by its `Event` name.
///
/// WeChat docs: 接收事件推送 (subscribe, SCAN, LOCATION, CLICK, VIEW), 自定义菜单事件推送
/// (the `scancode_*`, `pic_*`, `location_select` and `view_miniprogram` menu events),
/// 模板消息 (送达结果), 群发接口 (群发结果), 订阅通知 (事件推送), 客服 (会话状态通知), 发布能力
/// (发布回调), 微信认证事件推送 and 授权用户资料变更.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `subscribe` — 关注. Through a 带参数二维码 the user did not yet follow, `EventKey` is
    /// `qrscene_` + the scene value and `Ticket` is set; see [`Event::scene`].
    Subscribe {
        /// `EventKey`, `None` when absent or empty (a plain follow).
        event_key: Option<String>,
        /// `Ticket` of the QR code, `None` when absent or empty.
        ticket: Option<String>,
    },
    /// `unsubscribe` — 取消关注. A passive reply to it is never shown.
    Unsubscribe,
    /// `SCAN` — a user who already follows scanned a 带参数二维码.
    Scan {
        /// `EventKey`: the scene value itself (`scene_id` or `scene_str`), no prefix.
        event_key: String,
        /// `Ticket` of the QR code.
        ticket: String,
    },
    /// `LOCATION` — 上报地理位置, sent on entering the chat when location reporting is on.
    Location {
        /// `Latitude`, in degrees.
        latitude: f64,
        /// `Longitude`, in degrees.
        longitude: f64,
        /// `Precision`: the accuracy, in metres.
        precision: f64,
    },
    /// `CLICK` — a `click` menu button was tapped.
    Click {
        /// `EventKey`: the button's `key`.
        event_key: String,
    },
    /// `VIEW` — a `view` menu button opened a URL.
    View {
        /// `EventKey`: the URL.
        event_key: String,
        /// `MenuId`: the personalised menu's id, when the button belongs to one.
        menu_id: Option<String>,
    },
    /// `scancode_push` — 扫码推事件: WeChat scanned and handled the code itself.
    ScancodePush {
        /// `EventKey`: the button's `key`.
        event_key: String,
        /// `ScanCodeInfo`.
        scan_code_info: ScanCodeInfo,
    },
    /// `scancode_waitmsg` — 扫码推事件且弹出"消息接收中": the user waits for a reply.
    ScancodeWaitmsg {
        /// `EventKey`: the button's `key`.
        event_key: String,
        /// `ScanCodeInfo`.
        scan_code_info: ScanCodeInfo,
    },
    /// `pic_sysphoto` — 弹出系统拍照发图.
    PicSysphoto {
        /// `EventKey`: the button's `key`.
        event_key: String,
        /// `SendPicsInfo`.
        send_pics_info: SendPicsInfo,
    },
    /// `pic_photo_or_album` — 弹出拍照或者相册发图.
    PicPhotoOrAlbum {
        /// `EventKey`: the button's `key`.
        event_key: String,
        /// `SendPicsInfo`.
        send_pics_info: SendPicsInfo,
    },
    /// `pic_weixin` — 弹出微信相册发图器.
    PicWeixin {
        /// `EventKey`: the button's `key`.
        event_key: String,
        /// `SendPicsInfo`.
        send_pics_info: SendPicsInfo,
    },
    /// `location_select` — 弹出地理位置选择器.
    LocationSelect {
        /// `EventKey`: the button's `key`.
        event_key: String,
        /// `SendLocationInfo`.
        send_location_info: SendLocationInfo,
    },
    /// `TEMPLATESENDJOBFINISH` — 模板消息送达结果.
    TemplateSendJobFinish {
        /// `MsgID` (capital D): the id the send API returned for the template message.
        msg_id: u64,
        /// `Status`: `success`, `failed:user block` or `failed: system failed`.
        status: String,
    },
    /// `MASSSENDJOBFINISH` — 群发结果, sent from `mphelper`.
    MassSendJobFinish {
        /// `MsgID` (capital D): the id the mass-send API returned.
        msg_id: u64,
        /// `Status`: `send success`, `send fail` or `err(num)` (e.g. `err(10001)` 涉嫌广告).
        status: String,
        /// `TotalCount`: fans targeted.
        total_count: u64,
        /// `FilterCount`: fans left after filtering (the ones actually sent to).
        filter_count: u64,
        /// `SentCount`: successful sends.
        sent_count: u64,
        /// `ErrorCount`: failed sends.
        error_count: u64,
        /// `CopyrightCheckResult` (原创校验), kept as parsed: its layout is nested and
        /// rarely needed.
        copyright_check_result: Option<Element>,
        /// `ArticleUrlResult`: the published articles' URLs, kept as parsed.
        article_url_result: Option<Element>,
    },
    /// `view_miniprogram` — a `miniprogram` menu button opened a 小程序.
    ViewMiniprogram {
        /// `EventKey`: the 小程序 page path, e.g. `pages/index/index`.
        event_key: String,
        /// `MenuId`: the personalised menu's id, when the button belongs to one.
        menu_id: Option<String>,
    },
    /// `subscribe_msg_popup_event` — the user answered a 订阅通知 popup: one entry per
    /// template in it.
    SubscribeMsgPopupEvent {
        /// `SubscribeMsgPopupEvent/List`, in order.
        list: Vec<SubscribeMsgPopup>,
    },
    /// `subscribe_msg_change_event` — the user changed a 订阅通知 in the service
    /// notification settings (WeChat only reports refusals).
    SubscribeMsgChangeEvent {
        /// `SubscribeMsgChangeEvent/List`, in order.
        list: Vec<SubscribeMsgChange>,
    },
    /// `subscribe_msg_sent_event` — the result of sending a 订阅通知.
    SubscribeMsgSentEvent {
        /// `SubscribeMsgSentEvent/List`, in order.
        list: Vec<SubscribeMsgSent>,
    },
    /// `kf_create_session` — a 客服 agent took the conversation.
    KfCreateSession {
        /// `KfAccount`: the agent, `account@wechat_id`.
        kf_account: String,
    },
    /// `kf_close_session` — a 客服 agent closed the conversation.
    KfCloseSession {
        /// `KfAccount`: the agent.
        kf_account: String,
    },
    /// `kf_switch_session` — the conversation moved to another 客服 agent.
    KfSwitchSession {
        /// `FromKfAccount`: the agent who had it.
        from_kf_account: String,
        /// `ToKfAccount`: the agent who has it now.
        to_kf_account: String,
    },
    /// `user_info_modified` — WeChat cleaned up a user's authorised profile (nickname,
    /// avatar); refresh what was stored from 网页授权.
    UserInfoModified {
        /// `OpenID`: the user.
        open_id: String,
        /// `AppID`: the app the user had authorised.
        app_id: String,
    },
    /// `user_authorization_revoke` — the user withdrew authorised information; delete it.
    UserAuthorizationRevoke {
        /// `OpenID`: the user.
        open_id: String,
        /// `AppID`: the app the user had authorised.
        app_id: String,
        /// `RevokeInfo`: which information was withdrawn, as WeChat codes it.
        revoke_info: String,
    },
    /// `user_authorization_cancellation` — the user deleted their WeChat account.
    UserAuthorizationCancellation {
        /// `OpenID`: the user.
        open_id: String,
        /// `AppID`: the app the user had authorised.
        app_id: String,
    },
    /// `PUBLISHJOBFINISH` — 发布回调: a 发布 job ended (sent from `mphelper`).
    PublishJobFinish {
        /// `PublishEventInfo`.
        publish_event_info: PublishEventInfo,
    },
    /// `qualification_verify_success` — 资质认证成功: the interfaces are unlocked.
    QualificationVerifySuccess {
        /// `ExpiredTime`: when the verification expires, Unix seconds.
        expired_time: u64,
    },
    /// `qualification_verify_fail` — 资质认证失败.
    QualificationVerifyFail {
        /// `FailTime`: Unix seconds.
        fail_time: u64,
        /// `FailReason`.
        fail_reason: String,
    },
    /// `naming_verify_success` — 名称认证成功.
    NamingVerifySuccess {
        /// `ExpiredTime`: when the verification expires, Unix seconds.
        expired_time: u64,
    },
    /// `naming_verify_fail` — 名称认证失败 (the interfaces stay unlocked).
    NamingVerifyFail {
        /// `FailTime`: Unix seconds.
        fail_time: u64,
        /// `FailReason`.
        fail_reason: String,
    },
    /// `annual_renew` — 年审通知: the verification must be renewed.
    AnnualRenew {
        /// `ExpiredTime`: when the verification expires, Unix seconds.
        expired_time: u64,
    },
    /// `verify_expired` — 认证过期失效通知.
    VerifyExpired {
        /// `ExpiredTime`: when the verification expired, Unix seconds.
        expired_time: u64,
    },
    /// A known `Event` whose fields do not read (a number that does not parse, a required
    /// container missing); the fields are in [`crate::Message::raw`]. See the module docs.
    Malformed {
        /// The `Event` as sent.
        event: String,
        /// What did not read, naming the element (e.g. `<Latitude> is not a number`).
        reason: String,
    },
    /// An `Event` name this crate does not know; the fields are in [`crate::Message::raw`].
    Unknown {
        /// The `Event` as sent.
        event: String,
    },
}

/// One template of a `subscribe_msg_popup_event`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeMsgPopup {
    /// `TemplateId`.
    pub template_id: String,
    /// `SubscribeStatusString`: `accept` or `reject`.
    pub subscribe_status_string: String,
    /// `PopupScene`: where the popup came from (`1` an H5 page, `2` a message; `0` in a
    /// 小程序).
    pub popup_scene: u32,
}

/// One template of a `subscribe_msg_change_event`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeMsgChange {
    /// `TemplateId`.
    pub template_id: String,
    /// `SubscribeStatusString`: `reject` (the only change WeChat reports).
    pub subscribe_status_string: String,
}

/// One message of a `subscribe_msg_sent_event`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeMsgSent {
    /// `TemplateId`.
    pub template_id: String,
    /// `MsgID` (capital D): the id the send API returned.
    pub msg_id: u64,
    /// `ErrorCode`: `0` when delivered.
    pub error_code: i64,
    /// `ErrorStatus`: `success`, or why it failed.
    pub error_status: String,
}

/// `PublishEventInfo` of `PUBLISHJOBFINISH`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishEventInfo {
    /// `publish_id`: the id the 发布 API returned.
    pub publish_id: u64,
    /// `publish_status`: `0` published, `1` publishing, `2` 原创 check failed, `3` failed,
    /// `4` refused by the platform's review, `5` all articles deleted by the user afterwards,
    /// `6` all articles banned afterwards.
    pub publish_status: u32,
    /// `article_id`, on success: usable in 客服消息 (`mpnewsarticle`).
    pub article_id: Option<String>,
    /// `article_detail/item`, on success: each article's index and permanent URL.
    pub article_detail: Vec<PublishedArticle>,
    /// `fail_idx`, for statuses 2 and 4: the refused articles' indexes, the first being 1.
    pub fail_idx: Vec<u32>,
}

/// One `article_detail/item` of a `PUBLISHJOBFINISH`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishedArticle {
    /// `idx`: the article's index, the first being 1.
    pub idx: u32,
    /// `article_url`: its permanent link.
    pub article_url: String,
}

/// `ScanCodeInfo` of the `scancode_*` menu events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanCodeInfo {
    /// `ScanType`: `qrcode`, or e.g. `barcode`.
    pub scan_type: String,
    /// `ScanResult`: the decoded content.
    pub scan_result: String,
}

/// `SendPicsInfo` of the `pic_*` menu events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendPicsInfo {
    /// `Count`: the number of pictures sent, as WeChat states it.
    pub count: u32,
    /// `PicList/item/PicMd5Sum`: each picture's MD5, in order. The pictures themselves
    /// arrive as separate `image` messages.
    pub pic_list: Vec<String>,
}

/// `SendLocationInfo` of the `location_select` menu event.
///
/// The coordinates are numbers, like those of the `location` message, so both can be
/// handled alike; the texts stay texts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SendLocationInfo {
    /// `Location_X`: latitude, in degrees.
    pub location_x: f64,
    /// `Location_Y`: longitude, in degrees.
    pub location_y: f64,
    /// `Scale`: the map zoom level (an integer in the docs; floats accepted).
    pub scale: f64,
    /// `Label`: the address.
    pub label: String,
    /// `Poiname`: the point of interest's name, often empty.
    pub poiname: String,
}

impl Event {
    /// Reads the event out of the `<xml>` root of a push whose `MsgType` is `event`.
    /// A missing `Event` element is an error; an unknown name is [`Event::Unknown`], a known
    /// one whose fields do not read is [`Event::Malformed`].
    pub(crate) fn from_element(root: &Element) -> Result<Event, Error> {
        let name = required(root, "Event")?;
        Ok(
            Self::typed(name, root).unwrap_or_else(|e| Event::Malformed {
                event: name.to_owned(),
                reason: match e {
                    Error::ParseXml(reason) => reason,
                    other => other.to_string(),
                },
            }),
        )
    }

    /// The typed event `name`, or why its fields do not read.
    fn typed(name: &str, root: &Element) -> Result<Event, Error> {
        let event_key = || string(root, "EventKey");
        let expired_time = || u64_field(root, "ExpiredTime");
        Ok(match name {
            "subscribe" => Event::Subscribe {
                event_key: optional(root, "EventKey"),
                ticket: optional(root, "Ticket"),
            },
            "unsubscribe" => Event::Unsubscribe,
            "SCAN" => Event::Scan {
                event_key: event_key(),
                ticket: string(root, "Ticket"),
            },
            "LOCATION" => Event::Location {
                latitude: f64_field(root, "Latitude")?,
                longitude: f64_field(root, "Longitude")?,
                precision: f64_field(root, "Precision")?,
            },
            "CLICK" => Event::Click {
                event_key: event_key(),
            },
            "VIEW" => Event::View {
                event_key: event_key(),
                menu_id: optional(root, "MenuId"),
            },
            "scancode_push" => Event::ScancodePush {
                event_key: event_key(),
                scan_code_info: ScanCodeInfo::from_root(root)?,
            },
            "scancode_waitmsg" => Event::ScancodeWaitmsg {
                event_key: event_key(),
                scan_code_info: ScanCodeInfo::from_root(root)?,
            },
            "pic_sysphoto" => Event::PicSysphoto {
                event_key: event_key(),
                send_pics_info: SendPicsInfo::from_root(root)?,
            },
            "pic_photo_or_album" => Event::PicPhotoOrAlbum {
                event_key: event_key(),
                send_pics_info: SendPicsInfo::from_root(root)?,
            },
            "pic_weixin" => Event::PicWeixin {
                event_key: event_key(),
                send_pics_info: SendPicsInfo::from_root(root)?,
            },
            "location_select" => Event::LocationSelect {
                event_key: event_key(),
                send_location_info: SendLocationInfo::from_root(root)?,
            },
            "TEMPLATESENDJOBFINISH" => Event::TemplateSendJobFinish {
                msg_id: u64_field(root, "MsgID")?,
                status: string(root, "Status"),
            },
            "MASSSENDJOBFINISH" => Event::MassSendJobFinish {
                msg_id: u64_field(root, "MsgID")?,
                status: string(root, "Status"),
                total_count: u64_field(root, "TotalCount")?,
                filter_count: u64_field(root, "FilterCount")?,
                sent_count: u64_field(root, "SentCount")?,
                error_count: u64_field(root, "ErrorCount")?,
                copyright_check_result: root.child("CopyrightCheckResult").cloned(),
                article_url_result: root.child("ArticleUrlResult").cloned(),
            },
            "view_miniprogram" => Event::ViewMiniprogram {
                event_key: event_key(),
                menu_id: optional(root, "MenuId"),
            },
            "subscribe_msg_popup_event" => Event::SubscribeMsgPopupEvent {
                list: list(root, "SubscribeMsgPopupEvent", |item| {
                    Ok(SubscribeMsgPopup {
                        template_id: string(item, "TemplateId"),
                        subscribe_status_string: string(item, "SubscribeStatusString"),
                        popup_scene: u32_field(item, "PopupScene")?,
                    })
                })?,
            },
            "subscribe_msg_change_event" => Event::SubscribeMsgChangeEvent {
                list: list(root, "SubscribeMsgChangeEvent", |item| {
                    Ok(SubscribeMsgChange {
                        template_id: string(item, "TemplateId"),
                        subscribe_status_string: string(item, "SubscribeStatusString"),
                    })
                })?,
            },
            "subscribe_msg_sent_event" => Event::SubscribeMsgSentEvent {
                list: list(root, "SubscribeMsgSentEvent", |item| {
                    Ok(SubscribeMsgSent {
                        template_id: string(item, "TemplateId"),
                        msg_id: u64_field(item, "MsgID")?,
                        error_code: i64_field(item, "ErrorCode")?,
                        error_status: string(item, "ErrorStatus"),
                    })
                })?,
            },
            "kf_create_session" => Event::KfCreateSession {
                kf_account: string(root, "KfAccount"),
            },
            "kf_close_session" => Event::KfCloseSession {
                kf_account: string(root, "KfAccount"),
            },
            "kf_switch_session" => Event::KfSwitchSession {
                from_kf_account: string(root, "FromKfAccount"),
                to_kf_account: string(root, "ToKfAccount"),
            },
            "user_info_modified" => Event::UserInfoModified {
                open_id: string(root, "OpenID"),
                app_id: string(root, "AppID"),
            },
            "user_authorization_revoke" => Event::UserAuthorizationRevoke {
                open_id: string(root, "OpenID"),
                app_id: string(root, "AppID"),
                revoke_info: string(root, "RevokeInfo"),
            },
            "user_authorization_cancellation" => Event::UserAuthorizationCancellation {
                open_id: string(root, "OpenID"),
                app_id: string(root, "AppID"),
            },
            "PUBLISHJOBFINISH" => Event::PublishJobFinish {
                publish_event_info: PublishEventInfo::from_root(root)?,
            },
            "qualification_verify_success" => Event::QualificationVerifySuccess {
                expired_time: expired_time()?,
            },
            "qualification_verify_fail" => Event::QualificationVerifyFail {
                fail_time: u64_field(root, "FailTime")?,
                fail_reason: string(root, "FailReason"),
            },
            "naming_verify_success" => Event::NamingVerifySuccess {
                expired_time: expired_time()?,
            },
            "naming_verify_fail" => Event::NamingVerifyFail {
                fail_time: u64_field(root, "FailTime")?,
                fail_reason: string(root, "FailReason"),
            },
            "annual_renew" => Event::AnnualRenew {
                expired_time: expired_time()?,
            },
            "verify_expired" => Event::VerifyExpired {
                expired_time: expired_time()?,
            },
            other => Event::Unknown {
                event: other.to_owned(),
            },
        })
    }

    /// The `Event` name as it appears on the wire (`subscribe`, `SCAN`, …).
    pub fn name(&self) -> &str {
        match self {
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe => "unsubscribe",
            Event::Scan { .. } => "SCAN",
            Event::Location { .. } => "LOCATION",
            Event::Click { .. } => "CLICK",
            Event::View { .. } => "VIEW",
            Event::ScancodePush { .. } => "scancode_push",
            Event::ScancodeWaitmsg { .. } => "scancode_waitmsg",
            Event::PicSysphoto { .. } => "pic_sysphoto",
            Event::PicPhotoOrAlbum { .. } => "pic_photo_or_album",
            Event::PicWeixin { .. } => "pic_weixin",
            Event::LocationSelect { .. } => "location_select",
            Event::TemplateSendJobFinish { .. } => "TEMPLATESENDJOBFINISH",
            Event::MassSendJobFinish { .. } => "MASSSENDJOBFINISH",
            Event::ViewMiniprogram { .. } => "view_miniprogram",
            Event::SubscribeMsgPopupEvent { .. } => "subscribe_msg_popup_event",
            Event::SubscribeMsgChangeEvent { .. } => "subscribe_msg_change_event",
            Event::SubscribeMsgSentEvent { .. } => "subscribe_msg_sent_event",
            Event::KfCreateSession { .. } => "kf_create_session",
            Event::KfCloseSession { .. } => "kf_close_session",
            Event::KfSwitchSession { .. } => "kf_switch_session",
            Event::UserInfoModified { .. } => "user_info_modified",
            Event::UserAuthorizationRevoke { .. } => "user_authorization_revoke",
            Event::UserAuthorizationCancellation { .. } => "user_authorization_cancellation",
            Event::PublishJobFinish { .. } => "PUBLISHJOBFINISH",
            Event::QualificationVerifySuccess { .. } => "qualification_verify_success",
            Event::QualificationVerifyFail { .. } => "qualification_verify_fail",
            Event::NamingVerifySuccess { .. } => "naming_verify_success",
            Event::NamingVerifyFail { .. } => "naming_verify_fail",
            Event::AnnualRenew { .. } => "annual_renew",
            Event::VerifyExpired { .. } => "verify_expired",
            Event::Malformed { event, .. } | Event::Unknown { event } => event,
        }
    }

    /// The `EventKey` of the typed events that carry one (`None` for a plain `subscribe`,
    /// for events without a key, and for malformed and unknown ones: see
    /// [`crate::Message::field`]).
    pub fn event_key(&self) -> Option<&str> {
        match self {
            Event::Subscribe { event_key, .. } => event_key.as_deref(),
            Event::Scan { event_key, .. }
            | Event::Click { event_key }
            | Event::View { event_key, .. }
            | Event::ScancodePush { event_key, .. }
            | Event::ScancodeWaitmsg { event_key, .. }
            | Event::PicSysphoto { event_key, .. }
            | Event::PicPhotoOrAlbum { event_key, .. }
            | Event::PicWeixin { event_key, .. }
            | Event::LocationSelect { event_key, .. }
            | Event::ViewMiniprogram { event_key, .. } => Some(event_key),
            _ => None,
        }
    }

    /// The 带参数二维码 scene value: for `subscribe` the part of `EventKey` after
    /// `qrscene_` (`None` for a plain follow), for `SCAN` the whole `EventKey`.
    pub fn scene(&self) -> Option<&str> {
        match self {
            Event::Subscribe { event_key, .. } => event_key.as_deref()?.strip_prefix("qrscene_"),
            Event::Scan { event_key, .. } => Some(event_key),
            _ => None,
        }
    }
}

impl ScanCodeInfo {
    fn from_root(root: &Element) -> Result<Self, Error> {
        let info = container(root, "ScanCodeInfo")?;
        Ok(ScanCodeInfo {
            scan_type: string(info, "ScanType"),
            scan_result: string(info, "ScanResult"),
        })
    }
}

impl SendPicsInfo {
    fn from_root(root: &Element) -> Result<Self, Error> {
        let info = container(root, "SendPicsInfo")?;
        let pic_list = info
            .child("PicList")
            .map(|list| {
                list.children_named("item")
                    .map(|item| string(item, "PicMd5Sum"))
                    .collect()
            })
            .unwrap_or_default();
        Ok(SendPicsInfo {
            count: u32_field(info, "Count")?,
            pic_list,
        })
    }
}

/// The `List` entries of the required container `name`, each read by `read`.
fn list<T>(
    root: &Element,
    name: &str,
    read: impl Fn(&Element) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    container(root, name)?
        .children_named("List")
        .map(read)
        .collect()
}

impl PublishEventInfo {
    fn from_root(root: &Element) -> Result<Self, Error> {
        let info = container(root, "PublishEventInfo")?;
        let article_detail = match info.child("article_detail") {
            Some(detail) => detail
                .children_named("item")
                .map(|item| {
                    Ok(PublishedArticle {
                        idx: u32_field(item, "idx")?,
                        article_url: string(item, "article_url"),
                    })
                })
                .collect::<Result<_, Error>>()?,
            None => Vec::new(),
        };
        let fail_idx = info
            .children_named("fail_idx")
            .map(|idx| {
                idx.text.trim().parse::<u32>().map_err(|_| {
                    Error::xml("<fail_idx> in <PublishEventInfo> is not an unsigned integer")
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(PublishEventInfo {
            publish_id: u64_field(info, "publish_id")?,
            publish_status: u32_field(info, "publish_status")?,
            article_id: optional(info, "article_id"),
            article_detail,
            fail_idx,
        })
    }
}

impl SendLocationInfo {
    fn from_root(root: &Element) -> Result<Self, Error> {
        let info = container(root, "SendLocationInfo")?;
        Ok(SendLocationInfo {
            location_x: f64_field(info, "Location_X")?,
            location_y: f64_field(info, "Location_Y")?,
            scale: f64_field(info, "Scale")?,
            label: string(info, "Label"),
            poiname: string(info, "Poiname"),
        })
    }
}
