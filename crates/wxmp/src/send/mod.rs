//! `wxmp send`: the offline replacement for WeChat's online debugging tool (接口调试工具). It
//! acts as WeChat against any callback URL: builds a message or event, signs it (and in
//! 兼容/安全模式 encrypts it), POSTs it, retries like WeChat when no answer comes within
//! 5 seconds, then verifies, decrypts and prints the passive reply. `--verify` sends the GET
//! `echostr` handshake instead.
//!
//! The command is split so that what matters can be tested without a network:
//! - [`build`] — the message XML, the signature and the encrypted envelope (pure);
//! - [`reply`] — the checks WeChat applies to the answer, and its readable rendering (pure);
//! - `http` — the clock, the randomness and the HTTP exchanges with WeChat's retry rule;
//! - this module — the command line, and [`execute`], which ties them together and writes
//!   to the `stdout`/`stderr` it is handed, so tests can read what a user would see.
//!
//! Retries: WeChat's docs say "总共重试三次" without saying whether that counts the first
//! try (WeChat's 被动回复 docs). wxmp reads it as three attempts in all — the reading that matches the
//! three deliveries developers report seeing for a slow server — so `--retries` (the tries
//! after the first) defaults to 2. Each retry repeats the message byte for byte (same
//! `MsgId`, same `CreateTime`) under a fresh `timestamp`, `nonce` and signature, so a
//! server's deduplication can be watched at work.

pub mod build;
mod http;
pub mod reply;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::error::ErrorKind;
use clap::{ArgGroup, Args, CommandFactory as _};
use url::Url;
use wxmp_proto::signature::Token;
use wxmp_proto::{AppId, EncodingAesKey, MsgCrypt};

use crate::config::{Config, Mode, ProcessEnv};
pub use build::{
    handshake_query, sign_request, Body, BuildError, Credentials, EventBody, Header, Outgoing,
    Security, SignedRequest, DEFAULT_ACCOUNT, DEFAULT_OPENID,
};
pub use reply::{describe, open_reply, warnings, Opened, OpenedReply, ReplyError};

/// WeChat's deadline for an answer, per attempt.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Retries after the first attempt: three attempts in all (see the module docs).
pub const DEFAULT_RETRIES: u32 = 2;

/// Arguments of `wxmp send`: where to send, the app's secrets, then what to send — a
/// message subcommand, `--xml FILE` or `--verify`.
#[derive(Debug, Clone, Args)]
#[command(
    group(ArgGroup::new("credentials").required(true).args(["config", "token"])),
    subcommand_value_name = "MESSAGE",
    subcommand_help_heading = "Messages",
    after_help = "Examples (the first one runs as shown against `wxmp serve --dev`):\n  \
        wxmp send --url http://127.0.0.1:8080/wx/demo --token pamtest --aes-key abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG --appid wx0123456789abcdef text ping\n  \
        wxmp send --url http://127.0.0.1:8080/wx/demo --config wxmp.toml --app demo event subscribe\n  \
        wxmp send --url http://127.0.0.1:8080/wx/demo --config wxmp.toml --verify\n  \
        wxmp send --url http://127.0.0.1:8080/wx/shop --token pamtest text ping    (an app in plain mode)"
)]
pub struct SendArgs {
    /// The callback URL (服务器地址), e.g. http://127.0.0.1:8080/wx/demo.
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub url: Url,

    /// Where the app's Token, EncodingAESKey, AppID and mode come from (boxed: `SendArgs`
    /// sits in `main`'s command enum next to much smaller variants).
    #[command(flatten)]
    pub credentials: Box<CredentialArgs>,

    /// FromUserName: the sender's OpenID.
    #[arg(long, value_name = "OPENID", default_value = DEFAULT_OPENID)]
    pub from: String,
    /// ToUserName: the account's original id.
    #[arg(long, value_name = "ID", default_value = DEFAULT_ACCOUNT)]
    pub to: String,
    /// MsgId, to repeat a message and watch deduplication [default: random].
    #[arg(long, value_name = "N")]
    pub msg_id: Option<u64>,
    /// CreateTime in Unix seconds [default: now].
    #[arg(long, value_name = "T")]
    pub create_time: Option<u64>,
    /// Send this hand-written push (plaintext XML; - for stdin) instead of a built message.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["msg_id", "create_time", "from", "to"])]
    pub xml: Option<PathBuf>,

