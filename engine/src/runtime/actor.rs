//! The actix actor that hosts one [`Entity`]. Owns the entity's state, its last applied LSN and
//! its dirty hold; runs the write path steps 2–4 of the module docs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message};
use tokio::sync::oneshot;

use super::checkpoint::{SnapshotReply, TakenSnapshot};
use super::{Ctx, Entity, Event, Record, Shared};
use crate::clock::Millis;
use crate::error::Result;
use crate::store::SnapshotBatch;

/// The reply channel of a command: the result and the LSN the caller must see durable first.
pub(crate) type ReplySender<R> = oneshot::Sender<(Result<R>, u64)>;

pub(crate) struct EntityActor<E: Entity> {
    pub key: super::ActorKey,
    pub state: E,
    pub shared: Arc<Shared>,
    /// Messages queued for this actor and not yet handled (shared with its directory entry).
    pub pending: Arc<AtomicUsize>,
    /// Highest LSN reflected in the in-memory state.
    pub last_applied: u64,
    /// The floor of this actor's hold while it is dirty (events since its last snapshot): never
    /// above the LSN of any event applied since that snapshot.
    pub dirty_floor: Option<u64>,
    /// Highest LSN of a snapshot of this actor written to the checkpoint store.
    pub snapshot_written: u64,
    /// The last snapshot taken and not yet known written: its pass and its LSN.
    pub snapshot_taken: Option<(u64, u64)>,
    /// Clock time of the last handled message, for passivation.
    pub last_active_ms: u64,
    /// The deadline registered in the timer index for this actor.
    pub deadline: Option<Millis>,
    /// The deadline stored with the last snapshot taken.
    pub persisted_deadline: Option<Millis>,
}

impl<E: Entity> EntityActor<E> {
    fn touch(&mut self) {
        self.last_active_ms = self.shared.clock.now_ms();
    }

