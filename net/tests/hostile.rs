//! Hostile clients (issue 12), one table per rule, over HTTP against the real `switchyard`
//! binary on port 0:
//! - the work client takeover is closed: `external_id` is a secret of at least 16 characters,
//!   never listed in stats, metrics, logs or the data dir; registering it again returns the same
//!   client with a new token and revokes the old one;
//! - authentication comes before validation; a present but invalid token on an optional-token
//!   route is 401; a JWT whose `sub` names no user, or whose `nbf`/`iat` is in the future beyond
//!   the skew, is 401;
//! - duplicated JSON keys are 400 `invalid_json` and change nothing; two `Authorization` headers
//!   are 400 `invalid_header`; `HEAD` answers every `GET` with its headers and no body;
//! - login failures are throttled per e-mail and per source address, and sign-ups per address
//!   (429 `rate_limited` with `Retry-After`), the same for a known and an unknown e-mail;
//! - a second server on a locked data dir is refused before it binds or says it listens;
//! - integers may be written `3.0`, an epoch is a u32, cursors have one shape, and the OpenAPI
//!   document states each of these constraints.
//!
//! Each case is a row: `(what, request, expected status, expected code)`, checked by `check`.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::{
    call, call_from, call_with_headers, check, head, login, register, request, sign_up, Response,
    Server, ADMIN,
};
use serde_json::{json, Value};
use switchyard_net::auth::{Auth, Claims};

const JWT_SECRET: &str = "hostile-tests-jwt-secret-0123456789abcdef";

/// A server with cheap argon2, the admin token, a known JWT secret (so tests can forge tokens)
/// and `extra` arguments; `envs` may add variables (`RUST_LOG`).
fn start(dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
    let mut all_envs = vec![("SWITCHYARD_JWT_SECRET", JWT_SECRET)];
    all_envs.extend(envs);
    common::start_with_env(dir, extra, &all_envs)
}

/// A user token signed with the server's secret, with these claims.
fn forge(sub: &str, iat: u64, nbf: Option<u64>, exp: u64) -> String {
    Auth::from_secret(JWT_SECRET.as_bytes(), 3600, None)
        .sign(&Claims {
            sub: sub.into(),
            iat,
            exp,
            role: "user".into(),
            nbf,
        })
        .expect("signs")
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// One table row: a request and the status and code it must get.
struct Row<'a> {
    what: &'a str,
    method: &'a str,
    path: String,
    authorization: Vec<String>,
    body: Option<String>,
    status: u16,
    code: Option<&'a str>,
}

fn row<'a>(
    what: &'a str,
    method: &'a str,
    path: impl Into<String>,
    token: Option<&str>,
    body: Option<&str>,
    status: u16,
    code: Option<&'a str>,
) -> Row<'a> {
    Row {
        what,
        method,
        path: path.into(),
        authorization: token.map(|t| format!("Bearer {t}")).into_iter().collect(),
        body: body.map(str::to_string),
        status,
        code,
    }
}

fn run(addr: SocketAddr, rows: &[Row]) {
    for row in rows {
        let headers: Vec<(&str, &str)> = row
            .authorization
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        let response =
            call_with_headers(addr, row.method, &row.path, &headers, row.body.as_deref());
        assert_eq!(
            response.status,
            row.status,
            "{}: {} {} -> {}",
            row.what,
            row.method,
            row.path,
            response.text()
        );
        if let Some(code) = row.code {
            assert_eq!(
                response.json()["error"]["code"],
                code,
                "{}: {}",
                row.what,
                response.text()
            );
        }
    }
}

