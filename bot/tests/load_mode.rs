//! Load mode against a loopback fake: a tokio listener that answers every request head with a
//! fixed `200 {"status":"ok"}` after an optional delay (keep-alive, pipelined requests answered in
//! order). Checks that the open-model generator sends exactly the scheduled arrivals and reads
//! every answer, with and without pipelining, and that latency is measured from the scheduled
//! send time: against a server slower than the arrival rate, the corrected latency grows with
//! the queue while the latency from the actual write stays near the service time.

use std::time::Duration;

use switchyard_bot::load::{self, LoadOptions, Mix};
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}";

/// Starts the fake on an ephemeral port; returns its URL. It lives as long as the runtime.
async fn fake_server(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(read) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        buffer.drain(..end + 4);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        if stream.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("http://{address}")
}

fn options(
    url: String,
    rate: f64,
    duration: Duration,
    connections: usize,
    pipeline: usize,
) -> LoadOptions {
    LoadOptions {
        url,
        seed: 1,
        rate,
        duration,
        connections,
        pipeline,
        threads: 1,
        mix: Mix::parse("health=100").unwrap(),
        setup_users: 0,
        setup_posts: 0,
        timeout: Duration::from_secs(5),
        progress: ProgressMode::Off,
    }
}

#[tokio::test]
async fn every_scheduled_arrival_is_sent_and_answered() {
    let url = fake_server(Duration::ZERO).await;
    for pipeline in [1, 4] {
        let report = load::run(options(
            url.clone(),
            2_000.0,
            Duration::from_millis(500),
            4,
            pipeline,
        ))
        .await;
        assert_eq!(
            report.outcome,
            Outcome::Finished,
            "{}",
            report.render_text()
        );
        let figures = report.load.as_ref().unwrap();
        assert_eq!(figures.scheduled, 1_000);
        assert_eq!(figures.sent, 1_000, "{}", report.render_text());
        assert_eq!(figures.completed, 1_000, "{}", report.render_text());
        assert_eq!(figures.unanswered, 0);
        assert_eq!(figures.statuses.get(&200), Some(&1_000));
        assert_eq!(report.operations["health"].count, 1_000);
        assert_eq!(report.errors_total, 0);
    }
}

#[tokio::test]
async fn latency_counts_from_the_scheduled_time() {
    // 100 arrivals/s on one connection, 20 ms per answer (50/s): the queue grows by one request
    // every 20 ms for the 0.5 s of arrivals, so the last answers come ~0.5 s after their
    // scheduled time while each one took ~20 ms from its write.
    let url = fake_server(Duration::from_millis(20)).await;
    let report = load::run(options(url, 100.0, Duration::from_millis(500), 1, 1)).await;
    assert_eq!(
        report.outcome,
        Outcome::Finished,
        "{}",
        report.render_text()
    );
    let figures = report.load.as_ref().unwrap();
    assert_eq!(figures.completed, 50, "{}", report.render_text());
    let corrected = figures.latency_from_schedule_us;
    let uncorrected = figures.latency_from_send_us;
    assert!(uncorrected.max < 100_000, "{}", report.render_text());
    assert!(corrected.max > 300_000, "{}", report.render_text());
    assert!(
        corrected.p50 > 3 * uncorrected.p50,
        "{}",
        report.render_text()
    );
}

#[tokio::test]
async fn an_unreachable_server_is_an_error() {
    let report = load::run(options(
        "http://127.0.0.1:1".into(),
        10.0,
        Duration::from_millis(100),
        1,
        1,
    ))
    .await;
    assert_eq!(report.outcome, Outcome::Error);
    assert_eq!(report.exit_code, 1);
    assert!(
        report
            .failure
            .as_deref()
            .unwrap_or_default()
            .contains("connect"),
        "{report:?}"
    );
}
