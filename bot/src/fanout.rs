//! `switchyard-bot fanout`: the dispatch domain's fan-out measured end to end over HTTP. The bot
//! runs a loopback webhook receiver, creates one group of `recipients` contacts whose
//! `webhook_url` points at it, an event type on the webhook channel and a program, then one
//! dispatch starting now, and measures:
//! - notifications per second end to end: recipients / time from the dispatch's 201 to the
//!   dispatch reported `done` (every outcome recorded durably);
//! - the time to the receiver's last delivery;
//! - the API's latency while the fan-out runs: a probe sends `GET /api/v1/dispatches/{id}`
//!   every `probe_interval_ms` (p50, p99, max);
//! - the server's peak resident memory (`VmHWM` of `/proc/<server pid>/status`) when its pid is
//!   given.
//!
//! The receiver answers 200 to every POST at once and counts distinct `webhook-id`s (a
//! redelivery is counted apart), so the figure is the server's, not a slow receiver's.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::json;

use crate::transport::HttpTransport;

/// What `fanout` is told.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    pub recipients: usize,
    /// Concurrent requests while creating the contacts.
    pub connections: usize,
    pub admin_token: String,
    pub server_pid: Option<u32>,
    pub probe_interval_ms: u64,
    /// More paths to probe (GET, admin token) beside the dispatch itself.
    pub probe_paths: Vec<String>,
    pub timeout: Duration,
}

/// The figures.
#[derive(Debug, Clone, Default)]
pub struct FanoutReport {
    pub recipients: usize,
    pub setup_seconds: f64,
    pub to_last_delivery_seconds: f64,
    pub to_done_seconds: f64,
    pub notifications_per_second: f64,
    pub delivered_unique: usize,
    pub redeliveries: u64,
    pub probe_p50_ms: f64,
    pub probe_p99_ms: f64,
    pub probe_max_ms: f64,
    pub probes: u64,
    /// The other probed paths: (path, p50, p99, max) in ms.
    pub other_probes: Vec<(String, f64, f64, f64)>,
    pub server_peak_rss_kib: Option<u64>,
}

impl FanoutReport {
    pub fn render_text(&self) -> String {
        format!(
            "fanout: {} recipients on the webhook channel\n\
             setup (contacts over HTTP): {:.1} s\n\
             to the last delivery: {:.2} s\n\
             to done (every outcome recorded durably): {:.2} s = {:.0} notifications/s\n\
             receiver: {} distinct deliveries, {} redeliveries\n\
             API during the fan-out (GET /api/v1/dispatches/{{id}}, {} probes): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
             {}server peak RSS: {}\n",
            self.recipients,
            self.setup_seconds,
            self.to_last_delivery_seconds,
            self.to_done_seconds,
            self.notifications_per_second,
            self.delivered_unique,
            self.redeliveries,
            self.probes,
            self.probe_p50_ms,
            self.probe_p99_ms,
            self.probe_max_ms,
            self.other_probes
                .iter()
                .map(|(path, p50, p99, max)| format!(
                    "API during the fan-out (GET {path}): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms\n"
                ))
                .collect::<String>(),
            self.server_peak_rss_kib
                .map_or("unknown (give --server-pid)".to_string(), |kib| format!("{} MiB", kib / 1024)),
        )
    }
}

#[derive(Default)]
struct Receiver {
    seen: Mutex<HashSet<String>>,
    redeliveries: AtomicU64,
    last_ns: AtomicU64,
}

