//! The typed message parser on arbitrary bytes. Besides "never panics, errors are -40002",
//! checks what the model promises: the typed `MsgType` and event name are the ones sent, the
//! coordinates are finite, the dedup key's text is printable ASCII with `:` only as a
//! separator, and a reply rendered for the message parses back to the same reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxmp_fuzz::check_tree;
use wxmp_proto::{DedupKey, Event, Message, MessageKind, Reply};

fuzz_target!(|data: &[u8]| {
    let message = match Message::parse(data) {
        Ok(message) => message,
        Err(e) => {
            assert_eq!(e.code(), -40002, "{e}");
            return;
        }
    };
    check_tree(&message.raw);
    assert_eq!(message.raw.name, "xml");
    assert_eq!(Some(message.msg_type()), message.field("MsgType"));
    assert_eq!(
        message.field("ToUserName"),
        Some(message.to_user_name.as_str())
    );
    assert_eq!(
        message.field("FromUserName"),
        Some(message.from_user_name.as_str())
    );

    let finite = |values: &[f64]| assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
    match &message.kind {
        MessageKind::Location {
            location_x,
            location_y,
            scale,
            ..
        } => finite(&[*location_x, *location_y, *scale]),
        MessageKind::Event(event) => {
            assert_eq!(message.field("Event"), Some(event.name()));
            match event {
                Event::Location {
                    latitude,
                    longitude,
                    precision,
                } => finite(&[*latitude, *longitude, *precision]),
                Event::LocationSelect {
                    send_location_info, ..
                } => finite(&[
                    send_location_info.location_x,
                    send_location_info.location_y,
                    send_location_info.scale,
                ]),
                _ => {}
            }
            let _ = (event.event_key(), event.scene());
        }
        _ => {}
    }

    let key = message.dedup_key();
    let text = key.to_string();
    assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
    match key {
        DedupKey::MsgId(id) => assert_eq!(Some(id), message.msg_id()),
        DedupKey::FromUserCreateTime { .. } => assert_eq!(text.matches(':').count(), 2, "{text}"),
    }

    // A reply to this message either renders and reads back as itself, or is refused
    // (-40011) because a name holds a character XML cannot carry.
    let reply = Reply::text("收到 ]]> <ok>");
    match reply.render_for(&message, message.create_time) {
        Ok(xml) => {
            let parsed = Reply::parse(xml.as_bytes()).expect("a rendered reply parses");
            assert_eq!(parsed.reply, reply);
            assert_eq!(parsed.to_user_name, message.from_user_name);
            assert_eq!(parsed.from_user_name, message.to_user_name);
            assert_eq!(parsed.create_time, message.create_time);
        }
        Err(e) => assert_eq!(e.code(), -40011, "{e}"),
    }
});
