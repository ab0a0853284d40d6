//! The FUSE side: `fuser::Filesystem` over the shared [`Model`]. Each request takes the model's
//! lock, so requests apply one at a time in the order the kernel sends them.
//!
//! Attributes and entries are answered with a zero TTL and files are opened without
//! `FOPEN_KEEP_CACHE`, and the session never asks for the writeback cache: every `write(2)`
//! reaches the model before it returns, so the model's live view is what the kernel has.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Content, Ino, Model, Node, PAGE_BYTES};

/// The model for a request, or an EIO reply (and return) after a power-off.
macro_rules! model_or_reply {
    ($self:ident, $reply:ident) => {
        match $self.model() {
            Some(model) => model,
            None => {
                $reply.error(Errno::EIO);
                return;
            }
        }
    };
}

/// Attributes and names are never cached by the kernel.
const TTL: Duration = Duration::ZERO;
/// What `statfs` reports: room enough for any test (the model lives in memory).
const STATFS_BLOCKS: u64 = 1 << 26;
const STATFS_FILES: u64 = 1 << 24;
const NAME_BYTES_MAX: u32 = 255;

pub(crate) struct PowerCutFilesystem {
    model: Arc<Mutex<Model>>,
    uid: u32,
    gid: u32,
    next_handle: AtomicU64,
}

impl PowerCutFilesystem {
    pub(crate) fn new(model: Arc<Mutex<Model>>) -> PowerCutFilesystem {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        PowerCutFilesystem {
            model,
            uid,
            gid,
            next_handle: AtomicU64::new(1),
        }
    }

    /// The model, or `None` after a power-off: then every request fails with EIO and changes
    /// nothing.
    fn model(&self) -> Option<MutexGuard<'_, Model>> {
        Some(lock(&self.model)).filter(|model| model.powered)
    }

    /// Sleeps for the configured sync latency, without holding the model (a power-off can land
    /// meanwhile; the sync then fails). One session thread serves every request, so the wait
    /// also holds back later requests, like a disk queue.
    fn wait_for_the_disk(&self) {
        let delay = lock(&self.model).sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }

    fn handle(&self) -> FileHandle {
        FileHandle(self.next_handle.fetch_add(1, Ordering::Relaxed))
    }

    fn attr(&self, ino: Ino, node: &Node) -> FileAttr {
        let size = node.size();
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.atime,
            mtime: node.mtime,
            ctime: node.ctime,
            crtime: node.ctime,
            kind: if node.is_dir() {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: node.perm,
            nlink: if node.is_dir() {
                2
            } else {
                u32::from(node.parent.is_some())
            },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: PAGE_BYTES as u32,
            flags: 0,
        }
    }

    fn reply_attr(&self, model: &Model, ino: Ino, reply: ReplyAttr) {
        match model.node(ino) {
            Ok(node) => reply.attr(&TTL, &self.attr(ino, node)),
            Err(errno) => reply.error(Errno::from_i32(errno)),
        }
    }

    fn reply_entry(&self, model: &Model, ino: Ino, reply: ReplyEntry) {
        match model.node(ino) {
            Ok(node) => reply.entry(&TTL, &self.attr(ino, node), Generation(0)),
            Err(errno) => reply.error(Errno::from_i32(errno)),
        }
    }

    fn make(&self, parent: INodeNo, name: &OsStr, dir: bool, mode: u32, reply: ReplyEntry) {
        let mut model = model_or_reply!(self, reply);
        match model.create(parent.0, name, dir, (mode & 0o7777) as u16) {
            Ok(ino) => self.reply_entry(&model, ino, reply),
            Err(errno) => reply.error(Errno::from_i32(errno)),
        }
    }
}

/// The model's data stays consistent if a request panicked (each one is applied whole or not
/// at all up to its first error), so a poisoned lock is taken as is.
pub(crate) fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(PoisonError::into_inner)
}

fn empty(reply: ReplyEmpty, result: Result<(), i32>) {
    match result {
        Ok(()) => reply.ok(),
        Err(errno) => reply.error(Errno::from_i32(errno)),
    }
}

