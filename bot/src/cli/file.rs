//! The bot's TOML file (`--config`): its top level (the common keys) and one section per
//! subcommand, each section's schema here so that the file is read, and refused on an unknown
//! key, in one place. The subcommands merge their section with their flags (`common.rs` says
//! in which order). Kept apart from `common.rs` so no module of `cli/` imports in a circle:
//! `common` ← `file` ← each subcommand.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::common::CommonKeys;
use crate::load::Mix;
use crate::progress::ProgressMode;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoadFile {
    pub(super) seed: Option<u64>,
    pub(super) url: Option<String>,
    pub(super) report: Option<PathBuf>,
    pub(super) progress: Option<ProgressMode>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) rate: Option<f64>,
    pub(super) duration: Option<f64>,
    pub(super) connections: Option<usize>,
    pub(super) mix: Option<Mix>,
    pub(super) pipeline: Option<usize>,
    pub(super) threads: Option<usize>,
    pub(super) setup_users: Option<usize>,
    pub(super) setup_posts: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MarketFile {
    pub(super) seed: Option<u64>,
    pub(super) url: Option<String>,
    pub(super) report: Option<PathBuf>,
    pub(super) progress: Option<ProgressMode>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) embedded: Option<bool>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) users: Option<usize>,
    pub(super) orders: Option<usize>,
    pub(super) concurrency: Option<usize>,
    pub(super) retry_percent: Option<u64>,
    pub(super) max_amount: Option<String>,
    pub(super) cap_satoshis: Option<u64>,
    pub(super) deadline_seconds: Option<u64>,
    pub(super) price: Option<String>,
    pub(super) rate_limit_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SocialFile {
    pub(super) seed: Option<u64>,
    pub(super) url: Option<String>,
    pub(super) report: Option<PathBuf>,
    pub(super) progress: Option<ProgressMode>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) embedded: Option<bool>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) users: Option<usize>,
    pub(super) max_posts: Option<u64>,
    pub(super) max_likes: Option<u64>,
    pub(super) concurrency: Option<usize>,
    pub(super) mail_list: Option<PathBuf>,
    pub(super) op_log: Option<PathBuf>,
    pub(super) check_every_round: Option<bool>,
    pub(super) hash_memory_kib: Option<u32>,
    pub(super) hash_iterations: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WorkFile {
    pub(super) seed: Option<u64>,
    pub(super) url: Option<String>,
    pub(super) report: Option<PathBuf>,
    pub(super) progress: Option<ProgressMode>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) embedded: Option<bool>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) clients: Option<usize>,
    pub(super) items: Option<usize>,
    pub(super) max_buckets: Option<usize>,
    pub(super) crash_percent: Option<u64>,
    pub(super) lease_only: Option<bool>,
    pub(super) deadline_seconds: Option<u64>,
    pub(super) lease_seconds: Option<u64>,
    pub(super) bucket_size: Option<usize>,
    pub(super) max_expiries: Option<u32>,
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    seed: Option<u64>,
    url: Option<String>,
    report: Option<PathBuf>,
    progress: Option<ProgressMode>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    pub social: SocialFile,
    #[serde(default)]
    pub load: LoadFile,
    #[serde(default)]
    pub work: WorkFile,
    #[serde(default)]
    pub market: MarketFile,
}

impl FileConfig {
    /// The top level's common keys.
    pub(super) fn common(&self) -> CommonKeys {
        CommonKeys {
            seed: self.seed,
            url: self.url.clone(),
            report: self.report.clone(),
            progress: self.progress,
            timeout_ms: self.timeout_ms,
        }
    }
}

pub(super) fn read_file_config(path: Option<&Path>) -> Result<FileConfig, String> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("--config {}: {error}", path.display()))?;
    toml::from_str(&text).map_err(|error| format!("--config {}: {error}", path.display()))
}
