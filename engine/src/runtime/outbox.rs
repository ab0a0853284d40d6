//! The outbox: side effects that must happen only after the decision that asked for them is
//! durable (send notification N, POST a webhook, hand a job to a worker), at least once, each
//! under a stable idempotency key.
//!
//! A decision asks for an effect by adding [`effect`]'s entry to its events: an
//! [`OutboxEvent::Enqueued`] addressed to one of [`SHARDS`] `Outbox` actors (by the key's hash),
//! so the effect is written in the same WAL record as the decision's own events (a crash keeps
//! both or neither). The runtime hands it to the effect's worker pool only once that record is
//! durable (`effects.rs`). Completing or failing an attempt is itself an event of the outbox
//! ([`OutboxEvent::Completed`], [`OutboxEvent::Attempted`]), so after a crash every durable
//! effect not yet completed is pending again and handed out again: at least once, with the
//! same key, so a receiver can deduplicate.
//!
//! Replay re-applies events addressed to another actor whatever that actor's snapshot holds
//! (they must be idempotent), so an enqueue replayed after its completion must not make the
//! effect pending again: a completed effect leaves a tombstone (its key and the LSN of its
//! enqueue record) until the checkpoint's coverage has passed that LSN, after which no replay
//! can meet the record again.
//!
//! Invariants: an effect is pending from its enqueue record to its completion record; its key
//! is unique among pending effects (a second enqueue under a pending key changes nothing);
//! `next_attempt_ms` only moves forward; a tombstone outlives every replay of its enqueue.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ActorKey, Ctx, Decision, DomainEvent, Entity, Event, Kind};
use crate::clock::Millis;
use crate::error::Result;
use crate::store::{SnapshotBatch, Store};

/// The outbox actors' kind (a runtime kind: no domain registers it).
pub const OUTBOX: Kind = Kind::new(254);
/// Outbox actors; an effect lives in the one its key hashes to.
pub const SHARDS: u64 = 16;
const PENDING: &[u8] = b"pending/";
const DONE: &[u8] = b"done/";

/// A side effect: which worker pool runs it (`kind`), its idempotency key (stable across
/// attempts and restarts; unique among pending effects), and what the pool needs (`payload`,
/// encoded by the domain that asked for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub kind: String,
    pub key: String,
    pub payload: Vec<u8>,
}

/// Whether outbox actor `key`'s snapshot holds a pending effect.
pub(crate) fn has_pending(store: &Store, key: ActorKey) -> Result<bool> {
    Ok(!store.scan_sub::<Pending>(key, PENDING)?.is_empty())
}

/// The entry a decision adds to its events to ask for `effect` (see the module docs).
pub fn effect(effect: Effect) -> (ActorKey, Event) {
    (
        ActorKey::new(OUTBOX, shard_of(&effect.key)),
        Event::new(OutboxEvent::Enqueued(effect)),
    )
}

