//! End-to-end tests of the offline WeChat platform, over real HTTP.
//!
//! Each test spawns its own emulator on `127.0.0.1:0` and calls it with reqwest exactly as a
//! business server calls `api.weixin.qq.com`, so the routing, the peer-IP plumbing and the JSON
//! shapes are tested along with the rules. Expiry tests use lifetimes of one or two seconds and
//! real sleeps (the tests run concurrently, so the whole file takes a few seconds): a paused
//! tokio clock would be auto-advanced to reqwest's own timers while a socket waits.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::{sleep, Instant};
use wxmp::emulator::{
    AppStats, CallCount, Emulator, EmulatorConfig, EmulatorHandle, Endpoint, Fault, FaultKind,
};

const APPID: &str = "wx_emulator_test";
const SECRET: &str = "the-app-secret";
const INVALID_CREDENTIAL: &str = "invalid credential, access_token is invalid or not latest";

struct Rig {
    handle: EmulatorHandle,
    http: reqwest::Client,
}

fn config() -> EmulatorConfig {
    EmulatorConfig::default().with_app(APPID, SECRET)
}

async fn start(config: EmulatorConfig) -> Rig {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = Emulator::new(config).spawn(listener).await;
    Rig {
        handle,
        http: reqwest::Client::new(),
    }
}

impl Rig {
    fn emulator(&self) -> &Emulator {
        self.handle.emulator()
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.handle.base_url())
    }

    async fn get(&self, path_and_query: &str) -> Value {
        let resp = self
            .http
            .get(self.url(path_and_query))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path_and_query}");
        resp.json().await.unwrap()
    }

    async fn post(&self, path_and_query: &str, body: impl Into<reqwest::Body>) -> Value {
        let resp = self
            .http
            .post(self.url(path_and_query))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path_and_query}");
        resp.json().await.unwrap()
    }

    async fn token_with(&self, appid: &str, secret: &str) -> Value {
        self.get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}"
        ))
        .await
    }

    /// A new classic token (asserts success).
    async fn token(&self) -> String {
        let v = self.token_with(APPID, SECRET).await;
        v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {v}"))
            .to_owned()
    }

    async fn stable_with(&self, body: Value) -> Value {
        self.post("/cgi-bin/stable_token", body.to_string()).await
    }

    /// A stable token (asserts success): `(token, expires_in)`.
    async fn stable(&self, force_refresh: bool) -> (String, u64) {
        let v = self
            .stable_with(json!({
                "grant_type": "client_credential",
                "appid": APPID,
                "secret": SECRET,
                "force_refresh": force_refresh,
            }))
            .await;
        let token = v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {v}"));
        (token.to_owned(), v["expires_in"].as_u64().unwrap())
    }

    /// The errcode of a generic API call with `token`.
    async fn use_token(&self, token: &str) -> i64 {
        let v = self
            .get(&format!(
                "/cgi-bin/user/info?access_token={token}&openid=o1"
            ))
            .await;
        v["errcode"].as_i64().unwrap()
    }
}

fn errcode(v: &Value) -> i64 {
    v["errcode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no errcode: {v}"))
}

#[tokio::test]
async fn classic_token_rotation_overlap_and_expiry() {
    let rig = start(EmulatorConfig {
        token_lifetime: Duration::from_secs(2),
        overlap: Duration::from_secs(1),
        ..config()
    })
    .await;
    let first = rig.token_with(APPID, SECRET).await;
    assert_eq!(first["expires_in"], 2);
    let t1 = first["access_token"].as_str().unwrap().to_owned();
    assert!(t1.len() >= 100, "{t1}");
    assert!(t1
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));

    let t2 = rig.token().await;
    assert_ne!(t1, t2, "every call issues a new token");
    assert_eq!(rig.use_token(&t1).await, 0, "previous token within overlap");
    assert_eq!(rig.emulator().current_token(APPID).as_deref(), Some(&*t2));

    let t3 = rig.token().await;
    let v = rig
        .get(&format!("/cgi-bin/user/info?access_token={t1}"))
        .await;
    assert_eq!(
        v,
        json!({"errcode": 40001, "errmsg": INVALID_CREDENTIAL}),
        "older than previous dies at once"
    );
    assert_eq!(rig.use_token(&t2).await, 0);

    sleep(Duration::from_millis(1100)).await;
    assert_eq!(rig.use_token(&t2).await, 40001, "overlap over");
    assert_eq!(rig.use_token(&t3).await, 0);

    sleep(Duration::from_millis(1000)).await;
    let v = rig
        .get(&format!("/cgi-bin/user/info?access_token={t3}"))
        .await;
    assert_eq!(
        v,
        json!({"errcode": 42001, "errmsg": "access_token expired"})
    );
}

