//! The work scenario (`switchyard-bot work`): simulated work clients (API.md "Work") against a
//! server (`--url`, [`HttpWork`]) or an engine opened in this process (`--embedded --data-dir`,
//! [`EmbeddedTransport`](crate::transport::EmbeddedTransport)), behind one [`WorkTransport`]
//! trait, so one scenario body drives both.
//!
//! 1. **add**: the bot adds `items` items (keys `bot-<seed>-<n>`, `n` zero-padded to 7 digits)
//!    in chunks of up to 18000 (API.md's limit per request). A key that already exists (an
//!    earlier run with the same seed on the same data) stops the run: the check could not be
//!    exact.
//! 2. **drain**: `clients` tasks each register, then loop: lease up to `max_buckets` buckets and
//!    report a result for every item; with probability `crash_percent` per bucket a client
//!    reports only part of the bucket and then "crashes": it stops, abandons its buckets and
//!    comes back under a new registration (a new `external_id`: 128 bits from the seed, see
//!    [`client_secret`]). The abandoned lease expires on
//!    the server (`work.lease_seconds`, through the engine's durable timers) and its unfinished
//!    items return to the pool. When a lease answers with no bucket, the client waits until no
//!    item is leased or waiting in an open bucket (expired leases come back meanwhile). With
//!    `crash_percent` 0 nothing expires and the drain is a pure throughput run.
//! 3. **check**: every bot item is `done` with exactly one result, and the bot's ledger of
//!    acknowledged results (a success answer to a report) names each item exactly once. Any
//!    difference → outcome `Mismatch` (exit code 2). Also a difference: a live client reported
//!    every item of its bucket and the server says some remain.
//!
//! A late report of a crashed client is never sent (a crashed client is gone). A report of a
//! live client refused with `409 lease_expired` or `403 not_owner` means its lease was reclaimed
//! first (a stall longer than the lease): nothing was recorded, the items go back to the pool,
//! the report counts it under `leases_lost`, and the exactly-once check stays exact.
//!
//! Dead letters: a bucket that expires `work.max_expiries` times is parked by the server and its
//! items stay pending; the drain then ends (nothing more can be leased) and the check lists those
//! items, with the number of dead-lettered buckets in the report.
//!
//! **Lease-only** ([`WorkMode::LeaseOnly`], `--lease-only`): what the PostgreSQL peer's W4
//! workload measures ("claim one unowned work bucket and set owner + expiry", no completion).
//! The add phase is the same; then
//!
//! 2. **lease** (instead of the drain): `clients` tasks each register, then loop: lease up to
//!    `max_buckets` buckets and record every bucket they got; they never report, heartbeat or
//!    crash (`crash_percent` must be 0). A client stops when a lease answers with no bucket. The
//!    leases must outlive the run: an embedded run's lease is 3600 s unless `--lease-seconds`
//!    says otherwise, and its engine lets a client hold any number of buckets; a server keeps
//!    its own `work.lease_seconds` (default 2 h) and `work.leased_buckets_per_client_max`
//!    (default 100), which must be at least `items / clients`: a `400 too_many_buckets` ends
//!    the run with an error naming that key.
//! 3. **check**: every bot item was handed out in exactly one bucket across all clients (the
//!    ledger counts hand-outs instead of results), no bucket id was handed out twice, no lease
//!    answer held more than `max_buckets` buckets, and the server lists every bot item as
//!    `leased` with no result. Any difference → outcome `Mismatch` (exit code 2).
//!
//! Its report has `lease_only: true`; `drain_seconds` then holds the lease phase's duration, so
//! `leases_per_second` is buckets leased per second of the lease phase and
//! `lease_requests_per_second` lease requests per second of it (the lease latency is the
//! `lease` operation's). The leases are left to expire on the server: use a fresh data dir or
//! server for the next run.

pub mod embedded;
pub mod http;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_engine::work::{
    Added, ItemResult, ItemState, Outcome as Verdict, ITEMS_PER_ADD_MAX, PAGE_LIMIT_MAX,
};

use crate::error::BotError;
use crate::progress::{Progress, ProgressMode};
use crate::report::{Outcome, PhaseReport, Recorder, Report, WorkReport};
use crate::rng::Rng;
use crate::transport::Answer;

