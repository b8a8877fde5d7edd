//! The inbound message model against the official samples, plus the events and edge cases
//! the samples lack.
//!
//! The vectors (`tests/vectors/vectors.json`, a copy of the project's
//! `shared/protocol/vectors.json` so a clean clone tests alone) list each sample's expected
//! field values by their XML names. Every name is mapped here to a *typed* accessor: the
//! point is that the typed model says what the XML says, not that the raw lookup works.
//! A key without a mapping fails the test, so new vector keys cannot be skipped silently.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde::Deserialize;
use wxmp_proto::{
    DedupKey, Event, Message, MessageKind, ScanCodeInfo, SendLocationInfo, SendPicsInfo,
};

#[derive(Deserialize)]
struct Vectors {
    xml_inbound_samples: BTreeMap<String, InboundSample>,
}

#[derive(Deserialize)]
struct InboundSample {
    xml: String,
    expected_fields: BTreeMap<String, String>,
}

fn samples() -> BTreeMap<String, InboundSample> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/vectors.json");
    let text = std::fs::read_to_string(path).expect("tests/vectors/vectors.json is readable");
    let vectors: Vectors = serde_json::from_str(&text).expect("vectors.json parses");
    vectors.xml_inbound_samples
}

/// The samples' XML, loaded once for the property tests.
fn sample_xmls() -> &'static [String] {
    static XMLS: OnceLock<Vec<String>> = OnceLock::new();
    XMLS.get_or_init(|| samples().into_values().map(|s| s.xml).collect())
}

/// Builds a push with the official header around `body`.
fn push(body: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_account]]></ToUserName>\
         <FromUserName><![CDATA[oUser]]></FromUserName>\
         <CreateTime>1700000000</CreateTime>{body}</xml>"
    )
}

fn event_push(event: &str, rest: &str) -> String {
    push(&format!(
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{rest}"
    ))
}

fn parse(xml: &str) -> Message {
    Message::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"))
}

fn event(msg: &Message) -> &Event {
    msg.event()
        .unwrap_or_else(|| panic!("not an event: {:?}", msg.kind))
}

fn float(expected: &str) -> f64 {
    expected.parse().expect("expected value is a number")
}

/// Checks one `expected_fields` entry against the typed model.
fn check_typed(msg: &Message, key: &str, expected: &str) {
    use MessageKind as K;
    match key {
        "MsgType" => assert_eq!(msg.msg_type(), expected),
        "CreateTime" => assert_eq!(msg.create_time.to_string(), expected),
        "MsgId" => assert_eq!(msg.msg_id(), Some(expected.parse().unwrap())),
        "dedup_key" => match (expected, msg.dedup_key()) {
            ("MsgId", DedupKey::MsgId(id)) => assert_eq!(Some(id), msg.msg_id()),
            // The vectors name the docs' rule; the key also carries Event and EventKey.
            (
                "FromUserName+CreateTime",
                DedupKey::Event {
                    from_user_name,
                    create_time,
                    event,
                    event_key,
                },
            ) => {
                assert_eq!(from_user_name, msg.from_user_name);
                assert_eq!(create_time, msg.create_time);
                assert_eq!(Some(event.as_str()), msg.field("Event"));
                assert_eq!(event_key, msg.field("EventKey").unwrap_or_default());
            }
            (expected, got) => panic!("dedup_key: expected {expected}, got {got:?}"),
        },
        "Content" => match &msg.kind {
            K::Text { content, .. } => assert_eq!(content, expected),
            other => panic!("Content on {other:?}"),
        },
        "PicUrl" => match &msg.kind {
            K::Image { pic_url, .. } => assert_eq!(pic_url, expected),
            other => panic!("PicUrl on {other:?}"),
        },
        "MediaId" => match &msg.kind {
            K::Image { media_id, .. }
            | K::Voice { media_id, .. }
            | K::Video { media_id, .. }
            | K::ShortVideo { media_id, .. } => assert_eq!(media_id, expected),
            other => panic!("MediaId on {other:?}"),
        },
        "Format" => match &msg.kind {
            K::Voice { format, .. } => assert_eq!(format, expected),
            other => panic!("Format on {other:?}"),
        },
        "Recognition" => match &msg.kind {
            K::Voice { recognition, .. } => assert_eq!(recognition.as_deref(), Some(expected)),
            other => panic!("Recognition on {other:?}"),
        },
        "ThumbMediaId" => match &msg.kind {
            K::Video { thumb_media_id, .. } | K::ShortVideo { thumb_media_id, .. } => {
                assert_eq!(thumb_media_id, expected)
            }
            other => panic!("ThumbMediaId on {other:?}"),
        },
        "Location_X" | "Location_Y" | "Scale" | "Label" => match &msg.kind {
            K::Location {
                location_x,
                location_y,
                scale,
                label,
                ..
            } => match key {
                "Location_X" => assert_eq!(*location_x, float(expected)),
                "Location_Y" => assert_eq!(*location_y, float(expected)),
                "Scale" => assert_eq!(*scale, float(expected)),
                _ => assert_eq!(label, expected),
            },
            other => panic!("{key} on {other:?}"),
        },
        "Title" | "Description" | "Url" => match &msg.kind {
            K::Link {
                title,
                description,
                url,
                ..
            } => match key {
                "Title" => assert_eq!(title, expected),
                "Description" => assert_eq!(description, expected),
                _ => assert_eq!(url, expected),
            },
            other => panic!("{key} on {other:?}"),
        },
        _ => check_typed_event(event(msg), key, expected),
    }
}

