//! What a config reload does to the 中控, in process: an app with unchanged credentials keeps
//! its token with no upstream call; a new secret keeps the held token (same account) and uses
//! the new secret for the next fetch; a new AppID is another account, whose token is fetched
//! afresh and never confused with the old one.

mod common;

use common::*;
use wxmp::config::{Secret, TokenApi};
use wxmp::emulator::EmulatorConfig;
use wxmp::server::Server;
use wxmp::store::Store;
use wxmp_proto::AppId;

const OTHER_APPID: &str = "wx9999999999999999";
const OTHER_SECRET: &str = "other-secret-0123456789";

#[tokio::test]
async fn a_reload_keeps_tokens_unless_the_account_changes() {
    let emu = emulator(EmulatorConfig::default().with_app(OTHER_APPID, OTHER_SECRET)).await;
    let upstream = emu.base_url();
    let mut server = Server::with_store(
        config(&upstream, vec![app(TokenApi::Stable)]),
        Store::memory(),
    );
    let tokens = server.state.tokens.clone();
    let first = tokens.access_token("demo").await.unwrap().value;
    let calls = || emu.emulator().stats(APPID).stable_token_calls.attempts;
    let before = calls();

    // Unchanged credentials, other settings changed: same token, no call.
    let mut edited = app(TokenApi::Stable);
    edited.reply_deadline_ms = 1234;
    let reloaded = server.reload(config(&upstream, vec![edited])).await;
    assert!(reloaded.apps.recredentialed.is_empty(), "{reloaded:?}");
    assert_eq!(server.state.config.apps["demo"].reply_deadline_ms, 1234);
    assert_eq!(tokens.access_token("demo").await.unwrap().value, first);
    assert_eq!(calls(), before);

    // A new (here: wrong) secret for the same AppID: the held token is still served.
    let mut new_secret = app(TokenApi::Stable);
    new_secret.secret = Some(Secret::new("a-secret-wechat-does-not-know"));
    let reloaded = server.reload(config(&upstream, vec![new_secret])).await;
    assert_eq!(reloaded.apps.recredentialed, vec!["demo".to_owned()]);
    assert_eq!(tokens.access_token("demo").await.unwrap().value, first);
    assert_eq!(calls(), before);

    // Another AppID under the same name: that account's token, not the old one.
    let mut other = app(TokenApi::Stable);
    other.appid = AppId::new(OTHER_APPID).unwrap();
    other.secret = Some(Secret::new(OTHER_SECRET));
    server.reload(config(&upstream, vec![other])).await;
    let switched = tokens.access_token("demo").await.unwrap().value;
    assert_ne!(switched, first);
    assert_eq!(
        Some(switched),
        emu.emulator().current_stable_token(OTHER_APPID)
    );

    // Removed: unknown from now on.
    let reloaded = server.reload(config(&upstream, vec![])).await;
    assert_eq!(reloaded.apps.removed, vec!["demo".to_owned()]);
    assert!(tokens.access_token("demo").await.is_err());
}

#[tokio::test]
async fn a_listen_given_on_the_command_line_is_no_change_at_reload() {
    let emu = emulator(EmulatorConfig::default()).await;
    let upstream = emu.base_url();
    let mut running = config(&upstream, vec![app(TokenApi::Stable)]);
    let from_command_line: std::net::SocketAddr = "127.0.0.1:18089".parse().unwrap();
    running.listen = from_command_line;
    let mut server = Server::with_store(running, Store::memory());
    server.listen_override = Some(from_command_line);

    // The file still says its own listen; `serve --listen` overrides it at reload too.
    let file = config(&upstream, vec![app(TokenApi::Stable)]);
    assert_ne!(file.listen, from_command_line);
    let reloaded = server.reload(file.clone()).await;
    assert!(reloaded.needs_restart.is_empty(), "{reloaded:?}");
    assert_eq!(server.state.config.listen, from_command_line);

    // Without an override, the same file is a listen change that needs a restart.
    server.listen_override = None;
    let reloaded = server.reload(file).await;
    assert_eq!(reloaded.needs_restart, vec!["listen"]);
}
