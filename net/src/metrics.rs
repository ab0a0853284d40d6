//! HTTP metrics for `GET /metrics`: request counts by route pattern, method and status, a latency
//! histogram per route pattern, the in-flight gauge (which is also the in-flight limiter), open
//! connections, and requests shed by the in-flight limit. The engine's own metrics are appended
//! after these by the `/metrics` handler, and so is the process's memory
//! ([`render_process_memory`]: resident set and its peak from `/proc/self/status`, Linux only).
//!
//! Invariants:
//! - The `route` label is a route pattern (`/api/v1/demo/counters/{id}`) or `unmatched`, never a
//!   raw path, and `method` is one of a fixed set, so label cardinality is bounded by the route
//!   table, not by clients.
//! - Recording a request is a few atomic operations and one uncontended lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::Method;
use switchyard_engine::metrics::{Counter, Histogram, LATENCY_SECONDS_BOUNDS};

/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Index of a route pattern in [`HttpMetrics`]; given out by the router.
pub type RouteIndex = usize;

struct RouteMetrics {
    pattern: &'static str,
    duration_seconds: Histogram,
    /// (method label, status, count); a handful of entries per route.
    requests: Mutex<Vec<(&'static str, u16, u64)>>,
}

/// The server's HTTP metrics. One per server, shared by every connection.
pub struct HttpMetrics {
    /// One per route pattern, then [`UNMATCHED_ROUTE`] last.
    routes: Vec<RouteMetrics>,
    in_flight: Arc<AtomicUsize>,
    connections_open: Arc<AtomicI64>,
    connections_accepted: Counter,
    shed: Counter,
}

/// Holds one in-flight slot; gives it back on drop.
pub struct InFlight {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts one open connection; uncounts it on drop.
pub struct OpenConnection {
    connections_open: Arc<AtomicI64>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HttpMetrics {
    /// `patterns` are the router's distinct route patterns, in [`RouteIndex`] order.
    pub fn new(patterns: &[&'static str]) -> Self {
        let route = |pattern| RouteMetrics {
            pattern,
            duration_seconds: Histogram::new(LATENCY_SECONDS_BOUNDS),
            requests: Mutex::new(Vec::new()),
        };
        let mut routes: Vec<RouteMetrics> = patterns.iter().copied().map(route).collect();
        routes.push(route(UNMATCHED_ROUTE));
        HttpMetrics {
            routes,
            in_flight: Arc::new(AtomicUsize::new(0)),
            connections_open: Arc::new(AtomicI64::new(0)),
            connections_accepted: Counter::default(),
            shed: Counter::default(),
        }
    }

    /// The index used for requests that matched no route.
    pub fn unmatched(&self) -> RouteIndex {
        self.routes.len() - 1
    }

    /// Takes an in-flight slot unless `max` are taken; a refusal is counted as shed.
    pub fn try_enter(&self, max: usize) -> Option<InFlight> {
        let previous = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = InFlight {
            in_flight: self.in_flight.clone(),
        };
        if previous >= max {
            drop(slot);
            self.shed.increment();
            return None;
        }
        Some(slot)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts an accepted connection until the guard drops.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections_accepted.increment();
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            connections_open: self.connections_open.clone(),
        }
    }

    pub fn connections_open(&self) -> i64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Records one finished request.
    pub fn record(&self, route: RouteIndex, method: &Method, status: u16, seconds: f64) {
        // An index out of range is a router bug; count it as unmatched rather than panic.
        let route = self
            .routes
            .get(route)
            .unwrap_or(&self.routes[self.unmatched()]);
        route.duration_seconds.observe(seconds);
        let method = method_label(method);
        // A poisoned lock only means a panic elsewhere while counting; the counts are still sound.
        let mut requests = route.requests.lock().unwrap_or_else(|e| e.into_inner());
        match requests
            .iter_mut()
            .find(|(m, s, _)| *m == method && *s == status)
        {
            Some((_, _, count)) => *count += 1,
            None => requests.push((method, status, 1)),
        }
    }

    /// Appends the HTTP metrics in the Prometheus text format (version 0.0.4).
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP switchyard_http_requests_total HTTP requests by route pattern, method and status.\n");
        out.push_str("# TYPE switchyard_http_requests_total counter\n");
        for route in &self.routes {
            let requests = route.requests.lock().unwrap_or_else(|e| e.into_inner());
            for (method, status, count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "switchyard_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {count}",
                    route.pattern
                );
            }
        }
        out.push_str("# HELP switchyard_http_request_duration_seconds Time from request head to response, by route pattern.\n");
        out.push_str("# TYPE switchyard_http_request_duration_seconds histogram\n");
        for route in &self.routes {
            if route.duration_seconds.count() > 0 {
                route.duration_seconds.render(
                    out,
                    "switchyard_http_request_duration_seconds",
                    &format!("route=\"{}\"", route.pattern),
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP switchyard_http_requests_in_flight API requests being handled.\n# TYPE switchyard_http_requests_in_flight gauge\nswitchyard_http_requests_in_flight {}",
            self.in_flight()
        );
        let _ = writeln!(
            out,
            "# HELP switchyard_http_connections_open Client connections open.\n# TYPE switchyard_http_connections_open gauge\nswitchyard_http_connections_open {}",
            self.connections_open()
        );
        let _ = writeln!(
            out,
            "# HELP switchyard_http_connections_accepted_total Client connections accepted.\n# TYPE switchyard_http_connections_accepted_total counter\nswitchyard_http_connections_accepted_total {}",
            self.connections_accepted.get()
        );
        let _ = writeln!(
            out,
            "# HELP switchyard_http_requests_shed_total Requests refused with 503 by limits.max_in_flight.\n# TYPE switchyard_http_requests_shed_total counter\nswitchyard_http_requests_shed_total {}",
            self.shed.get()
        );
    }
}

/// Appends `process_resident_memory_bytes` (the current resident set, `VmRSS`) and
/// `process_resident_memory_peak_bytes` (its high-water mark, `VmHWM`), read from
/// `/proc/self/status` at scrape time. On other systems, or when the file cannot be read, the
/// gauges are left out of the scrape.
pub fn render_process_memory(out: &mut String) {
    #[cfg(target_os = "linux")]
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        render_memory_from_status(&status, out);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = out;
}

/// The memory gauges from the text of a `/proc/<pid>/status` file (values in kB there); a line
/// that is missing or does not parse leaves its gauge out.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn render_memory_from_status(status: &str, out: &mut String) {
    for (field, name, help) in [
        (
            "VmRSS:",
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        ),
        (
            "VmHWM:",
            "process_resident_memory_peak_bytes",
            "Peak resident memory size in bytes.",
        ),
    ] {
        let kib = status.lines().find_map(|line| {
            let rest = line.strip_prefix(field)?;
            let mut words = rest.split_whitespace();
            let value: u64 = words.next()?.parse().ok()?;
            (words.next() == Some("kB")).then_some(value)
        });
        if let Some(kib) = kib {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                kib * 1024
            );
        }
    }
}

/// A fixed label per method, so arbitrary methods cannot grow the label set.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_pattern_method_and_status() {
        let metrics = HttpMetrics::new(&["/healthz", "/api/v1/demo/counters/{id}"]);
        metrics.record(1, &Method::POST, 200, 0.001);
        metrics.record(1, &Method::POST, 200, 0.002);
        metrics.record(1, &Method::GET, 404, 0.001);
        metrics.record(
            metrics.unmatched(),
            &Method::from_bytes(b"BREW").expect("method"),
            404,
            0.0,
        );
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("switchyard_http_requests_total{route=\"/api/v1/demo/counters/{id}\",method=\"POST\",status=\"200\"} 2\n"), "{out}");
        assert!(out.contains("method=\"GET\",status=\"404\"} 1\n"), "{out}");
        assert!(
            out.contains("{route=\"unmatched\",method=\"OTHER\",status=\"404\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("switchyard_http_request_duration_seconds_count{route=\"/api/v1/demo/counters/{id}\"} 3\n"), "{out}");
        assert!(
            !out.contains("_count{route=\"/healthz\"}"),
            "no empty histograms: {out}"
        );
    }

    #[test]
    fn memory_gauges_come_from_proc_status() {
        let status = "Name:\tswitchyard\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t4\n";
        let mut out = String::new();
        render_memory_from_status(status, &mut out);
        assert!(
            out.contains("\nprocess_resident_memory_bytes 10485760\n"),
            "{out}"
        );
        assert!(
            out.contains("\nprocess_resident_memory_peak_bytes 20971520\n"),
            "{out}"
        );
        let mut out = String::new();
        render_memory_from_status("VmRSS:\tlots\n", &mut out);
        assert!(out.is_empty(), "{out}");
        if cfg!(target_os = "linux") {
            let mut out = String::new();
            render_process_memory(&mut out);
            assert!(out.contains("process_resident_memory_bytes "), "{out}");
            assert!(out.contains("process_resident_memory_peak_bytes "), "{out}");
        }
    }

    #[test]
    fn in_flight_limit_sheds_and_releases() {
        let metrics = HttpMetrics::new(&[]);
        let first = metrics.try_enter(2).expect("slot");
        let second = metrics.try_enter(2).expect("slot");
        assert!(metrics.try_enter(2).is_none());
        assert_eq!(metrics.in_flight(), 2);
        drop(first);
        let third = metrics.try_enter(2).expect("slot after release");
        drop((second, third));
        assert_eq!(metrics.in_flight(), 0);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains("switchyard_http_requests_shed_total 1\n"),
            "{out}"
        );
    }
}
