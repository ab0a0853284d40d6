//! [`App`]: the state one running server shares between connections (configuration, router,
//! metrics, the engine once open, the draining flag) and the per-request pipeline
//! [`App::handle`]: route → admission (engine open, in-flight limit) → handler → metrics and one
//! `debug!` line.
//!
//! Invariants:
//! - The engine is set once, when it has finished opening; before that every API route answers
//!   503 `unavailable` with `Retry-After` and changes nothing.
//! - Every request is counted in the metrics exactly once, under its route pattern.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::Request;
use switchyard_engine::Engine;

use crate::adapters::Adapters;
use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::error::{ApiError, Response};
use crate::metrics::{HttpMetrics, UNMATCHED_ROUTE};
use crate::routes::{self, Ctx, Resolved, RouteKind, Router};

/// The state shared by every connection of one server.
pub struct App {
    pub config: ServerConfig,
    pub metrics: HttpMetrics,
    /// Login tokens and the admin token.
    pub auth: Auth,
    /// The sign-up adapters (e-mail verification, enrichment).
    pub adapters: Adapters,
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
        Arc::new(App {
            config,
            metrics,
            auth,
            adapters,
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
                let admitted = match kind {
                    RouteKind::Service => Ok(None),
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
