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

/// A WARN that would be written for every request while a condition lasts — the store
/// unreachable, say, which a push meets three or four times — written at most once per
/// interval, with the count of the occurrences it stands for. The soak of issue 12 saw 2,204
/// such lines in the 10 s Redis was down, which buries the one line that says what happened.
/// Metrics still count every occurrence.
#[derive(Debug)]
pub struct Throttle {
    every_ms: u64,
    /// When the last line was written, in ms since the Unix epoch; 0 before the first.
    last_ms: std::sync::atomic::AtomicU64,
    /// Occurrences not written since then.
    suppressed: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// At most one line every `every_ms` milliseconds.
    pub const fn every_ms(every_ms: u64) -> Self {
        Throttle {
            every_ms,
            last_ms: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether this occurrence is written: `Some(n)` with the `n` occurrences left unwritten
    /// since the last line, or `None` (counted for the next line).
    pub fn admit(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.admit_at(now)
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_ms.load(Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= self.every_ms;
        // One writer per interval, even when several threads find it due at once.
        if due
            && self
                .last_ms
                .compare_exchange(last, now_ms.max(1), Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Relaxed));
        }
        self.suppressed.fetch_add(1, Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn a_throttle_writes_once_per_interval_and_counts_the_rest() {
        let t = Throttle::every_ms(10_000);
        assert_eq!(
            t.admit_at(1_000),
            Some(0),
            "the first occurrence is written"
        );
        assert_eq!(t.admit_at(1_001), None);
        assert_eq!(t.admit_at(10_999), None);
        assert_eq!(
            t.admit_at(11_000),
            Some(2),
            "the next line says what it stood for"
        );
        assert_eq!(t.admit_at(11_000), None);
        assert_eq!(t.admit_at(30_000), Some(1));
        assert_eq!(t.admit_at(30_001), None);
    }
}
