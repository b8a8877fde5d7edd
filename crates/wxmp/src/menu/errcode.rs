//! The errcodes of the menu interfaces: WeChat's `errmsg`, and what each means in plain words.
//!
//! One table serves three readers: [`super::validate`] tags each problem with the errcode
//! WeChat would answer, the emulator answers that errcode with WeChat's `errmsg`, and
//! `wxmp menu push` explains a refusal from the real WeChat in the table's plain words. The
//! codes and `errmsg`s come from WeChat's global return-code table and the menu interface
//! pages; where WeChat's exact `errmsg` is not documented (65316, 65320) the text is wxmp's.

/// One errcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errcode {
    /// The `errcode`.
    pub code: i64,
    /// WeChat's `errmsg` (without the `rid: …` suffix WeChat appends).
    pub errmsg: &'static str,
    /// What it means and what to do.
    pub plain: &'static str,
}

/// Every menu errcode wxmp knows.
pub const TABLE: &[Errcode] = &[
    Errcode {
        code: 40007,
        errmsg: "invalid media_id",
        plain: "a media_id is not a permanent material of this account (upload it under 素材管理 → 永久素材), or a required media_id/article_id is missing",
    },
    Errcode {
        code: 40016,
        errmsg: "invalid button size",
        plain: "a menu has 1 to 3 top-level buttons",
    },
    Errcode {
        code: 40017,
        errmsg: "invalid button type",
        plain: "a top-level button without sub_buttons needs a type WeChat knows (click, view, miniprogram, scancode_push, scancode_waitmsg, pic_sysphoto, pic_photo_or_album, pic_weixin, location_select, media_id, article_id, article_view_limited, view_limited)",
    },
    Errcode {
        code: 40018,
        errmsg: "invalid button name size",
        plain: "a top-level button's name is 1 to 16 bytes (a Chinese character takes 3)",
    },
    Errcode {
        code: 40019,
        errmsg: "invalid button key size",
        plain: "a top-level button's key is 1 to 128 bytes, and click, scancode, pic and location_select buttons need one",
    },
    Errcode {
        code: 40020,
        errmsg: "invalid button url size",
        plain: "a top-level button's url is 1 to 1024 bytes, and view and miniprogram buttons need one",
    },
    Errcode {
        code: 40023,
        errmsg: "invalid sub button size",
        plain: "a button holds at most 5 sub_buttons",
    },
    Errcode {
        code: 40024,
        errmsg: "invalid sub button type",
        plain: "every sub_button needs a type WeChat knows, and sub_buttons cannot hold sub_buttons of their own",
    },
    Errcode {
        code: 40025,
        errmsg: "invalid sub button name size",
        plain: "a sub_button's name is 1 to 60 bytes (a Chinese character takes 3)",
    },
    Errcode {
        code: 40026,
        errmsg: "invalid sub button key size",
        plain: "a sub_button's key is 1 to 128 bytes, and click, scancode, pic and location_select sub_buttons need one",
    },
    Errcode {
        code: 40027,
        errmsg: "invalid sub button url size",
        plain: "a sub_button's url is 1 to 1024 bytes, and view and miniprogram sub_buttons need one",
    },
    Errcode {
        code: 40054,
        errmsg: "invalid sub button url domain",
        plain: "a sub_button's url must be an http:// or https:// address WeChat accepts",
    },
    Errcode {
        code: 40055,
        errmsg: "invalid button url domain",
        plain: "a top-level button's url must be an http:// or https:// address WeChat accepts",
    },
    Errcode {
        code: 40097,
        errmsg: "invalid args",
        plain: "a value has the wrong shape (a matchrule's tag_id is a tag's number; client_platform_type is 1, 2 or 3)",
    },
    Errcode {
        code: 40165,
        errmsg: "invalid weapp pagepath",
        plain: "a miniprogram button needs the pagepath of a page in the Mini Program's released version",
    },
    Errcode {
        code: 40166,
        errmsg: "invalid weapp appid",
        plain: "a miniprogram button needs the appid of a Mini Program linked to this account (关联小程序)",
    },
    Errcode {
        code: 46003,
        errmsg: "menu no exist",
        plain: "the account has no menu published through the API",
    },
    Errcode {
        code: 48001,
        errmsg: "api unauthorized",
        plain: "this account may not call the menu API (check 接口权限: the type of account and its 认证)",
    },
    Errcode {
        code: 65301,
        errmsg: "this menu is not conditionalmenu",
        plain: "no 个性化菜单 has that menuid",
    },
    Errcode {
        code: 65302,
        errmsg: "no such user",
        plain: "no follower has that OpenID or WeChat ID",
    },
    Errcode {
        code: 65303,
        errmsg: "there is no selfmenu, please create selfmenu first",
        plain: "a 个性化菜单 needs a default menu: give the app a [[apps.NAME.menu.button]] too",
    },
    Errcode {
        code: 65304,
        errmsg: "match rule empty",
        plain: "a 个性化菜单's matchrule needs at least one condition (tag_id or client_platform_type)",
    },
    Errcode {
        code: 65305,
        errmsg: "menu count limit",
        plain: "the account has as many 个性化菜单 as WeChat allows: remove some",
    },
    Errcode {
        code: 65306,
        errmsg: "conditional menu not support",
        plain: "this account may not have 个性化菜单 (only 认证 accounts may)",
    },
    Errcode {
        code: 65307,
        errmsg: "conditional menu is empty",
        plain: "a 个性化菜单 needs buttons",
    },
    Errcode {
        code: 65308,
        errmsg: "exist empty button act",
        plain: "a button of a 个性化菜单 has neither a type nor sub_buttons",
    },
    Errcode {
        code: 65309,
        errmsg: "conditional menu switch is closed",
        plain: "个性化菜单 are switched off for this account",
    },
    Errcode {
        code: 65310,
        errmsg: "region info: country is empty",
        plain: "a matchrule with a province or city needs a country",
    },
    Errcode {
        code: 65311,
        errmsg: "region info: province is empty",
        plain: "a matchrule with a city needs a province",
    },
    Errcode {
        code: 65312,
        errmsg: "invalid country info",
        plain: "the matchrule's country is not in WeChat's region table",
    },
    Errcode {
        code: 65313,
        errmsg: "invalid province info",
        plain: "the matchrule's province is not in WeChat's region table",
    },
    Errcode {
        code: 65314,
        errmsg: "invalid city info",
        plain: "the matchrule's city is not in WeChat's region table",
    },
    Errcode {
        code: 65316,
        errmsg: "too many url domains in conditional menus",
        plain: "all 个性化菜单 of an account together may link to at most 3 domains",
    },
    Errcode {
        code: 65317,
        errmsg: "invalid url",
        plain: "a url is not one WeChat accepts",
    },
    Errcode {
        code: 65320,
        errmsg: "matchrule contains privacy info",
        plain: "WeChat no longer accepts sex, country, province, city or language in a new matchrule (privacy): keep tag_id and client_platform_type",
    },
];

/// The entry for `code`.
pub fn lookup(code: i64) -> Option<&'static Errcode> {
    TABLE.iter().find(|e| e.code == code)
}

/// WeChat's `errmsg` for `code` (the emulator's answer).
pub fn errmsg(code: i64) -> &'static str {
    lookup(code).map_or("invalid args", |e| e.errmsg)
}

/// A refusal from WeChat in plain words: what the code means, then WeChat's own text.
pub fn explain(code: i64, errmsg: &str) -> String {
    match lookup(code) {
        Some(e) => format!(
            "WeChat refused the menu (errcode {code}): {}. WeChat said: {errmsg}",
            e.plain
        ),
        None => format!("WeChat refused the menu with errcode {code}: {errmsg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_explained() {
        for (i, e) in TABLE.iter().enumerate() {
            assert!(
                TABLE[i + 1..].iter().all(|o| o.code != e.code),
                "{}",
                e.code
            );
            assert!(!e.plain.is_empty() && !e.errmsg.is_empty());
        }
        assert!(explain(40018, "invalid button name size rid: x").contains("16 bytes"));
        assert!(explain(99999, "odd").contains("99999"));
    }
}
