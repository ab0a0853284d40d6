//! The router and the request context handlers see.
//!
//! A route is `(method, pattern, kind, handler)`; patterns are literal segments and `{name}`
//! parameters (`/api/v1/posts/{id}/likes`). Each domain module exposes `fn routes() -> Vec<Route>`
//! and [`table`] concatenates them: adding a domain is one module plus one line in [`table`];
//! nothing else here changes.
//!
//! Resolution, per request: the routes whose pattern matches the path are the candidates. None →
//! 404 `not_found`. The first candidate (in table order) with the request's method handles it;
//! if none has the method → 405 `method_not_allowed` with `Allow` listing the candidates' methods.
//! Put a literal route (`/clients/me`) before a parameter route of the same shape
//! (`/clients/{id}`) so the literal wins.
//!
//! Invariants:
//! - [`RouteKind::Api`] routes run only once the engine is open (else 503 `unavailable`) and
//!   only within `limits.max_in_flight` (else 503 `overloaded`); [`RouteKind::Service`] routes
//!   always run, so health checks answer during recovery and overload.
//! - A handler gets path parameters already percent-decoded; [`Ctx::param_u64`] turns a
//!   non-number into 404, because `/counters/abc` names no resource.
//! - Authentication comes before validation: a handler establishes who calls ([`Ctx::user`],
//!   [`Ctx::viewer`], the admin check, or a work client's token) before it reads its path, query
//!   or body, so a bad credential is 401 whatever the rest of the request says.
//! - `HEAD` is answered for every `GET` route: the router resolves it to the `GET` route (and
//!   lists it in `Allow` wherever `GET` is), and `App::handle` drops the body.
//! - The table is checked when the router is built (patterns well formed, no duplicate
//!   method + pattern); a bad table is a programmer error and panics at start-up, caught by the
//!   unit test that builds it.

mod demo;
mod service;
mod social;
mod work;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::http::request::Parts;
use hyper::Method;
use switchyard_engine::Engine;

use crate::app::App;
use crate::auth::{self, Verified};
use crate::config::ServerConfig;
use crate::error::{ApiError, Response};
use crate::http::{self, Fields, Query};
use crate::metrics::RouteIndex;

/// What a handler returns: a response, or an error rendered as API.md's JSON error.
pub type HandlerResult = Result<Response, ApiError>;
/// A handler's future, boxed so routes of every domain fit one table.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'static>>;
/// A handler: write `async fn name(ctx: Ctx) -> HandlerResult` and register it with
/// `|ctx| Box::pin(name(ctx))`.
pub type Handler = fn(Ctx) -> HandlerFuture;

/// Whether a route needs the engine and counts against the in-flight limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `/healthz`, `/readyz`, `/metrics`, `/api/v1/openapi.json`: always answered.
    Service,
    /// Everything that reaches the engine.
    Api,
}

/// One entry of the routing table.
#[derive(Clone)]
pub struct Route {
    pub method: Method,
    pub pattern: &'static str,
    pub kind: RouteKind,
    pub handler: Handler,
}

impl Route {
    /// A route that needs the engine.
    pub fn api(method: Method, pattern: &'static str, handler: Handler) -> Route {
        Route {
            method,
            pattern,
            kind: RouteKind::Api,
            handler,
        }
    }

    /// A service route (health, readiness, metrics).
    pub fn service(method: Method, pattern: &'static str, handler: Handler) -> Route {
        Route {
            method,
            pattern,
            kind: RouteKind::Service,
            handler,
        }
    }
}

/// Cursors are the last key of the previous page in lowercase hex, prefixed so they are visibly
/// opaque: `c` and 1 to [`CURSOR_HEX_DIGITS_MAX`] digits. The OpenAPI document states exactly
/// this shape (`NextCursor`, the `cursor` parameter), so a schema-driven client can tell a
/// cursor from any string.
pub(crate) fn encode_cursor(next: Option<u64>) -> serde_json::Value {
    match next {
        Some(key) => serde_json::Value::String(format!("c{key:x}")),
        None => serde_json::Value::Null,
    }
}