fn receive(books: Arc<Receiver>, started: Instant) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let books = books.clone();
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let Ok(mut writer) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut id) = (0usize, None);
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            } else if name.eq_ignore_ascii_case("webhook-id") {
                                id = Some(value.trim().to_string());
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if let Some(id) = id {
                        if !books
                            .seen
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(id)
                        {
                            books.redeliveries.fetch_add(1, Ordering::Relaxed);
                        }
                        books
                            .last_ns
                            .fetch_max(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    }
                    if writer
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

async fn create(
    http: &HttpTransport,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> Result<u64, String> {
    let (status, bytes) = http
        .send(Method::POST, path, Some(token), Some(body))
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    if status != 201 {
        return Err(format!(
            "POST {path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("POST {path}: {e}"))?;
    value["id"]
        .as_u64()
        .ok_or_else(|| format!("POST {path}: no id in {value}"))
}

/// VmHWM of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs the measurement against the server at `url`.
pub async fn run(url: &str, options: &FanoutOptions) -> Result<FanoutReport, String> {
    let http = Arc::new(
        HttpTransport::new(url, options.connections.max(2), options.timeout)
            .map_err(|e| e.to_string())?,
    );
    let token = options.admin_token.as_str();
    let started = Instant::now();
    let books = Arc::new(Receiver::default());
    let hook = receive(books.clone(), started).map_err(|e| format!("receiver: {e}"))?;

    let setup = Instant::now();
    let group = create(&http, token, "/api/v1/groups", json!({"name": "fanout"})).await?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..options.connections.max(1) {
        let (http, next, token) = (http.clone(), next.clone(), token.to_string());
        let recipients = options.recipients as u64;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= recipients {
                    return Ok::<(), String>(());
                }
                create(
                    &http,
                    &token,
                    "/api/v1/contacts",
                    json!({"name": format!("site {i}"), "webhook_url": format!("http://{hook}/hook/{i}"), "group_ids": [group]}),
                )
                .await?;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let event_type = create(
        &http,
        token,
        "/api/v1/event-types",
        json!({"name": "fanout", "group_ids": [group], "channels": ["webhook"]}),
    )
    .await?;
    let program = create(
        &http,
        token,
        "/api/v1/programs",
        json!({"name": "fanout", "message": "Reduce load now"}),
    )
    .await?;
    let setup_seconds = setup.elapsed().as_secs_f64();

    let before = started.elapsed().as_nanos() as u64;
    books.last_ns.store(before, Ordering::Relaxed);
    let t0 = Instant::now();
    let id = create(
        &http,
        token,
        "/api/v1/dispatches",
        json!({"program_id": program, "event_type_id": event_type, "start_time": "2020-01-01T00:00:00Z"}),
    )
    .await?;
    let t0_ns = started.elapsed().as_nanos() as u64;
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let path = format!("/api/v1/dispatches/{id}?limit=1");
    let mut others: Vec<(String, Histogram<u64>)> = Vec::new();
    for other in &options.probe_paths {
        others.push((
            other.clone(),
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(3_600);
    loop {
        let sent = Instant::now();
        let (status, bytes) = http
            .send(Method::GET, &path, Some(token), None)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let micros = sent.elapsed().as_micros() as u64;
        histogram.record(micros.max(1)).ok();
        if status != 200 {
            return Err(format!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        let view: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if view["status"] == "done" {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("not done within an hour: {view}"));
        }
        for (other, histogram) in &mut others {
            let sent = Instant::now();
            let (status, bytes) = http
                .send(Method::GET, other, Some(token), None)
                .await
                .map_err(|e| format!("GET {other}: {e}"))?;
            if status >= 500 {
                return Err(format!(
                    "GET {other}: {status} {}",
                    String::from_utf8_lossy(&bytes)
                ));
            }
            histogram
                .record((sent.elapsed().as_micros() as u64).max(1))
                .ok();
        }
        tokio::time::sleep(Duration::from_millis(options.probe_interval_ms)).await;
    }
    let to_done = t0.elapsed().as_secs_f64();
    let last_ns = books.last_ns.load(Ordering::Relaxed);
    let delivered_unique = books.seen.lock().unwrap_or_else(|e| e.into_inner()).len();
    Ok(FanoutReport {
        recipients: options.recipients,
        setup_seconds,
        to_last_delivery_seconds: last_ns.saturating_sub(t0_ns) as f64 / 1e9,
        to_done_seconds: to_done,
        notifications_per_second: options.recipients as f64 / to_done,
        delivered_unique,
        redeliveries: books.redeliveries.load(Ordering::Relaxed),
        probe_p50_ms: histogram.value_at_quantile(0.5) as f64 / 1000.0,
        probe_p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        probe_max_ms: histogram.max() as f64 / 1000.0,
        probes: histogram.len(),
        other_probes: others
            .iter()
            .map(|(path, h)| {
                let ms = |v: u64| v as f64 / 1000.0;
                (
                    path.clone(),
                    ms(h.value_at_quantile(0.5)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.max()),
                )
            })
            .collect(),
        server_peak_rss_kib: options.server_pid.and_then(peak_rss_kib),
    })
}
