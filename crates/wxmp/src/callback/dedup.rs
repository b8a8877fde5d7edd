//! WeChat's retry contract: each push handled once, its reply delivered once, on time.
//!
//! WeChat waits 5 seconds for an answer, then hangs up and sends the same push again (up to
//! three times; retries of one push share a [`wxmp_proto::DedupKey`]). wxmp promises three
//! things about that, across every instance sharing one store:
//!
//! 1. **A push is handled once.** The first request to arrive claims the delivery with
//!    `set_nx("delivery:{app}:{key}", pending)`; only the claimer runs the answer chain (and
//!    so calls the webhook). The claim and the handling run in a spawned task, never in the
//!    request future: hyper drops that future when WeChat hangs up at 5 s, and the handling
//!    must outlive it.
//! 2. **Every request is answered by the deadline.** Each request waits for the handling's
//!    result (in-process through a `watch` channel when this instance handles it, otherwise
//!    through store notifications plus a slow poll) until `reply_deadline_ms` after the
//!    push's *first* arrival (stored in the claim), then answers `success`. The result —
//!    the plaintext reply XML or "no reply" — replaces the claim for a few minutes, so a retry
//!    that comes after the handling finished gets it too, at once; each request encrypts it
//!    with its own timestamp and nonce. A deadline above 5 s therefore means: the first
//!    request is dropped by WeChat, and a retry receives the reply.
//! 3. **The reply reaches the user, once.** WeChat retries only a request it took no answer
//!    for, so every request of a push may carry the passive reply: if an answer is lost
//!    between wxmp and WeChat (a proxy's timeout, WeChat hanging up just as it was written),
//!    the retry carries it again, and WeChat shows the user only what it received. The one
//!    thing that must not happen is a 客服消息 *and* a passive reply. So
//!    `set_nx("delivery:{app}:{key}:sent", how)` decides how the reply goes, once:
//!    - `passive` is taken by the first request that answers with the reply, and is shared:
//!      every later request of the push finds it and answers with the reply too;
//!    - `custom` is taken by the handling task when, shortly after the deadline, no request
//!      has answered with the reply; it then sends the reply as a 客服消息, and every later
//!      request finds `custom` and answers `success`.
//!
//!    Whichever is taken first wins, atomically, on one instance or many. A request that
//!    has been open for 4.7 s no longer answers with the reply (WeChat is about to hang up
//!    on it, so the answer would likely be lost, and it would hold back the 客服消息 that
//!    reaches the user if no retry follows); it keeps waiting, so that WeChat's retry or the
//!    客服消息 carries the reply.
//!
//! Limits, all documented trade-offs rather than bugs:
//! - If the instance handling a push dies, the claim stays for a minute: retries in that
//!   minute get `success`, and the push is not handled (WeChat's own retries would have been
//!   lost with it too). A graceful shutdown (SIGTERM) waits for handling tasks, within its
//!   grace period, so a late reply still goes out as a 客服消息.
//! - Deadlines of requests on other instances are computed from the first arrival's
//!   wall-clock time, so clock skew between instances shifts them (bounded by each request's
//!   own arrival plus the deadline). Skew never breaks "once": only the `:sent` claim decides.
//! - A passive answer that is lost on WeChat's *last* try is lost: wxmp cannot tell a lost
//!   answer from a received one, and a 客服消息 after a received one would reach the user
//!   twice. Every earlier loss is repaired by the retry.
//! - Store failures degrade to per-instance dedup: a claim that cannot reach the store is
//!   taken locally and logged, and the in-process registry keeps this instance's requests
//!   consistent. A push whose claim or result the store did not take stays in the registry
//!   for [`LOCAL_KEEP`] after it was handled, so WeChat's retries that reach this instance
//!   are answered from it rather than handled again. Two instances cut off from the store at
//!   the same time may both handle a push; so may a retry that reaches another instance, or
//!   that comes during the outage for a push handled before it.
//! - Keys are `Message::dedup_key`: the `MsgId`, or for events `FromUserName` +
//!   `CreateTime` + `Event` + `EventKey`. WeChat's docs leave out the last two, which would
//!   make a `subscribe` and the `LOCATION` sent in the same second one delivery; retries are
//!   byte-identical, so they still share a key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, watch, Notify};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::task::TaskTracker;
use wxmp_proto::Message;

