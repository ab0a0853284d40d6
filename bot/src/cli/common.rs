//! What every subcommand shares: the common flags ([`CommonArgs`]: seed, URL, report, progress,
//! timeout), the target flags of `social`, `work` and `market` ([`TargetArgs`]: `--embedded --data-dir`),
//! the TOML file (`--config`), and how a flag, the file's subcommand section and the file's top
//! level merge (in that order, then the default).
//!
//! The file's sections repeat the common keys as plain fields (`CommonKeys` gathers them):
//! serde's `flatten` cannot be combined with `deny_unknown_fields`, and an unknown key must stay
//! an error.

use std::path::PathBuf;

use clap::Args;

use crate::progress::ProgressMode;
use crate::rng::seed_from_time;

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

/// `--url URL` or `--embedded --data-dir DIR`: where `social`, `work` and `market` run.
#[derive(Debug, Clone, Args, Default)]
pub struct TargetArgs {
    /// Run against an engine opened in this process (needs --data-dir) instead of --url.
    #[arg(long)]
    pub embedded: bool,
    /// The embedded engine's data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl TargetArgs {
    /// Merges the flags with the file's section and resolves the place (`url` already merged).
    pub(super) fn place(
        &self,
        url: Option<String>,
        file_embedded: Option<bool>,
        file_data_dir: Option<PathBuf>,
    ) -> Result<Place, String> {
        let embedded = self.embedded || file_embedded.unwrap_or(false);
        let data_dir = self.data_dir.clone().or(file_data_dir);
        place(embedded, url, data_dir)
    }
}

/// The file's keys that the top level and every section share (the flags of [`CommonArgs`]).
#[derive(Debug, Default, Clone)]
pub(super) struct CommonKeys {
    pub seed: Option<u64>,
    pub url: Option<String>,
    pub report: Option<PathBuf>,
    pub progress: Option<ProgressMode>,
    pub timeout_ms: Option<u64>,
}

/// The common settings of a run, merged: the flag, else the file's section, else its top level,
/// else the default.
#[derive(Debug, Clone)]
pub(super) struct Common {
    /// A seed from the clock when none is given (the run prints it).
    pub seed: u64,
    pub url: Option<String>,
    pub report: Option<PathBuf>,
    pub progress: ProgressMode,
    /// Not yet checked (each subcommand checks it where it always has: `positive`).
    pub timeout_ms: u64,
}

impl CommonArgs {
    pub(super) fn merge(&self, section: CommonKeys, top: CommonKeys) -> Common {
        Common {
            seed: self
                .seed
                .or(section.seed)
                .or(top.seed)
                .unwrap_or_else(seed_from_time),
            url: self.url.clone().or(section.url).or(top.url),
            report: self.report.clone().or(section.report).or(top.report),
            progress: self
                .progress
                .or(section.progress)
                .or(top.progress)
                .unwrap_or_default(),
            timeout_ms: self
                .timeout_ms
                .or(section.timeout_ms)
                .or(top.timeout_ms)
                .unwrap_or(30_000),
        }
    }
}

pub(super) fn positive<T: PartialOrd + Default + std::fmt::Display>(
    name: &str,
    value: T,
) -> Result<T, String> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(format!("--{name} must be above 0, got {value}"))
    }
}

/// Where a `social`, `work` or `market` run goes, before its kind's own settings.
pub(super) enum Place {
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
