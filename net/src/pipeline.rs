//! [`Pipeline`]: the per-request path, route → admission (engine open, in-flight limit) →
//! handler → metrics and one `debug!` line, over the shared [`App`] and the [`Router`] built
//! from the route table.
//!
//! Invariants:
//! - Every request is counted in the metrics exactly once, under its route pattern.
//! - An API request with more than one `Authorization` header is 400 `invalid_header` before
//!   any handler runs (which credential would count is ambiguous).
//! - A `HEAD` request runs its path's `GET` handler and gets that response's status and headers,
//!   `Content-Length` included, with no body.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH};
use hyper::{Method, Request};

use crate::adapters::Adapters;
use crate::app::App;
use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::ctx::Ctx;
use crate::error::{ApiError, Response};
use crate::metrics::HttpMetrics;
use crate::router::{Resolved, RouteKind, Router};
use crate::routes;

/// The server's request path: the shared state and the router.
pub struct Pipeline {
    pub app: Arc<App>,
    router: Router,
}

impl Pipeline {
    /// Builds the router for `config`, the metrics for its routes and the OpenAPI document.
    pub fn new(config: ServerConfig, auth: Auth, adapters: Adapters) -> Arc<Pipeline> {
        let router = Router::new(routes::table(&config));
        let metrics = HttpMetrics::new(router.patterns());
        // Invariant: a JSON value serializes.
        let document = serde_json::to_vec(&routes::document()).expect("the document serializes");
        let app = App::new(config, auth, adapters, metrics, Bytes::from(document));
        Arc::new(Pipeline {
            app: Arc::new(app),
            router,
        })
    }

    /// Handles one request. Never fails: every error becomes a JSON error response.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response {
        let started = Instant::now();
        let (head, body) = request.into_parts();
        let method = head.method.clone();
        let app = &self.app;
        let (index, response) = match self.router.resolve(&head.method, head.uri.path()) {
            Resolved::NotFound => (
                app.metrics.unmatched(),
                ApiError::not_found(format!("no route for {}", head.uri.path())).into_response(),
            ),
            Resolved::MethodNotAllowed { index, allow } => (
                index,
                ApiError::method_not_allowed(allow.to_string()).into_response(),
            ),
            Resolved::Found {
                route,
                index,
                params,
            } => {
                let authorizations = head.headers.get_all(AUTHORIZATION).iter().count();
                let admitted = match route.kind {
                    RouteKind::Service => Ok(None),
                    RouteKind::Api if authorizations > 1 => Err(ApiError::invalid_header(
                        "more than one Authorization header",
                    )),
                    RouteKind::Api if app.engine().is_none() => {
                        Err(ApiError::unavailable("the engine is recovering"))
                    }
                    RouteKind::Api => app
                        .metrics
                        .try_enter(app.config.limits.max_in_flight)
                        .map(Some)
                        .ok_or_else(|| ApiError::overloaded("too many requests in flight")),
                };
                let response = match admitted {
                    Err(error) => error.into_response(),
                    Ok(_slot) => {
                        let ctx = Ctx::new(app.clone(), head, body, params);
                        (route.handler)(ctx)
                            .await
                            .unwrap_or_else(ApiError::into_response)
                    }
                };
                (index, response)
            }
        };
        let response = if method == Method::HEAD {
            without_body(response).await
        } else {
            response
        };
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        app.metrics
            .record(index, &method, status, elapsed.as_secs_f64());
        tracing::debug!(
            %method,
            route = app.metrics.route(index),
            status,
            micros = elapsed.as_micros() as u64,
            "request"
        );
        response
    }
}

/// The response to a `HEAD`: the `GET` response's status and headers, its `Content-Length`
/// stated, no body.
async fn without_body(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let length = match body.size_hint().exact() {
        Some(length) => length,
        // Our bodies are `Full`, whose size is exact; collecting is the fallback.
        None => body
            .collect()
            .await
            .map_or(0, |collected| collected.to_bytes().len() as u64),
    };
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(length));
    Response::from_parts(parts, Full::new(Bytes::new()))
}
