//! Scoped clients (`[api.clients.NAME]`): a client's key reaches only its apps and endpoints,
//! its passive refreshes are capped per minute across instances, and `force_refresh` is counted
//! per app per day across instances and refused in plain words before WeChat refuses it.
//! Unscoped keys keep working as before.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};
use wxmp::config::{ApiClient, AppConfig, Capability, Config, Secret, TokenApi};
use wxmp::emulator::EmulatorConfig;
use wxmp::store::Store;

const SHOP_KEY: &str = "shop-key-0123456789abcdef";
const BURST_KEY: &str = "burst-key-0123456789abcdef";

fn with_clients(mut config: Config, clients: Vec<ApiClient>) -> Config {
    config.api_clients = clients.into_iter().map(Arc::new).collect();
    config
}

fn shop() -> ApiClient {
    ApiClient {
        apps: Some(BTreeSet::from(["demo".to_owned()])),
        allow: BTreeSet::from([Capability::Token, Capability::Jssdk]),
        ..ApiClient::new("shop", Secret::new(SHOP_KEY))
    }
}

fn other_app() -> AppConfig {
    AppConfig {
        name: "other".into(),
        ..app(TokenApi::Stable)
    }
}

async fn call(method: &str, url: &str, auth: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut r = match method {
        "POST" => http.post(url),
        _ => http.get(url),
    };
    if let Some(a) = auth {
        r = r.header("Authorization", a);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_client_reaches_only_its_apps_and_endpoints() {
    let emu = emulator(EmulatorConfig::default()).await;
    let config = with_clients(
        config(&emu.base_url(), vec![app(TokenApi::Stable), other_app()]),
        vec![shop()],
    );
    let running = start(config, Store::memory()).await;
    let shop = format!("bearer {SHOP_KEY}");
    let shop = Some(shop.as_str());

    let (status, v) = call(
        "GET",
        &running.url("/v1/apps/demo/access_token"),
        shop,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        "GET",
        &running.url("/v1/apps/other/access_token"),
        shop,
        None,
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("may not use app \"other\""), "{msg}");
    let refused = [
        ("POST", "/v1/apps/demo/access_token/refresh", "refresh"),
        ("GET", "/v1/apps/demo/tickets/jsapi", "tickets"),
        ("GET", "/v1/apps/demo/proxy/cgi-bin/user/info", "proxy"),
    ];
    for (method, path, cap) in refused {
        let (status, v) = call(
            method,
            &running.url(path),
            shop,
            Some(json!({"stale": "x"})),
        )
        .await;
        assert_eq!(status, 403, "{path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&format!("add \"{cap}\"")), "{msg}");
    }
    let (status, v) = call(
        "POST",
        &running.url("/v1/apps/demo/jssdk/config"),
        shop,
        Some(json!({"url": "https://example.com/p"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // The app list shows only the client's apps; its audit is readable.
    let (status, v) = call("GET", &running.url("/v1/apps"), shop, None).await;
    assert_eq!(status, 200);
    let listed: Vec<&String> = v["apps"].as_object().unwrap().keys().collect();
    assert_eq!(listed, ["demo"]);
    let (status, _) = call("GET", &running.url("/v1/apps/demo/refreshes"), shop, None).await;
    assert_eq!(status, 200);
    let (status, _) = call("GET", &running.url("/v1/apps/other/refreshes"), shop, None).await;
    assert_eq!(status, 403);

    // Unscoped keys keep every app and endpoint; the scheme is case-insensitive.
    for scheme in ["Bearer", "BEARER"] {
        let auth = format!("{scheme} {API_KEY}");
        let (status, v) = call(
            "GET",
            &running.url("/v1/apps/other/access_token"),
            Some(&auth),
            None,
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
    let (_, v) = call(
        "GET",
        &running.url("/v1/apps"),
        Some(&format!("Bearer {API_KEY}")),
        None,
    )
    .await;
    assert_eq!(v["apps"].as_object().unwrap().len(), 2);
    // Wrong keys and schemes are 401 whatever the path.
    for auth in [
        format!("Basic {SHOP_KEY}"),
        format!("Bearer {SHOP_KEY}x"),
        "Bearer".to_owned(),
    ] {
        let (status, _) = call(
            "GET",
            &running.url("/v1/apps/demo/access_token"),
            Some(&auth),
            None,
        )
        .await;
        assert_eq!(status, 401, "{auth}");
    }
}

/// The refresh endpoint answered `{status, body}`; the current token stays usable.
async fn report_current(running: &Instance, auth: &str) -> (u16, Value) {
    let (_, token) = call(
        "GET",
        &running.url("/v1/apps/demo/access_token"),
        Some(auth),
        None,
    )
    .await;
    let stale = token["access_token"].as_str().unwrap().to_owned();
    let (status, v) = call(
        "POST",
        &running.url("/v1/apps/demo/access_token/refresh"),
        Some(auth),
        Some(json!({ "stale": stale })),
    )
    .await;
    if status == 429 {
        let (_, now) = call(
            "GET",
            &running.url("/v1/apps/demo/access_token"),
            Some(auth),
            None,
        )
        .await;
        assert_eq!(
            now["access_token"],
            stale.as_str(),
            "a refused refresh leaves the token alone"
        );
    }
    (status, v)
}

#[tokio::test]
async fn a_client_at_its_limit_causes_no_more_refreshes() {
    let emu = emulator(EmulatorConfig::default()).await;
    let burst = ApiClient {
        refresh_per_minute: 6,
        ..ApiClient::new("burst", Secret::new(BURST_KEY))
    };
    let store = Store::memory();
    let config = with_clients(
        config(&emu.base_url(), vec![app(TokenApi::Classic)]),
        vec![burst],
    );
    // Two instances on one store: the budget is the client's, wherever it calls.
    let a = start(config.clone(), store.clone()).await;
    let b = start(config, store).await;
    let calls = || emu.emulator().stats(APPID).token_calls.attempts;

    // Before: an unscoped key reporting the current token 30 times causes 30 upstream calls.
    let key = format!("Bearer {API_KEY}");
    let (status, _) = call(
        "GET",
        &a.url("/v1/apps/demo/access_token"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200, "the first token is fetched before counting");
    let start_calls = calls();
    for i in 0..30 {
        let (status, v) = report_current(if i % 2 == 0 { &a } else { &b }, &key).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["refreshed"], true);
    }
    let unscoped = calls() - start_calls;
    assert_eq!(unscoped, 30);

    // After: a client with refresh_per_minute = 6 causes 6; the other 24 get 429.
    let auth = format!("Bearer {BURST_KEY}");
    let start_calls = calls();
    let mut refused = 0;
    for i in 0..30 {
        let (status, v) = report_current(if i % 2 == 0 { &a } else { &b }, &auth).await;
        match status {
            200 => assert_eq!(v["refreshed"], true),
            429 => {
                refused += 1;
                assert_eq!(v["error"]["code"], "refresh_rate_limited");
                let msg = v["error"]["message"].as_str().unwrap();
                assert!(msg.contains("refresh_per_minute"), "{msg}");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    let scoped = calls() - start_calls;
    println!(
        "30 stale-token reports: unscoped key → {unscoped} upstream token calls; \
         client with refresh_per_minute=6 → {scoped} upstream calls, {refused} refused (429)"
    );
    assert_eq!(scoped, 6);
    assert_eq!(refused, 24);
    // The audit names the client, refusals included, the same on both instances.
    let (_, audit_a) = call("GET", &a.url("/v1/apps/demo/refreshes"), Some(&key), None).await;
    let (_, audit_b) = call("GET", &b.url("/v1/apps/demo/refreshes"), Some(&key), None).await;
    assert_eq!(audit_a, audit_b);
    let records = audit_a["refreshes"].as_array().unwrap();
    let by_burst: Vec<&Value> = records.iter().filter(|r| r["by"] == "burst").collect();
    assert_eq!(by_burst.len(), 30);
    let refused_records = by_burst
        .iter()
        .filter(|r| r["result"].as_str().unwrap().starts_with("refused:"))
        .count();
    assert_eq!(refused_records, 24);
    assert!(records.iter().any(|r| r["by"] == "key"));
}

#[tokio::test]
async fn force_refresh_is_counted_per_day_across_instances_and_refused_before_wechat() {
    let emu = emulator(EmulatorConfig::default()).await;
    let store = Store::memory();
    let a = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable)]),
        store.clone(),
    )
    .await;
    let b = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable)]),
        store.clone(),
    )
    .await;
    let key = format!("Bearer {API_KEY}");
    let forced = || emu.emulator().stats(APPID).force_refresh_calls.attempts;

    // A stable token reported stale comes back unchanged in normal mode: one force_refresh.
    let (status, v) = report_current(&a, &key).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(forced(), 1);
    let (_, apps) = call("GET", &b.url("/v1/apps"), Some(&key), None).await;
    assert_eq!(
        apps["apps"]["demo"]["force_refreshes_today"], 1,
        "seen by the other instance"
    );

    // Other instances used the rest of today's 20 (WeChat's day starts at midnight Beijing
    // time): the store holds one claimed slot per use.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let day = (now_ms + 8 * 3_600_000) / 86_400_000;
    for n in 1..20 {
        let slot = format!("force-day:demo:{day}:{n}");
        assert!(store
            .set_nx(&slot, "elsewhere", std::time::Duration::from_secs(3600))
            .await
            .unwrap());
    }
    let (_, apps) = call("GET", &a.url("/v1/apps"), Some(&key), None).await;
    assert_eq!(apps["apps"]["demo"]["force_refreshes_today"], 20);

    // The 21st is refused by wxmp, in plain words, without a call WeChat would answer 45009.
    let before = forced();
    let (status, v) = report_current(&b, &key).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "force_refresh_exhausted");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("20 force_refresh calls"), "{msg}");
    assert_eq!(forced(), before, "WeChat was not asked");
    println!("force_refresh: 1 made, 19 counted elsewhere, 21st refused by wxmp; WeChat saw {} forced calls", forced());
    let (_, audit) = call("GET", &a.url("/v1/apps/demo/refreshes"), Some(&key), None).await;
    let newest = &audit["refreshes"][0];
    assert!(
        newest["result"].as_str().unwrap().contains("force_refresh"),
        "{newest}"
    );
}

