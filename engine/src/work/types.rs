//! What the work API takes and answers: items and their states, results as shown, leased
//! buckets, registrations, reports and their outcomes, the stats (and their Prometheus
//! rendering), dead letters. Plain data: no rule lives here (see `validation`).

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// An item's state as clients see it. Items of an open (expired) or dead-lettered bucket are
/// `Pending`: they wait in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Pending,
    Leased,
    Done,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::Leased => "leased",
            ItemState::Done => "done",
        }
    }

    /// Parses `pending`, `leased` or `done`.
    pub fn parse(text: &str) -> Option<ItemState> {
        match text {
            "pending" => Some(ItemState::Pending),
            "leased" => Some(ItemState::Leased),
            "done" => Some(ItemState::Done),
            _ => None,
        }
    }
}

/// A client's verdict on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Yes,
    No,
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Yes => "yes",
            Outcome::No => "no",
            Outcome::Unknown => "unknown",
        }
    }

    /// Parses `yes`, `no` or `unknown`.
    pub fn parse(text: &str) -> Option<Outcome> {
        match text {
            "yes" => Some(Outcome::Yes),
            "no" => Some(Outcome::No),
            "unknown" => Some(Outcome::Unknown),
            _ => None,
        }
    }
}

/// An item to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub key: String,
    /// Higher first; `None` = [`DEFAULT_PRIORITY`]. Must fit an `i32`.
    pub priority: Option<i64>,
}

/// The reply to `add_items`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Added {
    pub added: u64,
    pub duplicates: u64,
}

/// One entry of an item's result history (API.md `{"outcome","client_id","detail","at"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultView {
    pub outcome: Outcome,
    pub client_id: u64,
    pub detail: Option<String>,
    pub at_ms: Millis,
}

/// An item as shown to clients. `results` is the whole history, newest last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    pub key: String,
    pub state: ItemState,
    pub priority: i32,
    pub results: Vec<ResultView>,
}

/// A leased bucket (API.md `{"id","items","lease_expires_at"}`; `epoch` is additive: the
/// fencing token of this lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketView {
    pub id: u64,
    pub epoch: u32,
    /// The keys still without a result.
    pub items: Vec<String>,
    pub lease_expires_at_ms: Millis,
}

/// A bucket's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BucketStatus {
    Leased,
    /// Expired or released, waiting for the next lease.
    Open,
    Done,
    Dead,
}

/// A bucket as the engine sees it (diagnostics; an additive route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    pub id: u64,
    pub status: BucketStatus,
    pub epoch: u32,
    /// The current holder, while leased.
    pub holder: Option<u64>,
    pub lease_expires_at_ms: Option<Millis>,
    /// Every key of the bucket, sorted.
    pub items: Vec<String>,
    /// Keys still without a result.
    pub remaining: u64,
    pub expiries: u32,
}

/// A registration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub screen_name: String,
    pub external_id: String,
}

/// The reply to `register`. `created` is false when the `external_id` was known (HTTP 200
/// instead of 201); the token is new either way and the previous one no longer works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub client_id: u64,
    pub token: String,
    pub created: bool,
}

/// One result of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemResult {
    pub key: String,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

/// A results report for one bucket. `epoch`, when given, must be the lease's epoch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub results: Vec<ItemResult>,
    pub discovered: Vec<String>,
    pub epoch: Option<u32>,
}

/// The reply to a report (API.md `{"bucket_id","remaining"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportOutcome {
    pub bucket_id: u64,
    /// Items of the bucket still without a result; 0 = the bucket is done.
    pub remaining: u64,
}

/// The reply to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatOutcome {
    pub bucket_id: u64,
    pub epoch: u32,
    pub lease_expires_at_ms: Millis,
}

/// Item counts by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ItemCounts {
    pub pending: u64,
    pub leased: u64,
    pub done: u64,
}

/// Bucket counts by state (`dead` is additive to API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BucketCounts {
    pub open: u64,
    pub leased: u64,
    pub dead: u64,
}

/// One client's line in the stats (`leased_buckets` is additive). Never the `external_id`: it is
/// the client's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientStats {
    pub client_id: u64,
    pub screen_name: String,
    pub active: bool,
    pub buckets_assigned: u64,
    pub buckets_completed: u64,
    pub buckets_expired: u64,
    pub rejected_updates: u64,
    pub last_seen_at_ms: Option<Millis>,
    pub leased_buckets: u64,
}

/// `GET /api/v1/work/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkStats {
    pub items: ItemCounts,
    pub buckets: BucketCounts,
    pub clients: Vec<ClientStats>,
}

/// A dead-lettered bucket: it expired `expiries` times; its unfinished items are parked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadBucketView {
    pub bucket_id: u64,
    /// The keys still without a result.
    pub items: Vec<String>,
    pub expiries: u32,
    pub last_client_id: u64,
    pub dead_at_ms: Millis,
}