/// The event half of [`check_typed`].
fn check_typed_event(event: &Event, key: &str, expected: &str) {
    match key {
        "Event" => assert_eq!(event.name(), expected),
        "EventKey" => assert_eq!(event.event_key(), Some(expected)),
        "scene" => assert_eq!(event.scene(), Some(expected)),
        "Ticket" => match event {
            Event::Subscribe { ticket, .. } => assert_eq!(ticket.as_deref(), Some(expected)),
            Event::Scan { ticket, .. } => assert_eq!(ticket, expected),
            other => panic!("Ticket on {other:?}"),
        },
        "Latitude" | "Longitude" | "Precision" => match event {
            Event::Location {
                latitude,
                longitude,
                precision,
            } => {
                let got = match key {
                    "Latitude" => latitude,
                    "Longitude" => longitude,
                    _ => precision,
                };
                assert_eq!(*got, float(expected));
            }
            other => panic!("{key} on {other:?}"),
        },
        "MenuId" => match event {
            Event::View { menu_id, .. } => assert_eq!(menu_id.as_deref(), Some(expected)),
            other => panic!("MenuId on {other:?}"),
        },
        "ScanCodeInfo.ScanType" | "ScanCodeInfo.ScanResult" => match event {
            Event::ScancodePush { scan_code_info, .. }
            | Event::ScancodeWaitmsg { scan_code_info, .. } => {
                let got = if key.ends_with("ScanType") {
                    &scan_code_info.scan_type
                } else {
                    &scan_code_info.scan_result
                };
                assert_eq!(got, expected);
            }
            other => panic!("{key} on {other:?}"),
        },
        "SendPicsInfo.Count" | "SendPicsInfo.PicList[0].PicMd5Sum" => match event {
            Event::PicSysphoto { send_pics_info, .. }
            | Event::PicPhotoOrAlbum { send_pics_info, .. }
            | Event::PicWeixin { send_pics_info, .. } => {
                if key.ends_with("Count") {
                    assert_eq!(send_pics_info.count.to_string(), expected);
                } else {
                    assert_eq!(send_pics_info.pic_list[0], expected);
                }
            }
            other => panic!("{key} on {other:?}"),
        },
        "MsgID" | "Status" => match event {
            Event::TemplateSendJobFinish { msg_id, status }
            | Event::MassSendJobFinish { msg_id, status, .. } => {
                if key == "MsgID" {
                    assert_eq!(msg_id.to_string(), expected);
                } else {
                    assert_eq!(status, expected);
                }
            }
            other => panic!("{key} on {other:?}"),
        },
        _ => panic!("no typed accessor mapped for vector key {key:?}"),
    }
}

