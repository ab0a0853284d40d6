//! The command line: clap definitions, the optional TOML file (`--config`), how the two merge
//! (a flag beats the file's subcommand section, which beats the file's top level, which beats
//! the default), and [`main`], which runs a subcommand and turns its outcome into the exit code.
//!
//! Subcommands: `social` (the simulation), `load` (the load generator) and `work` (simulated
//! work clients, [`crate::work`]); `social` and `work` run over HTTP (`--url`) or against an
//! engine opened in-process (`--embedded --data-dir`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::load::{self, LoadOptions, Mix};
use crate::progress::ProgressMode;
use crate::report::{Outcome, Report};
use crate::rng::seed_from_time;
use crate::social::{self, SocialOptions};
use crate::transport::{EmbeddedTransport, HttpTransport};
use crate::work::{self, HttpWork, WorkMode, WorkOptions};

/// The exit codes, as printed by `--help` (and in bot/README.md).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  finished: every phase ran and every check agreed
  1  error: the server was unreachable or failed (no answer, 5xx), or the options or the
     configuration are invalid (usage errors included)
  2  consistency mismatch: the server disagrees with the bot's ledger; every difference is
     printed";

const SOCIAL_ABOUT: &str = "\
Simulate users against a server (--url) or an embedded engine (--embedded --data-dir) and check
the server against the bot's own ledger after each phase.

Phase I (sign-up): addresses from the mail list, in order, until --users users exist; an address
refused as taken or undeliverable is skipped. Passwords are derived from the seed.
Phase II (posts): every user logs in and creates 1..=--max-posts posts (drawn per user).
Phase III (likes, in rounds): every user with posts gets a like budget of 1..=--max-likes. In each
round the users, in descending order of post count, each with budget left: build the zero list
(every post of every OTHER user that has at least one post with zero likes), draw 1..=remaining
budget, pick that many distinct posts from it uniformly, and like each picked post it does not
like yet or unlike one it already likes (a user never likes its own post). Every like or unlike
uses one unit of budget. Phase III stops when no user has budget left or no post with zero
likes remains.

After each phase the bot compares every user's posts_count and likes_given, every post's likes
and likers, and GET /api/v1/stats/social (and, embedded, the engine's own check) with its ledger,
and stops with exit code 2 on any difference, printing each.

The same --seed and options give the same sequence of operations; --concurrency N runs users on N
tasks, which changes how users interleave but never a user's own sequence.";

const LOAD_ABOUT: &str = "\
Open-model load generator: arrivals at --rate per second, scheduled independently of responses,
spread round-robin over --connections keep-alive connections; latency is measured from each
request's scheduled send time (coordinated omission corrected). --mix weights like (like or
unlike a post of another user), post (create a post), read (GET a post) and health (GET /healthz).
When the mix needs them, a setup step first signs up --setup-users users (at least one per
connection), logs them in and has each create --setup-posts posts.";

#[derive(Debug, Parser)]
#[command(
    name = "switchyard-bot",
    version,
    about = "Simulated users and load generation for Switchyard.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// TOML file with defaults: top-level keys (seed, url, report, progress, timeout_ms) and
    /// [social] / [load] / [work] sections with the flags' names in snake_case. Flags win.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate users (sign-up, posts, likes) and check the server after each phase.
    #[command(long_about = SOCIAL_ABOUT, after_help = EXIT_CODES)]
    Social(SocialArgs),
    /// Drive an open-model load against a running server.
    #[command(long_about = LOAD_ABOUT, after_help = EXIT_CODES)]
    Load(LoadArgs),
    /// Simulated work clients that lease, report, crash and come back; then check every item
    /// is done exactly once (or, with --lease-only, lease without reporting).
    #[command(long_about = WORK_ABOUT, after_help = EXIT_CODES)]
    Work(WorkArgs),
}

const WORK_ABOUT: &str = "\
Simulated work clients, against a server (--url) or an embedded engine (--embedded --data-dir).

add: --items items with keys bot-<seed>-<n> (over HTTP with the admin token: --admin-token or
SWITCHYARD_ADMIN_TOKEN), in chunks of up to 18000 per request. A key that already exists (an
earlier run with the same seed) stops the run.
drain: --clients simulated clients, each on its own task, register, lease up to --max-buckets
buckets and report a result for every item; with --crash-percent chance per bucket a client
reports only half, stops and comes back under a new registration. The abandoned lease expires
after work.lease_seconds: run the server with a short lease (--set work.lease_seconds=1), or give
--lease-seconds to an embedded run. With --crash-percent 0 the drain is a pure throughput run.
check: every item must be done with exactly one result and acknowledged exactly once; exit code 2
otherwise.

