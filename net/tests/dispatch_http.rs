//! Dispatch and notifications over HTTP against the real binary (API.md "Dispatch and
//! notifications"): the catalog routes and their errors as a case table (authentication before
//! the body, 403 for a user token, 404 for an unknown referenced id with nothing changed), then a
//! dispatch carried to `done` through the default courier (no provider configured: every
//! channel's notifications are kept in the outbox and count as sent), its deliveries and the
//! notification listing paged with a small limit (every notification exactly once), the filters,
//! the log as text and as JSON, and the scheduled and condition statuses. Every response is
//! validated against the served OpenAPI document by `common`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    call, call_with_headers, check, check_table, head, login, sign_up, start, Row, ADMIN,
};
use serde_json::{json, Value};

/// How long a dispatch may take to be `done` with the offline courier.
const DONE_TIMEOUT: Duration = Duration::from_secs(30);

const FIXED: &str = "market.price_source=fixed:EUR=50000,GBP=43000,USD=54000";

/// POSTs `body` as the admin and returns the JSON answer, which must be `status`.
fn admin_post(addr: SocketAddr, path: &str, body: &Value, status: u16) -> Value {
    let response = call(addr, "POST", path, Some(ADMIN), Some(&body.to_string()));
    check(&response, status, None);
    response.json()
}

fn admin_get(addr: SocketAddr, path: &str) -> Value {
    let response = call(addr, "GET", path, Some(ADMIN), None);
    check(&response, 200, None);
    response.json()
}

/// Every item of a paginated list, following `cursor_field` with `?limit=<limit>`; asserts no
/// item id comes twice.
fn all_pages(addr: SocketAddr, path: &str, items_field: &str, cursor_field: &str) -> Vec<Value> {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let target = match &cursor {
            None => format!("{path}{separator}limit=2"),
            Some(cursor) => format!("{path}{separator}limit=2&cursor={cursor}"),
        };
        let page = admin_get(addr, &target);
        let got = page[items_field].as_array().expect("items").clone();
        assert!(got.len() <= 2, "{target}: more than the limit");
        items.extend(got);
        match page[cursor_field].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return items,
        }
    }
    panic!("{path}: no last page after 1000 pages");
}

fn ids(items: &[Value], field: &str) -> Vec<u64> {
    items
        .iter()
        .map(|item| item[field].as_u64().expect("an id"))
        .collect()
}

/// A loopback webhook receiver: answers every request 200 and records its `webhook-id` header.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(stream);
            let (mut length, mut id) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if let Some(value) = lower.strip_prefix("webhook-id:") {
                    id = value.trim().to_string();
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            record.lock().expect("receiver lock").push(id);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    Receiver { url, seen }
}

