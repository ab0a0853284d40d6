//! Crash test of the market (issue 14): writers place orders with idempotency keys against the
//! real `switchyard` binary while the BTC cap fills; the process is killed with SIGKILL at a
//! seeded moment and restarted on the same data dir. Then:
//! - every acknowledged order is there, and its key still answers 200 with the same order;
//! - a key whose request was in flight at the kill gives one order at most: its retry is 200
//!   (it had landed), 201 (it had not) or 409 (it does not fit), and a second retry agrees;
//! - no key maps to two orders: the book holds exactly one order per key that has one;
//! - the sum of all orders is within the cap, and the book's self-check finds nothing.
//!
//! CI runs CYCLES cycles; `SWITCHYARD_SLOW_TESTS=1` runs SLOW_CYCLES.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{call, login, sign_up, Response, Server, ADMIN, FAST_HASH};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

const CYCLES: usize = 3;
const SLOW_CYCLES: usize = 30;
const WRITERS: usize = 6;
const KILL_DELAY_MS_MIN: u64 = 300;
const KILL_DELAY_MS_MAX: u64 = 1200;
/// 1 BTC = 10,000 of each currency; orders of 0.1 to 1 BTC; a 1,500 BTC cap fills after about
/// 2,700 orders, so some cycles kill the server while orders are accepted and others once the
/// cap is reached.
const PRICE: &str = "market.price_source=fixed:EUR=10000,GBP=10000,USD=10000";
const CAP: &str = "market.cap_satoshis=150000000000";
const CAP_SATS: u64 = 150_000_000_000;

/// What the server said of a key: its status and order id (0 for a refusal), or `None` when
/// it did not answer (the kill) or was not ready (503).
type Outcome = Option<(u16, u64)>;

/// Per key: the token, the body and the outcome.
#[derive(Default)]
struct Ledger {
    keys: BTreeMap<String, (String, String, Outcome)>,
}

