//! The emulated 自定义菜单 interfaces: `menu/create`, `menu/get`, `menu/delete`,
//! `menu/addconditional`, `menu/delconditional`, `menu/trymatch` and
//! `get_current_selfmenu_info`.
//!
//! A menu is judged by [`crate::menu::validate`], the same code that checks the config file,
//! so the emulator refuses exactly what `wxmp check` refuses, with the errcode WeChat gives.
//! Like the rest of the state machine this is plain synchronous code: a call and its body go in,
//! JSON or a refusal comes out, and the caller (`state.rs`) has already checked the token.
//!
//! What the emulator cannot know — a follower's tags and phone — comes from
//! [`super::Emulator::set_user`]; an unknown user has neither, so `trymatch` shows them the
//! default menu.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::menu::validate::{self, MAX_CONDITIONAL_DOMAINS};
use crate::menu::{errcode, Button, ConditionalMenu, MatchRule};

/// Which menu interface a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MenuCall {
    Create,
    Get,
    Delete,
    AddConditional,
    DelConditional,
    TryMatch,
    CurrentSelfmenu,
}

impl MenuCall {
    /// The interface of `path`, if it is a menu one.
    pub fn of(path: &str) -> Option<MenuCall> {
        Some(match path {
            "/cgi-bin/menu/create" => MenuCall::Create,
            "/cgi-bin/menu/get" => MenuCall::Get,
            "/cgi-bin/menu/delete" => MenuCall::Delete,
            "/cgi-bin/menu/addconditional" => MenuCall::AddConditional,
            "/cgi-bin/menu/delconditional" => MenuCall::DelConditional,
            "/cgi-bin/menu/trymatch" => MenuCall::TryMatch,
            "/cgi-bin/get_current_selfmenu_info" => MenuCall::CurrentSelfmenu,
            _ => return None,
        })
    }

    /// True for the interfaces called with `POST` and a JSON body.
    pub fn is_post(self) -> bool {
        matches!(
            self,
            MenuCall::Create
                | MenuCall::AddConditional
                | MenuCall::DelConditional
                | MenuCall::TryMatch
        )
    }
}

/// A refusal: `errcode` and `errmsg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub errcode: i64,
    pub errmsg: String,
}

impl Refusal {
    fn code(errcode: i64) -> Refusal {
        Refusal {
            errcode,
            errmsg: errcode::errmsg(errcode).to_owned(),
        }
    }

    fn new(errcode: i64, errmsg: &str) -> Refusal {
        Refusal {
            errcode,
            errmsg: errmsg.to_owned(),
        }
    }
}

/// A follower as far as menus care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmulatedUser {
    /// Tag ids, in the order they were given (the last one is the one menus match).
    pub tags: Vec<String>,
    /// `client_platform_type`: "1" iOS, "2" Android, "3" others.
    pub platform: Option<String>,
}

/// One app's menus.
#[derive(Debug, Default)]
pub(crate) struct Menus {
    /// The default menu and its menuid.
    default: Option<(u64, Vec<Button>)>,
    /// The 个性化菜单 in publication order, with their menuids.
    conditional: Vec<(u64, ConditionalMenu)>,
    next_id: u64,
    /// Followers by OpenID (set by tests).
    pub users: HashMap<String, EmulatedUser>,
}

