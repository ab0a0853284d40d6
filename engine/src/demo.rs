//! A demonstration domain: named counters. It exercises every part of the runtime (commands,
//! reads, events to another actor, snapshots, replay) and backs the foundation's crash test. Not a
//! product feature; the social workload is the first real user of the engine.
//!
//! A counter has a value and a table of values mirrored from other counters: `Add` with `mirror_to`
//! logs one record carrying the counter's own event and a `Mirrored` event for the other counter,
//! an idempotent assignment, as the runtime requires of events for other actors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Ctx, Decision, Domain, DomainEvent, Entity, Event, Kind, Registry};
use crate::store::{SnapshotBatch, Store};

/// The demo domain: registered in `lib.rs`'s `domains!`.
pub const DOMAIN: Demo = Demo;

/// The counter kind.
pub const COUNTER: Kind = Kind::new(1);

pub struct Demo;

impl Domain for Demo {
    fn name(&self) -> &'static str {
        "demo"
    }

    fn register(&self, registry: &mut Registry) {
        registry.kind::<Counter>("counter");
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CounterEvent {
    Added {
        by: i64,
    },
    Mirrored {
        from: u64,
        value: i64,
    },
    /// A durable timer: add `by` once the clock reaches `at_ms`.
    Scheduled {
        by: i64,
        at_ms: u64,
    },
    /// The scheduled add ran.
    ScheduleRan,
    /// A notification of the new value was asked for (an effect, `DemoNotice`); the counter's
    /// `seq`-th.
    Notified { seq: u64 },
}

/// The effect kind of a counter's notifications.
pub const NOTIFY_EFFECT: &str = "demo.notify";

/// What a `demo.notify` effect carries: POST the counter's new value to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoNotice {
    pub url: String,
    pub counter: u64,
    pub value: i64,
    pub seq: u64,
}

impl DemoNotice {
    pub fn decode(payload: &[u8]) -> Result<DemoNotice> {
        crate::codec::decode(payload)
    }
}

#[derive(Debug)]
pub enum CounterCommand {
    /// Adds `by`; with `mirror_to`, also records the new value in that counter's mirror table.
    Add {
        by: i64,
        mirror_to: Option<u64>,
    },
    /// Adds `by` once the clock reaches `at_ms` (replaces any earlier schedule).
    Schedule {
        by: i64,
        at_ms: u64,
    },
    /// The timer command: run the schedule if it is due.
    RunSchedule,
    /// Adds `by` and asks for a notification of the new value to `url` (an effect that runs
    /// once the add is durable; its idempotency key is `demo-counter-<id>-<seq>`).
    AddNotify {
        by: i64,
        url: String,
    },
    Get,
}

/// A counter's public view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterView {
    pub id: u64,
    pub value: i64,
    pub mirrors: BTreeMap<u64, i64>,
    /// The pending scheduled add: (by, at_ms).
    pub scheduled: Option<(i64, u64)>,
}

#[derive(Debug, Default)]
pub struct Counter {
    id: u64,
    value: i64,
    mirrors: BTreeMap<u64, i64>,
    scheduled: Option<(i64, u64)>,
    /// Notifications asked for so far.
    notified: u64,
    notified_dirty: bool,
    value_dirty: bool,
    schedule_dirty: bool,
    mirrors_dirty: Vec<u64>,
}

impl Counter {
    fn view(&self) -> CounterView {
        CounterView {
            id: self.id,
            value: self.value,
            mirrors: self.mirrors.clone(),
            scheduled: self.scheduled,
        }
    }
}

const VALUE: &[u8] = b"value";
const SCHEDULE: &[u8] = b"schedule";
const NOTIFIED: &[u8] = b"notified";

/// A snapshot part, as stored.
#[derive(Debug, Serialize, Deserialize)]
enum Part {
    Value(i64),
    Mirror(i64),
    Schedule(Option<(i64, u64)>),
    Notified(u64),
}
const MIRROR: &[u8] = b"mirror/";

