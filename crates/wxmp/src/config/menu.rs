//! `[apps.NAME.menu]`: the 自定义菜单, in WeChat's JSON shape written as TOML.
//!
//! ```toml
//! [[apps.demo.menu.button]]
//! name = "今日"
//! type = "click"
//! key = "V1001_TODAY"
//!
//! [[apps.demo.menu.conditionalmenu]]          # 个性化菜单, first match wins
//! matchrule = { tag_id = "2" }
//! [[apps.demo.menu.conditionalmenu.button]]
//! …
//! ```
//!
//! The file is read with every value's position (toml's `Spanned`), then judged by
//! [`crate::menu::validate`] — the same checks the emulator applies to `/cgi-bin/menu/create`
//! — and each problem is reported with the line of the field it is about (or of its button's
//! `[[…]]` header), its path and the errcode WeChat would answer.

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::Checker;
use crate::menu::validate::{self, Field, Place};
use crate::menu::{AppMenu, Button, ConditionalMenu, MatchRule};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMenu {
    #[serde(default)]
    button: Vec<Spanned<RawButton>>,
    #[serde(default)]
    conditionalmenu: Vec<Spanned<RawConditional>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawButton {
    name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    appid: Option<Spanned<String>>,
    pagepath: Option<Spanned<String>>,
    media_id: Option<Spanned<String>>,
    article_id: Option<Spanned<String>>,
    #[serde(default)]
    sub_button: Vec<Spanned<RawButton>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditional {
    matchrule: Option<Spanned<RawMatchRule>>,
    #[serde(default)]
    button: Vec<Spanned<RawButton>>,
}

/// Values may be written as strings or numbers (`tag_id = 2`), as WeChat's own JSON mixes them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatchRule {
    tag_id: Option<toml::Value>,
    client_platform_type: Option<toml::Value>,
    sex: Option<toml::Value>,
    country: Option<toml::Value>,
    province: Option<toml::Value>,
    city: Option<toml::Value>,
    language: Option<toml::Value>,
}

/// Lines of the places and fields of one menu file section, for the problems.
#[derive(Default)]
struct Lines {
    places: HashMap<Place, usize>,
    fields: HashMap<(Place, Field), usize>,
}

impl Lines {
    fn of(&self, place: Place, field: Field) -> Option<usize> {
        self.fields
            .get(&(place, field))
            .or_else(|| self.places.get(&place))
            .or_else(|| {
                // The menu as a whole: its first button (or its 个性化菜单's header).
                let first = Place {
                    button: Some(0),
                    sub: None,
                    ..place
                };
                self.places.get(&first)
            })
            .copied()
    }
}

/// Reads `[apps.NAME.menu]` and judges it as WeChat would; `None` (with the problems in `c`)
/// when WeChat would refuse it.
pub(super) fn menu_config(c: &mut Checker<'_>, app: &str, raw: RawMenu) -> Option<AppMenu> {
    let before = c.problems.len();
    let mut lines = Lines::default();
    let button = buttons(c, &mut lines, raw.button, None);
    let mut conditionalmenu = Vec::new();
    for (i, spanned) in raw.conditionalmenu.into_iter().enumerate() {
        let place = Place {
            conditional: Some(i),
            ..Place::default()
        };
        lines.places.insert(place, c.line(spanned.span().start));
        let raw = spanned.into_inner();
        let matchrule = match raw.matchrule {
            Some(rule) => {
                lines
                    .fields
                    .insert((place, Field::MatchRule), c.line(rule.span().start));
                match_rule(c, app, i, rule.into_inner())
            }
            None => MatchRule::default(),
        };
        conditionalmenu.push(ConditionalMenu {
            button: buttons(c, &mut lines, raw.button, Some(i)),
            matchrule,
            menuid: None,
        });
    }
    let menu = AppMenu {
        button,
        conditionalmenu,
    };
    for problem in validate::app_menu(&menu) {
        let path = problem.place.path();
        let at = if path.is_empty() {
            format!("apps.{app}.menu")
        } else {
            format!("apps.{app}.menu.{path}")
        };
        let line = lines
            .of(problem.place, problem.field)
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        c.problem(format!(
            "{at}{line}: {} (WeChat would refuse it with errcode {})",
            problem.message, problem.errcode
        ));
    }
    (c.problems.len() == before).then_some(menu)
}

fn buttons(
    c: &mut Checker<'_>,
    lines: &mut Lines,
    raw: Vec<Spanned<RawButton>>,
    conditional: Option<usize>,
) -> Vec<Button> {
    raw.into_iter()
        .enumerate()
        .map(|(i, b)| {
            let place = Place {
                conditional,
                button: Some(i),
                sub: None,
            };
            button(c, lines, b, place)
        })
        .collect()
}

fn button(c: &mut Checker<'_>, lines: &mut Lines, raw: Spanned<RawButton>, place: Place) -> Button {
    lines.places.insert(place, c.line(raw.span().start));
    let raw = raw.into_inner();
    let mut field = |value: Option<Spanned<String>>, field: Field| {
        value.map(|v| {
            lines.fields.insert((place, field), c.line(v.span().start));
            v.into_inner()
        })
    };
    let name = field(raw.name, Field::Name).unwrap_or_default();
    let kind = field(raw.kind, Field::Type);
    let key = field(raw.key, Field::Key);
    let url = field(raw.url, Field::Url);
    let appid = field(raw.appid, Field::AppId);
    let pagepath = field(raw.pagepath, Field::PagePath);
    let media_id = field(raw.media_id, Field::MediaId);
    let article_id = field(raw.article_id, Field::ArticleId);
    let sub_button = raw
        .sub_button
        .into_iter()
        .enumerate()
        .map(|(s, b)| {
            let sub = Place {
                sub: Some(s),
                ..place
            };
            button(c, lines, b, sub)
        })
        .collect();
    Button {
        name,
        kind,
        key,
        url,
        appid,
        pagepath,
        media_id,
        article_id,
        sub_button,
    }
}

fn match_rule(c: &mut Checker<'_>, app: &str, index: usize, raw: RawMatchRule) -> MatchRule {
    let mut text = |name: &str, value: Option<toml::Value>| match value {
        None => None,
        Some(toml::Value::String(s)) => Some(s),
        Some(toml::Value::Integer(n)) => Some(n.to_string()),
        Some(other) => {
            c.problem(format!(
                "apps.{app}.menu.conditionalmenu[{index}].matchrule.{name} must be a string or a number, not a {}",
                other.type_str()
            ));
            None
        }
    };
    MatchRule {
        tag_id: text("tag_id", raw.tag_id),
        client_platform_type: text("client_platform_type", raw.client_platform_type),
        sex: text("sex", raw.sex),
        country: text("country", raw.country),
        province: text("province", raw.province),
        city: text("city", raw.city),
        language: text("language", raw.language),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::super::Config;
    use crate::menu::render;
    use crate::menu::{AppMenu, Button, ConditionalMenu, MatchRule};

    const APP: &str = "[apps.demo]\nappid = \"wx0123456789abcdef\"\ntoken = \"pamtest\"\n";

    fn parse(menu: &str) -> Result<Option<AppMenu>, String> {
        let text = format!("{APP}{menu}");
        Config::parse(&text, &HashMap::new())
            .map(|c| c.app("demo").unwrap().menu.clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_interface_example_parses() {
        let menu = parse(
            r#"
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

[[apps.demo.menu.conditionalmenu]]
matchrule = { tag_id = 2, client_platform_type = "1" }
[[apps.demo.menu.conditionalmenu.button]]
name = "VIP"
type = "click"
key = "VIP"
"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            menu.button,
            vec![
                Button::click("今日", "V1001_TODAY"),
                Button::parent("更多", vec![Button::view("官网", "https://example.com/")]),
            ]
        );
        assert_eq!(
            menu.conditionalmenu[0].matchrule.tag_id.as_deref(),
            Some("2")
        );
        assert_eq!(
            parse("").unwrap(),
            None,
            "no [menu]: the live one is left alone"
        );
        assert_eq!(
            parse("[apps.demo.menu]\nbutton = []\n").unwrap(),
            Some(AppMenu::default()),
            "button = []: no menu"
        );
    }

    #[test]
    fn problems_come_with_their_line_and_errcode() {
        let err = parse(
            r#"
[[apps.demo.menu.button]]
name = "今日特价来了"
type = "click"
key = "K"

[[apps.demo.menu.button]]
name = "更多"
[[apps.demo.menu.button.sub_button]]
name = "官网"
type = "view"
"#,
        )
        .unwrap_err();
        // APP is 3 lines, then a blank line: the first button starts at line 5.
        assert!(
            err.contains("apps.demo.menu.button[0] (line 6): name \"今日特价来了\" is 18 bytes")
                && err.contains("errcode 40018"),
            "{err}"
        );
        assert!(
            err.contains(
                "apps.demo.menu.button[1].sub_button[0] (line 12): a view button needs url"
            ) && err.contains("errcode 40027"),
            "{err}"
        );
        let unknown =
            parse("[[apps.demo.menu.button]]\nname = \"a\"\nkind = \"click\"\n").unwrap_err();
        assert!(
            unknown.contains("kind") && unknown.contains("line 6"),
            "{unknown}"
        );
        let four = parse(
            &"[[apps.demo.menu.button]]\nname = \"a\"\ntype = \"click\"\nkey = \"k\"\n".repeat(4),
        )
        .unwrap_err();
        assert!(
            four.contains("apps.demo.menu (line 4): 4 top-level buttons"),
            "{four}"
        );
        let rule = parse(
            "[[apps.demo.menu.button]]\nname = \"a\"\ntype = \"click\"\nkey = \"k\"\n\
             [[apps.demo.menu.conditionalmenu]]\nmatchrule = { sex = \"1\" }\n\
             [[apps.demo.menu.conditionalmenu.button]]\nname = \"b\"\ntype = \"click\"\nkey = \"k\"\n",
        )
        .unwrap_err();
        assert!(
            rule.contains("apps.demo.menu.conditionalmenu[0] (line 9): matchrule uses sex")
                && rule.contains("65320"),
            "{rule}"
        );
    }

    fn name(max: usize) -> impl Strategy<Value = String> {
        // Mixed widths and characters TOML must escape.
        proptest::collection::vec(
            prop_oneof![
                Just('a'),
                Just('菜'),
                Just('"'),
                Just('\\'),
                Just('\n'),
                Just('é')
            ],
            1..=max / 3,
        )
        .prop_map(|c| c.into_iter().collect())
    }

    fn leaf(max_name: usize) -> impl Strategy<Value = Button> {
        (name(max_name), 0..4usize, "[a-zA-Z0-9_]{1,20}").prop_map(|(name, kind, id)| match kind {
            0 => Button::click(name, id),
            1 => Button::view(name, format!("https://example.com/{id}")),
            2 => Button {
                media_id: Some(id),
                ..Button::leaf(name, "media_id")
            },
            _ => Button {
                url: Some("https://example.com/".into()),
                appid: Some(format!("wx{id}")),
                pagepath: Some(format!("pages/{id}")),
                ..Button::leaf(name, "miniprogram")
            },
        })
    }

    fn top() -> impl Strategy<Value = Button> {
        prop_oneof![
            leaf(16),
            (name(16), proptest::collection::vec(leaf(60), 1..=5))
                .prop_map(|(n, subs)| Button::parent(n, subs)),
        ]
    }

    proptest! {
        #[test]
        fn a_rendered_menu_parses_back_to_itself(
            button in proptest::collection::vec(top(), 1..=3),
            conditional in proptest::collection::vec((proptest::collection::vec(top(), 1..=3), 1..100u32), 0..3),
        ) {
            let menu = AppMenu {
                button,
                conditionalmenu: conditional
                    .into_iter()
                    .map(|(button, tag)| ConditionalMenu {
                        button,
                        matchrule: MatchRule { tag_id: Some(tag.to_string()), ..MatchRule::default() },
                        menuid: None,
                    })
                    .collect(),
            };
            let text = render::toml("demo", &menu);
            prop_assert_eq!(parse(&text), Ok(Some(menu)), "{}", text);
        }
    }
}
