//! What a running `wxmp serve` writes to its log when pushes carry hostile values: a 300 KB
//! `FromUserName` must not make a 300 KB line (or any line of that size), OpenIDs appear only
//! at DEBUG and cut short, and a newline in a value cannot forge a log line.

mod process;

use std::net::TcpStream;
use std::time::Duration;

use process::*;

/// The level word of a default-format tracing line (`2024-…Z  INFO target: …`).
fn level(line: &str) -> Option<&str> {
    line.split_whitespace()
        .nth(1)
        .filter(|w| matches!(*w, "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR"))
}

#[test]
fn huge_and_hostile_openids_never_reach_the_log_whole() {
    let serve = Serve::start_with(
        &plain_config(""),
        Options {
            log: "info,wxmp=debug".to_owned(),
            ..Options::default()
        },
    );
    // Distinctive, so any copy of it in the log is found; the newline would forge a line.
    let openid = format!("oHUGE{}\nERROR forged line", "x".repeat(300 * 1024));
    let prefix_32: String = openid.chars().take(32).collect();
    for xml in [
        subscribe_xml(&openid),
        text_xml(&openid, "ping", 77_000_001),
    ] {
        let mut stream = TcpStream::connect(serve.addr).unwrap();
        let (status, body) =
            http_exchange(&mut stream, &push_request("demo", "pamtest", &xml, false));
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        serve
            .wait_line(Duration::from_secs(30), |l| l.contains("push handled")
                && l.contains("msgid:77000001"))
            .is_some(),
        "{}",
        serve.log()
    );
    let lines = serve.lines();
    let longest = lines.iter().map(String::len).max().unwrap_or(0);
    assert!(
        longest < 2048,
        "a log line of {longest} bytes:\n{}",
        serve.log()
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("ERROR forged")),
        "a newline in a value forged a log line:\n{}",
        serve.log()
    );
    for line in &lines {
        if level(line) != Some("DEBUG") {
            assert!(!line.contains("oHUGE"), "an OpenID outside DEBUG: {line}");
        }
    }
    let debug_with_openid: Vec<&String> = lines
        .iter()
        .filter(|l| level(l) == Some("DEBUG") && l.contains("oHUGE"))
        .collect();
    assert!(!debug_with_openid.is_empty(), "{}", serve.log());
    assert!(
        debug_with_openid
            .iter()
            .any(|l| l.contains(&format!("{prefix_32}…"))),
        "{}",
        serve.log()
    );
    // The event's INFO line names the delivery without its OpenID.
    assert!(
        lines
            .iter()
            .any(|l| level(l) == Some("INFO") && l.contains("delivery=event:*:")),
        "{}",
        serve.log()
    );
}