The report gives the add rate, the drain time, leases/s (buckets leased per second of drain) and
results/s (items reported per second of drain). Keys of the --config file: the top level and a
[work] section with the flags' names in snake_case.

--lease-only measures what the PostgreSQL peer's W4 does (claim one unowned bucket, set owner and
expiry; no completion): after the same add phase, a lease phase instead of the drain: each client
registers, then leases up to --max-buckets buckets per request and keeps them, never reporting,
heartbeating or crashing (--crash-percent must be 0 or unset), until a lease answers with no
bucket. The leases must outlive the run: embedded, the lease is 3600 s unless --lease-seconds is
given; a server keeps its own work.lease_seconds (default 2 h) and
work.leased_buckets_per_client_max (default 100; give the server at least items / clients, e.g.
--set work.leased_buckets_per_client_max=1000000, or the run stops at too_many_buckets). check: every item was handed
out in exactly one bucket, no bucket id twice, and the server lists every item as leased; exit
code 2 otherwise. The report gives leases/s (buckets leased per second of the lease phase), lease
requests/s and the lease latency. The leases stay on the server: use a fresh data dir or server
for the next run.";

#[derive(Debug, Clone, Args, Default)]
pub struct WorkArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Run against an engine opened in this process (needs --data-dir) instead of --url.
    #[arg(long)]
    pub embedded: bool,
    /// The embedded engine's data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The server's admin token (adds the items; HTTP only) [default: $SWITCHYARD_ADMIN_TOKEN].
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Simulated clients, one task each [default: 8].
    #[arg(long)]
    pub clients: Option<usize>,
    /// Items to add and drain [default: 2000].
    #[arg(long)]
    pub items: Option<usize>,
    /// Buckets per lease request [default: 1].
    #[arg(long)]
    pub max_buckets: Option<usize>,
    /// Chance in percent that a client crashes mid-bucket; 0 = a pure throughput run
    /// [default: 10; with --lease-only 0, the only value allowed].
    #[arg(long)]
    pub crash_percent: Option<u64>,
    /// Lease without reporting (the PostgreSQL peer's W4): a lease phase instead of the drain,
    /// then check every item was handed out once and is leased.
    #[arg(long)]
    pub lease_only: bool,
    /// The whole run must finish within this many seconds [default: 300].
    #[arg(long)]
    pub deadline_seconds: Option<u64>,
    /// Embedded only: the engine's work.lease_seconds, after which a crashed client's lease
    /// expires [default: 5; with --lease-only 3600]. A server's lease is its own (--set
    /// work.lease_seconds=N).
    #[arg(long)]
    pub lease_seconds: Option<u64>,
    /// Embedded only: the engine's work.bucket_size, items per bucket [default: the engine's,
    /// 180].
    #[arg(long)]
    pub bucket_size: Option<usize>,
    /// Embedded only: the engine's work.max_expiries, after which a bucket is dead-lettered
    /// [default: the engine's, 5].
    #[arg(long)]
    pub max_expiries: Option<u32>,
}

/// Where a work run goes.
#[derive(Debug, Clone)]
pub enum WorkTarget {
    Http {
        url: String,
        admin_token: String,
    },
    Embedded {
        data_dir: PathBuf,
        lease_seconds: u64,
        bucket_size: Option<usize>,
        max_expiries: Option<u32>,
    },
}

/// A work run, fully resolved.
#[derive(Debug, Clone)]
pub struct WorkPlan {
    pub target: WorkTarget,
    pub options: WorkOptions,
    /// The drain, or `--lease-only`.
    pub mode: WorkMode,
    /// Per-request timeout (HTTP).
    pub timeout: Duration,
    pub report: Option<PathBuf>,
}

/// `--lease-seconds` of an embedded run when neither the flag nor the file gives one.
const EMBEDDED_LEASE_SECONDS: u64 = 5;
/// The same for an embedded `--lease-only` run: its leases must outlive the run and its check.
const EMBEDDED_LEASE_ONLY_LEASE_SECONDS: u64 = 3600;

