//! The HTTP contract of API.md's Conventions and "Running the server", checked against the real
//! `switchyard` binary: each test starts it on port 0 with a temp data dir, reads the port from
//! its stdout line, and speaks raw HTTP/1.1 over a TcpStream. Covered: service routes, the JSON
//! error shape and codes (404, 405 + Allow, invalid_json, unknown/missing/invalid field, 413 by
//! Content-Length and by chunked body, 408 body timeout, 503 overloaded + Retry-After), start-up
//! refusals (locked data dir, unknown or mistyped `--set` key), and SIGTERM: exit 0 promptly with
//! an idle keep-alive connection open, with acknowledged writes there after a restart.

mod common;

use std::time::{Duration, Instant};

use common::{raw, request, Connection, Response, Server};
use serde_json::json;

/// Sends one request and checks the status and, for errors, API.md's error body and code.
fn check(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    expected_status: u16,
    expected_code: Option<&str>,
) -> Response {
    let response = request(server.addr, method, path, body);
    check_response(
        &response,
        &format!("{method} {path}"),
        expected_status,
        expected_code,
    );
    response
}

fn check_response(
    response: &Response,
    what: &str,
    expected_status: u16,
    expected_code: Option<&str>,
) {
    assert_eq!(
        response.status,
        expected_status,
        "{what}: {}",
        response.text()
    );
    if let Some(code) = expected_code {
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{what}"
        );
        let body = response.json();
        let error = body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{what}: {body}");
        assert_eq!(error["code"], code, "{what}: {body}");
        assert!(error["message"].is_string(), "{what}: {body}");
        assert!(
            error
                .keys()
                .all(|k| ["code", "message", "field"].contains(&k.as_str())),
            "{what}: {body}"
        );
    }
}

