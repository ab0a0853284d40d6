//! The `Pool` singleton: every item, the free pending queue, the bucket table, the client
//! registry and the registration rate limiter. It alone forms and grants buckets.
//!
//! # Memory (per item, ~150 bytes at 20-byte keys)
//! `Item` (48 bytes: key, history, current bucket, priority, done), one state byte (the items
//! list filters on it), one slot in the key index (a 64-bit hash → index map; the rare hash
//! collisions spill to a map by key), and, while free and pending, one `u64` in the ordered
//! pending set. Result histories are boxed slices. Buckets cost their remaining items' indexes
//! while open, leased or dead; a completed bucket leaves the table.
//!
//! # Layout
//! - `mod.rs` (this file): the commands and replies, the pool's state, and the `Entity`
//!   impl that routes each command and event to the file that owns it.
//! - `items`: item states and counts, adds, reports, the item and dead-letter lists, and the
//!   end of a lease (a bucket open again or dead).
//! - `formation`: leases, and the buckets they form from the free pending items.
//! - `clients`: the client registry (tokens, counters, held buckets) and the registration
//!   rate limiter.
//! - `snapshot`: the snapshot parts, `load` and `save`, and format-4 parts.
//! - `keys`: the key → item index.
//!
//! **Invariant:** `decide` never mutates (the token cache and the formation hint are
//! transient and invisible in its result); only `apply` changes the pool, and applying a
//! foreign event again changes nothing (see `snapshot`'s replay test).

mod clients;
mod formation;
mod items;
mod keys;
mod snapshot;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    external_id_digest, Added, BucketView, DeadBucketView, ExternalIdHash, ItemCounts, ItemState,
    ItemView, Page, ResultRecord, TokenHash, WorkEvent, WorkStats,
};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Event, Kind};
use crate::store::{SnapshotBatch, Store};

use clients::{Client, RateWindow};
use formation::pack;
use keys::KeyIndex;
use snapshot::ITEMS_PER_CHUNK;

pub(crate) use snapshot::has_legacy_clients;

/// The id of the one `Pool` actor.
pub const POOL_ID: u64 = 0;

// An item's state in `Pool::states`.
const PENDING: u8 = 0;
const LEASED: u8 = 1;
const DONE: u8 = 2;

#[derive(Debug)]
pub enum PoolCommand {
    Add {
        items: Vec<(String, i32)>,
    },
    Item {
        key: String,
    },
    Items {
        state: Option<ItemState>,
        after: Option<u64>,
        limit: usize,
    },
    Rerun {
        key: String,
    },
    Register {
        screen_name: String,
        external_id_hash: ExternalIdHash,
        token_hash: TokenHash,
        source: Option<IpAddr>,
    },
    /// Resolves a token; with `bucket_id`, also says whether that bucket was ever formed.
    Authenticate {
        token: String,
        bucket_id: Option<u64>,
    },
    Unregister {
        token: String,
    },
    Lease {
        token: String,
        max_buckets: usize,
        seed: u64,
    },
    Rejected {
        client_id: u64,
    },
    Stats,
    DeadLetters {
        after: Option<u64>,
        limit: usize,
    },
    RequeueDead {
        bucket_id: u64,
    },
}

#[derive(Debug)]
pub enum PoolReply {
    Added(Added),
    Item(ItemView),
    Items(Page<ItemView>),
    Registered {
        client_id: u64,
        created: bool,
    },
    Client {
        client_id: u64,
        bucket_known: bool,
    },
    /// The client and the (bucket, epoch) leases it held, to release.
    Unregistered {
        client_id: u64,
        leases: Vec<(u64, u32)>,
    },
    Leased(Vec<BucketView>),
    Stats(WorkStats),
    DeadLetters(Page<DeadBucketView>),
    Requeued(u64),
    Done,
}