/// Merges flags, the file and defaults for `work`.
pub fn resolve_work(args: &WorkArgs, config: Option<&Path>) -> Result<WorkPlan, String> {
    let file = read_file_config(config)?;
    let section = &file.work;
    let common = &args.common;
    let url = common
        .url
        .clone()
        .or(section.url.clone())
        .or(file.url.clone());
    let embedded = args.embedded || section.embedded.unwrap_or(false);
    let data_dir = args.data_dir.clone().or(section.data_dir.clone());
    let lease_seconds = args.lease_seconds.or(section.lease_seconds);
    let bucket_size = args.bucket_size.or(section.bucket_size);
    let max_expiries = args.max_expiries.or(section.max_expiries);
    let lease_only = args.lease_only || section.lease_only.unwrap_or(false);
    let target = match place(embedded, url, data_dir)? {
        Place::DataDir(data_dir) => WorkTarget::Embedded {
            data_dir,
            lease_seconds: positive(
                "lease-seconds",
                lease_seconds.unwrap_or(if lease_only {
                    EMBEDDED_LEASE_ONLY_LEASE_SECONDS
                } else {
                    EMBEDDED_LEASE_SECONDS
                }),
            )?,
            bucket_size: bucket_size
                .map(|size| positive("bucket-size", size))
                .transpose()?,
            max_expiries: max_expiries
                .map(|count| positive("max-expiries", count))
                .transpose()?,
        },
        Place::Url(url) => {
            if lease_seconds.is_some() || bucket_size.is_some() || max_expiries.is_some() {
                return Err(
                    "--lease-seconds, --bucket-size and --max-expiries configure the \
                            embedded engine; a server has its own (--set work.lease_seconds=N)"
                        .into(),
                );
            }
            let admin_token = args
                .admin_token
                .clone()
                .or_else(|| std::env::var("SWITCHYARD_ADMIN_TOKEN").ok())
                .filter(|token| !token.is_empty())
                .ok_or(
                    "work over --url needs --admin-token (or SWITCHYARD_ADMIN_TOKEN) to add items",
                )?;
            WorkTarget::Http { url, admin_token }
        }
    };
    let crash_percent = args.crash_percent.or(section.crash_percent);
    let crash_percent = match (lease_only, crash_percent) {
        (true, None | Some(0)) => 0,
        (true, Some(percent)) => {
            return Err(format!(
                "--lease-only clients never report, heartbeat or crash: --crash-percent must be \
                 0 or unset with --lease-only, got {percent}"
            ))
        }
        (false, percent) => percent.unwrap_or(10),
    };
    if crash_percent > 100 {
        return Err(format!(
            "--crash-percent must be 0..=100, got {crash_percent}"
        ));
    }
    let timeout_ms = common
        .timeout_ms
        .or(section.timeout_ms)
        .or(file.timeout_ms)
        .unwrap_or(30_000);
    let options = WorkOptions {
        seed: common
            .seed
            .or(section.seed)
            .or(file.seed)
            .unwrap_or_else(seed_from_time),
        clients: positive("clients", args.clients.or(section.clients).unwrap_or(8))?,
        items: positive("items", args.items.or(section.items).unwrap_or(2000))?,
        max_buckets: positive(
            "max-buckets",
            args.max_buckets.or(section.max_buckets).unwrap_or(1),
        )?,
        crash_percent,
        deadline: Duration::from_secs(positive(
            "deadline-seconds",
            args.deadline_seconds
                .or(section.deadline_seconds)
                .unwrap_or(300),
        )?),
        progress: common
            .progress
            .or(section.progress)
            .or(file.progress)
            .unwrap_or_default(),
    };
    Ok(WorkPlan {
        target,
        options,
        mode: if lease_only {
            WorkMode::LeaseOnly
        } else {
            WorkMode::Drain
        },
        timeout: Duration::from_millis(positive("timeout-ms", timeout_ms)?),
        report: common
            .report
            .clone()
            .or(section.report.clone())
            .or(file.report),
    })
}

/// Opens the plan's target, runs the work scenario on it and closes it (the embedded engine is
/// shut down in order). Err: the target could not be opened or closed (exit code 1).
pub async fn run_work(plan: &WorkPlan) -> Result<Report, String> {
    let options = plan.options.clone();
    match &plan.target {
        WorkTarget::Http { url, admin_token } => {
            let transport = HttpWork::new(url, options.clients, plan.timeout, admin_token.clone())
                .map_err(|error| error.to_string())?;
            Ok(work::run_mode(Arc::new(transport), options, plan.mode).await)
        }
        WorkTarget::Embedded {
            data_dir,
            lease_seconds,
            bucket_size,
            max_expiries,
        } => {
            let mut config = EmbeddedTransport::config(data_dir, None, None);
            config
                .section_mut::<switchyard_engine::work::WorkConfig>()
                .lease_seconds = *lease_seconds;
            if let Some(size) = bucket_size {
                config
                    .section_mut::<switchyard_engine::work::WorkConfig>()
                    .bucket_size = *size;
            }
            if let Some(count) = max_expiries {
                config
                    .section_mut::<switchyard_engine::work::WorkConfig>()
                    .max_expiries = *count;
            }
            if plan.mode == WorkMode::LeaseOnly {
                // A lease-only client keeps every bucket it gets: let it hold them all (a bucket
                // holds at least one item), so each client registers once.
                config
                    .section_mut::<switchyard_engine::work::WorkConfig>()
                    .leased_buckets_per_client_max = config
                    .section_mut::<switchyard_engine::work::WorkConfig>()
                    .leased_buckets_per_client_max
                    .max(options.items);
            }
            let shown = data_dir.display().to_string();
            let transport = tokio::task::spawn_blocking(move || EmbeddedTransport::open(config))
                .await
                .map_err(|error| error.to_string())?
                .map_err(|error| format!("opening the engine in {shown}: {error}"))?;
            let transport = Arc::new(transport);
            let report = work::run_mode(transport.clone(), options, plan.mode).await;
            tokio::task::spawn_blocking(move || transport.shutdown())
                .await
                .map_err(|error| error.to_string())?
                .map_err(|error| format!("shutting the engine down: {error}"))?;
            Ok(report)
        }
    }
}

