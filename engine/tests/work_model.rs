//! The work workload against a model: random operations (proptest) run on the embedded engine
//! and on a plain in-memory reference (`BTreeMap`s and a `Vec` of items), and every reply is
//! compared with what the model predicts: adds (duplicates, invalid keys, the pool's item
//! limit), registrations (a known secret keeps its id and rotates the token; the old one stops
//! working; the registry's limit), unregistrations, leases (open buckets before new ones by
//! priority and age, the per-request and per-client limits), heartbeats, reports (partial,
//! repeated, by another client, with a stale epoch, naming a key of another bucket, after
//! expiry, discovered keys), expiry through a `ManualClock` and `fire_due_timers`, dead letters
//! and their requeue, reruns, and every read (items by state in keyset pages, buckets, stats
//! with per-client counters). `Restart` is one of the operations: the engine is dropped (after a
//! clean shutdown, or without one, as a crash leaves it) and opened again on the same directory
//! and clock, and then the whole state is compared with the model.
//!
//! Bucket formation picks at random within a window (`work.formation_spread`), so the model
//! does not predict which items a new bucket takes: it checks that they are a choice the rules
//! allow (whole priority classes first, then a draw among the oldest `spread × bucket_size` of
//! the next class) and then adopts the engine's choice. Everything else is predicted exactly,
//! timestamps included.
//!
//! CI runs `CASES` cases of up to `OPS_MAX` operations; `SWITCHYARD_SLOW_TESTS=1` runs
//! `SLOW_CASES` of up to `SLOW_OPS_MAX`. A failure prints the shrunk operation list, and proptest
//! keeps its seed in `work_model.proptest-regressions` so the case runs again first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use switchyard_engine::work::{
    Added, BucketCounts, BucketInfo, BucketStatus, BucketView, ClientStats, DeadBucketView,
    HeartbeatOutcome, ItemCounts, ItemResult, ItemState, ItemView, NewItem, Outcome, Registered,
    Registration, Report, ReportOutcome, ResultView, WorkConfig, WorkStats,
};
use switchyard_engine::{Engine, EngineConfig, Error, ManualClock, Page};

const CASES: u32 = 32;
const OPS_MAX: usize = 100;
const SLOW_CASES: u32 = 400;
const SLOW_OPS_MAX: usize = 200;
/// 2026-11-22T14:00:00Z.
const START_MS: u64 = 1_795_356_000_000;
/// Item keys are `key-00` ... (adds and discovered keys draw from them, so duplicates are
/// frequent).
const KEYS: usize = 24;
/// Client secrets the operations draw from; one more than `CLIENTS_MAX`.
const SLOTS: usize = 4;
const BUCKET_SIZE: usize = 3;
const FORMATION_SPREAD: usize = 2;
const LEASE_MS: u64 = 60_000;
const MAX_EXPIRIES: u32 = 2;
const MAX_BUCKETS_PER_REQUEST: i64 = 3;
const LEASED_BUCKETS_PER_CLIENT_MAX: usize = 4;
const POOL_ITEMS_MAX: usize = 16;
const CLIENTS_MAX: usize = 3;
/// A well-formed client token no one has.
const UNKNOWN_TOKEN: &str = "swc_0000000000000000000000000000000000000000000000000000000000000000";

fn slow() -> bool {
    std::env::var("SWITCHYARD_SLOW_TESTS").is_ok_and(|value| value == "1")
}

fn work_config() -> WorkConfig {
    WorkConfig {
        bucket_size: BUCKET_SIZE,
        lease_seconds: LEASE_MS / 1000,
        max_expiries: MAX_EXPIRIES,
        max_buckets_per_request: MAX_BUCKETS_PER_REQUEST as usize,
        leased_buckets_per_client_max: LEASED_BUCKETS_PER_CLIENT_MAX,
        formation_spread: FORMATION_SPREAD,
        pool_items_max: POOL_ITEMS_MAX,
        clients_max: CLIENTS_MAX,
        ..WorkConfig::for_tests()
    }
}

// ---- Operations ----------------------------------------------------------------------------

