//! `[apps.NAME.auto_reply]`: the console's 自动回复, in full.
//!
//! Three kinds of answer, as the console had them, plus menu clicks:
//! - `subscribe` (被关注回复) and `default` (收到消息回复): text.
//! - `keywords`: the first, simple form of 关键词回复 — a whole-message match to a text.
//! - `[[rules]]`: 关键词回复 in full — several keywords, `match = "exact"` (全匹配) or
//!   `"contains"` (半匹配), and one `reply` or several `replies`, all of them in order
//!   (`pick = "all"`, the console's 回复全部) or one at random (`pick = "random"`).
//! - `[clicks]`: a menu `click` button's `key` → its reply (the console answered its own
//!   menu's buttons; with developer mode on, the server must).
//!
//! A reply is written in the webhook's JSON form as a TOML table
//! (`{ type = "image", media_id = "…" }`), read by the same DTO ([`ReplyJson`]); a plain string
//! is a text reply. Every problem is reported with its line.

use std::collections::BTreeMap;

use rand::seq::SliceRandom as _;
use serde::Deserialize;
use toml::Spanned;
use wxmp_proto::Reply;

use super::Checker;
use crate::menu::validate::MAX_KEY_BYTES;
use crate::reply::{Outbound, ReplyJson};

/// At most this many replies in one rule: the console's own limit, which also stays within
/// the 客服消息 a user's message allows.
pub const MAX_REPLIES: usize = 5;

/// Replies configured like the console's 自动回复.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoReply {
    /// 被关注回复.
    pub subscribe: Option<String>,
    /// 收到消息回复.
    pub default: Option<String>,
    /// 关键词回复, simple form: whole-message match → reply text.
    pub keywords: BTreeMap<String, String>,
    /// 关键词回复 rules, in file order: the first that matches answers.
    pub rules: Vec<KeywordRule>,
    /// Menu `click` key → reply.
    pub clicks: BTreeMap<String, Outbound>,
}

/// How a rule's keywords are compared with a text message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatchMode {
    /// 全匹配: the whole message (trimmed) is the keyword.
    #[default]
    Exact,
    /// 半匹配: the message contains the keyword.
    Contains,
}

/// Which of a rule's replies are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pick {
    /// 回复全部: the first as the passive reply, the others as 客服消息, in order.
    #[default]
    All,
    /// 随机回复一条: one of them, at random.
    Random,
}

/// One 关键词回复 rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordRule {
    /// How keywords match.
    pub match_mode: MatchMode,
    /// The keywords (any one matches).
    pub keywords: Vec<String>,
    /// The replies (at least one).
    pub replies: Vec<Outbound>,
    /// Which replies are sent.
    pub pick: Pick,
}

impl KeywordRule {
    /// True when `content` matches one of the keywords. Letters compare case-insensitively:
    /// phone keyboards capitalise the first letter of a message, and "Ping" is meant as "ping".
    pub fn matches(&self, content: &str) -> bool {
        let content = content.trim().to_lowercase();
        self.keywords.iter().any(|k| {
            let k = k.to_lowercase();
            match self.match_mode {
                MatchMode::Exact => content == k,
                MatchMode::Contains => content.contains(&k),
            }
        })
    }

