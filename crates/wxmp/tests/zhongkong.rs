//! The 中控 end to end: real HTTP, the emulator as WeChat, the real Redis and SQLite.
//!
//! Each test states one promise of the 中控 (docs/token-core.md) and checks it by
//! counting what reached the emulator.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use wxmp::config::TokenApi;
use wxmp::emulator::{EmulatorConfig, Endpoint, Fault};
use wxmp::store::Store;

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn refresh(client: &reqwest::Client, url: &str, stale: &str) -> (u16, Value) {
    let r = client
        .post(url)
        .json(&json!({ "stale": stale }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn token_calls(emu: &wxmp::emulator::EmulatorHandle) -> u64 {
    let s = emu.emulator().stats(APPID);
    s.token_calls.attempts + s.stable_token_calls.attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_storm_over_three_instances_makes_one_upstream_call() {
    let emu = emulator(EmulatorConfig::default()).await;
    let prefix = unique_prefix();
    let mut instances = Vec::new();
    for _ in 0..3 {
        let store = redis_store(&redis_url(), &prefix).await;
        instances.push(start(config(&emu.base_url(), vec![app(TokenApi::Classic)]), store).await);
    }
    let client = client();
    // The first token: one fetch, however the instances start.
    let (status, first) = get_json(&client, &instances[0].url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200, "{first}");
    let stale = first["access_token"].as_str().unwrap().to_owned();
    for i in &instances[1..] {
        let (_, v) = get_json(&client, &i.url("/v1/apps/demo/access_token")).await;
        assert_eq!(
            v["access_token"],
            stale.as_str(),
            "all instances share the stored token"
        );
    }
    let before = token_calls(&emu);
    assert_eq!(before, 1);

    // 510 business servers report the token stale at once, spread over the instances.
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..510 {
        let url = instances[n % 3].url("/v1/apps/demo/access_token/refresh");
        let (client, stale) = (client.clone(), stale.clone());
        calls.spawn(async move { refresh(&client, &url, &stale).await });
    }
    let mut tokens = std::collections::HashSet::new();
    let mut refreshed = 0;
    while let Some(result) = calls.join_next().await {
        let (status, body) = result.unwrap();
        assert_eq!(status, 200, "{body}");
        // Reports that arrive after the crowd's refresh finished are late reports.
        refreshed += usize::from(body["refreshed"] == true);
        tokens.insert(body["access_token"].as_str().unwrap().to_owned());
    }
    assert!(refreshed >= 1);
    assert_eq!(
        token_calls(&emu) - before,
        1,
        "exactly one upstream token call"
    );
    assert_eq!(tokens.len(), 1, "every caller got the same new token");
    assert!(!tokens.contains(&stale));
    let new = tokens.into_iter().next().unwrap();
    assert_eq!(use_token(&emu.base_url(), &new).await, 0);

    // A late report of the old token changes nothing.
    let (_, late) = refresh(
        &client,
        &instances[2].url("/v1/apps/demo/access_token/refresh"),
        &stale,
    )
    .await;
    assert_eq!(late["access_token"], new.as_str());
    assert_eq!(late["refreshed"], false);
    assert_eq!(token_calls(&emu) - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_sqlite_serves_the_stored_token_without_upstream_calls() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/folder/wxmp.db");
    let client = client();

    let store = Store::Sqlite(wxmp::store::SqliteStore::open(&path).await.unwrap());
    let first = start(config(&emu.base_url(), vec![app(TokenApi::Classic)]), store).await;
    let (status, before) = get_json(&client, &first.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200, "{before}");
    first.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls = token_calls(&emu);
    assert_eq!(calls, 1);

    let store = Store::Sqlite(wxmp::store::SqliteStore::open(&path).await.unwrap());
    let second = start(config(&emu.base_url(), vec![app(TokenApi::Classic)]), store).await;
    let (status, after) = get_json(&client, &second.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200);
    assert_eq!(after["access_token"], before["access_token"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(token_calls(&emu), calls, "a restart costs no quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lock_holder_is_taken_over_within_the_lease() {
    let emu = emulator(EmulatorConfig::default()).await;
    let prefix = unique_prefix();
    let client = client();
    let store = redis_store(&redis_url(), &prefix).await;
    let survivor = start(
        config(&emu.base_url(), vec![app(TokenApi::Classic)]),
        store.clone(),
    )
    .await;
    let (_, first) = get_json(&client, &survivor.url("/v1/apps/demo/access_token")).await;
    let stale = first["access_token"].as_str().unwrap().to_owned();

    // Another instance took the refresh lock and was killed -9: its lease is all that is left.
    // (The survivor's boot refresh may release its own lock a moment after serving the token.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while !store
        .set_nx(
            "lock:demo:access_token",
            "killed-instance",
            wxmp::token::LOCK_LEASE,
        )
        .await
        .unwrap()
    {
        assert!(Instant::now() < deadline, "the boot refresh kept its lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let (status, body) = refresh(
        &client,
        &survivor.url("/v1/apps/demo/access_token/refresh"),
        &stale,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refreshed"], true);
    assert!(took <= Duration::from_secs(15), "took over in {took:?}");
    assert!(
        took >= Duration::from_secs(8),
        "must wait for the lease, not steal it ({took:?})"
    );
    assert_eq!(token_calls(&emu), 2);
}

/// Hammers an instance with token GETs for `for_how_long`, using every token at once
/// against the emulator: none may be dead.
async fn no_dead_tokens(api: TokenApi, for_how_long: Duration) {
    let emu = emulator(EmulatorConfig {
        token_lifetime: Duration::from_secs(6),
        overlap: Duration::from_secs(2),
        ..EmulatorConfig::default()
    })
    .await;
    let instance = start(config(&emu.base_url(), vec![app(api)]), Store::memory()).await;
    let client = client();
    let deadline = Instant::now() + for_how_long;
    let mut checked = 0;
    let mut distinct = std::collections::HashSet::new();
    while Instant::now() < deadline {
        let (status, v) = get_json(&client, &instance.url("/v1/apps/demo/access_token")).await;
        assert_eq!(status, 200, "{v}");
        let token = v["access_token"].as_str().unwrap();
        assert_eq!(
            use_token(&emu.base_url(), token).await,
            0,
            "handed out a dead token after {checked} checks"
        );
        distinct.insert(token.to_owned());
        checked += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        distinct.len() >= 3,
        "tokens were refreshed proactively ({} seen)",
        distinct.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_classic_tokens_are_never_handed_out_dead() {
    no_dead_tokens(TokenApi::Classic, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_stable_tokens_are_never_handed_out_dead() {
    no_dead_tokens(TokenApi::Stable, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_upstream_is_retried_boundedly_and_the_valid_token_stays_served() {
    let emu = emulator(EmulatorConfig::default()).await;
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Classic)]),
        Store::memory(),
    )
    .await;
    let client = client();
    let (_, first) = get_json(&client, &instance.url("/v1/apps/demo/access_token")).await;
    let stale = first["access_token"].as_str().unwrap().to_owned();

    emu.emulator().inject(Fault::system_error(Endpoint::Token));
    let before = token_calls(&emu);
    let started = Instant::now();
    let (status, body) = refresh(
        &client,
        &instance.url("/v1/apps/demo/access_token/refresh"),
        &stale,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded: {:?}",
        started.elapsed()
    );
    let attempts = token_calls(&emu) - before;
    assert!(
        (2..=12).contains(&attempts),
        "retried with backoff, not forever: {attempts}"
    );

    // The still-valid token keeps being served meanwhile.
    let (status, served) = get_json(&client, &instance.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200);
    assert_eq!(served["access_token"], stale.as_str());

    // The upstream recovers: a refresh succeeds again well within 15 seconds.
    emu.emulator().clear_faults();
    let recovered = Instant::now();
    loop {
        let (status, body) = refresh(
            &client,
            &instance.url("/v1/apps/demo/access_token/refresh"),
            &stale,
        )
        .await;
        if status == 200 {
            assert_eq!(body["refreshed"], true);
            break;
        }
        assert!(
            recovered.elapsed() < Duration::from_secs(15),
            "did not recover: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_whitelist_refusal_names_the_ip_and_is_not_retried() {
    let emu = emulator(EmulatorConfig::default()).await;
    emu.emulator()
        .set_ip_whitelist(APPID, Some(vec!["10.1.2.3".parse().unwrap()]));
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable)]),
        Store::memory(),
    )
    .await;
    let client = client();
    let (status, body) = get_json(&client, &instance.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_refused");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("127.0.0.1") && message.contains("IP"),
        "{message}"
    );
    assert!(!message.contains(SECRET));
    let attempts = token_calls(&emu);
    for _ in 0..20 {
        let (status, _) = get_json(&client, &instance.url("/v1/apps/demo/access_token")).await;
        assert_eq!(status, 502);
    }
    assert_eq!(
        token_calls(&emu),
        attempts,
        "no upstream call during the cooldown"
    );
    let (_, apps) = get_json(&client, &instance.url("/v1/apps")).await;
    let last_error = apps["apps"]["demo"]["credentials"]["access_token"]["last_error"]
        .as_str()
        .unwrap();
    assert!(last_error.contains("127.0.0.1"), "{apps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_quota_exhaustion_is_explained_and_the_token_kept() {
    let emu = emulator(EmulatorConfig {
        daily_token_quota: 1,
        ..EmulatorConfig::default()
    })
    .await;
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Classic)]),
        Store::memory(),
    )
    .await;
    let client = client();
    let (_, first) = get_json(&client, &instance.url("/v1/apps/demo/access_token")).await;
    let stale = first["access_token"].as_str().unwrap();
    let (status, body) = refresh(
        &client,
        &instance.url("/v1/apps/demo/access_token/refresh"),
        stale,
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("45009"),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("quota"),
        "{body}"
    );
    let (status, served) = get_json(&client, &instance.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200);
    assert_eq!(served["access_token"], stale);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_keeps_the_valid_token_served() {
    let redis = RedisServer::start();
    let emu = emulator(EmulatorConfig::default()).await;
    let store = redis_store(&redis.url(), &unique_prefix()).await;
    let instance = start(config(&emu.base_url(), vec![app(TokenApi::Classic)]), store).await;
    let client = client();
    let (_, first) = get_json(&client, &instance.url("/v1/apps/demo/access_token")).await;
    let token = first["access_token"].as_str().unwrap().to_owned();

    drop(redis);
    let (status, served) = get_json(&client, &instance.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200, "{served}");
    assert_eq!(served["access_token"], token.as_str());
    let started = Instant::now();
    let (status, body) = refresh(
        &client,
        &instance.url("/v1/apps/demo/access_token/refresh"),
        &token,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "no hang: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_and_jssdk_config() {
    let emu = emulator(EmulatorConfig::default()).await;
    let mut callback_only = app(TokenApi::Stable);
    callback_only.name = "cbonly".to_owned();
    callback_only.secret = None;
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable), callback_only]),
        Store::memory(),
    )
    .await;
    let client = client();
    let (status, jsapi) = get_json(&client, &instance.url("/v1/apps/demo/tickets/jsapi")).await;
    assert_eq!(status, 200, "{jsapi}");
    let (status, again) = get_json(&client, &instance.url("/v1/apps/demo/tickets/jsapi")).await;
    assert_eq!(status, 200);
    assert_eq!(jsapi["ticket"], again["ticket"], "tickets are cached");
    assert_eq!(emu.emulator().stats(APPID).ticket_calls.jsapi.attempts, 1);
    let (status, card) = get_json(&client, &instance.url("/v1/apps/demo/tickets/wx_card")).await;
    assert_eq!(status, 200, "{card}");
    let (status, _) = get_json(&client, &instance.url("/v1/apps/demo/tickets/other")).await;
    assert_eq!(status, 400);

    let page = "https://m.example.com/shop?id=1#/cart";
    let r = client
        .post(instance.url("/v1/apps/demo/jssdk/config"))
        .json(&json!({ "url": page }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cfg: Value = r.json().await.unwrap();
    assert_eq!(cfg["appId"], APPID);
    let expected = wxmp_proto::jssdk::jsapi_signature(
        jsapi["ticket"].as_str().unwrap(),
        cfg["nonceStr"].as_str().unwrap(),
        &cfg["timestamp"].to_string(),
        "https://m.example.com/shop?id=1",
    );
    assert_eq!(cfg["signature"], expected.as_str());

    let r = client
        .post(instance.url("/v1/apps/demo/jssdk/config"))
        .json(&json!({ "url": "https://evil.example.org/page" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "js_domain_not_allowed");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("evil.example.org"));

    let (status, body) = get_json(&client, &instance.url("/v1/apps/cbonly/access_token")).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_unknown_apps_and_errors() {
    let emu = emulator(EmulatorConfig::default()).await;
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable)]),
        Store::memory(),
    )
    .await;
    let plain = reqwest::Client::new();
    let url = instance.url("/v1/apps/demo/access_token");
    let r = plain.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let r = plain
        .get(&url)
        .bearer_auth("wrong-key-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = plain
        .get(&url)
        .bearer_auth(&API_KEY[..API_KEY.len() - 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a prefix of the key is not the key");
    let r = plain.get(instance.url("/v1/apps")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let client = client();
    let (status, body) = get_json(&client, &instance.url("/v1/apps/nope/access_token")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "unknown_app");
    let r = client
        .post(instance.url("/v1/apps/demo/access_token/refresh"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let health = reqwest::get(instance.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = instance.metrics().await;
    assert!(metrics.contains("wxmp_api_requests"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_adds_the_token_and_retries_once_on_a_stale_one() {
    let emu = emulator(EmulatorConfig::default()).await;
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Classic)]),
        Store::memory(),
    )
    .await;
    let client = client();
    let r = client
        .post(instance.url("/v1/apps/demo/proxy/cgi-bin/message/custom/send"))
        .json(&json!({"touser": "o1", "msgtype": "text", "text": {"content": "你好"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errcode"], 0, "{body}");
    assert_eq!(emu.emulator().custom_messages(APPID).len(), 1);
    assert_eq!(
        emu.emulator().custom_messages(APPID)[0]["text"]["content"],
        "你好"
    );

    // WeChat kills the held token: the proxy refreshes once and the call goes through.
    emu.emulator().expire_all_tokens(APPID);
    let before = token_calls(&emu);
    let r = client
        .get(instance.url("/v1/apps/demo/proxy/cgi-bin/user/info?openid=o1&access_token=spoofed"))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errcode"], 0, "{body}");
    assert_eq!(token_calls(&emu) - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_refreshing_process_is_taken_over_within_the_lease() {
    let emu = emulator(EmulatorConfig::default()).await;
    // The first token call hangs long enough for us to kill its caller mid-refresh.
    emu.emulator().inject(
        Fault::new(
            Endpoint::StableToken,
            wxmp::emulator::FaultKind::Delay(Duration::from_secs(30)),
        )
        .times(1),
    );
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wxmp.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"{}\"\n[store]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{prefix}\"\n\
             [api]\nkeys = [\"{API_KEY}\"]\n[apps.demo]\nappid = \"{APPID}\"\nsecret = \"{SECRET}\"\ntoken = \"pamtest\"\n",
            emu.base_url(),
            redis_url()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wxmp"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Wait until the child's refresher holds the lock (it starts refreshing at boot) and its
    // call has reached the emulator and taken the delay: killed any earlier, on a loaded
    // machine, it left the delay armed for the survivor's call.
    let redis = redis::Client::open(redis_url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let lock_key = format!("{prefix}lock:demo:access_token");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held: Option<String> = redis::cmd("GET")
            .arg(&lock_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if held.is_some() && emu.emulator().faults().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the child never took the refresh lock and called WeChat"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL: no cleanup, the lock stays until its lease runs out
    child.wait().unwrap();
    let killed_at = Instant::now();

    let store = redis_store(&redis_url(), &prefix).await;
    let survivor = start(config_for(&emu), store).await;
    let (status, body) = get_json(&client(), &survivor.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200, "{body}");
    let took = killed_at.elapsed();
    assert!(
        took <= Duration::from_secs(15),
        "another instance took over in {took:?}"
    );
    assert_eq!(
        use_token(&emu.base_url(), body["access_token"].as_str().unwrap()).await,
        0
    );
}

fn config_for(emu: &wxmp::emulator::EmulatorHandle) -> wxmp::config::Config {
    config(&emu.base_url(), vec![app(TokenApi::Stable)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wechat_answering_in_6_seconds_still_yields_a_token() {
    let emu = emulator(EmulatorConfig::default()).await;
    // Every token call takes 6 s (longer than the old 3 s request timeout).
    emu.emulator().inject(Fault::new(
        Endpoint::Token,
        wxmp::emulator::FaultKind::Delay(Duration::from_secs(6)),
    ));
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Classic)]),
        Store::memory(),
    )
    .await;
    let started = Instant::now();
    let (status, body) = get_json(&client(), &instance.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the answer was slow"
    );
    assert_eq!(
        use_token(&emu.base_url(), body["access_token"].as_str().unwrap()).await,
        0
    );
    let calls = emu.emulator().stats(APPID).token_calls;
    assert_eq!(
        (calls.attempts, calls.ok),
        (1, 1),
        "one upstream call, answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_longer_than_the_lease_keeps_its_lock() {
    let emu = emulator(EmulatorConfig::default()).await;
    // The first token call answers -1 after 6 s; the retry succeeds after another 6 s: the
    // holder needs ~12 s, longer than the 10 s lease, and renews it meanwhile.
    let delay = wxmp::emulator::FaultKind::Delay(Duration::from_secs(6));
    emu.emulator()
        .inject(Fault::new(Endpoint::Token, delay).times(2));
    emu.emulator()
        .inject(Fault::system_error(Endpoint::Token).times(1));
    let prefix = unique_prefix();
    let client = client();
    let first = start(
        config(&emu.base_url(), vec![app(TokenApi::Classic)]),
        redis_store(&redis_url(), &prefix).await,
    )
    .await;
    // The first instance's refresher takes the lock at boot; only then does the second start.
    let store = redis_store(&redis_url(), &prefix).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get("lock:demo:access_token").await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the first instance never locked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let locked_at = Instant::now();
    let second = start(config(&emu.base_url(), vec![app(TokenApi::Classic)]), store).await;
    let (status, on_second) = get_json(&client, &second.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200, "{on_second}");
    let waited = locked_at.elapsed();
    assert!(
        waited >= Duration::from_secs(11),
        "the second instance waited for the first one's whole fetch ({waited:?})"
    );
    let (status, on_first) = get_json(&client, &first.url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200, "{on_first}");
    assert_eq!(on_first["access_token"], on_second["access_token"]);
    let calls = emu.emulator().stats(APPID).token_calls;
    assert_eq!(
        (calls.attempts, calls.ok),
        (2, 1),
        "the -1 and its retry, both by the lock holder: nothing fetched twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_tokens_cost_one_call_per_cycle() {
    // WeChat's stable_token renews only in the last 5 minutes, and wxmp's refresh lead is at
    // most 5 minutes: the emulator's window here is likewise exactly the lead (a fifth of the
    // 10 s lifetime), the case where a refresh just ahead of the window gets the old token.
    let emu = emulator(EmulatorConfig {
        token_lifetime: Duration::from_secs(10),
        overlap: Duration::from_secs(2),
        ..EmulatorConfig::default()
    })
    .await;
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable)]),
        Store::memory(),
    )
    .await;
    let client = client();
    // Three refresh cycles and a bit, serving (and using) tokens all along.
    let deadline = Instant::now() + Duration::from_secs(27);
    let mut seen = std::collections::HashSet::new();
    while Instant::now() < deadline {
        let (status, v) = get_json(&client, &instance.url("/v1/apps/demo/access_token")).await;
        assert_eq!(status, 200, "{v}");
        let token = v["access_token"].as_str().unwrap();
        assert_eq!(use_token(&emu.base_url(), token).await, 0);
        seen.insert(token.to_owned());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = emu.emulator().stats(APPID);
    eprintln!(
        "stable_token calls: {}, tokens issued: {}, tokens seen: {}",
        stats.stable_token_calls.attempts,
        stats.stable_tokens_issued,
        seen.len()
    );
    assert!(
        stats.stable_tokens_issued >= 3,
        "several cycles ran ({} tokens issued)",
        stats.stable_tokens_issued
    );
    assert_eq!(
        stats.stable_token_calls.attempts, stats.stable_tokens_issued,
        "every stable_token call brought a new token: one call per cycle"
    );
    assert_eq!(stats.force_refresh_calls.attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shared_through_redis_over_tls_with_a_password() {
    let ca = TestCa::new();
    let port = free_port();
    let mut args = ca.server_args(port);
    args.extend(
        [
            "--requirepass",
            "s3cret-pw",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from),
    );
    let redis = RedisServer::start_with(port, args);
    let emu = emulator(EmulatorConfig::default()).await;
    // The store section as a user writes it, the password from the environment.
    let text = format!(
        "upstream = \"{}\"\n[store]\nbackend = \"redis\"\nurl = \"{}\"\ntls_ca = \"{}\"\n\
         password = \"$REDIS_PASSWORD\"\nprefix = \"{}\"\n\
         [apps.demo]\nappid = \"{APPID}\"\nsecret = \"{SECRET}\"\ntoken = \"pamtest\"\n",
        emu.base_url(),
        redis.tls_url(),
        ca.ca().display(),
        unique_prefix(),
    );
    let env: std::collections::HashMap<String, String> =
        [("REDIS_PASSWORD".to_owned(), "s3cret-pw".to_owned())].into();
    let parsed = wxmp::config::Config::parse(&text, &env).unwrap();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let store = wxmp::server::open_store(&parsed.store).await.unwrap();
        instances.push(start(config(&emu.base_url(), vec![app(TokenApi::Classic)]), store).await);
    }
    let client = client();
    let (status, on_a) = get_json(&client, &instances[0].url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200, "{on_a}");
    let (status, on_b) = get_json(&client, &instances[1].url("/v1/apps/demo/access_token")).await;
    assert_eq!(status, 200, "{on_b}");
    assert_eq!(on_a["access_token"], on_b["access_token"]);
    assert_eq!(
        token_calls(&emu),
        1,
        "one fetch, shared through the TLS Redis"
    );
    assert_eq!(
        use_token(&emu.base_url(), on_a["access_token"].as_str().unwrap()).await,
        0
    );

    // A wrong password is refused at connect, and the error does not repeat it.
    let env: std::collections::HashMap<String, String> =
        [("REDIS_PASSWORD".to_owned(), "wrong-pw".to_owned())].into();
    let wrong = wxmp::config::Config::parse(&text, &env).unwrap();
    match wxmp::server::open_store(&wrong.store).await {
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains("wrong-pw"), "{message}");
            eprintln!("wrong password: {message}");
        }
        Ok(_) => panic!("connected with a wrong password"),
    }
}
