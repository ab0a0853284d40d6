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
//! # Layout
//! - `mod.rs` (this file): the domain's registration (kinds, config section, format migration)
//!   and its limits.
//! - `config`: [`WorkConfig`], the `work.*` section (a file of its own).
//! - `types`: what the API takes and answers (items, buckets, reports, registrations, stats).
//! - `events`: [`WorkEvent`] and what it carries ([`Grant`], [`KeyList`], [`ResultRecord`]).
//! - `validation`: input rules (keys, registrations, report sizes).
//! - `credentials`: client tokens and the digests that stand for tokens and `external_id`s.
//! - `api`: [`Work`], the typed embedded API, one method per API.md Work route.
//! - [`pool`]: the `Pool` singleton (its own folder: formation, clients, snapshot, key index).
//! - [`bucket`]: the `Bucket` actor.
//!
//! Deliberately absent: items are never deleted (a key, once seen, is known for ever).

pub mod bucket;
mod api;
mod config;
mod credentials;
mod events;
pub mod pool;
mod types;
mod validation;

pub use crate::Page;
pub use api::Work;
pub use config::WorkConfig;
pub(crate) use credentials::token_digest;
pub use credentials::{
    external_id_digest, is_client_token, ExternalIdHash, TokenHash, TOKEN_PREFIX,
};
pub use events::{Grant, KeyList, ResultRecord, WorkEvent};
pub use types::{
    Added, BucketCounts, BucketInfo, BucketStatus, BucketView, ClientStats, DeadBucketView,
    HeartbeatOutcome, ItemCounts, ItemResult, ItemState, ItemView, NewItem, Outcome, Registered,
    Registration, Report, ReportOutcome, ResultView, WorkStats,
};
pub use validation::{valid_key, validate_registration};

use crate::error::Result;
use crate::runtime::{ActorKey, Domain, Kind, Registry, Replay};
use crate::store::Store;

use bucket::Bucket;
use pool::{Pool, POOL_ID};

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

/// Bytes of one `add_items` chunk sent to the pool as one command (one WAL record).
const ADD_CHUNK_BYTES_MAX: usize = 256 * 1024;
/// Largest WAL record the work domain builds (the WAL's own limit is 1 MiB). A lease forms no
/// more buckets than fit it (`pool`); a report larger than it is refused (send it in parts).
pub(crate) const RECORD_BYTES_BUDGET: usize = 768 * 1024;
/// Encoding overhead counted per key in a record (its length prefix and neighbours), generous.
pub(crate) const KEY_RECORD_OVERHEAD_BYTES: usize = 8;
/// Encoding overhead counted per result in a report record (outcome, client, time, options).
const RESULT_RECORD_OVERHEAD_BYTES: usize = 40;

#[cfg(test)]
mod tests {
    use super::*;

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
}