impl DomainEvent for CounterEvent {
    const TAG: u32 = 0;
}

impl Entity for Counter {
    const KIND: Kind = COUNTER;
    type Event = CounterEvent;
    type Command = CounterCommand;
    type Reply = CounterView;

    fn load(id: u64, store: &Store) -> Result<Self> {
        let key = ActorKey::new(COUNTER, id);
        let mut counter = Counter {
            id,
            ..Counter::default()
        };
        for (sub, part) in store.scan::<Part>(key)? {
            match part {
                Part::Value(value) => counter.value = value,
                Part::Schedule(scheduled) => counter.scheduled = scheduled,
                Part::Notified(count) => counter.notified = count,
                Part::Mirror(value) => {
                    let from: [u8; 8] = sub[MIRROR.len()..]
                        .try_into()
                        .map_err(|_| Error::Store(format!("counter {id}: bad mirror key")))?;
                    counter.mirrors.insert(u64::from_be_bytes(from), value);
                }
            }
        }
        Ok(counter)
    }

    fn decide(&self, command: CounterCommand, ctx: &Ctx<'_>) -> Result<Decision<CounterView>> {
        match command {
            CounterCommand::Get => Ok(Decision::read(self.view())),
            CounterCommand::Schedule { by, at_ms } => {
                let mut view = self.view();
                view.scheduled = Some((by, at_ms));
                Ok(Decision {
                    events: vec![(
                        ctx.key,
                        Event::new(CounterEvent::Scheduled { by, at_ms }),
                    )],
                    reply: view,
                })
            }
            CounterCommand::RunSchedule => match self.scheduled {
                Some((by, at_ms)) if at_ms <= ctx.now_ms => {
                    let mut view = self.view();
                    view.value += by;
                    view.scheduled = None;
                    Ok(Decision {
                        events: vec![
                            (ctx.key, Event::new(CounterEvent::Added { by })),
                            (ctx.key, Event::new(CounterEvent::ScheduleRan)),
                        ],
                        reply: view,
                    })
                }
                _ => Ok(Decision::read(self.view())),
            },
            CounterCommand::AddNotify { by, url } => {
                let value = self
                    .value
                    .checked_add(by)
                    .ok_or_else(|| Error::conflict("counter_overflow", "counter would overflow"))?;
                let seq = self.notified + 1;
                let notice = DemoNotice {
                    url,
                    counter: self.id,
                    value,
                    seq,
                };
                let mut view = self.view();
                view.value = value;
                Ok(Decision {
                    events: vec![
                        (ctx.key, Event::new(CounterEvent::Added { by })),
                        (ctx.key, Event::new(CounterEvent::Notified { seq })),
                        crate::runtime::outbox::effect(crate::runtime::outbox::Effect {
                            kind: NOTIFY_EFFECT.to_string(),
                            key: format!("demo-counter-{}-{seq}", self.id),
                            payload: crate::codec::encode(&notice),
                        }),
                    ],
                    reply: view,
                })
            }
            CounterCommand::Add { by, mirror_to } => {
                let value = self
                    .value
                    .checked_add(by)
                    // The input is fine; the counter's current value is what makes it fail.
                    .ok_or_else(|| Error::conflict("counter_overflow", "counter would overflow"))?;
                let mut events = vec![(ctx.key, Event::new(CounterEvent::Added { by }))];
                if let Some(other) = mirror_to {
                    if other == self.id {
                        return Err(Error::invalid_field(
                            "invalid_field",
                            "mirror_to",
                            "cannot mirror to itself",
                        ));
                    }
                    events.push((
                        ActorKey::new(COUNTER, other),
                        Event::new(CounterEvent::Mirrored {
                            from: self.id,
                            value,
                        }),
                    ));
                }
                let mut view = self.view();
                view.value = value;
                Ok(Decision {
                    events,
                    reply: view,
                })
            }
        }
    }

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added { by } => {
                self.value += by;
                self.value_dirty = true;
            }
            CounterEvent::Mirrored { from, value } => {
                self.mirrors.insert(*from, *value);
                self.mirrors_dirty.push(*from);
            }
            CounterEvent::Scheduled { by, at_ms } => {
                self.scheduled = Some((*by, *at_ms));
                self.schedule_dirty = true;
            }
            CounterEvent::ScheduleRan => {
                self.scheduled = None;
                self.schedule_dirty = true;
            }
            CounterEvent::Notified { seq } => {
                self.notified = self.notified.max(*seq);
                self.notified_dirty = true;
            }
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.scheduled.map(|(_, at_ms)| at_ms)
    }

    fn timer_command(&self, now_ms: u64) -> Option<CounterCommand> {
        self.scheduled
            .filter(|(_, at_ms)| *at_ms <= now_ms)
            .map(|_| CounterCommand::RunSchedule)
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        if std::mem::take(&mut self.schedule_dirty) {
            batch.put(key, SCHEDULE, &Part::Schedule(self.scheduled));
        }
        if std::mem::take(&mut self.value_dirty) {
            batch.put(key, VALUE, &Part::Value(self.value));
        }
        if std::mem::take(&mut self.notified_dirty) {
            batch.put(key, NOTIFIED, &Part::Notified(self.notified));
        }
        for from in std::mem::take(&mut self.mirrors_dirty) {
            let mut sub = MIRROR.to_vec();
            sub.extend_from_slice(&from.to_be_bytes());
            batch.put(key, &sub, &Part::Mirror(self.mirrors[&from]));
        }
    }
}