use super::answer::{self, Answer};
use super::limit::WebhookLimits;
use super::{custom_send, Outcome};
use crate::config::AppConfig;
use crate::logging::Throttle;
use crate::redact;
use crate::state::AppState;
use crate::store::Store;

/// How long a claim lives without a result: longer than the webhook may take.
const CLAIM_TTL: Duration = Duration::from_secs(60);
/// How long a push the store did not record stays in this instance's registry after it was
/// handled: past WeChat's last retry (about 15 s after the first try). Only pushes met by a
/// store failure are kept, so memory grows with an outage, not with traffic.
const LOCAL_KEEP: Duration = Duration::from_secs(60);
/// How long a result (and the `:sent` claim) is kept at least: WeChat retries within about
/// 15 s, so minutes are plenty for retries. With a replay window the records are kept longer
/// still (see [`record_ttl`]).
const RESULT_TTL: Duration = Duration::from_secs(300);

/// How long the result and the `:sent` claim of a delivery to `app` are kept: past the time a
/// captured copy of the push could still pass the replay window, so a replay within it is
/// answered as a retry and never handled again.
pub(crate) fn record_ttl(app: &AppConfig) -> Duration {
    RESULT_TTL.max(super::replay::outlives_window(app))
}
/// The store-outage WARNs of the delivery path: one line per 10 s each, with a count of
/// the repeats (every push would write them, several times, while the store is away).
static CLAIM_WARN: Throttle = Throttle::every_ms(10_000);
static RESULT_WARN: Throttle = Throttle::every_ms(10_000);
static SENT_WARN: Throttle = Throttle::every_ms(10_000);

/// How often a request waiting on another instance re-reads the store, in case a
/// notification was lost.
const POLL: Duration = Duration::from_millis(500);
/// How long after the deadline the handling task waits before it takes the reply for a
/// 客服消息, so that a request seeing the result just before its deadline wins the race.
const HANDOVER_MARGIN: Duration = Duration::from_millis(200);
/// How long a request may claim the reply: WeChat hangs up at 5 s.
const PASSIVE_WINDOW: Duration = Duration::from_millis(4700);

/// How much of a delivery key a DEBUG line shows (an event's holds the sender's OpenID).
const DELIVERY_CHARS: usize = 96;

/// A delivery (`event:<openid>:<CreateTime>:<Event>:<EventKey>`) or its store key
/// (`delivery:{app}:event:…`) as INFO and WARN lines show it: an event's OpenID becomes `*`;
/// `msgid:…` keys stay as they are. The OpenID is percent-encoded in the key, so the next
/// `:` ends it; the rest is cut to [`DELIVERY_CHARS`] (an `EventKey` can be a long URL).
pub(super) fn shown(key: &str) -> std::borrow::Cow<'_, str> {
    // App names have no ':', so ":event:" in a store key starts the delivery.
    let start = if key.starts_with("event:") {
        Some(0)
    } else {
        key.find(":event:").map(|i| i + 1)
    };
    let Some(start) = start else {
        return key.into();
    };
    let openid_start = start + "event:".len();
    let Some(len) = key[openid_start..].find(':') else {
        return key.into();
    };
    let rest = &key[openid_start + len..];
    format!(
        "{}*{}",
        &key[..openid_start],
        redact::bounded(rest, DELIVERY_CHARS)
    )
    .into()
}

/// What one request answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answered {
    /// The plaintext reply XML; `None` for `success`.
    pub reply: Option<String>,
    /// How it ended, for the metrics.
    pub outcome: Outcome,
}

impl Answered {
    fn success(outcome: Outcome) -> Self {
        Answered {
            reply: None,
            outcome,
        }
    }
}

/// The store record of a delivery: a claim while `done` is false, then the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// Unix milliseconds of the first arrival; deadlines count from it.
    t0: u64,
    /// True once the handling finished.
    #[serde(default)]
    done: bool,
    /// The plaintext reply XML, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply: Option<String>,
}

impl Record {
    fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn decode(raw: &str) -> Option<Record> {
        serde_json::from_str(raw).ok()
    }
}

/// A delivery this instance is handling, shared by its waiting requests.
struct Local {
    /// When the first request arrived.
    t0: u64,
    /// When the answer is due.
    due: Instant,
    /// The result once known: `Some(None)` means "no reply".
    result: watch::Sender<Option<Option<Arc<str>>>>,
    /// How the reply goes, as far as this instance decided: [`Via::NONE`], then a [`Via`]
    /// (the same decision as the store's `:sent`, made locally first so that requests on
    /// this instance agree even when the store is slow or down).
    sent: AtomicU8,
    /// Wakes the handling task when a request answered with the reply.
    taken: Notify,
}

