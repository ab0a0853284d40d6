//! The checkpoint store: sled holds one snapshot per actor (as one or more keys under the actor's
//! prefix, so a snapshot can rewrite only what changed) and a meta record with the coverage LSN.
//!
//! sled is a checkpoint, not the source of truth: the WAL is. Invariants:
//! - A snapshot is written only after every event it reflects is durable in the WAL.
//! - Each actor's snapshot stores the LSN it reflects (`<prefix>` key, value = `SnapshotMeta`);
//!   replay applies an actor's own events only above that LSN.
//! - `meta.coverage_lsn` is flushed before any WAL segment at or below it is removed; every event at
//!   or below it is reflected in flushed snapshots.
//! - An actor's deadline (durable timer) is stored beside its snapshot, in the same batch.
//! - The data directory is locked (`LOCK`, flock) for the life of the process ([`DirLock`], taken
//!   by `Engine::open` or, for the server, before it binds its address).
//! - The meta record names the format the store was written in: a store of a format this build
//!   cannot read (`codec::is_readable`) is refused at open, naming both versions.
//!
//! A part that only grows (entries inserted or re-assigned, never removed) is kept as a
//! [`Chunked`] map: chunks of [`chunked::CHUNK`] entries in insertion order, one sled key each,
//! so a checkpoint writes the chunks that changed (usually the tail) instead of a key per entry.
//!
//! A kind the engine opens the store with as packed (`Entity::PACKED`) keeps the same things in
//! the packed layout
//! (`packed`: [`GROUP`] ids' snapshots to a key, and their deadlines to another); every method
//! here answers the same for both layouts.

pub mod chunked;
mod packed;

pub use chunked::Chunked;
pub use packed::GROUP;

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::key::{ActorKey, KindSet};

const META_KEY: &[u8] = b"meta";
/// The highest LSN any snapshot reflects, in the snapshot tree under a first byte no `Kind` has,
/// so it is written in the same batch as the snapshots that raise it. Recovery treats it as a
/// durable floor: snapshots are written only for durable state, so the WAL must reach it.
const SNAPSHOT_LSN_MAX_KEY: &[u8] = b"\x00snapshot_lsn_max";
/// Deadlines live in the snapshot tree under this first byte (no `Kind` has it), so a snapshot
/// and its deadline are written in one batch.
const TIMER_TAG: u8 = 0xFF;
/// How long `Store::open` waits for sled's file lock to be released by a previous instance
/// in this process (see `Store::open`).
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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

/// A set of snapshot writes for one actor, built on the actor's thread and applied by the
/// checkpointer once the LSN it reflects is durable.
#[derive(Debug, Default)]
pub struct SnapshotBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl SnapshotBatch {
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

    /// The sled keys written or removed, in order (full keys: actor prefix, `/`, sub-key).
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.ops.iter().map(|(key, _)| key.as_slice())
    }

    fn extend_into(self, batch: &mut sled::Batch) {
        for (key, value) in self.ops {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
    }
}

/// Serialises every sled mutation, flush and close in this process.
///
/// sled 0.34 guards all its databases with one process-global reader/writer lock: `apply_batch`
/// takes it for writing, while `flush` holds it for reading *while waiting for its I/O to become
/// stable*. So with two databases in one process (two engines: parallel tests, or an embedder
/// running two), a flush that stalls in one engine (we saw one wait forever after its directory
/// was deleted under it) would block every checkpoint of the other. Serialising our own writes
/// keeps one engine's flush from ever holding that lock while another's batch waits on it.
/// Reads stay concurrent.
static SLED_WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sled_writes() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding it poisons nothing we rely on: the guarded data is sled's.
    SLED_WRITES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The sled database behind checkpoints. Not `Clone`: its drop closes sled under
/// [`SLED_WRITES`], so it has one owner.
pub struct Store {
    db: std::mem::ManuallyDrop<sled::Db>,
    snapshots: std::mem::ManuallyDrop<sled::Tree>,
    path: PathBuf,
    /// Mirror of [`SNAPSHOT_LSN_MAX_KEY`]; raised only under [`SLED_WRITES`].
    snapshot_lsn_max: std::sync::atomic::AtomicU64,
    /// sled's log file (`db`), fsync'ed after each flush (see [`Store::flush`]).
    log_file: File,
    /// Kinds kept in the packed layout.
    packed: KindSet,
}

