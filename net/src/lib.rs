//! Switchyard's HTTP front end: a hyper 1.x server that turns requests into engine commands and
//! engine results into JSON, plus the `switchyard` binary (`src/main.rs`) that parses the command
//! line and calls [`run`].
//!
//! # Layout
//! From the top down (a module uses only modules listed after it):
//! - [`server`]: [`lock_data_dir`] (taken before the address is bound) and [`run`]: the accept
//!   loop (connection limit taken before `accept`), per-connection hyper setup, opening the
//!   engine in the background, graceful shutdown in a fixed order.
//! - [`pipeline`]: the request path (route → admission → handler → metrics) over the router.
//! - [`routes`]: the route table (the server's own routes, then every domain's) and the OpenAPI
//!   document made from the same table.
//! - [`service`]: the server's own routes (`/healthz`, `/readyz`, `/metrics`,
//!   `/api/v1/openapi.json`, `/docs` with its Swagger UI assets in the binary).
//! - [`domains`]: one folder per domain (`demo`, `social`, `work`, `market`), each owning its
//!   routes and handlers, request and response types, OpenAPI parts and `/metrics` lines, and
//!   optionally a compatibility route set (`--compat`); registered by the one line
//!   `domains!(demo, social, work, market)`.
//! - [`router`]: [`router::Route`] (with its OpenAPI operation) and the `matchit` router.
//! - [`openapi`]: the document's builder ([`openapi::Op`] per operation, [`openapi::Document`]).
//! - [`ctx`]: [`ctx::Ctx`], what a handler sees of a request (who calls, its input).
//! - [`app`]: [`app::App`], the state connections share (config, metrics, auth, adapters,
//!   throttles, the document, the engine once open).
//! - [`config`]: [`ServerConfig`], every limit with its unit and default, built from defaults ←
//!   TOML file ← `--set` ← flags and environment; `validate()` checks relations at start-up.
//! - [`notify`]: the notification providers behind the engine's dispatch `Courier` (signed
//!   webhooks, SMTP through lettre, a Twilio-compatible SMS gateway), over [`adapters`]' client.
//! - [`auth`]: JWT login tokens, the admin token, the JWT secret. [`throttle`]: the per-e-mail
//!   and per-address windows of login failures and sign-ups. [`adapters`]: the sign-up adapters;
//!   [`tls`]: their trust anchors.
//! - [`metrics`]: request counters and latency histograms by route pattern, in-flight and
//!   connection gauges (prometheus-client).
//! - [`json`]: typed request bodies (serde) with API.md's error codes. [`http`]: bounded body
//!   reading, query strings and cursors, responses. [`error`]: [`Error`] (start-up and run
//!   failures of this crate) and [`ApiError`] (the JSON error body of API.md) with the one
//!   table mapping every engine error to a status and code.
//!
//! **Architecture Invariant:** this crate knows HTTP, JSON and JWT; the engine knows none of
//! them. Handlers never touch engine internals, only `switchyard_engine::Engine`'s API.
//!
//! **Architecture Invariant:** bad input is always a 4xx and changes nothing; a 5xx means IO,
//! corruption or a bug (see [`error::ApiError::from_engine`]).
//!
//! **Architecture Invariant:** the modules form no import circle (the order above), and the
//! domains import neither each other nor any module listed above [`router`].

pub mod adapters;
pub mod app;
pub mod auth;
pub mod config;
pub mod ctx;
pub mod domains;
pub mod error;
pub mod http;
pub mod json;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod pipeline;
pub mod router;
pub mod routes;
pub mod server;
pub mod service;
pub mod throttle;
pub mod tls;

pub use config::ServerConfig;
pub use error::{ApiError, Error};
pub use server::{lock_data_dir, run};
