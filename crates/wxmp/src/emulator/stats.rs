//! Per-app call counters: what tests read to prove how often the platform was called.
//!
//! The token core promises "one upstream call however many callers ask", so its tests need to
//! count calls as WeChat would see them. Every counter keeps two numbers — calls *attempted*
//! (anything that reached the emulator and could be tied to the app) and calls *answered
//! successfully* — because a retry storm against a failing upstream shows up only in the first,
//! and a wasted token only in the second. The types serialize to the JSON of
//! `GET /_emulator/stats`, and deserialize back, so a test in another process can read them.

use serde::{Deserialize, Serialize};

/// Attempts and successes of one kind of call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCount {
    /// Calls answered successfully (a token, a ticket, `errcode` 0).
    pub ok: u64,
    /// Every call tied to the app, whatever the answer: errors and injected faults included.
    pub attempts: u64,
}

impl CallCount {
    pub(crate) fn attempt(&mut self) {
        self.attempts += 1;
    }

    pub(crate) fn success(&mut self) {
        self.ok += 1;
    }
}

/// `GET /cgi-bin/ticket/getticket` calls, by `type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketCalls {
    /// `type=jsapi` (the JS-SDK `jsapi_ticket`).
    pub jsapi: CallCount,
    /// `type=wx_card` (the 卡券 `api_ticket`).
    pub wx_card: CallCount,
    /// A missing or unknown `type` (never `ok`: they are answered 40097).
    pub invalid_type: CallCount,
}

/// Everything the emulator counted for one app. Calls are tied to an app by the `appid` they
/// name (token endpoints) or by the app the `access_token` they carry was issued to; calls with
/// a missing or never-issued token belong to no app and are not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStats {
    /// `GET /cgi-bin/token`; every `ok` call issued a new token.
    pub token_calls: CallCount,
    /// `POST /cgi-bin/stable_token`, forced or not.
    pub stable_token_calls: CallCount,
    /// The subset of `stable_token_calls` with `"force_refresh":true`. A forced call within
    /// `force_refresh_min_interval` of the last forced refresh is `ok` but refreshes nothing.
    pub force_refresh_calls: CallCount,
    /// How many stable tokens were actually issued (normal-mode renewals and forced refreshes).
    pub stable_tokens_issued: u64,
    /// Ticket calls by type.
    pub ticket_calls: TicketCalls,
    /// `POST /cgi-bin/message/custom/send`.
    pub custom_send_calls: CallCount,
    /// Any other `/cgi-bin/` call.
    pub other_api_calls: CallCount,
}
