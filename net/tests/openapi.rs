//! The OpenAPI document (`GET /api/v1/openapi.json`, API.md's first paragraph) against the real
//! `switchyard` binary and the routing table:
//! - it is served (200, `application/json`, no auth) and is OpenAPI 3.1;
//! - drift: every `(method, pattern)` of `switchyard_net::routes::mounted` (the table the router
//!   is built from, with every `--compat` set on too) is in `paths`, and every operation in
//!   `paths` is a mounted route; every `{param}` of a path is declared as a path parameter;
//! - every `$ref` resolves; every error code the sources can send (`ApiError::new(status,
//!   "code"`, the engine's `Error::conflict("code"`, ...) is in the `ErrorCode` catalogue, every
//!   catalogue code occurs in the sources, and every response's `x-error-codes` are catalogued;
//! - the status walk: every documented operation is called with a grid of path parameters
//!   (existing, one's own, unknown, malformed), credentials (none, garbage, an unknown client
//!   token, two users, admin, two work clients, two `Authorization` headers), bodies (none,
//!   broken, duplicated keys, `{}`, a valid one, one with an unknown field) or queries, and
//!   `HEAD` for each `GET`; every status the server answers must be documented for that
//!   operation, and every error code listed in that response's `x-error-codes`. So a route
//!   that grows an undocumented answer fails here (`DELETE .../likes` on one's own post once
//!   answered an undocumented 403). The walk's server has every `--compat` set on, so the
//!   compatibility routes are walked too (their 404 when a set is off is documented and seen
//!   by `net/tests/compat_market.rs` and `net/tests/compat_dispatch.rs`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{
    call, call_with_headers, head, login, request, sign_up, start, Server, ADMIN, PASSWORD,
};
use serde_json::Value;
use switchyard_net::config::Compat;
use switchyard_net::ServerConfig;

/// The HTTP methods an OpenAPI path item may hold as operations.
const OPERATION_KEYS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Fetches the document from a freshly started server (before readiness: it is a service route).
fn served_document() -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let response = request(server.addr, "GET", "/api/v1/openapi.json", None);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "content type"
    );
    response.json()
}

#[test]
fn the_openapi_document_is_served_as_openapi_3_1() {
    let document = served_document();
    let version = document["openapi"]
        .as_str()
        .unwrap_or_else(|| panic!("no `openapi` string: {document}"));
    assert!(version.starts_with("3.1"), "openapi = {version}");
    assert!(document["info"]["title"].is_string());
    assert!(document["paths"].as_object().is_some_and(|p| !p.is_empty()));
}

/// `GET /docs` renders the document with no internet access: every script and stylesheet the
/// page names is a path on this server, each is served from the binary, and the page, the
/// stylesheet and the script name no other host (no CDN, no outside validator).
#[test]
fn docs_page_needs_nothing_from_outside_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let page = request(server.addr, "GET", "/docs", None);
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            let end = rest.find('"').expect("closing quote");
            assets.push(rest[..end].to_string());
        }
    }
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "the page names its script and stylesheet: {assets:?}"
    );
    assert!(
        html.contains("/api/v1/openapi.json"),
        "the page loads the served document"
    );
    assert!(html.contains("validatorUrl: null"), "no outside validator");
    for asset in &assets {
        assert!(
            asset.starts_with('/'),
            "{asset} is not a path on this server"
        );
        let response = request(server.addr, "GET", asset, None);
        assert_eq!(response.status, 200, "{asset}");
        assert!(
            response.body.len() > 1000,
            "{asset}: {} bytes",
            response.body.len()
        );
        let text = response.text();
        for host in ["unpkg.com", "cdn.jsdelivr", "cdnjs.", "fonts.googleapis"] {
            assert!(!text.contains(host), "{asset} names {host}");
        }
    }
    for host in ["http://", "https://"] {
        assert!(
            !html.contains(host),
            "the page names an outside address ({host})"
        );
    }
}

