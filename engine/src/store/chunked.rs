//! [`Chunked`]: an insert-only map persisted as chunks of [`CHUNK`] entries in insertion order,
//! so a checkpoint rewrites a few sled keys however many entries an actor added or re-assigned.
//!
//! For a part of a snapshot that only grows (like records, "liked" flags, index entries): an
//! entry is never removed, only inserted or re-assigned (an unlike sets a flag, it does not
//! delete). In memory an ordered map `K → (V, slot)` answers queries in key order (keyset pages);
//! `slots` keeps the insertion order. On disk, chunk `n` holds slots `n·CHUNK ..` as a
//! `Vec<(K, V)>` in slot order under the actor's sub-key `prefix ‖ n (u32 big-endian)`.
//!
//! Invariants:
//! - Slots are dense: slot `i` belongs to the `i`-th inserted key and never changes; chunk `n`
//!   holds exactly the keys of slots `n·CHUNK .. (n+1)·CHUNK` (the last chunk may be shorter).
//! - `dirty` names every chunk with a change not yet given to [`Chunked::save`]. New entries
//!   go to the tail chunk, so a pass that adds entries writes one or two keys; re-assigning an
//!   entry rewrites only its chunk.
//! - A snapshot that reads back with a missing chunk, a short chunk before the last, or a key in
//!   two slots is refused (`Error::Store` naming the actor): it is not something we wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeBounds;

use serde::{de::DeserializeOwned, Serialize};

use super::{SnapshotBatch, Store};
use crate::error::{Error, Result};
use crate::key::ActorKey;

/// Entries per chunk (one sled key). Changing it changes the snapshot format.
pub const CHUNK: usize = 32;

/// An insert-only map persisted in chunks of [`CHUNK`] entries (see the module docs).
#[derive(Debug, Clone)]
pub struct Chunked<K, V> {
    map: BTreeMap<K, (V, u32)>,
    /// Keys in insertion order; index = slot.
    slots: Vec<K>,
    /// Chunks changed since the last save.
    dirty: BTreeSet<u32>,
}

impl<K, V> Default for Chunked<K, V> {
    fn default() -> Self {
        Chunked {
            map: BTreeMap::new(),
            slots: Vec::new(),
            dirty: BTreeSet::new(),
        }
    }
}

fn chunk_of(slot: usize) -> u32 {
    // Invariant: slots are u32 (see `insert_or_assign`), so the chunk number is too.
    (slot / CHUNK) as u32
}

/// The sub-key of chunk `chunk` under `prefix`.
pub fn chunk_sub(prefix: &[u8], chunk: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 4);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&chunk.to_be_bytes());
    out
}

fn refused(actor: ActorKey, prefix: &[u8], detail: String) -> Error {
    Error::Store(format!(
        "{:?} {} snapshot part {:?}: {detail}",
        actor.kind,
        actor.id,
        String::from_utf8_lossy(prefix)
    ))
}

