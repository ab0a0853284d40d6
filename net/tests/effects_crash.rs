//! Effects in flight at a kill -9 (issue 13): writers add to demo counters with a `notify_url`
//! (each add asks for a `demo.notify` effect: the new value POSTed to a loopback receiver with
//! an `Idempotency-Key`), the real binary is SIGKILLed at a seeded moment and restarted. After
//! the restart every acknowledged add's effect must arrive: a receiver that deduplicates by key
//! sees each exactly once, and one that does not sees a key twice only if that key had already
//! reached it before the kill (it was in flight: delivered, completion not yet recorded).
//!
//! CI runs ROUNDS rounds; `SWITCHYARD_SLOW_TESTS=1` runs SLOW_ROUNDS.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{call, Server};

const ROUNDS: usize = 2;
const SLOW_ROUNDS: usize = 20;
const WRITERS: u64 = 6;
const ADMIN: &str = "effects-admin";
const KILL_DELAY_MS_MIN: u64 = 200;
const KILL_DELAY_MS_MAX: u64 = 900;

/// Every POST the receiver got: key → (deliveries by the first process, by the restarted one).
#[derive(Default)]
struct Received {
    by_key: BTreeMap<String, (u32, u32)>,
}

/// A loopback HTTP receiver that answers 200 to every POST and records its Idempotency-Key.
fn receiver(received: Arc<Mutex<Received>>, restarted: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (received, restarted) = (received.clone(), restarted.clone());
            std::thread::spawn(move || serve(stream, &received, &restarted));
        }
    });
    addr
}

/// Serves the keep-alive requests of one connection.
fn serve(stream: std::net::TcpStream, received: &Mutex<Received>, restarted: &AtomicBool) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut key = None;
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "idempotency-key" => key = Some(value.trim().to_string()),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Some(key) = key {
            let after = restarted.load(Ordering::SeqCst);
            let mut received = received.lock().unwrap();
            let entry = received.by_key.entry(key).or_default();
            if after {
                entry.1 += 1;
            } else {
                entry.0 += 1;
            }
        }
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

fn round(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let received = Arc::new(Mutex::new(Received::default()));
    let restarted = Arc::new(AtomicBool::new(false));
    let hook = receiver(received.clone(), restarted.clone());
    let args = ["--admin-token", ADMIN];
    let mut server = Server::start(dir.path(), &args);
    server.wait_ready();
    let stop = Arc::new(AtomicBool::new(false));
    // Per counter (one writer each): adds acknowledged, and whether one was in flight.
    let acknowledged: Arc<Mutex<BTreeMap<u64, (u64, bool)>>> = Arc::default();
    let mut writers = Vec::new();
    for counter in 1..=WRITERS {
        let (stop, acknowledged, addr) = (stop.clone(), acknowledged.clone(), server.addr);
        let url = format!("http://{hook}/hook");
        writers.push(std::thread::spawn(move || {
            let body = serde_json::json!({"by": 1, "notify_url": url}).to_string();
            let path = format!("/api/v1/demo/counters/{counter}");
            while !stop.load(Ordering::SeqCst) {
                let answer = common::try_call(addr, "POST", &path, Some(ADMIN), Some(&body));
                let mut acknowledged = acknowledged.lock().unwrap();
                let entry = acknowledged.entry(counter).or_default();
                match answer {
                    Ok(response) if response.status == 200 => entry.0 += 1,
                    Ok(response) if response.status == 503 => {}
                    Ok(response) => panic!("{} {}", response.status, response.text()),
                    // The kill: this add may or may not have landed.
                    Err(_) => {
                        entry.1 = true;
                        return;
                    }
                }
            }
        }));
    }
    let delay = KILL_DELAY_MS_MIN + seed % (KILL_DELAY_MS_MAX - KILL_DELAY_MS_MIN);
    std::thread::sleep(Duration::from_millis(delay));
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    // Deliveries are told apart by process: whatever arrives from here on was sent by the new
    // one. (Flipping this at the kill instead counted a POST the dying process had already
    // sent, still being read by the receiver, as the new process's: a CI run saw a key
    // "delivered 0 times before the kill and 2 after".) The pause lets the receiver finish
    // reading what the dead process sent.
    std::thread::sleep(Duration::from_millis(300));
    restarted.store(true, Ordering::SeqCst);
    let server = Server::start(dir.path(), &args);
    server.wait_ready();

    // Every acknowledged add's effect arrives (and an unanswered one may).
    let acknowledged = acknowledged.lock().unwrap().clone();
    let expected: Vec<String> = acknowledged
        .iter()
        .flat_map(|(counter, (acked, _))| {
            (1..=*acked).map(move |seq| format!("demo-counter-{counter}-{seq}"))
        })
        .collect();
    assert!(
        !expected.is_empty(),
        "seed {seed:#x}: nothing was acknowledged"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing: Vec<String> = {
            let received = received.lock().unwrap();
            expected
                .iter()
                .filter(|key| !received.by_key.contains_key(*key))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed:#x}: {} acknowledged effects never arrived, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing else is pending: the server's outbox is empty once all arrived.
    let value = |counter: u64| {
        call(
            server.addr,
            "GET",
            &format!("/api/v1/demo/counters/{counter}"),
            None,
            None,
        )
        .json()["value"]
            .as_u64()
            .unwrap()
    };
    let received = received.lock().unwrap();
    let mut duplicates = 0;
    for (key, (before, after)) in &received.by_key {
        let total = before + after;
        assert!(total >= 1);
        if total > 1 {
            duplicates += total - 1;
            assert!(
                *before == 1 && *after == 1,
                "seed {seed:#x}: {key} was delivered {before} times before the kill and {after} \
                 after: only an effect in flight at the kill may arrive again, once"
            );
        }
        // Only acknowledged adds, or the one in flight per counter, asked for an effect.
        let (counter, seq) = parse(key);
        let (acked, in_flight) = acknowledged[&counter];
        assert!(
            seq <= acked || (in_flight && seq == acked + 1),
            "seed {seed:#x}: {key} was never asked for"
        );
        assert!(seq <= value(counter), "{key} beyond the counter's value");
    }
    eprintln!(
        "seed {seed:#x}: {} acknowledged effects, {} distinct keys received, {duplicates} \
         duplicates (in flight at the kill)",
        expected.len(),
        received.by_key.len()
    );
}

fn parse(key: &str) -> (u64, u64) {
    let rest = key.strip_prefix("demo-counter-").expect("a demo key");
    let (counter, seq) = rest.rsplit_once('-').expect("counter-seq");
    (counter.parse().unwrap(), seq.parse().unwrap())
}

#[test]
fn effects_in_flight_at_a_kill_arrive_exactly_once_at_a_deduplicating_receiver() {
    let rounds = if std::env::var("SWITCHYARD_SLOW_TESTS").is_ok_and(|v| v == "1") {
        SLOW_ROUNDS
    } else {
        ROUNDS
    };
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for round_index in 0..rounds {
        round(
            base.wrapping_mul(6364136223846793005)
                .wrapping_add(round_index as u64 * 7919),
        );
    }
}
