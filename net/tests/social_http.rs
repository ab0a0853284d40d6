//! The social API over HTTP against the real `switchyard` binary: every error code of API.md's
//! Social table, token checks (missing, tampered, expired, wrong secret), e-mail visibility,
//! keyset pages, 40 users liking one post twice at once, and the sign-up adapters against
//! loopback fakes that answer in hunter.io's and Clearbit's documented JSON shapes (including a
//! fake that never answers, which must not block sign-up).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{call, check, check_table, login, sign_up, start, Row, ADMIN};
use serde_json::{json, Value};

fn create_post(addr: SocketAddr, token: &str, text: &str) -> Value {
    let response = call(
        addr,
        "POST",
        "/api/v1/posts",
        Some(token),
        Some(&json!({ "text": text }).to_string()),
    );
    check(&response, 201, None);
    response.json()
}

#[test]
fn every_social_error_code_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--set",
            "limits.max_posts_per_user=2",
            "--set",
            "limits.max_likes_per_user=1",
        ],
    );
    let addr = server.addr;
    let alice = sign_up(addr, "Alice@Example.com");
    let bob = sign_up(addr, "bob@example.com");
    let carol = sign_up(addr, "carol@example.com");
    let alice_token = login(addr, "alice@example.com");
    let bob_token = login(addr, "bob@example.com");
    let carol_token = login(addr, "carol@example.com");
    let first = create_post(addr, &alice_token, "first")["id"]
        .as_u64()
        .unwrap();
    let second = create_post(addr, &alice_token, "second")["id"]
        .as_u64()
        .unwrap();
    let (alice_t, bob_t, carol_t) = (
        Some(alice_token.as_str()),
        Some(bob_token.as_str()),
        Some(carol_token.as_str()),
    );
    let likes = |id: u64| format!("/api/v1/posts/{id}/likes");
    let (first_likes, second_likes, unknown_likes) = (likes(first), likes(second), likes(424242));
    let long_text = json!({ "text": "x".repeat(5001) }).to_string();
    let users = "/api/v1/users";
    let login_path = "/api/v1/auth/login";
    let posts = "/api/v1/posts";
    let check_path = "/api/v1/admin/social/check";
    #[rustfmt::skip]
    let rows: &[Row] = &[
        // Sign-up and login.
        (None, "POST", users, Some(r#"{"email":"bad","password":"password123"}"#), 400, "invalid_email"),
        (None, "POST", users, Some(r#"{"email":"a@example.com","password":"short"}"#), 400, "weak_password"),
        (None, "POST", users, Some(r#"{"email":"a@mailinator.com","password":"password123"}"#), 422, "email_undeliverable"),
        (None, "POST", users, Some(r#"{"email":"a@example.com"}"#), 400, "missing_field"),
        (None, "POST", users, Some(r#"{"email":1,"password":"password123"}"#), 400, "invalid_field"),
        (None, "POST", users, Some(r#"{"email":"a@example.com","password":"password123","admin":true}"#), 400, "unknown_field"),
        (None, "POST", users, Some(r#"{"email":"#), 400, "invalid_json"),
        (None, "POST", users, Some(r#"{"email":"alice@example.COM","password":"password123"}"#), 409, "email_taken"),
        (None, "POST", login_path, Some(r#"{"email":"alice@example.com","password":"wrong-password"}"#), 401, "invalid_credentials"),
        (None, "POST", login_path, Some(r#"{"email":"nobody@example.com","password":"password123"}"#), 401, "invalid_credentials"),
        (None, "GET", "/api/v1/users/999", None, 404, "not_found"),
        // Posts.
        (None, "POST", posts, Some(r#"{"text":"x"}"#), 401, "unauthenticated"),
        (Some("not.a.jwt"), "POST", posts, Some(r#"{"text":"x"}"#), 401, "unauthenticated"),
        (alice_t, "POST", posts, Some(r#"{"text":""}"#), 400, "invalid_text"),
        (alice_t, "POST", posts, Some(&long_text), 400, "invalid_text"),
        (alice_t, "POST", posts, Some(r#"{"text":"third"}"#), 403, "post_limit_reached"),
        (None, "GET", "/api/v1/posts/424242", None, 404, "not_found"),
        // Likes, in order: each row sees the state the ones before it left.
        (None, "POST", &first_likes, None, 401, "unauthenticated"),
        (bob_t, "POST", &unknown_likes, None, 404, "not_found"),
        (alice_t, "POST", &first_likes, None, 403, "own_post"),
        (bob_t, "DELETE", &first_likes, None, 409, "not_liked"),
        (bob_t, "POST", &first_likes, None, 201, ""),
        (bob_t, "POST", &first_likes, None, 409, "already_liked"),
        (bob_t, "POST", &second_likes, None, 403, "like_limit_reached"),
        (bob_t, "POST", &first_likes, Some(r#"{"extra":1}"#), 400, "unknown_field"),
        (carol_t, "POST", &second_likes, None, 201, ""),
        (bob_t, "DELETE", &first_likes, None, 200, ""),
        (bob_t, "POST", &first_likes, None, 201, ""),
        (None, "GET", &unknown_likes, None, 404, "not_found"),
        // Lists.
        (None, "GET", "/api/v1/users?limit=0", None, 400, "invalid_field"),
        (None, "GET", "/api/v1/users?limit=501", None, 400, "invalid_field"),
        (None, "GET", "/api/v1/users?cursor=zzz", None, 400, "invalid_field"),
        (None, "GET", "/api/v1/users?sort=name", None, 400, "unknown_field"),
        // The admin's invariant check.
        (alice_t, "GET", check_path, None, 401, "unauthenticated"),
        (Some(ADMIN), "GET", check_path, None, 200, ""),
    ];
    check_table(addr, rows);

    // What the rows left: e-mail only to the user itself and admin, like records, pages, stats.
    let user_as = |token: Option<&str>| {
        call(addr, "GET", &format!("/api/v1/users/{alice}"), token, None).json()
    };
    assert!(user_as(None).get("email").is_none());
    assert_eq!(user_as(alice_t)["email"], "Alice@Example.com");
    assert!(user_as(bob_t).get("email").is_none());
    assert_eq!(user_as(Some(ADMIN))["email"], "Alice@Example.com");
    let fetched = call(addr, "GET", &format!("/api/v1/posts/{first}"), None, None).json();
    assert_eq!(
        (fetched["author_id"].as_u64(), fetched["likes"].as_u64()),
        (Some(alice), Some(1))
    );
    let records = call(addr, "GET", &first_likes, None, None).json();
    assert_eq!(records["items"].as_array().unwrap().len(), 1);
    let record = &records["items"][0];
    assert_eq!(
        (
            record["user_id"].as_u64(),
            record["liked"].as_bool(),
            record["times_liked"].as_u64()
        ),
        (Some(bob), Some(true), Some(2))
    );
    assert!(record["first_liked_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(records["next_cursor"], Value::Null);
    let page = call(addr, "GET", "/api/v1/users?limit=2", None, None).json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest = call(
        addr,
        "GET",
        &format!("/api/v1/users?limit=2&cursor={cursor}"),
        None,
        None,
    )
    .json();
    assert_eq!(rest["items"][0]["id"].as_u64(), Some(carol));
    assert_eq!(rest["next_cursor"], Value::Null);
    let zero = call(addr, "GET", "/api/v1/posts?zero_likes=true", None, None).json();
    assert!(zero["items"].as_array().unwrap().is_empty(), "{zero}");
    let by_alice = call(
        addr,
        "GET",
        &format!("/api/v1/posts?author_id={alice}"),
        None,
        None,
    )
    .json();
    assert_eq!(by_alice["items"].as_array().unwrap().len(), 2);
    let stats = call(addr, "GET", "/api/v1/stats/social", None, None).json();
    assert_eq!(
        stats,
        json!({"users": 3, "posts": 2, "likes": 2, "posts_with_zero_likes": 0})
    );
    let differences = call(addr, "GET", check_path, Some(ADMIN), None).json();
    assert_eq!(differences["differences"], json!([]));
}

#[test]
fn tokens_expire_survive_restart_and_are_bound_to_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]);
    sign_up(server.addr, "dana@example.com");
    let token = login(server.addr, "dana@example.com");
    // Forge an expired token with the server's own secret (kept 0600 in the data dir).
    let secret = std::fs::read(dir.path().join("jwt_secret")).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": "1", "iat": now - 7200, "exp": now - 3600, "role": "user"});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let post = r#"{"text":"hi"}"#;
    check(
        &call(
            server.addr,
            "POST",
            "/api/v1/posts",
            Some(&expired),
            Some(post),
        ),
        401,
        Some("unauthenticated"),
    );
    let claims = json!({"sub": "1", "iat": now, "exp": now + 3600, "role": "user"});
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"some other secret, not the server's"),
    )
    .unwrap();
    check(
        &call(
            server.addr,
            "POST",
            "/api/v1/posts",
            Some(&foreign),
            Some(post),
        ),
        401,
        Some("unauthenticated"),
    );
    check(
        &call(
            server.addr,
            "POST",
            "/api/v1/posts",
            Some(&token),
            Some(post),
        ),
        201,
        None,
    );
    server.terminate();
    assert!(server
        .wait_exit(std::time::Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    let server = start(dir.path(), &[]);
    check(
        &call(
            server.addr,
            "POST",
            "/api/v1/posts",
            Some(&token),
            Some(post),
        ),
        201,
        None,
    );
}

#[test]
fn forty_users_like_one_post_twice_each_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let addr = server.addr;
    sign_up(addr, "author@example.com");
    let author_token = login(addr, "author@example.com");
    let post = create_post(addr, &author_token, "popular")["id"]
        .as_u64()
        .unwrap();
    let tokens: Vec<String> = (0..40)
        .map(|i| {
            let email = format!("fan{i}@example.com");
            sign_up(addr, &email);
            login(addr, &email)
        })
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(80));
    let threads: Vec<_> = tokens
        .iter()
        .flat_map(|token| [token.clone(), token.clone()])
        .map(|token| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                call(
                    addr,
                    "POST",
                    &format!("/api/v1/posts/{post}/likes"),
                    Some(&token),
                    None,
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        40,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        40,
        "{statuses:?}"
    );
    let fetched = call(addr, "GET", &format!("/api/v1/posts/{post}"), None, None).json();
    assert_eq!(fetched["likes"], 40);
    let check_route = call(
        addr,
        "GET",
        "/api/v1/admin/social/check",
        Some("admin-secret"),
        None,
    );
    assert_eq!(check_route.json()["differences"], json!([]));
}

/// A loopback HTTP server answering every request with `answer(path_and_query)`; `None` means
/// never answer (to test time-outs). Counts requests.
struct Fake {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

fn fake(answer: fn(&str) -> Option<(u16, String)>) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                }
                match answer(&target) {
                    Some((status, body)) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    None => {
                        // Hold the connection open without answering.
                        let mut sink = [0u8; 1];
                        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                        let _ = stream.read(&mut sink);
                    }
                }
            });
        }
    });
    Fake { addr, requests }
}

fn hunter(target: &str) -> Option<(u16, String)> {
    assert!(target.contains("api_key=hunter-key"), "{target}");
    let result = if target.contains("email=bounce%40example.com") {
        ("undeliverable", "invalid")
    } else if target.contains("email=maybe%40example.com") {
        ("risky", "accept_all")
    } else {
        ("deliverable", "valid")
    };
    Some((
        200,
        json!({"data": {"status": result.1, "result": result.0, "score": 90, "email": "x",
            "regexp": true, "gibberish": false, "disposable": false, "webmail": false,
            "mx_records": true, "smtp_server": true, "smtp_check": true, "accept_all": false,
            "block": false, "sources": []}, "meta": {"params": {"email": "x"}}})
        .to_string(),
    ))
}

fn clearbit(target: &str) -> Option<(u16, String)> {
    if target.contains("email=ghost%40example.com") {
        return Some((
            404,
            json!({"error": {"type": "unknown_record", "message": "Unknown email address"}})
                .to_string(),
        ));
    }
    Some((
        200,
        json!({"id": "d54c54ad", "name": {"fullName": "Alex MacCaw", "givenName": "Alex",
            "familyName": "MacCaw"}, "email": "alex@example.com", "location": "San Francisco, CA, US",
            "employment": {"domain": "clearbit.com", "name": "Clearbit", "title": "CEO"}})
        .to_string(),
    ))
}

fn silent(_: &str) -> Option<(u16, String)> {
    None
}

#[test]
fn sign_up_adapters_against_loopback_fakes() {
    let hunter = fake(hunter);
    let clearbit = fake(clearbit);
    let dir = tempfile::tempdir().unwrap();
    let hunter_url = format!("social.hunter_url=http://{}/v2/email-verifier", hunter.addr);
    let clearbit_url = format!(
        "social.clearbit_url=http://{}/v2/people/find",
        clearbit.addr
    );
    let server = start(
        dir.path(),
        &[
            "--set",
            &hunter_url,
            "--set",
            "social.hunter_api_key=hunter-key",
            "--set",
            &clearbit_url,
            "--set",
            "social.clearbit_api_key=clearbit-key",
        ],
    );
    let addr = server.addr;
    let body = |email: &str| json!({"email": email, "password": "password123"}).to_string();
    let refused = call(
        addr,
        "POST",
        "/api/v1/users",
        None,
        Some(&body("bounce@example.com")),
    );
    check(&refused, 422, Some("email_undeliverable"));
    let risky = call(
        addr,
        "POST",
        "/api/v1/users",
        None,
        Some(&body("maybe@example.com")),
    );
    check(&risky, 201, None);
    let enriched = risky.json();
    assert_eq!(enriched["enrichment"]["full_name"], "Alex MacCaw");
    assert_eq!(enriched["enrichment"]["company"], "Clearbit");
    assert_eq!(
        enriched["full_name"], "Alex MacCaw",
        "the enriched name fills a missing full_name"
    );
    let ghost = call(
        addr,
        "POST",
        "/api/v1/users",
        None,
        Some(&body("ghost@example.com")),
    );
    check(&ghost, 201, None);
    assert_eq!(ghost.json()["enrichment"], Value::Null);
    assert!(hunter.requests.load(Ordering::SeqCst) >= 3);
    assert!(clearbit.requests.load(Ordering::SeqCst) >= 2);
    // Syntax errors are refused before any outside call.
    let before = hunter.requests.load(Ordering::SeqCst);
    check(
        &call(addr, "POST", "/api/v1/users", None, Some(&body("nope"))),
        400,
        Some("invalid_email"),
    );
    assert_eq!(hunter.requests.load(Ordering::SeqCst), before);
}

#[test]
fn a_silent_adapter_never_blocks_sign_up() {
    let silent_hunter = fake(silent);
    let silent_clearbit = fake(silent);
    let dir = tempfile::tempdir().unwrap();
    let hunter_url = format!(
        "social.hunter_url=http://{}/v2/email-verifier",
        silent_hunter.addr
    );
    let clearbit_url = format!(
        "social.clearbit_url=http://{}/v2/people/find",
        silent_clearbit.addr
    );
    let server = start(
        dir.path(),
        &[
            "--set",
            &hunter_url,
            "--set",
            "social.hunter_api_key=k",
            "--set",
            &clearbit_url,
            "--set",
            "social.clearbit_api_key=k",
            "--set",
            "social.adapter_timeout_ms=300",
        ],
    );
    let response = call(
        server.addr,
        "POST",
        "/api/v1/users",
        None,
        Some(&json!({"email": "slow@example.com", "password": "password123"}).to_string()),
    );
    check(&response, 201, None);
    assert_eq!(response.json()["enrichment"], Value::Null);
    let metrics = call(server.addr, "GET", "/metrics", None, None).text();
    assert!(
        metrics.contains("switchyard_adapter_failures_total{adapter=\"email_verifier\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_adapter_failures_total{adapter=\"enrichment\"} 1"),
        "{metrics}"
    );
}