/// Which bucket an operation names: one the client holds (by position), any formed bucket (by
/// position; the extra position is the next id, never formed), so most reports and heartbeats
/// reach a live lease and the others cover every refusal.
#[derive(Debug, Clone, Copy)]
enum Target {
    Held(usize),
    Any(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Epoch {
    Omitted,
    Current,
    Older,
}

/// Which token a client operation presents.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Current,
    /// The one before the last registration (or an unknown one).
    Stale,
}

#[derive(Debug, Clone)]
enum Op {
    /// `keys` (by index) with their priority; `invalid` adds a key with a control character.
    Add {
        keys: Vec<(usize, Option<i64>)>,
        invalid: bool,
    },
    Register {
        slot: usize,
        name: usize,
    },
    Unregister {
        slot: usize,
        token: Token,
    },
    Lease {
        slot: usize,
        max_buckets: i64,
        token: Token,
    },
    /// Reports the keys at `picks` (positions in the bucket's sorted keys; `all`: every key
    /// without a result), plus a key of no bucket when `foreign`.
    Report {
        slot: usize,
        target: Target,
        picks: Vec<usize>,
        all: bool,
        foreign: bool,
        discovered: Vec<usize>,
        epoch: Epoch,
        token: Token,
    },
    Heartbeat {
        slot: usize,
        target: Target,
        epoch: Epoch,
    },
    /// Moves the clock on and fires the timers now due.
    Advance {
        seconds: u64,
    },
    /// Reruns a done item (by position among them; any key when none is done, or when not
    /// `done`).
    Rerun {
        key: usize,
        done: bool,
    },
    /// Requeues a dead-lettered bucket (by position among them; any bucket when none is dead,
    /// or when not `dead`).
    RequeueDead {
        target: usize,
        dead: bool,
    },
    Item {
        key: usize,
    },
    Items {
        state: Option<ItemState>,
        after: Option<usize>,
        limit: usize,
    },
    Bucket {
        target: usize,
    },
    DeadLetters {
        after: Option<usize>,
        limit: usize,
    },
    Stats,
    /// Drops the engine and opens it again: after `shutdown`, or without (a crash).
    Restart {
        crash: bool,
    },
}

fn token() -> impl Strategy<Value = Token> {
    prop_oneof![9 => Just(Token::Current), 1 => Just(Token::Stale)]
}

fn epoch() -> impl Strategy<Value = Epoch> {
    prop_oneof![3 => Just(Epoch::Omitted), 3 => Just(Epoch::Current), 1 => Just(Epoch::Older)]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![4 => (0..4usize).prop_map(Target::Held), 1 => (0..16usize).prop_map(Target::Any)]
}

fn op() -> impl Strategy<Value = Op> {
    // Slots 0 and 1 are registered at the start (see `ops`), the others only at random.
    let slot = prop_oneof![4 => 0..2usize, 1 => 2..SLOTS];
    let priority = prop_oneof![2 => Just(None), 1 => (0..3i64).prop_map(Some)];
    prop_oneof![
        3 => (
            prop::collection::vec((0..KEYS, priority), 1..6),
            prop::bool::weighted(0.05)
        )
            .prop_map(|(keys, invalid)| Op::Add { keys, invalid }),
        5 => (prop_oneof![3 => 0..2usize, 1 => 2..SLOTS], 0..3usize)
            .prop_map(|(slot, name)| Op::Register { slot, name }),
        1 => (slot.clone(), token()).prop_map(|(slot, token)| Op::Unregister { slot, token }),
        5 => (slot.clone(), prop_oneof![9 => 1..=MAX_BUCKETS_PER_REQUEST, 1 => Just(0i64), 1 => Just(MAX_BUCKETS_PER_REQUEST + 1)], token())
            .prop_map(|(slot, max_buckets, token)| Op::Lease { slot, max_buckets, token }),
        8 => (
            slot.clone(),
            target(),
            prop::collection::vec(0..BUCKET_SIZE + 1, 0..BUCKET_SIZE + 2),
            prop::bool::weighted(0.4),
            prop::bool::weighted(0.05),
            prop::collection::vec(0..KEYS + 4, 0..2),
            epoch(),
            token()
        )
            .prop_map(|(slot, target, picks, all, foreign, discovered, epoch, token)| Op::Report {
                slot,
                target,
                picks,
                all,
                foreign,
                discovered,
                epoch,
                token
            }),
        2 => (slot, target(), epoch())
            .prop_map(|(slot, target, epoch)| Op::Heartbeat { slot, target, epoch }),
        3 => prop_oneof![1..30u64, 55..70u64, 100..200u64].prop_map(|seconds| Op::Advance { seconds }),
        1 => (0..KEYS, prop::bool::weighted(0.8)).prop_map(|(key, done)| Op::Rerun { key, done }),
        1 => (0..16usize, prop::bool::weighted(0.8))
            .prop_map(|(target, dead)| Op::RequeueDead { target, dead }),
        1 => (0..KEYS + 2).prop_map(|key| Op::Item { key }),
        1 => (
            prop::option::of(prop_oneof![
                Just(ItemState::Pending),
                Just(ItemState::Leased),
                Just(ItemState::Done)
            ]),
            prop::option::of(0..KEYS),
            1..4usize
        )
            .prop_map(|(state, after, limit)| Op::Items { state, after, limit }),
        1 => (0..16usize).prop_map(|target| Op::Bucket { target }),
        1 => (prop::option::of(0..16usize), 1..3usize)
            .prop_map(|(after, limit)| Op::DeadLetters { after, limit }),
        1 => Just(Op::Stats),
        1 => any::<bool>().prop_map(|crash| Op::Restart { crash }),
    ]
}

// ---- The model -----------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct ModelItem {
    key: String,
    priority: i32,
    done: bool,
    results: Vec<ResultView>,
    /// The bucket it waits or is leased in (none: free, or done).
    bucket: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    Leased { client_id: u64, expires_at_ms: u64 },
    Open,
    Done,
    Dead,
}

#[derive(Debug, Clone)]
struct ModelBucket {
    /// Every key, sorted.
    keys: Vec<String>,
    /// Keys with a result recorded in this bucket.
    reported: BTreeSet<String>,
    status: Status,
    epoch: u32,
    expiries: u32,
    /// Past and present holders, most recent last.
    holders: Vec<u64>,
    last_client_id: u64,
    dead_at_ms: u64,
    /// A dead-lettered bucket whose items were requeued: the pool forgot it.
    requeued: bool,
}

impl ModelBucket {
    /// Whether the pool's bucket table holds it (open, leased, or dead and not requeued).
    fn in_pool(&self) -> bool {
        !self.requeued
            && matches!(
                self.status,
                Status::Leased { .. } | Status::Open | Status::Dead
            )
    }

    /// The keys still without a result in this bucket, sorted.
    fn remaining(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter(|key| !self.reported.contains(*key))
            .cloned()
            .collect()
    }
}

#[derive(Debug, Clone)]
struct ModelClient {
    screen_name: String,
    active: bool,
    assigned: u64,
    completed: u64,
    expired: u64,
    rejected: u64,
    last_seen_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    client_id: Option<u64>,
    token: Option<String>,
    /// The token before the last registration.
    stale_token: Option<String>,
}

#[derive(Debug, Default)]
struct Model {
    now_ms: u64,
    /// In the order added (the cursor of `items` is the position).
    items: Vec<ModelItem>,
    positions: BTreeMap<String, usize>,
    buckets: BTreeMap<u64, ModelBucket>,
    clients: BTreeMap<u64, ModelClient>,
    slots: [Slot; SLOTS],
}

/// The pending order: higher priority first, then the oldest (as the pool packs them).
fn pack(priority: i32, position: usize) -> u64 {
    let rank = (i64::from(i32::MAX) - i64::from(priority)) as u64;
    (rank << 32) | position as u64
}

fn key_name(index: usize) -> String {
    format!("key-{index:02}")
}

fn secret(slot: usize) -> String {
    format!("model-secret-of-slot-{slot}")
}

impl Model {
    fn add_item(&mut self, key: String, priority: i32) {
        self.positions.insert(key.clone(), self.items.len());
        self.items.push(ModelItem {
            key,
            priority,
            done: false,
            results: Vec::new(),
            bucket: None,
        });
    }

    fn next_bucket_id(&self) -> u64 {
        self.buckets.keys().next_back().map_or(1, |last| last + 1)
    }

    fn state_of(&self, position: usize) -> ItemState {
        let item = &self.items[position];
        if item.done {
            return ItemState::Done;
        }
        match item.bucket.map(|bucket_id| self.buckets[&bucket_id].status) {
            Some(Status::Leased { .. }) => ItemState::Leased,
            _ => ItemState::Pending,
        }
    }

