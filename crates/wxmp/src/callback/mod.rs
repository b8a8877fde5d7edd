//! The callback server: `GET`/`POST /wx/{app}`, WeChat's 服务器地址(URL).
//!
//! WeChat calls this URL for two things: the one-time echostr handshake (`GET`) and every
//! message and event a user causes (`POST`). The POST must be answered within 5 seconds with a
//! passive reply or `success`; WeChat retries a delivery it got no answer for, and the reply
//! must reach the user exactly once. The module is shaped after that pipeline, one file per
//! step, so each step can be read (and tested) alone:
//!
//! - `verify`: extractors. The app is looked up (404), the query is read without ever
//!   rejecting, the signature is checked in constant time and the body is read, decrypted and
//!   parsed, in that order (authenticate → decrypt → parse). Parsing a plaintext body requires a
//!   `SignatureVerified` proof and decryption a `VerifiedEncrypt` proof, so no path can skip
//!   the check. Every refusal is a 4xx with a short plain reason. What can be refused from
//!   the query alone (missing signatures, a timestamp outside the replay window) is refused
//!   before a byte of the body is read.
//! - `replay`: the replay window — the timestamp, and (timestamp, nonce) pairs kept with a
//!   hash of their body in the store.
//! - `dedup`: WeChat's retry contract and the reply deadline, across instances sharing a
//!   store (see that module for the design and its limits).
//! - `answer`: what to say: rules → keywords → clicks → subscribe → forward webhook → default
//!   → `success`.
//! - `webhook`: the forward webhook's JSON, both ways.
//! - `limit`: `webhook_concurrency`, so a hung webhook cannot pile up connections.
//! - `custom_send`: a reply that missed the deadline, sent as a 客服消息.
//!
//! Handlers stay thin: extract a verified push, hand it to the deliveries, encrypt the answer
//! for this request. The deliveries registry is per-server state (an `Extension` given to
//! [`routes`]), so two servers in one process — as in the tests — coordinate only through
//! their store, exactly like two processes, and a config reload, which builds a new router,
//! keeps the deliveries in progress.
//!
//! ## Answers and their order
//! 1. `auto_reply.rules`: a `text` message that matches a rule's keyword (`exact`: the whole
//!    trimmed `Content`; `contains`: anywhere in it), first rule in file order.
//! 2. `auto_reply.keywords`: a `text` message whose `Content`, trimmed, equals a key.
//! 3. `auto_reply.clicks`: a `CLICK` event whose `EventKey` has a reply.
//! 4. `auto_reply.subscribe`: a `subscribe` event (plain or through a QR code).
//! 5. The `forward` webhook, when configured (see `webhook` for the JSON). A push answered
//!    by 1 to 4 is not forwarded: those are the console's auto-replies, and leaving
//!    `subscribe` unset lets the webhook see subscribe events. A webhook answering `204`
//!    (or `200` with an empty body) handled the push and has nothing to say: the chain ends
//!    there with `success`, since a default reply after it would answer a push the business
//!    chose not to answer. An error, a timeout, another status or an answer that is not one
//!    of the documented replies is logged and falls through to 6: nobody handled the push.
//! 6. `auto_reply.default`, for ordinary messages only: events (`LOCATION` arrives every few
//!    seconds, `VIEW` on every menu tap, `unsubscribe` cannot be answered) never get it, as
//!    the console's 收到消息回复 only answers messages.
//! 7. `success`.
//!
//! A rule with `pick = "all"` answers with several messages: the first is the reply, the
//! others follow as 客服消息 in order once it was delivered (`custom_send`). A first message
//! with no passive form (a 图文 material by `media_id`) is answered `success` and sent as a
//! 客服消息 at once.
//!
//! Whatever the chain ends with is the reply, whether it comes in time (passive) or after
//! the deadline (客服消息): a webhook that fails late falls through to the default reply,
//! which then goes out as a 客服消息.
//!
//! ## Logs
//! Every value in a push is chosen by whoever sent it, so log lines carry only bounded,
//! escaped copies (`crate::redact`). A sender's OpenID identifies a person: INFO and WARN
//! lines name a delivery as `msgid:…` or `event:*:<CreateTime>:<Event>:<EventKey>`, and the
//! OpenID (cut to 32 characters) appears only at DEBUG.
//!
//! ## Metrics
//! `wxmp_callback_requests_total{app,outcome}` counts every request to a known app once, with
//! an [`Outcome`]; the `webhook_failed` and `late_reply_*` outcomes count deliveries instead.
//! Requests to unknown apps are not counted: their name is attacker-chosen and would grow the
//! label set without bound.

mod answer;
mod custom_send;
mod dedup;
mod limit;
mod replay;
mod verify;
mod webhook;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use crate::metrics::Metrics;
use crate::state::AppState;

pub use self::dedup::Deliveries;
use self::verify::{CallbackApp, CallbackQuery, VerifiedPush};

