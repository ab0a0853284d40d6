//! The router: [`Route`] (method, pattern, kind, handler and its OpenAPI operation) and
//! [`Router`], which resolves a request to a route with `matchit` (the radix-tree matcher axum
//! uses).
//!
//! Patterns are literal segments and `{name}` parameters (`/api/v1/posts/{id}/likes`), the
//! syntax of OpenAPI path templates. Resolution, per request: the pattern that matches the path
//! (a literal segment wins over a parameter: `/clients/me` before `/clients/{id}`), then the
//! route of that pattern with the request's method. No pattern → 404 `not_found`; a pattern
//! without the method → 405 `method_not_allowed` with `Allow` listing the pattern's methods.
//!
//! Invariants:
//! - Every route carries its OpenAPI operation (`doc`), so a route cannot be mounted
//!   undocumented; the served document is made from the same routes (`crate::routes`).
//! - [`RouteKind::Api`] routes run only once the engine is open (else 503 `unavailable`) and
//!   only within `limits.max_in_flight` (else 503 `overloaded`); [`RouteKind::Service`] routes
//!   always run, so health checks answer during recovery and overload.
//! - `HEAD` is answered for every `GET` route: the router resolves it to the `GET` route (and
//!   lists it in `Allow` wherever `GET` is); the pipeline drops the body.
//! - Path parameters reach handlers percent-decoded; one that does not decode names no resource
//!   (404).
//! - The table is checked when the router is built (patterns well formed and not in conflict,
//!   no duplicate method + pattern); a bad table is a programmer error and panics at start-up,
//!   caught by the unit test that builds the server's table.

use std::future::Future;
use std::pin::Pin;

use hyper::Method;

use crate::ctx::{Ctx, Params};
use crate::error::{ApiError, Response};
use crate::http;
use crate::metrics::RouteIndex;
use crate::openapi::Op;

/// What a handler returns: a response, or an error rendered as API.md's JSON error.
pub type HandlerResult = Result<Response, ApiError>;
/// A handler's future, boxed so routes of every domain fit one table.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'static>>;
/// A handler: write `async fn name(ctx: Ctx) -> HandlerResult` and register it with
/// `|ctx| Box::pin(name(ctx))`.
pub type Handler = fn(Ctx) -> HandlerFuture;
/// A route's OpenAPI operation, made when the document is built.
pub type Doc = fn() -> Op;

/// Whether a route needs the engine and counts against the in-flight limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `/healthz`, `/readyz`, `/metrics`, `/api/v1/openapi.json`, `/docs`: always answered.
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
    /// The route's OpenAPI operation.
    pub doc: Doc,
}

impl Route {
    /// A route that needs the engine.
    pub fn api(method: Method, pattern: &'static str, handler: Handler, doc: Doc) -> Route {
        Route {
            method,
            pattern,
            kind: RouteKind::Api,
            handler,
            doc,
        }
    }

    /// A service route (health, readiness, metrics, the document).
    pub fn service(method: Method, pattern: &'static str, handler: Handler, doc: Doc) -> Route {
        Route {
            method,
            pattern,
            kind: RouteKind::Service,
            handler,
            doc,
        }
    }
}

/// One pattern of the tree: its metrics index, its routes by method, its `Allow` value, its
/// parameter names in order.
struct Pattern {
    index: RouteIndex,
    names: Vec<&'static str>,
    /// (method, index into `Router::routes`).
    methods: Vec<(Method, usize)>,
    allow: String,
}

/// The outcome of routing one request.
pub enum Resolved<'a> {
    Found {
        route: &'a Route,
        index: RouteIndex,
        params: Params,
    },
    MethodNotAllowed {
        index: RouteIndex,
        allow: &'a str,
    },
    NotFound,
}

/// The routing table, compiled once at start-up.
pub struct Router {
    routes: Vec<Route>,
    tree: matchit::Router<Pattern>,
    patterns: Vec<&'static str>,
}

