//! A power-cut file system for tests (the LazyFS idea, in memory, over FUSE with `fuser`).
//!
//! A [`PowerCutFs`] mounts an empty file system at a directory. Programs use it with ordinary
//! system calls; the file system keeps two states in memory: the *live* view that the kernel
//! and every program see, and the *durable* image, what a disk would still hold after the power
//! went. [`PowerCutFs::cut`] simulates the power cut: it unmounts, replaces the live view by the
//! durable image (plus, in [`CutMode::KeepSubset`], a seeded random subset of the unsynced
//! pages), and mounts again. Used by `net/tests/powercut.rs` to run the real server on it.
//!
//! # What is durable when
//!
//! 1. **Data.** `write` (and `truncate`/`ftruncate`, and `fallocate` mode 0) changes only the
//!    live view. `fsync` or `fdatasync` of a file makes its whole content and size durable
//!    (the two are treated alike; fdatasync persists the size too, as it must when it changed).
//!    `close`, `sync_file_range`, `msync` and `syncfs`/`sync` make nothing durable: the first
//!    reaches the file system as a flush that means nothing here, the others never reach a FUSE
//!    file system without the writeback cache.
//! 2. **Names.** `create`, `mkdir`, `unlink`, `rmdir` and `rename` change only the live view.
//!    `fsync` of a directory makes its entries durable exactly as they are at that moment; a
//!    child that was not durable before enters the image *empty* (a file of size 0, a directory
//!    without entries), its data still waiting for its own fsync.
//! 3. **The one ext4-like exception.** Syncing a file or directory that is not yet in the
//!    durable image also makes its current name durable, and the names of any ancestors that
//!    were not durable either (ext4 does this for a new inode, through its journal or
//!    `ext4_sync_parent`). So "create, write, fsync" survives without an fsync of the
//!    directory, but a rename or unlink of a name that is already durable does not.
//! 4. **A cut.** [`CutMode::DropAll`]: the durable image, nothing else. [`CutMode::KeepSubset`]:
//!    the durable image plus each unsynced page (4 KiB, [`PAGE_BYTES`]) of each surviving file
//!    with probability 1/2, in any combination (a later page can survive where an earlier one
//!    is lost), and each file whose live size differs from its durable size takes one or the
//!    other (a seeded coin; pages past the size it ends with are cut off). A seed and a
//!    pre-cut state give one outcome: the same seed on the same state replays the same cut.
//!
//! Stricter than ext4 (data=ordered), on purpose: ext4 commits every earlier namespace change
//! (renames, unlinks) with the next fsync of *any* file, and writes back dirty pages of a file
//! whose size it commits; here a rename or unlink needs an fsync of its own directory, and
//! pages and size are chosen independently. Less strict than a real disk: metadata changes
//! that were not synced are always lost, never kept in part; times, permissions and extended
//! attributes are not part of the durable image (permissions come back as they were when the
//! node entered the image); there are no hard links, symlinks or special files; there is no
//! permission checking. fsync never fails here (I/O errors are the failpoints' business).
//!
//! # Kernel caches
//!
//! The session runs without the writeback cache, so a `write(2)` returns only after the model
//! applied it, and a cut is always between two requests. Attributes and entries have a zero
//! TTL. A cut unmounts first and mounts again after, so no page or dentry cache survives it.
//! `flock` and POSIX locks are left to the kernel (local to this machine, which is all a test
//! needs). Mounting uses the `mount(2)` system call, so it needs root (or `CAP_SYS_ADMIN`) and
//! `/dev/fuse`; no libfuse or `fusermount3` is involved.
//!
//! # Layout
//!
//! - `lib.rs`: [`PowerCutFs`], the handle a test holds (mount, cut, unmount, counters).
//! - `model.rs`: the two states and the rules above, pure and unit-tested.
//! - `fs.rs`: the `fuser::Filesystem` that turns kernel requests into model calls.

mod fs;
mod model;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use model::{CutMode, CutReport, FileCut, Stats, PAGE_BYTES};

use fs::{lock, PowerCutFilesystem};
use model::Model;

