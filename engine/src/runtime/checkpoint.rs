//! The checkpointer: snapshots dirty actors into the checkpoint store and removes WAL segments they cover.
//!
//! One pass, in this order (each step relies on the one before):
//! 1. Take the dirty set; ask each dirty actor for a snapshot of its changed parts (the actor
//!    gives up its hold's floor with it).
//! 2. Wait until the WAL is durable up to the highest LSN those snapshots reflect (a snapshot
//!    must never contain state a crash could lose from the WAL).
//! 3. Apply all snapshots to the store in one transaction and flush.
//! 4. Release the snapshots' holds; publish the pass as written ([`Passes`]): an actor whose
//!    snapshot was taken in it may now passivate.
//! 5. Compute coverage, write and flush `meta.coverage_lsn`, then remove covered WAL segments.
//!
//! The replies of step 1 gather in one [`Collector`] per pass, and step 4 is one atomic store:
//! a pass costs each dirty actor one message, and wakes the checkpointer once, not per actor.
//!
//! A failed pass is final: taking a snapshot hands the actor's changed parts to the pass and
//! forgets them (`Entity::save`), so a later pass could write a newer snapshot header without
//! those parts, and replay would then skip the events they came from. So the first failure
//! latches the engine's fault (every command refused, readiness false) and every later pass,
//! including `Engine::checkpoint` and the final pass of `shutdown`, refuses to run. Holds stay
//! taken, so no WAL segment is removed; the WAL keeps everything and a restart recovers. No pass
//! is published as written after a failed one, so no actor passivates with a snapshot the store may
//! lack. A WAL segment that cannot be removed is only logged: it is covered, the next pass tries
//! again, and recovery skips its records.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::{ActorKey, Shared};
use crate::clock::Millis;
use crate::error::Result;
use crate::store::SnapshotBatch;

/// Pass numbers: the one being taken, and the last one whose snapshots are flushed to the checkpoint store with
/// every pass before it.
#[derive(Debug, Default)]
pub(crate) struct Passes {
    taken: AtomicU64,
    written: AtomicU64,
    failed: AtomicBool,
}

impl Passes {
    /// The pass whose snapshots are being taken now (passes do not overlap: `pass_lock`).
    pub fn current(&self) -> u64 {
        self.taken.load(Ordering::Acquire)
    }

    /// Whether every snapshot taken in `pass` is flushed to the checkpoint store.
    pub fn is_written(&self, pass: u64) -> bool {
        self.written.load(Ordering::Acquire) >= pass
    }
}

/// A snapshot taken for the checkpointer: the changed parts, the LSN they reflect and the floor
/// of the hold to release once they are flushed.
pub(crate) struct TakenSnapshot {
    pub batch: SnapshotBatch,
    pub lsn: u64,
    pub floor: u64,
    /// `Some(deadline)` when the deadline changed since the last snapshot.
    pub deadline: Option<Option<Millis>>,
}

/// Gathers the snapshots of one pass. Every reached actor answers exactly once through its
/// [`SnapshotReply`] (an unanswered one, dropped with its message, counts as an empty answer);
/// the checkpointer is woken when the last one is in.
#[derive(Default)]
pub(crate) struct Collector {
    state: Mutex<Gathered>,
    done: Condvar,
}

#[derive(Default)]
struct Gathered {
    taken: Vec<(ActorKey, TakenSnapshot)>,
    /// Answers outstanding, plus one held by the checkpointer until it has asked everyone.
    outstanding: usize,
}

