//! The work workload ("DM check"): lease-based distribution of items to clients that come and
//! go. Items are cut into buckets; a bucket is leased to one client at a time; only its holder
//! may report results; a lease that is neither heartbeated nor reported on expires and its
//! unfinished items return to the pool; a bucket that expires `max_expiries` times is parked in
//! a dead-letter list instead of cycling for ever.
//!
//! # Actors
//! - [`pool::Pool`] (singleton, id [`pool::POOL_ID`]): every item (key, priority, state, the
//!   whole result history), the free pending queue, the bucket table (open, leased, dead), the
//!   client registry (tokens as hashes, per-client stats), the registration rate limiter. It
//!   alone decides bucket formation and leasing, so a bucket is never granted twice.
//! - [`bucket::Bucket`] (one per bucket id): its keys, which of them have a result, the lease
//!   (holder, epoch, expiry) and its past holders. It alone decides reports, heartbeats, expiry
//!   (a durable timer at the lease deadline) and release.
//!
//! # Records (one WAL record per command, see `runtime`)
//! - lease = {Pool: `Leased` (formed keys, epochs, deadlines), each Bucket: `LeaseGranted`};
//! - report = {Bucket: `ResultsRecorded`, Pool: `ItemsReported` (new results, discovered keys,
//!   completion)}; heartbeat = {Bucket: `LeaseExtended`, Pool: `ClientSeen`};
//! - expiry = {Bucket: `LeaseExpired`, Pool: `BucketExpired`}; release = {Bucket:
//!   `LeaseReleased`, Pool: `BucketReleased`}; unregister = {Pool: `ClientUnregistered`, each
//!   held Bucket: `LeaseRevoked`}, followed by a release per bucket (its timer also fires at
//!   once, so a crash between the two still releases them).
//!
//! Events for another actor are idempotent assignments guarded by `(bucket id, epoch)` or by
//! the item's current bucket, because replay re-applies them whatever the receiver's snapshot
//! holds. Events name items by key, never by in-memory index: an index is local to one
//! incarnation of the pool.
//!
//! # Invariants
//! - An item is in at most one bucket; a bucket has at most one holder; a lease's epoch grows by
//!   one per grant, so a result or heartbeat from an older epoch is refused (`lease_expired`).
//! - An item's result history only grows: the first result of an item in a bucket stands
//!   (repeats are ignored, so retries are safe); `rerun` returns a done item to the pool and
//!   keeps its history.
//! - Item keys are unique; discovered keys are added only if never seen (no loops).
//! - Client tokens are stored as hashes; a registration of a known `external_id` rotates the
//!   token (the old one stops working) and keeps the client id and its stats.
//! - A client's `external_id` is its secret (it is what takes an identity back after a
//!   restart): only its digest ([`external_id_digest`]) enters the pool, the WAL and the
//!   snapshots, and no view, stat or metric carries it. Data dirs of format 4 kept it in plain
//!   text; the pool hashes such legacy parts and events when it loads or replays them, and
//!   `Engine::open` rewrites them (see `codec::FORMAT_VERSION`).
//!
//! Deliberately absent: items are never deleted (a key, once seen, is known for ever).

pub mod bucket;
pub mod pool;

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::config::DomainConfig;
use crate::runtime::{ActorKey, Domain, DomainEvent, Kind, Registry, Replay, Shared};
use crate::store::Store;

use bucket::{Bucket, BucketCommand, BucketReply};
use pool::{Pool, PoolCommand, PoolReply, POOL_ID};

/// The work domain: registered in `lib.rs`'s `domains!`.
pub const DOMAIN: WorkDomain = WorkDomain;

/// The pool (singleton): items, bucket formation, clients.
pub const POOL: Kind = Kind::new(5);
/// A bucket: its lease and its items' report flags (packed snapshots).
pub const BUCKET: Kind = Kind::new(6);

pub struct WorkDomain;

impl Domain for WorkDomain {
    fn name(&self) -> &'static str {
        "work"
    }

    fn register(&self, registry: &mut Registry) {
        registry.kind::<Pool>("work_pool");
        registry.kind::<Bucket>("work_bucket");
        registry.config::<WorkConfig>();
    }

    fn migrate(&self, from_version: u32, store: &Store, replay: &mut Replay) -> Result<()> {
        if from_version < 5 && pool::has_legacy_clients(store)? {
            // Format 4 kept work clients' external ids in plain text: load the pool (which
            // hashes them) so the open-time checkpoint rewrites its client parts now.
            replay.include(ActorKey::new(POOL, POOL_ID))?;
        }
        Ok(())
    }
}

impl crate::Engine {
    /// The work workload (see [`crate::work`]).
    pub fn work(&self) -> Work<'_> {
        Work {
            shared: self.shared(),
        }
    }
}

