//! `switchyard-bot work --lease-only` (the PostgreSQL peer's W4: claim a bucket, never complete
//! it) against an engine opened in-process: every bucket formed is leased exactly once, every item
//! handed out in exactly one bucket and left `leased` on the engine (read again after the run, from
//! the reopened data dir). Also: lying transports (a bucket handed out twice, an item listed as
//! pending) end in `Mismatch`, and `--crash-percent` other than 0 is refused.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_bot::cli::{run_work, WorkPlan, WorkTarget};
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::transport::{Answer, EmbeddedTransport};
use switchyard_bot::work::{self, ItemsPage, LeasedBucket, PoolCounts, WorkMode, WorkOptions};
use switchyard_bot::{Outcome, WorkTransport};
use switchyard_engine::work::{Added, ItemResult, ItemState};
use switchyard_engine::EngineConfig;

const ITEMS: usize = 2000;
const CLIENTS: usize = 8;

fn options(items: usize, clients: usize, max_buckets: usize) -> WorkOptions {
    WorkOptions {
        seed: 11,
        clients,
        items,
        max_buckets,
        crash_percent: 0,
        deadline: Duration::from_secs(300),
        progress: ProgressMode::Off,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Opens `data` again and counts its items by state (and those with a result).
fn items_by_state(data: &Path) -> (usize, usize, usize) {
    let transport = EmbeddedTransport::open(EmbeddedTransport::config(data, None, None)).unwrap();
    let (mut leased, mut other, mut with_results) = (0, 0, 0);
    runtime().block_on(async {
        let mut cursor = None;
        loop {
            let page = transport.items(cursor, 500).await.unwrap();
            for item in &page.items {
                if item.state == ItemState::Leased {
                    leased += 1;
                } else {
                    other += 1;
                }
                if item.results > 0 {
                    with_results += 1;
                }
            }
            match page.next {
                Some(next) if !page.items.is_empty() => cursor = Some(next),
                _ => break,
            }
        }
    });
    transport.shutdown().unwrap();
    (leased, other, with_results)
}

#[test]
fn lease_only_leases_every_bucket_once_with_buckets_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plan = WorkPlan {
        target: WorkTarget::Embedded {
            data_dir: data.clone(),
            lease_seconds: 3600,
            bucket_size: Some(1),
            max_expiries: None,
        },
        options: options(ITEMS, CLIENTS, 1),
        mode: WorkMode::LeaseOnly,
        timeout: Duration::from_secs(10),
        report: None,
    };
    let report = runtime()
        .block_on(run_work(&plan))
        .expect("the engine opens");
    let text = report.render_text();
    assert_eq!(report.outcome, Outcome::Finished, "{text}");
    assert!(report.differences.is_empty(), "{text}");
    let figures = report.work.as_ref().expect("work figures");
    assert!(figures.lease_only, "{text}");
    assert_eq!(figures.items_added, ITEMS as u64);
    // One bucket per item, each leased once; each client's last lease came back empty.
    assert_eq!(figures.buckets_leased, ITEMS as u64, "{text}");
    assert_eq!(
        figures.lease_requests,
        ITEMS as u64 + CLIENTS as u64,
        "{text}"
    );
    assert_eq!(figures.results_reported, 0);
    assert_eq!(figures.crashes, 0);
    assert!(figures.leases_per_second > 0.0, "{text}");
    assert!(figures.lease_requests_per_second > figures.leases_per_second);
    // Each client registered once (the embedded engine lets it hold every bucket); no report.
    assert_eq!(
        report.operations["register"].count, CLIENTS as u64,
        "{text}"
    );
    assert!(!report.operations.contains_key("report"), "{text}");
    assert!(report.operations["lease"].latency_us.p50 > 0, "{text}");
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(phases, ["add", "lease", "check"]);
    assert!(
        text.contains("lease-only") && text.contains("leases/s") && text.contains("lease latency"),
        "{text}"
    );
    // The engine, reopened: every item still leased, none with a result.
    assert_eq!(items_by_state(&data), (ITEMS, 0, 0));
}

#[test]
fn the_binary_runs_lease_only_with_buckets_of_seven() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let report_path = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard-bot"))
        .args(["work", "--embedded", "--data-dir"])
        .arg(&data)
        .args(["--lease-only", "--items", &ITEMS.to_string()])
        .args(["--clients", &CLIENTS.to_string(), "--bucket-size", "7"])
        .args(["--max-buckets", "3", "--seed", "5", "--progress", "off"])
        .arg("--report")
        .arg(&report_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("lease-only"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["outcome"], "finished");
    let work = &report["work"];
    assert_eq!(work["lease_only"], true);
    assert_eq!(work["crash_percent"], 0);
    assert_eq!(work["buckets_leased"], ITEMS.div_ceil(7) as u64);
    assert_eq!(work["results_reported"], 0);
    assert!(work["leases_per_second"].as_f64().unwrap() > 0.0);
    assert!(work["lease_requests_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(report["differences"].as_array().unwrap().len(), 0);
    assert_eq!(items_by_state(&data), (ITEMS, 0, 0));
}

#[test]
fn lease_only_refuses_a_crash_percentage() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard-bot"))
        .args(["work", "--embedded", "--data-dir", "/tmp/never-opened"])
        .args(["--lease-only", "--crash-percent", "10"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--lease-only") && stderr.contains("--crash-percent"),
        "{stderr}"
    );
}

/// How [`Liar`] lies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lie {
    /// The first lease that would come back empty hands out the first bucket again.
    DuplicateBucket,
    /// The first item of each listed page says it is pending.
    PendingItem,
}

/// The embedded engine, with one lie.
struct Liar {
    inner: EmbeddedTransport,
    lie: Lie,
    first: Mutex<Option<LeasedBucket>>,
    repeated: AtomicBool,
}

impl WorkTransport for Liar {
    fn name(&self) -> &'static str {
        "liar"
    }
    async fn add_items(&self, keys: &[String]) -> Answer<Added> {
        self.inner.add_items(keys).await
    }
    async fn register(&self, external_id: &str) -> Answer<String> {
        self.inner.register(external_id).await
    }
    async fn lease(&self, token: &str, max_buckets: usize) -> Answer<Vec<LeasedBucket>> {
        let buckets = self.inner.lease(token, max_buckets).await?;
        if self.lie != Lie::DuplicateBucket {
            return Ok(buckets);
        }
        let mut first = self.first.lock().unwrap();
        if first.is_none() {
            *first = buckets.first().cloned();
        }
        if buckets.is_empty() && !self.repeated.swap(true, Ordering::SeqCst) {
            return Ok(first.iter().cloned().collect());
        }
        Ok(buckets)
    }
    async fn report(
        &self,
        token: &str,
        bucket_id: u64,
        epoch: Option<u32>,
        results: Vec<ItemResult>,
    ) -> Answer<u64> {
        self.inner.report(token, bucket_id, epoch, results).await
    }
    async fn pool(&self) -> Answer<PoolCounts> {
        self.inner.pool().await
    }
    async fn items(&self, cursor: Option<String>, limit: usize) -> Answer<ItemsPage> {
        let mut page = self.inner.items(cursor, limit).await?;
        if self.lie == Lie::PendingItem {
            if let Some(item) = page.items.first_mut() {
                item.state = ItemState::Pending;
            }
        }
        Ok(page)
    }
}

fn run_liar(lie: Lie) -> (switchyard_bot::Report, Option<LeasedBucket>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::for_tests(dir.path());
    config
        .section_mut::<switchyard_engine::work::WorkConfig>()
        .bucket_size = 7;
    config
        .section_mut::<switchyard_engine::work::WorkConfig>()
        .lease_seconds = 3600;
    let liar = Arc::new(Liar {
        inner: EmbeddedTransport::open(config).unwrap(),
        lie,
        first: Mutex::new(None),
        repeated: AtomicBool::new(false),
    });
    // 300 items in 43 buckets over 4 clients: at most 43 held by one client (the cap is 100).
    let report = runtime().block_on(work::run_mode(
        liar.clone(),
        options(300, 4, 1),
        WorkMode::LeaseOnly,
    ));
    liar.inner.shutdown().unwrap();
    let first = liar.first.lock().unwrap().clone();
    (report, first)
}

#[test]
fn a_bucket_handed_out_twice_is_a_mismatch() {
    let (report, first) = run_liar(Lie::DuplicateBucket);
    let text = report.render_text();
    let first = first.expect("a bucket was leased");
    assert_eq!(report.outcome, Outcome::Mismatch, "{text}");
    assert_eq!(report.exit_code, 2);
    // The bucket, and each of its items, once each.
    assert_eq!(report.differences.len(), 1 + first.items.len(), "{text}");
    assert_eq!(
        report.differences[0],
        format!("bucket {}: handed out 2 times, expected once", first.id)
    );
    for key in &first.items {
        let expected = format!("item {key}: handed out in 2 buckets, expected 1");
        assert!(report.differences.contains(&expected), "{expected}\n{text}");
    }
    assert_eq!(report.work.as_ref().unwrap().buckets_leased, 43 + 1);
}

#[test]
fn an_item_the_server_lists_as_pending_is_a_mismatch() {
    let (report, _) = run_liar(Lie::PendingItem);
    let text = report.render_text();
    assert_eq!(report.outcome, Outcome::Mismatch, "{text}");
    // 300 items, pages of 500: one page, so one lie.
    assert_eq!(report.differences.len(), 1, "{text}");
    assert!(
        report.differences[0].contains("server says pending with 0 results, expected leased"),
        "{text}"
    );
}
