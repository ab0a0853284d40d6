//! The OpenAPI document (`GET /api/v1/openapi.json`, API.md's first paragraph) against the real
//! `switchyard` binary and the routing table:
//! - it is served (200, `application/json`, no auth) and is OpenAPI 3.1;
//! - drift: every `(method, pattern)` of `switchyard_net::routes::mounted` (the table the router
//!   is built from, with every `--compat` set on too) is in `paths`, and every operation in
//!   `paths` is a mounted route; every `{param}` of a path is declared as a path parameter;
//! - every `$ref` resolves; every error code the sources can send (`ApiError::new(status,
//!   "code"`, the engine's `Error::conflict("code"`, ...) is in the `ErrorCode` catalogue, every
//!   catalogue code occurs in the sources, and every response's `x-error-codes` are catalogued.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{request, Server};
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
        "mounted but not in net/src/openapi.json: {undocumented:?}\n\
         in net/src/openapi.json but not mounted: {unmounted:?}"
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
/// unprocessable}("code"` and `code: "code"`.
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
        .map(|entry| entry["const"].as_str().expect("const code").to_string())
        .collect();

    // Sources: the whole net crate and the engine domains whose errors reach HTTP.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let engine = manifest.join("../engine/src");
    let mut files = Vec::new();
    rust_sources(&manifest.join("src"), &mut files);
    rust_sources(&engine.join("social"), &mut files);
    rust_sources(&engine.join("work"), &mut files);
    files.push(engine.join("demo.rs"));
    let mut all_text = String::new();
    let mut found = BTreeSet::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        found.extend(codes_in(&text));
        all_text.push_str(&text);
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
        "codes in the sources but not in ErrorCode of net/src/openapi.json: {uncatalogued:?}"
    );
    let invented: Vec<_> = catalogue
        .iter()
        .filter(|code| !all_text.contains(&format!("\"{code}\"")))
        .collect();
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
