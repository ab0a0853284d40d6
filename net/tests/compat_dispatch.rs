//! `--compat dispatch` against the real binary: the original's body (ORIGINALS.md §3, ids as
//! integers or strings, times `MM/DD/YYYY HH:MM` in UTC or RFC 3339) creates a dispatch through
//! the same engine command as the native route (it is then visible there, and sent), answering
//! 201 `{"dispatch_id", "transaction_log"}`; its errors as a case table in the server's error
//! envelope (nothing created by any of them); and the route is 404 when the set is off. Every
//! response is validated against the served OpenAPI document by `common`.

mod common;

use std::time::{Duration, Instant};

use common::{call, check, check_table, start, Row, ADMIN};
use serde_json::{json, Value};

fn admin_post(addr: std::net::SocketAddr, path: &str, body: Value) -> Value {
    let response = call(addr, "POST", path, Some(ADMIN), Some(&body.to_string()));
    check(&response, 201, None);
    response.json()
}

#[test]
fn the_originals_body_makes_a_dispatch() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--compat", "dispatch"]);
    let addr = server.addr;
    admin_post(addr, "/api/v1/groups", json!({"name": "users"}));
    admin_post(
        addr,
        "/api/v1/contacts",
        json!({"name": "usain", "email": "usain@example.com", "phone": "555-555-5555",
               "group_ids": [1]}),
    );
    admin_post(
        addr,
        "/api/v1/programs",
        json!({"name": "Peak", "message": "Reduce load"}),
    );
    admin_post(
        addr,
        "/api/v1/event-types",
        json!({"name": "Dispatch", "group_ids": [1], "channels": ["sms", "email"]}),
    );

    // The README's body, no token: int and string ids, the original's time format.
    let body = r#"{"start_time":"08/27/2019 21:04", "end_time":"08/27/2019 22:04", "program_id":1, "event_type_id":"1"}"#;
    let response = call(addr, "POST", "/dispatch", None, Some(body));
    check(&response, 201, None);
    let answer = response.json();
    assert_eq!(answer["dispatch_id"], 1, "{answer}");
    let log = answer["transaction_log"].as_str().expect("the log as text");
    assert!(
        log.lines().next().is_some_and(|line| line
            .contains("Transaction for Dispatch: 1 | Program: Peak | Event Type: Dispatch")),
        "{log}"
    );
    assert!(log.contains("Start Time: 2019-08-27T21:04:00Z"), "{log}");
    assert!(log.contains("End Time: 2019-08-27T22:04:00Z"), "{log}");

    // The same dispatch on the native API, carried to the end.
    let deadline = Instant::now() + Duration::from_secs(30);
    let dispatch = loop {
        let response = call(addr, "GET", "/api/v1/dispatches/1", Some(ADMIN), None);
        check(&response, 200, None);
        let dispatch = response.json();
        if dispatch["status"] == "done" {
            break dispatch;
        }
        assert!(Instant::now() < deadline, "never done: {dispatch}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(dispatch["start_time"], "2019-08-27T21:04:00Z");
    assert_eq!(dispatch["end_time"], "2019-08-27T22:04:00Z");
    assert_eq!(dispatch["recipients"], 1);
    assert_eq!(dispatch["counts"]["sent"], 2, "{dispatch}");

    // RFC 3339 and string ids on both; no end.
    let response = call(
        addr,
        "POST",
        "/dispatch",
        None,
        Some(r#"{"start_time":"2100-01-01T00:00:00Z","program_id":"1","event_type_id":1}"#),
    );
    check(&response, 201, None);
    assert_eq!(response.json()["dispatch_id"], 2);

    let rows: &[Row] = &[
        (None, "POST", "/dispatch", Some("{"), 400, "invalid_json"),
        (None, "POST", "/dispatch", Some("[]"), 400, "invalid_json"),
        (
            None,
            "POST",
            "/dispatch",
            Some(r#"{"program_id":1}"#),
            400,
            "missing_field",
        ),
        (
            None,
            "POST",
            "/dispatch",
            Some(r#"{"start_time":"08/27/2019 21:04","program_id":1,"event_type_id":1,"x":1}"#),
            400,
            "unknown_field",
        ),
        (
            None,
            "POST",
            "/dispatch",
            Some(r#"{"start_time":"08/27/2019 21:04","program_id":"one","event_type_id":1}"#),
            400,
            "invalid_field",
        ),
        (
            None,
            "POST",
            "/dispatch",
            Some(r#"{"start_time":"08/27/2019 21:04","program_id":-1,"event_type_id":1}"#),
            400,
            "invalid_field",
        ),
        (
            None,
            "POST",
            "/dispatch",
            Some(r#"{"start_time":"2019-08-27","program_id":1,"event_type_id":1}"#),
            400,
            "invalid_field",
        ),
        (
            None,
            "POST",
            "/dispatch",
            Some(
                r#"{"start_time":"08/27/2019 21:04","end_time":"08/27/2019 20:04","program_id":1,"event_type_id":1}"#,
            ),
            400,
            "invalid_field",
        ),
        (
            None,
            "POST",
            "/dispatch",
            Some(
                r#"{"start_time":"08/27/2019 21:04","program_id":1,"program_id":1,"event_type_id":1}"#,
            ),
            400,
            "invalid_json",
        ),
        (
            None,
            "POST",
            "/dispatch",
            Some(r#"{"start_time":"08/27/2019 21:04","program_id":2,"event_type_id":1}"#),
            404,
            "not_found",
        ),
        (
            None,
            "POST",
            "/dispatch",
            Some(r#"{"start_time":"08/27/2019 21:04","program_id":1,"event_type_id":"7"}"#),
            404,
            "not_found",
        ),
        (None, "GET", "/dispatch", None, 405, "method_not_allowed"),
    ];
    check_table(addr, rows);
    // None of them made a dispatch.
    let response = call(addr, "GET", "/api/v1/dispatches/3", Some(ADMIN), None);
    check(&response, 404, Some("not_found"));
}

#[test]
fn the_route_is_not_mounted_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--compat", "market"]);
    let body = r#"{"start_time":"08/27/2019 21:04","program_id":1,"event_type_id":"1"}"#;
    let response = call(server.addr, "POST", "/dispatch", None, Some(body));
    check(&response, 404, Some("not_found"));
}