    fn item_view(&self, position: usize) -> ItemView {
        let item = &self.items[position];
        ItemView {
            key: item.key.clone(),
            state: self.state_of(position),
            priority: item.priority,
            results: item.results.clone(),
        }
    }

    fn held(&self, client_id: u64) -> Vec<u64> {
        self.buckets
            .iter()
            .filter(|(_, bucket)| {
                matches!(bucket.status, Status::Leased { client_id: holder, .. } if holder == client_id)
            })
            .map(|(bucket_id, _)| *bucket_id)
            .collect()
    }

    fn touch(&mut self, client_id: u64) {
        let now_ms = self.now_ms;
        if let Some(client) = self.clients.get_mut(&client_id) {
            if client.last_seen_at_ms.is_none_or(|seen| seen < now_ms) {
                client.last_seen_at_ms = Some(now_ms);
            }
        }
    }

    fn stats(&self) -> WorkStats {
        let mut items = ItemCounts::default();
        for position in 0..self.items.len() {
            match self.state_of(position) {
                ItemState::Pending => items.pending += 1,
                ItemState::Leased => items.leased += 1,
                ItemState::Done => items.done += 1,
            }
        }
        let mut buckets = BucketCounts::default();
        for bucket in self.buckets.values().filter(|bucket| bucket.in_pool()) {
            match bucket.status {
                Status::Leased { .. } => buckets.leased += 1,
                Status::Open => buckets.open += 1,
                Status::Dead => buckets.dead += 1,
                Status::Done => {}
            }
        }
        WorkStats {
            items,
            buckets,
            clients: self
                .clients
                .iter()
                .map(|(client_id, client)| ClientStats {
                    client_id: *client_id,
                    screen_name: client.screen_name.clone(),
                    active: client.active,
                    buckets_assigned: client.assigned,
                    buckets_completed: client.completed,
                    buckets_expired: client.expired,
                    rejected_updates: client.rejected,
                    last_seen_at_ms: client.last_seen_at_ms,
                    leased_buckets: self.held(*client_id).len() as u64,
                })
                .collect(),
        }
    }

    fn items_page(
        &self,
        state: Option<ItemState>,
        after: Option<u64>,
        limit: usize,
    ) -> Page<ItemView> {
        let start = after.map_or(0, |after| after as usize + 1);
        let matching: Vec<usize> = (start.min(self.items.len())..self.items.len())
            .filter(|position| state.is_none_or(|state| self.state_of(*position) == state))
            .collect();
        let items: Vec<ItemView> = matching
            .iter()
            .take(limit)
            .map(|p| self.item_view(*p))
            .collect();
        let next = (matching.len() > limit).then(|| matching[limit - 1] as u64);
        Page { items, next }
    }

    fn bucket_info(&self, bucket_id: u64) -> Option<BucketInfo> {
        let bucket = self.buckets.get(&bucket_id)?;
        let (status, holder, expires) = match bucket.status {
            Status::Leased {
                client_id,
                expires_at_ms,
            } => (BucketStatus::Leased, Some(client_id), Some(expires_at_ms)),
            Status::Open => (BucketStatus::Open, None, None),
            Status::Done => (BucketStatus::Done, None, None),
            Status::Dead => (BucketStatus::Dead, None, None),
        };
        Some(BucketInfo {
            id: bucket_id,
            status,
            epoch: bucket.epoch,
            holder,
            lease_expires_at_ms: expires,
            items: bucket.keys.clone(),
            remaining: bucket.remaining().len() as u64,
            expiries: bucket.expiries,
        })
    }

    fn dead_letters(&self, after: Option<u64>, limit: usize) -> Page<DeadBucketView> {
        let dead: Vec<DeadBucketView> = self
            .buckets
            .iter()
            .filter(|(bucket_id, bucket)| {
                bucket.in_pool()
                    && bucket.status == Status::Dead
                    && after.is_none_or(|after| **bucket_id > after)
            })
            .map(|(bucket_id, bucket)| DeadBucketView {
                bucket_id: *bucket_id,
                items: bucket.remaining(),
                expiries: bucket.expiries,
                last_client_id: bucket.last_client_id,
                dead_at_ms: bucket.dead_at_ms,
            })
            .collect();
        let next = (dead.len() > limit).then(|| dead[limit - 1].bucket_id);
        Page {
            items: dead.into_iter().take(limit).collect(),
            next,
        }
    }

