//! The work scenario's embedded transport: [`EmbeddedTransport`] (the engine in this process)
//! speaking the typed work API, `Engine::work()`. No source address is passed to `register`, so
//! the per-source registration limit does not apply; lease expiry runs on the engine's durable
//! timers and the system clock, as in the server.

use switchyard_engine::work::{Added, ItemResult, NewItem, Registration, Report};

use super::{ItemSummary, ItemsPage, LeasedBucket, PoolCounts, WorkTransport};
use crate::error::BotError;
use crate::transport::{Answer, EmbeddedTransport};

impl WorkTransport for EmbeddedTransport {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn add_items(&self, keys: &[String]) -> Answer<Added> {
        let items = keys
            .iter()
            .map(|key| NewItem {
                key: key.clone(),
                priority: None,
            })
            .collect();
        Ok(self.engine().work().add_items(items).await?)
    }

    async fn register(&self, external_id: &str) -> Answer<String> {
        let registration = Registration {
            screen_name: "bot".into(),
            external_id: external_id.into(),
        };
        Ok(self
            .engine()
            .work()
            .register(registration, None)
            .await?
            .token)
    }

    async fn lease(&self, token: &str, max_buckets: usize) -> Answer<Vec<LeasedBucket>> {
        let max_buckets = i64::try_from(max_buckets).unwrap_or(i64::MAX);
        let buckets = self.engine().work().lease(token, max_buckets).await?;
        Ok(buckets
            .into_iter()
            .map(|bucket| LeasedBucket {
                id: bucket.id,
                epoch: Some(bucket.epoch),
                items: bucket.items,
            })
            .collect())
    }

    async fn report(
        &self,
        token: &str,
        bucket_id: u64,
        epoch: Option<u32>,
        results: Vec<ItemResult>,
    ) -> Answer<u64> {
        let report = Report {
            results,
            discovered: Vec::new(),
            epoch,
        };
        let outcome = self
            .engine()
            .work()
            .report(token, bucket_id, report)
            .await?;
        Ok(outcome.remaining)
    }

    async fn pool(&self) -> Answer<PoolCounts> {
        let stats = self.engine().work().stats().await?;
        Ok(PoolCounts {
            pending: stats.items.pending,
            leased: stats.items.leased,
            open_buckets: stats.buckets.open,
            dead_buckets: stats.buckets.dead,
        })
    }

    async fn items(&self, cursor: Option<String>, limit: usize) -> Answer<ItemsPage> {
        let after = cursor
            .map(|cursor| {
                cursor.parse::<u64>().map_err(|_| {
                    BotError::transport("bad_cursor", format!("{cursor:?} is not a cursor"))
                })
            })
            .transpose()?;
        let page = self.engine().work().items(None, after, limit).await?;
        Ok(ItemsPage {
            items: page
                .items
                .into_iter()
                .map(|item| ItemSummary {
                    key: item.key,
                    state: item.state,
                    results: item.results.len(),
                })
                .collect(),
            next: page.next.map(|next| next.to_string()),
        })
    }
}
