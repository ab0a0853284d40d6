//! [`HttpWork`]: the work routes of API.md over the bot's HTTP client ([`HttpTransport`]), with
//! the admin token that adds items. Request bodies are serialized straight from borrowed keys
//! (an 18000-item add is one `serde_json::to_vec`, no intermediate `Value`); answers are decoded
//! into the few fields the scenario reads.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use switchyard_engine::work::{Added, ItemResult, ItemState};

use super::{ItemSummary, ItemsPage, LeasedBucket, PoolCounts, WorkTransport};
use crate::error::BotError;
use crate::transport::http::percent_encode;
use crate::transport::{Answer, HttpTransport};

/// A server at a base URL, and its admin token.
pub struct HttpWork {
    http: HttpTransport,
    admin_token: String,
}

impl HttpWork {
    /// A client for `url` keeping up to `connections` idle keep-alive connections (one per
    /// simulated client).
    pub fn new(
        url: &str,
        connections: usize,
        timeout: Duration,
        admin_token: impl Into<String>,
    ) -> Answer<Self> {
        Ok(HttpWork {
            http: HttpTransport::new(url, connections, timeout)?,
            admin_token: admin_token.into(),
        })
    }

    pub fn http(&self) -> &HttpTransport {
        &self.http
    }
}

fn json_body(value: &impl Serialize) -> Answer<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|error| BotError::transport("bad_request", error.to_string()))
}

#[derive(Serialize)]
struct AddBody<'a> {
    items: Vec<KeyRef<'a>>,
}

#[derive(Serialize)]
struct KeyRef<'a> {
    key: &'a str,
}

#[derive(Serialize)]
struct RegisterBody<'a> {
    screen_name: &'static str,
    external_id: &'a str,
}

#[derive(Serialize)]
struct LeaseRequest {
    max_buckets: usize,
}

#[derive(Serialize)]
struct ReportBody<'a> {
    results: Vec<ResultRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u32>,
}

#[derive(Serialize)]
struct ResultRef<'a> {
    key: &'a str,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Deserialize)]
struct Registered {
    token: String,
}

#[derive(Deserialize)]
struct LeaseBody {
    buckets: Vec<BucketBody>,
}

#[derive(Deserialize)]
struct BucketBody {
    id: u64,
    items: Vec<String>,
    #[serde(default)]
    epoch: Option<u32>,
}

#[derive(Deserialize)]
struct ReportAnswer {
    remaining: u64,
}

#[derive(Deserialize)]
struct StatsBody {
    items: StatsItems,
    buckets: StatsBuckets,
}

#[derive(Deserialize)]
struct StatsItems {
    pending: u64,
    leased: u64,
}

#[derive(Deserialize)]
struct StatsBuckets {
    open: u64,
    #[serde(default)]
    dead: u64,
}

#[derive(Deserialize)]
struct PageBody {
    items: Vec<ItemBody>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ItemBody {
    key: String,
    state: ItemState,
    results: Vec<IgnoredAny>,
}

impl WorkTransport for HttpWork {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn add_items(&self, keys: &[String]) -> Answer<Added> {
        let body = json_body(&AddBody {
            items: keys.iter().map(|key| KeyRef { key }).collect(),
        })?;
        self.http
            .call_bytes(
                Method::POST,
                "/api/v1/work/items",
                Some(&self.admin_token),
                Some(body),
            )
            .await
    }

    async fn register(&self, external_id: &str) -> Answer<String> {
        let body = json_body(&RegisterBody {
            screen_name: "bot",
            external_id,
        })?;
        let registered: Registered = self
            .http
            .call_bytes(Method::POST, "/api/v1/work/clients", None, Some(body))
            .await?;
        Ok(registered.token)
    }

    async fn lease(&self, token: &str, max_buckets: usize) -> Answer<Vec<LeasedBucket>> {
        let body = json_body(&LeaseRequest { max_buckets })?;
        let leased: LeaseBody = self
            .http
            .call_bytes(Method::POST, "/api/v1/work/leases", Some(token), Some(body))
            .await?;
        Ok(leased
            .buckets
            .into_iter()
            .map(|bucket| LeasedBucket {
                id: bucket.id,
                epoch: bucket.epoch,
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
        let body = json_body(&ReportBody {
            results: results
                .iter()
                .map(|result| ResultRef {
                    key: &result.key,
                    outcome: result.outcome.as_str(),
                    detail: result.detail.as_deref(),
                })
                .collect(),
            epoch,
        })?;
        let path = format!("/api/v1/work/buckets/{bucket_id}/results");
        let answer: ReportAnswer = self
            .http
            .call_bytes(Method::POST, &path, Some(token), Some(body))
            .await?;
        Ok(answer.remaining)
    }

    async fn pool(&self) -> Answer<PoolCounts> {
        let stats: StatsBody = self
            .http
            .call_bytes(Method::GET, "/api/v1/work/stats", None, None)
            .await?;
        Ok(PoolCounts {
            pending: stats.items.pending,
            leased: stats.items.leased,
            open_buckets: stats.buckets.open,
            dead_buckets: stats.buckets.dead,
        })
    }

    async fn items(&self, cursor: Option<String>, limit: usize) -> Answer<ItemsPage> {
        let mut path = format!("/api/v1/work/items?limit={limit}");
        if let Some(cursor) = &cursor {
            path.push_str("&cursor=");
            path.push_str(&percent_encode(cursor));
        }
        let page: PageBody = self.http.call_bytes(Method::GET, &path, None, None).await?;
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
            next: page.next_cursor,
        })
    }
}
