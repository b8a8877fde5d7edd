//! The events typed in the second round, each read from a push in the layout of its official
//! sample (订阅通知, 客服会话, 授权用户资料变更, 发布回调, 微信认证, 菜单跳转小程序), and the rule
//! that a typed event whose fields do not read is kept raw rather than refused.
//!
//! The samples are written here in the docs' layout, with the docs' whitespace between
//! elements, because that is what WeChat sends: the reader must not care.

use wxmp_proto::{
    Event, Message, MessageKind, PublishEventInfo, PublishedArticle, SubscribeMsgChange,
    SubscribeMsgPopup, SubscribeMsgSent,
};

fn event_of(xml: &str) -> Event {
    let msg = Message::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"));
    match msg.kind {
        MessageKind::Event(event) => event,
        other => panic!("not an event: {other:?}"),
    }
}

/// An event push from `oUser` with the docs' header and indentation around `body`.
fn sample(event: &str, body: &str) -> String {
    format!(
        "<xml>\n  <ToUserName><![CDATA[gh_123456789abc]]></ToUserName>\n  \
         <FromUserName><![CDATA[otFpruAK8D-E6EfStSYonYSBZ8_4]]></FromUserName>\n  \
         <CreateTime>1610969440</CreateTime>\n  <MsgType><![CDATA[event]]></MsgType>\n  \
         <Event><![CDATA[{event}]]></Event>\n  {body}\n</xml>"
    )
}

#[test]
fn view_miniprogram() {
    let event = event_of(&sample(
        "view_miniprogram",
        "<EventKey><![CDATA[pages/index/index]]></EventKey>\n  <MenuId>MENUID</MenuId>",
    ));
    assert_eq!(
        event,
        Event::ViewMiniprogram {
            event_key: "pages/index/index".into(),
            menu_id: Some("MENUID".into()),
        }
    );
    assert_eq!(event.name(), "view_miniprogram");
    assert_eq!(event.event_key(), Some("pages/index/index"));
}

