//! The log as an operator receives it: `--log-format json` lines parse as JSON objects with the
//! event's fields as top-level keys; text logs sent to a pipe or file carry no colour codes; on
//! a terminal they are coloured unless `NO_COLOR` is set.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `wxmp args…` with stderr piped into a channel of lines.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> (Killed, Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wxmp"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (Killed(child), rx)
}

/// Collects lines until one satisfies `done` (or panics after a generous minute).
fn lines_until(rx: &Receiver<String>, done: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let finished = done(&line);
        lines.push(line);
        if finished {
            return lines;
        }
    }
    panic!("the expected log line never came; got {lines:#?}");
}

/// A config whose app has a secret but an unreachable upstream: the token core logs warnings
/// with structured fields (app, kind, error) right away.
fn unreachable_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("wxmp.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\n[store]\nbackend = \"memory\"\n\
         [apps.demo]\nappid = \"wx1234567890abcdef\"\nsecret = \"s3cr3t-not-in-logs\"\ntoken = \"pamtest\"\n",
    )
    .unwrap();
    path
}

#[test]
fn serve_json_logs_are_one_object_a_line_with_fields_as_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = unreachable_config(dir.path());
    let (_child, rx) = spawn(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "json",
        ],
        &[],
    );
    // The refresher may warn before the listener is bound: wait for both lines.
    let mut lines = lines_until(&rx, |l| l.contains("wxmp serving"));
    if !lines.iter().any(|l| l.contains("\"WARN\"")) {
        lines.extend(lines_until(&rx, |l| l.contains("\"WARN\"")));
    }
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        assert!(
            !line.contains("s3cr3t-not-in-logs"),
            "secret in the log: {line}"
        );
    }
    let warn: serde_json::Value = lines
        .iter()
        .find(|l| l.contains("\"WARN\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    // Fields are top-level keys, not buried under "fields".
    assert_eq!(warn["app"], "demo", "{warn}");
    assert!(warn["message"].is_string(), "{warn}");
}

#[test]
fn emulator_json_logs_parse() {
    let (_child, rx) = spawn(
        &[
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        &[],
    );
    let lines = lines_until(&rx, |l| l.contains("listening"));
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
    }
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert!(
        last["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{last}"
    );
}

#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = unreachable_config(dir.path());
    let (_child, rx) = spawn(
        &["serve", "--config", config.to_str().unwrap()],
        &[("RUST_LOG", "debug")],
    );
    let lines = lines_until(&rx, |l| l.contains("WARN") && l.contains("demo"));
    for line in &lines {
        assert!(!line.contains('\x1b'), "colour code in piped log: {line:?}");
    }
}

/// Runs `wxmp emulator` on a pseudo-terminal (util-linux `script`, part of every Debian
/// install) and returns what the terminal showed up to the listening line.
fn on_a_terminal(no_color: Option<&str>) -> String {
    let bin = env!("CARGO_BIN_EXE_wxmp");
    let mut cmd = Command::new("script");
    cmd.args([
        "-qfec",
        &format!("{bin} emulator --listen 127.0.0.1:0"),
        "/dev/null",
    ])
    .env_remove("NO_COLOR")
    .env_remove("RUST_LOG")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let mut child = cmd
        .spawn()
        .expect("`script` (util-linux) runs the binary on a terminal");
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let lines = lines_until(&rx, |l| l.contains("WeChat emulator listening"));
    drop(child);
    lines.join("\n")
}

#[test]
fn text_logs_on_a_terminal_are_coloured_unless_no_color() {
    assert!(
        on_a_terminal(None).contains('\x1b'),
        "no colour on a terminal"
    );
    let plain = on_a_terminal(Some("1"));
    assert!(!plain.contains('\x1b'), "NO_COLOR ignored: {plain:?}");
}
