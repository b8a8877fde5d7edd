//! Injected faults: the ways the emulated platform can misbehave on purpose.
//!
//! A client of WeChat has to survive `-1 system error`, a gateway answering HTML, a body that is
//! not JSON and a slow upstream. Tests make the emulator do exactly that by injecting a [`Fault`]:
//! it names the calls it applies to ([`Endpoint`]), what happens ([`FaultKind`]) and how many
//! times (`times`, or until cleared). The types are plain data with no clock or I/O, so the state
//! machine can match and consume them under its lock; the HTTP layer only carries out the
//! [`FaultOutcome`] (sleep, then answer). The JSON shape accepted by `POST /_emulator/faults` is
//! flat on purpose — one object, one kind key — so a shell script can write it by hand:
//!
//! ```json
//! {"endpoint": "token", "errcode": -1, "errmsg": "system error", "times": 3}
//! {"endpoint": "any_api", "garbage": "<html>oops</html>"}
//! {"endpoint": "all", "delay_ms": 1500, "times": 1}
//! {"endpoint": "stable_token", "http_status": 502}
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which calls a [`Fault`] applies to.
///
/// JSON: `"token"`, `"stable_token"`, `"ticket"`, `"custom_send"`, `"sns"`, `"any_api"` or
/// `"all"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /cgi-bin/token`.
    Token,
    /// `POST /cgi-bin/stable_token`.
    StableToken,
    /// `GET /cgi-bin/ticket/getticket` (both ticket types).
    Ticket,
    /// `POST /cgi-bin/message/custom/send`.
    CustomSend,
    /// The OAuth calls under `/sns/` (code exchange, refresh, userinfo, auth).
    Sns,
    /// Every call that takes an `access_token`: tickets, 客服消息 and any other `/cgi-bin/` path —
    /// everything except the two token endpoints.
    AnyApi,
    /// Every `/cgi-bin/` and `/sns/` call, the token endpoints included. The default in JSON.
    #[default]
    All,
}

/// The kind of `/cgi-bin/` call being answered; what an [`Endpoint`] is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallKind {
    Token,
    StableToken,
    Ticket,
    CustomSend,
    OtherApi,
    Sns,
}

impl Endpoint {
    /// Whether a fault aimed at `self` applies to a call of `kind`.
    pub(crate) fn matches(self, kind: CallKind) -> bool {
        match self {
            Endpoint::All => true,
            Endpoint::AnyApi => matches!(
                kind,
                CallKind::Ticket | CallKind::CustomSend | CallKind::OtherApi
            ),
            Endpoint::Token => kind == CallKind::Token,
            Endpoint::StableToken => kind == CallKind::StableToken,
            Endpoint::Ticket => kind == CallKind::Ticket,
            Endpoint::CustomSend => kind == CallKind::CustomSend,
            Endpoint::Sns => kind == CallKind::Sns,
        }
    }
}

/// What an injected fault does to a matching call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer HTTP 200 with `{"errcode":code,"errmsg":msg}`. `-1 "system error"` is the classic.
    Errcode(i64, String),
    /// Answer HTTP 200 (`Content-Type: application/json`) with this raw body, JSON or not.
    Garbage(String),
    /// Wait this long, then handle the call normally (or by the next terminal fault).
    Delay(Duration),
    /// Answer with this HTTP status and a small HTML page, as a gateway in front of WeChat would.
    /// A status outside 200..=599 is answered as 500.
    HttpStatus(u16),
}

/// One injected fault. Build it with [`Fault::new`] (or a shortcut) and [`Fault::times`].
///
/// Faults apply before normal handling, in insertion order: every matching
/// [`FaultKind::Delay`] before the first matching terminal fault (errcode, garbage, status) is
/// consumed and its delay added up; that terminal fault, if any, is consumed and answers the
/// call. Faults after it are left alone. Each consumption decrements `times`; at zero the fault
/// is removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FaultRepr", into = "FaultRepr")]
pub struct Fault {
    /// The calls it applies to.
    pub endpoint: Endpoint,
    /// What it does.
    pub kind: FaultKind,
    /// How many calls it still applies to; `None` = until [`clear_faults`](super::Emulator::clear_faults).
    /// `Some(0)` is ignored by `inject` (and refused in JSON).
    pub times: Option<u32>,
}

