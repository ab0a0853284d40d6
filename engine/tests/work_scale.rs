//! Scale of the work workload, embedded: a pool is filled through `add_items` (18 000 keys per
//! call), then `CLIENTS` concurrent clients lease up to `BUCKETS_PER_LEASE` buckets at a time
//! and report each bucket whole, until the pool is drained. Checks that every item is done
//! exactly once and no bucket was granted twice, and prints the timings (add, drain, leases/s,
//! results/s) and the peak RSS. By default 20 000 items; with `SWITCHYARD_SLOW_TESTS=1`,
//! 1 000 000 (run it with `--release --nocapture`). Sync durability on a real directory.
//! Knobs: `WORK_SCALE_CHECKPOINT_MS`, `WORK_SCALE_SLED_CACHE_MIB`, and for the lease test
//! `WORK_SCALE_LEASES`, `WORK_SCALE_BUCKET_SIZES` (comma-separated).

use std::collections::HashSet;
use std::time::Instant;

use switchyard_engine::work::{ItemResult, NewItem, Outcome, Registration, Report, WorkConfig};
use switchyard_engine::{Engine, EngineConfig};

const CLIENTS: usize = 64;
const BUCKETS_PER_LEASE: i64 = 2;
const ITEMS_DEFAULT: usize = 20_000;
const ITEMS_SLOW: usize = 1_000_000;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_drain_a_large_pool_exactly_once() {
    let slow = std::env::var("SWITCHYARD_SLOW_TESTS").is_ok_and(|value| value == "1");
    let items = if slow { ITEMS_SLOW } else { ITEMS_DEFAULT };
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.shards = 2;
    let knob = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse::<u64>().ok())
    };
    if let Some(ms) = knob("WORK_SCALE_CHECKPOINT_MS") {
        config.checkpoint_interval_ms = ms;
    }
    if let Some(mib) = knob("WORK_SCALE_SLED_CACHE_MIB") {
        config.store_cache_bytes = mib * 1024 * 1024;
    }
    *config.section_mut::<WorkConfig>() = WorkConfig {
        registrations_per_minute_per_source: 0,
        ..WorkConfig::default()
    };
    let engine = Engine::open(config).unwrap();
    let rss_start = peak_rss_kib();

    let started = Instant::now();
    let keys: Vec<String> = (0..items).map(|i| format!("user:{i:09}")).collect();
    for chunk in keys.chunks(18_000) {
        let batch = chunk
            .iter()
            .map(|key| NewItem {
                key: key.clone(),
                priority: None,
            })
            .collect();
        let added = engine.work().add_items(batch).await.unwrap();
        assert_eq!(added.added as usize, chunk.len());
    }
    let add_elapsed = started.elapsed();
    drop(keys);
    eprintln!("after add: peak RSS {} MiB", peak_rss_kib() / 1024);
    let checkpoint_started = Instant::now();
    engine.checkpoint().unwrap();
    eprintln!(
        "checkpoint after add: {:.2} s, peak RSS {} MiB",
        checkpoint_started.elapsed().as_secs_f64(),
        peak_rss_kib() / 1024
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CLIENTS {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let work = engine.work();
            let client = work
                .register(
                    Registration {
                        screen_name: format!("worker {worker}"),
                        external_id: format!("scale-worker-{worker:04}"),
                    },
                    None,
                )
                .await
                .unwrap();
            let (mut leases, mut buckets, mut results) = (0u64, Vec::new(), 0u64);
            loop {
                let leased = work.lease(&client.token, BUCKETS_PER_LEASE).await.unwrap();
                leases += 1;
                if leased.is_empty() {
                    break;
                }
                for bucket in leased {
                    let report = Report {
                        results: bucket
                            .items
                            .iter()
                            .map(|key| ItemResult {
                                key: key.clone(),
                                outcome: Outcome::No,
                                detail: None,
                            })
                            .collect(),
                        ..Report::default()
                    };
                    results += bucket.items.len() as u64;
                    let outcome = work.report(&client.token, bucket.id, report).await.unwrap();
                    assert_eq!(outcome.remaining, 0);
                    buckets.push(bucket.id);
                }
            }
            (leases, buckets, results)
        }));
    }
    let (mut leases, mut buckets, mut results) = (0u64, Vec::new(), 0u64);
    for task in tasks {
        let (l, b, r) = task.await.unwrap();
        leases += l;
        buckets.extend(b);
        results += r;
    }
    let drain_elapsed = started.elapsed();

    let unique: HashSet<u64> = buckets.iter().copied().collect();
    assert_eq!(unique.len(), buckets.len(), "no bucket granted twice");
    assert_eq!(results as usize, items, "every item reported exactly once");
    let stats = engine.work().stats().await.unwrap();
    assert_eq!((stats.items.pending, stats.items.leased), (0, 0));
    assert_eq!(stats.items.done as usize, items);
    let checkpoint_started = Instant::now();
    engine.checkpoint().unwrap();
    let checkpoint_elapsed = checkpoint_started.elapsed();
    println!(
        "work scale: {items} items; add {:.2} s ({:.0} items/s); drain by {CLIENTS} clients \
         {:.2} s: {} lease calls ({:.0}/s), {} buckets, {:.0} results/s; final checkpoint \
         {:.2} s; peak RSS {} MiB (at start {} MiB)",
        add_elapsed.as_secs_f64(),
        items as f64 / add_elapsed.as_secs_f64(),
        drain_elapsed.as_secs_f64(),
        leases,
        leases as f64 / drain_elapsed.as_secs_f64(),
        buckets.len(),
        results as f64 / drain_elapsed.as_secs_f64(),
        checkpoint_elapsed.as_secs_f64(),
        peak_rss_kib() / 1024,
        rss_start / 1024,
    );
    engine.shutdown().unwrap();
}

