//! The work routes' request and response bodies: the types the handlers read and write, and the
//! schemas of the OpenAPI document (each `ToSchema` derive is the schema; doc comments are the
//! descriptions, `#[schema(...)]` the constraints the engine enforces). Limits that depend on
//! configuration (`work.bucket_size`, `work.max_buckets_per_request`) are stated with their
//! defaults.
//!
//! Invariants: a response type has `#[serde(deny_unknown_fields)]` too (`additionalProperties:
//! false`), so the tests' response validation catches a field the document lacks; no response
//! type has a field for a client's `external_id` (the client's secret).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use switchyard_engine::work::{
    self, BucketView, DeadBucketView, HeartbeatOutcome, ItemView, ReportOutcome,
};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::http::{NextCursor, Timestamp};
use crate::json;

/// A work item's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ItemKey(pub String);

impl PartialSchema for ItemKey {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(128))
            .pattern(Some(r"^[^\u0000-\u001f\u007f-\u009f]+$"))
            .description(Some(
                "1..=128 characters, no control characters (U+0000..U+001F, U+007F..U+009F); \
                 unique.",
            ))
            .into()
    }
}

impl ToSchema for ItemKey {
    fn name() -> Cow<'static, str> {
        "ItemKey".into()
    }
}

fn keys(keys: Vec<String>) -> Vec<ItemKey> {
    keys.into_iter().map(ItemKey).collect()
}

/// An item's state.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Pending,
    Leased,
    Done,
}

impl From<work::ItemState> for ItemState {
    fn from(state: work::ItemState) -> ItemState {
        match state {
            work::ItemState::Pending => ItemState::Pending,
            work::ItemState::Leased => ItemState::Leased,
            work::ItemState::Done => ItemState::Done,
        }
    }
}

/// A result's outcome.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Yes,
    No,
    Unknown,
}

impl std::str::FromStr for Outcome {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Outcome, &'static str> {
        match work::Outcome::parse(text) {
            Some(outcome) => Ok(outcome.into()),
            None => Err("must be yes, no or unknown"),
        }
    }
}

impl From<work::Outcome> for Outcome {
    fn from(outcome: work::Outcome) -> Outcome {
        match outcome {
            work::Outcome::Yes => Outcome::Yes,
            work::Outcome::No => Outcome::No,
            work::Outcome::Unknown => Outcome::Unknown,
        }
    }
}

impl From<Outcome> for work::Outcome {
    fn from(outcome: Outcome) -> work::Outcome {
        match outcome {
            Outcome::Yes => work::Outcome::Yes,
            Outcome::No => work::Outcome::No,
            Outcome::Unknown => work::Outcome::Unknown,
        }
    }
}

/// One entry of an item's result history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkResult)]
pub struct WorkResult {
    pub outcome: Outcome,
    pub client_id: u64,
    #[schema(required = true)]
    pub detail: Option<String>,
    pub at: Timestamp,
}

/// A work item.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkItem {
    pub key: ItemKey,
    pub state: ItemState,
    /// Higher first; default 0.
    pub priority: i32,
    /// The whole history across re-runs, newest last.
    pub results: Vec<WorkResult>,
}

impl From<ItemView> for WorkItem {
    fn from(item: ItemView) -> WorkItem {
        WorkItem {
            key: ItemKey(item.key),
            state: item.state.into(),
            priority: item.priority,
            results: item
                .results
                .into_iter()
                .map(|result| WorkResult {
                    outcome: result.outcome.into(),
                    client_id: result.client_id,
                    detail: result.detail,
                    at: Timestamp::from_ms(result.at_ms),
                })
                .collect(),
        }
    }
}

/// A page of work items.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkItemPage {
    pub items: Vec<WorkItem>,
    pub next_cursor: NextCursor,
}

/// One item to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    pub key: ItemKey,
    /// Default 0; must fit 32 bits.
    #[serde(default, deserialize_with = "json::optional_integer")]
    #[schema(value_type = Option<i32>)]
    pub priority: Option<i64>,
}

/// `POST /api/v1/work/items`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemsRequest {
    #[serde(deserialize_with = "json::objects")]
    #[schema(max_items = 18000)]
    pub items: Vec<NewItem>,
}

/// The reply to an add.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemsResponse {
    pub added: u64,
    /// Keys already known (never added twice).
    pub duplicates: u64,
}

/// `POST /api/v1/work/clients`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterClientRequest {
    /// 1..=64 characters, no control characters, not only whitespace.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub screen_name: String,
    /// The client's secret (16..=64 characters of `A-Z a-z 0-9 . _ : @ -`): registering it
    /// again takes the identity back. The server keeps only a hash of it and never returns or
    /// lists it; make it random.
    #[schema(
        min_length = 16,
        max_length = 64,
        pattern = r"^[A-Za-z0-9._:@-]+$",
        write_only
    )]
    pub external_id: String,
}

/// A client's identity and token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterClientResponse {
    pub client_id: u64,
    /// The client's bearer token for the client routes.
    #[schema(pattern = "^swc_[0-9a-f]{64}$")]
    pub token: String,
}

/// `POST /api/v1/work/leases`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// 1..=`work.max_buckets_per_request` (default 10; this document states the default).
    #[serde(deserialize_with = "json::integer")]
    #[schema(minimum = 1, maximum = 10)]
    pub max_buckets: i64,
}