pub use self::http::HttpWork;

/// Items added per request (API.md allows 18000).
pub const ADD_CHUNK: usize = ITEMS_PER_ADD_MAX;
/// Items read per page in the final check (API.md's maximum).
const PAGE_LIMIT: usize = PAGE_LIMIT_MAX;
/// Pause between polls while expired leases are waiting to come back.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Times a request refused with 503 (back-pressure) is sent again before the run gives up.
const OVERLOAD_RETRIES_MAX: u32 = 5;
/// First back-off after a 503; doubles with each retry.
const OVERLOAD_BACKOFF_MS: u64 = 20;
/// Pause before registering again after a 429 (the server's per-source registration limit).
const RATE_LIMITED_PAUSE: Duration = Duration::from_secs(1);
/// Differences listed in the report; beyond it only their number (a 1M-item run that goes wrong
/// everywhere should not print a million lines).
const DIFFERENCES_LISTED_MAX: usize = 1000;

/// A work scenario, resolved (where it runs is the transport's business).
#[derive(Debug, Clone)]
pub struct WorkOptions {
    pub seed: u64,
    pub clients: usize,
    pub items: usize,
    pub max_buckets: usize,
    /// Chance (0..=100) that a client crashes in the middle of a bucket.
    pub crash_percent: u64,
    /// The whole run must finish within this (expired leases included).
    pub deadline: Duration,
    pub progress: ProgressMode,
}

/// What the clients do after the add phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WorkMode {
    /// Lease, report every item, sometimes crash; then check every item is done exactly once.
    #[default]
    Drain,
    /// Lease only, never report (the PostgreSQL peer's W4); then check every item was handed
    /// out in exactly one bucket and is `leased` on the server.
    LeaseOnly,
}

/// A bucket as a lease hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedBucket {
    pub id: u64,
    /// The lease's fencing token; sent back with the report when the server gave one.
    pub epoch: Option<u32>,
    /// The keys still without a result.
    pub items: Vec<String>,
}

/// The pool's totals the drain waits on (`GET /api/v1/work/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    pub pending: u64,
    pub leased: u64,
    pub open_buckets: u64,
    pub dead_buckets: u64,
}

impl PoolCounts {
    /// True while something may still become leasable: an item is leased (its lease may
    /// expire), a bucket is open (expired, waiting for a lease), or items are pending and no
    /// bucket is dead-lettered (so none of them is parked for good).
    pub fn busy(&self) -> bool {
        self.leased > 0 || self.open_buckets > 0 || (self.pending > 0 && self.dead_buckets == 0)
    }
}

/// One item as the final check reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSummary {
    pub key: String,
    pub state: ItemState,
    /// Length of the item's result history.
    pub results: usize,
}

/// A page of items in the order they were added; `next` is the opaque cursor of the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemsPage {
    pub items: Vec<ItemSummary>,
    pub next: Option<String>,
}

/// The work operations the scenario performs, over HTTP ([`HttpWork`]) or the embedded engine
/// (`EmbeddedTransport`). Like [`crate::Transport`], an implementation reports what the server
/// said and never judges it. Every future is `Send`, so clients run on tokio tasks.
pub trait WorkTransport: Send + Sync + 'static {
    /// `"http"` or `"embedded"` (for the report).
    fn name(&self) -> &'static str;

    /// `POST /api/v1/work/items` (admin), at most [`ADD_CHUNK`] keys, default priority.
    fn add_items(&self, keys: &[String]) -> impl Future<Output = Answer<Added>> + Send;

    /// `POST /api/v1/work/clients` with screen name `bot`; returns the client token.
    fn register(&self, external_id: &str) -> impl Future<Output = Answer<String>> + Send;

    /// `POST /api/v1/work/leases`.
    fn lease(
        &self,
        token: &str,
        max_buckets: usize,
    ) -> impl Future<Output = Answer<Vec<LeasedBucket>>> + Send;

    /// `POST /api/v1/work/buckets/{id}/results`; returns the bucket's `remaining`.
    fn report(
        &self,
        token: &str,
        bucket_id: u64,
        epoch: Option<u32>,
        results: Vec<ItemResult>,
    ) -> impl Future<Output = Answer<u64>> + Send;

    /// `GET /api/v1/work/stats`, the totals only.
    fn pool(&self) -> impl Future<Output = Answer<PoolCounts>> + Send;

    /// `GET /api/v1/work/items?limit&cursor`.
    fn items(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Answer<ItemsPage>> + Send;
}

