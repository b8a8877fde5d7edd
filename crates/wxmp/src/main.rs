//! The `wxmp` command line: parse arguments and config, bind, hand over to the library.
//!
//! Exit codes, the same for every command (docs/operations.md says so to users): 0 success,
//! 1 a reported error, 2 bad usage (clap's own).
//! Errors go to stderr as one clear line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use wxmp::config::{parse_listen, Config, ProcessEnv};
use wxmp::emulator::{EmulatedApp, EmulatorConfig};
use wxmp::logging::{self, LogFormat};
use wxmp::{check, dev, send, server, signals};

/// mimalloc instead of glibc's malloc, for memory that comes back: after a flood of pushes the
/// expired dedup and replay records are freed, but glibc kept 1.4 GiB of the 2 GiB resident
/// (freed chunks pinned between live ones), while mimalloc returned to 90 MiB within 10 s of
/// the sweep (docs/performance.md, bench/flood_rss.sh). Throughput measured the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wxmp",
    version,
    about = "Everything a WeChat Official Account (公众号) needs on its developer server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The server: callback endpoints, 中控 and business API.
    Serve(ServeArgs),
    /// The offline WeChat platform (token, stable_token, tickets, 客服消息, other /cgi-bin/ calls).
    Emulator(EmulatorArgs),
    /// Act as WeChat: sign (and encrypt) a message or event, POST it, print the reply.
    Send(send::SendArgs),
    /// Validate the config and the live setup, explaining each problem.
    Check(CheckArgs),
    /// The 自定义菜单: compare the configured menu with the live one, publish it, or print the live one.
    #[command(subcommand)]
    Menu(wxmp::menu::command::MenuCommand),
    /// Offline signature calculators.
    #[command(subcommand)]
    Sign(SignCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// Config file [default: $WXMP_CONFIG, then wxmp.toml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to bind, `ip:port` or `host:port` (overrides the config's `listen`).
    #[arg(long, value_parser = parse_listen)]
    listen: Option<SocketAddr>,
    /// No config: an in-process emulator, an app `demo`, SQLite under ./wxmp-data/.
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    /// Log line format on stderr: `text` (colour only on a terminal, NO_COLOR respected) or
    /// `json` (one object a line). RUST_LOG filters, e.g. RUST_LOG=wxmp=debug.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Args)]
struct EmulatorArgs {
    /// Address to bind, `ip:port` or `host:port`.
    #[arg(long, default_value = "127.0.0.1:9800", value_parser = parse_listen)]
    listen: SocketAddr,
    /// An app as APPID:SECRET (repeatable). Default: the dev app wx0123456789abcdef:wxmp-demo-secret.
    #[arg(long = "app")]
    apps: Vec<EmulatedApp>,
    /// access_token lifetime in seconds.
    #[arg(long, default_value_t = 7200)]
    token_lifetime: u64,
    /// Seconds a superseded token keeps working.
    #[arg(long, default_value_t = 300)]
    overlap: u64,
    /// Ticket lifetime in seconds.
    #[arg(long, default_value_t = 7200)]
    ticket_lifetime: u64,
    /// /cgi-bin/token calls per app per day.
    #[arg(long, default_value_t = 2000)]
    daily_token_quota: u32,
    /// Log line format on stderr: `text` or `json` (one object a line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Args)]
struct CheckArgs {
    /// Config file [default: $WXMP_CONFIG, then wxmp.toml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Only validate the file; do not contact the upstream.
    #[arg(long)]
    offline: bool,
}

#[derive(Subcommand)]
enum SignCommand {
    /// The GET/POST `signature`: sha1 of sorted token, timestamp, nonce.
    Signature {
        /// The 服务器配置 Token (the one entered on the console, not an access_token).
        #[arg(long)]
        token: String,
        /// The `timestamp` query parameter, as WeChat sent it.
        #[arg(long)]
        timestamp: String,
        /// The `nonce` query parameter, as WeChat sent it.
        #[arg(long)]
        nonce: String,
    },
    /// The encrypted-mode `msg_signature` over an `Encrypt` value.
    MsgSignature {
        /// The 服务器配置 Token.
        #[arg(long)]
        token: String,
        /// The `timestamp` query parameter (or the reply's `TimeStamp`).
        #[arg(long)]
        timestamp: String,
        /// The `nonce` query parameter (or the reply's `Nonce`).
        #[arg(long)]
        nonce: String,
        /// The Base64 text of the `<Encrypt>` element, exactly as in the body.
        #[arg(long)]
        encrypt: String,
    },
    /// The JS-SDK `wx.config` signature (the URL's #fragment is dropped).
    Jssdk {
        /// The jsapi_ticket (GET /v1/apps/{app}/tickets/jsapi gives it).
        #[arg(long)]
        ticket: String,
        /// The `nonceStr` the page passes to wx.config.
        #[arg(long)]
        noncestr: String,
        /// The `timestamp` the page passes to wx.config (Unix seconds).
        #[arg(long)]
        timestamp: String,
        /// The page's full URL as the browser has it, query included.
        #[arg(long)]
        url: String,
    },
    /// The 卡券 cardExt signature: sha1 of the sorted values (empty code/openid included).
    CardExt {
        /// The wx_card api_ticket.
        #[arg(long)]
        ticket: String,
        /// The cardExt `nonce_str`.
        #[arg(long)]
        nonce_str: String,
        /// The cardExt `timestamp` (Unix seconds).
        #[arg(long)]
        timestamp: String,
        /// The card's `card_id`.
        #[arg(long)]
        card_id: String,
        /// The card `code`, when the card has a custom code.
        #[arg(long, default_value = "")]
        code: String,
        /// The user's OpenID, when the card may only go to one user.
        #[arg(long, default_value = "")]
        openid: String,
    },
}

fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("WXMP_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("wxmp.toml"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(match &cli.command {
        Command::Serve(args) => args.log_format,
        Command::Emulator(args) => args.log_format,
        _ => LogFormat::Text,
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wxmp: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wxmp: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) if args.dev => dev::serve_dev(args.listen)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
        Command::Emulator(args) => emulator(args).await.map(|()| ExitCode::SUCCESS),
        Command::Send(args) => send::run(args).await,
        Command::Check(args) => {
            let path = config_path(args.config);
            Ok(check::run(&path, &ProcessEnv, !args.offline).await)
        }
        Command::Menu(cmd) => Ok(wxmp::menu::command::run(
            cmd,
            config_path(None),
            &ProcessEnv,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )
        .await),
        Command::Sign(cmd) => {
            println!("{}", sign(cmd)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let path = config_path(args.config);
    let mut config = Config::load(&path, &ProcessEnv)
        .map_err(|e| anyhow::anyhow!("invalid config ({} problem(s)):\n{e}", e.problems.len()))?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let listen = config.listen;
    // Before anything can take time: from here on SIGHUP reloads instead of killing.
    let reloads = signals::Reloads::new();
    let mut built = server::Server::build(config).await?;
    built.listen_override = args.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let ops_listener = match built.state.config.ops.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ([ops] listen): {e}"))?,
        ),
        None => None,
    };
    // The bound address, not the configured one: with port 0 this is how a supervisor (or a
    // test) learns where the server is.
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, "wxmp serving");
    announce_callback_urls(&built.state.config, bound);
    if let Some(ops) = &ops_listener {
        tracing::info!(listen = %ops.local_addr()?, "ops listener: /status, /metrics, /healthz (no key)");
    }
    server::serve_reloading(
        built,
        server::Listeners {
            main: listener,
            ops: ops_listener,
        },
        Some(&path),
        &ProcessEnv,
        reloads,
        signals::terminate(),
    )
    .await?;
    Ok(())
}

