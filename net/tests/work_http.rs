//! The work API over HTTP against the real `switchyard` binary: every error code of API.md's
//! Work table, re-registration (200 vs 201, old token rejected), the per-source registration
//! limit (429 with Retry-After), and 8 clients draining 2,000 items concurrently: every item
//! completes exactly once, none is lost, no bucket is ever held by two clients.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{call, check, check_table, register, start, Row, ADMIN};
use serde_json::{json, Value};

fn add_items(addr: SocketAddr, keys: impl IntoIterator<Item = String>) -> Value {
    let items: Vec<Value> = keys.into_iter().map(|key| json!({"key": key})).collect();
    let response = call(
        addr,
        "POST",
        "/api/v1/work/items",
        Some(ADMIN),
        Some(&json!({ "items": items }).to_string()),
    );
    check(&response, 202, None);
    response.json()
}

/// Registers the client called `label` (its `external_id` is a secret derived from the label)
/// and returns `(client_id, token, status)`.
fn register_client(addr: SocketAddr, name: &str, label: &str) -> (u64, String, u16) {
    let response = register(addr, name, &format!("test-secret-of-{label}"));
    assert!(
        response.status == 200 || response.status == 201,
        "register: {} {}",
        response.status,
        response.text()
    );
    let body = response.json();
    (
        body["client_id"].as_u64().unwrap(),
        body["token"].as_str().unwrap().to_string(),
        response.status,
    )
}

fn lease(addr: SocketAddr, token: &str, max_buckets: i64) -> Vec<Value> {
    let response = call(
        addr,
        "POST",
        "/api/v1/work/leases",
        Some(token),
        Some(&json!({ "max_buckets": max_buckets }).to_string()),
    );
    check(&response, 200, None);
    response.json()["buckets"].as_array().unwrap().clone()
}

fn results_body(keys: &[&str], outcome: &str) -> String {
    let results: Vec<Value> = keys
        .iter()
        .map(|key| json!({"key": key, "outcome": outcome}))
        .collect();
    json!({ "results": results }).to_string()
}

