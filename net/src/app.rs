//! [`App`]: the state one running server shares between connections and handlers see as
//! `ctx.app`: configuration, metrics, auth, the sign-up adapters, throttles, the served OpenAPI
//! document, the engine once open, the draining flag. The request pipeline that uses it is
//! [`crate::pipeline`]; this module knows no route.
//!
//! Invariant: the engine is set once, when it has finished opening; before that every API route
//! answers 503 `unavailable` with `Retry-After` and changes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use switchyard_engine::Engine;

use crate::adapters::Adapters;
use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::metrics::HttpMetrics;
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
    /// The OpenAPI document `GET /api/v1/openapi.json` serves, made once at start-up from the
    /// route table.
    pub openapi_json: Bytes,
    engine: OnceLock<Engine>,
    draining: AtomicBool,
    /// Round-robin over actor shards for new connections.
    next_shard: std::sync::atomic::AtomicUsize,
}

impl App {
    /// The state of one server; `metrics` knows its route patterns, `openapi_json` is the
    /// document of its routes (both made by the pipeline from the route table).
    pub fn new(
        config: ServerConfig,
        auth: Auth,
        adapters: Adapters,
        metrics: HttpMetrics,
        openapi_json: Bytes,
    ) -> App {
        let throttles = Throttles::new(&config.auth);
        App {
            config,
            metrics,
            auth,
            adapters,
            throttles,
            openapi_json,
            engine: OnceLock::new(),
            draining: AtomicBool::new(false),
            next_shard: std::sync::atomic::AtomicUsize::new(0),
        }
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
}