/// Longest item key, in characters (Unicode scalar values, what JSON Schema's `maxLength`
/// counts, so the OpenAPI document can state the limit exactly).
pub const KEY_CHARS_MAX: usize = 128;
/// The most UTF-8 bytes a key of [`KEY_CHARS_MAX`] characters takes: what bounds the WAL records
/// that carry keys (see [`BUCKET_SIZE_MAX`] and the lease's byte budget in `pool`).
pub const KEY_BYTES_MAX: usize = 4 * KEY_CHARS_MAX;
/// Longest result `detail`, in characters.
pub const DETAIL_CHARS_MAX: usize = 512;
/// Items in one `add_items` call (API.md: ≤ 18000).
pub const ITEMS_PER_ADD_MAX: usize = 18_000;
/// Longest `screen_name`, in characters.
pub const SCREEN_NAME_CHARS_MAX: usize = 64;
/// Shortest `external_id`, in bytes (API.md: a secret of at least 16 characters; its alphabet is
/// ASCII, so bytes and characters agree). 16 characters of the allowed alphabet carry ~100 bits.
pub const EXTERNAL_ID_BYTES_MIN: usize = 16;
/// Longest `external_id`, in bytes.
pub const EXTERNAL_ID_BYTES_MAX: usize = 64;
/// Largest page of a list.
pub const PAGE_LIMIT_MAX: usize = 500;
/// Priority of an item added without one, and of discovered items.
pub const DEFAULT_PRIORITY: i32 = 0;
/// Largest `bucket_size`: the lease that forms a bucket must fit one WAL record even when every
/// key is as long as it may be (a lease record carries a formed bucket's keys twice).
pub const BUCKET_SIZE_MAX: usize = 700;
const _: () = assert!(
    BUCKET_SIZE_MAX * (KEY_BYTES_MAX + KEY_RECORD_OVERHEAD_BYTES) * 2 <= RECORD_BYTES_BUDGET
);
/// The prefix of every client token (never a JWT, which starts with `ey`).
pub const TOKEN_PREFIX: &str = "swc_";
/// Bytes of randomness in a client token (hex-encoded after the prefix).
const TOKEN_SECRET_BYTES: usize = 32;
/// Bytes of one `add_items` chunk sent to the pool as one command (one WAL record).
const ADD_CHUNK_BYTES_MAX: usize = 256 * 1024;
/// Largest WAL record the work domain builds (the WAL's own limit is 1 MiB). A lease forms no
/// more buckets than fit it (`pool`); a report larger than it is refused (send it in parts).
pub(crate) const RECORD_BYTES_BUDGET: usize = 768 * 1024;
/// Encoding overhead counted per key in a record (its length prefix and neighbours), generous.
pub(crate) const KEY_RECORD_OVERHEAD_BYTES: usize = 8;
/// Encoding overhead counted per result in a report record (outcome, client, time, options).
const RESULT_RECORD_OVERHEAD_BYTES: usize = 40;

/// The work workload's limits (`work.*` in the server config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkConfig {
    /// Items per bucket (`work.bucket_size`). A bucket is also the unit of a report, so it
    /// bounds the size of one WAL record.
    pub bucket_size: usize,
    /// A lease expires this long after the last heartbeat or result (`work.lease_seconds`).
    pub lease_seconds: u64,
    /// Expiries after which a bucket is dead-lettered instead of reopened (`work.max_expiries`).
    pub max_expiries: u32,
    /// Largest `max_buckets` of one lease request (`work.max_buckets_per_request`).
    pub max_buckets_per_request: usize,
    /// Buckets one client may hold leased at once; a lease request beyond gets
    /// `too_many_buckets` (`work.leased_buckets_per_client_max`).
    pub leased_buckets_per_client_max: usize,
    /// Bucket formation picks at random among the oldest `formation_spread × bucket_size` items
    /// of the highest pending priority (`work.formation_spread`). 1 = strictly oldest first.
    pub formation_spread: usize,
    /// Registrations accepted per source address per minute; 0 = unlimited
    /// (`work.registrations_per_minute_per_source`). Costs one small entry per source.
    pub registrations_per_minute_per_source: u32,
    /// Items the pool may hold in all states; an add beyond gets `Overloaded`
    /// (`work.pool_items_max`). Costs about 150 bytes of memory per item.
    pub pool_items_max: usize,
    /// Registered clients (active or not) the registry may hold (`work.clients_max`).
    pub clients_max: usize,
    /// Discovered keys in one report (`work.discovered_per_report_max`).
    pub discovered_per_report_max: usize,
    /// Seed of bucket formation; unset = a fresh random seed per lease (`work.seed`). With a
    /// seed, the same operations form the same buckets.
    pub seed: Option<u64>,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig {
            bucket_size: 180,
            lease_seconds: 2 * 3600,
            max_expiries: 5,
            max_buckets_per_request: 10,
            leased_buckets_per_client_max: 100,
            formation_spread: 4,
            registrations_per_minute_per_source: 120,
            pool_items_max: 20_000_000,
            clients_max: 1_000_000,
            discovered_per_report_max: 1000,
            seed: None,
        }
    }
}

impl DomainConfig for WorkConfig {
    const SECTION: &'static str = "work";

    fn validate(&self) -> std::result::Result<(), String> {
        WorkConfig::validate(self)
    }
}

