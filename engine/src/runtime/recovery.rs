//! Start-up replay: the WAL tail above `meta.coverage_lsn` is applied to actor states loaded from
//! the checkpoint store, then every touched actor is snapshotted, the store is flushed, coverage
//! moves to the end of the log, and covered segments are removed. The runtime then starts with no actor active.
//!
//! Invariant (idempotent replay): an actor's own event is applied only if its LSN is above the
//! actor's snapshot LSN; an event for another actor is an idempotent assignment and is always
//! re-applied, in log order.

use std::collections::HashMap;

use super::registry::Registry;
use super::replayed::Replayed;
use super::{ActorKey, Record};
use crate::error::{Error, Result};
use crate::store::{Snapshot, SnapshotBatch, Store};

fn load(key: ActorKey, store: &Store, registry: &Registry) -> Result<Box<dyn Replayed>> {
    let load = registry.loader(key.kind).ok_or_else(|| {
        Error::Store(format!(
            "replay: kind {:?} is no registered domain's",
            key.kind
        ))
    })?;
    load(key.id, store)
}

struct Loaded {
    state: Box<dyn Replayed>,
    snapshot_lsn: u64,
    last_lsn: u64,
}

/// Replays WAL records into actor states.
pub struct Replay<'a> {
    store: &'a Store,
    registry: &'a Registry,
    actors: HashMap<ActorKey, Loaded>,
    pub(crate) records: u64,
    pub(crate) events_applied: u64,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(store: &'a Store, registry: &'a Registry) -> Self {
        Replay {
            store,
            registry,
            actors: HashMap::new(),
            records: 0,
            events_applied: 0,
        }
    }

    pub(crate) fn apply_record(&mut self, lsn: u64, payload: &[u8]) -> Result<()> {
        let record = Record::decode(payload, self.registry)?;
        self.records += 1;
        for (key, event) in &record.entries {
            let loaded = match self.actors.get_mut(key) {
                Some(loaded) => loaded,
                None => {
                    let state = load(*key, self.store, self.registry)?;
                    let snapshot_lsn = self.store.snapshot_meta(*key)?.map_or(0, |m| m.lsn);
                    self.actors.entry(*key).or_insert(Loaded {
                        state,
                        snapshot_lsn,
                        last_lsn: snapshot_lsn,
                    })
                }
            };
            let own = *key == record.origin;
            if own && lsn <= loaded.snapshot_lsn {
                continue;
            }
            loaded.state.apply(event, own, lsn)?;
            loaded.last_lsn = loaded.last_lsn.max(lsn);
            self.events_applied += 1;
        }
        Ok(())
    }

    /// Loads `key` (if the log did not already) so that [`Replay::checkpoint`] saves it: a
    /// format migration uses it for an actor whose snapshot must be rewritten although the log
    /// tail did not touch it.
    pub fn include(&mut self, key: ActorKey) -> Result<()> {
        if !self.actors.contains_key(&key) {
            let state = load(key, self.store, self.registry)?;
            let snapshot_lsn = self.store.snapshot_meta(key)?.map_or(0, |m| m.lsn);
            self.actors.insert(
                key,
                Loaded {
                    state,
                    snapshot_lsn,
                    last_lsn: snapshot_lsn,
                },
            );
        }
        Ok(())
    }

    /// Writes a snapshot of every touched actor and flushes. Returns how many were written.
    pub(crate) fn checkpoint(self) -> Result<usize> {
        let count = self.actors.len();
        let mut batches = Vec::with_capacity(count);
        for (key, mut loaded) in self.actors {
            let mut parts = SnapshotBatch::default();
            loaded.state.save(key, &mut parts);
            batches.push(Snapshot {
                key,
                lsn: loaded.last_lsn,
                parts,
                deadline: Some(loaded.state.deadline()),
            });
        }
        for chunk in chunked(batches, 4096) {
            self.store.apply(chunk)?;
        }
        self.store.flush()?;
        Ok(count)
    }
}

fn chunked<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut current = Vec::with_capacity(size.min(items.len()));
    for item in items {
        current.push(item);
        if current.len() == size {
            out.push(std::mem::replace(&mut current, Vec::with_capacity(size)));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}