/// A new push, moved into the task that claims and handles it.
struct Push {
    state: AppState,
    app: Arc<AppConfig>,
    message: Message,
    /// The store key, `delivery:{app}:{delivery}`.
    key: String,
    /// The dedup key's text.
    delivery: String,
    /// When the first request's answer is due.
    due: Instant,
}

/// Where a request learns the result.
enum Waiting {
    /// From this instance's handling task.
    Local(Arc<Local>),
    /// From the store: another instance (or a request that raced this one) handles it.
    Store,
}

/// The deliveries this instance is handling, by store key. One per server, kept across
/// config reloads.
#[derive(Default)]
pub struct Deliveries {
    /// A std `Mutex`: held only for map lookups, never across an `.await`.
    local: Mutex<HashMap<String, Arc<Local>>>,
    /// The webhook slots of each app (`webhook_concurrency`).
    webhook_limits: WebhookLimits,
    /// The claim-and-handle tasks, so that shutdown can wait for late replies.
    tasks: TaskTracker,
}

impl Deliveries {
    /// The tasks still handling a push (and maybe about to send a late reply): shutdown
    /// waits for them.
    pub fn tasks(&self) -> TaskTracker {
        self.tasks.clone()
    }

    /// Answers one request for `message`: handles the push if it is new, waits for its
    /// result, and takes the reply if it is this request's to deliver.
    pub(crate) async fn deliver(
        self: &Arc<Self>,
        state: &AppState,
        app: &Arc<AppConfig>,
        message: Message,
    ) -> Answered {
        let delivery = message.dedup_key().to_string();
        let key = format!("delivery:{}:{delivery}", app.name);
        let arrival = Instant::now();
        let deadline = Duration::from_millis(app.reply_deadline_ms);
        let waiting = match self.find(&key) {
            Some(local) => {
                state.metrics.dedup_hit(&app.name);
                Waiting::Local(local)
            }
            None => {
                // Claimed and handled in a task of its own: if WeChat hangs up while the
                // claim is in flight, the push is still handled.
                let (tx, rx) = oneshot::channel();
                let push = Push {
                    state: state.clone(),
                    app: app.clone(),
                    message,
                    key: key.clone(),
                    delivery: delivery.clone(),
                    due: arrival + deadline,
                };
                self.tasks.spawn(self.clone().claim_and_handle(push, tx));
                rx.await.unwrap_or(Waiting::Store)
            }
        };
        let store = state.tokens.store();
        let ttl = record_ttl(app);
        let answered = match waiting {
            Waiting::Local(local) => self.wait_local(store, &key, &local, arrival, ttl).await,
            Waiting::Store => self.wait_store(store, &key, arrival, deadline, ttl).await,
        };
        tracing::debug!(app = %app.name, delivery = %redact::bounded(&delivery, DELIVERY_CHARS), outcome = answered.outcome.as_str(), "callback answered");
        answered
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Local>>> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn find(&self, key: &str) -> Option<Arc<Local>> {
        self.lock().get(key).cloned()
    }

    /// Claims the delivery in the store and, when this instance wins, tells the request and
    /// goes on to handle it.
    async fn claim_and_handle(self: Arc<Self>, push: Push, tx: oneshot::Sender<Waiting>) {
        let Push {
            state,
            app,
            message,
            key,
            delivery,
            due,
        } = push;
        let t0 = unix_ms();
        let claim = Record {
            t0,
            done: false,
            reply: None,
        };
        let mut claimed_locally = false;
        let claimed = match state
            .tokens
            .store()
            .set_nx(&key, &claim.encode(), CLAIM_TTL)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                if let Some(suppressed) = CLAIM_WARN.admit() {
                    tracing::warn!(app = %app.name, error = %e, suppressed, "store unavailable: this push is deduplicated within this instance only");
                }
                state
                    .metrics
                    .store_error("dedup", Some(&app.name), &e.to_string());
                claimed_locally = true;
                true
            }
        };
        if !claimed {
            state.metrics.dedup_hit(&app.name);
            let _ = tx.send(Waiting::Store);
            return;
        }
        let local = {
            let mut map = self.lock();
            if let Some(existing) = map.get(&key) {
                // Only after a store failure: another local request claimed it locally.
                state.metrics.dedup_hit(&app.name);
                let _ = tx.send(Waiting::Local(existing.clone()));
                return;
            }
            let local = Arc::new(Local {
                t0,
                due,
                result: watch::channel(None).0,
                sent: AtomicU8::new(Via::NONE),
                taken: Notify::new(),
            });
            map.insert(key.clone(), local.clone());
            local
        };
        let _ = tx.send(Waiting::Local(local.clone()));
        let stored = self
            .handle(&state, &app, &message, &key, &delivery, &local)
            .await;
        if claimed_locally || !stored {
            // Nothing in the store stops a retry from being handled again: this registry
            // must, for as long as WeChat retries. Not a tracked task: shutdown need not
            // wait for it.
            let registry = Arc::downgrade(&self);
            tokio::spawn(async move {
                sleep(LOCAL_KEEP).await;
                if let Some(registry) = registry.upgrade() {
                    registry.forget(&key, &local);
                }
            });
            return;
        }
        self.forget(&key, &local);
    }

    /// Removes `local` from the registry, unless a newer handling of the key replaced it.
    fn forget(&self, key: &str, local: &Arc<Local>) {
        let mut map = self.lock();
        if map.get(key).is_some_and(|l| Arc::ptr_eq(l, local)) {
            map.remove(key);
        }
    }

    /// Runs the answer chain, publishes the result, and sends the reply as a 客服消息 if no
    /// request took it by the deadline. True when the result reached the store.
    async fn handle(
        &self,
        state: &AppState,
        app: &AppConfig,
        message: &Message,
        key: &str,
        delivery: &str,
        local: &Local,
    ) -> bool {
        let started = Instant::now();
        let answer = answer::answer(state, app, message, delivery, &self.webhook_limits).await;
        let handled_ms = started.elapsed().as_millis();
        let xml: Option<Arc<str>> = answer
            .as_ref()
            .and_then(|a| a.xml.as_deref())
            .map(Arc::from);
        local.result.send_replace(Some(xml.clone()));
        let store = state.tokens.store();
        let result = Record {
            t0: local.t0,
            done: true,
            reply: xml.as_deref().map(str::to_owned),
        };
        let ttl = record_ttl(app);
        let stored = match store.set(key, &result.encode(), Some(ttl)).await {
            Ok(()) => true,
            Err(e) => {
                state
                    .metrics
                    .store_error("dedup", Some(&app.name), &e.to_string());
                if let Some(suppressed) = RESULT_WARN.admit() {
                    tracing::warn!(app = %app.name, delivery = %shown(delivery), error = %e, suppressed, "cannot store the result: retries reaching other instances will not see it");
                }
                false
            }
        };
        // INFO lines carry no OpenID (it identifies a person) and nothing unbounded; the
        // DEBUG line before them has the sender, cut to a log-sized length.
        let shown = shown(delivery);
        let msg_type = redact::bounded(message.msg_type(), redact::VALUE_CHARS);
        let event = message
            .event()
            .map(|e| redact::bounded(e.name(), redact::VALUE_CHARS).to_string());
        tracing::debug!(app = %app.name, delivery = %shown, openid = %redact::openid(&message.from_user_name), %msg_type, "push from");
        let Some(answer) = answer else {
            tracing::info!(app = %app.name, delivery = %shown, %msg_type, event, handled_ms, "push handled: no reply");
            return stored;
        };
        let source = answer.source;
        if answer.xml.is_some() {
            tokio::select! {
                () = local.taken.notified() => {}
                () = sleep_until(local.due + HANDOVER_MARGIN) => {}
            }
        }
        if !self.claim(store, key, Via::Custom, ttl).await {
            tracing::info!(app = %app.name, delivery = %shown, %msg_type, event, %source, handled_ms, "push handled: reply delivered passively");
            custom_send::send_follow_ups(
                state,
                &answer,
                &app.name,
                &message.from_user_name,
                &shown,
            )
            .await;
            return stored;
        }
        if self
            .send_late(state, app, message, delivery, &answer, handled_ms)
            .await
        {
            custom_send::send_follow_ups(
                state,
                &answer,
                &app.name,
                &message.from_user_name,
                &shown,
            )
            .await;
        }
        stored
    }

    /// Sends a reply no request took (or one without a passive form) as a 客服消息, and logs
    /// and counts the result; true when it was sent.
    async fn send_late(
        &self,
        state: &AppState,
        app: &AppConfig,
        message: &Message,
        delivery: &str,
        answer: &Answer,
        handled_ms: u128,
    ) -> bool {
        let source = answer.source;
        let shown = shown(delivery);
        let msg_type = redact::bounded(message.msg_type(), redact::VALUE_CHARS);
        match custom_send::send(state, &app.name, &message.from_user_name, &answer.first).await {
            Ok(()) => {
                state
                    .metrics
                    .callback(&app.name, Outcome::LateReplySent.as_str());
                tracing::info!(app = %app.name, delivery = %shown, %msg_type, %source, handled_ms, "push handled: reply missed the passive window and was sent as a customer-service message");
                true
            }
            Err(e) => {
                state
                    .metrics
                    .callback(&app.name, Outcome::LateReplyFailed.as_str());
                tracing::warn!(app = %app.name, delivery = %shown, %msg_type, %source, handled_ms, error = %e, "push handled: reply missed the passive window and could not be sent as a customer-service message");
                false
            }
        }
    }

    /// Waits for this instance's handling of the push.
    async fn wait_local(
        &self,
        store: &Store,
        key: &str,
        local: &Local,
        arrival: Instant,
        ttl: Duration,
    ) -> Answered {
        let mut result = local.result.subscribe();
        loop {
            let current = result.borrow_and_update().clone();
            if let Some(reply) = current {
                return self.take(store, key, reply, arrival, local.due, ttl).await;
            }
            tokio::select! {
                changed = result.changed() => {
                    if changed.is_err() {
                        // The handling task ended without a result; nothing will come.
                        sleep_until(local.due).await;
                        return Answered::success(Outcome::Deadline);
                    }
                }
                () = sleep_until(local.due) => return Answered::success(Outcome::Deadline),
            }
        }
    }

    /// Waits for another instance's (or another request's) handling, through the store.
    async fn wait_store(
        &self,
        store: &Store,
        key: &str,
        arrival: Instant,
        deadline: Duration,
        ttl: Duration,
    ) -> Answered {
        // Subscribed before the first read, so no change falls between the two.
        let mut changes = store.subscribe();
        let mut due = arrival + deadline;
        loop {
            match store.get(key).await {
                Ok(Some(raw)) => {
                    if let Some(record) = Record::decode(&raw) {
                        due = due_at(record.t0, arrival, deadline);
                        if record.done {
                            let reply = record.reply.map(Arc::from);
                            return self.take(store, key, reply, arrival, due, ttl).await;
                        }
                    }
                }
                // Gone: the claim expired (its handler died) or raced this read; nothing
                // will come, and the request is answered at its own deadline.
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(key = %shown(key), error = %e, "store read failed while waiting")
                }
            }
            if Instant::now() >= due {
                return Answered::success(Outcome::Deadline);
            }
            let changed = async {
                loop {
                    match changes.recv().await {
                        Ok(changed) if changed == key => return,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            };
            tokio::select! {
                () = changed => {}
                () = sleep(POLL) => {}
                () = sleep_until(due) => {}
            }
        }
    }

    /// A request has the result: answers `success` for no reply, and the reply unless it
    /// went out as a 客服消息. Past this request's own deadline too: a retry of an answer
    /// that was lost on its way to WeChat must carry the reply again.
    async fn take(
        &self,
        store: &Store,
        key: &str,
        reply: Option<Arc<str>>,
        arrival: Instant,
        due: Instant,
        ttl: Duration,
    ) -> Answered {
        let Some(xml) = reply else {
            return Answered::success(Outcome::NoReply);
        };
        if Instant::now() >= arrival + PASSIVE_WINDOW {
            // WeChat is hanging up on this request; its retry or a 客服消息 carries the reply.
            sleep_until(due).await;
            return Answered::success(Outcome::Deadline);
        }
        if self.claim(store, key, Via::Passive, ttl).await {
            Answered {
                reply: Some(xml.to_string()),
                outcome: Outcome::Replied,
            }
        } else {
            Answered::success(Outcome::Duplicate)
        }
    }

    /// Decides how the reply goes, once per delivery: true when it goes `via` (always for
    /// a second passive answer), false when it already went the other way. Per instance
    /// when the store is unreachable. The decision is kept for `ttl`, as long as the record.
    async fn claim(&self, store: &Store, key: &str, via: Via, ttl: Duration) -> bool {
        let local = self.find(key);
        let sent = format!("{key}:sent");
        // The store decides, atomically across instances and requests; this instance's entry
        // records what it decided, and decides alone only while the store is away. (Deciding
        // in the entry first let a 客服消息 claim that then lost in the store leave this
        // instance's requests without the passive reply that had won: a race test caught it.)
        let decided = match store.set_nx(&sent, via.as_str(), ttl).await {
            Ok(true) => Ok((via, true)),
            Ok(false) => match store.get(&sent).await {
                // Anything but "passive" (an earlier version wrote "customer_service") is a
                // 客服消息, which never shares.
                Ok(Some(how)) if how == Via::Passive.as_str() => Ok((Via::Passive, false)),
                Ok(Some(_)) => Ok((Via::Custom, false)),
                // Expired between the two calls, long after the push: nothing went as custom.
                Ok(None) => Ok((Via::Passive, false)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let won = match decided {
            Ok((decided, set_here)) => {
                if let Some(local) = &local {
                    local.sent.store(decided as u8, Ordering::Release);
                }
                match via {
                    // Passive answers share the reply.
                    Via::Passive => decided == Via::Passive,
                    // A 客服消息 goes only from the claim that decided it.
                    Via::Custom => set_here,
                }
            }
            Err(e) => {
                if let Some(suppressed) = SENT_WARN.admit() {
                    tracing::warn!(key = %shown(key), error = %e, suppressed, "store unavailable while deciding how a reply goes; deciding within this instance");
                }
                match &local {
                    None => false,
                    Some(local) => match local.sent.compare_exchange(
                        Via::NONE,
                        via as u8,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => true,
                        Err(earlier) => {
                            via == Via::Passive && Via::from_u8(earlier) == Via::Passive
                        }
                    },
                }
            }
        };
        if won && via == Via::Passive {
            if let Some(local) = &local {
                local.taken.notify_one();
            }
        }
        won
    }
}

/// How a delivery's reply goes: the value of its `:sent` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Via {
    /// As the answer to a request; shared by every request that answers with it.
    Passive = 1,
    /// As a 客服消息; exclusive.
    Custom = 2,
}

impl Via {
    /// Not decided yet (the initial [`Local::sent`]).
    const NONE: u8 = 0;

    fn as_str(self) -> &'static str {
        match self {
            Via::Passive => "passive",
            Via::Custom => "custom",
        }
    }

    fn from_u8(value: u8) -> Via {
        if value == Via::Passive as u8 {
            Via::Passive
        } else {
            Via::Custom
        }
    }
}

/// When a request's answer is due: `deadline` after the first arrival `t0` (Unix ms, maybe
/// another instance's clock), never later than `deadline` after this request's own arrival.
fn due_at(t0: u64, arrival: Instant, deadline: Duration) -> Instant {
    let now = Instant::now();
    let now_ms = unix_ms();
    let due_ms = t0.saturating_add(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX));
    let due = if due_ms >= now_ms {
        now + Duration::from_millis(due_ms - now_ms)
    } else {
        now.checked_sub(Duration::from_millis(now_ms - due_ms))
            .unwrap_or(now)
    };
    due.min(arrival + deadline)
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_none() {
        let claim = Record {
            t0: 1,
            done: false,
            reply: None,
        };
        assert_eq!(claim.encode(), r#"{"t0":1,"done":false}"#);
        assert_eq!(Record::decode(&claim.encode()), Some(claim));
        let result = Record {
            t0: 2,
            done: true,
            reply: Some("<xml/>".into()),
        };
        assert_eq!(Record::decode(&result.encode()), Some(result));
        assert_eq!(Record::decode("pending"), None);
    }

    #[test]
    fn logged_delivery_keys_hide_the_openid() {
        assert_eq!(shown("msgid:123"), "msgid:123");
        assert_eq!(
            shown("event:oUser%0A:1700000000:CLICK:k"),
            "event:*:1700000000:CLICK:k"
        );
        assert_eq!(
            shown("delivery:demo:event:oUser:1700000000:subscribe:"),
            "delivery:demo:event:*:1700000000:subscribe:"
        );
        assert_eq!(
            shown("delivery:demo:event:oUser:1700000000:VIEW:https%3A%2F%2Fa%3Ab"),
            "delivery:demo:event:*:1700000000:VIEW:https%3A%2F%2Fa%3Ab"
        );
        let long = format!("event:o:1:VIEW:{}", "x".repeat(500));
        assert_eq!(
            shown(&long).chars().count(),
            "event:*".len() + DELIVERY_CHARS + 1
        );
        assert_eq!(shown("delivery:demo:msgid:1"), "delivery:demo:msgid:1");
        assert_eq!(
            shown("delivery:myevent:msgid:1"),
            "delivery:myevent:msgid:1"
        );
    }

    /// Registers a delivery as being handled by `deliveries`, as `claim_and_handle` does.
    fn handling(deliveries: &Deliveries, key: &str) {
        let local = Arc::new(Local {
            t0: unix_ms(),
            due: Instant::now(),
            result: watch::channel(None).0,
            sent: AtomicU8::new(Via::NONE),
            taken: Notify::new(),
        });
        deliveries.lock().insert(key.to_owned(), local);
    }

    #[tokio::test]
    async fn passive_answers_are_shared_and_a_customer_service_message_is_exclusive() {
        // Two instances on one store; `a` handles the pushes with a local entry, for `b`
        // only the store decides.
        let store = Store::memory();
        let (a, b) = (Deliveries::default(), Deliveries::default());
        for key in ["store-only", "handled-by-a"] {
            if key == "handled-by-a" {
                handling(&a, key);
            }
            assert!(
                b.claim(&store, key, Via::Passive, RESULT_TTL).await,
                "{key}"
            );
            assert!(
                a.claim(&store, key, Via::Passive, RESULT_TTL).await,
                "{key}"
            );
            assert!(
                !a.claim(&store, key, Via::Custom, RESULT_TTL).await,
                "{key}"
            );
            assert!(
                b.claim(&store, key, Via::Passive, RESULT_TTL).await,
                "{key}"
            );
        }
        for key in ["custom-store-only", "custom-handled-by-a"] {
            if key == "custom-handled-by-a" {
                handling(&a, key);
            }
            assert!(a.claim(&store, key, Via::Custom, RESULT_TTL).await, "{key}");
            assert!(
                !b.claim(&store, key, Via::Passive, RESULT_TTL).await,
                "{key}"
            );
            assert!(
                !a.claim(&store, key, Via::Passive, RESULT_TTL).await,
                "{key}"
            );
        }
        // A value written by an earlier version (exclusive claims) never shares.
        store
            .set_nx("old:sent", "customer_service", RESULT_TTL)
            .await
            .unwrap();
        assert!(!b.claim(&store, "old", Via::Passive, RESULT_TTL).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_answers_and_customer_service_never_both_win() {
        let store = Store::memory();
        let (a, b) = (
            Arc::new(Deliveries::default()),
            Arc::new(Deliveries::default()),
        );
        for round in 0..200 {
            let key = format!("race:{round}");
            if round % 2 == 0 {
                handling(&a, &key);
            }
            let passive = (0..4).map(|i| {
                let (deliveries, store, key) = (
                    if i % 2 == 0 { a.clone() } else { b.clone() },
                    store.clone(),
                    key.clone(),
                );
                tokio::spawn(async move {
                    deliveries
                        .claim(&store, &key, Via::Passive, RESULT_TTL)
                        .await
                })
            });
            let passive: Vec<_> = passive.collect();
            let custom = {
                let (a, store, key) = (a.clone(), store.clone(), key.clone());
                tokio::spawn(async move { a.claim(&store, &key, Via::Custom, RESULT_TTL).await })
            };
            let mut won = Vec::new();
            for task in passive {
                won.push(task.await.unwrap());
            }
            let custom = custom.await.unwrap();
            if custom {
                assert!(
                    won.iter().all(|w| !w),
                    "round {round}: {won:?} after custom"
                );
            } else {
                assert!(
                    won.iter().all(|w| *w),
                    "round {round}: {won:?} without custom"
                );
            }
        }
    }

    #[tokio::test]
    async fn due_is_bounded_by_the_requests_own_deadline() {
        let arrival = Instant::now();
        let deadline = Duration::from_millis(1000);
        let now = unix_ms();
        // A first arrival 400 ms ago leaves 600 ms.
        let due = due_at(now - 400, arrival, deadline);
        assert!(due <= arrival + Duration::from_millis(610));
        assert!(due >= arrival + Duration::from_millis(550));
        // A t0 from a clock far in the future is capped.
        assert_eq!(
            due_at(now + 3_600_000, arrival, deadline),
            arrival + deadline
        );
        // A t0 long past is due now.
        assert!(due_at(0, arrival, deadline) <= Instant::now());
    }
}