/// One log line per app with its 服务器地址(URL), ready to paste into the console.
fn announce_callback_urls(config: &Config, bound: SocketAddr) {
    let base = format!("http://{bound}");
    for name in config.apps.keys() {
        let url = format!("{base}/wx/{name}");
        tracing::info!(app = %name, %url, "callback URL (服务器地址)");
    }
    if !config.apps.is_empty() && !matches!(bound.port(), 80 | 443) {
        tracing::info!(
            "WeChat only calls ports 80 and 443: in the console, enter the https:// URL of the \
             proxy in front of this port, with the same /wx/{{app}} path"
        );
    }
}

async fn emulator(args: EmulatorArgs) -> anyhow::Result<()> {
    let mut config = if args.apps.is_empty() {
        EmulatorConfig::demo()
    } else {
        EmulatorConfig {
            apps: args.apps,
            ..EmulatorConfig::default()
        }
    };
    config.token_lifetime = Duration::from_secs(args.token_lifetime);
    config.overlap = Duration::from_secs(args.overlap);
    config.ticket_lifetime = Duration::from_secs(args.ticket_lifetime);
    config.daily_token_quota = args.daily_token_quota;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    // In JSON mode every stderr line must parse: the tracing event below carries the address.
    if args.log_format == LogFormat::Text {
        eprintln!(
            "wxmp emulator listening on http://{}",
            listener.local_addr()?
        );
    }
    wxmp::emulator::run(listener, config, signals::terminate()).await?;
    Ok(())
}

fn sign(cmd: SignCommand) -> anyhow::Result<String> {
    use wxmp_proto::signature::{self, Token};
    let token = |t: &str| Token::new(t).map_err(|_| anyhow::anyhow!("--token must not be empty"));
    Ok(match cmd {
        SignCommand::Signature {
            token: t,
            timestamp,
            nonce,
        } => signature::signature(&token(&t)?, &timestamp, &nonce).to_string(),
        SignCommand::MsgSignature {
            token: t,
            timestamp,
            nonce,
            encrypt,
        } => signature::msg_signature(&token(&t)?, &timestamp, &nonce, &encrypt).to_string(),
        SignCommand::Jssdk {
            ticket,
            noncestr,
            timestamp,
            url,
        } => wxmp_proto::jssdk::jsapi_signature(&ticket, &noncestr, &timestamp, &url).to_string(),
        SignCommand::CardExt {
            ticket,
            nonce_str,
            timestamp,
            card_id,
            code,
            openid,
        } => wxmp_proto::jssdk::card_ext_signature(&wxmp_proto::jssdk::CardExt {
            api_ticket: &ticket,
            nonce_str: &nonce_str,
            timestamp: &timestamp,
            card_id: &card_id,
            code: &code,
            openid: &openid,
        })
        .to_string(),
    })
}
