//! Running the outbox's effects (see `outbox.rs`): worker pools fed through bounded crossbeam
//! queues, one pool per effect kind, with handlers the embedding program gives at open
//! ([`EffectPool`]; the engine itself does no network I/O).
//!
//! 1. **Live handoff.** When an actor logs a record that enqueues effects, it offers them to
//!    the dispatcher's bounded queue (never blocking the actor thread). The `effects`
//!    dispatcher thread waits until the record is durable, then hands each effect to its
//!    pool's bounded queue; a full pool queue blocks the dispatcher, whose own queue then fills,
//!    and a command that would enqueue more effects is refused with `Overloaded` (503 at the
//!    edge) before anything is logged: back-pressure, never a drop.
//! 2. **Sweep.** Every `effects_sweep_ms` (and at once after start-up) the dispatcher asks each
//!    outbox actor for the effects due now and hands out those not in flight: what a full queue
//!    skipped, what a failed attempt scheduled for later, and after a crash every durable effect
//!    not yet completed.
//! 3. **Workers** run one attempt at a time (blocking calls are fine there) and report the
//!    outcome to the effect's outbox actor (completed, or failed with the time to retry); the
//!    key leaves the in-flight set only once that report is durable, so a sweep never hands out
//!    an effect whose attempt is still being recorded, and a live offer still queued for an
//!    effect the sweep already ran is dropped when it comes up (`queued`): no attempt runs
//!    twice without a crash in between.
//!
//! At least once: an attempt may run again after a crash between the receiver's acceptance
//! and the completion record, always with the same idempotency key.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::outbox::{shard_of, Effect, Outbox, OutboxCommand, OutboxReply, SHARDS};
use super::Shared;
use crate::clock::Millis;
use crate::error::{Error, Result};

/// What one attempt of an effect came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectOutcome {
    /// Done: the effect is completed.
    Done,
    /// Not done; try again after `after_ms`.
    Retry { after_ms: u64, error: String },
    /// Never to be tried again (the handler recorded why, e.g. a dead letter): completed.
    GiveUp { error: String },
}

/// Runs one kind of effect. Called on the pool's worker threads, never on an actor thread.
pub trait EffectHandler: Send + Sync + 'static {
    /// One attempt; `attempts` is how many failed before this one. `engine` lets a handler
    /// written in a domain's engine folder record what it learned (a fetched price, a
    /// delivery's status) with commands of its own before it answers.
    fn run(&self, effect: &Effect, attempts: u32, engine: &EffectContext<'_>) -> EffectOutcome;
}

/// What a handler may reach of the engine while it runs: the clock, and (for handlers inside
/// the engine crate) commands to actors and the domains' shared state. A command's reply comes
/// once its change is durable, as for any caller.
pub struct EffectContext<'a> {
    shared: &'a Arc<Shared>,
    runtime: &'a tokio::runtime::Runtime,
}

impl EffectContext<'_> {
    /// The engine's clock.
    pub fn now_ms(&self) -> Millis {
        self.shared.clock.now_ms()
    }

    /// Sends `command` to actor `id` and waits (blocking this worker) for its durable reply.
    pub(crate) fn ask<E: super::Entity>(&self, id: u64, command: E::Command) -> Result<E::Reply> {
        self.runtime.block_on(self.shared.ask::<E>(id, command))
    }

    /// A domain's shared state (see `Domain::start`).
    pub(crate) fn state<T: std::any::Any>(&self) -> &T {
        self.shared.state::<T>()
    }
}

/// A worker pool for one effect kind.
pub struct EffectPool {
    pub kind: String,
    pub handler: Arc<dyn EffectHandler>,
    /// Worker threads (attempts at once).
    pub workers: usize,
    /// Effects waiting for a worker; full → the dispatcher waits.
    pub queue_depth_max: usize,
}

struct Job {
    effect: Effect,
    attempts: u32,
}