    /// The reply to send first and those that follow it, by `pick`.
    pub fn chosen(&self) -> (Outbound, Vec<Outbound>) {
        match self.pick {
            Pick::Random => {
                let one = self.replies.choose(&mut rand::thread_rng());
                (
                    one.cloned().unwrap_or_else(|| Outbound::text("")),
                    Vec::new(),
                )
            }
            Pick::All => {
                let mut all = self.replies.iter().cloned();
                let first = all.next().unwrap_or_else(|| Outbound::text(""));
                (first, all.collect())
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoReply {
    subscribe: Option<String>,
    default: Option<String>,
    #[serde(default)]
    keywords: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default)]
    clicks: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    match_mode: Option<Spanned<String>>,
    keywords: Option<Spanned<Vec<Spanned<String>>>>,
    reply: Option<Spanned<toml::Value>>,
    replies: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    pick: Option<Spanned<String>>,
}

/// Reads `[apps.NAME.auto_reply]`; every problem goes to `c` with its line.
pub(super) fn auto_reply(c: &mut Checker<'_>, app: &str, raw: RawAutoReply) -> AutoReply {
    let mut rules = Vec::new();
    for (i, rule) in raw.rules.into_iter().enumerate() {
        let at = format!("apps.{app}.auto_reply.rules[{i}]");
        if let Some(rule) = keyword_rule(c, &at, rule) {
            rules.push(rule);
        }
    }
    let mut clicks = BTreeMap::new();
    for (key, value) in raw.clicks {
        let line = c.line(key.span().start);
        let key = key.into_inner();
        let at = format!("apps.{app}.auto_reply.clicks.{key:?}");
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            c.problem(format!(
                "{at} (line {line}): a menu key is 1 to {MAX_KEY_BYTES} bytes, as WeChat allows; this one is {}",
                key.len()
            ));
            continue;
        }
        if let Some(reply) = outbound(c, &at, value) {
            clicks.insert(key, reply);
        }
    }
    AutoReply {
        subscribe: raw.subscribe,
        default: raw.default,
        keywords: raw.keywords,
        rules,
        clicks,
    }
}

fn keyword_rule(c: &mut Checker<'_>, at: &str, raw: Spanned<RawRule>) -> Option<KeywordRule> {
    let before = c.problems.len();
    let line = c.line(raw.span().start);
    let raw = raw.into_inner();

    let match_mode = match raw.match_mode {
        None => MatchMode::Exact,
        Some(m) => match m.get_ref().as_str() {
            "exact" => MatchMode::Exact,
            "contains" => MatchMode::Contains,
            other => {
                let line = c.line(m.span().start);
                c.problem(format!(
                    "{at}.match (line {line}): {other:?} is not a match mode: use \"exact\" (全匹配) or \"contains\" (半匹配)"
                ));
                MatchMode::Exact
            }
        },
    };
    let pick = match &raw.pick {
        None => Pick::All,
        Some(p) => match p.get_ref().as_str() {
            "all" => Pick::All,
            "random" => Pick::Random,
            other => {
                let line = c.line(p.span().start);
                c.problem(format!(
                    "{at}.pick (line {line}): {other:?} is not a pick: use \"all\" (回复全部) or \"random\" (随机回复一条)"
                ));
                Pick::All
            }
        },
    };

    let mut keywords = Vec::new();
    match raw.keywords {
        None => c.problem(format!(
            "{at} (line {line}): a rule with no keywords never matches: add keywords = [\"…\"]"
        )),
        Some(list) if list.get_ref().is_empty() => {
            let line = c.line(list.span().start);
            c.problem(format!(
                "{at}.keywords (line {line}): a rule with no keywords never matches: list at least one"
            ));
        }
        Some(list) => {
            for k in list.into_inner() {
                if k.get_ref().trim().is_empty() {
                    let line = c.line(k.span().start);
                    c.problem(format!(
                        "{at}.keywords (line {line}): an empty keyword would match every message"
                    ));
                } else {
                    keywords.push(k.into_inner().trim().to_owned());
                }
            }
        }
    }

    let mut replies = Vec::new();
    match (raw.reply, raw.replies) {
        (Some(_), Some(list)) => {
            let line = c.line(list.span().start);
            c.problem(format!(
                "{at} (line {line}): give either reply (one) or replies (several), not both"
            ));
        }
        (None, None) => c.problem(format!(
            "{at} (line {line}): a rule needs reply = {{ type = \"text\", content = \"…\" }} or replies = [{{…}}, …]"
        )),
        (Some(one), None) => {
            if raw.pick.is_some() {
                c.problem(format!(
                    "{at}.pick (line {line}): pick chooses among replies = [...]; a single reply needs none"
                ));
            }
            replies.extend(outbound(c, &format!("{at}.reply"), one));
        }
        (None, Some(list)) => {
            let list_line = c.line(list.span().start);
            let list = list.into_inner();
            if list.is_empty() || list.len() > MAX_REPLIES {
                c.problem(format!(
                    "{at}.replies (line {list_line}): {} replies; a rule has 1 to {MAX_REPLIES}",
                    list.len()
                ));
            }
            for (n, value) in list.into_iter().enumerate() {
                let value_line = c.line(value.span().start);
                let reply = outbound(c, &format!("{at}.replies[{n}]"), value);
                if let Some(reply) = reply {
                    if n > 0 && pick == Pick::All && !reply.has_customer_service_form() {
                        c.problem(format!(
                            "{at}.replies[{n}] (line {value_line}): transfer_customer_service can only be the first reply: the others go out as 客服消息, which cannot transfer"
                        ));
                    }
                    replies.push(reply);
                }
            }
        }
    }

    if c.problems.len() != before {
        return None;
    }
    Some(KeywordRule {
        match_mode,
        keywords,
        replies,
        pick,
    })
}

/// One reply: a string (text) or a table in the webhook's JSON form.
fn outbound(c: &mut Checker<'_>, at: &str, value: Spanned<toml::Value>) -> Option<Outbound> {
    let line = c.line(value.span().start);
    let value = value.into_inner();
    let table = match value {
        toml::Value::String(text) => return Some(Outbound::text(text)),
        toml::Value::Table(table) => table,
        other => {
            c.problem(format!(
                "{at} (line {line}): a reply is a string (text) or a table like {{ type = \"text\", content = \"…\" }}, not a {}",
                other.type_str()
            ));
            return None;
        }
    };
    let Some(reply_type) = table.get("type").and_then(toml::Value::as_str) else {
        c.problem(format!(
            "{at} (line {line}): the reply has no type (text, image, voice, video, music, news or transfer_customer_service)"
        ));
        return None;
    };
    let Some(fields) = ReplyJson::fields(reply_type) else {
        c.problem(format!(
            "{at} (line {line}): unknown reply type {reply_type:?}: use text, image, voice, video, music, news or transfer_customer_service"
        ));
        return None;
    };
    for key in table.keys().filter(|k| *k != "type") {
        if !fields.contains(&key.as_str()) {
            c.problem(format!(
                "{at} (line {line}): a {reply_type} reply has no field {key:?} (it has {})",
                fields.join(", ")
            ));
            return None;
        }
    }
    if let Some(toml::Value::Array(articles)) = table.get("articles") {
        for article in articles {
            let unknown = article.as_table().and_then(|a| {
                a.keys()
                    .find(|k| !ReplyJson::ARTICLE_FIELDS.contains(&k.as_str()))
            });
            if let Some(key) = unknown {
                c.problem(format!(
                    "{at} (line {line}): a news article has no field {key:?} (it has {})",
                    ReplyJson::ARTICLE_FIELDS.join(", ")
                ));
                return None;
            }
        }
    }
    let json: ReplyJson = match toml::Value::Table(table).try_into() {
        Ok(json) => json,
        Err(e) => {
            c.problem(format!("{at} (line {line}): {}", e.message()));
            return None;
        }
    };
    let outbound = Outbound::from(json);
    if let Some(reply) = outbound.passive() {
        if let Err(e) = reply.render("oUser", "gh_account", 0) {
            c.problem(format!(
                "{at} (line {line}): WeChat could not be sent this reply: {}",
                render_problem(reply, &e)
            ));
            return None;
        }
    }
    Some(outbound)
}

fn render_problem(reply: &Reply, e: &wxmp_proto::Error) -> String {
    match reply {
        Reply::News { articles } => format!(
            "{} articles; a news reply has 1 to {} ({e})",
            articles.len(),
            wxmp_proto::reply::MAX_NEWS_ARTICLES
        ),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(mode: MatchMode, keywords: &[&str]) -> KeywordRule {
        KeywordRule {
            match_mode: mode,
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            replies: vec![Outbound::text("a"), Outbound::text("b")],
            pick: Pick::All,
        }
    }

    #[test]
    fn exact_and_contains() {
        let exact = rule(MatchMode::Exact, &["价格", "price"]);
        assert!(exact.matches("价格"));
        assert!(exact.matches("  Price \n"));
        assert!(!exact.matches("价格多少"));
        let contains = rule(MatchMode::Contains, &["价格", "price"]);
        assert!(contains.matches("请问价格多少？"));
        assert!(contains.matches("What's the PRICE today"));
        assert!(!contains.matches("多少钱"));
    }

    #[test]
    fn picks() {
        let all = rule(MatchMode::Exact, &["x"]);
        assert_eq!(
            all.chosen(),
            (Outbound::text("a"), vec![Outbound::text("b")])
        );
        let random = KeywordRule {
            pick: Pick::Random,
            ..all
        };
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (first, rest) = random.chosen();
            assert!(rest.is_empty());
            seen.insert(format!("{first:?}"));
        }
        assert_eq!(seen.len(), 2, "both replies get picked: {seen:?}");
    }
}

#[cfg(test)]
mod config_tests {
    use std::collections::HashMap;

