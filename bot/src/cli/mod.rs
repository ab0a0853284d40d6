//! The command line: clap definitions, the optional TOML file (`--config`), how the two merge
//! (a flag beats the file's subcommand section, which beats the file's top level, which beats
//! the default), and [`main`], which runs a subcommand and turns its outcome into the exit code.
//!
//! Subcommands: `social` (the simulation), `load` (the load generator), `work` (simulated
//! work clients, [`crate::work`]) and `market` (orders with idempotency keys,
//! [`crate::market`]); `social`, `work` and `market` run over HTTP (`--url`) or against an
//! engine opened in-process (`--embedded --data-dir`).
//!
//! # Layout
//! - `mod.rs` (this file): the clap root ([`Cli`], [`Command`]), [`main`], the exit codes and
//!   the final report.
//! - `common`: what every subcommand shares: the common flags ([`CommonArgs`]), the target
//!   flags of `social`, `work` and `market` ([`TargetArgs`]), the TOML file, and the merge of a flag, the
//!   file's section and the file's top level.
//! - `social`, `load`, `work`, `market`: one module per subcommand: its flags, its file section, its
//!   resolved plan, and how it runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::report::{Outcome, Report};

mod common;
mod fanout;
mod file;
mod load;
mod market;
mod social;
mod work;

pub use common::{CommonArgs, TargetArgs};
pub use load::{resolve_load, run_load_plan, LoadArgs, LoadPlan};
pub use market::{
    parse_price, resolve_market, run_market, run_market_plan, MarketArgs, MarketPlan, MarketTarget,
    DEFAULT_PRICE,
};
pub use social::{
    builtin_mail_list, parse_mail_list, resolve_social, run_social_plan, SocialArgs, SocialPlan,
    Target,
};
pub use work::{resolve_work, run_work, run_work_plan, WorkArgs, WorkPlan, WorkTarget};

use load::LOAD_ABOUT;
use market::MARKET_ABOUT;
use social::SOCIAL_ABOUT;
use work::WORK_ABOUT;

/// The exit codes, as printed by `--help` (and in bot/README.md).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  finished: every phase ran and every check agreed
  1  error: the server was unreachable or failed (no answer, 5xx), or the options or the
     configuration are invalid (usage errors included)
  2  consistency mismatch: the server disagrees with the bot's ledger; every difference is
     printed";

#[derive(Debug, Parser)]
#[command(
    name = "switchyard-bot",
    version,
    about = "Simulated users and load generation for Switchyard.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// TOML file with defaults: top-level keys (seed, url, report, progress, timeout_ms) and
    /// [social] / [load] / [work] / [market] sections with the flags' names in snake_case. Flags win.
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
    /// Seeded users place orders with idempotency keys (some sent twice, failures retried with
    /// the same key); then check the server's orders match the bot's ledger exactly.
    #[command(long_about = MARKET_ABOUT, after_help = EXIT_CODES)]
    Market(MarketArgs),
    /// One dispatch's fan-out to a loopback webhook receiver: notifications/s, time to the last
    /// delivery, the API's latency meanwhile, the server's peak RSS.
    #[command(long_about = fanout::FANOUT_ABOUT)]
    Fanout(fanout::FanoutArgs),
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
        Command::Market(args) => match resolve_market(args, cli.config.as_deref()) {
            Ok(plan) => run_market_plan(plan),
            Err(message) => usage_error(&message),
        },
        Command::Fanout(args) => fanout::run_fanout(args),
    };
    ExitCode::from(code)
}

pub(super) fn usage_error(message: &str) -> u8 {
    eprintln!("switchyard-bot: {message}");
    Outcome::Error.exit_code()
}

/// Prints the report (and writes it), and the seed again when the run did not finish.
pub(super) fn conclude(report: &Report, report_path: Option<&Path>) -> u8 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Mix;

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
}