#[test]
fn every_official_sample_parses_to_its_typed_fields() {
    let samples = samples();
    assert!(
        samples.len() >= 18,
        "vectors lost samples: {}",
        samples.len()
    );
    for (name, sample) in &samples {
        let msg = Message::parse(sample.xml.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            !matches!(msg.kind, MessageKind::Unknown { .. }),
            "{name}: official type not modelled"
        );
        assert!(
            !matches!(msg.event(), Some(Event::Unknown { .. })),
            "{name}: official event not modelled"
        );
        for (key, expected) in &sample.expected_fields {
            check_typed(&msg, key, expected);
            // Keys named like XML elements also agree with the raw lookup.
            if msg.field(key).is_some() {
                assert_eq!(msg.field(key), Some(expected.as_str()), "{name}: raw {key}");
            }
        }
    }
}

#[test]
fn official_samples_keep_header_and_raw() {
    for (name, sample) in samples() {
        let msg = Message::parse(sample.xml.as_bytes()).unwrap();
        assert_eq!(msg.raw.name, "xml", "{name}");
        assert_eq!(msg.field("ToUserName"), Some(msg.to_user_name.as_str()));
        assert_eq!(msg.field("FromUserName"), Some(msg.from_user_name.as_str()));
        assert_eq!(msg.field("MsgType"), Some(msg.msg_type()));
        assert_eq!(
            msg.field("CreateTime"),
            Some(msg.create_time.to_string().as_str())
        );
    }
}

#[test]
fn official_text_sample_in_full() {
    let msg = parse(&samples()["msg_text"].xml);
    assert_eq!(msg.to_user_name, "toUser");
    assert_eq!(msg.from_user_name, "fromUser");
    assert_eq!(msg.create_time, 1348831860);
    assert_eq!(
        msg.kind,
        MessageKind::Text {
            content: "this is a test".into(),
            msg_id: Some(1234567890123456),
            msg_data_id: None,
            idx: None,
        }
    );
    assert_eq!(msg.dedup_key(), DedupKey::MsgId(1234567890123456));
    assert_eq!(msg.dedup_key().to_string(), "msgid:1234567890123456");
}

#[test]
fn official_location_and_mass_send_in_full() {
    let all = samples();
    let msg = parse(&all["msg_location"].xml);
    assert_eq!(
        msg.kind,
        MessageKind::Location {
            location_x: 23.134521,
            location_y: 113.358803,
            scale: 20.0,
            label: "位置信息".into(),
            msg_id: Some(1234567890123456),
        }
    );
    let msg = parse(&all["evt_masssendjobfinish"].xml);
    assert_eq!(msg.from_user_name, "oV5CrjpxgaGXNHIQigzNlgLTnwic");
    assert_eq!(
        event(&msg),
        &Event::MassSendJobFinish {
            msg_id: 1000001625,
            status: "err(30003)".into(),
            total_count: 0,
            filter_count: 0,
            sent_count: 0,
            error_count: 0,
            copyright_check_result: None,
            article_url_result: None,
        }
    );
}

#[test]
fn events_dedup_by_sender_time_event_and_key_even_with_msg_id_elements() {
    let all = samples();
    let msg = parse(&all["evt_subscribe"].xml);
    assert_eq!(
        msg.dedup_key().to_string(),
        "event:FromUser:123456789:subscribe:"
    );
    // TEMPLATESENDJOBFINISH's MsgID (capital D) is the job's id, not the push's.
    let msg = parse(&all["evt_templatesendjobfinish"].xml);
    assert_eq!(msg.msg_id(), None);
    assert_eq!(
        msg.dedup_key(),
        DedupKey::Event {
            from_user_name: "oia2TjuEGTNoeX76QEjQNrcURxG8".into(),
            create_time: 1395658920,
            event: "TEMPLATESENDJOBFINISH".into(),
            event_key: String::new(),
        }
    );
    // Even an event that carried a MsgId dedups by sender, time, event and key.
    let msg = parse(&event_push(
        "CLICK",
        "<EventKey>k</EventKey><MsgId>42</MsgId>",
    ));
    assert_eq!(
        msg.dedup_key().to_string(),
        "event:oUser:1700000000:CLICK:k"
    );
}

