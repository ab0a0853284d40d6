//! The work pool across SIGKILL of the real binary: acknowledged results survive, held leases
//! survive with their deadline (the holder's heartbeat still works), client tokens survive, and
//! leases that expire while the server is down or after the restart are reclaimed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{call, Response, Server};
use serde_json::{json, Value};

const ADMIN: &str = "admin-secret";

fn start(dir: &std::path::Path, extra: &[&str]) -> Server {
    let mut args: Vec<&str> = vec!["--admin-token", ADMIN];
    args.extend_from_slice(extra);
    let server = Server::start(dir, &args);
    server.wait_ready();
    server
}

fn ok(response: Response, status: u16) -> Value {
    assert_eq!(response.status, status, "body: {}", response.text());
    response.json()
}

fn add_items(addr: SocketAddr, count: usize) {
    let items: Vec<Value> = (0..count)
        .map(|i| json!({"key": format!("k{i:03}")}))
        .collect();
    ok(
        call(
            addr,
            "POST",
            "/api/v1/work/items",
            Some(ADMIN),
            Some(&json!({ "items": items }).to_string()),
        ),
        202,
    );
}

/// Registers the client called `label` (its `external_id` is a secret derived from the label).
fn register(addr: SocketAddr, label: &str) -> (u64, String) {
    let external_id = format!("test-secret-of-{label}");
    let body = ok(
        call(
            addr,
            "POST",
            "/api/v1/work/clients",
            None,
            Some(&json!({"screen_name": "crash", "external_id": external_id}).to_string()),
        ),
        201,
    );
    (
        body["client_id"].as_u64().unwrap(),
        body["token"].as_str().unwrap().to_string(),
    )
}

fn lease(addr: SocketAddr, token: &str, max_buckets: i64) -> Vec<(u64, Vec<String>)> {
    let body = ok(
        call(
            addr,
            "POST",
            "/api/v1/work/leases",
            Some(token),
            Some(&json!({ "max_buckets": max_buckets }).to_string()),
        ),
        200,
    );
    body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| {
            let keys = bucket["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|key| key.as_str().unwrap().to_string())
                .collect();
            (bucket["id"].as_u64().unwrap(), keys)
        })
        .collect()
}

fn report(addr: SocketAddr, token: &str, id: u64, keys: &[String]) -> Response {
    let results: Vec<Value> = keys
        .iter()
        .map(|key| json!({"key": key, "outcome": "yes", "detail": "ok"}))
        .collect();
    call(
        addr,
        "POST",
        &format!("/api/v1/work/buckets/{id}/results"),
        Some(token),
        Some(&json!({ "results": results }).to_string()),
    )
}

fn heartbeat(addr: SocketAddr, token: &str, id: u64) -> Response {
    call(
        addr,
        "POST",
        &format!("/api/v1/work/buckets/{id}/heartbeat"),
        Some(token),
        None,
    )
}

fn item(addr: SocketAddr, key: &str) -> Value {
    ok(
        call(
            addr,
            "GET",
            &format!("/api/v1/work/items/{key}"),
            None,
            None,
        ),
        200,
    )
}

#[test]
fn acknowledged_results_and_held_leases_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--set", "work.bucket_size=5"];
    let mut server = start(dir.path(), &args);
    let addr = server.addr;
    add_items(addr, 20);
    let (alice, alice_token) = register(addr, "alice");
    let (_, bob_token) = register(addr, "bob");
    let alice_buckets = lease(addr, &alice_token, 2);
    let bob_buckets = lease(addr, &bob_token, 1);
    assert_eq!((alice_buckets.len(), bob_buckets.len()), (2, 1));
    // Alice finishes one bucket and half of the other; Bob reports nothing.
    let (done_id, done_keys) = &alice_buckets[0];
    let (held_id, held_keys) = &alice_buckets[1];
    ok(report(addr, &alice_token, *done_id, done_keys), 200);
    let partial = ok(report(addr, &alice_token, *held_id, &held_keys[..2]), 200);
    assert_eq!(partial["remaining"], 3);
    let before = ok(heartbeat(addr, &alice_token, *held_id), 200);
    let bob_before = ok(heartbeat(addr, &bob_token, bob_buckets[0].0), 200);

    server.kill();
    let server = start(dir.path(), &args);
    let addr = server.addr;

    for key in done_keys.iter().chain(&held_keys[..2]) {
        let item = item(addr, key);
        assert_eq!(item["state"], "done", "{item}");
        let results = item["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{item}");
        assert_eq!(results[0]["client_id"], alice);
        assert_eq!(results[0]["outcome"], "yes");
    }
    for key in &held_keys[2..] {
        assert_eq!(item(addr, key)["state"], "leased");
    }
    // The leases are still held, by the same holders, with their deadlines (or later).
    let after = ok(heartbeat(addr, &alice_token, *held_id), 200);
    assert!(
        after["lease_expires_at"].as_str() >= before["lease_expires_at"].as_str(),
        "{before} then {after}"
    );
    let bob_after = ok(heartbeat(addr, &bob_token, bob_buckets[0].0), 200);
    assert!(bob_after["lease_expires_at"].as_str() >= bob_before["lease_expires_at"].as_str());
    // Nobody else gets the held items; the rest of the pool is still there.
    let (_, carol_token) = register(addr, "carol");
    let carol = lease(addr, &carol_token, 10);
    let carol_keys: Vec<&String> = carol.iter().flat_map(|(_, keys)| keys).collect();
    assert_eq!(carol_keys.len(), 5, "{carol_keys:?}");
    for key in &carol_keys {
        assert!(!held_keys.contains(key) && !bob_buckets[0].1.contains(key));
        assert!(!done_keys.contains(key));
    }
    // Alice can finish her bucket after the restart.
    let rest = ok(report(addr, &alice_token, *held_id, &held_keys[2..]), 200);
    assert_eq!(rest["remaining"], 0);
    let stats = ok(call(addr, "GET", "/api/v1/work/stats", None, None), 200);
    assert_eq!(stats["items"]["done"], 10);
}

#[test]
fn expired_leases_are_reclaimed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--set",
        "work.bucket_size=4",
        "--set",
        "work.lease_seconds=1",
    ];
    let mut server = start(dir.path(), &args);
    let addr = server.addr;
    add_items(addr, 8);
    let (_, old_token) = register(addr, "old");
    let held = lease(addr, &old_token, 2);
    assert_eq!(held.len(), 2);
    ok(report(addr, &old_token, held[0].0, &held[0].1[..1]), 200);

    server.kill();
    let server = start(dir.path(), &args);
    let addr = server.addr;
    std::thread::sleep(Duration::from_millis(2500));

    // The old holder's late result is refused and changes nothing.
    let late = report(addr, &old_token, held[1].0, &held[1].1[..1]);
    assert_eq!(late.status, 409, "{}", late.text());
    assert_eq!(late.json()["error"]["code"], "lease_expired");

    // A new client gets every unfinished item; the acknowledged result stays.
    let (_, new_token) = register(addr, "new");
    let mut leased: Vec<String> = Vec::new();
    for _ in 0..5 {
        for (_, keys) in lease(addr, &new_token, 10) {
            leased.extend(keys);
        }
        if leased.len() == 7 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    leased.sort();
    let mut expected: Vec<String> = held
        .iter()
        .flat_map(|(_, keys)| keys.clone())
        .filter(|key| *key != held[0].1[0])
        .collect();
    expected.sort();
    assert_eq!(leased, expected);
    let first = item(addr, &held[0].1[0]);
    assert_eq!(first["state"], "done");
    assert_eq!(first["results"].as_array().unwrap().len(), 1);
}