#[tokio::test]
async fn credential_errors() {
    let rig = start(config()).await;
    let cases = [
        ("grant_type=password&appid=a&secret=b", 40002),
        ("appid=a&secret=b", 40002),
        ("grant_type=client_credential&secret=b", 41002),
        ("grant_type=client_credential&appid=&secret=b", 41002),
        ("grant_type=client_credential&appid=a", 41004),
        ("grant_type=client_credential&appid=wxnope&secret=b", 40013),
    ];
    for (query, code) in cases {
        let v = rig.get(&format!("/cgi-bin/token?{query}")).await;
        assert_eq!(errcode(&v), code, "{query}: {v}");
    }
    let v = rig.token_with(APPID, "wrong").await;
    assert_eq!(v, json!({"errcode": 40001, "errmsg": INVALID_CREDENTIAL}));
    let v = rig.token_with("wxnope", SECRET).await;
    assert_eq!(v, json!({"errcode": 40013, "errmsg": "invalid appid"}));
    let v = rig
        .post(
            "/cgi-bin/token?grant_type=client_credential&appid=a&secret=b",
            "",
        )
        .await;
    assert_eq!(errcode(&v), 43001);

    let stable_cases = [
        (
            json!({"grant_type":"client_credential","appid":APPID,"secret":"wrong"}),
            40125,
        ),
        (
            json!({"grant_type":"x","appid":APPID,"secret":SECRET}),
            40002,
        ),
        (json!({"appid":APPID,"secret":SECRET}), 40002),
        (
            json!({"grant_type":"client_credential","secret":SECRET}),
            41002,
        ),
        (
            json!({"grant_type":"client_credential","appid":APPID}),
            41004,
        ),
        (
            json!({"grant_type":"client_credential","appid":"wxnope","secret":SECRET}),
            40013,
        ),
        (
            json!({"grant_type":"client_credential","appid":APPID,"secret":SECRET,"force_refresh":"yes"}),
            47001,
        ),
        (json!(["client_credential"]), 47001),
    ];
    for (body, code) in stable_cases {
        let v = rig.stable_with(body.clone()).await;
        assert_eq!(errcode(&v), code, "{body}: {v}");
    }
    let v = rig
        .stable_with(json!({"grant_type":"client_credential","appid":APPID,"secret":"wrong"}))
        .await;
    assert_eq!(v, json!({"errcode": 40125, "errmsg": "invalid appsecret"}));
    let v = rig
        .post("/cgi-bin/stable_token", "grant_type=client_credential")
        .await;
    assert_eq!(v, json!({"errcode": 47001, "errmsg": "data format error"}));
    let v = rig.get("/cgi-bin/stable_token").await;
    assert_eq!(
        v,
        json!({"errcode": 43002, "errmsg": "require POST method"})
    );

    let stats = rig.emulator().stats(APPID);
    assert_eq!(stats.token_calls, CallCount { ok: 0, attempts: 1 });
    assert_eq!(stats.stable_token_calls.ok, 0);
}

#[tokio::test]
async fn ip_whitelist_40164() {
    let rig = start(config()).await;
    assert!(rig
        .emulator()
        .set_ip_whitelist(APPID, Some(vec!["10.1.2.3".parse().unwrap()])));
    let v = rig.token_with(APPID, SECRET).await;
    assert_eq!(errcode(&v), 40164);
    let msg = v["errmsg"].as_str().unwrap();
    let prefix = "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist rid: ";
    assert!(msg.starts_with(prefix), "{msg}");
    assert!(msg.len() > prefix.len());
    let v = rig
        .stable_with(json!({"grant_type":"client_credential","appid":APPID,"secret":SECRET}))
        .await;
    assert_eq!(errcode(&v), 40164);

    rig.emulator()
        .set_ip_whitelist(APPID, Some(vec!["127.0.0.1".parse().unwrap()]));
    rig.token().await;
    rig.emulator().set_ip_whitelist(APPID, None);
    rig.token().await;
    assert!(!rig.emulator().set_ip_whitelist("wxnope", None));
}

