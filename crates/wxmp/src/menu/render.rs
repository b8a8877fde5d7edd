//! A menu as TOML: what `wxmp menu pull` prints and what `wxmp menu diff` compares.
//!
//! The text is the config's own form — `[[apps.NAME.menu.button]]` tables with WeChat's field
//! names, in WeChat's field order — so it can be pasted into `wxmp.toml` as is and `push`
//! publishes the same menu again. It is written by hand rather than through a serializer
//! because the layout matters to people (one table per button, sub-buttons after their
//! parent, a blank line between buttons) and must not change between versions: `diff`
//! compares renderings line by line.

use std::fmt::Write as _;

use super::{AppMenu, Button};

/// The TOML of `menu` for app `app`.
pub fn toml(app: &str, menu: &AppMenu) -> String {
    let mut out = String::new();
    let base = format!("apps.{app}.menu");
    if menu.button.is_empty() {
        let _ = writeln!(out, "[{base}]\nbutton = []");
    }
    write_buttons(&mut out, &format!("{base}.button"), &menu.button);
    for c in &menu.conditionalmenu {
        if !out.is_empty() {
            out.push('\n');
        }
        let table = format!("{base}.conditionalmenu");
        let _ = writeln!(out, "[[{table}]]");
        let rule: Vec<String> = c
            .matchrule
            .fields()
            .into_iter()
            .map(|(name, value)| format!("{name} = {}", quote(value)))
            .collect();
        let _ = writeln!(out, "matchrule = {{ {} }}", rule.join(", "));
        write_buttons(&mut out, &format!("{table}.button"), &c.button);
    }
    out
}

fn write_buttons(out: &mut String, table: &str, buttons: &[Button]) {
    for b in buttons {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "[[{table}]]");
        let _ = writeln!(out, "name = {}", quote(&b.name));
        let fields = [
            ("type", &b.kind),
            ("key", &b.key),
            ("url", &b.url),
            ("appid", &b.appid),
            ("pagepath", &b.pagepath),
            ("media_id", &b.media_id),
            ("article_id", &b.article_id),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                let _ = writeln!(out, "{name} = {}", quote(value));
            }
        }
        write_buttons(out, &format!("{table}.sub_button"), &b.sub_button);
    }
}

/// A TOML basic string.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::super::{ConditionalMenu, MatchRule};
    use super::*;

    #[test]
    fn renders_in_the_config_shape() {
        let menu = AppMenu {
            button: vec![
                Button::click("今日", "V1001_TODAY"),
                Button::parent("更多", vec![Button::view("官网", "https://example.com/")]),
            ],
            conditionalmenu: vec![ConditionalMenu {
                button: vec![Button::click("VIP", "vip")],
                matchrule: MatchRule {
                    tag_id: Some("2".into()),
                    client_platform_type: Some("1".into()),
                    ..MatchRule::default()
                },
                menuid: Some("ignored".into()),
            }],
        };
        assert_eq!(
            toml("demo", &menu),
            "[[apps.demo.menu.button]]\nname = \"今日\"\ntype = \"click\"\nkey = \"V1001_TODAY\"\n\
             \n[[apps.demo.menu.button]]\nname = \"更多\"\n\
             \n[[apps.demo.menu.button.sub_button]]\nname = \"官网\"\ntype = \"view\"\nurl = \"https://example.com/\"\n\
             \n[[apps.demo.menu.conditionalmenu]]\nmatchrule = { tag_id = \"2\", client_platform_type = \"1\" }\n\
             \n[[apps.demo.menu.conditionalmenu.button]]\nname = \"VIP\"\ntype = \"click\"\nkey = \"vip\"\n"
        );
        assert_eq!(
            toml("demo", &AppMenu::default()),
            "[apps.demo.menu]\nbutton = []\n"
        );
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let parsed: toml::Value =
            toml::from_str(&format!("x = {}", quote("a\"b\\c\nd\u{1}é\u{7f}"))).unwrap();
        assert_eq!(parsed["x"].as_str(), Some("a\"b\\c\nd\u{1}é\u{7f}"));
    }
}
