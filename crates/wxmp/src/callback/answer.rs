//! What to say to a push: keyword rules → keywords → menu clicks → subscribe → forward webhook →
//! default → `success`.
//!
//! One function walks the chain and stops at the first step that has a reply which renders,
//! or at a webhook that answered "handled, nothing to say" (`204`); the order and its reasons
//! are in the module docs of `callback`. A reply is rendered here,
//! not later, so that one the webhook got wrong (nine news articles, a control character)
//! falls through to the next step like any other webhook failure, instead of surfacing after
//! the chain has been left. Nothing here knows about retries or deadlines: the caller runs
//! this once per delivery, in its own task.
//!
//! An answer is one message, or several (a rule with `pick = "all"`): the first is the passive
//! reply, the rest follow as 客服消息 in order once it was delivered. A first message without
//! a passive form (a 图文 by `media_id`) makes the push answer `success` and goes out as a
//! 客服消息 too.

use std::fmt;

use wxmp_proto::event::Event;
use wxmp_proto::{Message, MessageKind};

use super::limit::WebhookLimits;
use super::webhook;
use super::Outcome;
use crate::config::AppConfig;
use crate::redact;
use crate::reply::Outbound;
use crate::state::AppState;

/// Which step of the chain answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `auto_reply.rules`.
    Rule,
    /// `auto_reply.keywords`.
    Keyword,
    /// `auto_reply.clicks`.
    Click,
    /// `auto_reply.subscribe`.
    Subscribe,
    /// The forward webhook.
    Webhook,
    /// `auto_reply.default`.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Rule => "rule",
            Source::Keyword => "keyword",
            Source::Click => "click",
            Source::Subscribe => "subscribe",
            Source::Webhook => "webhook",
            Source::Default => "default",
        })
    }
}

/// The answer to one push, rendered and ready to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The first message: the passive reply, or a 客服消息 if it comes too late (or has no
    /// passive form).
    pub first: Outbound,
    /// The plaintext passive reply XML of `first`, addressed to the sender; `None` when
    /// `first` has no passive form.
    pub xml: Option<String>,
    /// Messages that follow `first` as 客服消息, in order.
    pub follow_ups: Vec<Outbound>,
    /// Who answered.
    pub source: Source,
}

/// Walks the chain for `message`; `None` means `success`. `delivery` is the dedup key, sent
/// to the webhook as `X-Wxmp-Delivery`.
pub(crate) async fn answer(
    state: &AppState,
    app: &AppConfig,
    message: &Message,
    delivery: &str,
    limits: &WebhookLimits,
) -> Option<Answer> {
    let auto = &app.auto_reply;
    if let MessageKind::Malformed {
        msg_type: name,
        reason,
    }
    | MessageKind::Event(Event::Malformed {
        event: name,
        reason,
    }) = &message.kind
    {
        // Forwarded all the same: the webhook gets every field, raw.
        tracing::warn!(
            app = %app.name,
            delivery = %super::dedup::shown(delivery),
            name = %redact::bounded(name, redact::VALUE_CHARS),
            reason = %redact::bounded(reason, redact::VALUE_CHARS * 2),
            "a push of a known type has fields of an unexpected shape; forwarding it untyped"
        );
    }
    if let MessageKind::Text { content, .. } = &message.kind {
        if let Some(rule) = auto.rules.iter().find(|r| r.matches(content)) {
            let (first, follow_ups) = rule.chosen();
            if let Some(answer) = rendered(app, message, first, follow_ups, Source::Rule) {
                return Some(answer);
            }
        }
        if let Some(text) = auto.keywords.get(content.trim()) {
            if let Some(answer) =
                rendered(app, message, Outbound::text(text), vec![], Source::Keyword)
            {
                return Some(answer);
            }
        }
    }
    match message.event() {
        Some(Event::Click { event_key }) => {
            if let Some(reply) = auto.clicks.get(event_key) {
                if let Some(answer) = rendered(app, message, reply.clone(), vec![], Source::Click) {
                    return Some(answer);
                }
            }
        }
        Some(Event::Subscribe { .. }) => {
            if let Some(text) = &auto.subscribe {
                if let Some(answer) = rendered(
                    app,
                    message,
                    Outbound::text(text),
                    vec![],
                    Source::Subscribe,
                ) {
                    return Some(answer);
                }
            }
        }
        _ => {}
    }
    let slot = match &app.forward {
        Some(_) => {
            let slot = limits.try_acquire(app);
            if slot.is_none() {
                tracing::warn!(app = %app.name, delivery = %super::dedup::shown(delivery), limit = app.webhook_concurrency, "webhook_concurrency reached; this push skips the webhook");
                state.metrics.webhook_saturated(&app.name);
            }
            slot
        }
        None => None,
    };
    if let (Some(url), Some(_slot)) = (&app.forward, slot) {
        let http = state.tokens.upstream().http();
        let started = std::time::Instant::now();
        let called = webhook::call(http, url, &app.name, message, delivery).await;
        let (outcome, error) = match &called {
            Ok(Some(_)) => ("reply", None),
            Ok(None) => ("no_reply", None),
            Err(e) => ("error", Some(e.to_string())),
        };
        state
            .metrics
            .webhook(&app.name, started.elapsed(), outcome, error.as_deref());
        match called {
            Ok(Some(outbound)) => {
                if let Some(answer) = rendered(app, message, outbound, vec![], Source::Webhook) {
                    return Some(answer);
                }
                state
                    .metrics
                    .callback(&app.name, Outcome::WebhookFailed.as_str());
            }
            // Handled, nothing to say: the default reply is for pushes nobody handled.
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(app = %app.name, delivery = %super::dedup::shown(delivery), error = %e, "webhook failed; falling through to the default reply");
                state
                    .metrics
                    .callback(&app.name, Outcome::WebhookFailed.as_str());
            }
        }
    }
    if message.event().is_none() {
        if let Some(text) = &auto.default {
            return rendered(app, message, Outbound::text(text), vec![], Source::Default);
        }
    }
    None
}

/// Renders `first`'s passive reply to `message`'s sender; `None` (logged) when it has one
/// that cannot be rendered.
fn rendered(
    app: &AppConfig,
    message: &Message,
    first: Outbound,
    follow_ups: Vec<Outbound>,
    source: Source,
) -> Option<Answer> {
    let xml = match first.passive() {
        None => None,
        Some(reply) => match reply.render_for(message, super::verify::unix_seconds()) {
            Ok(xml) => Some(xml),
            Err(e) => {
                tracing::warn!(app = %app.name, %source, error = %e, "reply cannot be rendered; skipping it");
                return None;
            }
        },
    };
    Some(Answer {
        first,
        xml,
        follow_ups,
        source,
    })
}
