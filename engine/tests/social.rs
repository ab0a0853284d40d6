//! The social workload through the embedded API: sign-up rules and uniqueness under concurrency,
//! login, posts, like/unlike semantics and their records, keyset pages, ground-rule limits, and
//! the invariant checker before and after restarts.

use std::collections::BTreeSet;

use switchyard_engine::social::{SignUp, SocialConfig};
use switchyard_engine::{Engine, EngineConfig, Error};

fn config(dir: &std::path::Path) -> EngineConfig {
    EngineConfig::for_tests(dir)
}

fn sign_up(email: &str) -> SignUp {
    SignUp {
        email: email.into(),
        password: "correct horse".into(),
        full_name: Some("A Person".into()),
        enrichment: None,
    }
}

fn code(error: Error) -> &'static str {
    match error {
        Error::Invalid { code, .. }
        | Error::Conflict { code, .. }
        | Error::Forbidden { code, .. }
        | Error::Unprocessable { code, .. }
        | Error::Unauthenticated { code, .. } => code,
        Error::NotFound(_) => "not_found",
        other => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test]
async fn sign_up_validates_and_is_unique_case_insensitively() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let social = engine.social();
    let user = social.sign_up(sign_up("Ann@Example.com")).await.unwrap();
    assert_eq!(user.id, 1);
    assert_eq!(user.posts_count, 0);
    let cases = [
        (sign_up("ann@example.COM"), "email_taken"),
        (sign_up("not-an-email"), "invalid_email"),
        (sign_up("a b@example.com"), "invalid_email"),
        (sign_up("x@mailinator.com"), "email_undeliverable"),
        (
            SignUp {
                password: "short".into(),
                ..sign_up("bob@example.com")
            },
            "weak_password",
        ),
    ];
    for (request, expected) in cases {
        let email = request.email.clone();
        let error = social.sign_up(request).await.unwrap_err();
        assert_eq!(code(error), expected, "{email}");
    }
    assert_eq!(social.stats().await.unwrap().users, 1);
    assert_eq!(
        social
            .login("ANN@example.com", "correct horse")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        code(
            social
                .login("ann@example.com", "wrong password")
                .await
                .unwrap_err()
        ),
        "invalid_credentials"
    );
    assert_eq!(
        code(
            social
                .login("nobody@example.com", "correct horse")
                .await
                .unwrap_err()
        ),
        "invalid_credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ups_of_one_address_give_exactly_one_user() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let engine = engine.clone();
            let email = if i % 2 == 0 {
                "Same@Example.com"
            } else {
                "same@example.com"
            };
            tokio::spawn(async move { engine.social().sign_up(sign_up(email)).await })
        })
        .collect();
    let mut created = 0;
    let mut taken = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(error) => {
                assert_eq!(code(error), "email_taken");
                taken += 1;
            }
        }
    }
    assert_eq!((created, taken), (1, 19));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_users_like_one_post_twice_each() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let social = engine.social();
    let author = social.sign_up(sign_up("author@example.com")).await.unwrap();
    let post = social.create_post(author.id, "hello".into()).await.unwrap();
    let mut likers = Vec::new();
    for i in 0..40 {
        likers.push(
            social
                .sign_up(sign_up(&format!("liker{i}@example.com")))
                .await
                .unwrap()
                .id,
        );
    }
    let tasks: Vec<_> = likers
        .iter()
        .flat_map(|liker| [*liker, *liker])
        .map(|liker| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.social().like(liker, post.id).await })
        })
        .collect();
    let (mut created, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(error) => {
                assert_eq!(code(error), "already_liked");
                conflicts += 1;
            }
        }
    }
    assert_eq!((created, conflicts), (40, 40));
    assert_eq!(social.post(post.id).await.unwrap().likes, 40);
    assert!(social.check().await.unwrap().is_empty());
}

#[tokio::test]
async fn like_and_unlike_keep_records_and_counters_exact_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, post_id) = {
        let engine = Engine::open(config(dir.path())).unwrap();
        let social = engine.social();
        let alice = social
            .sign_up(sign_up("alice@example.com"))
            .await
            .unwrap()
            .id;
        let bob = social.sign_up(sign_up("bob@example.com")).await.unwrap().id;
        let post = social.create_post(alice, "first".into()).await.unwrap();
        assert_eq!(post.likes, 0);
        assert_eq!(
            code(social.like(alice, post.id).await.unwrap_err()),
            "own_post"
        );
        // Taking back a like of one's own post finds none (API.md lists only `not_liked`).
        assert_eq!(
            code(social.unlike(alice, post.id).await.unwrap_err()),
            "not_liked"
        );
        assert_eq!(
            code(social.unlike(bob, post.id).await.unwrap_err()),
            "not_liked"
        );
        assert_eq!(
            code(social.like(bob, 999_999).await.unwrap_err()),
            "not_found"
        );
        assert_eq!(social.like(bob, post.id).await.unwrap().likes, 1);
        assert_eq!(
            code(social.like(bob, post.id).await.unwrap_err()),
            "already_liked"
        );
        assert_eq!(social.unlike(bob, post.id).await.unwrap().likes, 0);
        assert_eq!(social.like(bob, post.id).await.unwrap().likes, 1);
        assert_eq!(social.user(bob).await.unwrap().likes_given, 1);
        assert_eq!(social.user(alice).await.unwrap().posts_count, 1);
        engine.checkpoint().unwrap();
        assert_eq!(social.unlike(bob, post.id).await.unwrap().likes, 0);
        assert_eq!(social.like(bob, post.id).await.unwrap().likes, 1);
        (alice, bob, post.id)
        // Dropped without shutdown: the tail since the checkpoint is replayed.
    };
    let engine = Engine::open(config(dir.path())).unwrap();
    let social = engine.social();
    let likes = social.likes(post_id, None, 10).await.unwrap();
    assert_eq!(likes.items.len(), 1);
    let record = likes.items[0];
    assert_eq!(record.user_id, bob);
    assert!(record.liked);
    assert_eq!(record.times_liked, 3);
    assert!(record.first_liked_at_ms <= record.updated_at_ms);
    assert_eq!(social.post(post_id).await.unwrap().likes, 1);
    assert_eq!(social.user(bob).await.unwrap().likes_given, 1);
    assert_eq!(social.user(alice).await.unwrap().posts_count, 1);
    let stats = social.stats().await.unwrap();
    assert_eq!(
        (
            stats.users,
            stats.posts,
            stats.likes,
            stats.posts_with_zero_likes
        ),
        (2, 1, 1, 0)
    );
    assert!(social.check().await.unwrap().is_empty());
    // New posts after a restart never reuse an id.
    let post = social.create_post(alice, "second".into()).await.unwrap();
    assert!(post.id > post_id);
}

