//! Which `/cgi-bin/` paths the emulator implements, and the two that only report addresses:
//! `getcallbackip` and `get_api_domain_ip`.
//!
//! The emulator models the calls the 中控 and the callback depend on. Any other `/cgi-bin/`
//! path is *echoed*: its `access_token` is checked like WeChat checks it (missing 41001,
//! unknown or revoked 40001, expired 42001), then it answers `{"errcode":0,"errmsg":"ok"}`
//! without looking at anything else. That keeps proxies and SDKs testable offline, but an SDK
//! that reads a field from the answer finds nothing. [`IMPLEMENTED`] is the list of paths that
//! answer for real; `GET /_emulator/` returns it, and the docs print it, so nobody has to guess.
//!
//! The address lists: `getcallbackip` names the addresses WeChat's pushes come from, and
//! `get_api_domain_ip` those of `api.weixin.qq.com`. Offline, WeChat's pushes come from
//! `wxmp send` and the API is the emulator, both on this machine, so both answer loopback.
//! SDKs use these calls as a connectivity check (wechatpy's `get_wechat_ips` reads `ip_list`).

use serde_json::{json, Value};

/// The `/cgi-bin/` paths that answer for real; every other one is echoed.
pub const IMPLEMENTED: [&str; 14] = [
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/cgi-bin/ticket/getticket",
    "/cgi-bin/message/custom/send",
    "/cgi-bin/media/upload",
    "/cgi-bin/getcallbackip",
    "/cgi-bin/get_api_domain_ip",
    "/cgi-bin/menu/create",
    "/cgi-bin/menu/get",
    "/cgi-bin/menu/delete",
    "/cgi-bin/menu/addconditional",
    "/cgi-bin/menu/delconditional",
    "/cgi-bin/menu/trymatch",
    "/cgi-bin/get_current_selfmenu_info",
];

/// The answer of an address-list path (after its token check), or `None` for other paths.
pub(crate) fn address_list(path: &str) -> Option<Value> {
    match path {
        "/cgi-bin/getcallbackip" | "/cgi-bin/get_api_domain_ip" => {
            Some(json!({ "ip_list": ["127.0.0.1"] }))
        }
        _ => None,
    }
}