#[tokio::test]
async fn daily_quotas_45009() {
    let rig = start(EmulatorConfig {
        daily_token_quota: 3,
        daily_stable_quota: 2,
        ..config()
    })
    .await;
    for _ in 0..3 {
        rig.token().await;
    }
    let last = rig.emulator().current_token(APPID).unwrap();
    let v = rig.token_with(APPID, SECRET).await;
    assert_eq!(errcode(&v), 45009);
    let msg = v["errmsg"].as_str().unwrap();
    assert!(
        msg.starts_with("reach max api daily quota limit rid: "),
        "{msg}"
    );
    assert_eq!(
        rig.use_token(&last).await,
        0,
        "a refused call issues nothing"
    );
    assert_eq!(
        rig.emulator().stats(APPID).token_calls,
        CallCount { ok: 3, attempts: 4 }
    );

    rig.stable(false).await;
    rig.stable(false).await;
    let v = rig
        .stable_with(json!({"grant_type":"client_credential","appid":APPID,"secret":SECRET}))
        .await;
    assert_eq!(errcode(&v), 45009);
}

#[tokio::test]
async fn stable_normal_mode_reuses_and_renews_within_overlap() {
    let rig = start(EmulatorConfig {
        token_lifetime: Duration::from_secs(2),
        overlap: Duration::from_secs(1),
        ..config()
    })
    .await;
    let (a, expires_in) = rig.stable(false).await;
    assert_eq!(expires_in, 2);
    let (again, left) = rig.stable(false).await;
    assert_eq!(again, a, "normal mode returns the same token");
    assert_eq!(left, 1, "remaining seconds, rounded down");
    assert_eq!(
        rig.emulator().current_stable_token(APPID).as_deref(),
        Some(&*a)
    );

    sleep(Duration::from_millis(1100)).await;
    let (b, expires_in) = rig.stable(false).await;
    assert_ne!(b, a, "within the last overlap a new token is issued");
    assert_eq!(expires_in, 2);
    assert_eq!(
        rig.use_token(&a).await,
        0,
        "the old one lives to its expiry"
    );
    let (b_again, _) = rig.stable(false).await;
    assert_eq!(b_again, b);

    sleep(Duration::from_millis(1000)).await;
    assert_eq!(rig.use_token(&a).await, 42001);
    assert_eq!(rig.use_token(&b).await, 0);
    let stats = rig.emulator().stats(APPID);
    assert_eq!(stats.stable_tokens_issued, 2);
    assert_eq!(stats.stable_token_calls, CallCount { ok: 4, attempts: 4 });
}

#[tokio::test]
async fn stable_force_refresh_interval_leak_and_daily_limit() {
    let rig = start(EmulatorConfig {
        force_refresh_daily_limit: 2,
        force_refresh_min_interval: Duration::from_millis(500),
        ..config()
    })
    .await;
    let (leaked, _) = rig.stable(false).await;
    let (f1, expires_in) = rig.stable(true).await;
    assert_ne!(f1, leaked);
    assert_eq!(expires_in, 7200);
    assert_eq!(
        rig.use_token(&leaked).await,
        0,
        "previous stays for the overlap"
    );

    let (too_soon, _) = rig.stable(true).await;
    assert_eq!(too_soon, f1, "否则不会刷新: too soon, nothing refreshed");

    sleep(Duration::from_millis(600)).await;
    let (f2, _) = rig.stable(true).await;
    assert_ne!(f2, f1);
    assert_eq!(
        rig.use_token(&leaked).await,
        40001,
        "two forced refreshes kill a leak"
    );
    assert_eq!(rig.use_token(&f1).await, 0);

    sleep(Duration::from_millis(600)).await;
    let v = rig
        .stable_with(json!({"grant_type":"client_credential","appid":APPID,"secret":SECRET,"force_refresh":true}))
        .await;
    assert_eq!(errcode(&v), 45009, "daily limit of forced refreshes");
    let (normal, _) = rig.stable(false).await;
    assert_eq!(normal, f2, "normal mode is unaffected");

    let stats = rig.emulator().stats(APPID);
    assert_eq!(stats.force_refresh_calls, CallCount { ok: 3, attempts: 4 });
    assert_eq!(stats.stable_tokens_issued, 3);
}

