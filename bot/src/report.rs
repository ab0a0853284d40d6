//! What a run measured and how it ended: [`Tally`] (per-kind counts, errors by status/code, HDR
//! latency histograms), [`Recorder`] (a tally shared by the simulation's tasks), and [`Report`]
//! (the final summary, printed as text and written as JSON with `--report FILE`).
//!
//! Latencies are recorded in microseconds in HDR histograms (1 µs to 10 minutes, 3 significant
//! digits), so p99 and max are exact to 0.1 % whatever the distribution.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::BotError;
use crate::transport::SocialStats;

/// Highest latency a histogram holds, in microseconds (10 minutes); larger values saturate.
const LATENCY_US_MAX: u64 = 600_000_000;
/// Significant decimal digits of the histograms.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

fn new_histogram() -> Histogram<u64> {
    // Invariant: the bounds above are valid (1 <= max, 3 significant digits is within 0..=5).
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("valid histogram bounds")
}

/// How a run ended; the process exit code follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every phase ran and every check agreed. Exit code 0.
    Finished,
    /// The run could not go on: server unreachable, a 5xx, a bad configuration. Exit code 1.
    Error,
    /// The server disagreed with the bot's ledger. Exit code 2.
    Mismatch,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Finished => 0,
            Outcome::Error => 1,
            Outcome::Mismatch => 2,
        }
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: histogram.value_at_quantile(0.50),
            p95: histogram.value_at_quantile(0.95),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
            mean: (histogram.mean() * 10.0).round() / 10.0,
        }
    }
}

/// One kind of operation in the report.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub count: u64,
    pub errors: u64,
    pub latency_us: Latency,
}

#[derive(Debug, Clone)]
struct KindTally {
    count: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// Counts and latencies of operations. One per task in load mode (merged at the end), one
/// behind a mutex ([`Recorder`]) in the simulation.
#[derive(Debug, Clone)]
pub struct Tally {
    kinds: BTreeMap<&'static str, KindTally>,
    overall: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            kinds: BTreeMap::new(),
            overall: new_histogram(),
            errors: BTreeMap::new(),
        }
    }
}

fn micros(latency: Duration) -> u64 {
    (latency.as_micros() as u64).max(1)
}

impl Tally {
    /// Records one operation of `kind` that took `latency`, failed with `error` if any.
    pub fn record(&mut self, kind: &'static str, latency: Duration, error: Option<&BotError>) {
        self.record_keyed(kind, micros(latency), error.map(BotError::key));
    }

    /// As [`Tally::record`], with the latency in microseconds and the error as its report key.
    pub fn record_keyed(&mut self, kind: &'static str, latency_us: u64, error: Option<String>) {
        let entry = self.kinds.entry(kind).or_insert_with(|| KindTally {
            count: 0,
            errors: 0,
            latency: new_histogram(),
        });
        entry.count += 1;
        entry.latency.saturating_record(latency_us.max(1));
        self.overall.saturating_record(latency_us.max(1));
        if let Some(key) = error {
            entry.errors += 1;
            *self.errors.entry(key).or_default() += 1;
        }
    }

    /// Counts an error that has no latency (e.g. a request lost with its connection).
    pub fn record_error_only(&mut self, key: String) {
        self.record_error_only_count(&key, 1);
    }

    /// Counts `count` errors under `key` that have no latency.
    pub fn record_error_only_count(&mut self, key: &str, count: u64) {
        *self.errors.entry(key.to_string()).or_default() += count;
    }

    pub fn merge(&mut self, other: &Tally) {
        for (kind, theirs) in &other.kinds {
            match self.kinds.get_mut(kind) {
                Some(ours) => {
                    ours.count += theirs.count;
                    ours.errors += theirs.errors;
                    // Invariant: both histograms have the same bounds, so adding cannot fail.
                    ours.latency.add(&theirs.latency).expect("same bounds");
                }
                None => {
                    self.kinds.insert(kind, theirs.clone());
                }
            }
        }
        // Invariant: as above.
        self.overall.add(&other.overall).expect("same bounds");
        for (key, count) in &other.errors {
            *self.errors.entry(key.clone()).or_default() += count;
        }
    }

