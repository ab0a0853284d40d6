//! The dispatch domain's values: the catalog's items and a dispatch's summary, a dispatch's
//! status and condition, its spec as created, a notification and its status, a log line; the
//! retry delay (full jitter, `Retry-After`); the effects and keys the actors name each other by.
//! Pure data and functions, below both actors: `catalog.rs` and `job.rs` import from here and
//! never from each other.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::courier::Channel;
use super::{singleton, NotifyConfig, CATALOG, FANOUT_EFFECT};
use crate::runtime::outbox::Effect;
use crate::runtime::ActorKey;
use crate::clock::Millis;
use crate::market::{Quote, Rate};

/// A dispatch's status (API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Scheduled,
    WaitingCondition,
    Sending,
    Done,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::WaitingCondition => "waiting_condition",
            Status::Sending => "sending",
            Status::Done => "done",
        }
    }
}

/// A comparison of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Eq];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }

    pub fn parse(text: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == text)
    }
}

/// `btc_eur <op> value`: the only signal there is (the market's price feed, in euros).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub op: Op,
    pub value: Rate,
}

/// Compares two rates exactly.
fn compare(a: Rate, b: Rate) -> Ordering {
    let ((au, ascale), (bu, bscale)) = (a.parts(), b.parts());
    let scale = ascale.max(bscale);
    let widen = |units: u64, s: u32| u128::from(units) * 10u128.pow(scale - s);
    widen(au, ascale).cmp(&widen(bu, bscale))
}

impl Condition {
    /// Whether it holds for `price`.
    pub fn holds(&self, price: Rate) -> bool {
        let order = compare(price, self.value);
        match self.op {
            Op::Lt => order == Ordering::Less,
            Op::Le => order != Ordering::Greater,
            Op::Gt => order == Ordering::Greater,
            Op::Ge => order != Ordering::Less,
            Op::Eq => order == Ordering::Equal,
        }
    }

    pub fn describe(&self) -> String {
        format!("btc_eur {} {}", self.op.as_str(), self.value)
    }
}

/// What fired a dispatch's condition: the price and its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fired {
    pub price: Rate,
    pub price_at_ms: Millis,
}

/// A dispatch as created: what it sends, to whom, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchSpec {
    pub id: u64,
    pub program: Program,
    pub event_type: EventType,
    pub start_ms: Millis,
    pub end_ms: Option<Millis>,
    pub condition: Option<Condition>,
    /// Recipients are the contacts of the event type's groups with ids up to this.
    pub contacts_through: u64,
    pub recipients: u64,
    pub created_ms: Millis,
    /// `notify.log_lines_max` when it was created.
    pub log_lines_max: usize,
}

impl DispatchSpec {
    /// The status a new dispatch starts in at `now_ms`, and what fired its condition if it
    /// starts sending because of it.
    pub(crate) fn initial_status(&self, now_ms: Millis, quote: Option<&Quote>) -> (Status, Option<Fired>) {
        if self.start_ms > now_ms {
            return (Status::Scheduled, None);
        }
        self.status_from_start(quote)
    }

    /// Once the start time has come: sending, or waiting for the condition.
    pub(crate) fn status_from_start(&self, quote: Option<&Quote>) -> (Status, Option<Fired>) {
        match self.condition {
            None => (Status::Sending, None),
            Some(condition) => match quote.and_then(|q| fired_by(condition, q)) {
                Some(fired) => (Status::Sending, Some(fired)),
                None => (Status::WaitingCondition, None),
            },
        }
    }
}

pub(crate) fn fired_by(condition: Condition, quote: &Quote) -> Option<Fired> {
    let price = quote.rate(crate::market::Currency::Eur);
    condition.holds(price).then_some(Fired {
        price,
        price_at_ms: quote.at_ms,
    })
}

/// A notification's status (API.md), in the order of [`Job::counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NoteStatus {
    Queued,
    Failed,
    Sent,
    Dead,
}

