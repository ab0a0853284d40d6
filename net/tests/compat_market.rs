//! `--compat market` against the real binary (API.md "Compatibility routes", ORIGINALS.md §2):
//! the original's `POST /place_order` and `GET /get_orders/`, their statuses and bodies as a case
//! table (406 with the original's strings, 201 `{"data": "Order was placed for EUR:69.00"}`,
//! FastAPI's 422), the README's query-string form, GBP accepted and `GPB` refused, the exact cap
//! (`market.cap_satoshis` on a fixed price), the 307 trailing-slash redirects, offset pages with
//! `_links` from the request's `Host`, rows with exact decimal numbers, that compat orders are in
//! the native admin listing (the same engine and book), the shared rate limit, the 503 without a
//! price, and that without `--compat market` the routes are 404. Every response is also
//! validated against the OpenAPI document by `common`.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::{call, call_with_headers, check, head, login, sign_up, start, Response, ADMIN};
use serde_json::{json, Value};

/// 1 EUR = 2,000 satoshis exactly, 1 GBP = 2,500, 1 USD = 1,250.
const FIXED: &str = "market.price_source=fixed:EUR=50000,GBP=40000,USD=80000";
const NO_RATE_LIMIT: &str = "market.rate_limit_per_minute=0";

/// The built-in compat user's id (documented in the market's compat module).
const COMPAT_USER_ID: u64 = 0;

/// A server with `--compat market`, a fixed price, no rate limit unless `extra` sets one, and a
/// price already read.
fn compat_server(dir: &std::path::Path, extra: &[&str]) -> common::Server {
    let mut args = vec!["--compat", "market", "--set", FIXED, "--set", NO_RATE_LIMIT];
    args.extend_from_slice(extra);
    let server = start(dir, &args);
    until_priced(server.addr);
    server
}

/// Waits (bounded) until `GET /api/v1/price` is 200.
fn until_priced(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while call(addr, "GET", "/api/v1/price", None, None).status != 200 {
        assert!(Instant::now() < deadline, "no price");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a row of a case table expects besides its status.
enum Expect<'a> {
    /// This exact JSON body.
    Body(Value),
    /// FastAPI's 422: the `(loc, type)` of each problem, in order.
    Detail(&'a [(Value, &'a str)]),
    /// The server's error envelope with this code.
    Code(&'a str),
    /// No body, and this `Location`.
    Location(&'a str),
}

/// One case: method, path (with its query), body, then the status and what else is expected.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, u16, Expect<'a>);

fn check_cases(addr: SocketAddr, cases: &[Case]) {
    for (index, (method, path, body, status, expect)) in cases.iter().enumerate() {
        let response = call(addr, method, path, None, *body);
        let what = format!(
            "case {index}: {method} {path} {body:?} -> {}",
            response.status
        );
        assert_eq!(response.status, *status, "{what}: {}", response.text());
        match expect {
            Expect::Body(expected) => assert_eq!(response.json(), *expected, "{what}"),
            Expect::Detail(problems) => {
                let body = response.json();
                let seen: Vec<(Value, &str)> = body["detail"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: no detail: {body}"))
                    .iter()
                    .map(|problem| {
                        assert!(problem["msg"].is_string(), "{what}: {problem}");
                        (
                            problem["loc"].clone(),
                            problem["type"].as_str().unwrap_or(""),
                        )
                    })
                    .collect();
                assert_eq!(seen, problems.to_vec(), "{what}: {body}");
            }
            Expect::Code(code) => check(&response, *status, Some(code)),
            Expect::Location(location) => {
                assert!(response.body.is_empty(), "{what}: a body");
                assert_eq!(response.header("location"), Some(*location), "{what}");
            }
        }
    }
}

fn placed(text: &str) -> Expect<'static> {
    Expect::Body(json!({ "data": text }))
}

fn refused(message: &str) -> Expect<'static> {
    Expect::Body(json!(message))
}

const CURRENCY: &str = "Requested currency unsupported";
const AMOUNT: &str = "Requested amount exceeds limit";
const BTC: &str = "Requested btc value exceeds limit";

