//! `wxmp serve --dev`: the whole product on one machine with no config and no network.
//!
//! It starts the emulator in-process on a free loopback port, configures one app `demo` in
//! safe mode pointed at it, keeps tokens in SQLite under `./wxmp-data/`, and prints what a
//! newcomer needs: the callback URL, the API key, `wxmp send` lines that work as printed and
//! curl lines for the token and JS-SDK endpoints. The demo app also has what a console would
//! have given it: a small 自定义菜单 (published to the emulator at start) whose `click` buttons
//! are answered by `auto_reply.clicks`, and a `contains` keyword rule; the banner shows how to
//! try both. Each run starts from an empty dev database, because each run's emulator is new
//! and knows no earlier token. The dev credentials are fixed and public (they are the official
//! sample's Token and EncodingAESKey), which is fine for a server that only listens on
//! loopback and talks to an emulator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use url::Url;
use wxmp_proto::signature::Token;
use wxmp_proto::{AppId, EncodingAesKey, MsgCrypt};

use crate::config::{
    AppConfig, AutoReply, Config, KeywordRule, MatchMode, Mode, Pick, Secret, StoreConfig,
    TokenApi, DEFAULT_LISTEN,
};
use crate::emulator::{Emulator, EmulatorConfig, DEMO_APPID, DEMO_SECRET};
use crate::menu::api::MenuApi;
use crate::menu::{AppMenu, Button};
use crate::reply::Outbound;
use crate::{server, signals};

/// The dev app's 服务器配置 Token.
pub const DEV_TOKEN: &str = "pamtest";
/// The dev app's EncodingAESKey (the official sample key).
pub const DEV_ENCODING_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// The dev business-API key.
pub const DEV_API_KEY: &str = "wxmp-dev-api-key-0123456789";
/// The dev SQLite file.
pub const DEV_DB: &str = "wxmp-data/wxmp-dev.db";
/// The key of the dev menu's `click` button "今日".
pub const DEV_CLICK_KEY: &str = "V1001_TODAY";

/// The dev configuration, pointed at an emulator at `upstream`.
///
/// OAuth 网页授权 runs against the emulator too: `open_platform` is the emulator, `public_url`
/// is this server (the bound address, loopback when bound to every interface), and the
/// demo app's `oauth_domains` accept that host and `localhost`, so the demo page at
/// [`crate::oauth::demo::PATH`] can send the browser round the whole flow.
pub fn dev_config(listen: SocketAddr, upstream: Url) -> anyhow::Result<Config> {
    let public_url = public_base(listen)?;
    let appid = AppId::new(DEMO_APPID)?;
    let key = EncodingAesKey::parse(DEV_ENCODING_AES_KEY)?;
    let mut keywords = BTreeMap::new();
    keywords.insert("ping".to_owned(), "pong".to_owned());
    keywords.insert(
        "help".to_owned(),
        "Try: ping, 你好, or anything else. Replies come from [apps.demo.auto_reply] in wxmp.toml."
            .to_owned(),
    );
    keywords.insert(
        "你好".to_owned(),
        "你好！这是 wxmp 的演示公众号。".to_owned(),
    );
    let price = KeywordRule {
        match_mode: MatchMode::Contains,
        keywords: vec!["price".to_owned(), "价格".to_owned()],
        replies: vec![Outbound::text(
            "Everything in this demo is free. (A `contains` rule: any message with \"price\" or 价格 gets this.)",
        )],
        pick: Pick::All,
    };
    let mut clicks = BTreeMap::new();
    clicks.insert(
        DEV_CLICK_KEY.to_owned(),
        Outbound::text(
            "Today's pick: the wxmp demo. (The reply to the menu button with key V1001_TODAY.)",
        ),
    );
    let menu = AppMenu {
        button: vec![
            Button::click("今日", DEV_CLICK_KEY),
            Button::parent(
                "更多",
                vec![
                    Button::view("官网", "https://example.com/"),
                    Button::click("帮助", "HELP"),
                ],
            ),
        ],
        conditionalmenu: Vec::new(),
    };
    clicks.insert(
        "HELP".to_owned(),
        Outbound::text("Try: ping, a sentence with \"price\", or the menu."),
    );
    let demo = AppConfig {
        crypt: Some(MsgCrypt::new(key, appid.clone())),
        secret: Some(Secret::new(DEMO_SECRET)),
        mode: Mode::Safe,
        token_api: TokenApi::Stable,
        js_domains: vec!["example.com".to_owned()],
        // Hand-built: a config file could not name an IP address here, but the dev server is
        // reached by one.
        oauth_domains: vec![
            public_url.host_str().unwrap_or("127.0.0.1").to_owned(),
            "localhost".to_owned(),
        ],
        auto_reply: AutoReply {
            subscribe: Some("Welcome to the wxmp demo! Send `help`.".to_owned()),
            default: Some("Got it. (This is the demo's default auto-reply.)".to_owned()),
            keywords,
            rules: vec![price],
            clicks,
        },
        menu: Some(menu),
        ..AppConfig::new("demo", appid, Token::new(DEV_TOKEN)?)
    };
    let mut apps = BTreeMap::new();
    apps.insert("demo".to_owned(), Arc::new(demo));
    Ok(Config {
        api_keys: vec![Secret::new(DEV_API_KEY)],
        public_url: Some(public_url),
        open_platform: upstream.clone(),
        apps,
        ..Config::new(
            listen,
            upstream,
            StoreConfig::Sqlite {
                path: DEV_DB.into(),
            },
        )
    })
}