/// How long an unmount retries while the mount point is busy (a process that was just killed
/// may still be releasing its files).
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(10);
const UNMOUNT_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// A mounted (or, between [`PowerCutFs::unmount`] and [`PowerCutFs::remount`], unmounted)
/// power-cut file system. Dropping it unmounts; the contents are lost with it.
pub struct PowerCutFs {
    model: Arc<Mutex<Model>>,
    mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl PowerCutFs {
    /// Mounts a new, empty file system on `mountpoint` (an existing directory), served by a
    /// background thread.
    pub fn mount(mountpoint: impl AsRef<Path>) -> io::Result<PowerCutFs> {
        let mut fs = PowerCutFs {
            model: Arc::new(Mutex::new(Model::new())),
            mountpoint: mountpoint.as_ref().to_path_buf(),
            session: None,
        };
        fs.remount()?;
        Ok(fs)
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    pub fn is_mounted(&self) -> bool {
        self.session.is_some()
    }

    /// Mounts the current live view again (no-op when mounted).
    pub fn remount(&mut self) -> io::Result<()> {
        if self.session.is_some() {
            return Ok(());
        }
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("switchyard-powercut".to_string()),
            fuser::MountOption::Subtype("powercut".to_string()),
            fuser::MountOption::NoAtime,
        ];
        let filesystem = PowerCutFilesystem::new(Arc::clone(&self.model));
        let session =
            fuser::spawn_mount(filesystem, &self.mountpoint, &config).map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!(
                    "mounting the power-cut file system on {} (needs root and /dev/fuse): {error}",
                    self.mountpoint.display()
                ),
                )
            })?;
        self.session = Some(session);
        Ok(())
    }

    /// Unmounts (no-op when not mounted) and waits for the session thread to end. Every process
    /// using the mount must have closed its files; a busy mount is retried for a while.
    pub fn unmount(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let path = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the mount point"))?;
        let deadline = Instant::now() + UNMOUNT_TIMEOUT;
        loop {
            // SAFETY: umount reads a NUL-terminated path that outlives the call.
            if unsafe { libc::umount(path.as_ptr()) } == 0 {
                break;
            }
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline {
                std::thread::sleep(UNMOUNT_RETRY_INTERVAL);
                continue;
            }
            self.session = Some(session);
            return Err(io::Error::new(
                error.kind(),
                format!("unmounting {}: {error}", self.mountpoint.display()),
            ));
        }
        // The kernel ends the connection, so the session thread returns. (Not
        // `umount_and_join`: fuser would try a second umount, which fails with EINVAL; dropping
        // the session's own mount handle afterwards only logs that.)
        session.join()
    }

    /// The instant of the power cut: from now on every request fails with EIO and changes
    /// nothing, as if the disk were gone, so the state that [`PowerCutFs::cut`] works from is
    /// the one of this instant, whatever the processes on the mount still try (a write or fsync
    /// in flight either happened before this or not at all). Kill them, then `cut`.
    pub fn power_off(&self) {
        lock(&self.model).powered = false;
    }

    /// Makes every fsync/fdatasync/fsyncdir take `delay` before it applies, like a disk's flush
    /// latency (zero by default). It widens the window in which written data is not yet durable,
    /// so a [`PowerCutFs::power_off`] at a random moment often lands inside one, and it lets group
    /// commit gather batches of several pages, as on a real disk.
    pub fn set_sync_delay(&self, delay: Duration) {
        lock(&self.model).sync_delay = delay;
    }

    pub fn is_powered(&self) -> bool {
        lock(&self.model).powered
    }

    /// Simulates a power cut: unmounts, keeps the durable image (plus, in `KeepSubset`, a subset
    /// of the unsynced pages chosen by `seed`), and mounts again, powered. Every process using
    /// the mount must be gone (killed and reaped) before. Without a [`PowerCutFs::power_off`]
    /// first, the cut is at the moment of the unmount.
    pub fn cut(&mut self, seed: u64, mode: CutMode) -> io::Result<CutReport> {
        self.unmount()?;
        let report = lock(&self.model).cut(seed, mode);
        self.remount()?;
        Ok(report)
    }

    /// Counters since the file system was created.
    pub fn stats(&self) -> Stats {
        lock(&self.model).stats.clone()
    }
}

impl Drop for PowerCutFs {
    fn drop(&mut self) {
        if let Err(error) = self.unmount() {
            eprintln!("switchyard-powercut: {error}");
        }
    }
}
