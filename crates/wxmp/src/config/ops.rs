//! `[ops]`: the operator's side of the server.
//!
//! `listen` opens a second, admin-only listener for `/status`, `/metrics` and `/healthz`
//! without authentication, meant for a loopback or private-network address a monitoring
//! system scrapes. Without it those pages live on the main listener behind an API key (see
//! `crate::ops`).

use std::net::SocketAddr;

use serde::Deserialize;

use super::{parse_listen, Checker};

/// The `[ops]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpsConfig {
    /// The admin listener, if any.
    pub listen: Option<SocketAddr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOps {
    listen: Option<String>,
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
    Some(OpsConfig { listen })
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
}
