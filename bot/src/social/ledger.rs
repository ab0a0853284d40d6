//! The ledger: the bot's own record of what the server should hold for this run (its users,
//! their posts, who likes what), kept by the planner as it plans and corrected by the answers
//! (a refused operation is reverted). Users and posts are named by bot-side slots, never by
//! server ids, so the op log does not depend on the ids a server hands out.
//!
//! **Invariant:** `posts[p].likers` and `users[u].likes` mirror each other, and each user's
//! `zero_posts` counts its posts with no liker; `apply` keeps all three together.

use std::collections::BTreeSet;

use crate::transport::{Session, SocialStats};

/// A simulated user, as the bot knows it.
#[derive(Debug, Clone)]
pub(super) struct User {
    pub(super) address_index: usize,
    pub(super) email: String,
    pub(super) password: String,
    pub(super) id: u64,
    pub(super) session: Option<Session>,
    /// Indices into `Ledger::posts`; contiguous, in creation order.
    pub(super) posts: Vec<usize>,
    /// Posts this user likes now (indices into `Ledger::posts`).
    pub(super) likes: BTreeSet<usize>,
    /// Of this user's posts, how many have no liker.
    pub(super) zero_posts: usize,
    pub(super) like_budget: u64,
    pub(super) like_budget_used: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Post {
    /// Slot of the author in `Ledger::users`.
    pub(super) author: usize,
    /// 1-based, per author.
    pub(super) ordinal: usize,
    pub(super) id: u64,
    /// Slots of the users whose like is on.
    pub(super) likers: BTreeSet<usize>,
}

/// The bot's own record of what the server should hold for this run.
#[derive(Debug, Clone, Default)]
pub(super) struct Ledger {
    pub(super) users: Vec<User>,
    pub(super) posts: Vec<Post>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LikeAction {
    Like,
    Unlike,
}

impl LikeAction {
    pub(super) fn kind(self) -> &'static str {
        match self {
            LikeAction::Like => "like",
            LikeAction::Unlike => "unlike",
        }
    }
}

impl Ledger {
    pub(super) fn user_label(&self, slot: usize) -> String {
        let user = &self.users[slot];
        format!(
            "u{slot} (user {}, a{} {})",
            user.id, user.address_index, user.email
        )
    }

    pub(super) fn post_label(&self, index: usize) -> String {
        let post = &self.posts[index];
        format!("post {} (u{}#{})", post.id, post.author, post.ordinal)
    }

    /// Applies a like or unlike of `post` by `liker` (planned or confirmed).
    pub(super) fn apply(&mut self, liker: usize, post: usize, action: LikeAction) {
        let author = self.posts[post].author;
        let likers = &mut self.posts[post].likers;
        let was_zero = likers.is_empty();
        match action {
            LikeAction::Like => {
                assert!(
                    likers.insert(liker),
                    "ledger: u{liker} already likes post {post}"
                );
                assert!(self.users[liker].likes.insert(post));
            }
            LikeAction::Unlike => {
                assert!(
                    likers.remove(&liker),
                    "ledger: u{liker} does not like post {post}"
                );
                assert!(self.users[liker].likes.remove(&post));
            }
        }
        let is_zero = self.posts[post].likers.is_empty();
        let zero_posts = &mut self.users[author].zero_posts;
        match (was_zero, is_zero) {
            (true, false) => *zero_posts -= 1,
            (false, true) => *zero_posts += 1,
            _ => {}
        }
    }

    pub(super) fn revert(&mut self, liker: usize, post: usize, action: LikeAction) {
        let opposite = match action {
            LikeAction::Like => LikeAction::Unlike,
            LikeAction::Unlike => LikeAction::Like,
        };
        self.apply(liker, post, opposite);
    }

    pub(super) fn zero_posts_total(&self) -> usize {
        self.users.iter().map(|user| user.zero_posts).sum()
    }

    pub(super) fn stats(&self) -> SocialStats {
        SocialStats {
            users: self.users.len() as u64,
            posts: self.posts.len() as u64,
            likes: self.posts.iter().map(|post| post.likers.len() as u64).sum(),
            posts_with_zero_likes: self.zero_posts_total() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_with(users: usize, posts_per_user: usize) -> Ledger {
        let mut ledger = Ledger::default();
        for slot in 0..users {
            let mut user = User {
                address_index: slot,
                email: format!("u{slot}@example.com"),
                password: String::new(),
                id: slot as u64 + 1,
                session: None,
                posts: Vec::new(),
                likes: BTreeSet::new(),
                zero_posts: 0,
                like_budget: 0,
                like_budget_used: 0,
            };
            for ordinal in 1..=posts_per_user {
                user.posts.push(ledger.posts.len());
                user.zero_posts += 1;
                ledger.posts.push(Post {
                    author: slot,
                    ordinal,
                    id: ledger.posts.len() as u64 + 100,
                    likers: BTreeSet::new(),
                });
            }
            ledger.users.push(user);
        }
        ledger
    }

    #[test]
    fn unlike_removes_the_liker_itself_and_zero_counts_follow() {
        let mut ledger = ledger_with(3, 1);
        assert_eq!(ledger.zero_posts_total(), 3);
        ledger.apply(1, 0, LikeAction::Like);
        ledger.apply(2, 0, LikeAction::Like);
        assert_eq!(ledger.zero_posts_total(), 2);
        // The original popped the *first* liker (u1); the liker that unlikes is u2.
        ledger.apply(2, 0, LikeAction::Unlike);
        assert_eq!(
            ledger.posts[0].likers.iter().copied().collect::<Vec<_>>(),
            vec![1]
        );
        assert!(ledger.users[2].likes.is_empty());
        ledger.revert(1, 0, LikeAction::Like);
        assert_eq!(ledger.zero_posts_total(), 3);
        assert_eq!(ledger.stats().likes, 0);
    }
}
