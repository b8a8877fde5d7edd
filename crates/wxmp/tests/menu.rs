//! `wxmp menu diff|push|pull` as a user runs them: the real binary, a config file, the
//! emulator as WeChat. Exit codes, what is printed, what reaches the emulator, and the
//! round trip: what `pull` prints, `push` publishes unchanged.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::{json, Value};
use wxmp::config::ProcessEnv;
use wxmp::emulator::{EmulatedUser, EmulatorConfig, EmulatorHandle, Fault, FaultKind};

const MENU: &str = r#"
[[apps.demo.menu.button]]
name = "今日"
type = "click"
key = "V1001_TODAY"

[[apps.demo.menu.button]]
name = "更多"
[[apps.demo.menu.button.sub_button]]
name = "官网"
type = "view"
url = "https://example.com/"
[[apps.demo.menu.button.sub_button]]
name = "小程序"
type = "miniprogram"
url = "https://example.com/fallback"
appid = "wx286b93c14bbf93aa"
pagepath = "pages/index"
[[apps.demo.menu.button.sub_button]]
name = "扫码 \"quoted\""
type = "scancode_waitmsg"
key = "rselfmenu_0_0"

[[apps.demo.menu.conditionalmenu]]
matchrule = { tag_id = "7" }
[[apps.demo.menu.conditionalmenu.button]]
name = "VIP"
type = "click"
key = "VIP"

[[apps.demo.menu.conditionalmenu]]
matchrule = { client_platform_type = "2" }
[[apps.demo.menu.conditionalmenu.button]]
name = "Android"
type = "media_id"
media_id = "MEDIA_1"
"#;