impl Router {
    /// Compiles the table. Panics on a malformed or conflicting pattern or a duplicate method +
    /// pattern: programmer errors in the table, caught by the unit test that builds it.
    pub fn new(routes: Vec<Route>) -> Router {
        let mut patterns: Vec<&'static str> = Vec::new();
        let mut grouped: Vec<Pattern> = Vec::new();
        for (position, route) in routes.iter().enumerate() {
            assert!(
                route.pattern.starts_with('/'),
                "route pattern {} must start with /",
                route.pattern
            );
            let index = match patterns.iter().position(|p| *p == route.pattern) {
                Some(index) => index,
                None => {
                    patterns.push(route.pattern);
                    grouped.push(Pattern {
                        index: patterns.len() - 1,
                        names: parameter_names(route.pattern),
                        methods: Vec::new(),
                        allow: String::new(),
                    });
                    patterns.len() - 1
                }
            };
            let pattern = &mut grouped[index];
            assert!(
                !pattern.methods.iter().any(|(m, _)| *m == route.method),
                "duplicate route {} {}",
                route.method,
                route.pattern
            );
            pattern.methods.push((route.method.clone(), position));
        }
        let mut tree = matchit::Router::new();
        for (index, mut pattern) in grouped.into_iter().enumerate() {
            let mut allow: Vec<&str> = Vec::new();
            for (method, _) in &pattern.methods {
                allow.push(method.as_str());
                if *method == Method::GET {
                    allow.push(Method::HEAD.as_str());
                }
            }
            pattern.allow = allow.join(", ");
            if let Err(error) = tree.insert(patterns[index], pattern) {
                panic!("route pattern {}: {error}", patterns[index]);
            }
        }
        Router {
            routes,
            tree,
            patterns,
        }
    }

    /// Distinct patterns, in [`RouteIndex`] order.
    pub fn patterns(&self) -> &[&'static str] {
        &self.patterns
    }

    /// Routes `method path`; `HEAD` goes to the `GET` route of the path.
    pub fn resolve(&self, method: &Method, path: &str) -> Resolved<'_> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let Ok(matched) = self.tree.at(path) else {
            return Resolved::NotFound;
        };
        let pattern = matched.value;
        let Some(&(_, position)) = pattern.methods.iter().find(|(m, _)| m == method) else {
            return Resolved::MethodNotAllowed {
                index: pattern.index,
                allow: &pattern.allow,
            };
        };
        let mut params = Vec::with_capacity(matched.params.len());
        let route = &self.routes[position];
        // matchit yields the parameters in pattern order, the order of `names`.
        for ((_, raw), name) in matched.params.iter().zip(&pattern.names) {
            let Some(value) = http::percent_decode(raw, false) else {
                // A parameter that does not decode names no resource.
                return Resolved::NotFound;
            };
            params.push((*name, value));
        }
        Resolved::Found {
            route,
            index: pattern.index,
            params: Params::new(params),
        }
    }
}

/// The `{name}` parameters of `pattern`, in order.
fn parameter_names(pattern: &'static str) -> Vec<&'static str> {
    pattern
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(_: Ctx) -> HandlerFuture {
        Box::pin(async { Err(ApiError::internal()) })
    }

    fn undocumented() -> Op {
        Op::new("test", "test")
    }

    fn route(method: Method, pattern: &'static str) -> Route {
        Route::api(method, pattern, noop, undocumented)
    }

    fn router() -> Router {
        Router::new(vec![
            route(Method::GET, "/api/v1/clients/me"),
            route(Method::DELETE, "/api/v1/clients/me"),
            route(Method::GET, "/api/v1/clients/{id}"),
            route(Method::POST, "/api/v1/posts/{id}/likes"),
            route(Method::DELETE, "/api/v1/posts/{id}/likes"),
            route(Method::POST, "/api/v1/event/"),
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
        check(Method::GET, "/api/v1/clients/9/x", Err(None));
        let router = Router::new(vec![route(Method::GET, "/a/{first}/b/{second}")]);
        let Resolved::Found { params, .. } = router.resolve(&Method::GET, "/a/1/b/2") else {
            panic!("no match");
        };
        assert_eq!(
            (params.get("first"), params.get("second")),
            (Some("1"), Some("2"))
        );
    }

    #[test]
    #[should_panic(expected = "duplicate route")]
    fn duplicate_routes_are_refused() {
        Router::new(vec![route(Method::GET, "/a"), route(Method::GET, "/a")]);
    }

    #[test]
    #[should_panic(expected = "route pattern")]
    fn conflicting_patterns_are_refused() {
        Router::new(vec![
            route(Method::GET, "/a/{x}"),
            route(Method::GET, "/a/{y}"),
        ]);
    }
}