#[derive(Debug)]
struct Item {
    key: Box<str>,
    results: Box<[ResultRecord]>,
    /// The bucket the item waits in or is leased in; 0 = none (free pending, or done).
    bucket: u64,
    priority: i32,
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum BucketState {
    Open,
    Leased { client_id: u64 },
    Dead { at_ms: Millis },
}

#[derive(Debug)]
struct BucketRecord {
    /// The items still without a result.
    items: Vec<u32>,
    state: BucketState,
    epoch: u32,
    expiries: u32,
    last_client_id: u64,
    /// Position in `open` while open: the best (priority, age) of its items.
    order: u64,
}

#[derive(Debug, Default)]
struct Dirty {
    /// Item chunks (index / `ITEMS_PER_CHUNK`).
    chunks: BTreeSet<u32>,
    buckets: BTreeSet<u64>,
    clients: BTreeSet<u64>,
    meta: bool,
}

#[derive(Debug)]
pub struct Pool {
    items: Vec<Item>,
    /// `PENDING`, `LEASED` or `DONE` per item, for the items list.
    states: Vec<u8>,
    index: KeyIndex,
    /// Free pending items (in no bucket), packed by `pack`.
    pending: BTreeSet<u64>,
    buckets: HashMap<u64, BucketRecord>,
    /// Open buckets by (order, id).
    open: BTreeSet<(u64, u64)>,
    dead: BTreeSet<u64>,
    counts: ItemCounts,
    clients: BTreeMap<u64, Client>,
    by_external: HashMap<ExternalIdHash, u64>,
    /// Current token hash → client, active clients only.
    by_token: HashMap<TokenHash, u64>,
    /// (client, bucket) for every leased bucket.
    client_buckets: BTreeSet<(u64, u64)>,
    /// Leased buckets per client (the size of its range in `client_buckets`).
    held: HashMap<u64, usize>,
    next_bucket_id: u64,
    next_client_id: u64,
    /// Registration windows per source; rebuilt from events, never persisted.
    rate: HashMap<IpAddr, RateWindow>,
    /// Token → (client, hash) verified before. Interior mutability: a cache invisible to
    /// `decide`'s result (it is re-checked against the client's current hash on every use).
    verified: RefCell<HashMap<Box<str>, (u64, TokenHash)>>,
    /// The item indexes of the buckets formed by the last lease decision, so the `apply` that
    /// follows it at once needs no key lookups (at millions of items each lookup is a cache
    /// miss). Transient: on replay it is empty and `apply` looks the keys up.
    formed_hint: RefCell<Vec<(u64, Vec<u32>)>>,
    dirty: Dirty,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            items: Vec::new(),
            states: Vec::new(),
            index: KeyIndex::default(),
            pending: BTreeSet::new(),
            buckets: HashMap::new(),
            open: BTreeSet::new(),
            dead: BTreeSet::new(),
            counts: ItemCounts::default(),
            clients: BTreeMap::new(),
            by_external: HashMap::new(),
            by_token: HashMap::new(),
            client_buckets: BTreeSet::new(),
            held: HashMap::new(),
            next_bucket_id: 1,
            next_client_id: 1,
            rate: HashMap::new(),
            verified: RefCell::new(HashMap::new()),
            formed_hint: RefCell::new(Vec::new()),
            dirty: Dirty::default(),
        }
    }
}

impl Pool {
    fn lookup(&self, key: &str) -> Option<u32> {
        self.index.get(&self.items, key)
    }

    /// The sorted keys of `items`.
    fn keys_of(&self, items: &[u32]) -> Vec<&str> {
        let mut keys: Vec<&str> = items
            .iter()
            .map(|index| &*self.items[*index as usize].key)
            .collect();
        keys.sort_unstable();
        keys
    }
}

impl Entity for Pool {
    type Event = WorkEvent;
    const KIND: Kind = super::POOL;
    type Command = PoolCommand;
    type Reply = PoolReply;


    fn load(_id: u64, store: &Store) -> Result<Self> {
        snapshot::load(store)
    }

