//! Passive replies: byte-exact against the official samples, the `success` / empty no-reply,
//! the article limit, and render → parse round trips of arbitrary replies.
//!
//! The samples come from `tests/vectors/vectors.json` (`passive_reply_samples.replies`), all
//! rendered with ToUserName `toUser`, FromUserName `fromUser` and CreateTime `12345678`.
//!
//! The round-trip generator draws from text XML 1.0 can carry — any character except the C0
//! controls other than tab, LF and CR, and U+FFFE/U+FFFF — mixed with `]]>`, CJK and emoji,
//! because `render` refuses the forbidden characters (-40011) rather than dropping them; a
//! separate property checks that refusal.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;
use wxmp_proto::reply::MAX_NEWS_ARTICLES;
use wxmp_proto::{is_no_reply, Article, Message, RenderedReply, Reply, NO_REPLY};

#[derive(Deserialize)]
struct Vectors {
    passive_reply_samples: ReplySamples,
}

#[derive(Deserialize)]
struct ReplySamples {
    replies: BTreeMap<String, String>,
}

fn official() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/vectors.json");
    let text = std::fs::read_to_string(path).expect("tests/vectors/vectors.json is readable");
    let vectors: Vectors = serde_json::from_str(&text).expect("vectors.json parses");
    vectors.passive_reply_samples.replies
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

/// The reply each official sample shows.
fn sample_replies() -> Vec<(&'static str, Reply)> {
    vec![
        ("text", Reply::text("你好")),
        (
            "image",
            Reply::Image {
                media_id: "media_id".into(),
            },
        ),
        (
            "voice",
            Reply::Voice {
                media_id: "media_id".into(),
            },
        ),
        (
            "video",
            Reply::Video {
                media_id: "media_id".into(),
                title: some("title"),
                description: some("description"),
            },
        ),
        (
            "music",
            Reply::Music {
                title: some("TITLE"),
                description: some("DESCRIPTION"),
                music_url: some("MUSIC_Url"),
                hq_music_url: some("HQ_MUSIC_Url"),
                thumb_media_id: "media_id".into(),
            },
        ),
        (
            "news_1",
            Reply::News {
                articles: vec![Article {
                    title: "title1".into(),
                    description: "description1".into(),
                    pic_url: "picurl".into(),
                    url: "url".into(),
                }],
            },
        ),
        (
            "transfer_customer_service",
            Reply::TransferCustomerService { kf_account: None },
        ),
        (
            "transfer_customer_service_to_account",
            Reply::TransferCustomerService {
                kf_account: some("test1@test"),
            },
        ),
    ]
}

#[test]
fn official_samples_render_byte_exactly() {
    let official = official();
    for (name, reply) in sample_replies() {
        let expected = official
            .get(name)
            .unwrap_or_else(|| panic!("vectors lack {name}"));
        let rendered = reply.render("toUser", "fromUser", 12345678).unwrap();
        assert_eq!(&rendered, expected, "{name}");
    }
}

#[test]
fn official_samples_parse_to_their_replies() {
    let official = official();
    for (name, reply) in sample_replies() {
        let parsed = Reply::parse(official[name].as_bytes()).unwrap();
        assert_eq!(
            parsed,
            RenderedReply {
                to_user_name: "toUser".into(),
                from_user_name: "fromUser".into(),
                create_time: 12345678,
                reply,
            },
            "{name}"
        );
    }
}

#[test]
fn every_official_sample_is_covered() {
    let covered: Vec<&str> = sample_replies().iter().map(|(name, _)| *name).collect();
    for name in official().keys() {
        assert!(
            covered.contains(&name.as_str()) || name.starts_with("no_reply"),
            "sample {name} has no test"
        );
    }
}

#[test]
fn no_reply_bodies() {
    let official = official();
    assert_eq!(official["no_reply_recommended"], NO_REPLY);
    assert!(is_no_reply(official["no_reply_recommended"].as_bytes()));
    assert!(is_no_reply(official["no_reply_empty"].as_bytes()));
    assert!(is_no_reply(b" success\r\n"));
    assert!(is_no_reply(b"\n"));
    for other in [
        &b"Success"[..],
        b"successful",
        b"ok",
        b"<xml></xml>",
        official["text"].as_bytes(),
    ] {
        assert!(!is_no_reply(other), "{:?}", String::from_utf8_lossy(other));
    }
}

