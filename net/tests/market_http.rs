//! The market over HTTP against the real binary (API.md "Market"): every error code as a case
//! table, orders and their pages, idempotency keys (concurrent, replayed, reused), the rate
//! limit's `Retry-After`, the price, health reports, and the HTTP price source against a
//! loopback server speaking CoinDesk's v1 shape (fresh, malformed, failing, unreachable).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    call, call_with_headers, check, check_table, login, sign_up, start, Response, Row, ADMIN,
};
use serde_json::Value;

const FIXED: &str = "market.price_source=fixed:EUR=55890.2,GBP=48000,USD=60000.5";

fn place(addr: SocketAddr, token: &str, key: Option<&str>, body: &str) -> Response {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    if let Some(key) = key {
        headers.push(("Idempotency-Key", key));
    }
    call_with_headers(addr, "POST", "/api/v1/orders", &headers, Some(body))
}

/// Waits (bounded) until `GET /api/v1/price` answers `status`.
fn until_price(addr: SocketAddr, status: u16) -> Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = call(addr, "GET", "/api/v1/price", None, None);
        if response.status == status {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "price never answered {status}: {} {}",
            response.status,
            response.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_market_error_code_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--set", FIXED, "--set", "market.cap_satoshis=200000000"],
    );
    let addr = server.addr;
    sign_up(addr, "alice@example.com");
    sign_up(addr, "bob@example.com");
    let alice = login(addr, "alice@example.com");
    let bob = login(addr, "bob@example.com");
    until_price(addr, 200);
    let (a, b) = (Some(alice.as_str()), Some(bob.as_str()));
    let long_service = format!("/api/v1/health/reports?service={}", "s".repeat(201));
    let admin = Some(ADMIN);
    let rows: &[Row] = &[
        // Authentication comes before the body.
        (
            None,
            "POST",
            "/api/v1/orders",
            Some("{"),
            401,
            "unauthenticated",
        ),
        (
            Some("garbage"),
            "POST",
            "/api/v1/orders",
            Some("{}"),
            401,
            "unauthenticated",
        ),
        (
            admin,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"EUR","amount":"1"}"#),
            401,
            "unauthenticated",
        ),
        (a, "POST", "/api/v1/orders", Some("{"), 400, "invalid_json"),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"EUR"}"#),
            400,
            "missing_field",
        ),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"EUR","amount":69}"#),
            400,
            "invalid_field",
        ),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"EUR","amount":"69.001"}"#),
            400,
            "invalid_field",
        ),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"EUR","amount":"1e3"}"#),
            400,
            "invalid_field",
        ),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"EUR","amount":"1","x":1}"#),
            400,
            "unknown_field",
        ),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"EUR","currency":"EUR","amount":"1"}"#),
            400,
            "invalid_json",
        ),
        // The original's typo is not a currency; GBP is.
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"GPB","amount":"1"}"#),
            422,
            "unsupported_currency",
        ),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"JPY","amount":"1"}"#),
            422,
            "unsupported_currency",
        ),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"EUR","amount":"0"}"#),
            422,
            "amount_out_of_range",
        ),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"EUR","amount":"-5"}"#),
            422,
            "amount_out_of_range",
        ),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"EUR","amount":"1000000000"}"#),
            422,
            "amount_out_of_range",
        ),
        (
            a,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"gbp","amount":"48000"}"#),
            201,
            "",
        ),
        // 2 BTC cap: 1 BTC taken, 1.5 does not fit, 1 does.
        (
            b,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"GBP","amount":"72000"}"#),
            409,
            "btc_cap_exceeded",
        ),
        (
            b,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"USD","amount":"60000.50"}"#),
            201,
            "",
        ),
        (
            b,
            "POST",
            "/api/v1/orders",
            Some(r#"{"currency":"USD","amount":"0.01"}"#),
            409,
            "btc_cap_exceeded",
        ),
        (None, "GET", "/api/v1/orders", None, 401, "unauthenticated"),
        (a, "GET", "/api/v1/orders?user_id=2", None, 403, "forbidden"),
        (
            a,
            "GET",
            "/api/v1/orders?user_id=x",
            None,
            400,
            "invalid_field",
        ),
        (
            a,
            "GET",
            "/api/v1/orders?cursor=zz",
            None,
            400,
            "invalid_field",
        ),
        (
            a,
            "GET",
            "/api/v1/orders?limit=0",
            None,
            400,
            "invalid_field",
        ),
        (
            a,
            "GET",
            "/api/v1/orders?other=1",
            None,
            400,
            "unknown_field",
        ),
        (a, "GET", "/api/v1/orders?user_id=1", None, 200, ""),
        (admin, "GET", "/api/v1/orders?user_id=2", None, 200, ""),
        (None, "GET", "/api/v1/price?x=1", None, 400, "unknown_field"),
        (
            a,
            "POST",
            "/api/v1/health/reports",
            Some("{}"),
            401,
            "unauthenticated",
        ),
        (
            None,
            "GET",
            "/api/v1/health/reports",
            None,
            401,
            "unauthenticated",
        ),
        (
            admin,
            "POST",
            "/api/v1/health/reports",
            Some(r#"{"level":"loud","service":"s","status":"ok","data":""}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/health/reports",
            Some(r#"{"level":"info","service":"","status":"ok","data":""}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/health/reports",
            Some(r#"{"level":"info","service":"s","status":"ok"}"#),
            400,
            "missing_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/health/reports",
            Some(r#"{"level":"info","service":"s","status":"ok","data":7}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/health/reports",
            Some(r#"{"level":"critical","service":"s","status":"down","data":"disk"}"#),
            201,
            "",
        ),
        (
            admin,
            "GET",
            "/api/v1/health/reports?level=loud",
            None,
            400,
            "invalid_field",
        ),
        (admin, "GET", &long_service, None, 400, "invalid_field"),
        (
            admin,
            "GET",
            "/api/v1/health/reports?level=critical&service=s",
            None,
            200,
            "",
        ),
    ];
    check_table(addr, rows);
    // Keys: shape, replay, reuse.
    let body = r#"{"currency":"EUR","amount":"0.01"}"#;
    for bad in ["", "has space", &"k".repeat(256), "é"] {
        let response = place(addr, &alice, Some(bad), body);
        check(&response, 400, Some("invalid_header"));
    }
    let bob_orders = call(addr, "GET", "/api/v1/orders", Some(&bob), None).json();
    assert_eq!(bob_orders["items"].as_array().unwrap().len(), 1);
    assert_eq!(bob_orders["items"][0]["btc_amount"], "1.00000000");
    assert_eq!(bob_orders["items"][0]["amount"], "60000.50");
    assert_eq!(bob_orders["items"][0]["exchange_rate"], "60000.5");
    assert_eq!(bob_orders["items"][0]["currency"], "USD");
}

#[test]
fn orders_keys_pages_and_the_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--set", FIXED, "--set", "market.rate_limit_per_minute=30"],
    );
    let addr = server.addr;
    sign_up(addr, "alice@example.com");
    let alice = login(addr, "alice@example.com");
    until_price(addr, 200);

    // Ten concurrent requests with one key: one 201, nine 200, one order.
    let body = r#"{"currency":"EUR","amount":"69.00"}"#;
    let answers: Vec<Response> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|_| scope.spawn(|| place(addr, &alice, Some("pay-1"), body)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created: Vec<&Response> = answers.iter().filter(|r| r.status == 201).collect();
    assert_eq!(
        created.len(),
        1,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let order = created[0].json();
    assert_eq!(order["btc_amount"], "0.00123457");
    assert_eq!(order["amount"], "69.00");
    assert_eq!(order["exchange_rate"], "55890.2");
    for answer in &answers {
        assert!(answer.status == 201 || answer.status == 200);
        assert_eq!(answer.json(), order);
    }
    let reused = place(
        addr,
        &alice,
        Some("pay-1"),
        r#"{"currency":"EUR","amount":"70"}"#,
    );
    check(&reused, 409, Some("idempotency_key_reused"));

    // The rate limit: 30 per minute; one was taken by the first order (replays take none).
    let mut placed = vec![order["id"].as_u64().unwrap()];
    let mut limited = None;
    for i in 0..40 {
        let response = place(
            addr,
            &alice,
            None,
            &format!(r#"{{"currency":"USD","amount":"{}.00"}}"#, i + 1),
        );
        match response.status {
            201 => placed.push(response.json()["id"].as_u64().unwrap()),
            429 => {
                limited = Some(response);
                break;
            }
            other => panic!("{other} {}", response.text()),
        }
    }
    assert_eq!(placed.len(), 30, "the bucket holds 30");
    let limited = limited.expect("a 429");
    check(&limited, 429, Some("rate_limited"));
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // A replay is still answered.
    check(&place(addr, &alice, Some("pay-1"), body), 200, None);

    // Pages: newest first, keyset, no order twice.
    let mut seen = Vec::new();
    let mut path = "/api/v1/orders?limit=7".to_string();
    loop {
        let page = call(addr, "GET", &path, Some(&alice), None).json();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_u64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/orders?limit=7&cursor={cursor}"),
            None => break,
        }
    }
    placed.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, placed);
    // The admin sees them too.
    let all = call(addr, "GET", "/api/v1/orders?limit=500", Some(ADMIN), None).json();
    assert_eq!(all["items"].as_array().unwrap().len(), 30);
}

/// A loopback HTTP server that answers every GET with what `answer` holds: (status, body).
fn coindesk(answer: Arc<Mutex<(u16, String)>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
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
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let (status, text) = answer.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if writer.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn coindesk_document(usd: &str, gbp: &str, eur: &str) -> String {
    format!(
        r#"{{"time":{{"updated":"Nov 29, 2026 10:00:00 UTC"}},"disclaimer":"test","chartName":"Bitcoin","bpi":{{
        "USD":{{"code":"USD","symbol":"&#36;","rate":"x","description":"United States Dollar","rate_float":{usd}}},
        "GBP":{{"code":"GBP","symbol":"&pound;","rate":"x","description":"British Pound Sterling","rate_float":{gbp}}},
        "EUR":{{"code":"EUR","symbol":"&euro;","rate":"x","description":"Euro","rate_float":{eur}}}}}}}"#
    )
}