    pub fn operations_total(&self) -> u64 {
        self.kinds.values().map(|kind| kind.count).sum()
    }

    pub fn count(&self, kind: &str) -> u64 {
        self.kinds.get(kind).map_or(0, |tally| tally.count)
    }

    /// Fills the measured part of a report.
    pub fn fill(&self, report: &mut Report, elapsed: Duration) {
        report.elapsed_seconds = round3(elapsed.as_secs_f64());
        report.operations_total = self.operations_total();
        report.errors_total = self.errors.values().sum();
        report.throughput_per_second = if elapsed.is_zero() {
            0.0
        } else {
            round3(report.operations_total as f64 / elapsed.as_secs_f64())
        };
        report.latency_us = Latency::of(&self.overall);
        report.operations = self
            .kinds
            .iter()
            .map(|(kind, tally)| {
                (
                    kind.to_string(),
                    KindReport {
                        count: tally.count,
                        errors: tally.errors,
                        latency_us: Latency::of(&tally.latency),
                    },
                )
            })
            .collect();
        report.errors = self.errors.clone();
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// A [`Tally`] shared by the tasks of a simulation run.
#[derive(Debug, Default)]
pub struct Recorder {
    tally: Mutex<Tally>,
}

impl Recorder {
    pub fn record(&self, kind: &'static str, latency: Duration, error: Option<&BotError>) {
        // Invariant: no code panics while holding this lock, so it is never poisoned.
        self.tally
            .lock()
            .expect("recorder lock")
            .record(kind, latency, error);
    }

    pub fn snapshot(&self) -> Tally {
        // Invariant: as in `record`.
        self.tally.lock().expect("recorder lock").clone()
    }
}

/// One phase of the simulation in the report.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub operations: u64,
    pub elapsed_seconds: f64,
    /// Differences found by the check after the phase (empty = agreed).
    pub differences: usize,
    /// Why Phase III stopped, for that phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The operation log in the report: its length and a hash of it (FNV-1a over the lines), so two
/// runs can be compared without keeping the whole log; `--op-log FILE` writes the lines.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpLogSummary {
    pub count: u64,
    pub hash: String,
}

/// Load mode's own figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub url: String,
    pub rate_target_per_second: f64,
    pub duration_seconds: f64,
    pub connections: usize,
    pub pipeline_depth: usize,
    pub threads: usize,
    pub mix: BTreeMap<String, u32>,
    /// Arrivals scheduled within the duration.
    pub scheduled: u64,
    /// Requests written to a socket.
    pub sent: u64,
    /// Responses read (any status).
    pub completed: u64,
    /// Scheduled requests that were never answered (sent too late for the drain deadline, or
    /// lost with a broken connection).
    pub unanswered: u64,
    /// Completed responses per second over the measured window.
    pub achieved_rate_per_second: f64,
    /// Responses by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Latency from each request's *scheduled* send time to its response (coordinated omission
    /// corrected): what a user arriving on schedule would have seen. Same as the top-level
    /// `latency_us`.
    pub latency_from_schedule_us: Latency,
    /// Latency from the actual write to the response (uncorrected service time).
    pub latency_from_send_us: Latency,
    /// How late each request was written after its scheduled time: the generator's timer
    /// resolution (~1 ms) when the connection was idle, plus any wait behind earlier requests
    /// on the same connection when it was not.
    pub send_lag_us: Latency,
    /// What the setup step created: users signed up and logged in, posts created.
    pub setup_users: usize,
    pub setup_posts: usize,
}