/// How a browser on this machine reaches a server bound to `bound`.
fn public_base(bound: SocketAddr) -> Result<Url, url::ParseError> {
    let ip = match bound.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let text = format!("http://{}", SocketAddr::new(ip, bound.port()));
    Url::parse(&text)
}

/// Runs the dev server until Ctrl-C.
pub async fn serve_dev(listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let emulator_listener = TcpListener::bind("127.0.0.1:0").await?;
    let emulator = Emulator::new(EmulatorConfig::demo())
        .spawn(emulator_listener)
        .await;
    let listen = match listen {
        Some(l) => l,
        None => DEFAULT_LISTEN.parse()?,
    };
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {listen}: {e} (pick another with --listen)")
    })?;
    let bound = listener.local_addr()?;
    let config = dev_config(bound, Url::parse(&emulator.base_url())?)?;
    forget_previous_run()?;
    let menu = config.app("demo").and_then(|a| a.menu.clone());
    let reloads = signals::Reloads::new();
    let built = server::Server::build(config).await?;
    // Published like `wxmp menu push` would, so the emulator's menu/get shows it.
    if let Some(menu) = menu {
        let api = MenuApi::new(built.state.tokens.clone(), "demo");
        if let Err(e) = api.create(&menu.button).await {
            tracing::warn!(error = %e, "could not publish the demo menu to the emulator");
        }
    }
    print!("{}", banner(bound, &emulator.base_url()));
    let router = built
        .router()
        .merge(crate::oauth::demo::routes(built.state.clone(), "demo"));
    let serving = server::serve(
        listener,
        router,
        built.serve_options(),
        signals::terminate(),
    );
    let mut serving = std::pin::pin!(serving);
    let mut reloads = reloads;
    loop {
        tokio::select! {
            result = &mut serving => {
                result?;
                break;
            }
            () = reloads.recv() => tracing::info!(
                "SIGHUP received: serve --dev has no config file; nothing to reload"
            ),
        }
    }
    emulator.shutdown().await;
    Ok(())
}

/// Removes the previous dev run's SQLite file. Each run starts a new emulator, which knows
/// none of the tokens an earlier run stored; serving those would hand out tokens the
/// emulator answers with 40001.
fn forget_previous_run() -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = format!("{DEV_DB}{suffix}");
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot reset the dev database {path}: {e}"),
        }
    }
    Ok(())
}

/// What `serve --dev` prints: every line runnable as shown.
pub fn banner(bound: SocketAddr, emulator: &str) -> String {
    let base = format!("http://{bound}");
    let send = format!(
        "send --url {base}/wx/demo --token {DEV_TOKEN} --aes-key {DEV_ENCODING_AES_KEY} --appid {DEMO_APPID} --mode safe"
    );
    let public = public_base(bound).map_or_else(|_| base.clone(), |u| u.to_string());
    let oauth = format!(
        "{}{}",
        public.trim_end_matches('/'),
        crate::oauth::demo::PATH
    );
    format!(
        "\nwxmp dev server on {base}  (emulated WeChat at {emulator}; tokens in {DEV_DB})\n\
         \n  app `demo` (safe mode)  AppID {DEMO_APPID}  Token {DEV_TOKEN}\n  \
         EncodingAESKey {DEV_ENCODING_AES_KEY}\n\
         \n  Callback URL (服务器地址):  {base}/wx/demo\n  \
         Business API key:          {DEV_API_KEY}\n  \
         Status page:               {base}/status  (in a browser: any user name, the API key as password)\n  \
         OAuth 网页授权 demo:        {oauth}  (open it in a browser and sign in)\n\
         \nTry it (in another terminal):\n  \
         cargo run --release -- {send} text ping\n  \
         cargo run --release -- {send} text 'what is the price?'\n  \
         cargo run --release -- {send} event click --key {DEV_CLICK_KEY}\n  \
         curl -s -H 'Authorization: Bearer {DEV_API_KEY}' {base}/v1/apps/demo/proxy/cgi-bin/menu/get\n  \
         curl -s -H 'Authorization: Bearer {DEV_API_KEY}' {base}/v1/apps/demo/access_token\n  \
         curl -s -H 'Authorization: Bearer {DEV_API_KEY}' -H 'Content-Type: application/json' -d '{{\"url\":\"https://example.com/page\"}}' {base}/v1/apps/demo/jssdk/config\n  \
         curl -s -H 'Authorization: Bearer {DEV_API_KEY}' {base}/v1/apps\n\
         \nCtrl-C to stop.\n"
    )
}