#[test]
fn catalog_and_dispatch_errors_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let addr = server.addr;
    sign_up(addr, "alice@example.com");
    let alice = login(addr, "alice@example.com");
    let (admin, user) = (Some(ADMIN), Some(alice.as_str()));
    admin_post(addr, "/api/v1/groups", &json!({"name": "ops"}), 201);
    admin_post(
        addr,
        "/api/v1/programs",
        &json!({"name": "p", "message": "hi"}),
        201,
    );
    let event_type = json!({"name": "e", "group_ids": [1], "channels": ["email"]});
    admin_post(addr, "/api/v1/event-types", &event_type, 201);
    let rows: &[Row] = &[
        // Authentication before the body: no token, a bad one, a user's.
        (
            None,
            "POST",
            "/api/v1/groups",
            Some("{"),
            401,
            "unauthenticated",
        ),
        (
            Some("garbage"),
            "POST",
            "/api/v1/groups",
            Some("{"),
            401,
            "unauthenticated",
        ),
        (user, "POST", "/api/v1/groups", Some("{"), 403, "forbidden"),
        (
            None,
            "GET",
            "/api/v1/contacts?limit=0",
            None,
            401,
            "unauthenticated",
        ),
        (user, "GET", "/api/v1/notifications", None, 403, "forbidden"),
        (
            user,
            "POST",
            "/api/v1/dispatches",
            Some("{}"),
            403,
            "forbidden",
        ),
        (
            None,
            "GET",
            "/api/v1/dispatches/1",
            None,
            401,
            "unauthenticated",
        ),
        (
            user,
            "GET",
            "/api/v1/dispatches/1/log",
            None,
            403,
            "forbidden",
        ),
        // The body.
        (
            admin,
            "POST",
            "/api/v1/groups",
            Some("{"),
            400,
            "invalid_json",
        ),
        (
            admin,
            "POST",
            "/api/v1/groups",
            Some("{}"),
            400,
            "missing_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/groups",
            Some(r#"{"name":""}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/groups",
            Some(r#"{"name":"a\u0001"}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/groups",
            Some(r#"{"name":"a","x":1}"#),
            400,
            "unknown_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/groups",
            Some(r#"{"name":"a","name":"b"}"#),
            400,
            "invalid_json",
        ),
        (
            admin,
            "POST",
            "/api/v1/programs",
            Some(r#"{"name":"p"}"#),
            400,
            "missing_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/event-types",
            Some(r#"{"name":"e","group_ids":[1],"channels":["fax"]}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/event-types",
            Some(r#"{"name":"e","group_ids":[1],"channels":[]}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/event-types",
            Some(r#"{"name":"e","group_ids":[1],"channels":["sms","sms"]}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/event-types",
            Some(r#"{"name":"e","group_ids":[1,1],"channels":["sms"]}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/contacts",
            Some(r#"{"name":"c","email":"nobody","group_ids":[1]}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/contacts",
            Some(r#"{"name":"c","webhook_url":"ftp://x","group_ids":[1]}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/contacts",
            Some(r#"{"name":"c","phone":"12","group_ids":[1]}"#),
            400,
            "invalid_field",
        ),
        // Unknown referenced groups: 404 (and nothing changes, checked below).
        (
            admin,
            "POST",
            "/api/v1/event-types",
            Some(r#"{"name":"e","group_ids":[1,99],"channels":["sms"]}"#),
            404,
            "not_found",
        ),
        (
            admin,
            "POST",
            "/api/v1/contacts",
            Some(r#"{"name":"c","email":"c@example.com","group_ids":[99]}"#),
            404,
            "not_found",
        ),
        // Dispatches.
        (
            admin,
            "POST",
            "/api/v1/dispatches",
            Some(r#"{"program_id":9,"event_type_id":1,"start_time":"2020-01-01T00:00:00Z"}"#),
            404,
            "not_found",
        ),
        (
            admin,
            "POST",
            "/api/v1/dispatches",
            Some(r#"{"program_id":1,"event_type_id":9,"start_time":"2020-01-01T00:00:00Z"}"#),
            404,
            "not_found",
        ),
        (
            admin,
            "POST",
            "/api/v1/dispatches",
            Some(
                r#"{"program_id":1,"event_type_id":1,"start_time":"2020-01-02T00:00:00Z","end_time":"2020-01-01T00:00:00Z"}"#,
            ),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/dispatches",
            Some(r#"{"program_id":1,"event_type_id":1,"start_time":"08/27/2019 21:04"}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/dispatches",
            Some(
                r#"{"program_id":1,"event_type_id":1,"start_time":"2020-01-01T00:00:00Z","condition":{"signal":"eth_eur","op":"<","value":"1"}}"#,
            ),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/dispatches",
            Some(
                r#"{"program_id":1,"event_type_id":1,"start_time":"2020-01-01T00:00:00Z","condition":{"signal":"btc_eur","op":"!=","value":"1"}}"#,
            ),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/dispatches",
            Some(
                r#"{"program_id":1,"event_type_id":1,"start_time":"2020-01-01T00:00:00Z","condition":{"signal":"btc_eur","op":"<","value":"0"}}"#,
            ),
            400,
            "invalid_field",
        ),
        (
            admin,
            "POST",
            "/api/v1/dispatches",
            Some(r#"{"program_id":"1","event_type_id":1,"start_time":"2020-01-01T00:00:00Z"}"#),
            400,
            "invalid_field",
        ),
        (
            admin,
            "GET",
            "/api/v1/dispatches/999",
            None,
            404,
            "not_found",
        ),
        (
            admin,
            "GET",
            "/api/v1/dispatches/abc",
            None,
            404,
            "not_found",
        ),
        (admin, "GET", "/api/v1/dispatches/0", None, 404, "not_found"),
        (
            admin,
            "GET",
            "/api/v1/dispatches/999/log",
            None,
            404,
            "not_found",
        ),
        // Queries.
        (
            admin,
            "GET",
            "/api/v1/notifications?status=lost",
            None,
            400,
            "invalid_field",
        ),
        (
            admin,
            "GET",
            "/api/v1/notifications?user_id=x",
            None,
            400,
            "invalid_field",
        ),
        (
            admin,
            "GET",
            "/api/v1/notifications?dispatch_id=-1",
            None,
            400,
            "invalid_field",
        ),
        (
            admin,
            "GET",
            "/api/v1/notifications?limit=501",
            None,
            400,
            "invalid_field",
        ),
        (
            admin,
            "GET",
            "/api/v1/notifications?cursor=zz",
            None,
            400,
            "invalid_field",
        ),
        (
            admin,
            "GET",
            "/api/v1/notifications?colour=red",
            None,
            400,
            "unknown_field",
        ),
        (
            admin,
            "GET",
            "/api/v1/groups?limit=0",
            None,
            400,
            "invalid_field",
        ),
        (
            admin,
            "GET",
            "/api/v1/notifications?dispatch_id=77",
            None,
            200,
            "",
        ),
    ];
    check_table(addr, rows);

    // Refused requests changed nothing: one group, one program, one event type, no contact, no
    // dispatch.
    let count = |path: &str| {
        admin_get(addr, path)["items"]
            .as_array()
            .expect("items")
            .len()
    };
    assert_eq!(count("/api/v1/groups"), 1);
    assert_eq!(count("/api/v1/programs"), 1);
    assert_eq!(count("/api/v1/event-types"), 1);
    assert_eq!(count("/api/v1/contacts"), 0);
    assert_eq!(count("/api/v1/notifications"), 0);
    check(
        &call(addr, "GET", "/api/v1/dispatches/1", Some(ADMIN), None),
        404,
        Some("not_found"),
    );
}

#[test]
fn catalog_items_are_listed_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let addr = server.addr;
    for name in ["a", "b", "c", "d", "e"] {
        let group = admin_post(addr, "/api/v1/groups", &json!({"name": name}), 201);
        assert_eq!(group["name"], name);
    }
    let groups = all_pages(addr, "/api/v1/groups", "items", "next_cursor");
    assert_eq!(ids(&groups, "id"), [1, 2, 3, 4, 5]);
    let contact = admin_post(
        addr,
        "/api/v1/contacts",
        &json!({"name": "x", "phone": "+1 555-555-5555", "group_ids": [2, 5], "user_id": 3}),
        201,
    );
    assert_eq!(
        contact,
        json!({"id": 1, "name": "x", "email": null, "phone": "+1 555-555-5555",
               "webhook_url": null, "group_ids": [2, 5], "user_id": 3})
    );
    let event_type = admin_post(
        addr,
        "/api/v1/event-types",
        &json!({"name": "outage", "group_ids": [5], "channels": ["webhook", "sms"]}),
        201,
    );
    assert_eq!(event_type["channels"], json!(["webhook", "sms"]));
    let program = admin_post(
        addr,
        "/api/v1/programs",
        &json!({"name": "p", "message": "Line one\nline two"}),
        201,
    );
    assert_eq!(program["message"], "Line one\nline two");
    assert_eq!(
        admin_get(addr, "/api/v1/contacts")["items"],
        json!([contact])
    );
    assert_eq!(
        admin_get(addr, "/api/v1/event-types")["items"],
        json!([event_type])
    );
    assert_eq!(
        admin_get(addr, "/api/v1/programs")["items"],
        json!([program])
    );
}

/// Polls `GET /api/v1/dispatches/{id}` until its status is `status`.
fn until_status(addr: SocketAddr, id: u64, status: &str) -> Value {
    let deadline = Instant::now() + DONE_TIMEOUT;
    loop {
        let dispatch = admin_get(addr, &format!("/api/v1/dispatches/{id}"));
        if dispatch["status"] == status {
            return dispatch;
        }
        assert!(
            Instant::now() < deadline,
            "dispatch {id} never became {status}: {dispatch}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_dispatch_notifies_every_contact_on_every_channel_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--set", FIXED]);
    let addr = server.addr;
    let hook = receiver();
    let ops = admin_post(addr, "/api/v1/groups", &json!({"name": "ops"}), 201)["id"].clone();
    let sales = admin_post(addr, "/api/v1/groups", &json!({"name": "sales"}), 201)["id"].clone();
    let contact = |body: Value| admin_post(addr, "/api/v1/contacts", &body, 201)["id"].as_u64();
    let both = contact(json!({"name": "both", "email": "both@example.com",
                              "phone": "555-555-5555", "group_ids": [ops], "user_id": 7}))
    .expect("id");
    let hooked = contact(
        json!({"name": "hook", "webhook_url": hook.url, "group_ids": [sales],
                                "user_id": 8}),
    )
    .expect("id");
    let twice = contact(json!({"name": "twice", "email": "twice@example.com",
                               "group_ids": [ops, sales]}))
    .expect("id");
    let sms = contact(json!({"name": "sms", "phone": "+44 20 7946 0000", "group_ids": [ops]}))
        .expect("id");
    let outsider =
        contact(json!({"name": "none", "email": "out@example.com", "group_ids": []})).expect("id");
    let event_type = admin_post(
        addr,
        "/api/v1/event-types",
        &json!({"name": "outage", "group_ids": [ops, sales],
                "channels": ["email", "sms", "webhook"]}),
        201,
    )["id"]
        .clone();
    let program = admin_post(
        addr,
        "/api/v1/programs",
        &json!({"name": "Reduce load", "message": "Please reduce load now."}),
        201,
    )["id"]
        .clone();

    let created = admin_post(
        addr,
        "/api/v1/dispatches",
        &json!({"program_id": program, "event_type_id": event_type,
                "start_time": "2020-01-01T00:00:00Z"}),
        201,
    );
    assert_eq!(created["status"], "sending", "{created}");
    assert_eq!(
        created["recipients"], 4,
        "each contact once, the outsider not"
    );
    let id = created["id"].as_u64().expect("id");

    let dispatch = until_status(addr, id, "done");
    // both: email and sms; hook: webhook; twice: email (once, though in both groups); sms: sms.
    let expected: BTreeSet<(u64, &str, &str)> = [
        (both, "email", "both@example.com"),
        (both, "sms", "555-555-5555"),
        (hooked, "webhook", hook.url.as_str()),
        (twice, "email", "twice@example.com"),
        (sms, "sms", "+44 20 7946 0000"),
    ]
    .into_iter()
    .collect();
    assert_eq!(dispatch["notifications"], 5, "{dispatch}");
    assert_eq!(
        dispatch["counts"],
        json!({"queued": 0, "failed": 0, "sent": 5, "dead": 0})
    );
    // /metrics adds every dispatch up (this server has run only this one so far).
    let metrics = call(addr, "GET", "/metrics", None, None).text();
    for line in [
        "switchyard_notifications{status=\"sent\"} 5",
        "switchyard_notifications{status=\"dead\"} 0",
        "switchyard_dispatches{status=\"done\"} 1",
        "switchyard_notification_possible_duplicates 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from:\n{metrics}"
        );
    }
    assert_eq!(
        dispatch["program"],
        json!({"id": program, "name": "Reduce load"})
    );
    assert_eq!(
        dispatch["event_type"],
        json!({"id": event_type, "name": "outage"})
    );
    assert_eq!(dispatch["start_time"], "2020-01-01T00:00:00Z");
    assert_eq!(dispatch["end_time"], Value::Null);
    assert_eq!(dispatch["condition"], Value::Null);
    assert_eq!(dispatch["deliveries_next_cursor"], Value::Null);
    let deliveries = dispatch["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 5);
    for delivery in deliveries {
        assert_eq!(delivery["status"], "sent", "{delivery}");
        assert_eq!(delivery["attempts"], 1, "{delivery}");
        assert_eq!(delivery["last_error"], Value::Null, "{delivery}");
        assert_eq!(delivery["via"], delivery["channel"], "{delivery}");
        assert_ne!(delivery["contact_id"], outsider);
    }

    // The deliveries again, two at a time: each exactly once, in order.
    let paged = all_pages(
        addr,
        &format!("/api/v1/dispatches/{id}"),
        "deliveries",
        "deliveries_next_cursor",
    );
    assert_eq!(
        ids(&paged, "notification_id"),
        ids(deliveries, "notification_id")
    );

    // The listing: every notification once, with its address; filters.
    let listed = all_pages(
        addr,
        &format!("/api/v1/notifications?dispatch_id={id}"),
        "items",
        "next_cursor",
    );
    let seen: BTreeSet<(u64, &str, &str)> = listed
        .iter()
        .map(|n| {
            (
                n["contact_id"].as_u64().expect("contact"),
                n["channel"].as_str().expect("channel"),
                n["to"].as_str().expect("to"),
            )
        })
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(ids(&listed, "id"), ids(deliveries, "notification_id"));
    let received = hook.seen.lock().expect("receiver lock").clone();
    for note in &listed {
        assert_eq!(note["dispatch_id"], id);
        assert_eq!(note["status"], "sent");
        // No provider is configured for e-mail and SMS, so theirs stay in the outbox. A webhook
        // is outboxed by the offline courier, or else POSTed to the receiver under its key.
        if note["channel"] != "webhook" || note["outboxed"] == true {
            assert_eq!(note["outboxed"], true, "{note}");
        } else {
            let key = format!("notification-{}", note["id"]);
            assert!(received.contains(&key), "{key} not received: {received:?}");
        }
    }
    let all = all_pages(addr, "/api/v1/notifications", "items", "next_cursor");
    assert_eq!(ids(&all, "id"), ids(&listed, "id"));
    let sent = all_pages(
        addr,
        &format!("/api/v1/notifications?status=sent&dispatch_id={id}"),
        "items",
        "next_cursor",
    );
    assert_eq!(sent.len(), 5);
    for status in ["queued", "failed", "dead"] {
        let none = admin_get(addr, &format!("/api/v1/notifications?status={status}"));
        assert_eq!(none["items"], json!([]), "{status}");
    }
    let of_user = |user: u64| {
        all_pages(
            addr,
            &format!("/api/v1/notifications?user_id={user}"),
            "items",
            "next_cursor",
        )
    };
    let seven = of_user(7);
    assert_eq!(seven.len(), 2);
    assert!(seven.iter().all(|n| n["contact_id"] == both));
    let eight = of_user(8);
    assert_eq!(ids(&eight, "contact_id"), [hooked]);
    assert!(of_user(9).is_empty());

    // The log: text by default, one line per entry with its time; JSON on request.
    let text = call(
        addr,
        "GET",
        &format!("/api/v1/dispatches/{id}/log"),
        Some(ADMIN),
        None,
    );
    check(&text, 200, None);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let text = text.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("Transaction for Dispatch: "), "{text}");
    assert!(lines[0].contains("Program: Reduce load"), "{text}");
    assert!(
        lines.last().expect("a line").ends_with("Status: done"),
        "{text}"
    );
    let bearer = format!("Bearer {ADMIN}");
    let logged = call_with_headers(
        addr,
        "GET",
        &format!("/api/v1/dispatches/{id}/log"),
        &[("Authorization", &bearer), ("Accept", "application/json")],
        None,
    );
    check(&logged, 200, None);
    let logged = logged.json();
    assert_eq!(logged["omitted"], 0);
    let json_lines = logged["lines"].as_array().expect("lines");
    assert_eq!(json_lines.len(), lines.len());
    for (line, entry) in lines.iter().zip(json_lines) {
        let expected = format!(
            "{} {}",
            entry["at"].as_str().expect("at"),
            entry["text"].as_str().expect("text")
        );
        assert_eq!(*line, expected);
    }
    let headed = head(
        addr,
        &format!("/api/v1/dispatches/{id}"),
        &[("Authorization", &bearer)],
    );
    assert_eq!(headed.status, 200);
    assert!(headed.body.is_empty());

    // Later than now: scheduled, nothing sent.
    let later = admin_post(
        addr,
        "/api/v1/dispatches",
        &json!({"program_id": program, "event_type_id": event_type,
                "start_time": "2100-01-01T00:00:00Z", "end_time": "2100-01-01T01:00:00+01:00"}),
        201,
    );
    assert_eq!(later["status"], "scheduled");
    let later = admin_get(addr, &format!("/api/v1/dispatches/{}", later["id"]));
    assert_eq!(later["deliveries"], json!([]));
    assert_eq!(later["notifications"], 0);
    assert_eq!(later["end_time"], "2100-01-01T00:00:00Z");

    // A condition that cannot hold waits; one that holds on the current price fires at once.
    until_price(addr);
    let waiting = admin_post(
        addr,
        "/api/v1/dispatches",
        &json!({"program_id": program, "event_type_id": event_type,
                "start_time": "2020-01-01T00:00:00Z",
                "condition": {"signal": "btc_eur", "op": "<", "value": "1"}}),
        201,
    );
    assert_eq!(waiting["status"], "waiting_condition");
    let waiting = admin_get(addr, &format!("/api/v1/dispatches/{}", waiting["id"]));
    assert_eq!(
        waiting["condition"],
        json!({"signal": "btc_eur", "op": "<", "value": "1"})
    );
    assert_eq!(waiting["fired"], Value::Null);
    let fired = admin_post(
        addr,
        "/api/v1/dispatches",
        &json!({"program_id": program, "event_type_id": event_type,
                "start_time": "2020-01-01T00:00:00Z",
                "condition": {"signal": "btc_eur", "op": ">=", "value": "49999.5"}}),
        201,
    );
    assert_eq!(fired["status"], "sending", "{fired}");
    let fired = until_status(addr, fired["id"].as_u64().expect("id"), "done");
    assert_eq!(fired["fired"]["price"], "50000", "{fired}");
    assert_eq!(fired["counts"]["sent"], 5);

    // Per-status totals over every dispatch agree with the listing.
    let everything = all_pages(addr, "/api/v1/notifications", "items", "next_cursor");
    let mut by_dispatch: BTreeMap<u64, usize> = BTreeMap::new();
    for note in &everything {
        *by_dispatch
            .entry(note["dispatch_id"].as_u64().expect("id"))
            .or_default() += 1;
    }
    assert_eq!(by_dispatch.values().sum::<usize>(), 10, "{by_dispatch:?}");
}

/// Waits (bounded) until the market has a price.
fn until_price(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while call(addr, "GET", "/api/v1/price", None, None).status != 200 {
        assert!(Instant::now() < deadline, "no price");
        std::thread::sleep(Duration::from_millis(20));
    }
}
