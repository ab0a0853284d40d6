//! The power-cut file system through real system calls on a real mount: what survives a cut
//! (fsync'ed data, names synced per the crate's rules) and what does not (unsynced writes, new
//! names nobody synced, renames without a directory fsync), that `KeepSubset` replays from its
//! seed, and that the calls the server makes (pwrite at offsets, fallocate, ftruncate, flock,
//! rename over a file, readdir) work. Needs root and /dev/fuse, like the server's power-cut test.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use switchyard_powercut::{CutMode, PowerCutFs, PAGE_BYTES};

fn mounted() -> (tempfile::TempDir, PowerCutFs) {
    let dir = tempfile::tempdir().unwrap();
    let fs = PowerCutFs::mount(dir.path()).expect("mount (root and /dev/fuse needed)");
    (dir, fs)
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn read(path: &Path) -> Option<Vec<u8>> {
    match fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => panic!("reading {}: {error}", path.display()),
    }
}

#[test]
fn an_unsynced_write_is_gone_after_a_cut_and_a_synced_one_stays() {
    let (dir, mut fs) = mounted();
    let path = dir.path().join("data");
    let file = File::create(&path).unwrap();
    file.write_all_at(b"synced", 0).unwrap();
    file.sync_data().unwrap();
    file.write_all_at(b"lost", 6).unwrap();
    file.write_all_at(b"LOST", 0).unwrap();
    assert_eq!(read(&path).unwrap(), b"LOSTedlost");
    drop(file);
    let report = fs.cut(1, CutMode::DropAll).unwrap();
    assert_eq!(read(&path).unwrap(), b"synced");
    assert_eq!(report.pages_dropped, 1);
    assert_eq!(report.files_resized, 1);
    let stats = fs.stats();
    assert_eq!(stats.cuts, 1);
    assert!(
        stats.file_syncs >= 1 && stats.bytes_written >= 14,
        "{stats:?}"
    );
}

#[test]
fn fdatasync_keeps_preallocated_pwrites_like_the_wal_makes_them() {
    let (dir, mut fs) = mounted();
    let path = dir.path().join("segment.log");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    // SAFETY: fallocate on an owned descriptor with integer arguments.
    assert_eq!(
        unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, 1 << 20) },
        0
    );
    // Other modes are refused, which the WAL treats as "no preallocation".
    // SAFETY: as above.
    let keep_size = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, 8) };
    assert_eq!(keep_size, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EOPNOTSUPP)
    );
    file.sync_all().unwrap();
    sync_dir(dir.path());
    file.write_all_at(b"first batch", 32).unwrap();
    file.sync_data().unwrap();
    file.write_all_at(b"second batch, unsynced", 43).unwrap();
    drop(file);
    fs.cut(2, CutMode::DropAll).unwrap();
    let data = read(&path).unwrap();
    assert_eq!(data.len(), 1 << 20);
    assert_eq!(&data[32..43], b"first batch");
    assert!(data[43..].iter().all(|b| *b == 0));
}

#[test]
fn a_new_file_survives_only_once_it_or_its_directory_was_synced() {
    let (dir, mut fs) = mounted();
    let root = dir.path();
    fs::create_dir(root.join("sub")).unwrap();
    // Synced itself: the name (and its new parent directory) comes with it.
    let mut synced = File::create(root.join("sub/synced")).unwrap();
    synced.write_all(b"s").unwrap();
    synced.sync_all().unwrap();
    // Only its directory synced: the name survives, the data does not.
    fs::write(root.join("named"), b"n").unwrap();
    sync_dir(root);
    // Never synced (created after the directory sync).
    fs::write(root.join("unsynced"), b"u").unwrap();
    drop(synced);
    fs.cut(3, CutMode::DropAll).unwrap();
    assert_eq!(read(&root.join("sub/synced")).unwrap(), b"s");
    assert_eq!(read(&root.join("unsynced")), None);
    assert_eq!(read(&root.join("named")).unwrap(), b"");
    let mut names: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["named", "sub"]);
}

#[test]
fn a_rename_over_a_file_is_durable_only_after_the_directory_sync() {
    let (dir, mut fs) = mounted();
    let root = dir.path();
    for (name, content) in [("current", "old"), ("next.tmp", "new")] {
        let mut file = File::create(root.join(name)).unwrap();
        file.write_all(content.as_bytes()).unwrap();
        file.sync_all().unwrap();
    }
    fs::rename(root.join("next.tmp"), root.join("current")).unwrap();
    assert_eq!(read(&root.join("current")).unwrap(), b"new");
    fs.cut(4, CutMode::KeepSubset).unwrap();
    assert_eq!(read(&root.join("current")).unwrap(), b"old");
    assert_eq!(read(&root.join("next.tmp")).unwrap(), b"new");
    fs::rename(root.join("next.tmp"), root.join("current")).unwrap();
    sync_dir(root);
    fs.cut(5, CutMode::KeepSubset).unwrap();
    assert_eq!(read(&root.join("current")).unwrap(), b"new");
    assert_eq!(read(&root.join("next.tmp")), None);
    // An unlink likewise.
    fs::remove_file(root.join("current")).unwrap();
    fs.cut(6, CutMode::DropAll).unwrap();
    assert_eq!(read(&root.join("current")).unwrap(), b"new");
    fs::remove_file(root.join("current")).unwrap();
    sync_dir(root);
    fs.cut(7, CutMode::DropAll).unwrap();
    assert_eq!(read(&root.join("current")), None);
}

