//! Switchyard's engine: actors, the write-ahead log, redb checkpoints and the domains. It knows
//! nothing of HTTP, JSON or JWT; `switchyard-net` and embedding programs call it through
//! [`Engine`].
//!
//! # Layout
//! - [`wal`]: segment files, record framing, group commit, recovery scan.
//! - [`store`]: redb checkpoints (per-actor snapshots) and the meta record; the data-dir lock.
//! - [`runtime`]: the actor API in front of actix: directory, activation, passivation, the
//!   write path, coverage tracking, the checkpointer, start-up replay.
//! - [`clock`]: the only source of time. [`codec`]: the only byte format. [`metrics`]: counters
//!   and histograms. [`config`]: every limit, with its default.
//! - [`demo`]: a counter domain that exercises the runtime.
//!
//! # Example
//! Open an engine on a temporary directory, sign two users up, post, like, read the counters;
//! every call returns once its change is durable, and a reopened engine has it all.
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use switchyard_engine::social::SignUp;
//! use switchyard_engine::{Engine, EngineConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let engine = Engine::open(EngineConfig::for_tests(dir.path()))?;
//! let social = engine.social();
//! let sign_up = |email: &str| SignUp {
//!     email: email.into(),
//!     password: "correct horse battery".into(),
//!     full_name: None,
//!     enrichment: None,
//! };
//! let ann = social.sign_up(sign_up("ann@example.com")).await?;
//! let bob = social.sign_up(sign_up("bob@example.com")).await?;
//! let post = social.create_post(ann.id, "hello".into()).await?;
//! let liked = social.like(bob.id, post.id).await?; // durable when it returns
//! assert_eq!(liked.likes, 1);
//! assert_eq!(social.user(bob.id).await?.likes_given, 1);
//! assert!(social.check().await?.is_empty()); // every counter matches the records
//! engine.shutdown()?;
//! drop(engine); // releases the data-dir lock
//!
//! let engine = Engine::open(EngineConfig::for_tests(dir.path()))?;
//! assert_eq!(engine.social().post(post.id).await?.likes, 1);
//! assert_eq!(engine.social().user(ann.id).await?.posts_count, 1);
//! # engine.shutdown()?;
//! # Ok(())
//! # }
//! ```

pub mod clock;
pub mod codec;
pub mod config;
pub mod error;
pub mod failpoints;
pub mod key;
pub mod metrics;
pub mod runtime;
pub mod store;
pub mod wal;

/// Declares the domain folders and registers them, in order: `domains!(a, b)` is `pub mod a;
/// pub mod b;` and [`DOMAINS`] = `[&a::DOMAIN, &b::DOMAIN]`. Adding a domain is adding its
/// name here (see ARCHITECTURE.md, "Adding a domain").
macro_rules! domains {
    ($($domain:ident),* $(,)?) => {
        $(pub mod $domain;)*
        /// Every domain of this build, in registration order.
        pub const DOMAINS: &[&dyn runtime::Domain] = &[$(&$domain::DOMAIN),*];
    };
}

domains!(demo, social, work, market, dispatch);

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{Durability, EngineConfig};
pub use error::{Error, Result};
pub use runtime::CheckpointReport;

/// A page of a keyset-paginated list (every domain's lists): `next` is the key to continue
/// after, if any. A page costs the same wherever it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<u64>,
}

use runtime::{checkpoint, recovery::Replay, timers::Timers, tracker::Tracker, Registry, Shared};
use store::{DirLock, Store};
use wal::Wal;

/// What start-up recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryInfo {
    /// Coverage LSN read from the checkpoint store before replay.
    pub coverage_lsn: u64,
    /// WAL records replayed (above the coverage LSN).
    pub records_replayed: u64,
    /// Events applied to actors during replay.
    pub events_applied: u64,
    /// Actors snapshotted after replay.
    pub actors_restored: usize,
    /// Bytes of torn tail dropped from the WAL.
    pub torn_bytes_dropped: u64,
    /// The last LSN in the log after recovery.
    pub last_lsn: u64,
    /// Wall time of recovery, in milliseconds.
    pub elapsed_ms: u64,
}

