//! The work scenario (`switchyard-bot work`): simulated work clients over HTTP (API.md "Work").
//!
//! 1. The bot adds `items` items (keys `bot-<seed>-<n>`) with the admin token.
//! 2. `clients` tasks each register, then loop: lease up to `max_buckets` buckets and report a
//!    result for every item; with probability `crash_percent` per bucket a client reports only
//!    part of the bucket and then "crashes": it stops heartbeating, abandons its buckets and
//!    comes back under a new registration (a new `external_id`). The abandoned lease expires on
//!    the server (`work.lease_seconds`) and its unfinished items return to the pool.
//! 3. When a lease answers with no bucket, the client waits until the pool has no pending or
//!    leased item left (expired leases come back meanwhile).
//! 4. The check: every bot item is `done` with exactly one result, and the bot's ledger of
//!    acknowledged results (a 200 to a report) names each item exactly once. Any difference →
//!    outcome `Mismatch` (exit code 2).
//!
//! A late report of a crashed client is never sent (a crashed client is gone), so a 409
//! `lease_expired` is an error here only if a live client gets it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use crate::error::BotError;
use crate::report::{Outcome, Recorder, Report};
use crate::rng::Rng;
use crate::transport::HttpTransport;

/// Items added per request (API.md allows 18000).
const ADD_CHUNK: usize = 5000;
/// Items read per page in the final check (API.md's maximum).
const PAGE_LIMIT: usize = 500;
/// Pause between polls while expired leases are waiting to come back.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// A work scenario, resolved.
#[derive(Debug, Clone)]
pub struct WorkOptions {
    pub url: String,
    pub seed: u64,
    pub admin_token: String,
    pub clients: usize,
    pub items: usize,
    pub max_buckets: usize,
    /// Chance (0..=100) that a client crashes in the middle of a bucket.
    pub crash_percent: u64,
    pub timeout: Duration,
    /// The whole run must finish within this (expired leases included).
    pub deadline: Duration,
}

struct Shared {
    http: HttpTransport,
    options: WorkOptions,
    recorder: Recorder,
    /// key → acknowledged results.
    ledger: Mutex<HashMap<String, u32>>,
    crashes: Mutex<u64>,
}

impl Shared {
    /// One request; a 2xx answer's JSON body, or the API error; records the operation.
    async fn call(
        &self,
        kind: &'static str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, BotError> {
        let started = Instant::now();
        let answer = self
            .http
            .send(method, path, token, body)
            .await
            .and_then(|(status, bytes)| {
                let value: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).map_err(|error| {
                        BotError::transport("bad_response", format!("{path}: {error}"))
                    })?
                };
                if (200..300).contains(&status) {
                    Ok(value)
                } else {
                    let code = value["error"]["code"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("http_{status}"));
                    let message = value["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    Err(BotError::api(status, code, message))
                }
            });
        self.recorder
            .record(kind, started.elapsed(), answer.as_ref().err());
        answer
    }

    async fn register(&self, external_id: &str) -> Result<String, BotError> {
        let body = self
            .call(
                "register",
                Method::POST,
                "/api/v1/work/clients",
                None,
                Some(json!({"screen_name": "bot", "external_id": external_id})),
            )
            .await?;
        body["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| BotError::transport("bad_response", "registration without a token"))
    }

    async fn pool_busy(&self) -> Result<bool, BotError> {
        let stats = self
            .call("stats", Method::GET, "/api/v1/work/stats", None, None)
            .await?;
        Ok(stats["items"]["pending"].as_u64().unwrap_or(0) > 0
            || stats["items"]["leased"].as_u64().unwrap_or(0) > 0)
    }

    fn acknowledge(&self, keys: &[String]) {
        // Invariant: nothing panics while holding the lock.
        let mut ledger = self.ledger.lock().expect("ledger lock");
        for key in keys {
            *ledger.entry(key.clone()).or_default() += 1;
        }
    }
}

