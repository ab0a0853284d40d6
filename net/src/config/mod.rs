//! The server's one configuration struct, [`ServerConfig`]: its sections, defaults and checks
//! here; how it is built from its layers in `layers`; `switchyard config`'s listing in `describe`.
//!
//! Layers, later wins: defaults ← TOML file (`--config`) ← `--set KEY=VALUE` (dotted keys, the
//! same as the file's) ← command-line flags (`--listen`, `--data-dir`, `--admin-token`) and the
//! environment (`SWITCHYARD_ADMIN_TOKEN`, `SWITCHYARD_JWT_SECRET`; a flag beats the environment).
//!
//! Invariants:
//! - Every key has a default, a doc comment and its unit last in its name (`_ms`, `_bytes`,
//!   `_seconds`; counts have none). Keys no domain reads yet are still accepted, so a config file
//!   written for the full API never stops start-up.
//! - An unknown key or a value of the wrong type stops start-up with a message naming the key:
//!   every leaf is checked on its own (`layers::check_each_key`), so serde's error is attributed to
//!   its dotted key even though serde itself does not track paths.
//! - [`ServerConfig::validate`] checks ranges and relations once, before anything opens.
//! - **Declared once.** The engine's config structs are the schema of their keys: `[engine]` is
//!   `switchyard_engine::EngineConfig` itself, and each domain's section is the domain's own
//!   `DomainConfig` type, registered by the domain's net module (`HttpDomain::config`), so a new
//!   domain's keys need no edit here. Each key has one default, in the struct that declares it.
//!   The social ground rules keep the names API.md gives them (`limits.max_posts_per_user`,
//!   `limits.max_likes_per_user`, `auth.password_hash_*`); their defaults are read from the engine's
//!   `SocialConfig`, and [`ServerConfig::engine_config`] maps them into it.
//! - `switchyard config` prints every key with its value, default and unit
//!   ([`ServerConfig::describe`]); a test holds README's key table to the same list.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use switchyard_engine::social::SocialConfig;
use switchyard_engine::{Durability, EngineConfig};

use crate::error::Error;

mod describe;
mod layers;

pub use describe::KeyRow;
pub use layers::{section, ConfigSection};

/// Environment variable holding the admin bearer token.
pub const ENV_ADMIN_TOKEN: &str = "SWITCHYARD_ADMIN_TOKEN";
/// Environment variable holding the JWT signing secret.
pub const ENV_JWT_SECRET: &str = "SWITCHYARD_JWT_SECRET";

/// Everything the server needs. See the module docs for how it is built.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `sync`: acknowledge after fdatasync (group commit); `batch`: acknowledge at once and sync
    /// every `durability_batch_ms` (a crash may lose that window of acknowledged writes).
    pub durability: Durability,
    /// In `batch` durability, the interval between fdatasyncs: the data-loss window.
    pub durability_batch_ms: u64,
    pub auth: AuthConfig,
    pub social: SocialSection,
    pub limits: LimitsConfig,
    /// `[engine]`: the engine's own struct (its serde form skips what other keys set). The
    /// domains' sections are kept in its `sections`.
    pub engine: EngineConfig,
    pub server: ServerSection,
    /// Secrets; never in the TOML file, only flags and environment.
    #[serde(skip)]
    pub secrets: Secrets,
    /// Compatibility route sets to mount (`--compat`).
    #[serde(skip)]
    pub compat: Compat,
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of login tokens (JWT `exp - iat`).
    pub token_ttl_seconds: u64,
    /// argon2id memory cost per password hash, KiB (OWASP's minimum 19456). Each sign-up and
    /// login costs this much memory and about 20 ms of one core at the default. The default is
    /// the engine's `SocialConfig` default.
    pub password_hash_memory_kib: u32,
    /// argon2id iterations per password hash; the default is `SocialConfig`'s.
    pub password_hash_iterations: u32,
    /// Verified login tokens remembered so a repeat skips the JWT check; 0 = none.
    pub verified_token_cache_entries: usize,
    /// How far in the future a login token's `nbf` or `iat` may be before it is refused (401):
    /// the clock difference tolerated between the issuer and this server.
    pub clock_skew_seconds: u64,
    /// Failed logins allowed per e-mail and, separately, per source address within a minute;
    /// beyond, 429 `rate_limited` with `Retry-After` (whether the e-mail exists or not). 0 = no
    /// limit. Each failure costs one argon2 verification.
    pub login_failures_per_minute: u32,
    /// Sign-up requests (with a well-formed body, whatever their verdict) allowed per source
    /// address within a minute; beyond, 429 `rate_limited`.
    /// 0 = no limit. Each sign-up costs one argon2 hash.
    pub signups_per_minute_per_source: u32,
    /// Keys (e-mails, addresses) each throttle table tracks, about 64 bytes each; when full,
    /// expired windows go first, then all.
    pub throttle_keys_max: usize,
}

