//! 自定义菜单 (custom menus) kept in the config file and published through the API.
//!
//! Once a 公众号 turns on 服务器配置 (developer mode), the 公众平台 console stops serving the menu
//! it edited: from then on the menu exists only as what the developer publishes through
//! `/cgi-bin/menu/create`. wxmp keeps it in `wxmp.toml`, in WeChat's own JSON shape (`button`,
//! `sub_button`, `type`, `key` …) written as TOML, so a menu reads the same in the file, in
//! WeChat's docs and in `menu/get`'s answer, and a change to it is reviewed like any other
//! change to the file.
//!
//! The module is split so that the offline parts carry the weight:
//! - this file: the model — [`AppMenu`] (the default menu and the 个性化菜单), [`Button`],
//!   [`ConditionalMenu`], [`MatchRule`] — and its JSON forms (what `menu/create` takes and
//!   `menu/get` returns);
//! - [`validate`]: WeChat's rules, in ONE place. `wxmp check`, `wxmp menu push` and the
//!   emulator's `/cgi-bin/menu/*` all judge a menu with it, so a file is refused offline for
//!   the same reason (and with the same errcode) WeChat would refuse it;
//! - [`errcode`]: the errcodes of the menu interfaces, with WeChat's `errmsg` and plain words;
//! - [`render`]: a menu as TOML, as `wxmp menu pull` prints it and `wxmp menu diff` compares
//!   it; the text parses back into the same menu;
//! - [`diff`]: a line diff of two renderings;
//! - [`api`]: the `/cgi-bin/menu/*` calls, with the 中控's access_token;
//! - [`command`]: `wxmp menu diff|push|pull`.
//!
//! Two menus are equal when their renderings are: `menuid`s, which WeChat assigns, are left
//! out of the comparison.

pub mod api;
pub mod command;
pub mod diff;
pub mod errcode;
pub mod render;
pub mod validate;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

/// One menu button, top-level or a `sub_button`: every field of `menu/create`'s button object.
///
/// `type` stays a string rather than an enum, so a type WeChat adds later (or one it no longer
/// takes) still round-trips through `pull`, and [`validate`] names it in its refusal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    /// `name`: at most 16 bytes top-level, 60 bytes in a `sub_button` (UTF-8 bytes, so a
    /// Chinese character counts 3).
    #[serde(default)]
    pub name: String,
    /// `type`: click, view, miniprogram, scancode_push, … (absent on a button that only holds
    /// `sub_button`s).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `key`: what a `CLICK` (and scancode/pic/location) event carries as `EventKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `url`: the page a `view` button opens; a `miniprogram` button's fallback page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `appid`: a `miniprogram` button's Mini Program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// `pagepath`: the Mini Program page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagepath: Option<String>,
    /// `media_id`: a permanent material (`media_id`, `view_limited` buttons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    /// `article_id`: a published article (`article_id`, `article_view_limited` buttons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub article_id: Option<String>,
    /// `sub_button`: the second-level buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_button: Vec<Button>,
}

impl Button {
    /// A leaf button of `kind`.
    pub fn leaf(name: impl Into<String>, kind: impl Into<String>) -> Button {
        Button {
            name: name.into(),
            kind: Some(kind.into()),
            ..Button::default()
        }
    }

    /// A `click` button.
    pub fn click(name: impl Into<String>, key: impl Into<String>) -> Button {
        Button {
            key: Some(key.into()),
            ..Button::leaf(name, "click")
        }
    }

    /// A `view` button.
    pub fn view(name: impl Into<String>, url: impl Into<String>) -> Button {
        Button {
            url: Some(url.into()),
            ..Button::leaf(name, "view")
        }
    }

    /// A button that only opens its `sub_button`s.
    pub fn parent(name: impl Into<String>, sub_button: Vec<Button>) -> Button {
        Button {
            name: name.into(),
            sub_button,
            ..Button::default()
        }
    }
}

/// 个性化菜单 `matchrule`: which users see a conditional menu. Every field is optional, but
/// at least one must be set.
///
/// WeChat stopped accepting the privacy fields (`sex`, `country`, `province`, `city`,
/// `language`) in new rules; they are kept here because `menu/get` still shows them on rules
/// created before, and `pull` must print what is live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchRule {
    /// `tag_id`: a user tag (用户标签管理).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub tag_id: Option<String>,
    /// `client_platform_type`: 1 iOS, 2 Android, 3 others.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub client_platform_type: Option<String>,
    /// `sex` (no longer accepted in new rules).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub sex: Option<String>,
    /// `country` (no longer accepted in new rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `province` (no longer accepted in new rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    /// `city` (no longer accepted in new rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// `language` (no longer accepted in new rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

impl MatchRule {
    /// The set fields, in WeChat's documented order, as `(name, value)`.
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        [
            ("tag_id", &self.tag_id),
            ("client_platform_type", &self.client_platform_type),
            ("sex", &self.sex),
            ("country", &self.country),
            ("province", &self.province),
            ("city", &self.city),
            ("language", &self.language),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
    }
}