/// Runs a resolved work scenario on a new current-thread tokio runtime (like `load`'s default:
/// on this 2-core machine a multi-thread runtime's cross-thread wake-ups cost the bot ~25% more
/// CPU, taken from the server it measures); returns the exit code.
pub fn run_work_plan(plan: WorkPlan) -> u8 {
    println!(
        "seed {} (replay with --seed {})",
        plan.options.seed, plan.options.seed
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return usage_error(&format!("starting the runtime: {error}")),
    };
    match runtime.block_on(run_work(&plan)) {
        Ok(report) => conclude(&report, plan.report.as_deref()),
        Err(message) => {
            let code = usage_error(&message);
            println!("replay with --seed {}", plan.options.seed);
            code
        }
    }
}

/// Flags every subcommand has.
#[derive(Debug, Clone, Args, Default)]
pub struct CommonArgs {
    /// Seed for every random choice (printed at start; random when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Base URL of a running server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: Option<String>,
    /// Write the final report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Progress display: auto (a bar on a terminal, plain lines otherwise), bar, plain, off.
    #[arg(long, value_enum)]
    pub progress: Option<ProgressMode>,
    /// Per-request timeout, in milliseconds [default: 30000].
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Args, Default)]
pub struct SocialArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Run against an engine opened in this process (needs --data-dir) instead of --url.
    #[arg(long)]
    pub embedded: bool,
    /// The embedded engine's data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Users to sign up [default: 50].
    #[arg(long)]
    pub users: Option<usize>,
    /// Each user creates 1..=N posts [default: 7].
    #[arg(long)]
    pub max_posts: Option<u64>,
    /// Each user's like budget is 1..=N [default: 10].
    #[arg(long)]
    pub max_likes: Option<u64>,
    /// Users run in parallel on N tokio tasks [default: 1].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Mail list, one address a line [default: data/mail_list.txt, built in].
    #[arg(long, value_name = "FILE")]
    pub mail_list: Option<PathBuf>,
    /// Write the operation log (one operation a line, in plan order) to this file.
    #[arg(long, value_name = "FILE")]
    pub op_log: Option<PathBuf>,
    /// Also check the ledger after every Phase III round.
    #[arg(long)]
    pub check_every_round: bool,
    /// Embedded only: argon2 memory cost in KiB [default: the engine's].
    #[arg(long)]
    pub hash_memory_kib: Option<u32>,
    /// Embedded only: argon2 iterations [default: the engine's].
    #[arg(long)]
    pub hash_iterations: Option<u32>,
}