/// `[social]`: the sign-up adapters. An adapter is on when its API key is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocialSection {
    /// hunter.io's e-mail verifier endpoint, `https://` (rustls) or `http://`; see `adapters`.
    pub hunter_url: String,
    /// hunter.io API key; unset = no outside verification (syntax and the disposable list only).
    pub hunter_api_key: Option<String>,
    /// Clearbit's person-enrichment endpoint, `https://` or `http://`.
    pub clearbit_url: String,
    /// Clearbit API key; unset = no enrichment (`enrichment: null`).
    pub clearbit_api_key: Option<String>,
    /// Each adapter call gives up after this long; sign-up then goes on without it.
    pub adapter_timeout_ms: u64,
    /// A PEM file of extra root certificates the adapters trust for `https://`, added to the
    /// built-in Mozilla roots (a private CA, a TLS-inspecting proxy, the tests' loopback CA).
    /// Unset = the built-in roots only. Read once at start-up; unreadable or invalid stops it.
    pub adapter_ca_file: Option<PathBuf>,
}

impl Default for SocialSection {
    fn default() -> Self {
        SocialSection {
            hunter_url: "https://api.hunter.io/v2/email-verifier".into(),
            hunter_api_key: None,
            clearbit_url: "https://person.clearbit.com/v2/people/find".into(),
            clearbit_api_key: None,
            adapter_timeout_ms: 2_000,
            adapter_ca_file: None,
        }
    }
}

/// `[limits]`: request limits and social ground rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Larger request bodies get 413 `body_too_large`; checked against `Content-Length` before
    /// reading and again while reading (chunked bodies). Bounds the memory one request may hold.
    pub max_body_bytes: u64,
    /// Posts one user may write; unset means no limit (403 `post_limit_reached` when reached).
    pub max_posts_per_user: Option<u64>,
    /// Likes one user may have on at once; unset means no limit (403 `like_limit_reached`).
    pub max_likes_per_user: Option<u64>,
    /// Request line plus headers; larger gets 431 from hyper. Also sizes hyper's read buffer
    /// (at least 8192, hyper's minimum), so it bounds per-connection memory.
    pub max_header_bytes: usize,
    /// A connection that has not sent a complete request head within this time is closed
    /// (slow-loris guard; also bounds how long an idle keep-alive connection may dawdle mid-head).
    pub header_read_timeout_ms: u64,
    /// The whole request body must arrive within this time, else 408 `request_timeout`.
    pub body_read_timeout_ms: u64,
    /// API requests being handled at once, over all connections; beyond it a request gets 503
    /// `overloaded` with `Retry-After` at once instead of queueing. Service routes (`/healthz`,
    /// `/readyz`, `/metrics`, `/api/v1/openapi.json`) are not counted.
    pub max_in_flight: usize,
    /// Open client connections. A permit is taken before `accept`, so beyond it new connections
    /// wait in the kernel's backlog. Each costs a file descriptor and up to two read buffers.
    pub max_connections: usize,
}