/// Hex digits of the largest cursor (a u64).
pub(crate) const CURSOR_HEX_DIGITS_MAX: usize = 16;

/// The key a cursor of [`encode_cursor`]'s shape names; anything else is 400 `invalid_field`.
pub(crate) fn decode_cursor(cursor: Option<String>) -> Result<Option<u64>, ApiError> {
    cursor
        .map(|cursor| {
            cursor
                .strip_prefix('c')
                .filter(|hex| {
                    (1..=CURSOR_HEX_DIGITS_MAX).contains(&hex.len())
                        && hex
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                })
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    ApiError::invalid_field("cursor", "is not a cursor this list issued")
                })
        })
        .transpose()
}

/// API.md's list shape: `{"items": [...], "next_cursor": "..." | null}`.
pub(crate) fn page_json<T>(
    page: switchyard_engine::Page<T>,
    item: impl Fn(&T) -> serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "items": page.items.iter().map(item).collect::<Vec<_>>(),
        "next_cursor": encode_cursor(page.next),
    })
}

/// Every route the server serves with this configuration. Add a domain here.
pub fn table(config: &ServerConfig) -> Vec<Route> {
    let mut routes = Vec::new();
    routes.extend(service::routes());
    routes.extend(demo::routes());
    routes.extend(social::routes());
    routes.extend(work::routes());
    // Compatibility sets mount only when enabled, e.g.:
    // if config.compat.social { routes.extend(compat_social::routes()); }
    let _ = config;
    routes
}

/// Every `(method, pattern)` the router mounts with `config`, in table order. Read from the same
/// [`table`] the router is built from (never a second list), so the OpenAPI drift test
/// (`net/tests/openapi.rs`) compares the document with what is really served. Patterns use
/// `{name}` parameters, the syntax of OpenAPI path templates.
pub fn mounted(config: &ServerConfig) -> Vec<(Method, &'static str)> {
    table(config)
        .into_iter()
        .map(|route| (route.method, route.pattern))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

pub(crate) struct CompiledRoute {
    pub route: Route,
    /// Index of the pattern in the metrics (shared by routes with the same pattern).
    pub index: RouteIndex,
    segments: Vec<Segment>,
}

/// The outcome of routing one request.
pub(crate) enum Resolved<'a> {
    Found {
        route: &'a CompiledRoute,
        params: Params,
    },
    MethodNotAllowed {
        index: RouteIndex,
        allow: String,
    },
    NotFound,
}

/// Path parameters of the matched route, by name, percent-decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The routing table, compiled once at start-up.
pub struct Router {
    routes: Vec<CompiledRoute>,
    patterns: Vec<&'static str>,
}

impl Router {
    /// Compiles the table. Panics on a malformed pattern or a duplicate method + pattern: both
    /// are programmer errors in the table, caught by the unit test that builds it.
    pub fn new(routes: Vec<Route>) -> Router {
        let mut patterns: Vec<&'static str> = Vec::new();
        let mut compiled: Vec<CompiledRoute> = Vec::new();
        for route in routes {
            let segments = compile(route.pattern);
            assert!(
                !compiled
                    .iter()
                    .any(|other| other.route.pattern == route.pattern
                        && other.route.method == route.method),
                "duplicate route {} {}",
                route.method,
                route.pattern
            );
            let index = match patterns.iter().position(|p| *p == route.pattern) {
                Some(index) => index,
                None => {
                    patterns.push(route.pattern);
                    patterns.len() - 1
                }
            };
            compiled.push(CompiledRoute {
                route,
                index,
                segments,
            });
        }
        Router {
            routes: compiled,
            patterns,
        }
    }

    /// Distinct patterns, in [`RouteIndex`] order.
    pub fn patterns(&self) -> &[&'static str] {
        &self.patterns
    }

