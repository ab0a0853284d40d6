//! Fuzzing the edge (issue 11): property-based random inputs at scale against the real binary
//! and the configuration parser. No input may crash the server or get a 5xx (bad input is a 4xx
//! that changes nothing), and after the storm every invariant checker must be clean.
//!
//! - HTTP: requests built from the router's own table (`routes::mounted`), every method, path
//!   parameters from valid to absurd, query strings, duplicated and malformed headers, every
//!   credential kind (none, garbage, a user's JWT, the admin token, a work client's token), and
//!   bodies that start from each route's valid shape and are mutated (fields dropped, retyped,
//!   added, duplicated keys, deep nesting, huge strings, raw bytes); plus raw byte noise.
//! - Configuration: TOML files and `--set` assignments of every known key with values of every
//!   type, and noise; parsing may refuse (naming the key) but never panics, and what it accepts
//!   validates.
//!
//! CI runs `CASES`; `SWITCHYARD_SLOW_TESTS=1` runs `SLOW_CASES`. The corpus of hand-picked
//! requests in `tests/fuzz_corpus/` is replayed first (add a file there for every request that
//! once broke the server); proptest keeps the seeds of failing inputs in `proptest-regressions/`.

mod common;

use std::net::SocketAddr;

use common::{call, check, Response, Server, FAST_HASH};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

const CASES: u32 = 1_500;
const SLOW_CASES: u32 = 100_000;
const ADMIN: &str = "fuzz-admin-token";

fn cases() -> u32 {
    if std::env::var_os("SWITCHYARD_SLOW_TESTS").is_some() {
        SLOW_CASES
    } else {
        CASES
    }
}

/// Where proptest keeps the seeds of failing inputs (replayed first on every run; committed).
fn persistence(path: &'static str) -> Option<Box<dyn proptest::test_runner::FailurePersistence>> {
    Some(Box::new(
        proptest::test_runner::FileFailurePersistence::Direct(path),
    ))
}

fn runner_config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: persistence(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/proptest-regressions/fuzz_http.txt"
        )),
        // Shrinking re-sends requests against a server whose state moved on; the first
        // failing input is what we report.
        max_shrink_iters: 64,
        ..Config::default()
    }
}

/// Credentials a request may carry.
struct Tokens {
    user: String,
    client: String,
}

fn setup(server: &Server) -> Tokens {
    let addr = server.addr;
    let body = r#"{"email":"fuzz@example.com","password":"correct horse battery"}"#;
    check(
        &call(addr, "POST", "/api/v1/users", None, Some(body)),
        201,
        None,
    );
    let login = call(addr, "POST", "/api/v1/auth/login", None, Some(body));
    check(&login, 200, None);
    let user = login.json()["access_token"].as_str().unwrap().to_string();
    check(
        &call(
            addr,
            "POST",
            "/api/v1/posts",
            Some(&user),
            Some(r#"{"text":"seed post"}"#),
        ),
        201,
        None,
    );
    check(
        &call(
            addr,
            "POST",
            "/api/v1/work/items",
            Some(ADMIN),
            Some(r#"{"items":[{"key":"alpha"},{"key":"beta","priority":3}]}"#),
        ),
        202,
        None,
    );
    let client = call(
        addr,
        "POST",
        "/api/v1/work/clients",
        None,
        Some(r#"{"screen_name":"fuzzer","external_id":"fuzz-secret-0123456789"}"#),
    );
    check(&client, 201, None);
    let client = client.json()["token"].as_str().unwrap().to_string();
    Tokens { user, client }
}

/// A route's valid body, the starting point of mutations.
fn template(method: &str, pattern: &str) -> Value {
    match (method, pattern) {
        ("POST", "/api/v1/demo/counters/{id}") => json!({"by": 1, "mirror_to": 2}),
        ("POST", "/api/v1/users") => {
            json!({"email": "someone@example.com", "password": "correct horse", "full_name": "S"})
        }
        ("POST", "/api/v1/auth/login") => {
            json!({"email": "fuzz@example.com", "password": "correct horse battery"})
        }
        ("POST", "/api/v1/posts") => json!({"text": "hello"}),
        ("POST", "/api/v1/work/items") => json!({"items": [{"key": "k1", "priority": 1}]}),
        ("POST", "/api/v1/work/clients") => {
            json!({"screen_name": "c", "external_id": "another-secret-0123456"})
        }
        ("POST", "/api/v1/work/leases") => json!({"max_buckets": 1}),
        ("POST", "/api/v1/work/buckets/{id}/results") => json!({
            "results": [{"key": "alpha", "outcome": "yes", "detail": "d"}],
            "discovered": ["gamma"]
        }),
        _ => Value::Null,
    }
}

const FIELD_NAMES: &[&str] = &[
    "email",
    "password",
    "full_name",
    "text",
    "items",
    "key",
    "priority",
    "screen_name",
    "external_id",
    "max_buckets",
    "results",
    "outcome",
    "detail",
    "discovered",
    "by",
    "mirror_to",
    "",
    "\u{0}",
    "emaıl",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(0)),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String("x".repeat(6_000))),
        Just(Value::String("a@b.co".into())),
        Just(Value::String("\u{7f}\u{1b}[31m\n\t".into())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELD_NAMES), inner), 0..6).prop_map(
                |pairs| {
                    Value::Object(
                        pairs
                            .into_iter()
                            .map(|(key, value)| (key.to_string(), value))
                            .collect::<Map<_, _>>(),
                    )
                }
            ),
        ]
    })
}

