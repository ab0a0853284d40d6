//! The market scenario over HTTP ([`HttpMarket`]) against a loopback fake of API.md's Market
//! routes (hyper's server, an in-memory book with exact money from the engine's helpers): sign
//! up, login tokens, `POST /api/v1/orders` with `Idempotency-Key` (201 new, 200 replay of the
//! same key and body, 409 for another body), a 429 with `Retry-After: 1` on every user's first
//! order request, keyset pages of `GET /api/v1/orders` (a user's own, or every user's with the
//! admin token) and `GET /api/v1/price`. Checks the run finishes clean, that every order request
//! carried a key and every key one body, that each user's first request was resent after its
//! `Retry-After`, and that a fake that drops an order from its listings is caught.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use switchyard_bot::market::{self, HttpMarket, MarketOptions};
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::{Outcome, Report};
use switchyard_engine::market::money::{format_cents, format_sats, parse_amount};
use switchyard_engine::market::{Currency, Rate};
use tokio::net::TcpListener;

const ADMIN: &str = "admin-secret";

#[derive(Default)]
struct Book {
    users: HashMap<String, u64>,
    /// Every order, oldest first (ids 1, 2, ...).
    orders: Vec<Value>,
    /// (user, key) → (currency, amount, order index).
    keys: HashMap<(u64, String), (String, String, usize)>,
    /// Users whose first order request was answered 429.
    limited: Vec<u64>,
    /// Order requests without an `Idempotency-Key`.
    keyless: u64,
    /// Drop the newest order from every listing (a lying server).
    drop_newest: bool,
}

type Shared = Arc<Mutex<Book>>;

fn answer(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn error(status: u16, code: &str) -> Response<Full<Bytes>> {
    answer(status, json!({"error": {"code": code, "message": code}}))
}

fn rate(currency: Currency) -> Rate {
    Rate::parse(match currency {
        Currency::Eur => "50000",
        Currency::Gbp => "43000.5",
        Currency::Usd => "58000",
    })
    .unwrap()
}

fn query(uri: &hyper::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_string())
    })
}

async fn handle(
    book: Shared,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (head, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = head
        .headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_string);
    let caller: Option<u64> = token
        .as_deref()
        .and_then(|token| token.strip_prefix("tok-"))
        .and_then(|id| id.parse().ok());
    let mut book = book.lock().unwrap();
    let path = head.uri.path();
    let response = match (head.method.as_str(), path) {
        ("POST", "/api/v1/users") => {
            let email = body["email"].as_str().unwrap().to_string();
            let next = book.users.len() as u64 + 1;
            let id = *book.users.entry(email).or_insert(next);
            answer(201, json!({"id": id, "posts_count": 0, "likes_given": 0}))
        }
        ("POST", "/api/v1/auth/login") => {
            let id = book.users[body["email"].as_str().unwrap()];
            answer(
                200,
                json!({"access_token": format!("tok-{id}"), "token_type": "Bearer", "expires_in": 3600, "user_id": id}),
            )
        }
        ("GET", "/api/v1/price") => answer(
            200,
            json!({"rates": {"EUR": "50000", "GBP": "43000.5", "USD": "58000"}, "source": "fixed", "updated_at": "2026-11-29T00:00:00Z"}),
        ),
        ("POST", "/api/v1/orders") => 'place: {
            let Some(user) = caller else {
                break 'place error(401, "unauthenticated");
            };
            let Some(key) = head
                .headers
                .get("idempotency-key")
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
            else {
                book.keyless += 1;
                break 'place error(400, "invalid_header");
            };
            let currency = body["currency"].as_str().unwrap().to_string();
            let amount = body["amount"].as_str().unwrap().to_string();
            if let Some((known_currency, known_amount, index)) = book.keys.get(&(user, key.clone()))
            {
                if *known_currency != currency || *known_amount != amount {
                    break 'place error(409, "idempotency_key_reused");
                }
                break 'place answer(200, book.orders[*index].clone());
            }
            if !book.limited.contains(&user) {
                book.limited.push(user);
                break 'place Response::builder()
                    .status(429)
                    .header("retry-after", "1")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(
                        json!({"error": {"code": "rate_limited", "message": "wait"}}).to_string(),
                    )))
                    .unwrap();
            }
            let parsed = Currency::parse(&currency).unwrap();
            let cents = parse_amount(&amount).unwrap();
            let rate = rate(parsed);
            let order = json!({
                "id": book.orders.len() as u64 + 1,
                "user_id": user,
                "currency": parsed.code(),
                "amount": format_cents(cents),
                "exchange_rate": rate.to_string(),
                "btc_amount": format_sats(rate.btc_for(cents).unwrap()),
                "created_at": "2026-11-29T00:00:00Z",
                "price_at": "2026-11-29T00:00:00Z",
            });
            book.orders.push(order.clone());
            let index = book.orders.len() - 1;
            book.keys.insert((user, key), (currency, amount, index));
            answer(201, order)
        }
        ("GET", "/api/v1/orders") => {
            let admin = token.as_deref() == Some(ADMIN);
            if caller.is_none() && !admin {
                error(401, "unauthenticated")
            } else {
                let limit: usize = query(&head.uri, "limit").map_or(50, |l| l.parse().unwrap());
                let before: u64 =
                    query(&head.uri, "cursor").map_or(u64::MAX, |c| c.parse().unwrap());
                let newest = book.orders.len() as u64;
                let listed: Vec<Value> = book
                    .orders
                    .iter()
                    .rev()
                    .filter(|order| !(book.drop_newest && order["id"] == newest))
                    .filter(|order| order["id"].as_u64().unwrap() < before)
                    .filter(|order| admin || Some(order["user_id"].as_u64().unwrap()) == caller)
                    .take(limit + 1)
                    .cloned()
                    .collect();
                let next = (listed.len() > limit).then(|| listed[limit - 1]["id"].to_string());
                let items: Vec<Value> = listed.into_iter().take(limit).collect();
                answer(200, json!({"items": items, "next_cursor": next}))
            }
        }
        _ => error(404, "not_found"),
    };
    Ok(response)
}