    /// The open order of a bucket: the best (priority, age) of its items without a result.
    fn open_order(&self, bucket: &ModelBucket) -> u64 {
        bucket
            .remaining()
            .iter()
            .map(|key| {
                let position = self.positions[key];
                pack(self.items[position].priority, position)
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Ends the lease of `bucket_id` (expiry or release): its items wait in it again.
    fn end_lease(&mut self, bucket_id: u64, dead: bool) {
        let now_ms = self.now_ms;
        let bucket = self.buckets.get_mut(&bucket_id).expect("a leased bucket");
        bucket.status = if dead { Status::Dead } else { Status::Open };
        if dead {
            bucket.dead_at_ms = now_ms;
        }
    }
}

/// The API.md code of an error, or its kind for the few that have none.
fn code(error: &Error) -> String {
    match error {
        Error::Invalid { code, .. }
        | Error::Conflict { code, .. }
        | Error::Forbidden { code, .. }
        | Error::Unprocessable { code, .. }
        | Error::Unauthenticated { code, .. } => (*code).to_string(),
        Error::NotFound(what) => format!("not_found {what}"),
        Error::Overloaded(_) => "overloaded".into(),
        other => format!("unexpected {other:?}"),
    }
}

/// Compares a reply with the model's prediction: `Ok(value)` or the error code.
fn expect<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: Result<T, Error>,
    expected: Result<T, &str>,
) -> Result<(), String> {
    match (got, expected) {
        (Ok(got), Ok(expected)) if got == expected => Ok(()),
        (Err(error), Err(expected)) if code(&error) == expected => Ok(()),
        (got, expected) => Err(format!(
            "{what}: the engine answered {:?}, the model expects {expected:?}",
            got.map_err(|error| code(&error))
        )),
    }
}

// ---- The run -------------------------------------------------------------------------------

struct Run {
    // Fields drop in declaration order: the engine closes before its directory is deleted.
    engine: Option<Engine>,
    config: EngineConfig,
    clock: ManualClock,
    model: Model,
    _dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = EngineConfig::for_tests(dir.path());
        // Timers fire only through `fire_due_timers`, after `Advance`.
        config.timer_tick_ms = 3_600_000;
        *config.section_mut::<WorkConfig>() = work_config();
        let clock = ManualClock::new(START_MS);
        let engine = Engine::open_with_clock(config.clone(), Arc::new(clock.clone()))
            .expect("the engine opens");
        Run {
            engine: Some(engine),
            config,
            clock,
            model: Model {
                now_ms: START_MS,
                ..Model::default()
            },
            _dir: dir,
        }
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("the engine is open")
    }

    /// The token an operation of `slot` presents, and the client it stands for (if any).
    fn token(&self, slot: usize, which: Token) -> (String, Option<u64>) {
        let slot_state = &self.model.slots[slot];
        let token = match which {
            Token::Current => slot_state.token.clone(),
            Token::Stale => slot_state.stale_token.clone(),
        };
        match token {
            Some(token) => {
                let valid = which == Token::Current
                    && slot_state
                        .client_id
                        .is_some_and(|id| self.model.clients[&id].active);
                (token, valid.then_some(slot_state.client_id).flatten())
            }
            None => (UNKNOWN_TOKEN.to_string(), None),
        }
    }

    /// The bucket id a target names, for the client `client_id` (if it is one).
    fn bucket_id(&self, target: Target, client_id: Option<u64>) -> u64 {
        let model = &self.model;
        let any = |position: usize| {
            let count = model.buckets.len() as u64;
            1 + position as u64 % (count + 1)
        };
        match target {
            Target::Held(position) => {
                let held = client_id.map(|id| model.held(id)).unwrap_or_default();
                if held.is_empty() {
                    any(position)
                } else {
                    held[position % held.len()]
                }
            }
            Target::Any(position) => any(position),
        }
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Add { keys, invalid } => self.add(keys, *invalid).await,
            Op::Register { slot, name } => self.register(*slot, *name).await,
            Op::Unregister { slot, token } => self.unregister(*slot, *token).await,
            Op::Lease {
                slot,
                max_buckets,
                token,
            } => self.lease(*slot, *max_buckets, *token).await,
            Op::Report {
                slot,
                target,
                picks,
                all,
                foreign,
                discovered,
                epoch,
                token,
            } => {
                self.report(
                    *slot, *target, picks, *all, *foreign, discovered, *epoch, *token,
                )
                .await
            }
            Op::Heartbeat {
                slot,
                target,
                epoch,
            } => self.heartbeat(*slot, *target, *epoch).await,
            Op::Advance { seconds } => self.advance(*seconds).await,
            Op::Rerun { key, done } => self.rerun(*key, *done).await,
            Op::RequeueDead { target, dead } => self.requeue_dead(*target, *dead).await,
            Op::Item { key } => {
                let key = key_name(*key);
                let expected = match self.model.positions.get(&key) {
                    Some(position) => Ok(self.model.item_view(*position)),
                    None => Err("not_found item"),
                };
                expect("item", self.engine().work().item(&key).await, expected)
            }
            Op::Items {
                state,
                after,
                limit,
            } => {
                let after = after.map(|after| after as u64);
                expect(
                    "items",
                    self.engine().work().items(*state, after, *limit).await,
                    Ok(self.model.items_page(*state, after, *limit)),
                )
            }
            Op::Bucket { target } => {
                let bucket_id = self.bucket_id(Target::Any(*target), None);
                expect(
                    "bucket",
                    self.engine().work().bucket(bucket_id).await,
                    self.model.bucket_info(bucket_id).ok_or("not_found bucket"),
                )
            }
            Op::DeadLetters { after, limit } => {
                let after = after.map(|after| after as u64);
                expect(
                    "dead letters",
                    self.engine().work().dead_letters(after, *limit).await,
                    Ok(self.model.dead_letters(after, *limit)),
                )
            }
            Op::Stats => expect(
                "stats",
                self.engine().work().stats().await,
                Ok(self.model.stats()),
            ),
            Op::Restart { crash } => {
                let engine = self.engine.take().expect("the engine is open");
                if !crash {
                    engine
                        .shutdown()
                        .map_err(|error| format!("shutdown: {error}"))?;
                }
                drop(engine);
                self.engine = Some(
                    Engine::open_with_clock(self.config.clone(), Arc::new(self.clock.clone()))
                        .map_err(|error| format!("reopening: {error}"))?,
                );
                self.check_everything().await
            }
        }
    }

    async fn add(&mut self, keys: &[(usize, Option<i64>)], invalid: bool) -> Result<(), String> {
        let mut items: Vec<NewItem> = keys
            .iter()
            .map(|(key, priority)| NewItem {
                key: key_name(*key),
                priority: *priority,
            })
            .collect();
        if invalid {
            items.push(NewItem {
                key: "bell\u{7}".into(),
                priority: None,
            });
        }
        let got = self.engine().work().add_items(items.clone()).await;
        if invalid {
            return expect("add_items", got, Err("invalid_field"));
        }
        let model = &mut self.model;
        let mut fresh: Vec<(String, i32)> = Vec::new();
        let mut duplicates = 0;
        for item in items {
            if model.positions.contains_key(&item.key)
                || fresh.iter().any(|(key, _)| *key == item.key)
            {
                duplicates += 1;
            } else {
                fresh.push((item.key, item.priority.unwrap_or(0) as i32));
            }
        }
        if !fresh.is_empty() && model.items.len() + fresh.len() > POOL_ITEMS_MAX {
            return expect("add_items", got, Err("overloaded"));
        }
        let added = Added {
            added: fresh.len() as u64,
            duplicates,
        };
        for (key, priority) in fresh {
            model.add_item(key, priority);
        }
        expect("add_items", got, Ok(added))
    }

