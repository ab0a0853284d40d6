//! The `User` actor: a profile, its posts, the like records on its posts, and the set of posts
//! it likes.
//!
//! Snapshot parts (separate store keys, so a checkpoint rewrites only what changed):
//! - `profile`: the [`Profile`];
//! - `posts/<chunk>`: its posts, a [`Chunked`] map post → text and creation time (what never
//!   changes of a post), so a user's new posts rewrite only its tail chunk;
//! - `likes/<chunk>`: the like records on its posts, a [`Chunked`] map (post, liker) → record;
//! - `gave/<chunk>`: its likes, a [`Chunked`] map post → on/off (an unlike turns a flag off).
//!
//! A like therefore dirties the author's tail `likes` chunk and the liker's tail `gave` chunk.
//! What is derived is not stored: a post's like count (its records that are on), `posts_count`
//! (its posts) and `likes_given` (its flags that are on) are recomputed at load. In memory they
//! are fields maintained by `apply`, so the checker can still catch one that disagrees.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{LikeOutcome, LikeRecord, LikeView, Page, PostView, Profile, SocialEvent, UserView};
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Event, Kind};
use crate::store::{Chunked, SnapshotBatch, Store};

#[derive(Debug)]
pub enum UserCommand {
    Get,
    Credentials,
    CreatePost {
        post_id: u64,
        text: String,
    },
    GetPost {
        post_id: u64,
    },
    ListPosts {
        zero_likes: bool,
        after: Option<u64>,
        limit: usize,
    },
    /// `limit_reached`: the liker is at `limits.max_likes_per_user` (read by the caller).
    SetLike {
        post_id: u64,
        liker: u64,
        on: bool,
        limit_reached: bool,
    },
    ListLikes {
        post_id: u64,
        after: Option<u64>,
        limit: usize,
    },
    /// Everything the invariant checker needs.
    Dump,
}

/// What the checker reads of one user.
#[derive(Debug, Clone)]
pub struct UserDump {
    pub view: Option<UserView>,
    pub posts: Vec<PostView>,
    /// (post, liker, liked) for every like record on this user's posts.
    pub like_records: Vec<(u64, u64, bool)>,
    /// Posts this user likes (on).
    pub gave: Vec<u64>,
}

#[derive(Debug)]
pub enum UserReply {
    User(UserView),
    Credentials(String),
    Post(PostView),
    Posts(Page<PostView>),
    Like(LikeOutcome),
    Likes(Page<LikeView>),
    Dump(Box<UserDump>),
}

fn unexpected() -> Error {
    Error::Unavailable("unexpected reply kind")
}

impl UserReply {
    pub fn into_user(self) -> Result<UserView> {
        match self {
            UserReply::User(view) => Ok(view),
            _ => Err(unexpected()),
        }
    }
    pub fn into_post(self) -> Result<PostView> {
        match self {
            UserReply::Post(view) => Ok(view),
            _ => Err(unexpected()),
        }
    }
    pub fn into_posts(self) -> Result<Page<PostView>> {
        match self {
            UserReply::Posts(page) => Ok(page),
            _ => Err(unexpected()),
        }
    }
    pub fn into_like(self) -> Result<LikeOutcome> {
        match self {
            UserReply::Like(outcome) => Ok(outcome),
            _ => Err(unexpected()),
        }
    }
    pub fn into_likes(self) -> Result<Page<LikeView>> {
        match self {
            UserReply::Likes(page) => Ok(page),
            _ => Err(unexpected()),
        }
    }
    pub fn into_dump(self) -> Result<UserDump> {
        match self {
            UserReply::Dump(dump) => Ok(*dump),
            _ => Err(unexpected()),
        }
    }
}

/// What never changes of a post (its like count is derived, kept in `User::post_likes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredPost {
    text: String,
    created_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Counters {
    posts_count: u64,
    likes_given: u64,
}

#[derive(Debug, Default)]
pub struct User {
    id: u64,
    profile: Option<Profile>,
    /// Maintained by `apply`, recomputed from the records at load; never stored.
    counters: Counters,
    /// post id → text and creation time.
    posts: Chunked<u64, StoredPost>,
    /// post id → its like records that are on. Derived: maintained by `apply`, rebuilt at load.
    post_likes: BTreeMap<u64, u64>,
    /// (post id, liker id) → record.
    likes: Chunked<(u64, u64), LikeRecord>,
    /// post id → whether this user's like of it is on.
    gave: Chunked<u64, bool>,
    profile_dirty: bool,
}

const PROFILE: &[u8] = b"profile";
const POSTS: &[u8] = b"posts/";
const LIKES: &[u8] = b"likes/";
const GAVE: &[u8] = b"gave/";

impl User {
    fn view(&self) -> Option<UserView> {
        self.profile.as_ref().map(|profile| UserView {
            id: self.id,
            email: profile.email.clone(),
            full_name: profile.full_name.clone(),
            posts_count: self.counters.posts_count,
            likes_given: self.counters.likes_given,
            created_at_ms: profile.created_at_ms,
            enrichment: profile.enrichment.clone(),
        })
    }