fn time(value: TimeOrNow) -> SystemTime {
    match value {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for PowerCutFilesystem {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let model = model_or_reply!(self, reply);
        match model.lookup(parent.0, name) {
            Ok(ino) => self.reply_entry(&model, ino, reply),
            Err(errno) => reply.error(Errno::from_i32(errno)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let model = model_or_reply!(self, reply);
        self.reply_attr(&model, ino.0, reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut model = model_or_reply!(self, reply);
        let result = (|| {
            if let Some(size) = size {
                model.set_size(ino.0, size)?;
            }
            if let Some(mode) = mode {
                model.set_perm(ino.0, (mode & 0o7777) as u16)?;
            }
            if atime.is_some() || mtime.is_some() {
                model.set_times(ino.0, atime.map(time), mtime.map(time))?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => self.reply_attr(&model, ino.0, reply),
            Err(errno) => reply.error(Errno::from_i32(errno)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            // Only regular files and directories exist here.
            reply.error(Errno::EPERM);
            return;
        }
        self.make(parent, name, false, mode, reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.make(parent, name, true, mode, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = model_or_reply!(self, reply).remove(parent.0, name, false);
        empty(reply, result);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = model_or_reply!(self, reply).remove(parent.0, name, true);
        empty(reply, result);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let result =
            model_or_reply!(self, reply).rename(parent.0, name, new_parent.0, new_name, no_replace);
        empty(reply, result);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match model_or_reply!(self, reply).open(ino.0) {
            Ok(()) => reply.opened(self.handle(), FopenFlags::empty()),
            Err(errno) => reply.error(Errno::from_i32(errno)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match model_or_reply!(self, reply).read(ino.0, offset, u64::from(size)) {
            Ok(bytes) => reply.data(&bytes),
            Err(errno) => reply.error(Errno::from_i32(errno)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match model_or_reply!(self, reply).write(ino.0, offset, data) {
            // A write request is at most `max_write` (well under 4 GiB).
            Ok(()) => reply.written(data.len() as u32),
            Err(errno) => reply.error(Errno::from_i32(errno)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(mut model) = self.model() {
            model.release(ino.0);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fdatasync and fsync alike: data and size (which fdatasync must also persist when it
        // changed); this model keeps no other metadata durable.
        self.wait_for_the_disk();
        let result = model_or_reply!(self, reply).sync_file(ino.0);
        empty(reply, result);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let model = model_or_reply!(self, reply);
        let listed = match model.list(ino.0) {
            Ok(listed) => listed,
            Err(errno) => {
                reply.error(Errno::from_i32(errno));
                return;
            }
        };
        let parent = model.node(ino.0).ok().and_then(|node| node.parent.clone());
        let mut entries = vec![
            (ino.0, FileType::Directory, OsStr::new(".").to_os_string()),
            (
                parent.map_or(ino.0, |(parent, _)| parent),
                FileType::Directory,
                OsStr::new("..").to_os_string(),
            ),
        ];
        entries.extend(listed.into_iter().map(|(name, child, dir)| {
            let kind = if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            (child, kind, name)
        }));
        for (index, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), index as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.wait_for_the_disk();
        let result = model_or_reply!(self, reply).sync_dir(ino.0);
        empty(reply, result);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(
            STATFS_BLOCKS,
            STATFS_BLOCKS,
            STATFS_BLOCKS,
            STATFS_FILES,
            STATFS_FILES,
            PAGE_BYTES as u32,
            NAME_BYTES_MAX,
            PAGE_BYTES as u32,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // No permission model: every caller may do everything (tests run as one user).
        let result = model_or_reply!(self, reply).node(ino.0).map(|_| ());
        empty(reply, result);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut model = model_or_reply!(self, reply);
        let created = model
            .create(parent.0, name, false, (mode & 0o7777) as u16)
            .and_then(|ino| model.open(ino).map(|()| ino));
        match created {
            Ok(ino) => {
                let attr = self.attr(ino, model.node(ino).expect("just created"));
                reply.created(
                    &TTL,
                    &attr,
                    Generation(0),
                    self.handle(),
                    FopenFlags::empty(),
                );
            }
            Err(errno) => reply.error(Errno::from_i32(errno)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Mode 0 only (allocate, growing the size); the rest (keep size, punch hole, ...) is not
        // supported, which callers such as the WAL treat as "no preallocation".
        if mode != 0 {
            reply.error(Errno::EOPNOTSUPP);
            return;
        }
        let mut model = model_or_reply!(self, reply);
        let result = model.node(ino.0).and_then(|node| match &node.content {
            Content::File(data) => Ok(data.size()),
            Content::Dir(_) => Err(libc::EISDIR),
        });
        let result = result.and_then(|size| {
            let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
            if end > size {
                model.set_size(ino.0, end)?;
            }
            Ok(())
        });
        empty(reply, result);
    }
}