/// `(method, pattern)` pairs the router mounts, over the default configuration and one with every
/// compatibility set on (compat routes are documented whether or not a server mounts them).
fn mounted_routes() -> BTreeSet<(String, String)> {
    let all_compat = ServerConfig {
        compat: Compat {
            social: true,
            events: true,
            market: true,
            dispatch: true,
        },
        ..ServerConfig::default()
    };
    [ServerConfig::default(), all_compat]
        .iter()
        .flat_map(switchyard_net::routes::mounted)
        .map(|(method, pattern)| (method.as_str().to_ascii_lowercase(), pattern.to_string()))
        .collect()
}

fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("`paths` is an object");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        let mut operations = 0;
        for (key, _) in item {
            if OPERATION_KEYS.contains(&key.as_str()) {
                routes.insert((key.clone(), path.clone()));
                operations += 1;
            }
        }
        assert!(operations > 0, "{path} documents no operation");
    }
    routes
}

#[test]
fn the_document_and_the_router_agree_on_every_route() {
    let document = served_document();
    let mounted = mounted_routes();
    let documented = documented_routes(&document);
    // Guards against a comparison of two empty sets, or a table that lost a domain.
    for expected in [
        ("get", "/healthz"),
        ("get", "/api/v1/openapi.json"),
        ("post", "/api/v1/posts/{id}/likes"),
        ("post", "/api/v1/work/buckets/{id}/results"),
    ] {
        let expected = (expected.0.to_string(), expected.1.to_string());
        assert!(mounted.contains(&expected), "router lacks {expected:?}");
    }
    let undocumented: Vec<_> = mounted.difference(&documented).collect();
    let unmounted: Vec<_> = documented.difference(&mounted).collect();
    assert!(
        undocumented.is_empty() && unmounted.is_empty(),
        "mounted but not in the document: {undocumented:?}\n\
         in the document but not mounted: {unmounted:?}"
    );

    // Every `{param}` of a path template is a declared path parameter of each of its operations.
    for (method, path) in &documented {
        let operation = &document["paths"][path][method];
        let mut declared = BTreeSet::new();
        for parameters in [
            &document["paths"][path]["parameters"],
            &operation["parameters"],
        ] {
            for parameter in parameters.as_array().into_iter().flatten() {
                let parameter = resolve(&document, parameter);
                if parameter["in"] == "path" {
                    assert_eq!(parameter["required"], true, "{method} {path}");
                    declared.insert(parameter["name"].as_str().expect("name").to_string());
                }
            }
        }
        let in_template: BTreeSet<String> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        assert_eq!(declared, in_template, "path parameters of {method} {path}");
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{method} {path} has no responses"
        );
    }
}

/// Follows a local `$ref` (`#/components/...`), panicking when it does not resolve.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        None => value,
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {reference}"));
            document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} does not resolve"))
        }
    }
}

/// Calls `visit` on every JSON object in `value`, depth first.
fn walk<'a>(value: &'a Value, visit: &mut impl FnMut(&'a serde_json::Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            visit(map);
            map.values().for_each(|child| walk(child, visit));
        }
        Value::Array(items) => items.iter().for_each(|child| walk(child, visit)),
        _ => {}
    }
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The string literal at the start of `text` (after whitespace), if there is one.
fn leading_literal(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    rest.split_once('"').map(|(literal, _)| literal)
}

/// Error codes written as literals in Rust source: `ApiError::new(StatusCode::X, "code"`,
/// `ApiError::forbidden("code"`, the engine's `Error::{invalid, invalid_field, conflict, forbidden,
/// unprocessable, unavailable_now}("code"` and `code: "code"`.
fn codes_in(source: &str) -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let mut after = |needle: &str, accept: &dyn Fn(&str, &str) -> Option<String>| {
        for (at, _) in source.match_indices(needle) {
            if let Some(code) = accept(&source[..at], &source[at + needle.len()..]) {
                codes.insert(code);
            }
        }
    };
    after("ApiError::new(", &|_, rest| {
        let rest = rest.trim_start().strip_prefix("StatusCode::")?;
        let (_, rest) = rest.split_once(',')?;
        leading_literal(rest).map(str::to_string)
    });
    after("ApiError::forbidden(", &|_, rest| {
        leading_literal(rest).map(str::to_string)
    });
    for constructor in [
        "invalid(",
        "invalid_field(",
        "conflict(",
        "forbidden(",
        "unprocessable(",
        "unavailable_now(",
    ] {
        // The engine's `Error::x(code, ...)`; `ApiError::x(field, ...)` takes a field name.
        after(&format!("Error::{constructor}"), &|before, rest| {
            (!before.ends_with("Api")).then_some(())?;
            leading_literal(rest).map(str::to_string)
        });
    }
    after("code: \"", &|_, rest| {
        rest.split_once('"').map(|(code, _)| code.to_string())
    });
    codes
}