/// The outbox actor holding `key`.
pub fn shard_of(key: &str) -> u64 {
    // FNV-1a: stable across builds and processes (the shard is part of the durable state).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % SHARDS
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OutboxEvent {
    /// From a domain's decision: the effect is pending (a no-op if its key already is).
    Enqueued(Effect),
    /// An attempt failed; try again at `next_attempt_ms`.
    Attempted {
        key: String,
        attempts: u32,
        next_attempt_ms: Millis,
        error: String,
    },
    /// Done (or given up by its pool): no longer pending. `forget`: tombstones whose enqueue
    /// the checkpoint covers.
    Completed { key: String, forget: Vec<String> },
}

impl DomainEvent for OutboxEvent {
    const TAG: u32 = 255;
}

/// One pending effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub effect: Effect,
    /// The LSN of the record that enqueued it.
    pub enqueue_lsn: u64,
    pub attempts: u32,
    /// Not handed out before this (0: at once).
    pub next_attempt_ms: Millis,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
pub enum OutboxCommand {
    Complete {
        key: String,
    },
    Failed {
        key: String,
        retry_at_ms: Millis,
        error: String,
    },
    /// Pending effects due at `now_ms`, at most `limit`.
    Due {
        now_ms: Millis,
        limit: usize,
    },
}

#[derive(Debug)]
pub enum OutboxReply {
    Done,
    /// The effects due, and how many are pending in all (due or not).
    Due {
        due: Vec<Pending>,
        pending: usize,
    },
}

/// One outbox actor.
#[derive(Debug, Default)]
pub struct Outbox {
    pending: BTreeMap<String, Pending>,
    /// Completed effects whose enqueue a replay may still meet: key → enqueue LSN.
    done: BTreeMap<String, u64>,
    /// Keys changed since the last snapshot (written, or removed when no longer pending).
    dirty: Vec<String>,
}

impl Entity for Outbox {
    const KIND: Kind = OUTBOX;
    type Event = OutboxEvent;
    type Command = OutboxCommand;
    type Reply = OutboxReply;

    fn load(id: u64, store: &Store) -> Result<Self> {
        let key = ActorKey::new(OUTBOX, id);
        let pending = store
            .scan_sub::<Pending>(key, PENDING)?
            .into_iter()
            .map(|(_, pending)| (pending.effect.key.clone(), pending))
            .collect();
        let done = store
            .scan_sub::<u64>(key, DONE)?
            .into_iter()
            .map(|(name, lsn)| (String::from_utf8_lossy(&name).into_owned(), lsn))
            .collect();
        Ok(Outbox {
            pending,
            done,
            dirty: Vec::new(),
        })
    }

    fn decide(&self, command: OutboxCommand, ctx: &Ctx<'_>) -> Result<Decision<OutboxReply>> {
        let event = match command {
            OutboxCommand::Due { now_ms, limit } => {
                let due = self
                    .pending
                    .values()
                    .filter(|pending| pending.next_attempt_ms <= now_ms)
                    .take(limit)
                    .cloned()
                    .collect();
                return Ok(Decision::read(OutboxReply::Due {
                    due,
                    pending: self.pending.len(),
                }));
            }
            // A completion or failure of an effect no longer pending (reported twice, or after
            // a restart re-ran it) changes nothing.
            OutboxCommand::Complete { key } if self.pending.contains_key(&key) => {
                let forget = self
                    .done
                    .iter()
                    .filter(|(_, lsn)| **lsn <= ctx.coverage_lsn)
                    .map(|(key, _)| key.clone())
                    .collect();
                OutboxEvent::Completed { key, forget }
            }
            OutboxCommand::Failed {
                key,
                retry_at_ms,
                error,
            } if self.pending.contains_key(&key) => {
                let pending = &self.pending[&key];
                OutboxEvent::Attempted {
                    attempts: pending.attempts + 1,
                    next_attempt_ms: retry_at_ms.max(pending.next_attempt_ms),
                    key,
                    error,
                }
            }
            OutboxCommand::Complete { .. } | OutboxCommand::Failed { .. } => {
                return Ok(Decision::read(OutboxReply::Done))
            }
        };
        Ok(Decision {
            events: vec![(ctx.key, Event::new(event))],
            reply: OutboxReply::Done,
        })
    }

    fn apply(&mut self, event: &OutboxEvent) {
        self.apply_at(event, 0)
    }

    fn apply_foreign_at(&mut self, event: &OutboxEvent, lsn: u64) {
        self.apply_at(event, lsn)
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        for effect_key in std::mem::take(&mut self.dirty) {
            let named = |prefix: &[u8]| [prefix, effect_key.as_bytes()].concat();
            match self.pending.get(&effect_key) {
                Some(pending) => batch.put(key, &named(PENDING), pending),
                None => batch.remove(key, &named(PENDING)),
            }
            match self.done.get(&effect_key) {
                Some(lsn) => batch.put(key, &named(DONE), lsn),
                None => batch.remove(key, &named(DONE)),
            }
        }
    }
}

impl Outbox {
    /// Applies `event`, an enqueue being logged at `lsn` (0 for the outbox's own events).
    fn apply_at(&mut self, event: &OutboxEvent, lsn: u64) {
        match event {
            OutboxEvent::Enqueued(effect) => {
                let replayed_after_completion = self.done.get(&effect.key) == Some(&lsn);
                if !self.pending.contains_key(&effect.key) && !replayed_after_completion {
                    self.pending.insert(
                        effect.key.clone(),
                        Pending {
                            effect: effect.clone(),
                            enqueue_lsn: lsn,
                            attempts: 0,
                            next_attempt_ms: 0,
                            last_error: None,
                        },
                    );
                    self.dirty.push(effect.key.clone());
                }
            }
            OutboxEvent::Attempted {
                key,
                attempts,
                next_attempt_ms,
                error,
            } => {
                if let Some(pending) = self.pending.get_mut(key) {
                    pending.attempts = *attempts;
                    pending.next_attempt_ms = *next_attempt_ms;
                    pending.last_error = Some(error.clone());
                    self.dirty.push(key.clone());
                }
            }
            OutboxEvent::Completed { key, forget } => {
                if let Some(pending) = self.pending.remove(key) {
                    self.done.insert(key.clone(), pending.enqueue_lsn);
                    self.dirty.push(key.clone());
                }
                for old in forget {
                    if self.done.remove(old).is_some() {
                        self.dirty.push(old.clone());
                    }
                }
            }
        }
    }

    /// Pending effects (tests and `/metrics`).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effect(key: &str) -> Effect {
        Effect {
            kind: "k".into(),
            key: key.into(),
            payload: vec![1, 2],
        }
    }

    /// Replay re-applies an enqueue (another actor's event) even after the outbox snapshot
    /// holds its completion: the tombstone keeps it done, until coverage passes the enqueue.
    #[test]
    fn a_replayed_enqueue_after_completion_stays_done_until_coverage_forgets_it() {
        let mut outbox = Outbox::default();
        outbox.apply_foreign_at(&OutboxEvent::Enqueued(effect("a")), 10);
        outbox.apply_foreign_at(&OutboxEvent::Enqueued(effect("b")), 11);
        assert_eq!(outbox.pending_count(), 2);
        outbox.apply(&OutboxEvent::Completed {
            key: "a".into(),
            forget: vec![],
        });
        assert_eq!(outbox.pending_count(), 1);
        // Replay meets a's enqueue again: still done. A repeated enqueue of b: one pending.
        outbox.apply_foreign_at(&OutboxEvent::Enqueued(effect("a")), 10);
        outbox.apply_foreign_at(&OutboxEvent::Enqueued(effect("b")), 11);
        assert_eq!(outbox.pending_count(), 1);
        // Snapshot round trip keeps both the pending effect and the tombstone.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let key = ActorKey::new(OUTBOX, 3);
        let mut batch = SnapshotBatch::default();
        outbox.save(key, &mut batch);
        store
            .apply(vec![crate::store::Snapshot {
                key,
                lsn: 12,
                parts: batch,
                deadline: None,
            }])
            .unwrap();
        let mut loaded = Outbox::load(3, &store).unwrap();
        assert_eq!(loaded.pending_count(), 1);
        loaded.apply_foreign_at(&OutboxEvent::Enqueued(effect("a")), 10);
        assert_eq!(
            loaded.pending_count(),
            1,
            "the tombstone survived the snapshot"
        );
        // Once coverage passed lsn 10 the tombstone goes with the next completion.
        loaded.apply(&OutboxEvent::Completed {
            key: "b".into(),
            forget: vec!["a".into()],
        });
        assert!(loaded.done.contains_key("b") && !loaded.done.contains_key("a"));
        assert_eq!(loaded.pending_count(), 0);
    }

    #[test]
    fn shards_spread_keys_and_are_stable() {
        assert_eq!(shard_of("demo-counter-1-1"), shard_of("demo-counter-1-1"));
        let shards: std::collections::BTreeSet<u64> =
            (0..200).map(|i| shard_of(&format!("k{i}"))).collect();
        assert_eq!(shards.len() as u64, SHARDS);
    }
}
