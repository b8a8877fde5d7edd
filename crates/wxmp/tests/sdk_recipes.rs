//! The SDK recipes of `docs/sdk-recipes.md`, run for real: wechatpy (Python), wechat-api and
//! co-wechat-api (Node) installed from their registries into a scratch folder, each recipe
//! driven against a running wxmp and emulator, with a foreign refresh (the emulator's revoke,
//! 40001) between two calls.
//!
//! What must hold for every recipe: the SDK's calls succeed across the revoke; wxmp made
//! exactly one refresh for it, recorded as `foreign_suspected` (the SDK never refreshes on its
//! own, and the stale token is reported, or met by the proxy, once); nobody called `/cgi-bin/token` with the AppSecret;
//! a POST (a 客服消息) arrives intact.
//!
//! The packages are pinned (the traps the recipes avoid were read in these versions) and
//! installed once under `target/sdk-recipes/`. When the registry cannot be reached the test
//! says so and skips; any other failure (python3, node or npm missing, a failed install, a
//! recipe that breaks) fails it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use wxmp::config::TokenApi;
use wxmp::emulator::EmulatorConfig;
use wxmp::store::Store;

const WECHATPY: &str = "wechatpy==1.8.18";
const NODE_PACKAGES: [&str; 2] = ["wechat-api@1.35.1", "co-wechat-api@3.11.0"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/sdk-recipes/`, next to this test binary's target directory.
fn scratch() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(3).unwrap().join("sdk-recipes");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cmd`, failing the test if it cannot start or outlives `limit`.
fn run(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {:?}: {e}; the SDK recipe tests need python3 (with pip), node and npm \
                 (`bash .ci/run` installs them)",
                cmd.get_program()
            )
        });
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap().into_bytes(),
        stderr: err.join().unwrap().into_bytes(),
    }
}

/// True when `host:443` cannot be reached (no DNS, no route, refused).
fn unreachable(host: &str) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = (host, 443).to_socket_addrs() else {
        return true;
    };
    !addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
}

/// What an installer prints when it could not reach its registry.
fn network_failure(output: &str) -> bool {
    [
        "Could not fetch URL",
        "NewConnectionError",
        "Max retries exceeded",
        "Temporary failure in name resolution",
        "No matching distribution found",
        "ENOTFOUND",
        "EAI_AGAIN",
        "ECONNREFUSED",
        "ETIMEDOUT",
        "ECONNRESET",
        "network request",
    ]
    .iter()
    .any(|m| output.contains(m))
}

enum Installed {
    At(PathBuf),
    RegistryUnreachable(String),
}

