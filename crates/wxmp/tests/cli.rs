//! The command line as a user meets it: exit codes (0, 1 reported error, 2 bad usage), config
//! errors that name the key and line, `wxmp check` against the emulator, `wxmp sign`.

mod common;

use std::process::Command;

use common::*;
use wxmp::config::ProcessEnv;
use wxmp::emulator::EmulatorConfig;

fn wxmp(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wxmp"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn sign_computes_the_official_vectors() {
    let out = wxmp(&[
        "sign",
        "signature",
        "--token",
        "AAAAA",
        "--timestamp",
        "1714036504",
        "--nonce",
        "1514711492",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "f464b24fc39322e44b38aa78f5edd27bd1441696"
    );
    let out = wxmp(&[
        "sign",
        "jssdk",
        "--ticket",
        "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
        "--noncestr",
        "Wm3WZYTPz0wzccnW",
        "--timestamp",
        "1414587457",
        "--url",
        "http://mp.weixin.qq.com?params=value#fragment",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    );
    let out = wxmp(&[
        "sign",
        "signature",
        "--token",
        "",
        "--timestamp",
        "1",
        "--nonce",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(wxmp(&["serve", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(wxmp(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn serve_refuses_a_bad_config_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxmp.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n\n[apps.demo]\nappid = \"wx1\"\ntoken = \"pamtest\"\nsecrte = \"x\"\n").unwrap();
    let out = wxmp(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secrte") && err.contains("line 6"), "{err}");

    let out = wxmp(&[
        "serve",
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

fn write_config(
    dir: &std::path::Path,
    name: &str,
    upstream: &str,
    secret: &str,
) -> std::path::PathBuf {
    let path = dir.join(name);
    let text = format!(
        "upstream = \"{upstream}\"\n[store]\nbackend = \"memory\"\n[api]\nkeys = [\"{API_KEY}\"]\n\
         [apps.demo]\nappid = \"{APPID}\"\nsecret = \"{secret}\"\ntoken = \"pamtest\"\n\
         encoding_aes_key = \"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_explains_live_problems() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();

    let good = write_config(dir.path(), "good.toml", &emu.base_url(), SECRET);
    let report = wxmp::check::report(&good, &ProcessEnv, true).await;
    assert_eq!(report.errors, 0, "{:#?}", report.lines);
    assert!(
        report.lines.iter().any(|l| l.contains("WeChat accepts")),
        "{:#?}",
        report.lines
    );

    let wrong = write_config(dir.path(), "wrong.toml", &emu.base_url(), "not-the-secret");
    let report = wxmp::check::report(&wrong, &ProcessEnv, true).await;
    assert_eq!(report.errors, 1, "{:#?}", report.lines);
    assert!(
        report.lines.iter().any(|l| l.contains("AppSecret")),
        "{:#?}",
        report.lines
    );
    assert!(
        !report.lines.iter().any(|l| l.contains("not-the-secret")),
        "secret leaked"
    );

    emu.emulator()
        .set_ip_whitelist(APPID, Some(vec!["10.9.8.7".parse().unwrap()]));
    let report = wxmp::check::report(&good, &ProcessEnv, true).await;
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("127.0.0.1") && l.contains("whitelist")),
        "{:#?}",
        report.lines
    );

    let unreachable = write_config(dir.path(), "unreachable.toml", "http://127.0.0.1:1", SECRET);
    let out = tokio::task::spawn_blocking(move || {
        wxmp(&["check", "--config", unreachable.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unreachable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_never_prints_the_upstream_password() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let with_password = emu
        .base_url()
        .replacen("http://", "http://proxyuser:hunter2-pw@", 1);
    let reachable = write_config(dir.path(), "reachable.toml", &with_password, SECRET);
    let unreachable = write_config(
        dir.path(),
        "unreachable.toml",
        "http://proxyuser:hunter2-pw@127.0.0.1:1/?access_token=tok-secret",
        SECRET,
    );
    let outputs = tokio::task::spawn_blocking(move || {
        [reachable, unreachable].map(|path| wxmp(&["check", "--config", path.to_str().unwrap()]))
    })
    .await
    .unwrap();
    for out in outputs {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            all.contains("upstream http://proxyuser:***@127.0.0.1:"),
            "{all}"
        );
        assert!(
            !all.contains("hunter2") && !all.contains("tok-secret"),
            "{all}"
        );
    }
}

#[test]
fn sign_options_all_have_help() {
    for sub in ["signature", "msg-signature", "jssdk"] {
        let out = wxmp(&["sign", sub, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = help.lines().collect();
        let mut options = 0;
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if !trimmed.starts_with("--") || trimmed.starts_with("--help") {
                continue;
            }
            options += 1;
            // `--token <TOKEN>  The …` on one line, or the description on the next.
            let after_value = trimmed.split_once('>').map_or("", |(_, rest)| rest.trim());
            let next = lines.get(i + 1).map_or("", |l| l.trim());
            assert!(
                !after_value.is_empty() || (!next.is_empty() && !next.starts_with('-')),
                "`wxmp sign {sub}` option without help: {line:?}\n{help}"
            );
        }
        assert!(options >= 3, "{help}");
    }
}

#[test]
fn check_warns_about_a_reply_deadline_past_wechats_5_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxmp.toml");
    let config = |ms: u32| {
        format!(
            "[store]\nbackend = \"memory\"\n[apps.demo]\nappid = \"{APPID}\"\ntoken = \"pamtest\"\n\
             reply_deadline_ms = {ms}\n[apps.demo.auto_reply]\ndefault = \"hi\"\n"
        )
    };
    std::fs::write(&path, config(8000)).unwrap();
    let out = wxmp(&["check", "--offline", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning is not an error: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("warn:") && l.contains("reply_deadline_ms = 8000")),
        "{stdout}"
    );
    std::fs::write(&path, config(4500)).unwrap();
    let out = wxmp(&["check", "--offline", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("reply_deadline_ms"), "{stdout}");
}

/// `serve --listen localhost:PORT` binds (host names resolve), and the start-up log names each
/// app's callback URL.
#[test]
fn serve_accepts_a_host_name_and_prints_each_callback_url() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxmp.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nbackend = \"memory\"\n[apps.demo]\nappid = \"{APPID}\"\ntoken = \"pamtest\"\n\
             [apps.shop]\nappid = \"{APPID}\"\ntoken = \"pamtest\"\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxmp"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .args(["--listen", &format!("localhost:{port}")])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let want = [
        format!("http://127.0.0.1:{port}/wx/demo"),
        format!("http://127.0.0.1:{port}/wx/shop"),
    ];
    while !want
        .iter()
        .all(|w| seen.iter().any(|l: &String| l.contains(w)))
    {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no callback URLs printed: {seen:#?}"),
        }
    }
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let out = wxmp(&["serve", "--listen", "no-such-host.invalid:80"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot resolve"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rust-version` is the real minimum: no locked dependency needs a newer Rust.
#[test]
fn rust_version_covers_every_locked_dependency() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let manifest = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
    let ours = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("the workspace declares rust-version");
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .unwrap();
    let rustc = String::from_utf8_lossy(&rustc.stdout).into_owned();
    let host = rustc
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_owned();
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", &host])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let needed = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((p["rust_version"].as_str()?, p["name"].as_str()?)))
        .max_by(|a, b| parse(a.0).cmp(&parse(b.0)))
        .unwrap();
    assert!(
        parse(needed.0) <= parse(&ours),
        "{} needs Rust {} but Cargo.toml says rust-version = {ours}",
        needed.1,
        needed.0
    );
}