/// The stop flag of the background threads (checkpointer, timers).
struct Background {
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Background {
    /// Sleeps for `interval` or until stop is requested; true when the thread should stop.
    fn sleep(&self, interval: Duration) -> bool {
        let stop = self.stop.lock().expect("stop lock");
        let (stop, _) = self
            .wake
            .wait_timeout_while(stop, interval, |stop| !*stop)
            .expect("stop lock");
        *stop
    }
}

struct Inner {
    shared: Arc<Shared>,
    system: actix_rt::System,
    system_thread: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    timer_thread: Mutex<Option<JoinHandle<()>>>,
    background: Arc<Background>,
    pass_lock: Arc<Mutex<()>>,
    closed: AtomicBool,
    recovery: RecoveryInfo,
    // Field order is drop order: the lock goes after `shared` (and so the checkpoint store).
    _lock: DirLock,
}

/// An open engine. Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Opens the engine on `config.data_dir` with the system clock: lock the directory, open the checkpoint store,
    /// replay the WAL tail, checkpoint what was replayed, start the actors and the checkpointer.
    /// Blocking; returns when the engine is ready.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        Engine::open_with_clock(config, Arc::new(SystemClock))
    }

    /// As [`Engine::open`], with the given clock (tests use a [`ManualClock`]).
    pub fn open_with_clock(config: EngineConfig, clock: SharedClock) -> Result<Engine> {
        let lock = DirLock::acquire(&config.data_dir)?;
        Engine::open_locked(config, lock, clock)
    }

    /// As [`Engine::open_with_clock`] on a data dir whose lock the caller already holds
    /// ([`DirLock::acquire`] on `config.data_dir`): the server takes it before it binds its
    /// address, so a second server on the same dir is refused before it says it listens. The
    /// engine keeps the lock until it is dropped.
    pub fn open_locked(config: EngineConfig, lock: DirLock, clock: SharedClock) -> Result<Engine> {
        Engine::open_with_effects(config, lock, clock, Vec::new())
    }

    /// As [`Engine::open_locked`], with worker pools for the effects the domains ask for
    /// (`runtime::outbox`): the embedding program gives the handlers (the engine does no network
    /// I/O). An effect of a kind without a pool stays pending.
    pub fn open_with_effects(
        mut config: EngineConfig,
        lock: DirLock,
        clock: SharedClock,
        effect_pools: Vec<runtime::effects::EffectPool>,
    ) -> Result<Engine> {
        let registry = runtime::registry_of(DOMAINS);
        config
            .validate()
            .and_then(|()| registry.complete_config(&mut config))
            .map_err(|message| Error::invalid("invalid_config", message))?;
        let started = std::time::Instant::now();
        let store = Store::open_packed(
            &config.data_dir,
            config.store_cache_bytes,
            registry.packed(),
        )?;
        let meta = store.meta()?;
        // A data dir of an older readable format is migrated by this open (codec::FORMAT_VERSION).
        let migrating = meta.format_version != 0 && meta.format_version < codec::FORMAT_VERSION;
        let mut replay = Replay::new(&store, &registry);
        let from = wal::RecoveryFrom {
            after_lsn: meta.coverage_lsn,
            durable_floor: store.snapshot_lsn_max(),
            accept_loss: config.recovery_accept_wal_loss,
        };
        let (wal, report) = Wal::open_from(config.wal_config(), from, |lsn, payload| {
            replay.apply_record(lsn, payload)
        })?;
        if migrating {
            for domain in DOMAINS {
                domain.migrate(meta.format_version, &store, &mut replay)?;
            }
        }
        let records_replayed = replay.records;
        let events_applied = replay.events_applied;
        failpoints::check(failpoints::OPEN_CHECKPOINT)
            .map_err(|error| Error::Store(error.to_string()))?;
        let actors_restored = replay.checkpoint()?;
        let last_lsn = wal.next_lsn() - 1;
        if last_lsn > meta.coverage_lsn || migrating {
            // Stamps this build's format; the segments written by the older one are covered
            // (every open starts a new segment) and go.
            let covered_lsn = last_lsn.max(meta.coverage_lsn);
            store.write_meta(covered_lsn)?;
            wal.remove_covered(covered_lsn)?;
            if migrating {
                tracing::info!(
                    from = meta.format_version,
                    to = codec::FORMAT_VERSION,
                    "data dir migrated to this build's format"
                );
            }
        }
        let mut states = std::collections::HashMap::new();
        for domain in DOMAINS {
            if let Some(state) = domain.start(&store, &config)? {
                states.insert(state.as_ref().type_id(), state);
            }
        }
        let (system, system_thread, shards) = start_actor_system(config.shards)?;
        let coverage_lsn = last_lsn.max(meta.coverage_lsn);
        let config_effects_depth = config.effects_queue_depth_max;
        let shared = Arc::new(Shared {
            fault: Default::default(),
            coverage_lsn: std::sync::atomic::AtomicU64::new(coverage_lsn),
            wal,
            store,
            tracker: Tracker::default(),
            passes: Default::default(),
            timers: Timers::default(),
            clock,
            config,
            shards,
            registry,
            effects: runtime::effects::Effects::new(config_effects_depth),
            states,
        });
        // Re-arm every durable timer (passivated actors included) from the checkpoint store.
        for (key, deadline) in shared.store.deadlines()? {
            shared.timers.set(key, Some(deadline));
        }
        let background = Arc::new(Background {
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let pass_lock = Arc::new(Mutex::new(()));
        let checkpointer =
            spawn_checkpointer(shared.clone(), background.clone(), pass_lock.clone())?;
        let timer_thread = spawn_timer_thread(shared.clone(), background.clone())?;
        runtime::effects::Effects::start(&shared, effect_pools)?;
        let recovery = RecoveryInfo {
            coverage_lsn: meta.coverage_lsn,
            records_replayed,
            events_applied,
            actors_restored,
            torn_bytes_dropped: report.torn_bytes_dropped,
            last_lsn,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(?recovery, "engine recovered");
        let engine = Engine {
            inner: Arc::new(Inner {
                shared,
                system,
                system_thread: Mutex::new(Some(system_thread)),
                checkpointer: Mutex::new(Some(checkpointer)),
                timer_thread: Mutex::new(Some(timer_thread)),
                background,
                pass_lock,
                closed: AtomicBool::new(false),
                recovery,
                _lock: lock,
            }),
        };
        for domain in DOMAINS {
            domain.opened(&engine)?;
        }
        Ok(engine)
    }

    /// What recovery did at open.
    pub fn recovery(&self) -> &RecoveryInfo {
        &self.inner.recovery
    }

    /// True while the engine accepts commands: not shut down and not stopped by a fault (a
    /// poisoned WAL, a failed checkpoint pass, an event that could not reach its actor).
    pub fn is_ready(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire) && self.inner.shared.stopped().is_none()
    }

    /// Why the engine stopped taking commands, if it did (see [`Engine::is_ready`]).
    pub fn fault(&self) -> Option<String> {
        self.inner.shared.stopped().map(|error| error.to_string())
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.shared.config
    }

    pub fn clock(&self) -> &SharedClock {
        &self.inner.shared.clock
    }

    /// Domain `T`'s shared state (what its `Domain::start` returned).
    pub(crate) fn state<T: std::any::Any>(&self) -> &T {
        self.inner.shared.state::<T>()
    }

    /// Every effect logged and not yet completed (`runtime::outbox`), over all outbox actors.
    pub async fn pending_effects(&self) -> Result<Vec<runtime::outbox::Pending>> {
        use runtime::outbox::{Outbox, OutboxCommand, OutboxReply, SHARDS};
        let mut pending = Vec::new();
        for shard in 0..SHARDS {
            let command = OutboxCommand::Due {
                now_ms: u64::MAX,
                limit: usize::MAX,
            };
            if let OutboxReply::Due { due, .. } =
                self.shared().ask::<Outbox>(shard, command).await?
            {
                pending.extend(due);
            }
        }
        Ok(pending)
    }

    /// The domain registry of this engine.
    pub fn registry(&self) -> &Registry {
        &self.inner.shared.registry
    }

    /// Runs a checkpoint pass now (the background checkpointer also runs them).
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        let _pass = self.inner.pass_lock.lock().expect("pass lock not poisoned");
        checkpoint::run_pass(&self.inner.shared)
    }

    /// Fires every durable timer due at the clock's current time and waits until each actor has
    /// run its timer command. Returns how many fired. The background timer thread does the same
    /// every `timer_tick_ms`; tests with a [`ManualClock`] call this after advancing the clock.
    pub async fn fire_due_timers(&self) -> usize {
        let shared = &self.inner.shared;
        let due = shared.timers.take_due(shared.clock.now_ms(), usize::MAX);
        let mut acks = Vec::with_capacity(due.len());
        for key in &due {
            let (ack, done) = tokio::sync::oneshot::channel();
            shared
                .registry
                .any(key.kind)
                .fire_timer(shared, key.id, Some(ack));
            acks.push(done);
        }
        for done in acks {
            let _ = done.await;
        }
        due.len()
    }

    /// Number of actor shards (arbiter threads).
    pub fn shards(&self) -> usize {
        self.inner.shared.shards.len()
    }

    /// Runs `future` on shard `shard`'s arbiter thread (the thread its actors run on), so a caller
    /// can keep a request's path on one thread. Returns false if the shard has stopped.
    pub fn spawn_on_shard<F>(&self, shard: usize, future: F) -> bool
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let shards = &self.inner.shared.shards;
        shards[shard % shards.len()].spawn(future)
    }

    /// Number of actors with a durable timer armed.
    pub fn timers_armed(&self) -> usize {
        self.inner.shared.timers.len()
    }

    /// Number of actors currently active (in memory), all kinds.
    pub fn active_actors(&self) -> usize {
        self.inner
            .shared
            .registry
            .directories()
            .map(|directory| directory.active_count())
            .sum()
    }

    /// Appends the engine's metrics in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let shared = &self.inner.shared;
        shared.wal.render_metrics(out);
        let _ = writeln!(
            out,
            "# TYPE switchyard_actors_active gauge\nswitchyard_actors_active {}",
            self.active_actors()
        );
        let _ = writeln!(
            out,
            "# TYPE switchyard_checkpoint_holds gauge\nswitchyard_checkpoint_holds {}",
            shared.tracker.held_count()
        );
        let _ = writeln!(
            out,
            "# TYPE switchyard_ready gauge\nswitchyard_ready {}",
            u8::from(self.is_ready())
        );
        let _ = writeln!(
            out,
            "# HELP switchyard_stopped 1 once a fault stopped the engine (see the log).\n\
             # TYPE switchyard_stopped gauge\nswitchyard_stopped {}",
            u8::from(shared.stopped().is_some())
        );
    }

    /// Stops the engine in order: stop the checkpointer, sync the WAL, take a last checkpoint,
    /// stop the actors, close the WAL. Idempotent. Requests still in flight get `Unavailable`.
    pub fn shutdown(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        *inner.background.stop.lock().expect("stop lock") = true;
        inner.background.wake.notify_all();
        for thread in [&inner.checkpointer, &inner.timer_thread] {
            if let Some(thread) = thread.lock().expect("join lock").take() {
                let _ = thread.join();
            }
        }
        let shared = &inner.shared;
        shared.effects.stop();
        // After a fault the last pass is skipped (and reported): a restart recovers from the
        // WAL, which keeps everything the skipped pass would have covered.
        let mut outcome = match shared.stopped() {
            Some(stopped) => Err(stopped),
            None => shared.wal.sync(),
        };
        if outcome.is_ok() {
            let _pass = inner.pass_lock.lock().expect("pass lock not poisoned");
            outcome = checkpoint::run_pass(shared).map(|_| ());
        }
        inner.system.stop();
        if let Some(thread) = inner.system_thread.lock().expect("join lock").take() {
            let _ = thread.join();
        }
        let closed = shared.wal.close();
        outcome.and(closed)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            *self.background.stop.lock().expect("stop lock") = true;
            self.background.wake.notify_all();
            for thread in [&self.checkpointer, &self.timer_thread] {
                if let Some(thread) = thread.lock().expect("join lock").take() {
                    let _ = thread.join();
                }
            }
            self.shared.effects.stop();
            self.system.stop();
            if let Some(thread) = self.system_thread.lock().expect("join lock").take() {
                let _ = thread.join();
            }
            let _ = self.shared.wal.close();
        }
    }
}