#[derive(Debug, Clone, Args, Default)]
pub struct LoadArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Arrivals per second [default: 1000].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of load [default: 10].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Keep-alive connections, one task each [default: 32].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Operation weights [default: like=70,post=20,read=10].
    #[arg(long)]
    pub mix: Option<String>,
    /// Requests in flight per connection; 1 = no pipelining [default: 1].
    #[arg(long)]
    pub pipeline: Option<usize>,
    /// Runtime worker threads; 1 runs a current-thread runtime [default: 1].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Users the setup step signs up (at least one per connection for like/post) [default: 0,
    /// i.e. one per connection].
    #[arg(long)]
    pub setup_users: Option<usize>,
    /// Posts each setup user creates [default: 2].
    #[arg(long)]
    pub setup_posts: Option<usize>,
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    seed: Option<u64>,
    url: Option<String>,
    report: Option<PathBuf>,
    progress: Option<ProgressMode>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    social: SocialFile,
    #[serde(default)]
    load: LoadFile,
    #[serde(default)]
    work: WorkFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SocialFile {
    seed: Option<u64>,
    url: Option<String>,
    report: Option<PathBuf>,
    progress: Option<ProgressMode>,
    timeout_ms: Option<u64>,
    embedded: Option<bool>,
    data_dir: Option<PathBuf>,
    users: Option<usize>,
    max_posts: Option<u64>,
    max_likes: Option<u64>,
    concurrency: Option<usize>,
    mail_list: Option<PathBuf>,
    op_log: Option<PathBuf>,
    check_every_round: Option<bool>,
    hash_memory_kib: Option<u32>,
    hash_iterations: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadFile {
    seed: Option<u64>,
    url: Option<String>,
    report: Option<PathBuf>,
    progress: Option<ProgressMode>,
    timeout_ms: Option<u64>,
    rate: Option<f64>,
    duration: Option<f64>,
    connections: Option<usize>,
    mix: Option<Mix>,
    pipeline: Option<usize>,
    threads: Option<usize>,
    setup_users: Option<usize>,
    setup_posts: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkFile {
    seed: Option<u64>,
    url: Option<String>,
    report: Option<PathBuf>,
    progress: Option<ProgressMode>,
    timeout_ms: Option<u64>,
    embedded: Option<bool>,
    data_dir: Option<PathBuf>,
    clients: Option<usize>,
    items: Option<usize>,
    max_buckets: Option<usize>,
    crash_percent: Option<u64>,
    lease_only: Option<bool>,
    deadline_seconds: Option<u64>,
    lease_seconds: Option<u64>,
    bucket_size: Option<usize>,
    max_expiries: Option<u32>,
}

fn read_file_config(path: Option<&Path>) -> Result<FileConfig, String> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("--config {}: {error}", path.display()))?;
    toml::from_str(&text).map_err(|error| format!("--config {}: {error}", path.display()))
}

/// `--mix` when neither the flag nor the file gives one.
const DEFAULT_MIX: &str = "like=70,post=20,read=10";

/// The built-in mail list (data/mail_list.txt).
const MAIL_LIST: &str = include_str!("../../data/mail_list.txt");

/// Addresses of a mail list: one a line; blank lines and `#` comments skipped.
pub fn parse_mail_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The shipped mail list.
pub fn builtin_mail_list() -> Vec<String> {
    parse_mail_list(MAIL_LIST)
}

/// Where a simulation runs.
#[derive(Debug, Clone)]
pub enum Target {
    Http {
        url: String,
    },
    Embedded {
        data_dir: PathBuf,
        hash_memory_kib: Option<u32>,
        hash_iterations: Option<u32>,
    },
}

/// A simulation, fully resolved.
#[derive(Debug, Clone)]
pub struct SocialPlan {
    pub target: Target,
    pub options: SocialOptions,
    pub timeout: Duration,
    pub report: Option<PathBuf>,
    pub op_log: Option<PathBuf>,
}

/// A load run, fully resolved.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub options: LoadOptions,
    pub report: Option<PathBuf>,
}

fn positive<T: PartialOrd + Default + std::fmt::Display>(
    name: &str,
    value: T,
) -> Result<T, String> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(format!("--{name} must be above 0, got {value}"))
    }
}

/// Where a `social` or `work` run goes, before its kind's own settings.
enum Place {
    Url(String),
    DataDir(PathBuf),
}

/// `--url URL` or `--embedded --data-dir DIR` (flags already merged with the file), exactly one.
fn place(embedded: bool, url: Option<String>, data_dir: Option<PathBuf>) -> Result<Place, String> {
    match (embedded, url, data_dir) {
        (true, None, Some(data_dir)) => Ok(Place::DataDir(data_dir)),
        (true, None, None) => Err("--embedded needs --data-dir DIR".into()),
        (true, Some(_), _) => Err("give either --url or --embedded, not both".into()),
        (false, Some(url), _) => Ok(Place::Url(url)),
        (false, None, _) => {
            Err("give --url URL (a running server) or --embedded --data-dir DIR".into())
        }
    }
}

