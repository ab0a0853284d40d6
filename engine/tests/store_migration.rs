//! A data dir written by the sled-based build (`engine/tests/fixtures/sled-v1/`, made by
//! `make_sled_fixture` in this file at commit 5f0d6ed, the last with the sled store, with
//! `SWITCHYARD_MAKE_SLED_FIXTURE=<dir>`) opens with this
//! build and answers exactly as it did: `expected.txt` is what that build's embedded API
//! answered. Every key of sled's `snapshots` tree and its meta record reach the redb file with
//! the same bytes, and a migration interrupted at any step finishes at the next open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadableTable, TableDefinition};

use switchyard_engine::work::WorkConfig;
use switchyard_engine::{Engine, EngineConfig, ManualClock};

/// 2026-11-22T14:00:00Z (the work tests' start).
const START_MS: u64 = 1_795_356_000_000;

fn config(dir: &Path) -> EngineConfig {
    let mut config = EngineConfig::for_tests(dir);
    config.timer_tick_ms = 3_600_000;
    config.checkpoint_interval_ms = 3_600_000;
    *config.section_mut::<WorkConfig>() = WorkConfig::for_tests();
    config
}

fn open(dir: &Path) -> Engine {
    Engine::open_with_clock(config(dir), Arc::new(ManualClock::new(START_MS)))
        .expect("engine opens")
}

/// What the embedded API answers, as text (every view's `Debug`).
async fn dump(engine: &Engine) -> String {
    let mut out = String::new();
    for id in 1..=4 {
        out += &format!("counter {id}: {:?}\n", engine.counters().get(id).await);
    }
    let social = engine.social();
    out += &format!("users: {:?}\n", social.users(None, 100).await);
    for user in 1..=6 {
        out += &format!("user {user}: {:?}\n", social.user(user).await);
        out += &format!(
            "posts of {user}: {:?}\n",
            social.posts(Some(user), false, None, 100).await
        );
    }
    out += &format!("posts: {:?}\n", social.posts(None, false, None, 100).await);
    out += &format!(
        "zero-like posts: {:?}\n",
        social.posts(None, true, None, 100).await
    );
    for post in 1..=12 {
        out += &format!(
            "likes of {post}: {:?}\n",
            social.likes(post, None, 100).await
        );
    }
    out += &format!("social stats: {:?}\n", social.stats().await);
    out += &format!("social check: {:?}\n", social.check().await);
    let work = engine.work();
    out += &format!("work items: {:?}\n", work.items(None, None, 1000).await);
    for bucket in 1..=12 {
        out += &format!("bucket {bucket}: {:?}\n", work.bucket(bucket).await);
    }
    out += &format!("work stats: {:?}\n", work.stats().await);
    out += &format!("dead letters: {:?}\n", work.dead_letters(None, 100).await);
    out
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sled-v1");

/// A copy of the fixture's data dir.
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    copy_dir(&Path::new(FIXTURE).join("data"), &dir);
    (temp, dir)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Every (key, value) of the fixture's sled `snapshots` tree, and its meta record (read from a
/// copy of its own: sled may write to a store it opens).
fn sled_contents() -> (Pairs, Option<Vec<u8>>) {
    let (_temp, dir) = fixture_copy();
    let db = sled::Config::new().path(dir.join("sled")).open().unwrap();
    let tree = db.open_tree("snapshots").unwrap();
    let pairs = tree
        .iter()
        .map(|item| {
            let (key, value) = item.unwrap();
            (key.to_vec(), value.to_vec())
        })
        .collect();
    let meta = db.get(b"meta").unwrap().map(|value| value.to_vec());
    (pairs, meta)
}

/// The same from the redb file in `dir`.
fn redb_contents(dir: &Path) -> (Pairs, Option<Vec<u8>>) {
    const SNAPSHOTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("snapshots");
    const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
    let db = redb::Database::open(dir.join(switchyard_engine::store::FILE_NAME)).unwrap();
    let txn = db.begin_read().unwrap();
    let pairs = txn
        .open_table(SNAPSHOTS)
        .unwrap()
        .iter()
        .unwrap()
        .map(|item| {
            let (key, value) = item.unwrap();
            (key.value().to_vec(), value.value().to_vec())
        })
        .collect();
    let meta = txn
        .open_table(META)
        .unwrap()
        .get(&b"meta"[..])
        .unwrap()
        .map(|value| value.value().to_vec());
    (pairs, meta)
}

/// After a migration: sled's store is kept as `sled.migrated/`, `sled` is a note (a file), and
/// no temporary file is left.
fn assert_retired(dir: &Path) {
    assert!(dir.join("sled.migrated").join("conf").is_file());
    assert!(
        dir.join("sled").is_file(),
        "the note that keeps old builds off"
    );
    assert!(!dir.join("checkpoint.redb.migrating").exists());
}

#[tokio::test]
async fn a_sled_data_dir_migrates_to_redb_and_answers_as_before() {
    let (sled_pairs, sled_meta) = sled_contents();
    assert!(sled_pairs.len() > 20, "{} keys", sled_pairs.len());
    assert!(sled_meta.is_some());
    let (_temp, dir) = fixture_copy();
    {
        let engine = open(&dir);
        let expected = std::fs::read_to_string(Path::new(FIXTURE).join("expected.txt")).unwrap();
        assert_eq!(dump(&engine).await, expected);
        assert_eq!(
            engine.recovery().records_replayed,
            0,
            "all from the checkpoint"
        );
        engine.shutdown().unwrap();
    }
    assert_retired(&dir);
    // Byte for byte, but for what the format 4 -> 5 migration that follows the copy rewrites:
    // the work pool's client parts (external ids kept as digests since format 5) and the meta
    // record's version stamp. Nothing else changed (a clean shutdown writes no actor again).
    let rewritten_by_format_5 = |key: &[u8]| key.first() == Some(&5);
    let (redb_pairs, redb_meta) = redb_contents(&dir);
    let unchanged = |pairs: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .into_iter()
            .filter(|(key, _)| !rewritten_by_format_5(key))
            .collect()
    };
    assert_eq!(unchanged(redb_pairs.clone()), unchanged(sled_pairs.clone()));
    assert!(redb_meta.is_some() && sled_meta.is_some());
    assert_ne!(
        redb_pairs
            .iter()
            .filter(|(key, _)| key.first() == Some(&5))
            .count(),
        0,
        "the pool is there"
    );
    // A build that still uses sled refuses the dir instead of starting on an empty store.
    assert!(sled::Config::new().path(dir.join("sled")).open().is_err());
    // Opens again without migrating.
    let engine = open(&dir);
    assert_eq!(
        engine.counters().get(3).await.unwrap().value,
        40,
        "still there"
    );
}