impl Drop for Store {
    fn drop(&mut self) {
        let _writes = sled_writes();
        // SAFETY: each field is dropped exactly once, here, and never used after.
        unsafe {
            std::mem::ManuallyDrop::drop(&mut self.snapshots);
            std::mem::ManuallyDrop::drop(&mut self.db);
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`. A store that cannot be opened or has an unknown
    /// format version is refused with a message naming the path.
    ///
    /// sled's own file lock is released only when its last background IO task lets go of the
    /// previous instance, which can lag a drop in the same process (a reopen after close, under
    /// load). The data-dir lock (`DirLock`) already excludes any other owner, so a busy sled lock
    /// here can only be that lag: it is retried for up to `SLED_LOCK_WAIT`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store> {
        Store::open_packed(dir, cache_bytes, KindSet::default())
    }

    /// [`Store::open`], keeping the kinds of `packed` in the packed layout (the engine passes
    /// its registry's: a store must always be opened with the same set).
    pub fn open_packed(dir: &Path, cache_bytes: u64, packed: KindSet) -> Result<Store> {
        let started = std::time::Instant::now();
        let db = loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                // Flushes are driven by the checkpointer; sled's own timer flush is not needed.
                .flush_every_ms(None)
                .open();
            match opened {
                // sled 0.34 reports its busy lock as `Other` with this text (config.rs).
                Err(sled::Error::Io(error))
                    if error.to_string().starts_with("could not acquire lock")
                        && started.elapsed() < SLED_LOCK_WAIT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => {
                    break other.map_err(|e| {
                        Error::Store(format!("cannot open sled at {}: {e}", dir.display()))
                    })?
                }
            }
        };
        let snapshots = db.open_tree("snapshots")?;
        // sled writes its `conf` without an fsync and never syncs its directory: make the store's
        // existence durable before anything relies on it.
        let durable = |what: &Path, result: std::io::Result<()>| {
            result.map_err(|error| Error::Store(format!("fsync of {}: {error}", what.display())))
        };
        let conf = dir.join("conf");
        durable(&conf, File::open(&conf).and_then(|file| file.sync_all()))?;
        durable(dir, sync_dir(dir))?;
        if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            durable(parent, sync_dir(parent))?;
        }
        let log_path = dir.join("db");
        let log_file = File::open(&log_path)
            .map_err(|error| Error::Store(format!("opening {}: {error}", log_path.display())))?;
        let snapshot_lsn_max = match snapshots.get(SNAPSHOT_LSN_MAX_KEY)? {
            Some(bytes) => codec::decode(&bytes)?,
            None => 0,
        };
        let store = Store {
            db: std::mem::ManuallyDrop::new(db),
            snapshots: std::mem::ManuallyDrop::new(snapshots),
            path: dir.to_path_buf(),
            snapshot_lsn_max: std::sync::atomic::AtomicU64::new(snapshot_lsn_max),
            log_file,
            packed,
        };
        let meta = store.meta()?;
        if meta.format_version != 0 && !codec::is_readable(meta.format_version) {
            return Err(Error::Store(format!(
                "{}: snapshot format {} is not {}..={} (this build)",
                dir.display(),
                meta.format_version,
                codec::FORMAT_VERSION_READABLE_MIN,
                codec::FORMAT_VERSION
            )));
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> Result<Meta> {
        match self.db.get(META_KEY)? {
            Some(bytes) => codec::decode(&bytes),
            None => Ok(Meta::default()),
        }
    }

    /// Writes the meta record (stamped with this build's `codec::FORMAT_VERSION`) and flushes it.
    pub fn write_meta(&self, coverage_lsn: u64) -> Result<()> {
        self.write_meta_version(codec::FORMAT_VERSION, coverage_lsn)
    }

    /// As [`Store::write_meta`] with another format version: tests build older data dirs with it.
    pub(crate) fn write_meta_version(&self, format_version: u32, coverage_lsn: u64) -> Result<()> {
        let meta = Meta {
            format_version,
            coverage_lsn,
        };
        let _writes = sled_writes();
        injected(crate::failpoints::STORE_META_WRITE)?;
        self.db.insert(META_KEY, codec::encode(&meta))?;
        self.flush_locked()
    }

    /// The highest LSN any applied snapshot reflects (0 for a new store). Every LSN up to it
    /// was durable in the WAL once.
    pub fn snapshot_lsn_max(&self) -> u64 {
        self.snapshot_lsn_max
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The snapshot header of `key`, if it was ever checkpointed.
    pub fn snapshot_meta(&self, key: ActorKey) -> Result<Option<SnapshotMeta>> {
        injected(crate::failpoints::STORE_READ)?;
        if self.packed.contains(key.kind) {
            let group = self.packed_group(key)?;
            return Ok(packed::find(&group, key.id).map(|entry| SnapshotMeta { lsn: entry.lsn }));
        }
        match self.snapshots.get(key.prefix())? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Reads one sub-key of an actor's snapshot.
    pub fn get<T: DeserializeOwned>(&self, key: ActorKey, sub: &[u8]) -> Result<Option<T>> {
        injected(crate::failpoints::STORE_READ)?;
        if self.packed.contains(key.kind) {
            let group = self.packed_group(key)?;
            return match packed::find(&group, key.id).and_then(|entry| entry.part(sub)) {
                Some(bytes) => Ok(Some(codec::decode(bytes)?)),
                None => Ok(None),
            };
        }
        match self.snapshots.get(key.sub_key(sub))? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
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
        let mut out = Vec::new();
        if self.packed.contains(key.kind) {
            let group = self.packed_group(key)?;
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
        for item in self.snapshots.scan_prefix(&prefix) {
            let (full, value) = item?;
            out.push((full[prefix.len()..].to_vec(), codec::decode(&value)?));
        }
        Ok(out)
    }

    /// Applies snapshots atomically (one sled batch): for each actor, its changed parts, the LSN
    /// they reflect, and its deadline when it changed (`Some(None)` clears it). Not flushed.
    pub fn apply(&self, snapshots: Vec<Snapshot>) -> Result<()> {
        let mut batch = sled::Batch::default();
        let mut packed_members: std::collections::BTreeMap<[u8; 9], Vec<Snapshot>> =
            Default::default();
        // Held from the first group read to the batch, so no other apply interleaves (see
        // `packed`'s invariant).
        let _writes = sled_writes();
        injected(crate::failpoints::STORE_APPLY)?;
        let lsn_max = snapshots.iter().map(|snapshot| snapshot.lsn).max();
        let raised = lsn_max.filter(|lsn| *lsn > self.snapshot_lsn_max());
        if let Some(lsn) = raised {
            batch.insert(SNAPSHOT_LSN_MAX_KEY, codec::encode(&lsn));
        }
        for snapshot in snapshots {
            let key = snapshot.key;
            if self.packed.contains(key.kind) {
                packed_members
                    .entry(packed::group_of(key).prefix())
                    .or_default()
                    .push(snapshot);
                continue;
            }
            snapshot.parts.extend_into(&mut batch);
            batch.insert(
                &key.prefix()[..],
                codec::encode(&SnapshotMeta { lsn: snapshot.lsn }),
            );
            match snapshot.deadline {
                Some(Some(deadline)) => batch.insert(&timer_key(key)[..], &deadline.to_be_bytes()),
                Some(None) => batch.remove(&timer_key(key)[..]),
                None => {}
            }
        }
        self.pack_into(packed_members, &mut batch)?;
        self.snapshots.apply_batch(batch)?;
        if let Some(lsn) = raised {
            self.snapshot_lsn_max
                .store(lsn, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// Merges packed kinds' snapshots into their groups (and their deadlines into their timer
    /// groups) and puts the rewritten groups in `batch`.
    fn pack_into(
        &self,
        members: std::collections::BTreeMap<[u8; 9], Vec<Snapshot>>,
        batch: &mut sled::Batch,
    ) -> Result<()> {
        let mut timers: std::collections::BTreeMap<[u8; 10], Vec<(u64, Option<u64>)>> =
            Default::default();
        for (group_key, snapshots) in members {
            let mut group: packed::Group<packed::Entry> =
                packed::decode_group(self.snapshots.get(group_key)?)?;
            for snapshot in snapshots {
                let key = snapshot.key;
                let entry = packed::member(&mut group, key.id);
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
            batch.insert(&group_key[..], codec::encode(&group));
        }
        for (timer_key, changes) in timers {
            let mut group: packed::Group<u64> =
                packed::decode_group(self.snapshots.get(timer_key)?)?;
            for (id, deadline) in changes {
                match deadline {
                    Some(deadline) => *packed::member(&mut group, id) = deadline,
                    None => packed::remove(&mut group, id),
                }
            }
            if group.is_empty() {
                batch.remove(&timer_key[..]);
            } else {
                batch.insert(&timer_key[..], codec::encode(&group));
            }
        }
        Ok(())
    }

    /// The group holding packed actor `key`'s snapshot.
    fn packed_group(&self, key: ActorKey) -> Result<packed::Group<packed::Entry>> {
        packed::decode_group(self.snapshots.get(packed::group_of(key).prefix())?)
    }

    /// The persisted deadline of one actor.
    pub fn deadline(&self, key: ActorKey) -> Result<Option<u64>> {
        if self.packed.contains(key.kind) {
            let group: packed::Group<u64> =
                packed::decode_group(self.snapshots.get(timer_key(packed::group_of(key)))?)?;
            return Ok(packed::find(&group, key.id).copied());
        }
        Ok(self.snapshots.get(timer_key(key))?.and_then(|bytes| {
            let bytes: [u8; 8] = bytes.as_ref().try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        }))
    }

    /// Every persisted deadline (start-up re-arms them).
    pub fn deadlines(&self) -> Result<Vec<(ActorKey, u64)>> {
        let mut out = Vec::new();
        for item in self.snapshots.scan_prefix([TIMER_TAG]) {
            let (key, value) = item?;
            let key = ActorKey::from_prefix(&key[1..])
                .ok_or_else(|| Error::Store("timers: bad actor key".into()))?;
            if self.packed.contains(key.kind) {
                let group: packed::Group<u64> = codec::decode(&value)?;
                out.extend(
                    group
                        .into_iter()
                        .map(|(id, deadline)| (ActorKey::new(key.kind, id), deadline)),
                );
                continue;
            }
            let value: [u8; 8] = value
                .as_ref()
                .try_into()
                .map_err(|_| Error::Store("timers: bad deadline".into()))?;
            out.push((key, u64::from_be_bytes(value)));
        }
        Ok(out)
    }

    /// Makes every applied snapshot durable.
    pub fn flush(&self) -> Result<()> {
        let _writes = sled_writes();
        self.flush_locked()
    }

    /// sled's `flush` alone is not durable: it ends in `sync_file_range` (no fsync: neither the
    /// file's size nor the disk's cache), and sled never fsyncs its blob files (items over a
    /// quarter of a segment) or its directory. A power-cut test found every checkpoint lost
    /// that way. So: blobs and their directory first (a flushed log record may point at
    /// them), then sled's flush, then an fsync of its log file and directory.
    fn flush_locked(&self) -> Result<()> {
        injected(crate::failpoints::STORE_FLUSH)?;
        let synced = |what: &Path, result: std::io::Result<()>| {
            result.map_err(|error| Error::Store(format!("fsync of {}: {error}", what.display())))
        };
        let blobs = self.path.join("blobs");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            for entry in entries.flatten() {
                let path = entry.path();
                match File::open(&path).and_then(|file| file.sync_all()) {
                    // sled removed it meanwhile (its blob GC runs on its own threads).
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    result => synced(&path, result)?,
                }
            }
            synced(&blobs, sync_dir(&blobs))?;
        }
        self.db.flush()?;
        synced(&self.path, self.log_file.sync_all())?;
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
        assert_eq!(store.snapshots.len(), 5);
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
            store.snapshots.len(),
            4,
            "an emptied timer group is removed"
        );
        assert_eq!(store.snapshot_lsn_max(), 8);
    }

    #[test]
    fn open_waits_for_sled_to_release_a_lingering_lock() {
        let dir = tempfile::tempdir().unwrap();
        let lingering = sled::Config::new()
            .path(dir.path())
            .flush_every_ms(None)
            .open()
            .unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(lingering);
        });
        let store = Store::open(dir.path(), 1 << 20).expect("opens once the lock is released");
        assert_eq!(store.meta().unwrap().coverage_lsn, 0);
        release.join().unwrap();
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
            store.db.insert(META_KEY, codec::encode(&old)).unwrap();
            store.flush().unwrap();
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
