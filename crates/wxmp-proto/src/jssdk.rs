//! JS-SDK signatures: the `wx.config` signature and the wx_card `cardExt` signature.
//!
//! `wx.config` signs `jsapi_ticket=…&noncestr=…&timestamp=…&url=…` (keys in ASCII order, raw
//! values, no URL escaping) with SHA-1, where `url` is the page URL without its `#fragment`
//! (JS-SDK 附录1). The 卡券 `cardExt` signature is a different algorithm: SHA-1 over the sorted
//! *values* `api_ticket, nonce_str, timestamp, card_id, code, openid`, empty ones included.

use crate::signature::Signature;

/// The page URL as WeChat signs it: everything before the first `#`.
pub fn signing_url(url: &str) -> &str {
    url.split_once('#').map_or(url, |(before, _)| before)
}

/// The `string1` that `wx.config`'s signature covers. The URL's `#fragment` is dropped.
pub fn jsapi_string1(jsapi_ticket: &str, noncestr: &str, timestamp: &str, url: &str) -> String {
    let url = signing_url(url);
    let mut s = String::with_capacity(
        jsapi_ticket.len() + noncestr.len() + timestamp.len() + url.len() + 40,
    );
    s.push_str("jsapi_ticket=");
    s.push_str(jsapi_ticket);
    s.push_str("&noncestr=");
    s.push_str(noncestr);
    s.push_str("&timestamp=");
    s.push_str(timestamp);
    s.push_str("&url=");
    s.push_str(url);
    s
}

/// The `wx.config` signature for a page at `url` (any `#fragment` is dropped).
pub fn jsapi_signature(
    jsapi_ticket: &str,
    noncestr: &str,
    timestamp: &str,
    url: &str,
) -> Signature {
    Signature::of_bytes(jsapi_string1(jsapi_ticket, noncestr, timestamp, url).as_bytes())
}

/// The inputs of a 卡券 `cardExt` signature; `code` and `openid` may be empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct CardExt<'a> {
    /// The `wx_card` api_ticket.
    pub api_ticket: &'a str,
    /// A random string.
    pub nonce_str: &'a str,
    /// Unix seconds.
    pub timestamp: &'a str,
    /// The card id.
    pub card_id: &'a str,
    /// The card code, or empty.
    pub code: &'a str,
    /// The user's OpenID, or empty.
    pub openid: &'a str,
}

/// The `cardExt` signature: SHA-1 over the byte-sorted concatenation of the six values.
pub fn card_ext_signature(card: &CardExt<'_>) -> Signature {
    Signature::of_sorted(&mut [
        card.api_ticket,
        card.nonce_str,
        card.timestamp,
        card.card_id,
        card.code,
        card.openid,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICKET: &str =
        "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";

    #[test]
    fn fragment_is_not_signed() {
        let with = jsapi_signature(TICKET, "n", "1", "http://mp.weixin.qq.com?params=value#top");
        let without = jsapi_signature(TICKET, "n", "1", "http://mp.weixin.qq.com?params=value");
        assert_eq!(with, without);
        assert_eq!(signing_url("https://a.b/c#d#e"), "https://a.b/c");
        assert_eq!(signing_url("https://a.b/c"), "https://a.b/c");
    }
}