    /// Tries after the first when no answer comes (timeout or connection error).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RETRIES,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
    /// Milliseconds to wait for each answer (WeChat waits 5 s).
    #[arg(long, value_name = "MS", hide = true, default_value_t = DEFAULT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout_ms: u64,
    /// Also print the reply XML: as received, and decrypted.
    #[arg(long)]
    pub raw: bool,
    /// Send the GET echostr handshake (服务器地址验证) instead of a message.
    #[arg(long, conflicts_with_all = ["xml", "msg_id", "create_time", "from", "to", "raw"])]
    pub verify: bool,

    /// What to send (boxed, like `credentials`).
    #[command(subcommand)]
    pub message: Option<Box<Body>>,
}

/// The app's secrets: from a wxmp config file, or given one by one.
#[derive(Debug, Clone, Args)]
pub struct CredentialArgs {
    /// Take Token, EncodingAESKey, AppID and mode from this wxmp config file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["token", "aes_key", "appid"])]
    pub config: Option<PathBuf>,
    /// The app in --config [default: NAME of a /wx/NAME URL, or the only app].
    #[arg(long, value_name = "NAME", requires = "config")]
    pub app: Option<String>,
    /// The 服务器配置 Token.
    #[arg(long, value_name = "TOKEN", value_parser = parse_token)]
    pub token: Option<Token>,
    /// The 43-character EncodingAESKey (compat and safe modes).
    #[arg(long, value_name = "KEY", requires = "appid", value_parser = parse_aes_key)]
    pub aes_key: Option<EncodingAesKey>,
    /// The AppID sealed into every encrypted message (compat and safe modes).
    #[arg(long, value_name = "APPID", requires = "aes_key", value_parser = parse_appid)]
    pub appid: Option<AppId>,
    /// 消息加解密方式 [default: the config's; else safe with --aes-key, plain without].
    #[arg(long, value_parser = PossibleValuesParser::new(["plain", "compat", "safe"]).map(to_mode))]
    pub mode: Option<Mode>,
}

fn parse_url(text: &str) -> Result<Url, String> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(url),
        Ok(_) => Err("must be an http:// or https:// URL".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_token(text: &str) -> Result<Token, String> {
    Token::new(text).map_err(|_| "must not be empty".to_owned())
}

fn parse_aes_key(text: &str) -> Result<EncodingAesKey, String> {
    EncodingAesKey::parse(text).map_err(|e| e.to_string())
}

fn parse_appid(text: &str) -> Result<AppId, String> {
    AppId::new(text).map_err(|_| "must be printable ASCII, like wx0123456789abcdef".to_owned())
}

/// Maps one of the possible values of `--mode` to the config's [`Mode`].
fn to_mode(text: String) -> Mode {
    match text.as_str() {
        "compat" => Mode::Compat,
        "safe" => Mode::Safe,
        _ => Mode::Plain,
    }
}

/// Why `wxmp send` stopped.
#[derive(Debug)]
pub enum SendError {
    /// The arguments do not make sense together (exit 2, printed by clap).
    Usage(clap::Error),
    /// A reported error (exit 1, one line on stderr).
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for SendError {
    fn from(error: anyhow::Error) -> Self {
        SendError::Failed(error)
    }
}

impl From<std::io::Error> for SendError {
    fn from(error: std::io::Error) -> Self {
        SendError::Failed(error.into())
    }
}

/// Runs `wxmp send` on the process's stdout and stderr: `Ok(2)` after a usage error,
/// `Ok(0)` on success, `Err` for a reported error (which `main` prints, exit 1).
pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    match execute(args, &mut out, &mut err).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(SendError::Usage(usage)) => {
            usage.print()?;
            Ok(ExitCode::from(2))
        }
        Err(SendError::Failed(error)) => Err(error),
    }
}