impl Fault {
    /// A fault applying to `endpoint` until cleared.
    pub fn new(endpoint: Endpoint, kind: FaultKind) -> Self {
        Fault {
            endpoint,
            kind,
            times: None,
        }
    }

    /// `{"errcode":-1,"errmsg":"system error"}` on `endpoint`, until cleared.
    pub fn system_error(endpoint: Endpoint) -> Self {
        Fault::new(endpoint, FaultKind::Errcode(-1, "system error".to_owned()))
    }

    /// `{"errcode":code,"errmsg":msg}` on `endpoint`, until cleared.
    pub fn errcode(endpoint: Endpoint, code: i64, msg: impl Into<String>) -> Self {
        Fault::new(endpoint, FaultKind::Errcode(code, msg.into()))
    }

    /// Limits the fault to the next `n` matching calls.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

/// What the HTTP layer must do for one call after the faults were consulted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FaultOutcome {
    /// Sum of the consumed delays; sleep this long first.
    pub delay: Duration,
    /// The consumed terminal fault, if any: answer with it instead of handling the call.
    pub answer: Option<FaultKind>,
}

/// Consults `faults` for a call of `kind`, consuming what applies (see [`Fault`]).
pub(crate) fn take(faults: &mut Vec<Fault>, kind: CallKind) -> FaultOutcome {
    let mut outcome = FaultOutcome::default();
    let mut i = 0;
    while i < faults.len() {
        let fault = &mut faults[i];
        if !fault.endpoint.matches(kind) {
            i += 1;
            continue;
        }
        let terminal = match &fault.kind {
            FaultKind::Delay(d) => {
                outcome.delay = outcome.delay.saturating_add(*d);
                false
            }
            other => {
                outcome.answer = Some(other.clone());
                true
            }
        };
        let exhausted = match &mut fault.times {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if exhausted {
            faults.remove(i);
        } else {
            i += 1;
        }
        if terminal {
            break;
        }
    }
    outcome
}

/// The flat JSON form of a [`Fault`] (see the module docs).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRepr {
    #[serde(default)]
    endpoint: Endpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    times: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errmsg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    garbage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
}

/// Why a JSON fault description was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct FaultShapeError(&'static str);

impl fmt::Display for FaultShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for FaultShapeError {}

/// The errmsg used when a JSON errcode fault gives none.
fn default_errmsg(code: i64) -> &'static str {
    match code {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40014 => "invalid access_token",
        42001 => "access_token expired",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        _ => "emulated fault",
    }
}

impl TryFrom<FaultRepr> for Fault {
    type Error = FaultShapeError;

    fn try_from(r: FaultRepr) -> Result<Self, Self::Error> {
        if r.times == Some(0) {
            return Err(FaultShapeError(
                "`times` must be at least 1 (omit it for no limit)",
            ));
        }
        if r.errmsg.is_some() && r.errcode.is_none() {
            return Err(FaultShapeError("`errmsg` needs `errcode`"));
        }
        let kind = match (r.errcode, r.garbage, r.delay_ms, r.http_status) {
            (Some(code), None, None, None) => {
                let msg = r.errmsg.unwrap_or_else(|| default_errmsg(code).to_owned());
                FaultKind::Errcode(code, msg)
            }
            (None, Some(body), None, None) => FaultKind::Garbage(body),
            (None, None, Some(ms), None) => FaultKind::Delay(Duration::from_millis(ms)),
            (None, None, None, Some(status)) => {
                if !(200..=599).contains(&status) {
                    return Err(FaultShapeError("`http_status` must be within 200..=599"));
                }
                FaultKind::HttpStatus(status)
            }
            _ => {
                return Err(FaultShapeError(
                    "give exactly one of `errcode`, `garbage`, `delay_ms`, `http_status`",
                ))
            }
        };
        Ok(Fault {
            endpoint: r.endpoint,
            kind,
            times: r.times,
        })
    }
}

