//! Leases and bucket formation.
//!
//! A lease takes, per bucket, whichever is better by (priority desc, age): the best open
//! (expired or released) bucket, or a new bucket formed from the free pending items: all items
//! of the highest pending priority when they fit, else `bucket_size` picked at random among the
//! oldest `formation_spread × bucket_size` of that priority. The randomness comes from the
//! command's seed mixed with the next bucket id, so `decide` stays a function of its inputs.
//!
//! The generator is rand's [`Xoshiro256PlusPlus`], a named portable generator: rand promises
//! the same sequence for a seed on every platform and within a minor version (`Cargo.lock`
//! pins it), so with `work.seed` set the same operations form the same buckets.
//!
//! **Invariant:** the formation's randomness is used only by `decide`: the buckets it formed
//! are in the `Leased` event (their keys), and `apply` and replay read them from there, so the
//! generator is part of no stored state.

use std::collections::{btree_set, BTreeSet};
use std::iter::Peekable;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};

use super::{BucketRecord, BucketState, Pool, PoolReply, LEASED};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Ctx, Decision, Event};
use crate::work::{
    BucketView, Grant, KeyList, WorkEvent, KEY_RECORD_OVERHEAD_BYTES, RECORD_BYTES_BUDGET,
};

/// Orders pending items: ascending = priority descending, then oldest (lowest index) first.
pub(super) fn pack(priority: i32, index: u32) -> u64 {
    let rank = (i64::from(i32::MAX) - i64::from(priority)) as u64;
    (rank << 32) | u64::from(index)
}

fn packed_index(packed: u64) -> u32 {
    packed as u32
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
    fn form(&mut self, size: usize, spread: usize, rng: &mut impl Rng) -> Vec<u64> {
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
            let mut picked = vec![false; self.window.len()];
            for position in rand::seq::index::sample(rng, class, need) {
                picked[position] = true;
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
    pub(super) fn decide_lease(
        &self,
        token: &str,
        max_buckets: usize,
        seed: u64,
        ctx: &Ctx<'_>,
    ) -> Result<Decision<PoolReply>> {
        let client_id = self.verify(token)?;
        let config = ctx.config.section::<crate::work::WorkConfig>();
        let held = self.held_count(client_id);
        if held >= config.leased_buckets_per_client_max {
            return Err(Error::invalid_field(
                "too_many_buckets",
                "max_buckets",
                format!("the client already holds {held} leased buckets, the most allowed"),
            ));
        }
        let wanted = max_buckets.min(config.leased_buckets_per_client_max - held);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(
            seed ^ self.next_bucket_id.wrapping_mul(0xD6E8_FEB8_6659_FD93),
        );
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
                ActorKey::new(crate::work::BUCKET, grant.bucket_id),
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

    /// The indexes of a formed bucket's keys: from the decision's hint when it is for this
    /// bucket, else by lookup.
    pub(super) fn formed_indexes(
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

    pub(super) fn apply_leased(&mut self, client_id: u64, at_ms: Millis, grants: &[Grant]) {
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
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
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

    #[test]
    fn a_seed_always_forms_the_same_buckets() {
        let pending: BTreeSet<u64> = (0..64).map(|index| pack(0, index)).collect();
        let form = |seed: u64| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut former = Former::new(&pending);
            (0..4)
                .map(|_| former.form(5, 4, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(form(11), form(11));
        assert_ne!(form(11), form(12), "another seed, other buckets");
        // Pinned: rand promises this sequence for xoshiro256++ (a portable generator); a change
        // would change which buckets a seeded run forms, never stored data.
        let first: Vec<u32> = form(11)[0].iter().map(|packed| packed_index(*packed)).collect();
        assert_eq!(first, PINNED_FIRST_BUCKET_OF_SEED_11);
    }

    const PINNED_FIRST_BUCKET_OF_SEED_11: [u32; 5] = [5, 11, 13, 16, 17];
}