/// Starts the fake on an ephemeral port; returns its URL and its book.
async fn fake_market(drop_newest: bool) -> (String, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let book: Shared = Arc::new(Mutex::new(Book {
        drop_newest,
        ..Book::default()
    }));
    let shared = book.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let book = shared.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| handle(book.clone(), request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{address}"), book)
}

fn run(drop_newest: bool) -> (Report, Shared) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (url, book) = fake_market(drop_newest).await;
        let transport = HttpMarket::new(&url, 4, Duration::from_secs(10), ADMIN).unwrap();
        let options = MarketOptions {
            seed: 17,
            users: 3,
            // A page is 500 orders: 520 make every listing two pages.
            orders: 520,
            concurrency: 4,
            retry_percent: 30,
            max_amount_cents: 100_000,
            cap_satoshis: 100 * 100_000_000,
            deadline: Duration::from_secs(60),
            progress: ProgressMode::Off,
        };
        (market::run(Arc::new(transport), options).await, book)
    })
}

#[test]
fn the_http_transport_sends_keys_honours_retry_after_and_finishes_clean() {
    let (report, book) = run(false);
    let text = report.render_text();
    assert_eq!(report.outcome, Outcome::Finished, "{text}");
    assert_eq!(report.transport, "http");
    let book = book.lock().unwrap();
    assert_eq!(book.keyless, 0, "every order request carries its key");
    assert_eq!(book.orders.len(), 520);
    assert_eq!(
        book.limited.len(),
        3,
        "each user's first request was refused once"
    );
    let figures = report.market.as_ref().unwrap();
    assert_eq!(figures.created, 520, "{text}");
    assert_eq!(figures.replayed, figures.duplicated, "{text}");
    assert_eq!(figures.rate_limited, 3, "{text}");
    assert_eq!(figures.resent, 3, "{text}");
    assert!(
        figures.place_seconds >= 1.0,
        "Retry-After: 1 was waited out: {text}"
    );
    assert!(figures.price_stable, "{text}");
    assert_eq!(figures.ledger_btc, figures.server_btc);
    // Every user's orders: one empty page before the run, two pages (500 + 20) after it.
    assert_eq!(report.operations["list_all_orders"].count, 3, "{text}");
}

#[test]
fn a_listing_that_drops_the_newest_order_is_a_mismatch() {
    let (report, _) = run(true);
    assert_eq!(
        report.outcome,
        Outcome::Mismatch,
        "{}",
        report.render_text()
    );
    assert!(
        report
            .differences
            .iter()
            .any(|difference| difference.contains("missing on the server")),
        "{:#?}",
        report.differences
    );
}
