//! WeChat's rules for a menu, in one place: `wxmp check`, `wxmp menu push` and the emulator's
//! `/cgi-bin/menu/*` all call these functions, so a menu is judged the same way offline and
//! online, down to the errcode.
//!
//! The limits are those of WeChat's `createCustomMenu` and `addConditionalMenu` pages: 1 to 3
//! top-level buttons, at most 5 `sub_button`s, names of at most 16 bytes (top-level) and 60
//! bytes (`sub_button`), keys of at most 128 bytes, URLs of at most 1024 bytes, the fields each
//! `type` requires, a non-empty `matchrule` without the privacy fields WeChat stopped taking,
//! and at most 3 link domains across all 个性化菜单. Lengths are UTF-8 bytes, as WeChat counts
//! them. Each problem carries the errcode WeChat answers for it; where WeChat's docs do not
//! say which code a missing field earns, the code is the one for that field's size or
//! validity (see docs/console.md for what could not be verified).
//!
//! The checks report every problem (a config check lists them all); WeChat, and so the
//! emulator, answers with the first.

use std::collections::BTreeSet;
use std::fmt;

use super::{AppMenu, Button, ConditionalMenu};

/// At most this many top-level buttons.
pub const MAX_BUTTONS: usize = 3;
/// At most this many `sub_button`s under one button.
pub const MAX_SUB_BUTTONS: usize = 5;
/// A top-level button's `name`, in bytes.
pub const MAX_NAME_BYTES: usize = 16;
/// A `sub_button`'s `name`, in bytes.
pub const MAX_SUB_NAME_BYTES: usize = 60;
/// A `key`, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// A `url`, in bytes.
pub const MAX_URL_BYTES: usize = 1024;
/// Distinct link domains across all 个性化菜单 of an account.
pub const MAX_CONDITIONAL_DOMAINS: usize = 3;

/// The button types WeChat takes. `view_limited` is the older form of `article_view_limited`,
/// still accepted and still shown by `menu/get` on menus that use it.
pub const TYPES: &[&str] = &[
    "click",
    "view",
    "miniprogram",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
    "media_id",
    "article_id",
    "article_view_limited",
    "view_limited",
];

/// Types whose taps reach the server as an event carrying the button's `key`.
pub const KEY_TYPES: &[&str] = &[
    "click",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
];

/// Where a problem is: which menu, which button, which `sub_button`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Place {
    /// The 个性化菜单's index (priority order), `None` for the default menu.
    pub conditional: Option<usize>,
    /// The top-level button's index; `None` for the menu as a whole.
    pub button: Option<usize>,
    /// The `sub_button`'s index.
    pub sub: Option<usize>,
}

impl Place {
    fn menu(conditional: Option<usize>) -> Place {
        Place {
            conditional,
            ..Place::default()
        }
    }

    /// The path of the place in WeChat's JSON (and wxmp's TOML) names, e.g.
    /// `conditionalmenu[0].button[1].sub_button[2]`; empty for the default menu itself.
    pub fn path(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.conditional {
            parts.push(format!("conditionalmenu[{c}]"));
        }
        if let Some(b) = self.button {
            parts.push(format!("button[{b}]"));
        }
        if let Some(s) = self.sub {
            parts.push(format!("sub_button[{s}]"));
        }
        parts.join(".")
    }
}

/// Which field of the place the problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The `button` list itself (its length).
    Buttons,
    /// A button's `sub_button` list (its length, or its presence).
    SubButtons,
    /// A 个性化菜单's `matchrule`.
    MatchRule,
    /// `name`.
    Name,
    /// `type`.
    Type,
    /// `key`.
    Key,
    /// `url`.
    Url,
    /// `appid`.
    AppId,
    /// `pagepath`.
    PagePath,
    /// `media_id`.
    MediaId,
    /// `article_id`.
    ArticleId,
}

impl Field {
    /// The field's name in WeChat's JSON.
    pub fn name(self) -> &'static str {
        match self {
            Field::Buttons => "button",
            Field::SubButtons => "sub_button",
            Field::MatchRule => "matchrule",
            Field::Name => "name",
            Field::Type => "type",
            Field::Key => "key",
            Field::Url => "url",
            Field::AppId => "appid",
            Field::PagePath => "pagepath",
            Field::MediaId => "media_id",
            Field::ArticleId => "article_id",
        }
    }
}

/// One reason WeChat would refuse a menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The errcode WeChat answers.
    pub errcode: i64,
    /// Where.
    pub place: Place,
    /// Which field.
    pub field: Field,
    /// Plain words: what is wrong and what the limit is.
    pub message: String,
}