/// Starts the actor system on its own thread: the system arbiter is shard 0, and `shards - 1`
/// more arbiters (threads) are added.
fn start_actor_system(
    shards: usize,
) -> Result<(
    actix_rt::System,
    JoinHandle<()>,
    Vec<actix_rt::ArbiterHandle>,
)> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("switchyard-actors".into())
        .spawn(move || {
            let runner = actix_rt::System::new();
            let system = actix_rt::System::current();
            let mut handles = vec![system.arbiter().clone()];
            let mut extra = Vec::new();
            for _ in 1..shards {
                let arbiter = actix_rt::Arbiter::new();
                handles.push(arbiter.handle());
                extra.push(arbiter);
            }
            // The receiver waits for this message; it cannot be gone.
            let _ = sender.send((system, handles));
            if let Err(error) = runner.run() {
                tracing::error!(%error, "actor system stopped with an error");
            }
            for arbiter in extra {
                arbiter.stop();
                let _ = arbiter.join();
            }
        })
        .map_err(|e| Error::io("spawn actor system thread", e))?;
    let (system, handles) = receiver
        .recv()
        .map_err(|_| Error::Unavailable("actor system failed to start"))?;
    Ok((system, thread, handles))
}

fn spawn_checkpointer(
    shared: Arc<Shared>,
    background: Arc<Background>,
    pass_lock: Arc<Mutex<()>>,
) -> Result<JoinHandle<()>> {
    let interval = Duration::from_millis(shared.config.checkpoint_interval_ms);
    std::thread::Builder::new()
        .name("switchyard-checkpointer".into())
        .spawn(move || loop {
            if background.sleep(interval) {
                return;
            }
            let _pass = pass_lock.lock().expect("pass lock not poisoned");
            if let Err(error) = checkpoint::run_pass(&shared) {
                // run_pass latched the engine's fault; the WAL keeps every change.
                tracing::error!(%error, "checkpoint failed; checkpointing stops");
                return;
            }
        })
        .map_err(|e| Error::io("spawn checkpointer thread", e))
}

