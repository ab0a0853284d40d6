//! The order book: one actor holds every order, the BTC total and the idempotency keys, so the
//! cap and the key replays are decided one order at a time (see the module docs of `market`).
//!
//! State and snapshot parts (sub-keys of the book's one actor key):
//! - `t` → the total in satoshis and the next order id;
//! - `c` ‖ chunk (big-endian) → the orders with ids `chunk·64 .. chunk·64+63`, each with its
//!   idempotency key and the key's expiry. Orders never change, so a pass rewrites only the
//!   chunks that gained orders: one store key per 64 orders instead of two per order (the
//!   checkpointer's redb inserts were a quarter of the server's CPU at saturation).
//!
//! Keys: the in-memory index (user, key) → (request, order, expiry) is rebuilt from the chunks
//! at load (a later order with the same key replaces an earlier, expired one). Expired keys are
//! forgotten from memory by a `KeysExpired` event, which the book's durable timer asks for at
//! most once a minute; until then an expired key is ignored. Their orders keep the key text.
//!
//! Listing: orders are kept by id (ids grow with time, so id order is newest-first order) and
//! each user's ids in a sorted vector, so a page is a binary search and `limit` steps, whatever
//! its position; an offset page of one user's orders (the compatibility routes' contract) is an
//! index into that vector and `limit` steps, whatever the offset.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::limit::RateLimiter;
use super::money::Rate;
use super::{fresh, Currency, MarketConfig, MarketEvent, OrderRequest, Quote, ORDER_BOOK};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Event, Kind};
use crate::store::{SnapshotBatch, Store};
use crate::Page;

/// An accepted order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub user_id: u64,
    pub currency: Currency,
    pub amount_cents: u64,
    /// The rate used (fiat per BTC).
    pub rate: Rate,
    /// `amount / rate`, rounded up, in satoshis.
    pub btc_sats: u64,
    pub created_at_ms: Millis,
    /// The time of the price used.
    pub price_at_ms: Millis,
}

/// What placing an order came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// A new order (201).
    Created(Order),
    /// The order an earlier request with the same key and body made (200).
    Replayed(Order),
}

impl Placed {
    pub fn order(&self) -> &Order {
        match self {
            Placed::Created(order) | Placed::Replayed(order) => order,
        }
    }
}

/// A remembered `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeyEntry {
    request: OrderRequest,
    order_id: u64,
    expires_at_ms: Millis,
}

pub enum BookCommand {
    Place {
        user_id: u64,
        key: Option<String>,
        request: OrderRequest,
        quote: Option<Quote>,
        limiter: Arc<RateLimiter>,
    },
    List {
        user_id: Option<u64>,
        before: Option<u64>,
        limit: usize,
    },
    /// One user's orders, newest first, skipping the `offset` newest.
    ListAt {
        user_id: u64,
        offset: u64,
        limit: usize,
    },
    Totals,
    /// Checks the book's invariants (see [`OrderBook::check`]).
    Check,
    /// The timer: forget expired keys.
    ExpireKeys,
}

pub enum BookReply {
    Placed(Placed),
    Page(Page<Order>),
    Orders(Vec<Order>),
    Totals { sats: u64, orders: u64 },
    Differences(Vec<String>),
    Done,
}

fn unexpected() -> Error {
    Error::Unavailable("unexpected reply kind")
}

