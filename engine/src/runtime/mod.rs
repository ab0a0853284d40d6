//! The actor runtime: our own small actor API in front of actix, so a later swap touches only
//! this module. Domain code implements [`Entity`] (state, `decide`, `apply`, `save`, `load`) and
//! never sees actix.
//!
//! # The write path (DESIGN.md)
//! 1. A command is addressed to one actor (`ActorKey`); the [`Directory`] activates it if needed
//!    (load its snapshot from the checkpoint store, or create it empty) on its shard's arbiter.
//! 2. The actor's `decide` validates the command against its state and returns events (already
//!    validated facts) and a reply. Commands are never logged; events are.
//! 3. The events of one command, for this actor and possibly others, go to the WAL as ONE record
//!    (a crash keeps all of them or none).
//! 4. The actor applies its own events at once; events for other actors are delivered to them
//!    (they must be idempotent assignments, because replay re-applies them).
//! 5. The caller gets the reply only after the WAL is durable up to the LSN the reply reflects
//!    (`sync` durability). Reads and rejections carry the actor's last applied LSN, so no reply
//!    ever reveals state a crash could lose.
//!
//! # Mailboxes
//! Every actor's mailbox is bounded by `mailbox_depth_max`, enforced by the directory's per-actor
//! pending counter *before* a message is queued (full → `Error::Overloaded`). actix's own capacity
//! is not used: its `try_send` parks per sender clone and admits one extra message per clone, so it
//! is not a hard bound. The same counter makes passivation race-free: an actor leaves the
//! directory only under its stripe lock with nothing pending.
//!
//! # Faults
//! A fault the running engine cannot repair (a failed checkpoint pass, an event that could not
//! reach its actor, a poisoned WAL) latches [`Fault`]: every later command is refused with
//! `Error::Stopped`, readiness is false, and a restart recovers from the WAL. Nothing
//! acknowledged is lost, and no reply ever reflects state the engine could not keep consistent.
//!
//! # Domains
//! The runtime names no domain. A domain registers its kinds (each an [`Entity`] type with its
//! [`DomainEvent`] type) and its config section in a [`Registry`] (`registry.rs`); the runtime
//! finds directories, replay loaders and event decoders there. Events travel type-erased
//! ([`Event`]) and are encoded into WAL records byte for byte as the closed enum of earlier
//! builds encoded them (`event.rs`), so old logs read unchanged.
//!
//! Invariants:
//! - Only actors mutate their state, on their own arbiter thread.
//! - An actor passivates only when clean (no events since its last snapshot) and its last snapshot
//!   has been written to the checkpoint store, so a new incarnation loads exactly the state the old one had.

mod actor;
pub(crate) mod checkpoint;
mod directory;
mod domain;
pub mod effects;
mod event;
pub mod outbox;
pub mod recovery;
mod registry;
mod replayed;
pub(crate) mod timers;
pub(crate) mod tracker;

use std::sync::Arc;

pub use checkpoint::CheckpointReport;
pub use directory::Directory;
pub use domain::{registry_of, Domain};
pub use event::{DomainEvent, Event, Record};
pub use recovery::Replay;
pub use registry::Registry;

pub use crate::key::{ActorKey, Kind};

use crate::clock::{Millis, SharedClock};
use crate::config::{Durability, EngineConfig};
use crate::error::{Error, Result};
use crate::store::{SnapshotBatch, Store};
use crate::wal::Wal;

/// What `decide` returns: the events to log (none for a read or a no-op) and the reply.
#[derive(Debug)]
pub struct Decision<R> {
    pub events: Vec<(ActorKey, Event)>,
    pub reply: R,
}

impl<R> Decision<R> {
    /// A decision that changes nothing.
    pub fn read(reply: R) -> Self {
        Decision {
            events: Vec::new(),
            reply,
        }
    }
}

/// What a command handler may read besides its state.
pub struct Ctx<'a> {
    pub key: ActorKey,
    pub now_ms: Millis,
    pub config: &'a EngineConfig,
    /// Every record at or below this LSN is reflected in flushed snapshots: replay never meets
    /// it again.
    pub coverage_lsn: u64,
}