#[test]
fn clients_are_parsed_and_checked() {
    let env: std::collections::HashMap<String, String> =
        [("SHOP_KEY".to_owned(), SHOP_KEY.to_owned())].into();
    let base = "[apps.demo]\nappid = \"wx1\"\ntoken = \"abc\"\n";
    let ok = format!(
        "[api]\nkeys = [\"{API_KEY}\"]\n[api.clients.shop]\nkey = \"$SHOP_KEY\"\napps = [\"demo\"]\n\
         allow = [\"token\", \"oauth\"]\nrefresh_per_minute = 2\n[api.clients.all]\nkey = \"{BURST_KEY}\"\n{base}"
    );
    let config = Config::parse(&ok, &env).unwrap();
    let shop = config
        .api_clients
        .iter()
        .find(|c| c.name == "shop")
        .unwrap();
    assert_eq!(shop.key.expose(), SHOP_KEY);
    assert_eq!(shop.refresh_per_minute, 2);
    assert_eq!(
        shop.allow,
        BTreeSet::from([Capability::Token, Capability::Oauth])
    );
    let all = config.api_clients.iter().find(|c| c.name == "all").unwrap();
    assert!(all.apps.is_none() && all.allow.len() == 6 && all.refresh_per_minute == 6);
    assert!(!format!("{config:?}").contains(SHOP_KEY));

    let bad = format!(
        "[api]\nkeys = [\"{SHOP_KEY}\"]\n[api.clients.shop]\nkey = \"$SHOP_KEY\"\napps = [\"nope\"]\n\
         allow = [\"tokens\"]\nrefresh_per_minute = 100000\n[api.clients.tiny]\nkey = \"short\"\n{base}"
    );
    let err = Config::parse(&bad, &env).unwrap_err().to_string();
    for needle in [
        "same key as api.keys[0]",
        "\"nope\", which is not a configured app",
        "\"tokens\", which is not one of token, refresh, tickets, jssdk, proxy, oauth",
        "refresh_per_minute = 100000",
        "api.clients.tiny.key is shorter than 16",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let typo = format!("[api.clients.x]\nkey = \"{SHOP_KEY}\"\nallowed = []\n{base}");
    let err = Config::parse(&typo, &env).unwrap_err().to_string();
    assert!(err.contains("allowed"), "{err}");
}
