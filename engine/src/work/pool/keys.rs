//! The key → item index: each key is stored once (in the pool's `Item`); the index maps the
//! key's 64-bit hash (keyed per process, so not predictable) to the item's index, and the rare
//! key whose hash slot another key holds goes to a spill map.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use super::Item;

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
pub(super) struct KeyIndex {
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
    pub(super) fn get(&self, items: &[Item], key: &str) -> Option<u32> {
        match self.slots.get(&self.hasher.hash_one(key)) {
            Some(index) if &*items[*index as usize].key == key => Some(*index),
            Some(_) => self.spill.get(key).copied(),
            None => None,
        }
    }

    /// Adds a key known to be absent.
    pub(super) fn insert(&mut self, key: &str, index: u32) {
        let hash = self.hasher.hash_one(key);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.slots.entry(hash) {
            slot.insert(index);
        } else {
            self.spill.insert(key.into(), index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
