//! [`Work`], the typed embedded API of the work workload (`Engine::work()`): one method per
//! API.md Work route. It checks input (`validation`), turns credentials into their digests
//! (`credentials`) and asks the pool or a bucket; it holds no state of its own.

use std::net::IpAddr;
use std::sync::Arc;

use super::bucket::{Bucket, BucketCommand, BucketReply};
use super::credentials::{new_token, unauthenticated};
use super::pool::{Pool, PoolCommand, PoolReply, POOL_ID};
use super::validation::{key_error, report_record_bytes};
use super::{
    external_id_digest, is_client_token, token_digest, valid_key, validate_registration, Added,
    BucketInfo, BucketView, DeadBucketView, HeartbeatOutcome, ItemState, ItemView, NewItem, Page,
    Registered, Registration, Report, ReportOutcome, WorkConfig, WorkStats, ADD_CHUNK_BYTES_MAX,
    DEFAULT_PRIORITY, DETAIL_CHARS_MAX, ITEMS_PER_ADD_MAX, PAGE_LIMIT_MAX, RECORD_BYTES_BUDGET,
};
use crate::error::{Error, Result};
use crate::runtime::Shared;

impl crate::Engine {
    /// The work workload (see [`crate::work`]).
    pub fn work(&self) -> Work<'_> {
        Work {
            shared: self.shared(),
        }
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
        // The plain `external_id` stops here: the pool, the WAL and the store see only its digest.
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