/// Does the work of `wxmp send`, writing the result to `out` and progress and warnings to
/// `err`.
pub async fn execute(
    args: SendArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<(), SendError> {
    let plan = Plan::resolve(args)?;
    let transport = http::Transport::new(&plan.url, plan.timeout)?;
    let message = match plan.what {
        What::Verify => {
            let verified =
                http::verify(&transport, &plan.url, &plan.credentials.token, err).await?;
            writeln!(
                out,
                "URL verified: {} answered 200 with the echostr {}",
                plan.url, verified.echostr
            )?;
            return Ok(());
        }
        What::Push(message) => message,
    };
    let answer = http::post(
        &transport,
        &plan.url,
        &plan.credentials,
        &message,
        plan.attempts,
        err,
    )
    .await?;
    if answer.status != reqwest::StatusCode::OK {
        return Err(anyhow::anyhow!(
            "the callback answered HTTP {}: {}{}",
            answer.status,
            http::excerpt(&answer.body),
            status_hint(answer.status.as_u16())
        )
        .into());
    }
    let opened = open_reply(&plan.credentials, &answer.body).map_err(|e| {
        anyhow::anyhow!("{e}; WeChat would show the user \"该公众号暂时无法提供服务，请稍后再试\"")
    })?;
    match opened {
        Opened::NoReply { empty } => {
            let what = if empty { "empty body" } else { "success" };
            writeln!(out, "(no reply: {what})")?;
        }
        Opened::Reply(opened) => {
            if plan.raw {
                writeln!(out, "received:\n{}", String::from_utf8_lossy(&answer.body))?;
                if opened.encrypted {
                    writeln!(out, "decrypted:\n{}", opened.xml)?;
                }
            }
            if !opened.encrypted && matches!(plan.credentials.security, Security::Compat(_)) {
                writeln!(err, "note: plaintext reply (accepted in compat mode)")?;
            }
            for warning in warnings(&opened, &message) {
                writeln!(err, "warning: {warning}")?;
            }
            write!(out, "{}", describe(&opened))?;
        }
    }
    Ok(())
}

/// The usual reason for a refusal, as wxmp's own callback and most SDKs use these statuses.
fn status_hint(status: u16) -> &'static str {
    match status {
        403 => " (usually a signature the server does not accept: check --token)",
        400 => " (usually a body the server cannot read: check --mode, --aes-key and --appid)",
        404 => " (no callback at this URL: check the path, e.g. /wx/APP)",
        _ => "",
    }
}

/// What to send: the handshake or a push.
enum What {
    Verify,
    Push(Outgoing),
}

/// The arguments, checked and resolved into what the exchange needs.
struct Plan {
    url: Url,
    credentials: Credentials,
    what: What,
    timeout: Duration,
    attempts: u32,
    raw: bool,
}

impl Plan {
    fn resolve(args: SendArgs) -> Result<Plan, SendError> {
        let what = match (args.message.as_deref(), &args.xml, args.verify) {
            (None, None, false) => {
                return Err(usage(
                    ErrorKind::MissingSubcommand,
                    "say what to send: a message (text, image, voice, video, shortvideo, \
                     location, link, event …), --xml FILE, or --verify",
                ))
            }
            (Some(_), Some(_), _) | (Some(_), _, true) => {
                return Err(usage(
                    ErrorKind::ArgumentConflict,
                    "a message subcommand cannot be combined with --xml or --verify",
                ))
            }
            (None, None, true) => What::Verify,
            (None, Some(path), _) => What::Push(read_xml(path)?),
            (Some(body), None, false) => {
                let header = Header {
                    to_user_name: args.to.clone(),
                    from_user_name: args.from.clone(),
                    create_time: args.create_time.unwrap_or_else(http::unix_now),
                    msg_id: match (body.is_event(), args.msg_id) {
                        (true, id) => id,
                        (false, Some(id)) => Some(id),
                        (false, None) => Some(http::fresh_msg_id()),
                    },
                };
                What::Push(Outgoing::build(&header, body).map_err(|e| {
                    let kind = match e {
                        BuildError::MsgIdOnEvent => ErrorKind::ArgumentConflict,
                        _ => ErrorKind::ValueValidation,
                    };
                    usage(kind, &e.to_string())
                })?)
            }
        };
        let given = &args.credentials;
        let credentials = match &given.config {
            Some(path) => {
                credentials_from_config(path, given.app.as_deref(), &args.url, given.mode)?
            }
            None => credentials_from_flags(given)?,
        };
        Ok(Plan {
            url: args.url,
            credentials,
            what,
            timeout: Duration::from_millis(args.timeout_ms),
            attempts: args.retries.saturating_add(1),
            raw: args.raw,
        })
    }
}

