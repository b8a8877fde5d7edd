//! `wxmp check`: validates the config file and, where it can, the live setup, explaining each
//! problem in plain words.
//!
//! Three levels, each reported line by line: the file itself (every problem at once, from
//! [`Config::load`], including a menu WeChat would refuse), advice that is not an error
//! (plaintext mode, a port WeChat cannot call, an AppID of an unusual shape, a click reply no
//! menu button can trigger), and — unless `--offline` — the live setup: the store opens,
//! the upstream answers like WeChat, and each app's AppID/AppSecret/IP whitelist are accepted.
//! The live credential check uses `stable_token` in normal mode, which returns the current
//! token without retiring anything; a classic `/cgi-bin/token` call would retire the token
//! the running 中控 serves, so for `token_api = "classic"` apps that check is skipped.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{AppConfig, Config, Environment, Mode, TokenApi};
use crate::redact;
use crate::server::{http_client, open_store};
use crate::token::Upstream;

/// Runs the checks, prints the report to stdout and returns the exit code (1 on any error).
pub async fn run(path: &Path, env: &dyn Environment, live: bool) -> ExitCode {
    let report = report(path, env, live).await;
    for line in &report.lines {
        println!("{line}");
    }
    if report.errors > 0 {
        println!("\n{} error(s) found.", report.errors);
        ExitCode::from(1)
    } else {
        println!("\nNo errors found.");
        ExitCode::SUCCESS
    }
}

/// The lines of a check and how many of them are errors.
#[derive(Debug, Default)]
pub struct Report {
    /// `ok:`, `note:`, `warn:` or `error:` lines.
    pub lines: Vec<String>,
    /// The number of `error:` lines.
    pub errors: usize,
}

impl Report {
    fn ok(&mut self, s: String) {
        self.lines.push(format!("ok:    {s}"));
    }
    fn note(&mut self, s: String) {
        self.lines.push(format!("note:  {s}"));
    }
    /// Legal but probably a mistake: not counted as an error, so exit stays 0.
    fn warning(&mut self, s: String) {
        self.lines.push(format!("warn:  {s}"));
    }
    fn error(&mut self, s: String) {
        self.errors += 1;
        self.lines.push(format!("error: {s}"));
    }
}

/// Builds the report without printing it.
pub async fn report(path: &Path, env: &dyn Environment, live: bool) -> Report {
    let mut r = Report::default();
    let config = match Config::load(path, env) {
        Ok(c) => c,
        Err(e) => {
            for p in e.problems {
                r.error(p);
            }
            return r;
        }
    };
    r.ok(format!(
        "{} parses; {} app(s) configured",
        path.display(),
        config.apps.len()
    ));
    advise(&config, &mut r);
    if live {
        check_live(&config, &mut r).await;
    }
    r
}

fn advise(config: &Config, r: &mut Report) {
    if !matches!(config.listen.port(), 80 | 443) {
        r.note(format!(
            "listen = {}: WeChat only calls ports 80 and 443, so put an HTTPS proxy in front of this port",
            config.listen
        ));
    }
    if config.api_keys.is_empty() && config.api_clients.is_empty() {
        r.note(
            "[api] has no keys and no clients: every /v1 request will be refused with 401"
                .to_owned(),
        );
    } else if config.api_keys.is_empty() {
        r.note(
            "[api] keys is empty: /v1 answers only the [api.clients.*] keys, and /status and \
             /metrics need [ops] listen (a client's key does not open them)"
                .to_owned(),
        );
    }
    if config.apps.is_empty() {
        r.note("no [apps.*] configured: nothing to serve".to_owned());
    }
    for (name, app) in &config.apps {
        let id = app.appid.as_str();
        let canonical = id.len() == 18
            && id.starts_with("wx")
            && id[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !canonical {
            r.note(format!(
                "apps.{name}.appid = {id:?} does not look like an AppID (wx + 16 hex digits); check 基本配置 → 开发者ID"
            ));
        }
        if app.mode == Mode::Plain {
            r.note(format!(
                "apps.{name}.mode = \"plain\": messages travel unencrypted; \"safe\" (安全模式) is recommended"
            ));
        }
        if app.reply_deadline_ms > 5000 {
            r.warning(format!(
                "apps.{name}.reply_deadline_ms = {}: WeChat stops waiting after 5000 ms and retries; \
                 a reply later than that reaches the user only on a retry, or as a 客服消息. 4500 is safe",
                app.reply_deadline_ms
            ));
        }
        if app.secret.is_none() {
            r.note(format!(
                "apps.{name} has no secret: callback only, no access_token, tickets or proxy"
            ));
        }
        if app.forward.is_none() && app.auto_reply == crate::config::AutoReply::default() {
            r.note(format!("apps.{name} has neither forward nor auto_reply: every message is answered `success`"));
        }
        advise_menu(name, app, r);
    }
}

/// Click replies and menu buttons that do not meet: a reply for a key no button sends is
/// never used (a typo, usually), and a button nobody answers leaves the user waiting.
fn advise_menu(name: &str, app: &AppConfig, r: &mut Report) {
    let Some(menu) = &app.menu else {
        if !app.auto_reply.clicks.is_empty() {
            r.note(format!(
                "apps.{name}.auto_reply.clicks is set but the file has no [apps.{name}.menu]: the keys cannot be checked against the menu"
            ));
        }
        return;
    };
    let keys = menu.click_keys();
    for key in app.auto_reply.clicks.keys() {
        if !keys.contains(&key.as_str()) {
            r.warning(format!(
                "apps.{name}.auto_reply.clicks.{key:?}: no click button of [apps.{name}.menu] has this key, so this reply is never sent"
            ));
        }
    }
    if app.forward.is_none() {
        for key in keys {
            if !app.auto_reply.clicks.contains_key(key) {
                r.note(format!(
                    "apps.{name}.menu: the click button with key {key:?} has no reply in auto_reply.clicks and there is no forward webhook: tapping it gets no answer"
                ));
            }
        }
    }
}

async fn check_live(config: &Config, r: &mut Report) {
    match open_store(&config.store).await {
        Ok(store) => r.ok(format!("the {} store opens", store.backend())),
        Err(e) => r.error(format!("the store does not open: {e}")),
    }
    let upstream = Upstream::new(http_client(), config.upstream.clone());
    // The URL may carry a password (`http://user:pass@proxy`): never print it as it is.
    let shown = redact::url(&config.upstream);
    let probe = upstream
        .http()
        .get(upstream.url("cgi-bin/token"))
        .send()
        .await;
    match probe {
        Ok(resp) => match resp.json::<serde_json::Value>().await {
            Ok(v) if v.get("errcode").is_some() => {
                r.ok(format!("upstream {shown} answers like WeChat"))
            }
            _ => {
                r.error(format!(
                    "upstream {shown} answered, but not like the WeChat API"
                ));
                return;
            }
        },
        Err(e) => {
            r.error(format!(
                "upstream {shown} is unreachable: {}",
                e.without_url()
            ));
            return;
        }
    }
    for (name, app) in &config.apps {
        if app.secret.is_none() {
            continue;
        }
        if app.token_api == TokenApi::Classic {
            r.note(format!(
                "apps.{name}: credentials not checked live, because a classic /cgi-bin/token call would retire \
                 the token a running wxmp serves (use token_api = \"stable\" to have them checked)"
            ));
            continue;
        }
        match upstream.access_token(app, false).await {
            Ok(_) => r.ok(format!(
                "apps.{name}: WeChat accepts the AppID, AppSecret and this server's IP"
            )),
            Err(e) => r.error(format!("apps.{name}: {}", e.explain())),
        }
    }
}