#[derive(Debug, Clone)]
enum Body {
    None,
    /// The route's template with one field replaced, removed or added.
    Mutated {
        field: &'static str,
        value: Option<Value>,
    },
    /// The template's text with one key written twice.
    DuplicatedKey,
    Any(Value),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    User,
    Admin,
    Client,
    Garbage(String),
    Twice,
    Basic,
}

#[derive(Debug, Clone)]
enum Request {
    Shaped {
        method: &'static str,
        route: usize,
        params: Vec<String>,
        query: String,
        auth: Auth,
        content_type: Option<&'static str>,
        body: Body,
    },
    Noise(Vec<u8>),
}

fn param() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_string()),
        Just("2".to_string()),
        Just("0".to_string()),
        Just("alpha".to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just("%00".to_string()),
        Just("%2F..%2F".to_string()),
        Just("%ZZ".to_string()),
        "[a-zA-Z0-9_.~-]{0,20}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let pair = (
        prop::sample::select(
            &[
                "limit",
                "cursor",
                "state",
                "author_id",
                "zero_likes",
                "user_id",
                "x",
                "",
            ][..],
        ),
        prop_oneof![
            Just("1".to_string()),
            Just("500".to_string()),
            Just("501".to_string()),
            Just("0".to_string()),
            Just("-5".to_string()),
            Just("true".to_string()),
            Just("pending".to_string()),
            Just("%FF".to_string()),
            "[a-zA-Z0-9_=%]{0,24}",
        ],
    );
    prop::collection::vec(pair, 0..4).prop_map(|pairs| {
        if pairs.is_empty() {
            return String::new();
        }
        let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("?{}", joined.join("&"))
    })
}

fn request(routes: usize) -> impl Strategy<Value = Request> {
    let auth = prop_oneof![
        Just(Auth::None),
        Just(Auth::User),
        Just(Auth::Admin),
        Just(Auth::Client),
        "[ -~]{0,40}".prop_map(Auth::Garbage),
        Just(Auth::Twice),
        Just(Auth::Basic),
    ];
    let body = prop_oneof![
        2 => Just(Body::None),
        6 => (prop::sample::select(FIELD_NAMES), prop::option::of(value()))
            .prop_map(|(field, value)| Body::Mutated { field, value }),
        1 => Just(Body::DuplicatedKey),
        3 => value().prop_map(Body::Any),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Body::Bytes),
    ];
    let shaped = (
        prop::sample::select(&["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"][..]),
        0..routes,
        prop::collection::vec(param(), 2),
        query(),
        auth,
        prop::option::of(prop::sample::select(
            &[
                "application/json",
                "text/plain",
                "application/json; charset=utf-8",
            ][..],
        )),
        body,
    )
        .prop_map(
            |(method, route, params, query, auth, content_type, body)| Request::Shaped {
                method,
                route,
                params,
                query,
                auth,
                content_type,
                body,
            },
        );
    prop_oneof![
        20 => shaped,
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Request::Noise),
    ]
}