    /// Routes `method path`; `HEAD` goes to the `GET` route of the path.
    pub(crate) fn resolve(&self, method: &Method, path: &str) -> Resolved<'_> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let path_segments: Vec<&str> = path.split('/').collect();
        let mut first_match: Option<&CompiledRoute> = None;
        for candidate in &self.routes {
            if !matches(&candidate.segments, &path_segments) {
                continue;
            }
            if candidate.route.method == *method {
                return match extract(&candidate.segments, &path_segments) {
                    Some(params) => Resolved::Found {
                        route: candidate,
                        params,
                    },
                    // A parameter that does not decode names no resource.
                    None => Resolved::NotFound,
                };
            }
            first_match.get_or_insert(candidate);
        }
        let Some(first) = first_match else {
            return Resolved::NotFound;
        };
        let mut allow: Vec<&str> = Vec::new();
        for candidate in &self.routes {
            let method = candidate.route.method.as_str();
            if matches(&candidate.segments, &path_segments) && !allow.contains(&method) {
                allow.push(method);
                if candidate.route.method == Method::GET {
                    allow.push(Method::HEAD.as_str());
                }
            }
        }
        Resolved::MethodNotAllowed {
            index: first.index,
            allow: allow.join(", "),
        }
    }
}

fn compile(pattern: &'static str) -> Vec<Segment> {
    assert!(
        pattern.starts_with('/'),
        "route pattern {pattern} must start with /"
    );
    pattern
        .split('/')
        .enumerate()
        .map(|(position, segment)| {
            if let Some(name) = segment.strip_prefix('{') {
                let name = name
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("route pattern {pattern}: unclosed parameter"));
                assert!(
                    !name.is_empty() && !name.contains(['{', '}']),
                    "route pattern {pattern}: bad parameter"
                );
                Segment::Param(name)
            } else {
                assert!(
                    !segment.contains(['{', '}']),
                    "route pattern {pattern}: braces inside a segment"
                );
                assert!(
                    position == 0 || !segment.is_empty() || pattern.ends_with('/'),
                    "route pattern {pattern}: empty segment"
                );
                Segment::Literal(segment)
            }
        })
        .collect()
}

fn matches(segments: &[Segment], path: &[&str]) -> bool {
    segments.len() == path.len()
        && segments
            .iter()
            .zip(path)
            .all(|(segment, part)| match segment {
                Segment::Literal(literal) => literal == part,
                Segment::Param(_) => !part.is_empty(),
            })
}

fn extract(segments: &[Segment], path: &[&str]) -> Option<Params> {
    let mut params = Vec::new();
    for (segment, part) in segments.iter().zip(path) {
        if let Segment::Param(name) = segment {
            params.push((*name, http::percent_decode(part, false)?));
        }
    }
    Some(Params(params))
}

/// Who calls a route where a token is optional ([`Ctx::viewer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Anonymous,
    Admin,
    User(u64),
}

impl Viewer {
    /// Whether this caller may see the e-mail of user `user_id` (itself, or the admin).
    pub fn sees_email_of(self, user_id: u64) -> bool {
        match self {
            Viewer::Admin => true,
            Viewer::User(id) => id == user_id,
            Viewer::Anonymous => false,
        }
    }
}

/// Everything a handler may use: the server state, the request head, its body (read at most
/// once, within the limits) and the path parameters.
pub struct Ctx {
    pub app: Arc<App>,
    pub head: Parts,
    body: Option<Incoming>,
    params: Params,
}

