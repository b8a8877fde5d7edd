//! `/status`: one HTML page an operator reads at a glance, on a laptop or a phone.
//!
//! Server-rendered and self-contained: inline CSS and inline SVG, no script, no font, no
//! image, nothing fetched from elsewhere (the handler's Content-Security-Policy enforces it), so
//! it works on an air-gapped host and leaks nothing to a CDN. The page is a pure function of a
//! [`Snapshot`] taken from the state, which keeps the rendering testable with fixed times.
//!
//! It never shows a secret or a credential: the snapshot is built from the token core's
//! status (ages, expiry, counts, error texts), never from the credentials themselves, and
//! every text is HTML-escaped.

use std::fmt::Write as _;

use crate::config::{Mode, TokenApi};
use crate::ops::activity::{LastError, Minute, MINUTES};
use crate::state::AppState;
use crate::token::KindStatus;

/// How often the page reloads itself.
pub const REFRESH_S: u32 = 30;

/// Daily quota of `/cgi-bin/token` for an ordinary account.
const CLASSIC_QUOTA: u64 = 2000;
/// Daily quota of `/cgi-bin/stable_token`.
const STABLE_QUOTA: u64 = 500_000;

/// Everything the page shows, taken at one instant.
pub struct Snapshot {
    /// Unix ms when taken.
    pub now_ms: u64,
    /// The store backend's name.
    pub store: &'static str,
    /// Whether the store answered its last probe or operation.
    pub store_up: bool,
    /// Per app, in name order.
    pub apps: Vec<AppSnapshot>,
}

/// One app on the page.
pub struct AppSnapshot {
    /// The configured name.
    pub name: String,
    /// The AppID (public: it appears in every JS-SDK page).
    pub appid: String,
    /// 消息加解密方式.
    pub mode: Mode,
    /// Which token endpoint.
    pub token_api: TokenApi,
    /// False for a callback-only app.
    pub has_secret: bool,
    /// The access_token's status.
    pub access_token: KindStatus,
    /// Ticket calls today: jsapi, wx_card.
    pub ticket_calls_today: u64,
    /// Foreign refreshes seen by any instance (from the store; filled in by the handler,
    /// since the snapshot itself is taken without I/O).
    pub foreign_refreshes: Option<u64>,
    /// The last error (token, webhook or store), newest first among sources.
    pub last_error: Option<LastError>,
    /// Callbacks in the last hour by outcome.
    pub last_hour: Vec<(&'static str, u64)>,
    /// 24 hours, oldest minute first.
    pub timeline: Vec<Minute>,
}

impl Snapshot {
    /// Takes the snapshot from the running server.
    pub fn take(state: &AppState, now_ms: u64) -> Snapshot {
        let status = state.tokens.status();
        let activity = &state.metrics.activity;
        let apps = state
            .config
            .apps
            .iter()
            .map(|(name, app)| {
                let kinds = status.get(name);
                let kind = |k: &str| kinds.and_then(|m| m.get(k)).cloned().unwrap_or_default();
                let access_token = kind("access_token");
                let ticket_calls_today =
                    kind("jsapi").upstream_calls_today + kind("wx_card").upstream_calls_today;
                // The activity log has the last error with its time; the token core's is the
                // fallback for an error recorded before this page's bookkeeping saw one.
                let last_error = activity.last_error(name).or_else(|| {
                    access_token.last_error.as_ref().map(|text| LastError {
                        at_ms: now_ms,
                        source: "access_token".to_owned(),
                        text: text.clone(),
                    })
                });
                AppSnapshot {
                    name: name.clone(),
                    appid: app.appid.as_str().to_owned(),
                    mode: app.mode,
                    token_api: app.token_api,
                    has_secret: app.secret.is_some(),
                    access_token,
                    ticket_calls_today,
                    foreign_refreshes: None,
                    last_error,
                    last_hour: activity.last_hour(name, now_ms),
                    timeline: activity.timeline(name, now_ms),
                }
            })
            .collect();
        Snapshot {
            now_ms,
            store: state.tokens.store().backend(),
            store_up: state.metrics.store_is_up(),
            apps,
        }
    }
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `h:mm:ss`, the way a countdown reads.
pub fn clock(seconds: u64) -> String {
    format!(
        "{}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// A duration in the largest fitting units: `42 s`, `8 min`, `3 h 5 min`, `2 d 4 h`.
pub fn span(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        3600..=86_399 if (seconds / 60).is_multiple_of(60) => format!("{} h", seconds / 3600),
        3600..=86_399 => format!("{} h {} min", seconds / 3600, seconds / 60 % 60),
        _ if (seconds / 3600).is_multiple_of(24) => format!("{} d", seconds / 86_400),
        _ => format!("{} d {} h", seconds / 86_400, seconds / 3600 % 24),
    }
}

/// Unix ms as `2026-11-27 15:54:07 UTC`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mode_words(mode: Mode) -> &'static str {
    match mode {
        Mode::Plain => "plain mode (明文)",
        Mode::Compat => "compatible mode (兼容)",
        Mode::Safe => "safe mode (安全)",
    }
}

fn reason_words(reason: &str) -> &'static str {
    match reason {
        "proactive" => "ahead of expiry",
        "passive" => "a business server reported it stale",
        "empty_store" => "none was stored (first start, or the store was emptied)",
        "force_refresh" => "forced: a stale report while WeChat kept returning the same token",
        "foreign_suspected" => "WeChat rejected it: someone else refreshed with the AppSecret",
        _ => "other",
    }
}

fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "replied" | "no_reply" | "verified" | "duplicate" | "late_reply_sent" => "ok",
        "deadline" | "abandoned" | "other" => "warn",
        _ => "bad",
    }
}