impl BookReply {
    pub(crate) fn placed(self) -> Result<Placed> {
        match self {
            BookReply::Placed(placed) => Ok(placed),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn page(self) -> Result<Page<Order>> {
        match self {
            BookReply::Page(page) => Ok(page),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn differences(self) -> Result<Vec<String>> {
        match self {
            BookReply::Differences(differences) => Ok(differences),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn orders(self) -> Result<Vec<Order>> {
        match self {
            BookReply::Orders(orders) => Ok(orders),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn totals(self) -> Result<(u64, u64)> {
        match self {
            BookReply::Totals { sats, orders } => Ok((sats, orders)),
            _ => Err(unexpected()),
        }
    }
}

#[derive(Debug, Default)]
pub struct OrderBook {
    total_sats: u64,
    next_id: u64,
    orders: BTreeMap<u64, Order>,
    // Ordered maps, not hash maps, for everything that grows with orders or users: a std
    // HashMap doubles all at once, and at 229k idempotency keys that rehash held this actor,
    // and every order behind it, for about 60 ms (measured at 21,700 orders/s).
    by_user: BTreeMap<u64, Vec<u64>>,
    keys: BTreeMap<(u64, String), KeyEntry>,
    /// (expiry, user, key) of every remembered key, for the expiry timer.
    expiries: BTreeSet<(Millis, u64, String)>,
    totals_dirty: bool,
    /// The key each keyed order was placed with, and the key's expiry (for the chunks).
    order_keys: BTreeMap<u64, (String, Millis)>,
    /// Chunks that gained orders since the last snapshot.
    chunks_dirty: BTreeSet<u64>,
}

const TOTALS: &[u8] = b"t";
const CHUNK: &[u8] = b"c";
/// Orders per snapshot chunk.
const CHUNK_ORDERS: u64 = 64;
/// Expired keys are forgotten in batches at most this often.
const EXPIRY_BATCH_MS: Millis = 60_000;

/// One order of a chunk, with the key it was placed with.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    order: Order,
    key: Option<(String, Millis)>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Part {
    Totals { total_sats: u64, next_id: u64 },
    Chunk(Vec<Entry>),
}

fn chunk_sub(chunk: u64) -> Vec<u8> {
    let mut sub = CHUNK.to_vec();
    sub.extend_from_slice(&chunk.to_be_bytes());
    sub
}

impl OrderBook {
    /// A full chunk never changes again: the keys kept only to rewrite it can go.
    fn forget_keys_of_full_chunk(&mut self, chunk: u64) {
        let first = chunk * CHUNK_ORDERS;
        if first + CHUNK_ORDERS <= self.next_id {
            for id in first..first + CHUNK_ORDERS {
                self.order_keys.remove(&id);
            }
        }
    }

    fn insert_order(&mut self, order: Order) {
        let ids = self.by_user.entry(order.user_id).or_default();
        // Ids grow, so a push keeps the vector sorted (replay applies in id order too).
        if ids.last().is_none_or(|last| *last < order.id) {
            ids.push(order.id);
        } else if let Err(at) = ids.binary_search(&order.id) {
            ids.insert(at, order.id);
        }
        self.next_id = self.next_id.max(order.id + 1);
        self.orders.insert(order.id, order);
    }

    fn insert_key(&mut self, user_id: u64, key: String, entry: KeyEntry) {
        self.expiries
            .insert((entry.expires_at_ms, user_id, key.clone()));
        if let Some(old) = self.keys.insert((user_id, key.clone()), entry) {
            self.expiries.remove(&(old.expires_at_ms, user_id, key));
        }
    }

    fn place(
        &self,
        user_id: u64,
        key: Option<String>,
        request: OrderRequest,
        quote: Option<Quote>,
        limiter: &RateLimiter,
        ctx: &Ctx<'_>,
    ) -> Result<Decision<BookReply>> {
        let config = ctx.config.section::<MarketConfig>();
        if let Some(key) = &key {
            if let Some(entry) = self.keys.get(&(user_id, key.clone())) {
                if entry.expires_at_ms > ctx.now_ms {
                    if entry.request != request {
                        return Err(Error::conflict(
                            "idempotency_key_reused",
                            "this Idempotency-Key was used with another body",
                        ));
                    }
                    let order = self.orders.get(&entry.order_id).cloned().ok_or_else(|| {
                        Error::Store(format!("order book: key of a missing order {}", entry.order_id))
                    })?;
                    return Ok(Decision::read(BookReply::Placed(Placed::Replayed(order))));
                }
            }
        }
        limiter.take(user_id, ctx.now_ms)?;
        let quote = fresh(quote, ctx.now_ms, config)?;
        if self.orders.len() >= config.orders_max {
            return Err(Error::Overloaded("order book"));
        }
        let rate = quote.rate(request.currency);
        let cap_exceeded = || {
            Error::conflict(
                "btc_cap_exceeded",
                format!(
                    "all orders together may not exceed {} BTC",
                    super::money::format_sats(config.cap_satoshis)
                ),
            )
        };
        let btc_sats = rate
            .btc_for(request.amount_cents)
            .ok_or_else(cap_exceeded)?;
        match self.total_sats.checked_add(btc_sats) {
            Some(total) if total <= config.cap_satoshis => {}
            _ => return Err(cap_exceeded()),
        }
        let order = Order {
            id: self.next_id.max(1),
            user_id,
            currency: request.currency,
            amount_cents: request.amount_cents,
            rate,
            btc_sats,
            created_at_ms: ctx.now_ms,
            price_at_ms: quote.at_ms,
        };
        let expires_at_ms = ctx
            .now_ms
            .saturating_add(config.idempotency_key_ttl_seconds.saturating_mul(1000));
        Ok(Decision {
            events: vec![(
                ctx.key,
                Event::new(MarketEvent::OrderPlaced {
                    order: order.clone(),
                    key,
                    expires_at_ms,
                }),
            )],
            reply: BookReply::Placed(Placed::Created(order)),
        })
    }

    /// The book's invariants: the total is the sum of the orders and within `cap_sats`; every
    /// order is in its user's index once, in id order; every key names an order of its user
    /// made with the key's request. Returns what does not hold (empty when all is well).
    fn check(&self, cap_sats: u64) -> Vec<String> {
        let mut differences = Vec::new();
        let sum: u128 = self.orders.values().map(|o| u128::from(o.btc_sats)).sum();
        if sum != u128::from(self.total_sats) {
            differences.push(format!("total {} ≠ sum of orders {sum}", self.total_sats));
        }
        if sum > u128::from(cap_sats) {
            differences.push(format!("sum of orders {sum} above the cap {cap_sats}"));
        }
        let indexed: usize = self.by_user.values().map(Vec::len).sum();
        if indexed != self.orders.len() {
            differences.push(format!(
                "{indexed} orders in the user index, {} in the book",
                self.orders.len()
            ));
        }
        for (user_id, ids) in &self.by_user {
            if ids.windows(2).any(|pair| pair[0] >= pair[1]) {
                differences.push(format!("user {user_id}: index not in id order"));
            }
            for id in ids {
                if self.orders.get(id).is_none_or(|o| o.user_id != *user_id) {
                    differences.push(format!("user {user_id}: order {id} is not theirs"));
                }
            }
        }
        for ((user_id, key), entry) in &self.keys {
            match self.orders.get(&entry.order_id) {
                Some(order)
                    if order.user_id == *user_id
                        && order.currency == entry.request.currency
                        && order.amount_cents == entry.request.amount_cents => {}
                _ => differences.push(format!(
                    "key {key:?} of user {user_id} names order {} made otherwise",
                    entry.order_id
                )),
            }
        }
        if self.orders.keys().next_back().is_some_and(|last| *last >= self.next_id) {
            differences.push(format!("next id {} not above every order", self.next_id));
        }
        differences
    }

    fn list(&self, user_id: Option<u64>, before: Option<u64>, limit: usize) -> Page<Order> {
        let before = before.unwrap_or(u64::MAX);
        let limit = limit.max(1);
        let items: Vec<Order> = match user_id {
            Some(user_id) => {
                let ids = self.by_user.get(&user_id).map(Vec::as_slice).unwrap_or(&[]);
                let end = ids.partition_point(|id| *id < before);
                ids[..end]
                    .iter()
                    .rev()
                    .take(limit + 1)
                    .filter_map(|id| self.orders.get(id).cloned())
                    .collect()
            }
            None => self
                .orders
                .range(..before)
                .rev()
                .take(limit + 1)
                .map(|(_, order)| order.clone())
                .collect(),
        };
        page_of(items, limit, |order| order.id)
    }

    /// `user_id`'s orders, newest first, after skipping the `offset` newest: at most `limit`,
    /// found by index in the user's sorted ids, so the cost is `limit` whatever the offset.
    fn list_at(&self, user_id: u64, offset: u64, limit: usize) -> Vec<Order> {
        let ids = self.by_user.get(&user_id).map(Vec::as_slice).unwrap_or(&[]);
        let skipped = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = ids.len().saturating_sub(skipped);
        let start = end.saturating_sub(limit);
        ids[start..end]
            .iter()
            .rev()
            .filter_map(|id| self.orders.get(id).cloned())
            .collect()
    }
}

/// The first `limit` of `items` (fetched `limit + 1`), with the key to continue below.
pub(crate) fn page_of<T>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> u64) -> Page<T> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&id)
    } else {
        None
    };
    Page { items, next }
}

impl Entity for OrderBook {
    const KIND: Kind = ORDER_BOOK;
    type Event = MarketEvent;
    type Command = BookCommand;
    type Reply = BookReply;

    fn load(id: u64, store: &Store) -> Result<Self> {
        let key = ActorKey::new(ORDER_BOOK, id);
        let mut book = OrderBook {
            next_id: 1,
            ..OrderBook::default()
        };
        for (_, part) in store.scan::<Part>(key)? {
            match part {
                Part::Totals {
                    total_sats,
                    next_id,
                } => {
                    book.total_sats = total_sats;
                    book.next_id = book.next_id.max(next_id);
                }
                Part::Chunk(entries) => {
                    for Entry { order, key } in entries {
                        if let Some((name, expires_at_ms)) = key {
                            let entry = KeyEntry {
                                request: OrderRequest {
                                    currency: order.currency,
                                    amount_cents: order.amount_cents,
                                },
                                order_id: order.id,
                                expires_at_ms,
                            };
                            book.order_keys.insert(order.id, (name.clone(), expires_at_ms));
                            book.insert_key(order.user_id, name, entry);
                        }
                        book.insert_order(order);
                    }
                }
            }
        }
        let chunks: BTreeSet<u64> = book.order_keys.keys().map(|id| id / CHUNK_ORDERS).collect();
        for chunk in chunks {
            book.forget_keys_of_full_chunk(chunk);
        }
        Ok(book)
    }

    fn decide(&self, command: BookCommand, ctx: &Ctx<'_>) -> Result<Decision<BookReply>> {
        match command {
            BookCommand::Place {
                user_id,
                key,
                request,
                quote,
                limiter,
            } => self.place(user_id, key, request, quote, &limiter, ctx),
            BookCommand::List {
                user_id,
                before,
                limit,
            } => Ok(Decision::read(BookReply::Page(
                self.list(user_id, before, limit),
            ))),
            BookCommand::Check => Ok(Decision::read(BookReply::Differences(self.check(
                ctx.config.section::<MarketConfig>().cap_satoshis,
            )))),
            BookCommand::ListAt {
                user_id,
                offset,
                limit,
            } => Ok(Decision::read(BookReply::Orders(
                self.list_at(user_id, offset, limit),
            ))),
            BookCommand::Totals => Ok(Decision::read(BookReply::Totals {
                sats: self.total_sats,
                orders: self.orders.len() as u64,
            })),
            BookCommand::ExpireKeys => {
                let due = self
                    .expiries
                    .first()
                    .is_some_and(|(expires, _, _)| *expires <= ctx.now_ms);
                if !due {
                    return Ok(Decision::read(BookReply::Done));
                }
                Ok(Decision {
                    events: vec![(
                        ctx.key,
                        Event::new(MarketEvent::KeysExpired {
                            through_ms: ctx.now_ms,
                        }),
                    )],
                    reply: BookReply::Done,
                })
            }
        }
    }

    fn apply(&mut self, event: &MarketEvent) {
        match event {
            MarketEvent::OrderPlaced {
                order,
                key,
                expires_at_ms,
            } => {
                self.total_sats = self.total_sats.saturating_add(order.btc_sats);
                self.totals_dirty = true;
                self.chunks_dirty.insert(order.id / CHUNK_ORDERS);
                if let Some(key) = key {
                    self.order_keys
                        .insert(order.id, (key.clone(), *expires_at_ms));
                    let entry = KeyEntry {
                        request: OrderRequest {
                            currency: order.currency,
                            amount_cents: order.amount_cents,
                        },
                        order_id: order.id,
                        expires_at_ms: *expires_at_ms,
                    };
                    self.insert_key(order.user_id, key.clone(), entry);
                }
                self.insert_order(order.clone());
            }
            MarketEvent::KeysExpired { through_ms } => {
                while let Some(first) = self.expiries.first().cloned() {
                    if first.0 > *through_ms {
                        break;
                    }
                    self.expiries.remove(&first);
                    let (_, user_id, key) = first;
                    self.keys.remove(&(user_id, key));
                }
            }
            _ => {}
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        // Batched: at the first expiry, but not before the next whole minute after it.
        self.expiries
            .first()
            .map(|(expires, _, _)| (expires / EXPIRY_BATCH_MS + 1) * EXPIRY_BATCH_MS)
    }

    fn timer_command(&self, now_ms: Millis) -> Option<BookCommand> {
        self.expiries
            .first()
            .filter(|(expires, _, _)| *expires <= now_ms)
            .map(|_| BookCommand::ExpireKeys)
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        if std::mem::take(&mut self.totals_dirty) {
            batch.put(
                key,
                TOTALS,
                &Part::Totals {
                    total_sats: self.total_sats,
                    next_id: self.next_id,
                },
            );
        }
        for chunk in std::mem::take(&mut self.chunks_dirty) {
            let first = chunk * CHUNK_ORDERS;
            let entries: Vec<Entry> = self
                .orders
                .range(first..first + CHUNK_ORDERS)
                .map(|(id, order)| Entry {
                    order: order.clone(),
                    key: self.order_keys.get(id).cloned(),
                })
                .collect();
            // Encoded by the checkpointer, not here: a pass may carry tens of thousands of new
            // orders, and every order waits while this actor is busy (`put_later`).
            batch.put_later(key, &chunk_sub(chunk), move || {
                crate::codec::encode(&Part::Chunk(entries))
            });
            self.forget_keys_of_full_chunk(chunk);
        }
    }
}