    fn post_view(&self, post_id: u64, post: &StoredPost) -> PostView {
        PostView {
            id: post_id,
            author_id: self.id,
            text: post.text.clone(),
            likes: self.likes_of(post_id),
            created_at_ms: post.created_at_ms,
        }
    }

    fn likes_of(&self, post_id: u64) -> u64 {
        self.post_likes.get(&post_id).copied().unwrap_or(0)
    }

    fn exists(&self) -> Result<&Profile> {
        self.profile.as_ref().ok_or(Error::NotFound("user"))
    }
}

impl Entity for User {
    type Event = SocialEvent;
    const KIND: Kind = super::USER;
    type Command = UserCommand;
    type Reply = UserReply;

    fn load(id: u64, store: &Store) -> Result<Self> {
        let key = ActorKey::new(super::USER, id);
        let posts = Chunked::<u64, StoredPost>::load(store, key, POSTS)?;
        let mut post_likes: BTreeMap<u64, u64> = posts.iter().map(|(id, _)| (*id, 0)).collect();
        let likes = Chunked::<(u64, u64), LikeRecord>::load(store, key, LIKES)?;
        for ((post_id, _), record) in likes.iter() {
            if record.liked {
                if let Some(count) = post_likes.get_mut(post_id) {
                    *count += 1;
                }
            }
        }
        let gave = Chunked::<u64, bool>::load(store, key, GAVE)?;
        let counters = Counters {
            posts_count: posts.len() as u64,
            likes_given: gave.values().filter(|on| **on).count() as u64,
        };
        Ok(User {
            id,
            profile: store.get::<Profile>(key, PROFILE)?,
            counters,
            posts,
            post_likes,
            likes,
            gave,
            ..User::default()
        })
    }

    fn decide(&self, command: UserCommand, ctx: &Ctx<'_>) -> Result<Decision<UserReply>> {
        match command {
            UserCommand::Get => {
                let view = self.view().ok_or(Error::NotFound("user"))?;
                Ok(Decision::read(UserReply::User(view)))
            }
            UserCommand::Credentials => {
                let profile = self.exists()?;
                Ok(Decision::read(UserReply::Credentials(
                    profile.password_hash.clone(),
                )))
            }
            UserCommand::CreatePost { post_id, text } => {
                self.exists()?;
                if let Some(max) = ctx.config.section::<super::SocialConfig>().max_posts_per_user {
                    if self.counters.posts_count >= max {
                        return Err(Error::forbidden(
                            "post_limit_reached",
                            format!("a user may write at most {max} posts"),
                        ));
                    }
                }
                let created_at_ms = ctx.now_ms;
                let post = StoredPost {
                    text: text.clone(),
                    created_at_ms,
                };
                let reply = UserReply::Post(self.post_view(post_id, &post));
                Ok(Decision {
                    events: vec![
                        (
                            ctx.key,
                            Event::new(SocialEvent::PostCreated {
                                post_id,
                                text,
                                created_at_ms,
                            }),
                        ),
                        (
                            ActorKey::new(super::POST_INDEX, super::posts::POST_INDEX_ID),
                            Event::new(SocialEvent::PostIndexed {
                                post_id,
                                author_id: self.id,
                                created_at_ms,
                            }),
                        ),
                    ],
                    reply,
                })
            }
            UserCommand::GetPost { post_id } => {
                let post = self.posts.get(&post_id).ok_or(Error::NotFound("post"))?;
                Ok(Decision::read(UserReply::Post(
                    self.post_view(post_id, post),
                )))
            }
            UserCommand::ListPosts {
                zero_likes,
                after,
                limit,
            } => {
                let start = after.map_or(0, |after| after.saturating_add(1));
                let mut items = Vec::with_capacity(limit.min(64));
                let mut next = None;
                for (post_id, post) in self.posts.range(start..) {
                    if zero_likes && self.likes_of(*post_id) != 0 {
                        continue;
                    }
                    if items.len() == limit {
                        next = items.last().map(|view: &PostView| view.id);
                        break;
                    }
                    items.push(self.post_view(*post_id, post));
                }
                Ok(Decision::read(UserReply::Posts(Page { items, next })))
            }
            UserCommand::SetLike {
                post_id,
                liker,
                on,
                limit_reached,
            } => {
                if !self.posts.contains_key(&post_id) {
                    return Err(Error::NotFound("post"));
                }
                if liker == self.id {
                    // A user never likes its own post, so taking such a like back finds none:
                    // `not_liked`, as API.md lists for the unlike route.
                    return Err(if on {
                        Error::forbidden("own_post", "a user cannot like its own post")
                    } else {
                        Error::conflict("not_liked", "this post is not liked")
                    });
                }
                let current = self.likes.get(&(post_id, liker)).copied();
                let is_on = current.is_some_and(|record| record.liked);
                if on && is_on {
                    return Err(Error::conflict(
                        "already_liked",
                        "this post is already liked",
                    ));
                }
                if !on && !is_on {
                    return Err(Error::conflict("not_liked", "this post is not liked"));
                }
                if on && limit_reached {
                    let max = ctx.config.section::<super::SocialConfig>().max_likes_per_user.unwrap_or(0);
                    return Err(Error::forbidden(
                        "like_limit_reached",
                        format!("a user may have at most {max} likes"),
                    ));
                }
                let now = ctx.now_ms;
                let record = match current {
                    None => LikeRecord {
                        liked: true,
                        first_liked_at_ms: now,
                        updated_at_ms: now,
                        times_liked: 1,
                    },
                    Some(record) => LikeRecord {
                        liked: on,
                        updated_at_ms: now,
                        times_liked: record.times_liked + u64::from(on),
                        ..record
                    },
                };
                // Invariant: on ⇒ the like was off, off ⇒ it was on; so this never underflows.
                let current_likes = self.likes_of(post_id);
                let likes = if on {
                    current_likes + 1
                } else {
                    current_likes - 1
                };
                Ok(Decision {
                    events: vec![
                        (
                            ctx.key,
                            Event::new(SocialEvent::LikeSet {
                                post_id,
                                user_id: liker,
                                record,
                                likes,
                            }),
                        ),
                        (
                            ActorKey::new(super::USER, liker),
                            Event::new(SocialEvent::LikeGiven { post_id, on }),
                        ),
                        (
                            ActorKey::new(super::POST_INDEX, super::posts::POST_INDEX_ID),
                            Event::new(SocialEvent::PostLikes { post_id, likes }),
                        ),
                    ],
                    reply: UserReply::Like(LikeOutcome {
                        post_id,
                        user_id: liker,
                        likes,
                    }),
                })
            }
            UserCommand::ListLikes {
                post_id,
                after,
                limit,
            } => {
                if !self.posts.contains_key(&post_id) {
                    return Err(Error::NotFound("post"));
                }
                let start = after.map_or(0, |after| after.saturating_add(1));
                let mut items: Vec<LikeView> = Vec::with_capacity(limit.min(64));
                let mut next = None;
                for ((_, user_id), record) in
                    self.likes.range((post_id, start)..=(post_id, u64::MAX))
                {
                    if items.len() == limit {
                        next = items.last().map(|view| view.user_id);
                        break;
                    }
                    items.push(LikeView {
                        user_id: *user_id,
                        liked: record.liked,
                        first_liked_at_ms: record.first_liked_at_ms,
                        updated_at_ms: record.updated_at_ms,
                        times_liked: record.times_liked,
                    });
                }
                Ok(Decision::read(UserReply::Likes(Page { items, next })))
            }
            UserCommand::Dump => Ok(Decision::read(UserReply::Dump(Box::new(UserDump {
                view: self.view(),
                posts: self
                    .posts
                    .iter()
                    .map(|(post_id, post)| self.post_view(*post_id, post))
                    .collect(),
                like_records: self
                    .likes
                    .iter()
                    .map(|((post_id, liker), record)| (*post_id, *liker, record.liked))
                    .collect(),
                gave: self
                    .gave
                    .iter()
                    .filter(|(_, on)| **on)
                    .map(|(post_id, _)| *post_id)
                    .collect(),
            })))),
        }
    }