const STYLE: &str = r#"
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2430;--mute:#667085;--line:#e4e7ec;--ok:#12b76a;--warn:#f79009;--bad:#d92d20;--blue:#2e90fa;--bar:#eaecf0}
@media (prefers-color-scheme:dark){:root{--bg:#0f1217;--card:#181c23;--ink:#e6e8ec;--mute:#98a2b3;--line:#2a303a;--bar:#2a303a}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.45 system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif}
header{padding:16px 20px 4px}
h1{font-size:20px;margin:0 0 4px}
header p{margin:0;color:var(--mute);font-size:13px}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,460px),1fr));gap:16px;padding:16px 20px 24px}
section.app{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:16px 18px}
h2{font-size:18px;margin:0;display:flex;flex-wrap:wrap;gap:8px;align-items:baseline}
h2 .mode{font-size:12px;font-weight:500;color:var(--mute);border:1px solid var(--line);border-radius:99px;padding:1px 8px}
.meta{color:var(--mute);font-size:13px;margin:2px 0 12px;overflow-wrap:anywhere}
.token{margin:8px 0 12px}
.token .big{font-size:28px;font-weight:650;font-variant-numeric:tabular-nums;letter-spacing:.5px}
.bar{height:10px;background:var(--bar);border-radius:99px;overflow:hidden;margin:6px 0}
.bar>span{display:block;height:100%;background:var(--ok);border-radius:99px}
.bar.warn>span{background:var(--warn)}.bar.bad>span{background:var(--bad)}
.bar.thin{height:6px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 14px;margin:0 0 12px}
dt{color:var(--mute);font-size:13px;padding-top:1px}
dd{margin:0;min-width:0;overflow-wrap:anywhere}
.err{color:var(--bad)}.ok{color:var(--ok)}.mute{color:var(--mute)}
.chips{display:flex;flex-wrap:wrap;gap:6px}
.chip{font-size:12px;border-radius:99px;padding:1px 8px;border:1px solid var(--line)}
.chip.ok{color:var(--ok)}.chip.warn{color:var(--warn)}.chip.bad{color:var(--bad)}
figure{margin:0}
svg.timeline{width:100%;height:72px;display:block;background:var(--bg);border-radius:6px}
.axis{display:flex;justify-content:space-between;color:var(--mute);font-size:11px;margin-top:2px}
figcaption{color:var(--mute);font-size:12px;margin-top:4px}
.key{display:inline-block;width:10px;height:10px;border-radius:2px;vertical-align:-1px;margin:0 3px 0 8px}
footer{color:var(--mute);font-size:12px;padding:0 20px 20px}
@media (max-width:520px){main{padding:10px;gap:10px}header{padding:12px 12px 0}dl{grid-template-columns:1fr;gap:0 0}dt{margin-top:6px}}
"#;

