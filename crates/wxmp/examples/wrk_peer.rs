//! The other side of the wrk benchmarks (`bench/wrk.sh`): what wrk cannot do itself.
//!
//! - `wrk_peer noop ADDR` serves the ceiling every ratio is taken against: an axum server that
//!   does nothing on the same paths wxmp serves (`/wx/demo` GET and POST, the token GET), on
//!   the same tokio runtime wxmp uses, so the two differ only by wxmp's own work.
//! - `wrk_peer pushes N TIMESTAMP` prints N safe-mode pushes for the dev app `demo`, one per
//!   line as `query<TAB>body`: signed and encrypted the way WeChat sends them, each a new
//!   message (its own MsgId, nonce and sender) with the text `ping`, which the bench config
//!   answers with a keyword reply. wrk's Lua has neither SHA-1 nor AES, so the pushes are made
//!   here once and replayed from memory by `bench/wrk/replay.lua`.
//! - `wrk_peer handshakes N TIMESTAMP` prints N GET handshake queries (`signature`,
//!   `timestamp`, `nonce`, `echostr`), one per line as `query<TAB>`, each with its own nonce.

use std::io::{BufWriter, Write};
use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use wxmp::send::build::{sign_request, Body, Credentials, Header, Outgoing, Security};
use wxmp_proto::signature::Token;
use wxmp_proto::{AppId, EncodingAesKey, MsgCrypt};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["noop", addr] => noop(addr.parse()?),
        ["pushes", n, timestamp] => pushes(n.parse()?, timestamp),
        ["handshakes", n, timestamp] => handshakes(n.parse()?, timestamp),
        _ => anyhow::bail!(
            "usage: wrk_peer noop ADDR | wrk_peer pushes N TIMESTAMP | wrk_peer handshakes N TIMESTAMP"
        ),
    }
}

#[tokio::main]
async fn noop(addr: SocketAddr) -> anyhow::Result<()> {
    let router = Router::new()
        .route(
            "/wx/demo",
            get(|| async { "echo" }).post(|_body: axum::body::Bytes| async { "success" }),
        )
        .route(
            "/v1/apps/demo/access_token",
            get(|| async {
                axum::Json(serde_json::json!({
                    "access_token": "0123456789abcdef0123456789abcdef0123456789abcdef",
                    "expires_in": 7000
                }))
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

fn pushes(n: u64, timestamp: &str) -> anyhow::Result<()> {
    let credentials = Credentials {
        token: Token::new(wxmp::dev::DEV_TOKEN)?,
        security: Security::Safe(MsgCrypt::new(
            EncodingAesKey::parse(wxmp::dev::DEV_ENCODING_AES_KEY)?,
            AppId::new(wxmp::emulator::DEMO_APPID)?,
        )),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    for i in 0..n {
        let header = Header {
            to_user_name: "gh_wxmp_bench".to_owned(),
            from_user_name: format!("oBenchUser{i:018}"),
            create_time: 1_700_000_000,
            msg_id: Some(1_000_000_000_000 + i),
        };
        let body = Body::Text {
            content: "ping".to_owned(),
        };
        let message = Outgoing::build(&header, &body)?;
        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&i.to_be_bytes());
        let signed = sign_request(&credentials, &message, timestamp, &format!("n{i}"), random)?;
        let query = signed
            .query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        anyhow::ensure!(
            !signed.body.contains(['\n', '\t']),
            "a push body spans lines"
        );
        writeln!(out, "/wx/demo?{query}\t{}", signed.body)?;
    }
    out.flush()?;
    Ok(())
}

fn handshakes(n: u64, timestamp: &str) -> anyhow::Result<()> {
    let token = Token::new(wxmp::dev::DEV_TOKEN)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for i in 0..n {
        let nonce = format!("h{i}");
        let signature = wxmp_proto::signature::signature(&token, timestamp, &nonce);
        writeln!(
            out,
            "/wx/demo?signature={signature}&timestamp={timestamp}&nonce={nonce}&echostr=e{i}\t"
        )?;
    }
    out.flush()?;
    Ok(())
}
