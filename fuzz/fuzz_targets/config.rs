//! The config loader (`Config::parse(text, env)`) on arbitrary text. The input is the TOML
//! text, then optionally a NUL byte (which TOML cannot contain) and `NAME=value` lines for the
//! environment that `"$NAME"` values read. Never a panic; an accepted config keeps the
//! checker's promises; a refused one lists at least one problem, none of them empty.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use wxmp::config::{Config, Mode};

fuzz_target!(|data: &[u8]| {
    let (text, env_part) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let env: HashMap<String, String> = String::from_utf8_lossy(env_part)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();

    match Config::parse(text, &env) {
        Ok(config) => {
            for key in &config.api_keys {
                assert!(key.expose().len() >= 16);
            }
            for (name, app) in &config.apps {
                assert_eq!(name, &app.name);
                assert!(!name.is_empty());
                assert!(name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                assert!((100..=15_000).contains(&app.reply_deadline_ms));
                assert!(app.mode == Mode::Plain || app.crypt.is_some());
                let token = app.token.expose();
                assert!((3..=32).contains(&token.len()));
                assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
                for domain in &app.js_domains {
                    assert!(domain.contains('.') && !domain.contains(':') && !domain.contains('/'));
                }
            }
            let _ = format!("{config:?}");
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            assert!(e.problems.iter().all(|p| !p.trim().is_empty()));
        }
    }
});