impl Ctx {
    pub(crate) fn new(app: Arc<App>, head: Parts, body: Incoming, params: Params) -> Ctx {
        Ctx {
            app,
            head,
            body: Some(body),
            params,
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.app.config
    }

    /// The engine, or 503 `unavailable` while it is still recovering.
    pub fn engine(&self) -> Result<Engine, ApiError> {
        self.app
            .engine()
            .cloned()
            .ok_or_else(|| ApiError::unavailable("the engine is recovering"))
    }

    /// A path parameter as text. Asking for a name the pattern lacks is a bug in the handler.
    pub fn param(&self, name: &str) -> Result<&str, ApiError> {
        self.params.get(name).ok_or_else(|| {
            tracing::error!(
                name,
                path = self.head.uri.path(),
                "handler asked for a missing path parameter"
            );
            ApiError::internal()
        })
    }

    /// A path parameter that must be a u64 id; anything else is 404 (no such resource).
    pub fn param_u64(&self, name: &str) -> Result<u64, ApiError> {
        let text = self.param(name)?;
        text.parse::<u64>()
            .map_err(|_| ApiError::not_found(format!("no resource with {name} `{text}`")))
    }

    /// The query string, for `optional_*` accessors, `page()` and `finish()`.
    pub fn query(&self) -> Result<Query, ApiError> {
        Query::parse(self.head.uri.query())
    }

    /// The IP address of the connection's peer, when the server recorded it.
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.head
            .extensions
            .get::<crate::server::PeerAddr>()
            .map(|peer| peer.0.ip())
    }