    async fn register(&mut self, slot: usize, name: usize) -> Result<(), String> {
        let screen_name = format!("client of slot {slot}, name {name}");
        let got = self
            .engine()
            .work()
            .register(
                Registration {
                    screen_name: screen_name.clone(),
                    external_id: secret(slot),
                },
                None,
            )
            .await;
        let model = &mut self.model;
        let known = model.slots[slot].client_id;
        if known.is_none() && model.clients.len() >= CLIENTS_MAX {
            return expect("register", got.map(|_| ()), Err("overloaded"));
        }
        let registered: Registered = got.map_err(|error| format!("register: {}", code(&error)))?;
        let client_id =
            known.unwrap_or_else(|| model.clients.keys().next_back().map_or(1, |last| last + 1));
        if (registered.client_id, registered.created) != (client_id, known.is_none()) {
            return Err(format!(
                "register: the engine answered client {} (created {}), the model expects {client_id} (created {})",
                registered.client_id,
                registered.created,
                known.is_none()
            ));
        }
        if model.slots[slot].token.as_ref() == Some(&registered.token) {
            return Err("register: the token did not change".into());
        }
        let client = model.clients.entry(client_id).or_insert(ModelClient {
            screen_name: String::new(),
            active: false,
            assigned: 0,
            completed: 0,
            expired: 0,
            rejected: 0,
            last_seen_at_ms: None,
        });
        client.screen_name = screen_name;
        client.active = true;
        let slot_state = &mut model.slots[slot];
        slot_state.client_id = Some(client_id);
        slot_state.stale_token = slot_state.token.replace(registered.token);
        model.touch(client_id);
        Ok(())
    }

    async fn unregister(&mut self, slot: usize, which: Token) -> Result<(), String> {
        let (token, client_id) = self.token(slot, which);
        let got = self.engine().work().unregister(&token).await;
        let Some(client_id) = client_id else {
            return expect("unregister", got, Err("unauthenticated"));
        };
        let model = &mut self.model;
        for bucket_id in model.held(client_id) {
            model.end_lease(bucket_id, false);
        }
        if let Some(client) = model.clients.get_mut(&client_id) {
            client.active = false;
        }
        model.touch(client_id);
        expect("unregister", got, Ok(()))
    }