fn stats(addr: SocketAddr, path: &str) -> Value {
    let response = call(addr, "GET", path, None, None);
    check(&response, 200, None);
    response.json()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn the_work_client_takeover_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "victim-secret-7f3a9c2e51d04b86";
    let mut server = start(dir.path(), &[], &[("RUST_LOG", "debug")]);
    let addr = server.addr;

    // Too short to be a secret: refused, and nothing registered.
    for short in ["", "1001", "fifteen-chars-1"] {
        let response = register(addr, "victim", short);
        check(&response, 400, Some("invalid_field"));
        assert_eq!(response.json()["error"]["field"], "external_id");
    }
    assert_eq!(stats(addr, "/api/v1/work/stats")["clients"], json!([]));

    let first = register(addr, "victim", secret);
    check(&first, 201, None);
    let client_id = first.json()["client_id"].as_u64().expect("id");
    let old_token = first.json()["token"].as_str().expect("token").to_string();

    // The stats (public) never list the secret, nor does anything else a stranger can read.
    let listed = stats(addr, "/api/v1/work/stats");
    let client = &listed["clients"][0];
    assert_eq!(client["client_id"], client_id);
    assert!(client.get("external_id").is_none(), "{client}");
    for path in ["/api/v1/work/stats", "/metrics", "/api/v1/work/items"] {
        let response = call(addr, "GET", path, None, None);
        assert!(!contains(&response.body, secret), "{path} shows the secret");
    }

    // The secret's holder takes the identity back: same id, new token, the old one revoked.
    let again = register(addr, "victim again", secret);
    check(&again, 200, None);
    assert_eq!(again.json()["client_id"], client_id);
    let new_token = again.json()["token"].as_str().expect("token").to_string();
    assert_ne!(new_token, old_token);
    let lease = Some(r#"{"max_buckets": 1}"#);
    run(
        addr,
        &[
            row(
                "the old token is revoked",
                "POST",
                "/api/v1/work/leases",
                Some(&old_token),
                lease,
                401,
                Some("unauthenticated"),
            ),
            row(
                "the new token works",
                "POST",
                "/api/v1/work/leases",
                Some(&new_token),
                lease,
                200,
                None,
            ),
        ],
    );

    // Stored hashed: no byte of the data dir holds the secret, nor did any log line.
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(20)).is_some());
    assert!(
        !server.stderr().contains(secret),
        "the log shows the secret"
    );
    assert!(
        server.stderr().contains("request"),
        "debug request logs were on"
    );
    let mut files = Vec::new();
    files_under(dir.path(), &mut files);
    assert!(files.len() > 2, "{files:?}");
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        assert!(
            !contains(&bytes, secret),
            "{} holds the secret",
            file.display()
        );
    }
}

