//! The typed message parser on arbitrary bytes. Besides "never panics, errors are -40002",
//! checks what the model promises: the typed `MsgType` and event name are the ones sent, the
//! coordinates are finite, the dedup key's text is printable ASCII and reads back to its
//! fields, and a reply rendered for the message parses back to the same reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxmp_fuzz::check_tree;
use wxmp_proto::{DedupKey, Event, Message, MessageKind, Reply};

/// Undoes the key's `%XX` escapes.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex escape");
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

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
    match &key {
        DedupKey::MsgId(id) => {
            assert_eq!(Some(*id), message.msg_id());
            assert_eq!(text, format!("msgid:{id}"));
        }
        DedupKey::Event {
            from_user_name,
            create_time,
            event,
            event_key,
        } => {
            // The text reads back to the fields: two deliveries never share a key by accident.
            let parts: Vec<&str> = text.split(':').collect();
            assert_eq!(parts.len(), 5, "{text}");
            assert_eq!(parts[0], "event");
            assert_eq!(percent_decode(parts[1]), from_user_name.as_bytes());
            assert_eq!(parts[2], create_time.to_string());
            assert_eq!(percent_decode(parts[3]), event.as_bytes());
            assert_eq!(percent_decode(parts[4]), event_key.as_bytes());
            assert_eq!(from_user_name, &message.from_user_name);
            assert_eq!(*create_time, message.create_time);
        }
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
