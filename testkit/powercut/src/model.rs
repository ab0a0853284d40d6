//! The in-memory file system behind the mount: the *live* view the kernel sees and the *durable*
//! image a power cut falls back to, and the rules that move state from one to the other (see the
//! crate doc for the rules themselves). Pure data, no FUSE: `fs.rs` translates requests into
//! calls here, and the unit tests below drive it directly.
//!
//! Invariant: for an inode present in both views, every page not in the live node's
//! `dirty_pages` is identical in both (they share the same `Arc`). For an inode only in the live
//! view, `dirty_pages` holds every page written since it was created. So the unsynced data of a
//! file is exactly its dirty pages plus a size that differs.
//! Invariant: in a `FileData`, no page lies wholly at or past `size`, and the bytes of the last
//! page past `size` are zero, so growing a file always reveals zeros.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::SystemTime;

use rand::{RngExt, SeedableRng};

/// Granularity of unsynced data: a cut keeps or drops whole pages.
pub const PAGE_BYTES: u64 = 4096;

pub(crate) type Ino = u64;
pub(crate) const ROOT_INO: Ino = 1;

type Page = Arc<[u8; PAGE_BYTES as usize]>;

/// The contents of a regular file: a size and the non-zero pages (a missing page reads as zeros).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileData {
    size: u64,
    pages: BTreeMap<u64, Page>,
}

fn page_count(size: u64) -> u64 {
    size.div_ceil(PAGE_BYTES)
}

impl FileData {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Up to `length` bytes from `offset`, short at the end of the file.
    pub(crate) fn read(&self, offset: u64, length: u64) -> Vec<u8> {
        let end = offset.saturating_add(length).min(self.size);
        if offset >= end {
            return Vec::new();
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let mut at = offset;
        while at < end {
            let index = at / PAGE_BYTES;
            let within = (at % PAGE_BYTES) as usize;
            let n = ((PAGE_BYTES - within as u64).min(end - at)) as usize;
            if let Some(page) = self.pages.get(&index) {
                let start = (at - offset) as usize;
                out[start..start + n].copy_from_slice(&page[within..within + n]);
            }
            at += n as u64;
        }
        out
    }

    /// Writes `bytes` at `offset` (growing the file as needed) and adds the touched pages to
    /// `dirty`.
    pub(crate) fn write(&mut self, offset: u64, bytes: &[u8], dirty: &mut BTreeSet<u64>) {
        let mut at = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let index = at / PAGE_BYTES;
            let within = (at % PAGE_BYTES) as usize;
            let n = (PAGE_BYTES as usize - within).min(rest.len());
            let page = self
                .pages
                .entry(index)
                .or_insert_with(|| Arc::new([0u8; PAGE_BYTES as usize]));
            Arc::make_mut(page)[within..within + n].copy_from_slice(&rest[..n]);
            dirty.insert(index);
            at += n as u64;
            rest = &rest[n..];
        }
        self.size = self.size.max(offset + bytes.len() as u64);
    }

    /// Sets the size. Shrinking drops the pages past the end and zeroes the tail of the new last
    /// page; every page that changed goes into `dirty`. Growing reveals zeros.
    pub(crate) fn set_size(&mut self, size: u64, dirty: &mut BTreeSet<u64>) {
        if size < self.size {
            let kept_pages = page_count(size);
            let removed: Vec<u64> = self.pages.range(kept_pages..).map(|(i, _)| *i).collect();
            for index in removed {
                self.pages.remove(&index);
                dirty.insert(index);
            }
            let within = (size % PAGE_BYTES) as usize;
            if within != 0 {
                let index = size / PAGE_BYTES;
                if let Some(page) = self.pages.get_mut(&index) {
                    Arc::make_mut(page)[within..].fill(0);
                    dirty.insert(index);
                }
            }
        }
        self.size = size;
    }

    /// Drops pages past `size` and zeroes the tail of the last one (after pages were copied in
    /// from another view).
    fn clip(&mut self) {
        let mut ignored = BTreeSet::new();
        let size = self.size;
        self.size = u64::MAX;
        self.set_size(size, &mut ignored);
    }