/// The app section without a menu, against `upstream`, in a SQLite store under `dir` (shared
/// by the command runs, as with a real deployment).
fn base_config(dir: &Path, upstream: &str) -> String {
    format!(
        "upstream = \"{upstream}\"\n[store]\nbackend = \"sqlite\"\npath = \"{}\"\n\
         [apps.demo]\nappid = \"{APPID}\"\nsecret = \"{SECRET}\"\ntoken = \"pamtest\"\n",
        dir.join("wxmp.db").display()
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn wxmp(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wxmp"))
        .args(args)
        .output()
        .await
        .unwrap()
}

async fn menu(action: &str, config: &Path) -> (Option<i32>, String, String) {
    let out = wxmp(&[
        "menu",
        action,
        "--config",
        config.to_str().unwrap(),
        "--app",
        "demo",
    ])
    .await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `menu/get` straight from the emulator, with the app's current stable token.
async fn live(emu: &EmulatorHandle) -> Value {
    let token = emu.emulator().current_stable_token(APPID).unwrap();
    reqwest::get(format!(
        "{}/cgi-bin/menu/get?access_token={token}",
        emu.base_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_push_pull_and_the_round_trip() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let base = base_config(dir.path(), &emu.base_url());
    let config = write(dir.path(), "wxmp.toml", &format!("{base}{MENU}"));

    // No live menu yet: different, and the diff shows what push would add.
    let (code, out, err) = menu("diff", &config).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("+ name = \"今日\"") && out.contains("- button = []"),
        "{out}"
    );

    let (code, out, err) = menu("push", &config).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("menu pushed (2 button(s), 2 个性化菜单)"),
        "{out}"
    );
    let got = live(&emu).await;
    assert_eq!(
        got["menu"]["button"][1]["sub_button"][2]["name"],
        "扫码 \"quoted\""
    );
    // Published last to first: the first in the file is the newest, which WeChat matches first.
    assert_eq!(got["conditionalmenu"][0]["button"][0]["name"], "Android");
    assert_eq!(got["conditionalmenu"][1]["button"][0]["name"], "VIP");
    emu.emulator().set_user(
        APPID,
        "oBoth",
        EmulatedUser {
            tags: vec!["7".into()],
            platform: Some("2".into()),
        },
    );
    let token = emu.emulator().current_stable_token(APPID).unwrap();
    let tried: Value = reqwest::Client::new()
        .post(format!(
            "{}/cgi-bin/menu/trymatch?access_token={token}",
            emu.base_url()
        ))
        .json(&json!({"user_id": "oBoth"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        tried["button"][0]["name"], "VIP",
        "the first in the file wins: {tried}"
    );

    let (code, out, _) = menu("diff", &config).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("matches"), "{out}");
    let (code, out, _) = menu("push", &config).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("nothing to push"), "{out}");

    // pull → a config that push accepts unchanged.
    let (code, pulled, err) = menu("pull", &config).await;
    assert_eq!(code, Some(0), "{err}");
    let pulled_config = write(dir.path(), "pulled.toml", &format!("{base}{pulled}"));
    let (code, out, _) = menu("diff", &pulled_config).await;
    assert_eq!(code, Some(0), "pulled:\n{pulled}\ndiff:\n{out}");
    // Wipe the live menu, push the pulled file, pull again: the same text.
    let token = emu.emulator().current_stable_token(APPID).unwrap();
    reqwest::get(format!(
        "{}/cgi-bin/menu/delete?access_token={token}",
        emu.base_url()
    ))
    .await
    .unwrap();
    assert_eq!(live(&emu).await["errcode"], 46003);
    let (code, out, err) = menu("push", &pulled_config).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, again, _) = menu("pull", &pulled_config).await;
    assert_eq!(code, Some(0));
    assert_eq!(again, pulled);

    // A change: diff names it, push publishes it.
    let changed = write(
        dir.path(),
        "changed.toml",
        &format!(
            "{base}{}",
            MENU.replace("name = \"今日\"", "name = \"明日\"")
        ),
    );
    let (code, out, _) = menu("diff", &changed).await;
    assert_eq!(code, Some(1));
    assert!(
        out.contains("- name = \"今日\"\n+ name = \"明日\""),
        "{out}"
    );
    assert_eq!(menu("push", &changed).await.0, Some(0));
    assert_eq!(live(&emu).await["menu"]["button"][0]["name"], "明日");
    assert_eq!(
        live(&emu).await["conditionalmenu"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // button = []: no menu.
    let none = write(
        dir.path(),
        "none.toml",
        &format!("{base}[apps.demo.menu]\nbutton = []\n"),
    );
    let (code, out, _) = menu("push", &none).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("menu deleted"), "{out}");
    assert_eq!(live(&emu).await["errcode"], 46003);
    let (code, pulled, _) = menu("pull", &none).await;
    assert_eq!(code, Some(0));
    assert!(
        pulled.contains("[apps.demo.menu]\nbutton = []\n"),
        "{pulled}"
    );
    assert_eq!(menu("diff", &none).await.0, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_menu_wechat_would_refuse_never_leaves_the_machine() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let base = base_config(dir.path(), &emu.base_url());
    let bad = format!(
        "{base}{}",
        MENU.replace(
            "name = \"官网\"",
            "name = \"这是一个名字特别特别特别特别特别长的子菜单按钮名称\""
        )
        .replace("key = \"V1001_TODAY\"", "")
    );
    let config = write(dir.path(), "bad.toml", &bad);
    for action in ["push", "diff"] {
        let (code, out, err) = menu(action, &config).await;
        assert_eq!(
            code,
            Some(if action == "diff" { 2 } else { 1 }),
            "{out}{err}"
        );
        assert!(
            err.contains("apps.demo.menu.button[0] (line 10): a click button needs key")
                && err.contains("errcode 40019"),
            "{err}"
        );
        assert!(
            err.contains("apps.demo.menu.button[1].sub_button[0] (line 18): name")
                && err.contains("errcode 40025"),
            "{err}"
        );
        assert!(err.contains("nothing was sent to WeChat"), "{err}");
    }
    let stats = emu.emulator().stats(APPID);
    assert_eq!(stats.other_api_calls.attempts, 0, "{stats:?}");
    assert_eq!(stats.stable_token_calls.attempts, 0, "{stats:?}");

    // wxmp check refuses it for the same reasons.
    let out = wxmp(&["check", "--offline", "--config", config.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("errcode 40019") && report.contains("errcode 40025"),
        "{report}"
    );

    // The emulator judges the same menu the same way: the first problem, as WeChat answers.
    let token = {
        let fetched: Value = reqwest::Client::new()
            .post(format!("{}/cgi-bin/stable_token", emu.base_url()))
            .json(&json!({"grant_type":"client_credential","appid":APPID,"secret":SECRET}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        fetched["access_token"].as_str().unwrap().to_owned()
    };
    let body = json!({"button":[{"type":"click","name":"今日"}]});
    let refused: Value = reqwest::Client::new()
        .post(format!(
            "{}/cgi-bin/menu/create?access_token={token}",
            emu.base_url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["errcode"], 40019, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_trouble_are_explained() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let base = base_config(dir.path(), &emu.base_url());
    let config = write(dir.path(), "wxmp.toml", &format!("{base}{MENU}"));

    // WeChat's own refusal, in plain words.
    emu.emulator().inject(Fault {
        times: Some(1),
        ..Fault::new(
            wxmp::emulator::Endpoint::AnyApi,
            FaultKind::Errcode(48001, "api unauthorized rid: 1".into()),
        )
    });
    let (code, out, err) = menu("push", &config).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        err.contains("errcode 48001")
            && err.contains("接口权限")
            && err.contains("api unauthorized"),
        "{err}"
    );

    // No [menu] in the file: nothing to compare.
    let bare = write(dir.path(), "bare.toml", &base);
    let (code, _, err) = menu("diff", &bare).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("has no [apps.demo.menu]"), "{err}");
    assert_eq!(menu("push", &bare).await.0, Some(1));

    // WeChat unreachable: diff cannot tell, so 2; push and pull fail with 1.
    let gone = write(
        dir.path(),
        "gone.toml",
        // A store of its own: the shared one holds a token fetched from the live emulator.
        &format!(
            "{}{MENU}",
            base_config(&dir.path().join("other"), "http://127.0.0.1:1")
        ),
    );
    let (code, _, err) = menu("diff", &gone).await;
    assert_eq!(code, Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("wxmp: no access_token: cannot reach WeChat"),
        "{err}"
    );
    assert_eq!(menu("pull", &gone).await.0, Some(1));

    // An unknown app, and bad usage.
    let out = wxmp(&[
        "menu",
        "diff",
        "--config",
        config.to_str().unwrap(),
        "--app",
        "nope",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app \"nope\""));
    assert_eq!(wxmp(&["menu", "frobnicate"]).await.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_about_click_replies_no_button_sends() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "wxmp.toml",
        &format!(
            "{}{MENU}\n[apps.demo.auto_reply.clicks]\nV1001_TODAY = \"today\"\nV1001_TYPO = \"never\"\n",
            base_config(dir.path(), "http://127.0.0.1:1")
        ),
    );
    let report = wxmp::check::report(&config, &ProcessEnv, false).await;
    assert_eq!(report.errors, 0, "{:#?}", report.lines);
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.starts_with("warn:") && l.contains("V1001_TYPO")),
        "{:#?}",
        report.lines
    );
    assert!(
        !report
            .lines
            .iter()
            .any(|l| l.contains("\"V1001_TODAY\": no click")),
        "{:#?}",
        report.lines
    );
}