impl WorkConfig {
    /// Checks the limits and that the largest lease and report records fit the WAL.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.bucket_size == 0 || self.bucket_size > BUCKET_SIZE_MAX {
            return Err(format!(
                "work.bucket_size must be 1..={BUCKET_SIZE_MAX}, got {}",
                self.bucket_size
            ));
        }
        if self.lease_seconds == 0 || self.lease_seconds > 30 * 24 * 3600 {
            return Err("work.lease_seconds must be 1..=2592000".into());
        }
        if self.max_expiries == 0 {
            return Err("work.max_expiries must be at least 1".into());
        }
        if self.max_buckets_per_request == 0 || self.leased_buckets_per_client_max == 0 {
            return Err(
                "work.max_buckets_per_request and work.leased_buckets_per_client_max must be at least 1"
                    .into(),
            );
        }
        if self.formation_spread == 0 || self.formation_spread > 64 {
            return Err("work.formation_spread must be 1..=64".into());
        }
        if self.pool_items_max == 0 || self.pool_items_max > u32::MAX as usize {
            return Err(format!("work.pool_items_max must be 1..={}", u32::MAX));
        }
        if self.clients_max == 0 {
            return Err("work.clients_max must be at least 1".into());
        }
        // Records stay within RECORD_BYTES_BUDGET by construction: one formed bucket always fits
        // (BUCKET_SIZE_MAX), a lease forms no more buckets than fit, and a report larger than
        // the budget is refused (`Work::validate_report`).
        Ok(())
    }

    /// Small buckets, short leases and a fixed seed, for tests.
    pub fn for_tests() -> Self {
        WorkConfig {
            bucket_size: 4,
            lease_seconds: 60,
            max_expiries: 3,
            seed: Some(7),
            ..WorkConfig::default()
        }
    }

    pub fn lease_ms(&self) -> u64 {
        self.lease_seconds * 1000
    }
}

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

/// One result in an item's history, as stored and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub outcome: Outcome,
    pub client_id: u64,
    pub at_ms: Millis,
    pub detail: Option<Box<str>>,
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

impl WorkStats {
    /// Appends the pool totals and per-client counters in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# TYPE switchyard_work_items gauge");
        for (state, count) in [
            ("pending", self.items.pending),
            ("leased", self.items.leased),
            ("done", self.items.done),
        ] {
            let _ = writeln!(out, "switchyard_work_items{{state=\"{state}\"}} {count}");
        }
        let _ = writeln!(out, "# TYPE switchyard_work_buckets gauge");
        for (state, count) in [
            ("open", self.buckets.open),
            ("leased", self.buckets.leased),
            ("dead", self.buckets.dead),
        ] {
            let _ = writeln!(out, "switchyard_work_buckets{{state=\"{state}\"}} {count}");
        }
        let active = self.clients.iter().filter(|client| client.active).count();
        let _ = writeln!(
            out,
            "# TYPE switchyard_work_clients_active gauge\nswitchyard_work_clients_active {active}"
        );
        for (name, value) in [
            (
                "buckets_assigned",
                client_sum(&self.clients, |c| c.buckets_assigned),
            ),
            (
                "buckets_completed",
                client_sum(&self.clients, |c| c.buckets_completed),
            ),
            (
                "buckets_expired",
                client_sum(&self.clients, |c| c.buckets_expired),
            ),
            (
                "rejected_updates",
                client_sum(&self.clients, |c| c.rejected_updates),
            ),
        ] {
            let _ = writeln!(
                out,
                "# TYPE switchyard_work_{name}_total counter\nswitchyard_work_{name}_total {value}"
            );
        }
    }
}