/// `[server]`: the process itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address to listen on, `host:port`; port 0 picks a free port (printed on stdout).
    /// `--listen` overrides it.
    pub listen: String,
    /// The engine's data directory (created if missing, locked while open). `--data-dir`
    /// overrides it.
    pub data_dir: PathBuf,
    /// Hard deadline for draining connections at shutdown; connections still busy after it are
    /// dropped and the engine is shut down anyway.
    pub shutdown_deadline_ms: u64,
    /// tokio worker threads for hyper. 1 (the default) runs a current-thread runtime: on a 2-core
    /// machine one async thread beat more (DESIGN.md notes); the engine's actors, WAL writer and
    /// checkpointer run on their own threads regardless.
    pub worker_threads: usize,
    /// Once the engine is open, serve each new connection on an actor shard's thread (connections
    /// are spread over the shards), so a request's path to its actors stays on one thread: no
    /// cross-thread wake-up per message. Off: connections run on the tokio worker threads.
    pub serve_on_actor_threads: bool,
}

/// Secrets from flags and environment. Debug output redacts them.
#[derive(Clone, Default)]
pub struct Secrets {
    /// The admin bearer token; admin routes are refused when unset.
    pub admin_token: Option<String>,
    /// The JWT HS256 signing secret.
    pub jwt_secret: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("Secrets")
            .field("admin_token", &shown(&self.admin_token))
            .field("jwt_secret", &shown(&self.jwt_secret))
            .finish()
    }
}

/// Compatibility route sets (`--compat social,events,market,dispatch`); all off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compat {
    pub social: bool,
    pub events: bool,
    pub market: bool,
    pub dispatch: bool,
}

impl Compat {
    /// Every set `--compat` accepts. A domain names its set with one of these
    /// (`crate::domains::CompatSet::name`); a set no domain provides yet mounts nothing.
    pub const NAMES: [&'static str; 4] = ["social", "events", "market", "dispatch"];

    /// Whether the set `name` is on (`false` for a name not in [`Compat::NAMES`]).
    pub fn enabled(&self, name: &str) -> bool {
        self.names().contains(&name)
    }

    /// Parses names such as `["social", "market"]`; an unknown name is an error naming it.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Compat, Error> {
        let mut compat = Compat::default();
        for name in names {
            match name.as_ref().trim() {
                "social" => compat.social = true,
                "events" => compat.events = true,
                "market" => compat.market = true,
                "dispatch" => compat.dispatch = true,
                "" => {}
                other => {
                    return Err(Error::Config(format!(
                        "--compat: unknown route set `{other}`; expected social, events, market or dispatch"
                    )))
                }
            }
        }
        Ok(compat)
    }

    /// The names of the enabled sets.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.social, "social"),
            (self.events, "events"),
            (self.market, "market"),
            (self.dispatch, "dispatch"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        let engine = EngineConfig::default();
        ServerConfig {
            durability: engine.durability,
            durability_batch_ms: engine.durability_batch_ms,
            auth: AuthConfig::default(),
            social: SocialSection::default(),
            limits: LimitsConfig::default(),
            engine,
            server: ServerSection::default(),
            secrets: Secrets::default(),
            compat: Compat::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_seconds: 3600,
            password_hash_memory_kib: SocialConfig::default().password_hash_memory_kib,
            password_hash_iterations: SocialConfig::default().password_hash_iterations,
            verified_token_cache_entries: 65_536,
            clock_skew_seconds: crate::auth::CLOCK_SKEW_SECONDS_DEFAULT,
            login_failures_per_minute: 10,
            signups_per_minute_per_source: 60,
            throttle_keys_max: 65_536,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 1024 * 1024,
            max_posts_per_user: None,
            max_likes_per_user: None,
            max_header_bytes: 16 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            max_in_flight: 2048,
            max_connections: 4096,
        }
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("data/state"),
            shutdown_deadline_ms: 10_000,
            worker_threads: 1,
            serve_on_actor_threads: true,
        }
    }
}

/// What the command line adds on top of the file and `--set` layers.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub admin_token: Option<String>,
    /// `--compat` names, already split at commas.
    pub compat: Vec<String>,
}