/// Merges flags, the file and defaults for `social`.
pub fn resolve_social(args: &SocialArgs, config: Option<&Path>) -> Result<SocialPlan, String> {
    let file = read_file_config(config)?;
    let section = &file.social;
    let common = &args.common;
    let seed = common
        .seed
        .or(section.seed)
        .or(file.seed)
        .unwrap_or_else(seed_from_time);
    let url = common
        .url
        .clone()
        .or(section.url.clone())
        .or(file.url.clone());
    let embedded = args.embedded || section.embedded.unwrap_or(false);
    let data_dir = args.data_dir.clone().or(section.data_dir.clone());
    let target = match place(embedded, url, data_dir)? {
        Place::DataDir(data_dir) => Target::Embedded {
            data_dir,
            hash_memory_kib: args.hash_memory_kib.or(section.hash_memory_kib),
            hash_iterations: args.hash_iterations.or(section.hash_iterations),
        },
        Place::Url(url) => Target::Http { url },
    };
    let mail_list = match args.mail_list.clone().or(section.mail_list.clone()) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|error| format!("--mail-list {}: {error}", path.display()))?;
            parse_mail_list(&text)
        }
        None => builtin_mail_list(),
    };
    let options = SocialOptions {
        seed,
        users: positive("users", args.users.or(section.users).unwrap_or(50))?,
        max_posts: positive(
            "max-posts",
            args.max_posts.or(section.max_posts).unwrap_or(7),
        )?,
        max_likes: positive(
            "max-likes",
            args.max_likes.or(section.max_likes).unwrap_or(10),
        )?,
        concurrency: positive(
            "concurrency",
            args.concurrency.or(section.concurrency).unwrap_or(1),
        )?,
        mail_list: Arc::new(mail_list),
        check_every_round: args.check_every_round || section.check_every_round.unwrap_or(false),
        progress: common
            .progress
            .or(section.progress)
            .or(file.progress)
            .unwrap_or_default(),
    };
    let timeout_ms = common
        .timeout_ms
        .or(section.timeout_ms)
        .or(file.timeout_ms)
        .unwrap_or(30_000);
    Ok(SocialPlan {
        target,
        options,
        timeout: Duration::from_millis(positive("timeout-ms", timeout_ms)?),
        report: common
            .report
            .clone()
            .or(section.report.clone())
            .or(file.report),
        op_log: args.op_log.clone().or(section.op_log.clone()),
    })
}

/// Merges flags, the file and defaults for `load`.
pub fn resolve_load(args: &LoadArgs, config: Option<&Path>) -> Result<LoadPlan, String> {
    let file = read_file_config(config)?;
    let section = &file.load;
    let common = &args.common;
    let url = common
        .url
        .clone()
        .or(section.url.clone())
        .or(file.url.clone())
        .ok_or("load needs --url URL (a running server)")?;
    let mix = match &args.mix {
        Some(text) => Mix::parse(text)?,
        None => match section.mix.clone() {
            Some(mix) => mix,
            // Invariant: the default mix is a constant that parses.
            None => Mix::parse(DEFAULT_MIX).expect("default mix parses"),
        },
    };
    let timeout_ms = common
        .timeout_ms
        .or(section.timeout_ms)
        .or(file.timeout_ms)
        .unwrap_or(30_000);
    let duration = positive(
        "duration",
        args.duration.or(section.duration).unwrap_or(10.0),
    )?;
    let options = LoadOptions {
        url,
        seed: common
            .seed
            .or(section.seed)
            .or(file.seed)
            .unwrap_or_else(seed_from_time),
        rate: positive("rate", args.rate.or(section.rate).unwrap_or(1000.0))?,
        duration: Duration::from_secs_f64(duration),
        connections: positive(
            "connections",
            args.connections.or(section.connections).unwrap_or(32),
        )?,
        pipeline: positive("pipeline", args.pipeline.or(section.pipeline).unwrap_or(1))?,
        threads: positive("threads", args.threads.or(section.threads).unwrap_or(1))?,
        mix,
        setup_users: args.setup_users.or(section.setup_users).unwrap_or(0),
        setup_posts: args.setup_posts.or(section.setup_posts).unwrap_or(2),
        timeout: Duration::from_millis(positive("timeout-ms", timeout_ms)?),
        progress: common
            .progress
            .or(section.progress)
            .or(file.progress)
            .unwrap_or_default(),
    };
    Ok(LoadPlan {
        options,
        report: common
            .report
            .clone()
            .or(section.report.clone())
            .or(file.report),
    })
}

/// The binary's entry point: parses the command line, runs, prints, returns the exit code.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// As [`main`], with explicit arguments (the first is the program name).
pub fn main_from<I, T>(arguments: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(arguments) {
        Ok(cli) => cli,
        Err(error) => {
            // clap would exit with 2 on a usage error; 2 means a mismatch here.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 1 } else { 0 });
        }
    };
    let code = match &cli.command {
        Command::Social(args) => match resolve_social(args, cli.config.as_deref()) {
            Ok(plan) => run_social_plan(plan),
            Err(message) => usage_error(&message),
        },
        Command::Load(args) => match resolve_load(args, cli.config.as_deref()) {
            Ok(plan) => run_load_plan(plan),
            Err(message) => usage_error(&message),
        },
        Command::Work(args) => match resolve_work(args, cli.config.as_deref()) {
            Ok(plan) => run_work_plan(plan),
            Err(message) => usage_error(&message),
        },
    };
    ExitCode::from(code)
}

fn usage_error(message: &str) -> u8 {
    eprintln!("switchyard-bot: {message}");
    Outcome::Error.exit_code()
}