fn client_sum(clients: &[ClientStats], field: impl Fn(&ClientStats) -> u64) -> u64 {
    clients.iter().map(field).sum()
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

pub use crate::Page;

/// A client token's stored form.
pub type TokenHash = [u8; 32];
/// A client `external_id`'s stored form (see [`external_id_digest`]).
pub type ExternalIdHash = [u8; 32];

/// Every event of the work domain (see the module docs for which actor gets which).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkEvent {
    /// Pool: these keys are added unless known.
    ItemsAdded { items: Vec<(String, i32)> },
    /// Pool: buckets granted to `client_id` (formed ones name their keys).
    Leased {
        client_id: u64,
        at_ms: Millis,
        grants: Vec<Grant>,
    },
    /// Pool: a done item returns to the pool, history kept.
    ItemRerun { key: String },
    /// Pool: a dead-lettered bucket's unfinished items return to the free pool.
    DeadRequeued { bucket_id: u64 },
    /// Pool, format 4 only: a registration that carried the `external_id` in plain text. Never
    /// written any more; replay hashes it (the pool applies it as [`WorkEvent::ClientRegistered`]).
    /// Kept at its place in the enum, because the encoding names variants by position.
    LegacyClientRegistered {
        client_id: u64,
        screen_name: String,
        external_id: String,
        token_hash: TokenHash,
        at_ms: Millis,
        source: Option<IpAddr>,
    },
    /// Pool: a client unregistered; its token stops working.
    ClientUnregistered { client_id: u64, at_ms: Millis },
    /// Pool: one of the client's updates was refused.
    UpdateRejected { client_id: u64, at_ms: Millis },
    /// Pool (from a bucket): new results, discovered keys, and whether the bucket completed.
    ItemsReported {
        bucket_id: u64,
        epoch: u32,
        client_id: u64,
        results: Vec<(String, ResultRecord)>,
        discovered: Vec<String>,
        completed: bool,
        at_ms: Millis,
    },
    /// Pool (from a bucket): the lease at `epoch` expired; the bucket is open again or dead.
    BucketExpired {
        bucket_id: u64,
        epoch: u32,
        client_id: u64,
        expiries: u32,
        dead: bool,
        at_ms: Millis,
    },
    /// Pool (from a bucket): the lease at `epoch` was given back (unregister).
    BucketReleased {
        bucket_id: u64,
        epoch: u32,
        client_id: u64,
    },
    /// Pool (from a bucket): the client was active at `at_ms`.
    ClientSeen { client_id: u64, at_ms: Millis },
    /// Bucket (from the pool): leased to `client_id` at `epoch`; `keys` when just formed.
    LeaseGranted {
        client_id: u64,
        epoch: u32,
        expires_at_ms: Millis,
        keys: Option<KeyList>,
    },
    /// Bucket (from the pool): the holder at `epoch` unregistered; release at once.
    LeaseRevoked { epoch: u32 },
    /// Bucket: these positions (in the bucket's sorted keys) have a result; lease extended.
    ResultsRecorded {
        epoch: u32,
        positions: Vec<u32>,
        expires_at_ms: Millis,
    },
    /// Bucket: heartbeat.
    LeaseExtended { epoch: u32, expires_at_ms: Millis },
    /// Bucket: the lease at `epoch` expired (the `expiries`-th time); `dead` = dead-lettered.
    LeaseExpired {
        epoch: u32,
        expiries: u32,
        dead: bool,
    },
    /// Bucket: the lease at `epoch` was released.
    LeaseReleased { epoch: u32 },
    /// Pool: a client registered (new, or again with a rotated token). Appended last: variants
    /// are encoded by position, and the ones above are read from format-4 logs.
    ClientRegistered {
        client_id: u64,
        screen_name: String,
        external_id_hash: ExternalIdHash,
        token_hash: TokenHash,
        at_ms: Millis,
        source: Option<IpAddr>,
    },
}

impl DomainEvent for WorkEvent {
    const TAG: u32 = 2;
}

/// One bucket granted by a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub bucket_id: u64,
    pub epoch: u32,
    pub expires_at_ms: Millis,
    /// The keys of a bucket formed by this lease; `None` for a reopened bucket.
    pub formed: Option<KeyList>,
}

/// Item keys packed in one string, sorted, separated by `\n` (a key has no control
/// characters): a bucket's keys cost one allocation in events and state, not one per key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyList(String);

impl KeyList {
    /// Packs `keys` in the order given (callers pass them sorted).
    pub fn from_sorted<'a>(keys: impl IntoIterator<Item = &'a str>) -> KeyList {
        let mut packed = String::new();
        for key in keys {
            debug_assert!(valid_key(key), "{key:?}");
            if !packed.is_empty() {
                packed.push('\n');
            }
            packed.push_str(key);
        }
        KeyList(packed)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split('\n').filter(|key| !key.is_empty())
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The byte offset where each key starts.
    pub(crate) fn starts(&self) -> Vec<u32> {
        let mut starts = Vec::new();
        if !self.0.is_empty() {
            starts.push(0);
            starts.extend(
                self.0
                    .bytes()
                    .enumerate()
                    .filter(|(_, byte)| *byte == b'\n')
                    .map(|(at, _)| at as u32 + 1),
            );
        }
        starts
    }

    /// The key at `position`, given `starts` from [`KeyList::starts`].
    pub(crate) fn key<'a>(&'a self, starts: &[u32], position: usize) -> &'a str {
        let start = starts[position] as usize;
        let end = starts
            .get(position + 1)
            .map_or(self.0.len(), |next| *next as usize - 1);
        &self.0[start..end]
    }
}

/// A small deterministic generator (splitmix64) for bucket formation: stable across versions,
/// so a seed always forms the same buckets.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: usize) -> usize {
        ((self.next_u64() as u128 * bound as u128) >> 64) as usize
    }
}

/// Checks an item key: 1..=`KEY_CHARS_MAX` characters, no control characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= KEY_BYTES_MAX
        && key.chars().count() <= KEY_CHARS_MAX
        && !key.chars().any(char::is_control)
}

fn key_error(field: &str) -> Error {
    Error::invalid_field(
        "invalid_field",
        field,
        format!("a key must be 1..={KEY_CHARS_MAX} characters without control characters"),
    )
}

