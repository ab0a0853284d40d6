//! The checkpoint store: one redb database, `<data dir>/checkpoint.redb`, holds one snapshot per
//! actor (as one or more keys under the actor's prefix, so a snapshot can rewrite only what
//! changed) and a meta record with the coverage LSN.
//!
//! The checkpoint store is a checkpoint, not the source of truth: the WAL is. Invariants:
//! - A snapshot is written only after every event it reflects is durable in the WAL.
//! - Each actor's snapshot stores the LSN it reflects (`<prefix>` key, value = `SnapshotMeta`);
//!   replay applies an actor's own events only above that LSN.
//! - `meta.coverage_lsn` is flushed before any WAL segment at or below it is removed; every event at
//!   or below it is reflected in flushed snapshots.
//! - An actor's deadline (durable timer) is stored beside its snapshot, in the same transaction.
//! - The data directory is locked (`LOCK`, flock) for the life of the process ([`DirLock`], taken
//!   by `Engine::open` or, for the server, before it binds its address).
//! - The meta record names the format the store was written in: a store of a format this build
//!   cannot read (`codec::is_readable`) is refused at open, naming both versions.
//!
//! # Tables and transactions
//!
//! Two tables of byte keys and byte values: `snapshots` (the snapshot parts and headers, the
//! deadlines under [`TIMER_TAG`], and [`SNAPSHOT_LSN_MAX_KEY`]) and `meta` (the [`Meta`] record).
//!
//! - [`Store::apply`] is one redb write transaction, committed with `Durability::None`: atomic
//!   and visible to every later read at once, not yet durable. Packed groups are read, merged and
//!   rewritten inside that transaction; redb admits one write transaction at a time, which is the
//!   packed layout's write lock.
//! - [`Store::flush`] is an empty write transaction committed with `Durability::Immediate`.
//!   redb persists a commit by writing its pages, then the header naming the new root, then one
//!   fdatasync; a `None` commit writes no header and frees no page (its pages come only from
//!   space the last durable commit does not use), so the durable commit makes every commit before
//!   it durable together. After a crash redb opens the last durable commit whose checksums hold
//!   (the header names the previous one too, and a torn commit fails its checksums): so the
//!   store holds every pass up to some pass, whole, and every pass whose `flush` returned.
//! - [`Store::write_meta`] is one write transaction committed `Immediate` (it flushes every
//!   applied pass with it, as the sled store's did).
//!
//! Why not one write transaction held open from `apply` to `flush`: a read must see an applied
//! pass (the sled store's reads did, and an actor activated between the two reads its new
//! snapshot), and redb's reads see committed transactions only.
//!
//! redb fdatasyncs its file, which makes its data and size durable; it never syncs the
//! directory, so [`Store::open`] fsyncs the data dir (and its parent) once the file exists.
//!
//! Quick repair is off (redb's default): after an unclean stop, opening verifies every page's
//! checksum and rebuilds the allocator (1.35 s for a 444 MB file of 1M actors on this machine,
//! warm cache; sled opened the same data in 0.4-0.5 s). On, every durable commit would be
//! two-phase (a second fdatasync) and write the allocator state, for an instant open.
//!
//! Cost: a commit rewrites each changed leaf page (4 KiB) and its branch path, so a pass of
//! actors spread thinly over a large store writes about a page per actor (1,000 of 100,000
//! counters: 4.2 MB per pass where sled wrote ~70 KB). Dense passes and passes of many keys per
//! actor cost less than sled's per-key CPU (10,000 of 100,000: 80-90 ms where sled took
//! 100-140 ms).
//!
//! # Migration from sled
//!
//! A data dir written before this store holds `sled/` (sled 0.34): `migrate` copies it into
//! redb once at open (see there); sled stays a dependency for that alone.
//!
//! A part that only grows (entries inserted or re-assigned, never removed) is kept as a
//! [`Chunked`] map: chunks of [`chunked::CHUNK`] entries in insertion order, one key each,
//! so a checkpoint writes the chunks that changed (usually the tail) instead of a key per entry.
//!
//! A kind the engine opens the store with as packed (`Entity::PACKED`) keeps the same things in
//! the packed layout
//! (`packed`: [`GROUP`] ids' snapshots to a key, and their deadlines to another); every method
//! here answers the same for both layouts.