impl Menus {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        // Shaped like WeChat's nine-digit menuids.
        400_000_000 + self.next_id
    }

    /// Answers one menu call; the token has been checked, `post` says whether the method was
    /// `POST`.
    pub fn answer(&mut self, call: MenuCall, post: bool, body: &[u8]) -> Result<Value, Refusal> {
        if call.is_post() != post {
            return Err(if call.is_post() {
                Refusal::new(43002, "require POST method")
            } else {
                Refusal::new(43001, "require GET method")
            });
        }
        match call {
            MenuCall::Create => self.create(body),
            MenuCall::Get => self.get(),
            MenuCall::Delete => {
                self.default = None;
                self.conditional.clear();
                Ok(ok())
            }
            MenuCall::AddConditional => self.add_conditional(body),
            MenuCall::DelConditional => self.del_conditional(body),
            MenuCall::TryMatch => self.try_match(body),
            MenuCall::CurrentSelfmenu => Ok(self.current_selfmenu()),
        }
    }

    fn create(&mut self, body: &[u8]) -> Result<Value, Refusal> {
        #[derive(Deserialize)]
        struct Create {
            #[serde(default)]
            button: Vec<Button>,
        }
        let create: Create = parse(body)?;
        refuse_first(validate::buttons(&create.button, None))?;
        let id = self.new_id();
        self.default = Some((id, create.button));
        Ok(ok())
    }

    fn get(&self) -> Result<Value, Refusal> {
        let Some((id, buttons)) = &self.default else {
            return Err(Refusal::code(46003));
        };
        let mut answer = json!({ "menu": { "button": as_get(buttons), "menuid": id } });
        if !self.conditional.is_empty() {
            answer["conditionalmenu"] = self
                .conditional
                .iter()
                .map(|(id, c)| {
                    json!({ "button": as_get(&c.button), "matchrule": c.matchrule, "menuid": id })
                })
                .collect();
        }
        Ok(answer)
    }

    fn add_conditional(&mut self, body: &[u8]) -> Result<Value, Refusal> {
        #[derive(Deserialize)]
        struct Add {
            #[serde(default)]
            button: Vec<Button>,
            matchrule: Option<MatchRule>,
        }
        let add: Add = parse(body)?;
        if self.default.is_none() {
            return Err(Refusal::code(65303));
        }
        let menu = ConditionalMenu {
            button: add.button,
            matchrule: add.matchrule.unwrap_or_default(),
            menuid: None,
        };
        refuse_first(validate::conditional(self.conditional.len(), &menu))?;
        let domains = validate::conditional_domains(
            self.conditional
                .iter()
                .map(|(_, c)| c)
                .chain(std::iter::once(&menu)),
        );
        if domains.len() > MAX_CONDITIONAL_DOMAINS {
            return Err(Refusal::code(65316));
        }
        let id = self.new_id();
        self.conditional.push((id, menu));
        Ok(json!({ "menuid": id.to_string() }))
    }

    fn del_conditional(&mut self, body: &[u8]) -> Result<Value, Refusal> {
        #[derive(Deserialize)]
        struct Del {
            menuid: Option<Value>,
        }
        let del: Del = parse(body)?;
        let wanted = match del.menuid {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(Refusal::code(65301)),
        };
        let before = self.conditional.len();
        self.conditional.retain(|(id, _)| id.to_string() != wanted);
        if self.conditional.len() == before {
            return Err(Refusal::code(65301));
        }
        Ok(ok())
    }

    fn try_match(&self, body: &[u8]) -> Result<Value, Refusal> {
        #[derive(Deserialize)]
        struct Try {
            user_id: Option<String>,
        }
        let try_match: Try = parse(body)?;
        let user_id = try_match
            .user_id
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Refusal::code(65302))?;
        let Some((_, default)) = &self.default else {
            return Err(Refusal::code(46003));
        };
        let user = self.users.get(&user_id).cloned().unwrap_or_default();
        // Newest first, as WeChat matches.
        let matched = self
            .conditional
            .iter()
            .rev()
            .find(|(_, c)| rule_matches(&c.matchrule, &user))
            .map_or(default, |(_, c)| &c.button);
        Ok(json!({ "button": as_get(matched) }))
    }

    fn current_selfmenu(&self) -> Value {
        let Some((_, buttons)) = &self.default else {
            return json!({ "is_menu_open": 0, "selfmenu_info": { "button": [] } });
        };
        let button: Vec<Value> = buttons
            .iter()
            .map(|b| {
                let mut v = json!(b);
                if !b.sub_button.is_empty() {
                    v["sub_button"] = json!({ "list": b.sub_button });
                }
                v
            })
            .collect();
        json!({ "is_menu_open": 1, "selfmenu_info": { "button": button } })
    }
}