impl ServerConfig {
    /// Settings for tests: the data dir given, an ephemeral port, small engine segments.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> ServerConfig {
        let mut config = ServerConfig::default();
        config.server.data_dir = data_dir.into();
        config.server.listen = "127.0.0.1:0".into();
        config.engine = EngineConfig::for_tests("");
        let social = SocialConfig::for_tests();
        config.auth.password_hash_memory_kib = social.password_hash_memory_kib;
        config.auth.password_hash_iterations = social.password_hash_iterations;
        config
    }

    /// Checks ranges and relations between limits; every message names its key.
    pub fn validate(&self) -> Result<(), Error> {
        fn at_least<T: PartialOrd + std::fmt::Display>(
            key: &str,
            value: T,
            min: T,
        ) -> Result<(), Error> {
            if value < min {
                return Err(Error::Config(format!(
                    "key `{key}` must be at least {min}, got {value}"
                )));
            }
            Ok(())
        }
        fn at_most<T: PartialOrd + std::fmt::Display>(
            key: &str,
            value: T,
            max: T,
        ) -> Result<(), Error> {
            if value > max {
                return Err(Error::Config(format!(
                    "key `{key}` must be at most {max}, got {value}"
                )));
            }
            Ok(())
        }
        let limits = &self.limits;
        at_least("durability_batch_ms", self.durability_batch_ms, 1)?;
        at_least("auth.token_ttl_seconds", self.auth.token_ttl_seconds, 1)?;
        at_most(
            "auth.clock_skew_seconds",
            self.auth.clock_skew_seconds,
            3600,
        )?;
        at_least("auth.throttle_keys_max", self.auth.throttle_keys_max, 1)?;
        at_least(
            "auth.password_hash_memory_kib",
            self.auth.password_hash_memory_kib,
            8,
        )?;
        at_least(
            "auth.password_hash_iterations",
            self.auth.password_hash_iterations,
            1,
        )?;
        at_least(
            "social.adapter_timeout_ms",
            self.social.adapter_timeout_ms,
            1,
        )?;
        for (key, url) in [
            ("social.hunter_url", &self.social.hunter_url),
            ("social.clearbit_url", &self.social.clearbit_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "key `{key}` must be an http:// or https:// URL, got `{url}`"
                )));
            }
        }
        if let Some(path) = &self.social.adapter_ca_file {
            crate::tls::load_ca_file(path)?;
        }
        at_least("limits.max_body_bytes", limits.max_body_bytes, 1)?;
        at_most("limits.max_body_bytes", limits.max_body_bytes, 1 << 30)?;
        at_least("limits.max_header_bytes", limits.max_header_bytes, 1024)?;
        at_most("limits.max_header_bytes", limits.max_header_bytes, 1 << 20)?;
        at_least(
            "limits.header_read_timeout_ms",
            limits.header_read_timeout_ms,
            1,
        )?;
        at_least(
            "limits.body_read_timeout_ms",
            limits.body_read_timeout_ms,
            1,
        )?;
        at_least("limits.max_in_flight", limits.max_in_flight, 1)?;
        at_least("limits.max_connections", limits.max_connections, 1)?;
        at_least(
            "server.shutdown_deadline_ms",
            self.server.shutdown_deadline_ms,
            1,
        )?;
        at_least("server.worker_threads", self.server.worker_threads, 1)?;
        at_most("server.worker_threads", self.server.worker_threads, 64)?;
        if self.server.listen.trim().is_empty() {
            return Err(Error::Config("key `server.listen` is empty".into()));
        }
        if self.server.data_dir.as_os_str().is_empty() {
            return Err(Error::Config("key `server.data_dir` is empty".into()));
        }
        self.engine_config()
            .validate()
            .map_err(|message| Error::Config(format!("engine settings: {message}")))
    }

    /// The engine's configuration: `[engine]` (with the domains' sections), the top-level
    /// durability keys, the data dir, and the social ground rules from the keys API.md names.
    pub fn engine_config(&self) -> EngineConfig {
        let mut engine = self.engine.clone();
        engine.data_dir = self.server.data_dir.clone();
        engine.durability = self.durability;
        engine.durability_batch_ms = self.durability_batch_ms;
        let social = engine.section_mut::<switchyard_engine::social::SocialConfig>();
        social.max_posts_per_user = self.limits.max_posts_per_user;
        social.max_likes_per_user = self.limits.max_likes_per_user;
        social.password_hash_memory_kib = self.auth.password_hash_memory_kib;
        social.password_hash_iterations = self.auth.password_hash_iterations;
        engine
    }
}

#[cfg(test)]
mod tests;