#[test]
fn different_events_in_one_second_are_different_deliveries_and_retries_are_one() {
    // The `subscribe` and the LOCATION report WeChat sends right after it, same second.
    let subscribe = parse(&event_push(
        "subscribe",
        "<EventKey><![CDATA[]]></EventKey>",
    ));
    let location = parse(&event_push(
        "LOCATION",
        "<Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision>",
    ));
    assert_ne!(subscribe.dedup_key(), location.dedup_key());
    // Two menu taps on different buttons in one second.
    let a = parse(&event_push("CLICK", "<EventKey>A</EventKey>"));
    let b = parse(&event_push("CLICK", "<EventKey>B</EventKey>"));
    assert_ne!(a.dedup_key(), b.dedup_key());
    // A retry is byte-identical, so its key is the same.
    for xml in sample_xmls() {
        assert_eq!(parse(xml).dedup_key(), parse(xml).dedup_key());
    }
}

#[test]
fn dedup_key_display_is_header_safe() {
    let key = DedupKey::Event {
        from_user_name: "o:ab c\r\n%用".into(),
        create_time: 7,
        event: "VIEW".into(),
        event_key: "https://example.com/a?b=c:d".into(),
    };
    let shown = key.to_string();
    assert_eq!(
        shown,
        "event:o%3Aab%20c%0D%0A%25%E7%94%A8:7:VIEW:https%3A%2F%2Fexample.com%2Fa%3Fb%3Dc%3Ad"
    );
    assert!(shown.bytes().all(|b| b.is_ascii_graphic()));
    let plain = DedupKey::Event {
        from_user_name: "oMgHVjngRipVsoxg6TuX3vz6glDg".into(),
        create_time: 1408090502,
        event: "scancode_push".into(),
        event_key: "6".into(),
    };
    assert_eq!(
        plain.to_string(),
        "event:oMgHVjngRipVsoxg6TuX3vz6glDg:1408090502:scancode_push:6"
    );
}

#[test]
fn message_without_msg_id_dedups_like_an_event() {
    let msg = parse(&push(
        "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content>",
    ));
    assert_eq!(msg.msg_id(), None);
    assert_eq!(msg.dedup_key().to_string(), "event:oUser:1700000000::");
    // Blank MsgId is absent, not an error.
    let msg = parse(&push("<MsgType>text</MsgType><MsgId> </MsgId>"));
    assert_eq!(msg.msg_id(), None);
}

#[test]
fn text_from_an_article_with_msg_data_id_and_idx() {
    let msg = parse(&push(
        "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[赞]]></Content>\
         <MsgId>18446744073709551615</MsgId><MsgDataId>2247483653</MsgDataId><Idx>1</Idx>",
    ));
    assert_eq!(
        msg.kind,
        MessageKind::Text {
            content: "赞".into(),
            msg_id: Some(u64::MAX),
            msg_data_id: Some("2247483653".into()),
            idx: Some("1".into()),
        }
    );
}

#[test]
fn voice_with_media_id_16k_and_without_recognition() {
    let msg = parse(&push(
        "<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[m]]></MediaId>\
         <Format><![CDATA[amr]]></Format><MediaId16K><![CDATA[m16]]></MediaId16K>\
         <Recognition><![CDATA[]]></Recognition><MsgId>5</MsgId>",
    ));
    assert_eq!(
        msg.kind,
        MessageKind::Voice {
            media_id: "m".into(),
            format: "amr".into(),
            recognition: None,
            media_id_16k: Some("m16".into()),
            msg_id: Some(5),
        }
    );
}

#[test]
fn missing_text_fields_read_as_empty() {
    let msg = parse(&push("<MsgType><![CDATA[text]]></MsgType><MsgId>1</MsgId>"));
    assert!(matches!(&msg.kind, MessageKind::Text { content, .. } if content.is_empty()));
    let msg = parse(&push("<MsgType>image</MsgType>"));
    assert_eq!(
        msg.kind,
        MessageKind::Image {
            pic_url: String::new(),
            media_id: String::new(),
            msg_id: None,
        }
    );
}

