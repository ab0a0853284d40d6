//! The `PostIndex` singleton: post → (author, likes), the zero-likes set, and the totals behind
//! `stats`. Every event it receives is an assignment from another actor, so replay may re-apply
//! them. Snapshot parts: `posts/<chunk>`, a [`Chunked`] map post → (author, likes) (posts are
//! indexed in about id order, so a pass that changes many posts' counts writes few chunks), and
//! `next` (the post id high-water mark that seeds the id allocator at open). The zero-likes set
//! and the like total are derived: rebuilt from the entries at load.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Page, SocialEvent, SocialStats};
use crate::error::Result;
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Kind};
use crate::store::{Chunked, SnapshotBatch, Store};

/// The id of the one `PostIndex` actor.
pub const POST_INDEX_ID: u64 = 0;

#[derive(Debug)]
pub enum PostIndexCommand {
    Author {
        post_id: u64,
    },
    List {
        zero_likes: bool,
        after: Option<u64>,
        limit: usize,
    },
    Stats,
}

#[derive(Debug)]
pub enum PostIndexReply {
    Author(Option<u64>),
    /// (post id, author id) pairs.
    List(Page<(u64, u64)>),
    Stats(SocialStats),
}

impl PostIndexReply {
    pub fn into_author(self) -> Option<u64> {
        match self {
            PostIndexReply::Author(author) => author,
            _ => None,
        }
    }
    pub fn into_list(self) -> Page<(u64, u64)> {
        match self {
            PostIndexReply::List(page) => page,
            _ => Page {
                items: Vec::new(),
                next: None,
            },
        }
    }
    pub fn into_stats(self) -> SocialStats {
        match self {
            PostIndexReply::Stats(stats) => stats,
            _ => SocialStats::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub author_id: u64,
    pub likes: u64,
}

#[derive(Debug, Default)]
pub struct PostIndex {
    posts: Chunked<u64, Entry>,
    zero: BTreeSet<u64>,
    likes_total: u64,
    next_post_id: u64,
    next_dirty: bool,
}

const POSTS: &[u8] = b"posts/";
const NEXT: &[u8] = b"next";

impl PostIndex {
    fn set_likes(&mut self, post_id: u64, likes: u64) {
        let Some(entry) = self.posts.get(&post_id).copied() else {
            return;
        };
        // Invariant: likes_total is the sum of entry.likes, so it holds entry.likes.
        self.likes_total = self.likes_total - entry.likes + likes;
        if likes == 0 {
            self.zero.insert(post_id);
        } else {
            self.zero.remove(&post_id);
        }
        self.posts
            .insert_or_assign(post_id, Entry { likes, ..entry });
    }

    /// Reads the post id high-water mark from a snapshot without activating the actor.
    pub(crate) fn next_post_id(store: &Store) -> Result<u64> {
        let key = ActorKey::new(super::POST_INDEX, POST_INDEX_ID);
        Ok(store.get::<u64>(key, NEXT)?.unwrap_or(1))
    }
}

impl Entity for PostIndex {
    type Event = SocialEvent;
    const KIND: Kind = super::POST_INDEX;
    type Command = PostIndexCommand;
    type Reply = PostIndexReply;

    fn load(_id: u64, store: &Store) -> Result<Self> {
        let key = ActorKey::new(super::POST_INDEX, POST_INDEX_ID);
        let posts = Chunked::<u64, Entry>::load(store, key, POSTS)?;
        let mut index = PostIndex {
            next_post_id: store.get::<u64>(key, NEXT)?.unwrap_or(1),
            ..PostIndex::default()
        };
        for (post_id, entry) in posts.iter() {
            index.likes_total += entry.likes;
            if entry.likes == 0 {
                index.zero.insert(*post_id);
            }
        }
        index.posts = posts;
        Ok(index)
    }

    fn decide(&self, command: PostIndexCommand, _: &Ctx<'_>) -> Result<Decision<PostIndexReply>> {
        Ok(Decision::read(match command {
            PostIndexCommand::Author { post_id } => {
                PostIndexReply::Author(self.posts.get(&post_id).map(|entry| entry.author_id))
            }
            PostIndexCommand::List {
                zero_likes,
                after,
                limit,
            } => {
                let start = after.map_or(0, |after| after.saturating_add(1));
                let mut items: Vec<(u64, u64)> = if zero_likes {
                    self.zero
                        .range(start..)
                        .take(limit + 1)
                        .filter_map(|post_id| {
                            // Invariant: every post in `zero` is in `posts`.
                            self.posts
                                .get(post_id)
                                .map(|entry| (*post_id, entry.author_id))
                        })
                        .collect()
                } else {
                    self.posts
                        .range(start..)
                        .take(limit + 1)
                        .map(|(post_id, entry)| (*post_id, entry.author_id))
                        .collect()
                };
                let next = if items.len() > limit {
                    items.truncate(limit);
                    items.last().map(|(post_id, _)| *post_id)
                } else {
                    None
                };
                PostIndexReply::List(Page { items, next })
            }
            PostIndexCommand::Stats => PostIndexReply::Stats(SocialStats {
                users: 0,
                posts: self.posts.len() as u64,
                likes: self.likes_total,
                posts_with_zero_likes: self.zero.len() as u64,
            }),
        }))
    }

    fn apply(&mut self, event: &SocialEvent) {
        match event {
            SocialEvent::PostIndexed {
                post_id, author_id, ..
            } => {
                if !self.posts.contains_key(post_id) {
                    self.posts.insert_or_assign(
                        *post_id,
                        Entry {
                            author_id: *author_id,
                            likes: 0,
                        },
                    );
                    self.zero.insert(*post_id);
                }
                if *post_id >= self.next_post_id {
                    self.next_post_id = post_id + 1;
                    self.next_dirty = true;
                }
            }
            SocialEvent::PostLikes { post_id, likes } => {
                self.set_likes(*post_id, *likes)
            }
            other => unreachable!("not a post index event: {other:?}"),
        }
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        self.posts.save(key, POSTS, batch);
        if std::mem::take(&mut self.next_dirty) {
            batch.put(key, NEXT, &self.next_post_id);
        }
    }
}
