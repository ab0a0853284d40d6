//! The social snapshot layout: a like dirties a few chunked sled keys (the author's tail like
//! chunk, the liker's tail "gave" chunk, the post index's chunk), and what is derived (like
//! counts, `posts_count`, `likes_given`, the index totals) comes back right after restarts, from
//! snapshots alone and from snapshots plus replay.

use switchyard_engine::social::SignUp;
use switchyard_engine::{Engine, EngineConfig};

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::for_tests(dir);
    // Only explicit passes, so the parts each one writes are known.
    config.checkpoint_interval_ms = 3_600_000;
    config
}

fn sign_up(i: usize) -> SignUp {
    SignUp {
        email: format!("user{i}@example.com"),
        password: "correct horse".into(),
        full_name: None,
        enrichment: None,
    }
}

const LIKERS: usize = 40;
const UNLIKERS: usize = 20;

/// Waits until every liker and the post index have applied what was sent to them (a read queues
/// behind their foreign events).
async fn settle(engine: &Engine, likers: &[u64]) {
    let social = engine.social();
    for liker in likers {
        social.user(*liker).await.unwrap();
    }
    social.stats().await.unwrap();
}

#[tokio::test]
async fn a_like_writes_few_chunks_and_derived_counts_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (author, likers, post_id, second_post) = {
        let engine = Engine::open(config(dir.path())).unwrap();
        let social = engine.social();
        let author = social.sign_up(sign_up(0)).await.unwrap().id;
        let mut likers = Vec::new();
        for i in 1..=LIKERS {
            likers.push(social.sign_up(sign_up(i)).await.unwrap().id);
        }
        let post_id = social.create_post(author, "first".into()).await.unwrap().id;
        settle(&engine, &likers).await;
        engine.checkpoint().unwrap();

        for liker in &likers {
            social.like(*liker, post_id).await.unwrap();
        }
        settle(&engine, &likers).await;
        let report = engine.checkpoint().unwrap();
        // Author: like chunks 0 and 1 (40 records); each liker: its gave chunk 0; the index:
        // its chunk 0. Nothing else (no post rewrite, no counters).
        assert_eq!(report.snapshots, 2 + LIKERS);
        assert_eq!(report.parts, 2 + LIKERS + 1);

        for liker in &likers[..UNLIKERS] {
            social.unlike(*liker, post_id).await.unwrap();
        }
        settle(&engine, &likers).await;
        let report = engine.checkpoint().unwrap();
        // Re-assignments of the first 20 records rewrite only chunk 0 of the author.
        assert_eq!(report.parts, 1 + UNLIKERS + 1);
        assert_eq!(social.post(post_id).await.unwrap().likes, 20);

        // After the last checkpoint: replayed at the next open.
        social.like(likers[0], post_id).await.unwrap();
        let second = social
            .create_post(author, "second".into())
            .await
            .unwrap()
            .id;
        social.like(likers[1], second).await.unwrap();
        social.like(likers[2], second).await.unwrap();
        social.unlike(likers[2], second).await.unwrap();
        (author, likers, post_id, second)
        // Dropped without shutdown.
    };
    for round in 0..2 {
        // Round 0 loads snapshots and replays the tail; round 1 loads what recovery wrote.
        let engine = Engine::open(config(dir.path())).unwrap();
        let social = engine.social();
        assert_eq!(
            social.post(post_id).await.unwrap().likes,
            21,
            "round {round}"
        );
        assert_eq!(social.post(second_post).await.unwrap().likes, 1);
        assert_eq!(social.user(author).await.unwrap().posts_count, 2);
        assert_eq!(social.user(author).await.unwrap().likes_given, 0);
        assert_eq!(social.user(likers[0]).await.unwrap().likes_given, 1);
        assert_eq!(social.user(likers[1]).await.unwrap().likes_given, 1);
        assert_eq!(social.user(likers[2]).await.unwrap().likes_given, 0);
        assert_eq!(social.user(likers[30]).await.unwrap().likes_given, 1);
        assert_eq!(social.user(likers[30]).await.unwrap().posts_count, 0);
        let records = social.likes(post_id, None, 100).await.unwrap();
        assert_eq!(records.items.len(), LIKERS);
        let on: Vec<bool> = records.items.iter().map(|record| record.liked).collect();
        let expected: Vec<bool> = (0..LIKERS).map(|i| i == 0 || i >= UNLIKERS).collect();
        assert_eq!(on, expected);
        assert_eq!(records.items[0].times_liked, 2);
        let zero = social.posts(None, true, None, 10).await.unwrap();
        assert!(zero.items.is_empty());
        let stats = social.stats().await.unwrap();
        assert_eq!(
            (
                stats.users,
                stats.posts,
                stats.likes,
                stats.posts_with_zero_likes
            ),
            (LIKERS as u64 + 1, 2, 22, 0)
        );
        assert!(social.check().await.unwrap().is_empty());
        if round == 0 {
            // A like after recovery appends to the reloaded chunks.
            social.unlike(likers[1], second_post).await.unwrap();
            social.like(likers[1], second_post).await.unwrap();
            settle(&engine, &likers).await;
            let report = engine.checkpoint().unwrap();
            assert_eq!(report.parts, 3);
        }
    }
}