/// Reads a forward webhook's `200` answer exactly as the callback server does: `Ok(None)`
/// for a blank body (no reply), the message it asks for (a passive reply, or a 图文 material
/// that only goes out as a 客服消息), or the reason it is not one of the documented replies
/// (a category and a position, never the answer's own text). Public so that the fuzz targets
/// in `fuzz/` can reach it; the server calls the same parser.
pub fn parse_webhook_reply(body: &[u8]) -> Result<Option<crate::reply::Outbound>, String> {
    webhook::parse_answer(body).map_err(|e| e.to_string())
}

/// The callback routes, `GET` and `POST /wx/{app}`, handing pushes to `deliveries`.
pub fn routes(deliveries: Arc<Deliveries>) -> Router<AppState> {
    Router::new()
        .route("/wx/{app}", get(handshake).post(push))
        .layer(Extension(deliveries))
}

/// `GET /wx/{app}`: the 服务器配置 handshake; echoes `echostr` when the signature holds.
async fn handshake(
    State(state): State<AppState>,
    CallbackApp(app): CallbackApp,
    query: CallbackQuery,
) -> Response {
    match verify::handshake(&app, &query) {
        Ok(echostr) => {
            state
                .metrics
                .callback(&app.name, Outcome::Verified.as_str());
            tracing::info!(app = %app.name, "server URL handshake verified");
            ([(CONTENT_TYPE, "text/plain; charset=utf-8")], echostr).into_response()
        }
        Err(refusal) => refusal.count(&state, &app.name).into_response(),
    }
}

/// `POST /wx/{app}`: a verified message or event in, its passive reply (or `success`) out.
async fn push(
    State(state): State<AppState>,
    Extension(deliveries): Extension<Arc<Deliveries>>,
    push: VerifiedPush,
) -> Response {
    let VerifiedPush {
        app,
        message,
        channel,
    } = push;
    let counted = Counted::new(state.metrics.clone(), &app.name);
    let answered = deliveries.deliver(&state, &app, message).await;
    let response = channel.respond(&app, answered.reply.as_deref());
    counted.finish(answered.outcome);
    response
}

/// How a callback request (or, for the last three, a delivery) ended: the `outcome` label of
/// `wxmp_callback_requests_total`. A closed set, so dashboards can rely on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `GET` handshake answered with the echostr.
    Verified,
    /// A passive reply was sent (each request of a push may get it: see `dedup`).
    Replied,
    /// `success`: nothing to say.
    NoReply,
    /// `success` because the reply deadline passed; a late reply goes out as a 客服消息.
    Deadline,
    /// `success` to a request of a push whose reply went out as a 客服消息.
    Duplicate,
    /// The client hung up before the answer was ready (WeChat does at 5 s, then retries).
    Abandoned,
    /// `403`: `signature` or `msg_signature` missing or wrong.
    BadSignature,
    /// `403`: a `timestamp` outside the replay window, or a (`timestamp`, `nonce`) pair seen
    /// with a different body.
    Replay,
    /// `400`: malformed, hostile or undecryptable body, or a plaintext push to a safe app.
    BadRequest,
    /// `413`: body over 1 MiB.
    TooLarge,
    /// A delivery whose webhook call failed (error, timeout, unreadable answer).
    WebhookFailed,
    /// A delivery whose late reply was sent as a 客服消息.
    LateReplySent,
    /// A delivery whose late reply could not be sent as a 客服消息.
    LateReplyFailed,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::Replied => "replied",
            Outcome::NoReply => "no_reply",
            Outcome::Deadline => "deadline",
            Outcome::Duplicate => "duplicate",
            Outcome::Abandoned => "abandoned",
            Outcome::BadSignature => "bad_signature",
            Outcome::Replay => "replay",
            Outcome::BadRequest => "bad_request",
            Outcome::TooLarge => "too_large",
            Outcome::WebhookFailed => "webhook_failed",
            Outcome::LateReplySent => "late_reply_sent",
            Outcome::LateReplyFailed => "late_reply_failed",
        }
    }
}

/// Counts a request's outcome exactly once: [`Counted::finish`] when it completes, or
/// [`Outcome::Abandoned`] when hyper drops the request future because the client hung up.
struct Counted {
    metrics: Arc<Metrics>,
    app: String,
    done: bool,
    /// When the request arrived, for `wxmp_callback_duration_seconds`.
    started: std::time::Instant,
}

impl Counted {
    fn new(metrics: Arc<Metrics>, app: &str) -> Self {
        Counted {
            metrics,
            app: app.to_owned(),
            done: false,
            started: std::time::Instant::now(),
        }
    }

    fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.metrics.callback(&self.app, outcome.as_str());
        self.metrics
            .callback_latency(&self.app, self.started.elapsed());
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if !self.done {
            tracing::debug!(app = %self.app, "callback request abandoned by the client");
            self.metrics
                .callback(&self.app, Outcome::Abandoned.as_str());
            self.metrics
                .callback_latency(&self.app, self.started.elapsed());
        }
    }
}