/// Checks a registration's fields (API.md 400 `invalid_field`).
pub fn validate_registration(registration: &Registration) -> Result<()> {
    let name = &registration.screen_name;
    if name.trim().is_empty()
        || name.chars().count() > SCREEN_NAME_CHARS_MAX
        || name.chars().any(char::is_control)
    {
        return Err(Error::invalid_field(
            "invalid_field",
            "screen_name",
            format!("screen_name must be 1..={SCREEN_NAME_CHARS_MAX} characters of text"),
        ));
    }
    let id = &registration.external_id;
    if id.len() < EXTERNAL_ID_BYTES_MIN
        || id.len() > EXTERNAL_ID_BYTES_MAX
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b))
    {
        return Err(Error::invalid_field(
            "invalid_field",
            "external_id",
            format!(
                "external_id must be {EXTERNAL_ID_BYTES_MIN}..={EXTERNAL_ID_BYTES_MAX} characters of A-Z a-z 0-9 . _ : @ - (it is the client's secret)"
            ),
        ));
    }
    Ok(())
}

/// An upper bound of the WAL record a report makes: its keys, details and discovered keys, with
/// each entry's encoding overhead.
fn report_record_bytes(report: &Report) -> usize {
    let results: usize = report
        .results
        .iter()
        .map(|result| {
            result.key.len()
                + result.detail.as_ref().map_or(0, String::len)
                + RESULT_RECORD_OVERHEAD_BYTES
        })
        .sum();
    let discovered: usize = report
        .discovered
        .iter()
        .map(|key| key.len() + KEY_RECORD_OVERHEAD_BYTES)
        .sum();
    results + discovered
}

/// A fresh client token: the prefix and 32 random bytes in hex (from the OS-seeded CSPRNG).
fn new_token() -> String {
    let secret: [u8; TOKEN_SECRET_BYTES] = rand::random();
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 2 * TOKEN_SECRET_BYTES);
    token.push_str(TOKEN_PREFIX);
    for byte in secret {
        token.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        token.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    token
}

/// True when `token` has the shape of a client token (cheap; checked before any hashing).
pub fn is_client_token(token: &str) -> bool {
    token.len() == TOKEN_PREFIX.len() + 2 * TOKEN_SECRET_BYTES
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The stored form of a token: Argon2id at its minimum cost (8 KiB, one pass, ≈ 14 µs). The
/// token carries 256 random bits, so no stretching is needed; argon2 is used because it is the
/// engine's one hash dependency. The pool caches verified tokens in memory, so it is paid once
/// per token, not per request.
pub(crate) fn token_digest(token: &str) -> TokenHash {
    let params = argon2::Params::new(argon2::Params::MIN_M_COST, 1, 1, Some(32))
        // Invariant: constant, valid parameters.
        .expect("valid argon2 parameters");
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    hasher
        .hash_password_into(token.as_bytes(), b"switchyard.work.token", &mut out)
        // Invariant: the salt (21 bytes) and output (32 bytes) are within argon2's limits.
        .expect("argon2 accepts the token hash inputs");
    out
}

/// The stored form of an `external_id`: BLAKE2b-256 of a domain tag and the id. A fast hash is
/// enough here: the id is looked up by its digest (so no per-client salt), registration is rate
/// limited per source, and a valid id has at least `EXTERNAL_ID_BYTES_MIN` characters of a
/// 67-letter alphabet, so guessing one is out of reach; what the digest protects against is a
/// reader of the data dir, a log or a backup learning the secret itself.
pub fn external_id_digest(external_id: &str) -> ExternalIdHash {
    use blake2::Digest as _;
    let mut hasher = blake2::Blake2b::<blake2::digest::consts::U32>::new();
    hasher.update(b"switchyard.work.external_id\0");
    hasher.update(external_id.as_bytes());
    hasher.finalize().into()
}

fn unauthenticated() -> Error {
    Error::Unauthenticated {
        code: "unauthenticated",
        message: "missing, unknown or revoked client token".into(),
    }
}

/// The refusal of a registration beyond the per-source limit.
pub(crate) fn rate_limited(retry_after_ms: u64) -> Error {
    Error::RateLimited {
        message: "too many registrations from this source address".into(),
        retry_after_ms,
    }
}

fn unexpected() -> Error {
    Error::Unavailable("unexpected reply kind")
}

/// The typed embedded API of the work workload: one method per API.md Work route. Every method
/// returns once what it reports is durable (in `sync` durability).
pub struct Work<'a> {
    pub(crate) shared: &'a Arc<Shared>,
}