/// State of one kind of actor. Implemented by each domain, registered with
/// [`Registry::kind`].
pub trait Entity: Sized + Send + Unpin + 'static {
    const KIND: Kind;
    /// Whether this kind's snapshots are packed: stored [`crate::store::GROUP`] ids to a sled
    /// key instead of one header, parts and timer key per actor. For small actors created in id
    /// order by the thousand (work buckets: one per lease), where the store's cost per key would
    /// dominate a checkpoint; siblings in a group are created, changed and snapshotted at about
    /// the same time, so a group is rewritten in few passes.
    const PACKED: bool = false;
    /// The events this kind applies (its domain's event type; every event addressed to an
    /// actor of this kind is one).
    type Event: DomainEvent;
    type Command: Send + 'static;
    type Reply: Send + 'static;

    /// Loads the actor from its snapshot, or creates it empty when it has none.
    fn load(id: u64, store: &Store) -> Result<Self>;

    /// Validates `command` against the state; returns the events and the reply. Must not mutate.
    fn decide(&self, command: Self::Command, ctx: &Ctx<'_>) -> Result<Decision<Self::Reply>>;

    /// The state of an actor that `event`, decided by another actor, brings into being: its id
    /// was never used before, so the store holds nothing for it and activation skips reading
    /// it. `None` (the default) loads as usual. Used on live delivery only; replay always
    /// loads (a snapshot may have been written after the event).
    fn created_by(_id: u64, _event: &Self::Event) -> Option<Self> {
        None
    }

    /// Applies an event this actor decided. Deterministic.
    fn apply(&mut self, event: &Self::Event);

    /// Applies an event another actor decided for this one. Must be an idempotent assignment:
    /// replay re-applies foreign events whatever this actor's snapshot LSN is.
    fn apply_foreign(&mut self, event: &Self::Event) {
        self.apply(event)
    }

    /// [`Entity::apply_foreign`], told the LSN of the record the event is in (live and in
    /// replay), for an actor that must recognise an event it has seen (the outbox).
    fn apply_foreign_at(&mut self, event: &Self::Event, _lsn: u64) {
        self.apply_foreign(event)
    }

    /// The next instant (clock ms) at which this actor wants `timer_command`, derived from its
    /// state. The runtime re-reads it after every applied event and persists it with snapshots.
    fn next_deadline(&self) -> Option<Millis> {
        None
    }

    /// Called once the clock has passed `next_deadline`: the command to run (its events are
    /// logged as usual). `None` when nothing is due after all.
    fn timer_command(&self, _now_ms: Millis) -> Option<Self::Command> {
        None
    }

    /// Writes the parts of the state changed since the last call into `batch`.
    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch);
}

/// The engine's fail-stop latch: the first fault it cannot repair while running (a failed
/// checkpoint pass, an event that could not reach its actor) stops every later command, loudly,
/// until a restart; recovery from the WAL then repairs it. A poisoned WAL counts as one.
#[derive(Debug, Default)]
pub(crate) struct Fault {
    reason: std::sync::OnceLock<String>,
}

impl Fault {
    /// Records the first fault (later ones are only logged).
    pub fn raise(&self, reason: String) {
        tracing::error!(
            "engine: {reason}; every new command is refused until a restart recovers from the WAL"
        );
        let _ = self.reason.set(reason);
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }
}

/// What every actor and directory shares.
pub(crate) struct Shared {
    pub fault: Fault,
    /// The coverage LSN last flushed to the store (see `Ctx::coverage_lsn`).
    pub coverage_lsn: std::sync::atomic::AtomicU64,
    pub wal: Wal,
    pub store: Store,
    pub tracker: tracker::Tracker,
    pub passes: checkpoint::Passes,
    pub timers: timers::Timers,
    pub clock: SharedClock,
    pub config: EngineConfig,
    pub shards: Vec<actix_rt::ArbiterHandle>,
    pub registry: Registry,
    pub effects: effects::Effects,
    /// Each domain's shared state (caches, id allocators: `Domain::start`), by type.
    pub states: std::collections::HashMap<std::any::TypeId, Box<dyn std::any::Any + Send + Sync>>,
}

impl Shared {
    /// A domain's shared state, made at open by its `Domain::start`.
    pub(crate) fn state<T: std::any::Any>(&self) -> &T {
        // Invariant: a domain asks only for the state its own `start` always returns.
        self.states
            .get(&std::any::TypeId::of::<T>())
            .and_then(|state| state.downcast_ref::<T>())
            .expect("the domain's state, made at open")
    }

    /// `Some(Error::Stopped)` once the engine has stopped taking commands (see [`Fault`]).
    pub fn stopped(&self) -> Option<Error> {
        if let Some(reason) = self.fault.reason() {
            return Some(Error::Stopped(reason.to_string()));
        }
        if self.wal.is_poisoned() {
            return Some(Error::Stopped(
                "the WAL is poisoned after a failed write or fdatasync".to_string(),
            ));
        }
        None
    }

    /// Queues `command` for actor `id` without waiting for the reply (one-way). The change is
    /// applied like any other; the caller just never learns the outcome.
    pub fn tell<E: Entity>(self: &Arc<Self>, id: u64, command: E::Command) -> Result<()> {
        self.registry.directory::<E>().tell(self, id, command)
    }

    /// Sends `command` to actor `id` of kind `E` and returns its reply once the state it reflects
    /// is durable (in `sync` durability).
    pub async fn ask<E: Entity>(
        self: &Arc<Self>,
        id: u64,
        command: E::Command,
    ) -> Result<E::Reply> {
        let receiver = self.registry.directory::<E>().ask(self, id, command)?;
        let (result, lsn) = receiver
            .await
            .map_err(|_| Error::Unavailable("actor stopped"))?;
        if let Err(Error::Stopped(_)) = &result {
            // A refusal reveals nothing, so it need not wait (the WAL may never get there).
            return result;
        }
        if self.config.durability == Durability::Sync && lsn > self.wal.durable_lsn() {
            self.wal.wait_durable(lsn).await?;
        }
        result
    }
}