/// The bytes of one request (`Connection: close`, a consistent Content-Length).
fn render(request: &Request, routes: &[(String, String)], tokens: &Tokens) -> Vec<u8> {
    let Request::Shaped {
        method,
        route,
        params,
        query,
        auth,
        content_type,
        body,
    } = request
    else {
        let Request::Noise(bytes) = request else {
            unreachable!()
        };
        return bytes.clone();
    };
    let (route_method, pattern) = &routes[*route];
    let mut path = pattern.clone();
    for param in params {
        if let (Some(start), Some(end)) = (path.find('{'), path.find('}')) {
            path.replace_range(start..=end, param);
        }
    }
    path.push_str(query);
    let template = template(route_method, pattern);
    let body: Vec<u8> = match body {
        Body::None => Vec::new(),
        Body::Mutated { field, value } => {
            let mut object = match template {
                Value::Object(object) => object,
                _ => Map::new(),
            };
            match value {
                Some(value) => object.insert(field.to_string(), value.clone()),
                None => object.remove(*field),
            };
            serde_json::to_vec(&Value::Object(object)).unwrap()
        }
        Body::DuplicatedKey => {
            let text = serde_json::to_string(&template).unwrap();
            match text.strip_prefix('{').filter(|rest| rest.len() > 1) {
                Some(rest) => {
                    let first = rest.split(',').next().unwrap().trim_end_matches('}');
                    format!("{{{first},{rest}").into_bytes()
                }
                None => br#"{"a":1,"a":2}"#.to_vec(),
            }
        }
        Body::Any(value) => serde_json::to_vec(value).unwrap(),
        Body::Bytes(bytes) => bytes.clone(),
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
    let bearer = |token: &str| format!("Authorization: Bearer {token}\r\n");
    match auth {
        Auth::None => {}
        Auth::User => head.push_str(&bearer(&tokens.user)),
        Auth::Admin => head.push_str(&bearer(ADMIN)),
        Auth::Client => head.push_str(&bearer(&tokens.client)),
        Auth::Garbage(text) => head.push_str(&format!("Authorization: {text}\r\n")),
        Auth::Twice => {
            head.push_str(&bearer(ADMIN));
            head.push_str(&bearer(&tokens.user));
        }
        Auth::Basic => head.push_str("Authorization: Basic YWRtaW46YWRtaW4=\r\n"),
    }
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// Sends one request and reads until the server closes (every request says
/// `Connection: close`), so a HEAD answer's Content-Length never makes us wait for a body.
fn send(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Response> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(common::IO_TIMEOUT))?;
    stream.set_write_timeout(Some(common::IO_TIMEOUT))?;
    // The server may answer and close before reading everything (a 413, a bad request line).
    let _ = stream.write_all(bytes);
    let mut received = Vec::new();
    stream.read_to_end(&mut received)?;
    let end = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no complete response head"))?;
    let head = String::from_utf8_lossy(&received[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: received[end + 4..].to_vec(),
    })
}

fn assert_sound(request: &Request, bytes: &[u8], answer: std::io::Result<Response>) {
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned();
    match answer {
        Ok(response) => {
            assert!(
                response.status < 500,
                "{} for\n{shown}\n{}",
                response.status,
                response.text()
            );
            let is_head = shown.starts_with("HEAD ");
            if response.status >= 400 && !is_head && !response.body.is_empty() {
                let body: Value = serde_json::from_slice(&response.body).unwrap_or_else(|_| {
                    panic!("error body is not JSON for\n{shown}\n{}", response.text())
                });
                assert!(
                    body["error"]["code"].is_string(),
                    "error without a code for\n{shown}\n{}",
                    response.text()
                );
            }
        }
        // Noise may be dropped without an answer; a shaped request must be answered.
        Err(error) => assert!(
            matches!(request, Request::Noise(_)),
            "no answer ({error}) for\n{shown}"
        ),
    }
}

#[test]
fn no_request_crashes_the_server_or_gets_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--admin-token", ADMIN];
    args.extend(FAST_HASH);
    let server = Server::start(dir.path(), &args);
    server.wait_ready();
    // The market's first price (the simulated feed reads it at start-up): before it,
    // `GET /api/v1/price` and orders are a documented 503 `price_unavailable`, not a fault.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while common::request(server.addr, "GET", "/api/v1/price", None).status != 200 {
        assert!(std::time::Instant::now() < deadline, "no price");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let tokens = setup(&server);
    let config = switchyard_net::ServerConfig::for_tests(dir.path());
    let routes: Vec<(String, String)> = switchyard_net::routes::mounted(&config)
        .into_iter()
        .map(|(method, pattern)| (method.to_string(), pattern.to_string()))
        .collect();

    // The corpus first: requests kept because they once mattered.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&corpus).expect("tests/fuzz_corpus") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let bytes = String::from_utf8_lossy(&bytes)
            .replace("{USER}", &tokens.user)
            .replace("{CLIENT}", &tokens.client)
            .replace("{ADMIN}", ADMIN)
            .replace('\n', "\r\n")
            .replace("\r\r\n", "\r\n");
        let request = Request::Noise(Vec::new());
        assert_sound(
            &request,
            bytes.as_bytes(),
            send(server.addr, bytes.as_bytes()),
        );
        replayed += 1;
    }
    assert!(replayed > 0, "the corpus is empty");

    let mut runner = TestRunner::new(runner_config());
    let addr = server.addr;
    runner
        .run(&request(routes.len()), |request| {
            let bytes = render(&request, &routes, &tokens);
            assert_sound(&request, &bytes, send(addr, &bytes));
            Ok(())
        })
        .unwrap();

    // Still alive, and every invariant holds after the storm.
    check(&call(addr, "GET", "/healthz", None, None), 200, None);
    let checked = call(addr, "GET", "/api/v1/admin/social/check", Some(ADMIN), None);
    check(&checked, 200, None);
    assert_eq!(
        checked.json()["differences"],
        json!([]),
        "{}",
        checked.text()
    );
}