impl From<Fault> for FaultRepr {
    fn from(f: Fault) -> Self {
        let mut r = FaultRepr {
            endpoint: f.endpoint,
            times: f.times,
            errcode: None,
            errmsg: None,
            garbage: None,
            delay_ms: None,
            http_status: None,
        };
        match f.kind {
            FaultKind::Errcode(code, msg) => {
                r.errcode = Some(code);
                r.errmsg = Some(msg);
            }
            FaultKind::Garbage(body) => r.garbage = Some(body),
            FaultKind::Delay(d) => {
                r.delay_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            }
            FaultKind::HttpStatus(s) => r.http_status = Some(s),
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Fault, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn json_shapes_parse() {
        assert_eq!(
            parse(r#"{"endpoint":"token","errcode":-1,"times":3}"#).unwrap(),
            Fault::system_error(Endpoint::Token).times(3)
        );
        assert_eq!(
            parse(r#"{"garbage":"<html>"}"#).unwrap(),
            Fault::new(Endpoint::All, FaultKind::Garbage("<html>".into()))
        );
        assert_eq!(
            parse(r#"{"endpoint":"any_api","delay_ms":250}"#)
                .unwrap()
                .kind,
            FaultKind::Delay(Duration::from_millis(250))
        );
        assert_eq!(
            parse(r#"{"endpoint":"stable_token","http_status":502}"#)
                .unwrap()
                .kind,
            FaultKind::HttpStatus(502)
        );
    }

    #[test]
    fn bad_json_shapes_are_refused() {
        for bad in [
            r#"{}"#,
            r#"{"errcode":-1,"garbage":"x"}"#,
            r#"{"errmsg":"x"}"#,
            r#"{"errcode":-1,"times":0}"#,
            r#"{"http_status":42}"#,
            r#"{"endpoint":"nope","errcode":-1}"#,
            r#"{"errcode":-1,"colour":"red"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn json_round_trips() {
        let f = Fault::errcode(Endpoint::CustomSend, 45015, "out of time").times(2);
        let text = serde_json::to_string(&f).unwrap();
        assert_eq!(parse(&text).unwrap(), f);
    }

    #[test]
    fn take_consumes_in_order_and_stops_at_the_first_terminal() {
        let mut faults = vec![
            Fault::new(Endpoint::All, FaultKind::Delay(Duration::from_millis(10))).times(1),
            Fault::errcode(Endpoint::Ticket, 1, "ticket only"),
            Fault::system_error(Endpoint::Token).times(2),
            Fault::errcode(Endpoint::Token, 2, "never reached"),
        ];
        let out = take(&mut faults, CallKind::Token);
        assert_eq!(out.delay, Duration::from_millis(10));
        assert_eq!(
            out.answer,
            Some(FaultKind::Errcode(-1, "system error".into()))
        );
        assert_eq!(faults.len(), 3, "the one-shot delay is gone");
        let out = take(&mut faults, CallKind::Token);
        assert_eq!(out.delay, Duration::ZERO);
        assert!(matches!(out.answer, Some(FaultKind::Errcode(-1, _))));
        let out = take(&mut faults, CallKind::Token);
        assert!(matches!(out.answer, Some(FaultKind::Errcode(2, _))));
        assert_eq!(faults.len(), 2, "unlimited faults stay");
        assert_eq!(
            take(&mut faults, CallKind::StableToken),
            FaultOutcome::default()
        );
    }

    #[test]
    fn endpoint_matching() {
        assert!(Endpoint::AnyApi.matches(CallKind::OtherApi));
        assert!(Endpoint::AnyApi.matches(CallKind::Ticket));
        assert!(!Endpoint::AnyApi.matches(CallKind::Token));
        assert!(!Endpoint::AnyApi.matches(CallKind::StableToken));
        assert!(Endpoint::All.matches(CallKind::StableToken));
        assert!(!Endpoint::Token.matches(CallKind::StableToken));
    }
}