/// The work scenario's own figures (`switchyard-bot work`): what a drain measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkReport {
    pub items: u64,
    pub clients: usize,
    pub max_buckets: usize,
    pub crash_percent: u64,
    /// A `--lease-only` run (the PostgreSQL peer's W4): a lease phase instead of the drain,
    /// clients that never report; `drain_seconds` is then the lease phase's duration.
    pub lease_only: bool,
    /// Items the add phase added (all new keys; a known key stops the run).
    pub items_added: u64,
    pub add_seconds: f64,
    pub items_added_per_second: f64,
    /// The drain: from the clients' start to the last client's end (registrations, leases,
    /// reports, waits for expired leases; not the add or the check).
    pub drain_seconds: f64,
    /// Lease requests sent, the ones that got no bucket included.
    pub lease_requests: u64,
    /// Buckets granted by those requests (a bucket leased again after an expiry counts again).
    pub buckets_leased: u64,
    /// `buckets_leased` per second of drain.
    pub leases_per_second: f64,
    /// `lease_requests` per second of drain.
    pub lease_requests_per_second: f64,
    /// Item results acknowledged by the server (a success answer to the report carrying them).
    pub results_reported: u64,
    /// `results_reported` per second of drain.
    pub results_per_second: f64,
    /// Clients that crashed mid-bucket and came back under a new registration.
    pub crashes: u64,
    /// Reports of live clients refused because the lease was reclaimed first (`409
    /// lease_expired`, `403 not_owner`): nothing recorded, the items went back to the pool.
    pub leases_lost: u64,
    /// Dead-lettered buckets after the drain (expired `work.max_expiries` times).
    pub dead_buckets: u64,
    pub check_seconds: f64,
}

/// The market scenario's own figures (`switchyard-bot market`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MarketReport {
    pub users: usize,
    /// Orders planned, each with its own `Idempotency-Key`.
    pub orders: usize,
    pub concurrency: usize,
    pub retry_percent: u64,
    /// Planned orders deliberately sent twice with the same key and body (at once or in turn).
    pub duplicated: u64,
    /// Answers 201 (a new order) and 200 (a replay of a key), over every copy and retry.
    pub created: u64,
    pub replayed: u64,
    /// Orders whose every copy was refused with `409 btc_cap_exceeded`.
    pub cap_refused: u64,
    /// Requests sent again with the same key and body after a transport failure, a 503 or a
    /// 429.
    pub resent: u64,
    /// Of those, the ones after a 429 (`Retry-After` honoured).
    pub rate_limited: u64,
    /// The ordering phase: from the first order to the last answer.
    pub place_seconds: f64,
    /// `created` per second of the ordering phase.
    pub orders_per_second: f64,
    /// The BTC of the orders the bot's ledger holds, and of every order the server lists (both
    /// with 8 decimals, summed exactly), the server's before the run, and the cap.
    pub ledger_btc: String,
    pub server_btc: String,
    pub server_btc_before: String,
    pub cap_btc: String,
    /// Orders the server lists at the end (every user's).
    pub server_orders: u64,
    /// The price was the same before and after the run and every order used it, so cap
    /// refusals were checked against it; `false` means they were not (a moving price).
    pub price_stable: bool,
    pub check_seconds: f64,
}

/// The final report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `social`, `load`, `work` or `market`.
    pub mode: &'static str,
    /// `http` or `embedded`.
    pub transport: String,
    pub seed: u64,
    pub outcome: Outcome,
    pub exit_code: u8,
    pub elapsed_seconds: f64,
    pub operations_total: u64,
    pub errors_total: u64,
    /// Operations (of any outcome) per second of the whole run.
    pub throughput_per_second: f64,
    /// Over all operations, in microseconds.
    pub latency_us: Latency,
    /// By kind (`sign_up`, `login`, `create_post`, `like`, `unlike`, `get_user`, ...).
    pub operations: BTreeMap<String, KindReport>,
    /// Error count by `"<status> <code>"` (`"409 email_taken"`), or `"transport <code>"`.
    pub errors: BTreeMap<String, u64>,
    pub phases: Vec<PhaseReport>,
    /// Every difference between the bot's ledger and the server, in the order found.
    pub differences: Vec<String>,
    /// Why the run stopped with an error, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub op_log: OpLogSummary,
    /// The bot's ledger at the end (simulation only): what it expects the server to hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<SocialStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work: Option<WorkReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub market: Option<MarketReport>,
}

