//! The foundation's crash test (STYLE 14): nothing acknowledged is lost, nothing half-applied
//! survives, across SIGKILLs of the real binary at random moments.
//!
//! Each cycle starts `switchyard` on one persistent temp data dir, checks every counter against
//! the ledger of the cycles before, then runs WRITER_COUNT threads that each own some counters and
//! loop `POST /api/v1/demo/counters/{id}` `{"by": 1, "mirror_to": partner(id)}`, recording every
//! attempt and every acknowledged (200) value, and SIGKILLs the process after a random delay.
//! After the last cycle a final start checks once more. For every counter:
//! - value >= the highest acknowledged value (acknowledged means durable);
//! - value <= the attempts made (nothing is invented or applied twice);
//! - the partner's mirror of it equals its value (both events are one WAL record: a crash keeps
//!   both or neither).
//!
//! Randomness comes from a seed printed at the start (set SWITCHYARD_SEED to replay one).
//! SWITCHYARD_SLOW_TESTS=1 runs SLOW_CYCLE_COUNT cycles instead of CYCLE_COUNT.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{request, Connection, Server};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// Kill/restart cycles in CI; each takes well under a few seconds.
const CYCLE_COUNT: usize = 3;
/// Cycles with SWITCHYARD_SLOW_TESTS=1.
const SLOW_CYCLE_COUNT: usize = 30;
/// Concurrent writer threads, each on its own keep-alive connection.
const WRITER_COUNT: u64 = 8;
/// Counters each writer owns (written in turn).
const COUNTERS_PER_WRITER: u64 = 2;
/// The SIGKILL comes this long after the writers start, uniformly at random.
const KILL_DELAY_MS_MIN: u64 = 50;
const KILL_DELAY_MS_MAX: u64 = 600;
/// Bounds on one writer in one cycle, whatever happens to the server.
const WRITES_PER_CYCLE_MAX: u64 = 200_000;
const WRITER_TIME_MAX: Duration = Duration::from_secs(20);
/// Partners receive mirrors only; they are never written directly.
const PARTNER_OFFSET: u64 = 1_000_000;

fn partner(id: u64) -> u64 {
    id + PARTNER_OFFSET
}

/// What the writers know about one counter, over all cycles.
#[derive(Debug, Default, Clone, Copy)]
struct Ledger {
    /// Requests sent (acknowledged or not).
    attempts: u64,
    /// Highest value a 200 reported.
    acknowledged_max: i64,
}

/// rand's xoshiro256++ (the project's seeded generator): the delays, replayable from the
/// printed seed.
struct Rng(Xoshiro256PlusPlus);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    fn between(&mut self, min: u64, max: u64) -> u64 {
        self.0.random_range(min..=max)
    }
}