/// Why a run stopped early.
struct Failure(String);

impl From<BotError> for Failure {
    fn from(error: BotError) -> Self {
        Failure(error.to_string())
    }
}

/// What the clients of a run share.
struct Shared<T> {
    transport: Arc<T>,
    options: WorkOptions,
    mode: WorkMode,
    /// `bot-<seed>-`: the bot's keys, `prefix` + the item's number.
    prefix: String,
    started: Instant,
    recorder: Recorder,
    /// Acknowledged results per bot item (index = the key's number); in lease-only mode, the
    /// buckets each bot item was handed out in.
    ledger: Vec<AtomicU32>,
    /// Lease-only: the id of every bucket handed out, one entry per hand-out (each client
    /// appends its own when it stops).
    bucket_ids: Mutex<Vec<u64>>,
    /// Differences seen during the drain.
    differences: Mutex<Vec<String>>,
    /// Set on the first fatal error so the other clients stop at their next operation.
    abort: AtomicBool,
    lease_requests: AtomicU64,
    buckets_leased: AtomicU64,
    results_reported: AtomicU64,
    crashes: AtomicU64,
    leases_lost: AtomicU64,
}

impl<T: WorkTransport> Shared<T> {
    fn key(&self, number: usize) -> String {
        format!("{}{number:07}", self.prefix)
    }

    /// The number of a bot key of this run, `None` for any other key.
    fn key_number(&self, key: &str) -> Option<usize> {
        let digits = key.strip_prefix(&self.prefix)?;
        let number: usize = digits.parse().ok()?;
        (number < self.options.items && format!("{number:07}") == digits).then_some(number)
    }

