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
//! # Snapshot parts (separate store keys, so a checkpoint writes only what changed)
//! `items/<chunk u32>` (256 consecutive items: key, priority, done, history; see
//! `ITEMS_PER_CHUNK`), `buckets/<chunk u64>` (the live buckets among `BUCKETS_PER_CHUNK`
//! consecutive ids: remaining items, state, epoch, expiries), `client/<id>` (screen name,
//! digests of the `external_id` and of the current token, counters), `meta` (id counters).
//! Which bucket an item waits in is derived from the bucket parts at load; the pending set from
//! what is left.
//!
//! # Format-4 data dirs
//! Format 4 stored a client's `external_id` in plain text (`Part::LegacyClient`,
//! `WorkEvent::LegacyClientRegistered`). `load` and `apply` hash them on the way in and mark the
//! client dirty, so the next save replaces the part; `Engine::open` makes that save happen at once
//! for a data dir that still has such parts ([`has_legacy_clients`]).
//!
//! # Bucket formation
//! A lease takes, per bucket, whichever is better by (priority desc, age): the best open
//! (expired or released) bucket, or a new bucket formed from the free pending items: all items
//! of the highest pending priority when they fit, else `bucket_size` picked at random among the
//! oldest `formation_spread × bucket_size` of that priority. The randomness comes from the
//! command's seed mixed with the next bucket id, so `decide` stays a function of its inputs.

use std::cell::RefCell;
use std::collections::{btree_set, BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::iter::Peekable;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    external_id_digest, token_digest, unauthenticated, Added, BucketCounts, BucketView,
    ClientStats, DeadBucketView, ExternalIdHash, Grant, ItemCounts, ItemState, ItemView, KeyList,
    Page, ResultRecord, ResultView, SplitMix, TokenHash, WorkEvent, WorkStats, DEFAULT_PRIORITY,
    KEY_RECORD_OVERHEAD_BYTES, RECORD_BYTES_BUDGET,
};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Event, Kind};
use crate::store::{SnapshotBatch, Store};

/// The id of the one `Pool` actor.
pub const POOL_ID: u64 = 0;

/// Verified tokens kept in memory (never persisted), so the hash is paid once per token.
const VERIFIED_TOKENS_MAX: usize = 16_384;
/// The rate limiter's window.
const RATE_WINDOW_MS: u64 = 60_000;
/// Source addresses the registration limiter tracks (~64 bytes each). When full, expired
/// windows are dropped, then all (forgetting counts is safe; refusing new sources would not be).
/// A constant because `apply`, which maintains the table, has no config.
const RATE_SOURCES_MAX: usize = 65_536;

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Client {
    screen_name: String,
    external_id_hash: ExternalIdHash,
    token_hash: TokenHash,
    active: bool,
    registered_at_ms: Millis,
    last_seen_at_ms: Option<Millis>,
    assigned: u64,
    completed: u64,
    expired: u64,
    rejected: u64,
}

/// A client as format 4 stored it, with its `external_id` in plain text. Read only, to migrate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LegacyClient {
    screen_name: String,
    external_id: String,
    token_hash: TokenHash,
    active: bool,
    registered_at_ms: Millis,
    last_seen_at_ms: Option<Millis>,
    assigned: u64,
    completed: u64,
    expired: u64,
    rejected: u64,
}