/// A usage error formatted by clap, with `wxmp send`'s usage line.
fn usage(kind: ErrorKind, message: &str) -> SendError {
    let mut command = SendCli::command();
    SendError::Usage(command.error(kind, message))
}

/// `wxmp send` as a command of its own, for formatting usage errors.
#[derive(clap::Parser)]
#[command(name = "wxmp send")]
struct SendCli {
    #[command(flatten)]
    args: SendArgs,
}

/// Reads a hand-written push (`-` is stdin).
fn read_xml(path: &std::path::Path) -> Result<Outgoing, SendError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the XML from stdin")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the XML file {}", path.display()))?
    };
    Outgoing::from_xml(&text)
        .with_context(|| format!("--xml {}", path.display()))
        .map_err(SendError::Failed)
}

/// Credentials given on the command line.
fn credentials_from_flags(args: &CredentialArgs) -> Result<Credentials, SendError> {
    let Some(token) = args.token.clone() else {
        return Err(usage(
            ErrorKind::MissingRequiredArgument,
            "pass --token (or --config)",
        ));
    };
    let crypt = match (&args.aes_key, &args.appid) {
        (Some(key), Some(appid)) => Some(MsgCrypt::new(key.clone(), appid.clone())),
        _ => None,
    };
    let mode = args.mode.unwrap_or(if crypt.is_some() {
        Mode::Safe
    } else {
        Mode::Plain
    });
    let security = security(mode, crypt).ok_or_else(|| {
        usage(
            ErrorKind::MissingRequiredArgument,
            "--mode compat and --mode safe need --aes-key and --appid",
        )
    })?;
    Ok(Credentials { token, security })
}

/// Credentials of an app in a wxmp config file; `mode` overrides the app's. Only that app's
/// callback keys are resolved, so `"$NAME"`s elsewhere in the file (API keys, AppSecrets)
/// need not be set on the machine sending.
fn credentials_from_config(
    path: &std::path::Path,
    app: Option<&str>,
    url: &Url,
    mode: Option<Mode>,
) -> Result<Credentials, SendError> {
    let invalid = |e: crate::config::ConfigError| {
        anyhow::anyhow!("invalid config: {}", e.problems.join("; "))
    };
    let names = Config::app_names(path).map_err(invalid)?;
    let name = match app {
        Some(name) => name.to_owned(),
        None => infer_app(&names, url)?,
    };
    let Some(app) = Config::load_callback_app(path, &ProcessEnv, &name).map_err(invalid)? else {
        return Err(anyhow::anyhow!(
            "{} has no app {name:?} (it has: {})",
            path.display(),
            names.join(", ")
        )
        .into());
    };
    let mode = mode.unwrap_or(app.mode);
    let security = security(mode, app.crypt.clone()).ok_or_else(|| {
        anyhow::anyhow!(
            "app {name:?} has no encoding_aes_key in {}, which {} mode needs",
            path.display(),
            mode_name(mode)
        )
    })?;
    Ok(Credentials {
        token: app.token.clone(),
        security,
    })
}

/// The app a `/wx/NAME` URL names, or the config's only app.
fn infer_app(names: &[String], url: &Url) -> anyhow::Result<String> {
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    let from_url = segments
        .windows(2)
        .find(|pair| pair[0] == "wx")
        .map(|pair| pair[1])
        .filter(|name| names.iter().any(|n| n == name));
    if let Some(name) = from_url {
        return Ok(name.to_owned());
    }
    match names {
        [only] => Ok(only.clone()),
        [] => anyhow::bail!("the config has no [apps.…]"),
        _ => anyhow::bail!(
            "name the app with --app (the config has: {})",
            names.join(", ")
        ),
    }
}

/// The mode as the config spells it.
fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Plain => "plain",
        Mode::Compat => "compat",
        Mode::Safe => "safe",
    }
}

/// The [`Security`] of `mode`, or `None` when an encrypted mode lacks its crypter.
fn security(mode: Mode, crypt: Option<MsgCrypt>) -> Option<Security> {
    match (mode, crypt) {
        (Mode::Plain, _) => Some(Security::Plain),
        (Mode::Compat, Some(crypt)) => Some(Security::Compat(crypt)),
        (Mode::Safe, Some(crypt)) => Some(Security::Safe(crypt)),
        (Mode::Compat | Mode::Safe, None) => None,
    }
}
