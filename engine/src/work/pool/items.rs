//! The items and the bucket table: item states and their counts, adds (duplicates counted,
//! the `pool_items_max` limit), reports (a result lands only while the item is still in the
//! reporting bucket, so a replayed report changes nothing), the end of a lease (the bucket open
//! again or dead, guarded by its epoch and holder), the stats, and the item and dead-letter
//! pages.

use std::collections::HashSet;

use super::formation::pack;
use super::snapshot::ITEMS_PER_CHUNK;
use super::{BucketState, Item, Pool, PoolReply, DONE, LEASED, PENDING};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::runtime::{Ctx, Decision, Event};
use crate::work::{
    Added, BucketCounts, DeadBucketView, ItemState, ItemView, Page, ResultRecord, ResultView,
    WorkEvent, WorkStats, DEFAULT_PRIORITY,
};

impl Pool {
    pub(super) fn state_of(&self, index: u32) -> ItemState {
        match self.states[index as usize] {
            LEASED => ItemState::Leased,
            DONE => ItemState::Done,
            _ => ItemState::Pending,
        }
    }

    pub(super) fn view(&self, index: u32) -> ItemView {
        let item = &self.items[index as usize];
        ItemView {
            key: item.key.to_string(),
            state: self.state_of(index),
            priority: item.priority,
            results: item.results.iter().map(result_view).collect(),
        }
    }

    pub(super) fn set_state(&mut self, index: u32, state: u8) {
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

    pub(super) fn add_item(&mut self, key: &str, priority: i32) {
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

    pub(super) fn open_order(&self, items: &[u32]) -> u64 {
        items
            .iter()
            .map(|index| pack(self.items[*index as usize].priority, *index))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Ends the lease at `epoch` of `bucket_id` held by `client_id`, if that is still the
    /// bucket's state (the guard that makes the bucket's events idempotent). The bucket becomes
    /// open, or dead when `dead_at` is given. Returns whether it applied.
    pub(super) fn end_lease(
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

    pub(super) fn stats(&self) -> WorkStats {
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

    pub(super) fn decide_add(&self, items: Vec<(String, i32)>, ctx: &Ctx<'_>) -> Result<Decision<PoolReply>> {
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
        if self.items.len() + fresh.len() > ctx.config.section::<crate::work::WorkConfig>().pool_items_max {
            return Err(Error::Overloaded("work pool"));
        }
        Ok(Decision {
            events: vec![(ctx.key, Event::new(WorkEvent::ItemsAdded { items: fresh }))],
            reply: PoolReply::Added(added),
        })
    }

    pub(super) fn list_items(
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

    pub(super) fn dead_letters(&self, after: Option<u64>, limit: usize) -> Page<DeadBucketView> {
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_reported(
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