/// Writes 64 synced pages of ones, overwrites them all with twos without syncing, cuts with
/// `seed`, and returns which pages came back as twos.
fn keep_subset_outcome(seed: u64) -> Vec<bool> {
    let (dir, mut fs) = mounted();
    let path = dir.path().join("pages");
    let page = PAGE_BYTES as usize;
    let file = File::create(&path).unwrap();
    file.write_all_at(&vec![1u8; 64 * page], 0).unwrap();
    file.sync_all().unwrap();
    file.write_all_at(&vec![2u8; 64 * page], 0).unwrap();
    drop(file);
    let report = fs.cut(seed, CutMode::KeepSubset).unwrap();
    let data = read(&path).unwrap();
    assert_eq!(data.len(), 64 * page);
    let kept: Vec<bool> = data
        .chunks(page)
        .map(|chunk| {
            assert!(chunk.iter().all(|b| *b == chunk[0]), "a page is whole");
            chunk[0] == 2
        })
        .collect();
    assert_eq!(
        kept.iter().filter(|k| **k).count() as u64,
        report.pages_kept
    );
    assert_eq!(report.pages_kept + report.pages_dropped, 64);
    kept
}

#[test]
fn keep_subset_keeps_an_arbitrary_subset_and_replays_from_its_seed() {
    let first = keep_subset_outcome(42);
    assert!(first.contains(&true) && first.contains(&false), "{first:?}");
    assert_eq!(keep_subset_outcome(42), first);
    assert_ne!(keep_subset_outcome(43), first);
}

#[test]
fn truncation_flock_and_open_unlinked_files_behave() {
    let (dir, mut fs) = mounted();
    let root = dir.path();
    let path = root.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    // SAFETY: flock on owned descriptors.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let second = File::open(&path).unwrap();
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::flock(second.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        -1,
        "a second exclusive flock is refused"
    );
    let mut file = File::create(root.join("t")).unwrap();
    file.write_all(&[7u8; 10_000]).unwrap();
    file.sync_all().unwrap();
    file.set_len(10).unwrap();
    assert_eq!(fs::metadata(root.join("t")).unwrap().len(), 10);
    // An unlinked file stays usable through its open descriptor.
    let mut reader = File::open(root.join("t")).unwrap();
    fs::remove_file(root.join("t")).unwrap();
    let mut buffer = Vec::new();
    reader.read_to_end(&mut buffer).unwrap();
    assert_eq!(buffer, [7u8; 10]);
    drop((lock, second, file, reader));
    fs.cut(8, CutMode::DropAll).unwrap();
    // Neither the truncation nor the unlink was synced.
    assert_eq!(read(&root.join("t")).unwrap(), vec![7u8; 10_000]);
    // The unsynced LOCK file is gone; statfs answers.
    assert_eq!(read(&path), None);
    // SAFETY: statvfs fills the struct it is given.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let c_root = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid path and an owned struct.
    assert_eq!(unsafe { libc::statvfs(c_root.as_ptr(), &mut stat) }, 0);
    assert!(stat.f_bavail > 0);
}

#[test]
fn unmount_and_remount_keep_the_live_view() {
    let (dir, mut fs) = mounted();
    fs::write(dir.path().join("f"), b"live").unwrap();
    fs.unmount().unwrap();
    assert!(!fs.is_mounted());
    assert_eq!(read(&dir.path().join("f")), None, "nothing is mounted");
    fs.remount().unwrap();
    assert_eq!(read(&dir.path().join("f")).unwrap(), b"live");
}

#[test]
fn after_power_off_every_call_fails_and_changes_nothing() {
    let (dir, mut fs) = mounted();
    let path = dir.path().join("f");
    let file = File::create(&path).unwrap();
    file.write_all_at(b"synced", 0).unwrap();
    file.sync_all().unwrap();
    file.write_all_at(b"unsynced", 6).unwrap();
    fs.power_off();
    assert!(!fs.is_powered());
    let error = file.sync_data().unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    assert!(file.write_all_at(b"late", 0).is_err());
    assert!(fs::read(&path).is_err());
    drop(file);
    fs.cut(9, CutMode::DropAll).unwrap();
    assert!(fs.is_powered());
    assert_eq!(read(&path).unwrap(), b"synced");
}

#[test]
fn a_power_off_during_a_slow_fsync_fails_it() {
    let (dir, mut fs) = mounted();
    fs.set_sync_delay(std::time::Duration::from_millis(500));
    let path = dir.path().join("f");
    let file = File::create(&path).unwrap();
    file.write_all_at(b"never durable", 0).unwrap();
    let syncing = std::thread::spawn(move || file.sync_all());
    // Normally the sync is asleep in the file system by now; on a very slow machine the
    // power-off may come first, and the sync fails all the same.
    std::thread::sleep(std::time::Duration::from_millis(100));
    fs.power_off();
    let error = syncing.join().unwrap().unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    fs.cut(10, CutMode::KeepSubset).unwrap();
    assert_eq!(read(&path), None);
}
