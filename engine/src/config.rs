//! The engine's configuration: the runtime's limits (every field a named limit with its unit last
//! and a default) and one section per domain. A domain's section is its own type
//! ([`DomainConfig`]), kept in [`EngineConfig`]'s sections by type and registered with the
//! domain (`runtime::Registry::config`), so this module names no domain. `net` fills it from
//! TOML and `--set`; tests use `EngineConfig::for_tests`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledge after the fdatasync of the record's batch returned (group commit).
    #[default]
    Sync,
    /// Acknowledge at once; the WAL writer syncs every `durability_batch_ms`. A crash may lose
    /// the last `durability_batch_ms` of acknowledged writes.
    Batch,
}

/// WAL settings.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory holding the segment files.
    pub dir: PathBuf,
    /// A segment is rolled when it would grow past this size.
    pub segment_bytes_max: u64,
    /// Depth of the append queue in front of the writer thread; full → `Error::Overloaded`.
    pub queue_depth_max: usize,
    /// Largest batch the writer assembles before one fdatasync.
    pub batch_bytes_max: usize,
    /// Largest single record payload; larger appends are rejected (a programmer error upstream).
    pub record_bytes_max: usize,
    pub durability: Durability,
    /// In `batch` durability, the interval between fdatasyncs.
    pub durability_batch_ms: u64,
    /// Preallocate new segments to `segment_bytes_max` (fallocate) so appends overwrite
    /// allocated blocks, which halves the fdatasync cost on this disk.
    pub preallocate: bool,
}

impl WalConfig {
    pub fn new(dir: PathBuf) -> Self {
        WalConfig {
            dir,
            segment_bytes_max: 64 * 1024 * 1024,
            queue_depth_max: 65_536,
            batch_bytes_max: 4 * 1024 * 1024,
            record_bytes_max: 1024 * 1024,
            durability: Durability::Sync,
            durability_batch_ms: 10,
            preallocate: true,
        }
    }
}

/// Everything the engine needs to open. Built by `net` from TOML and `--set`, or by an embedding
/// program directly.
///
/// Its serde form is the server's `[engine]` section, the schema of those keys: every field
/// but the data dir, the durability pair (top-level keys of the server) and the domain sections
/// (each domain's own section), with the defaults of [`EngineConfig::new`], the only place they
/// are stated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// The data directory: `wal/` (segments), `checkpoint.redb` (checkpoints), `LOCK`.
    #[serde(skip)]
    pub data_dir: PathBuf,
    #[serde(skip)]
    pub durability: Durability,
    /// In `batch` durability, the interval between fdatasyncs (the data-loss window).
    #[serde(skip)]
    pub durability_batch_ms: u64,
    /// Number of actor arbiters (threads). Ids hash to a shard.
    pub shards: usize,
    /// Messages waiting for one actor before it reports `Overloaded`.
    pub mailbox_depth_max: usize,
    /// An actor idle (no message) for this long is snapshotted and stopped.
    pub passivate_after_ms: u64,
    /// Interval between background checkpoint passes.
    pub checkpoint_interval_ms: u64,
    /// Interval between checks for due durable timers (a timer fires at most this late).
    pub timer_tick_ms: u64,
    /// A WAL segment is rolled past this size.
    pub wal_segment_bytes_max: u64,
    /// Depth of the WAL append queue; full → `Overloaded`.
    pub wal_queue_depth_max: usize,
    /// Preallocate WAL segments (see `WalConfig::preallocate`).
    pub wal_preallocate: bool,
    /// The checkpoint store's (redb's) cache size: a tenth of it buffers writes, the rest caches
    /// pages read. Key `engine.store_cache_bytes` (`engine.sled_cache_bytes`, its name before
    /// redb, still works).
    #[serde(alias = "sled_cache_bytes")]
    pub store_cache_bytes: u64,
    /// Effects logged and waiting to be handed to their worker pools; when full, a command that
    /// would enqueue more is refused with `Overloaded` (503) until the pools catch up.
    pub effects_queue_depth_max: usize,
    /// How often pending effects are swept (handed out again if due and not in flight): bounds
    /// how late a retry or a skipped handoff runs.
    pub effects_sweep_ms: u64,
    /// Start even when the WAL ends below the highest LSN checkpointed snapshots reflect (acknowledged
    /// records lost by the disk or a truncated log): the engine goes on above that LSN, keeping
    /// what the snapshots hold. Off by default, so such a loss stops start-up with both LSNs
    /// named; an operator turns it on once, knowingly.
    pub recovery_accept_wal_loss: bool,
    /// One section per domain, by type (see [`DomainConfig`]); missing ones are filled with
    /// their defaults when the engine opens.
    #[serde(skip)]
    pub sections: Sections,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig::new("")
    }
}