pub mod chunked;
mod migrate;
mod packed;

pub use chunked::Chunked;
pub use packed::GROUP;

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use redb::{Durability, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::key::{ActorKey, KindSet};

/// The store's file in the data dir.
pub const FILE_NAME: &str = "checkpoint.redb";

const SNAPSHOTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("snapshots");
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

const META_KEY: &[u8] = b"meta";
/// The highest LSN any snapshot reflects, in the snapshot table under a first byte no `Kind`
/// has, so it is written in the same transaction as the snapshots that raise it. Recovery treats
/// it as a durable floor: snapshots are written only for durable state, so the WAL must reach it.
const SNAPSHOT_LSN_MAX_KEY: &[u8] = b"\x00snapshot_lsn_max";
/// Deadlines live in the snapshot table under this first byte (no `Kind` has it), so a snapshot
/// and its deadline are written in one transaction.
const TIMER_TAG: u8 = 0xFF;

fn timer_key(key: ActorKey) -> [u8; 10] {
    let mut out = [TIMER_TAG; 10];
    out[1..].copy_from_slice(&key.prefix());
    out
}

/// The store-wide meta record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub format_version: u32,
    /// Every event with LSN <= this is reflected in flushed snapshots.
    pub coverage_lsn: u64,
}

/// Per-actor snapshot header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last LSN this actor's snapshot reflects.
    pub lsn: u64,
}

/// A held lock on the data directory; released when dropped (the process exits).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes an exclusive, non-blocking flock on `<dir>/LOCK`.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create data dir {}", dir.display()), e))?;
        // The data dir's own name must be durable before anything in it is acknowledged.
        if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            sync_dir(parent).map_err(|e| Error::io(format!("fsync of {}", parent.display()), e))?;
        }
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(Error::Locked(dir.to_path_buf()));
        }
        Ok(DirLock { _file: file })
    }
}

/// One actor's snapshot as the checkpointer writes it.
#[derive(Debug)]
pub struct Snapshot {
    pub key: ActorKey,
    /// The last LSN the snapshot reflects.
    pub lsn: u64,
    pub parts: SnapshotBatch,
    /// `Some(new deadline)` when the actor's deadline changed since the last snapshot.
    pub deadline: Option<Option<u64>>,
}

/// A part's encoding, run by [`Store::apply`] (the checkpointer's thread), not the actor's.
type Encode = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// A set of snapshot writes for one actor, built on the actor's thread and applied by the
/// checkpointer once the LSN it reflects is durable. A part given with [`SnapshotBatch::put_later`]
/// is encoded when the batch is applied, off the actor's thread: its closure must hold the
/// values as they are at the call (shared immutable copies), never look at the live state.
#[derive(Default)]
pub struct SnapshotBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Indexes into `ops` whose bytes an encoder makes later.
    later: Vec<(usize, Encode)>,
}

impl std::fmt::Debug for SnapshotBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBatch")
            .field("ops", &self.ops.len())
            .field("later", &self.later.len())
            .finish()
    }
}

impl SnapshotBatch {
    /// Writes under the actor's sub-key `sub` the bytes `encode` makes when the batch is
    /// applied (on the checkpointer's thread). For an actor whose changed parts are many: the
    /// actor's thread only gathers shared references (see [`Chunked::save_later`]).
    pub fn put_later(
        &mut self,
        key: ActorKey,
        sub: &[u8],
        encode: impl FnOnce() -> Vec<u8> + Send + 'static,
    ) {
        self.later.push((self.ops.len(), Box::new(encode)));
        self.ops.push((key.sub_key(sub), Some(Vec::new())));
    }

    /// Runs the encoders of [`SnapshotBatch::put_later`]'s parts.
    fn encode_later(&mut self) {
        for (at, encode) in self.later.drain(..) {
            self.ops[at].1 = Some(encode());
        }
    }