    fn handled(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Re-reads the entity's deadline and updates the timer index when it changed.
    pub(crate) fn sync_deadline(&mut self) {
        let deadline = self.state.next_deadline();
        if deadline != self.deadline {
            self.shared.timers.set(self.key, deadline);
            self.deadline = deadline;
        }
    }

    /// Steps 2–4: decide, log, apply, deliver. Returns the result and the LSN to wait for.
    fn run_command(&mut self, command: E::Command) -> (Result<E::Reply>, u64) {
        if let Some(stopped) = self.shared.stopped() {
            return (Err(stopped), self.last_applied);
        }
        let ctx = Ctx {
            key: self.key,
            now_ms: self.shared.clock.now_ms(),
            config: &self.shared.config,
            coverage_lsn: self
                .shared
                .coverage_lsn
                .load(std::sync::atomic::Ordering::Acquire),
        };
        let decision = match self.state.decide(command, &ctx) {
            Ok(decision) => decision,
            Err(error) => return (Err(error), self.last_applied),
        };
        if decision.events.is_empty() {
            return (Ok(decision.reply), self.last_applied);
        }
        let shared = &self.shared;
        // Only enqueues are held back: the outbox's own completions are what drains the pools.
        let enqueues = decision.events.iter().any(|(key, event)| {
            key.kind == super::outbox::OUTBOX
                && matches!(
                    event.downcast_ref::<super::outbox::OutboxEvent>(),
                    Some(super::outbox::OutboxEvent::Enqueued(_))
                )
        });
        if enqueues && shared.effects.saturated() {
            // Back-pressure: the pools are behind; nothing is logged.
            return (
                Err(crate::error::Error::Overloaded("effect queue")),
                self.last_applied,
            );
        }
        // Holds are taken before the LSN exists, at a floor no greater than it.
        let floor = shared.wal.next_lsn();
        let foreign_count = decision
            .events
            .iter()
            .filter(|(key, _)| *key != self.key)
            .count();
        let newly_dirty = self.dirty_floor.is_none();
        if newly_dirty {
            shared.tracker.mark_dirty(self.key, floor);
        }
        for _ in 0..foreign_count {
            shared.tracker.hold(floor);
        }
        let record = Record {
            origin: self.key,
            entries: decision.events,
        };
        let lsn = match shared.wal.append(record.encode()) {
            Ok(lsn) => lsn,
            Err(error) => {
                // Nothing was logged: give back every hold taken for it.
                for _ in 0..foreign_count + usize::from(newly_dirty) {
                    shared.tracker.release(floor);
                }
                return (Err(error), self.last_applied);
            }
        };
        if newly_dirty {
            self.dirty_floor = Some(floor);
        }
        let mut undelivered = None;
        if enqueues {
            for (key, event) in &record.entries {
                if let Some(super::outbox::OutboxEvent::Enqueued(effect)) = (key.kind
                    == super::outbox::OUTBOX)
                    .then(|| event.downcast_ref::<super::outbox::OutboxEvent>())
                    .flatten()
                {
                    shared.effects.offer(lsn, effect.clone());
                }
            }
        }
        for (key, event) in record.entries {
            if key == self.key {
                // Invariant: an actor's own events are of its own event type (its decide made
                // them).
                let own = event
                    .downcast_ref::<E::Event>()
                    .expect("an actor's own event is of its kind's event type");
                self.state.apply(own);
            } else if let Err(error) = shared
                .registry
                .any(key.kind)
                .deliver_foreign(shared, key.id, event, lsn, floor)
            {
                // The event is durable (or will be) in the WAL and keeps its hold, so its
                // segment stays and replay applies it; but the running receiver lacks it. Stop
                // rather than serve diverged state, and do not report this command a success.
                let reason = format!(
                    "the event at lsn {lsn} for {key:?} could not be applied to its actor: {error}"
                );
                shared.fault.raise(reason.clone());
                undelivered = Some(crate::error::Error::Stopped(reason));
            }
        }
        self.last_applied = lsn;
        self.sync_deadline();
        match undelivered {
            Some(error) => (Err(error), lsn),
            None => (Ok(decision.reply), lsn),
        }
    }
}

impl<E: Entity> Actor for EntityActor<E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Register the deadline the loaded state has (the index may hold it already).
        self.deadline = None;
        self.sync_deadline();
        // At shutdown actix may start an actor while dropping its context, outside any runtime;
        // it is about to be dropped, so it needs no passivation timer (and run_interval would
        // panic without a reactor).
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let check_ms = (self.shared.config.passivate_after_ms / 4).clamp(10, 60_000);
        ctx.run_interval(Duration::from_millis(check_ms), |actor, ctx| {
            actor.maybe_passivate(ctx)
        });
    }
}

impl<E: Entity> EntityActor<E> {
    fn maybe_passivate(&mut self, ctx: &mut Context<Self>) {
        let idle_ms = self
            .shared
            .clock
            .now_ms()
            .saturating_sub(self.last_active_ms);
        if let Some((pass, lsn)) = self.snapshot_taken {
            if self.shared.passes.is_written(pass) {
                self.snapshot_written = self.snapshot_written.max(lsn);
                self.snapshot_taken = None;
            }
        }
        let clean = self.dirty_floor.is_none() && self.snapshot_written >= self.last_applied;
        if idle_ms >= self.shared.config.passivate_after_ms
            && clean
            && self
                .shared
                .registry
                .directory::<E>()
                .remove_if_idle(self.key.id, &self.pending)
        {
            ctx.stop();
        }
    }
}

/// A command for the entity.
pub(crate) struct Ask<E: Entity> {
    pub command: E::Command,
    /// `None` for a one-way send.
    pub reply: Option<ReplySender<E::Reply>>,
}

impl<E: Entity> Message for Ask<E> {
    type Result = ();
}

impl<E: Entity> Handler<Ask<E>> for EntityActor<E> {
    type Result = ();

