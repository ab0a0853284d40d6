//! The check: every user's `posts_count` and `likes_given`, every post's `likes`, author and
//! likers (the `liked = true` records), the stats against the stats read before the run plus the
//! ledger's own totals, and (embedded) the engine's invariant check. It reads only; a difference
//! is returned, never repaired.

use std::sync::Arc;
use std::time::Instant;

use super::{run_partitioned, Simulation, Stop};
use crate::progress::Progress;
use crate::transport::{SocialStats, Transport};

impl<T: Transport> Simulation<T> {
    /// Compares the ledger with the server; returns every difference (empty = agreed).
    pub(super) async fn check(&mut self, name: &str) -> Result<Vec<String>, Stop> {
        enum Item {
            User {
                label: String,
                id: u64,
                posts_count: u64,
                likes_given: u64,
            },
            Post {
                label: String,
                id: u64,
                author_id: u64,
                likers: Vec<u64>,
            },
        }
        let ledger = &self.ledger;
        let mut items = Vec::with_capacity(ledger.users.len() + ledger.posts.len());
        for (slot, user) in ledger.users.iter().enumerate() {
            items.push(Item::User {
                label: ledger.user_label(slot),
                id: user.id,
                posts_count: user.posts.len() as u64,
                likes_given: user.likes.len() as u64,
            });
        }
        for (index, post) in ledger.posts.iter().enumerate() {
            let mut likers: Vec<u64> = post
                .likers
                .iter()
                .map(|&slot| ledger.users[slot].id)
                .collect();
            likers.sort_unstable();
            items.push(Item::Post {
                label: ledger.post_label(index),
                id: post.id,
                author_id: ledger.users[post.author].id,
                likers,
            });
        }
        let progress = Arc::new(Progress::start(
            &format!("check after {name}"),
            items.len() as u64,
            self.options.progress,
        ));
        let progress_in_tasks = progress.clone();
        let per_item = run_partitioned(
            &self.shared,
            items,
            self.options.concurrency,
            move |shared, item| {
                let progress = progress_in_tasks.clone();
                async move {
                    let mut differences = Vec::new();
                    match item {
                        Item::User {
                            label,
                            id,
                            posts_count,
                            likes_given,
                        } => match timed!(shared, "get_user", shared.transport.user(id)) {
                            Ok(user) => {
                                if user.posts_count != posts_count {
                                    differences.push(format!(
                                        "{label}: posts_count is {}, the bot counts {posts_count}",
                                        user.posts_count
                                    ));
                                }
                                if user.likes_given != likes_given {
                                    differences.push(format!(
                                        "{label}: likes_given is {}, the bot counts {likes_given}",
                                        user.likes_given
                                    ));
                                }
                            }
                            Err(error) if error.is_refusal() => {
                                differences.push(format!("{label}: GET refused: {error}"))
                            }
                            Err(error) => return Err(error),
                        },
                        Item::Post {
                            label,
                            id,
                            author_id,
                            likers,
                        } => {
                            match timed!(shared, "get_post", shared.transport.post(id)) {
                                Ok(post) => {
                                    if post.likes != likers.len() as u64 {
                                        differences.push(format!(
                                            "{label}: likes is {}, the bot counts {}",
                                            post.likes,
                                            likers.len()
                                        ));
                                    }
                                    if post.author_id != author_id {
                                        differences.push(format!(
                                            "{label}: author is user {}, the bot has user {author_id}",
                                            post.author_id
                                        ));
                                    }
                                }
                                Err(error) if error.is_refusal() => {
                                    differences.push(format!("{label}: GET refused: {error}"))
                                }
                                Err(error) => return Err(error),
                            }
                            match timed!(shared, "get_likes", shared.transport.likers(id)) {
                                Ok(mut found) => {
                                    found.sort_unstable();
                                    if found != likers {
                                        differences.push(format!(
                                            "{label}: likers are {found:?}, the bot has {likers:?}"
                                        ));
                                    }
                                }
                                Err(error) if error.is_refusal() => differences
                                    .push(format!("{label}: GET likes refused: {error}")),
                                Err(error) => return Err(error),
                            }
                        }
                    }
                    progress.advance(1);
                    Ok(differences)
                }
            },
        )
        .await?;
        let mut differences: Vec<String> = per_item.into_iter().flatten().collect();
        let found = timed!(self.shared, "get_stats", self.shared.transport.stats())?;
        let ours = self.ledger.stats();
        let base = self.baseline;
        let expected = SocialStats {
            users: base.users + ours.users,
            posts: base.posts + ours.posts,
            likes: base.likes + ours.likes,
            posts_with_zero_likes: base.posts_with_zero_likes + ours.posts_with_zero_likes,
        };
        let fields = [
            ("users", found.users, expected.users),
            ("posts", found.posts, expected.posts),
            ("likes", found.likes, expected.likes),
            (
                "posts_with_zero_likes",
                found.posts_with_zero_likes,
                expected.posts_with_zero_likes,
            ),
        ];
        for (field, found, expected) in fields {
            if found != expected {
                differences.push(format!(
                    "stats {field} is {found}, the bot expects {expected} (before the run + this run)"
                ));
            }
        }
        let started = Instant::now();
        let engine_check = self.shared.transport.self_check().await;
        // Only a transport that can reach the engine's check (embedded) counts it as an operation.
        if !matches!(engine_check, Ok(None)) {
            self.shared.recorder.record(
                "self_check",
                started.elapsed(),
                engine_check.as_ref().err(),
            );
        }
        if let Some(engine_differences) = engine_check? {
            differences.extend(
                engine_differences
                    .into_iter()
                    .map(|difference| format!("engine check: {difference}")),
            );
        }
        progress.finish(&format!("{} differences", differences.len()));
        Ok(differences)
    }
}