#[test]
fn entities_emoji_cjk_and_whitespace_in_content() {
    let msg = parse(&push(
        "<MsgType>text</MsgType><Content>a &amp; b &lt;c&gt; &#x1F600; 中文 &quot;q&quot;</Content>",
    ));
    assert!(
        matches!(&msg.kind, MessageKind::Text { content, .. } if content == "a & b <c> 😀 中文 \"q\"")
    );
    let msg = parse(&push(
        "<MsgType>text</MsgType><Content><![CDATA[  你好👋🏽\n第二行 <b>&amp;</b> ]]></Content>",
    ));
    assert!(
        matches!(&msg.kind, MessageKind::Text { content, .. } if content == "  你好👋🏽\n第二行 <b>&amp;</b> ")
    );
    // Pretty-printed bodies (numbers with surrounding whitespace) parse too.
    let pretty = "<xml>\n  <ToUserName><![CDATA[a]]></ToUserName>\n  <FromUserName><![CDATA[b]]></FromUserName>\n  <CreateTime> 12 </CreateTime>\n  <MsgType><![CDATA[text]]></MsgType>\n  <Content><![CDATA[x]]></Content>\n  <MsgId>\n9\n</MsgId>\n</xml>\n";
    let msg = parse(pretty);
    assert_eq!(msg.create_time, 12);
    assert_eq!(msg.msg_id(), Some(9));
}

#[test]
fn unknown_msg_type_is_a_value_with_raw_fields() {
    let msg = parse(&push(
        "<MsgType><![CDATA[miniprogrampage]]></MsgType><Title><![CDATA[t]]></Title>\
         <AppId>wx123</AppId><MsgId>77</MsgId>",
    ));
    assert_eq!(
        msg.kind,
        MessageKind::Unknown {
            msg_type: "miniprogrampage".into()
        }
    );
    assert_eq!(msg.msg_type(), "miniprogrampage");
    assert_eq!(msg.field("AppId"), Some("wx123"));
    assert_eq!(msg.dedup_key(), DedupKey::MsgId(77));
    // A bad MsgId on an unknown type is no error: it dedups by sender and time.
    let msg = parse(&push("<MsgType>future</MsgType><MsgId>x</MsgId>"));
    assert!(matches!(msg.dedup_key(), DedupKey::Event { .. }));
}

#[test]
fn unknown_and_case_mismatched_events_are_values() {
    for name in [
        "card_pass_check",
        "scan",
        "Subscribe",
        "click",
        "PublishJobFinish",
        "",
    ] {
        let msg = parse(&event_push(name, "<EventKey>k</EventKey>"));
        assert_eq!(event(&msg), &Event::Unknown { event: name.into() });
        assert_eq!(event(&msg).name(), name);
        assert_eq!(msg.msg_type(), "event");
    }
}

#[test]
fn subscribe_plain_with_empty_event_key() {
    let msg = parse(&event_push(
        "subscribe",
        "<EventKey><![CDATA[]]></EventKey><Ticket></Ticket>",
    ));
    let ev = event(&msg);
    assert_eq!(
        ev,
        &Event::Subscribe {
            event_key: None,
            ticket: None
        }
    );
    assert_eq!(ev.scene(), None);
    assert_eq!(ev.event_key(), None);
}

#[test]
fn scan_scene_is_the_whole_key() {
    let msg = parse(&event_push(
        "SCAN",
        "<EventKey><![CDATA[123]]></EventKey><Ticket><![CDATA[T]]></Ticket>",
    ));
    assert_eq!(event(&msg).scene(), Some("123"));
    assert_eq!(
        parse(&event_push("unsubscribe", "")).event(),
        Some(&Event::Unsubscribe)
    );
}

#[test]
fn view_with_menu_id() {
    let msg = parse(&event_push(
        "VIEW",
        "<EventKey><![CDATA[https://example.com/a?b=1&c=2]]></EventKey><MenuId>208396938</MenuId>",
    ));
    assert_eq!(
        event(&msg),
        &Event::View {
            event_key: "https://example.com/a?b=1&c=2".into(),
            menu_id: Some("208396938".into()),
        }
    );
    let msg = parse(&event_push("VIEW", "<EventKey>u</EventKey>"));
    assert!(matches!(event(&msg), Event::View { menu_id: None, .. }));
}

