//! The server's one configuration struct, [`ServerConfig`], and how it is built.
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
//!   every leaf is checked on its own (see [`check_each_key`]), so serde's error is attributed to
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

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchyard_engine::config::DomainConfig;
use switchyard_engine::social::SocialConfig;
use switchyard_engine::{Durability, EngineConfig};

use crate::error::Error;

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
    pub market: MarketConfig,
    pub notify: NotifyConfig,
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

/// `[market]`: BTC orders and the price feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketConfig {
    /// Order requests per user per minute (429 `rate_limited` beyond).
    pub rate_limit_per_minute: u32,
    /// Prices older than this are unavailable (503 `price_unavailable`).
    pub max_price_age_seconds: u64,
    /// `simulated`, `fixed:EUR=..,GBP=..,USD=..`, or an `http(s)://` URL of a CoinDesk-shaped
    /// document.
    pub price_source: String,
}

/// `[notify]`: outbound notifications.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Delivery attempts before a notification is dead-lettered.
    pub max_attempts: u32,
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
            market: MarketConfig::default(),
            notify: NotifyConfig::default(),
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

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            rate_limit_per_minute: 60,
            max_price_age_seconds: 300,
            price_source: "simulated".into(),
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig { max_attempts: 8 }
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
    /// Builds the configuration from every layer and validates it. `env` reads an environment
    /// variable (injected so tests need not touch the process environment).
    pub fn build(
        file: Option<&Path>,
        sets: &[String],
        flags: Flags,
        env: impl Fn(&str) -> Option<String>,
        sections: &[ConfigSection],
    ) -> Result<ServerConfig, Error> {
        let mut config = ServerConfig::from_layers(file, sets, sections)?;
        if let Some(listen) = flags.listen {
            config.server.listen = listen;
        }
        if let Some(data_dir) = flags.data_dir {
            config.server.data_dir = data_dir;
        }
        config.secrets.admin_token = flags
            .admin_token
            .or_else(|| env(ENV_ADMIN_TOKEN))
            .filter(|token| !token.is_empty());
        config.secrets.jwt_secret = env(ENV_JWT_SECRET).filter(|secret| !secret.is_empty());
        config.compat = Compat::parse(&flags.compat)?;
        config.validate()?;
        Ok(config)
    }

    /// Defaults ← TOML file ← `--set` assignments, the domains' `sections` read into the engine
    /// config by their own types. Not validated.
    pub fn from_layers(
        file: Option<&Path>,
        sets: &[String],
        sections: &[ConfigSection],
    ) -> Result<ServerConfig, Error> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io(format!("reading config file {}", path.display()), e))?;
                text.parse::<toml::Table>().map_err(|e| {
                    let line = e
                        .span()
                        .map(|span| text[..span.start.min(text.len())].lines().count().max(1))
                        .unwrap_or(1);
                    Error::Config(format!(
                        "config file {} line {line}: {}",
                        path.display(),
                        e.message().replace('\n', " ")
                    ))
                })?
            }
            None => toml::Table::new(),
        };
        for assignment in sets {
            apply_set(&mut table, assignment)?;
        }
        let domain_tables: Vec<(&ConfigSection, Option<toml::Value>)> = sections
            .iter()
            .map(|section| (section, table.remove(section.name)))
            .collect();
        check_each_key::<ServerConfig>(&table, &[])?;
        let mut config = toml::Value::Table(table)
            .try_into::<ServerConfig>()
            .map_err(|e| Error::Config(e.to_string().replace('\n', " ")))?;
        for (section, value) in domain_tables {
            (section.load)(value, &mut config.engine)?;
        }
        Ok(config)
    }

    /// Every key with its value, its default and its unit (`switchyard config`): the server's
    /// own sections, `[engine]`, and each of `sections`.
    pub fn describe(&self, sections: &[ConfigSection]) -> Vec<KeyRow> {
        let defaults = ServerConfig::default();
        let mut rows = Vec::new();
        let value = |config: &ServerConfig| serde_json::to_value(config).unwrap_or_default();
        flatten_into("", &value(self), &value(&defaults), &mut rows);
        for section in sections {
            let (value, default) = (section.show)(&self.engine);
            flatten_into(section.name, &value, &default, &mut rows);
        }
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    }

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
            "market.rate_limit_per_minute",
            self.market.rate_limit_per_minute,
            1,
        )?;
        at_least(
            "market.max_price_age_seconds",
            self.market.max_price_age_seconds,
            1,
        )?;
        at_least("notify.max_attempts", self.notify.max_attempts, 1)?;
        at_least(
            "server.shutdown_deadline_ms",
            self.server.shutdown_deadline_ms,
            1,
        )?;
        at_least("server.worker_threads", self.server.worker_threads, 1)?;
        at_most("server.worker_threads", self.server.worker_threads, 64)?;
        let source = self.market.price_source.as_str();
        if !(source == "simulated"
            || source.starts_with("fixed:")
            || source.starts_with("http://")
            || source.starts_with("https://"))
        {
            return Err(Error::Config(format!(
                "key `market.price_source` must be `simulated`, `fixed:EUR=..,GBP=..,USD=..` or an http(s) URL, got `{source}`"
            )));
        }
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