/// A domain's configuration section. Its serde form is the schema of the section's keys (the
/// server reads and prints them through it), with the defaults of its `Default`, the only place
/// they are stated.
pub trait DomainConfig:
    std::any::Any
    + Clone
    + std::fmt::Debug
    + Default
    + Send
    + Sync
    + Serialize
    + serde::de::DeserializeOwned
    + 'static
{
    /// The section's name in the configuration (`work` for `work.*` keys).
    const SECTION: &'static str;

    /// Checks ranges and relations between this section's limits.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Domain config sections, one per type.
#[derive(Default)]
pub struct Sections(std::collections::BTreeMap<&'static str, Box<dyn AnySection>>);

trait AnySection: std::any::Any + std::fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn std::any::Any;
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
    fn clone_box(&self) -> Box<dyn AnySection>;
}

impl<T: DomainConfig> AnySection for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn clone_box(&self) -> Box<dyn AnySection> {
        Box::new(self.clone())
    }
}

impl Clone for Sections {
    fn clone(&self) -> Self {
        Sections(
            self.0
                .iter()
                .map(|(name, section)| (*name, section.clone_box()))
                .collect(),
        )
    }
}

impl std::fmt::Debug for Sections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl EngineConfig {
    /// Section `T`. Panics if it is missing, which cannot happen inside an open engine (it fills
    /// every registered section): before opening, use [`EngineConfig::section_mut`].
    pub fn section<T: DomainConfig>(&self) -> &T {
        // Invariant: see the doc comment.
        self.sections
            .0
            .get(T::SECTION)
            .and_then(|section| section.as_ref().as_any().downcast_ref::<T>())
            .unwrap_or_else(|| panic!("config section {} is not set", T::SECTION))
    }

    /// Section `T`, created with its defaults if missing.
    pub fn section_mut<T: DomainConfig>(&mut self) -> &mut T {
        let section = self
            .sections
            .0
            .entry(T::SECTION)
            .or_insert_with(|| Box::new(T::default()));
        // Invariant: a section is stored under its type's SECTION, so the name finds the type.
        section
            .as_mut()
            .as_any_mut()
            .downcast_mut::<T>()
            .expect("a section of its own type")
    }

    /// Whether a section of this type is set.
    pub fn has_section(&self, type_id: std::any::TypeId) -> bool {
        self.sections
            .0
            .values()
            .any(|section| section.as_ref().as_any().type_id() == type_id)
    }
}

impl EngineConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            durability: Durability::Sync,
            durability_batch_ms: 10,
            shards: 1,
            mailbox_depth_max: 1024,
            passivate_after_ms: 300_000,
            checkpoint_interval_ms: 1_000,
            timer_tick_ms: 100,
            wal_segment_bytes_max: 64 * 1024 * 1024,
            wal_queue_depth_max: 65_536,
            wal_preallocate: true,
            store_cache_bytes: 256 * 1024 * 1024,
            recovery_accept_wal_loss: false,
            effects_queue_depth_max: 65_536,
            effects_sweep_ms: 1_000,
            sections: Sections::default(),
        }
    }

    /// Small, fast runtime settings for tests: tiny segments, no preallocation, frequent
    /// checkpoints (`EngineConfig::for_tests` adds each domain's).
    pub fn for_tests_runtime(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            wal_segment_bytes_max: 256 * 1024,
            wal_preallocate: false,
            checkpoint_interval_ms: 50,
            store_cache_bytes: 8 * 1024 * 1024,
            ..EngineConfig::new(data_dir)
        }
    }

    /// Checks relations between limits; called by `Engine::open`.
    pub fn validate(&self) -> Result<(), String> {
        if self.shards == 0 || self.shards > 256 {
            return Err(format!("shards must be 1..=256, got {}", self.shards));
        }
        if self.mailbox_depth_max == 0 {
            return Err("mailbox_depth_max must be at least 1".into());
        }
        if self.wal_queue_depth_max == 0 {
            return Err("wal_queue_depth_max must be at least 1".into());
        }
        if self.wal_segment_bytes_max < 64 * 1024 {
            return Err("wal_segment_bytes_max must be at least 65536".into());
        }
        if self.timer_tick_ms == 0 || self.checkpoint_interval_ms == 0 {
            return Err("timer_tick_ms and checkpoint_interval_ms must be at least 1".into());
        }
        if self.effects_queue_depth_max == 0 || self.effects_sweep_ms == 0 {
            return Err("effects_queue_depth_max and effects_sweep_ms must be at least 1".into());
        }
        if self.durability_batch_ms == 0 {
            return Err("durability_batch_ms must be at least 1".into());
        }
        Ok(())
    }

    pub fn wal_config(&self) -> WalConfig {
        WalConfig {
            segment_bytes_max: self.wal_segment_bytes_max,
            queue_depth_max: self.wal_queue_depth_max,
            durability: self.durability,
            durability_batch_ms: self.durability_batch_ms,
            preallocate: self.wal_preallocate,
            ..WalConfig::new(self.data_dir.join("wal"))
        }
    }
}