#[tokio::test]
async fn keyset_pages_walk_every_item_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let social = engine.social();
    let mut users = Vec::new();
    for i in 0..7 {
        users.push(
            social
                .sign_up(sign_up(&format!("u{i}@example.com")))
                .await
                .unwrap()
                .id,
        );
    }
    let mut posts = Vec::new();
    for (i, user) in users.iter().enumerate() {
        for _ in 0..=i {
            posts.push(
                social
                    .create_post(*user, format!("by {user}"))
                    .await
                    .unwrap()
                    .id,
            );
        }
    }
    social.like(users[0], posts[5]).await.unwrap();
    social.like(users[0], posts[9]).await.unwrap();
    // Users, 3 per page.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = social.users(after, 3).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|user| user.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, users);
    // All posts, zero-like posts, and one author's posts, 4 per page.
    for (author, zero_likes) in [
        (None, false),
        (None, true),
        (Some(users[6]), false),
        (Some(users[6]), true),
    ] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = social.posts(author, zero_likes, after, 4).await.unwrap();
            seen.extend(page.items.iter().map(|post| post.id));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let expected: Vec<u64> = posts
            .iter()
            .copied()
            .filter(|id| !zero_likes || (*id != posts[5] && *id != posts[9]))
            .filter(|id| match author {
                Some(author) => engine_author(&posts, &users, *id) == author,
                None => true,
            })
            .collect();
        assert_eq!(seen, expected, "author {author:?} zero_likes {zero_likes}");
        assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
    }
}

/// Posts were created user by user, user i writing i + 1 posts.
fn engine_author(posts: &[u64], users: &[u64], post: u64) -> u64 {
    let index = posts.iter().position(|id| *id == post).unwrap();
    let mut start = 0;
    for (i, user) in users.iter().enumerate() {
        if index < start + i + 1 {
            return *user;
        }
        start += i + 1;
    }
    unreachable!()
}

#[tokio::test]
async fn ground_rules_limit_posts_and_likes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    *config.section_mut::<SocialConfig>() = SocialConfig {
        max_posts_per_user: Some(2),
        max_likes_per_user: Some(1),
        ..SocialConfig::for_tests()
    };
    let engine = Engine::open(config).unwrap();
    let social = engine.social();
    let a = social.sign_up(sign_up("a@example.com")).await.unwrap().id;
    let b = social.sign_up(sign_up("b@example.com")).await.unwrap().id;
    let first = social.create_post(a, "1".into()).await.unwrap().id;
    let second = social.create_post(a, "2".into()).await.unwrap().id;
    assert_eq!(
        code(social.create_post(a, "3".into()).await.unwrap_err()),
        "post_limit_reached"
    );
    assert_eq!(
        code(social.create_post(a, "".into()).await.unwrap_err()),
        "invalid_text"
    );
    assert_eq!(
        code(social.create_post(a, "x".repeat(5001)).await.unwrap_err()),
        "invalid_text"
    );
    social.like(b, first).await.unwrap();
    assert_eq!(
        code(social.like(b, second).await.unwrap_err()),
        "like_limit_reached"
    );
    social.unlike(b, first).await.unwrap();
    social.like(b, second).await.unwrap();
    assert!(social.check().await.unwrap().is_empty());
}

/// One user's concurrent likes of posts by many authors (so on many actors and shards) cannot
/// overshoot `limits.max_likes_per_user`: exactly `max` succeed, the rest are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_like_limit_is_exact_under_one_users_concurrent_likes() {
    const MAX: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    *config.section_mut::<SocialConfig>() = SocialConfig {
        max_likes_per_user: Some(MAX),
        ..SocialConfig::for_tests()
    };
    let engine = Engine::open(config).unwrap();
    let social = engine.social();
    let liker = social
        .sign_up(sign_up("liker@example.com"))
        .await
        .unwrap()
        .id;
    let mut posts = Vec::new();
    for n in 0..24 {
        let author = social
            .sign_up(sign_up(&format!("author{n}@example.com")))
            .await
            .unwrap()
            .id;
        posts.push(social.create_post(author, "p".into()).await.unwrap().id);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for post in posts {
        let engine = engine.clone();
        tasks.spawn(async move { engine.social().like(liker, post).await });
    }
    let outcomes = tasks.join_all().await;
    let ok = outcomes.iter().filter(|outcome| outcome.is_ok()).count() as u64;
    for outcome in outcomes {
        if let Err(error) = outcome {
            assert_eq!(code(error), "like_limit_reached");
        }
    }
    assert_eq!(ok, MAX);
    assert_eq!(social.user(liker).await.unwrap().likes_given, MAX);
    assert!(social.check().await.unwrap().is_empty());
}