/// Prints the report (and writes it), and the seed again when the run did not finish.
fn conclude(report: &Report, report_path: Option<&Path>) -> u8 {
    print!("{}", report.render_text());
    if let Some(path) = report_path {
        if let Err(error) = std::fs::write(path, report.to_json()) {
            eprintln!(
                "switchyard-bot: writing the report to {}: {error}",
                path.display()
            );
            return Outcome::Error.exit_code();
        }
    }
    if report.outcome != Outcome::Finished {
        println!(
            "{:?} (exit code {}); replay with --seed {}",
            report.outcome, report.exit_code, report.seed
        );
    }
    report.exit_code
}

/// Runs a resolved simulation on a new tokio runtime; returns the exit code.
pub fn run_social_plan(plan: SocialPlan) -> u8 {
    println!(
        "seed {} (replay with --seed {})",
        plan.options.seed, plan.options.seed
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return usage_error(&format!("starting the runtime: {error}")),
    };
    let run = runtime.block_on(async {
        match &plan.target {
            Target::Http { url } => {
                let transport = HttpTransport::new(url, plan.options.concurrency, plan.timeout)
                    .map_err(|e| e.to_string())?;
                Ok(social::run(Arc::new(transport), plan.options.clone()).await)
            }
            Target::Embedded {
                data_dir,
                hash_memory_kib,
                hash_iterations,
            } => {
                let config =
                    EmbeddedTransport::config(data_dir, *hash_memory_kib, *hash_iterations);
                let transport =
                    tokio::task::spawn_blocking(move || EmbeddedTransport::open(config))
                        .await
                        .map_err(|error| error.to_string())?
                        .map_err(|error| {
                            format!("opening the engine in {}: {error}", data_dir.display())
                        })?;
                let transport = Arc::new(transport);
                let run = social::run(transport.clone(), plan.options.clone()).await;
                let closing = transport.clone();
                tokio::task::spawn_blocking(move || closing.shutdown())
                    .await
                    .map_err(|error| error.to_string())?
                    .map_err(|error| format!("shutting the engine down: {error}"))?;
                Ok::<_, String>(run)
            }
        }
    });
    let run = match run {
        Ok(run) => run,
        Err(message) => {
            let code = usage_error(&message);
            println!("replay with --seed {}", plan.options.seed);
            return code;
        }
    };
    if let Some(path) = &plan.op_log {
        let mut text = run.op_log.join("\n");
        text.push('\n');
        if let Err(error) = std::fs::write(path, text) {
            eprintln!(
                "switchyard-bot: writing the op log to {}: {error}",
                path.display()
            );
            return Outcome::Error.exit_code();
        }
    }
    conclude(&run.report, plan.report.as_deref())
}