    /// One transport call, timed into the recorder; a 503 is retried with a doubling back-off.
    async fn timed<R, F, Fut>(&self, kind: &'static str, mut call: F) -> Answer<R>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Answer<R>>,
    {
        let mut retries = 0u32;
        loop {
            let started = Instant::now();
            let answer = call().await;
            self.recorder
                .record(kind, started.elapsed(), answer.as_ref().err());
            match answer {
                Err(error) if error.is_overloaded() && retries < OVERLOAD_RETRIES_MAX => {
                    tokio::time::sleep(Duration::from_millis(OVERLOAD_BACKOFF_MS << retries)).await;
                    retries += 1;
                }
                other => return other,
            }
        }
    }

    /// Err when the run must stop: another client failed, or the deadline passed.
    fn going(&self) -> Answer<()> {
        if self.abort.load(Ordering::Acquire) {
            return Err(BotError::transport("aborted", "another client failed"));
        }
        if self.started.elapsed() > self.options.deadline {
            return Err(BotError::transport(
                "deadline",
                format!(
                    "the pool did not drain within the deadline ({} s)",
                    self.options.deadline.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// Registers client `index` in its `generation`-th life; waits out the per-source limit.
    async fn register(&self, index: usize, generation: u64) -> Answer<String> {
        let external_id = client_secret(self.options.seed, index, generation);
        loop {
            self.going()?;
            match self
                .timed("register", || self.transport.register(&external_id))
                .await
            {
                Err(error) if error.status == Some(429) => {
                    tokio::time::sleep(RATE_LIMITED_PAUSE).await
                }
                other => return other,
            }
        }
    }

    fn acknowledge(&self, keys: &[String]) {
        for key in keys {
            if let Some(number) = self.key_number(key) {
                self.ledger[number].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.results_reported
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
    }

    /// Lease-only: counts one hand-out of each bot item of `bucket`; returns how many there were.
    fn hand_out(&self, bucket: &LeasedBucket) -> u64 {
        let mut ours = 0;
        for key in &bucket.items {
            if let Some(number) = self.key_number(key) {
                self.ledger[number].fetch_add(1, Ordering::Relaxed);
                ours += 1;
            }
        }
        ours
    }

    fn difference(&self, difference: String) {
        // Invariant: nothing panics while holding this lock, so it is never poisoned.
        self.differences
            .lock()
            .expect("differences lock")
            .push(difference);
    }
}

/// A refusal of a live client's report that means its lease was reclaimed before it arrived.
fn is_lost_lease(error: &BotError) -> bool {
    matches!(
        (error.status, error.code.as_str()),
        (Some(409), "lease_expired") | (Some(403), "not_owner")
    )
}

/// One simulated client: registers, works, sometimes crashes and re-registers.
async fn client<T: WorkTransport>(
    shared: Arc<Shared<T>>,
    index: usize,
    progress: Arc<Progress>,
) -> Answer<()> {
    let options = &shared.options;
    let transport = &shared.transport;
    let mut rng = Rng::derive(options.seed, &format!("work-client-{index}"));
    let mut generation = 0u64;
    let mut token = shared.register(index, generation).await?;
    loop {
        shared.going()?;
        let buckets = shared
            .timed("lease", || transport.lease(&token, options.max_buckets))
            .await?;
        shared.lease_requests.fetch_add(1, Ordering::Relaxed);
        if buckets.is_empty() {
            let pool = shared.timed("stats", || transport.pool()).await?;
            if !pool.busy() {
                return Ok(());
            }
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        }
        shared
            .buckets_leased
            .fetch_add(buckets.len() as u64, Ordering::Relaxed);
        let mut crashed = false;
        for bucket in &buckets {
            let crash = rng.below(100) < options.crash_percent;
            let reported = if crash {
                &bucket.items[..bucket.items.len() / 2]
            } else {
                &bucket.items[..]
            };
            if !reported.is_empty() {
                let results: Vec<ItemResult> = reported
                    .iter()
                    .map(|key| ItemResult {
                        key: key.clone(),
                        outcome: [Verdict::Yes, Verdict::No, Verdict::Unknown]
                            [rng.below(3) as usize],
                        detail: None,
                    })
                    .collect();
                let answer = shared
                    .timed("report", || {
                        transport.report(&token, bucket.id, bucket.epoch, results.clone())
                    })
                    .await;
                match answer {
                    Ok(remaining) => {
                        shared.acknowledge(reported);
                        progress.advance(reported.len() as u64);
                        if !crash && remaining != 0 {
                            shared.difference(format!(
                                "bucket {}: every one of its {} items reported, the server says \
                                 {remaining} remain",
                                bucket.id,
                                reported.len()
                            ));
                        }
                    }
                    Err(error) if is_lost_lease(&error) => {
                        shared.leases_lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => return Err(error),
                }
            }
            if crash {
                // Gone without a word: no heartbeat, no unregister; the rest of this lease is
                // abandoned too.
                crashed = true;
                break;
            }
        }
        if crashed {
            shared.crashes.fetch_add(1, Ordering::Relaxed);
            generation += 1;
            token = shared.register(index, generation).await?;
        }
    }
}

/// One lease-only client: registers, then leases until a lease answers with no bucket; never
/// reports, heartbeats or crashes.
async fn lease_only_client<T: WorkTransport>(
    shared: Arc<Shared<T>>,
    index: usize,
    progress: Arc<Progress>,
) -> Answer<()> {
    let options = &shared.options;
    let transport = &shared.transport;
    let token = shared.register(index, 0).await?;
    let mut bucket_ids = Vec::new();
    let outcome = loop {
        if let Err(error) = shared.going() {
            break Err(error);
        }
        let answer = shared
            .timed("lease", || transport.lease(&token, options.max_buckets))
            .await;
        let buckets = match answer {
            Ok(buckets) => buckets,
            Err(mut error) if error.code == "too_many_buckets" => {
                error.message.push_str(
                    " (a lease-only client keeps every bucket: raise the server's \
                     work.leased_buckets_per_client_max to at least items / clients)",
                );
                break Err(error);
            }
            Err(error) => break Err(error),
        };
        shared.lease_requests.fetch_add(1, Ordering::Relaxed);
        if buckets.is_empty() {
            break Ok(());
        }
        if buckets.len() > options.max_buckets {
            shared.difference(format!(
                "a lease for at most {} buckets answered with {}",
                options.max_buckets,
                buckets.len()
            ));
        }
        shared
            .buckets_leased
            .fetch_add(buckets.len() as u64, Ordering::Relaxed);
        for bucket in &buckets {
            bucket_ids.push(bucket.id);
            progress.advance(shared.hand_out(bucket));
        }
    };
    // Invariant: nothing panics while holding this lock, so it is never poisoned.
    shared
        .bucket_ids
        .lock()
        .expect("bucket ids lock")
        .extend(bucket_ids);
    outcome
}

/// Runs the scenario (the drain, [`WorkMode::Drain`]) against `transport`; the report's outcome
/// says how it ended. Never panics on a server error: an unusable answer ends the run with
/// [`Outcome::Error`], a disagreement with [`Outcome::Mismatch`].
pub async fn run<T: WorkTransport>(transport: Arc<T>, options: WorkOptions) -> Report {
    run_mode(transport, options, WorkMode::Drain).await
}

/// As [`run`], in either mode: [`WorkMode::LeaseOnly`] leases without reporting (`--lease-only`).
pub async fn run_mode<T: WorkTransport>(
    transport: Arc<T>,
    options: WorkOptions,
    mode: WorkMode,
) -> Report {
    let started = Instant::now();
    let mut report = Report::new("work", transport.name(), options.seed);
    let shared = Arc::new(Shared {
        prefix: format!("bot-{}-", options.seed),
        ledger: (0..options.items).map(|_| AtomicU32::new(0)).collect(),
        bucket_ids: Mutex::new(Vec::new()),
        transport,
        options,
        mode,
        started,
        recorder: Recorder::default(),
        differences: Mutex::new(Vec::new()),
        abort: AtomicBool::new(false),
        lease_requests: AtomicU64::new(0),
        buckets_leased: AtomicU64::new(0),
        results_reported: AtomicU64::new(0),
        crashes: AtomicU64::new(0),
        leases_lost: AtomicU64::new(0),
    });
    let options = &shared.options;
    let mut figures = WorkReport {
        items: options.items as u64,
        clients: options.clients,
        max_buckets: options.max_buckets,
        crash_percent: options.crash_percent,
        lease_only: mode == WorkMode::LeaseOnly,
        ..WorkReport::default()
    };
    let outcome = phases(&shared, &mut report, &mut figures).await;
    figures.lease_requests = shared.lease_requests.load(Ordering::Relaxed);
    figures.buckets_leased = shared.buckets_leased.load(Ordering::Relaxed);
    figures.results_reported = shared.results_reported.load(Ordering::Relaxed);
    figures.crashes = shared.crashes.load(Ordering::Relaxed);
    figures.leases_lost = shared.leases_lost.load(Ordering::Relaxed);
    if figures.drain_seconds > 0.0 {
        figures.leases_per_second = round1(figures.buckets_leased as f64 / figures.drain_seconds);
        figures.lease_requests_per_second =
            round1(figures.lease_requests as f64 / figures.drain_seconds);
        figures.results_per_second =
            round1(figures.results_reported as f64 / figures.drain_seconds);
    }
    shared
        .recorder
        .snapshot()
        .fill(&mut report, started.elapsed());
    report.work = Some(figures);
    let differences = std::mem::take(&mut *shared.differences.lock().expect("differences lock"));
    let total = differences.len();
    report.differences = differences
        .into_iter()
        .take(DIFFERENCES_LISTED_MAX)
        .collect();
    if total > DIFFERENCES_LISTED_MAX {
        report.differences.push(format!(
            "... and {} more differences (not listed)",
            total - DIFFERENCES_LISTED_MAX
        ));
    }
    match outcome {
        Ok(()) if report.differences.is_empty() => {}
        Ok(()) => report.set_outcome(Outcome::Mismatch),
        Err(Failure(failure)) => {
            report.failure = Some(failure);
            report.set_outcome(Outcome::Error);
        }
    }
    report
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Times one phase into the report.
struct Phase<'a, T> {
    shared: &'a Shared<T>,
    name: &'static str,
    started: Instant,
    operations_before: u64,
}

impl<'a, T: WorkTransport> Phase<'a, T> {
    fn start(shared: &'a Shared<T>, name: &'static str) -> Self {
        Phase {
            shared,
            name,
            started: Instant::now(),
            operations_before: shared.recorder.snapshot().operations_total(),
        }
    }

    /// Ends the phase; returns its duration in seconds.
    fn end(self, report: &mut Report, differences: usize) -> f64 {
        let seconds = round3(self.started.elapsed().as_secs_f64());
        report.phases.push(PhaseReport {
            name: self.name.to_string(),
            operations: self.shared.recorder.snapshot().operations_total() - self.operations_before,
            elapsed_seconds: seconds,
            differences,
            note: None,
        });
        seconds
    }
}

async fn phases<T: WorkTransport>(
    shared: &Arc<Shared<T>>,
    report: &mut Report,
    figures: &mut WorkReport,
) -> Result<(), Failure> {
    let options = &shared.options;

    let phase = Phase::start(shared, "add");
    let progress = Progress::start("add items", options.items as u64, options.progress);
    let mut added = 0u64;
    for first in (0..options.items).step_by(ADD_CHUNK) {
        let keys: Vec<String> = (first..options.items.min(first + ADD_CHUNK))
            .map(|number| shared.key(number))
            .collect();
        let answer = shared
            .timed("add_items", || shared.transport.add_items(&keys))
            .await?;
        if answer.duplicates > 0 {
            return Err(Failure(format!(
                "{} of the bot's item keys ({}...) already exist: an earlier run with seed {} \
                 on this server or data dir; use another --seed or a fresh data dir",
                answer.duplicates, shared.prefix, options.seed
            )));
        }
        added += answer.added;
        progress.advance(keys.len() as u64);
    }
    progress.finish("");
    figures.items_added = added;
    figures.add_seconds = phase.end(report, 0);
    if figures.add_seconds > 0.0 {
        figures.items_added_per_second = round1(added as f64 / figures.add_seconds);
    }

    let lease_only = shared.mode == WorkMode::LeaseOnly;
    let name = if lease_only { "lease" } else { "drain" };
    let phase = Phase::start(shared, name);
    let progress = Arc::new(Progress::start(
        name,
        options.items as u64,
        options.progress,
    ));
    let tasks: Vec<_> = (0..options.clients)
        .map(|index| {
            let shared = shared.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let outcome = if lease_only {
                    lease_only_client(shared.clone(), index, progress).await
                } else {
                    client(shared.clone(), index, progress).await
                };
                if outcome.is_err() {
                    shared.abort.store(true, Ordering::Release);
                }
                outcome
            })
        })
        .collect();
    let mut first_error: Option<BotError> = None;
    for task in tasks {
        let outcome = task
            .await
            .unwrap_or_else(|error| Err(BotError::transport("task", error.to_string())));
        if let Err(error) = outcome {
            // The first real failure, not the "aborted" of the clients it stopped.
            if first_error
                .as_ref()
                .is_none_or(|first| first.code == "aborted")
            {
                first_error = Some(error);
            }
        }
    }
    progress.finish("");
    let drain_differences = shared.differences.lock().expect("differences lock").len();
    figures.drain_seconds = phase.end(report, drain_differences);
    if let Some(error) = first_error {
        return Err(error.into());
    }
    if lease_only {
        let phase = Phase::start(shared, "check");
        let differences = check_leases(shared).await?;
        let found = differences.len();
        for difference in differences {
            shared.difference(difference);
        }
        figures.check_seconds = phase.end(report, found);
        return Ok(());
    }
    figures.dead_buckets = shared
        .timed("stats", || shared.transport.pool())
        .await?
        .dead_buckets;

    let phase = Phase::start(shared, "check");
    let differences = check(shared).await?;
    let found = differences.len();
    for difference in differences {
        shared.difference(difference);
    }
    if found > 0 && figures.dead_buckets > 0 {
        shared.difference(format!(
            "{} buckets are dead-lettered (expired work.max_expiries times); their items stay \
             pending",
            figures.dead_buckets
        ));
    }
    figures.check_seconds = phase.end(report, found);
    Ok(())
}

/// (state, results) per bot item (index = the key's number) as listed by the server, `None`
/// for an item it does not list.
type ServerItems = Vec<Option<(ItemState, usize)>>;

/// Reads every page of the server's items; returns the bot's items and a difference for each
/// item listed twice.
async fn list_server<T: WorkTransport>(
    shared: &Shared<T>,
) -> Result<(ServerItems, Vec<String>), Failure> {
    let options = &shared.options;
    let progress = Progress::start("check", options.items as u64, options.progress);
    let mut differences = Vec::new();
    let mut server: ServerItems = vec![None; options.items];
    let mut cursor: Option<String> = None;
    loop {
        let page = shared
            .timed("list_items", || {
                shared.transport.items(cursor.clone(), PAGE_LIMIT)
            })
            .await?;
        let mut ours = 0u64;
        for item in &page.items {
            let Some(number) = shared.key_number(&item.key) else {
                continue;
            };
            ours += 1;
            if server[number].is_some() {
                differences.push(format!("item {}: listed twice", item.key));
            }
            server[number] = Some((item.state, item.results));
        }
        progress.advance(ours);
        match page.next {
            Some(next) if !page.items.is_empty() => cursor = Some(next),
            _ => break,
        }
    }
    progress.finish("");
    Ok((server, differences))
}

/// Compares the server's items with the ledger; returns every difference.
async fn check<T: WorkTransport>(shared: &Shared<T>) -> Result<Vec<String>, Failure> {
    let (server, mut differences) = list_server(shared).await?;
    compare_items(
        shared,
        &server,
        ItemState::Done,
        1,
        &mut differences,
        |count| format!("{count} acknowledged results"),
    );
    Ok(differences)
}

/// Lease-only: compares the hand-outs with each other and with the server's items; returns every
/// difference.
async fn check_leases<T: WorkTransport>(shared: &Shared<T>) -> Result<Vec<String>, Failure> {
    let mut differences = Vec::new();
    let mut bucket_ids = std::mem::take(&mut *shared.bucket_ids.lock().expect("bucket ids lock"));
    bucket_ids.sort_unstable();
    for run in bucket_ids.chunk_by(|a, b| a == b) {
        if run.len() > 1 {
            differences.push(format!(
                "bucket {}: handed out {} times, expected once",
                run[0],
                run.len()
            ));
        }
    }
    let (server, listed_twice) = list_server(shared).await?;
    differences.extend(listed_twice);
    compare_items(
        shared,
        &server,
        ItemState::Leased,
        0,
        &mut differences,
        |count| format!("handed out in {count} buckets"),
    );
    Ok(differences)
}

/// The per-item half of both checks: every bot item is listed in `state` with `results` results,
/// and the ledger counts it exactly once (`counted` says what the ledger counted, for a
/// difference).
fn compare_items<T: WorkTransport>(
    shared: &Shared<T>,
    server: &[Option<(ItemState, usize)>],
    state: ItemState,
    results: usize,
    differences: &mut Vec<String>,
    counted: impl Fn(u32) -> String,
) {
    for (number, listed) in server.iter().enumerate() {
        match listed {
            None => differences.push(format!(
                "item {}: missing on the server",
                shared.key(number)
            )),
            Some((listed_state, listed_results)) => {
                if *listed_state != state || *listed_results != results {
                    differences.push(format!(
                        "item {}: server says {} with {listed_results} results, expected {} \
                         with {results}",
                        shared.key(number),
                        listed_state.as_str(),
                        state.as_str()
                    ));
                }
            }
        }
        let count = shared.ledger[number].load(Ordering::Relaxed);
        if count != 1 {
            differences.push(format!(
                "item {}: {}, expected 1",
                shared.key(number),
                counted(count)
            ));
        }
    }
}

/// The `external_id` of client `index` in its `generation`-th life: the server treats it as the
/// client's secret (at least 16 characters), so it is 128 bits drawn from a stream of the run's
/// seed: the same seed registers the same clients, and no two lives share one.
pub fn client_secret(seed: u64, index: usize, generation: u64) -> String {
    let mut rng = Rng::derive(seed, &format!("work-client-secret-{index}-{generation}"));
    format!("bot-{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::client_secret;

    #[test]
    fn client_secrets_are_long_reproducible_and_distinct() {
        let secret = client_secret(7, 3, 1);
        assert!(secret.len() >= 16, "{secret}");
        assert!(secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert_eq!(secret, client_secret(7, 3, 1), "the seed decides");
        assert_ne!(secret, client_secret(7, 3, 2), "a new life, a new identity");
        assert_ne!(secret, client_secret(7, 4, 1));
        assert_ne!(secret, client_secret(8, 3, 1));
    }
}