#[test]
fn optional_fields_are_left_out() {
    let video = Reply::Video {
        media_id: "m".into(),
        title: None,
        description: some("d"),
    };
    assert_eq!(
        video.render("u", "a", 1).unwrap(),
        "<xml><ToUserName><![CDATA[u]]></ToUserName><FromUserName><![CDATA[a]]></FromUserName>\
         <CreateTime>1</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[m]]>\
         </MediaId><Description><![CDATA[d]]></Description></Video></xml>"
    );
    let music = Reply::Music {
        title: None,
        description: None,
        music_url: None,
        hq_music_url: None,
        thumb_media_id: "t".into(),
    };
    assert!(music
        .render("u", "a", 1)
        .unwrap()
        .ends_with("<Music><ThumbMediaId><![CDATA[t]]></ThumbMediaId></Music></xml>"));
}

#[test]
fn render_for_swaps_the_names() {
    let inbound = Message::parse(
        b"<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oUser]]>\
          </FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType>\
          <Content><![CDATA[hi]]></Content><MsgId>1</MsgId></xml>",
    )
    .unwrap();
    let reply = Reply::text("hello");
    let xml = reply.render_for(&inbound, 99).unwrap();
    assert_eq!(xml, reply.render("oUser", "gh_account", 99).unwrap());
    let parsed = Reply::parse(xml.as_bytes()).unwrap();
    assert_eq!(parsed.to_user_name, "oUser");
    assert_eq!(parsed.from_user_name, "gh_account");
    assert_eq!(parsed.create_time, 99);
}

fn article(i: usize) -> Article {
    Article {
        title: format!("t{i}"),
        description: format!("d{i}"),
        pic_url: format!("https://p/{i}"),
        url: format!("https://u/{i}"),
    }
}

#[test]
fn news_needs_one_to_eight_articles() {
    for count in [0, MAX_NEWS_ARTICLES + 1, 10] {
        let news = Reply::News {
            articles: (0..count).map(article).collect(),
        };
        let err = news.render("u", "a", 1).unwrap_err();
        assert_eq!(err.code(), -40011, "{count}: {err}");
    }
    let eight = Reply::News {
        articles: (0..MAX_NEWS_ARTICLES).map(article).collect(),
    };
    let xml = eight.render("u", "a", 1).unwrap();
    assert!(xml.contains("<ArticleCount>8</ArticleCount>"));
    assert_eq!(Reply::parse(xml.as_bytes()).unwrap().reply, eight);
}

#[test]
fn cdata_terminator_is_split_safely() {
    let reply = Reply::text("a]]>b <![CDATA[ ]]]]>");
    let xml = reply.render("u", "a", 1).unwrap();
    assert!(xml.contains("<Content><![CDATA[a]]]]><![CDATA[>b"));
    assert_eq!(Reply::parse(xml.as_bytes()).unwrap().reply, reply);
}

#[test]
fn characters_xml_forbids_are_refused() {
    for bad in [
        "\0", "a\u{1}b", "\u{8}", "\u{b}", "\u{c}", "\u{1f}", "\u{fffe}", "\u{ffff}",
    ] {
        let err = Reply::text(bad).render("u", "a", 1).unwrap_err();
        assert_eq!(err.code(), -40011, "{bad:?}");
        let err = Reply::text("ok").render(bad, "a", 1).unwrap_err();
        assert_eq!(err.code(), -40011, "{bad:?}");
    }
    for fine in [
        "\t",
        "\n",
        "\r\n",
        "\u{7f}",
        "\u{85}",
        "\u{fffd}",
        "\u{10ffff}",
        "😀",
    ] {
        assert!(Reply::text(fine).render("u", "a", 1).is_ok(), "{fine:?}");
    }
}

