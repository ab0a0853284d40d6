//! Crash test of dispatch (issue 15): a 10,000-recipient dispatch on the webhook channel to a
//! loopback receiver; the real `switchyard` binary is killed with SIGKILL in the middle of the
//! fan-out and restarted on the same data dir. Then:
//! - every recipient is delivered: the receiver saw every notification's `webhook-id`, and the
//!   server lists every notification `sent`;
//! - a receiver that deduplicates by `webhook-id` (the idempotency key) delivered each once;
//!   the deliveries it saw twice (what a non-deduplicating receiver would have delivered twice)
//!   are reported, and are at most what the server counts as `possible_duplicates`, which is at
//!   most what was in flight at the kill (`notify.batches_in_flight` × `notify.batch_size`);
//! - a dispatch waiting for its start time, and one waiting for its condition, still wait.
//!
//! `SWITCHYARD_SLOW_TESTS=1` runs more cycles.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{call, check, Server, ADMIN, FAST_HASH};

const RECIPIENTS: usize = 10_000;
const BATCH_SIZE: usize = 128;
const BATCHES_IN_FLIGHT: usize = 4;

/// The receiver's books: deliveries per `webhook-id`.
#[derive(Default)]
struct Receiver {
    seen: Mutex<HashMap<String, u32>>,
    total: AtomicU64,
}

impl Receiver {
    fn unique(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn duplicates(&self) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .values()
            .map(|n| u64::from(n - 1))
            .sum()
    }
}

/// A loopback webhook receiver (HTTP/1.1, keep-alive): answers 200 to every POST and counts
/// its `webhook-id`s.
fn receiver(books: Arc<Receiver>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let books = books.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut id) = (0usize, None);
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        if header == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                            if name.eq_ignore_ascii_case("webhook-id") {
                                id = Some(value.trim().to_string());
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let id = id.expect("every delivery carries webhook-id");
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(
                        format!("notification-{}", body["notification_id"]),
                        id,
                        "the key names the notification"
                    );
                    *books.seen.lock().unwrap().entry(id).or_insert(0) += 1;
                    books.total.fetch_add(1, Ordering::Relaxed);
                    let response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                    if writer.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn post(addr: SocketAddr, path: &str, body: serde_json::Value) -> u64 {
    let response = call(addr, "POST", path, Some(ADMIN), Some(&body.to_string()));
    check(&response, 201, None);
    response.json()["id"].as_u64().expect("an id")
}

/// Every notification of dispatch `id` with status `sent`.
fn sent(addr: SocketAddr, id: u64) -> usize {
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/notifications?dispatch_id={id}&status=sent&limit=500");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = call(addr, "GET", &path, Some(ADMIN), None);
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        count += page["items"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return count,
        }
    }
}

