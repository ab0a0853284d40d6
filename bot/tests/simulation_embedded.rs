//! The simulation end to end through the real `switchyard-bot` binary against an embedded
//! engine: small sizes, four concurrent tasks, `--check-every-round`. Checks the exit code is 0,
//! and reads the `--report` JSON to check every phase ran, no check found a difference, and the
//! ledger is non-trivial. Also checks the exit code of a run whose server is unreachable (1) and
//! of a usage error (1, not clap's 2, which means a mismatch here).

use std::process::Command;

fn bot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard-bot"))
}

#[test]
fn embedded_simulation_with_concurrency_finishes_clean() {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let output = bot()
        .args(["social", "--embedded", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--users", "20", "--max-posts", "3", "--max-likes", "4"])
        .args(["--concurrency", "4", "--seed", "11", "--check-every-round"])
        .args([
            "--hash-memory-kib",
            "64",
            "--hash-iterations",
            "1",
            "--progress",
            "plain",
        ])
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
    assert!(stdout.contains("seed 11"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["outcome"], "finished");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["transport"], "embedded");
    assert_eq!(report["differences"].as_array().unwrap().len(), 0);
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 3, "{phases:?}");
    assert_eq!(report["ledger"]["users"], 20);
    assert!(report["ledger"]["posts"].as_u64().unwrap() >= 20);
    assert!(report["ledger"]["likes"].as_u64().unwrap() > 0);
    assert_eq!(report["operations"]["sign_up"]["count"], 20);
    assert_eq!(report["operations"]["login"]["count"], 20);
    assert!(
        report["operations"]["self_check"]["count"]
            .as_u64()
            .unwrap()
            >= 3
    );
    assert!(report["latency_us"]["p99"].as_u64().unwrap() > 0);
    assert_eq!(report["errors_total"], 0);
}

#[test]
fn unreachable_server_exits_1_and_usage_errors_exit_1() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let output = bot()
        .args([
            "social",
            "--url",
            "http://127.0.0.1:1",
            "--users",
            "2",
            "--seed",
            "5",
        ])
        .args(["--progress", "off", "--timeout-ms", "2000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("replay with --seed 5"), "{stdout}");
    assert!(stdout.contains("transport connect"), "{stdout}");

    let output = bot().args(["social", "--users", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let output = bot().args(["social", "--users", "3"]).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "neither --url nor --embedded"
    );
    let help = bot().args(["social", "--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("consistency mismatch") && help.contains("Phase III"),
        "{help}"
    );
}
