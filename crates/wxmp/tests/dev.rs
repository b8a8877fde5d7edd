//! `wxmp serve --dev`, as the README tells a newcomer to run it: the test starts the real
//! binary, reads what it prints, and runs the printed `wxmp send` lines (a keyword, a sentence
//! with the demo's `contains` keyword, a menu click) and API calls verbatim.

mod process;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process::DevServer;

/// Splits a printed command line as a POSIX shell would, for the quoting the banner uses
/// (words, and '…' around a sentence).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {line}");
    if started {
        words.push(word);
    }
    words
}

/// Runs a `wxmp send` command: it must exit 0 and print `answer` (the decrypted reply).
fn sends_and_prints(send: &mut Command, what: &str, answer: &str) {
    let out = send.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(answer), "{what}\n{stdout}");
}

#[test]
fn serve_dev_prints_send_lines_that_work_as_printed() {
    let bin = env!("CARGO_BIN_EXE_wxmp");
    let dir = tempfile::tempdir().unwrap();
    run_dev_once(bin, dir.path());
    // A second run in the same folder: its new emulator must accept the token it serves.
    run_dev_once(bin, dir.path());
}

fn run_dev_once(bin: &str, dir: &std::path::Path) {
    let server = DevServer::start(dir, Stdio::null(), &[]);
    let (banner, port) = (&server.banner, server.port);

    // Every printed send line, run as printed (`cargo run --release -- send …` is the built
    // binary's `send …`), with what each must answer.
    let expected = [
        ("text ping", "pong"),
        ("price", "free"),
        ("event click", "Today's pick"),
    ];
    let send_lines: Vec<&String> = banner
        .iter()
        .filter(|l| l.contains(" send --url "))
        .collect();
    assert_eq!(send_lines.len(), expected.len(), "{banner:#?}");
    for (marker, answer) in expected {
        let line = send_lines
            .iter()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no send line with {marker:?} in {banner:#?}"));
        let args = shell_words(line.split_once("-- send ").map(|(_, rest)| rest).unwrap());
        sends_and_prints(
            Command::new(bin).arg("send").args(&args).current_dir(dir),
            line,
            answer,
        );
    }

    // The printed token curl line, with the printed key.
    let key = banner
        .iter()
        .find_map(|l| {
            l.split_once("Business API key:")
                .map(|(_, k)| k.trim().to_owned())
        })
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let token: serde_json::Value = client
            .get(format!("http://127.0.0.1:{port}/v1/apps/demo/access_token"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            token["access_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{token}"
        );
        // The served token works upstream as it is: this run's emulator accepts it.
        let emulator = server.emulator_url();
        let access_token = token["access_token"].as_str().unwrap();
        let user: serde_json::Value = client
            .get(format!(
                "{emulator}/cgi-bin/user/info?openid=o1&access_token={access_token}"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            user["errcode"], 0,
            "the served token is dead upstream: {user}"
        );
        let config: serde_json::Value = client
            .post(format!("http://127.0.0.1:{port}/v1/apps/demo/jssdk/config"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"url": "https://example.com/page"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            config["signature"].as_str().map(str::len),
            Some(40),
            "{config}"
        );
        // The printed menu line: the demo menu was published to the emulator at start.
        let menu_line = banner
            .iter()
            .find(|l| l.contains("/proxy/cgi-bin/menu/get"))
            .unwrap();
        let menu_url = menu_line.split_whitespace().last().unwrap();
        let menu: serde_json::Value = client
            .get(menu_url)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(menu["menu"]["button"][0]["key"], "V1001_TODAY", "{menu}");
    });
    assert!(dir.join("wxmp-data").is_dir(), "SQLite under ./wxmp-data/");
}

/// `wxmp send --help`'s first example, run as printed (only the port differs) against
/// `serve --dev`: the newcomer's first try must not be a 400.
#[test]
fn send_helps_first_example_and_send_config_work_against_serve_dev() {
    let bin = env!("CARGO_BIN_EXE_wxmp");
    let help = Command::new(bin).args(["send", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let example = help
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("wxmp send "))
        .unwrap_or_else(|| panic!("no example in send --help:\n{help}"));
    assert!(
        example.contains("127.0.0.1:8080"),
        "the example no longer targets serve --dev's default address: {example}"
    );

    let dir = tempfile::tempdir().unwrap();
    let server = DevServer::start(dir.path(), Stdio::null(), &[]);
    let port = server.port;

    let example = example.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let args: Vec<&str> = example
        .strip_prefix("wxmp send ")
        .unwrap()
        .split_whitespace()
        .collect();
    sends_and_prints(Command::new(bin).arg("send").args(&args), &example, "pong");

    // `send --config` with a production-like file: API keys, AppSecrets and another app's
    // values come from "$NAME"s this machine does not have; sending only needs demo's
    // callback keys, so it must not ask for them.
    let config = dir.path().join("wxmp.toml");
    std::fs::write(
        &config,
        "[api]\nkeys = [\"$WXMP_TEST_UNSET_API_KEY\"]\n\
         [apps.demo]\nappid = \"wx0123456789abcdef\"\nsecret = \"$WXMP_TEST_UNSET_SECRET\"\n\
         token = \"pamtest\"\nencoding_aes_key = \"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\"\n\
         [apps.other]\nappid = \"$WXMP_TEST_UNSET_APPID\"\ntoken = \"$WXMP_TEST_UNSET_TOKEN\"\n",
    )
    .unwrap();
    sends_and_prints(
        Command::new(bin)
            .args(["send", "--url", &format!("http://127.0.0.1:{port}/wx/demo")])
            .args(["--config", config.to_str().unwrap(), "text", "ping"]),
        "send --config",
        "pong",
    );
}

#[test]
fn sighup_under_dev_is_logged_and_changes_nothing() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut server = DevServer::start(
        dir.path(),
        Stdio::piped(),
        &[("NO_COLOR", "1"), ("RUST_LOG", "info")],
    );
    let port = server.port;
    let stderr = server.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let status = Command::new("kill")
        .args(["-s", "HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let found = line.contains("nothing to reload");
        seen.push(line);
        if found {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("nothing to reload")),
        "{seen:#?}"
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "SIGHUP killed serve --dev"
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