impl<K: Ord + Clone, V> Chunked<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(value, _)| value)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Inserts `key` in the next slot, or re-assigns its value in place. Returns the previous
    /// value. Assigning the value an entry already has changes nothing (no chunk is dirtied), so
    /// replaying an idempotent assignment costs no write.
    pub fn insert_or_assign(&mut self, key: K, value: V) -> Option<V>
    where
        V: PartialEq,
    {
        if let Some((current, slot)) = self.map.get_mut(&key) {
            if *current == value {
                return Some(value);
            }
            self.dirty.insert(chunk_of(*slot as usize));
            return Some(std::mem::replace(current, value));
        }
        let slot = self.slots.len();
        let slot_u32 = u32::try_from(slot).expect("fewer than 2^32 entries in one chunked map");
        self.slots.push(key.clone());
        self.map.insert(key, (value, slot_u32));
        self.dirty.insert(chunk_of(slot));
        None
    }

    /// Entries whose key is in `range`, in key order.
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.map.range(range).map(|(key, (value, _))| (key, value))
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.map.iter().map(|(key, (value, _))| (key, value))
    }

    /// Every value, in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.map.values().map(|(value, _)| value)
    }

    /// Keys in insertion (slot) order.
    pub fn insertion_order(&self) -> &[K] {
        &self.slots
    }

    /// Whether a change awaits [`Chunked::save`].
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Writes every chunk changed since the last save under `actor`'s sub-key
    /// `prefix ‖ chunk (u32 big-endian)`; value = the chunk's `(K, V)` pairs in slot order.
    pub fn save(&mut self, actor: ActorKey, prefix: &[u8], batch: &mut SnapshotBatch)
    where
        K: Serialize,
        V: Serialize,
    {
        for chunk in std::mem::take(&mut self.dirty) {
            let first = chunk as usize * CHUNK;
            let end = (first + CHUNK).min(self.slots.len());
            let entries: Vec<(&K, &V)> = self.slots[first..end]
                .iter()
                .map(|key| {
                    // Invariant: every slot's key is in the map.
                    let (value, _) = &self.map[key];
                    (key, value)
                })
                .collect();
            batch.put(actor, &chunk_sub(prefix, chunk), &entries);
        }
    }

    /// As [`Chunked::save`], for values behind a shared pointer (`Arc<T>`): the actor's thread
    /// only clones the changed chunks' keys and pointers, and the checkpointer encodes them
    /// (the same bytes `save` writes). A re-assigned entry gets a new pointer, so the values
    /// given here stay as they were at the call.
    pub fn save_later<T>(&mut self, actor: ActorKey, prefix: &[u8], batch: &mut SnapshotBatch)
    where
        K: Serialize + Clone + Send + 'static,
        V: std::ops::Deref<Target = T> + Clone + Send + 'static,
        T: Serialize + ?Sized,
    {
        for chunk in std::mem::take(&mut self.dirty) {
            let first = chunk as usize * CHUNK;
            let end = (first + CHUNK).min(self.slots.len());
            let entries: Vec<(K, V)> = self.slots[first..end]
                .iter()
                .map(|key| (key.clone(), self.map[key].0.clone()))
                .collect();
            batch.put_later(actor, &chunk_sub(prefix, chunk), move || {
                let refs: Vec<(&K, &T)> = entries.iter().map(|(k, v)| (k, &**v)).collect();
                crate::codec::encode(&refs)
            });
        }
    }

    /// Rebuilds the map from its chunks (in any order): `(chunk number, entries in slot order)`.
    /// The result is clean (nothing to save). A missing or duplicate chunk, a short chunk before
    /// the last, an empty chunk or a key in two slots is an `Error::Store` naming `actor`.
    pub fn from_chunks(
        actor: ActorKey,
        prefix: &[u8],
        chunks: impl IntoIterator<Item = (u32, Vec<(K, V)>)>,
    ) -> Result<Self> {
        let mut ordered: BTreeMap<u32, Vec<(K, V)>> = BTreeMap::new();
        for (chunk, entries) in chunks {
            if ordered.insert(chunk, entries).is_some() {
                return Err(refused(
                    actor,
                    prefix,
                    format!("chunk {chunk} appears twice"),
                ));
            }
        }
        let last = ordered.len().checked_sub(1);
        let mut out = Chunked::default();
        for (index, (chunk, entries)) in ordered.into_iter().enumerate() {
            if chunk as usize != index {
                return Err(refused(
                    actor,
                    prefix,
                    format!("chunk {index} is missing (found chunk {chunk})"),
                ));
            }
            let full = entries.len() == CHUNK;
            let valid_last = Some(index) == last && !entries.is_empty() && entries.len() <= CHUNK;
            if !full && !valid_last {
                return Err(refused(
                    actor,
                    prefix,
                    format!(
                        "chunk {chunk} holds {} entries, not {CHUNK}: a slot is missing",
                        entries.len()
                    ),
                ));
            }
            for (key, value) in entries {
                let slot = out.slots.len();
                if out.map.contains_key(&key) {
                    return Err(refused(
                        actor,
                        prefix,
                        format!("slot {slot} in chunk {chunk} repeats a key of an earlier slot"),
                    ));
                }
                out.slots.push(key.clone());
                out.map.insert(key, (value, slot as u32));
            }
        }
        Ok(out)
    }

    /// Loads the map of `actor` stored under `prefix` (see [`Chunked::save`]).
    pub fn load(store: &Store, actor: ActorKey, prefix: &[u8]) -> Result<Self>
    where
        K: DeserializeOwned,
        V: DeserializeOwned,
    {
        Self::load_mapped(store, actor, prefix, |value: V| value)
    }

    /// As [`Chunked::load`], each stored value `T` made into `V` by `map` (`Arc::new` for a
    /// map saved with [`Chunked::save_later`]).
    pub fn load_mapped<T: DeserializeOwned>(
        store: &Store,
        actor: ActorKey,
        prefix: &[u8],
        map: impl Fn(T) -> V,
    ) -> Result<Self>
    where
        K: DeserializeOwned,
    {
        let mut chunks = Vec::new();
        for (name, entries) in store.scan_sub::<Vec<(K, T)>>(actor, prefix)? {
            let chunk: [u8; 4] = name.as_slice().try_into().map_err(|_| {
                refused(
                    actor,
                    prefix,
                    format!("bad chunk key suffix of {} bytes", name.len()),
                )
            })?;
            let entries = entries.into_iter().map(|(k, t)| (k, map(t))).collect();
            chunks.push((u32::from_be_bytes(chunk), entries));
        }
        Self::from_chunks(actor, prefix, chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Kind;
    use crate::store::Snapshot;

    const ACTOR: ActorKey = ActorKey::new(Kind::new(3), 7);
    const PREFIX: &[u8] = b"likes/";

    fn filled(n: u64) -> Chunked<(u64, u64), u64> {
        let mut map = Chunked::new();
        // Insertion order differs from key order.
        for i in 0..n {
            assert_eq!(map.insert_or_assign((n - i, i % 3), i), None);
        }
        map
    }

    fn saved(map: &mut Chunked<(u64, u64), u64>) -> SnapshotBatch {
        let mut batch = SnapshotBatch::default();
        map.save(ACTOR, PREFIX, &mut batch);
        batch
    }

    fn chunk_numbers(batch: &SnapshotBatch) -> Vec<u32> {
        batch
            .keys()
            .map(|key| {
                let sub = &key[ACTOR.sub_key(PREFIX).len()..];
                u32::from_be_bytes(sub.try_into().unwrap())
            })
            .collect()
    }

    fn write(store: &Store, batch: SnapshotBatch, lsn: u64) {
        store
            .apply(vec![Snapshot {
                key: ACTOR,
                lsn,
                parts: batch,
                deadline: None,
            }])
            .unwrap();
    }

    fn same<K: Ord + Clone + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
        a: &Chunked<K, V>,
        b: &Chunked<K, V>,
    ) {
        assert_eq!(a.insertion_order(), b.insertion_order());
        assert!(a.iter().eq(b.iter()));
    }

    #[test]
    fn round_trips_through_a_store_and_keeps_appending_to_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut map = filled(100);
        map.insert_or_assign((100, 0), 1_000);
        {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            write(&store, saved(&mut map), 1);
            store.flush().unwrap();
        }
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut loaded = Chunked::<(u64, u64), u64>::load(&store, ACTOR, PREFIX).unwrap();
        same(&map, &loaded);
        assert!(!loaded.is_dirty());
        assert_eq!(loaded.get(&(100, 0)), Some(&1_000));
        assert_eq!(loaded.len(), 100);
        let keys: Vec<_> = loaded.range((50, 0)..(51, 0)).map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![(50, 2)]);
        // Slots continue after a load: slot 100 is in chunk 3 (96..128).
        loaded.insert_or_assign((0, 0), 5);
        let batch = saved(&mut loaded);
        assert_eq!(chunk_numbers(&batch), vec![3]);
        write(&store, batch, 2);
        let again = Chunked::<(u64, u64), u64>::load(&store, ACTOR, PREFIX).unwrap();
        same(&loaded, &again);
        // Another part of the same actor and an empty map load independently.
        let other = Chunked::<u64, bool>::load(&store, ACTOR, b"gave/").unwrap();
        assert!(other.is_empty());
    }

    #[test]
    fn only_dirty_chunks_are_written() {
        let mut map = filled(100);
        assert_eq!(chunk_numbers(&saved(&mut map)), vec![0, 1, 2, 3]);
        assert!(saved(&mut map).is_empty());
        // Appends go to the tail chunk; crossing a boundary writes two.
        map.insert_or_assign((1_000, 0), 1);
        assert_eq!(chunk_numbers(&saved(&mut map)), vec![3]);
        for i in 0..27 {
            map.insert_or_assign((2_000 + i, 0), i);
        }
        assert_eq!(map.len(), 128);
        assert_eq!(chunk_numbers(&saved(&mut map)), vec![3]);
        map.insert_or_assign((3_000, 0), 1);
        assert_eq!(chunk_numbers(&saved(&mut map)), vec![4]);
        map.insert_or_assign((3_001, 0), 1);
        map.insert_or_assign((3_001, 0), 2);
        assert_eq!(chunk_numbers(&saved(&mut map)), vec![4]);
        // Re-assigning an old entry rewrites only its chunk; assigning its value again nothing.
        let old = map.insertion_order()[5];
        assert_eq!(map.insert_or_assign(old, 777), Some(5));
        assert_eq!(chunk_numbers(&saved(&mut map)), vec![0]);
        assert_eq!(map.insert_or_assign(old, 777), Some(777));
        assert!(!map.is_dirty());
        assert!(saved(&mut map).is_empty());
        let late = map.insertion_order()[40];
        map.insert_or_assign(late, 1);
        map.insert_or_assign((4_000, 0), 1);
        assert_eq!(chunk_numbers(&saved(&mut map)), vec![1, 4]);
    }

    #[test]
    fn reassignment_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut map = filled(70);
        write(&store, saved(&mut map), 1);
        let old = map.insertion_order()[3];
        map.insert_or_assign(old, 42);
        let batch = saved(&mut map);
        assert_eq!(batch.len(), 1);
        write(&store, batch, 2);
        let loaded = Chunked::<(u64, u64), u64>::load(&store, ACTOR, PREFIX).unwrap();
        same(&map, &loaded);
        assert_eq!(loaded.get(&old), Some(&42));
    }

    /// Chunks as `from_chunks` takes them: (chunk number, entries in slot order).
    type Chunks = Vec<(u32, Vec<((u64, u64), u64)>)>;

    fn chunks_of(map: &Chunked<(u64, u64), u64>) -> Chunks {
        map.insertion_order()
            .chunks(CHUNK)
            .enumerate()
            .map(|(n, keys)| {
                (
                    n as u32,
                    keys.iter().map(|k| (*k, *map.get(k).unwrap())).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn load_order_does_not_matter() {
        let map = filled(150);
        let mut chunks = chunks_of(&map);
        chunks.reverse();
        chunks.swap(0, 2);
        let loaded = Chunked::from_chunks(ACTOR, PREFIX, chunks).unwrap();
        same(&map, &loaded);
    }

    fn refusal(chunks: Chunks) -> String {
        match Chunked::from_chunks(ACTOR, PREFIX, chunks) {
            Err(Error::Store(message)) => {
                assert!(message.contains("Kind(3) 7"), "{message}");
                message
            }
            other => panic!("expected a store error, got {other:?}"),
        }
    }

    #[test]
    fn missing_or_duplicate_slots_are_refused() {
        let map = filled(100);
        let chunks = chunks_of(&map);
        // A missing chunk.
        let mut missing = chunks.clone();
        missing.remove(1);
        assert!(refusal(missing).contains("chunk 1 is missing"));
        // A short chunk before the last.
        let mut short = chunks.clone();
        short[0].1.pop();
        assert!(refusal(short).contains("a slot is missing"));
        // A chunk written twice.
        let mut twice = chunks.clone();
        twice.push(chunks[2].clone());
        assert!(refusal(twice).contains("appears twice"));
        // A key in two slots.
        let mut repeated = chunks;
        let key = repeated[0].1[0].0;
        repeated[3].1[0].0 = key;
        assert!(refusal(repeated).contains("repeats a key"));
        // An empty tail chunk.
        let mut empty = chunks_of(&filled(2 * CHUNK as u64));
        empty.push((2, Vec::new()));
        assert!(refusal(empty).contains("chunk 2 holds 0 entries"));
    }

    /// `save_later` writes the bytes `save` writes, made on the applying thread from the
    /// values as they were at the call: a later re-assignment does not leak into it.
    #[test]
    fn save_later_writes_what_save_writes_as_of_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let (plain_dir, shared_dir) = (dir.path().join("plain"), dir.path().join("shared"));
        let (plain, shared) = (
            Store::open(&plain_dir, 1 << 20).unwrap(),
            Store::open(&shared_dir, 1 << 20).unwrap(),
        );
        let mut map = filled(70);
        let mut arcs: Chunked<(u64, u64), std::sync::Arc<u64>> = Chunked::new();
        for key in map.insertion_order() {
            arcs.insert_or_assign(*key, std::sync::Arc::new(*map.get(key).unwrap()));
        }
        let mut later = SnapshotBatch::default();
        arcs.save_later(ACTOR, PREFIX, &mut later);
        // Changed after the call: the batch keeps the value it was given.
        let first = *arcs.iter().next().unwrap().0;
        arcs.insert_or_assign(first, std::sync::Arc::new(999));
        write(&plain, saved(&mut map), 5);
        write(&shared, later, 5);
        let read = |store: &Store| {
            store
                .scan_sub::<Vec<((u64, u64), u64)>>(ACTOR, PREFIX)
                .unwrap()
        };
        assert_eq!(read(&plain), read(&shared));
        assert_eq!(read(&plain).len(), 3, "70 entries in chunks of 32");
    }
}
