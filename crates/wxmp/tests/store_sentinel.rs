//! Redis Sentinel for real: a master, a replica and three Sentinels on free ports (all with a
//! password), two wxmp instances finding the master through the Sentinels, and the master
//! killed -9 in the middle of their traffic. What must hold: tokens keep being served
//! throughout, and once a replica is promoted the refresh lock and the callback dedup work
//! across the instances again, with nothing fetched or delivered twice.

#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "callback_util/mod.rs"]
mod util;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_server::{free_port, RedisServer};
use serde_json::Value;
use util::*;
use wxmp::config::{Mode, RedisConfig, RedisTarget, Secret, TokenApi};
use wxmp::store::{RedisStore, Store};

const PASSWORD: &str = "sentinel-test-pw";
const MASTER_NAME: &str = "wxmpmaster";
const API_KEY: &str = "callback-test-api-key-0123456789";

/// `command` on the server at `port` (authenticated), or the error as text.
fn query<T: redis::FromRedisValue>(
    port: u16,
    password: Option<&str>,
    command: &[&str],
) -> Result<T, String> {
    let url = match password {
        Some(p) => format!("redis://:{p}@127.0.0.1:{port}/0"),
        None => format!("redis://127.0.0.1:{port}/0"),
    };
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .map_err(|e| e.to_string())?;
    let mut cmd = redis::cmd(command[0]);
    for arg in &command[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut conn).map_err(|e| e.to_string())
}

/// Polls `check` every 100 ms for up to `within`.
fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Topology {
    master: RedisServer,
    replica: RedisServer,
    sentinels: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl Topology {
    fn start() -> Topology {
        let auth = |port: u16| {
            let mut args = RedisServer::plain_args(port);
            args.extend(["--requirepass", PASSWORD, "--masterauth", PASSWORD].map(String::from));
            args
        };
        let master_port = free_port();
        let master = RedisServer::start_with(master_port, auth(master_port));
        let replica_port = free_port();
        let mut args = auth(replica_port);
        args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            master_port.to_string(),
        ]);
        let replica = RedisServer::start_with(replica_port, args);
        wait_for("the replica to sync", Duration::from_secs(15), || {
            query::<String>(replica_port, Some(PASSWORD), &["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"))
        });

        let dir = tempfile::tempdir().unwrap();
        let mut sentinels = Vec::new();
        for n in 0..3 {
            let port = free_port();
            let path = dir.path().join(format!("sentinel-{n}.conf"));
            std::fs::write(
                &path,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel auth-pass {MASTER_NAME} {PASSWORD}\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 4000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = dir.path().display()
                ),
            )
            .unwrap();
            sentinels.push(RedisServer::start_config(port, &path, true));
        }
        // Every Sentinel must know the replica and the two others before a failover can work.
        for s in &sentinels {
            let port = s.port();
            wait_for(
                "the sentinels to find each other",
                Duration::from_secs(20),
                || {
                    let others = query::<Vec<redis::Value>>(
                        port,
                        None,
                        &["SENTINEL", "SENTINELS", MASTER_NAME],
                    )
                    .map(|v| v.len())
                    .unwrap_or(0);
                    let replicas = query::<Vec<redis::Value>>(
                        port,
                        None,
                        &["SENTINEL", "REPLICAS", MASTER_NAME],
                    )
                    .map(|v| v.len())
                    .unwrap_or(0);
                    others == 2 && replicas == 1
                },
            );
        }
        Topology {
            master,
            replica,
            sentinels,
            _dir: dir,
        }
    }

    /// The master's port as the first Sentinel sees it.
    fn master_port(&self) -> Option<u16> {
        query::<Option<(String, u16)>>(
            self.sentinels[0].port(),
            None,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        )
        .ok()
        .flatten()
        .map(|(_, port)| port)
    }

    fn store_config(&self, prefix: &str) -> RedisConfig {
        RedisConfig {
            target: RedisTarget::Sentinel {
                sentinels: self
                    .sentinels
                    .iter()
                    .map(|s| format!("127.0.0.1:{}", s.port()))
                    .collect(),
                master_name: MASTER_NAME.to_owned(),
                db: 0,
                tls: false,
            },
            password: Some(Secret::new(PASSWORD)),
            ..RedisConfig::url("redis://unused", prefix)
        }
    }
}

fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {API_KEY}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn token(client: &reqwest::Client, running: &Running) -> (u16, Value) {
    let r = client
        .get(running.url("/v1/apps/shared/access_token"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_keeps_tokens_served_and_nothing_fetched_or_delivered_twice() {
    let started = Instant::now();
    let topology = tokio::task::spawn_blocking(Topology::start).await.unwrap();
    eprintln!("topology up after {:?}", started.elapsed());

    let emu = emulator().await;
    let hook = text_hook(Duration::from_millis(50), "handled once").await;
    let mut app = app("shared", Mode::Plain);
    app.secret = Some(Secret::new(SECRET));
    app.token_api = TokenApi::Classic;
    app.forward = Some(hook.url.clone());
    app.reply_deadline_ms = 3000;
    let prefix = format!("wxmp-sentinel-test:{:016x}:", rand::random::<u64>());
    let config = topology.store_config(&prefix);
    let (store_a, store_b) = (
        RedisStore::open(&config).await.unwrap(),
        RedisStore::open(&config).await.unwrap(),
    );
    let cfg = util::config(&emu.base_url(), vec![app]);
    let a = start(cfg.clone(), Store::Redis(store_a.clone())).await;
    let b = start(cfg, Store::Redis(store_b.clone())).await;
    let client = client();

    let (status, first) = token(&client, &a).await;
    assert_eq!(status, 200, "{first}");
    let (_, on_b) = token(&client, &b).await;
    assert_eq!(on_b["access_token"], first["access_token"]);
    let token_calls = || emu.emulator().stats(APPID).token_calls.attempts;
    assert_eq!(token_calls(), 1);
    // The stored token has reached the replica before the master dies.
    let replica_port = topology.replica.port();
    let key = format!("{prefix}token:shared:access_token");
    tokio::task::spawn_blocking(move || {
        wait_for("the token on the replica", Duration::from_secs(5), || {
            query::<Option<String>>(replica_port, Some(PASSWORD), &["GET", &key])
                .is_ok_and(|v| v.is_some())
        })
    })
    .await
    .unwrap();

    // Traffic on both instances, through the kill and the promotion.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, client) = (stop.clone(), client.clone());
        let urls = [
            a.url("/v1/apps/shared/access_token"),
            b.url("/v1/apps/shared/access_token"),
        ];
        let upstream = emu.base_url();
        tokio::spawn(async move {
            let mut served = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for url in &urls {
                    let r = client.get(url).send().await.unwrap();
                    assert_eq!(r.status(), 200, "a token GET failed during the failover");
                    let v: Value = r.json().await.unwrap();
                    let t = v["access_token"].as_str().unwrap().to_owned();
                    let used: Value = reqwest::get(format!(
                        "{upstream}/cgi-bin/user/info?access_token={t}&openid=o1"
                    ))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                    assert_eq!(used["errcode"], 0, "a served token was dead");
                    served += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            served
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut topology = topology;
    let killed_at = Instant::now();
    topology.master.kill();
    let topology = tokio::task::spawn_blocking(move || {
        wait_for("a promotion", Duration::from_secs(30), || {
            topology.master_port() == Some(replica_port)
        });
        topology
    })
    .await
    .unwrap();
    eprintln!("replica promoted {:?} after the kill", killed_at.elapsed());
    // Both stores follow the Sentinels to the new master.
    for store in [&store_a, &store_b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while store
            .set("probe", "x", Some(Duration::from_secs(5)))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "a store never reached the new master"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "both stores on the new master {:?} after the kill",
        killed_at.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    let served = traffic.await.unwrap();
    eprintln!("{served} tokens served and used through the failover");
    assert!(served > 10);
    assert_eq!(token_calls(), 1, "the failover cost no token fetch");

    // The refresh lock after the promotion: a storm of stale reports over both instances
    // makes one upstream call.
    let stale = first["access_token"].as_str().unwrap().to_owned();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..60 {
        let url = [&a, &b][n % 2].url("/v1/apps/shared/access_token/refresh");
        let (client, stale) = (client.clone(), stale.clone());
        calls.spawn(async move {
            let r = client
                .post(url)
                .json(&serde_json::json!({ "stale": stale }))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        });
    }
    let mut tokens = HashSet::new();
    while let Some(result) = calls.join_next().await {
        let (status, body) = result.unwrap();
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 1, "every caller got the same new token");
    assert!(!tokens.contains(&stale));
    assert_eq!(token_calls(), 2, "one upstream call for the whole storm");

    // The callback dedup after the promotion: one push delivered to both instances at once
    // reaches the webhook once, and each request may carry its reply (WeChat reads one).
    let (to_a, to_b) = (Wechat::new(&a, "shared"), Wechat::new(&b, "shared"));
    let message = text_msg("after the failover", msg_id());
    let (x, y) = tokio::join!(to_a.push_plain(&message), to_b.push_plain(&message));
    for answer in [&x, &y] {
        assert_eq!(answer.status, 200, "{x:?} {y:?}");
        assert_eq!(text_of(&answer.body), "handled once", "{x:?} {y:?}");
    }
    assert_eq!(hook.calls().len(), 1, "the webhook was called once");
    drop(topology);
    eprintln!("whole test {:?}", started.elapsed());
}
