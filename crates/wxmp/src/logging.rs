//! Where the log goes and how it looks: `--log-format text|json`, colour only for people.
//!
//! Logs go to stderr, so stdout stays for what a command prints as its result (`wxmp sign`,
//! `wxmp send`, the `serve --dev` banner). Text is the default, for people reading a terminal:
//! colour codes only when stderr is a terminal and `NO_COLOR` is unset, because a file or a
//! journal that receives `\x1b[2m` sequences is unreadable. JSON is for collectors: one object a
//! line, the event's fields as top-level keys (`{"level":"INFO","fields"…}` would make every
//! query dig one level deeper), plus the enclosing spans. `RUST_LOG` chooses what is logged in
//! both formats (default `info`).

use std::io::IsTerminal;

/// The log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only on a terminal without `NO_COLOR`.
    #[default]
    Text,
    /// One JSON object a line, fields as structured keys.
    Json,
}

/// Whether text logs may carry ANSI colour codes: stderr is a terminal and `NO_COLOR` is unset
/// or empty (<https://no-color.org>).
pub fn use_colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`); a malformed
/// `RUST_LOG` falls back to `info` rather than silencing the log.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests that call into main's code twice) is not an error worth dying for.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(use_colour()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
