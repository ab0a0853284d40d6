//! Durable timers. An entity derives its next deadline from its state (`Entity::next_deadline`);
//! the runtime keeps every actor's deadline in this index, persists it with the actor's snapshot
//! (the checkpoint store, beside each actor's snapshot), rebuilds the index at start-up from that tree plus replay, and fires due
//! timers by sending the actor a `Timer` message, which runs `Entity::timer_command`.
//!
//! Invariants: a deadline lives in state, never only in memory; a passivated actor keeps its
//! deadline in the index (firing re-activates it); firing removes the entry and the actor
//! re-registers whatever deadline its state has after handling.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::ActorKey;
use crate::clock::Millis;

#[derive(Debug, Default)]
struct Index {
    by_time: BTreeSet<(Millis, ActorKey)>,
    by_key: HashMap<ActorKey, Millis>,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    index: Mutex<Index>,
}

impl Timers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // Invariant: nothing panics while holding this lock (only map operations).
        self.index.lock().expect("timer index not poisoned")
    }

    /// Sets (or clears) the deadline of `key`.
    pub fn set(&self, key: ActorKey, deadline: Option<Millis>) {
        let mut index = self.lock();
        if let Some(old) = index.by_key.remove(&key) {
            index.by_time.remove(&(old, key));
        }
        if let Some(deadline) = deadline {
            index.by_key.insert(key, deadline);
            index.by_time.insert((deadline, key));
        }
    }

    /// Removes and returns every actor whose deadline is at or before `now_ms`, at most `max`.
    pub fn take_due(&self, now_ms: Millis, max: usize) -> Vec<ActorKey> {
        let mut index = self.lock();
        let due: Vec<(Millis, ActorKey)> = index
            .by_time
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .take(max)
            .copied()
            .collect();
        for entry in &due {
            index.by_time.remove(entry);
            index.by_key.remove(&entry.1);
        }
        due.into_iter().map(|(_, key)| key).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Kind;

    #[test]
    fn due_timers_come_out_in_deadline_order_once() {
        let timers = Timers::default();
        let a = ActorKey::new(Kind::new(1), 1);
        let b = ActorKey::new(Kind::new(1), 2);
        timers.set(a, Some(50));
        timers.set(b, Some(20));
        timers.set(a, Some(30));
        assert_eq!(timers.take_due(10, 10), vec![]);
        assert_eq!(timers.take_due(40, 10), vec![b, a]);
        assert_eq!(timers.take_due(40, 10), vec![]);
        timers.set(a, Some(5));
        timers.set(a, None);
        assert_eq!(timers.len(), 0);
    }
}