/// Lease throughput alone: `CLIENTS` clients lease one bucket per call until the pool is
/// empty, for bucket sizes 1 and 180 (no reports; the per-client cap is lifted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_throughput() {
    let slow = std::env::var("SWITCHYARD_SLOW_TESTS").is_ok_and(|value| value == "1");
    let leases_wanted: usize = std::env::var("WORK_SCALE_LEASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(if slow { 100_000 } else { 1_000 });
    let sizes: Vec<usize> = std::env::var("WORK_SCALE_BUCKET_SIZES")
        .ok()
        .map(|value| {
            value
                .split(',')
                .filter_map(|size| size.parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![1, 180]);
    for bucket_size in sizes {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.shards = 2;
        *config.section_mut::<WorkConfig>() = WorkConfig {
            bucket_size,
            registrations_per_minute_per_source: 0,
            leased_buckets_per_client_max: 1_000_000,
            ..WorkConfig::default()
        };
        let engine = Engine::open(config).unwrap();
        let items = leases_wanted * bucket_size;
        let keys: Vec<String> = (0..items).map(|i| format!("user:{i:09}")).collect();
        for chunk in keys.chunks(18_000) {
            let batch = chunk
                .iter()
                .map(|key| NewItem {
                    key: key.clone(),
                    priority: None,
                })
                .collect();
            engine.work().add_items(batch).await.unwrap();
        }
        engine.checkpoint().unwrap();
        eprintln!("leasing starts");
        let started = Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..CLIENTS {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                let work = engine.work();
                let registration = Registration {
                    screen_name: format!("worker {worker}"),
                    external_id: format!("scale-worker-{worker:04}"),
                };
                let client = work.register(registration, None).await.unwrap();
                let mut granted = 0usize;
                while !work.lease(&client.token, 1).await.unwrap().is_empty() {
                    granted += 1;
                }
                granted
            }));
        }
        let mut granted = 0;
        for task in tasks {
            granted += task.await.unwrap();
        }
        let elapsed = started.elapsed();
        assert_eq!(granted, leases_wanted);
        println!(
            "work leases: bucket_size {bucket_size}: {granted} leases by {CLIENTS} clients in \
             {:.2} s = {:.0} leases/s",
            elapsed.as_secs_f64(),
            granted as f64 / elapsed.as_secs_f64()
        );
        engine.shutdown().unwrap();
    }
}
