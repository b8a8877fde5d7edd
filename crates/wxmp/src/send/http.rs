//! The impure half of `wxmp send`: the clock, the randomness and the HTTP exchanges, with
//! WeChat's delivery rules — a 5-second deadline per attempt, and on a timeout or a failed
//! connection the same push again (same `MsgId` and `CreateTime`) under a fresh `timestamp`,
//! `nonce` and signature.
//!
//! Every attempt is reported on stderr as it starts and ends, because the interesting case —
//! a server that takes longer than WeChat waits — is otherwise five silent seconds. Redirects
//! are not followed and bodies are capped at 1 MiB: a callback URL must answer by itself,
//! with a small XML document.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rand::distributions::Alphanumeric;
use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, RequestBuilder, StatusCode};
use url::Url;
use wxmp_proto::signature::Token;
use wxmp_proto::xml::MAX_XML_BYTES;

use super::build::{handshake_query, sign_request, Credentials, Outgoing};

/// The current Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A nonce like WeChat's: a random decimal number of nine or ten digits.
fn fresh_nonce() -> String {
    rand::thread_rng()
        .gen_range(100_000_000u32..=u32::MAX)
        .to_string()
}

/// The 16 random bytes in front of an encrypted message; ASCII letters and digits, as the
/// official samples write them (decoders treat them as opaque bytes either way).
fn fresh_random() -> [u8; 16] {
    let mut random = [0u8; 16];
    for (byte, c) in random
        .iter_mut()
        .zip(rand::thread_rng().sample_iter(Alphanumeric))
    {
        *byte = c;
    }
    random
}

/// A `MsgId` like WeChat's: a random 64-bit id below 2^63, so that servers storing it in a
/// signed 64-bit column (Java `long`, SQL `BIGINT`) cope, as they do with real ids.
pub(crate) fn fresh_msg_id() -> u64 {
    rand::thread_rng().gen_range(1_000_000_000_000_000_000u64..=i64::MAX.unsigned_abs())
}

/// An `echostr` like WeChat's: a random 19-digit decimal number.
fn fresh_echostr() -> String {
    fresh_msg_id().to_string()
}

/// An HTTP answer the server gave in time.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The body, at most 1 MiB.
    pub body: Vec<u8>,
}

/// Why an attempt got no answer.
enum Failure {
    /// Nothing within the deadline (connecting, sending or reading).
    Timeout,
    /// The connection failed or broke.
    Transport(String),
    /// The server answered, with more than 1 MiB.
    TooLarge,
}

/// An HTTP client with WeChat's habits: one deadline per attempt, no redirects.
pub(crate) struct Transport {
    client: Client,
    timeout: Duration,
}

impl Transport {
    /// A client for `url` with `timeout` per attempt. Environment proxies are honoured,
    /// except for loopback URLs, which a proxy could only get wrong.
    pub(crate) fn new(url: &Url, timeout: Duration) -> anyhow::Result<Transport> {
        let mut builder = Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxmp-send/", env!("CARGO_PKG_VERSION")));
        if is_loopback(url) {
            builder = builder.no_proxy();
        }
        let client = builder.build().context("cannot set up the HTTP client")?;
        Ok(Transport { client, timeout })
    }