#[test]
fn authentication_comes_before_validation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &[], &[]);
    let addr = server.addr;
    let alice = sign_up(addr, "alice@example.com");
    let alice_token = login(addr, "alice@example.com");
    let unknown_client = format!("swc_{}", "0".repeat(64));
    let unknown_client = unknown_client.as_str();
    let alice_path = format!("/api/v1/users/{alice}");
    let alice_path = alice_path.as_str();
    let bad_json = Some("{not json");
    let cases = [
        // (what, method, path, token, body)
        (
            "post: bad JWT, bad body",
            "POST",
            "/api/v1/posts",
            "garbage",
            bad_json,
        ),
        (
            "post: bad JWT, unknown field",
            "POST",
            "/api/v1/posts",
            "garbage",
            Some(r#"{"text": "x", "colour": 1}"#),
        ),
        (
            "like: bad JWT, unknown post, bad body",
            "POST",
            "/api/v1/posts/424242/likes",
            "garbage",
            bad_json,
        ),
        (
            "unlike: bad JWT, malformed id",
            "DELETE",
            "/api/v1/posts/abc/likes",
            "garbage",
            None,
        ),
        (
            "lease: unknown client, bad body",
            "POST",
            "/api/v1/work/leases",
            unknown_client,
            bad_json,
        ),
        (
            "lease: unknown client, max_buckets out of range",
            "POST",
            "/api/v1/work/leases",
            unknown_client,
            Some(r#"{"max_buckets": 0}"#),
        ),
        (
            "lease: unknown client, missing field",
            "POST",
            "/api/v1/work/leases",
            unknown_client,
            Some("{}"),
        ),
        (
            "report: unknown client, bad body",
            "POST",
            "/api/v1/work/buckets/1/results",
            unknown_client,
            Some(r#"{"results": "no"}"#),
        ),
        (
            "report: unknown client, malformed bucket id",
            "POST",
            "/api/v1/work/buckets/abc/results",
            unknown_client,
            Some(r#"{"results": []}"#),
        ),
        (
            "heartbeat: unknown client, bad epoch",
            "POST",
            "/api/v1/work/buckets/1/heartbeat",
            unknown_client,
            Some(r#"{"epoch": "x"}"#),
        ),
        (
            "unregister: unknown client, unknown query parameter",
            "DELETE",
            "/api/v1/work/clients/me?colour=red",
            unknown_client,
            None,
        ),
        (
            "add items: not the admin, bad body",
            "POST",
            "/api/v1/work/items",
            "not-the-admin",
            bad_json,
        ),
        (
            "invariant check: not the admin, unknown query parameter",
            "GET",
            "/api/v1/admin/social/check?colour=red",
            "not-the-admin",
            None,
        ),
        // Optional-token routes: a present but invalid token is 401, not "anonymous".
        (
            "users: invalid token",
            "GET",
            "/api/v1/users",
            "garbage",
            None,
        ),
        (
            "users: invalid token, bad query",
            "GET",
            "/api/v1/users?limit=0",
            "garbage",
            None,
        ),
        ("user: invalid token", "GET", alice_path, "garbage", None),
        (
            "user: a client token is not a user token",
            "GET",
            alice_path,
            unknown_client,
            None,
        ),
    ];
    let rows: Vec<Row> = cases
        .iter()
        .map(|(what, method, path, token, body)| {
            row(
                what,
                method,
                *path,
                Some(token),
                *body,
                401,
                Some("unauthenticated"),
            )
        })
        .collect();
    run(addr, &rows);
    // An empty Authorization header, or one of another scheme, is a bad credential too.
    let with_header = |value: &str| {
        call_with_headers(
            addr,
            "GET",
            "/api/v1/users",
            &[("Authorization", value)],
            None,
        )
    };
    for value in ["", "Basic YWxpY2U6eA==", "Bearer"] {
        check(&with_header(value), 401, Some("unauthenticated"));
    }
    // Without a token, and with a valid one, the optional routes answer.
    run(
        addr,
        &[
            row(
                "users, anonymous",
                "GET",
                "/api/v1/users",
                None,
                None,
                200,
                None,
            ),
            row(
                "users, as alice",
                "GET",
                "/api/v1/users",
                Some(&alice_token),
                None,
                200,
                None,
            ),
            row(
                "users, as admin",
                "GET",
                "/api/v1/users",
                Some(ADMIN),
                None,
                200,
                None,
            ),
            row(
                "post, valid token, bad body: now the body is judged",
                "POST",
                "/api/v1/posts",
                Some(&alice_token),
                bad_json,
                400,
                Some("invalid_json"),
            ),
        ],
    );
    // Nothing was created by any refused request.
    assert_eq!(
        stats(addr, "/api/v1/stats/social"),
        json!({"users": 1, "posts": 0, "likes": 0, "posts_with_zero_likes": 0})
    );
}

#[test]
fn jwt_claims_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &["--set", "auth.clock_skew_seconds=5"], &[]);
    let addr = server.addr;
    let alice = sign_up(addr, "alice@example.com");
    let now = now_seconds();
    let hour = now + 3600;
    let sub = alice.to_string();
    let cases = [
        // (what, token, expected status)
        (
            "a well-formed token of alice",
            forge(&sub, now, None, hour),
            201,
        ),
        ("iat within the skew", forge(&sub, now + 2, None, hour), 201),
        ("nbf reached", forge(&sub, now, Some(now - 10), hour), 201),
        (
            "nbf within the skew",
            forge(&sub, now, Some(now + 2), hour),
            201,
        ),
        (
            "nbf in the future",
            forge(&sub, now, Some(now + 120), hour),
            401,
        ),
        ("iat in the future", forge(&sub, now + 120, None, hour), 401),
        ("expired", forge(&sub, now - 7200, None, now - 3600), 401),
        ("sub names no user", forge("999999", now, None, hour), 401),
        ("sub is not a number", forge("alice", now, None, hour), 401),
        (
            "sub is signed",
            forge(&format!("+{alice}"), now, None, hour),
            401,
        ),
    ];
    for (what, token, status) in &cases {
        let response = call(
            addr,
            "POST",
            "/api/v1/posts",
            Some(token),
            Some(r#"{"text": "hello"}"#),
        );
        assert_eq!(response.status, *status, "{what}: {}", response.text());
        if *status == 401 {
            assert_eq!(
                response.json()["error"]["code"],
                "unauthenticated",
                "{what}"
            );
        }
        // The optional-token route agrees: a token that does not pass is 401 there too.
        let listed = call(addr, "GET", "/api/v1/users", Some(token), None);
        let expected = if *status == 201 { 200 } else { 401 };
        assert_eq!(listed.status, expected, "{what}: {}", listed.text());
    }
    // A token of a user that does not exist is refused on every user route (no ghost likes).
    let ghost = forge("999999", now, None, hour);
    let post = call(
        addr,
        "POST",
        "/api/v1/posts",
        Some(&login(addr, "alice@example.com")),
        Some(r#"{"text": "likable"}"#),
    );
    let post_id = post.json()["id"].as_u64().expect("post id");
    run(
        addr,
        &[
            row(
                "like by a ghost",
                "POST",
                format!("/api/v1/posts/{post_id}/likes"),
                Some(&ghost),
                None,
                401,
                Some("unauthenticated"),
            ),
            row(
                "user by a ghost",
                "GET",
                format!("/api/v1/users/{alice}"),
                Some(&ghost),
                None,
                401,
                Some("unauthenticated"),
            ),
        ],
    );
    assert_eq!(stats(addr, &format!("/api/v1/posts/{post_id}"))["likes"], 0);
}

#[test]
fn strict_input_duplicate_keys_two_authorizations_and_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &[], &[]);
    let addr = server.addr;
    sign_up(addr, "alice@example.com");
    let token = login(addr, "alice@example.com");
    let two = vec![format!("Bearer {token}"), format!("Bearer {ADMIN}")];
    let duplicate_sign_up = r#"{"email": "first@example.com", "password": "correct horse", "email": "second@example.com"}"#;
    let mut rows = vec![
        row(
            "sign-up with two e-mails",
            "POST",
            "/api/v1/users",
            None,
            Some(duplicate_sign_up),
            400,
            Some("invalid_json"),
        ),
        row(
            "nested duplicate",
            "POST",
            "/api/v1/work/items",
            Some(ADMIN),
            Some(r#"{"items": [{"key": "a", "key": "b"}]}"#),
            400,
            Some("invalid_json"),
        ),
        row(
            "login with two passwords",
            "POST",
            "/api/v1/auth/login",
            None,
            Some(r#"{"email": "alice@example.com", "password": "x", "password": "correct horse"}"#),
            400,
            Some("invalid_json"),
        ),
    ];
    for (method, path, body) in [
        ("POST", "/api/v1/posts", Some(r#"{"text": "x"}"#)),
        ("GET", "/api/v1/users", None),
        ("GET", "/api/v1/posts", None),
        ("POST", "/api/v1/work/items", Some(r#"{"items": []}"#)),
    ] {
        rows.push(Row {
            what: "two Authorization headers",
            method,
            path: path.into(),
            authorization: two.clone(),
            body: body.map(str::to_string),
            status: 400,
            code: Some("invalid_header"),
        });
    }
    run(addr, &rows);
    // Nothing changed: no user from the duplicated sign-up, no post, no item.
    assert_eq!(stats(addr, "/api/v1/stats/social")["users"], 1);
    assert_eq!(stats(addr, "/api/v1/stats/social")["posts"], 0);
    assert_eq!(stats(addr, "/api/v1/work/stats")["items"]["pending"], 0);

    // HEAD: the GET's status and headers, no body.
    for path in [
        "/healthz",
        "/api/v1/openapi.json",
        "/api/v1/users",
        "/api/v1/users/1",
        "/api/v1/users/999",
        "/api/v1/posts?limit=0",
        "/api/v1/stats/social",
        "/api/v1/work/stats",
    ] {
        let got = request(addr, "GET", path, None);
        let headed = head(addr, path, &[]);
        assert_eq!(headed.status, got.status, "HEAD {path}");
        assert!(headed.body.is_empty(), "HEAD {path} sent a body");
        for name in ["content-type", "content-length"] {
            assert_eq!(headed.header(name), got.header(name), "HEAD {path}: {name}");
        }
    }
    let not_allowed = call(addr, "PUT", "/api/v1/users", None, None);
    check(&not_allowed, 405, Some("method_not_allowed"));
    assert_eq!(not_allowed.header("allow"), Some("POST, GET, HEAD"));
}

#[test]
fn login_failures_are_throttled_per_email_and_per_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(
        dir.path(),
        &["--set", "auth.login_failures_per_minute=3"],
        &[],
    );
    let addr = server.addr;
    sign_up(addr, "known@example.com");
    sign_up(addr, "other@example.com");
    let source = |last: u8| Ipv4Addr::new(127, 0, 0, last);
    let attempt = |from: u8, email: &str, password: &str| {
        let body = json!({"email": email, "password": password}).to_string();
        call_from(
            source(from),
            addr,
            "POST",
            "/api/v1/auth/login",
            Some(&body),
        )
    };
    let outcome = |response: &Response| {
        let code = response.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (response.status, code)
    };

    // A known and an unknown e-mail, each from its own address: the same answers, so the
    // throttle does not tell which exists. The 4th attempt is refused even with the right
    // password (else the throttle would be a password oracle).
    for (address, email) in [(2, "known@example.com"), (3, "nobody@example.com")] {
        let answers: Vec<(u16, String)> = (0..3)
            .map(|_| outcome(&attempt(address, email, "wrong password")))
            .collect();
        assert!(
            answers
                .iter()
                .all(|answer| *answer == (401, "invalid_credentials".into())),
            "{email}: {answers:?}"
        );
        let refused = attempt(address + 10, email, "correct horse");
        assert_eq!(outcome(&refused), (429, "rate_limited".into()), "{email}");
        let retry: u64 = refused
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry), "{retry}");
    }
    // Per address: address 2 spent its failures, so another e-mail from it is refused too,
    // while the same e-mail from a fresh address is answered.
    assert_eq!(
        outcome(&attempt(2, "other@example.com", "correct horse")),
        (429, "rate_limited".into())
    );
    assert_eq!(attempt(4, "other@example.com", "correct horse").status, 200);
    // Successes do not count: after two failures, any number of good logins pass.
    for _ in 0..2 {
        assert_eq!(attempt(5, "other@example.com", "wrong").status, 401);
    }
    for _ in 0..5 {
        assert_eq!(attempt(5, "other@example.com", "correct horse").status, 200);
    }
}

#[test]
fn sign_up_floods_are_throttled_per_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(
        dir.path(),
        &["--set", "auth.signups_per_minute_per_source=3"],
        &[],
    );
    let addr = server.addr;
    let source = |last: u8| Ipv4Addr::new(127, 0, 0, last);
    let sign_up_from = |from: u8, email: &str| {
        let body = json!({"email": email, "password": "correct horse"}).to_string();
        call_from(source(from), addr, "POST", "/api/v1/users", Some(&body))
    };
    for index in 0..3 {
        check(
            &sign_up_from(2, &format!("flood{index}@example.com")),
            201,
            None,
        );
    }
    let refused = sign_up_from(2, "flood3@example.com");
    check(&refused, 429, Some("rate_limited"));
    assert!(refused.header("retry-after").is_some());
    // Another address is not affected; the refused sign-up created nothing.
    check(&sign_up_from(3, "elsewhere@example.com"), 201, None);
    assert_eq!(stats(addr, "/api/v1/stats/social")["users"], 4);
}

#[test]
fn a_locked_data_dir_is_refused_before_binding_and_announcing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = start(dir.path(), &[], &[]);
    // The second server is pointed at an address that is already taken: were it to bind first,
    // it would fail with "cannot listen"; it must fail on the lock instead, and never print its
    // listening line.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_address = taken.local_addr().expect("address").to_string();
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--listen", &taken_address, "--data-dir", data_dir])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the second server");
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(stderr.contains("locked by another process"), "{stderr}");
    assert!(!stderr.contains("cannot listen"), "{stderr}");
    // The first server is unharmed.
    check(&request(first.addr, "GET", "/readyz", None), 200, None);
}

#[test]
fn numbers_epochs_and_cursors_are_what_the_document_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &["--set", "work.bucket_size=2"], &[]);
    let addr = server.addr;
    let document = request(addr, "GET", "/api/v1/openapi.json", None).json();
    let schemas = &document["components"]["schemas"];

    // The document states the constraints the server enforces.
    let email = &schemas["SignUpRequest"]["properties"]["email"];
    assert_eq!(
        (&email["format"], &email["minLength"], &email["maxLength"]),
        (&json!("email"), &json!(5), &json!(254))
    );
    let screen_name = &schemas["RegisterClientRequest"]["properties"]["screen_name"];
    assert!(screen_name["pattern"]
        .as_str()
        .is_some_and(|p| p.contains("\\u0000-\\u001f\\u007f-\\u009f")));
    let external_id = &schemas["RegisterClientRequest"]["properties"]["external_id"];
    assert_eq!(external_id["minLength"], 16);
    assert_eq!(
        schemas["ItemKey"]["pattern"],
        "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    );
    assert_eq!(schemas["ItemKey"]["maxLength"], 128);
    let max_buckets = &schemas["LeaseRequest"]["properties"]["max_buckets"];
    assert_eq!(
        (&max_buckets["minimum"], &max_buckets["maximum"]),
        (&json!(1), &json!(10))
    );
    assert!(schemas["ClientStats"]["properties"]
        .get("external_id")
        .is_none());
    // One width for `epoch` everywhere: u32.
    let mut epochs = 0;
    for name in [
        "Bucket",
        "HeartbeatRequest",
        "HeartbeatResponse",
        "ReportRequest",
    ] {
        let epoch = &schemas[name]["properties"]["epoch"];
        assert_eq!(epoch["format"], "uint32", "{name}");
        assert_eq!(epoch["maximum"], 4_294_967_295u64, "{name}");
        epochs += 1;
    }
    assert_eq!(epochs, 4);
    assert_eq!(schemas["NextCursor"]["pattern"], "^c[0-9a-f]{1,16}$");
    let cursor = document["paths"]["/api/v1/users"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|parameter| parameter["name"] == "cursor")
        .expect("a cursor parameter");
    assert_eq!(cursor["schema"]["pattern"], "^(c[0-9a-f]{1,16})?$");

    // And the server enforces exactly that.
    let client = register(addr, "numbers", "numbers-secret-0001").json()["token"]
        .as_str()
        .expect("token")
        .to_string();
    let items = r#"{"items": [{"key": "n1"}, {"key": "n2"}, {"key": "n3", "priority": 2.0}]}"#;
    check(
        &call(addr, "POST", "/api/v1/work/items", Some(ADMIN), Some(items)),
        202,
        None,
    );
    let leased = call(
        addr,
        "POST",
        "/api/v1/work/leases",
        Some(&client),
        Some(r#"{"max_buckets": 1.0}"#),
    );
    check(&leased, 200, None);
    let bucket = leased.json()["buckets"][0]["id"].as_u64().expect("bucket");
    let heartbeat = format!("/api/v1/work/buckets/{bucket}/heartbeat");
    let wide_key = "\u{1F600}".repeat(128);
    let too_wide_key = "\u{1F600}".repeat(129);
    let items_of = |key: &str| json!({"items": [{"key": key}]}).to_string();
    let wide_items = items_of(&wide_key);
    let too_wide_items = items_of(&too_wide_key);
    let control_items = items_of("k\u{85}");
    run(
        addr,
        &[
            row(
                "epoch 1.0 is 1",
                "POST",
                &heartbeat,
                Some(&client),
                Some(r#"{"epoch": 1.0}"#),
                200,
                None,
            ),
            row(
                "epoch 1.5",
                "POST",
                &heartbeat,
                Some(&client),
                Some(r#"{"epoch": 1.5}"#),
                400,
                Some("invalid_field"),
            ),
            row(
                "epoch beyond u32",
                "POST",
                &heartbeat,
                Some(&client),
                Some(r#"{"epoch": 4294967296}"#),
                400,
                Some("invalid_field"),
            ),
            row(
                "epoch u32::MAX is a u32 (an old lease)",
                "POST",
                &heartbeat,
                Some(&client),
                Some(r#"{"epoch": 4294967295}"#),
                409,
                Some("lease_expired"),
            ),
            row(
                "max_buckets above the maximum",
                "POST",
                "/api/v1/work/leases",
                Some(&client),
                Some(r#"{"max_buckets": 11}"#),
                400,
                Some("too_many_buckets"),
            ),
            row(
                "a key of 128 four-byte characters",
                "POST",
                "/api/v1/work/items",
                Some(ADMIN),
                Some(&wide_items),
                202,
                None,
            ),
            row(
                "a key of 129 characters",
                "POST",
                "/api/v1/work/items",
                Some(ADMIN),
                Some(&too_wide_items),
                400,
                Some("invalid_field"),
            ),
            row(
                "a key with a C1 control character",
                "POST",
                "/api/v1/work/items",
                Some(ADMIN),
                Some(&control_items),
                400,
                Some("invalid_field"),
            ),
            row(
                "a screen name with a control character",
                "POST",
                "/api/v1/work/clients",
                None,
                Some(r#"{"screen_name": "a\u0007", "external_id": "numbers-secret-0002"}"#),
                400,
                Some("invalid_field"),
            ),
            row(
                "a cursor of the right shape",
                "GET",
                "/api/v1/work/items?cursor=c1",
                None,
                None,
                200,
                None,
            ),
            row(
                "an empty cursor is the first page",
                "GET",
                "/api/v1/work/items?cursor=",
                None,
                None,
                200,
                None,
            ),
            row(
                "an uppercase cursor",
                "GET",
                "/api/v1/work/items?cursor=cFF",
                None,
                None,
                400,
                Some("invalid_field"),
            ),
            row(
                "a signed cursor",
                "GET",
                "/api/v1/work/items?cursor=c%2B1",
                None,
                None,
                400,
                Some("invalid_field"),
            ),
            row(
                "a cursor beyond 16 digits",
                "GET",
                "/api/v1/work/items?cursor=c00000000000000001",
                None,
                None,
                400,
                Some("invalid_field"),
            ),
            row(
                "a signed limit",
                "GET",
                "/api/v1/work/items?limit=%2B5",
                None,
                None,
                400,
                Some("invalid_field"),
            ),
            row(
                "an e-mail without a dot in its domain",
                "POST",
                "/api/v1/users",
                None,
                Some(r#"{"email": "a@b", "password": "correct horse"}"#),
                400,
                Some("invalid_email"),
            ),
        ],
    );
    // A next_cursor the server hands out has the documented shape and leads on.
    let page = stats(addr, "/api/v1/work/items?limit=1");
    let cursor = page["next_cursor"].as_str().expect("a next page");
    assert!(cursor.starts_with('c') && cursor[1..].bytes().all(|b| b.is_ascii_hexdigit()));
    check(
        &call(
            addr,
            "GET",
            &format!("/api/v1/work/items?limit=1&cursor={cursor}"),
            None,
            None,
        ),
        200,
        None,
    );
}
