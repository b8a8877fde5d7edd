//! Paced token latency, run with `cargo bench -p wxmp --bench load` (or `bash bench/token.sh`).
//!
//! `GET /v1/apps/demo/access_token` from 64 concurrent clients, saturating and then paced at
//! 5 000 and 20 000 req/s, against a do-nothing axum server paced the same way; prints
//! requests/s and latency percentiles (target: p99 < 1 ms at a steady load). wrk cannot pace
//! its requests, which is why this in-process client stays; throughput ratios come from
//! `bench/wrk.sh`, whose lean external client does not compress them toward 1 the way this
//! one, sharing the two cores in the same process, does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use wxmp::config::Config;
use wxmp::emulator::{Emulator, EmulatorConfig};
use wxmp::server::Server;
use wxmp::store::Store;

const CLIENTS: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

/// Starts a server on its own 2-thread runtime (like a real deployment on this machine) and
/// returns its base URL. `make` builds the router inside that runtime.
fn spawn_server<F, Fut>(make: F) -> String
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Router>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let router = make().await;
            tx.send(format!("http://{addr}")).expect("send url");
            let _ = wxmp::server::run(listener, router, std::future::pending()).await;
        });
    });
    rx.recv().expect("server url")
}

/// wxmp with the dev configuration (safe-mode app `demo`, keyword `ping`) against an
/// in-process emulator, on the memory store.
fn spawn_wxmp() -> String {
    spawn_server(|| async {
        let emu_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind emulator");
        let emu = Emulator::new(EmulatorConfig::demo())
            .spawn(emu_listener)
            .await;
        let upstream = url::Url::parse(&emu.base_url()).expect("emulator url");
        // Both live as long as the benchmark process.
        std::mem::forget(emu);
        let mut config: Config =
            wxmp::dev::dev_config("127.0.0.1:0".parse().expect("addr"), upstream)
                .expect("dev config");
        config.store = wxmp::config::StoreConfig::Memory;
        let server = Server::with_store(config, Store::memory());
        let router = server.router();
        std::mem::forget(server);
        router
    })
}

fn spawn_noop() -> String {
    spawn_server(|| async { Router::new().route("/wx/demo", get(|| async { "echo" })) })
}

struct Stats {
    rps: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    errors: u64,
}

/// Runs `CLIENTS` loops of `request` for WARMUP + MEASURE and summarises the measured part.
/// Closed loop: every client sends its next request as soon as the previous one is answered.
async fn load<F, Fut>(request: F) -> Stats
where
    F: Fn(reqwest::Client, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    load_paced(request, None).await
}

/// Like [`load`], but with `pace = Some(total_rps)` each client sends at
/// `total_rps / CLIENTS` per second: latency under a steady load rather than at saturation,
/// where queueing dominates (64 requests in flight at N req/s wait 64/N s on average).
async fn load_paced<F, Fut>(request: F, pace: Option<u32>) -> Stats
where
    F: Fn(reqwest::Client, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let request = Arc::new(request);
    let pace: Option<u32> = pace;
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + MEASURE;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, request, counter, errors) = (
            client.clone(),
            request.clone(),
            counter.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut ticks = pace.map(|rps| {
                let period = Duration::from_secs_f64(CLIENTS as f64 / f64::from(rps));
                let mut i = tokio::time::interval(period);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            loop {
                if let Some(ticks) = ticks.as_mut() {
                    ticks.tick().await;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                if t0 >= end {
                    return latencies;
                }
                let ok = request(client.clone(), n).await;
                if t0 >= measure_from {
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(t0.elapsed());
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats {
        rps: all.len() as f64 / MEASURE.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: all.last().copied().unwrap_or_default(),
        errors: errors.load(Ordering::Relaxed),
    }
}

fn print(name: &str, s: &Stats) {
    println!(
        "{name:<34} {:>9.0} req/s   p50 {:>7.1} µs   p99 {:>7.1} µs   max {:>8.1} µs   errors {}",
        s.rps,
        s.p50.as_secs_f64() * 1e6,
        s.p99.as_secs_f64() * 1e6,
        s.max.as_secs_f64() * 1e6,
        s.errors
    );
}

async fn bench_token(wxmp: &str, noop: &str) {
    let noop_url = format!("{noop}/wx/demo");
    let noop_request = move |c: reqwest::Client, _| {
        let url = noop_url.clone();
        async move {
            match c.get(&url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    };
    let url = format!("{wxmp}/v1/apps/demo/access_token");
    let key = format!("Bearer {}", wxmp::dev::DEV_API_KEY);
    let request = move |c: reqwest::Client, _| {
        let (url, key) = (url.clone(), key.clone());
        async move {
            match c.get(&url).header("Authorization", key).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    };
    let saturated = load(request.clone()).await;
    print("token GET, 64 clients, saturating", &saturated);
    for rps in [5_000, 20_000] {
        let floor = load_paced(noop_request.clone(), Some(rps)).await;
        print(&format!("do-nothing axum GET, {rps} req/s"), &floor);
        let paced = load_paced(request.clone(), Some(rps)).await;
        print(&format!("token GET, 64 clients, {rps} req/s"), &paced);
        println!(
            "  target p99 < 1 ms at {rps} req/s: {}",
            if paced.p99 < Duration::from_millis(1) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}

fn main() {
    let wxmp = spawn_wxmp();
    let noop = spawn_noop();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(bench_token(&wxmp, &noop));
}