    /// A request header as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name)?.to_str().ok()
    }

    /// The `Authorization` header when present; one that is not visible ASCII reads as `""`, so
    /// it is refused as a bad credential rather than taken for no credential. (Two of them were
    /// refused before routing, see `App::handle`.)
    pub fn authorization(&self) -> Option<&str> {
        let value = self.head.headers.get(AUTHORIZATION)?;
        Some(value.to_str().unwrap_or(""))
    }

    /// The user of `Authorization: Bearer <login token>`: 401 without one, with a bad one, or
    /// with one whose `sub` names no user. The first use of a token asks the engine for its
    /// user; later uses hit `Auth`'s verified-token cache (users are never deleted).
    pub async fn user(&self) -> Result<u64, ApiError> {
        let token = auth::bearer(self.authorization())?;
        match self.app.auth.verify(token)? {
            Verified::Known(user) => Ok(user),
            Verified::Unconfirmed { user, exp } => match self.engine()?.social().user(user).await {
                Ok(_) => {
                    self.app.auth.confirm(token, user, exp);
                    Ok(user)
                }
                Err(switchyard_engine::Error::NotFound(_)) => {
                    Err(ApiError::unauthenticated("the token's user does not exist"))
                }
                Err(error) => Err(error.into()),
            },
        }
    }

    /// Who calls a route where a token is optional: nobody (no `Authorization`), the admin, or
    /// a user. A credential that is present but not valid is 401, never "anonymous".
    pub async fn viewer(&self) -> Result<Viewer, ApiError> {
        match self.authorization() {
            None => Ok(Viewer::Anonymous),
            Some(_) if self.app.auth.is_admin(self.authorization()) => Ok(Viewer::Admin),
            Some(_) => self.user().await.map(Viewer::User),
        }
    }

    /// The whole body, within `limits.max_body_bytes` and `limits.body_read_timeout_ms`.
    /// A second call returns an empty body.
    pub async fn body(&mut self) -> Result<Bytes, ApiError> {
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        let limits = &self.app.config.limits;
        http::read_body(
            body,
            limits.max_body_bytes,
            std::time::Duration::from_millis(limits.body_read_timeout_ms),
        )
        .await
    }

    /// The body as a JSON object (`invalid_json` otherwise).
    pub async fn json(&mut self) -> Result<Fields, ApiError> {
        let body = self.body().await?;
        Fields::parse(&body)
    }

    /// The body as a JSON object, an empty body counting as `{}`.
    pub async fn json_or_empty(&mut self) -> Result<Fields, ApiError> {
        let body = self.body().await?;
        Fields::parse_or_empty(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(_: Ctx) -> HandlerFuture {
        Box::pin(async { Err(ApiError::internal()) })
    }

    fn router() -> Router {
        Router::new(vec![
            Route::api(Method::GET, "/api/v1/clients/me", noop),
            Route::api(Method::DELETE, "/api/v1/clients/me", noop),
            Route::api(Method::GET, "/api/v1/clients/{id}", noop),
            Route::api(Method::POST, "/api/v1/posts/{id}/likes", noop),
            Route::api(Method::DELETE, "/api/v1/posts/{id}/likes", noop),
            Route::api(Method::POST, "/api/v1/event/", noop),
        ])
    }

    /// `expected`: Ok(params) for found, Err(Some(allow)) for 405, Err(None) for 404.
    fn check(method: Method, path: &str, expected: Result<&[(&str, &str)], Option<&str>>) {
        let router = router();
        match (router.resolve(&method, path), expected) {
            (Resolved::Found { params, .. }, Ok(want)) => {
                for (name, value) in want {
                    assert_eq!(params.get(name), Some(*value), "{method} {path}");
                }
            }
            (Resolved::MethodNotAllowed { allow, .. }, Err(Some(want))) => {
                assert_eq!(allow, want, "{method} {path}")
            }
            (Resolved::NotFound, Err(None)) => {}
            (_, expected) => panic!("{method} {path}: expected {expected:?}"),
        }
    }

    #[test]
    fn resolves_methods_patterns_and_params() {
        check(Method::POST, "/api/v1/posts/7/likes", Ok(&[("id", "7")]));
        check(
            Method::DELETE,
            "/api/v1/posts/a%20b/likes",
            Ok(&[("id", "a b")]),
        );
        check(
            Method::GET,
            "/api/v1/posts/7/likes",
            Err(Some("POST, DELETE")),
        );
        check(Method::GET, "/api/v1/posts/7", Err(None));
        check(Method::GET, "/api/v1/posts//likes", Err(None));
        check(
            Method::GET,
            "/api/v1/posts/%zz/likes",
            Err(Some("POST, DELETE")),
        );
        check(Method::POST, "/api/v1/posts/%zz/likes", Err(None));
        check(Method::DELETE, "/api/v1/clients/me", Ok(&[]));
        check(Method::GET, "/api/v1/clients/9", Ok(&[("id", "9")]));
        check(Method::DELETE, "/api/v1/clients/9", Err(Some("GET, HEAD")));
        check(
            Method::PUT,
            "/api/v1/clients/me",
            Err(Some("GET, HEAD, DELETE")),
        );
        check(Method::POST, "/api/v1/event/", Ok(&[]));
        check(Method::HEAD, "/api/v1/clients/9", Ok(&[("id", "9")]));
        check(
            Method::HEAD,
            "/api/v1/posts/7/likes",
            Err(Some("POST, DELETE")),
        );
        check(
            Method::POST,
            "/api/v1/clients/me",
            Err(Some("GET, HEAD, DELETE")),
        );
        check(Method::POST, "/api/v1/event", Err(None));
        check(Method::GET, "/", Err(None));
    }

    #[test]
    fn cursors_have_one_shape() {
        for key in [0, 1, 255, u64::MAX] {
            let cursor = encode_cursor(Some(key));
            let text = cursor.as_str().expect("a string").to_string();
            assert_eq!(decode_cursor(Some(text)).expect("decodes"), Some(key));
        }
        assert_eq!(encode_cursor(None), serde_json::Value::Null);
        for bad in [
            "",
            "c",
            "cFF",
            "c+f",
            "c-1",
            "c00000000000000001",
            "cg",
            "x1",
            " c1",
        ] {
            let error = decode_cursor(Some(bad.into())).expect_err(bad);
            assert_eq!(error.field.as_deref(), Some("cursor"), "{bad}");
        }
    }

    #[test]
    fn the_server_table_is_valid() {
        let router = Router::new(table(&ServerConfig::default()));
        assert!(router.patterns().contains(&"/healthz"));
        assert!(router.patterns().contains(&"/api/v1/demo/counters/{id}"));
    }

    #[test]
    #[should_panic(expected = "duplicate route")]
    fn duplicate_routes_are_refused() {
        Router::new(vec![
            Route::api(Method::GET, "/a", noop),
            Route::api(Method::GET, "/a", noop),
        ]);
    }
}
