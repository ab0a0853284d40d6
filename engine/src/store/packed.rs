//! The packed layout, for kinds opened as packed (`Entity::PACKED`): the snapshots of [`GROUP`] consecutive
//! ids share one store key, and so do their deadlines.
//!
//! - `kind ‖ group (u64 BE)` → the group's entries, sorted by id: each the LSN its snapshot
//!   reflects and its parts (sub-key → encoded value, sorted by sub-key).
//! - `TIMER_TAG ‖ kind ‖ group (u64 BE)` → `(id, deadline)` pairs, sorted by id; the key is
//!   removed when the group has no deadline left, so start-up scans only live timers.
//!
//! Why: a store's cost is per key (sled 0.34's CPU and memory grew with the number of keys
//! written; redb rewrites a leaf and its path per changed key). A lease of a new one-item bucket
//! wrote three keys (header, state, timer) and made a pass spend as much CPU as the request
//! thread; packed, a pass writes one key per group that changed.
//!
//! Invariant: a group is read, changed and written back only inside the pass's write
//! transaction (redb runs one at a time), with the rest of the pass, so a crash keeps the whole pass or none of it.
//! Readers see a group before or after a pass, never half of one.

use serde::{Deserialize, Serialize};

use crate::key::ActorKey;

/// Ids per group. A group holds whole snapshots, so its value is about `GROUP` times one
/// actor's (a bucket of the default 180 twenty-byte keys: ~4 KB, so ~64 KB a group).
pub const GROUP: u64 = 16;

/// One actor's snapshot inside its group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    pub lsn: u64,
    /// Sub-key → encoded value, sorted by sub-key.
    pub parts: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub fn part(&self, sub: &[u8]) -> Option<&[u8]> {
        self.parts
            .binary_search_by(|(name, _)| name.as_slice().cmp(sub))
            .ok()
            .map(|at| self.parts[at].1.as_slice())
    }

    pub fn set(&mut self, sub: &[u8], value: Option<Vec<u8>>) {
        let found = self
            .parts
            .binary_search_by(|(name, _)| name.as_slice().cmp(sub));
        match (found, value) {
            (Ok(at), Some(value)) => self.parts[at].1 = value,
            (Ok(at), None) => {
                self.parts.remove(at);
            }
            (Err(at), Some(value)) => self.parts.insert(at, (sub.to_vec(), value)),
            (Err(_), None) => {}
        }
    }
}

/// A group's entries (or timers), sorted by id.
pub(super) type Group<T> = Vec<(u64, T)>;

/// The group `key` belongs to, named like an actor of its kind (id = group number), so its
/// store keys are that name's snapshot header key and timer key.
pub(super) fn group_of(key: ActorKey) -> ActorKey {
    ActorKey::new(key.kind, key.id / GROUP)
}

pub(super) fn find<T>(group: &Group<T>, id: u64) -> Option<&T> {
    group
        .binary_search_by_key(&id, |(member, _)| *member)
        .ok()
        .map(|at| &group[at].1)
}

/// The member `id`, inserted with `T::default()` when absent.
pub(super) fn member<T: Default>(group: &mut Group<T>, id: u64) -> &mut T {
    let at = match group.binary_search_by_key(&id, |(member, _)| *member) {
        Ok(at) => at,
        Err(at) => {
            group.insert(at, (id, T::default()));
            at
        }
    };
    &mut group[at].1
}

pub(super) fn remove<T>(group: &mut Group<T>, id: u64) {
    if let Ok(at) = group.binary_search_by_key(&id, |(member, _)| *member) {
        group.remove(at);
    }
}