    fn apply(&mut self, event: &SocialEvent) {
        match event {
            SocialEvent::UserCreated { profile } => {
                self.profile = Some(profile.clone());
                self.profile_dirty = true;
            }
            SocialEvent::PostCreated {
                post_id,
                text,
                created_at_ms,
            } => {
                let post = StoredPost {
                    text: text.clone(),
                    created_at_ms: *created_at_ms,
                };
                if self.posts.insert_or_assign(*post_id, post).is_none() {
                    self.post_likes.insert(*post_id, 0);
                    self.counters.posts_count += 1;
                }
            }
            SocialEvent::LikeSet {
                post_id,
                user_id,
                record,
                likes,
            } => {
                self.likes.insert_or_assign((*post_id, *user_id), *record);
                if let Some(count) = self.post_likes.get_mut(post_id) {
                    *count = *likes;
                }
            }
            SocialEvent::LikeGiven { post_id, on } => {
                // An assignment: a flag already in the state asked for changes nothing (replay).
                let was_on = self.gave.get(post_id).copied().unwrap_or(false);
                if was_on != *on {
                    self.gave.insert_or_assign(*post_id, *on);
                    self.counters.likes_given = if *on {
                        self.counters.likes_given + 1
                    } else {
                        self.counters.likes_given.saturating_sub(1)
                    };
                }
            }
            SocialEvent::AccountRegistered { .. }
            | SocialEvent::PostIndexed { .. }
            | SocialEvent::PostLikes { .. } => {
                unreachable!("not a user event: {event:?}")
            }
        }
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        if std::mem::take(&mut self.profile_dirty) {
            if let Some(profile) = &self.profile {
                batch.put(key, PROFILE, profile);
            }
        }
        self.posts.save(key, POSTS, batch);
        self.likes.save(key, LIKES, batch);
        self.gave.save(key, GAVE, batch);
    }
}