/// True when every condition of `rule` holds for `user`. Rules with privacy conditions
/// stopped matching when WeChat dropped them, so they never match here.
fn rule_matches(rule: &MatchRule, user: &EmulatedUser) -> bool {
    let fields = rule.fields();
    !fields.is_empty()
        && fields.iter().all(|(name, value)| match *name {
            "tag_id" => user.tags.last().is_some_and(|t| t == value),
            "client_platform_type" => user.platform.as_deref() == Some(*value),
            _ => false,
        })
}

/// Buttons as `menu/get` writes them: every leaf with an empty `sub_button` list.
fn as_get(buttons: &[Button]) -> Value {
    buttons
        .iter()
        .map(|b| {
            let mut v = json!(b);
            v["sub_button"] = as_get(&b.sub_button);
            v
        })
        .collect()
}

fn ok() -> Value {
    json!({ "errcode": 0, "errmsg": "ok" })
}

/// Reads a JSON body like WeChat: empty → 44002, `\uXXXX` escapes → 40033, not the expected
/// JSON → 47001.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::new(44002, "empty post data"));
    }
    if has_unicode_escape(body) {
        return Err(Refusal::new(
            40033,
            "invalid charset. please check your request, if include \\uxxxx will create fail!",
        ));
    }
    serde_json::from_slice(body).map_err(|_| Refusal::new(47001, "data format error"))
}

/// WeChat refuses non-ASCII text sent as `\uXXXX` escapes; it wants UTF-8 bytes.
fn has_unicode_escape(body: &[u8]) -> bool {
    body.windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(u8::is_ascii_hexdigit))
}

