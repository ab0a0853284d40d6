//! Switchyard's bot: a simulation of real users that checks the server against its own ledger
//! (`switchyard-bot social`), simulated work clients with an exactly-once check and drain
//! figures (`switchyard-bot work`), market users whose orders (idempotency keys, deliberate
//! duplicates, retries) must match the server exactly (`switchyard-bot market`), and an
//! open-model load generator (`switchyard-bot load`).
//! The binary (`src/main.rs`) only calls [`cli::main`]; tests and other crates drive the
//! library.
//!
//! # Layout
//! - [`cli`]: flags, the TOML file, how they merge, exit codes, running a subcommand.
//! - [`social`]: the simulation — three phases, the ledger, the planner, the checks.
//! - [`transport`]: the [`Transport`] trait and its two implementations, HTTP
//!   ([`transport::http`], hyper's pooled client) and embedded ([`transport::embedded`], the
//!   engine in-process).
//! - [`load`]: the open-model generator and its minimal HTTP/1.1 wire client ([`load::wire`]).
//! - [`report`]: counts, errors by status/code, HDR latency histograms, the JSON report.
//! - [`progress`]: a bar per phase on a terminal, plain lines otherwise.
//! - [`work`]: simulated work clients (lease, report, crash, re-register) and the exactly-once
//!   check, behind the [`work::WorkTransport`] trait: HTTP ([`work::HttpWork`]) or the embedded
//!   engine ([`transport::EmbeddedTransport`], `Engine::work()`).
//! - [`market`]: users placing orders with idempotency keys (some twice, every failed attempt
//!   retried with the same key and body) and the exact ledger check, behind the
//!   [`market::MarketTransport`] trait: HTTP ([`market::HttpMarket`]) or the embedded engine with
//!   a fixed price ([`market::embedded::open`], `Engine::market()`).
//! - [`rng`]: the seeded generator every random choice comes from.
//! - [`error`]: [`BotError`], one error type for HTTP error bodies and engine errors.
//!
//! **Architecture Invariant:** the scenario code never knows which transport it drives; a
//! transport never judges an answer (it reports what the server said).
//!
//! **Architecture Invariant:** the same seed and options give the same operation log; the op
//! log names users and posts by bot-side identities, so server-assigned ids and the interleaving
//! of concurrent users do not change it.
//!
//! # Exit codes
//! 0 finished, 1 error (server unreachable or failing, bad options), 2 consistency mismatch.

pub mod cli;
pub mod error;
pub mod fanout;
pub mod load;
pub mod market;
pub mod progress;
pub mod report;
pub mod rng;
pub mod social;
pub mod transport;
pub mod work;

pub use error::BotError;
pub use market::{MarketOptions, MarketTransport};
pub use report::{Outcome, Report};
pub use social::{SocialOptions, SocialRun};
pub use transport::Transport;
pub use work::{WorkOptions, WorkTransport};