/// A crash at each step of the migration: the next open finishes it.
#[tokio::test]
async fn an_interrupted_migration_finishes_at_the_next_open() {
    let (sled_pairs, sled_meta) = sled_contents();
    let store = |dir: &Path| switchyard_engine::store::Store::open(dir, 1 << 20).unwrap();

    // Step 1 interrupted: a partial temporary file beside the untouched sled store.
    let (_temp, dir) = fixture_copy();
    std::fs::write(dir.join("checkpoint.redb.migrating"), b"torn").unwrap();
    drop(store(&dir));
    assert_retired(&dir);
    assert_eq!(redb_contents(&dir), (sled_pairs.clone(), sled_meta.clone()));

    // Step 2 done, step 3 not: `checkpoint.redb` beside `sled/`. Only sled is retired.
    std::fs::remove_file(dir.join("sled")).unwrap();
    std::fs::rename(dir.join("sled.migrated"), dir.join("sled")).unwrap();
    let before = std::fs::read(dir.join("checkpoint.redb")).unwrap();
    drop(store(&dir));
    assert_eq!(
        std::fs::read(dir.join("checkpoint.redb")).unwrap().len(),
        before.len(),
        "not copied again"
    );
    assert!(dir.join("sled.migrated").is_dir() && dir.join("sled").is_file());
    assert_eq!(redb_contents(&dir), (sled_pairs.clone(), sled_meta.clone()));

    // Step 3 interrupted between its rename and its note.
    std::fs::remove_file(dir.join("sled")).unwrap();
    drop(store(&dir));
    assert!(dir.join("sled").is_file(), "the note is written");
    assert_eq!(redb_contents(&dir), (sled_pairs, sled_meta));

    // The engine on the result answers as the sled build did.
    let engine = open(&dir);
    let expected = std::fs::read_to_string(Path::new(FIXTURE).join("expected.txt")).unwrap();
    assert_eq!(dump(&engine).await, expected);
}