fn refuse_first(problems: Vec<validate::Problem>) -> Result<(), Refusal> {
    match problems.first() {
        Some(p) => Err(Refusal::code(p.errcode)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(menus: &mut Menus, call: MenuCall, body: Value) -> Result<Value, Refusal> {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        menus.answer(call, call.is_post(), &bytes)
    }

    fn code(r: Result<Value, Refusal>) -> i64 {
        r.map_or_else(|e| e.errcode, |_| 0)
    }

    #[test]
    fn create_get_delete() {
        let mut m = Menus::default();
        assert_eq!(code(call(&mut m, MenuCall::Get, Value::Null)), 46003);
        let menu = json!({"button":[{"type":"click","name":"今日","key":"K"},
            {"name":"更多","sub_button":[{"type":"view","name":"官网","url":"https://example.com/"}]}]});
        assert_eq!(code(call(&mut m, MenuCall::Create, menu)), 0);
        let got = call(&mut m, MenuCall::Get, Value::Null).unwrap();
        assert_eq!(got["menu"]["button"][0]["sub_button"], json!([]));
        assert_eq!(
            got["menu"]["button"][1]["sub_button"][0]["url"],
            "https://example.com/"
        );
        assert!(got["menu"]["menuid"].is_u64());
        let info = call(&mut m, MenuCall::CurrentSelfmenu, Value::Null).unwrap();
        assert_eq!(info["is_menu_open"], 1);
        assert_eq!(
            info["selfmenu_info"]["button"][1]["sub_button"]["list"][0]["name"],
            "官网"
        );
        assert_eq!(code(call(&mut m, MenuCall::Delete, Value::Null)), 0);
        assert_eq!(code(call(&mut m, MenuCall::Get, Value::Null)), 46003);
    }

    #[test]
    fn refusals_carry_wechats_codes() {
        let mut m = Menus::default();
        let four = json!({"button":[{"type":"click","name":"a","key":"k"},{"type":"click","name":"a","key":"k"},
            {"type":"click","name":"a","key":"k"},{"type":"click","name":"a","key":"k"}]});
        assert_eq!(code(call(&mut m, MenuCall::Create, four)), 40016);
        let long = json!({"button":[{"type":"click","name":"今日特价来了","key":"k"}]});
        let refused = call(&mut m, MenuCall::Create, long).unwrap_err();
        assert_eq!(refused, Refusal::new(40018, "invalid button name size"));
        assert_eq!(
            m.answer(
                MenuCall::Create,
                true,
                br#"{"button":[{"type":"click","name":"\u4eca","key":"k"}]}"#
            )
            .unwrap_err()
            .errcode,
            40033
        );
        assert_eq!(
            m.answer(MenuCall::Create, true, b"  ").unwrap_err().errcode,
            44002
        );
        assert_eq!(
            m.answer(MenuCall::Create, true, b"{").unwrap_err().errcode,
            47001
        );
        assert_eq!(
            m.answer(MenuCall::Create, false, b"").unwrap_err().errcode,
            43002
        );
        assert_eq!(
            m.answer(MenuCall::Get, true, b"").unwrap_err().errcode,
            43001
        );
    }

    #[test]
    fn conditional_menus_match_newest_first() {
        let mut m = Menus::default();
        let add = |tag: &str, name: &str| json!({"button":[{"type":"click","name":name,"key":"k"}],"matchrule":{"tag_id":tag}});
        assert_eq!(
            code(call(&mut m, MenuCall::AddConditional, add("1", "c"))),
            65303
        );
        let default = json!({"button":[{"type":"click","name":"default","key":"k"}]});
        call(&mut m, MenuCall::Create, default).unwrap();
        let empty_rule = json!({"button":[{"type":"click","name":"x","key":"k"}],"matchrule":{}});
        assert_eq!(
            code(call(&mut m, MenuCall::AddConditional, empty_rule)),
            65304
        );
        let private =
            json!({"button":[{"type":"click","name":"x","key":"k"}],"matchrule":{"sex":"1"}});
        assert_eq!(code(call(&mut m, MenuCall::AddConditional, private)), 65320);
        let first = call(&mut m, MenuCall::AddConditional, add("1", "one")).unwrap();
        call(&mut m, MenuCall::AddConditional, add("1", "newer")).unwrap();
        m.users.insert(
            "oTagged".into(),
            EmulatedUser {
                tags: vec!["7".into(), "1".into()],
                platform: None,
            },
        );
        let tried = |m: &mut Menus, user: &str| {
            call(m, MenuCall::TryMatch, json!({ "user_id": user })).unwrap()["button"][0]["name"]
                .clone()
        };
        assert_eq!(tried(&mut m, "oTagged"), "newer");
        assert_eq!(tried(&mut m, "oStranger"), "default");
        assert_eq!(code(call(&mut m, MenuCall::TryMatch, json!({}))), 65302);
        let got = call(&mut m, MenuCall::Get, Value::Null).unwrap();
        assert_eq!(got["conditionalmenu"][0]["button"][0]["name"], "one");
        let id = first["menuid"].as_str().unwrap().to_owned();
        assert_eq!(
            code(call(
                &mut m,
                MenuCall::DelConditional,
                json!({ "menuid": id })
            )),
            0
        );
        assert_eq!(
            code(call(
                &mut m,
                MenuCall::DelConditional,
                json!({ "menuid": id })
            )),
            65301
        );
        // Four link domains across the conditional menus.
        for host in ["a.com", "b.com", "c.com"] {
            let add = json!({"button":[{"type":"view","name":"v","url":format!("https://{host}/")}],
                "matchrule":{"tag_id":"2"}});
            assert_eq!(
                code(call(&mut m, MenuCall::AddConditional, add)),
                0,
                "{host}"
            );
        }
        let fourth = json!({"button":[{"type":"view","name":"v","url":"https://d.com/"}],"matchrule":{"tag_id":"2"}});
        assert_eq!(code(call(&mut m, MenuCall::AddConditional, fourth)), 65316);
    }
}