/// The whole page.
pub fn render(s: &Snapshot) -> String {
    let mut page = String::with_capacity(16 * 1024);
    let store_state = if s.store_up {
        "<span class=\"ok\">up</span>"
    } else {
        "<span class=\"err\">unreachable</span>"
    };
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <title>wxmp status</title><style>{STYLE}</style></head><body>\
         <header><h1>wxmp status</h1><p>wxmp {version} · {time} · store {store}: {store_state} · \
         this page reloads every {REFRESH_S} s</p></header><main>",
        version = env!("CARGO_PKG_VERSION"),
        time = utc(s.now_ms),
        store = s.store,
    );
    if s.apps.is_empty() {
        page.push_str("<section class=\"app\"><h2>No apps configured</h2><p class=\"meta\">Add an [apps.NAME] section to the config.</p></section>");
    }
    for app in &s.apps {
        render_app(&mut page, app, s.now_ms);
    }
    page.push_str(
        "</main><footer>Counts are this instance's, since it started. WeChat's daily quota is \
         per AppID, shared by every caller of that AppID. No token or secret is shown on this \
         page.</footer></body></html>",
    );
    page
}

fn render_app(page: &mut String, app: &AppSnapshot, now_ms: u64) {
    let name = esc(&app.name);
    let api = match app.token_api {
        TokenApi::Stable => "stable_token",
        TokenApi::Classic => "classic token",
    };
    let _ = write!(
        page,
        "<section class=\"app\" id=\"app-{name}\"><h2><span class=\"name\">{name}</span>\
         <span class=\"mode\">{mode}</span></h2><p class=\"meta\">AppID {appid} · {api} · \
         callback URL /wx/{name}</p>",
        mode = mode_words(app.mode),
        appid = esc(&app.appid),
    );
    render_token(page, app);
    page.push_str("<dl>");
    if app.has_secret {
        let t = &app.access_token;
        let last = match (t.last_refresh_ms, t.last_refresh_reason) {
            (Some(at), reason) => format!(
                "{} ago ({}) — {}",
                span(now_ms.saturating_sub(at) / 1000),
                utc(at),
                reason.map_or("", reason_words)
            ),
            (None, _) if t.expires_in_s.is_some() => {
                "by another instance, or before this one started (taken from the store)".to_owned()
            }
            (None, _) => "not yet".to_owned(),
        };
        let _ = write!(page, "<dt>Last refresh</dt><dd>{}</dd>", esc(&last));
        let quota = match app.token_api {
            TokenApi::Stable => STABLE_QUOTA,
            TokenApi::Classic => CLASSIC_QUOTA,
        };
        let calls = t.upstream_calls_today;
        let pct = (calls as f64 / quota as f64 * 100.0).min(100.0);
        let class = if pct >= 80.0 {
            "bad"
        } else if pct >= 50.0 {
            "warn"
        } else {
            ""
        };
        let _ = write!(
            page,
            "<dt>Token calls today</dt><dd><span class=\"calls\">{}</span> of {} ({}’s daily quota); \
             tickets: {}<div class=\"bar thin {class}\"><span style=\"width:{pct:.1}%\"></span></div></dd>",
            grouped(calls),
            grouped(quota),
            match app.token_api {
                TokenApi::Stable => "/cgi-bin/stable_token",
                TokenApi::Classic => "/cgi-bin/token",
            },
            app.ticket_calls_today,
        );
        if let Some(n) = app.foreign_refreshes {
            let class = if n > 0 { "err" } else { "ok" };
            let _ = write!(
                page,
                "<dt>Foreign refreshes</dt><dd class=\"{class}\">{n}{}</dd>",
                if n > 0 {
                    " — someone else holds the AppSecret and fetched a token"
                } else {
                    ""
                }
            );
        }
    }
    match &app.last_error {
        Some(e) => {
            let _ = write!(
                page,
                "<dt>Last error</dt><dd class=\"err last-error\">{} ago, {}: {}</dd>",
                span(now_ms.saturating_sub(e.at_ms) / 1000),
                esc(&e.source),
                esc(&e.text)
            );
        }
        None => page.push_str("<dt>Last error</dt><dd class=\"ok last-error\">none</dd>"),
    }
    page.push_str("<dt>Callbacks, last hour</dt><dd><div class=\"chips\">");
    if app.last_hour.is_empty() {
        page.push_str("<span class=\"mute\">none</span>");
    }
    for (outcome, n) in &app.last_hour {
        let _ = write!(
            page,
            "<span class=\"chip {}\">{} {}</span>",
            outcome_class(outcome),
            outcome.replace('_', " "),
            grouped(*n)
        );
    }
    page.push_str("</div></dd></dl>");
    render_timeline(page, &app.timeline);
    page.push_str("</section>");
}