/// Runs a resolved load on a runtime with `threads` workers; returns the exit code.
pub fn run_load_plan(plan: LoadPlan) -> u8 {
    println!(
        "seed {} (replay with --seed {})",
        plan.options.seed, plan.options.seed
    );
    let runtime = if plan.options.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.options.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => return usage_error(&format!("starting the runtime: {error}")),
    };
    let report = runtime.block_on(load::run(plan.options.clone()));
    conclude(&report, plan.report.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(arguments: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("switchyard-bot").chain(arguments.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.toml");
        std::fs::write(
            &path,
            "seed = 9\nurl = \"http://127.0.0.1:1\"\n[social]\nusers = 12\nmax_likes = 3\n[load]\nmix = \"health=100\"\nrate = 5.0\n",
        )
        .unwrap();
        let cli = parse(&["social", "--users", "4", "--config", path.to_str().unwrap()]);
        let Command::Social(args) = &cli.command else {
            panic!("social")
        };
        let plan = resolve_social(args, cli.config.as_deref()).unwrap();
        assert_eq!(plan.options.users, 4);
        assert_eq!(plan.options.max_likes, 3);
        assert_eq!(plan.options.max_posts, 7);
        assert_eq!(plan.options.seed, 9);
        assert!(matches!(plan.target, Target::Http { .. }));
        let cli = parse(&["load", "--config", path.to_str().unwrap(), "--rate", "7"]);
        let Command::Load(args) = &cli.command else {
            panic!("load")
        };
        let plan = resolve_load(args, cli.config.as_deref()).unwrap();
        assert_eq!(plan.options.rate, 7.0);
        assert_eq!(plan.options.mix, Mix::parse("health=100").unwrap());
        std::fs::write(&path, "[social]\nuser = 3\n").unwrap();
        let error = resolve_social(&SocialArgs::default(), Some(&path)).unwrap_err();
        assert!(error.contains("unknown field"), "{error}");
    }

    #[test]
    fn targets_need_url_or_embedded_data_dir() {
        let args = SocialArgs {
            embedded: true,
            ..SocialArgs::default()
        };
        assert!(resolve_social(&args, None)
            .unwrap_err()
            .contains("--data-dir"));
        assert!(resolve_social(&SocialArgs::default(), None).is_err());
    }

    #[test]
    fn work_targets_need_url_or_embedded_data_dir() {
        let embedded = WorkArgs {
            embedded: true,
            ..WorkArgs::default()
        };
        assert!(resolve_work(&embedded, None)
            .unwrap_err()
            .contains("--data-dir"));
        let both = WorkArgs {
            embedded: true,
            data_dir: Some("/tmp/x".into()),
            common: CommonArgs {
                url: Some("http://127.0.0.1:1".into()),
                ..CommonArgs::default()
            },
            ..WorkArgs::default()
        };
        assert!(resolve_work(&both, None).unwrap_err().contains("not both"));
        assert!(resolve_work(&WorkArgs::default(), None)
            .unwrap_err()
            .contains("--url"));
        let cli = parse(&[
            "work",
            "--embedded",
            "--data-dir",
            "/tmp/x",
            "--lease-seconds",
            "1",
            "--bucket-size",
            "10",
            "--crash-percent",
            "0",
        ]);
        let Command::Work(args) = &cli.command else {
            panic!("work")
        };
        let plan = resolve_work(args, None).unwrap();
        assert!(matches!(
            plan.target,
            WorkTarget::Embedded {
                lease_seconds: 1,
                bucket_size: Some(10),
                max_expiries: None,
                ..
            }
        ));
        assert_eq!(plan.options.crash_percent, 0);
        assert_eq!(plan.options.items, 2000);
        let cli = parse(&[
            "work",
            "--url",
            "http://127.0.0.1:1",
            "--admin-token",
            "t",
            "--lease-seconds",
            "1",
        ]);
        let Command::Work(args) = &cli.command else {
            panic!("work")
        };
        assert!(resolve_work(args, None)
            .unwrap_err()
            .contains("embedded engine"));
    }

    #[test]
    fn lease_only_gets_a_long_embedded_lease_and_refuses_crashes() {
        let resolve = |arguments: &[&str]| {
            let cli = parse(arguments);
            let Command::Work(args) = &cli.command else {
                panic!("work")
            };
            resolve_work(args, cli.config.as_deref())
        };
        let embedded = ["work", "--embedded", "--data-dir", "/tmp/x", "--lease-only"];
        let plan = resolve(&embedded).unwrap();
        assert_eq!(plan.mode, WorkMode::LeaseOnly);
        assert_eq!(plan.options.crash_percent, 0);
        assert!(matches!(
            plan.target,
            WorkTarget::Embedded {
                lease_seconds: EMBEDDED_LEASE_ONLY_LEASE_SECONDS,
                ..
            }
        ));
        let plan = resolve(
            &[
                &embedded[..],
                &["--lease-seconds", "9", "--crash-percent", "0"],
            ]
            .concat(),
        )
        .unwrap();
        assert!(matches!(
            plan.target,
            WorkTarget::Embedded {
                lease_seconds: 9,
                ..
            }
        ));
        let error = resolve(&[&embedded[..], &["--crash-percent", "10"]].concat()).unwrap_err();
        assert!(
            error.contains("--lease-only") && error.contains("--crash-percent"),
            "{error}"
        );
        let plan = resolve(&["work", "--embedded", "--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(plan.mode, WorkMode::Drain);
        assert_eq!(plan.options.crash_percent, 10);
        assert!(matches!(
            plan.target,
            WorkTarget::Embedded {
                lease_seconds: EMBEDDED_LEASE_SECONDS,
                ..
            }
        ));
        // The file's [work] section may ask for it too; a crash percentage there is refused.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.toml");
        std::fs::write(&path, "[work]\nlease_only = true\ncrash_percent = 5\n").unwrap();
        let error = resolve(&[
            "work",
            "--embedded",
            "--data-dir",
            "/tmp/x",
            "--config",
            path.to_str().unwrap(),
        ])
        .unwrap_err();
        assert!(error.contains("--crash-percent"), "{error}");
    }

    #[test]
    fn the_shipped_mail_list_is_large_distinct_and_deliverable() {
        let list = builtin_mail_list();
        assert!(list.len() >= 5_000, "{}", list.len());
        let distinct: std::collections::BTreeSet<String> = list
            .iter()
            .map(|address| address.to_ascii_lowercase())
            .collect();
        assert_eq!(distinct.len(), list.len());
        for address in &list {
            assert!(
                switchyard_engine::social::offline_email_verdict(address).is_ok(),
                "{address}"
            );
            let domain = address.rsplit_once('@').unwrap().1;
            assert!(["example.com", "example.org", "example.net"].contains(&domain));
        }
    }
}