    /// Sends one request and reads the whole answer within the deadline.
    async fn exchange(&self, request: RequestBuilder) -> Result<Answer, Failure> {
        let mut response = request.send().await.map_err(|e| self.failure(&e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failure(&e))? {
            if body.len() + chunk.len() > MAX_XML_BYTES {
                return Err(Failure::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, body })
    }

    fn failure(&self, error: &reqwest::Error) -> Failure {
        if error.is_timeout() {
            return Failure::Timeout;
        }
        // reqwest's own message only names the URL; the cause is at the end of the chain.
        let mut cause: &dyn std::error::Error = error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        Failure::Transport(cause.to_string())
    }

    fn describe(&self, failure: &Failure) -> String {
        match failure {
            Failure::Timeout => format!("no answer within {} ms", self.timeout.as_millis()),
            Failure::Transport(cause) => format!("connection failed: {cause}"),
            Failure::TooLarge => format!("the answer is larger than {MAX_XML_BYTES} bytes"),
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// POSTs `message` like WeChat: up to `attempts` tries, each freshly signed, retrying only
/// when no answer came (timeout, connection failure). Reports each attempt on `err`.
pub(crate) async fn post(
    transport: &Transport,
    url: &Url,
    credentials: &Credentials,
    message: &Outgoing,
    attempts: u32,
    err: &mut (dyn Write + Send),
) -> anyhow::Result<Answer> {
    let mut last = String::new();
    let shown = crate::redact::url(url);
    for attempt in 1..=attempts {
        let timestamp = unix_now().to_string();
        let nonce = fresh_nonce();
        let signed = sign_request(credentials, message, &timestamp, &nonce, fresh_random())
            .context("cannot encrypt the message")?;
        let mut target = url.clone();
        target.query_pairs_mut().extend_pairs(&signed.query);
        let msg_id = message
            .msg_id
            .map(|id| format!(", MsgId {id}"))
            .unwrap_or_default();
        writeln!(
            err,
            "attempt {attempt}/{attempts}: POST {shown} ({} mode; {} from {}{msg_id}, CreateTime {}; \
             timestamp {timestamp}, nonce {nonce})",
            credentials.security.name(),
            message.summary,
            message.from_user_name,
            message.create_time,
        )?;
        let started = Instant::now();
        let request = transport
            .client
            .post(target)
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(signed.body);
        match transport.exchange(request).await {
            Ok(answer) => {
                writeln!(
                    err,
                    "attempt {attempt}/{attempts}: HTTP {} after {} ms ({} bytes)",
                    answer.status,
                    started.elapsed().as_millis(),
                    answer.body.len()
                )?;
                return Ok(answer);
            }
            Err(Failure::TooLarge) => {
                anyhow::bail!("{}", transport.describe(&Failure::TooLarge));
            }
            Err(failure) => {
                last = transport.describe(&failure);
                let next = if attempt < attempts {
                    "; WeChat would send it again"
                } else {
                    ""
                };
                writeln!(err, "attempt {attempt}/{attempts}: {last}{next}")?;
            }
        }
    }
    anyhow::bail!(
        "no answer from {shown} after {attempts} attempt(s) (last: {last}); WeChat would give up \
         and show the user \"该公众号暂时无法提供服务，请稍后再试\""
    )
}

/// The outcome of the GET handshake that passed.
pub(crate) struct Verified {
    /// The echostr sent and echoed.
    pub echostr: String,
}

/// Sends the GET handshake (服务器地址验证) once and checks that the answer is `200` with
/// exactly the `echostr`.
pub(crate) async fn verify(
    transport: &Transport,
    url: &Url,
    token: &Token,
    err: &mut (dyn Write + Send),
) -> anyhow::Result<Verified> {
    let timestamp = unix_now().to_string();
    let nonce = fresh_nonce();
    let echostr = fresh_echostr();
    let mut target = url.clone();
    target
        .query_pairs_mut()
        .extend_pairs(&handshake_query(token, &timestamp, &nonce, &echostr));
    let shown = crate::redact::url(url);
    writeln!(
        err,
        "GET {shown} (URL verification; timestamp {timestamp}, nonce {nonce}, echostr {echostr})"
    )?;
    let started = Instant::now();
    let answer = transport
        .exchange(transport.client.get(target))
        .await
        .map_err(|failure| {
            anyhow::anyhow!("URL verification failed: {}", transport.describe(&failure))
        })?;
    writeln!(
        err,
        "HTTP {} after {} ms ({} bytes)",
        answer.status,
        started.elapsed().as_millis(),
        answer.body.len()
    )?;
    if answer.status != StatusCode::OK {
        anyhow::bail!(
            "URL verification failed: the server answered HTTP {}: {}",
            answer.status,
            excerpt(&answer.body)
        );
    }
    if answer.body != echostr.as_bytes() {
        anyhow::bail!(
            "URL verification failed: the body must be the echostr {echostr:?} verbatim (no \
             quotes, no newline, no XML), got {}",
            excerpt(&answer.body)
        );
    }
    Ok(Verified { echostr })
}

/// A body as one quoted line, shortened to 200 characters.
pub(crate) fn excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return "an empty body".to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!("{short:?}")
}