    /// Writes `value` under the actor's sub-key `sub` (e.g. `b"profile"`, a post id).
    pub fn put<T: Serialize>(&mut self, key: ActorKey, sub: &[u8], value: &T) {
        self.ops
            .push((key.sub_key(sub), Some(codec::encode(value))));
    }

    /// Removes the actor's sub-key `sub`.
    pub fn remove(&mut self, key: ActorKey, sub: &[u8]) {
        self.ops.push((key.sub_key(sub), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The store keys written or removed, in order (full keys: actor prefix, `/`, sub-key).
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.ops.iter().map(|(key, _)| key.as_slice())
    }
}

/// redb's errors, each a checkpoint store error naming what failed.
macro_rules! store_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for Error {
            fn from(error: $error) -> Self {
                Error::Store(error.to_string())
            }
        }
    )*};
}
store_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The redb database behind checkpoints.
pub struct Store {
    db: redb::Database,
    path: PathBuf,
    /// Mirror of [`SNAPSHOT_LSN_MAX_KEY`]; raised only inside a write transaction.
    snapshot_lsn_max: std::sync::atomic::AtomicU64,
    /// Kinds kept in the packed layout.
    packed: KindSet,
}

/// The value under `key` in `table`, decoded.
fn decoded<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<T>> {
    match table.get(key)? {
        Some(value) => Ok(Some(codec::decode(value.value())?)),
        None => Ok(None),
    }
}

/// The packed group (or timer group) under `key`, empty when absent.
fn group<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<packed::Group<T>> {
    Ok(decoded(table, key)?.unwrap_or_default())
}