fn feed_reports(addr: SocketAddr) -> Vec<Value> {
    call(
        addr,
        "GET",
        "/api/v1/health/reports?service=market.price_feed",
        Some(ADMIN),
        None,
    )
    .json()["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// The HTTP source: a fresh document is the price (its numbers read exactly); a malformed
/// document and a failing server are reported to the health log and leave the last price until
/// it is older than `market.max_price_age_seconds`, then orders get 503 `price_unavailable`;
/// the price comes back with the source; an unreachable source is reported too.
#[test]
fn the_http_price_source_against_a_coindesk_shaped_fake() {
    let answer = Arc::new(Mutex::new((
        200,
        coindesk_document("35123.4567", "25000.1", "2.95e4"),
    )));
    let fake = coindesk(answer.clone());
    let dir = tempfile::tempdir().unwrap();
    let source = format!("market.price_source=http://{fake}/v1/bpi/currentprice.json");
    let server = start(
        dir.path(),
        &[
            "--set",
            &source,
            "--set",
            "market.price_refresh_seconds=1",
            "--set",
            "market.max_price_age_seconds=3",
            "--set",
            "engine.timer_tick_ms=20",
        ],
    );
    let addr = server.addr;
    sign_up(addr, "alice@example.com");
    let alice = login(addr, "alice@example.com");
    let price = until_price(addr, 200).json();
    assert_eq!(price["rates"]["USD"], "35123.4567");
    assert_eq!(price["rates"]["GBP"], "25000.1");
    assert_eq!(price["rates"]["EUR"], "29500");
    assert_eq!(
        price["source"],
        format!("http://{fake}/v1/bpi/currentprice.json")
    );
    let order = place(addr, &alice, None, r#"{"currency":"EUR","amount":"295"}"#);
    check(&order, 201, None);
    assert_eq!(order.json()["btc_amount"], "0.01000000");

    // Malformed: a string where the number was. The last price stays until it is too old.
    *answer.lock().unwrap() = (200, coindesk_document("\"35,123.45\"", "1", "1"));
    let stale = until_price(addr, 503);
    check(&stale, 503, Some("price_unavailable"));
    check(
        &place(addr, &alice, None, r#"{"currency":"EUR","amount":"1"}"#),
        503,
        Some("price_unavailable"),
    );
    let reports = feed_reports(addr);
    assert!(!reports.is_empty());
    assert!(
        reports[0]["data"].as_str().unwrap().contains("rate_float"),
        "{reports:?}"
    );

    // A failing server, then the price comes back.
    *answer.lock().unwrap() = (500, "{}".into());
    // More than three failures in a row are critical.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reports = feed_reports(addr);
        let answered_500 = reports
            .iter()
            .any(|r| r["data"].as_str().unwrap().contains("answered 500"));
        if answered_500 && reports[0]["level"] == "critical" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no critical report of the 500s: {reports:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    *answer.lock().unwrap() = (200, coindesk_document("40000", "30000", "35000"));
    let price = until_price(addr, 200).json();
    assert_eq!(price["rates"]["EUR"], "35000");
    // The feed's "recovered" report is written just after the quote is published.
    let deadline = Instant::now() + Duration::from_secs(20);
    while feed_reports(addr)[0]["status"] != "recovered" {
        assert!(Instant::now() < deadline, "no recovered report");
        std::thread::sleep(Duration::from_millis(20));
    }
    check(
        &place(addr, &alice, None, r#"{"currency":"EUR","amount":"1"}"#),
        201,
        None,
    );
}

#[test]
fn an_unreachable_price_source_is_reported_and_orders_wait_for_a_price() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let source = format!("market.price_source=http://127.0.0.1:{port}/bpi.json");
    let server = start(dir.path(), &["--set", &source]);
    let addr = server.addr;
    sign_up(addr, "alice@example.com");
    let alice = login(addr, "alice@example.com");
    let deadline = Instant::now() + Duration::from_secs(20);
    while feed_reports(addr).is_empty() {
        assert!(Instant::now() < deadline, "no report of the failure");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = &feed_reports(addr)[0];
    assert_eq!(report["level"], "error");
    assert_eq!(report["status"], "fetch_failed");
    check(
        &call(addr, "GET", "/api/v1/price", None, None),
        503,
        Some("price_unavailable"),
    );
    check(
        &place(
            addr,
            &alice,
            Some("k"),
            r#"{"currency":"EUR","amount":"1"}"#,
        ),
        503,
        Some("price_unavailable"),
    );
    // Nothing was kept for the refused key: it is free once a price exists (not here).
    let orders = call(addr, "GET", "/api/v1/orders", Some(&alice), None).json();
    assert_eq!(orders["items"].as_array().unwrap().len(), 0);
}
