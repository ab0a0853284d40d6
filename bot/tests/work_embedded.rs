//! The work scenario against an engine opened in-process (`work --embedded`): clients lease,
//! report, crash mid-bucket (their leases expire through the engine's durable timers on the
//! system clock, with a 1-second `work.lease_seconds`) and come back under new registrations;
//! every item must end done exactly once. Also: the real binary's exit code and JSON report, a
//! pure throughput run (`--crash-percent 0`), and a lying transport whose invented extra result
//! the check must catch (exit code 2).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use switchyard_bot::cli::{run_work, WorkPlan, WorkTarget};
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::transport::{Answer, EmbeddedTransport};
use switchyard_bot::work::{self, ItemsPage, LeasedBucket, PoolCounts, WorkMode, WorkOptions};
use switchyard_bot::{Outcome, WorkTransport};
use switchyard_engine::work::{Added, ItemResult};
use switchyard_engine::EngineConfig;

fn options(crash_percent: u64) -> WorkOptions {
    WorkOptions {
        seed: 42,
        clients: 4,
        items: 300,
        max_buckets: 2,
        crash_percent,
        deadline: Duration::from_secs(120),
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

#[test]
fn embedded_work_drains_exactly_once_despite_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let plan = WorkPlan {
        target: WorkTarget::Embedded {
            data_dir: dir.path().join("data"),
            lease_seconds: 1,
            bucket_size: Some(10),
            // Crashed buckets expire several times in a row now and then; never dead-letter.
            max_expiries: Some(1000),
        },
        options: options(20),
        mode: WorkMode::Drain,
        timeout: Duration::from_secs(10),
        report: None,
    };
    let report = runtime()
        .block_on(run_work(&plan))
        .expect("the engine opens");
    let text = report.render_text();
    assert_eq!(report.outcome, Outcome::Finished, "{text}");
    assert!(report.differences.is_empty(), "{text}");
    assert_eq!(report.transport, "embedded");
    let figures = report.work.as_ref().expect("work figures");
    assert_eq!(figures.items_added, 300);
    assert!(figures.crashes > 0, "20 % crashes over 30+ buckets: {text}");
    // Crashed clients' half-reports count too, so at least every item was reported once.
    assert!(figures.results_reported >= 300, "{text}");
    assert!(figures.buckets_leased >= 30, "{text}");
    assert!(
        report.operations["register"].count > 4,
        "crashed clients came back: {text}"
    );
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(phases, ["add", "drain", "check"]);
    assert!(
        text.contains("leases/s") && text.contains("results/s"),
        "{text}"
    );
}

#[test]
fn the_binary_runs_a_pure_throughput_drain_and_refuses_a_second_run_with_the_same_seed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let report_path = dir.path().join("report.json");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_switchyard-bot"))
            .args(["work", "--embedded", "--data-dir"])
            .arg(&data)
            .args(["--clients", "4", "--items", "500", "--crash-percent", "0"])
            .args(["--bucket-size", "10", "--max-buckets", "3", "--seed", "7"])
            .args(["--progress", "plain", "--report"])
            .arg(&report_path)
            .output()
            .unwrap()
    };
    let output = run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("seed 7"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["outcome"], "finished");
    assert_eq!(report["mode"], "work");
    let work = &report["work"];
    assert_eq!(work["crashes"], 0);
    assert_eq!(work["leases_lost"], 0);
    // No crash: every item reported exactly once, in exactly 50 buckets of 10.
    assert_eq!(work["results_reported"], 500);
    assert_eq!(work["buckets_leased"], 50);
    assert!(work["results_per_second"].as_f64().unwrap() > 0.0);
    assert!(work["leases_per_second"].as_f64().unwrap() > 0.0);
    assert!(work["drain_seconds"].as_f64().unwrap() > 0.0);

    // The same seed on the same data dir: the keys exist, so the check could not be exact.
    let output = run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("already exist"), "{stdout}");
}

#[test]
fn work_usage_errors_exit_1() {
    for arguments in [
        &["work", "--embedded"][..],
        &[
            "work",
            "--embedded",
            "--data-dir",
            "/tmp/x",
            "--url",
            "http://127.0.0.1:1",
        ],
        &[
            "work",
            "--url",
            "http://127.0.0.1:1",
            "--admin-token",
            "t",
            "--lease-seconds",
            "1",
        ],
        &[
            "work",
            "--embedded",
            "--data-dir",
            "/tmp/x",
            "--crash-percent",
            "101",
        ],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_switchyard-bot"))
            .args(arguments)
            .env_remove("SWITCHYARD_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{arguments:?}");
    }
}

/// The embedded engine, with one lie: every item listed with a result history says it has one
/// result more than it has (a duplicate result the exactly-once check must see).
struct DuplicatingResults {
    inner: EmbeddedTransport,
}

impl WorkTransport for DuplicatingResults {
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
        self.inner.lease(token, max_buckets).await
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
        if let Some(item) = page.items.iter_mut().find(|item| item.results > 0) {
            item.results += 1;
        }
        Ok(page)
    }
}

#[test]
fn a_duplicated_result_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::for_tests(dir.path());
    config
        .section_mut::<switchyard_engine::work::WorkConfig>()
        .bucket_size = 10;
    let inner = EmbeddedTransport::open(config).unwrap();
    let liar = Arc::new(DuplicatingResults { inner });
    let report = runtime().block_on(work::run(liar.clone(), options(0)));
    liar.inner.shutdown().unwrap();
    let text = report.render_text();
    assert_eq!(report.outcome, Outcome::Mismatch, "{text}");
    assert_eq!(report.exit_code, 2);
    // The first item of each listed page (300 items, pages of 500: one page) is the lie.
    assert_eq!(report.differences.len(), 1, "{text}");
    assert!(
        report.differences[0].contains("with 2 results, expected done with 1"),
        "{text}"
    );
}