/// The dispatcher's state shared with actors and workers.
pub(crate) struct Effects {
    offers: Sender<(u64, Effect)>,
    offers_rx: Receiver<(u64, Effect)>,
    in_flight: Mutex<HashSet<String>>,
    /// Keys with a live offer in `offers` → whether an attempt already ran since (the offer is
    /// then stale and dropped).
    queued: Mutex<HashMap<String, bool>>,
    /// Outbox shards that may hold pending effects (bit `shard`): the sweep asks only these, so
    /// idle outbox actors are not activated. At start-up, the shards whose snapshot holds a
    /// pending effect (the open-time checkpoint made every shard's snapshot complete); then an
    /// offer sets its shard's bit, and a sweep that finds a shard empty clears it.
    shards_with_pending: std::sync::atomic::AtomicU64,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pools: Mutex<HashMap<String, Sender<Job>>>,
}

impl Effects {
    pub(crate) fn new(queue_depth_max: usize) -> Effects {
        let (offers, offers_rx) = crossbeam_channel::bounded(queue_depth_max.max(1));
        Effects {
            offers,
            offers_rx,
            in_flight: Mutex::new(HashSet::new()),
            queued: Mutex::new(HashMap::new()),
            shards_with_pending: std::sync::atomic::AtomicU64::new(0),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the embedder gave a worker pool for effects of `kind`.
    pub(crate) fn has_pool(&self, kind: &str) -> bool {
        lock(&self.pools).contains_key(kind)
    }

    /// Whether a command that enqueues effects must be refused for now (back-pressure).
    pub(crate) fn saturated(&self) -> bool {
        self.offers.is_full()
    }

    /// Offers a logged effect for handoff once `lsn` is durable. A full queue leaves it to the
    /// next sweep (it is pending in the outbox either way).
    pub(crate) fn offer(&self, lsn: u64, effect: Effect) {
        self.mark_pending(&effect.key);
        let key = effect.key.clone();
        let mut queued = lock(&self.queued);
        match self.offers.try_send((lsn, effect)) {
            Ok(()) => {
                queued.insert(key, false);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn mark_pending(&self, key: &str) {
        self.shards_with_pending
            .fetch_or(1 << shard_of(key), Ordering::AcqRel);
    }

    /// An attempt of `key` ended (and is recorded): it leaves the in-flight set, and a live
    /// offer of it still queued is stale.
    fn finished(&self, key: &str) {
        if let Some(ran) = lock(&self.queued).get_mut(key) {
            *ran = true;
        }
        self.lock_in_flight().remove(key);
    }

    /// Takes the live offer of `key` off the books; `true` if it is stale.
    fn offer_taken(&self, key: &str) -> bool {
        lock(&self.queued).remove(key).unwrap_or(false)
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the dispatcher and the pools' workers.
    pub(crate) fn start(shared: &Arc<Shared>, pools: Vec<EffectPool>) -> Result<()> {
        let effects = &shared.effects;
        for shard in 0..SHARDS {
            let key = super::ActorKey::new(super::outbox::OUTBOX, shard);
            if super::outbox::has_pending(&shared.store, key)? {
                effects
                    .shards_with_pending
                    .fetch_or(1 << shard, Ordering::AcqRel);
            }
        }
        let mut threads = Vec::new();
        for pool in pools {
            let (tx, rx) = crossbeam_channel::bounded::<Job>(pool.queue_depth_max.max(1));
            for index in 0..pool.workers.max(1) {
                let shared = Arc::downgrade(shared);
                let rx = rx.clone();
                let handler = Arc::clone(&pool.handler);
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("effects-{}-{index}", pool.kind))
                        .spawn(move || work(shared, rx, handler))
                        .map_err(|e| Error::io("spawn an effect worker", e))?,
                );
            }
            lock(&effects.pools).insert(pool.kind, tx);
        }
        let weak = Arc::downgrade(shared);
        threads.push(
            std::thread::Builder::new()
                .name("effects".into())
                .spawn(move || dispatch(weak))
                .map_err(|e| Error::io("spawn the effect dispatcher", e))?,
        );
        lock(&effects.threads).extend(threads);
        Ok(())
    }

    /// Stops the dispatcher and the workers (each finishes its attempt) and joins them.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        lock(&self.pools).clear(); // workers see their queue close
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A current-thread runtime for the engine's async calls from a plain thread.
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| tracing::error!(%error, "effects: no runtime"))
        .ok()
}

const IDLE: Duration = Duration::from_millis(50);
const DUE_PER_SWEEP_MAX: usize = 10_000;

/// The dispatcher thread: live offers once durable, and the periodic sweep.
fn dispatch(shared: Weak<Shared>) {
    let Some(runtime) = runtime() else { return };
    let mut last_sweep: Option<Millis> = None;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let effects = &strong.effects;
        if effects.stop.load(Ordering::Acquire) || strong.stopped().is_some() {
            return;
        }
        let now = strong.clock.now_ms();
        let sweep_due =
            last_sweep.is_none_or(|at| now.saturating_sub(at) >= strong.config.effects_sweep_ms);
        if sweep_due {
            last_sweep = Some(now);
            for shard in 0..SHARDS {
                let bit = 1u64 << shard;
                if effects.shards_with_pending.load(Ordering::Acquire) & bit == 0 {
                    continue;
                }
                // Cleared before asking: an offer after this point sets it again.
                effects
                    .shards_with_pending
                    .fetch_and(!bit, Ordering::AcqRel);
                let due = runtime.block_on(strong.ask::<Outbox>(
                    shard,
                    OutboxCommand::Due {
                        now_ms: now,
                        limit: DUE_PER_SWEEP_MAX,
                    },
                ));
                match due {
                    Ok(OutboxReply::Due { due, pending }) => {
                        if pending > 0 {
                            effects.shards_with_pending.fetch_or(bit, Ordering::AcqRel);
                        }
                        for pending in due {
                            hand_out(&strong, pending.effect, pending.attempts);
                        }
                    }
                    _ => {
                        effects.shards_with_pending.fetch_or(bit, Ordering::AcqRel);
                    }
                }
            }
        }
        let offer = effects.offers_rx.recv_timeout(IDLE);
        if let Ok((lsn, effect)) = offer {
            // Only what is durable leaves the engine.
            if strong.wal.wait_durable_blocking(lsn).is_err() {
                return;
            }
            if !effects.offer_taken(&effect.key) {
                hand_out(&strong, effect, 0);
            }
        }
    }
}

/// Gives `effect` to its pool unless it is in flight; blocks while the pool's queue is full.
fn hand_out(shared: &Shared, effect: Effect, attempts: u32) {
    let effects = &shared.effects;
    let Some(pool) = lock(&effects.pools).get(&effect.kind).cloned() else {
        tracing::debug!(kind = %effect.kind, "effects: no pool for this kind; it stays pending");
        return;
    };
    if !effects.lock_in_flight().insert(effect.key.clone()) {
        return;
    }
    let key = effect.key.clone();
    if pool.send(Job { effect, attempts }).is_err() {
        effects.lock_in_flight().remove(&key);
    }
}

/// A worker thread: one attempt at a time, each reported durably before the next.
fn work(shared: Weak<Shared>, jobs: Receiver<Job>, handler: Arc<dyn EffectHandler>) {
    let Some(runtime) = runtime() else { return };
    while let Ok(job) = jobs.recv() {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let context = EffectContext {
            shared: &shared,
            runtime: &runtime,
        };
        let outcome = handler.run(&job.effect, job.attempts, &context);
        let key = job.effect.key.clone();
        let command = match outcome {
            EffectOutcome::Done => OutboxCommand::Complete { key: key.clone() },
            EffectOutcome::GiveUp { error } => {
                tracing::warn!(key = %key, %error, "effects: given up");
                OutboxCommand::Complete { key: key.clone() }
            }
            EffectOutcome::Retry { after_ms, error } => OutboxCommand::Failed {
                key: key.clone(),
                retry_at_ms: shared.clock.now_ms().saturating_add(after_ms),
                error,
            },
        };
        // Recorded before the key leaves the in-flight set (see the module docs); an engine
        // that stopped keeps it in flight, and a restart hands it out again.
        loop {
            match runtime.block_on(shared.ask::<Outbox>(shard_of(&key), command.clone())) {
                Ok(_) => {
                    shared.effects.finished(&key);
                    break;
                }
                Err(Error::Overloaded(_)) if !shared.effects.stop.load(Ordering::Acquire) => {
                    std::thread::sleep(IDLE);
                }
                Err(error) => {
                    tracing::warn!(key = %key, %error, "effects: the outcome was not recorded");
                    break;
                }
            }
        }
    }
}
