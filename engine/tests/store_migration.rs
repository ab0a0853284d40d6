//! A data dir written by the sled-based build (`engine/tests/fixtures/sled-v1/`, made by
//! `make_sled_fixture` below at commit 36987a5 with the sled store) opens with this build and
//! answers exactly as it did: `expected.txt` is what that build's embedded API answered.

use std::path::Path;
use std::sync::Arc;

use switchyard_engine::social::SignUp;
use switchyard_engine::work::{ItemResult, Outcome, Registration, Report, WorkConfig};
use switchyard_engine::{Engine, EngineConfig, ManualClock};

/// 2026-11-22T14:00:00Z (the work tests' start).
const START_MS: u64 = 1_795_356_000_000;

fn config(dir: &Path) -> EngineConfig {
    let mut config = EngineConfig::for_tests(dir);
    config.timer_tick_ms = 3_600_000;
    config.checkpoint_interval_ms = 3_600_000;
    config.work = WorkConfig::for_tests();
    config
}

fn open(dir: &Path) -> Engine {
    Engine::open_with_clock(config(dir), Arc::new(ManualClock::new(START_MS))).expect("engine opens")
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
    out += &format!("zero-like posts: {:?}\n", social.posts(None, true, None, 100).await);
    for post in 1..=12 {
        out += &format!("likes of {post}: {:?}\n", social.likes(post, None, 100).await);
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

fn sign_up(n: u64) -> SignUp {
    SignUp {
        email: format!("user{n}@example.com"),
        password: "correct horse".into(),
        full_name: Some(format!("User {n}")),
        enrichment: None,
    }
}

/// Writes the fixture (run with the sled build only):
/// `SWITCHYARD_MAKE_SLED_FIXTURE=engine/tests/fixtures/sled-v1 cargo test -p switchyard-engine
/// --test store_migration make_sled_fixture`.
#[tokio::test]
async fn make_sled_fixture() {
    let Ok(target) = std::env::var("SWITCHYARD_MAKE_SLED_FIXTURE") else {
        return;
    };
    let target = Path::new(&target);
    let dir = target.join("data");
    assert!(!dir.exists(), "{} exists", dir.display());
    let engine = open(&dir);
    // Demo counters: a mirror and a durable timer.
    engine.counters().add(1, 5, Some(2)).await.unwrap();
    engine.counters().add(1, -2, None).await.unwrap();
    engine.counters().add(3, 40, None).await.unwrap();
    engine
        .counters()
        .schedule(3, 2, START_MS + 86_400_000)
        .await
        .unwrap();
    // Social: five users, posts (one user with over a chunk of them), likes and an unlike.
    let social = engine.social();
    for n in 1..=5 {
        social.sign_up(sign_up(n)).await.unwrap();
    }
    let mut posts = Vec::new();
    for (author, count) in [(1u64, 3usize), (2, 1), (3, 2), (4, 2)] {
        for i in 0..count {
            let post = social
                .create_post(author, format!("post {i} of user {author}"))
                .await
                .unwrap();
            posts.push(post.id);
        }
    }
    for (liker, post) in [(2u64, 0usize), (3, 0), (4, 0), (1, 3), (5, 4), (5, 6), (2, 7)] {
        social.like(liker, posts[post]).await.unwrap();
    }
    social.unlike(3, posts[0]).await.unwrap();
    engine.checkpoint().unwrap();
    // Work: 30 items (buckets of 4), two clients, leases, a report.
    let work = engine.work();
    let items = (0..30)
        .map(|i| switchyard_engine::work::NewItem {
            key: format!("item-{i:04}"),
            priority: if i % 7 == 0 { Some(5) } else { None },
        })
        .collect();
    work.add_items(items).await.unwrap();
    let mut tokens = Vec::new();
    for id in ["1001", "1002"] {
        let registered = work
            .register(
                Registration {
                    screen_name: format!("screen {id}"),
                    external_id: id.into(),
                },
                None,
            )
            .await
            .unwrap();
        tokens.push(registered.token);
    }
    let leased = work.lease(&tokens[0], 2).await.unwrap();
    work.lease(&tokens[1], 1).await.unwrap();
    let first = &leased[0];
    work.report(
        &tokens[0],
        first.id,
        Report {
            results: first
                .items
                .iter()
                .map(|key| ItemResult {
                    key: key.clone(),
                    outcome: Outcome::Yes,
                    detail: None,
                })
                .collect(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // A clean shutdown checkpoints everything: the fixture's state is all in the sled store.
    let expected = dump(&engine).await;
    engine.shutdown().unwrap();
    drop(engine);
    std::fs::remove_file(dir.join("LOCK")).ok();
    std::fs::write(target.join("expected.txt"), expected).unwrap();
}