fn dispatch_status(addr: SocketAddr, id: u64) -> serde_json::Value {
    let response = call(
        addr,
        "GET",
        &format!("/api/v1/dispatches/{id}?limit=1"),
        Some(ADMIN),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

fn cycle(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let books = Arc::new(Receiver::default());
    let hook = receiver(books.clone());
    let batch = format!("notify.batch_size={BATCH_SIZE}");
    let window = format!("notify.batches_in_flight={BATCHES_IN_FLIGHT}");
    let mut args: Vec<&str> = FAST_HASH.to_vec();
    args.extend_from_slice(&["--admin-token", ADMIN, "--set", &batch, "--set", &window]);
    let mut server = Server::start(dir.path(), &args);
    server.wait_ready();
    let addr = server.addr;

    let group = post(addr, "/api/v1/groups", serde_json::json!({"name": "all"}));
    // Contacts from 8 threads (each durable before the next).
    std::thread::scope(|scope| {
        for part in 0..8 {
            scope.spawn(move || {
                for i in (part..RECIPIENTS).step_by(8) {
                    post(
                        addr,
                        "/api/v1/contacts",
                        serde_json::json!({
                            "name": format!("site {i}"),
                            "webhook_url": format!("http://{hook}/hook/{i}"),
                            "group_ids": [group],
                        }),
                    );
                }
            });
        }
    });
    let event_type = post(
        addr,
        "/api/v1/event-types",
        serde_json::json!({"name": "Curtail", "group_ids": [group], "channels": ["webhook"]}),
    );
    let program = post(
        addr,
        "/api/v1/programs",
        serde_json::json!({"name": "Peak", "message": "Reduce load now"}),
    );
    let created = call(
        addr,
        "POST",
        "/api/v1/dispatches",
        Some(ADMIN),
        Some(
            &serde_json::json!({
                "program_id": program,
                "event_type_id": event_type,
                "start_time": "2020-01-01T00:00:00Z",
            })
            .to_string(),
        ),
    );
    check(&created, 201, None);
    let id = created.json()["id"].as_u64().unwrap();
    assert_eq!(created.json()["recipients"], RECIPIENTS as u64);

    // Two that wait through the kill: one for its start time, one for its condition.
    let waiting = |extra: serde_json::Value| {
        let mut body = serde_json::json!({"program_id": program, "event_type_id": event_type});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let response = call(
            addr,
            "POST",
            "/api/v1/dispatches",
            Some(ADMIN),
            Some(&body.to_string()),
        );
        check(&response, 201, None);
        response.json()["id"].as_u64().unwrap()
    };
    let scheduled = waiting(serde_json::json!({"start_time": "2099-01-01T00:00:00Z"}));
    let conditional = waiting(serde_json::json!({
        "start_time": "2020-01-01T00:00:00Z",
        "condition": {"signal": "btc_eur", "op": "<=", "value": "1"},
    }));

    // Kill at a seeded point of the fan-out: after 10% to 70% of the deliveries.
    let kill_at = (RECIPIENTS as u64) * (10 + seed * 23 % 61) / 100;
    let deadline = Instant::now() + Duration::from_secs(120);
    while books.total.load(Ordering::Relaxed) < kill_at {
        assert!(
            Instant::now() < deadline,
            "the fan-out stalled before the kill"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill();
    let at_kill = books.total.load(Ordering::Relaxed);

    let server = Server::start(dir.path(), &args);
    server.wait_ready();
    let addr = server.addr;
    let deadline = Instant::now() + Duration::from_secs(180);
    let view = loop {
        let view = dispatch_status(addr, id);
        if view["status"] == "done" {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "not done after the restart: {view} (receiver saw {} of {RECIPIENTS})",
            books.unique()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(books.unique(), RECIPIENTS, "every recipient delivered");
    assert_eq!(dispatch_status(addr, scheduled)["status"], "scheduled");
    assert_eq!(
        dispatch_status(addr, conditional)["status"],
        "waiting_condition"
    );
    assert_eq!(
        sent(addr, id),
        RECIPIENTS,
        "every notification recorded sent"
    );
    let duplicates = books.duplicates();
    let possible = view["possible_duplicates"].as_u64().unwrap_or(0);
    eprintln!(
        "cycle {seed}: killed after {at_kill} deliveries; a non-deduplicating receiver would have \
         delivered {duplicates} twice; the server counted {possible} possible duplicates"
    );
    assert!(
        duplicates <= possible,
        "every duplicate is counted: {duplicates} seen, {possible} counted"
    );
    assert!(
        possible <= (BATCH_SIZE * BATCHES_IN_FLIGHT) as u64,
        "at most what was in flight: {possible}"
    );
    server.terminate();
}

#[test]
fn a_killed_dispatch_delivers_every_recipient_once_after_restart() {
    let cycles = if std::env::var_os("SWITCHYARD_SLOW_TESTS").is_some() {
        5
    } else {
        1
    };
    for seed in 0..cycles {
        cycle(seed);
    }
}
