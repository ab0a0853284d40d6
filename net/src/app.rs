//! [`App`]: the state one running server shares between connections (configuration, router,
//! metrics, the engine once open, the draining flag) and the per-request pipeline
//! [`App::handle`]: route → admission (engine open, in-flight limit) → handler → metrics and one
//! `debug!` line.
//!
//! Invariants:
//! - The engine is set once, when it has finished opening; before that every API route answers
//!   503 `unavailable` with `Retry-After` and changes nothing.
//! - Every request is counted in the metrics exactly once, under its route pattern.
//! - An API request with more than one `Authorization` header is 400 `invalid_header` before
//!   any handler runs (which credential would count is ambiguous).
//! - A `HEAD` request runs its path's `GET` handler and gets that response's status and headers,
//!   `Content-Length` included, with no body.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH};
use hyper::{Method, Request};
use switchyard_engine::Engine;

use crate::adapters::Adapters;
use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::error::{ApiError, Response};
use crate::metrics::{HttpMetrics, UNMATCHED_ROUTE};
use crate::routes::{self, Ctx, Resolved, RouteKind, Router};
use crate::throttle::Throttle;

/// The throttles of the unauthenticated social routes (see [`crate::throttle`]).
#[derive(Debug)]
pub struct Throttles {
    /// Failed logins per e-mail (`auth.login_failures_per_minute`).
    pub login_by_email: Throttle,
    /// Failed logins per source address (`auth.login_failures_per_minute`).
    pub login_by_address: Throttle,
    /// Sign-up attempts per source address (`auth.signups_per_minute_per_source`).
    pub signup_by_address: Throttle,
}

impl Throttles {
    pub fn new(config: &crate::config::AuthConfig) -> Throttles {
        let keys_max = config.throttle_keys_max;
        Throttles {
            login_by_email: Throttle::new(
                config.login_failures_per_minute,
                keys_max,
                "failed logins for this e-mail",
            ),
            login_by_address: Throttle::new(
                config.login_failures_per_minute,
                keys_max,
                "failed logins from this address",
            ),
            signup_by_address: Throttle::new(
                config.signups_per_minute_per_source,
                keys_max,
                "sign-ups from this address",
            ),
        }
    }
}

/// The state shared by every connection of one server.
pub struct App {
    pub config: ServerConfig,
    pub metrics: HttpMetrics,
    /// Login tokens and the admin token.
    pub auth: Auth,
    /// The sign-up adapters (e-mail verification, enrichment).
    pub adapters: Adapters,
    /// Login and sign-up throttles.
    pub throttles: Throttles,
    router: Router,
    engine: OnceLock<Engine>,
    draining: AtomicBool,
    /// Round-robin over actor shards for new connections.
    next_shard: std::sync::atomic::AtomicUsize,
}

impl App {
    /// Builds the router for `config` and the metrics for its routes.
    pub fn new(config: ServerConfig, auth: Auth, adapters: Adapters) -> Arc<App> {
        let router = Router::new(routes::table(&config));
        let metrics = HttpMetrics::new(router.patterns());
        let throttles = Throttles::new(&config.auth);
        Arc::new(App {
            config,
            metrics,
            auth,
            adapters,
            throttles,
            router,
            engine: OnceLock::new(),
            draining: AtomicBool::new(false),
            next_shard: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The engine, once it has opened.
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.get()
    }

    /// Installs the opened engine; a second call is a bug and is ignored with an error log.
    pub fn set_engine(&self, engine: Engine) {
        if self.engine.set(engine).is_err() {
            tracing::error!("the engine was set twice; keeping the first");
        }
    }

    /// The shard the next connection is served on (round robin).
    pub fn next_shard(&self, shards: usize) -> usize {
        self.next_shard.fetch_add(1, Ordering::Relaxed) % shards.max(1)
    }

    /// True once shutdown has begun; `/readyz` then answers 503.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Handles one request. Never fails: every error becomes a JSON error response.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response {
        let started = Instant::now();
        let (head, body) = request.into_parts();
        let method = head.method.clone();
        let (index, response) = match self.router.resolve(&head.method, head.uri.path()) {
            Resolved::NotFound => (
                self.metrics.unmatched(),
                ApiError::not_found(format!("no route for {}", head.uri.path())).into_response(),
            ),
            Resolved::MethodNotAllowed { index, allow } => {
                (index, ApiError::method_not_allowed(allow).into_response())
            }
            Resolved::Found { route, params } => {
                let index = route.index;
                let kind = route.route.kind;
                let handler = route.route.handler;
                let authorizations = head.headers.get_all(AUTHORIZATION).iter().count();
                let admitted = match kind {
                    RouteKind::Service => Ok(None),
                    RouteKind::Api if authorizations > 1 => Err(ApiError::invalid_header(
                        "more than one Authorization header",
                    )),
                    RouteKind::Api if self.engine().is_none() => {
                        Err(ApiError::unavailable("the engine is recovering"))
                    }
                    RouteKind::Api => self
                        .metrics
                        .try_enter(self.config.limits.max_in_flight)
                        .map(Some)
                        .ok_or_else(|| ApiError::overloaded("too many requests in flight")),
                };
                let response = match admitted {
                    Err(error) => error.into_response(),
                    Ok(_slot) => {
                        let ctx = Ctx::new(self.clone(), head, body, params);
                        handler(ctx).await.unwrap_or_else(ApiError::into_response)
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
        self.metrics
            .record(index, &method, status, elapsed.as_secs_f64());
        tracing::debug!(
            %method,
            route = self.router.patterns().get(index).copied().unwrap_or(UNMATCHED_ROUTE),
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