#[test]
fn every_error_code_is_catalogued_and_every_catalogued_code_exists() {
    let document = served_document();

    // Every $ref resolves.
    let mut references = 0;
    walk(&document, &mut |map| {
        if map.contains_key("$ref") {
            resolve(&document, &Value::Object(map.clone()));
            references += 1;
        }
    });
    assert!(references > 0, "no $ref at all");

    let catalogue: BTreeSet<String> = document["components"]["schemas"]["ErrorCode"]["oneOf"]
        .as_array()
        .expect("ErrorCode.oneOf")
        .iter()
        .map(|entry| entry["enum"][0].as_str().expect("a code").to_string())
        .collect();

    // Sources: the whole net crate and the whole engine (a new domain needs no edit here).
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_sources(&manifest.join("src"), &mut files);
    rust_sources(&manifest.join("../engine/src"), &mut files);
    // The WAL's own refusals (an empty or oversized record, its config) are programmer errors
    // the domains prevent; no request reaches them.
    let wal = manifest.join("../engine/src/wal");
    files.retain(|file| !file.starts_with(&wal));
    let mut found = BTreeSet::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        found.extend(codes_in(&text));
    }
    // The scan must see each kind of site, so a changed idiom cannot make it pass vacuously.
    for sentinel in [
        "not_found",          // ApiError::new in error.rs
        "invalid_query",      // ApiError::new in http.rs
        "forbidden",          // ApiError::forbidden in auth.rs
        "already_liked",      // Error::conflict in the engine
        "invalid_email",      // Error::invalid_field in the engine
        "item_not_in_bucket", // Error::unprocessable in the engine
        "unauthenticated",    // code: "..." in the engine
    ] {
        assert!(
            found.contains(sentinel),
            "the scan missed `{sentinel}`: {found:?}"
        );
    }
    let uncatalogued: Vec<_> = found.difference(&catalogue).collect();
    assert!(
        uncatalogued.is_empty(),
        "codes in the sources but not in ErrorCode of the document: {uncatalogued:?}"
    );
    // Every catalogued code is sent somewhere: found by the same scan (the document's own text,
    // which names every code, does not count).
    let invented: Vec<_> = catalogue.difference(&found).collect();
    assert!(
        invented.is_empty(),
        "ErrorCode lists codes no source sends: {invented:?}"
    );

    // Per-response code lists use catalogued codes only, and each catalogued code is listed by
    // at least one response, except the routing codes that apply to every path.
    let mut listed = BTreeSet::new();
    walk(&document, &mut |map| {
        if let Some(codes) = map.get("x-error-codes") {
            for code in codes.as_array().expect("x-error-codes is an array") {
                listed.insert(code.as_str().expect("a code string").to_string());
            }
        }
    });
    let unknown: Vec<_> = listed.difference(&catalogue).collect();
    assert!(
        unknown.is_empty(),
        "x-error-codes not in ErrorCode: {unknown:?}"
    );
    let unlisted: Vec<_> = catalogue
        .difference(&listed)
        .filter(|code| *code != "method_not_allowed")
        .collect();
    assert!(
        unlisted.is_empty(),
        "ErrorCode entries no response lists: {unlisted:?}"
    );
}

/// The operations of the document: `(method, path template, operation)`.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if OPERATION_KEYS.contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), operation.clone()));
            }
        }
    }
    out
}

/// What the walk's fixtures are: ids and credentials made before it starts.
struct Fixtures {
    admin: String,
    /// User A (`alice`) and user B (`bob`): tokens and ids.
    alice: (u64, String),
    bob: (u64, String),
    /// A post of each.
    alice_post: u64,
    bob_post: u64,
    /// A work client holding `bucket` (with `bucket_key` in it), and another client.
    owner_client: String,
    other_client: String,
    bucket: u64,
    bucket_key: String,
}

