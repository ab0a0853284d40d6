//! HTTP metrics for `GET /metrics`, kept and rendered with the official `prometheus-client`
//! crate: request counts by route pattern, method and status, a latency histogram per route
//! pattern, the in-flight gauge (which is also the in-flight limiter), open and accepted
//! connections, and requests shed by the in-flight limit. The `/metrics` handler appends each
//! domain's lines (rendered with [`encode`] at scrape time), the engine's own text
//! (`Engine::render_metrics`, left as the engine writes it) and the process's memory
//! ([`render_process_memory`]).
//!
//! The exposition is Prometheus text (`text/plain; version=0.0.4`). prometheus-client writes
//! OpenMetrics-style families: a counter's `# TYPE` line names the family without `_total`
//! (`switchyard_http_requests`) and its samples carry it (`switchyard_http_requests_total`), which
//! Prometheus reads the same; the sample names are those of earlier releases.
//!
//! Invariants:
//! - The `route` label is a route pattern (`/api/v1/demo/counters/{id}`) or `unmatched`, never a
//!   raw path, and `method` is one of a fixed set, so label cardinality is bounded by the route
//!   table, not by clients.
//! - Recording a request is a few atomic operations, two hash look-ups under read locks and one
//!   uncontended mutex (the route's histogram); nothing is allocated once a (route, method,
//!   status) has been seen.

use std::sync::atomic::AtomicI64;

use hyper::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use switchyard_engine::metrics::LATENCY_SECONDS_BOUNDS;

/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Index of a route pattern in [`HttpMetrics`]; given out by the router.
pub type RouteIndex = usize;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_SECONDS_BOUNDS.iter().copied())
}

/// The server's HTTP metrics. One per server, shared by every connection.
pub struct HttpMetrics {
    registry: Registry,
    /// One per route pattern, then [`UNMATCHED_ROUTE`] last.
    routes: Vec<&'static str>,
    requests: Family<RequestLabels, Counter>,
    duration_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge<i64, AtomicI64>,
    connections_open: Gauge<i64, AtomicI64>,
    connections_accepted: Counter,
    shed: Counter,
}

/// Holds one in-flight slot; gives it back on drop.
pub struct InFlight<'a> {
    in_flight: &'a Gauge<i64, AtomicI64>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

/// Counts one open connection; uncounts it on drop.
pub struct OpenConnection {
    connections_open: Gauge<i64, AtomicI64>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.connections_open.dec();
    }
}

impl HttpMetrics {
    /// `patterns` are the router's distinct route patterns, in [`RouteIndex`] order.
    pub fn new(patterns: &[&'static str]) -> Self {
        let mut routes = patterns.to_vec();
        routes.push(UNMATCHED_ROUTE);
        let requests = Family::<RequestLabels, Counter>::default();
        let duration_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let in_flight = Gauge::<i64, AtomicI64>::default();
        let connections_open = Gauge::<i64, AtomicI64>::default();
        let connections_accepted = Counter::default();
        let shed = Counter::default();
        let mut registry = Registry::default();
        registry.register(
            "switchyard_http_requests",
            "HTTP requests by route pattern, method and status",
            requests.clone(),
        );
        registry.register(
            "switchyard_http_request_duration_seconds",
            "Time from request head to response, by route pattern",
            duration_seconds.clone(),
        );
        registry.register(
            "switchyard_http_requests_in_flight",
            "API requests being handled",
            in_flight.clone(),
        );
        registry.register(
            "switchyard_http_connections_open",
            "Client connections open",
            connections_open.clone(),
        );
        registry.register(
            "switchyard_http_connections_accepted",
            "Client connections accepted",
            connections_accepted.clone(),
        );
        registry.register(
            "switchyard_http_requests_shed",
            "Requests refused with 503 by limits.max_in_flight",
            shed.clone(),
        );
        HttpMetrics {
            registry,
            routes,
            requests,
            duration_seconds,
            in_flight,
            connections_open,
            connections_accepted,
            shed,
        }
    }

    /// The index used for requests that matched no route.
    pub fn unmatched(&self) -> RouteIndex {
        self.routes.len() - 1
    }

    /// The route label of `index` ([`UNMATCHED_ROUTE`] for an index out of range, which would
    /// be a router bug).
    pub fn route(&self, index: RouteIndex) -> &'static str {
        self.routes.get(index).copied().unwrap_or(UNMATCHED_ROUTE)
    }

    /// Takes an in-flight slot unless `max` are taken; a refusal is counted as shed.
    pub fn try_enter(&self, max: usize) -> Option<InFlight<'_>> {
        let previous = self.in_flight.inc();
        let slot = InFlight {
            in_flight: &self.in_flight,
        };
        if usize::try_from(previous).unwrap_or(0) >= max {
            drop(slot);
            self.shed.inc();
            return None;
        }
        Some(slot)
    }

    pub fn in_flight(&self) -> usize {
        usize::try_from(self.in_flight.get()).unwrap_or(0)
    }

    /// Counts an accepted connection until the guard drops.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections_accepted.inc();
        self.connections_open.inc();
        OpenConnection {
            connections_open: self.connections_open.clone(),
        }
    }

    pub fn connections_open(&self) -> i64 {
        self.connections_open.get()
    }

    /// Records one finished request.
    pub fn record(&self, route: RouteIndex, method: &Method, status: u16, seconds: f64) {
        let route = self.route(route);
        self.duration_seconds
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method_label(method),
                status,
            })
            .inc();
    }

    /// Appends the HTTP metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        encode_registry(out, &self.registry);
    }
}

/// Appends the metrics a scrape-time `register` puts in a fresh registry (a domain's gauges of
/// the moment, say), in the Prometheus text format.
pub fn encode(out: &mut String, register: impl FnOnce(&mut Registry)) {
    let mut registry = Registry::default();
    register(&mut registry);
    encode_registry(out, &registry);
}

/// A count as a Prometheus gauge value (`i64`), saturating (counts never come near `i64::MAX`).
pub fn gauge(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn encode_registry(out: &mut String, registry: &Registry) {
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(out, registry);
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
/// that is missing or does not parse leaves its gauge out. Hand-written: the file's format is
/// Linux's, and no crate is needed to read two lines of it.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn render_memory_from_status(status: &str, out: &mut String) {
    encode(out, |registry| {
        for (field, name, help) in [
            (
                "VmRSS:",
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            ),
            (
                "VmHWM:",
                "process_resident_memory_peak_bytes",
                "Peak resident memory size in bytes",
            ),
        ] {
            let kib = status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?;
                let mut words = rest.split_whitespace();
                let value: i64 = words.next()?.parse().ok()?;
                (words.next() == Some("kB")).then_some(value)
            });
            if let Some(kib) = kib {
                registry.register(name, help, ConstGauge::new(kib.saturating_mul(1024)));
            }
        }
    });
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
            out.contains("switchyard_http_request_duration_seconds_bucket{le=\"0.001\",route=\"/api/v1/demo/counters/{id}\"} 2\n")
                || out.contains("switchyard_http_request_duration_seconds_bucket{route=\"/api/v1/demo/counters/{id}\",le=\"0.001\"} 2\n"),
            "{out}"
        );
        assert!(
            !out.contains("_count{route=\"/healthz\"}"),
            "no empty histograms: {out}"
        );
        assert!(!out.contains("# EOF"), "{out}");
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
        let _open = metrics.connection_opened();
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains("switchyard_http_connections_open 1\n")
                && out.contains("switchyard_http_connections_accepted_total 1\n"),
            "{out}"
        );
    }
}