/// Fires due timers every `timer_tick_ms` (at most `TIMERS_PER_TICK_MAX` per tick, so a burst of
/// expiries cannot flood the mailboxes in one go; the rest fire on the next tick).
fn spawn_timer_thread(shared: Arc<Shared>, background: Arc<Background>) -> Result<JoinHandle<()>> {
    const TIMERS_PER_TICK_MAX: usize = 10_000;
    let interval = Duration::from_millis(shared.config.timer_tick_ms);
    std::thread::Builder::new()
        .name("switchyard-timers".into())
        .spawn(move || loop {
            if background.sleep(interval) {
                return;
            }
            if shared.stopped().is_some() {
                // Stopped engines run no commands; the timers fire after the restart.
                continue;
            }
            let due = shared
                .timers
                .take_due(shared.clock.now_ms(), TIMERS_PER_TICK_MAX);
            for key in due {
                shared
                    .registry
                    .any(key.kind)
                    .fire_timer(&shared, key.id, None);
            }
        })
        .map_err(|e| Error::io("spawn timer thread", e))
}

impl EngineConfig {
    /// Small, fast settings for tests: the runtime's ([`EngineConfig::for_tests_runtime`]) and
    /// each domain's test settings (`Domain::configure_for_tests`: cheap password hashing, ...).
    pub fn for_tests(data_dir: impl Into<std::path::PathBuf>) -> Self {
        let mut config = EngineConfig::for_tests_runtime(data_dir);
        for domain in DOMAINS {
            domain.configure_for_tests(&mut config);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use crate::key::ActorKey;
    use crate::runtime::{Event, Record};
    use crate::{codec, demo, social, work};

    /// The closed enum every record was written with before domains were registered.
    #[derive(Serialize)]
    enum OldEvent {
        Counter(demo::CounterEvent),
        Social(social::SocialEvent),
        Work(work::WorkEvent),
    }

    #[derive(Serialize)]
    struct OldRecord {
        origin: ActorKey,
        entries: Vec<(ActorKey, OldEvent)>,
    }

    /// Records encode byte for byte as the closed enum did, and such bytes decode through the
    /// registry: logs written before domains were registered read unchanged.
    #[test]
    fn records_keep_the_closed_enum_encoding() {
        let registry = crate::runtime::registry_of(crate::DOMAINS);
        let user = ActorKey::new(social::USER, 300);
        let index = ActorKey::new(social::POST_INDEX, 0);
        let pool = ActorKey::new(work::POOL, 0);
        let counter = ActorKey::new(demo::COUNTER, 7);
        let cases: Vec<(OldRecord, Record)> = vec![
            (
                OldRecord {
                    origin: counter,
                    entries: vec![
                        (
                            counter,
                            OldEvent::Counter(demo::CounterEvent::Added { by: -3 }),
                        ),
                        (
                            ActorKey::new(demo::COUNTER, 8),
                            OldEvent::Counter(demo::CounterEvent::Mirrored { from: 7, value: 9 }),
                        ),
                    ],
                },
                Record {
                    origin: counter,
                    entries: vec![
                        (counter, Event::new(demo::CounterEvent::Added { by: -3 })),
                        (
                            ActorKey::new(demo::COUNTER, 8),
                            Event::new(demo::CounterEvent::Mirrored { from: 7, value: 9 }),
                        ),
                    ],
                },
            ),
            (
                OldRecord {
                    origin: user,
                    entries: vec![(
                        index,
                        OldEvent::Social(social::SocialEvent::PostLikes {
                            post_id: 1 << 40,
                            likes: 3,
                        }),
                    )],
                },
                Record {
                    origin: user,
                    entries: vec![(
                        index,
                        Event::new(social::SocialEvent::PostLikes {
                            post_id: 1 << 40,
                            likes: 3,
                        }),
                    )],
                },
            ),
            (
                OldRecord {
                    origin: pool,
                    entries: vec![(
                        pool,
                        OldEvent::Work(work::WorkEvent::ItemsAdded {
                            items: vec![("k".into(), -1), ("é".into(), 7)],
                        }),
                    )],
                },
                Record {
                    origin: pool,
                    entries: vec![(
                        pool,
                        Event::new(work::WorkEvent::ItemsAdded {
                            items: vec![("k".into(), -1), ("é".into(), 7)],
                        }),
                    )],
                },
            ),
        ];
        for (old, new) in cases {
            let bytes = codec::encode(&old);
            assert_eq!(new.encode(), bytes);
            let decoded = Record::decode(&bytes, &registry).unwrap();
            assert_eq!(decoded.origin, new.origin);
            assert_eq!(
                format!("{:?}", decoded.entries),
                format!("{:?}", new.entries)
            );
        }
        // An unknown tag is refused, never misread.
        let mut bytes = codec::encode(&OldRecord {
            origin: counter,
            entries: vec![(counter, OldEvent::Counter(demo::CounterEvent::ScheduleRan))],
        });
        let tag_at = bytes.len() - 2;
        assert_eq!(bytes[tag_at], 0, "the counter tag");
        bytes[tag_at] = 99;
        assert!(Record::decode(&bytes, &registry).is_err());
    }
}
