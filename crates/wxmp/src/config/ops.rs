//! `[ops]`: the operator's side of the server.
//!
//! `listen` opens a second, admin-only listener for `/status`, `/metrics` and `/healthz`
//! without authentication, meant for a loopback or private-network address a monitoring
//! system scrapes. Without it those pages live on the main listener behind an API key (see
//! `crate::ops`).
//!
//! `alert_webhook` is where wxmp POSTs a JSON alert when something needs a person that a log
//! line alone would let go unnoticed (another party refreshing the access_token with the same
//! AppSecret; see `crate::alert`).

use std::net::SocketAddr;

use serde::Deserialize;
use url::Url;

use super::{parse_http_url, parse_listen, Checker};

/// The `[ops]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpsConfig {
    /// The admin listener, if any.
    pub listen: Option<SocketAddr>,
    /// Where alerts are POSTed, if anywhere.
    pub alert_webhook: Option<Url>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOps {
    listen: Option<String>,
    alert_webhook: Option<String>,
}

pub(super) fn ops_config(c: &mut Checker<'_>, raw: RawOps) -> Option<OpsConfig> {
    let listen = match raw.listen {
        None => None,
        Some(text) => {
            let text = c.resolve("ops.listen", &text)?;
            match parse_listen(&text) {
                Ok(addr) => Some(addr),
                Err(e) => {
                    c.problem(format!("ops.listen = {e}"));
                    return None;
                }
            }
        }
    };
    let alert_webhook = match raw.alert_webhook {
        None => None,
        Some(text) => {
            let url = c.resolve("ops.alert_webhook", &text)?;
            Some(parse_http_url(c, "ops.alert_webhook", &url)?)
        }
    };
    Some(OpsConfig {
        listen,
        alert_webhook,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::Config;

    #[test]
    fn ops_listen_parses_and_is_checked() {
        let env = HashMap::new();
        let c = Config::parse("[ops]\nlisten = \"127.0.0.1:9090\"\n", &env).unwrap();
        assert_eq!(c.ops.listen, Some("127.0.0.1:9090".parse().unwrap()));
        let c = Config::parse("", &env).unwrap();
        assert_eq!(c.ops.listen, None);
        let err = Config::parse("[ops]\nlisten = \"nowhere\"\n", &env).unwrap_err();
        assert!(err.to_string().contains("ops.listen"), "{err}");
        let err = Config::parse("[ops]\nlisen = \"127.0.0.1:1\"\n", &env).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn alert_webhook_is_an_http_url() {
        let env = HashMap::new();
        let text = "[ops]\nalert_webhook = \"http://127.0.0.1:9000/alerts\"\n";
        let c = Config::parse(text, &env).unwrap();
        assert_eq!(
            c.ops.alert_webhook.unwrap().as_str(),
            "http://127.0.0.1:9000/alerts"
        );
        let err = Config::parse("[ops]\nalert_webhook = \"ftp://x\"\n", &env).unwrap_err();
        assert!(err.to_string().contains("ops.alert_webhook"), "{err}");
    }
}