fn field_of(response: &Response) -> String {
    response.json()["error"]["field"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn service_routes_and_request_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &[
            "--set",
            "limits.max_body_bytes=1024",
            "--set",
            "limits.max_in_flight=1",
            "--set",
            "limits.body_read_timeout_ms=700",
        ],
    );
    let health = check(&server, "GET", "/healthz", None, 200, None);
    assert_eq!(health.json(), json!({"status": "ok"}));
    server.wait_ready();
    let ready = check(&server, "GET", "/readyz", None, 200, None);
    assert_eq!(ready.json(), json!({"status": "ready"}));

    // Unknown routes and methods.
    check(&server, "GET", "/nope", None, 404, Some("not_found"));
    check(
        &server,
        "GET",
        "/api/v1/demo/counters/abc",
        None,
        404,
        Some("not_found"),
    );
    check(
        &server,
        "GET",
        "/api/v1/demo/counters/1/x",
        None,
        404,
        Some("not_found"),
    );
    let wrong = check(
        &server,
        "DELETE",
        "/api/v1/demo/counters/1",
        None,
        405,
        Some("method_not_allowed"),
    );
    let allow = wrong.header("allow").expect("Allow header");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

    // Body errors.
    let path = "/api/v1/demo/counters/1";
    check(
        &server,
        "POST",
        path,
        Some(r#"{"by": "#),
        400,
        Some("invalid_json"),
    );
    check(
        &server,
        "POST",
        path,
        Some("[1, 2]"),
        400,
        Some("invalid_json"),
    );
    check(&server, "POST", path, None, 400, Some("invalid_json"));
    for (body, code, field) in [
        (r#"{"by": 1, "extra": 2}"#, "unknown_field", "extra"),
        (r#"{}"#, "missing_field", "by"),
        (r#"{"mirror_to": 2}"#, "missing_field", "by"),
        (r#"{"by": "1"}"#, "invalid_field", "by"),
        (r#"{"by": 1.5}"#, "invalid_field", "by"),
        (
            r#"{"by": 1, "mirror_to": -4}"#,
            "invalid_field",
            "mirror_to",
        ),
    ] {
        let response = check(&server, "POST", path, Some(body), 400, Some(code));
        assert_eq!(field_of(&response), field, "{body}");
    }
    let response = check(
        &server,
        "GET",
        "/api/v1/demo/counters/1?colour=red",
        None,
        400,
        Some("unknown_field"),
    );
    assert_eq!(field_of(&response), "colour");

    // The happy path: add with a mirror, read both.
    let added = check(
        &server,
        "POST",
        path,
        Some(r#"{"by": 5, "mirror_to": 2}"#),
        200,
        None,
    );
    assert_eq!(added.json()["value"], 5);
    let one = check(&server, "GET", path, None, 200, None);
    assert_eq!(
        (one.json()["id"].clone(), one.json()["value"].clone()),
        (json!(1), json!(5))
    );
    let two = check(&server, "GET", "/api/v1/demo/counters/2", None, 200, None);
    assert_eq!(two.json()["mirrors"], json!({"1": 5}));
    assert_eq!(two.json()["value"], 0);

    // 413 from Content-Length, before any body byte is sent.
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n"
    );
    let response = raw(server.addr, head.as_bytes()).expect("413 by length");
    check_response(
        &response,
        "Content-Length 2000",
        413,
        Some("body_too_large"),
    );

    // 413 from a chunked body, once the running total passes the limit (the final chunk is never
    // sent: the server must not wait for it).
    let chunk = format!("258\r\n{}\r\n", "x".repeat(600));
    let chunked = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}"
    );
    let response = raw(server.addr, chunked.as_bytes()).expect("413 chunked");
    check_response(&response, "chunked 1200 bytes", 413, Some("body_too_large"));
    // A chunked body within the limit is fine.
    let body = r#"{"by": 1}"#;
    let small = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let response = raw(server.addr, small.as_bytes()).expect("chunked ok");
    check_response(&response, "small chunked", 200, None);
    assert_eq!(response.json()["value"], 6);

    // With max_in_flight = 1, a request stalled mid-body holds the only slot: another API request
    // is shed with 503 + Retry-After, service routes still answer, and the stalled one gets 408
    // when limits.body_read_timeout_ms passes.
    let mut stalled = Connection::open(server.addr).expect("connect");
    let partial = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{{\"by\""
    );
    std::io::Write::write_all(&mut stalled.stream, partial.as_bytes()).expect("send partial");
    std::thread::sleep(Duration::from_millis(100));
    let shed = check(&server, "GET", path, None, 503, Some("overloaded"));
    assert_eq!(shed.header("retry-after"), Some("1"));
    check(&server, "GET", "/healthz", None, 200, None);
    let timed_out = stalled.read_response().expect("408");
    check_response(&timed_out, "stalled body", 408, Some("request_timeout"));
    check(&server, "GET", path, None, 200, None);

    // Metrics: HTTP counters by route pattern, the engine's WAL metrics and process memory.
    let metrics = check(&server, "GET", "/metrics", None, 200, None);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    let text = metrics.text();
    assert!(text.contains("switchyard_http_requests_total{route=\"/api/v1/demo/counters/{id}\",method=\"POST\",status=\"200\"}"), "{text}");
    assert!(
        text.contains("switchyard_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("switchyard_http_requests_shed_total 1"),
        "{text}"
    );
    assert!(text.contains("switchyard_wal_"), "{text}");
    assert!(!text.contains("/nope"), "raw paths never become labels");
    // The process's memory, read from /proc/self/status at scrape time (Linux only).
    if cfg!(target_os = "linux") {
        for gauge in [
            "process_resident_memory_bytes",
            "process_resident_memory_peak_bytes",
        ] {
            let value = text
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{gauge} ")))
                .unwrap_or_else(|| panic!("{gauge} missing: {text}"));
            assert!(
                value.parse::<u64>().is_ok_and(|bytes| bytes > 0),
                "{gauge} {value}"
            );
        }
    }
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Server::start(dir.path(), &[]);
    first.wait_ready();
    let status = match Server::try_start(dir.path(), &[]) {
        Err(exited) => {
            assert!(exited.stderr.contains("lock"), "{}", exited.stderr);
            exited.status
        }
        Ok(mut second) => {
            let status = second
                .wait_exit(Duration::from_secs(20))
                .expect("the second server exits");
            assert!(second.stderr().contains("lock"), "{}", second.stderr());
            status
        }
    };
    assert!(!status.success(), "{status:?}");
    // The first one is unharmed.
    check(&first, "GET", "/readyz", None, 200, None);
}

#[test]
fn unknown_or_mistyped_set_keys_stop_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (assignment, key) in [
        ("limits.max_bodie_bytes=10", "limits.max_bodie_bytes"),
        ("limits.max_body_bytes=lots", "limits.max_body_bytes"),
        ("colour=red", "colour"),
    ] {
        let exited = match Server::try_start(dir.path(), &["--set", assignment]) {
            Err(exited) => exited,
            Ok(_) => panic!("{assignment}: the server started"),
        };
        assert_eq!(exited.status.code(), Some(1), "{assignment}");
        assert!(
            exited.stderr.contains(key),
            "{assignment}: {}",
            exited.stderr
        );
        assert_eq!(
            exited.stderr.trim().lines().count(),
            1,
            "one line: {}",
            exited.stderr
        );
        assert!(!exited.stderr.contains("panicked"), "{}", exited.stderr);
    }
}

#[test]
fn sigterm_drains_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &[]);
    server.wait_ready();
    let mut expected = Vec::new();
    for id in 1..=5u64 {
        let body = format!(r#"{{"by": {}, "mirror_to": {}}}"#, id * 10, id + 100);
        let response = check(
            &server,
            "POST",
            &format!("/api/v1/demo/counters/{id}"),
            Some(&body),
            200,
            None,
        );
        expected.push((id, response.json()["value"].clone()));
    }
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = Connection::open(server.addr).expect("connect");
    let response = idle
        .send("GET", "/healthz", None, true)
        .expect("keep-alive request");
    assert_eq!(response.status, 200);

    let started = Instant::now();
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit 10 s after SIGTERM: {}", server.stderr()));
    assert!(status.success(), "{status:?}: {}", server.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(idle.is_closed_by_server(), "the idle connection was closed");

    let restarted = Server::start(dir.path(), &[]);
    restarted.wait_ready();
    for (id, value) in expected {
        let response = check(
            &restarted,
            "GET",
            &format!("/api/v1/demo/counters/{id}"),
            None,
            200,
            None,
        );
        assert_eq!(response.json()["value"], value, "counter {id}");
        let partner = check(
            &restarted,
            "GET",
            &format!("/api/v1/demo/counters/{}", id + 100),
            None,
            200,
            None,
        );
        assert_eq!(
            partner.json()["mirrors"][id.to_string()],
            value,
            "mirror of {id}"
        );
    }
}
