//! The directory: id → running actor, per kind. Activates an actor on its first message (load
//! snapshot or create empty; or, for an event that creates it per `Entity::created_by`, the
//! state that event gives, without reading the store) on the shard its id hashes to, counts its
//! pending messages (the mailbox bound), and removes it on passivation.
//!
//! Invariant: an actor is added, looked up, and removed only under its stripe's lock, and the
//! pending count is raised under that lock before a message is queued; so a passivating actor
//! (pending == 0 under the lock) can never receive a message after it left the directory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix::{Actor, Addr};
use tokio::sync::oneshot;

use super::actor::{Ask, EntityActor, Foreign, TakeSnapshot, Timer};
use super::checkpoint::{Collector, SnapshotReply};
use super::{ActorKey, Entity, Event, Shared};
use crate::error::{Error, Result};

const STRIPES: usize = 64;
/// How long a due timer whose actor could not be activated waits before it is tried again.
const TIMER_RETRY_MS: u64 = 1_000;

/// Hashes an id with [`mix`] (ids are already integers; SipHash's DoS resistance buys nothing
/// for keys the engine assigns, and costs on every message).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = mix(self.0 ^ u64::from(*byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = mix(value);
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

struct Entry<E: Entity> {
    addr: Addr<EntityActor<E>>,
    pending: Arc<AtomicUsize>,
}

/// The running actors of one kind.
pub struct Directory<E: Entity> {
    stripes: Vec<Mutex<IdMap<Entry<E>>>>,
}

impl<E: Entity> Default for Directory<E> {
    fn default() -> Self {
        Directory {
            stripes: (0..STRIPES).map(|_| Mutex::new(IdMap::default())).collect(),
        }
    }
}

fn mix(id: u64) -> u64 {
    // splitmix64 finaliser: spreads sequential ids over stripes and shards.
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<E: Entity> Directory<E> {
    fn stripe(&self, id: u64) -> std::sync::MutexGuard<'_, IdMap<Entry<E>>> {
        // Invariant: nothing panics while a stripe is held except a failed snapshot load, which
        // is returned as an error before any insertion.
        self.stripes[(mix(id) % STRIPES as u64) as usize]
            .lock()
            .expect("directory stripe not poisoned")
    }

    /// Finds or activates actor `id`, reserves one mailbox slot and queues `message()` for it,
    /// all under the stripe lock (so a passivation check under the same lock sees it pending).
    /// `bounded` applies the mailbox limit (commands); internal messages are never refused.
    fn send(
        &self,
        shared: &Arc<Shared>,
        id: u64,
        bounded: bool,
        created: Option<E>,
        deliver: impl FnOnce(&Addr<EntityActor<E>>),
    ) -> Result<()> {
        let mut stripe = self.stripe(id);
        if let Some(entry) = stripe.get(&id) {
            if bounded && entry.pending.load(Ordering::Acquire) >= shared.config.mailbox_depth_max {
                return Err(Error::Overloaded("actor mailbox"));
            }
            entry.pending.fetch_add(1, Ordering::AcqRel);
            // Capacity is enforced above (see the module docs of `runtime`); do_send never parks.
            deliver(&entry.addr);
            return Ok(());
        }
        let entry = self.activate(shared, id, created)?;
        deliver(&entry.addr);
        stripe.insert(id, entry);
        Ok(())
    }

    /// Loads actor `id` (snapshot or empty; `created`, when given, is its state and the store
    /// has nothing for it) and starts it on its shard with one message pending.
    fn activate(&self, shared: &Arc<Shared>, id: u64, created: Option<E>) -> Result<Entry<E>> {
        let key = ActorKey::new(E::KIND, id);
        let (state, snapshot_lsn, persisted_deadline) = match created {
            Some(state) => (state, 0, None),
            None => (
                E::load(id, &shared.store)?,
                shared
                    .store
                    .snapshot_meta(key)?
                    .map(|meta| meta.lsn)
                    .unwrap_or(0),
                shared.store.deadline(key)?,
            ),
        };
        let pending = Arc::new(AtomicUsize::new(1));
        let shard = &shared.shards[(mix(id) % shared.shards.len() as u64) as usize];
        let actor = EntityActor {
            key,
            state,
            shared: shared.clone(),
            pending: pending.clone(),
            last_applied: snapshot_lsn,
            dirty_floor: None,
            snapshot_written: snapshot_lsn,
            snapshot_taken: None,
            last_active_ms: shared.clock.now_ms(),
            deadline: None,
            persisted_deadline,
        };
        let addr = EntityActor::start_in_arbiter(shard, move |_| actor);
        Ok(Entry { addr, pending })
    }

    /// Queues `command` for actor `id`; the receiver yields the result and the LSN to wait for.
    pub(crate) fn ask(
        &self,
        shared: &Arc<Shared>,
        id: u64,
        command: E::Command,
    ) -> Result<oneshot::Receiver<(Result<E::Reply>, u64)>> {
        let (reply, receiver) = oneshot::channel();
        self.send(shared, id, true, None, |addr| {
            addr.do_send(Ask {
                command,
                reply: Some(reply),
            })
        })?;
        Ok(receiver)
    }

    /// Queues `command` for actor `id` without a reply channel (one-way).
    pub(crate) fn tell(&self, shared: &Arc<Shared>, id: u64, command: E::Command) -> Result<()> {
        self.send(shared, id, true, None, |addr| {
            addr.do_send(Ask {
                command,
                reply: None,
            })
        })
    }

    /// Removes actor `id` if nothing is pending for it. Called by the actor itself.
    pub(crate) fn remove_if_idle(&self, id: u64, pending: &Arc<AtomicUsize>) -> bool {
        let mut stripe = self.stripe(id);
        match stripe.get(&id) {
            Some(entry)
                if Arc::ptr_eq(&entry.pending, pending)
                    && entry.pending.load(Ordering::Acquire) == 0 =>
            {
                stripe.remove(&id);
                true
            }
            _ => false,
        }
    }

    /// Number of running actors of this kind.
    pub fn active_count(&self) -> usize {
        self.stripes
            .iter()
            .map(|stripe| stripe.lock().map(|map| map.len()).unwrap_or(0))
            .sum()
    }
}