#[test]
fn place_order_answers_as_the_original_did() {
    let dir = tempfile::tempdir().unwrap();
    let server = compat_server(dir.path(), &[]);
    let addr = server.addr;
    let cases: &[Case] = &[
        // Placed: 201 with the original's sentence; GBP is a currency now.
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":69}"#),
            201,
            placed("Order was placed for EUR:69.00"),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"GBP","amount":1000000}"#),
            201,
            placed("Order was placed for GBP:1_000_000.00"),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"Usd","amount":"69.50"}"#),
            201,
            placed("Order was placed for USD:69.50"),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"usd","amount":6.9e1}"#),
            201,
            placed("Order was placed for USD:69.00"),
        ),
        // The README's query form, with no body.
        (
            "POST",
            "/place_order?currency=eur&amount=69",
            None,
            201,
            placed("Order was placed for EUR:69.00"),
        ),
        // 406, in the original's order: currency, then amount, then the cap.
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"GPB","amount":1}"#),
            406,
            refused(CURRENCY),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"JPY","amount":0}"#),
            406,
            refused(CURRENCY),
        ),
        (
            "POST",
            "/place_order?currency=btc&amount=1",
            None,
            406,
            refused(CURRENCY),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":0}"#),
            406,
            refused(AMOUNT),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":-5}"#),
            406,
            refused(AMOUNT),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":1000000000}"#),
            406,
            refused(AMOUNT),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":1e30}"#),
            406,
            refused(AMOUNT),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":"-0.01"}"#),
            406,
            refused(AMOUNT),
        ),
        // 999,999,999 EUR is about 20,000 BTC: over the 100 BTC cap.
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":999999999}"#),
            406,
            refused(BTC),
        ),
        // 422: FastAPI's shape, every problem listed.
        (
            "POST",
            "/place_order",
            None,
            422,
            Expect::Detail(&[(json!(["body"]), "value_error.missing")]),
        ),
        (
            "POST",
            "/place_order",
            Some("{}"),
            422,
            Expect::Detail(&[
                (json!(["body", "currency"]), "value_error.missing"),
                (json!(["body", "amount"]), "value_error.missing"),
            ]),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":69.5}"#),
            422,
            Expect::Detail(&[(json!(["body", "amount"]), "type_error.integer")]),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":7,"amount":"lots","colour":"red"}"#),
            422,
            Expect::Detail(&[
                (json!(["body", "currency"]), "type_error.str"),
                (json!(["body", "amount"]), "type_error.integer"),
                (json!(["body", "colour"]), "value_error.extra"),
            ]),
        ),
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":1,"amount":2}"#),
            422,
            Expect::Detail(&[(json!(["body"]), "value_error.jsondecode")]),
        ),
        (
            "POST",
            "/place_order",
            Some("[1, 2]"),
            422,
            Expect::Detail(&[(json!(["body"]), "type_error.dict")]),
        ),
        (
            "POST",
            "/place_order?amount=70",
            Some(r#"{"currency":"eur","amount":69}"#),
            422,
            Expect::Detail(&[(json!(["query", "amount"]), "value_error.extra")]),
        ),
        (
            "POST",
            "/place_order?currency=eur",
            None,
            422,
            Expect::Detail(&[(json!(["query", "amount"]), "value_error.missing")]),
        ),
        // The trailing slash: 307 to the declared path, query kept, body not read.
        (
            "POST",
            "/place_order/?currency=eur&amount=69",
            Some("not even JSON"),
            307,
            Expect::Location("http://test/place_order?currency=eur&amount=69"),
        ),
        (
            "POST",
            "/place_order/",
            None,
            307,
            Expect::Location("http://test/place_order"),
        ),
        // Routing answers are the server's.
        (
            "GET",
            "/place_order",
            None,
            405,
            Expect::Code("method_not_allowed"),
        ),
    ];
    check_cases(addr, cases);
    let body = call(addr, "POST", "/place_order", None, Some("{")).json();
    assert_eq!(body["detail"][0]["loc"][0], "body");
    assert!(body["detail"][0]["loc"][1].is_u64(), "a position: {body}");

    // Exactly the five placed orders are in the book, all the compat user's.
    let listing = call(addr, "GET", "/api/v1/orders?limit=500", Some(ADMIN), None).json();
    let items = listing["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{listing}");
    assert!(items.iter().all(|order| order["user_id"] == COMPAT_USER_ID));
    let amounts: Vec<(&str, &str)> = items
        .iter()
        .map(|order| {
            (
                order["currency"].as_str().unwrap(),
                order["amount"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        amounts,
        [
            ("EUR", "69.00"),
            ("USD", "69.00"),
            ("USD", "69.50"),
            ("GBP", "1000000.00"),
            ("EUR", "69.00"),
        ]
    );
}

/// The cap is exact: an order that takes the total to exactly `market.cap_satoshis` is placed,
/// one satoshi more is refused (the original's check and insert could race past it).
#[test]
fn the_cap_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    // 0.01 BTC; at EUR=50000 a cent is 20 satoshis exactly.
    let server = compat_server(dir.path(), &["--set", "market.cap_satoshis=1000000"]);
    let addr = server.addr;
    let cases: &[Case] = &[
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":"499.98"}"#),
            201,
            placed("Order was placed for EUR:499.98"),
        ),
        // 999,960 + 80 > 1,000,000.
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":"0.04"}"#),
            406,
            refused(BTC),
        ),
        // 999,960 + 40 = 1,000,000: exactly the cap.
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":"0.02"}"#),
            201,
            placed("Order was placed for EUR:0.02"),
        ),
        (
            "POST",
            "/place_order?currency=gbp&amount=0.01",
            None,
            406,
            refused(BTC),
        ),
    ];
    check_cases(addr, cases);
    let listing = call(addr, "GET", "/api/v1/orders", Some(ADMIN), None).json();
    let sats: u64 = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|order| {
            let btc = order["btc_amount"].as_str().unwrap().replace('.', "");
            btc.parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(sats, 1_000_000, "{listing}");
}