fn seed() -> u64 {
    if let Ok(text) = std::env::var("SWITCHYARD_SEED") {
        return text.parse().expect("SWITCHYARD_SEED is a u64");
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    nanos | 1
}

fn counter_ids() -> Vec<u64> {
    (1..=WRITER_COUNT * COUNTERS_PER_WRITER).collect()
}

/// Checks every counter against the ledger; `context` names the seed and cycle.
fn verify(server: &Server, ledger: &BTreeMap<u64, Ledger>, context: &str) {
    for id in counter_ids() {
        let entry = ledger.get(&id).copied().unwrap_or_default();
        let response = request(
            server.addr,
            "GET",
            &format!("/api/v1/demo/counters/{id}"),
            None,
        );
        assert_eq!(
            response.status,
            200,
            "{context}: counter {id}: {}",
            response.text()
        );
        let value = response.json()["value"].as_i64().expect("value");
        assert!(
            value >= entry.acknowledged_max,
            "{context}: counter {id} lost acknowledged writes: value {value} < acknowledged {}",
            entry.acknowledged_max
        );
        assert!(
            value as u64 <= entry.attempts,
            "{context}: counter {id} has value {value} but only {} attempts",
            entry.attempts
        );
        let response = request(
            server.addr,
            "GET",
            &format!("/api/v1/demo/counters/{}", partner(id)),
            None,
        );
        assert_eq!(response.status, 200, "{context}: partner of {id}");
        let mirror = response.json()["mirrors"][id.to_string()]
            .as_i64()
            .unwrap_or(0);
        assert_eq!(
            mirror, value,
            "{context}: counter {id} is {value} but its partner's mirror says {mirror}"
        );
    }
}

/// One writer: its counters in turn until stopped, the server dies, or a bound is hit.
fn write_until_stopped(
    server_addr: std::net::SocketAddr,
    ids: Vec<u64>,
    ledger: Arc<Mutex<BTreeMap<u64, Ledger>>>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let Ok(mut connection) = Connection::open(server_addr) else {
        return 0;
    };
    let started = Instant::now();
    let mut acknowledged = 0;
    for write_index in 0..WRITES_PER_CYCLE_MAX {
        if stop.load(Ordering::Acquire) || started.elapsed() > WRITER_TIME_MAX {
            break;
        }
        let id = ids[(write_index % ids.len() as u64) as usize];
        ledger
            .lock()
            .expect("ledger")
            .entry(id)
            .or_default()
            .attempts += 1;
        let body = format!(r#"{{"by": 1, "mirror_to": {}}}"#, partner(id));
        let path = format!("/api/v1/demo/counters/{id}");
        match connection.send("POST", &path, Some(&body), true) {
            Ok(response) if response.status == 200 => {
                let value = response.json()["value"].as_i64().expect("value");
                let mut ledger = ledger.lock().expect("ledger");
                let entry = ledger.entry(id).or_default();
                entry.acknowledged_max = entry.acknowledged_max.max(value);
                acknowledged += 1;
            }
            // Back-pressure: nothing changed; try again.
            Ok(response) if response.status == 503 => {}
            Ok(response) => panic!(
                "{path}: unexpected {}: {}",
                response.status,
                response.text()
            ),
            // The server was killed.
            Err(_) => break,
        }
    }
    acknowledged
}

#[test]
fn sigkill_loses_no_acknowledged_write_and_splits_no_record() {
    let slow = std::env::var("SWITCHYARD_SLOW_TESTS").is_ok_and(|v| v == "1");
    let cycle_count = if slow { SLOW_CYCLE_COUNT } else { CYCLE_COUNT };
    let seed = seed();
    eprintln!(
        "crash test: seed {seed} (SWITCHYARD_SEED={seed} replays the delays), {cycle_count} cycles"
    );
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    // Small segments so cycles also cross segment rolls; no preallocation to keep temp dirs small.
    let args = [
        "--set",
        "engine.wal_segment_bytes_max=262144",
        "--set",
        "engine.wal_preallocate=false",
    ];
    let ledger: Arc<Mutex<BTreeMap<u64, Ledger>>> = Arc::default();
    let test_started = Instant::now();
    let mut acknowledged_total = 0;

    for cycle in 0..cycle_count {
        let context = format!("seed {seed}, cycle {cycle}");
        let mut server = Server::start(dir.path(), &args);
        server.wait_ready();
        verify(&server, &ledger.lock().expect("ledger"), &context);

        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITER_COUNT)
            .map(|writer| {
                let ids: Vec<u64> = (0..COUNTERS_PER_WRITER)
                    .map(|k| 1 + writer * COUNTERS_PER_WRITER + k)
                    .collect();
                let (addr, ledger, stop) = (server.addr, ledger.clone(), stop.clone());
                std::thread::spawn(move || write_until_stopped(addr, ids, ledger, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(
            rng.between(KILL_DELAY_MS_MIN, KILL_DELAY_MS_MAX),
        ));
        server.kill();
        stop.store(true, Ordering::Release);
        for writer in writers {
            acknowledged_total += writer.join().expect("writer thread");
        }
    }

    let server = Server::start(dir.path(), &args);
    server.wait_ready();
    verify(
        &server,
        &ledger.lock().expect("ledger"),
        &format!("seed {seed}, final"),
    );
    assert!(
        acknowledged_total > 0,
        "seed {seed}: no write was ever acknowledged"
    );
    eprintln!(
        "crash test: {cycle_count} cycles, {acknowledged_total} acknowledged writes, {:?}",
        test_started.elapsed()
    );
}