/// A domain's configuration section: read into the engine config by the domain's own
/// `DomainConfig` type (`section::<T>()`), so its keys, defaults and checks are declared once,
/// in the engine. A domain's net module lists it in `HttpDomain::config`.
#[derive(Clone, Copy)]
pub struct ConfigSection {
    pub name: &'static str,
    /// Reads the section's table (if given) into the engine config; every error names its key.
    pub load: fn(Option<toml::Value>, &mut EngineConfig) -> Result<(), Error>,
    /// The section's effective and default values (`ServerConfig::describe`).
    pub show: fn(&EngineConfig) -> (serde_json::Value, serde_json::Value),
}

/// The section of domain config type `T`.
pub const fn section<T: DomainConfig>() -> ConfigSection {
    ConfigSection {
        name: T::SECTION,
        load: load_section::<T>,
        show: show_section::<T>,
    }
}

fn load_section<T: DomainConfig>(
    value: Option<toml::Value>,
    engine: &mut EngineConfig,
) -> Result<(), Error> {
    let table = match value {
        None => toml::Table::new(),
        Some(toml::Value::Table(table)) => table,
        Some(_) => {
            return Err(Error::Config(format!(
                "key `{}` is a section, not a value",
                T::SECTION
            )))
        }
    };
    check_each_key::<T>(&table, &[T::SECTION])?;
    let section = toml::Value::Table(table).try_into::<T>().map_err(|e| {
        Error::Config(format!(
            "[{}] {}",
            T::SECTION,
            e.to_string().replace('\n', " ")
        ))
    })?;
    section.validate().map_err(Error::Config)?;
    *engine.section_mut::<T>() = section;
    Ok(())
}

fn show_section<T: DomainConfig>(engine: &EngineConfig) -> (serde_json::Value, serde_json::Value) {
    let mut engine = engine.clone();
    let value = serde_json::to_value(&*engine.section_mut::<T>()).unwrap_or_default();
    (
        value,
        serde_json::to_value(T::default()).unwrap_or_default(),
    )
}

/// One key for `switchyard config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub key: String,
    /// As TOML would write it; `unset` for an empty optional key.
    pub value: String,
    pub default: String,
    /// From the key's suffix (`_ms`, `_seconds`, `_bytes`, `_kib`), else empty.
    pub unit: &'static str,
}

fn flatten_into(
    prefix: &str,
    value: &serde_json::Value,
    default: &serde_json::Value,
    rows: &mut Vec<KeyRow>,
) {
    let shown = |value: Option<&serde_json::Value>| match value {
        None | Some(serde_json::Value::Null) => "unset".to_string(),
        Some(serde_json::Value::String(text)) => format!("{text:?}"),
        Some(other) => other.to_string(),
    };
    let serde_json::Value::Object(map) = value else {
        return;
    };
    for (name, inner) in map {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let default_inner = default.get(name);
        match inner {
            serde_json::Value::Object(_) => flatten_into(
                &key,
                inner,
                default_inner.unwrap_or(&serde_json::Value::Null),
                rows,
            ),
            // A key that proves identity to a third party is never printed, only whether it is set.
            _ if name.ends_with("_api_key") && !inner.is_null() => rows.push(KeyRow {
                unit: "",
                value: "set (hidden)".into(),
                default: shown(default_inner),
                key,
            }),
            _ => rows.push(KeyRow {
                unit: unit_of(name),
                value: shown(Some(inner)),
                default: shown(default_inner),
                key,
            }),
        }
    }
}

