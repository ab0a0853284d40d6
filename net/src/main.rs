//! The `switchyard` binary: parse the command line and configuration, set up logging, lock the
//! data dir, build the tokio runtime, bind, and call [`switchyard_net::run`] until SIGINT or
//! SIGTERM. Thin on purpose: everything testable lives in the library.
//!
//! The data dir is locked before the address is bound: a second server on the same dir exits 1
//! ("... is locked by another process") without binding or printing its listening line.
//!
//! Exit codes: 0 after a graceful shutdown; 1 when start-up fails (bad configuration, the address
//! is taken, the data directory is locked or unreadable) or the engine fails to shut down, with a
//! one-line message on stderr; 2 for command-line syntax errors (clap's convention).

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use switchyard_net::config::{Flags, ServerConfig};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc malloc: under a saturating HTTP like load glibc's `_int_malloc`,
/// `malloc_consolidate` and arena growth were ~18% of the actor thread; with mimalloc the
/// actor-thread CPU per like fell from 37-40 µs to 30-34 µs (A/B of one build with and without
/// it, `switchyard-bot load --mix like=100 --connections 64 --rate 30000`).
///
/// Built with `no_thp`: mimalloc otherwise asks for transparent huge pages on its arenas, and
/// every first touch of one zeroes 2 MiB in the page-fault handler (`clear_page_erms` was 13% of
/// the actor threads' samples under a lease-only load, where each lease starts a bucket actor).
/// Without them the same load ran at 36.3-36.7k leases/s instead of 30.5-31.8k, with ~10% less
/// peak RSS (alternating runs of `switchyard-bot work --lease-only`, 200,000 one-item buckets,
/// 64 clients, `MIMALLOC_ALLOW_THP=0|1`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switchyard: five backend workloads on one actor engine with a write-ahead log.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, `switchyard` serves with these options.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve(ServeArgs),
    /// Print the effective configuration (the same options as `serve`): every key with its
    /// value, its default and its unit, then exit.
    Config(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (`host:port`; port 0 picks a free one). [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory (created if missing; locked while the server runs). [default: data/state]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Admin bearer token (or SWITCHYARD_ADMIN_TOKEN).
    #[arg(long, value_name = "TOKEN")]
    admin_token: Option<String>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one configuration key, e.g. `--set limits.max_body_bytes=1024` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Compatibility route sets: social, events, market, dispatch (comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    compat: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let outcome = match cli.command {
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Config(args)) => print_config(args),
        None => serve(cli.serve),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries only the listening line), filtered by RUST_LOG.
fn init_tracing() {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(error) => {
            if std::env::var_os("RUST_LOG").is_some() {
                eprintln!("switchyard: ignoring RUST_LOG ({error}); using `info`");
            }
            EnvFilter::new("info")
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
}

/// The configuration from every layer (defaults, file, `--set`, flags, environment).
fn configuration(args: ServeArgs) -> anyhow::Result<ServerConfig> {
    let flags = Flags {
        listen: args.listen,
        data_dir: args.data_dir,
        admin_token: args.admin_token,
        compat: args.compat,
    };
    let sections = switchyard_net::domains::config_sections();
    Ok(ServerConfig::build(
        args.config.as_deref(),
        &args.set,
        flags,
        |name| std::env::var(name).ok(),
        &sections,
    )?)
}

/// `switchyard config`: one line per key, `key = value  # default …, unit`; secrets are never
/// printed (only whether they are set).
fn print_config(args: ServeArgs) -> anyhow::Result<()> {
    let config = configuration(args)?;
    let rows = config.describe(&switchyard_net::domains::config_sections());
    let width = rows.iter().map(|row| row.key.len()).max().unwrap_or(0);
    let mut out = String::new();
    for row in rows {
        let unit = if row.unit.is_empty() {
            String::new()
        } else {
            format!(", {}", row.unit)
        };
        out.push_str(&format!(
            "{:width$} = {}  # default {}{unit}\n",
            row.key, row.value, row.default
        ));
    }
    for (name, set) in [
        ("admin token", config.secrets.admin_token.is_some()),
        ("JWT secret", config.secrets.jwt_secret.is_some()),
    ] {
        let state = if set { "set" } else { "unset" };
        out.push_str(&format!("# {name}: {state}\n"));
    }
    print!("{out}");
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Test builds only (the engine's `failpoints` feature): arm what FAILPOINTS names.
    switchyard_engine::failpoints::from_env();
    let config = configuration(args)?;
    let lock = switchyard_net::lock_data_dir(&config)?;
    let runtime = build_runtime(config.server.worker_threads)?;
    let result = runtime.block_on(async {
        let listen = config.server.listen.clone();
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        switchyard_net::run(listener, config, lock, shutdown).await?;
        anyhow::Ok(())
    });
    // Connections abandoned at the drain deadline must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// One thread (the default) runs a current-thread runtime; more run a multi-thread runtime.
fn build_runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(worker_threads);
        builder
    };
    builder
        .enable_all()
        .thread_name("switchyard-http")
        .build()
        .context("building the tokio runtime")
}

/// Resolves on the first SIGINT or SIGTERM. A second signal during the drain exits at once
/// (exit code 1): safe, since recovery handles any stop, but it skips the final checkpoint.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("switchyard: second signal; exiting without a clean shutdown");
            std::process::exit(1);
        });
    })
}