fn ok_json(response: common::Response, status: u16) -> Value {
    assert_eq!(response.status, status, "{}", response.text());
    response.json()
}

fn fixtures(addr: std::net::SocketAddr) -> Fixtures {
    let user = |email: &str| (sign_up(addr, email), login(addr, email));
    let alice = user("alice@example.com");
    let bob = user("bob@example.com");
    let post = |token: &str| {
        ok_json(
            call(
                addr,
                "POST",
                "/api/v1/posts",
                Some(token),
                Some(r#"{"text":"walk"}"#),
            ),
            201,
        )["id"]
            .as_u64()
            .expect("post id")
    };
    let alice_post = post(&alice.1);
    let bob_post = post(&bob.1);
    let client = |name: &str| {
        let body = format!(r#"{{"screen_name":"{name}","external_id":"walk-secret-of-{name}"}}"#);
        ok_json(
            call(addr, "POST", "/api/v1/work/clients", None, Some(&body)),
            201,
        )["token"]
            .as_str()
            .expect("client token")
            .to_string()
    };
    let owner_client = client("owner");
    let other_client = client("other");
    let items =
        r#"{"items":[{"key":"walk-1"},{"key":"walk-2"},{"key":"walk-3"},{"key":"walk-4"}]}"#;
    ok_json(
        call(addr, "POST", "/api/v1/work/items", Some(ADMIN), Some(items)),
        202,
    );
    let leased = ok_json(
        call(
            addr,
            "POST",
            "/api/v1/work/leases",
            Some(&owner_client),
            Some(r#"{"max_buckets":1}"#),
        ),
        200,
    );
    let bucket = &leased["buckets"][0];
    // Dispatch: a group, a contact in it, a program, an event type, and dispatch 1.
    for (path, body) in [
        ("/api/v1/groups", r#"{"name":"walk"}"#),
        (
            "/api/v1/contacts",
            r#"{"name":"walker","email":"walker@example.com","group_ids":[1]}"#,
        ),
        ("/api/v1/programs", r#"{"name":"walk","message":"hello"}"#),
        (
            "/api/v1/event-types",
            r#"{"name":"walk","group_ids":[1],"channels":["email"]}"#,
        ),
        (
            "/api/v1/dispatches",
            r#"{"program_id":1,"event_type_id":1,"start_time":"2020-01-01T00:00:00Z"}"#,
        ),
    ] {
        ok_json(call(addr, "POST", path, Some(ADMIN), Some(body)), 201);
    }
    Fixtures {
        admin: ADMIN.to_string(),
        alice,
        bob,
        alice_post,
        bob_post,
        owner_client,
        other_client,
        bucket: bucket["id"].as_u64().expect("bucket id"),
        bucket_key: bucket["items"][0].as_str().expect("a key").to_string(),
    }
}

/// Values for the path template's parameters: existing ones, one's own, unknown, malformed.
fn path_variants(template: &str, fixtures: &Fixtures) -> Vec<String> {
    let values: Vec<String> = if template.starts_with("/api/v1/posts/{id}") {
        vec![
            fixtures.alice_post.to_string(),
            fixtures.bob_post.to_string(),
            "999999".into(),
            "abc".into(),
        ]
    } else if template.starts_with("/api/v1/users/{id}") {
        vec![fixtures.alice.0.to_string(), "999999".into(), "abc".into()]
    } else if template.starts_with("/api/v1/work/buckets/{id}") {
        vec![fixtures.bucket.to_string(), "999999".into(), "abc".into()]
    } else if template.starts_with("/api/v1/work/items/{key}") {
        vec![
            fixtures.bucket_key.clone(),
            "walk-4".into(),
            "missing".into(),
            "%01".into(),
        ]
    } else if template.starts_with("/api/v1/dispatches/{id}") {
        vec!["1".into(), "999999".into(), "abc".into()]
    } else if template.starts_with("/api/v1/demo/counters/{id}") {
        vec!["1".into(), "abc".into()]
    } else {
        assert!(!template.contains('{'), "no variants for {template}");
        return vec![template.to_string()];
    };
    let name_start = template.find('{').expect("a parameter");
    let name_end = template.find('}').expect("a parameter");
    values
        .into_iter()
        .map(|value| {
            format!(
                "{}{value}{}",
                &template[..name_start],
                &template[name_end + 1..]
            )
        })
        .collect()
}

/// Credential variants: each a list of `Authorization` header values.
fn credential_variants(fixtures: &Fixtures) -> Vec<Vec<String>> {
    let bearer = |token: &str| format!("Bearer {token}");
    vec![
        vec![],
        vec!["Bearer garbage".into()],
        vec![bearer(&format!("swc_{}", "0".repeat(64)))],
        vec![bearer(&fixtures.alice.1)],
        vec![bearer(&fixtures.bob.1)],
        vec![bearer(&fixtures.admin)],
        vec![bearer(&fixtures.owner_client)],
        vec![bearer(&fixtures.other_client)],
        vec![bearer(&fixtures.alice.1), bearer(&fixtures.admin)],
    ]
}

/// A valid body for each operation that takes one (`None`: no body); `counter` keeps the ones
/// that create something unique.
fn valid_body(operation_id: &str, fixtures: &Fixtures, counter: usize) -> Option<String> {
    Some(match operation_id {
        "addToCounter" => r#"{"by": 1}"#.to_string(),
        "signUp" => {
            format!(r#"{{"email":"walker{counter}@example.com","password":"{PASSWORD}"}}"#)
        }
        "login" => format!(r#"{{"email":"alice@example.com","password":"{PASSWORD}"}}"#),
        "createPost" => r#"{"text":"walking"}"#.to_string(),
        "likePost" | "unlikePost" | "rerunWorkItem" | "heartbeat" => "{}".to_string(),
        "addWorkItems" => format!(r#"{{"items":[{{"key":"walk-new-{counter}"}}]}}"#),
        "registerWorkClient" => {
            format!(r#"{{"screen_name":"walker","external_id":"walk-secret-new-{counter}"}}"#)
        }
        "leaseBuckets" => r#"{"max_buckets": 1}"#.to_string(),
        "placeOrder" => r#"{"currency":"eur","amount":"69.00"}"#.to_string(),
        "compatPlaceOrder" => r#"{"currency":"eur","amount":69}"#.to_string(),
        "addHealthReport" => {
            r#"{"level":"info","service":"walk","status":"alive","data":""}"#.to_string()
        }
        "addGroup" => r#"{"name":"walking"}"#.to_string(),
        "addProgram" => r#"{"name":"walking","message":"hi"}"#.to_string(),
        "addEventType" => {
            r#"{"name":"walking","group_ids":[1],"channels":["sms","email"]}"#.to_string()
        }
        "addContact" => {
            r#"{"name":"walking","phone":"555-555-5555","group_ids":[1],"user_id":1}"#.to_string()
        }
        "createDispatch" => {
            r#"{"program_id":1,"event_type_id":1,"start_time":"2100-01-01T00:00:00Z"}"#.to_string()
        }
        "compatDispatch" => {
            r#"{"start_time":"08/27/2019 21:04","program_id":1,"event_type_id":"1"}"#.to_string()
        }
        "reportResults" => format!(
            r#"{{"results":[{{"key":"{}","outcome":"yes"}}]}}"#,
            fixtures.bucket_key
        ),
        _ => return None,
    })
}

/// Further valid bodies that reach other answers: a report of a key outside the bucket (422).
fn other_valid_bodies(operation_id: &str) -> Vec<String> {
    match operation_id {
        "placeOrder" => vec![
            r#"{"currency":"JPY","amount":"1"}"#.to_string(),
            r#"{"currency":"GBP","amount":"0"}"#.to_string(),
            r#"{"currency":"USD","amount":69}"#.to_string(),
            r#"{"currency":"USD","amount":"999999999.99"}"#.to_string(),
        ],
        "compatPlaceOrder" => vec![
            r#"{"currency":"GPB","amount":1}"#.to_string(),
            r#"{"currency":"gbp","amount":0}"#.to_string(),
            r#"{"currency":"usd","amount":"69.50"}"#.to_string(),
            r#"{"currency":"usd","amount":69.5}"#.to_string(),
            r#"{"currency":"usd","amount":1e30}"#.to_string(),
        ],
        "reportResults" => {
            vec![r#"{"results":[{"key":"walk-not-in-bucket","outcome":"no"}]}"#.to_string()]
        }
        "addContact" => vec![r#"{"name":"walking","group_ids":[99]}"#.to_string()],
        "createDispatch" => vec![
            r#"{"program_id":9,"event_type_id":1,"start_time":"2100-01-01T00:00:00Z"}"#
                .to_string(),
            r#"{"program_id":1,"event_type_id":1,"start_time":"2020-01-01T00:00:00Z","condition":{"signal":"btc_eur","op":"<","value":"1"}}"#
                .to_string(),
        ],
        "compatDispatch" => vec![
            r#"{"start_time":"08/27/2019 21:04","program_id":"9","event_type_id":1}"#.to_string(),
            r#"{"start_time":"tomorrow","program_id":1,"event_type_id":1}"#.to_string(),
        ],
        _ => Vec::new(),
    }
}

/// Body variants: none, broken, not an object, a duplicated key, `{}`, valid, valid plus an
/// unknown field.
fn body_variants(valid: &str) -> Vec<Option<String>> {
    let duplicated = match valid.strip_prefix('{').filter(|rest| rest.len() > 1) {
        Some(rest) => format!(r#"{{"dup": 1, "dup": 2, {rest}"#),
        None => r#"{"dup": 1, "dup": 2}"#.to_string(),
    };
    let with_unknown = match valid.strip_prefix('{').filter(|rest| rest.len() > 1) {
        Some(rest) => format!(r#"{{"colour": "red", {rest}"#),
        None => r#"{"colour": "red"}"#.to_string(),
    };
    vec![
        None,
        Some("{".into()),
        Some("[]".into()),
        Some(duplicated),
        Some("{}".into()),
        Some(valid.to_string()),
        Some(with_unknown),
    ]
}

/// The documented response of `operation` for `status` (following a `$ref`).
fn documented<'a>(document: &'a Value, operation: &'a Value, status: u16) -> Option<&'a Value> {
    operation["responses"]
        .get(status.to_string())
        .map(|response| resolve(document, response))
}

#[test]
fn every_status_the_server_sends_is_documented_for_its_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let every_compat_set = Compat::NAMES.join(",");
    let server = start(dir.path(), &["--compat", &every_compat_set]);
    let addr = server.addr;
    let document = request(addr, "GET", "/api/v1/openapi.json", None).json();
    let fixtures = fixtures(addr);
    let credentials = credential_variants(&fixtures);

    let mut undocumented = Vec::new();
    // (operation id, status, code) seen, to check below that the walk reached the answers it
    // is meant to reach.
    let mut seen: BTreeSet<(String, u16, String)> = BTreeSet::new();
    let mut requests = 0usize;
    let mut counter = 0usize;
    let mut check = |method: &str,
                     path: &str,
                     operation: &Value,
                     response: &common::Response,
                     undocumented: &mut Vec<String>| {
        let id = operation["operationId"].as_str().unwrap_or("?").to_string();
        // The `Error` envelope's code; a compatibility route's own error bodies (the
        // original's strings, FastAPI's `detail`) have none, and `contract::check` has already
        // held them to their documented schema.
        let code = if response.status >= 400 && method != "HEAD" {
            let body = response.json();
            match body.get("error") {
                Some(error) => error["code"].as_str().unwrap_or("<no code>").to_string(),
                None => String::new(),
            }
        } else {
            String::new()
        };
        match documented(&document, operation, response.status) {
            None => undocumented.push(format!(
                "{method} {path} ({id}) -> {} {code}",
                response.status
            )),
            Some(described) => {
                if let Some(codes) = described["x-error-codes"].as_array() {
                    if !code.is_empty() && !codes.iter().any(|listed| listed == code.as_str()) {
                        undocumented.push(format!(
                            "{method} {path} ({id}) -> {} `{code}` not in its x-error-codes",
                            response.status
                        ));
                    }
                }
            }
        }
        seen.insert((id, response.status, code));
    };

    // The client's own unregistration runs last: it revokes the token the others use.
    let mut walk = operations(&document);
    walk.sort_by_key(|(_, _, operation)| operation["operationId"] == "unregisterWorkClient");
    for (method, template, operation) in &walk {
        let method = method.to_ascii_uppercase();
        let id = operation["operationId"].as_str().unwrap_or_default();
        let takes_body =
            operation.get("requestBody").is_some() || matches!(method.as_str(), "POST" | "DELETE");
        for path in path_variants(template, &fixtures) {
            for authorization in &credentials {
                let headers: Vec<(&str, &str)> = authorization
                    .iter()
                    .map(|value| ("Authorization", value.as_str()))
                    .collect();
                if method == "GET" {
                    for query in ["", "?limit=0", "?limit=2", "?cursor=zz", "?bogus=1"] {
                        let target = format!("{path}{query}");
                        let response = call_with_headers(addr, "GET", &target, &headers, None);
                        check("GET", &target, operation, &response, &mut undocumented);
                        let response = head(addr, &target, &headers);
                        assert!(response.body.is_empty(), "HEAD {target} sent a body");
                        check("HEAD", &target, operation, &response, &mut undocumented);
                        requests += 2;
                    }
                    continue;
                }
                let bodies = if takes_body {
                    counter += 1;
                    let valid = valid_body(id, &fixtures, counter).unwrap_or_else(|| "{}".into());
                    let mut bodies = body_variants(&valid);
                    bodies.extend(other_valid_bodies(id).into_iter().map(Some));
                    bodies
                } else {
                    vec![None]
                };
                for body in bodies {
                    let response =
                        call_with_headers(addr, &method, &path, &headers, body.as_deref());
                    check(&method, &path, operation, &response, &mut undocumented);
                    requests += 1;
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "{} of {requests} answers are not documented in the document:\n{}",
        undocumented.len(),
        undocumented.join("\n")
    );

    // The walk must reach what it is for, or it proves nothing.
    let reached = |id: &str, status: u16, code: &str| {
        seen.contains(&(id.to_string(), status, code.to_string()))
    };
    for (id, status, code) in [
        ("unlikePost", 409, "not_liked"),
        ("likePost", 403, "own_post"),
        ("likePost", 201, ""),
        ("reportResults", 422, "item_not_in_bucket"),
        ("reportResults", 200, ""),
        ("reportResults", 403, "not_owner"),
        ("listUsers", 401, "unauthenticated"),
        ("getUser", 200, ""),
        ("leaseBuckets", 401, "unauthenticated"),
        ("createPost", 400, "invalid_header"),
        ("createPost", 400, "invalid_json"),
        ("createPost", 400, "unknown_field"),
        ("signUp", 201, ""),
        ("unregisterWorkClient", 204, ""),
        ("rerunWorkItem", 409, "not_done"),
        ("compatPlaceOrder", 201, ""),
        ("compatPlaceOrder", 406, ""),
        ("compatPlaceOrder", 422, ""),
        ("compatPlaceOrder", 400, "invalid_header"),
        ("compatListOrders", 200, ""),
        ("compatListOrders", 422, ""),
        ("compatPlaceOrderSlash", 307, ""),
        ("compatListOrdersSlash", 307, ""),
        ("addContact", 201, ""),
        ("addContact", 403, "forbidden"),
        ("addContact", 404, "not_found"),
        ("createDispatch", 201, ""),
        ("createDispatch", 404, "not_found"),
        ("getDispatch", 200, ""),
        ("getDispatch", 404, "not_found"),
        ("getDispatchLog", 200, ""),
        ("listNotifications", 200, ""),
        ("compatDispatch", 201, ""),
        ("compatDispatch", 404, "not_found"),
        ("compatDispatch", 400, "invalid_field"),
    ] {
        assert!(
            reached(id, status, code),
            "the walk never saw {id} -> {status} {code}"
        );
    }
    let statuses: BTreeMap<u16, usize> = seen.iter().fold(BTreeMap::new(), |mut map, entry| {
        *map.entry(entry.1).or_default() += 1;
        map
    });
    for status in [200, 201, 202, 204, 400, 401, 403, 404, 409, 422] {
        assert!(
            statuses.contains_key(&status),
            "no {status} at all: {statuses:?}"
        );
    }
}