/// `GET /get_orders/`: offset pages newest first, `_links` on a full page from the request's
/// `Host`, rows with exact numbers and a UUID derived from the native order id; compat orders
/// are in the native admin listing, and a real user's orders are not in the compat list.
#[test]
fn get_orders_pages_rows_and_the_native_listing() {
    let dir = tempfile::tempdir().unwrap();
    let server = compat_server(dir.path(), &[]);
    let addr = server.addr;
    for amount in 1..=5 {
        let body = format!(r#"{{"currency":"eur","amount":{amount}}}"#);
        let response = call(addr, "POST", "/place_order", None, Some(&body));
        assert_eq!(response.status, 201, "{}", response.text());
    }
    // A real user's order, through the native API, in the same book.
    sign_up(addr, "alice@example.com");
    let alice = login(addr, "alice@example.com");
    let response = call_with_headers(
        addr,
        "POST",
        "/api/v1/orders",
        &[("Authorization", &format!("Bearer {alice}"))],
        Some(r#"{"currency":"USD","amount":"10"}"#),
    );
    assert_eq!(response.status, 201, "{}", response.text());

    let all = call(addr, "GET", "/get_orders/", None, None);
    assert_eq!(all.status, 200, "{}", all.text());
    let body = all.json();
    assert!(body.get("_links").is_none(), "5 of 10 is not full: {body}");
    let amounts = |body: &Value| -> Vec<f64> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["AMOUNT"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(amounts(&body), [5.0, 4.0, 3.0, 2.0, 1.0]);

    // Rows: exact digits on the wire, the UUID of the native id, Python's time format.
    let native = call(addr, "GET", "/api/v1/orders?user_id=0", Some(ADMIN), None).json();
    let native = native["items"].as_array().unwrap();
    assert_eq!(native.len(), 5);
    let text = all.text();
    let newest = &native[0];
    let id = newest["id"].as_u64().unwrap();
    let uuid = format!("00000000-0000-8000-8000-{id:012x}");
    assert!(
        text.contains(&format!(r#""UUID":"{uuid}","TIMESTAMP":"#)),
        "{text}"
    );
    assert!(
        text.contains(
            r#""AMOUNT":5.00,"CURRENCY":"EUR","EXCHANGE_RATE":50000,"BITCOIN_AMOUNT":0.00010000}"#
        ),
        "{text}"
    );
    let timestamp = body["data"][0]["TIMESTAMP"].as_str().unwrap();
    let created = newest["created_at"].as_str().unwrap();
    assert!(
        timestamp.starts_with(&created[..19].replace('T', " ")),
        "{timestamp} vs {created}"
    );
    // The admin's listing of every user has all six; the compat list has only user 0's.
    let everyone = call(addr, "GET", "/api/v1/orders", Some(ADMIN), None).json();
    assert_eq!(everyone["items"].as_array().unwrap().len(), 6);

    // Offset pages of 2: full pages link the next one, with the request's Host.
    let page = |query: &str| call(addr, "GET", &format!("/get_orders/{query}"), None, None);
    let first = page("?start=0&page_size=2").json();
    assert_eq!(amounts(&first), [5.0, 4.0]);
    assert_eq!(
        first["_links"],
        "http://test/get_orders/?start=2&page_size=2"
    );
    let second = page("?start=2&page_size=2").json();
    assert_eq!(amounts(&second), [3.0, 2.0]);
    assert_eq!(
        second["_links"],
        "http://test/get_orders/?start=4&page_size=2"
    );
    let last = page("?start=4&page_size=2").json();
    assert_eq!(amounts(&last), [1.0]);
    assert!(last.get("_links").is_none(), "{last}");
    let beyond = page("?start=18446744073709551615").json();
    assert_eq!(beyond, json!({"data": []}));
    // Another `Host` (the helpers send `Host: test`), as raw bytes.
    let by_host = common::raw(
        addr,
        b"GET /get_orders/?page_size=5 HTTP/1.1\r\nHost: orders.example:8020\r\n\
          Connection: close\r\n\r\n",
    )
    .unwrap();
    common::contract::check("GET", "/get_orders/?page_size=5", &by_host);
    assert_eq!(
        by_host.json()["_links"],
        "http://orders.example:8020/get_orders/?start=5&page_size=5"
    );

    let cases: &[Case] = &[
        (
            "GET",
            "/get_orders/?page_size=0",
            None,
            422,
            Expect::Detail(&[(json!(["query", "page_size"]), "value_error.number.not_ge")]),
        ),
        (
            "GET",
            "/get_orders/?page_size=501",
            None,
            422,
            Expect::Detail(&[(json!(["query", "page_size"]), "value_error.number.not_le")]),
        ),
        (
            "GET",
            "/get_orders/?start=-1&page_size=x",
            None,
            422,
            Expect::Detail(&[
                (json!(["query", "start"]), "value_error.number.not_ge"),
                (json!(["query", "page_size"]), "type_error.integer"),
            ]),
        ),
        (
            "GET",
            "/get_orders/?limit=5",
            None,
            422,
            Expect::Detail(&[(json!(["query", "limit"]), "value_error.extra")]),
        ),
        // The missing slash: 307, query kept.
        (
            "GET",
            "/get_orders?start=2&page_size=2",
            None,
            307,
            Expect::Location("http://test/get_orders/?start=2&page_size=2"),
        ),
        (
            "POST",
            "/get_orders/",
            None,
            405,
            Expect::Code("method_not_allowed"),
        ),
    ];
    check_cases(addr, cases);
    let redirected = head(addr, "/get_orders", &[]);
    assert_eq!(redirected.status, 307);
    assert_eq!(
        redirected.header("location"),
        Some("http://test/get_orders/")
    );
}

/// Without `--compat market` none of its routes exist (404 `not_found`), and the native API
/// is there as always.
#[test]
fn without_the_flag_the_routes_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--set", FIXED]);
    let addr = server.addr;
    for (method, path, body) in [
        (
            "POST",
            "/place_order",
            Some(r#"{"currency":"eur","amount":69}"#),
        ),
        ("POST", "/place_order?currency=eur&amount=69", None),
        ("POST", "/place_order/", None),
        ("GET", "/get_orders/", None),
        ("GET", "/get_orders", None),
    ] {
        check(
            &call(addr, method, path, None, body),
            404,
            Some("not_found"),
        );
    }
    until_priced(addr);
    let listing = call(addr, "GET", "/api/v1/orders", Some(ADMIN), None).json();
    assert_eq!(listing["items"], json!([]));
}

/// The compat user is one user of the native rate limit: all compat clients share its bucket
/// (the original README's 60 a minute), and the 429 is the server's envelope with
/// `Retry-After`; a real user's bucket is its own.
#[test]
fn compat_clients_share_the_compat_users_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = compat_server(dir.path(), &["--set", "market.rate_limit_per_minute=2"]);
    let addr = server.addr;
    let order = Some(r#"{"currency":"eur","amount":1}"#);
    for _ in 0..2 {
        assert_eq!(call(addr, "POST", "/place_order", None, order).status, 201);
    }
    let limited = call(
        addr,
        "POST",
        "/place_order?currency=eur&amount=1",
        None,
        None,
    );
    check(&limited, 429, Some("rate_limited"));
    assert!(limited.header("retry-after").is_some());
    // Refused input is refused before the limit is asked, as on the native route.
    let refused = call(
        addr,
        "POST",
        "/place_order",
        None,
        Some(r#"{"currency":"x","amount":1}"#),
    );
    assert_eq!(refused.status, 406);
    sign_up(addr, "alice@example.com");
    let alice = login(addr, "alice@example.com");
    let native = call_with_headers(
        addr,
        "POST",
        "/api/v1/orders",
        &[("Authorization", &format!("Bearer {alice}"))],
        Some(r#"{"currency":"EUR","amount":"1"}"#),
    );
    assert_eq!(native.status, 201, "{}", native.text());
}

/// No fresh price: 503 with the original's string (and `Retry-After`); nothing is placed.
#[test]
fn no_price_is_the_originals_503() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let source = format!("market.price_source=http://127.0.0.1:{port}/bpi.json");
    let server = start(
        dir.path(),
        &[
            "--compat",
            "market",
            "--set",
            &source,
            "--set",
            NO_RATE_LIMIT,
        ],
    );
    let addr = server.addr;
    let response: Response = call(
        addr,
        "POST",
        "/place_order",
        None,
        Some(r#"{"currency":"eur","amount":69}"#),
    );
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.json(), json!("API Service unavailable"));
    assert!(response.header("retry-after").is_some());
    // Input is still checked first, as in the original.
    let response = call(
        addr,
        "POST",
        "/place_order?currency=gpb&amount=1",
        None,
        None,
    );
    assert_eq!(response.json(), json!(CURRENCY));
    let listing = call(addr, "GET", "/get_orders/", None, None).json();
    assert_eq!(listing, json!({"data": []}));
}