#[test]
fn parse_rejects_broken_replies() {
    let head =
        "<xml><ToUserName><![CDATA[u]]></ToUserName><FromUserName><![CDATA[a]]></FromUserName>\
                <CreateTime>1</CreateTime>";
    for (body, needle) in [
        ("<MsgType>text</MsgType>", "missing <Content>"),
        ("<MsgType>image</MsgType>", "missing <Image>"),
        (
            "<MsgType>image</MsgType><Image></Image>",
            "missing <MediaId> in <Image>",
        ),
        (
            "<MsgType>music</MsgType><Music></Music>",
            "missing <ThumbMediaId> in <Music>",
        ),
        ("<MsgType>location</MsgType>", "unknown reply <MsgType>"),
        ("", "missing <MsgType>"),
        (
            "<MsgType>news</MsgType><ArticleCount>2</ArticleCount><Articles><item><Title>t</Title>\
             <Description>d</Description><PicUrl>p</PicUrl><Url>u</Url></item></Articles>",
            "<ArticleCount>",
        ),
        (
            "<MsgType>news</MsgType><ArticleCount>1</ArticleCount><Articles><item><Title>t</Title>\
             </item></Articles>",
            "missing <Description> in <item>",
        ),
    ] {
        let err = Reply::parse(format!("{head}{body}</xml>").as_bytes()).unwrap_err();
        assert_eq!(err.code(), -40002);
        assert!(
            err.to_string().contains(needle),
            "{err} should mention {needle}"
        );
    }
    for garbage in ["", "success", "<reply/>", "{\"type\":\"text\"}"] {
        assert_eq!(Reply::parse(garbage.as_bytes()).unwrap_err().code(), -40002);
    }
}

/// Text XML 1.0 can carry, biased towards the interesting cases.
fn xml_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("]]>".to_owned()),
        Just("]]".to_owned()),
        Just("<![CDATA[".to_owned()),
        Just("&amp;<>\"'".to_owned()),
        Just("\t\n\r\n".to_owned()),
        "[\\p{Han}]{1,4}",
        "[😀👋🏽🎉\u{1F9D1}\u{200D}\u{1F4BB}]{1,3}",
        "[a-zA-Z0-9 @._:/?=-]{0,12}",
        any::<char>()
            .prop_filter("XML 1.0 Char", |c| !matches!(
                c,
                '\0'..='\x08' | '\x0B' | '\x0C' | '\x0E'..='\x1F' | '\u{FFFE}' | '\u{FFFF}'
            ))
            .prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(xml_text())
}

fn any_article() -> impl Strategy<Value = Article> {
    (xml_text(), xml_text(), xml_text(), xml_text()).prop_map(
        |(title, description, pic_url, url)| Article {
            title,
            description,
            pic_url,
            url,
        },
    )
}

fn any_reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        xml_text().prop_map(|content| Reply::Text { content }),
        xml_text().prop_map(|media_id| Reply::Image { media_id }),
        xml_text().prop_map(|media_id| Reply::Voice { media_id }),
        (xml_text(), opt_text(), opt_text()).prop_map(|(media_id, title, description)| {
            Reply::Video {
                media_id,
                title,
                description,
            }
        }),
        (opt_text(), opt_text(), opt_text(), opt_text(), xml_text()).prop_map(
            |(title, description, music_url, hq_music_url, thumb_media_id)| Reply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            }
        ),
        proptest::collection::vec(any_article(), 1..=MAX_NEWS_ARTICLES)
            .prop_map(|articles| Reply::News { articles }),
        opt_text().prop_map(|kf_account| Reply::TransferCustomerService { kf_account }),
    ]
}

proptest! {
    #[test]
    fn any_reply_round_trips(
        reply in any_reply(),
        to in xml_text(),
        from in xml_text(),
        create_time in any::<u64>(),
    ) {
        let xml = reply.render(&to, &from, create_time).unwrap();
        prop_assert!(!is_no_reply(xml.as_bytes()));
        let parsed = Reply::parse(xml.as_bytes()).unwrap();
        prop_assert_eq!(
            parsed,
            RenderedReply { to_user_name: to, from_user_name: from, create_time, reply }
        );
    }

    #[test]
    fn forbidden_characters_are_refused_anywhere(
        reply in any_reply(),
        bad in prop_oneof![Just('\u{FFFE}'), Just('\u{FFFF}'), (0u8..0x20)
            .prop_filter("not tab/LF/CR", |b| !matches!(b, b'\t' | b'\n' | b'\r'))
            .prop_map(char::from)],
    ) {
        let err = reply.render(&format!("o{bad}"), "gh", 1).unwrap_err();
        prop_assert_eq!(err.code(), -40011);
        let err = Reply::text(format!("x{bad}y")).render("o", "gh", 1).unwrap_err();
        prop_assert_eq!(err.code(), -40011);
    }

    #[test]
    fn reply_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(err) = Reply::parse(&bytes) {
            prop_assert_eq!(err.code(), -40002);
        }
    }
}