#[test]
fn scancode_waitmsg() {
    let msg = parse(&event_push(
        "scancode_waitmsg",
        "<EventKey><![CDATA[rselfmenu_0_0]]></EventKey><ScanCodeInfo><ScanType><![CDATA[barcode]]></ScanType>\
         <ScanResult><![CDATA[EAN_13,6901234567892]]></ScanResult></ScanCodeInfo>",
    ));
    assert_eq!(
        event(&msg),
        &Event::ScancodeWaitmsg {
            event_key: "rselfmenu_0_0".into(),
            scan_code_info: ScanCodeInfo {
                scan_type: "barcode".into(),
                scan_result: "EAN_13,6901234567892".into(),
            },
        }
    );
}

#[test]
fn pic_photo_or_album_and_pic_weixin() {
    let pics = "<EventKey><![CDATA[rselfmenu_1_1]]></EventKey><SendPicsInfo><Count>2</Count>\
                <PicList><item><PicMd5Sum><![CDATA[aaa]]></PicMd5Sum></item>\
                <item><PicMd5Sum><![CDATA[bbb]]></PicMd5Sum></item></PicList></SendPicsInfo>";
    let info = SendPicsInfo {
        count: 2,
        pic_list: vec!["aaa".into(), "bbb".into()],
    };
    let msg = parse(&event_push("pic_photo_or_album", pics));
    assert_eq!(
        event(&msg),
        &Event::PicPhotoOrAlbum {
            event_key: "rselfmenu_1_1".into(),
            send_pics_info: info.clone(),
        }
    );
    let msg = parse(&event_push("pic_weixin", pics));
    assert_eq!(
        event(&msg),
        &Event::PicWeixin {
            event_key: "rselfmenu_1_1".into(),
            send_pics_info: info,
        }
    );
    // Pretty-printed and without a PicList.
    let msg = parse(&event_push(
        "pic_sysphoto",
        "<EventKey>k</EventKey><SendPicsInfo>\n <Count>0</Count>\n</SendPicsInfo>",
    ));
    assert!(matches!(
        event(&msg),
        Event::PicSysphoto { send_pics_info, .. } if send_pics_info.count == 0 && send_pics_info.pic_list.is_empty()
    ));
}

#[test]
fn location_select_with_send_location_info() {
    let msg = parse(&event_push(
        "location_select",
        "<EventKey><![CDATA[rselfmenu_2_0]]></EventKey><SendLocationInfo>\
         <Location_X><![CDATA[23]]></Location_X><Location_Y><![CDATA[113]]></Location_Y>\
         <Scale><![CDATA[15]]></Scale><Label><![CDATA[ 广州市海珠区客村艺苑路 106号]]></Label>\
         <Poiname><![CDATA[]]></Poiname></SendLocationInfo>",
    ));
    assert_eq!(
        event(&msg),
        &Event::LocationSelect {
            event_key: "rselfmenu_2_0".into(),
            send_location_info: SendLocationInfo {
                location_x: 23.0,
                location_y: 113.0,
                scale: 15.0,
                label: " 广州市海珠区客村艺苑路 106号".into(),
                poiname: String::new(),
            },
        }
    );
}

#[test]
fn mass_send_job_finish_counts_and_nested_results() {
    let msg = parse(&event_push(
        "MASSSENDJOBFINISH",
        "<MsgID>1988</MsgID><Status><![CDATA[send success]]></Status><TotalCount>100</TotalCount>\
         <FilterCount>80</FilterCount><SentCount>75</SentCount><ErrorCount>5</ErrorCount>\
         <CopyrightCheckResult><Count>2</Count><CheckState>2</CheckState></CopyrightCheckResult>\
         <ArticleUrlResult><Count>1</Count><ResultList><item><ArticleIdx>1</ArticleIdx>\
         <ArticleUrl><![CDATA[https://mp.weixin.qq.com/s/x]]></ArticleUrl></item></ResultList></ArticleUrlResult>",
    ));
    let Event::MassSendJobFinish {
        msg_id,
        status,
        total_count,
        filter_count,
        sent_count,
        error_count,
        copyright_check_result,
        article_url_result,
    } = event(&msg)
    else {
        panic!("{:?}", msg.kind)
    };
    assert_eq!((*msg_id, status.as_str()), (1988, "send success"));
    assert_eq!(
        (*total_count, *filter_count, *sent_count, *error_count),
        (100, 80, 75, 5)
    );
    let check = copyright_check_result.as_ref().unwrap();
    assert_eq!(check.child_text("CheckState"), Some("2"));
    let urls = article_url_result.as_ref().unwrap();
    let item = urls.child("ResultList").unwrap().child("item").unwrap();
    assert_eq!(
        item.child_text("ArticleUrl"),
        Some("https://mp.weixin.qq.com/s/x")
    );
}

