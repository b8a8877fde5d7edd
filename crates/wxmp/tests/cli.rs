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
