//! `GET /dev/oauth`: a business page for trying OAuth 网页授权 in a browser, served by
//! `wxmp serve --dev` only.
//!
//! It plays both halves of a business server: the page links to `/oauth/demo?return=…` (the
//! browser flow), and when the browser comes back with `?wxmp_ticket=…` it redeems the ticket
//! exactly as a business server would with `POST /v1/apps/demo/oauth/ticket`, and shows what
//! it got. Under `serve --dev` WeChat is the in-process emulator, whose authorize page
//! consents at once, so one click runs the whole flow. Everything shown is HTML-escaped.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use axum::Router;

use super::flow::redeem_ticket;
use crate::state::AppState;

/// The path of the page.
pub const PATH: &str = "/dev/oauth";

/// The demo page's route for `app`.
pub fn routes(state: AppState, app: &str) -> Router {
    let app = app.to_owned();
    Router::new()
        .route(
            PATH,
            get(
                move |state: State<AppState>, q: Query<HashMap<String, String>>| {
                    page(state, q, app.clone())
                },
            ),
        )
        .with_state(state)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn page(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    app: String,
) -> Html<String> {
    let base = state
        .config
        .public_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    let back = format!("{base}{PATH}");
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let link = |scope: &str| format!("/oauth/{app}?return={}&scope={scope}", enc(&back));
    let result = if let Some(ticket) = q.get("wxmp_ticket") {
        match redeem_ticket(&state, &app, ticket).await {
            Ok(identity) => {
                let json = serde_json::to_string_pretty(&identity).unwrap_or_default();
                format!(
                    "<h2>Signed in</h2>\n<p>The ticket was redeemed (as <code>POST /v1/apps/{app}/oauth/ticket</code> \
                     would):</p>\n<dl><dt>openid</dt><dd id=\"openid\">{}</dd><dt>scope</dt><dd id=\"scope\">{}</dd>\
                     <dt>nickname</dt><dd id=\"nickname\">{}</dd></dl>\n<pre id=\"identity\">{}</pre>\n\
                     <p>Reload this page: the ticket is single-use, so the second redemption fails.</p>",
                    escape(&identity.openid),
                    escape(&identity.scope),
                    escape(
                        identity
                            .userinfo
                            .as_ref()
                            .and_then(|u| u["nickname"].as_str())
                            .unwrap_or("(snsapi_base has no profile)")
                    ),
                    escape(&json)
                )
            }
            Err(e) => format!(
                "<h2>Not signed in</h2>\n<p id=\"error\">{}</p>",
                escape(&e.to_string())
            ),
        }
    } else if let Some(error) = q.get("wxmp_error") {
        format!(
            "<h2>Not signed in</h2>\n<p id=\"error\">wxmp_error={}</p>",
            escape(error)
        )
    } else {
        String::new()
    };
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>wxmp OAuth demo</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\n<body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\">\n\
         <h1>A business page</h1>\n<p>It needs the visitor's OpenID but holds no AppSecret: wxmp does \
         the exchange. (WeChat here is the emulator, which consents for a test user at once.)</p>\n\
         <p><a id=\"signin\" href=\"{}\">Sign in with WeChat (snsapi_userinfo)</a><br>\
         <a id=\"signin-base\" href=\"{}\">Sign in silently (snsapi_base)</a></p>\n{result}\n</body></html>\n",
        escape(&link("snsapi_userinfo")),
        escape(&link("snsapi_base")),
    ))
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
