//! OAuth 网页授权 through wxmp, against the emulator: the browser flow step by step (each
//! redirect followed by hand, so every hop can be checked), the business endpoints, and every
//! bad input the flow meets — a forged or replayed state, a state from another browser, a
//! ticket used twice or expired, a return URL outside `oauth_domains`, a code WeChat refuses,
//! an upstream answering garbage.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use url::Url;
use wxmp::config::{AppConfig, Config, TokenApi};
use wxmp::emulator::oauth::{openid_of, unionid_of};
use wxmp::emulator::{EmulatorConfig, Endpoint, Fault, FaultKind};
use wxmp::store::Store;

const PUBLIC: &str = "https://wx.example.com";
const PAGE: &str = "https://shop.example.com/page?item=7";

fn oauth_config(upstream: &str) -> Config {
    let demo = AppConfig {
        oauth_domains: vec!["example.com".to_owned()],
        ..app(TokenApi::Stable)
    };
    let callback_only = AppConfig {
        name: "cbonly".into(),
        secret: None,
        oauth_domains: vec!["example.com".to_owned()],
        ..app(TokenApi::Stable)
    };
    let mut config = config(upstream, vec![demo, callback_only]);
    config.public_url = Some(Url::parse(PUBLIC).unwrap());
    config.open_platform = Url::parse(upstream).unwrap();
    config
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn query_of(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// One hop: status, Location, Set-Cookie, body.
struct Hop {
    status: u16,
    location: String,
    cookie: Option<String>,
    body: String,
}

async fn hop(url: &str, cookie: Option<&str>) -> Hop {
    let mut request = browser().get(url);
    if let Some(c) = cookie {
        request = request.header(COOKIE, c);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .map(|c| c.to_str().unwrap().to_owned());
    let body = r.text().await.unwrap();
    Hop {
        status,
        location,
        cookie,
        body,
    }
}

/// A started sign-in: WeChat's authorize URL and the browser's cookie.
struct Started {
    authorize: String,
    cookie: String,
}

async fn start_flow(running: &Instance, scope: &str) -> Started {
    let url = format!(
        "{}?return={}&scope={scope}",
        running.url("/oauth/demo"),
        urlencode(PAGE)
    );
    let h = hop(&url, None).await;
    assert_eq!(h.status, 302, "{}", h.body);
    let set = h.cookie.expect("a state cookie");
    for attr in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/oauth/demo",
        "Secure",
        "Max-Age=600",
    ] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    Started {
        authorize: h.location,
        cookie: set.split(';').next().unwrap().to_owned(),
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The emulated authorize page for `user`: the callback URL it redirects to, pointed at wxmp.
async fn consent(running: &Instance, authorize: &str, extra: &str) -> String {
    let (without_fragment, fragment) = authorize.split_once('#').unwrap();
    assert_eq!(fragment, "wechat_redirect");
    let h = hop(&format!("{without_fragment}{extra}"), None).await;
    assert_eq!(h.status, 302, "{}", h.body);
    let callback = h.location.clone();
    let prefix = format!("{PUBLIC}/oauth/demo/callback?");
    assert!(callback.starts_with(&prefix), "{callback}");
    running.url(&format!(
        "/oauth/demo/callback?{}",
        &callback[prefix.len()..]
    ))
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = client().post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_browser_flow_ends_in_a_single_use_ticket() {
    let emu = emulator(EmulatorConfig::default()).await;
    let running = start(oauth_config(&emu.base_url()), Store::memory()).await;

    let started = start_flow(&running, "snsapi_userinfo").await;
    let q = query_of(started.authorize.split('#').next().unwrap());
    assert!(started.authorize.starts_with(&format!(
        "{}/connect/oauth2/authorize?appid={APPID}&redirect_uri=",
        emu.base_url()
    )));
    assert_eq!(q["redirect_uri"], format!("{PUBLIC}/oauth/demo/callback"));
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["scope"], "snsapi_userinfo");
    assert_eq!(q["state"].len(), 32);
    assert!(!started.authorize.contains(SECRET));

    let callback = consent(&running, &started.authorize, "&wxmp_user=alice").await;
    let back = hop(&callback, Some(&started.cookie)).await;
    assert_eq!(back.status, 302, "{}", back.body);
    assert!(back.location.starts_with(PAGE), "{}", back.location);
    assert!(
        back.cookie.unwrap().contains("Max-Age=0"),
        "the state cookie is cleared"
    );
    let returned = query_of(&back.location);
    assert_eq!(returned["item"], "7", "the page's own query is kept");
    let ticket = returned["wxmp_ticket"].clone();

    let redeem = running.url("/v1/apps/demo/oauth/ticket");
    let (status, identity) = post(&redeem, json!({ "ticket": ticket })).await;
    assert_eq!(status, 200, "{identity}");
    assert_eq!(identity["openid"], openid_of(APPID, "alice"));
    assert_eq!(identity["scope"], "snsapi_userinfo");
    assert_eq!(identity["unionid"], unionid_of("alice"));
    assert_eq!(identity["userinfo"]["nickname"], "alice");
    let text = identity.to_string();
    assert!(
        !text.contains("access_token") && !text.contains("refresh_token"),
        "{text}"
    );

    // Single use.
    let (status, again) = post(&redeem, json!({ "ticket": ticket })).await;
    assert_eq!(status, 410, "{again}");
    assert_eq!(again["error"]["code"], "ticket_gone");
    // Another app's endpoint does not know it either.
    let stats = emu.emulator().oauth_stats();
    assert_eq!((stats.codes_exchanged, stats.userinfo_served), (1, 1));

    // snsapi_base with the default test user: no profile.
    let started = start_flow(&running, "snsapi_base").await;
    let callback = consent(&running, &started.authorize, "").await;
    let back = hop(&callback, Some(&started.cookie)).await;
    let ticket = query_of(&back.location)["wxmp_ticket"].clone();
    let (status, identity) = post(&redeem, json!({ "ticket": ticket })).await;
    assert_eq!(status, 200);
    assert_eq!(identity["openid"], openid_of(APPID, "demo-user"));
    assert!(identity.get("userinfo").is_none(), "{identity}");
}

#[tokio::test]
async fn forged_replayed_and_foreign_states_are_refused() {
    let emu = emulator(EmulatorConfig::default()).await;
    let running = start(oauth_config(&emu.base_url()), Store::memory()).await;
    let started = start_flow(&running, "snsapi_base").await;
    let callback = consent(&running, &started.authorize, "").await;

    // Login CSRF: the callback reaches a browser that did not start it.
    let h = hop(&callback, None).await;
    assert_eq!(h.status, 400);
    assert!(h.body.contains("not started in this browser"), "{}", h.body);
    let h = hop(&callback, Some("wxmp_oauth_x=y; other=1")).await;
    assert_eq!(h.status, 400);
    let state = query_of(&callback)["state"].clone();
    let wrong = format!("wxmp_oauth_{state}=not-the-binding");
    assert_eq!(hop(&callback, Some(&wrong)).await.status, 400);
    // The refused attempts did not spend the state: the right browser still gets through.
    let ok = hop(&callback, Some(&started.cookie)).await;
    assert_eq!(ok.status, 302, "{}", ok.body);
    // Replayed.
    let replay = hop(&callback, Some(&started.cookie)).await;
    assert_eq!(replay.status, 400);
    assert!(
        replay.body.contains("already completed") || replay.body.contains("unknown"),
        "{}",
        replay.body
    );
    // Forged or malformed.
    for q in [
        "code=x&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "code=x",
        "code=x&state=a%20b",
    ] {
        let h = hop(
            &running.url(&format!("/oauth/demo/callback?{q}")),
            Some(&started.cookie),
        )
        .await;
        assert_eq!(h.status, 400, "{q}: {}", h.body);
    }
    assert_eq!(
        emu.emulator().oauth_stats().code_exchanges,
        1,
        "no refused callback reached WeChat"
    );
}

#[tokio::test]
async fn return_urls_and_scopes_are_checked() {
    let emu = emulator(EmulatorConfig::default()).await;
    let running = start(oauth_config(&emu.base_url()), Store::memory()).await;
    for (query, status, needle) in [
        (
            format!("return={}", urlencode("https://evil.com/x")),
            400,
            "not under the app's oauth_domains",
        ),
        (
            format!("return={}", urlencode("https://example.com.evil.cn/")),
            400,
            "oauth_domains",
        ),
        (
            format!("return={}", urlencode("javascript:alert(1)")),
            400,
            "http(s)",
        ),
        ("return=not-a-url".to_owned(), 400, "not a full URL"),
        (String::new(), 400, "missing return"),
        (
            format!("return={}&scope=snsapi_login", urlencode(PAGE)),
            400,
            "snsapi_login",
        ),
    ] {
        let h = hop(&running.url(&format!("/oauth/demo?{query}")), None).await;
        assert_eq!(h.status, status, "{query}: {}", h.body);
        assert!(h.body.contains(needle), "{query}: {}", h.body);
        assert!(h.location.is_empty(), "no redirect for {query}");
    }
    let h = hop(
        &running.url(&format!("/oauth/nope?return={}", urlencode(PAGE))),
        None,
    )
    .await;
    assert_eq!(h.status, 404);
    let h = hop(
        &running.url(&format!("/oauth/cbonly?return={}", urlencode(PAGE))),
        None,
    )
    .await;
    assert_eq!(h.status, 409);
    assert!(h.body.contains("no secret"), "{}", h.body);

    // Without public_url the flow cannot start, and the config loader says so up front.
    let mut bare = oauth_config(&emu.base_url());
    bare.public_url = None;
    let other = start(bare, Store::memory()).await;
    let h = hop(
        &other.url(&format!("/oauth/demo?return={}", urlencode(PAGE))),
        None,
    )
    .await;
    assert_eq!(h.status, 409);
    assert!(h.body.contains("public_url"), "{}", h.body);
    let text = "[apps.a]\nappid = \"wx1\"\ntoken = \"abc\"\noauth_domains = [\"example.com\"]\n";
    let err = Config::parse(text, &HashMap::<String, String>::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("public_url is missing"), "{err}");
    let text = "public_url = \"https://wx.example.com/?x=1\"\n[apps.a]\nappid = \"wx1\"\ntoken = \"abc\"\noauth_domains = [\"http://example.com\"]\n";
    let err = Config::parse(text, &HashMap::<String, String>::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("public_url") && err.contains("oauth_domains"),
        "{err}"
    );
}

#[tokio::test]
async fn declined_and_refused_sign_ins_go_back_with_an_error() {
    let emu = emulator(EmulatorConfig::default()).await;
    let running = start(oauth_config(&emu.base_url()), Store::memory()).await;
    // The user declines on WeChat's page.
    let started = start_flow(&running, "snsapi_userinfo").await;
    let callback = consent(&running, &started.authorize, "&wxmp_consent=deny").await;
    let back = hop(&callback, Some(&started.cookie)).await;
    assert_eq!(back.status, 302);
    assert_eq!(query_of(&back.location)["wxmp_error"], "access_denied");
    // WeChat answers garbage at the code exchange.
    let started = start_flow(&running, "snsapi_base").await;
    let callback = consent(&running, &started.authorize, "").await;
    emu.emulator().inject(
        Fault::new(
            Endpoint::Sns,
            FaultKind::Garbage("<html>bad gateway</html>".into()),
        )
        .times(1),
    );
    let back = hop(&callback, Some(&started.cookie)).await;
    assert_eq!(back.status, 302);
    let returned = query_of(&back.location);
    assert_eq!(returned["wxmp_error"], "upstream_error");
    assert!(!returned.contains_key("wxmp_ticket"));
}

#[tokio::test]
async fn the_code_endpoint_exchanges_once_and_explains_refusals() {
    let emu = emulator(EmulatorConfig::default()).await;
    let running = start(oauth_config(&emu.base_url()), Store::memory()).await;
    // A page that runs its own redirect: wxmp builds the URL, WeChat hands the page a code.
    let (status, v) = {
        let r = client()
            .get(running.url(&format!(
                "/v1/apps/demo/oauth/authorize_url?redirect_uri={}&scope=snsapi_userinfo&state=abc123",
                urlencode("https://m.example.com/cb")
            )))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200, "{v}");
    let url = v["url"].as_str().unwrap();
    assert!(url.ends_with("&state=abc123#wechat_redirect"), "{url}");
    let h = hop(
        &format!("{}&wxmp_user=bob", url.split('#').next().unwrap()),
        None,
    )
    .await;
    assert!(
        h.location.starts_with("https://m.example.com/cb?code="),
        "{}",
        h.location
    );
    let code = query_of(&h.location)["code"].clone();

    let exchange = running.url("/v1/apps/demo/oauth/code");
    let (status, identity) = post(&exchange, json!({ "code": code })).await;
    assert_eq!(status, 200, "{identity}");
    assert_eq!(identity["openid"], openid_of(APPID, "bob"));
    assert_eq!(identity["userinfo"]["nickname"], "bob");
    for (body, status, needle) in [
        (json!({ "code": code }), 400, "already exchanged"),
        (
            json!({ "code": "forged-code" }),
            400,
            "does not know this code",
        ),
        (json!({ "code": "" }), 400, "code must be"),
        (json!({ "codes": "x" }), 400, "expected a JSON body"),
    ] {
        let (s, v) = post(&exchange, body.clone()).await;
        assert_eq!(s, status, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
        assert!(!msg.contains(SECRET));
    }
    // WeChat refusing the account, and WeChat answering garbage: clear 502s.
    emu.emulator()
        .inject(Fault::errcode(Endpoint::Sns, 48001, "api unauthorized").times(1));
    let (s, v) = post(&exchange, json!({ "code": "c" })).await;
    assert_eq!(s, 502, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("网页授权"),
        "{v}"
    );
    emu.emulator().inject(
        Fault::new(
            Endpoint::Sns,
            FaultKind::Garbage("<html>oops</html>".into()),
        )
        .times(1),
    );
    let (s, v) = post(&exchange, json!({ "code": "c" })).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"]["code"], "upstream_garbage");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("not JSON"),
        "{v}"
    );
    emu.emulator()
        .inject(Fault::new(Endpoint::Sns, FaultKind::HttpStatus(503)).times(1));
    let (s, v) = post(&exchange, json!({ "code": "c" })).await;
    assert_eq!(s, 502, "{v}");
    assert!(!v.to_string().contains(SECRET));

    // authorize_url refuses what WeChat would.
    for query in [
        format!("redirect_uri={}", urlencode("https://evil.com/cb")),
        format!(
            "redirect_uri={}&state=a-b",
            urlencode("https://m.example.com/cb")
        ),
        format!(
            "redirect_uri={}&scope=all",
            urlencode("https://m.example.com/cb")
        ),
        String::new(),
    ] {
        let r = client()
            .get(running.url(&format!("/v1/apps/demo/oauth/authorize_url?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
    }
    let (s, v) = post(
        &running.url("/v1/apps/cbonly/oauth/code"),
        json!({ "code": "c" }),
    )
    .await;
    assert_eq!(s, 409, "{v}");
}

#[tokio::test]
async fn an_expired_ticket_is_gone() {
    let emu = emulator(EmulatorConfig::default()).await;
    let store = Store::memory();
    let running = start(oauth_config(&emu.base_url()), store.clone()).await;
    // A ticket at the end of its 5 minutes (written as the callback writes it).
    let identity = json!({"openid": "o1", "scope": "snsapi_base"}).to_string();
    store
        .set(
            "oauth-ticket:demo:ExpiringTicket0",
            &identity,
            Some(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, v) = post(
        &running.url("/v1/apps/demo/oauth/ticket"),
        json!({ "ticket": "ExpiringTicket0" }),
    )
    .await;
    assert_eq!(status, 410, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
    for ticket in ["", "../../x", "never-issued"] {
        let (status, _) = post(
            &running.url("/v1/apps/demo/oauth/ticket"),
            json!({ "ticket": ticket }),
        )
        .await;
        assert_eq!(status, 410, "{ticket:?}");
    }
}