const CONFIG_KEYS: &[&str] = &[
    "durability",
    "durability_batch_ms",
    "auth.token_ttl_seconds",
    "auth.password_hash_memory_kib",
    "limits.max_body_bytes",
    "limits.max_posts_per_user",
    "limits.max_in_flight",
    "work.bucket_size",
    "work.lease_seconds",
    "market.price_source",
    "engine.shards",
    "engine.mailbox_depth_max",
    "engine.wal_segment_bytes_max",
    "engine.checkpoint_interval_ms",
    "server.worker_threads",
    "server.listen",
    "nonsense.key",
    "engine",
    "",
];

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1.5".to_string()),
        Just("nan".to_string()),
        "\"[ -~]{0,20}\"",
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        "[ -~]{0,20}",
    ]
}

#[test]
fn no_configuration_panics_the_parser_and_what_it_accepts_validates() {
    let file = prop::collection::vec(
        prop_oneof![
            4 => (prop::sample::select(CONFIG_KEYS), toml_value())
                .prop_map(|(key, value)| format!("{key} = {value}")),
            1 => "[ -~]{0,40}",
            1 => prop::sample::select(&["[engine]", "[auth]", "[[engine]]", "[work"][..])
                .prop_map(str::to_string),
        ],
        0..8,
    );
    let sets = prop::collection::vec(
        (prop::sample::select(CONFIG_KEYS), toml_value())
            .prop_map(|(key, value)| format!("{key}={value}")),
        0..4,
    );
    let mut runner = TestRunner::new(Config {
        cases: cases() * 4,
        failure_persistence: persistence(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/proptest-regressions/fuzz_config.txt"
        )),
        ..Config::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    runner
        .run(&(file, sets), |(lines, sets)| {
            std::fs::write(&path, lines.join("\n")).unwrap();
            let built = switchyard_net::ServerConfig::build(
                Some(&path),
                &sets,
                Default::default(),
                |_| None,
                &switchyard_net::domains::config_sections(),
            );
            match built {
                Ok(config) => prop_assert!(config.validate().is_ok()),
                Err(error) => prop_assert!(!error.to_string().is_empty()),
            }
            Ok(())
        })
        .unwrap();
}