/// Kind-erased operations the runtime needs on any directory.
pub(crate) trait AnyDirectory: Send + Sync {
    /// For finding the typed directory (`Registry::directory`).
    fn as_any(&self) -> &dyn std::any::Any;
    /// Queues an event another actor decided for actor `id` (activating it). `Err` when the
    /// receiver cannot be activated (its snapshot cannot be read); the event's hold stays taken.
    fn deliver_foreign(
        &self,
        shared: &Arc<Shared>,
        id: u64,
        event: Event,
        lsn: u64,
        floor: u64,
    ) -> Result<()>;
    /// Asks actor `id` for its snapshot; it answers through `collector`.
    fn take_snapshot(
        &self,
        shared: &Arc<Shared>,
        id: u64,
        collector: &Arc<Collector>,
    ) -> Result<()>;
    fn fire_timer(&self, shared: &Arc<Shared>, id: u64, ack: Option<oneshot::Sender<()>>);
    fn active_count(&self) -> usize;
}

impl<E: Entity> AnyDirectory for Directory<E> {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn deliver_foreign(
        &self,
        shared: &Arc<Shared>,
        id: u64,
        event: Event,
        lsn: u64,
        floor: u64,
    ) -> Result<()> {
        let Some(typed) = event.downcast_ref::<E::Event>() else {
            return Err(Error::Store(format!(
                "an event of tag {} was addressed to kind {:?}, whose events are another type",
                event.tag(),
                E::KIND
            )));
        };
        let created = E::created_by(id, typed);
        self.send(shared, id, false, created, |addr| {
            addr.do_send(Foreign { event, lsn, floor })
        })
    }

    fn take_snapshot(
        &self,
        shared: &Arc<Shared>,
        id: u64,
        collector: &Arc<Collector>,
    ) -> Result<()> {
        self.send(shared, id, false, None, |addr| {
            addr.do_send(TakeSnapshot {
                reply: SnapshotReply::new(collector),
            })
        })
    }

    fn fire_timer(&self, shared: &Arc<Shared>, id: u64, ack: Option<oneshot::Sender<()>>) {
        if let Err(error) = self.send(shared, id, false, None, |addr| addr.do_send(Timer { ack })) {
            // Its index entry was taken when it fell due: put it back, so the timer fires once
            // the actor can be activated again (a lease must still expire).
            let retry_at = shared.clock.now_ms() + TIMER_RETRY_MS;
            tracing::error!(%error, id, retry_at, "cannot activate an actor for its timer; retrying");
            shared
                .timers
                .set(ActorKey::new(E::KIND, id), Some(retry_at));
        }
    }

    fn active_count(&self) -> usize {
        Directory::active_count(self)
    }
}