    fn handle(&mut self, message: Ask<E>, _: &mut Self::Context) {
        self.touch();
        let outcome = self.run_command(message.command);
        // The caller may have gone away (e.g. a dropped HTTP request); the change stands.
        if let Some(reply) = message.reply {
            let _ = reply.send(outcome);
        }
        self.handled();
    }
}

/// An event another actor decided for this one, logged at `lsn`, carrying a hold at `floor`.
pub(crate) struct Foreign {
    pub event: Event,
    pub lsn: u64,
    pub floor: u64,
}

impl Message for Foreign {
    type Result = ();
}

impl<E: Entity> Handler<Foreign> for EntityActor<E> {
    type Result = ();

    fn handle(&mut self, message: Foreign, _: &mut Self::Context) {
        self.touch();
        // Invariant: the directory checked the event's type before queueing it.
        let event = message
            .event
            .downcast_ref::<E::Event>()
            .expect("a foreign event of the receiver's event type");
        self.state.apply_foreign_at(event, message.lsn);
        self.last_applied = self.last_applied.max(message.lsn);
        self.sync_deadline();
        match self.dirty_floor {
            None => {
                // Transfer the message's hold to this actor's dirty hold.
                self.dirty_floor = Some(message.floor);
                self.shared.tracker.mark_dirty_with_held(self.key);
            }
            // The message's hold was taken before this actor's: an own command queued ahead of
            // the message turned it dirty at a floor above `message.lsn`. Keep the lower floor
            // (and give back the higher), or coverage could pass this unflushed event.
            Some(floor) if message.floor < floor => {
                self.dirty_floor = Some(message.floor);
                self.shared.tracker.release(floor);
            }
            Some(_) => self.shared.tracker.release(message.floor),
        }
        self.handled();
    }
}

pub(crate) struct TakeSnapshot {
    pub reply: SnapshotReply,
}

impl Message for TakeSnapshot {
    type Result = ();
}

impl<E: Entity> Handler<TakeSnapshot> for EntityActor<E> {
    type Result = ();

    fn handle(&mut self, message: TakeSnapshot, _: &mut Self::Context) {
        let taken = self.dirty_floor.take().map(|floor| {
            let mut batch = SnapshotBatch::default();
            let t = std::time::Instant::now();
            self.state.save(self.key, &mut batch);
            let took = t.elapsed();
            // Time the actor's thread spent gathering its snapshot (a long one delays every
            // message queued behind it; see `Chunked::save_later`).
            if took > std::time::Duration::from_millis(2) {
                tracing::debug!(key = ?self.key, ?took, "a slow snapshot save");
            }
            let deadline = self.state.next_deadline();
            let changed = deadline != self.persisted_deadline;
            self.persisted_deadline = deadline;
            self.snapshot_taken = Some((self.shared.passes.current(), self.last_applied));
            TakenSnapshot {
                batch,
                lsn: self.last_applied,
                floor,
                deadline: changed.then_some(deadline),
            }
        });
        message.reply.send(self.key, taken);
        self.handled();
    }
}

/// A due timer: run the entity's timer command. `ack` (tests) is told once it ran.
pub(crate) struct Timer {
    pub ack: Option<oneshot::Sender<()>>,
}

impl Message for Timer {
    type Result = ();
}

impl<E: Entity> Handler<Timer> for EntityActor<E> {
    type Result = ();

    fn handle(&mut self, message: Timer, _: &mut Self::Context) {
        self.touch();
        let now_ms = self.shared.clock.now_ms();
        if let Some(command) = self.state.timer_command(now_ms) {
            let (result, _) = self.run_command(command);
            if let Err(error) = result {
                tracing::warn!(%error, key = ?self.key, "timer command failed");
            }
        }
        // The index entry was taken when the timer fired: register what the state wants now.
        self.deadline = None;
        self.sync_deadline();
        if let Some(ack) = message.ack {
            let _ = ack.send(());
        }
        self.handled();
    }
}
