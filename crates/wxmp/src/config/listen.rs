//! Addresses to bind: the config's `listen`, and `--listen` on the command line.
//!
//! People write `localhost:8080` as readily as `127.0.0.1:8080`, so a `host:port` name is
//! resolved once, when the config is read. A name that resolves to both IPv4 and IPv6 binds the
//! IPv4 address: `localhost` then means `127.0.0.1` on every machine, whatever order the
//! resolver returns, and the printed URLs are the ones people expect.

use std::net::{SocketAddr, ToSocketAddrs};

/// Parses `ip:port` or resolves `host:port` to the address to bind.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let shape =
        || format!("{text:?} is not an address like \"127.0.0.1:8080\" or \"localhost:8080\"");
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(shape());
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(shape());
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?} in {text:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{host:?} in {text:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names() {
        assert_eq!(
            parse_listen("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        for bad in [
            "localhost",
            "localhost:",
            ":8080",
            "localhost:99999",
            "8080",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
        let err = parse_listen("no-such-host.invalid:80").unwrap_err();
        assert!(err.contains("cannot resolve"), "{err}");
    }
}
