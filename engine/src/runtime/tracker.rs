//! Coverage tracking: which WAL records are not yet reflected in flushed snapshots.
//!
//! A *hold* is a floor LSN taken before an event's LSN is assigned (so floor <= that LSN) and
//! released only once a flushed snapshot reflects the event. Each dirty actor owns one hold
//! (taken when it turns dirty); an event addressed to another actor carries its own hold until
//! the receiver applies it. A clean receiver takes the message's hold as its dirty hold; a dirty
//! one keeps the lower of the two floors and gives back the other. (A message's floor can be the
//! lower one: the receiver may have turned dirty through a command of its own queued ahead of
//! the message but run after the sender logged it.) So a dirty actor's floor is never above the
//! LSN of any event it applied since its last snapshot.
//!
//! Invariant: every event with LSN >= min(held floors), or assigned after `next_lsn` was read, may
//! be unreflected; every event below `coverage()` is reflected in flushed snapshots. Only the
//! checkpointer releases holds of actors (after the store flush); only receivers transfer message holds.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use super::ActorKey;

#[derive(Debug, Default)]
struct Inner {
    floors: BTreeMap<u64, u32>,
    dirty: HashSet<ActorKey>,
}

#[derive(Debug, Default)]
pub struct Tracker {
    inner: Mutex<Inner>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Invariant: no code panics while holding this lock (only map operations).
        self.inner.lock().expect("tracker lock not poisoned")
    }

    /// Takes a hold at `floor` for an event addressed to another actor.
    pub fn hold(&self, floor: u64) {
        *self.lock().floors.entry(floor).or_insert(0) += 1;
    }

    /// Takes a hold at `floor` and marks `key` dirty (its first event since its last snapshot).
    pub fn mark_dirty(&self, key: ActorKey, floor: u64) {
        let mut inner = self.lock();
        *inner.floors.entry(floor).or_insert(0) += 1;
        inner.dirty.insert(key);
    }

    /// Marks `key` dirty, reusing a hold already taken (a transferred message hold).
    pub fn mark_dirty_with_held(&self, key: ActorKey) {
        self.lock().dirty.insert(key);
    }

    pub fn release(&self, floor: u64) {
        let mut inner = self.lock();
        let count = inner
            .floors
            .get_mut(&floor)
            .expect("release of a floor that is held");
        *count -= 1;
        if *count == 0 {
            inner.floors.remove(&floor);
        }
    }

    /// Takes the set of actors that turned dirty since the last call.
    pub fn take_dirty(&self) -> Vec<ActorKey> {
        self.lock().dirty.drain().collect()
    }

    /// Puts actors back in the dirty set (their snapshot could not be written).
    pub fn restore_dirty(&self, keys: impl IntoIterator<Item = ActorKey>) {
        self.lock().dirty.extend(keys);
    }

    /// The highest LSN at or below which every event is reflected in flushed snapshots, given
    /// `next_lsn` read *before* this call.
    pub fn coverage(&self, next_lsn: u64) -> u64 {
        let inner = self.lock();
        let below_next = next_lsn.saturating_sub(1);
        match inner.floors.keys().next() {
            Some(&floor) => below_next.min(floor.saturating_sub(1)),
            None => below_next,
        }
    }

    pub fn held_count(&self) -> usize {
        self.lock()
            .floors
            .values()
            .map(|count| *count as usize)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Kind;

    #[test]
    fn coverage_stops_below_the_lowest_hold() {
        let tracker = Tracker::default();
        assert_eq!(tracker.coverage(11), 10);
        let key = ActorKey::new(Kind::new(1), 1);
        tracker.mark_dirty(key, 5);
        tracker.hold(8);
        tracker.hold(5);
        assert_eq!(tracker.coverage(11), 4);
        tracker.release(5);
        assert_eq!(tracker.coverage(11), 4, "one hold at 5 remains");
        tracker.release(5);
        assert_eq!(tracker.coverage(11), 7);
        tracker.release(8);
        assert_eq!(tracker.coverage(11), 10);
        assert_eq!(tracker.take_dirty(), vec![key]);
        assert!(tracker.take_dirty().is_empty());
    }
}