fn parse_err(xml: &str) -> String {
    let err = Message::parse(xml.as_bytes()).expect_err(xml);
    assert_eq!(err.code(), -40002, "{err}");
    err.to_string()
}

#[test]
fn missing_header_fields_name_the_element() {
    let full = [
        ("ToUserName", "<ToUserName>a</ToUserName>"),
        ("FromUserName", "<FromUserName>b</FromUserName>"),
        ("CreateTime", "<CreateTime>1</CreateTime>"),
        ("MsgType", "<MsgType>text</MsgType>"),
    ];
    for (missing, _) in full {
        let body: String = full
            .iter()
            .filter(|(name, _)| *name != missing)
            .map(|(_, xml)| *xml)
            .collect();
        let msg = parse_err(&format!("<xml>{body}</xml>"));
        assert!(msg.contains(&format!("missing <{missing}>")), "{msg}");
    }
}

/// The reason of a malformed message or event.
fn malformed(msg: &Message) -> (&str, &str) {
    match &msg.kind {
        MessageKind::Malformed { msg_type, reason } => (msg_type, reason),
        MessageKind::Event(Event::Malformed { event, reason }) => (event, reason),
        other => panic!("not malformed: {other:?}"),
    }
}

#[test]
fn fields_that_do_not_read_make_the_kind_malformed_naming_the_field() {
    let cases = [
        (push("<MsgType>text</MsgType><MsgId>12a</MsgId>"), "text", "<MsgId>"),
        (push("<MsgType>text</MsgType><MsgId>-1</MsgId>"), "text", "<MsgId>"),
        (
            push("<MsgType>text</MsgType><MsgId>18446744073709551616</MsgId>"),
            "text",
            "<MsgId>",
        ),
        (
            push("<MsgType>location</MsgType><Location_X>north</Location_X><Location_Y>1</Location_Y><Scale>1</Scale>"),
            "location",
            "<Location_X>",
        ),
        (
            push("<MsgType>location</MsgType><Location_X>1</Location_X><Location_Y>NaN</Location_Y><Scale>1</Scale>"),
            "location",
            "<Location_Y>",
        ),
        (
            push("<MsgType>location</MsgType><Location_X>1</Location_X><Location_Y>1</Location_Y>"),
            "location",
            "missing <Scale>",
        ),
        (
            event_push("LOCATION", "<Latitude>north</Latitude><Longitude>1</Longitude><Precision>1</Precision>"),
            "LOCATION",
            "<Latitude> is not a number",
        ),
        (event_push("LOCATION", "<Latitude>1</Latitude><Longitude>inf</Longitude><Precision>1</Precision>"), "LOCATION", "<Longitude>"),
        (event_push("TEMPLATESENDJOBFINISH", "<Status>success</Status>"), "TEMPLATESENDJOBFINISH", "missing <MsgID>"),
        (
            event_push("MASSSENDJOBFINISH", "<MsgID>1</MsgID><TotalCount>x</TotalCount>"),
            "MASSSENDJOBFINISH",
            "<TotalCount>",
        ),
        (
            event_push("pic_weixin", "<SendPicsInfo><Count>many</Count></SendPicsInfo>"),
            "pic_weixin",
            "<Count> in <SendPicsInfo>",
        ),
        (
            event_push("pic_weixin", "<SendPicsInfo><Count>4294967296</Count></SendPicsInfo>"),
            "pic_weixin",
            "<Count> in <SendPicsInfo>",
        ),
        (event_push("pic_sysphoto", "<EventKey>k</EventKey>"), "pic_sysphoto", "missing <SendPicsInfo>"),
        (event_push("scancode_push", ""), "scancode_push", "missing <ScanCodeInfo>"),
        (
            event_push("location_select", "<SendLocationInfo><Location_X>1</Location_X></SendLocationInfo>"),
            "location_select",
            "missing <Location_Y> in <SendLocationInfo>",
        ),
        (
            event_push("subscribe_msg_popup_event", "<SubscribeMsgPopupEvent><List><TemplateId>t</TemplateId><PopupScene>two</PopupScene></List></SubscribeMsgPopupEvent>"),
            "subscribe_msg_popup_event",
            "<PopupScene> in <List>",
        ),
        (event_push("subscribe_msg_sent_event", ""), "subscribe_msg_sent_event", "missing <SubscribeMsgSentEvent>"),
        (
            event_push("PUBLISHJOBFINISH", "<PublishEventInfo><publish_id>1</publish_id><publish_status>2</publish_status><fail_idx>one</fail_idx></PublishEventInfo>"),
            "PUBLISHJOBFINISH",
            "<fail_idx>",
        ),
        (event_push("annual_renew", "<ExpiredTime>soon</ExpiredTime>"), "annual_renew", "<ExpiredTime>"),
    ];
    for (xml, name, needle) in cases {
        let msg = parse(&xml);
        let (got_name, reason) = malformed(&msg);
        assert_eq!(got_name, name, "{xml}");
        assert!(
            reason.contains(needle),
            "{reason:?} should mention {needle:?}"
        );
        // Still a push: its name, header and raw fields are all there.
        assert_eq!(msg.from_user_name, "oUser");
        assert!(!msg.raw.children.is_empty());
    }
    // A malformed event still reports its name.
    let msg = parse(&event_push("LOCATION", "<Latitude>north</Latitude>"));
    assert_eq!(event(&msg).name(), "LOCATION");
    assert_eq!(event(&msg).event_key(), None);
    assert_eq!(msg.field("Latitude"), Some("north"));
    // A malformed message with a usable MsgId still dedups by it.
    let msg = parse(&push(
        "<MsgType>location</MsgType><Location_X>x</Location_X><MsgId>5</MsgId>",
    ));
    assert_eq!(msg.dedup_key(), DedupKey::MsgId(5));
}