#[tokio::test]
async fn stable_and_classic_families_are_isolated() {
    let rig = start(EmulatorConfig {
        force_refresh_min_interval: Duration::ZERO,
        ..config()
    })
    .await;
    let (stable, _) = rig.stable(false).await;
    let classic = rig.token().await;
    for _ in 0..3 {
        rig.token().await;
    }
    assert_eq!(
        rig.use_token(&stable).await,
        0,
        "classic calls never kill stable"
    );
    let classic_now = rig.token().await;
    for _ in 0..3 {
        rig.stable(true).await;
    }
    assert_eq!(
        rig.use_token(&classic_now).await,
        0,
        "stable calls never kill classic"
    );
    assert_eq!(rig.use_token(&classic).await, 40001);
    assert_eq!(rig.use_token(&stable).await, 40001);
}

#[tokio::test]
async fn tickets() {
    let rig = start(EmulatorConfig {
        ticket_lifetime: Duration::from_secs(7000),
        ..config()
    })
    .await;
    let token = rig.token().await;
    let jsapi = rig
        .get(&format!(
            "/cgi-bin/ticket/getticket?access_token={token}&type=jsapi"
        ))
        .await;
    assert_eq!(jsapi["errcode"], 0);
    assert_eq!(jsapi["errmsg"], "ok");
    assert_eq!(jsapi["expires_in"], 7000);
    let ticket = jsapi["ticket"].as_str().unwrap();
    assert!(ticket.len() >= 80, "{ticket}");
    let again = rig
        .get(&format!(
            "/cgi-bin/ticket/getticket?access_token={token}&type=jsapi"
        ))
        .await;
    assert_ne!(
        again["ticket"], jsapi["ticket"],
        "each call issues a new ticket"
    );
    let card = rig
        .get(&format!(
            "/cgi-bin/ticket/getticket?access_token={token}&type=wx_card"
        ))
        .await;
    assert!(card["ticket"].is_string());

    for query in [
        format!("access_token={token}&type=nope"),
        format!("access_token={token}"),
    ] {
        let v = rig.get(&format!("/cgi-bin/ticket/getticket?{query}")).await;
        assert_eq!(
            v,
            json!({"errcode": 40097, "errmsg": "invalid args"}),
            "{query}"
        );
    }
    let v = rig.get("/cgi-bin/ticket/getticket?type=jsapi").await;
    assert_eq!(
        v,
        json!({"errcode": 41001, "errmsg": "access_token missing"})
    );

    let stats = rig.emulator().stats(APPID).ticket_calls;
    assert_eq!(stats.jsapi, CallCount { ok: 2, attempts: 2 });
    assert_eq!(stats.wx_card, CallCount { ok: 1, attempts: 1 });
    assert_eq!(stats.invalid_type, CallCount { ok: 0, attempts: 2 });
}