/// One simulated client: registers, works, sometimes crashes and re-registers.
async fn client(shared: Arc<Shared>, index: usize, started: Instant) -> Result<(), BotError> {
    let options = &shared.options;
    let mut rng = Rng::derive(options.seed, &format!("work-client-{index}"));
    let mut generation = 0u64;
    let mut token = shared
        .register(&format!("bot-{}-c{index}-g{generation}", options.seed))
        .await?;
    loop {
        if started.elapsed() > options.deadline {
            return Err(BotError::transport(
                "deadline",
                "the pool did not drain within the deadline",
            ));
        }
        let leased = shared
            .call(
                "lease",
                Method::POST,
                "/api/v1/work/leases",
                Some(&token),
                Some(json!({"max_buckets": options.max_buckets})),
            )
            .await?;
        let buckets = leased["buckets"].as_array().cloned().unwrap_or_default();
        if buckets.is_empty() {
            if !shared.pool_busy().await? {
                return Ok(());
            }
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        }
        let mut crashed = false;
        for bucket in buckets {
            if crashed {
                break;
            }
            let id = bucket["id"].as_u64().unwrap_or_default();
            let keys: Vec<String> = bucket["items"]
                .as_array()
                .map(|keys| {
                    keys.iter()
                        .filter_map(|key| key.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let crash = rng.below(100) < options.crash_percent;
            let reported = if crash {
                &keys[..keys.len() / 2]
            } else {
                &keys[..]
            };
            if !reported.is_empty() {
                let results: Vec<Value> = reported
                    .iter()
                    .map(|key| {
                        let outcome = ["yes", "no", "unknown"][rng.below(3) as usize];
                        json!({"key": key, "outcome": outcome})
                    })
                    .collect();
                shared
                    .call(
                        "report",
                        Method::POST,
                        &format!("/api/v1/work/buckets/{id}/results"),
                        Some(&token),
                        Some(json!({ "results": results })),
                    )
                    .await?;
                shared.acknowledge(reported);
            }
            if crash {
                crashed = true;
            }
        }
        if crashed {
            // Gone without a word: no heartbeat, no unregister; back under a new registration.
            *shared.crashes.lock().expect("crash lock") += 1;
            generation += 1;
            token = shared
                .register(&format!("bot-{}-c{index}-g{generation}", options.seed))
                .await?;
        }
    }
}

/// Runs the scenario; the report's outcome says how it ended.
pub async fn run(options: WorkOptions) -> Report {
    let started = Instant::now();
    let mut report = Report::new("work", "http", options.seed);
    let http = match HttpTransport::new(&options.url, options.clients, options.timeout) {
        Ok(http) => http,
        Err(error) => {
            report.failure = Some(error.to_string());
            report.set_outcome(Outcome::Error);
            return report;
        }
    };
    let shared = Arc::new(Shared {
        http,
        options: options.clone(),
        recorder: Recorder::default(),
        ledger: Mutex::new(HashMap::new()),
        crashes: Mutex::new(0),
    });
    let outcome = drive(&shared, started).await;
    let tally = shared.recorder.snapshot();
    tally.fill(&mut report, started.elapsed());
    match outcome {
        Ok(differences) => {
            report.differences = differences;
            if !report.differences.is_empty() {
                report.set_outcome(Outcome::Mismatch);
            }
        }
        Err(error) => {
            report.failure = Some(error.to_string());
            report.set_outcome(Outcome::Error);
        }
    }
    println!(
        "work: {} items, {} clients, {} crashes",
        options.items,
        options.clients,
        *shared.crashes.lock().expect("crash lock")
    );
    report
}

async fn drive(shared: &Arc<Shared>, started: Instant) -> Result<Vec<String>, BotError> {
    let options = &shared.options;
    let prefix = format!("bot-{}-", options.seed);
    let keys: Vec<String> = (0..options.items)
        .map(|n| format!("{prefix}{n:07}"))
        .collect();
    for chunk in keys.chunks(ADD_CHUNK) {
        let items: Vec<Value> = chunk.iter().map(|key| json!({ "key": key })).collect();
        shared
            .call(
                "add_items",
                Method::POST,
                "/api/v1/work/items",
                Some(&options.admin_token),
                Some(json!({ "items": items })),
            )
            .await?;
    }
    let tasks: Vec<_> = (0..options.clients)
        .map(|index| tokio::spawn(client(shared.clone(), index, started)))
        .collect();
    for task in tasks {
        task.await
            .map_err(|error| BotError::transport("task", error.to_string()))??;
    }
    check(shared, &keys, &prefix).await
}

/// Compares the server's items with the ledger; returns every difference.
async fn check(
    shared: &Arc<Shared>,
    keys: &[String],
    prefix: &str,
) -> Result<Vec<String>, BotError> {
    let mut differences = Vec::new();
    let mut server: HashMap<String, (String, usize)> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/work/items?limit={PAGE_LIMIT}&cursor={cursor}"),
            None => format!("/api/v1/work/items?limit={PAGE_LIMIT}"),
        };
        let page = shared
            .call("list_items", Method::GET, &path, None, None)
            .await?;
        for item in page["items"].as_array().cloned().unwrap_or_default() {
            let key = item["key"].as_str().unwrap_or_default();
            if key.starts_with(prefix) {
                let results = item["results"].as_array().map_or(0, Vec::len);
                let state = item["state"].as_str().unwrap_or_default().to_string();
                server.insert(key.to_string(), (state, results));
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let ledger = shared.ledger.lock().expect("ledger lock").clone();
    for key in keys {
        match server.get(key) {
            None => differences.push(format!("item {key}: missing on the server")),
            Some((state, results)) => {
                if state != "done" || *results != 1 {
                    differences.push(format!(
                        "item {key}: server says {state} with {results} results, expected done \
                         with 1"
                    ));
                }
            }
        }
        let acknowledged = ledger.get(key).copied().unwrap_or(0);
        if acknowledged != 1 {
            differences.push(format!(
                "item {key}: {acknowledged} acknowledged results, expected 1"
            ));
        }
    }
    Ok(differences)
}