fn unit_of(name: &str) -> &'static str {
    [
        ("_ms", "ms"),
        ("_seconds", "s"),
        ("_bytes", "bytes"),
        ("_kib", "KiB"),
        ("_per_minute", "per minute"),
    ]
    .iter()
    .find(|(suffix, _)| name.ends_with(suffix) || name.contains(&format!("{suffix}_")))
    .map_or("", |(_, unit)| unit)
}

/// Applies one `KEY=VALUE` to the table. The value is a TOML value when it parses as one
/// (`1024`, `true`, `0.5`, `"quoted"`), else the raw text as a string (`batch`, `fixed:EUR=1`).
fn apply_set(table: &mut toml::Table, assignment: &str) -> Result<(), Error> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| Error::Config(format!("--set `{assignment}`: expected KEY=VALUE")))?;
    let key = key.trim();
    let segments: Vec<&str> = key.split('.').collect();
    let valid_segment = |segment: &&str| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !segments.iter().all(valid_segment) {
        return Err(Error::Config(format!("--set: invalid key `{key}`")));
    }
    let value = parse_set_value(raw);
    let (last, parents) = segments
        .split_last()
        .ok_or_else(|| Error::Config(format!("--set: invalid key `{key}`")))?;
    let mut current = table;
    for (index, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(Error::Config(format!(
                    "key `{key}`: `{}` is not a section",
                    segments[..=index].join(".")
                )))
            }
        };
    }
    current.insert(last.to_string(), value);
    Ok(())
}

fn parse_set_value(raw: &str) -> toml::Value {
    if let Ok(mut parsed) = format!("value = {raw}").parse::<toml::Table>() {
        if parsed.len() == 1 {
            if let Some(value) = parsed.remove("value") {
                return value;
            }
        }
    }
    toml::Value::String(raw.to_string())
}

/// Deserializes every leaf key on its own, in a table that holds only that key, so an unknown
/// key or a wrongly typed value is reported with its dotted name.
/// Deserializes each leaf of `table` on its own as a `T` (the table being under `prefix`), so an
/// unknown key or a wrong type is reported with its dotted key even though serde does not track
/// paths.
fn check_each_key<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    prefix: &[&str],
) -> Result<(), Error> {
    let mut leaves = Vec::new();
    collect_leaves(table, &mut Vec::new(), &mut leaves);
    for (path, value) in leaves {
        let mut single = value.clone();
        for segment in path.iter().rev() {
            let mut wrapper = toml::Table::new();
            wrapper.insert(segment.to_string(), single);
            single = toml::Value::Table(wrapper);
        }
        if let Err(error) = single.try_into::<T>() {
            // toml appends "\nin `section`"; the key named here is more precise, and the
            // message must stay on one line.
            let message = error.to_string();
            let first_line = message.lines().next().unwrap_or_default().trim();
            let key: Vec<&str> = prefix.iter().copied().chain(path.iter().copied()).collect();
            return Err(Error::Config(format!(
                "key `{}`: {first_line}",
                key.join("."),
            )));
        }
    }
    Ok(())
}

