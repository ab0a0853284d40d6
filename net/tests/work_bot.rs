//! `switchyard-bot work` against the real `switchyard` binary with small sizes and a 1 s lease:
//! clients lease, report, crash mid-bucket and come back under new registrations; every item
//! must end done exactly once (outcome Finished, exit code 0).

mod common;

use std::time::Duration;

use common::Server;
use switchyard_bot::work::{self, WorkOptions};
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
        ],
    );
    server.wait_ready();
    let options = WorkOptions {
        url: format!("http://{}", server.addr),
        seed: 42,
        admin_token: "admin-secret".into(),
        clients: 4,
        items: 300,
        max_buckets: 2,
        crash_percent: 20,
        timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(60),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(work::run(options));
    assert_eq!(
        report.outcome,
        Outcome::Finished,
        "{}",
        report.render_text()
    );
    assert!(report.differences.is_empty());
    assert!(report.operations.contains_key("report"));
}
