//! One-time migration of a sled store (`<data dir>/sled/`, written by builds before the redb
//! store) into `<data dir>/checkpoint.redb`. sled 0.34 stays a dependency for this alone.
//!
//! Steps, each safe against a crash after it:
//! 1. Copy every key of sled's `snapshots` tree, and the meta record, into a new redb file
//!    `checkpoint.redb.migrating` (a leftover one is deleted first) in one write transaction
//!    committed `Immediate`, then compare the key count. A crash here leaves no
//!    `checkpoint.redb`: the next open migrates again from the untouched sled store.
//! 2. Rename it to `checkpoint.redb` and fsync the data dir. From here on the redb file is the
//!    store; a crash before step 3 leaves `sled/` beside it, and the next open only retires it.
//! 3. Retire sled: rename `sled/` to `sled.migrated/`, write a *file* named `sled` that says so,
//!    fsync it and the data dir. An older build pointed at this dir then fails to open its sled
//!    store (the path is a file) instead of starting from an empty one and replaying a log whose
//!    covered segments are gone. `sled.migrated/` is kept for a downgrade by hand; delete it
//!    when no longer wanted.
//!
//! The store only ever creates `checkpoint.redb` by that rename, or fresh when no `sled/`
//! directory exists, so a `checkpoint.redb` beside a `sled/` directory is always its copy.

use std::fs::File;
use std::path::Path;

use redb::{Durability, ReadableTableMetadata};

use super::{sync_dir, FILE_NAME, META, META_KEY, SNAPSHOTS};
use crate::error::{Error, Result};

const SLED_DIR: &str = "sled";
const RETIRED_DIR: &str = "sled.migrated";
const TEMP_NAME: &str = "checkpoint.redb.migrating";
const NOTE: &str = "This data dir's checkpoints moved to checkpoint.redb (redb). sled.migrated/ \
                    is the sled store they were copied from. This file keeps a build that \
                    still uses sled from starting on this dir with an empty store.\n";

fn failed(what: String, error: impl std::fmt::Display) -> Error {
    Error::Store(format!("migrating sled to redb: {what}: {error}"))
}

/// Migrates `dir/sled/` into `dir/checkpoint.redb` when the latter does not exist, and finishes
/// an interrupted migration (see the module docs). Does nothing for a dir without `sled/`.
pub(super) fn from_sled(dir: &Path, cache_bytes: usize) -> Result<()> {
    let sled_dir = dir.join(SLED_DIR);
    let target = dir.join(FILE_NAME);
    if !sled_dir.is_dir() {
        // A crash between step 3's rename and its note leaves neither.
        if !sled_dir.exists() && target.exists() && dir.join(RETIRED_DIR).is_dir() {
            return write_note(dir);
        }
        return Ok(());
    }
    if !target.exists() {
        copy(dir, &sled_dir, &target, cache_bytes)?;
    }
    retire(dir, &sled_dir)
}

fn copy(dir: &Path, sled_dir: &Path, target: &Path, cache_bytes: usize) -> Result<()> {
    let started = std::time::Instant::now();
    let temp = dir.join(TEMP_NAME);
    match std::fs::remove_file(&temp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(failed(format!("removing {}", temp.display()), error))
        }
        _ => {}
    }
    let sled = sled::Config::new()
        .path(sled_dir)
        .flush_every_ms(None)
        .open()
        .map_err(|e| failed(format!("opening {}", sled_dir.display()), e))?;
    let snapshots = sled.open_tree("snapshots")?;
    let meta = sled.get(META_KEY)?;
    let db = redb::Database::builder()
        .set_cache_size(cache_bytes)
        .create(&temp)
        .map_err(|e| failed(format!("creating {}", temp.display()), e))?;
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    let mut keys = 0u64;
    {
        let mut table = txn.open_table(SNAPSHOTS)?;
        for item in snapshots.iter() {
            let (key, value) = item?;
            table.insert(key.as_ref(), value.as_ref())?;
            keys += 1;
        }
        if table.len()? != keys {
            return Err(failed(
                format!("{}", temp.display()),
                format!("{} keys copied of {keys}", table.len()?),
            ));
        }
        let mut table = txn.open_table(META)?;
        if let Some(meta) = &meta {
            table.insert(META_KEY, meta.as_ref())?;
        }
    }
    txn.commit()?;
    drop(db);
    drop(snapshots);
    drop(sled);
    let synced = |what: &Path, result: std::io::Result<()>| {
        result.map_err(|error| failed(format!("fsync of {}", what.display()), error))
    };
    synced(&temp, File::open(&temp).and_then(|file| file.sync_all()))?;
    std::fs::rename(&temp, target)
        .map_err(|e| failed(format!("renaming {} into place", temp.display()), e))?;
    synced(dir, sync_dir(dir))?;
    tracing::info!(
        keys,
        meta = meta.is_some(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "migrated the sled checkpoint store to {}",
        target.display()
    );
    Ok(())
}

fn retire(dir: &Path, sled_dir: &Path) -> Result<()> {
    let retired = dir.join(RETIRED_DIR);
    if retired.exists() {
        return Err(failed(
            format!("retiring {}", sled_dir.display()),
            format!("{} exists already", retired.display()),
        ));
    }
    std::fs::rename(sled_dir, &retired)
        .map_err(|e| failed(format!("renaming {}", sled_dir.display()), e))?;
    write_note(dir)
}

fn write_note(dir: &Path) -> Result<()> {
    let note = dir.join(SLED_DIR);
    std::fs::write(&note, NOTE).map_err(|e| failed(format!("writing {}", note.display()), e))?;
    let synced = |what: &Path, result: std::io::Result<()>| {
        result.map_err(|error| failed(format!("fsync of {}", what.display()), error))
    };
    synced(&note, File::open(&note).and_then(|file| file.sync_all()))?;
    synced(dir, sync_dir(dir))
}