/// `menu/get` writes numbers where `menu/addconditional` took strings (`"tag_id":"2"` in,
/// `"tag_id":2` out, depending on the field); both read as the string.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

/// A 个性化菜单: buttons shown to the users its `matchrule` selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionalMenu {
    /// `button`.
    #[serde(default)]
    pub button: Vec<Button>,
    /// `matchrule`.
    #[serde(default)]
    pub matchrule: MatchRule,
    /// `menuid`, assigned by WeChat; `None` in the config file.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub menuid: Option<String>,
}

/// An account's whole menu: the default menu plus its 个性化菜单.
///
/// An empty `button` list means "no menu": `push` deletes the live one. `conditionalmenu`
/// is in priority order — the first whose `matchrule` fits a user wins. WeChat matches the
/// most recently published first, so `push` publishes them last to first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppMenu {
    /// The default menu's `button`s.
    pub button: Vec<Button>,
    /// The 个性化菜单, in priority order.
    pub conditionalmenu: Vec<ConditionalMenu>,
}

impl AppMenu {
    /// Every `key` of a button whose taps arrive as a `CLICK` event.
    pub fn click_keys(&self) -> Vec<&str> {
        let menus =
            std::iter::once(&self.button).chain(self.conditionalmenu.iter().map(|c| &c.button));
        let mut keys = Vec::new();
        for buttons in menus {
            for b in buttons
                .iter()
                .flat_map(|b| std::iter::once(b).chain(&b.sub_button))
            {
                if b.kind.as_deref() == Some("click") {
                    if let Some(key) = &b.key {
                        keys.push(key.as_str());
                    }
                }
            }
        }
        keys
    }

    /// The live menu from `menu/get`'s answer (`{"menu":{…},"conditionalmenu":[…]}`);
    /// 46003 (no menu) is the caller's to map to an empty menu.
    pub fn from_get(answer: &Value) -> Result<AppMenu, serde_json::Error> {
        #[derive(Deserialize)]
        struct Default {
            #[serde(default)]
            button: Vec<Button>,
        }
        #[derive(Deserialize)]
        struct Get {
            menu: Option<Default>,
            #[serde(default)]
            conditionalmenu: Vec<ConditionalMenu>,
        }
        let get = Get::deserialize(answer)?;
        let mut conditionalmenu = get.conditionalmenu;
        // `menu/get` lists them in publication order; WeChat matches newest first.
        conditionalmenu.reverse();
        for c in &mut conditionalmenu {
            c.menuid = None;
        }
        Ok(AppMenu {
            button: get.menu.map(|m| m.button).unwrap_or_default(),
            conditionalmenu,
        })
    }
}

/// `menu/create`'s body.
pub fn create_body(button: &[Button]) -> Value {
    json!({ "button": button })
}

/// `menu/addconditional`'s body.
pub fn addconditional_body(menu: &ConditionalMenu) -> Value {
    json!({ "button": menu.button, "matchrule": menu.matchrule })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_answers_parse_with_numbers_and_empty_sub_buttons() {
        let answer = json!({
            "menu": {"button": [
                {"type":"click","name":"今日歌曲","key":"V1001_TODAY_MUSIC","sub_button":[]},
                {"name":"菜单","sub_button":[
                    {"type":"view","name":"搜索","url":"http://www.soso.com/","sub_button":[]}]}
            ], "menuid": 208396938},
            "conditionalmenu": [
                {"button":[{"type":"click","name":"old","key":"k1","sub_button":[]}],
                 "matchrule":{"tag_id":2,"client_platform_type":"2"},"menuid":1},
                {"button":[{"type":"click","name":"new","key":"k2","sub_button":[]}],
                 "matchrule":{"tag_id":"3"},"menuid":2}
            ]
        });
        let menu = AppMenu::from_get(&answer).unwrap();
        assert_eq!(
            menu.button,
            vec![
                Button::click("今日歌曲", "V1001_TODAY_MUSIC"),
                Button::parent("菜单", vec![Button::view("搜索", "http://www.soso.com/")]),
            ]
        );
        // Newest first, menuids dropped, numbers read as strings.
        assert_eq!(menu.conditionalmenu[0].button[0].name, "new");
        assert_eq!(
            menu.conditionalmenu[1].matchrule.tag_id.as_deref(),
            Some("2")
        );
        assert_eq!(
            menu.conditionalmenu[1]
                .matchrule
                .client_platform_type
                .as_deref(),
            Some("2")
        );
        assert!(menu.conditionalmenu.iter().all(|c| c.menuid.is_none()));
        assert_eq!(menu.click_keys(), vec!["V1001_TODAY_MUSIC", "k2", "k1"]);
    }

    #[test]
    fn create_bodies_leave_out_absent_fields() {
        let body = create_body(&[Button::parent("m", vec![Button::click("a", "k")])]);
        assert_eq!(
            body,
            json!({"button":[{"name":"m","sub_button":[{"name":"a","type":"click","key":"k"}]}]})
        );
    }
}