#[test]
fn a_body_without_the_header_is_an_error() {
    let cases = [
        (
            "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>soon</CreateTime><MsgType>text</MsgType></xml>".to_owned(),
            "<CreateTime>",
        ),
        (push("<MsgType>event</MsgType>"), "missing <Event>"),
    ];
    for (xml, needle) in cases {
        let msg = parse_err(&xml);
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    }
}

#[test]
fn root_must_be_xml() {
    let msg = parse_err(
        "<message><ToUserName>a</ToUserName><FromUserName>b</FromUserName>\
         <CreateTime>1</CreateTime><MsgType>text</MsgType></message>",
    );
    assert!(msg.contains("<xml>"), "{msg}");
}

#[test]
fn hostile_and_garbage_bodies_are_parse_errors() {
    for bad in [
        "",
        "success",
        "{\"MsgType\":\"text\"}",
        "<xml>",
        "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><ToUserName>&x;</ToUserName></xml>",
        "<xml><ToUserName>&unknown;</ToUserName></xml>",
    ] {
        parse_err(bad);
    }
    assert_eq!(
        Message::parse(&[0xff, 0x00, 0x3c]).unwrap_err().code(),
        -40002
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(err) = Message::parse(&bytes) {
            prop_assert_eq!(err.code(), -40002);
        }
    }

    #[test]
    fn xml_shaped_garbage_never_panics(text in "(<xml>|</xml>|<[A-Za-z_]{1,12}>|</[A-Za-z_]{1,12}>|<!\\[CDATA\\[|\\]\\]>|[0-9.]{0,5}|&[a-z#0-9]{0,5};|[a-z ]{0,4})*") {
        let _ = Message::parse(text.as_bytes());
    }

    #[test]
    fn mutated_official_samples_never_panic(
        index in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let all = sample_xmls();
        let mut bytes = all[index.index(all.len())].clone().into_bytes();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let at = at.index(bytes.len());
            match op {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        if let Err(err) = Message::parse(&bytes) {
            prop_assert_eq!(err.code(), -40002);
        }
    }

    #[test]
    fn truncated_official_samples_are_errors(index in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let all = sample_xmls();
        let xml = &all[index.index(all.len())];
        let cut = cut.index(xml.len());
        prop_assert!(Message::parse(&xml.as_bytes()[..cut]).is_err());
    }
}