    use super::super::Config;
    use super::*;

    const APP: &str = "[apps.demo]\nappid = \"wx0123456789abcdef\"\ntoken = \"pamtest\"\n";

    fn parse(section: &str) -> Result<AutoReply, String> {
        let text = format!("{APP}{section}");
        Config::parse(&text, &HashMap::new())
            .map(|c| c.app("demo").unwrap().auto_reply.clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn rules_and_clicks_parse() {
        let auto = parse(
            r#"[apps.demo.auto_reply]
subscribe = "hi"
[apps.demo.auto_reply.keywords]
ping = "pong"
[[apps.demo.auto_reply.rules]]
match = "contains"
keywords = ["价格", "price"]
reply = { type = "text", content = "free" }
[[apps.demo.auto_reply.rules]]
keywords = ["pics"]
pick = "random"
replies = [
  { type = "image", media_id = "m1" },
  "just text",
  { type = "news", media_id = "n1" },
  { type = "news", articles = [{ title = "t", url = "https://example.com/" }] },
]
[apps.demo.auto_reply.clicks]
V1001_TODAY = "Today's pick"
V1001_VIDEO = { type = "video", media_id = "v", thumb_media_id = "th" }
"#,
        )
        .unwrap();
        assert_eq!(auto.keywords["ping"], "pong");
        assert_eq!(auto.rules.len(), 2);
        assert_eq!(auto.rules[0].match_mode, MatchMode::Contains);
        assert_eq!(auto.rules[0].replies, vec![Outbound::text("free")]);
        assert_eq!(auto.rules[1].match_mode, MatchMode::Exact);
        assert_eq!(auto.rules[1].pick, Pick::Random);
        assert_eq!(auto.rules[1].replies.len(), 4);
        assert_eq!(
            auto.rules[1].replies[2],
            Outbound::MpNews {
                media_id: "n1".into()
            }
        );
        assert_eq!(auto.clicks["V1001_TODAY"], Outbound::text("Today's pick"));
        assert!(matches!(
            &auto.clicks["V1001_VIDEO"],
            Outbound::Reply { video_thumb_media_id: Some(t), .. } if t == "th"
        ));
    }

    #[test]
    fn every_problem_has_its_line() {
        let long_key = "K".repeat(129);
        let err = parse(&format!(
            r#"[[apps.demo.auto_reply.rules]]
match = "fuzzy"
reply = "x"
[[apps.demo.auto_reply.rules]]
keywords = ["a"]
reply = {{ type = "poem", content = "roses" }}
[[apps.demo.auto_reply.rules]]
keywords = ["b"]
replies = ["one", {{ type = "transfer_customer_service" }}]
[[apps.demo.auto_reply.rules]]
keywords = ["c"]
reply = {{ type = "text", contnet = "typo" }}
[[apps.demo.auto_reply.rules]]
keywords = ["d"]
reply = "x"
replies = ["y"]
[[apps.demo.auto_reply.rules]]
keywords = ["e"]
replies = ["1", "2", "3", "4", "5", "6"]
[[apps.demo.auto_reply.rules]]
keywords = ["f"]
reply = {{ type = "news", articles = [{{ title = "1" }}, {{ title = "2" }}, {{ title = "3" }}, {{ title = "4" }}, {{ title = "5" }}, {{ title = "6" }}, {{ title = "7" }}, {{ title = "8" }}, {{ title = "9" }}] }}
[apps.demo.auto_reply.clicks]
{long_key} = "x"
"#
        ))
        .unwrap_err();
        for needle in [
            "rules[0] (line 4): a rule with no keywords",
            "rules[0].match (line 5): \"fuzzy\" is not a match mode",
            "rules[1].reply (line 9): unknown reply type \"poem\"",
            "rules[2].replies[1] (line 12): transfer_customer_service can only be the first reply",
            "rules[3].reply (line 15): a text reply has no field \"contnet\"",
            "rules[4] (line 19): give either reply (one) or replies (several)",
            "rules[5].replies (line 22): 6 replies; a rule has 1 to 5",
            "rules[6].reply (line 25): WeChat could not be sent this reply: 9 articles",
            "(line 27): a menu key is 1 to 128 bytes",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }
}