impl From<LegacyClient> for Client {
    fn from(legacy: LegacyClient) -> Client {
        Client {
            screen_name: legacy.screen_name,
            external_id_hash: external_id_digest(&legacy.external_id),
            token_hash: legacy.token_hash,
            active: legacy.active,
            registered_at_ms: legacy.registered_at_ms,
            last_seen_at_ms: legacy.last_seen_at_ms,
            assigned: legacy.assigned,
            completed: legacy.completed,
            expired: legacy.expired,
            rejected: legacy.rejected,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct RateWindow {
    start_ms: Millis,
    count: u32,
}

/// One item in a snapshot chunk.
#[derive(Debug, Serialize, Deserialize)]
struct StoredItem {
    key: String,
    priority: i32,
    done: bool,
    results: Vec<ResultRecord>,
}

/// One bucket in a snapshot chunk.
#[derive(Debug, Serialize, Deserialize)]
struct StoredBucket {
    items: Vec<u32>,
    state: BucketState,
    epoch: u32,
    expiries: u32,
    last_client_id: u64,
}

/// A snapshot part of the pool, as stored. Variants are encoded by position: add new ones last.
#[derive(Debug, Serialize, Deserialize)]
enum Part {
    /// Items `chunk × ITEMS_PER_CHUNK ..` (up to `ITEMS_PER_CHUNK` of them).
    Items(Vec<StoredItem>),
    /// The live buckets (open, leased or dead) with ids `chunk × BUCKETS_PER_CHUNK ..`.
    Buckets(Vec<(u64, StoredBucket)>),
    /// Format 4's client, read only (see the module docs).
    LegacyClient(LegacyClient),
    Meta {
        next_bucket_id: u64,
        next_client_id: u64,
    },
    Client(Client),
}

const ITEMS: &[u8] = b"items/";
/// Items per snapshot part. sled's cost is per key (a checkpoint of 1M one-item keys took 23 s
/// and 4 GiB here), and items finish in near-index order (formation takes the oldest first),
/// so a chunk of consecutive items keeps a checkpoint's work proportional to what changed
/// with 256 times fewer keys. Changing it changes the snapshot format.
const ITEMS_PER_CHUNK: u32 = 256;
const BUCKETS: &[u8] = b"buckets/";
/// Bucket ids per snapshot part, for the same reason: a lease of a new bucket would otherwise
/// add a store key, and buckets are formed in id order, so a chunk's buckets change together.
/// Changing it changes the snapshot format.
const BUCKETS_PER_CHUNK: u64 = 32;
const CLIENT: &[u8] = b"client/";
const META: &[u8] = b"meta";

fn sub(prefix: &[u8], id: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + id.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(id);
    out
}

/// Orders pending items: ascending = priority descending, then oldest (lowest index) first.
fn pack(priority: i32, index: u32) -> u64 {
    let rank = (i64::from(i32::MAX) - i64::from(priority)) as u64;
    (rank << 32) | u64::from(index)
}

fn packed_index(packed: u64) -> u32 {
    packed as u32
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Key → item index, storing each key once (in `Item`): a map from the key's 64-bit hash (keyed
/// per process, so not predictable) to the index; a key whose hash slot is taken by another
/// key goes to `spill`.
#[derive(Default)]
struct KeyIndex {
    hasher: RandomState,
    slots: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    spill: HashMap<Box<str>, u32>,
}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyIndex({} keys)", self.slots.len() + self.spill.len())
    }
}

impl KeyIndex {
    fn get(&self, items: &[Item], key: &str) -> Option<u32> {
        match self.slots.get(&self.hasher.hash_one(key)) {
            Some(index) if &*items[*index as usize].key == key => Some(*index),
            Some(_) => self.spill.get(key).copied(),
            None => None,
        }
    }

    /// Adds a key known to be absent.
    fn insert(&mut self, key: &str, index: u32) {
        let hash = self.hasher.hash_one(key);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.slots.entry(hash) {
            slot.insert(index);
        } else {
            self.spill.insert(key.into(), index);
        }
    }
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

/// Forms buckets from the free pending set without changing it (`decide` must not mutate):
/// items taken by an earlier bucket of the same lease are simply not offered again.
struct Former<'a> {
    source: Peekable<btree_set::Iter<'a, u64>>,
    /// Candidates pulled from `source` and not yet taken, in order.
    window: Vec<u64>,
}

impl<'a> Former<'a> {
    fn new(pending: &'a BTreeSet<u64>) -> Self {
        Former {
            source: pending.iter().peekable(),
            window: Vec::new(),
        }
    }

    /// The best item not yet taken.
    fn best(&mut self) -> Option<u64> {
        match self.window.first() {
            Some(first) => Some(*first),
            None => self.source.peek().map(|packed| **packed),
        }
    }

    /// Takes up to `size` items: whole priority classes while they fit, then `size - taken`
    /// at random among the first `spread × size` of the next class.
    fn form(&mut self, size: usize, spread: usize, rng: &mut SplitMix) -> Vec<u64> {
        let window_max = size * spread;
        let mut chosen = Vec::with_capacity(size);
        while chosen.len() < size {
            while self.window.len() < window_max {
                match self.source.next() {
                    Some(packed) => self.window.push(*packed),
                    None => break,
                }
            }
            let Some(first) = self.window.first() else {
                break;
            };
            let rank = first >> 32;
            let class = self.window.iter().take_while(|p| *p >> 32 == rank).count();
            let need = size - chosen.len();
            if class <= need {
                chosen.extend(self.window.drain(..class));
                continue;
            }
            let mut positions: Vec<usize> = (0..class).collect();
            for i in 0..need {
                let j = i + rng.below(class - i);
                positions.swap(i, j);
            }
            let mut picked = vec![false; self.window.len()];
            for position in &positions[..need] {
                picked[*position] = true;
            }
            let mut position = 0;
            self.window.retain(|packed| {
                let keep = !picked[position];
                position += 1;
                if !keep {
                    chosen.push(*packed);
                }
                keep
            });
            break;
        }
        chosen
    }
}

impl Pool {
    fn lookup(&self, key: &str) -> Option<u32> {
        self.index.get(&self.items, key)
    }

    fn state_of(&self, index: u32) -> ItemState {
        match self.states[index as usize] {
            LEASED => ItemState::Leased,
            DONE => ItemState::Done,
            _ => ItemState::Pending,
        }
    }

    fn view(&self, index: u32) -> ItemView {
        let item = &self.items[index as usize];
        ItemView {
            key: item.key.to_string(),
            state: self.state_of(index),
            priority: item.priority,
            results: item.results.iter().map(result_view).collect(),
        }
    }

    fn set_state(&mut self, index: u32, state: u8) {
        let slot = &mut self.states[index as usize];
        let old = std::mem::replace(slot, state);
        if old == state {
            return;
        }
        for (value, delta) in [(old, false), (state, true)] {
            let counter = match value {
                LEASED => &mut self.counts.leased,
                DONE => &mut self.counts.done,
                _ => &mut self.counts.pending,
            };
            if delta {
                *counter += 1;
            } else {
                *counter -= 1;
            }
        }
    }

    fn add_item(&mut self, key: &str, priority: i32) {
        if self.lookup(key).is_some() {
            return;
        }
        // Invariant: decide refuses adds beyond `pool_items_max` (≤ u32::MAX, checked by
        // `WorkConfig::validate`); discovered keys may pass it by one report's worth.
        let index = u32::try_from(self.items.len()).expect("fewer than 2^32 items");
        self.items.push(Item {
            key: key.into(),
            results: Box::default(),
            bucket: 0,
            priority,
            done: false,
        });
        self.states.push(PENDING);
        self.counts.pending += 1;
        self.index.insert(key, index);
        self.pending.insert(pack(priority, index));
        self.dirty.chunks.insert(index / ITEMS_PER_CHUNK);
    }

    fn held_count(&self, client_id: u64) -> usize {
        self.held.get(&client_id).copied().unwrap_or(0)
    }

    fn take_hold(&mut self, client_id: u64, bucket_id: u64) {
        if self.client_buckets.insert((client_id, bucket_id)) {
            *self.held.entry(client_id).or_insert(0) += 1;
        }
    }

    fn release_hold(&mut self, client_id: u64, bucket_id: u64) {
        if self.client_buckets.remove(&(client_id, bucket_id)) {
            if let Some(count) = self.held.get_mut(&client_id) {
                *count -= 1;
                if *count == 0 {
                    self.held.remove(&client_id);
                }
            }
        }
    }

    /// Verifies a client token: from the cache when the client's current hash still matches,
    /// else by hashing it.
    fn verify(&self, token: &str) -> Result<u64> {
        let cached = self.verified.borrow().get(token).copied();
        if let Some((client_id, hash)) = cached {
            if self
                .clients
                .get(&client_id)
                .is_some_and(|client| client.active && client.token_hash == hash)
            {
                return Ok(client_id);
            }
        }
        let hash = token_digest(token);
        let client_id = *self.by_token.get(&hash).ok_or_else(unauthenticated)?;
        if !self
            .clients
            .get(&client_id)
            .is_some_and(|client| client.active)
        {
            return Err(unauthenticated());
        }
        let mut verified = self.verified.borrow_mut();
        if verified.len() >= VERIFIED_TOKENS_MAX {
            verified.clear();
        }
        verified.insert(token.into(), (client_id, hash));
        Ok(client_id)
    }

    fn touch_client(&mut self, client_id: u64, at_ms: Millis) {
        if let Some(client) = self.clients.get_mut(&client_id) {
            if client.last_seen_at_ms.is_none_or(|seen| seen < at_ms) {
                client.last_seen_at_ms = Some(at_ms);
                self.dirty.clients.insert(client_id);
            }
        }
    }

    fn open_order(&self, items: &[u32]) -> u64 {
        items
            .iter()
            .map(|index| pack(self.items[*index as usize].priority, *index))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Ends the lease at `epoch` of `bucket_id` held by `client_id`, if that is still the
    /// bucket's state (the guard that makes the bucket's events idempotent). The bucket becomes
    /// open, or dead when `dead_at` is given. Returns whether it applied.
    fn end_lease(
        &mut self,
        bucket_id: u64,
        epoch: u32,
        client_id: u64,
        dead_at: Option<Millis>,
    ) -> bool {
        let Some(record) = self.buckets.get(&bucket_id) else {
            return false;
        };
        if record.epoch != epoch || record.state != (BucketState::Leased { client_id }) {
            return false;
        }
        let items = record.items.clone();
        self.release_hold(client_id, bucket_id);
        self.dirty.buckets.insert(bucket_id);
        for index in &items {
            self.set_state(*index, PENDING);
        }
        if items.is_empty() {
            // Nothing left to do in it (cannot happen: the last result completes a bucket).
            self.buckets.remove(&bucket_id);
            return true;
        }
        let order = self.open_order(&items);
        // Invariant: checked above that the record exists.
        let record = self.buckets.get_mut(&bucket_id).expect("bucket record");
        match dead_at {
            Some(at_ms) => {
                record.state = BucketState::Dead { at_ms };
                self.dead.insert(bucket_id);
            }
            None => {
                record.state = BucketState::Open;
                record.order = order;
                self.open.insert((order, bucket_id));
            }
        }
        true
    }

    fn client_stats(&self, client_id: u64, client: &Client) -> ClientStats {
        ClientStats {
            client_id,
            screen_name: client.screen_name.clone(),
            active: client.active,
            buckets_assigned: client.assigned,
            buckets_completed: client.completed,
            buckets_expired: client.expired,
            rejected_updates: client.rejected,
            last_seen_at_ms: client.last_seen_at_ms,
            leased_buckets: self.held_count(client_id) as u64,
        }
    }

    fn stats(&self) -> WorkStats {
        let mut buckets = BucketCounts::default();
        for record in self.buckets.values() {
            match record.state {
                BucketState::Open => buckets.open += 1,
                BucketState::Leased { .. } => buckets.leased += 1,
                BucketState::Dead { .. } => buckets.dead += 1,
            }
        }
        WorkStats {
            items: self.counts,
            buckets,
            clients: self
                .clients
                .iter()
                .map(|(client_id, client)| self.client_stats(*client_id, client))
                .collect(),
        }
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

    fn decide_lease(
        &self,
        token: &str,
        max_buckets: usize,
        seed: u64,
        ctx: &Ctx<'_>,
    ) -> Result<Decision<PoolReply>> {
        let client_id = self.verify(token)?;
        let config = ctx.config.section::<super::WorkConfig>();
        let held = self.held_count(client_id);
        if held >= config.leased_buckets_per_client_max {
            return Err(Error::invalid_field(
                "too_many_buckets",
                "max_buckets",
                format!("the client already holds {held} leased buckets, the most allowed"),
            ));
        }
        let wanted = max_buckets.min(config.leased_buckets_per_client_max - held);
        let mut rng = SplitMix::new(seed ^ self.next_bucket_id.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let expires_at_ms = ctx.now_ms + config.lease_ms();
        let mut open = self.open.iter().peekable();
        let mut former = Former::new(&self.pending);
        let mut next_bucket_id = self.next_bucket_id;
        let mut grants = Vec::with_capacity(wanted);
        let mut views = Vec::with_capacity(wanted);
        let mut hint = Vec::new();
        // The record carries each formed bucket's keys twice (`Leased` and `LeaseGranted`);
        // buckets stop once the next would pass the budget (one always fits: BUCKET_SIZE_MAX).
        let mut record_bytes = 0;
        for _ in 0..wanted {
            let take_open = match (open.peek(), former.best()) {
                (Some((order, _)), Some(free)) => *order <= free,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (bucket_id, epoch, keys, formed) = if take_open {
                // Invariant: peeked just above.
                let (_, bucket_id) = *open.next().expect("an open bucket");
                let record = &self.buckets[&bucket_id];
                (
                    bucket_id,
                    record.epoch + 1,
                    self.keys_of(&record.items),
                    false,
                )
            } else {
                let chosen: Vec<u32> = former
                    .form(config.bucket_size, config.formation_spread, &mut rng)
                    .into_iter()
                    .map(packed_index)
                    .collect();
                let keys = self.keys_of(&chosen);
                let bytes: usize = keys
                    .iter()
                    .map(|key| 2 * (key.len() + KEY_RECORD_OVERHEAD_BYTES))
                    .sum();
                if !grants.is_empty() && record_bytes + bytes > RECORD_BYTES_BUDGET {
                    // Left pending for the next lease: `decide` changed nothing yet.
                    break;
                }
                record_bytes += bytes;
                let bucket_id = next_bucket_id;
                next_bucket_id += 1;
                hint.push((bucket_id, chosen));
                (bucket_id, 1, keys, true)
            };
            grants.push(Grant {
                bucket_id,
                epoch,
                expires_at_ms,
                formed: formed.then(|| KeyList::from_sorted(keys.iter().copied())),
            });
            views.push(BucketView {
                id: bucket_id,
                epoch,
                items: keys.into_iter().map(str::to_string).collect(),
                lease_expires_at_ms: expires_at_ms,
            });
        }
        if grants.is_empty() {
            return Ok(Decision::read(PoolReply::Leased(Vec::new())));
        }
        let mut events = Vec::with_capacity(grants.len() + 1);
        for grant in &grants {
            events.push((
                ActorKey::new(super::BUCKET, grant.bucket_id),
                Event::new(WorkEvent::LeaseGranted {
                    client_id,
                    epoch: grant.epoch,
                    expires_at_ms,
                    keys: grant.formed.clone(),
                }),
            ));
        }
        events.push((
            ctx.key,
            Event::new(WorkEvent::Leased {
                client_id,
                at_ms: ctx.now_ms,
                grants,
            }),
        ));
        *self.formed_hint.borrow_mut() = hint;
        Ok(Decision {
            events,
            reply: PoolReply::Leased(views),
        })
    }

    fn decide_register(
        &self,
        screen_name: String,
        external_id_hash: ExternalIdHash,
        token_hash: TokenHash,
        source: Option<IpAddr>,
        ctx: &Ctx<'_>,
    ) -> Result<Decision<PoolReply>> {
        let config = ctx.config.section::<super::WorkConfig>();
        let limit = config.registrations_per_minute_per_source;
        if let (Some(source), true) = (source, limit > 0) {
            if let Some(window) = self.rate.get(&source) {
                let window_end_ms = window.start_ms + RATE_WINDOW_MS;
                if ctx.now_ms < window_end_ms && window.count >= limit {
                    return Err(super::rate_limited(window_end_ms - ctx.now_ms));
                }
            }
        }
        let (client_id, created) = match self.by_external.get(&external_id_hash) {
            Some(client_id) => (*client_id, false),
            None => {
                if self.clients.len() >= config.clients_max {
                    return Err(Error::Overloaded("work client registry"));
                }
                (self.next_client_id, true)
            }
        };
        Ok(Decision {
            events: vec![(
                ctx.key,
                Event::new(WorkEvent::ClientRegistered {
                    client_id,
                    screen_name,
                    external_id_hash,
                    token_hash,
                    at_ms: ctx.now_ms,
                    source,
                }),
            )],
            reply: PoolReply::Registered { client_id, created },
        })
    }

    fn decide_add(&self, items: Vec<(String, i32)>, ctx: &Ctx<'_>) -> Result<Decision<PoolReply>> {
        let mut fresh = Vec::with_capacity(items.len());
        let mut seen = HashSet::with_capacity(items.len());
        let mut duplicates = 0u64;
        for (key, priority) in items {
            if self.lookup(&key).is_some() || seen.contains(&key) {
                duplicates += 1;
            } else {
                seen.insert(key.clone());
                fresh.push((key, priority));
            }
        }
        let added = Added {
            added: fresh.len() as u64,
            duplicates,
        };
        if fresh.is_empty() {
            return Ok(Decision::read(PoolReply::Added(added)));
        }
        if self.items.len() + fresh.len() > ctx.config.section::<super::WorkConfig>().pool_items_max {
            return Err(Error::Overloaded("work pool"));
        }
        Ok(Decision {
            events: vec![(ctx.key, Event::new(WorkEvent::ItemsAdded { items: fresh }))],
            reply: PoolReply::Added(added),
        })
    }

    fn list_items(
        &self,
        state: Option<ItemState>,
        after: Option<u64>,
        limit: usize,
    ) -> Page<ItemView> {
        let wanted = state.map(|state| match state {
            ItemState::Pending => PENDING,
            ItemState::Leased => LEASED,
            ItemState::Done => DONE,
        });
        let start = after.map_or(0, |after| after.saturating_add(1));
        let start = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(self.items.len());
        let mut items = Vec::with_capacity(limit.min(64));
        let mut last = None;
        let mut next = None;
        for (offset, item_state) in self.states[start..].iter().enumerate() {
            if wanted.is_some_and(|wanted| wanted != *item_state) {
                continue;
            }
            if items.len() == limit {
                // The cursor is the index of the last item returned.
                next = last;
                break;
            }
            let index = start + offset;
            items.push(self.view(index as u32));
            last = Some(index as u64);
        }
        Page { items, next }
    }

    fn dead_letters(&self, after: Option<u64>, limit: usize) -> Page<DeadBucketView> {
        let start = after.map_or(0, |after| after.saturating_add(1));
        let mut items: Vec<DeadBucketView> = self
            .dead
            .range(start..)
            .take(limit + 1)
            .map(|bucket_id| {
                let record = &self.buckets[bucket_id];
                DeadBucketView {
                    bucket_id: *bucket_id,
                    items: self
                        .keys_of(&record.items)
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                    expiries: record.expiries,
                    last_client_id: record.last_client_id,
                    dead_at_ms: match record.state {
                        BucketState::Dead { at_ms } => at_ms,
                        _ => 0,
                    },
                }
            })
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|view| view.bucket_id)
        } else {
            None
        };
        Page { items, next }
    }

    /// The indexes of a formed bucket's keys: from the decision's hint when it is for this
    /// bucket, else by lookup.
    fn formed_indexes(
        &self,
        hint: &mut Vec<(u64, Vec<u32>)>,
        bucket_id: u64,
        keys: &KeyList,
    ) -> Vec<u32> {
        if let Some(position) = hint.iter().position(|(id, _)| *id == bucket_id) {
            let (_, indexes) = hint.swap_remove(position);
            debug_assert_eq!(
                KeyList::from_sorted(self.keys_of(&indexes)),
                *keys,
                "the hint is for this decision"
            );
            return indexes;
        }
        keys.iter()
            .filter_map(|key| {
                let index = self.lookup(key);
                if index.is_none() {
                    tracing::error!(key, bucket_id, "a formed bucket names an unknown item");
                }
                index
            })
            .collect()
    }

    fn apply_leased(&mut self, client_id: u64, at_ms: Millis, grants: &[Grant]) {
        let mut hint = std::mem::take(&mut *self.formed_hint.borrow_mut());
        for grant in grants {
            let bucket_id = grant.bucket_id;
            match &grant.formed {
                Some(keys) => {
                    let indexes = self.formed_indexes(&mut hint, bucket_id, keys);
                    let mut items = Vec::with_capacity(indexes.len());
                    for index in indexes {
                        let item = &mut self.items[index as usize];
                        self.pending.remove(&pack(item.priority, index));
                        item.bucket = bucket_id;
                        self.set_state(index, LEASED);
                        items.push(index);
                    }
                    self.buckets.insert(
                        bucket_id,
                        BucketRecord {
                            items,
                            state: BucketState::Leased { client_id },
                            epoch: grant.epoch,
                            expiries: 0,
                            last_client_id: client_id,
                            order: 0,
                        },
                    );
                }
                None => {
                    let Some(record) = self.buckets.get_mut(&bucket_id) else {
                        tracing::error!(bucket_id, "a lease names an unknown open bucket");
                        continue;
                    };
                    self.open.remove(&(record.order, bucket_id));
                    record.state = BucketState::Leased { client_id };
                    record.epoch = grant.epoch;
                    record.last_client_id = client_id;
                    let items = record.items.clone();
                    for index in items {
                        self.set_state(index, LEASED);
                    }
                }
            }
            self.take_hold(client_id, bucket_id);
            self.dirty.buckets.insert(bucket_id);
            if bucket_id >= self.next_bucket_id {
                self.next_bucket_id = bucket_id + 1;
                self.dirty.meta = true;
            }
        }
        if let Some(client) = self.clients.get_mut(&client_id) {
            client.assigned += grants.len() as u64;
            self.dirty.clients.insert(client_id);
        }
        self.touch_client(client_id, at_ms);
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_reported(
        &mut self,
        bucket_id: u64,
        epoch: u32,
        client_id: u64,
        results: &[(String, ResultRecord)],
        discovered: &[String],
        completed: bool,
        at_ms: Millis,
    ) {
        self.touch_client(client_id, at_ms);
        let mut finished = Vec::with_capacity(results.len());
        for (key, result) in results {
            let Some(index) = self.lookup(key) else {
                continue;
            };
            let item = &mut self.items[index as usize];
            if item.bucket != bucket_id || item.done {
                // Already applied (replay), or the item has moved on since.
                continue;
            }
            let mut history = std::mem::take(&mut item.results).into_vec();
            history.push(result.clone());
            item.results = history.into_boxed_slice();
            item.done = true;
            item.bucket = 0;
            self.set_state(index, DONE);
            self.dirty.chunks.insert(index / ITEMS_PER_CHUNK);
            finished.push(index);
        }
        if let Some(record) = self.buckets.get_mut(&bucket_id) {
            if !finished.is_empty() {
                let finished: HashSet<u32> = finished.into_iter().collect();
                record.items.retain(|index| !finished.contains(index));
                self.dirty.buckets.insert(bucket_id);
            }
            if completed
                && record.epoch == epoch
                && record.state == (BucketState::Leased { client_id })
            {
                self.buckets.remove(&bucket_id);
                self.release_hold(client_id, bucket_id);
                if let Some(client) = self.clients.get_mut(&client_id) {
                    client.completed += 1;
                    self.dirty.clients.insert(client_id);
                }
            }
        }
        for key in discovered {
            self.add_item(key, DEFAULT_PRIORITY);
        }
    }
}

fn result_view(record: &ResultRecord) -> ResultView {
    ResultView {
        outcome: record.outcome,
        client_id: record.client_id,
        detail: record.detail.as_deref().map(str::to_string),
        at_ms: record.at_ms,
    }
}

fn id_from(bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::Store("work pool: bad snapshot key".into()))?;
    Ok(u64::from_be_bytes(array))
}

/// True when the pool's snapshot still holds a client part of format 4 (plain-text
/// `external_id`). `Engine::open` then loads and saves the pool at once, so the plain text does
/// not wait for the pool's next change to leave sled.
pub(crate) fn has_legacy_clients(store: &Store) -> Result<bool> {
    let key = ActorKey::new(super::POOL, POOL_ID);
    Ok(store
        .scan_sub::<Part>(key, CLIENT)?
        .iter()
        .any(|(_, part)| matches!(part, Part::LegacyClient(_))))
}

impl Entity for Pool {
    type Event = WorkEvent;
    const KIND: Kind = super::POOL;
    type Command = PoolCommand;
    type Reply = PoolReply;

    fn load(_id: u64, store: &Store) -> Result<Self> {
        let key = ActorKey::new(super::POOL, POOL_ID);
        let mut pool = Pool::default();
        let mut buckets = Vec::new();
        for (name, part) in store.scan::<Part>(key)? {
            match part {
                Part::Items(stored) => {
                    let chunk: [u8; 4] = name[ITEMS.len()..]
                        .try_into()
                        .map_err(|_| Error::Store("work pool: bad item chunk key".into()))?;
                    let first = u32::from_be_bytes(chunk) as usize * ITEMS_PER_CHUNK as usize;
                    if first != pool.items.len() {
                        return Err(Error::Store(format!(
                            "work pool: item chunk at {first} follows {} items",
                            pool.items.len()
                        )));
                    }
                    for item in stored {
                        let index = pool.items.len() as u32;
                        pool.index.insert(&item.key, index);
                        pool.states.push(if item.done { DONE } else { PENDING });
                        pool.items.push(Item {
                            key: item.key.into(),
                            results: item.results.into_boxed_slice(),
                            bucket: 0,
                            priority: item.priority,
                            done: item.done,
                        });
                    }
                }
                Part::Buckets(stored) => {
                    buckets.extend(stored.into_iter().map(|(bucket_id, bucket)| {
                        (
                            bucket_id,
                            BucketRecord {
                                items: bucket.items,
                                state: bucket.state,
                                epoch: bucket.epoch,
                                expiries: bucket.expiries,
                                last_client_id: bucket.last_client_id,
                                order: 0,
                            },
                        )
                    }));
                }
                Part::Client(client) => {
                    let client_id = id_from(&name[CLIENT.len()..])?;
                    pool.load_client(client_id, client);
                }
                Part::LegacyClient(legacy) => {
                    // Hashed now; dirty, so the next save replaces the plain-text part.
                    let client_id = id_from(&name[CLIENT.len()..])?;
                    pool.load_client(client_id, legacy.into());
                    pool.dirty.clients.insert(client_id);
                }
                Part::Meta {
                    next_bucket_id,
                    next_client_id,
                } => {
                    pool.next_bucket_id = next_bucket_id;
                    pool.next_client_id = next_client_id;
                }
            }
        }
        for (bucket_id, mut record) in buckets {
            for index in &record.items {
                let item = pool.items.get_mut(*index as usize).ok_or_else(|| {
                    Error::Store(format!("work pool: bucket {bucket_id} names item {index}"))
                })?;
                item.bucket = bucket_id;
                if let BucketState::Leased { .. } = record.state {
                    pool.states[*index as usize] = LEASED;
                }
            }
            match record.state {
                BucketState::Open => {
                    record.order = pool.open_order(&record.items);
                    pool.open.insert((record.order, bucket_id));
                }
                BucketState::Leased { client_id } => {
                    pool.take_hold(client_id, bucket_id);
                }
                BucketState::Dead { .. } => {
                    pool.dead.insert(bucket_id);
                }
            }
            pool.buckets.insert(bucket_id, record);
        }
        for (index, item) in pool.items.iter().enumerate() {
            if !item.done && item.bucket == 0 {
                pool.pending.insert(pack(item.priority, index as u32));
            }
        }
        for state in &pool.states {
            match *state {
                LEASED => pool.counts.leased += 1,
                DONE => pool.counts.done += 1,
                _ => pool.counts.pending += 1,
            }
        }
        Ok(pool)
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
        for chunk in std::mem::take(&mut self.dirty.chunks) {
            let first = chunk as usize * ITEMS_PER_CHUNK as usize;
            let end = (first + ITEMS_PER_CHUNK as usize).min(self.items.len());
            let stored: Vec<StoredItem> = self.items[first..end]
                .iter()
                .map(|item| StoredItem {
                    key: item.key.to_string(),
                    priority: item.priority,
                    done: item.done,
                    results: item.results.to_vec(),
                })
                .collect();
            batch.put(key, &sub(ITEMS, &chunk.to_be_bytes()), &Part::Items(stored));
        }
        let chunks: BTreeSet<u64> = std::mem::take(&mut self.dirty.buckets)
            .into_iter()
            .map(|bucket_id| bucket_id / BUCKETS_PER_CHUNK)
            .collect();
        for chunk in chunks {
            let first = chunk * BUCKETS_PER_CHUNK;
            let stored: Vec<(u64, StoredBucket)> = (first..first + BUCKETS_PER_CHUNK)
                .filter_map(|bucket_id| {
                    let record = self.buckets.get(&bucket_id)?;
                    Some((
                        bucket_id,
                        StoredBucket {
                            items: record.items.clone(),
                            state: record.state,
                            epoch: record.epoch,
                            expiries: record.expiries,
                            last_client_id: record.last_client_id,
                        },
                    ))
                })
                .collect();
            let name = sub(BUCKETS, &chunk.to_be_bytes());
            if stored.is_empty() {
                batch.remove(key, &name);
            } else {
                batch.put(key, &name, &Part::Buckets(stored));
            }
        }
        for client_id in std::mem::take(&mut self.dirty.clients) {
            if let Some(client) = self.clients.get(&client_id) {
                batch.put(
                    key,
                    &sub(CLIENT, &client_id.to_be_bytes()),
                    &Part::Client(client.clone()),
                );
            }
        }
        if std::mem::take(&mut self.dirty.meta) {
            batch.put(
                key,
                META,
                &Part::Meta {
                    next_bucket_id: self.next_bucket_id,
                    next_client_id: self.next_client_id,
                },
            );
        }
    }
}

impl Pool {
    /// A registration: a new client, or a known one with its token rotated (the old token
    /// stops working at once).
    fn apply_registered(
        &mut self,
        client_id: u64,
        screen_name: &str,
        external_id_hash: ExternalIdHash,
        token_hash: TokenHash,
        at_ms: Millis,
        source: Option<IpAddr>,
    ) {
        let client = self.clients.entry(client_id).or_insert_with(|| Client {
            screen_name: String::new(),
            external_id_hash,
            token_hash,
            active: false,
            registered_at_ms: at_ms,
            last_seen_at_ms: None,
            assigned: 0,
            completed: 0,
            expired: 0,
            rejected: 0,
        });
        if client.active {
            self.by_token.remove(&client.token_hash);
        }
        client.screen_name = screen_name.to_string();
        client.token_hash = token_hash;
        client.active = true;
        self.by_token.insert(token_hash, client_id);
        self.by_external.insert(external_id_hash, client_id);
        if client_id >= self.next_client_id {
            self.next_client_id = client_id + 1;
            self.dirty.meta = true;
        }
        self.dirty.clients.insert(client_id);
        self.touch_client(client_id, at_ms);
        if let Some(source) = source {
            self.count_registration(source, at_ms);
        }
    }

    /// Indexes a client read from a snapshot.
    fn load_client(&mut self, client_id: u64, client: Client) {
        self.by_external.insert(client.external_id_hash, client_id);
        if client.active {
            self.by_token.insert(client.token_hash, client_id);
        }
        self.clients.insert(client_id, client);
    }

    fn count_registration(&mut self, source: IpAddr, at_ms: Millis) {
        if let Some(window) = self.rate.get_mut(&source) {
            if at_ms < window.start_ms + RATE_WINDOW_MS {
                window.count += 1;
            } else {
                *window = RateWindow {
                    start_ms: at_ms,
                    count: 1,
                };
            }
            return;
        }
        if self.rate.len() >= RATE_SOURCES_MAX {
            self.rate
                .retain(|_, window| at_ms < window.start_ms + RATE_WINDOW_MS);
            if self.rate.len() >= RATE_SOURCES_MAX {
                self.rate.clear();
            }
        }
        self.rate.insert(
            source,
            RateWindow {
                start_ms: at_ms,
                count: 1,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_orders_by_priority_then_age() {
        assert!(pack(10, 5) < pack(9, 0));
        assert!(pack(0, 1) < pack(0, 2));
        assert!(pack(i32::MAX, u32::MAX) < pack(i32::MIN, 0));
        assert_eq!(packed_index(pack(-3, 77)), 77);
    }

    #[test]
    fn former_takes_whole_classes_then_randomly_within_the_window() {
        let mut pending = BTreeSet::new();
        pending.insert(pack(5, 100));
        for index in 0..20 {
            pending.insert(pack(0, index));
        }
        let mut rng = SplitMix::new(3);
        let mut former = Former::new(&pending);
        let first = former.form(4, 2, &mut rng);
        assert_eq!(first.len(), 4);
        assert_eq!(
            first[0],
            pack(5, 100),
            "the higher priority item comes first"
        );
        // The other three come from the oldest 8 of priority 0 (the window is 2 × 4).
        assert!(first[1..].iter().all(|p| packed_index(*p) < 8), "{first:?}");
        let second = former.form(4, 2, &mut rng);
        assert!(second.iter().all(|p| !first.contains(p)));
        let mut all: Vec<u64> = first.into_iter().chain(second).collect();
        all.extend(former.form(100, 2, &mut rng));
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 21, "every item is taken exactly once");
    }

    fn result(client_id: u64, at_ms: Millis) -> ResultRecord {
        ResultRecord {
            outcome: super::super::Outcome::Yes,
            client_id,
            at_ms,
            detail: Some("d".into()),
        }
    }

    fn fingerprint(pool: &Pool) -> String {
        let items: Vec<ItemView> = (0..pool.items.len() as u32).map(|i| pool.view(i)).collect();
        let mut buckets: Vec<_> = pool
            .buckets
            .iter()
            .map(|(id, r)| (*id, r.items.clone(), r.state, r.epoch, r.expiries, r.order))
            .collect();
        buckets.sort_unstable_by_key(|bucket| bucket.0);
        format!(
            "{:?}\n{items:?}\n{buckets:?}\n{:?} {:?} {:?} {:?} {:?} {} {}",
            pool.stats(),
            pool.pending,
            pool.open,
            pool.dead,
            pool.client_buckets,
            pool.by_token.len(),
            pool.next_bucket_id,
            pool.next_client_id,
        )
    }

    /// Own events in log order, with the foreign ones marked.
    fn history() -> Vec<(WorkEvent, bool)> {
        let registered = |client_id: u64| WorkEvent::ClientRegistered {
            client_id,
            screen_name: format!("c{client_id}"),
            external_id_hash: external_id_digest(&format!("external-id-{client_id:08}")),
            token_hash: [client_id as u8; 32],
            at_ms: 10,
            source: None,
        };
        let grant = |bucket_id, epoch, formed: Option<&[&str]>| Grant {
            bucket_id,
            epoch,
            expires_at_ms: 1_000,
            formed: formed.map(|keys| KeyList::from_sorted(keys.iter().copied())),
        };
        vec![
            (registered(1), false),
            (registered(2), false),
            (
                WorkEvent::ItemsAdded {
                    items: vec![("a".into(), 0), ("b".into(), 0), ("c".into(), 5)],
                },
                false,
            ),
            (
                WorkEvent::Leased {
                    client_id: 1,
                    at_ms: 20,
                    grants: vec![grant(1, 1, Some(&["a", "b"]))],
                },
                false,
            ),
            (
                WorkEvent::ItemsReported {
                    bucket_id: 1,
                    epoch: 1,
                    client_id: 1,
                    results: vec![("a".into(), result(1, 30))],
                    discovered: vec!["d".into(), "a".into()],
                    completed: false,
                    at_ms: 30,
                },
                true,
            ),
            (
                WorkEvent::BucketExpired {
                    bucket_id: 1,
                    epoch: 1,
                    client_id: 1,
                    expiries: 1,
                    dead: false,
                    at_ms: 90,
                },
                true,
            ),
            (
                WorkEvent::Leased {
                    client_id: 2,
                    at_ms: 100,
                    grants: vec![grant(1, 2, None), grant(2, 1, Some(&["c", "d"]))],
                },
                false,
            ),
            (
                WorkEvent::ItemsReported {
                    bucket_id: 1,
                    epoch: 2,
                    client_id: 2,
                    results: vec![("b".into(), result(2, 110))],
                    discovered: vec![],
                    completed: true,
                    at_ms: 110,
                },
                true,
            ),
            (WorkEvent::ItemRerun { key: "a".into() }, false),
            (
                WorkEvent::BucketExpired {
                    bucket_id: 2,
                    epoch: 1,
                    client_id: 2,
                    expiries: 1,
                    dead: true,
                    at_ms: 170,
                },
                true,
            ),
            (
                WorkEvent::UpdateRejected {
                    client_id: 1,
                    at_ms: 175,
                },
                false,
            ),
            (
                WorkEvent::ClientSeen {
                    client_id: 2,
                    at_ms: 180,
                },
                true,
            ),
            (
                WorkEvent::Leased {
                    client_id: 1,
                    at_ms: 185,
                    grants: vec![grant(3, 1, Some(&["a"]))],
                },
                false,
            ),
            (
                WorkEvent::BucketReleased {
                    bucket_id: 3,
                    epoch: 1,
                    client_id: 1,
                },
                true,
            ),
            (
                WorkEvent::ClientUnregistered {
                    client_id: 1,
                    at_ms: 190,
                },
                false,
            ),
        ]
    }

    #[test]
    fn replaying_foreign_events_again_changes_nothing_and_snapshots_round_trip() {
        let mut pool = Pool::default();
        for (event, _) in history() {
            pool.apply(&event);
        }
        let once = fingerprint(&pool);
        assert_eq!(
            pool.counts,
            ItemCounts {
                pending: 3,
                leased: 0,
                done: 1
            }
        );
        assert_eq!(pool.dead.len(), 1);
        assert_eq!(pool.open.len(), 1, "bucket 3, released");
        // Replay re-applies every foreign event, whatever the snapshot already reflects.
        for (event, foreign) in history() {
            if foreign {
                pool.apply_foreign(&event);
            }
        }
        assert_eq!(fingerprint(&pool), once);

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let key = ActorKey::new(crate::work::POOL, POOL_ID);
        let mut batch = SnapshotBatch::default();
        pool.save(key, &mut batch);
        store
            .apply(vec![crate::store::Snapshot {
                key,
                lsn: 42,
                parts: batch,
                deadline: None,
            }])
            .unwrap();
        let loaded = Pool::load(POOL_ID, &store).unwrap();
        assert_eq!(fingerprint(&loaded), once);
        // A second save writes nothing: only what changed is written.
        let mut batch = SnapshotBatch::default();
        pool.save(key, &mut batch);
        assert!(batch.is_empty());
    }

    /// A data dir as format 4 left it: the pool's snapshot (LSN 1) holds client 1 with its
    /// `external_id` in plain text, and (`with_wal_tail`) the WAL, a format-4 segment, registers
    /// client 2 the same way at LSN 2. Opening it must keep the identities (same ids for the
    /// same secrets), leave no plain-text id in the pool's parts or the WAL, and stamp the data
    /// dir with this build's format. Without a WAL tail only the migration step loads the pool.
    #[test]
    fn a_format_4_data_dir_is_migrated_at_open() {
        migrate_format_4(true);
        migrate_format_4(false);
    }

    fn migrate_format_4(with_wal_tail: bool) {
        use crate::codec;
        use crate::runtime::Record;
        use crate::wal::segment;
        use crate::work::Registration;
        use crate::{Engine, EngineConfig, ManualClock};

        let secrets: &[&str] = if with_wal_tail {
            &["legacy-secret-of-client-1", "legacy-secret-of-client-2"]
        } else {
            &["legacy-secret-of-client-1"]
        };
        let dir = tempfile::tempdir().unwrap();
        let config = EngineConfig::for_tests(dir.path());
        let key = ActorKey::new(crate::work::POOL, POOL_ID);
        let legacy = |index: usize| LegacyClient {
            screen_name: format!("legacy {}", index + 1),
            external_id: secrets[index].to_string(),
            token_hash: [index as u8 + 1; 32],
            active: true,
            registered_at_ms: 10,
            last_seen_at_ms: Some(10),
            assigned: 3,
            completed: 2,
            expired: 1,
            rejected: 0,
        };
        {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            let mut parts = SnapshotBatch::default();
            parts.put(
                key,
                &sub(CLIENT, &1u64.to_be_bytes()),
                &Part::LegacyClient(legacy(0)),
            );
            parts.put(
                key,
                META,
                &Part::Meta {
                    next_bucket_id: 1,
                    next_client_id: 2,
                },
            );
            store
                .apply(vec![crate::store::Snapshot {
                    key,
                    lsn: 1,
                    parts,
                    deadline: None,
                }])
                .unwrap();
            store.write_meta_version(4, 1).unwrap();
            store.flush().unwrap();
        }
        let wal_dir = dir.path().join("wal");
        std::fs::create_dir_all(&wal_dir).unwrap();
        if with_wal_tail {
            let second = legacy(1);
            let record = Record {
                origin: key,
                entries: vec![(
                    key,
                    Event::new(WorkEvent::LegacyClientRegistered {
                        client_id: 2,
                        screen_name: second.screen_name,
                        external_id: second.external_id,
                        token_hash: second.token_hash,
                        at_ms: 20,
                        source: None,
                    }),
                )],
            };
            let mut bytes = segment::encode_header_version(2, 4).to_vec();
            segment::frame_legacy_record(&mut bytes, 2, &record.encode());
            std::fs::write(wal_dir.join(format!("{:020}.log", 2)), &bytes).unwrap();
        }

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let open = || {
            Engine::open_with_clock(config.clone(), std::sync::Arc::new(ManualClock::new(1_000)))
        };
        // First open, reads only: whatever is rewritten now is the migration's doing.
        let engine = open().expect("a format-4 data dir opens");
        let stats = runtime.block_on(engine.work().stats()).unwrap();
        let names: Vec<_> = stats
            .clients
            .iter()
            .map(|c| c.screen_name.as_str())
            .collect();
        assert_eq!(names, ["legacy 1", "legacy 2"][..secrets.len()]);
        assert_eq!(stats.clients[0].buckets_completed, 2, "counters survive");
        engine.shutdown().unwrap();
        drop(engine);

        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.meta().unwrap().format_version, codec::FORMAT_VERSION);
        let parts = store.scan_sub::<Part>(key, CLIENT).unwrap();
        assert_eq!(parts.len(), secrets.len());
        for (_, part) in &parts {
            assert!(matches!(part, Part::Client(_)), "{part:?}");
        }
        drop(store);
        let mut segments = 0;
        for entry in std::fs::read_dir(&wal_dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            for secret in secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{} still holds a plain-text external_id",
                    path.display()
                );
            }
            segments += 1;
        }
        assert!(segments <= 1, "the format-4 segment is gone");

        // The identities are kept: the same secrets take the same client ids back.
        let engine = open().expect("reopens");
        runtime.block_on(async {
            for (index, secret) in secrets.iter().enumerate() {
                let again = engine
                    .work()
                    .register(
                        Registration {
                            screen_name: "back".into(),
                            external_id: secret.to_string(),
                        },
                        None,
                    )
                    .await
                    .unwrap();
                assert_eq!(again.client_id, index as u64 + 1, "the identity is kept");
                assert!(!again.created);
            }
        });
        engine.shutdown().unwrap();
    }

    #[test]
    fn key_index_handles_spilled_keys() {
        let mut index = KeyIndex::default();
        let items: Vec<Item> = ["a", "b"]
            .iter()
            .map(|key| Item {
                key: (*key).into(),
                results: Box::default(),
                bucket: 0,
                priority: 0,
                done: false,
            })
            .collect();
        index.insert("a", 0);
        // Force "b" into the spill map, as a hash collision would.
        index.spill.insert("b".into(), 1);
        assert_eq!(index.get(&items, "a"), Some(0));
        assert_eq!(index.get(&items, "c"), None);
        let hash_b = index.hasher.hash_one("b");
        index.slots.insert(hash_b, 0); // slot taken by "a"
        assert_eq!(index.get(&items, "b"), Some(1));
    }
}