fn collect_leaves<'a>(
    table: &'a toml::Table,
    prefix: &mut Vec<&'a str>,
    out: &mut Vec<(Vec<&'a str>, &'a toml::Value)>,
) {
    for (key, value) in table {
        prefix.push(key);
        match value {
            toml::Value::Table(inner) if !inner.is_empty() => collect_leaves(inner, prefix, out),
            _ => out.push((prefix.clone(), value)),
        }
        prefix.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn build(items: &[&str]) -> Result<ServerConfig, Error> {
        build_with(None, &sets(items), Flags::default(), no_env)
    }

    fn build_with(
        file: Option<&Path>,
        sets: &[String],
        flags: Flags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, Error> {
        ServerConfig::build(file, sets, flags, env, &crate::domains::config_sections())
    }

    fn work(config: &ServerConfig) -> switchyard_engine::work::WorkConfig {
        config
            .engine_config()
            .section_mut::<switchyard_engine::work::WorkConfig>()
            .clone()
    }

    #[test]
    fn defaults_match_api_md() {
        let config = build(&[]).expect("defaults are valid");
        assert_eq!(config.durability, Durability::Sync);
        assert_eq!(config.auth.token_ttl_seconds, 3600);
        assert_eq!(config.limits.max_body_bytes, 1_048_576);
        assert_eq!(config.limits.max_posts_per_user, None);
        assert_eq!(config.limits.max_likes_per_user, None);
        let work = work(&config);
        assert_eq!(work.bucket_size, 180);
        assert_eq!(work.max_buckets_per_request, 10);
        assert_eq!(work.lease_seconds, 7200);
        assert_eq!(work.max_expiries, 5);
        assert_eq!(work.leased_buckets_per_client_max, 100);
        assert_eq!(config.auth.verified_token_cache_entries, 65_536);
        assert_eq!(config.market.rate_limit_per_minute, 60);
        assert_eq!(config.market.max_price_age_seconds, 300);
        assert_eq!(config.market.price_source, "simulated");
        assert_eq!(config.notify.max_attempts, 8);
        assert_eq!(config.server.listen, "127.0.0.1:8080");
        assert_eq!(config.server.data_dir, PathBuf::from("data/state"));
        assert_eq!(config.server.worker_threads, 1);
        assert_eq!(config.compat, Compat::default());
        let engine = config.engine_config();
        let defaults = EngineConfig::new("data/state");
        assert_eq!(engine.shards, defaults.shards);
        assert_eq!(engine.mailbox_depth_max, defaults.mailbox_depth_max);
        assert_eq!(engine.wal_segment_bytes_max, defaults.wal_segment_bytes_max);
        assert_eq!(engine.data_dir, defaults.data_dir);
    }

    #[test]
    fn the_store_cache_key_has_its_sled_era_name_too() {
        for key in ["engine.store_cache_bytes", "engine.sled_cache_bytes"] {
            let config = build(&[&format!("{key}=1048576")]).expect(key);
            assert_eq!(config.engine_config().store_cache_bytes, 1 << 20, "{key}");
        }
    }

    #[test]
    fn set_overrides_defaults_with_typed_values() {
        let config = build(&[
            "limits.max_body_bytes=1024",
            "durability=batch",
            "durability_batch_ms=5",
            "limits.max_posts_per_user=3",
            "market.price_source=fixed:EUR=1,GBP=2,USD=3",
            "engine.wal_preallocate=false",
            "engine.shards=2",
            "server.listen=127.0.0.1:0",
            "work.max_expiries=2",
            "work.leased_buckets_per_client_max=5000",
        ])
        .expect("valid");
        assert_eq!(config.limits.max_body_bytes, 1024);
        assert_eq!(config.durability, Durability::Batch);
        assert_eq!(config.limits.max_posts_per_user, Some(3));
        assert_eq!(config.market.price_source, "fixed:EUR=1,GBP=2,USD=3");
        assert!(!config.engine.wal_preallocate);
        assert_eq!(config.server.listen, "127.0.0.1:0");
        let engine = config.engine_config();
        assert_eq!(engine.durability, Durability::Batch);
        assert_eq!(engine.durability_batch_ms, 5);
        assert_eq!(engine.shards, 2);
        assert_eq!(
            engine
                .section::<switchyard_engine::work::WorkConfig>()
                .max_expiries,
            2
        );
        assert_eq!(
            engine
                .section::<switchyard_engine::work::WorkConfig>()
                .leased_buckets_per_client_max,
            5000
        );
    }

    #[test]
    fn file_then_set_then_flags_then_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("switchyard.toml");
        std::fs::write(
            &path,
            "durability = \"batch\"\n[limits]\nmax_body_bytes = 2048\nmax_in_flight = 7\n[server]\nlisten = \"0.0.0.0:9\"\n",
        )
        .expect("write");
        let flags = Flags {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some("elsewhere".into()),
            admin_token: None,
            compat: vec!["social".into(), "market".into()],
        };
        let env = |name: &str| match name {
            ENV_ADMIN_TOKEN => Some("from-env".to_string()),
            ENV_JWT_SECRET => Some("secret".to_string()),
            _ => None,
        };
        let config = build_with(
            Some(&path),
            &sets(&["limits.max_body_bytes=4096"]),
            flags.clone(),
            env,
        )
        .expect("valid");
        assert_eq!(config.durability, Durability::Batch);
        assert_eq!(config.limits.max_body_bytes, 4096);
        assert_eq!(config.limits.max_in_flight, 7);
        assert_eq!(config.server.listen, "127.0.0.1:0");
        assert_eq!(config.server.data_dir, PathBuf::from("elsewhere"));
        assert_eq!(config.secrets.admin_token.as_deref(), Some("from-env"));
        assert_eq!(config.secrets.jwt_secret.as_deref(), Some("secret"));
        assert_eq!(config.compat.names(), vec!["social", "market"]);
        assert!(
            !format!("{config:?}").contains("from-env"),
            "secrets are redacted"
        );

        let flags = Flags {
            admin_token: Some("from-flag".into()),
            ..flags
        };
        let config = build_with(Some(&path), &[], flags, env).expect("valid");
        assert_eq!(config.secrets.admin_token.as_deref(), Some("from-flag"));
    }

    #[test]
    fn unknown_key_names_the_key() {
        for (assignment, key) in [
            ("limits.nope=1", "limits.nope"),
            ("nope=1", "nope"),
            ("nope.deeper=true", "nope.deeper"),
            ("engine.wal_segment_bytes=1", "engine.wal_segment_bytes"),
        ] {
            let error = build(&[assignment]).expect_err(assignment).to_string();
            assert!(error.contains(&format!("`{key}`")), "{assignment}: {error}");
        }
    }

    #[test]
    fn wrong_type_names_the_key() {
        for (assignment, key) in [
            ("limits.max_body_bytes=abc", "limits.max_body_bytes"),
            ("limits.max_body_bytes=-1", "limits.max_body_bytes"),
            ("durability=fast", "durability"),
            ("engine.wal_preallocate=1", "engine.wal_preallocate"),
            ("market.price_source=5", "market.price_source"),
            ("limits=5", "limits"),
        ] {
            let error = build(&[assignment]).expect_err(assignment).to_string();
            assert!(error.contains(&format!("`{key}`")), "{assignment}: {error}");
        }
    }

    #[test]
    fn errors_in_the_file_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[work]\nbucket_size = \"big\"\n").expect("write");
        let error = build_with(Some(&path), &[], Flags::default(), no_env)
            .expect_err("wrong type")
            .to_string();
        assert!(error.contains("`work.bucket_size`"), "{error}");

        std::fs::write(&path, "[work]\nbucket_sise = 3\n").expect("write");
        let error = build_with(Some(&path), &[], Flags::default(), no_env)
            .expect_err("unknown")
            .to_string();
        assert!(error.contains("`work.bucket_sise`"), "{error}");

        std::fs::write(&path, "[work\n").expect("write");
        let error = build_with(Some(&path), &[], Flags::default(), no_env)
            .expect_err("syntax")
            .to_string();
        assert!(error.contains("bad.toml"), "{error}");
    }

    #[test]
    fn validate_names_the_key() {
        for (assignment, key) in [
            ("limits.max_header_bytes=10", "limits.max_header_bytes"),
            ("limits.max_in_flight=0", "limits.max_in_flight"),
            ("server.worker_threads=0", "server.worker_threads"),
            ("market.price_source=coindesk", "market.price_source"),
            ("work.bucket_size=0", "work.bucket_size"),
            ("work.max_expiries=0", "work.max_expiries"),
            (
                "work.leased_buckets_per_client_max=0",
                "work.leased_buckets_per_client_max",
            ),
            ("social.hunter_url=ftp://example.com/v", "social.hunter_url"),
            (
                "social.clearbit_url=example.com/find",
                "social.clearbit_url",
            ),
            (
                "social.adapter_ca_file=/nonexistent/switchyard-ca.pem",
                "social.adapter_ca_file",
            ),
        ] {
            let error = build(&[assignment]).expect_err(assignment).to_string();
            assert!(error.contains(&format!("`{key}`")), "{assignment}: {error}");
        }
        assert!(build(&["engine.shards=0"]).is_err());
    }

    #[test]
    fn adapter_urls_take_https_and_http() {
        let defaults = build(&[]).expect("defaults are valid");
        assert!(defaults.social.hunter_url.starts_with("https://"));
        assert!(defaults.social.clearbit_url.starts_with("https://"));
        assert_eq!(defaults.social.adapter_ca_file, None);
        let config = build(&[
            "social.hunter_url=http://127.0.0.1:9/v2/email-verifier",
            "social.clearbit_url=https://127.0.0.1:9/v2/people/find",
        ])
        .expect("http:// and https:// are both accepted");
        assert_eq!(
            config.social.clearbit_url,
            "https://127.0.0.1:9/v2/people/find"
        );
    }

    #[test]
    fn malformed_set_and_compat_are_rejected() {
        assert!(build(&["limits.max_body_bytes"]).is_err());
        assert!(build(&["limits..x=1"]).is_err());
        assert!(build(&["durability=sync", "durability.x=1"]).is_err());
        let flags = Flags {
            compat: vec!["social".into(), "chat".into()],
            ..Flags::default()
        };
        let error = build_with(None, &[], flags, no_env)
            .expect_err("unknown compat")
            .to_string();
        assert!(error.contains("`chat`"), "{error}");
    }

    /// README's key table lists every key `switchyard config` knows, and no other: a key added
    /// to a config struct without a README row (or a row left behind) fails here.
    #[test]
    fn readme_lists_every_key() {
        let readme = include_str!("../../README.md");
        let mut rows = readme
            .lines()
            .skip_while(|line| !line.starts_with("| key | default | meaning |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'));
        let mut listed = std::collections::BTreeSet::new();
        for row in rows.by_ref() {
            let first = row.split('|').nth(1).unwrap_or_default();
            // `(or its old name `x`)` names an alias, not a key of its own.
            let first = first.split("old name").next().unwrap_or_default();
            for key in first.split('`').skip(1).step_by(2) {
                assert!(listed.insert(key.to_string()), "README lists `{key}` twice");
            }
        }
        assert!(!listed.is_empty(), "README has no key table");
        let known: std::collections::BTreeSet<String> = build(&[])
            .expect("defaults are valid")
            .describe(&crate::domains::config_sections())
            .into_iter()
            .map(|row| row.key)
            .collect();
        let missing: Vec<_> = known.difference(&listed).collect();
        let unknown: Vec<_> = listed.difference(&known).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "README's key table is out of date: missing {missing:?}, not keys {unknown:?}"
        );
    }

    #[test]
    fn describe_hides_api_keys() {
        let config = build(&[
            "social.hunter_api_key=hk-secret-1",
            "social.clearbit_api_key=cb-secret-2",
        ])
        .expect("valid");
        let rows = config.describe(&crate::domains::config_sections());
        for row in &rows {
            assert!(
                !row.value.contains("secret") && !row.default.contains("secret"),
                "{} shows its value",
                row.key
            );
        }
        let hunter = rows
            .iter()
            .find(|row| row.key == "social.hunter_api_key")
            .expect("listed");
        assert_eq!(hunter.value, "set (hidden)");
        let port = rows
            .iter()
            .find(|row| row.key == "server.listen")
            .expect("listed");
        assert!(
            port.value.contains("8080"),
            "other values are shown: {}",
            port.value
        );
    }

    #[test]
    fn for_tests_is_valid() {
        ServerConfig::for_tests("/tmp/x").validate().expect("valid");
    }
}