/// Installs (once) `what` with `cmd`, leaving `marker` behind on success.
fn install(dir: &Path, marker: &str, registry: &str, cmd: &mut Command) -> Installed {
    if dir.join(marker).exists() {
        return Installed::At(dir.to_path_buf());
    }
    let out = run(cmd, Duration::from_secs(600));
    if out.status.success() {
        std::fs::write(dir.join(marker), "").unwrap();
        return Installed::At(dir.to_path_buf());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if unreachable(registry) || network_failure(&text) {
        return Installed::RegistryUnreachable(format!("{registry} cannot be reached"));
    }
    panic!("{cmd:?} failed:\n{text}");
}

fn install_wechatpy() -> Installed {
    let dir = scratch().join("py");
    std::fs::create_dir_all(&dir).unwrap();
    install(
        &dir,
        ".installed-wechatpy-1.8.18",
        "pypi.org",
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args([
                "--no-input",
                "--timeout",
                "30",
                "--retries",
                "1",
                "--target",
            ])
            .arg(&dir)
            .arg(WECHATPY),
    )
}

fn install_node_packages() -> Installed {
    let dir = scratch().join("node");
    std::fs::create_dir_all(&dir).unwrap();
    install(
        &dir,
        ".installed-wechat-api-1.35.1-co-wechat-api-3.11.0",
        "registry.npmjs.org",
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .args(["--fetch-retries", "1", "--prefix"])
            .arg(&dir)
            .args(NODE_PACKAGES),
    )
}

/// A fresh emulator and wxmp; runs `driver` with the recipe's environment; checks what must
/// hold for every recipe and returns the driver's JSON.
async fn drive(recipe: &str, mut driver: Command) -> Value {
    let emu = emulator(EmulatorConfig::default()).await;
    let instance = start(
        config(&emu.base_url(), vec![app(TokenApi::Stable)]),
        Store::memory(),
    )
    .await;
    driver
        .env("WXMP_URL", instance.url(""))
        .env("WXMP_APP", "demo")
        .env("WXMP_KEY", API_KEY)
        .env("WXMP_APPID", APPID)
        .env("EMULATOR_URL", emu.base_url())
        // Anything an SDK would send to the real WeChat fails fast instead.
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost");
    let out = tokio::task::spawn_blocking(move || run(&mut driver, Duration::from_secs(180)))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{recipe} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    let seen: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{recipe} printed no JSON: {stdout}\n{stderr}"));

    assert_eq!(
        seen["ips"],
        serde_json::json!(["127.0.0.1"]),
        "{recipe}: {seen}"
    );
    assert_eq!(seen["user"]["errcode"], 0, "{recipe}: {seen}");
    assert_eq!(
        seen["after_revoke"]["errcode"], 0,
        "{recipe}: the call after a foreign refresh failed: {seen}"
    );
    let stats = emu.emulator().stats(APPID);
    assert_eq!(
        stats.token_calls.attempts, 0,
        "{recipe}: someone called /cgi-bin/token with the AppSecret"
    );
    let messages = emu.emulator().custom_messages(APPID);
    assert!(
        messages
            .iter()
            .any(|m| m["text"]["content"] == format!("hello from {recipe}")),
        "{recipe}: the 客服消息 did not arrive: {messages:?}"
    );
    let metrics = instance.metrics().await;
    // The revoke is another party refreshing with the AppSecret, so the one refresh the stale
    // token causes is recorded as `foreign_suspected`; no plain `passive` refresh may follow it.
    let refreshes = |reason: &str| {
        let prefix = format!(
            "wxmp_token_refreshes_total{{app=\"demo\",kind=\"access_token\",reason=\"{reason}\"}}"
        );
        metrics
            .lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        (refreshes("foreign_suspected"), refreshes("passive")),
        (1.0, 0.0),
        "{recipe}: expected exactly one refresh, for the foreign refresh, in\n{metrics}"
    );
    seen
}

fn python_driver(py: &Path, recipe: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("crates/wxmp/tests/recipes/drive_wechatpy.py"))
        .arg(recipe)
        .env(
            "PYTHONPATH",
            format!(
                "{}:{}",
                py.display(),
                repo().join("docs/recipes/python").display()
            ),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

fn node_driver(node: &Path, recipe: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("crates/wxmp/tests/recipes/drive_node.js"))
        .arg(repo().join(format!("docs/recipes/node/{recipe}.js")))
        .env("NODE_PATH", node.join("node_modules"));
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechatpy_recipes() {
    let py = match tokio::task::spawn_blocking(install_wechatpy).await.unwrap() {
        Installed::At(dir) => dir,
        Installed::RegistryUnreachable(why) => {
            println!("SKIPPED: wechatpy recipes not run: {why} (pip install {WECHATPY})");
            return;
        }
    };
    drive("wechatpy_proxy", python_driver(&py, "wechatpy_proxy")).await;
    let seen = drive("wechatpy_borrow", python_driver(&py, "wechatpy_borrow")).await;
    assert_ne!(seen["token_before"], seen["token_after"], "{seen}");
    assert!(seen["token_after"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_recipes() {
    let node = match tokio::task::spawn_blocking(install_node_packages)
        .await
        .unwrap()
    {
        Installed::At(dir) => dir,
        Installed::RegistryUnreachable(why) => {
            println!(
                "SKIPPED: node recipes not run: {why} (npm install {})",
                NODE_PACKAGES.join(" ")
            );
            return;
        }
    };
    for recipe in ["wechat_api_proxy", "co_wechat_api_proxy"] {
        drive(recipe, node_driver(&node, recipe)).await;
    }
    for recipe in ["wechat_api_borrow", "co_wechat_api_borrow"] {
        let seen = drive(recipe, node_driver(&node, recipe)).await;
        assert_ne!(
            seen["token_before"], seen["token_after"],
            "{recipe}: {seen}"
        );
        assert!(
            seen["token_after"].as_str().is_some_and(|t| !t.is_empty()),
            "{recipe}: {seen}"
        );
    }
}