impl Collector {
    fn new() -> Arc<Collector> {
        let collector = Arc::new(Collector::default());
        collector.lock().outstanding = 1;
        collector
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gathered> {
        // Nothing panics while holding it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn answer(&self, taken: Option<(ActorKey, TakenSnapshot)>) {
        let mut state = self.lock();
        state.taken.extend(taken);
        state.outstanding -= 1;
        if state.outstanding == 0 {
            self.done.notify_one();
        }
    }

    /// Gives up the checkpointer's own share and waits for every answer.
    fn wait(&self) -> Vec<(ActorKey, TakenSnapshot)> {
        let mut state = self.lock();
        state.outstanding -= 1;
        while state.outstanding > 0 {
            state = self
                .done
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        std::mem::take(&mut state.taken)
    }
}

/// One actor's way to answer a pass; answers "nothing" if dropped unanswered.
pub(crate) struct SnapshotReply {
    collector: Option<Arc<Collector>>,
}

impl SnapshotReply {
    pub fn new(collector: &Arc<Collector>) -> SnapshotReply {
        collector.lock().outstanding += 1;
        SnapshotReply {
            collector: Some(collector.clone()),
        }
    }

    pub fn send(mut self, key: ActorKey, taken: Option<TakenSnapshot>) {
        if let Some(collector) = self.collector.take() {
            collector.answer(taken.map(|taken| (key, taken)));
        }
    }
}

impl Drop for SnapshotReply {
    fn drop(&mut self) {
        if let Some(collector) = self.collector.take() {
            collector.answer(None);
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Actors whose snapshot was written.
    pub snapshots: usize,
    /// Snapshot parts written (store keys).
    pub parts: usize,
    /// Coverage LSN after the pass.
    pub coverage_lsn: u64,
    /// WAL segments removed.
    pub segments_removed: usize,
}

pub(crate) fn run_pass(shared: &Arc<Shared>) -> Result<CheckpointReport> {
    // No pass after any fault: a failed pass's parts are gone (see the module docs), and a
    // stopped engine changes nothing until it is restarted.
    if let Some(stopped) = shared.stopped() {
        return Err(stopped);
    }
    let result = pass(shared);
    if let Err(error) = &result {
        shared.passes.failed.store(true, Ordering::Release);
        shared
            .fault
            .raise(format!("a checkpoint pass failed: {error}"));
    }
    result
}

fn pass(shared: &Arc<Shared>) -> Result<CheckpointReport> {
    let mut report = CheckpointReport::default();
    let pass = shared.passes.taken.fetch_add(1, Ordering::AcqRel) + 1;
    let keys = shared.tracker.take_dirty();
    let collector = Collector::new();
    let mut unreachable: Vec<ActorKey> = Vec::new();
    for key in keys {
        if let Err(error) = shared
            .registry
            .any(key.kind)
            .take_snapshot(shared, key.id, &collector)
        {
            tracing::error!(%error, ?key, "cannot reach a dirty actor for its snapshot");
            unreachable.push(key);
        }
    }
    shared.tracker.restore_dirty(unreachable);
    let taken = collector.wait();
    if !taken.is_empty() {
        let lsn_max = taken
            .iter()
            .map(|(_, snapshot)| snapshot.lsn)
            .max()
            .unwrap_or(0);
        shared.wal.wait_durable_blocking(lsn_max)?;
        let mut floors = Vec::with_capacity(taken.len());
        let mut batches = Vec::with_capacity(taken.len());
        for (key, snapshot) in taken {
            report.parts += snapshot.batch.len();
            floors.push(snapshot.floor);
            batches.push(crate::store::Snapshot {
                key,
                lsn: snapshot.lsn,
                parts: snapshot.batch,
                deadline: snapshot.deadline,
            });
        }
        report.snapshots = batches.len();
        shared.store.apply(batches)?;
        shared.store.flush()?;
        for floor in floors {
            shared.tracker.release(floor);
        }
    }
    if !shared.passes.failed.load(Ordering::Acquire) {
        shared.passes.written.store(pass, Ordering::Release);
    }
    let next_lsn = shared.wal.next_lsn();
    let coverage = shared.tracker.coverage(next_lsn);
    report.coverage_lsn = coverage;
    if coverage > shared.store.meta()?.coverage_lsn {
        shared.store.write_meta(coverage)?;
        shared.coverage_lsn.fetch_max(coverage, Ordering::AcqRel);
    }
    match shared.wal.remove_covered(coverage) {
        Ok(removed) => report.segments_removed = removed,
        Err(error) => {
            tracing::warn!(%error, "checkpoint: a covered WAL segment stays; the next pass retries")
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Kind;
    use crate::store::SnapshotBatch;

    fn taken(lsn: u64) -> TakenSnapshot {
        TakenSnapshot {
            batch: SnapshotBatch::default(),
            lsn,
            floor: lsn,
            deadline: None,
        }
    }

    #[test]
    fn a_pass_waits_for_every_answer_and_counts_a_dropped_reply_as_none() {
        let collector = Collector::new();
        let answered = SnapshotReply::new(&collector);
        let clean = SnapshotReply::new(&collector);
        let dropped = SnapshotReply::new(&collector);
        let (done, finished) = std::sync::mpsc::channel();
        let waiter = {
            let collector = collector.clone();
            std::thread::spawn(move || done.send(collector.wait()).unwrap())
        };
        answered.send(ActorKey::new(Kind::new(1), 1), Some(taken(7)));
        clean.send(ActorKey::new(Kind::new(1), 2), None);
        assert!(
            finished
                .recv_timeout(std::time::Duration::from_millis(100))
                .is_err(),
            "the pass must not end while a reply is outstanding"
        );
        drop(dropped);
        let gathered = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the last reply, dropped unanswered, ends the wait");
        waiter.join().unwrap();
        assert_eq!(gathered.len(), 1);
        assert_eq!(gathered[0].0, ActorKey::new(Kind::new(1), 1));
        assert_eq!(gathered[0].1.lsn, 7);
    }
}