#[test]
fn subscribe_msg_popup_event_with_two_templates_and_with_one() {
    let two = sample(
        "subscribe_msg_popup_event",
        "<SubscribeMsgPopupEvent>\n    <List>\n      \
         <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>\n      \
         <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>\n      \
         <PopupScene>2</PopupScene>\n    </List>\n    <List>\n      \
         <TemplateId><![CDATA[9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI]]></TemplateId>\n      \
         <SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>\n      \
         <PopupScene>2</PopupScene>\n    </List>\n  </SubscribeMsgPopupEvent>",
    );
    let event = event_of(&two);
    assert_eq!(
        event,
        Event::SubscribeMsgPopupEvent {
            list: vec![
                SubscribeMsgPopup {
                    template_id: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc".into(),
                    subscribe_status_string: "accept".into(),
                    popup_scene: 2,
                },
                SubscribeMsgPopup {
                    template_id: "9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI".into(),
                    subscribe_status_string: "reject".into(),
                    popup_scene: 2,
                },
            ]
        }
    );
    assert_eq!(event.name(), "subscribe_msg_popup_event");
    let one = sample(
        "subscribe_msg_popup_event",
        "<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[t1]]></TemplateId>\
         <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>\
         <PopupScene>1</PopupScene></List></SubscribeMsgPopupEvent>",
    );
    match event_of(&one) {
        Event::SubscribeMsgPopupEvent { list } => assert_eq!(list.len(), 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn subscribe_msg_change_and_sent_events() {
    let change = sample(
        "subscribe_msg_change_event",
        "<SubscribeMsgChangeEvent>\n    <List>\n      \
         <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>\n      \
         <SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>\n    </List>\n  \
         </SubscribeMsgChangeEvent>",
    );
    assert_eq!(
        event_of(&change),
        Event::SubscribeMsgChangeEvent {
            list: vec![SubscribeMsgChange {
                template_id: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc".into(),
                subscribe_status_string: "reject".into(),
            }]
        }
    );
    let sent = sample(
        "subscribe_msg_sent_event",
        "<SubscribeMsgSentEvent>\n    <List>\n      \
         <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>\n      \
         <MsgID>1700827132819554304</MsgID>\n      <ErrorCode>0</ErrorCode>\n      \
         <ErrorStatus><![CDATA[success]]></ErrorStatus>\n    </List>\n  </SubscribeMsgSentEvent>",
    );
    assert_eq!(
        event_of(&sent),
        Event::SubscribeMsgSentEvent {
            list: vec![SubscribeMsgSent {
                template_id: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc".into(),
                msg_id: 1700827132819554304,
                error_code: 0,
                error_status: "success".into(),
            }]
        }
    );
    // A failed send carries a (possibly negative) errcode.
    let failed = sample(
        "subscribe_msg_sent_event",
        "<SubscribeMsgSentEvent><List><TemplateId>t</TemplateId><MsgID>1</MsgID>\
         <ErrorCode>-1</ErrorCode><ErrorStatus><![CDATA[system error]]></ErrorStatus></List>\
         </SubscribeMsgSentEvent>",
    );
    match event_of(&failed) {
        Event::SubscribeMsgSentEvent { list } => assert_eq!(list[0].error_code, -1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn kf_session_events() {
    assert_eq!(
        event_of(&sample(
            "kf_create_session",
            "<KfAccount><![CDATA[test1@test]]></KfAccount>"
        )),
        Event::KfCreateSession {
            kf_account: "test1@test".into()
        }
    );
    assert_eq!(
        event_of(&sample(
            "kf_close_session",
            "<KfAccount><![CDATA[test1@test]]></KfAccount>"
        )),
        Event::KfCloseSession {
            kf_account: "test1@test".into()
        }
    );
    let switch = event_of(&sample(
        "kf_switch_session",
        "<FromKfAccount><![CDATA[test1@test]]></FromKfAccount>\n  \
         <ToKfAccount><![CDATA[test2@test]]></ToKfAccount>",
    ));
    assert_eq!(
        switch,
        Event::KfSwitchSession {
            from_kf_account: "test1@test".into(),
            to_kf_account: "test2@test".into(),
        }
    );
    assert_eq!(switch.name(), "kf_switch_session");
}

#[test]
fn user_authorization_events() {
    let ids = "<OpenID><![CDATA[owAqB1nqaOYYWl0Ng484G2z5NIwU]]></OpenID>\n  \
               <AppID><![CDATA[wx13974bf780d3dc89]]></AppID>";
    assert_eq!(
        event_of(&sample("user_info_modified", ids)),
        Event::UserInfoModified {
            open_id: "owAqB1nqaOYYWl0Ng484G2z5NIwU".into(),
            app_id: "wx13974bf780d3dc89".into(),
        }
    );
    assert_eq!(
        event_of(&sample(
            "user_authorization_revoke",
            &format!("{ids}\n  <RevokeInfo><![CDATA[1]]></RevokeInfo>")
        )),
        Event::UserAuthorizationRevoke {
            open_id: "owAqB1nqaOYYWl0Ng484G2z5NIwU".into(),
            app_id: "wx13974bf780d3dc89".into(),
            revoke_info: "1".into(),
        }
    );
    assert_eq!(
        event_of(&sample("user_authorization_cancellation", ids)),
        Event::UserAuthorizationCancellation {
            open_id: "owAqB1nqaOYYWl0Ng484G2z5NIwU".into(),
            app_id: "wx13974bf780d3dc89".into(),
        }
    );
}

#[test]
fn publish_job_finish_published_and_refused() {
    // The docs' sample wraps article_id across two lines inside the CDATA; kept as sent.
    let ok = sample(
        "PUBLISHJOBFINISH",
        "<PublishEventInfo>\n    <publish_id>2247503051</publish_id>\n    \
         <publish_status>0</publish_status>\n    \
         <article_id><![CDATA[b5O2OUs25HBxRceL7hfReg-U9QGeq9zQjiDvy\nWP4Hq4]]></article_id>\n    \
         <article_detail>\n      <count>1</count>\n      <item>\n        <idx>1</idx>\n        \
         <article_url><![CDATA[ARTICLE_URL]]></article_url>\n      </item>\n    </article_detail>\n  \
         </PublishEventInfo>",
    );
    let event = event_of(&ok);
    assert_eq!(
        event,
        Event::PublishJobFinish {
            publish_event_info: PublishEventInfo {
                publish_id: 2247503051,
                publish_status: 0,
                article_id: Some("b5O2OUs25HBxRceL7hfReg-U9QGeq9zQjiDvy\nWP4Hq4".into()),
                article_detail: vec![PublishedArticle {
                    idx: 1,
                    article_url: "ARTICLE_URL".into(),
                }],
                fail_idx: vec![],
            }
        }
    );
    assert_eq!(event.name(), "PUBLISHJOBFINISH");
    let refused = sample(
        "PUBLISHJOBFINISH",
        "<PublishEventInfo>\n    <publish_id>2247503051</publish_id>\n    \
         <publish_status>2</publish_status>\n    <fail_idx>1</fail_idx>\n    \
         <fail_idx>2</fail_idx>\n  </PublishEventInfo>",
    );
    assert_eq!(
        event_of(&refused),
        Event::PublishJobFinish {
            publish_event_info: PublishEventInfo {
                publish_id: 2247503051,
                publish_status: 2,
                article_id: None,
                article_detail: vec![],
                fail_idx: vec![1, 2],
            }
        }
    );
}

#[test]
fn verification_events() {
    let expired = "<ExpiredTime>1442401156</ExpiredTime>";
    let failed = "<FailTime>1442401122</FailTime>\n  <FailReason><![CDATA[by time]]></FailReason>";
    assert_eq!(
        event_of(&sample("qualification_verify_success", expired)),
        Event::QualificationVerifySuccess {
            expired_time: 1442401156
        }
    );
    assert_eq!(
        event_of(&sample("qualification_verify_fail", failed)),
        Event::QualificationVerifyFail {
            fail_time: 1442401122,
            fail_reason: "by time".into(),
        }
    );
    assert_eq!(
        event_of(&sample("naming_verify_success", expired)),
        Event::NamingVerifySuccess {
            expired_time: 1442401156
        }
    );
    assert_eq!(
        event_of(&sample("naming_verify_fail", failed)),
        Event::NamingVerifyFail {
            fail_time: 1442401122,
            fail_reason: "by time".into(),
        }
    );
    assert_eq!(
        event_of(&sample("annual_renew", expired)),
        Event::AnnualRenew {
            expired_time: 1442401156
        }
    );
    assert_eq!(
        event_of(&sample("verify_expired", expired)),
        Event::VerifyExpired {
            expired_time: 1442401156
        }
    );
}

#[test]
fn every_typed_name_round_trips_through_name() {
    for (name, body) in [
        ("view_miniprogram", "<EventKey>p</EventKey>"),
        ("subscribe_msg_popup_event", "<SubscribeMsgPopupEvent/>"),
        ("subscribe_msg_change_event", "<SubscribeMsgChangeEvent/>"),
        ("subscribe_msg_sent_event", "<SubscribeMsgSentEvent/>"),
        ("kf_create_session", ""),
        ("kf_close_session", ""),
        ("kf_switch_session", ""),
        ("user_info_modified", ""),
        ("user_authorization_revoke", ""),
        ("user_authorization_cancellation", ""),
        (
            "PUBLISHJOBFINISH",
            "<PublishEventInfo><publish_id>1</publish_id><publish_status>1</publish_status></PublishEventInfo>",
        ),
        ("qualification_verify_success", "<ExpiredTime>1</ExpiredTime>"),
        ("qualification_verify_fail", "<FailTime>1</FailTime>"),
        ("naming_verify_success", "<ExpiredTime>1</ExpiredTime>"),
        ("naming_verify_fail", "<FailTime>1</FailTime>"),
        ("annual_renew", "<ExpiredTime>1</ExpiredTime>"),
        ("verify_expired", "<ExpiredTime>1</ExpiredTime>"),
    ] {
        let event = event_of(&sample(name, body));
        assert!(
            !matches!(event, Event::Unknown { .. } | Event::Malformed { .. }),
            "{name}: {event:?}"
        );
        assert_eq!(event.name(), name);
    }
}

#[test]
fn a_typed_event_of_unexpected_shape_is_kept_raw() {
    let xml = sample(
        "LOCATION",
        "<Latitude>23°N</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision>",
    );
    let msg = Message::parse(xml.as_bytes()).expect("a malformed event is not an error");
    assert_eq!(
        msg.event(),
        Some(&Event::Malformed {
            event: "LOCATION".into(),
            reason: "<Latitude> is not a number".into(),
        })
    );
    assert_eq!(msg.field("Latitude"), Some("23°N"));
    // Nested fields of unexpected shape too.
    let xml = sample(
        "subscribe_msg_sent_event",
        "<SubscribeMsgSentEvent><List><MsgID>soon</MsgID></List></SubscribeMsgSentEvent>",
    );
    match event_of(&xml) {
        Event::Malformed { event, reason } => {
            assert_eq!(event, "subscribe_msg_sent_event");
            assert!(reason.contains("<MsgID> in <List>"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