/// A leased bucket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub id: u64,
    /// The keys of the bucket still without a result.
    pub items: Vec<ItemKey>,
    pub lease_expires_at: Timestamp,
    /// The lease's fencing token; pass it back with results and heartbeats to be refused
    /// (`lease_expired`) once the lease has moved on.
    pub epoch: u32,
}

impl From<BucketView> for Bucket {
    fn from(bucket: BucketView) -> Bucket {
        Bucket {
            id: bucket.id,
            items: keys(bucket.items),
            lease_expires_at: Timestamp::from_ms(bucket.lease_expires_at_ms),
            epoch: bucket.epoch,
        }
    }
}

/// The buckets of a lease.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseResponse {
    pub buckets: Vec<Bucket>,
}

/// One result of a report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemReport {
    pub key: ItemKey,
    #[serde(deserialize_with = "json::string_of")]
    pub outcome: Outcome,
    /// At most 512 characters.
    #[schema(max_length = 512)]
    pub detail: Option<String>,
}

/// `POST /api/v1/work/buckets/{id}/results`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// At most `work.bucket_size` entries (default 180; this document states the default).
    #[serde(deserialize_with = "json::objects")]
    #[schema(max_items = 180)]
    pub results: Vec<ItemReport>,
    /// New keys found while working; added as items unless already known.
    #[schema(max_items = 1000)]
    pub discovered: Option<Vec<ItemKey>>,
    /// When given, must be the lease's epoch.
    #[serde(default, deserialize_with = "json::optional_integer")]
    pub epoch: Option<u32>,
}

/// The reply to a report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportResponse {
    pub bucket_id: u64,
    /// Items still without a result; 0 = the bucket is done.
    pub remaining: u64,
}

impl From<ReportOutcome> for ReportResponse {
    fn from(outcome: ReportOutcome) -> ReportResponse {
        ReportResponse {
            bucket_id: outcome.bucket_id,
            remaining: outcome.remaining,
        }
    }
}

/// `POST /api/v1/work/buckets/{id}/heartbeat` (the body may be omitted).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// When given, must be the lease's epoch.
    #[serde(default, deserialize_with = "json::optional_integer")]
    pub epoch: Option<u32>,
}

/// The new deadline of a lease.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatResponse {
    pub bucket_id: u64,
    pub epoch: u32,
    pub lease_expires_at: Timestamp,
}

impl From<HeartbeatOutcome> for HeartbeatResponse {
    fn from(outcome: HeartbeatOutcome) -> HeartbeatResponse {
        HeartbeatResponse {
            bucket_id: outcome.bucket_id,
            epoch: outcome.epoch,
            lease_expires_at: Timestamp::from_ms(outcome.lease_expires_at_ms),
        }
    }
}

/// One client's counters. Never its `external_id`, which is the client's secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientStats {
    pub client_id: u64,
    pub screen_name: String,
    /// Registered and not unregistered.
    pub active: bool,
    pub buckets_assigned: u64,
    pub buckets_completed: u64,
    pub buckets_expired: u64,
    /// Refused results and heartbeats.
    pub rejected_updates: u64,
    #[schema(required = true)]
    pub last_seen_at: Option<Timestamp>,
    /// Buckets it holds now.
    pub leased_buckets: u64,
}

/// Item counts by state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemCounts {
    pub pending: u64,
    pub leased: u64,
    pub done: u64,
}

/// Bucket counts by state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketCounts {
    pub open: u64,
    pub leased: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// Work totals and every client's counters.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkStats {
    #[schema(inline)]
    pub items: ItemCounts,
    #[schema(inline)]
    pub buckets: BucketCounts,
    pub clients: Vec<ClientStats>,
}

impl From<work::WorkStats> for WorkStats {
    fn from(stats: work::WorkStats) -> WorkStats {
        WorkStats {
            items: ItemCounts {
                pending: stats.items.pending,
                leased: stats.items.leased,
                done: stats.items.done,
            },
            buckets: BucketCounts {
                open: stats.buckets.open,
                leased: stats.buckets.leased,
                dead: stats.buckets.dead,
            },
            clients: stats
                .clients
                .into_iter()
                .map(|client| ClientStats {
                    client_id: client.client_id,
                    screen_name: client.screen_name,
                    active: client.active,
                    buckets_assigned: client.buckets_assigned,
                    buckets_completed: client.buckets_completed,
                    buckets_expired: client.buckets_expired,
                    rejected_updates: client.rejected_updates,
                    last_seen_at: client.last_seen_at_ms.map(Timestamp::from_ms),
                    leased_buckets: client.leased_buckets,
                })
                .collect(),
        }
    }
}

/// A dead-lettered bucket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadBucket {
    pub bucket_id: u64,
    /// The keys still without a result (parked).
    pub items: Vec<ItemKey>,
    pub expiries: u32,
    pub last_client_id: u64,
    pub dead_at: Timestamp,
}

impl From<DeadBucketView> for DeadBucket {
    fn from(dead: DeadBucketView) -> DeadBucket {
        DeadBucket {
            bucket_id: dead.bucket_id,
            items: keys(dead.items),
            expiries: dead.expiries,
            last_client_id: dead.last_client_id,
            dead_at: Timestamp::from_ms(dead.dead_at_ms),
        }
    }
}

/// A page of dead-lettered buckets.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadBucketPage {
    pub items: Vec<DeadBucket>,
    pub next_cursor: NextCursor,
}
