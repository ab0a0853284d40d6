//! The domains' HTTP surfaces, one folder (or file) each, registered by one line:
//! `domains!(demo, social, work, market, dispatch)` below. A domain module owns its routes and
//! handlers, its request and response types (which the OpenAPI generator describes), its
//! OpenAPI parts (tag,
//! security scheme, error codes, a section of the introduction) and its `/metrics` lines, and
//! exposes them as `pub const DOMAIN: HttpDomain`. The server's own routes (`/healthz`,
//! `/readyz`, `/metrics`, `/api/v1/openapi.json`, `/docs`) are not a domain: see
//! [`crate::service`]. A domain whose engine side asks for effects (the outbox) also brings the
//! worker pools that run them ([`HttpDomain::effects`]).
//!
//! Adding a domain on the net side is a folder here and its name in the `domains!` line (see
//! ARCHITECTURE.md, "Adding a domain"); nothing else in the server changes.
//!
//! Compatibility routes (`--compat <set>`, API.md): a domain that speaks another service's wire
//! format declares it as its [`CompatSet`] ([`HttpDomain::compat`]): the `--compat` name and the
//! routes. [`crate::routes::table`] mounts a set's routes only when its flag is on;
//! [`crate::routes::document`] documents them always, under the `compat` tag. A compat handler
//! calls the same engine API as the domain's native routes (same commands, same invariants);
//! only the wire format differs.
//!
//! Invariant: a domain module reaches the engine only through `switchyard_engine::Engine`'s API
//! and the server only through [`crate::ctx::Ctx`], the router's [`Route`], [`crate::openapi`],
//! [`crate::json`], [`crate::http`] and [`crate::metrics::encode`]; domains never import each
//! other.

use std::future::Future;
use std::pin::Pin;

use switchyard_engine::runtime::effects::EffectPool;
use switchyard_engine::EngineConfig;

use crate::app::App;
use crate::config::ConfigSection;
use crate::error::Error;
use crate::openapi::Document;
use crate::router::Route;

/// A domain's `/metrics` lines, rendered at scrape time (it may ask the engine).
pub type MetricsFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What the server learns of a domain.
pub struct HttpDomain {
    /// The domain's name (its module's).
    pub name: &'static str,
    /// Its routes, each with its handler and OpenAPI operation.
    pub routes: fn() -> Vec<Route>,
    /// Its parts of the OpenAPI document besides its operations: tags, security schemes,
    /// error codes, a section of the introduction.
    pub describe: fn(&mut Document),
    /// Appends its lines to a `/metrics` scrape (nothing when it has none).
    pub metrics: for<'a> fn(&'a App, &'a mut String) -> MetricsFuture<'a>,
    /// The worker pools that run the effects its engine side asks for, given to
    /// `Engine::open_with_effects` (none when it asks for none); it may read the engine's
    /// configuration (its own section) to build them.
    pub effects: fn(&EngineConfig) -> Result<Vec<EffectPool>, Error>,
    /// Its configuration section, read by the engine's own type for it
    /// (`crate::config::section::<T>()`); `None` when it has none.
    pub config: Option<ConfigSection>,
    /// Its compatibility route set, mounted only with `--compat <name>`; `None` when it has
    /// none.
    pub compat: Option<CompatSet>,
}

/// A domain's compatibility route set: another service's routes and wire format over the
/// domain's engine API.
pub struct CompatSet {
    /// The `--compat` name that mounts it, one of [`crate::config::Compat::NAMES`].
    pub name: &'static str,
    /// Its routes. Their operations carry the `compat` tag ([`crate::openapi::COMPAT_TAG`]) and
    /// document the original's bodies as they are (not the API's error envelope), plus the
    /// server's own answers (404 `not_found` when the set is off, the envelope's 400, 413, 500
    /// and 503 where the pipeline sends them).
    pub routes: fn() -> Vec<Route>,
}

impl HttpDomain {
    /// For a domain without metrics of its own.
    pub fn no_metrics<'a>(_: &'a App, _: &'a mut String) -> MetricsFuture<'a> {
        Box::pin(async {})
    }

    /// For a domain that asks for no effects.
    pub fn no_effects(_: &EngineConfig) -> Result<Vec<EffectPool>, Error> {
        Ok(Vec::new())
    }
}

/// Every domain's configuration section, for `ServerConfig::build`.
pub fn config_sections() -> Vec<ConfigSection> {
    DOMAINS
        .iter()
        .filter_map(|domain| domain.config.as_ref())
        .copied()
        .collect()
}

/// Every domain's effect pools, for `Engine::open_with_effects`.
pub fn effect_pools(config: &EngineConfig) -> Result<Vec<EffectPool>, Error> {
    let mut pools = Vec::new();
    for domain in DOMAINS {
        pools.extend((domain.effects)(config)?);
    }
    Ok(pools)
}

/// Declares the domain modules and registers them, in order: `domains!(a, b)` is `pub mod a;
/// pub mod b;` and [`DOMAINS`] = `[&a::DOMAIN, &b::DOMAIN]`. Mirrors the engine's `domains!`.
macro_rules! domains {
    ($($domain:ident),* $(,)?) => {
        $(pub mod $domain;)*
        /// Every domain this server mounts, in registration order.
        pub const DOMAINS: &[&HttpDomain] = &[$(&$domain::DOMAIN),*];
    };
}

domains!(demo, social, work, market, dispatch);
