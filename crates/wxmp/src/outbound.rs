//! wxmp's outgoing HTTP: the one client it calls WeChat, the webhook and the 客服消息 API
//! with, and plain words for the ways such a call fails.
//!
//! Redirects are never followed. Every request wxmp sends carries something a stranger must
//! not get: the AppSecret (token calls), an access_token (proxied calls, 客服消息), a
//! decrypted user message (the webhook). A `307` would make reqwest send all of it again,
//! body included, to whatever host the `Location` names; so a `3xx` comes back to the caller
//! as an answer, and each caller refuses it with [`redirect_refused`].
//!
//! reqwest's own error text is "error sending request for url (…)": it names the URL — which
//! can carry the AppSecret or an access_token in its query — and not the cause, which sits at
//! the end of its source chain. [`describe`] walks that chain instead and says what happened
//! (connection refused, DNS, TLS, timeout) with the host and port only.

use std::error::Error as _;
use std::time::Duration;

/// The HTTP client for every outgoing call: rustls, bounded connect time, no redirects.
/// Callers set their own overall timeout per request.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// The refusal of a `3xx` answer from `who` (`"WeChat"`, `"the webhook"`). Neither the
/// request's URL nor the `Location` is quoted: either may carry a secret in its query.
pub fn redirect_refused(who: &str, status: u16) -> String {
    format!(
        "{who} answered {status} redirect to another location; wxmp does not follow redirects \
         (point the configured URL at the final address)"
    )
}

/// What went wrong with a request, in plain words, naming the host and port but never the
/// URL's path or query.
pub fn describe(e: &reqwest::Error) -> String {
    let target = e
        .url()
        .and_then(|url| {
            let host = url.host_str()?;
            Some(match url.port_or_known_default() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
        })
        .unwrap_or_else(|| "the server".to_owned());
    let https = e.url().is_some_and(|url| url.scheme() == "https");
    let causes = causes(e);
    let last = causes.last().cloned().unwrap_or_default();
    let io_kinds = io_kinds(e);
    let io_kind = |kind: std::io::ErrorKind| io_kinds.contains(&kind);
    let mentions = |needle: &str| {
        causes
            .iter()
            .any(|c| c.to_ascii_lowercase().contains(needle))
    };
    if e.is_timeout() {
        format!("{target} did not answer in time (timed out)")
    } else if mentions("dns error") {
        format!("DNS lookup of {target} failed: {last}")
    } else if io_kind(std::io::ErrorKind::ConnectionRefused) {
        format!("connection refused by {target} (nothing listens there)")
    } else if mentions("certificate")
        || mentions("tls")
        || mentions("handshake")
        // rustls reports every handshake failure as InvalidData ("received corrupt message…").
        || (https && io_kind(std::io::ErrorKind::InvalidData))
    {
        format!("TLS handshake with {target} failed: {last}")
    } else if e.is_connect() {
        format!("cannot connect to {target}: {last}")
    } else if io_kind(std::io::ErrorKind::ConnectionReset)
        || io_kind(std::io::ErrorKind::UnexpectedEof)
        || mentions("connection closed")
        || mentions("incomplete")
    {
        format!("{target} closed the connection before answering in full: {last}")
    } else if e.is_body() || e.is_decode() {
        format!("reading the answer of {target} failed: {last}")
    } else if last.is_empty() {
        format!("request to {target} failed")
    } else {
        format!("request to {target} failed: {last}")
    }
}

/// `e`'s sources, outermost first, without reqwest's own error (its text quotes the URL).
/// An `io::Error` wrapping another error hides that error from `source()` (std skips straight
/// to the inner error's source), so the walk steps into `get_ref()` itself.
fn chain(e: &reqwest::Error) -> Vec<&(dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push(cause);
        next = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => None,
            },
            None => cause.source(),
        };
    }
    out
}

/// The messages of `e`'s sources, outermost first.
fn causes(e: &reqwest::Error) -> Vec<String> {
    chain(e).iter().map(ToString::to_string).collect()
}

/// The kinds of the I/O errors among `e`'s sources, outermost first.
fn io_kinds(e: &reqwest::Error) -> Vec<std::io::ErrorKind> {
    chain(e)
        .iter()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connections_are_named_without_the_query() {
        let e = client()
            .get("http://127.0.0.1:9/cgi-bin/token?secret=s3cret-value")
            .send()
            .await
            .unwrap_err();
        let text = describe(&e);
        assert!(text.contains("connection refused"), "{text}");
        assert!(text.contains("127.0.0.1:9"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("error sending request"), "{text}");
    }

    #[tokio::test]
    async fn dns_failures_say_dns() {
        let e = client()
            .get("http://no-such-host.invalid/?access_token=tok3n")
            .send()
            .await
            .unwrap_err();
        let text = describe(&e);
        assert!(
            text.contains("DNS lookup of no-such-host.invalid"),
            "{text}"
        );
        assert!(!text.contains("tok3n"), "{text}");
    }

    #[tokio::test]
    async fn tls_failures_say_tls() {
        // A plain-HTTP server spoken to in TLS: the handshake fails.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let e = client()
            .get(format!("https://{addr}/?secret=s3cret"))
            .send()
            .await
            .unwrap_err();
        let text = describe(&e);
        assert!(text.contains("TLS handshake"), "{text} {e:?}");
        assert!(!text.contains("s3cret"), "{text}");
        server.abort();
    }

    #[tokio::test]
    async fn timeouts_say_timed_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and never answers.
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let e = client()
            .get(format!("http://{addr}/"))
            .timeout(Duration::from_millis(300))
            .send()
            .await
            .unwrap_err();
        assert!(describe(&e).contains("timed out"), "{}", describe(&e));
        server.abort();
    }
}
