//! What may be printed of values that are secret or chosen by someone else.
//!
//! Two kinds of value reach logs and reports and must be shaped first. URLs from the config
//! (`upstream`, `forward`, a Redis or callback URL) may carry a password in their userinfo
//! (`http://user:pass@host`) or a secret in their query (`?access_token=…`): [`url`] keeps
//! what helps find a problem (scheme, host, port, path, parameter names) and masks the rest.
//! Text from a push (`FromUserName`, an unknown `MsgType`) is attacker-chosen: a 300 KB
//! `FromUserName` must not make a 300 KB log line, and a newline in it must not forge a
//! second one, so [`bounded`] cuts it at a character boundary and escapes control characters.
//! OpenIDs identify people, so they go to `debug` logs only, through [`openid`].

use std::fmt::{self, Write};

use url::Url;

/// What replaces a masked secret.
pub const MASK: &str = "***";

/// How many characters of an OpenID are logged (real ones have 28).
pub const OPENID_CHARS: usize = 32;

/// How many characters of any other untrusted value are logged.
pub const VALUE_CHARS: usize = 64;

/// `url` with its password and secret-looking query values masked, for printing.
///
/// The username stays (it helps tell two upstreams apart and is rarely secret); a password,
/// and the value of every query parameter whose name suggests a credential (`access_token`,
/// `secret`, `key`, `password`, `sig`…), become `***`.
pub fn url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some(MASK));
    }
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(name, value)| {
                let value = if secret_name(&name) {
                    MASK.to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // `***` is percent-encoded by the url crate in userinfo and query; show it as written.
    shown.to_string().replace("%2A%2A%2A", MASK)
}

/// Like [`url`] for text that may not parse as a URL (a config value being refused): a
/// parsable URL is redacted as such, otherwise everything between `://` and the last `@`
/// before the path is masked.
pub fn url_text(text: &str) -> String {
    if let Ok(parsed) = Url::parse(text) {
        if parsed.has_host() {
            return url(&parsed);
        }
    }
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &text[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => format!(
            "{}{MASK}{}",
            &text[..authority_start],
            &text[authority_start + at..]
        ),
        None => text.to_owned(),
    }
}

fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token", "secret", "key", "pass", "pwd", "auth", "sig", "ticket", "code",
    ]
    .iter()
    .any(|part| name.contains(part))
}

/// An untrusted value for a log line: at most `max` characters (then `…`), with control
/// characters escaped so it stays on one line. Displays without allocating.
pub fn bounded(value: &str, max: usize) -> Bounded<'_> {
    Bounded { value, max }
}

/// An OpenID (or any `FromUserName`) for a `debug` log line: see [`bounded`].
pub fn openid(value: &str) -> Bounded<'_> {
    bounded(value, OPENID_CHARS)
}

/// The [`Display`](fmt::Display) of [`bounded`].
#[derive(Debug, Clone, Copy)]
pub struct Bounded<'a> {
    value: &'a str,
    max: usize,
}

impl fmt::Display for Bounded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.value.chars().enumerate() {
            if i == self.max {
                return f.write_char('…');
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_query_secrets_are_masked() {
        let u = Url::parse("http://user:hunter2@wx.example.com:8080/base?access_token=abc&lang=zh")
            .unwrap();
        let shown = url(&u);
        assert_eq!(
            shown,
            "http://user:***@wx.example.com:8080/base?access_token=***&lang=zh"
        );
        assert!(!shown.contains("hunter2") && !shown.contains("abc"));
        let plain = Url::parse("https://api.weixin.qq.com").unwrap();
        assert_eq!(url(&plain), "https://api.weixin.qq.com/");
        let only_user = Url::parse("http://user@h/").unwrap();
        assert_eq!(url(&only_user), "http://user@h/");
        let secret = Url::parse("http://h/?AppSecret=s&client_key=k&x=1").unwrap();
        assert_eq!(url(&secret), "http://h/?AppSecret=***&client_key=***&x=1");
    }

    #[test]
    fn unparsable_url_text_loses_its_userinfo() {
        assert_eq!(url_text("ftp://u:p@host/x"), "ftp://u:***@host/x");
        assert_eq!(url_text("http://u:p@[bad/x"), "http://***@[bad/x");
        assert_eq!(url_text("not a url"), "not a url");
        assert_eq!(url_text("x://no-at/a@b"), "x://no-at/a@b");
    }

    #[test]
    fn untrusted_values_are_cut_and_kept_on_one_line() {
        let long = "o".repeat(300_000);
        let shown = openid(&long).to_string();
        assert_eq!(shown.chars().count(), OPENID_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(openid("oUser").to_string(), "oUser");
        assert_eq!(
            bounded("a\nINFO forged\r", 64).to_string(),
            "a\\nINFO forged\\r"
        );
        // Multi-byte characters are never split.
        assert_eq!(bounded("用户用户", 2).to_string(), "用户…");
    }
}