/// A user's posts are chunked too: 40 posts written between two passes are 2 store parts of the
/// author (chunks 0 and 1) plus the index's chunks, not one key per post; texts survive a restart.
#[tokio::test]
async fn posts_are_written_as_chunks_and_survive_restarts() {
    const POSTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (author, ids) = {
        let engine = Engine::open(config(dir.path())).unwrap();
        let social = engine.social();
        let author = social.sign_up(sign_up(0)).await.unwrap().id;
        // The profile reaches the new user as an event from the e-mail index after the sign-up
        // answered; a read of the user queues behind it, so the first pass takes the profile.
        social.user(author).await.unwrap();
        engine.checkpoint().unwrap();
        let mut ids = Vec::new();
        for n in 0..POSTS {
            ids.push(
                social
                    .create_post(author, format!("post {n}"))
                    .await
                    .unwrap()
                    .id,
            );
        }
        social.stats().await.unwrap();
        let report = engine.checkpoint().unwrap();
        assert_eq!(report.snapshots, 2, "the author and the index");
        // Author: posts chunks 0 and 1; index: its entry chunks (2) and its `next` id.
        assert_eq!(report.parts, 2 + 3);
        engine.shutdown().unwrap();
        (author, ids)
    };
    let engine = Engine::open(config(dir.path())).unwrap();
    let social = engine.social();
    assert_eq!(social.user(author).await.unwrap().posts_count, POSTS as u64);
    for (n, id) in ids.iter().enumerate() {
        let post = social.post(*id).await.unwrap();
        assert_eq!(post.text, format!("post {n}"));
        assert_eq!(post.author_id, author);
    }
    assert!(social.check().await.unwrap().is_empty());
}

/// The checker is not a formality: remove a liker's stored "gave" chunk behind the engine's back
/// and it names both the short count and the exact like the liker no longer holds.
#[tokio::test]
async fn the_checker_names_a_like_its_liker_does_not_hold() {
    use switchyard_engine::runtime::ActorKey;
    use switchyard_engine::store::{chunked::chunk_sub, Snapshot, SnapshotBatch, Store};

    let dir = tempfile::tempdir().unwrap();
    let (liker, post) = {
        let engine = Engine::open(config(dir.path())).unwrap();
        let social = engine.social();
        let author = social.sign_up(sign_up(0)).await.unwrap().id;
        let liker = social.sign_up(sign_up(1)).await.unwrap().id;
        let post = social.create_post(author, "p".into()).await.unwrap().id;
        social.like(liker, post).await.unwrap();
        settle(&engine, &[liker]).await;
        assert!(social.check().await.unwrap().is_empty());
        engine.shutdown().unwrap();
        (liker, post)
    };
    {
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let key = ActorKey::new(switchyard_engine::social::USER, liker);
        let lsn = store.snapshot_meta(key).unwrap().unwrap().lsn;
        let mut parts = SnapshotBatch::default();
        parts.remove(key, &chunk_sub(b"gave/", 0));
        store
            .apply(vec![Snapshot {
                key,
                lsn,
                parts,
                deadline: None,
            }])
            .unwrap();
        store.flush().unwrap();
    }
    let engine = Engine::open(config(dir.path())).unwrap();
    let found: Vec<String> = engine
        .social()
        .check()
        .await
        .unwrap()
        .into_iter()
        .map(|difference| difference.what)
        .collect();
    assert!(
        found.contains(&format!("user {liker} likes_given")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|what| what.starts_with(&format!("user {liker} holds its like of post {post}"))),
        "{found:?}"
    );
}