    /// Copies page `index` from `from` (or its absence).
    fn copy_page(&mut self, from: &FileData, index: u64) {
        match from.pages.get(&index) {
            Some(page) => {
                self.pages.insert(index, Arc::clone(page));
            }
            None => {
                self.pages.remove(&index);
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Content {
    File(FileData),
    Dir(BTreeMap<OsString, Ino>),
}

/// A node of the durable image.
#[derive(Clone, Debug)]
struct DurableNode {
    content: Content,
    perm: u16,
}

/// A node of the live view.
#[derive(Debug)]
pub(crate) struct Node {
    pub content: Content,
    pub perm: u16,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// The entry that names it; `None` for the root and for an unlinked file still open.
    pub parent: Option<(Ino, OsString)>,
    /// Open handles (a file unlinked while open lives until the last release).
    pub open_count: u64,
    /// Pages written or truncated since the last sync (see the module invariant).
    dirty_pages: BTreeSet<u64>,
}

impl Node {
    fn new(content: Content, perm: u16, parent: Option<(Ino, OsString)>) -> Node {
        let now = SystemTime::now();
        Node {
            content,
            perm,
            atime: now,
            mtime: now,
            ctime: now,
            parent,
            open_count: 0,
            dirty_pages: BTreeSet::new(),
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir(_))
    }

    pub(crate) fn size(&self) -> u64 {
        match &self.content {
            Content::File(data) => data.size(),
            Content::Dir(entries) => entries.len() as u64,
        }
    }
}

/// What a simulated power cut keeps of the data that was written but not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CutMode {
    /// Nothing: the durable image alone survives.
    DropAll,
    /// A seeded random subset of the unsynced pages (each kept with probability 1/2), and for
    /// each file either its synced or its live size (a seeded coin), like a page cache that
    /// wrote back some pages, in any order, before the power went.
    KeepSubset,
}

impl std::fmt::Display for CutMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CutMode::DropAll => "drop-all",
            CutMode::KeepSubset => "keep-subset",
        })
    }
}

/// What one cut did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutReport {
    pub seed: u64,
    pub mode: CutMode,
    /// Unsynced pages lost.
    pub pages_dropped: u64,
    /// Unsynced pages that made it into the image (`KeepSubset` only).
    pub pages_kept: u64,
    /// Files whose size after the cut is not their size before it.
    pub files_resized: u64,
    /// Files and directories that existed before the cut and not after it.
    pub nodes_lost: u64,
    /// Each file that had unsynced data or size, in inode order.
    pub files: Vec<FileCut>,
}

/// What a cut did to one file with unsynced data or size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCut {
    /// Its path in the live view before the cut (relative to the mount point, `/`-separated;
    /// `?` for an unlinked file still open).
    pub path: String,
    /// False when its name was not durable: it is gone whole.
    pub survived: bool,
    pub pages_dropped: u64,
    pub pages_kept: u64,
    pub size_before: u64,
    /// 0 when it did not survive.
    pub size_after: u64,
}

/// Totals since the file system was created (across cuts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes passed to write.
    pub bytes_written: u64,
    /// Write requests.
    pub writes: u64,
    /// fsync and fdatasync requests on files.
    pub file_syncs: u64,
    /// fsync requests on directories.
    pub dir_syncs: u64,
    /// Cuts done.
    pub cuts: u64,
    /// The last cut, if any.
    pub last_cut: Option<CutReport>,
}

/// The cut's generator: rand's xoshiro256++, a named portable generator (the same sequence for
/// a seed on every machine and within a rand minor version), so a cut replays from its seed.
type CutRng = rand::rngs::Xoshiro256PlusPlus;

pub(crate) type Result<T> = std::result::Result<T, i32>;

pub(crate) struct Model {
    live: BTreeMap<Ino, Node>,
    durable: BTreeMap<Ino, DurableNode>,
    next_ino: Ino,
    pub stats: Stats,
    /// False between a power-off and the cut: the FUSE side then fails every request with EIO
    /// and changes nothing.
    pub powered: bool,
    /// How long an fsync takes (the FUSE side sleeps this long before applying it).
    pub sync_delay: std::time::Duration,
}