impl Problem {
    fn new(errcode: i64, place: Place, field: Field, message: String) -> Problem {
        Problem {
            errcode,
            place,
            field,
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.place.path();
        if path.is_empty() {
            write!(f, "{} (errcode {})", self.message, self.errcode)
        } else {
            write!(f, "{path}: {} (errcode {})", self.message, self.errcode)
        }
    }
}

/// The problems of a whole [`AppMenu`], as `menu push` would publish it: the default menu
/// (unless it is empty, which means "no menu"), then each 个性化菜单, then the domain limit.
pub fn app_menu(menu: &AppMenu) -> Vec<Problem> {
    let mut out = Vec::new();
    if menu.button.is_empty() {
        if !menu.conditionalmenu.is_empty() {
            out.push(Problem::new(
                65303,
                Place::default(),
                Field::Buttons,
                "个性化菜单 need a default menu: add [[…menu.button]]s".to_owned(),
            ));
        }
    } else {
        out.extend(buttons(&menu.button, None));
    }
    for (i, c) in menu.conditionalmenu.iter().enumerate() {
        out.extend(conditional(i, c));
    }
    let domains = conditional_domains(menu.conditionalmenu.iter());
    if domains.len() > MAX_CONDITIONAL_DOMAINS {
        out.push(Problem::new(
            65316,
            Place::default(),
            Field::Url,
            format!(
                "the 个性化菜单 link to {} domains ({}); WeChat allows at most {MAX_CONDITIONAL_DOMAINS}",
                domains.len(),
                domains.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    out
}

/// The problems of one 个性化菜单 (index `index`): its `matchrule` and its buttons.
pub fn conditional(index: usize, menu: &ConditionalMenu) -> Vec<Problem> {
    let place = Place::menu(Some(index));
    let mut out = Vec::new();
    let rule = &menu.matchrule;
    let fields = rule.fields();
    if fields.is_empty() {
        out.push(Problem::new(
            65304,
            place,
            Field::MatchRule,
            "matchrule is empty: set tag_id or client_platform_type".to_owned(),
        ));
    }
    let private: Vec<&str> = fields
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !matches!(*name, "tag_id" | "client_platform_type"))
        .collect();
    if !private.is_empty() {
        out.push(Problem::new(
            65320,
            place,
            Field::MatchRule,
            format!(
                "matchrule uses {}, which WeChat no longer accepts (privacy); keep tag_id and client_platform_type",
                private.join(", ")
            ),
        ));
    }
    if let Some(tag) = &rule.tag_id {
        if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_digit()) {
            out.push(Problem::new(
                40097,
                place,
                Field::MatchRule,
                format!("matchrule tag_id {tag:?} must be a tag's numeric id (用户标签管理)"),
            ));
        }
    }
    if let Some(platform) = &rule.client_platform_type {
        if !matches!(platform.as_str(), "1" | "2" | "3") {
            out.push(Problem::new(
                40097,
                place,
                Field::MatchRule,
                format!(
                    "matchrule client_platform_type {platform:?} must be \"1\" (iOS), \"2\" (Android) or \"3\" (others)"
                ),
            ));
        }
    }
    if menu.button.is_empty() {
        out.push(Problem::new(
            65307,
            place,
            Field::Buttons,
            "a 个性化菜单 needs 1 to 3 buttons".to_owned(),
        ));
    } else {
        out.extend(buttons(&menu.button, Some(index)));
    }
    out
}

/// The problems of a `button` list, as `menu/create` (`conditional: None`) or
/// `menu/addconditional` (`Some(index)`) judges it.
pub fn buttons(buttons: &[Button], conditional: Option<usize>) -> Vec<Problem> {
    let mut out = Vec::new();
    if buttons.is_empty() || buttons.len() > MAX_BUTTONS {
        out.push(Problem::new(
            40016,
            Place::menu(conditional),
            Field::Buttons,
            format!(
                "{} top-level buttons; a menu has 1 to {MAX_BUTTONS}",
                buttons.len()
            ),
        ));
    }
    for (i, b) in buttons.iter().enumerate() {
        let place = Place {
            conditional,
            button: Some(i),
            sub: None,
        };
        check_button(b, place, &mut out);
    }
    out
}

/// The hosts that the `url`s of `menus` link to (lowercase).
pub fn conditional_domains<'a>(
    menus: impl Iterator<Item = &'a ConditionalMenu>,
) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    for menu in menus {
        for b in menu
            .button
            .iter()
            .flat_map(|b| std::iter::once(b).chain(&b.sub_button))
        {
            if let Some(host) = b
                .url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            {
                hosts.insert(host);
            }
        }
    }
    hosts
}

/// The errcodes of one level: top-level buttons and `sub_button`s have codes of their own.
struct Codes {
    name: i64,
    kind: i64,
    key: i64,
    url: i64,
    url_domain: i64,
    name_limit: usize,
    what: &'static str,
}

const TOP: Codes = Codes {
    name: 40018,
    kind: 40017,
    key: 40019,
    url: 40020,
    url_domain: 40055,
    name_limit: MAX_NAME_BYTES,
    what: "a top-level button",
};

const SUB: Codes = Codes {
    name: 40025,
    kind: 40024,
    key: 40026,
    url: 40027,
    url_domain: 40054,
    name_limit: MAX_SUB_NAME_BYTES,
    what: "a sub_button",
};

fn check_button(b: &Button, place: Place, out: &mut Vec<Problem>) {
    let top = place.sub.is_none();
    let codes = if top { &TOP } else { &SUB };
    let mut problem = |errcode: i64, field: Field, message: String| {
        out.push(Problem::new(errcode, place, field, message));
    };

    if b.name.is_empty() {
        problem(codes.name, Field::Name, "name is empty".to_owned());
    } else if b.name.len() > codes.name_limit {
        problem(
            codes.name,
            Field::Name,
            format!(
                "name {:?} is {} bytes; {} may have at most {} (a Chinese character takes 3)",
                b.name,
                b.name.len(),
                codes.what,
                codes.name_limit
            ),
        );
    }

    if !b.sub_button.is_empty() {
        if !top {
            problem(
                codes.kind,
                Field::SubButtons,
                "a sub_button cannot hold sub_buttons of its own (menus have two levels)"
                    .to_owned(),
            );
            return;
        }
        if b.sub_button.len() > MAX_SUB_BUTTONS {
            problem(
                40023,
                Field::SubButtons,
                format!(
                    "{} sub_buttons; a button holds at most {MAX_SUB_BUTTONS}",
                    b.sub_button.len()
                ),
            );
        }
        if let Some(kind) = &b.kind {
            problem(
                codes.kind,
                Field::Type,
                format!(
                    "a button with sub_buttons only opens them: remove type = {kind:?}, or the sub_buttons"
                ),
            );
        }
        for (s, sub) in b.sub_button.iter().enumerate() {
            let place = Place {
                sub: Some(s),
                ..place
            };
            check_button(sub, place, out);
        }
        return;
    }

    let kind = match b.kind.as_deref() {
        None => {
            // 个性化菜单 have a code of their own for it ("exist empty button act").
            let errcode = if place.conditional.is_some() {
                65308
            } else {
                codes.kind
            };
            problem(
                errcode,
                Field::Type,
                format!("{} has neither a type nor sub_buttons", codes.what),
            );
            return;
        }
        Some(kind) if !TYPES.contains(&kind) => {
            problem(
                codes.kind,
                Field::Type,
                format!(
                    "type {kind:?} is not one WeChat knows ({})",
                    TYPES.join(", ")
                ),
            );
            return;
        }
        Some(kind) => kind,
    };

    let needs = |field: Field| -> String { format!("a {kind} button needs {}", field.name()) };
    if KEY_TYPES.contains(&kind) && b.key.is_none() {
        problem(codes.key, Field::Key, needs(Field::Key));
    }
    if matches!(kind, "view" | "miniprogram") && b.url.is_none() {
        problem(codes.url, Field::Url, needs(Field::Url));
    }
    if kind == "miniprogram" {
        if b.appid.as_deref().is_none_or(str::is_empty) {
            problem(40166, Field::AppId, needs(Field::AppId));
        }
        if b.pagepath.as_deref().is_none_or(str::is_empty) {
            problem(40165, Field::PagePath, needs(Field::PagePath));
        }
    }
    if matches!(kind, "media_id" | "view_limited")
        && b.media_id.as_deref().is_none_or(str::is_empty)
    {
        problem(40007, Field::MediaId, needs(Field::MediaId));
    }
    if matches!(kind, "article_id" | "article_view_limited")
        && b.article_id.as_deref().is_none_or(str::is_empty)
    {
        problem(40007, Field::ArticleId, needs(Field::ArticleId));
    }

    if let Some(key) = &b.key {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            problem(
                codes.key,
                Field::Key,
                format!(
                    "key is {} bytes; it must be 1 to {MAX_KEY_BYTES}",
                    key.len()
                ),
            );
        }
    }
    if let Some(url) = &b.url {
        if url.is_empty() || url.len() > MAX_URL_BYTES {
            problem(
                codes.url,
                Field::Url,
                format!(
                    "url is {} bytes; it must be 1 to {MAX_URL_BYTES}",
                    url.len()
                ),
            );
        } else if matches!(kind, "view" | "miniprogram") && !is_web_url(url) {
            problem(
                codes.url_domain,
                Field::Url,
                format!("url {url:?} is not an http:// or https:// address"),
            );
        }
    }
}