    fn decide(&self, command: PoolCommand, ctx: &Ctx<'_>) -> Result<Decision<PoolReply>> {
        match command {
            PoolCommand::Add { items } => self.decide_add(items, ctx),
            PoolCommand::Item { key } => {
                let index = self.lookup(&key).ok_or(Error::NotFound("item"))?;
                Ok(Decision::read(PoolReply::Item(self.view(index))))
            }
            PoolCommand::Items {
                state,
                after,
                limit,
            } => Ok(Decision::read(PoolReply::Items(
                self.list_items(state, after, limit),
            ))),
            PoolCommand::Rerun { key } => {
                let index = self.lookup(&key).ok_or(Error::NotFound("item"))?;
                if !self.items[index as usize].done {
                    return Err(Error::conflict("not_done", "only a done item can be rerun"));
                }
                let mut view = self.view(index);
                view.state = ItemState::Pending;
                Ok(Decision {
                    events: vec![(ctx.key, Event::new(WorkEvent::ItemRerun { key }))],
                    reply: PoolReply::Item(view),
                })
            }
            PoolCommand::Register {
                screen_name,
                external_id_hash,
                token_hash,
                source,
            } => self.decide_register(screen_name, external_id_hash, token_hash, source, ctx),
            PoolCommand::Authenticate { token, bucket_id } => {
                let client_id = self.verify(&token)?;
                let bucket_known = bucket_id.is_none_or(|id| id >= 1 && id < self.next_bucket_id);
                Ok(Decision::read(PoolReply::Client {
                    client_id,
                    bucket_known,
                }))
            }
            PoolCommand::Unregister { token } => {
                let client_id = self.verify(&token)?;
                let leases: Vec<(u64, u32)> = self
                    .client_buckets
                    .range((client_id, 0)..=(client_id, u64::MAX))
                    .map(|(_, bucket_id)| (*bucket_id, self.buckets[bucket_id].epoch))
                    .collect();
                let mut events: Vec<(ActorKey, Event)> = leases
                    .iter()
                    .map(|(bucket_id, epoch)| {
                        (
                            ActorKey::new(super::BUCKET, *bucket_id),
                            Event::new(WorkEvent::LeaseRevoked { epoch: *epoch }),
                        )
                    })
                    .collect();
                events.push((
                    ctx.key,
                    Event::new(WorkEvent::ClientUnregistered {
                        client_id,
                        at_ms: ctx.now_ms,
                    }),
                ));
                Ok(Decision {
                    events,
                    reply: PoolReply::Unregistered { client_id, leases },
                })
            }
            PoolCommand::Lease {
                token,
                max_buckets,
                seed,
            } => self.decide_lease(&token, max_buckets, seed, ctx),
            PoolCommand::Rejected { client_id } => {
                if !self.clients.contains_key(&client_id) {
                    return Err(Error::NotFound("client"));
                }
                Ok(Decision {
                    events: vec![(
                        ctx.key,
                        Event::new(WorkEvent::UpdateRejected {
                            client_id,
                            at_ms: ctx.now_ms,
                        }),
                    )],
                    reply: PoolReply::Done,
                })
            }
            PoolCommand::Stats => Ok(Decision::read(PoolReply::Stats(self.stats()))),
            PoolCommand::DeadLetters { after, limit } => Ok(Decision::read(
                PoolReply::DeadLetters(self.dead_letters(after, limit)),
            )),
            PoolCommand::RequeueDead { bucket_id } => {
                let record = self
                    .buckets
                    .get(&bucket_id)
                    .filter(|record| matches!(record.state, BucketState::Dead { .. }))
                    .ok_or(Error::NotFound("dead-lettered bucket"))?;
                Ok(Decision {
                    events: vec![(ctx.key, Event::new(WorkEvent::DeadRequeued { bucket_id }))],
                    reply: PoolReply::Requeued(record.items.len() as u64),
                })
            }
        }
    }

