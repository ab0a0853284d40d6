//! The `User` actor: a profile, its posts, the like records on its posts, and the set of posts
//! it likes. Snapshot parts are separate sled keys (`profile`, `post/<id>`, `like/<post><user>`,
//! `gave/<post>`), so a checkpoint rewrites only what changed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{LikeOutcome, LikeRecord, LikeView, Page, PostView, Profile, SocialEvent, UserView};
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Ctx, Decision, Directories, Directory, Entity, Event, Kind};
use crate::store::{SnapshotBatch, Store};

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PostState {
    text: String,
    likes: u64,
    created_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
struct Counters {
    posts_count: u64,
    likes_given: u64,
}

#[derive(Debug, Default)]
pub struct User {
    id: u64,
    profile: Option<Profile>,
    counters: Counters,
    posts: BTreeMap<u64, PostState>,
    /// (post id, liker id) → record.
    likes: BTreeMap<(u64, u64), LikeRecord>,
    gave: BTreeSet<u64>,
    profile_dirty: bool,
    counters_dirty: bool,
    posts_dirty: BTreeSet<u64>,
    likes_dirty: BTreeSet<(u64, u64)>,
    gave_dirty: BTreeSet<u64>,
}

const PROFILE: &[u8] = b"profile";
const COUNTERS: &[u8] = b"counters";
const POST: &[u8] = b"post/";
const LIKE: &[u8] = b"like/";
const GAVE: &[u8] = b"gave/";

fn sub(prefix: &[u8], ids: &[u64]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

fn ids<const N: usize>(bytes: &[u8], user: u64) -> Result<[u64; N]> {
    if bytes.len() != N * 8 {
        return Err(Error::Store(format!("user {user}: bad snapshot key")));
    }
    let mut out = [0u64; N];
    for (index, chunk) in bytes.chunks_exact(8).enumerate() {
        // Invariant: chunks_exact(8) yields 8-byte chunks.
        out[index] = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
    }
    Ok(out)
}

/// A snapshot part of a user, as stored.
#[derive(Debug, Serialize, Deserialize)]
enum Part {
    Profile(Profile),
    Counters(Counters),
    Post(PostState),
    Like(LikeRecord),
    Gave,
}

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

    fn post_view(&self, post_id: u64, post: &PostState) -> PostView {
        PostView {
            id: post_id,
            author_id: self.id,
            text: post.text.clone(),
            likes: post.likes,
            created_at_ms: post.created_at_ms,
        }
    }

    fn exists(&self) -> Result<&Profile> {
        self.profile.as_ref().ok_or(Error::NotFound("user"))
    }
}

impl Entity for User {
    const KIND: Kind = Kind::User;
    type Command = UserCommand;
    type Reply = UserReply;

    fn load(id: u64, store: &Store) -> Result<Self> {
        let key = ActorKey::new(Kind::User, id);
        let mut user = User {
            id,
            ..User::default()
        };
        for (name, part) in store.scan::<Part>(key)? {
            match part {
                Part::Profile(profile) => user.profile = Some(profile),
                Part::Counters(counters) => user.counters = counters,
                Part::Post(post) => {
                    let [post_id] = ids::<1>(&name[POST.len()..], id)?;
                    user.posts.insert(post_id, post);
                }
                Part::Like(record) => {
                    let [post_id, liker] = ids::<2>(&name[LIKE.len()..], id)?;
                    user.likes.insert((post_id, liker), record);
                }
                Part::Gave => {
                    let [post_id] = ids::<1>(&name[GAVE.len()..], id)?;
                    user.gave.insert(post_id);
                }
            }
        }
        Ok(user)
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
                if let Some(max) = ctx.config.social.max_posts_per_user {
                    if self.counters.posts_count >= max {
                        return Err(Error::forbidden(
                            "post_limit_reached",
                            format!("a user may write at most {max} posts"),
                        ));
                    }
                }
                let created_at_ms = ctx.now_ms;
                let post = PostState {
                    text: text.clone(),
                    likes: 0,
                    created_at_ms,
                };
                let reply = UserReply::Post(self.post_view(post_id, &post));
                Ok(Decision {
                    events: vec![
                        (
                            ctx.key,
                            Event::Social(SocialEvent::PostCreated {
                                post_id,
                                text,
                                created_at_ms,
                            }),
                        ),
                        (
                            ActorKey::new(Kind::PostIndex, super::posts::POST_INDEX_ID),
                            Event::Social(SocialEvent::PostIndexed {
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
                    if zero_likes && post.likes != 0 {
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
                let post = self.posts.get(&post_id).ok_or(Error::NotFound("post"))?;
                if liker == self.id {
                    return Err(Error::forbidden(
                        "own_post",
                        "a user cannot like its own post",
                    ));
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
                    let max = ctx.config.social.max_likes_per_user.unwrap_or(0);
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
                let likes = if on { post.likes + 1 } else { post.likes - 1 };
                Ok(Decision {
                    events: vec![
                        (
                            ctx.key,
                            Event::Social(SocialEvent::LikeSet {
                                post_id,
                                user_id: liker,
                                record,
                                likes,
                            }),
                        ),
                        (
                            ActorKey::new(Kind::User, liker),
                            Event::Social(SocialEvent::LikeGiven { post_id, on }),
                        ),
                        (
                            ActorKey::new(Kind::PostIndex, super::posts::POST_INDEX_ID),
                            Event::Social(SocialEvent::PostLikes { post_id, likes }),
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
                gave: self.gave.iter().copied().collect(),
            })))),
        }
    }

    fn apply(&mut self, event: &Event) {
        let Event::Social(event) = event else {
            unreachable!("a user receives only social events");
        };
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
                self.posts.insert(
                    *post_id,
                    PostState {
                        text: text.clone(),
                        likes: 0,
                        created_at_ms: *created_at_ms,
                    },
                );
                self.counters.posts_count += 1;
                self.counters_dirty = true;
                self.posts_dirty.insert(*post_id);
            }
            SocialEvent::LikeSet {
                post_id,
                user_id,
                record,
                likes,
            } => {
                self.likes.insert((*post_id, *user_id), *record);
                self.likes_dirty.insert((*post_id, *user_id));
                if let Some(post) = self.posts.get_mut(post_id) {
                    post.likes = *likes;
                    self.posts_dirty.insert(*post_id);
                }
            }
            SocialEvent::LikeGiven { post_id, on } => {
                let changed = if *on {
                    self.gave.insert(*post_id)
                } else {
                    self.gave.remove(post_id)
                };
                if changed {
                    self.counters.likes_given = self.gave.len() as u64;
                    self.counters_dirty = true;
                    self.gave_dirty.insert(*post_id);
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
                batch.put(key, PROFILE, &Part::Profile(profile.clone()));
            }
        }
        if std::mem::take(&mut self.counters_dirty) {
            batch.put(key, COUNTERS, &Part::Counters(self.counters));
        }
        for post_id in std::mem::take(&mut self.posts_dirty) {
            if let Some(post) = self.posts.get(&post_id) {
                batch.put(key, &sub(POST, &[post_id]), &Part::Post(post.clone()));
            }
        }
        for (post_id, liker) in std::mem::take(&mut self.likes_dirty) {
            if let Some(record) = self.likes.get(&(post_id, liker)) {
                batch.put(key, &sub(LIKE, &[post_id, liker]), &Part::Like(*record));
            }
        }
        for post_id in std::mem::take(&mut self.gave_dirty) {
            if self.gave.contains(&post_id) {
                batch.put(key, &sub(GAVE, &[post_id]), &Part::Gave);
            } else {
                batch.remove(key, &sub(GAVE, &[post_id]));
            }
        }
    }

    fn directory(directories: &Directories) -> &Directory<Self> {
        &directories.user
    }
}
