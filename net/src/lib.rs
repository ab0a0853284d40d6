//! Switchyard's HTTP front end: a hyper 1.x server that turns requests into engine commands and
//! engine results into JSON, plus the `switchyard` binary (`src/main.rs`) that parses the command
//! line and calls [`run`].
//!
//! # Layout
//! - [`config`]: [`ServerConfig`], every limit with its unit and default, built from defaults ←
//!   TOML file ← `--set` ← flags and environment; `validate()` checks relations at start-up.
//! - [`app`]: [`app::App`], the state connections share, and the per-request pipeline (route →
//!   admission → handler → metrics).
//! - [`server`]: [`lock_data_dir`] (taken before the address is bound) and [`run`]: the accept
//!   loop (connection limit taken before `accept`), per-connection hyper setup, opening the
//!   engine in the background, graceful shutdown in a fixed order.
//! - [`routes`]: the hand-written router (method + path pattern → handler), the request context
//!   handlers see, and one module per domain (`service`, `demo`, ...).
//! - [`http`]: the wire helpers every handler uses: bounded body reading, the strict JSON object
//!   reader (`Fields`), query strings (`Query`, pages), JSON responses.
//! - [`error`]: [`Error`] (start-up and run failures of this crate) and [`ApiError`] (the JSON
//!   error body of API.md) with the one table mapping every engine error to a status and code.
//! - [`metrics`]: request counters and latency histograms by route pattern, in-flight and
//!   connection gauges, rendered with the engine's metrics for `GET /metrics`.
//! - [`auth`]: JWT login tokens, the admin token, the JWT secret. [`throttle`]: the per-e-mail
//!   and per-address windows of login failures and sign-ups. [`adapters`]: the sign-up adapters.
//!
//! **Architecture Invariant:** this crate knows HTTP, JSON and (later) JWT; the engine knows none
//! of them. Handlers never touch engine internals, only `switchyard_engine::Engine`'s API.
//!
//! **Architecture Invariant:** bad input is always a 4xx and changes nothing; a 5xx means IO,
//! corruption or a bug (see [`error::ApiError::from_engine`]).

pub mod adapters;
pub mod app;
pub mod auth;
pub mod config;
pub mod effects;
pub mod error;
pub mod http;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod throttle;

pub use config::ServerConfig;
pub use error::{ApiError, Error};
pub use server::{lock_data_dir, run};
