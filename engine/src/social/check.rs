//! The invariant checker: recomputes every counter of the social workload from the records and
//! reports each difference. Usable from tests, the bot and an operator. It reads every user, so
//! it costs O(users + posts + likes); it is a check, not a hot path.

use std::collections::HashMap;

use super::posts::{PostIndexCommand, POST_INDEX_ID};
use super::user::UserCommand;
use super::{Social, SocialStats};
use crate::error::Result;

/// One invariant that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// What was checked, e.g. `post 12 likes`.
    pub what: String,
    pub expected: u64,
    pub found: u64,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.what, self.expected, self.found
        )
    }
}

const PAGE: usize = 500;

pub(crate) async fn check(social: &Social<'_>) -> Result<Vec<Difference>> {
    let mut differences = Vec::new();
    let mut diff = |what: String, expected: u64, found: u64| {
        if expected != found {
            differences.push(Difference {
                what,
                expected,
                found,
            });
        }
    };
    // Walk every user (keyset pages) and collect their records.
    let mut after = None;
    let mut dumps = Vec::new();
    loop {
        let page = social.users(after, PAGE).await?;
        for view in &page.items {
            let dump = social
                .shared
                .ask::<super::user::User>(view.id, UserCommand::Dump)
                .await?
                .into_dump()?;
            dumps.push((view.id, dump));
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut likes_on_by_post: HashMap<u64, u64> = HashMap::new();
    let mut likes_on_by_liker: HashMap<u64, u64> = HashMap::new();
    let mut gave_by_liker: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut recomputed = SocialStats {
        users: dumps.len() as u64,
        ..SocialStats::default()
    };
    for (user_id, dump) in &dumps {
        gave_by_liker.insert(*user_id, dump.gave.clone());
        for (post_id, liker, liked) in &dump.like_records {
            if *liked {
                *likes_on_by_post.entry(*post_id).or_default() += 1;
                *likes_on_by_liker.entry(*liker).or_default() += 1;
            }
        }
    }
    let mut author_of = HashMap::new();
    for (user_id, dump) in &dumps {
        let Some(view) = &dump.view else { continue };
        diff(
            format!("user {user_id} posts_count"),
            dump.posts.len() as u64,
            view.posts_count,
        );
        diff(
            format!("user {user_id} likes_given"),
            likes_on_by_liker.get(user_id).copied().unwrap_or(0),
            view.likes_given,
        );
        for post in &dump.posts {
            author_of.insert(post.id, *user_id);
            recomputed.posts += 1;
            recomputed.likes += post.likes;
            if post.likes == 0 {
                recomputed.posts_with_zero_likes += 1;
            }
            diff(
                format!("post {} likes", post.id),
                likes_on_by_post.get(&post.id).copied().unwrap_or(0),
                post.likes,
            );
        }
    }
    // The set of posts each liker holds must be exactly its "on" like records.
    let dump_of: HashMap<u64, &super::user::UserDump> =
        dumps.iter().map(|(id, dump)| (*id, dump)).collect();
    for (liker, gave) in &gave_by_liker {
        for post_id in gave {
            let on = author_of
                .get(post_id)
                .and_then(|author| dump_of.get(author))
                .map(|dump| {
                    dump.like_records
                        .iter()
                        .any(|(post, user, liked)| post == post_id && user == liker && *liked)
                })
                .unwrap_or(false);
            diff(
                format!("user {liker} holds a like of post {post_id}"),
                1,
                u64::from(on),
            );
        }
    }
    // And the other way: every "on" record is in its liker's set (names the post when a
    // liker's count is short).
    let gave_sets: HashMap<u64, std::collections::HashSet<u64>> = gave_by_liker
        .iter()
        .map(|(liker, gave)| (*liker, gave.iter().copied().collect()))
        .collect();
    for (author, dump) in &dumps {
        for (post_id, liker, liked) in &dump.like_records {
            if *liked {
                let held = gave_sets
                    .get(liker)
                    .is_some_and(|gave| gave.contains(post_id));
                diff(
                    format!("user {liker} holds its like of post {post_id} (author {author})"),
                    1,
                    u64::from(held),
                );
            }
        }
    }
    // The post index must agree with the authors.
    let mut after = None;
    loop {
        let page = social
            .shared
            .ask::<super::posts::PostIndex>(
                POST_INDEX_ID,
                PostIndexCommand::List {
                    zero_likes: false,
                    after,
                    limit: PAGE,
                },
            )
            .await?
            .into_list();
        for (post_id, author_id) in &page.items {
            diff(
                format!("post {post_id} author in the index"),
                author_of.get(post_id).copied().unwrap_or(0),
                *author_id,
            );
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let stats = social.stats().await?;
    diff("stats users".into(), recomputed.users, stats.users);
    diff("stats posts".into(), recomputed.posts, stats.posts);
    diff("stats likes".into(), recomputed.likes, stats.likes);
    diff(
        "stats posts_with_zero_likes".into(),
        recomputed.posts_with_zero_likes,
        stats.posts_with_zero_likes,
    );
    Ok(differences)
}
