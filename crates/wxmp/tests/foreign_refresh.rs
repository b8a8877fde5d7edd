//! Someone else holding the AppSecret refreshes (the emulator's `/_emulator/revoke`): wxmp
//! recovers and says so — a WARN, `wxmp_foreign_refresh_total{app}`, `foreign_refreshes` and
//! `last_foreign_refresh` in `/v1/apps`, one `[ops] alert_webhook` POST — and the refresh
//! audit (`/v1/apps/{app}/refreshes`) shows the same story on every instance.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use serde_json::Value;
use tokio::net::TcpListener;
use url::Url;
use wxmp::config::TokenApi;
use wxmp::emulator::EmulatorConfig;
use wxmp::store::Store;

/// An alert webhook that records what it receives. `/redirect` answers 307 to `/alerts`.
#[derive(Clone, Default)]
struct Alerts(Arc<Mutex<Vec<(String, Value)>>>);

impl Alerts {
    async fn serve(&self) -> String {
        let record = |path: &'static str, alerts: Alerts| {
            move |Json(v): Json<Value>| async move {
                alerts.0.lock().unwrap().push((path.to_owned(), v));
                StatusCode::NO_CONTENT
            }
        };
        let router = Router::new()
            .route("/alerts", post(record("/alerts", self.clone())))
            .route(
                "/redirect",
                post(|| async { Redirect::temporary("/alerts").into_response() }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    fn received(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().clone()
    }
}

async fn get(url: &str) -> (u16, Value) {
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn foreign_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("wxmp_foreign_refresh_total{app=\"demo\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_refresh_is_detected_reported_and_audited() {
    for api in [TokenApi::Classic, TokenApi::Stable] {
        let emu = emulator(EmulatorConfig::default()).await;
        let alerts = Alerts::default();
        let hook = alerts.serve().await;
        let mut config = config(&emu.base_url(), vec![app(api)]);
        config.ops.alert_webhook = Some(Url::parse(&format!("{hook}/alerts")).unwrap());
        let store = Store::memory();
        let a = start(config.clone(), store.clone()).await;
        let b = start(config, store).await;

        let (status, first) = get(&a.url("/v1/apps/demo/access_token")).await;
        assert_eq!(status, 200, "{first}");
        let proxied = a.url("/v1/apps/demo/proxy/cgi-bin/user/info?openid=oUser");
        let (status, v) = get(&proxied).await;
        assert_eq!((status, v["errcode"].as_i64()), (200, Some(0)), "{v}");
        assert_eq!(foreign_total(&a.metrics().await), 0, "no false alarm");

        // Another party refreshes with the same AppSecret; the next call notices.
        let revoked_at = Instant::now();
        assert!(emu.emulator().revoke_tokens(APPID) >= 1);
        let (status, v) = get(&proxied).await;
        assert_eq!(
            (status, v["errcode"].as_i64()),
            (200, Some(0)),
            "recovered: {v}"
        );
        assert!(foreign_total(&a.metrics().await) >= 1);
        let latency = revoked_at.elapsed();
        println!(
            "{api:?}: foreign refresh detected {latency:?} after the revoke (first call after it)"
        );

        // Every instance reports it, from the store.
        for i in [&a, &b] {
            let (_, apps) = get(&i.url("/v1/apps")).await;
            let demo = &apps["apps"]["demo"];
            assert_eq!(demo["foreign_refreshes"], 1, "{demo}");
            assert!(demo["last_foreign_refresh"]
                .as_str()
                .unwrap()
                .ends_with('Z'));
            // And the /status page of every instance, for the operator.
            let page = client()
                .get(i.url("/status"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                page.contains("<dt>Foreign refreshes</dt><dd class=\"err\">1 "),
                "foreign refreshes missing from /status"
            );
        }
        assert!(
            eventually(Duration::from_secs(10), || !alerts.received().is_empty()).await,
            "alert delivered"
        );
        let (path, alert) = alerts.received()[0].clone();
        assert_eq!(path, "/alerts");
        assert_eq!(alert["event"], "foreign_refresh");
        assert_eq!(alert["app"], "demo");
        assert_eq!(alert["appid"], APPID);
        assert!(!alert.to_string().contains(SECRET));

        // The audit, newest first and the same on both instances.
        let (_, audit_a) = get(&a.url("/v1/apps/demo/refreshes")).await;
        let (_, audit_b) = get(&b.url("/v1/apps/demo/refreshes")).await;
        assert_eq!(audit_a, audit_b);
        let records = audit_a["refreshes"].as_array().unwrap();
        let at: Vec<&str> = records.iter().map(|r| r["at"].as_str().unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] >= w[1]), "newest first: {at:?}");
        let newest = records
            .iter()
            .find(|r| r["kind"] == "access_token")
            .unwrap();
        assert_eq!(newest["reason"], "foreign_suspected", "{records:?}");
        assert_eq!(newest["by"], "key");
        assert_eq!(newest["result"], "ok");
        let oldest = records.last().unwrap();
        assert_eq!(oldest["reason"], "empty_store");
        assert_eq!(oldest["by"], "wxmp");

        // A second rejection wave in the same minutes: counted, but one alert per app.
        emu.emulator().revoke_tokens(APPID);
        let (status, _) = get(&proxied).await;
        assert_eq!(status, 200);
        let (_, apps) = get(&b.url("/v1/apps")).await;
        assert_eq!(apps["apps"]["demo"]["foreign_refreshes"], 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(alerts.received().len(), 1, "alerts are spaced");
    }
}

#[tokio::test]
async fn a_token_wxmp_replaced_itself_is_no_foreign_refresh() {
    // Six-second tokens: the refresher replaces each about a second before it expires.
    let emu = emulator(EmulatorConfig {
        token_lifetime: Duration::from_secs(6),
        ..EmulatorConfig::default()
    })
    .await;
    let running = start(
        config(&emu.base_url(), vec![app(TokenApi::Classic)]),
        Store::memory(),
    )
    .await;
    let (_, first) = get(&running.url("/v1/apps/demo/access_token")).await;
    let old = first["access_token"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, now) = get(&running.url("/v1/apps/demo/access_token")).await;
        if now["access_token"] != old.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refresher never replaced the token"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Once it expires at WeChat, a business server reports the old token: it was replaced by
    // wxmp itself, so this costs nothing and alarms nobody.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_ne!(
        use_token(&emu.base_url(), &old).await,
        0,
        "expired at WeChat"
    );
    let r = client()
        .post(running.url("/v1/apps/demo/access_token/refresh"))
        .json(&serde_json::json!({ "stale": old }))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["refreshed"], false, "{v}");
    let (_, apps) = get(&running.url("/v1/apps")).await;
    let demo = &apps["apps"]["demo"];
    assert_eq!(demo["foreign_refreshes"], 0, "{demo}");
    assert_eq!(foreign_total(&running.metrics().await), 0);
    let (_, audit) = get(&running.url("/v1/apps/demo/refreshes")).await;
    let reasons: Vec<&str> = audit["refreshes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"proactive"), "{reasons:?}");
    assert!(!reasons.contains(&"foreign_suspected"), "{reasons:?}");
}

#[tokio::test]
async fn the_alert_webhook_follows_no_redirect() {
    let emu = emulator(EmulatorConfig::default()).await;
    let alerts = Alerts::default();
    let hook = alerts.serve().await;
    let mut config = config(&emu.base_url(), vec![app(TokenApi::Classic)]);
    config.ops.alert_webhook = Some(Url::parse(&format!("{hook}/redirect")).unwrap());
    let running = start(config, Store::memory()).await;
    get(&running.url("/v1/apps/demo/access_token")).await;
    emu.emulator().revoke_tokens(APPID);
    let (status, _) = get(&running.url("/v1/apps/demo/proxy/cgi-bin/user/info?openid=o")).await;
    assert_eq!(status, 200);
    assert!(foreign_total(&running.metrics().await) >= 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        alerts.received().is_empty(),
        "the redirect was not followed"
    );
}