fn render_token(page: &mut String, app: &AppSnapshot) {
    if !app.has_secret {
        page.push_str(
            "<div class=\"token\"><p class=\"mute\">Callback only: no secret is configured, so \
             there is no access_token, ticket or proxy for this app.</p></div>",
        );
        return;
    }
    let t = &app.access_token;
    match (t.expires_in_s, t.age_s) {
        (Some(left), age) => {
            let age = age.unwrap_or(0);
            // Both are whole seconds rounded down: 7199 is WeChat's 7200.
            let life = ((left + age + 30) / 60 * 60).max(1);
            let pct = left as f64 / life as f64 * 100.0;
            let class = if left == 0 {
                "bad"
            } else if pct < 20.0 {
                "warn"
            } else {
                ""
            };
            let _ = write!(
                page,
                "<div class=\"token\"><div class=\"mute\">access_token time left</div>\
                 <div class=\"big time-left\">{}</div>\
                 <div class=\"bar {class}\" role=\"meter\" aria-valuemin=\"0\" aria-valuemax=\"{life}\" \
                 aria-valuenow=\"{left}\"><span style=\"width:{pct:.1}%\"></span></div>\
                 <div class=\"mute\">age {} of a {} lifetime</div></div>",
                clock(left),
                span(age),
                span(life)
            );
        }
        (None, _) => page.push_str(
            "<div class=\"token\"><div class=\"mute\">access_token time left</div>\
             <div class=\"big err time-left\">none held</div>\
             <div class=\"bar bad\"><span style=\"width:0%\"></span></div></div>",
        ),
    }
}

/// The 24-hour strip: callbacks per minute as grey bars (scaled to the busiest minute),
/// refreshes as blue ticks along the top, errors as red ticks below them.
fn render_timeline(page: &mut String, minutes: &[Minute]) {
    let max = minutes.iter().map(|m| m.callbacks).max().unwrap_or(0);
    let (mut callbacks, mut refreshes, mut errors) = (String::new(), String::new(), String::new());
    let (mut total_cb, mut total_rf, mut total_er) = (0u64, 0u64, 0u64);
    let offset = MINUTES.saturating_sub(minutes.len());
    // A little room on both sides, so the first and the current minute are drawn whole.
    let width = MINUTES + 4;
    for (i, m) in minutes.iter().enumerate() {
        let x = offset + i;
        if m.callbacks > 0 {
            let h = (f64::from(m.callbacks) / f64::from(max.max(1)) * 44.0).max(2.0);
            let _ = write!(callbacks, "M{x} 72V{:.1}", 72.0 - h);
            total_cb += u64::from(m.callbacks);
        }
        if m.refreshes > 0 {
            let _ = write!(refreshes, "M{x} 1V9");
            total_rf += u64::from(m.refreshes);
        }
        if m.errors > 0 {
            let _ = write!(errors, "M{x} 12V20");
            total_er += u64::from(m.errors);
        }
    }
    let _ = write!(
        page,
        "<figure><svg class=\"timeline\" viewBox=\"-2 0 {width} 72\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"Last 24 hours: {total_cb} callbacks, {total_rf} refreshes, {total_er} errors\">\
         <path d=\"M360 0V72M720 0V72M1080 0V72\" stroke=\"currentColor\" stroke-opacity=\".12\" stroke-width=\"1\" vector-effect=\"non-scaling-stroke\"/>\
         <path d=\"{callbacks}\" stroke=\"#98a2b3\" stroke-width=\"2\" vector-effect=\"non-scaling-stroke\"/>\
         <path d=\"{refreshes}\" stroke=\"#2e90fa\" stroke-width=\"3\" vector-effect=\"non-scaling-stroke\"/>\
         <path d=\"{errors}\" stroke=\"#d92d20\" stroke-width=\"3\" vector-effect=\"non-scaling-stroke\"/></svg>\
         <div class=\"axis\"><span>24 h ago</span><span>18 h</span><span>12 h</span><span>6 h</span><span>now</span></div>\
         <figcaption><span class=\"key\" style=\"background:#98a2b3\"></span>callbacks per minute (busiest: {max})\
         <span class=\"key\" style=\"background:#2e90fa\"></span>refreshes {total_rf}\
         <span class=\"key\" style=\"background:#d92d20\"></span>errors {total_er}</figcaption></figure>"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(clock(7199), "1:59:59");
        assert_eq!(clock(59), "0:00:59");
        assert_eq!(span(42), "42 s");
        assert_eq!(span(3 * 3600 + 5 * 60), "3 h 5 min");
        assert_eq!(span(7200), "2 h");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_714_036_504_000), "2024-04-25 09:15:04 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(grouped(500_000), "500,000");
        assert_eq!(grouped(12), "12");
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
