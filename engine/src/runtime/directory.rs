//! The directory: id → running actor, per kind. Activates an actor on its first message (load
//! snapshot or create empty) on the shard its id hashes to, counts its pending messages (the
//! mailbox bound), and removes it on passivation.
//!
//! Invariant: an actor is added, looked up, and removed only under its stripe's lock, and the
//! pending count is raised under that lock before a message is queued; so a passivating actor
//! (pending == 0 under the lock) can never receive a message after it left the directory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix::{Actor, Addr};
use tokio::sync::oneshot;

use super::actor::{
    Ask, EntityActor, Foreign, SnapshotWritten, TakeSnapshot, TakenSnapshot, Timer,
};
use super::{ActorKey, Entity, Event, Kind, Shared};
use crate::error::{Error, Result};

const STRIPES: usize = 64;

struct Entry<E: Entity> {
    addr: Addr<EntityActor<E>>,
    pending: Arc<AtomicUsize>,
}

/// The running actors of one kind.
pub struct Directory<E: Entity> {
    stripes: Vec<Mutex<HashMap<u64, Entry<E>>>>,
}

impl<E: Entity> Default for Directory<E> {
    fn default() -> Self {
        Directory {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
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
    fn stripe(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Entry<E>>> {
        // Invariant: nothing panics while a stripe is held except a failed snapshot load, which
        // is returned as an error before any insertion.
        self.stripes[(mix(id) % STRIPES as u64) as usize]
            .lock()
            .expect("directory stripe not poisoned")
    }

    /// Finds or activates actor `id` and reserves one mailbox slot. `bounded` applies the
    /// mailbox limit (commands); internal messages are never refused.
    fn reserve(
        &self,
        shared: &Arc<Shared>,
        id: u64,
        bounded: bool,
    ) -> Result<(Addr<EntityActor<E>>, Arc<AtomicUsize>)> {
        let mut stripe = self.stripe(id);
        if let Some(entry) = stripe.get(&id) {
            if bounded
                && entry.pending.load(Ordering::Acquire) >= shared.config.mailbox_depth_max
            {
                return Err(Error::Overloaded("actor mailbox"));
            }
            entry.pending.fetch_add(1, Ordering::AcqRel);
            return Ok((entry.addr.clone(), entry.pending.clone()));
        }
        let key = ActorKey::new(E::KIND, id);
        let state = E::load(id, &shared.store)?;
        let snapshot_lsn = shared
            .store
            .snapshot_meta(key)?
            .map(|meta| meta.lsn)
            .unwrap_or(0);
        let persisted_deadline = shared.store.deadline(key)?;
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
            last_active_ms: shared.clock.now_ms(),
            deadline: None,
            persisted_deadline,
        };
        let addr = EntityActor::start_in_arbiter(shard, move |_| actor);
        stripe.insert(
            id,
            Entry {
                addr: addr.clone(),
                pending: pending.clone(),
            },
        );
        Ok((addr, pending))
    }

    /// Queues `command` for actor `id`; the receiver yields the result and the LSN to wait for.
    pub(crate) fn ask(
        &self,
        shared: &Arc<Shared>,
        id: u64,
        command: E::Command,
    ) -> Result<oneshot::Receiver<(Result<E::Reply>, u64)>> {
        let (addr, _) = self.reserve(shared, id, true)?;
        let (reply, receiver) = oneshot::channel();
        // Capacity is enforced above (see the module docs of `runtime`); do_send never parks.
        addr.do_send(Ask { command, reply });
        Ok(receiver)
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
    fn deliver_foreign(&self, shared: &Arc<Shared>, id: u64, event: Event, lsn: u64, floor: u64);
    fn take_snapshot(
        &self,
        shared: &Arc<Shared>,
        id: u64,
    ) -> Result<crossbeam_channel::Receiver<Option<TakenSnapshot>>>;
    fn snapshot_written(&self, id: u64, lsn: u64);
    fn fire_timer(&self, shared: &Arc<Shared>, id: u64, ack: Option<oneshot::Sender<()>>);
    fn active_count(&self) -> usize;
}

impl<E: Entity> AnyDirectory for Directory<E> {
    fn deliver_foreign(&self, shared: &Arc<Shared>, id: u64, event: Event, lsn: u64, floor: u64) {
        match self.reserve(shared, id, false) {
            Ok((addr, _)) => addr.do_send(Foreign { event, lsn, floor }),
            Err(error) => {
                // The receiver could not be loaded (sled failure). The event is durable in the
                // WAL and its hold stays taken, so its segment is kept and replay applies it.
                tracing::error!(%error, id, lsn, "cannot deliver an event to its actor");
            }
        }
    }

    fn take_snapshot(
        &self,
        shared: &Arc<Shared>,
        id: u64,
    ) -> Result<crossbeam_channel::Receiver<Option<TakenSnapshot>>> {
        let (addr, _) = self.reserve(shared, id, false)?;
        let (reply, receiver) = crossbeam_channel::bounded(1);
        addr.do_send(TakeSnapshot { reply });
        Ok(receiver)
    }

    fn snapshot_written(&self, id: u64, lsn: u64) {
        let stripe = self.stripe(id);
        if let Some(entry) = stripe.get(&id) {
            entry.pending.fetch_add(1, Ordering::AcqRel);
            entry.addr.do_send(SnapshotWritten { lsn });
        }
    }

    fn fire_timer(&self, shared: &Arc<Shared>, id: u64, ack: Option<oneshot::Sender<()>>) {
        match self.reserve(shared, id, false) {
            Ok((addr, _)) => addr.do_send(Timer { ack }),
            Err(error) => {
                tracing::error!(%error, id, "cannot activate an actor for its timer");
            }
        }
    }

    fn active_count(&self) -> usize {
        Directory::active_count(self)
    }
}

/// One directory per kind of actor.
#[derive(Default)]
pub struct Directories {
    pub(crate) counter: Directory<crate::demo::Counter>,
    pub(crate) accounts: Directory<crate::social::accounts::Accounts>,
    pub(crate) user: Directory<crate::social::user::User>,
    pub(crate) posts: Directory<crate::social::posts::PostIndex>,
}

impl Directories {
    pub(crate) fn any(&self, kind: Kind) -> &dyn AnyDirectory {
        match kind {
            Kind::Counter => &self.counter,
            Kind::Accounts => &self.accounts,
            Kind::User => &self.user,
            Kind::PostIndex => &self.posts,
        }
    }

    pub(crate) fn all(&self) -> [&dyn AnyDirectory; 4] {
        [&self.counter, &self.accounts, &self.user, &self.posts]
    }
}