impl NoteStatus {
    pub const ALL: [NoteStatus; 4] = [
        NoteStatus::Queued,
        NoteStatus::Failed,
        NoteStatus::Sent,
        NoteStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoteStatus::Queued => "queued",
            NoteStatus::Failed => "failed",
            NoteStatus::Sent => "sent",
            NoteStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<NoteStatus> {
        NoteStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn is_final(self) -> bool {
        matches!(self, NoteStatus::Sent | NoteStatus::Dead)
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: u64,
    pub dispatch_id: u64,
    pub contact_id: u64,
    pub user_id: Option<u64>,
    /// The channel it is for.
    pub channel: Channel,
    /// The channel carrying it now (differs after a failover).
    pub via: Channel,
    /// The address on `via`.
    pub to: String,
    pub status: NoteStatus,
    /// Attempts in all, and on `via`.
    pub attempts: u32,
    pub via_attempts: u32,
    /// Channels tried and given up (bit per `Channel as u8`).
    pub given_up: u8,
    /// Not attempted again before this.
    pub next_ms: Millis,
    pub last_error: Option<String>,
    /// Kept in the outbox only (no provider configured for `via`).
    pub outboxed: bool,
    pub batch: u32,
}

impl Notification {
    /// The idempotency key: the same on every attempt, on every channel, after restarts.
    pub fn key(&self) -> String {
        format!("notification-{}", self.id)
    }
}

/// A line of the transaction log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub at_ms: Millis,
    pub text: String,
}

/// A hash for jitter (splitmix64): deterministic per (notification, attempt, time), spread
/// uniformly; the delay is decided once and logged, so replay never draws again.
fn jitter(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The delay before retry `k` (k ≥ 1 failed attempts on the channel): full jitter over
/// `0..=min(max, base·2^(k-1))`, at least `retry_after_ms` (capped by `retry_after_max_ms`).
pub fn backoff_ms(config: &NotifyConfig, k: u32, retry_after_ms: Option<u64>, seed: u64) -> u64 {
    let doubling = config
        .retry_base_ms
        .saturating_mul(1u64 << k.saturating_sub(1).min(40));
    let bound = doubling.min(config.retry_max_ms);
    let drawn = jitter(seed) % (bound + 1);
    match retry_after_ms {
        Some(after) => drawn.max(after.min(config.retry_after_max_ms)),
        None => drawn,
    }
}

pub(crate) fn describe_created(spec: &DispatchSpec) -> String {
    let channels: Vec<&str> = spec.event_type.channels.iter().map(|c| c.name()).collect();
    let mut text = format!(
        "Transaction for Dispatch: {} | Program: {} | Event Type: {} | Channels: {} | Groups: {:?} | Recipients: {} | Start Time: {} | End Time: {} | Message: {}",
        spec.id,
        spec.program.name,
        spec.event_type.name,
        channels.join(","),
        spec.event_type.group_ids,
        spec.recipients,
        crate::clock::rfc3339(spec.start_ms),
        spec.end_ms.map(crate::clock::rfc3339).unwrap_or_default(),
        spec.program.message,
    );
    if let Some(condition) = spec.condition {
        text.push_str(&format!(" | Condition: {}", condition.describe()));
    }
    text
}

pub(crate) fn describe_fired(spec: &DispatchSpec, fired: &Fired) -> String {
    format!(
        "Condition {} held: btc_eur was {} at {}",
        spec.condition.map(|c| c.describe()).unwrap_or_default(),
        fired.price,
        crate::clock::rfc3339(fired.price_at_ms)
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub id: u64,
    pub name: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventType {
    pub id: u64,
    pub name: String,
    pub group_ids: Vec<u64>,
    /// In order of preference: failover goes to the next one.
    pub channels: Vec<Channel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: u64,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub webhook_url: Option<String>,
    pub group_ids: Vec<u64>,
    pub user_id: Option<u64>,
}

impl Contact {
    /// The contact's address on `channel`, if it has one.
    pub fn address(&self, channel: Channel) -> Option<&str> {
        match channel {
            Channel::Sms => self.phone.as_deref(),
            Channel::Email => self.email.as_deref(),
            Channel::Webhook => self.webhook_url.as_deref(),
        }
    }
}

/// A new catalog item (validated by `super::validate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Item {
    Program(Program),
    EventType(EventType),
    Group(Group),
    Contact(Contact),
}

/// What the catalog keeps of a dispatch (the listing of notifications skips by it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub id: u64,
    pub status: Status,
    pub group_ids: Vec<u64>,
    pub contacts_through: u64,
    /// Notifications by status: queued, failed, sent, dead.
    pub counts: [u64; 4],
    /// The condition it waits for, while it does.
    pub waiting: Option<Condition>,
    /// Notifications re-sent after a restart found them claimed without an outcome.
    pub possible_duplicates: u64,
}

/// Every dispatch's counts added up (for `/metrics`; derived, kept by `apply`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Dispatches by status: scheduled, waiting_condition, sending, done.
    pub dispatches: [u64; 4],
    /// Notifications by status: queued, failed, sent, dead.
    pub notifications: [u64; 4],
    pub possible_duplicates: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, summary: &Summary, sign: i64) {
        let step = |value: &mut u64, by: u64| {
            *value = if sign > 0 { *value + by } else { value.saturating_sub(by) };
        };
        step(&mut self.dispatches[summary.status as usize], 1);
        for (total, count) in self.notifications.iter_mut().zip(summary.counts) {
            step(total, count);
        }
        step(&mut self.possible_duplicates, summary.possible_duplicates);
    }
}

/// The effect that pages dispatch `id`'s recipients after page `seq - 1` (see `delivery`).
pub(crate) fn fanout_effect(id: u64, seq: u32) -> Effect {
    Effect {
        kind: FANOUT_EFFECT.into(),
        key: format!("dispatch-{id}-fanout-{seq}"),
        payload: crate::codec::encode(&(id, seq)),
    }
}

impl Item {
    pub fn id(&self) -> u64 {
        match self {
            Item::Program(p) => p.id,
            Item::EventType(e) => e.id,
            Item::Group(g) => g.id,
            Item::Contact(c) => c.id,
        }
    }
}

/// The catalog's key.
pub(crate) fn catalog_key() -> ActorKey {
    singleton(CATALOG)
}

/// The effect that delivers batch `batch` of dispatch `id` (see `delivery`).
pub(crate) fn batch_effect(id: u64, batch: u32, channel: Channel) -> Effect {
    Effect {
        kind: super::batch_kind(channel).into(),
        key: format!("dispatch-{id}-batch-{batch}"),
        payload: crate::codec::encode(&(id, batch)),
    }
}