impl Store {
    /// Opens (or creates) the store in data dir `dir` (`dir/checkpoint.redb`), first migrating
    /// a sled store (`dir/sled/`) left by an older build. A store that cannot be opened or has
    /// an unknown format version is refused with a message naming the path.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store> {
        Store::open_packed(dir, cache_bytes, KindSet::default())
    }

    /// [`Store::open`], keeping the kinds of `packed` in the packed layout (the engine passes
    /// its registry's: a store must always be opened with the same set).
    pub fn open_packed(dir: &Path, cache_bytes: u64, packed: KindSet) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create data dir {}", dir.display()), e))?;
        let cache_bytes = usize::try_from(cache_bytes).unwrap_or(usize::MAX);
        migrate::from_sled(dir, cache_bytes)?;
        let path = dir.join(FILE_NAME);
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| Error::Store(format!("cannot open {}: {e}", path.display())))?;
        // Both tables exist from here on (reads open them without a write), durably, and so does
        // the file's name: redb never syncs a directory.
        let txn = db.begin_write()?;
        txn.open_table(SNAPSHOTS)?;
        txn.open_table(META)?;
        txn.commit()?;
        let durable = |what: &Path, result: std::io::Result<()>| {
            result.map_err(|error| Error::Store(format!("fsync of {}: {error}", what.display())))
        };
        durable(dir, sync_dir(dir))?;
        if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            durable(parent, sync_dir(parent))?;
        }
        let snapshot_lsn_max = {
            let txn = db.begin_read()?;
            decoded(&txn.open_table(SNAPSHOTS)?, SNAPSHOT_LSN_MAX_KEY)?.unwrap_or(0)
        };
        let store = Store {
            db,
            path,
            snapshot_lsn_max: std::sync::atomic::AtomicU64::new(snapshot_lsn_max),
            packed,
        };
        let meta = store.meta()?;
        if meta.format_version != 0 && !codec::is_readable(meta.format_version) {
            return Err(Error::Store(format!(
                "{}: snapshot format {} is not {}..={} (this build)",
                store.path.display(),
                meta.format_version,
                codec::FORMAT_VERSION_READABLE_MIN,
                codec::FORMAT_VERSION
            )));
        }
        Ok(store)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> Result<Meta> {
        let txn = self.db.begin_read()?;
        Ok(decoded(&txn.open_table(META)?, META_KEY)?.unwrap_or_default())
    }

    /// Writes the meta record (stamped with this build's `codec::FORMAT_VERSION`) and flushes it
    /// (with every pass applied before it).
    pub fn write_meta(&self, coverage_lsn: u64) -> Result<()> {
        self.write_meta_version(codec::FORMAT_VERSION, coverage_lsn)
    }

    /// As [`Store::write_meta`] with another format version: tests build older data dirs with it.
    pub(crate) fn write_meta_version(&self, format_version: u32, coverage_lsn: u64) -> Result<()> {
        let meta = Meta {
            format_version,
            coverage_lsn,
        };
        injected(crate::failpoints::STORE_META_WRITE)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.open_table(META)?
            .insert(META_KEY, codec::encode(&meta).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The highest LSN any applied snapshot reflects (0 for a new store). Every LSN up to it
    /// was durable in the WAL once.
    pub fn snapshot_lsn_max(&self) -> u64 {
        self.snapshot_lsn_max
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The snapshot table as of now, for reads.
    fn snapshots(&self) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
        Ok(self.db.begin_read()?.open_table(SNAPSHOTS)?)
    }

    /// The snapshot header of `key`, if it was ever checkpointed.
    pub fn snapshot_meta(&self, key: ActorKey) -> Result<Option<SnapshotMeta>> {
        injected(crate::failpoints::STORE_READ)?;
        let table = self.snapshots()?;
        if self.packed.contains(key.kind) {
            let group: packed::Group<packed::Entry> =
                group(&table, &packed::group_of(key).prefix())?;
            return Ok(packed::find(&group, key.id).map(|entry| SnapshotMeta { lsn: entry.lsn }));
        }
        decoded(&table, &key.prefix())
    }

    /// Reads one sub-key of an actor's snapshot.
    pub fn get<T: DeserializeOwned>(&self, key: ActorKey, sub: &[u8]) -> Result<Option<T>> {
        injected(crate::failpoints::STORE_READ)?;
        let table = self.snapshots()?;
        if self.packed.contains(key.kind) {
            let group: packed::Group<packed::Entry> =
                group(&table, &packed::group_of(key).prefix())?;
            return match packed::find(&group, key.id).and_then(|entry| entry.part(sub)) {
                Some(bytes) => Ok(Some(codec::decode(bytes)?)),
                None => Ok(None),
            };
        }
        decoded(&table, &key.sub_key(sub))
    }

    /// All sub-keys of an actor with their decoded values, in key order.
    pub fn scan<T: DeserializeOwned>(&self, key: ActorKey) -> Result<Vec<(Vec<u8>, T)>> {
        self.scan_sub(key, b"")
    }

    /// The sub-keys of an actor that start with `sub_prefix`, in key order, each with the rest
    /// of its name after `sub_prefix` and its decoded value. Lets one actor keep parts of
    /// different types under different prefixes.
    pub fn scan_sub<T: DeserializeOwned>(
        &self,
        key: ActorKey,
        sub_prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>> {
        injected(crate::failpoints::STORE_READ)?;
        let table = self.snapshots()?;
        let mut out = Vec::new();
        if self.packed.contains(key.kind) {
            let group: packed::Group<packed::Entry> =
                group(&table, &packed::group_of(key).prefix())?;
            if let Some(entry) = packed::find(&group, key.id) {
                for (name, value) in &entry.parts {
                    if let Some(rest) = name.strip_prefix(sub_prefix) {
                        out.push((rest.to_vec(), codec::decode(value)?));
                    }
                }
            }
            return Ok(out);
        }
        let prefix = key.sub_key(sub_prefix);
        for item in table.range::<&[u8]>(prefix.as_slice()..)? {
            let (full, value) = item?;
            let Some(rest) = full.value().strip_prefix(prefix.as_slice()) else {
                break;
            };
            out.push((rest.to_vec(), codec::decode(value.value())?));
        }
        Ok(out)
    }

    /// Applies snapshots atomically (one write transaction, committed without a sync): for each
    /// actor, its changed parts, the LSN they reflect, and its deadline when it changed
    /// (`Some(None)` clears it). Visible to reads at once; durable after [`Store::flush`].
    pub fn apply(&self, mut snapshots: Vec<Snapshot>) -> Result<()> {
        injected(crate::failpoints::STORE_APPLY)?;
        for snapshot in &mut snapshots {
            snapshot.parts.encode_later();
        }
        // One write transaction at a time: from the first group read to the commit, no other
        // apply interleaves (see `packed`'s invariant).
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None);
        let lsn_max = snapshots.iter().map(|snapshot| snapshot.lsn).max();
        let raised = lsn_max.filter(|lsn| *lsn > self.snapshot_lsn_max());
        {
            let mut table = txn.open_table(SNAPSHOTS)?;
            if let Some(lsn) = raised {
                table.insert(SNAPSHOT_LSN_MAX_KEY, codec::encode(&lsn).as_slice())?;
            }
            let mut packed_members: std::collections::BTreeMap<[u8; 9], Vec<Snapshot>> =
                Default::default();
            for snapshot in snapshots {
                let key = snapshot.key;
                if self.packed.contains(key.kind) {
                    packed_members
                        .entry(packed::group_of(key).prefix())
                        .or_default()
                        .push(snapshot);
                    continue;
                }
                for (part, value) in &snapshot.parts.ops {
                    match value {
                        Some(value) => table.insert(part.as_slice(), value.as_slice())?,
                        None => table.remove(part.as_slice())?,
                    };
                }
                let header = codec::encode(&SnapshotMeta { lsn: snapshot.lsn });
                table.insert(&key.prefix()[..], header.as_slice())?;
                match snapshot.deadline {
                    Some(Some(deadline)) => {
                        table.insert(&timer_key(key)[..], &deadline.to_be_bytes()[..])?;
                    }
                    Some(None) => {
                        table.remove(&timer_key(key)[..])?;
                    }
                    None => {}
                }
            }
            Self::pack_into(packed_members, &mut table)?;
        }
        txn.commit()?;
        if let Some(lsn) = raised {
            self.snapshot_lsn_max
                .store(lsn, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// Merges packed kinds' snapshots into their groups (and their deadlines into their timer
    /// groups) and writes the rewritten groups, in the caller's write transaction.
    fn pack_into(
        members: std::collections::BTreeMap<[u8; 9], Vec<Snapshot>>,
        table: &mut redb::Table<&'static [u8], &'static [u8]>,
    ) -> Result<()> {
        let mut timers: std::collections::BTreeMap<[u8; 10], Vec<(u64, Option<u64>)>> =
            Default::default();
        for (group_key, snapshots) in members {
            let mut entries: packed::Group<packed::Entry> = group(table, &group_key)?;
            for snapshot in snapshots {
                let key = snapshot.key;
                let entry = packed::member(&mut entries, key.id);
                entry.lsn = snapshot.lsn;
                let header = key.prefix().len() + 1;
                for (full, value) in snapshot.parts.ops {
                    entry.set(&full[header..], value);
                }
                if let Some(deadline) = snapshot.deadline {
                    timers
                        .entry(timer_key(packed::group_of(key)))
                        .or_default()
                        .push((key.id, deadline));
                }
            }
            table.insert(&group_key[..], codec::encode(&entries).as_slice())?;
        }
        for (timer_key, changes) in timers {
            let mut deadlines: packed::Group<u64> = group(table, &timer_key)?;
            for (id, deadline) in changes {
                match deadline {
                    Some(deadline) => *packed::member(&mut deadlines, id) = deadline,
                    None => packed::remove(&mut deadlines, id),
                }
            }
            if deadlines.is_empty() {
                table.remove(&timer_key[..])?;
            } else {
                table.insert(&timer_key[..], codec::encode(&deadlines).as_slice())?;
            }
        }
        Ok(())
    }

    /// The persisted deadline of one actor.
    pub fn deadline(&self, key: ActorKey) -> Result<Option<u64>> {
        let table = self.snapshots()?;
        if self.packed.contains(key.kind) {
            let deadlines: packed::Group<u64> = group(&table, &timer_key(packed::group_of(key)))?;
            return Ok(packed::find(&deadlines, key.id).copied());
        }
        Ok(table.get(&timer_key(key)[..])?.and_then(|value| {
            let bytes: [u8; 8] = value.value().try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        }))
    }

    /// Every persisted deadline (start-up re-arms them).
    pub fn deadlines(&self) -> Result<Vec<(ActorKey, u64)>> {
        let table = self.snapshots()?;
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(&[TIMER_TAG][..]..)? {
            let (key, value) = item?;
            let (key, value) = (key.value(), value.value());
            if key.first() != Some(&TIMER_TAG) {
                break;
            }
            let key = ActorKey::from_prefix(&key[1..])
                .ok_or_else(|| Error::Store("timers: bad actor key".into()))?;
            if self.packed.contains(key.kind) {
                let group: packed::Group<u64> = codec::decode(value)?;
                out.extend(
                    group
                        .into_iter()
                        .map(|(id, deadline)| (ActorKey::new(key.kind, id), deadline)),
                );
                continue;
            }
            let value: [u8; 8] = value
                .try_into()
                .map_err(|_| Error::Store("timers: bad deadline".into()))?;
            out.push((key, u64::from_be_bytes(value)));
        }
        Ok(out)
    }

    /// Makes every applied snapshot durable: a durable commit (header + fdatasync) of an empty
    /// write transaction carries every `Durability::None` commit before it (module docs).
    pub fn flush(&self) -> Result<()> {
        injected(crate::failpoints::STORE_FLUSH)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.commit()?;
        Ok(())
    }
}

/// fsync of a directory, so that its created, renamed and removed entries are durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A store step that failpoint `name` makes fail (tests only; see `crate::failpoints`).
fn injected(name: &str) -> Result<()> {
    crate::failpoints::check(name).map_err(|error| Error::Store(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Kind;

    const COUNTER: Kind = Kind::new(1);
    const BUCKET: Kind = Kind::new(6);

    fn packed_buckets() -> KindSet {
        let mut set = KindSet::default();
        set.insert(BUCKET);
        set
    }
    use redb::ReadableTableMetadata;

    #[test]
    fn snapshots_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = ActorKey::new(COUNTER, 42);
        {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            let mut batch = SnapshotBatch::default();
            batch.put(key, b"value", &7u64);
            batch.put(key, b"other", &"x".to_string());
            store
                .apply(vec![Snapshot {
                    key,
                    lsn: 9,
                    parts: batch,
                    deadline: Some(Some(77)),
                }])
                .unwrap();
            store.write_meta(9).unwrap();
        }
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.meta().unwrap().coverage_lsn, 9);
        assert_eq!(
            store.snapshot_meta(key).unwrap(),
            Some(SnapshotMeta { lsn: 9 })
        );
        assert_eq!(store.get::<u64>(key, b"value").unwrap(), Some(7));
        let other = ActorKey::new(COUNTER, 43);
        assert_eq!(store.snapshot_meta(other).unwrap(), None);
        let mut batch = SnapshotBatch::default();
        batch.remove(key, b"other");
        assert_eq!(store.deadlines().unwrap(), vec![(key, 77)]);
        store
            .apply(vec![Snapshot {
                key,
                lsn: 10,
                parts: batch,
                deadline: Some(None),
            }])
            .unwrap();
        assert_eq!(store.deadline(key).unwrap(), None);
        let all: Vec<(Vec<u8>, u64)> = store.scan(key).unwrap();
        assert_eq!(all, vec![(b"value".to_vec(), 7)]);
    }

    #[test]
    fn packed_snapshots_share_group_keys_and_answer_like_unpacked_ones() {
        let dir = tempfile::tempdir().unwrap();
        let first = ActorKey::new(BUCKET, 3 * GROUP);
        let sibling = ActorKey::new(BUCKET, 3 * GROUP + 5);
        let stranger = ActorKey::new(BUCKET, 4 * GROUP);
        let snapshot = |key: ActorKey, lsn: u64, value: u64, deadline: Option<Option<u64>>| {
            let mut parts = SnapshotBatch::default();
            parts.put(key, b"state", &value);
            parts.put(key, b"extra/1", &(value + 1));
            Snapshot {
                key,
                lsn,
                parts,
                deadline,
            }
        };
        {
            let store = Store::open_packed(dir.path(), 1 << 20, packed_buckets()).unwrap();
            store
                .apply(vec![
                    snapshot(first, 4, 40, Some(Some(400))),
                    snapshot(stranger, 5, 50, Some(Some(500))),
                ])
                .unwrap();
            // A later pass adds a sibling to the group and changes the first member.
            let mut parts = SnapshotBatch::default();
            parts.remove(first, b"extra/1");
            store
                .apply(vec![
                    Snapshot {
                        key: first,
                        lsn: 7,
                        parts,
                        deadline: Some(None),
                    },
                    snapshot(sibling, 6, 60, Some(Some(600))),
                ])
                .unwrap();
            store.flush().unwrap();
        }
        let store = Store::open_packed(dir.path(), 1 << 20, packed_buckets()).unwrap();
        assert_eq!(
            store.snapshot_meta(first).unwrap(),
            Some(SnapshotMeta { lsn: 7 })
        );
        assert_eq!(store.get::<u64>(first, b"state").unwrap(), Some(40));
        assert_eq!(store.get::<u64>(first, b"extra/1").unwrap(), None);
        assert_eq!(
            store.snapshot_meta(sibling).unwrap(),
            Some(SnapshotMeta { lsn: 6 })
        );
        let extras: Vec<(Vec<u8>, u64)> = store.scan_sub(sibling, b"extra/").unwrap();
        assert_eq!(extras, vec![(b"1".to_vec(), 61)]);
        let absent = ActorKey::new(BUCKET, 3 * GROUP + 1);
        assert_eq!(store.snapshot_meta(absent).unwrap(), None);
        assert_eq!(store.get::<u64>(absent, b"state").unwrap(), None);
        assert_eq!(store.deadline(first).unwrap(), None);
        assert_eq!(store.deadline(sibling).unwrap(), Some(600));
        assert_eq!(
            store.deadlines().unwrap(),
            vec![(sibling, 600), (stranger, 500)]
        );
        // Two groups of snapshots, one of timers (the first group's other timer was cleared,
        // the second's is live): four keys for three actors, plus the store's snapshot lsn max.
        assert_eq!(store.snapshots().unwrap().len().unwrap(), 5);
        let mut parts = SnapshotBatch::default();
        parts.put(stranger, b"state", &51u64);
        store
            .apply(vec![Snapshot {
                key: stranger,
                lsn: 8,
                parts,
                deadline: Some(None),
            }])
            .unwrap();
        assert_eq!(store.deadlines().unwrap(), vec![(sibling, 600)]);
        assert_eq!(
            store.snapshots().unwrap().len().unwrap(),
            4,
            "an emptied timer group is removed"
        );
        assert_eq!(store.snapshot_lsn_max(), 8);
    }

    #[test]
    fn a_store_of_another_format_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            let old = Meta {
                format_version: codec::FORMAT_VERSION_READABLE_MIN - 1,
                coverage_lsn: 3,
            };
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_KEY, codec::encode(&old).as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        match Store::open(dir.path(), 1 << 20) {
            Err(Error::Store(message)) => {
                let expected = format!(
                    "snapshot format {} is not {}..={} (this build)",
                    codec::FORMAT_VERSION_READABLE_MIN - 1,
                    codec::FORMAT_VERSION_READABLE_MIN,
                    codec::FORMAT_VERSION
                );
                assert!(message.contains(&expected), "{message}");
            }
            other => panic!("expected a format refusal, got {:?}", other.err()),
        }
    }

    #[test]
    fn second_lock_on_a_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DirLock::acquire(dir.path()).unwrap();
        match DirLock::acquire(dir.path()) {
            Err(Error::Locked(path)) => assert_eq!(path, dir.path()),
            other => panic!("expected Locked, got {other:?}"),
        }
    }
}
