//! The forward webhook's JSON answer on arbitrary bytes: never a panic; a refusal names a
//! category and a position only (never the answer's text, which may carry user data); an
//! accepted passive reply either renders as passive-reply XML that parses back to itself or is
//! refused by the renderer with -40011 (a 图文 by media_id has no passive form to render).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxmp::callback::parse_webhook_reply;
use wxmp::reply::Outbound;
use wxmp_proto::Reply;

/// `<Category> error at line <n> column <n>`, serde_json's categories.
fn is_position_only(reason: &str) -> bool {
    let Some((category, rest)) = reason.split_once(" error at line ") else {
        return false;
    };
    let Some((line, column)) = rest.split_once(" column ") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(category, "Io" | "Syntax" | "Data" | "Eof") && digits(line) && digits(column)
}

fuzz_target!(|data: &[u8]| {
    let reply = match parse_webhook_reply(data) {
        Ok(Some(Outbound::Reply { reply, .. })) => reply,
        // A 图文 material by media_id has no passive form: nothing to render.
        Ok(Some(Outbound::MpNews { .. })) => return,
        Ok(None) => {
            assert!(
                data.trim_ascii().is_empty(),
                "a non-blank answer read as no reply"
            );
            return;
        }
        Err(reason) => {
            let detail = reason.rsplit("): ").next().unwrap_or_default();
            assert!(is_position_only(detail), "{reason}");
            return;
        }
    };
    match reply.render("oUser", "gh_fuzz", 1) {
        Ok(xml) => {
            let parsed = Reply::parse(xml.as_bytes()).expect("a rendered reply parses");
            assert_eq!(parsed.reply, reply);
        }
        Err(e) => assert_eq!(e.code(), -40011, "{e}"),
    }
});