impl Model {
    /// An empty file system: a root directory, durable.
    pub(crate) fn new() -> Model {
        let mut model = Model {
            live: BTreeMap::new(),
            durable: BTreeMap::new(),
            next_ino: ROOT_INO + 1,
            stats: Stats::default(),
            powered: true,
            sync_delay: std::time::Duration::ZERO,
        };
        let root = Node::new(Content::Dir(BTreeMap::new()), 0o755, None);
        model.durable.insert(
            ROOT_INO,
            DurableNode {
                content: root.content.clone(),
                perm: root.perm,
            },
        );
        model.live.insert(ROOT_INO, root);
        model
    }

    pub(crate) fn node(&self, ino: Ino) -> Result<&Node> {
        self.live.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node> {
        self.live.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn entries(&self, dir: Ino) -> Result<&BTreeMap<OsString, Ino>> {
        match &self.node(dir)?.content {
            Content::Dir(entries) => Ok(entries),
            Content::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> Result<&mut BTreeMap<OsString, Ino>> {
        match &mut self.node_mut(dir)?.content {
            Content::Dir(entries) => Ok(entries),
            Content::File(_) => Err(libc::ENOTDIR),
        }
    }

    pub(crate) fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino> {
        self.entries(parent)?.get(name).copied().ok_or(libc::ENOENT)
    }

    /// The live entries of a directory, in name order.
    pub(crate) fn list(&self, dir: Ino) -> Result<Vec<(OsString, Ino, bool)>> {
        Ok(self
            .entries(dir)?
            .iter()
            .map(|(name, ino)| (name.clone(), *ino, self.live[ino].is_dir()))
            .collect())
    }

    /// Creates a file or directory named `name` in `parent`.
    pub(crate) fn create(
        &mut self,
        parent: Ino,
        name: &OsStr,
        dir: bool,
        perm: u16,
    ) -> Result<Ino> {
        if name.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let content = if dir {
            Content::Dir(BTreeMap::new())
        } else {
            Content::File(FileData::default())
        };
        self.live.insert(
            ino,
            Node::new(content, perm, Some((parent, name.to_os_string()))),
        );
        self.entries_mut(parent)?.insert(name.to_os_string(), ino);
        self.touch(parent);
        Ok(ino)
    }

    fn touch(&mut self, ino: Ino) {
        if let Some(node) = self.live.get_mut(&ino) {
            let now = SystemTime::now();
            node.mtime = now;
            node.ctime = now;
        }
    }

    /// Removes the entry `name` of `parent` (a file, or an empty directory when `dir`).
    pub(crate) fn remove(&mut self, parent: Ino, name: &OsStr, dir: bool) -> Result<()> {
        let ino = self.lookup(parent, name)?;
        let node = self.node(ino)?;
        match (&node.content, dir) {
            (Content::Dir(entries), true) if !entries.is_empty() => return Err(libc::ENOTEMPTY),
            (Content::Dir(_), false) => return Err(libc::EISDIR),
            (Content::File(_), true) => return Err(libc::ENOTDIR),
            _ => {}
        }
        self.entries_mut(parent)?.remove(name);
        self.touch(parent);
        self.unlinked(ino);
        Ok(())
    }

    /// `ino` lost its name: it goes when no handle holds it.
    fn unlinked(&mut self, ino: Ino) {
        if let Some(node) = self.live.get_mut(&ino) {
            node.parent = None;
            if node.open_count == 0 {
                self.live.remove(&ino);
            }
        }
    }

    pub(crate) fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<()> {
        if new_name.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        let ino = self.lookup(parent, name)?;
        self.entries(new_parent)?;
        let moving_dir = self.node(ino)?.is_dir();
        if moving_dir {
            // A directory cannot move below itself.
            let mut at = Some(new_parent);
            while let Some(current) = at {
                if current == ino {
                    return Err(libc::EINVAL);
                }
                at = self.live[&current].parent.as_ref().map(|(p, _)| *p);
            }
        }
        if let Ok(existing) = self.lookup(new_parent, new_name) {
            if existing == ino {
                return Ok(());
            }
            if no_replace {
                return Err(libc::EEXIST);
            }
            match (&self.node(existing)?.content, moving_dir) {
                (Content::Dir(entries), true) if !entries.is_empty() => {
                    return Err(libc::ENOTEMPTY)
                }
                (Content::Dir(_), false) => return Err(libc::EISDIR),
                (Content::File(_), true) => return Err(libc::ENOTDIR),
                _ => {}
            }
            self.entries_mut(new_parent)?.remove(new_name);
            self.unlinked(existing);
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?
            .insert(new_name.to_os_string(), ino);
        self.node_mut(ino)?.parent = Some((new_parent, new_name.to_os_string()));
        self.touch(parent);
        self.touch(new_parent);
        Ok(())
    }

    pub(crate) fn open(&mut self, ino: Ino) -> Result<()> {
        self.node_mut(ino)?.open_count += 1;
        Ok(())
    }

    pub(crate) fn release(&mut self, ino: Ino) {
        if let Some(node) = self.live.get_mut(&ino) {
            node.open_count = node.open_count.saturating_sub(1);
            if node.open_count == 0 && node.parent.is_none() && ino != ROOT_INO {
                self.live.remove(&ino);
            }
        }
    }

    pub(crate) fn read(&mut self, ino: Ino, offset: u64, length: u64) -> Result<Vec<u8>> {
        let node = self.node_mut(ino)?;
        match &node.content {
            Content::File(data) => Ok(data.read(offset, length)),
            Content::Dir(_) => Err(libc::EISDIR),
        }
    }

    pub(crate) fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> Result<()> {
        offset
            .checked_add(bytes.len() as u64)
            .filter(|end| *end <= i64::MAX as u64)
            .ok_or(libc::EFBIG)?;
        let node = self.live.get_mut(&ino).ok_or(libc::ENOENT)?;
        let Content::File(data) = &mut node.content else {
            return Err(libc::EISDIR);
        };
        data.write(offset, bytes, &mut node.dirty_pages);
        let now = SystemTime::now();
        node.mtime = now;
        node.ctime = now;
        self.stats.writes += 1;
        self.stats.bytes_written += bytes.len() as u64;
        Ok(())
    }

    pub(crate) fn set_size(&mut self, ino: Ino, size: u64) -> Result<()> {
        if size > i64::MAX as u64 {
            return Err(libc::EFBIG);
        }
        let node = self.live.get_mut(&ino).ok_or(libc::ENOENT)?;
        let Content::File(data) = &mut node.content else {
            return Err(libc::EISDIR);
        };
        data.set_size(size, &mut node.dirty_pages);
        let now = SystemTime::now();
        node.mtime = now;
        node.ctime = now;
        Ok(())
    }

    pub(crate) fn set_perm(&mut self, ino: Ino, perm: u16) -> Result<()> {
        let node = self.node_mut(ino)?;
        node.perm = perm;
        node.ctime = SystemTime::now();
        Ok(())
    }

    pub(crate) fn set_times(
        &mut self,
        ino: Ino,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<()> {
        let node = self.node_mut(ino)?;
        if let Some(atime) = atime {
            node.atime = atime;
        }
        if let Some(mtime) = mtime {
            node.mtime = mtime;
        }
        node.ctime = SystemTime::now();
        Ok(())
    }

    /// fsync/fdatasync of a file: its data and size become durable, and so does its name if the
    /// file is not yet in the durable image (see [`Model::persist_new_name`]).
    pub(crate) fn sync_file(&mut self, ino: Ino) -> Result<()> {
        self.stats.file_syncs += 1;
        let node = self.live.get_mut(&ino).ok_or(libc::ENOENT)?;
        let Content::File(live) = &node.content else {
            return Err(libc::EISDIR);
        };
        let dirty = std::mem::take(&mut node.dirty_pages);
        let perm = node.perm;
        let was_durable = self.durable.contains_key(&ino);
        let durable = self.durable.entry(ino).or_insert_with(|| DurableNode {
            content: Content::File(FileData::default()),
            perm,
        });
        let Content::File(image) = &mut durable.content else {
            unreachable!("an inode number is never reused for another kind");
        };
        for index in dirty {
            image.copy_page(live, index);
        }
        image.size = live.size;
        image.clip();
        debug_assert_eq!(image, live, "a synced file equals its live view");
        if !was_durable {
            self.persist_new_name(ino);
        }
        Ok(())
    }

    /// fsync of a directory: its entries become durable as they are now. A child that is not yet
    /// durable enters the image empty (a file of size 0, a directory without entries); its data
    /// stays unsynced until it is synced itself.
    pub(crate) fn sync_dir(&mut self, ino: Ino) -> Result<()> {
        self.stats.dir_syncs += 1;
        let entries = self.entries(ino)?.clone();
        for child in entries.values() {
            let child_node = &self.live[child];
            let perm = child_node.perm;
            let empty = match &child_node.content {
                Content::File(_) => Content::File(FileData::default()),
                Content::Dir(_) => Content::Dir(BTreeMap::new()),
            };
            let fresh = !self.durable.contains_key(child);
            self.durable.entry(*child).or_insert(DurableNode {
                content: empty,
                perm,
            });
            if fresh {
                // Everything it holds is now unsynced relative to the empty durable file.
                let node = self.live.get_mut(child).expect("listed child is live");
                if let Content::File(data) = &node.content {
                    node.dirty_pages.extend(data.pages.keys().copied());
                }
            }
        }
        let perm = self.live[&ino].perm;
        let was_durable = self.durable.contains_key(&ino);
        self.durable.insert(
            ino,
            DurableNode {
                content: Content::Dir(entries),
                perm,
            },
        );
        if !was_durable {
            self.persist_new_name(ino);
        }
        Ok(())
    }

    /// The ext4-like rule, for a node that was not in the durable image before this sync: its
    /// current name becomes durable, and so do the names of its ancestors that were not durable
    /// either (such a directory enters the image with just that entry). Renames and unlinks of
    /// names that are already durable still need an fsync of their directory.
    fn persist_new_name(&mut self, ino: Ino) {
        let mut child = ino;
        while let Some((parent, name)) = self.live.get(&child).and_then(|n| n.parent.clone()) {
            let parent_was_durable = self.durable.contains_key(&parent);
            let perm = self.live[&parent].perm;
            let durable = self.durable.entry(parent).or_insert_with(|| DurableNode {
                content: Content::Dir(BTreeMap::new()),
                perm,
            });
            let Content::Dir(entries) = &mut durable.content else {
                unreachable!("a parent is a directory");
            };
            entries.insert(name, child);
            if parent_was_durable {
                return;
            }
            child = parent;
        }
    }

    /// `a/b/c` for a live node (`?` where a node on the way has no name).
    fn live_path(&self, ino: Ino) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            match self.live.get(&at).and_then(|node| node.parent.as_ref()) {
                Some((parent, name)) => {
                    parts.push(name.to_string_lossy().into_owned());
                    at = *parent;
                }
                None => {
                    parts.push("?".to_string());
                    break;
                }
            }
        }
        parts.reverse();
        parts.join("/")
    }

    /// The nodes reachable from the root of the durable image, each with the entry that names it.
    fn durable_reachable(&self) -> BTreeMap<Ino, Option<(Ino, OsString)>> {
        let mut reached = BTreeMap::new();
        let mut stack = vec![(ROOT_INO, None)];
        while let Some((ino, parent)) = stack.pop() {
            if reached.contains_key(&ino) {
                continue; // a node linked twice (renamed without syncing the old directory)
            }
            reached.insert(ino, parent);
            if let Some(DurableNode {
                content: Content::Dir(entries),
                ..
            }) = self.durable.get(&ino)
            {
                for (name, child) in entries {
                    if self.durable.contains_key(child) {
                        stack.push((*child, Some((ino, name.clone()))));
                    }
                }
            }
        }
        reached
    }

    /// The power cut: the live view becomes the durable image, plus (in `KeepSubset`) a seeded
    /// subset of the unsynced pages. Only call this while nothing is mounted.
    pub(crate) fn cut(&mut self, seed: u64, mode: CutMode) -> CutReport {
        let mut rng = CutRng::seed_from_u64(seed);
        let mut report = CutReport {
            seed,
            mode,
            pages_dropped: 0,
            pages_kept: 0,
            files_resized: 0,
            nodes_lost: 0,
            files: Vec::new(),
        };
        let reachable = self.durable_reachable();
        let paths: BTreeMap<Ino, String> = self
            .live
            .keys()
            .map(|ino| (*ino, self.live_path(*ino)))
            .collect();
        // Unsynced data of files that survive, in inode order so a seed replays.
        for (ino, node) in &self.live {
            let Content::File(live) = &node.content else {
                continue;
            };
            let durable = self
                .durable
                .get_mut(ino)
                .filter(|_| reachable.contains_key(ino));
            let unsynced_size = durable
                .as_ref()
                .is_none_or(|durable| match &durable.content {
                    Content::File(image) => image.size != live.size,
                    Content::Dir(_) => true,
                });
            if node.dirty_pages.is_empty() && !unsynced_size {
                continue;
            }
            let mut file = FileCut {
                path: paths[ino].clone(),
                survived: false,
                pages_dropped: 0,
                pages_kept: 0,
                size_before: live.size,
                size_after: 0,
            };
            let Some(DurableNode {
                content: Content::File(image),
                ..
            }) = durable
            else {
                file.pages_dropped = node.dirty_pages.len() as u64;
                report.pages_dropped += file.pages_dropped;
                report.files.push(file);
                continue;
            };
            file.survived = true;
            match mode {
                CutMode::DropAll => file.pages_dropped = node.dirty_pages.len() as u64,
                CutMode::KeepSubset => {
                    for index in &node.dirty_pages {
                        if rng.random::<bool>() {
                            image.copy_page(live, *index);
                            file.pages_kept += 1;
                        } else {
                            file.pages_dropped += 1;
                        }
                    }
                    if image.size != live.size && rng.random::<bool>() {
                        image.size = live.size;
                    }
                    image.clip();
                }
            }
            file.size_after = image.size;
            if image.size != live.size {
                report.files_resized += 1;
            }
            report.pages_dropped += file.pages_dropped;
            report.pages_kept += file.pages_kept;
            report.files.push(file);
        }
        let before: BTreeSet<Ino> = self.live.keys().copied().collect();
        self.durable.retain(|ino, _| reachable.contains_key(ino));
        self.live = self
            .durable
            .iter()
            .map(|(ino, durable)| {
                let parent = reachable[ino].clone();
                (
                    *ino,
                    Node::new(durable.content.clone(), durable.perm, parent),
                )
            })
            .collect();
        report.nodes_lost = before.iter().filter(|i| !self.live.contains_key(i)).count() as u64;
        self.stats.cuts += 1;
        self.stats.last_cut = Some(report.clone());
        self.powered = true;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(model: &mut Model, parent: Ino, name: &str) -> Ino {
        model
            .create(parent, OsStr::new(name), false, 0o644)
            .unwrap()
    }

    fn contents(model: &Model, parent: Ino, name: &str) -> Option<Vec<u8>> {
        let ino = model.lookup(parent, OsStr::new(name)).ok()?;
        let Content::File(data) = &model.node(ino).unwrap().content else {
            panic!("{name} is a directory");
        };
        Some(data.read(0, u64::MAX))
    }

    #[test]
    fn file_data_reads_what_was_written_with_zero_gaps() {
        let mut data = FileData::default();
        let mut dirty = BTreeSet::new();
        data.write(5000, b"abc", &mut dirty);
        assert_eq!(data.size(), 5003);
        assert_eq!(dirty, BTreeSet::from([1]));
        let read = data.read(0, 10_000);
        assert_eq!(read.len(), 5003);
        assert!(read[..5000].iter().all(|b| *b == 0));
        assert_eq!(&read[5000..], b"abc");
        data.write(4094, b"wxyz", &mut dirty);
        assert_eq!(dirty, BTreeSet::from([0, 1]));
        assert_eq!(data.read(4094, 4), b"wxyz");
        // Shrink into page 1, then grow: the cut-off bytes read as zeros.
        data.set_size(4097, &mut dirty);
        data.set_size(6000, &mut dirty);
        assert_eq!(data.read(4094, 4), b"wxy\0");
        assert_eq!(data.read(5000, 3), b"\0\0\0");
    }

    #[test]
    fn unsynced_writes_are_lost_and_synced_ones_kept() {
        let mut model = Model::new();
        let a = file(&mut model, ROOT_INO, "a");
        model.write(a, 0, b"synced").unwrap();
        model.sync_file(a).unwrap();
        model.write(a, 0, b"UNSYNC").unwrap();
        model.write(a, 8192, b"tail").unwrap();
        let report = model.cut(1, CutMode::DropAll);
        assert_eq!(contents(&model, ROOT_INO, "a").unwrap(), b"synced");
        assert_eq!(report.pages_dropped, 2);
        assert_eq!(report.files_resized, 1);
    }

    #[test]
    fn a_new_file_needs_a_sync_of_itself_or_of_its_directory() {
        let mut model = Model::new();
        let a = file(&mut model, ROOT_INO, "a");
        model.write(a, 0, b"a").unwrap();
        let b = file(&mut model, ROOT_INO, "b");
        model.write(b, 0, b"b").unwrap();
        model.sync_file(b).unwrap();
        let c = file(&mut model, ROOT_INO, "c");
        model.write(c, 0, b"c").unwrap();
        model.cut(1, CutMode::DropAll);
        assert_eq!(contents(&model, ROOT_INO, "a"), None);
        assert_eq!(contents(&model, ROOT_INO, "b").unwrap(), b"b");
        assert_eq!(contents(&model, ROOT_INO, "c"), None);
        // A directory sync keeps the name but not the unsynced data.
        let d = file(&mut model, ROOT_INO, "d");
        model.write(d, 0, b"d").unwrap();
        model.sync_dir(ROOT_INO).unwrap();
        model.cut(1, CutMode::DropAll);
        assert_eq!(contents(&model, ROOT_INO, "d").unwrap(), b"");
    }

    #[test]
    fn syncing_a_file_in_new_directories_persists_the_whole_path() {
        let mut model = Model::new();
        let x = model
            .create(ROOT_INO, OsStr::new("x"), true, 0o755)
            .unwrap();
        let y = model.create(x, OsStr::new("y"), true, 0o755).unwrap();
        let f = file(&mut model, y, "f");
        let g = file(&mut model, y, "g");
        model.write(f, 0, b"f").unwrap();
        model.write(g, 0, b"g").unwrap();
        model.sync_file(f).unwrap();
        model.cut(1, CutMode::DropAll);
        let x = model.lookup(ROOT_INO, OsStr::new("x")).unwrap();
        let y = model.lookup(x, OsStr::new("y")).unwrap();
        assert_eq!(contents(&model, y, "f").unwrap(), b"f");
        assert_eq!(contents(&model, y, "g"), None);
    }

    #[test]
    fn a_rename_needs_a_directory_sync() {
        let mut model = Model::new();
        let tmp = file(&mut model, ROOT_INO, "tmp");
        model.write(tmp, 0, b"new").unwrap();
        model.sync_file(tmp).unwrap();
        let old = file(&mut model, ROOT_INO, "target");
        model.write(old, 0, b"old").unwrap();
        model.sync_file(old).unwrap();
        model
            .rename(
                ROOT_INO,
                OsStr::new("tmp"),
                ROOT_INO,
                OsStr::new("target"),
                false,
            )
            .unwrap();
        assert_eq!(contents(&model, ROOT_INO, "target").unwrap(), b"new");
        assert_eq!(contents(&model, ROOT_INO, "tmp"), None);
        model.cut(1, CutMode::DropAll);
        assert_eq!(contents(&model, ROOT_INO, "target").unwrap(), b"old");
        assert_eq!(contents(&model, ROOT_INO, "tmp").unwrap(), b"new");
        model
            .rename(
                ROOT_INO,
                OsStr::new("tmp"),
                ROOT_INO,
                OsStr::new("target"),
                false,
            )
            .unwrap();
        model.sync_dir(ROOT_INO).unwrap();
        model.cut(1, CutMode::DropAll);
        assert_eq!(contents(&model, ROOT_INO, "target").unwrap(), b"new");
        assert_eq!(contents(&model, ROOT_INO, "tmp"), None);
    }

    #[test]
    fn an_unlink_needs_a_directory_sync_and_an_open_unlinked_file_lives_on() {
        let mut model = Model::new();
        let a = file(&mut model, ROOT_INO, "a");
        model.write(a, 0, b"a").unwrap();
        model.sync_file(a).unwrap();
        model.open(a).unwrap();
        model.remove(ROOT_INO, OsStr::new("a"), false).unwrap();
        assert_eq!(model.read(a, 0, 10).unwrap(), b"a");
        model.write(a, 0, b"b").unwrap();
        model.release(a);
        assert!(model.node(a).is_err());
        model.cut(1, CutMode::KeepSubset);
        assert_eq!(contents(&model, ROOT_INO, "a").unwrap(), b"a");
        model.remove(ROOT_INO, OsStr::new("a"), false).unwrap();
        model.sync_dir(ROOT_INO).unwrap();
        model.cut(1, CutMode::DropAll);
        assert_eq!(contents(&model, ROOT_INO, "a"), None);
    }

    #[test]
    fn keep_subset_keeps_some_pages_and_replays_from_its_seed() {
        let run = |seed: u64| {
            let mut model = Model::new();
            let a = file(&mut model, ROOT_INO, "a");
            model.write(a, 0, &vec![1u8; 64 * 4096]).unwrap();
            model.sync_file(a).unwrap();
            for page in 0..64u64 {
                model.write(a, page * 4096, &[2u8; 4096]).unwrap();
            }
            let report = model.cut(seed, CutMode::KeepSubset);
            (contents(&model, ROOT_INO, "a").unwrap(), report)
        };
        let (first, report) = run(7);
        assert_eq!(report.pages_kept + report.pages_dropped, 64);
        assert!(
            report.pages_kept > 0 && report.pages_dropped > 0,
            "{report:?}"
        );
        let kept_pages = first.chunks(4096).filter(|p| p[0] == 2).count() as u64;
        assert_eq!(kept_pages, report.pages_kept);
        assert_eq!(run(7).0, first);
        assert_ne!(run(8).0, first);
    }

    #[test]
    fn keep_subset_may_keep_a_later_page_without_an_earlier_one() {
        // Appends past the synced size: the size may or may not follow, and kept pages may
        // leave zero holes.
        let mut seen_hole = false;
        let mut seen_short = false;
        for seed in 0..64 {
            let mut model = Model::new();
            let a = file(&mut model, ROOT_INO, "a");
            model.write(a, 0, b"head").unwrap();
            model.sync_file(a).unwrap();
            model.write(a, 4096, &[3u8; 3 * 4096]).unwrap();
            model.cut(seed, CutMode::KeepSubset);
            let data = contents(&model, ROOT_INO, "a").unwrap();
            assert_eq!(&data[..4], b"head");
            if data.len() == 4 {
                seen_short = true;
            } else {
                assert_eq!(data.len(), 4 * 4096);
                let pages: Vec<bool> = data[4096..].chunks(4096).map(|p| p[0] == 3).collect();
                if pages.windows(2).any(|w| !w[0] && w[1]) {
                    seen_hole = true;
                }
            }
        }
        assert!(seen_hole && seen_short);
    }

    #[test]
    fn truncation_is_unsynced_until_synced() {
        let mut model = Model::new();
        let a = file(&mut model, ROOT_INO, "a");
        model.write(a, 0, &[9u8; 10_000]).unwrap();
        model.sync_file(a).unwrap();
        model.set_size(a, 100).unwrap();
        model.cut(1, CutMode::DropAll);
        assert_eq!(contents(&model, ROOT_INO, "a").unwrap(), vec![9u8; 10_000]);
        let a = model.lookup(ROOT_INO, OsStr::new("a")).unwrap();
        model.set_size(a, 100).unwrap();
        model.set_size(a, 8192).unwrap();
        model.sync_file(a).unwrap();
        model.cut(1, CutMode::DropAll);
        let data = contents(&model, ROOT_INO, "a").unwrap();
        assert_eq!(data.len(), 8192);
        assert!(data[..100].iter().all(|b| *b == 9));
        assert!(data[100..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_file_renamed_away_and_synced_keeps_its_old_durable_name() {
        let mut model = Model::new();
        let a = file(&mut model, ROOT_INO, "a");
        model.sync_file(a).unwrap();
        model
            .rename(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"), false)
            .unwrap();
        model.write(a, 0, b"data").unwrap();
        model.sync_file(a).unwrap();
        model.cut(1, CutMode::DropAll);
        assert_eq!(contents(&model, ROOT_INO, "a").unwrap(), b"data");
        assert_eq!(contents(&model, ROOT_INO, "b"), None);
    }
}
