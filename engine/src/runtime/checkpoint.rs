//! The checkpointer: snapshots dirty actors into sled and removes WAL segments they cover.
//!
//! One pass, in this order (each step relies on the one before):
//! 1. Take the dirty set; ask each dirty actor for a snapshot of its changed parts (the actor
//!    gives up its hold's floor with it).
//! 2. Wait until the WAL is durable up to the highest LSN those snapshots reflect (a snapshot
//!    must never contain state a crash could lose from the WAL).
//! 3. Apply all snapshots to sled in one batch and flush.
//! 4. Release the snapshots' holds; tell each actor its snapshot is written (it may passivate).
//! 5. Compute coverage, write and flush `meta.coverage_lsn`, then remove covered WAL segments.
//!
//! A failed sled write or flush stops checkpointing (holds stay taken, so no WAL segment is ever
//! removed) and is reported; the WAL keeps everything, so nothing is lost.

use std::sync::Arc;

use super::{ActorKey, Shared};
use crate::error::Result;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Actors whose snapshot was written.
    pub snapshots: usize,
    /// Snapshot parts written (sled keys).
    pub parts: usize,
    /// Coverage LSN after the pass.
    pub coverage_lsn: u64,
    /// WAL segments removed.
    pub segments_removed: usize,
}

pub(crate) fn run_pass(shared: &Arc<Shared>) -> Result<CheckpointReport> {
    let mut report = CheckpointReport::default();
    let keys = shared.tracker.take_dirty();
    // One reply channel for the pass: every reached actor sends its key and snapshot on it.
    let (reply, replies) = crossbeam_channel::unbounded();
    let mut waiting = 0;
    let mut unreachable: Vec<ActorKey> = Vec::new();
    for key in keys {
        match shared
            .directories
            .any(key.kind)
            .take_snapshot(shared, key.id, &reply)
        {
            Ok(()) => waiting += 1,
            Err(error) => {
                tracing::error!(%error, ?key, "cannot reach a dirty actor for its snapshot");
                unreachable.push(key);
            }
        }
    }
    // Only the actors' clones are left: if one is dropped unanswered (a stopped actor), `recv`
    // fails once every other has answered, as a per-actor channel would have.
    drop(reply);
    shared.tracker.restore_dirty(unreachable);
    let mut taken = Vec::with_capacity(waiting);
    let mut lsn_max = 0;
    for _ in 0..waiting {
        match replies.recv() {
            Ok((key, Some(snapshot))) => {
                lsn_max = lsn_max.max(snapshot.lsn);
                taken.push((key, snapshot));
            }
            Ok((_, None)) => {}
            Err(_) => break,
        }
    }
    if !taken.is_empty() {
        shared.wal.wait_durable_blocking(lsn_max)?;
        let mut floors = Vec::with_capacity(taken.len());
        let mut written = Vec::with_capacity(taken.len());
        let mut batches = Vec::with_capacity(taken.len());
        for (key, snapshot) in taken {
            report.parts += snapshot.batch.len();
            floors.push(snapshot.floor);
            written.push((key, snapshot.lsn));
            batches.push(crate::store::Snapshot {
                key,
                lsn: snapshot.lsn,
                parts: snapshot.batch,
                deadline: snapshot.deadline,
            });
        }
        shared.store.apply(batches)?;
        shared.store.flush()?;
        for floor in floors {
            shared.tracker.release(floor);
        }
        report.snapshots = written.len();
        for (key, lsn) in written {
            shared
                .directories
                .any(key.kind)
                .snapshot_written(key.id, lsn);
        }
    }
    let next_lsn = shared.wal.next_lsn();
    let coverage = shared.tracker.coverage(next_lsn);
    report.coverage_lsn = coverage;
    if coverage > shared.store.meta()?.coverage_lsn {
        shared.store.write_meta(coverage)?;
        report.segments_removed = shared.wal.remove_covered(coverage)?;
    }
    Ok(report)
}