    async fn lease(&mut self, slot: usize, max_buckets: i64, which: Token) -> Result<(), String> {
        let (token, client_id) = self.token(slot, which);
        let got = self.engine().work().lease(&token, max_buckets).await;
        let Some(client_id) = client_id else {
            return expect("lease", got, Err("unauthenticated"));
        };
        if !(1..=MAX_BUCKETS_PER_REQUEST).contains(&max_buckets) {
            return expect("lease", got, Err("too_many_buckets"));
        }
        let model = &mut self.model;
        let held = model.held(client_id).len();
        if held >= LEASED_BUCKETS_PER_CLIENT_MAX {
            return expect("lease", got, Err("too_many_buckets"));
        }
        let views = got.map_err(|error| format!("lease: {}", code(&error)))?;
        let wanted = (max_buckets as usize).min(LEASED_BUCKETS_PER_CLIENT_MAX - held);
        let expires_at_ms = model.now_ms + LEASE_MS;
        // The open buckets by their order, and the free pending items in the pending order.
        let mut open: BTreeSet<(u64, u64)> = model
            .buckets
            .iter()
            .filter(|(_, bucket)| bucket.in_pool() && bucket.status == Status::Open)
            .map(|(bucket_id, bucket)| (model.open_order(bucket), *bucket_id))
            .collect();
        let mut free: Vec<u64> = model
            .items
            .iter()
            .enumerate()
            .filter(|(_, item)| !item.done && item.bucket.is_none())
            .map(|(position, item)| pack(item.priority, position))
            .collect();
        free.sort_unstable();
        let mut next_bucket_id = model.next_bucket_id();
        let mut expected_count = 0;
        for (index, view) in views.iter().enumerate() {
            if index >= wanted {
                return Err(format!(
                    "lease: {} buckets for a request of {wanted}",
                    views.len()
                ));
            }
            let take_open = match (open.first(), free.first()) {
                (Some((order, _)), Some(best)) => order <= best,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return Err(format!("lease: bucket {view:?} with nothing pending")),
            };
            let expected = if take_open {
                let (_, bucket_id) = open.pop_first().expect("an open bucket");
                let bucket = model.buckets.get_mut(&bucket_id).expect("open bucket");
                bucket.epoch += 1;
                bucket.status = Status::Leased {
                    client_id,
                    expires_at_ms,
                };
                bucket.holders.retain(|holder| *holder != client_id);
                bucket.holders.push(client_id);
                bucket.last_client_id = client_id;
                BucketView {
                    id: bucket_id,
                    epoch: bucket.epoch,
                    items: bucket.remaining(),
                    lease_expires_at_ms: expires_at_ms,
                }
            } else {
                let chosen = allowed_formation(&free, &view.items, &model.positions, &model.items)
                    .map_err(|message| format!("lease: bucket {}: {message}", view.id))?;
                free.retain(|packed| !chosen.contains(packed));
                let bucket_id = next_bucket_id;
                next_bucket_id += 1;
                let mut keys: Vec<String> = chosen
                    .iter()
                    .map(|packed| model.items[(*packed & 0xFFFF_FFFF) as usize].key.clone())
                    .collect();
                keys.sort();
                for packed in &chosen {
                    model.items[(*packed & 0xFFFF_FFFF) as usize].bucket = Some(bucket_id);
                }
                model.buckets.insert(
                    bucket_id,
                    ModelBucket {
                        keys: keys.clone(),
                        reported: BTreeSet::new(),
                        status: Status::Leased {
                            client_id,
                            expires_at_ms,
                        },
                        epoch: 1,
                        expiries: 0,
                        holders: vec![client_id],
                        last_client_id: client_id,
                        dead_at_ms: 0,
                        requeued: false,
                    },
                );
                BucketView {
                    id: bucket_id,
                    epoch: 1,
                    items: keys,
                    lease_expires_at_ms: expires_at_ms,
                }
            };
            if *view != expected {
                return Err(format!(
                    "lease: the engine granted {view:?}, the model expects {expected:?}"
                ));
            }
            expected_count += 1;
        }
        // Fewer buckets than wanted only when nothing was left to grant.
        if expected_count < wanted && (!open.is_empty() || !free.is_empty()) {
            return Err(format!(
                "lease: {expected_count} buckets of {wanted} wanted, while {} open buckets and {} free items wait",
                open.len(),
                free.len()
            ));
        }
        if expected_count > 0 {
            let client = model
                .clients
                .get_mut(&client_id)
                .expect("a registered client");
            client.assigned += expected_count as u64;
            model.touch(client_id);
        }
        // A lease returns once durable, but each bucket applies its grant (and registers its
        // expiry timer) on its own; a read of the bucket queues behind the grant, so a later
        // `fire_due_timers` sees the timer (as `work_support::Harness::lease` does).
        for view in &views {
            expect(
                "leased bucket",
                self.engine().work().bucket(view.id).await,
                Ok(self.model.bucket_info(view.id).expect("a leased bucket")),
            )?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn report(
        &mut self,
        slot: usize,
        target: Target,
        picks: &[usize],
        all: bool,
        foreign: bool,
        discovered: &[usize],
        epoch: Epoch,
        which: Token,
    ) -> Result<(), String> {
        let (token, client_id) = self.token(slot, which);
        let bucket_id = self.bucket_id(target, client_id);
        let model = &self.model;
        let bucket = model.buckets.get(&bucket_id);
        let keys: Vec<String> = bucket.map(|bucket| bucket.keys.clone()).unwrap_or_default();
        let mut reported_keys: Vec<String> = if all {
            bucket.map(ModelBucket::remaining).unwrap_or_default()
        } else if keys.is_empty() {
            Vec::new()
        } else {
            picks
                .iter()
                .map(|pick| keys[pick % keys.len()].clone())
                .collect()
        };
        if foreign {
            reported_keys.push("key-of-no-bucket".into());
        }
        let results: Vec<ItemResult> = reported_keys
            .iter()
            .enumerate()
            .map(|(index, key)| ItemResult {
                key: key.clone(),
                outcome: [Outcome::Yes, Outcome::No, Outcome::Unknown][index % 3],
                detail: (index % 2 == 0).then(|| format!("detail {index}")),
            })
            .collect();
        let discovered: Vec<String> = discovered.iter().map(|key| key_name(*key)).collect();
        let epoch_sent = match epoch {
            Epoch::Omitted => None,
            Epoch::Current => Some(bucket.map_or(1, |bucket| bucket.epoch)),
            Epoch::Older => Some(bucket.map_or(0, |bucket| bucket.epoch.saturating_sub(1))),
        };
        let got = self
            .engine()
            .work()
            .report(
                &token,
                bucket_id,
                Report {
                    results: results.clone(),
                    discovered: discovered.clone(),
                    epoch: epoch_sent,
                },
            )
            .await;
        let Some(client_id) = client_id else {
            return expect("report", got, Err("unauthenticated"));
        };
        if results.len() > BUCKET_SIZE {
            return expect("report", got, Err("invalid_field"));
        }
        let Some(bucket) = bucket else {
            return expect("report", got, Err("not_found bucket"));
        };
        let epoch_matches = epoch_sent.is_none_or(|sent| sent == bucket.epoch);
        let repeat_after_done = bucket.status == Status::Done
            && bucket.holders.last() == Some(&client_id)
            && epoch_matches;
        let refusal = if repeat_after_done {
            None
        } else {
            self.lease_refusal(bucket, client_id, epoch_matches)
        };
        let refusal = refusal.or_else(|| {
            results
                .iter()
                .any(|result| !bucket.keys.contains(&result.key))
                .then_some("item_not_in_bucket")
        });
        if let Some(refusal) = refusal {
            self.model
                .clients
                .get_mut(&client_id)
                .expect("a client")
                .rejected += 1;
            self.model.touch(client_id);
            return expect("report", got, Err(refusal));
        }
        if repeat_after_done {
            return expect(
                "report",
                got,
                Ok(ReportOutcome {
                    bucket_id,
                    remaining: 0,
                }),
            );
        }
        // A live lease: the first result of each key stands.
        let model = &mut self.model;
        let now_ms = model.now_ms;
        let bucket = model.buckets.get_mut(&bucket_id).expect("the bucket");
        let mut new_results = Vec::new();
        for result in &results {
            if bucket.reported.insert(result.key.clone()) {
                new_results.push(result.clone());
            }
        }
        let remaining = bucket.remaining().len() as u64;
        let completed = remaining == 0;
        bucket.status = if completed {
            Status::Done
        } else {
            Status::Leased {
                client_id,
                expires_at_ms: now_ms + LEASE_MS,
            }
        };
        model.touch(client_id);
        for result in new_results {
            let position = model.positions[&result.key];
            let item = &mut model.items[position];
            if item.bucket == Some(bucket_id) && !item.done {
                item.results.push(ResultView {
                    outcome: result.outcome,
                    client_id,
                    detail: result.detail,
                    at_ms: now_ms,
                });
                item.done = true;
                item.bucket = None;
            }
        }
        if completed {
            model
                .clients
                .get_mut(&client_id)
                .expect("a client")
                .completed += 1;
        }
        for key in discovered {
            if !model.positions.contains_key(&key) {
                model.add_item(key, 0);
            }
        }
        expect(
            "report",
            got,
            Ok(ReportOutcome {
                bucket_id,
                remaining,
            }),
        )
    }

    /// Why `client_id` may not report on or heartbeat `bucket`, if it may not (`Bucket::live_lease`).
    fn lease_refusal(
        &self,
        bucket: &ModelBucket,
        client_id: u64,
        epoch_matches: bool,
    ) -> Option<&'static str> {
        match bucket.status {
            Status::Leased {
                client_id: holder,
                expires_at_ms,
            } if holder == client_id => {
                (self.model.now_ms >= expires_at_ms || !epoch_matches).then_some("lease_expired")
            }
            _ if bucket.holders.contains(&client_id) => Some("lease_expired"),
            _ => Some("not_owner"),
        }
    }

    async fn heartbeat(&mut self, slot: usize, target: Target, epoch: Epoch) -> Result<(), String> {
        let (token, client_id) = self.token(slot, Token::Current);
        let bucket_id = self.bucket_id(target, client_id);
        let bucket = self.model.buckets.get(&bucket_id);
        let epoch_sent = match epoch {
            Epoch::Omitted => None,
            Epoch::Current => Some(bucket.map_or(1, |bucket| bucket.epoch)),
            Epoch::Older => Some(bucket.map_or(0, |bucket| bucket.epoch.saturating_sub(1))),
        };
        let got = self
            .engine()
            .work()
            .heartbeat(&token, bucket_id, epoch_sent)
            .await;
        let Some(client_id) = client_id else {
            return expect("heartbeat", got, Err("unauthenticated"));
        };
        let Some(bucket) = bucket else {
            return expect("heartbeat", got, Err("not_found bucket"));
        };
        let epoch_matches = epoch_sent.is_none_or(|sent| sent == bucket.epoch);
        if let Some(refusal) = self.lease_refusal(bucket, client_id, epoch_matches) {
            self.model
                .clients
                .get_mut(&client_id)
                .expect("a client")
                .rejected += 1;
            self.model.touch(client_id);
            return expect("heartbeat", got, Err(refusal));
        }
        let model = &mut self.model;
        let expires_at_ms = model.now_ms + LEASE_MS;
        let bucket = model.buckets.get_mut(&bucket_id).expect("the bucket");
        bucket.status = Status::Leased {
            client_id,
            expires_at_ms,
        };
        let epoch = bucket.epoch;
        model.touch(client_id);
        expect(
            "heartbeat",
            got,
            Ok(HeartbeatOutcome {
                bucket_id,
                epoch,
                lease_expires_at_ms: expires_at_ms,
            }),
        )
    }

    async fn advance(&mut self, seconds: u64) -> Result<(), String> {
        self.clock.advance_ms(seconds * 1000);
        self.engine().fire_due_timers().await;
        let model = &mut self.model;
        model.now_ms += seconds * 1000;
        let now_ms = model.now_ms;
        let due: Vec<(u64, u64)> = model
            .buckets
            .iter()
            .filter_map(|(bucket_id, bucket)| match bucket.status {
                Status::Leased {
                    client_id,
                    expires_at_ms,
                } if expires_at_ms <= now_ms => Some((*bucket_id, client_id)),
                _ => None,
            })
            .collect();
        for (bucket_id, client_id) in due {
            let bucket = model.buckets.get_mut(&bucket_id).expect("the bucket");
            bucket.expiries += 1;
            let dead = bucket.expiries >= MAX_EXPIRIES;
            model.end_lease(bucket_id, dead);
            model.clients.get_mut(&client_id).expect("a client").expired += 1;
        }
        Ok(())
    }

    async fn rerun(&mut self, key: usize, done: bool) -> Result<(), String> {
        let done_keys: Vec<&ModelItem> = self.model.items.iter().filter(|item| item.done).collect();
        let key = if done && !done_keys.is_empty() {
            done_keys[key % done_keys.len()].key.clone()
        } else {
            key_name(key)
        };
        let got = self.engine().work().rerun(&key).await;
        let model = &mut self.model;
        let Some(position) = model.positions.get(&key).copied() else {
            return expect("rerun", got, Err("not_found item"));
        };
        if !model.items[position].done {
            return expect("rerun", got, Err("not_done"));
        }
        let item = &mut model.items[position];
        item.done = false;
        item.bucket = None;
        expect("rerun", got, Ok(model.item_view(position)))
    }

    async fn requeue_dead(&mut self, target: usize, dead: bool) -> Result<(), String> {
        let dead_ids: Vec<u64> = self
            .model
            .buckets
            .iter()
            .filter(|(_, bucket)| bucket.in_pool() && bucket.status == Status::Dead)
            .map(|(bucket_id, _)| *bucket_id)
            .collect();
        let bucket_id = if dead && !dead_ids.is_empty() {
            dead_ids[target % dead_ids.len()]
        } else {
            self.bucket_id(Target::Any(target), None)
        };
        let got = self.engine().work().requeue_dead(bucket_id).await;
        let model = &mut self.model;
        let dead = model
            .buckets
            .get(&bucket_id)
            .is_some_and(|bucket| bucket.in_pool() && bucket.status == Status::Dead);
        if !dead {
            return expect("requeue_dead", got, Err("not_found dead-lettered bucket"));
        }
        let bucket = model.buckets.get_mut(&bucket_id).expect("the bucket");
        bucket.requeued = true;
        let remaining = bucket.remaining();
        for key in &remaining {
            let position = model.positions[key];
            model.items[position].bucket = None;
        }
        expect("requeue_dead", got, Ok(remaining.len() as u64))
    }

    /// Compares the whole state with the model: the stats, every item through its single read
    /// and through every list (pages of two, so cursors are crossed), every bucket, the dead
    /// letters, and every token (current ones authenticate, stale ones do not).
    async fn check_everything(&self) -> Result<(), String> {
        let work = self.engine().work();
        let model = &self.model;
        expect("stats", work.stats().await, Ok(model.stats()))?;
        for position in 0..model.items.len() {
            let key = &model.items[position].key;
            expect("item", work.item(key).await, Ok(model.item_view(position)))?;
        }
        for state in [
            None,
            Some(ItemState::Pending),
            Some(ItemState::Leased),
            Some(ItemState::Done),
        ] {
            let mut cursor = None;
            loop {
                let expected = model.items_page(state, cursor, 2);
                expect(
                    &format!("items page ({state:?})"),
                    work.items(state, cursor, 2).await,
                    Ok(expected.clone()),
                )?;
                match expected.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        for bucket_id in 1..=model.next_bucket_id() {
            expect(
                "bucket",
                work.bucket(bucket_id).await,
                model.bucket_info(bucket_id).ok_or("not_found bucket"),
            )?;
        }
        let mut cursor = None;
        loop {
            let expected = model.dead_letters(cursor, 1);
            expect(
                "dead letters page",
                work.dead_letters(cursor, 1).await,
                Ok(expected.clone()),
            )?;
            match expected.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for slot in &model.slots {
            if let (Some(token), Some(client_id)) = (&slot.token, slot.client_id) {
                let expected = if model.clients[&client_id].active {
                    Ok(client_id)
                } else {
                    Err("unauthenticated")
                };
                expect("current token", work.authenticate(token).await, expected)?;
            }
            if let Some(token) = &slot.stale_token {
                expect(
                    "stale token",
                    work.authenticate(token).await,
                    Err("unauthenticated"),
                )?;
            }
        }
        Ok(())
    }
}

/// Checks that `keys` are a bucket the formation rules allow from the free pending items `free`
/// (packed, in the pending order) and returns them packed: whole priority classes while they
/// fit, then the rest drawn from the first `spread × size` remaining items of the next class.
fn allowed_formation(
    free: &[u64],
    keys: &[String],
    positions: &BTreeMap<String, usize>,
    items: &[ModelItem],
) -> Result<BTreeSet<u64>, String> {
    let mut chosen = BTreeSet::new();
    for key in keys {
        let position = *positions
            .get(key)
            .ok_or_else(|| format!("{key} is not an item"))?;
        let packed = pack(items[position].priority, position);
        if !free.contains(&packed) {
            return Err(format!("{key} was not free and pending"));
        }
        chosen.insert(packed);
    }
    if chosen.len() != keys.len() {
        return Err(format!("a key twice in {keys:?}"));
    }
    let window_max = BUCKET_SIZE * FORMATION_SPREAD;
    let mut candidates: Vec<u64> = free.to_vec();
    let mut whole = BTreeSet::new();
    loop {
        let need = BUCKET_SIZE - whole.len();
        let window: Vec<u64> = candidates.iter().take(window_max).copied().collect();
        let Some(first) = window.first() else {
            // Everything free was taken.
            return if chosen == whole {
                Ok(chosen)
            } else {
                Err(format!("{keys:?}: expected all the free items"))
            };
        };
        if need == 0 {
            return if chosen == whole {
                Ok(chosen)
            } else {
                Err(format!(
                    "{keys:?}: expected whole priority classes {whole:?}"
                ))
            };
        }
        let class: Vec<u64> = window
            .iter()
            .take_while(|packed| *packed >> 32 == first >> 32)
            .copied()
            .collect();
        if class.len() <= need {
            whole.extend(class.iter().copied());
            candidates.retain(|packed| !class.contains(packed));
            continue;
        }
        let drawn: BTreeSet<u64> = chosen.difference(&whole).copied().collect();
        let fits = whole.is_subset(&chosen)
            && drawn.len() == need
            && drawn.iter().all(|packed| class.contains(packed));
        return if fits {
            Ok(chosen)
        } else {
            Err(format!(
                "{keys:?}: expected whole classes {whole:?} and {need} drawn from {class:?}"
            ))
        };
    }
}

/// Runs `ops` on a fresh engine; the first disagreement, with its position.
fn run(ops: &[Op]) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut run = Run::new();
        for (index, op) in ops.iter().enumerate() {
            run.apply(op)
                .await
                .map_err(|message| format!("operation {index} ({op:?}): {message}"))?;
        }
        run.check_everything()
            .await
            .map_err(|message| format!("after the last operation: {message}"))?;
        let engine = run.engine.take().expect("the engine is open");
        engine
            .shutdown()
            .map_err(|error| format!("final shutdown: {error}"))?;
        Ok(())
    })
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(if slow() { SLOW_CASES } else { CASES })
}

/// Random operations after a fixed start (two registered clients and a few items), so most
/// client operations present a live token; the other slots register at random, if at all.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    let start = vec![
        Op::Register { slot: 0, name: 0 },
        Op::Register { slot: 1, name: 0 },
        Op::Add {
            keys: (0..6).map(|key| (key, None)).collect(),
            invalid: false,
        },
    ];
    prop::collection::vec(op(), 1..if slow() { SLOW_OPS_MAX } else { OPS_MAX }).prop_map(
        move |ops| {
            let mut all = start.clone();
            all.extend(ops);
            all
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn work_matches_its_model(ops in ops()) {
        if let Err(message) = run(&ops) {
            prop_assert!(false, "{}", message);
        }
    }
}

/// A fixed sequence through the main rules once, so a plain `cargo test` exercises each even if
/// the random cases happen to miss one.
#[test]
fn work_model_walks_every_rule() {
    use Op::*;
    let report = |slot, target, picks: &[usize], all, epoch| Report {
        slot,
        target,
        picks: picks.to_vec(),
        all,
        foreign: false,
        discovered: Vec::new(),
        epoch,
        token: Token::Current,
    };
    let ops = vec![
        Add {
            keys: vec![
                (0, None),
                (1, Some(2)),
                (2, None),
                (3, None),
                (4, Some(1)),
                (1, None),
            ],
            invalid: false,
        },
        Add {
            keys: vec![(5, None)],
            invalid: true,
        },
        Register { slot: 0, name: 0 },
        Register { slot: 1, name: 0 },
        Lease {
            slot: 0,
            max_buckets: 1,
            token: Token::Current,
        },
        Lease {
            slot: 1,
            max_buckets: 4,
            token: Token::Current,
        },
        Lease {
            slot: 1,
            max_buckets: 2,
            token: Token::Current,
        },
        report(0, Target::Held(0), &[0], false, Epoch::Current),
        report(1, Target::Any(0), &[0], false, Epoch::Omitted),
        report(0, Target::Held(0), &[0, 1, 2], true, Epoch::Older),
        Heartbeat {
            slot: 0,
            target: Target::Held(0),
            epoch: Epoch::Current,
        },
        Report {
            slot: 0,
            target: Target::Held(0),
            picks: vec![0],
            all: true,
            foreign: true,
            discovered: vec![7],
            epoch: Epoch::Omitted,
            token: Token::Current,
        },
        Report {
            slot: 0,
            target: Target::Held(0),
            picks: vec![0],
            all: true,
            foreign: false,
            discovered: vec![7, 0],
            epoch: Epoch::Omitted,
            token: Token::Current,
        },
        report(0, Target::Any(0), &[0], false, Epoch::Omitted),
        Rerun {
            key: 1,
            done: false,
        },
        Rerun {
            key: 2,
            done: false,
        },
        Restart { crash: true },
        Register { slot: 1, name: 1 },
        Lease {
            slot: 1,
            max_buckets: 1,
            token: Token::Stale,
        },
        Advance { seconds: 61 },
        Lease {
            slot: 1,
            max_buckets: 3,
            token: Token::Current,
        },
        Advance { seconds: 61 },
        Lease {
            slot: 1,
            max_buckets: 3,
            token: Token::Current,
        },
        Advance { seconds: 61 },
        DeadLetters {
            after: None,
            limit: 1,
        },
        RequeueDead {
            target: 1,
            dead: false,
        },
        RequeueDead {
            target: 0,
            dead: true,
        },
        Register { slot: 2, name: 0 },
        Register { slot: 3, name: 0 },
        Unregister {
            slot: 2,
            token: Token::Current,
        },
        Lease {
            slot: 2,
            max_buckets: 1,
            token: Token::Current,
        },
        Restart { crash: false },
        Items {
            state: Some(ItemState::Pending),
            after: Some(1),
            limit: 2,
        },
        Stats,
    ];
    if let Err(message) = run(&ops) {
        panic!("{message}");
    }
}