#[tokio::test]
async fn custom_messages_are_recorded() {
    let rig = start(config()).await;
    let token = rig.token().await;
    let path = format!("/cgi-bin/message/custom/send?access_token={token}");
    let message = json!({"touser":"OPENID","msgtype":"text","text":{"content":"你好 World"}});
    let v = rig.post(&path, message.to_string()).await;
    assert_eq!(v, json!({"errcode": 0, "errmsg": "ok"}));

    assert_eq!(errcode(&rig.post(&path, "").await), 44002);
    assert_eq!(errcode(&rig.post(&path, "not json").await), 47001);
    assert_eq!(
        errcode(&rig.post(&path, r#"{"touser":"OPENID"}"#).await),
        47001
    );
    assert_eq!(errcode(&rig.get(&path).await), 43002);
    assert_eq!(
        errcode(
            &rig.post(
                "/cgi-bin/message/custom/send?access_token=bogus",
                message.to_string()
            )
            .await
        ),
        40001
    );

    assert_eq!(rig.emulator().custom_messages(APPID), vec![message.clone()]);
    let listed = rig.get(&format!("/_emulator/messages?appid={APPID}")).await;
    assert_eq!(listed, json!([message]));
    assert_eq!(
        rig.emulator().stats(APPID).custom_send_calls,
        CallCount { ok: 1, attempts: 5 }
    );
}

#[tokio::test]
async fn faults_system_error_then_success() {
    let rig = start(config()).await;
    rig.emulator()
        .inject(Fault::system_error(Endpoint::Token).times(2));
    for _ in 0..2 {
        let v = rig.token_with(APPID, SECRET).await;
        assert_eq!(v, json!({"errcode": -1, "errmsg": "system error"}));
    }
    rig.token().await;
    assert_eq!(
        rig.emulator().stats(APPID).token_calls,
        CallCount { ok: 1, attempts: 3 }
    );
    assert!(rig.emulator().faults().is_empty(), "used up");

    // A fault aimed at one endpoint leaves the others alone.
    rig.emulator()
        .inject(Fault::errcode(Endpoint::StableToken, 45011, "minute quota"));
    rig.token().await;
    let v = rig
        .stable_with(json!({"grant_type":"client_credential","appid":APPID,"secret":SECRET}))
        .await;
    assert_eq!(errcode(&v), 45011);
    rig.emulator().clear_faults();
    rig.stable(false).await;
}

#[tokio::test]
async fn faults_garbage_status_and_delay() {
    let rig = start(config()).await;
    let token = rig.token().await;
    let api = format!("/cgi-bin/user/info?access_token={token}");

    rig.emulator()
        .inject(Fault::new(Endpoint::AnyApi, FaultKind::Garbage("<html>oops".into())).times(1));
    let resp = rig.http.get(rig.url(&api)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "<html>oops");

    rig.emulator()
        .inject(Fault::new(Endpoint::All, FaultKind::HttpStatus(502)).times(1));
    let resp = rig.http.get(rig.url(&api)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(resp.text().await.unwrap().contains("502 Bad Gateway"));

    rig.emulator().inject(
        Fault::new(
            Endpoint::Token,
            FaultKind::Delay(Duration::from_millis(300)),
        )
        .times(1),
    );
    let started = Instant::now();
    rig.token().await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    rig.token().await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "delay used up"
    );
}

#[tokio::test]
async fn generic_cgi_bin_paths_check_the_token() {
    let rig = start(config()).await;
    let token = rig.token().await;
    let v = rig
        .post(
            &format!("/cgi-bin/tags/create?access_token={token}"),
            r#"{"tag":{"name":"x"}}"#,
        )
        .await;
    assert_eq!(v, json!({"errcode": 0, "errmsg": "ok"}));
    // The menu interfaces are emulated for real: an empty menu is refused as WeChat does.
    let v = rig
        .post(
            &format!("/cgi-bin/menu/create?access_token={token}"),
            r#"{"button":[]}"#,
        )
        .await;
    assert_eq!(
        v,
        json!({"errcode": 40016, "errmsg": "invalid button size"})
    );
    assert_eq!(rig.use_token(&token).await, 0);
    let v = rig.get("/cgi-bin/user/info?openid=o1").await;
    assert_eq!(
        v,
        json!({"errcode": 41001, "errmsg": "access_token missing"})
    );
    assert_eq!(rig.use_token("never-issued").await, 40001);

    rig.token().await;
    rig.token().await;
    assert_eq!(rig.use_token(&token).await, 40001, "superseded twice");

    let fresh = rig.token().await;
    assert_eq!(rig.emulator().expire_all_tokens(APPID), 2);
    assert_eq!(rig.use_token(&fresh).await, 42001);
    assert_eq!(
        rig.emulator().stats(APPID).other_api_calls,
        CallCount { ok: 2, attempts: 5 },
        "calls with a missing or never-issued token belong to no app (the refused menu counts)"
    );

    let resp = rig.http.get(rig.url("/sns/oauth2")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn http_controls() {
    let rig = start(config().with_app("wx_other", "other-secret")).await;
    let summary = rig.get("/_emulator/").await;
    assert_eq!(summary["apps"], json!(["wx_emulator_test", "wx_other"]));
    assert_eq!(summary["token_lifetime_ms"], 7_200_000);
    assert!(!summary.to_string().contains(SECRET));

    // Faults over HTTP.
    let resp = rig
        .http
        .post(rig.url("/_emulator/faults"))
        .body(r#"{"endpoint":"token","errcode":-1,"times":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let listed: Value = resp.json().await.unwrap();
    assert_eq!(
        listed,
        json!({"faults": [{"endpoint":"token","errcode":-1,"errmsg":"system error","times":1}]})
    );
    assert_eq!(errcode(&rig.token_with(APPID, SECRET).await), -1);
    rig.post("/_emulator/faults", r#"{"delay_ms":5000}"#).await;
    let cleared: Value = rig
        .http
        .delete(rig.url("/_emulator/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared, json!({"cleared": 1}));
    assert_eq!(rig.get("/_emulator/faults").await, json!({"faults": []}));
    let resp = rig
        .http
        .post(rig.url("/_emulator/faults"))
        .body(r#"{"endpoint":"token","kind":"boom"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Stats, typed and untyped.
    let token = rig.token().await;
    let stats: AppStats = rig
        .http
        .get(rig.url(&format!("/_emulator/stats?appid={APPID}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, rig.emulator().stats(APPID));
    assert_eq!(stats.token_calls, CallCount { ok: 1, attempts: 2 });
    let all = rig.get("/_emulator/stats").await;
    assert_eq!(
        all["wx_other"]["token_calls"],
        json!({"ok": 0, "attempts": 0})
    );
    let resp = rig
        .http
        .get(rig.url("/_emulator/stats?appid=wxnope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Expire over HTTP.
    let v = rig
        .post(&format!("/_emulator/expire?appid={APPID}"), "")
        .await;
    assert_eq!(v, json!({"appid": APPID, "expired": 1}));
    assert_eq!(rig.use_token(&token).await, 42001);

    // Whitelist over HTTP.
    let resp = rig
        .http
        .put(rig.url(&format!("/_emulator/whitelist?appid={APPID}")))
        .body(r#"{"ips":["192.0.2.1"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(errcode(&rig.token_with(APPID, SECRET).await), 40164);
    rig.http
        .put(rig.url(&format!("/_emulator/whitelist?appid={APPID}")))
        .body(r#"{"ips":null}"#)
        .send()
        .await
        .unwrap();
    rig.token().await;

    // Messages of an app that received none.
    assert_eq!(
        rig.get("/_emulator/messages?appid=wx_other").await,
        json!([])
    );
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let rig = start(config()).await;
    rig.token().await;
    let url = rig.url("/cgi-bin/token");
    rig.handle.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(url).send().await.is_err());
}

#[tokio::test]
async fn run_serves_until_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wxmp::emulator::run(listener, config(), async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let v: Value = http
        .get(format!(
            "http://{addr}/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["access_token"].is_string(), "{v}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
}

/// `getcallbackip` and `get_api_domain_ip` answer an `ip_list` (SDKs read it), after the same
/// token check as every API; other paths are echoed, and `GET /_emulator/` says which is which.
#[tokio::test]
async fn address_lists_answer_for_real_and_the_summary_names_the_implemented_paths() {
    let rig = start(config()).await;
    let token = rig.token().await;
    for path in ["getcallbackip", "get_api_domain_ip"] {
        let v = rig
            .get(&format!("/cgi-bin/{path}?access_token={token}"))
            .await;
        assert_eq!(v, json!({"ip_list": ["127.0.0.1"]}), "{path}");
        let v = rig.get(&format!("/cgi-bin/{path}")).await;
        assert_eq!(v["errcode"], 41001, "{path} without a token: {v}");
        let v = rig
            .get(&format!("/cgi-bin/{path}?access_token=forged"))
            .await;
        assert_eq!(v["errcode"], 40001, "{path} with a forged token: {v}");
    }
    let echoed = rig
        .get(&format!(
            "/cgi-bin/user/info?openid=o1&access_token={token}"
        ))
        .await;
    assert_eq!(echoed, json!({"errcode": 0, "errmsg": "ok"}));
    let summary = rig.get("/_emulator/").await;
    let implemented: Vec<&str> = summary["implemented"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(implemented.contains(&"/cgi-bin/getcallbackip"), "{summary}");
    assert!(!implemented.contains(&"/cgi-bin/user/info"), "{summary}");
    assert!(summary["echoed"].as_str().unwrap().contains("errcode"));
}