fn is_web_url(text: &str) -> bool {
    url::Url::parse(text)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

#[cfg(test)]
mod tests {
    use super::super::MatchRule;
    use super::*;

    fn codes(problems: &[Problem]) -> Vec<i64> {
        problems.iter().map(|p| p.errcode).collect()
    }

    fn one(b: Button) -> Vec<i64> {
        codes(&buttons(&[b], None))
    }

    fn sub(b: Button) -> Vec<i64> {
        codes(&buttons(&[Button::parent("m", vec![b])], None))
    }

    #[test]
    fn a_good_menu_has_no_problems() {
        let menu = vec![
            Button::click("今日歌曲", "V1001_TODAY_MUSIC"),
            Button::parent(
                "菜单",
                vec![
                    Button::view("搜索", "http://www.soso.com/"),
                    Button {
                        url: Some("http://mp.weixin.qq.com".into()),
                        appid: Some("wx286b93c14bbf93aa".into()),
                        pagepath: Some("pages/lunar/index".into()),
                        ..Button::leaf("wxa", "miniprogram")
                    },
                    Button {
                        key: Some("rselfmenu_0_0".into()),
                        ..Button::leaf("扫码带提示", "scancode_waitmsg")
                    },
                    Button {
                        media_id: Some("MEDIA_ID1".into()),
                        ..Button::leaf("图片", "media_id")
                    },
                    Button {
                        article_id: Some("ARTICLE_ID1".into()),
                        ..Button::leaf("文章", "article_view_limited")
                    },
                ],
            ),
            Button {
                key: Some("rselfmenu_2_0".into()),
                ..Button::leaf("发送位置", "location_select")
            },
        ];
        assert_eq!(buttons(&menu, None), vec![]);
    }

    #[test]
    fn button_counts() {
        assert_eq!(codes(&buttons(&[], None)), vec![40016]);
        let four = vec![Button::click("a", "k"); 4];
        assert_eq!(codes(&buttons(&four, None)), vec![40016]);
        assert_eq!(codes(&buttons(&four[..3], None)), Vec::<i64>::new());
        let six = Button::parent("m", vec![Button::click("a", "k"); 6]);
        assert_eq!(one(six), vec![40023]);
        let five = Button::parent("m", vec![Button::click("a", "k"); 5]);
        assert_eq!(one(five), Vec::<i64>::new());
    }

    #[test]
    fn name_limits_are_bytes() {
        // 16 bytes pass, 17 fail; five Chinese characters are 15 bytes, six are 18.
        assert_eq!(one(Button::click("a".repeat(16), "k")), Vec::<i64>::new());
        assert_eq!(one(Button::click("a".repeat(17), "k")), vec![40018]);
        assert_eq!(one(Button::click("今日特价来", "k")), Vec::<i64>::new());
        assert_eq!(one(Button::click("今日特价来了", "k")), vec![40018]);
        assert_eq!(one(Button::click("", "k")), vec![40018]);
        assert_eq!(sub(Button::click("a".repeat(60), "k")), Vec::<i64>::new());
        assert_eq!(sub(Button::click("a".repeat(61), "k")), vec![40025]);
        assert_eq!(sub(Button::click("", "k")), vec![40025]);
    }

    #[test]
    fn key_and_url_limits() {
        assert_eq!(one(Button::click("a", "k".repeat(128))), Vec::<i64>::new());
        assert_eq!(one(Button::click("a", "k".repeat(129))), vec![40019]);
        assert_eq!(sub(Button::click("a", "k".repeat(129))), vec![40026]);
        assert_eq!(one(Button::click("a", "")), vec![40019]);
        let long = format!("https://example.com/{}", "p".repeat(1024 - 20));
        assert_eq!(long.len(), 1024);
        assert_eq!(one(Button::view("a", long.clone())), Vec::<i64>::new());
        assert_eq!(one(Button::view("a", format!("{long}x"))), vec![40020]);
        assert_eq!(sub(Button::view("a", format!("{long}x"))), vec![40027]);
        assert_eq!(one(Button::view("a", "ftp://example.com/")), vec![40055]);
        assert_eq!(sub(Button::view("a", "example.com")), vec![40054]);
    }

    #[test]
    fn types_and_required_fields() {
        assert_eq!(one(Button::leaf("a", "poem")), vec![40017]);
        assert_eq!(sub(Button::leaf("a", "poem")), vec![40024]);
        assert_eq!(one(Button::parent("a", vec![])), vec![40017]);
        assert_eq!(one(Button::leaf("a", "click")), vec![40019]);
        assert_eq!(sub(Button::leaf("a", "pic_weixin")), vec![40026]);
        assert_eq!(one(Button::leaf("a", "view")), vec![40020]);
        assert_eq!(sub(Button::leaf("a", "view")), vec![40027]);
        assert_eq!(
            one(Button::leaf("a", "miniprogram")),
            vec![40020, 40166, 40165]
        );
        assert_eq!(one(Button::leaf("a", "media_id")), vec![40007]);
        assert_eq!(one(Button::leaf("a", "view_limited")), vec![40007]);
        assert_eq!(one(Button::leaf("a", "article_id")), vec![40007]);
        assert_eq!(one(Button::leaf("a", "article_view_limited")), vec![40007]);
        // Exclusive: a type and sub_buttons; a third level.
        let both = Button {
            kind: Some("click".into()),
            ..Button::parent("m", vec![Button::click("a", "k")])
        };
        assert_eq!(one(both), vec![40017]);
        let deep = Button::parent(
            "m",
            vec![Button::parent("n", vec![Button::click("a", "k")])],
        );
        assert_eq!(one(deep), vec![40024]);
    }

    #[test]
    fn conditional_menus() {
        let good = ConditionalMenu {
            button: vec![Button::click("a", "k")],
            matchrule: MatchRule {
                tag_id: Some("2".into()),
                ..MatchRule::default()
            },
            menuid: None,
        };
        assert_eq!(conditional(0, &good), vec![]);
        let empty_rule = ConditionalMenu {
            matchrule: MatchRule::default(),
            ..good.clone()
        };
        assert_eq!(codes(&conditional(0, &empty_rule)), vec![65304]);
        let private = ConditionalMenu {
            matchrule: MatchRule {
                sex: Some("1".into()),
                city: Some("广州".into()),
                ..MatchRule::default()
            },
            ..good.clone()
        };
        let p = conditional(1, &private);
        assert_eq!(codes(&p), vec![65320]);
        assert!(p[0].message.contains("sex, city"), "{}", p[0]);
        assert_eq!(p[0].place.path(), "conditionalmenu[1]");
        let untyped = ConditionalMenu {
            button: vec![Button::parent("m", vec![])],
            ..good.clone()
        };
        assert_eq!(codes(&conditional(0, &untyped)), vec![65308]);
        let no_buttons = ConditionalMenu {
            button: vec![],
            ..good.clone()
        };
        assert_eq!(codes(&conditional(0, &no_buttons)), vec![65307]);
        let platform = ConditionalMenu {
            matchrule: MatchRule {
                client_platform_type: Some("4".into()),
                ..MatchRule::default()
            },
            ..good.clone()
        };
        assert_eq!(codes(&conditional(0, &platform)), vec![40097]);

        // Without a default menu; four domains across the conditional menus.
        let alone = AppMenu {
            button: vec![],
            conditionalmenu: vec![good.clone()],
        };
        assert_eq!(codes(&app_menu(&alone)), vec![65303]);
        let linking = |host: &str| ConditionalMenu {
            button: vec![Button::view("a", format!("https://{host}/"))],
            ..good.clone()
        };
        let domains = AppMenu {
            button: vec![Button::click("a", "k")],
            conditionalmenu: vec![linking("a.com"), linking("b.com"), linking("c.com")],
        };
        assert_eq!(app_menu(&domains), vec![]);
        let mut four = domains.clone();
        four.conditionalmenu.push(linking("D.com"));
        let p = app_menu(&four);
        assert_eq!(codes(&p), vec![65316]);
        assert!(p[0].message.contains("d.com"), "{}", p[0]);
    }

    #[test]
    fn problems_name_their_place() {
        let p = buttons(
            &[
                Button::click("a", "k"),
                Button::parent(
                    "m",
                    vec![Button::click("b", "k"), Button::leaf("c", "view")],
                ),
            ],
            None,
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].place.path(), "button[1].sub_button[1]");
        assert_eq!(p[0].field, Field::Url);
        assert_eq!(
            p[0].to_string(),
            "button[1].sub_button[1]: a view button needs url (errcode 40027)"
        );
    }
}