impl Work<'_> {
    fn config(&self) -> &WorkConfig {
        self.shared.config.section::<WorkConfig>()
    }

    async fn pool(&self, command: PoolCommand) -> Result<PoolReply> {
        self.shared.ask::<Pool>(POOL_ID, command).await
    }

    /// `POST /work/items` (admin): adds items unless their key is known. Atomic per chunk of
    /// ~256 KiB of keys; a retry after a failure reports the already-added keys as duplicates.
    pub async fn add_items(&self, items: Vec<NewItem>) -> Result<Added> {
        if items.len() > ITEMS_PER_ADD_MAX {
            return Err(Error::invalid_field(
                "invalid_field",
                "items",
                format!("at most {ITEMS_PER_ADD_MAX} items per request"),
            ));
        }
        let mut checked = Vec::with_capacity(items.len());
        for item in items {
            if !valid_key(&item.key) {
                return Err(key_error("items"));
            }
            let priority = match item.priority {
                None => DEFAULT_PRIORITY,
                Some(priority) => i32::try_from(priority).map_err(|_| {
                    Error::invalid_field(
                        "invalid_field",
                        "priority",
                        "priority must fit in 32 bits",
                    )
                })?,
            };
            checked.push((item.key, priority));
        }
        let mut total = Added::default();
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0;
        let mut items = checked.into_iter().peekable();
        while let Some(item) = items.next() {
            chunk_bytes += item.0.len() + 16;
            chunk.push(item);
            if chunk_bytes >= ADD_CHUNK_BYTES_MAX || items.peek().is_none() {
                let added = match self
                    .pool(PoolCommand::Add {
                        items: std::mem::take(&mut chunk),
                    })
                    .await?
                {
                    PoolReply::Added(added) => added,
                    _ => return Err(unexpected()),
                };
                total.added += added.added;
                total.duplicates += added.duplicates;
                chunk_bytes = 0;
            }
        }
        Ok(total)
    }

    /// `GET /work/items/{key}`.
    pub async fn item(&self, key: &str) -> Result<ItemView> {
        if !valid_key(key) {
            return Err(Error::NotFound("item"));
        }
        match self.pool(PoolCommand::Item { key: key.into() }).await? {
            PoolReply::Item(view) => Ok(view),
            _ => Err(unexpected()),
        }
    }

    /// `GET /work/items?state&limit&cursor`: items in the order they were added, after the
    /// cursor `after` (exclusive), optionally in one state; `limit` is clamped to 1..=500.
    pub async fn items(
        &self,
        state: Option<ItemState>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<ItemView>> {
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        match self
            .pool(PoolCommand::Items {
                state,
                after,
                limit,
            })
            .await?
        {
            PoolReply::Items(page) => Ok(page),
            _ => Err(unexpected()),
        }
    }

    /// `POST /work/items/{key}/rerun` (admin): a done item returns to the pool; its history is
    /// kept. 404 unknown; 409 `not_done`.
    pub async fn rerun(&self, key: &str) -> Result<ItemView> {
        if !valid_key(key) {
            return Err(Error::NotFound("item"));
        }
        match self.pool(PoolCommand::Rerun { key: key.into() }).await? {
            PoolReply::Item(view) => Ok(view),
            _ => Err(unexpected()),
        }
    }

    /// `POST /work/clients`: registers `(screen_name, external_id)` from `source` (the peer
    /// address, for the per-source rate limit; `None` = not limited). A known `external_id`
    /// keeps its client id and gets a new token; the old token stops working.
    pub async fn register(
        &self,
        registration: Registration,
        source: Option<IpAddr>,
    ) -> Result<Registered> {
        validate_registration(&registration)?;
        let token = new_token();
        let token_hash = token_digest(&token);
        // The plain `external_id` stops here: the pool, the WAL and sled see only its digest.
        let external_id_hash = external_id_digest(&registration.external_id);
        match self
            .pool(PoolCommand::Register {
                screen_name: registration.screen_name,
                external_id_hash,
                token_hash,
                source,
            })
            .await?
        {
            PoolReply::Registered { client_id, created } => Ok(Registered {
                client_id,
                token,
                created,
            }),
            _ => Err(unexpected()),
        }
    }

    /// Resolves a client token to its client id (401 when unknown, rotated or unregistered).
    pub async fn authenticate(&self, token: &str) -> Result<u64> {
        Ok(self.authenticate_for(token, None).await?.0)
    }

    async fn authenticate_for(&self, token: &str, bucket_id: Option<u64>) -> Result<(u64, bool)> {
        if !is_client_token(token) {
            return Err(unauthenticated());
        }
        match self
            .pool(PoolCommand::Authenticate {
                token: token.into(),
                bucket_id,
            })
            .await?
        {
            PoolReply::Client {
                client_id,
                bucket_known,
            } => Ok((client_id, bucket_known)),
            _ => Err(unexpected()),
        }
    }

    /// `DELETE /work/clients/me`: the token stops working and every bucket the client holds is
    /// released to the pool before this returns.
    pub async fn unregister(&self, token: &str) -> Result<()> {
        if !is_client_token(token) {
            return Err(unauthenticated());
        }
        let (client_id, leases) = match self
            .pool(PoolCommand::Unregister {
                token: token.into(),
            })
            .await?
        {
            PoolReply::Unregistered { client_id, leases } => (client_id, leases),
            _ => return Err(unexpected()),
        };
        for (bucket_id, epoch) in leases {
            // A bucket that expired meanwhile is already back; the release is then a no-op.
            self.shared
                .ask::<Bucket>(bucket_id, BucketCommand::Release { client_id, epoch })
                .await?;
        }
        Ok(())
    }

    /// `POST /work/leases`: up to `max_buckets` buckets for the client (an empty list when
    /// nothing is pending). 400 `too_many_buckets` when `max_buckets` is outside
    /// 1..=`max_buckets_per_request` or the client already holds the most it may.
    pub async fn lease(&self, token: &str, max_buckets: i64) -> Result<Vec<BucketView>> {
        if !is_client_token(token) {
            return Err(unauthenticated());
        }
        let limit = self.config().max_buckets_per_request;
        if max_buckets < 1 || max_buckets as u64 > limit as u64 {
            // Authenticate before refusing the input (API.md: a bad token is 401 whatever the
            // body); only this error path pays the extra round trip to the pool.
            self.authenticate(token).await?;
            return Err(Error::invalid_field(
                "too_many_buckets",
                "max_buckets",
                format!("max_buckets must be 1..={limit}"),
            ));
        }
        let seed = self.config().seed.unwrap_or_else(rand::random);
        match self
            .pool(PoolCommand::Lease {
                token: token.into(),
                max_buckets: max_buckets as usize,
                seed,
            })
            .await?
        {
            PoolReply::Leased(buckets) => Ok(buckets),
            _ => Err(unexpected()),
        }
    }

    /// `POST /work/buckets/{id}/results`: records results (partial reports allowed) and
    /// discovered keys, and extends the lease. 403 `not_owner`, 404, 409 `lease_expired`, 422
    /// `item_not_in_bucket`; a refusal changes nothing but the client's `rejected_updates`.
    pub async fn report(
        &self,
        token: &str,
        bucket_id: u64,
        report: Report,
    ) -> Result<ReportOutcome> {
        // Authenticated first: a bad token is 401 whatever the report says.
        let (client_id, known) = self.authenticate_for(token, Some(bucket_id)).await?;
        self.validate_report(&report)?;
        if !known {
            return Err(Error::NotFound("bucket"));
        }
        let reply = self
            .shared
            .ask::<Bucket>(
                bucket_id,
                BucketCommand::Report {
                    client_id,
                    epoch: report.epoch,
                    results: report.results,
                    discovered: report.discovered,
                },
            )
            .await;
        match self.count_rejection(client_id, reply).await? {
            BucketReply::Reported(outcome) => Ok(outcome),
            _ => Err(unexpected()),
        }
    }

    /// `POST /work/buckets/{id}/heartbeat`: extends the lease by `lease_seconds`. `epoch`, when
    /// given, must be the lease's. 403 `not_owner`, 404, 409 `lease_expired`.
    pub async fn heartbeat(
        &self,
        token: &str,
        bucket_id: u64,
        epoch: Option<u32>,
    ) -> Result<HeartbeatOutcome> {
        let (client_id, known) = self.authenticate_for(token, Some(bucket_id)).await?;
        if !known {
            return Err(Error::NotFound("bucket"));
        }
        let reply = self
            .shared
            .ask::<Bucket>(bucket_id, BucketCommand::Heartbeat { client_id, epoch })
            .await;
        match self.count_rejection(client_id, reply).await? {
            BucketReply::Heartbeat(outcome) => Ok(outcome),
            _ => Err(unexpected()),
        }
    }

    /// Counts a refused update in the client's stats (a separate record: the refusal itself
    /// changed nothing), then passes the reply on.
    async fn count_rejection(
        &self,
        client_id: u64,
        reply: Result<BucketReply>,
    ) -> Result<BucketReply> {
        if let Err(Error::Forbidden { .. } | Error::Conflict { .. } | Error::Unprocessable { .. }) =
            &reply
        {
            if let Err(error) = self.pool(PoolCommand::Rejected { client_id }).await {
                tracing::warn!(%error, client_id, "cannot count a rejected update");
            }
        }
        reply
    }

    fn validate_report(&self, report: &Report) -> Result<()> {
        let size = self.config().bucket_size;
        if report.results.len() > size {
            return Err(Error::invalid_field(
                "invalid_field",
                "results",
                format!("at most {size} results per report"),
            ));
        }
        for result in &report.results {
            if let Some(detail) = &result.detail {
                if detail.chars().count() > DETAIL_CHARS_MAX {
                    return Err(Error::invalid_field(
                        "invalid_field",
                        "detail",
                        format!("detail must be at most {DETAIL_CHARS_MAX} characters"),
                    ));
                }
            }
        }
        let max = self.config().discovered_per_report_max;
        if report.discovered.len() > max {
            return Err(Error::invalid_field(
                "invalid_field",
                "discovered",
                format!("at most {max} discovered keys per report"),
            ));
        }
        if !report.discovered.iter().all(|key| valid_key(key)) {
            return Err(key_error("discovered"));
        }
        let record_bytes = report_record_bytes(report);
        if record_bytes > RECORD_BYTES_BUDGET {
            return Err(Error::invalid_field(
                "invalid_field",
                "results",
                format!(
                    "the report is too large for one record ({record_bytes} bytes of keys, \
                     details and discovered keys, at most {RECORD_BYTES_BUDGET}); report the \
                     bucket in parts"
                ),
            ));
        }
        Ok(())
    }

    /// A bucket's state (diagnostics). 404 for a bucket never formed.
    pub async fn bucket(&self, bucket_id: u64) -> Result<BucketInfo> {
        match self
            .shared
            .ask::<Bucket>(bucket_id, BucketCommand::Get)
            .await?
        {
            BucketReply::Info(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    /// `GET /work/stats`: pool totals and every client's counters.
    pub async fn stats(&self) -> Result<WorkStats> {
        match self.pool(PoolCommand::Stats).await? {
            PoolReply::Stats(stats) => Ok(stats),
            _ => Err(unexpected()),
        }
    }

    /// Dead-lettered buckets by id after `after` (exclusive); `limit` clamped to 1..=500.
    pub async fn dead_letters(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<DeadBucketView>> {
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        match self.pool(PoolCommand::DeadLetters { after, limit }).await? {
            PoolReply::DeadLetters(page) => Ok(page),
            _ => Err(unexpected()),
        }
    }

    /// Admin: returns a dead-lettered bucket's unfinished items to the pool (they will be formed
    /// into new buckets). Returns how many items returned. 404 when not dead-lettered.
    pub async fn requeue_dead(&self, bucket_id: u64) -> Result<u64> {
        match self.pool(PoolCommand::RequeueDead { bucket_id }).await? {
            PoolReply::Requeued(count) => Ok(count),
            _ => Err(unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_their_shape_and_differ() {
        let a = new_token();
        let b = new_token();
        assert!(is_client_token(&a) && is_client_token(&b));
        assert_ne!(a, b);
        assert!(!is_client_token("eyJhbGciOiJIUzI1NiJ9.e30.x"));
        assert!(!is_client_token(&a[..a.len() - 1]));
        assert_eq!(token_digest(&a), token_digest(&a));
        assert_ne!(token_digest(&a), token_digest(&b));
    }

    #[test]
    fn registration_fields_are_checked() {
        let secret = "dora-secret-0001";
        assert_eq!(secret.len(), EXTERNAL_ID_BYTES_MIN);
        for (screen_name, external_id) in [
            ("Dora", secret),
            ("Dora", &"9".repeat(EXTERNAL_ID_BYTES_MAX)),
        ] {
            let ok = Registration {
                screen_name: screen_name.into(),
                external_id: external_id.into(),
            };
            assert!(validate_registration(&ok).is_ok(), "{ok:?}");
        }
        for (screen_name, external_id) in [
            ("", secret),
            ("  ", secret),
            ("dora", ""),
            ("dora", "1234"),
            ("dora", &secret[1..]),
            ("dora", "has space has space"),
            ("dora", &"9".repeat(EXTERNAL_ID_BYTES_MAX + 1)),
            (&"x".repeat(SCREEN_NAME_CHARS_MAX + 1), secret),
        ] {
            let registration = Registration {
                screen_name: screen_name.into(),
                external_id: external_id.into(),
            };
            assert!(
                validate_registration(&registration).is_err(),
                "{registration:?}"
            );
        }
    }

    #[test]
    fn external_id_digests_are_stable_and_distinct() {
        let digest = external_id_digest("dora-secret-0001");
        assert_eq!(digest, external_id_digest("dora-secret-0001"));
        assert_ne!(digest, external_id_digest("dora-secret-0002"));
        // Pinned: the digest is stored, so changing it would orphan every registered client.
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hex, PINNED_DIGEST_OF_DORA);
    }

    /// BLAKE2b-256 of `switchyard.work.external_id\0dora-secret-0001`.
    const PINNED_DIGEST_OF_DORA: &str =
        "44eda3ca4fcec66d7aff911f8ae39949c5686bac03f938ac2d5209fe65dd514d";

    #[test]
    fn limits_count_characters() {
        let wide = "\u{1F600}"; // four bytes of UTF-8
        assert!(valid_key(&wide.repeat(KEY_CHARS_MAX)));
        assert!(!valid_key(&wide.repeat(KEY_CHARS_MAX + 1)));
        assert!(!valid_key(&"k".repeat(KEY_CHARS_MAX + 1)));
        assert!(!valid_key("bell\u{7}"));
        assert!(!valid_key("c1\u{85}"));
        let named = |screen_name: String| Registration {
            screen_name,
            external_id: "dora-secret-0001".into(),
        };
        assert!(validate_registration(&named(wide.repeat(SCREEN_NAME_CHARS_MAX))).is_ok());
        assert!(validate_registration(&named(wide.repeat(SCREEN_NAME_CHARS_MAX + 1))).is_err());
    }

    #[test]
    fn default_and_test_configs_are_valid() {
        assert_eq!(WorkConfig::default().validate(), Ok(()));
        assert_eq!(WorkConfig::for_tests().validate(), Ok(()));
        let too_big = WorkConfig {
            bucket_size: 1000,
            max_buckets_per_request: 10,
            ..WorkConfig::default()
        };
        assert!(too_big.validate().is_err());
    }

    #[test]
    fn splitmix_below_stays_in_range() {
        let mut rng = SplitMix::new(1);
        for bound in 1..50 {
            assert!(rng.below(bound) < bound);
        }
    }
}