fn bucket_keys(bucket: &Value) -> Vec<String> {
    bucket["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_work_route_and_error_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--set", "work.bucket_size=3"]);
    let addr = server.addr;

    // Items (duplicates counted), two clients (the second registration of the same secret: 200,
    // the same id, a new token), and a bucket leased to the first.
    let added = add_items(addr, (0..6).map(|i| format!("k{i}")));
    assert_eq!(added, json!({"added": 6, "duplicates": 0}));
    let added = add_items(addr, ["k0".to_string(), "k9".to_string()]);
    assert_eq!(added, json!({"added": 1, "duplicates": 1}));
    let item = call(addr, "GET", "/api/v1/work/items/k0", None, None);
    check(&item, 200, None);
    assert_eq!(
        item.json(),
        json!({"key": "k0", "state": "pending", "priority": 0, "results": []})
    );
    let (dora, old_token, status) = register_client(addr, "dora", "ext-1");
    assert_eq!(status, 201);
    let (again, dora_token, status) = register_client(addr, "dora", "ext-1");
    assert_eq!((again, status), (dora, 200));
    assert_ne!(old_token, dora_token);
    let (eve, eve_token, status) = register_client(addr, "eve", "ext-2");
    assert_eq!(status, 201);
    assert_ne!(eve, dora);
    let buckets = lease(addr, &dora_token, 1);
    assert_eq!(buckets.len(), 1);
    let bucket = &buckets[0];
    let id = bucket["id"].as_u64().unwrap();
    let keys = bucket_keys(bucket);
    assert_eq!(keys.len(), 3);
    assert!(bucket["lease_expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(bucket["epoch"].is_u64());
    let leased = call(
        addr,
        "GET",
        &format!("/api/v1/work/items/{}", keys[0]),
        None,
        None,
    );
    assert_eq!(leased.json()["state"], "leased");

    let (dora_t, eve_t, old_t) = (
        Some(dora_token.as_str()),
        Some(eve_token.as_str()),
        Some(old_token.as_str()),
    );
    let items = "/api/v1/work/items";
    let clients = "/api/v1/work/clients";
    let leases = "/api/v1/work/leases";
    let results = format!("/api/v1/work/buckets/{id}/results");
    let heartbeat = format!("/api/v1/work/buckets/{id}/heartbeat");
    let first = results_body(&[&keys[0]], "yes");
    let outside = results_body(&["k9-not-here"], "yes");
    let maybe = results_body(&[&keys[0]], "maybe");
    let rest = json!({
        "results": [
            {"key": keys[1], "outcome": "no", "detail": "checked"},
            {"key": keys[2], "outcome": "unknown"},
        ],
        "discovered": ["found-1", "k0"],
    })
    .to_string();
    let one = Some(r#"{"max_buckets": 1}"#);
    #[rustfmt::skip]
    let rows: &[Row] = &[
        // Items: admin only, strict bodies.
        (None, "POST", items, Some(r#"{"items": [{"key": "a"}]}"#), 401, "unauthenticated"),
        (Some(ADMIN), "POST", items, Some(r#"{"items": [{"key": "a", "prio": 1}]}"#), 400, "unknown_field"),
        (Some(ADMIN), "POST", items, Some(r#"{"things": []}"#), 400, "missing_field"),
        (None, "GET", "/api/v1/work/items/nope", None, 404, "not_found"),
        (None, "GET", "/api/v1/work/items?state=weird", None, 400, "invalid_field"),
        (None, "GET", "/api/v1/work/items?cursor=zzz", None, 400, "invalid_field"),
        (Some(ADMIN), "POST", "/api/v1/work/items/k0/rerun", None, 409, "not_done"),
        (Some(ADMIN), "POST", "/api/v1/work/items/nope/rerun", None, 404, "not_found"),
        (None, "POST", "/api/v1/work/items/k0/rerun", None, 401, "unauthenticated"),
        // Registration: field errors.
        (None, "POST", clients, Some(r#"{"screen_name": "dora"}"#), 400, "missing_field"),
        (None, "POST", clients, Some(r#"{"screen_name": "dora", "external_id": "has space"}"#), 400, "invalid_field"),
        // Leases: 401 with a rotated, no or a user-shaped token; too_many_buckets on both sides.
        (old_t, "POST", leases, one, 401, "unauthenticated"),
        (None, "POST", leases, one, 401, "unauthenticated"),
        (Some("not-a-client-token"), "POST", leases, one, 401, "unauthenticated"),
        (dora_t, "POST", leases, Some(r#"{"max_buckets": 0}"#), 400, "too_many_buckets"),
        (dora_t, "POST", leases, Some(r#"{"max_buckets": 11}"#), 400, "too_many_buckets"),
        // Results: 401, 403 not_owner, 404, 422 item_not_in_bucket, 400 on a bad outcome.
        (None, "POST", &results, Some(&first), 401, "unauthenticated"),
        (eve_t, "POST", &results, Some(&first), 403, "not_owner"),
        (dora_t, "POST", "/api/v1/work/buckets/999999/results", Some(&first), 404, "not_found"),
        (dora_t, "POST", &results, Some(&outside), 422, "item_not_in_bucket"),
        (dora_t, "POST", &results, Some(&maybe), 400, "invalid_field"),
        // Heartbeat: 403 for another client, 404 unknown, 200 for the holder.
        (eve_t, "POST", &heartbeat, None, 403, "not_owner"),
        (dora_t, "POST", "/api/v1/work/buckets/999999/heartbeat", None, 404, "not_found"),
        (dora_t, "POST", &heartbeat, None, 200, ""),
        // Unregistering needs a client token.
        (None, "DELETE", "/api/v1/work/clients/me", None, 401, "unauthenticated"),
    ];
    check_table(addr, rows);

    // A partial report, then the rest (with a discovered key, a known one ignored).
    let partial = call(addr, "POST", &results, dora_t, Some(&first));
    check(&partial, 200, None);
    assert_eq!(partial.json(), json!({"bucket_id": id, "remaining": 2}));
    let done = call(addr, "POST", &results, dora_t, Some(&rest));
    check(&done, 200, None);
    assert_eq!(done.json(), json!({"bucket_id": id, "remaining": 0}));
    let item = call(
        addr,
        "GET",
        &format!("/api/v1/work/items/{}", keys[1]),
        None,
        None,
    )
    .json();
    assert_eq!(item["state"], "done");
    let results = item["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["outcome"], "no");
    assert_eq!(results[0]["client_id"], dora);
    assert_eq!(results[0]["detail"], "checked");
    assert!(results[0]["at"].as_str().unwrap().ends_with('Z'));
    check(
        &call(addr, "GET", "/api/v1/work/items/found-1", None, None),
        200,
        None,
    );

    // Rerun: back to pending, history kept.
    let rerun = call(
        addr,
        "POST",
        &format!("/api/v1/work/items/{}/rerun", keys[1]),
        Some(ADMIN),
        None,
    );
    check(&rerun, 200, None);
    assert_eq!(rerun.json()["state"], "pending");
    assert_eq!(rerun.json()["results"].as_array().unwrap().len(), 1);

    // Pages of items with an opaque cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/work/items?limit=3&cursor={c}"),
            None => "/api/v1/work/items?limit=3".to_string(),
        };
        let page = call(addr, "GET", &path, None, None);
        check(&page, 200, None);
        let page = page.json();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["key"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 8);

    // Stats in API.md's shape.
    let stats = call(addr, "GET", "/api/v1/work/stats", None, None);
    check(&stats, 200, None);
    let stats = stats.json();
    assert_eq!(stats["items"]["done"], 2);
    assert_eq!(stats["items"]["leased"], 0);
    assert_eq!(stats["items"]["pending"], 6);
    assert!(stats["buckets"]["open"].is_u64() && stats["buckets"]["leased"].is_u64());
    let clients = stats["clients"].as_array().unwrap();
    let dora_stats = clients.iter().find(|c| c["client_id"] == dora).unwrap();
    assert_eq!(dora_stats["screen_name"], "dora");
    assert_eq!(dora_stats["active"], true);
    assert_eq!(dora_stats["buckets_assigned"], 1);
    assert_eq!(dora_stats["buckets_completed"], 1);
    assert_eq!(dora_stats["buckets_expired"], 0);
    assert!(dora_stats["rejected_updates"].as_u64().unwrap() >= 1);
    assert!(dora_stats["last_seen_at"].as_str().is_some());
    let eve_stats = clients.iter().find(|c| c["client_id"] == eve).unwrap();
    assert!(eve_stats["rejected_updates"].as_u64().unwrap() >= 2);

    // Metrics carry the work pool.
    let metrics = call(addr, "GET", "/metrics", None, None).text();
    assert!(
        metrics.contains("switchyard_work_items{state=\"done\"} 2"),
        "{metrics}"
    );

    // Unregister: 401 without a token, 204, then the token is dead and its leases released.
    let held = lease(addr, &eve_token, 1);
    assert_eq!(held.len(), 1);
    check(
        &call(
            addr,
            "DELETE",
            "/api/v1/work/clients/me",
            Some(&eve_token),
            None,
        ),
        204,
        None,
    );
    check(
        &call(
            addr,
            "DELETE",
            "/api/v1/work/clients/me",
            Some(&eve_token),
            None,
        ),
        401,
        Some("unauthenticated"),
    );
    for key in bucket_keys(&held[0]) {
        let item = call(
            addr,
            "GET",
            &format!("/api/v1/work/items/{key}"),
            None,
            None,
        );
        assert_eq!(item.json()["state"], "pending", "{key}");
    }
}

#[test]
fn an_expired_lease_rejects_late_results_with_409() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--set",
            "work.bucket_size=2",
            "--set",
            "work.lease_seconds=1",
        ],
    );
    let addr = server.addr;
    add_items(addr, ["x1".to_string(), "x2".to_string()]);
    let (_, token, _) = register_client(addr, "slow", "slow-1");
    let buckets = lease(addr, &token, 1);
    let id = buckets[0]["id"].as_u64().unwrap();
    let keys = bucket_keys(&buckets[0]);
    std::thread::sleep(Duration::from_millis(2500));
    check(
        &call(
            addr,
            "POST",
            &format!("/api/v1/work/buckets/{id}/results"),
            Some(&token),
            Some(&results_body(&[&keys[0]], "yes")),
        ),
        409,
        Some("lease_expired"),
    );
    check(
        &call(
            addr,
            "POST",
            &format!("/api/v1/work/buckets/{id}/heartbeat"),
            Some(&token),
            None,
        ),
        409,
        Some("lease_expired"),
    );
    // The late result changed nothing.
    let item = call(
        addr,
        "GET",
        &format!("/api/v1/work/items/{}", keys[0]),
        None,
        None,
    )
    .json();
    assert_eq!(item["results"], json!([]));
    assert_ne!(item["state"], "done");
}

#[test]
fn a_registration_flood_from_one_address_gets_429() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--set", "work.registrations_per_minute_per_source=3"],
    );
    let addr = server.addr;
    for i in 0..3 {
        register_client(addr, "flood", &format!("f{i}"));
    }
    let response = call(
        addr,
        "POST",
        "/api/v1/work/clients",
        None,
        Some(r#"{"screen_name": "flood", "external_id": "test-secret-of-f9"}"#),
    );
    check(&response, 429, Some("rate_limited"));
    let retry: u64 = response
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[test]
fn eight_clients_drain_2000_items_exactly_once() {
    const ITEMS: usize = 2000;
    const CLIENTS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--set", "work.bucket_size=20"]);
    let addr = server.addr;
    let added = add_items(addr, (0..ITEMS).map(|i| format!("item-{i:05}")));
    assert_eq!(added["added"], ITEMS);

    // bucket id → the clients that were ever granted it.
    let holders: Arc<Mutex<HashMap<u64, HashSet<u64>>>> = Arc::default();
    let reported: Arc<Mutex<Vec<String>>> = Arc::default();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let holders = holders.clone();
            let reported = reported.clone();
            std::thread::spawn(move || {
                let (client_id, token, _) =
                    register_client(addr, "drainer", &format!("drainer-{n}"));
                loop {
                    let buckets = lease(addr, &token, 2);
                    if buckets.is_empty() {
                        break;
                    }
                    for bucket in &buckets {
                        let id = bucket["id"].as_u64().unwrap();
                        holders
                            .lock()
                            .unwrap()
                            .entry(id)
                            .or_default()
                            .insert(client_id);
                        let keys = bucket_keys(bucket);
                        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                        let response = call(
                            addr,
                            "POST",
                            &format!("/api/v1/work/buckets/{id}/results"),
                            Some(&token),
                            Some(&results_body(&refs, "yes")),
                        );
                        check(&response, 200, None);
                        assert_eq!(response.json()["remaining"], 0);
                        reported.lock().unwrap().extend(keys);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }

    let holders = holders.lock().unwrap();
    for (id, clients) in holders.iter() {
        assert_eq!(clients.len(), 1, "bucket {id} held by {clients:?}");
    }
    let reported = reported.lock().unwrap();
    assert_eq!(reported.len(), ITEMS, "every item reported once");
    assert_eq!(reported.iter().collect::<HashSet<_>>().len(), ITEMS);

    let mut done = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/work/items?state=done&limit=500&cursor={c}"),
            None => "/api/v1/work/items?state=done&limit=500".to_string(),
        };
        let page = call(addr, "GET", &path, None, None);
        check(&page, 200, None);
        let page = page.json();
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["state"], "done");
            assert_eq!(item["results"].as_array().unwrap().len(), 1, "{item}");
            done += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(done, ITEMS);
    let stats = call(addr, "GET", "/api/v1/work/stats", None, None).json();
    assert_eq!(stats["items"]["done"], ITEMS);
    assert_eq!(stats["items"]["pending"], 0);
    assert_eq!(stats["items"]["leased"], 0);
    let completed: u64 = stats["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["buckets_completed"].as_u64().unwrap())
        .sum();
    assert_eq!(completed as usize, holders.len());
}
