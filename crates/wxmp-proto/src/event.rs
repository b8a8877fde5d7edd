//! Event pushes (`MsgType` = `event`, 接收事件推送, SPEC.md §3.2) as typed values.
//!
//! WeChat tells a server about things users *did* — followed, scanned a 带参数二维码, tapped a
//! 自定义菜单 button, shared a location — and about jobs it finished (模板消息, 群发), all as
//! `<xml>` bodies with an `Event` name. [`Event`] has one variant per documented name, with
//! the fields that event carries, and [`Event::Unknown`] for every other name: WeChat adds
//! events without notice and a server must still answer them. Names are matched exactly, as
//! the docs spell them (`SCAN`, `LOCATION`, `CLICK`, `VIEW` upper case; the others lower;
//! the job events all caps).
//!
//! Fields are read by the rules in [`crate::message`]: missing text is `""`, conditional
//! fields are `None` when absent or empty, numbers must parse. The containers that are the
//! point of a menu event (`ScanCodeInfo`, `SendPicsInfo`, `SendLocationInfo`) are required.

use crate::message::fields::{
    container, f64_field, optional, required, string, u32_field, u64_field,
};
use crate::xml::Element;
use crate::Error;

/// An event push, keyed by its `Event` name.
///
/// WeChat docs: 接收事件推送 (subscribe, SCAN, LOCATION, CLICK, VIEW), 自定义菜单事件推送
/// (the `scancode_*`, `pic_*` and `location_select` menu events), 模板消息 (送达结果) and
/// 群发接口 (群发结果).
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
    /// An `Event` name this crate does not know; the fields are in [`crate::Message::raw`].
    Unknown {
        /// The `Event` as sent.
        event: String,
    },
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
    /// A missing `Event` element is an error; an unknown name is [`Event::Unknown`].
    pub(crate) fn from_element(root: &Element) -> Result<Event, Error> {
        let event_key = || string(root, "EventKey");
        Ok(match required(root, "Event")? {
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
            Event::Unknown { event } => event,
        }
    }

    /// The `EventKey` of the events that carry one (`None` for a plain `subscribe` and for
    /// events without a key).
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
            | Event::LocationSelect { event_key, .. } => Some(event_key),
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
