//! `/metrics` as Prometheus scrapes it, after real traffic: latency histograms of callbacks,
//! webhook calls and upstream calls; refreshes by reason; token errors and cooldowns by
//! errcode; dedup hits; and a store-health gauge that follows a real Redis going down and
//! coming back.

mod common;

use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use common::*;
use serde_json::json;
use tokio::net::TcpListener;
use wxmp::config::TokenApi;
use wxmp::emulator::{EmulatorConfig, Endpoint, Fault};
use wxmp::store::Store;
use wxmp_proto::signature::{signature, Token};

/// Posts a plaintext text message, signed with the app's Token, as WeChat would.
async fn push(base: &str, msg_id: u64, content: &str) -> reqwest::Response {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let nonce = format!("{msg_id}");
    let sig = signature(&Token::new("pamtest").unwrap(), &timestamp, &nonce);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oUser1]]></FromUserName>\
         <CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    );
    reqwest::Client::new()
        .post(format!(
            "{base}/wx/demo?signature={sig}&timestamp={timestamp}&nonce={nonce}"
        ))
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The value of the one sample whose line starts with `prefix` (labels included).
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_latencies_reasons_errcodes_and_dedup() {
    let emu = emulator(EmulatorConfig::default()).await;
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hook.local_addr().unwrap());
    tokio::spawn(async move {
        let router = Router::new().route(
            "/hook",
            post(|| async { Json(json!({"type": "text", "content": "from the hook"})) }),
        );
        axum::serve(hook, router).await.unwrap();
    });
    let mut demo = app(TokenApi::Stable);
    demo.forward = Some(hook_url.parse().unwrap());
    let instance = start(config(&emu.base_url(), vec![demo]), Store::memory()).await;
    let base = instance.url("");
    let api = client();

    // A token for an empty store, a webhook reply, the same push again, a proxied call.
    let token: serde_json::Value = api
        .get(instance.url("/v1/apps/demo/access_token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let first = push(&base, 7001, "hello").await.text().await.unwrap();
    assert!(first.contains("from the hook"), "{first}");
    let again = push(&base, 7001, "hello").await;
    assert_eq!(again.status(), 200);
    let proxied = api
        .get(instance.url("/v1/apps/demo/proxy/cgi-bin/user/info?openid=o1"))
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200);

    // WeChat refuses the next token call: the error and the cooldown carry its errcode.
    emu.emulator().inject(Fault::errcode(
        Endpoint::StableToken,
        40164,
        "invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist",
    ));
    let refused = api
        .post(instance.url("/v1/apps/demo/access_token/refresh"))
        .json(&json!({ "stale": token }))
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error() || refused.status().is_server_error());

    let m = instance.metrics().await;
    let has = |prefix: &str| {
        assert!(
            sample(&m, prefix).is_some_and(|v| v >= 1.0),
            "no sample {prefix} >= 1 in\n{m}"
        )
    };
    has("wxmp_callback_duration_seconds_count{app=\"demo\"}");
    has("wxmp_callback_duration_seconds_bucket{le=\"+Inf\",app=\"demo\"}");
    has("wxmp_webhook_duration_seconds_count{app=\"demo\",outcome=\"reply\"}");
    has("wxmp_upstream_duration_seconds_count{app=\"demo\",call=\"stable_token\"}");
    has("wxmp_upstream_duration_seconds_count{app=\"demo\",call=\"proxy\"}");
    has("wxmp_token_refreshes_total{app=\"demo\",kind=\"access_token\",reason=\"empty_store\"}");
    has("wxmp_token_errors_total{app=\"demo\",kind=\"access_token\",errcode=\"40164\"}");
    has("wxmp_token_cooldowns_total{app=\"demo\",kind=\"access_token\",errcode=\"40164\"}");
    has("wxmp_callback_dedup_hits_total{app=\"demo\"}");
    assert_eq!(sample(&m, "wxmp_store_up "), Some(1.0), "{m}");
    // The token itself is never a label or a value.
    assert!(!m.contains(&token));

    // On the main listener, /metrics needs the key.
    let anonymous = reqwest::get(instance.url("/metrics")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_up_follows_redis_down_and_back() {
    let mut redis = RedisServer::start();
    let emu = emulator(EmulatorConfig::default()).await;
    let store: Store = redis_store(&redis.url(), &unique_prefix()).await;
    let instance = start(config(&emu.base_url(), vec![app(TokenApi::Stable)]), store).await;
    let wait_for = |want: f64| {
        let instance = &instance;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let m = instance.metrics().await;
                if sample(&m, "wxmp_store_up ") == Some(want) {
                    return m;
                }
                assert!(
                    Instant::now() < deadline,
                    "wxmp_store_up never became {want}:\n{m}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    wait_for(1.0).await;
    redis.kill();
    let m = wait_for(0.0).await;
    assert!(
        sample(&m, "wxmp_store_errors_total{source=\"probe\"}").is_some_and(|v| v >= 1.0),
        "{m}"
    );
    redis.restart();
    wait_for(1.0).await;
}
