//! The pool's snapshot: its parts, `load` and `save`.
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

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::clients::{Client, LegacyClient};
use super::formation::pack;
use super::{BucketRecord, BucketState, Item, Pool, DONE, LEASED, PENDING, POOL_ID};
use crate::error::{Error, Result};
use crate::runtime::ActorKey;
use crate::store::{SnapshotBatch, Store};
use crate::work::ResultRecord;

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
pub(super) const ITEMS_PER_CHUNK: u32 = 256;

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

fn id_from(bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::Store("work pool: bad snapshot key".into()))?;
    Ok(u64::from_be_bytes(array))
}

/// True when the pool's snapshot still holds a client part of format 4 (plain-text
/// `external_id`). `Engine::open` then loads and saves the pool at once, so the plain text does
/// not wait for the pool's next change to leave the store.
pub(crate) fn has_legacy_clients(store: &Store) -> Result<bool> {
    let key = ActorKey::new(crate::work::POOL, POOL_ID);
    Ok(store
        .scan_sub::<Part>(key, CLIENT)?
        .iter()
        .any(|(_, part)| matches!(part, Part::LegacyClient(_))))
}

/// Reads the pool from its snapshot parts; derives the rest (each item's bucket, the pending
/// set, the open and dead sets, holds, counts).
pub(super) fn load(store: &Store) -> Result<Pool> {
    let key = ActorKey::new(crate::work::POOL, POOL_ID);
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

impl Pool {
    /// Writes the parts changed since the last save (`Entity::save`).
    pub(super) fn save_parts(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Entity, Event};
    use crate::work::{
        external_id_digest, Grant, ItemCounts, ItemView, KeyList, WorkEvent,
    };
    use crate::clock::Millis;

    fn result(client_id: u64, at_ms: Millis) -> ResultRecord {
        ResultRecord {
            outcome: crate::work::Outcome::Yes,
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
}