impl crate::Engine {
    /// The demonstration counters.
    pub fn counters(&self) -> Counters<'_> {
        Counters { engine: self }
    }
}

/// The demonstration counters, through [`Engine::counters`].
pub struct Counters<'a> {
    engine: &'a crate::Engine,
}

impl Counters<'_> {
    /// Adds `by` to counter `id`; with `mirror_to`, records the new value in that counter too,
    /// atomically. Returns once durable.
    pub async fn add(&self, id: u64, by: i64, mirror_to: Option<u64>) -> crate::Result<CounterView> {
        self.engine
            .shared()
            .ask::<Counter>(id, CounterCommand::Add { by, mirror_to })
            .await
    }

    /// Adds `by` to counter `id` (and mirrors it like [`Counters::add`]) one-way: queued at
    /// once, never awaited (benches, and tests that need to order mailboxes).
    pub fn add_one_way(&self, id: u64, by: i64, mirror_to: Option<u64>) -> crate::Result<()> {
        self.engine
            .shared()
            .tell::<Counter>(id, CounterCommand::Add { by, mirror_to })
    }

    /// Reads counter `id` one-way (a pure mailbox round without a reply; for benches).
    pub fn get_one_way(&self, id: u64) -> crate::Result<()> {
        self.engine
            .shared()
            .tell::<Counter>(id, CounterCommand::Get)
    }

    /// Adds `by` to counter `id` and asks for a `demo.notify` effect: the new value POSTed to
    /// `url` once the add is durable, at least once. Returns once durable.
    pub async fn add_notify(&self, id: u64, by: i64, url: String) -> crate::Result<CounterView> {
        self.engine
            .shared()
            .ask::<Counter>(id, CounterCommand::AddNotify { by, url })
            .await
    }

    /// Adds `by` to counter `id` once the clock reaches `at_ms` (a durable timer).
    pub async fn schedule(&self, id: u64, by: i64, at_ms: u64) -> crate::Result<CounterView> {
        self.engine
            .shared()
            .ask::<Counter>(id, CounterCommand::Schedule { by, at_ms })
            .await
    }

    pub async fn get(&self, id: u64) -> crate::Result<CounterView> {
        self.engine
            .shared()
            .ask::<Counter>(id, CounterCommand::Get)
            .await
    }
}