impl Report {
    pub fn new(mode: &'static str, transport: &str, seed: u64) -> Self {
        Report {
            mode,
            transport: transport.to_string(),
            seed,
            outcome: Outcome::Finished,
            exit_code: 0,
            elapsed_seconds: 0.0,
            operations_total: 0,
            errors_total: 0,
            throughput_per_second: 0.0,
            latency_us: Latency::default(),
            operations: BTreeMap::new(),
            errors: BTreeMap::new(),
            phases: Vec::new(),
            differences: Vec::new(),
            failure: None,
            op_log: OpLogSummary::default(),
            ledger: None,
            load: None,
            work: None,
            market: None,
        }
    }

    pub fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = outcome;
        self.exit_code = outcome.exit_code();
    }

    pub fn to_json(&self) -> String {
        // Invariant: every field is a plain number, string or map with string keys.
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// The human-readable summary printed at the end of a run.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} run ({}), seed {}: {:?} (exit code {})",
            self.mode, self.transport, self.seed, self.outcome, self.exit_code
        );
        if let Some(failure) = &self.failure {
            let _ = writeln!(out, "  failure: {failure}");
        }
        let _ = writeln!(
            out,
            "  {} operations in {:.3} s = {:.1}/s, {} errors",
            self.operations_total,
            self.elapsed_seconds,
            self.throughput_per_second,
            self.errors_total
        );
        let latency = &self.latency_us;
        let _ = writeln!(
            out,
            "  latency µs: p50 {} p95 {} p99 {} max {}",
            latency.p50, latency.p95, latency.p99, latency.max
        );
        let _ = writeln!(
            out,
            "  {:<14} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "operation", "count", "errors", "p50 µs", "p95 µs", "p99 µs", "max µs"
        );
        for (kind, row) in &self.operations {
            let _ = writeln!(
                out,
                "  {:<14} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
                kind,
                row.count,
                row.errors,
                row.latency_us.p50,
                row.latency_us.p95,
                row.latency_us.p99,
                row.latency_us.max
            );
        }
        for (key, count) in &self.errors {
            let _ = writeln!(out, "  error {key}: {count}");
        }
        for phase in &self.phases {
            let _ = writeln!(
                out,
                "  {}: {} operations in {:.3} s, {} differences{}",
                phase.name,
                phase.operations,
                phase.elapsed_seconds,
                phase.differences,
                phase
                    .note
                    .as_ref()
                    .map(|note| format!(" ({note})"))
                    .unwrap_or_default()
            );
        }
        if let Some(ledger) = &self.ledger {
            let _ = writeln!(
                out,
                "  ledger: {} users, {} posts, {} likes, {} posts with zero likes",
                ledger.users, ledger.posts, ledger.likes, ledger.posts_with_zero_likes
            );
        }
        if let Some(load) = &self.load {
            let _ = writeln!(
                out,
                "  load: target {:.0}/s for {:.1} s over {} connections (pipeline {}, {} threads): \
                 scheduled {}, sent {}, completed {}, unanswered {}, achieved {:.1}/s",
                load.rate_target_per_second,
                load.duration_seconds,
                load.connections,
                load.pipeline_depth,
                load.threads,
                load.scheduled,
                load.sent,
                load.completed,
                load.unanswered,
                load.achieved_rate_per_second
            );
            let send = &load.latency_from_send_us;
            let _ = writeln!(
                out,
                "  latency from send (uncorrected) µs: p50 {} p95 {} p99 {} max {}",
                send.p50, send.p95, send.p99, send.max
            );
            let lag = &load.send_lag_us;
            let _ = writeln!(
                out,
                "  send lag behind schedule µs: p50 {} p95 {} p99 {} max {}",
                lag.p50, lag.p95, lag.p99, lag.max
            );
            for (status, count) in &load.statuses {
                let _ = writeln!(out, "  status {status}: {count}");
            }
        }
        if let Some(work) = self.work.as_ref().filter(|work| work.lease_only) {
            let _ = writeln!(
                out,
                "  work, lease-only (no report, heartbeat or crash; the PostgreSQL W4 equivalent): \
                 {} items, {} clients (max {} buckets per lease)",
                work.items, work.clients, work.max_buckets
            );
            let _ = writeln!(
                out,
                "  added {} items in {:.3} s = {:.1} items/s",
                work.items_added, work.add_seconds, work.items_added_per_second
            );
            let lease = self
                .operations
                .get("lease")
                .map(|kind| kind.latency_us)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  leased in {:.3} s: {} buckets = {:.1} leases/s, {} lease requests = {:.1} \
                 lease requests/s; lease latency µs p50 {} p99 {} max {}",
                work.drain_seconds,
                work.buckets_leased,
                work.leases_per_second,
                work.lease_requests,
                work.lease_requests_per_second,
                lease.p50,
                lease.p99,
                lease.max
            );
            let _ = writeln!(out, "  checked in {:.3} s", work.check_seconds);
        } else if let Some(work) = &self.work {
            let _ = writeln!(
                out,
                "  work: {} items, {} clients (max {} buckets per lease), crash {} %: {} crashes, \
                 {} leases lost, {} dead-lettered buckets",
                work.items,
                work.clients,
                work.max_buckets,
                work.crash_percent,
                work.crashes,
                work.leases_lost,
                work.dead_buckets
            );
            let _ = writeln!(
                out,
                "  added {} items in {:.3} s = {:.1} items/s",
                work.items_added, work.add_seconds, work.items_added_per_second
            );
            let _ = writeln!(
                out,
                "  drained in {:.3} s: {} buckets leased ({} lease requests) = {:.1} leases/s, \
                 {} results = {:.1} results/s",
                work.drain_seconds,
                work.buckets_leased,
                work.lease_requests,
                work.leases_per_second,
                work.results_reported,
                work.results_per_second
            );
            let _ = writeln!(out, "  checked in {:.3} s", work.check_seconds);
        }
        if let Some(market) = &self.market {
            let _ = writeln!(
                out,
                "  market: {} users, {} orders ({} sent twice, {} % asked), concurrency {}: \
                 {} created (201), {} replayed (200), {} refused over the cap, {} resent \
                 ({} after a 429)",
                market.users,
                market.orders,
                market.duplicated,
                market.retry_percent,
                market.concurrency,
                market.created,
                market.replayed,
                market.cap_refused,
                market.resent,
                market.rate_limited
            );
            let _ = writeln!(
                out,
                "  placed in {:.3} s = {:.1} orders/s",
                market.place_seconds, market.orders_per_second
            );
            if !market.server_btc.is_empty() {
                let _ = writeln!(
                    out,
                    "  ledger {} BTC; server {} BTC in {} orders (before the run {} BTC), cap {} \
                     BTC; price {}",
                    market.ledger_btc,
                    market.server_btc,
                    market.server_orders,
                    market.server_btc_before,
                    market.cap_btc,
                    if market.price_stable {
                        "stable (cap refusals checked against it)"
                    } else {
                        "moved during the run (cap refusals not checked against a rate)"
                    }
                );
            }
        }
        if !self.op_log.hash.is_empty() {
            let _ = writeln!(
                out,
                "  operation log: {} entries, hash {}",
                self.op_log.count, self.op_log.hash
            );
        }
        if !self.differences.is_empty() {
            let _ = writeln!(out, "  {} differences:", self.differences.len());
            for difference in &self.differences {
                let _ = writeln!(out, "    {difference}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_merge_and_fill_a_report() {
        let mut first = Tally::default();
        first.record("like", Duration::from_micros(100), None);
        first.record(
            "like",
            Duration::from_micros(300),
            Some(&BotError::api(409, "already_liked", "x")),
        );
        let mut second = Tally::default();
        second.record("post", Duration::from_millis(2), None);
        first.merge(&second);
        let mut report = Report::new("social", "embedded", 1);
        first.fill(&mut report, Duration::from_secs(1));
        assert_eq!(report.operations_total, 3);
        assert_eq!(report.errors_total, 1);
        assert_eq!(report.errors["409 already_liked"], 1);
        assert_eq!(report.operations["like"].errors, 1);
        assert!(report.latency_us.max >= 2000 && report.latency_us.max < 2010);
        assert!(report.to_json().contains("\"outcome\": \"finished\""));
    }
}