/// `POST /api/v1/orders` with `key`; an IO error is the kill.
fn place(addr: SocketAddr, token: &str, key: &str, body: &str) -> std::io::Result<Response> {
    let request = format!(
        "POST /api/v1/orders HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nIdempotency-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = common::raw(addr, request.as_bytes())?;
    common::contract::check("POST", "/api/v1/orders", &response);
    Ok(response)
}

fn order_id(response: &Response) -> u64 {
    response.json()["id"].as_u64().expect("an order id")
}

fn satoshis(text: &str) -> u64 {
    let (whole, fraction) = text.split_once('.').expect("8 decimals");
    assert_eq!(fraction.len(), 8, "{text}");
    whole.parse::<u64>().unwrap() * 100_000_000 + fraction.parse::<u64>().unwrap()
}

/// Every order in the book (admin, newest first), by id → (user, btc satoshis).
fn all_orders(addr: SocketAddr) -> BTreeMap<u64, (u64, u64)> {
    let mut orders = BTreeMap::new();
    let mut path = "/api/v1/orders?limit=500".to_string();
    loop {
        let page = call(addr, "GET", &path, Some(ADMIN), None);
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        for item in page["items"].as_array().unwrap() {
            let id = item["id"].as_u64().unwrap();
            let user = item["user_id"].as_u64().unwrap();
            let btc = satoshis(item["btc_amount"].as_str().unwrap());
            assert!(
                orders.insert(id, (user, btc)).is_none(),
                "order {id} listed twice"
            );
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/orders?limit=500&cursor={cursor}"),
            None => return orders,
        }
    }
}

fn cycle(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = FAST_HASH.to_vec();
    args.extend_from_slice(&[
        "--admin-token",
        ADMIN,
        "--set",
        PRICE,
        "--set",
        CAP,
        "--set",
        "market.rate_limit_per_minute=0",
    ]);
    let mut server = Server::start(dir.path(), &args);
    server.wait_ready();
    let addr = server.addr;
    let users: Vec<(u64, String)> = (0..WRITERS)
        .map(|w| {
            let email = format!("buyer{w}@example.com");
            let id = sign_up(addr, &email);
            (id, login(addr, &email))
        })
        .collect();
    // The first order waits for the feed's first price.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while call(addr, "GET", "/api/v1/price", None, None).status != 200 {
        assert!(std::time::Instant::now() < deadline, "no price");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(w, (_, token))| {
            let (ledger, stop, token) = (ledger.clone(), stop.clone(), token.clone());
            std::thread::spawn(move || {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ ((w as u64 + 1) * 0x9E37));
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let key = format!("w{w}-{n}");
                    let currency = ["EUR", "gbp", "Usd"][rng.random_range(0..3usize)];
                    let amount = format!(
                        "{}.{:02}",
                        rng.random_range(1_000..10_000u64),
                        rng.random_range(0..100u64)
                    );
                    let body = format!(r#"{{"currency":"{currency}","amount":"{amount}"}}"#);
                    let answer = place(addr, &token, &key, &body);
                    let outcome = match &answer {
                        Ok(response) if response.status == 201 || response.status == 200 => {
                            Some((response.status, order_id(response)))
                        }
                        Ok(response) if response.status == 409 => {
                            assert_eq!(
                                response.json_code().as_deref(),
                                Some("btc_cap_exceeded"),
                                "{}",
                                response.text()
                            );
                            Some((409, 0))
                        }
                        Ok(response) if response.status == 503 => None,
                        Ok(response) => panic!("{} {}", response.status, response.text()),
                        Err(_) => None,
                    };
                    ledger
                        .lock()
                        .unwrap()
                        .keys
                        .insert(key, (token.clone(), body, outcome));
                    if answer.is_err() {
                        return; // the kill
                    }
                }
            })
        })
        .collect();
    let delay = KILL_DELAY_MS_MIN + seed % (KILL_DELAY_MS_MAX - KILL_DELAY_MS_MIN);
    std::thread::sleep(Duration::from_millis(delay));
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    let server = Server::start(dir.path(), &args);
    server.wait_ready();
    let addr = server.addr;
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let acknowledged = ledger
        .keys
        .values()
        .filter(|(_, _, outcome)| matches!(outcome, Some((200 | 201, _))))
        .count();
    assert!(acknowledged > 0, "seed {seed:#x}: nothing was acknowledged");

    // The book as recovered, before any retry.
    let recovered = all_orders(addr);
    let total: u64 = recovered.values().map(|(_, btc)| btc).sum();
    assert!(total <= CAP_SATS, "seed {seed:#x}: {total} above the cap");
    // Each key's retry, twice.
    let mut orders_by_key = BTreeMap::new();
    let mut created_by_retry = 0;
    for (key, (token, body, outcome)) in &ledger.keys {
        let first = place(addr, token, key, body).unwrap();
        let second = place(addr, token, key, body).unwrap();
        match outcome {
            Some((200 | 201, id)) => {
                assert_eq!(first.status, 200, "seed {seed:#x}: {key}: {}", first.text());
                assert_eq!(order_id(&first), *id, "seed {seed:#x}: {key} changed order");
                assert!(
                    recovered.contains_key(id),
                    "seed {seed:#x}: order {id} lost"
                );
            }
            // Refused for the cap: the total only grows, so it still does not fit.
            Some((409, _)) => {
                assert_eq!(first.status, 409, "seed {seed:#x}: {key}: {}", first.text());
                continue;
            }
            Some(other) => unreachable!("{other:?}"),
            // In flight at the kill (or refused with 503 before a price): any of the three.
            None => match first.status {
                200 => assert!(recovered.contains_key(&order_id(&first))),
                201 => created_by_retry += 1,
                409 => continue,
                status => panic!("seed {seed:#x}: {key}: {status} {}", first.text()),
            },
        }
        assert_eq!(
            second.status,
            200,
            "seed {seed:#x}: {key}: {}",
            second.text()
        );
        assert_eq!(order_id(&second), order_id(&first));
        assert!(
            orders_by_key
                .insert(order_id(&first), key.clone())
                .is_none(),
            "seed {seed:#x}: two keys answer with order {}",
            order_id(&first)
        );
    }
    // One order per key that has one, and no other order.
    let after = all_orders(addr);
    assert_eq!(after.len(), recovered.len() + created_by_retry);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        orders_by_key.keys().collect::<Vec<_>>(),
        "seed {seed:#x}: the book holds an order no key answers with"
    );
    let total: u64 = after.values().map(|(_, btc)| btc).sum();
    assert!(total <= CAP_SATS);
    let check = call(addr, "GET", "/api/v1/admin/market/check", Some(ADMIN), None);
    assert_eq!(check.status, 200);
    assert_eq!(
        check.json()["differences"],
        serde_json::json!([]),
        "seed {seed:#x}"
    );
    eprintln!(
        "seed {seed:#x}: {} keys, {acknowledged} acknowledged, {} orders, {} BTC-satoshis, \
         {created_by_retry} created by a retry",
        ledger.keys.len(),
        after.len(),
        total
    );
}

#[test]
fn acknowledged_orders_survive_kill_9_and_no_key_makes_two() {
    let cycles = if std::env::var("SWITCHYARD_SLOW_TESTS").as_deref() == Ok("1") {
        SLOW_CYCLES
    } else {
        CYCLES
    };
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for cycle_index in 0..cycles {
        cycle(base.wrapping_add(cycle_index as u64 * 0x2545_F491));
    }
}
