//! `switchyard-bot work` against the real `switchyard` binary with small sizes and a 1 s lease:
//! clients lease, report, crash mid-bucket and come back under new registrations; every item
//! must end done exactly once (outcome Finished, exit code 0).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Server;
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::work::{self, HttpWork, WorkOptions};
use switchyard_bot::Outcome;

#[test]
fn the_work_bot_drains_the_pool_exactly_once_despite_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--admin-token",
            "admin-secret",
            "--set",
            "work.bucket_size=10",
            "--set",
            "work.lease_seconds=1",
            // A bucket abandoned by crashing clients several leases in a row is dead-lettered
            // after work.max_expiries (5) expiries, a legitimate end that leaves its items
            // pending (a 1-in-a-few-hundred run here). Dead-lettering has its own tests; this
            // one is about exactly-once through crashes, so the cap is out of reach.
            "--set",
            "work.max_expiries=1000",
        ],
    );
    server.wait_ready();
    let options = WorkOptions {
        seed: 42,
        clients: 4,
        items: 300,
        max_buckets: 2,
        crash_percent: 20,
        deadline: Duration::from_secs(60),
        progress: ProgressMode::Off,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(async {
        let transport = HttpWork::new(
            &format!("http://{}", server.addr),
            options.clients,
            Duration::from_secs(10),
            "admin-secret",
        )
        .expect("a client for the server");
        work::run(Arc::new(transport), options).await
    });
    assert_eq!(
        report.outcome,
        Outcome::Finished,
        "{}",
        report.render_text()
    );
    assert!(report.differences.is_empty());
    assert!(report.operations.contains_key("report"));
    let figures = report.work.as_ref().expect("work figures");
    assert_eq!(figures.items_added, 300);
    assert!(figures.results_reported >= 300, "{figures:?}");
    assert!(figures.leases_per_second > 0.0 && figures.results_per_second > 0.0);
}