    fn apply(&mut self, event: &WorkEvent) {
        match event {
            WorkEvent::ItemsAdded { items } => {
                for (key, priority) in items {
                    self.add_item(key, *priority);
                }
            }
            WorkEvent::Leased {
                client_id,
                at_ms,
                grants,
            } => self.apply_leased(*client_id, *at_ms, grants),
            WorkEvent::ItemRerun { key } => {
                if let Some(index) = self.lookup(key) {
                    let item = &mut self.items[index as usize];
                    if item.done {
                        item.done = false;
                        item.bucket = 0;
                        self.pending.insert(pack(item.priority, index));
                        self.set_state(index, PENDING);
                        self.dirty.chunks.insert(index / ITEMS_PER_CHUNK);
                    }
                }
            }
            WorkEvent::DeadRequeued { bucket_id } => {
                let is_dead = self
                    .buckets
                    .get(bucket_id)
                    .is_some_and(|record| matches!(record.state, BucketState::Dead { .. }));
                if is_dead {
                    // Invariant: checked just above.
                    let record = self.buckets.remove(bucket_id).expect("dead bucket");
                    self.dead.remove(bucket_id);
                    for index in record.items {
                        let item = &mut self.items[index as usize];
                        item.bucket = 0;
                        self.pending.insert(pack(item.priority, index));
                    }
                    self.dirty.buckets.insert(*bucket_id);
                }
            }
            WorkEvent::ClientRegistered {
                client_id,
                screen_name,
                external_id_hash,
                token_hash,
                at_ms,
                source,
            } => self.apply_registered(
                *client_id,
                screen_name,
                *external_id_hash,
                *token_hash,
                *at_ms,
                *source,
            ),
            WorkEvent::LegacyClientRegistered {
                client_id,
                screen_name,
                external_id,
                token_hash,
                at_ms,
                source,
            } => self.apply_registered(
                *client_id,
                screen_name,
                external_id_digest(external_id),
                *token_hash,
                *at_ms,
                *source,
            ),
            WorkEvent::ClientUnregistered { client_id, at_ms } => {
                if let Some(client) = self.clients.get_mut(client_id) {
                    if client.active {
                        client.active = false;
                        self.by_token.remove(&client.token_hash);
                        self.dirty.clients.insert(*client_id);
                    }
                }
                self.touch_client(*client_id, *at_ms);
            }
            WorkEvent::UpdateRejected { client_id, at_ms } => {
                if let Some(client) = self.clients.get_mut(client_id) {
                    client.rejected += 1;
                    self.dirty.clients.insert(*client_id);
                }
                self.touch_client(*client_id, *at_ms);
            }
            WorkEvent::ItemsReported {
                bucket_id,
                epoch,
                client_id,
                results,
                discovered,
                completed,
                at_ms,
            } => self.apply_reported(
                *bucket_id, *epoch, *client_id, results, discovered, *completed, *at_ms,
            ),
            WorkEvent::BucketExpired {
                bucket_id,
                epoch,
                client_id,
                expiries,
                dead,
                at_ms,
            } => {
                if self.end_lease(*bucket_id, *epoch, *client_id, dead.then_some(*at_ms)) {
                    if let Some(record) = self.buckets.get_mut(bucket_id) {
                        record.expiries = *expiries;
                    }
                    if let Some(client) = self.clients.get_mut(client_id) {
                        client.expired += 1;
                        self.dirty.clients.insert(*client_id);
                    }
                }
            }
            WorkEvent::BucketReleased {
                bucket_id,
                epoch,
                client_id,
            } => {
                self.end_lease(*bucket_id, *epoch, *client_id, None);
            }
            WorkEvent::ClientSeen { client_id, at_ms } => self.touch_client(*client_id, *at_ms),
            WorkEvent::LeaseGranted { .. }
            | WorkEvent::LeaseRevoked { .. }
            | WorkEvent::ResultsRecorded { .. }
            | WorkEvent::LeaseExtended { .. }
            | WorkEvent::LeaseExpired { .. }
            | WorkEvent::LeaseReleased { .. } => unreachable!("not a pool event: {event:?}"),
        }
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        self.save_parts(key, batch);
    }
}
