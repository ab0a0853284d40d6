//! The social workload: users, JWT-free credentials, posts, like/unlike with exact counters.
//!
//! # Actors
//! - [`user::User`] (one per user): profile, password hash, its posts, the like records on its
//!   posts (`liked`, `first_liked_at`, `updated_at`, `times_liked`), and the set of posts it likes.
//! - [`accounts::Accounts`] (singleton): e-mail (lower-cased) → user id; allocates user ids. It is
//!   the one place sign-up uniqueness is decided, so two concurrent sign-ups of one address give
//!   exactly one success.
//! - [`posts::PostIndex`] (singleton): post → author and like count; the zero-likes set and the
//!   totals behind `stats`.
//!
//! # Records
//! Every change is one WAL record (see `runtime`): sign-up = {Accounts: registered, User: created};
//! post = {User: post created, PostIndex: post indexed}; like/unlike = {author: like record set,
//! liker: like given on/off, PostIndex: post likes = n}. Events for another actor are idempotent
//! assignments, so a crash keeps a change whole or not at all, and replay may re-apply them.
//!
//! # Invariants (API.md), checked by [`check::check`]
//! `post.likes` = number of users whose like on it is on; `user.posts_count` = posts it wrote;
//! `user.likes_given` = its likes that are on; one like record per (user, post); no count below 0.
//!
//! # Ground rules
//! `max_posts_per_user` is decided by the author itself, so it is exact. `max_likes_per_user` is
//! checked against the liker's count read just before the author decides; `LikeGate` runs one
//! user's likes one at a time while that limit is set, so it is exact too.

pub mod accounts;
pub mod check;
pub mod posts;
pub mod user;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::config::{DomainConfig, EngineConfig};
use crate::runtime::{Domain, DomainEvent, Kind, Registry, Shared};
use crate::store::Store;

pub use check::Difference;

/// The social domain: registered in `lib.rs`'s `domains!`.
pub const DOMAIN: SocialDomain = SocialDomain;

/// The e-mail index (singleton).
pub const ACCOUNTS: Kind = Kind::new(2);
/// A user.
pub const USER: Kind = Kind::new(3);
/// The post index (singleton).
pub const POST_INDEX: Kind = Kind::new(4);

pub struct SocialDomain;

impl Domain for SocialDomain {
    fn name(&self) -> &'static str {
        "social"
    }

    fn register(&self, registry: &mut Registry) {
        registry.kind::<accounts::Accounts>("accounts");
        registry.kind::<user::User>("user");
        registry.kind::<posts::PostIndex>("post_index");
        registry.config::<SocialConfig>();
    }

    fn configure_for_tests(&self, config: &mut EngineConfig) {
        *config.section_mut::<SocialConfig>() = SocialConfig::for_tests();
    }

    fn start(
        &self,
        store: &Store,
        config: &EngineConfig,
    ) -> Result<Option<Box<dyn std::any::Any + Send + Sync>>> {
        Ok(Some(Box::new(SocialState {
            post_ids: PostIds::new(posts::PostIndex::next_post_id(store)?),
            authors: AuthorCache::new(config.section::<SocialConfig>().author_cache_entries_max),
            like_gate: LikeGate::new(),
        })))
    }
}

/// What the social API handles share (made at open).
pub(crate) struct SocialState {
    post_ids: PostIds,
    authors: AuthorCache,
    like_gate: LikeGate,
}

impl crate::Engine {
    /// The social workload (see [`crate::social`]).
    pub fn social(&self) -> Social<'_> {
        let state = self.state::<SocialState>();
        Social {
            shared: self.shared(),
            post_ids: &state.post_ids,
            authors: &state.authors,
            like_gate: &state.like_gate,
            config: self.config().section::<SocialConfig>(),
        }
    }
}

/// Largest post text, in bytes (API.md: `invalid_text` when empty or larger).
pub const POST_TEXT_BYTES_MAX: usize = 5000;
/// Shortest accepted password, in characters (API.md: `weak_password`).
pub const PASSWORD_CHARS_MIN: usize = 8;
/// Longest accepted password, in characters (bounds the hashing cost). Limits on text count
/// characters, as JSON Schema's `maxLength` does, so the OpenAPI document states them exactly;
/// the post text, whose limit API.md fixes in bytes, is the exception.
pub const PASSWORD_CHARS_MAX: usize = 1024;
/// Longest e-mail address, in characters (RFC 5321's path limit, 254).
pub const EMAIL_CHARS_MAX: usize = 254;
/// Longest local part of an e-mail address (before the `@`), in characters.
pub const EMAIL_LOCAL_CHARS_MAX: usize = 64;
/// Longest full name, in characters.
pub const FULL_NAME_CHARS_MAX: usize = 200;

/// Enrichment data found for a user at sign-up (e.g. from a Clearbit-style service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Enrichment {
    pub full_name: Option<String>,
    pub company: Option<String>,
    pub location: Option<String>,
    /// Which service produced it.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SocialEvent {
    /// Accounts: `email_key` (lower-cased) now belongs to `user_id`.
    AccountRegistered { email_key: String, user_id: u64 },
    /// User (from Accounts): the profile, assigned whole.
    UserCreated { profile: Profile },
    /// User: a post it wrote.
    PostCreated {
        post_id: u64,
        text: String,
        created_at_ms: Millis,
    },
    /// PostIndex (from User): `post_id` exists and belongs to `author_id`.
    PostIndexed {
        post_id: u64,
        author_id: u64,
        created_at_ms: Millis,
    },
    /// Author: the like record of (`user_id`, `post_id`) is now `record`; the post has `likes`.
    LikeSet {
        post_id: u64,
        user_id: u64,
        record: LikeRecord,
        likes: u64,
    },
    /// Liker (from the author): its like of `post_id` is on or off.
    LikeGiven { post_id: u64, on: bool },
    /// PostIndex (from the author): `post_id` now has `likes`.
    PostLikes { post_id: u64, likes: u64 },
}

impl DomainEvent for SocialEvent {
    const TAG: u32 = 1;
}

/// A user's profile as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: u64,
    pub email: String,
    pub password_hash: String,
    pub full_name: Option<String>,
    pub created_at_ms: Millis,
    pub enrichment: Option<Enrichment>,
}

/// One like record: the original's "extra data" on a like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LikeRecord {
    pub liked: bool,
    pub first_liked_at_ms: Millis,
    pub updated_at_ms: Millis,
    pub times_liked: u64,
}

/// A user as shown to clients (`email` only to the user itself and admin: `net` decides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub id: u64,
    pub email: String,
    pub full_name: Option<String>,
    pub posts_count: u64,
    pub likes_given: u64,
    pub created_at_ms: Millis,
    pub enrichment: Option<Enrichment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostView {
    pub id: u64,
    pub author_id: u64,
    pub text: String,
    pub likes: u64,
    pub created_at_ms: Millis,
}

/// The reply to like/unlike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LikeOutcome {
    pub post_id: u64,
    pub user_id: u64,
    pub likes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LikeView {
    pub user_id: u64,
    pub liked: bool,
    pub first_liked_at_ms: Millis,
    pub updated_at_ms: Millis,
    pub times_liked: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SocialStats {
    pub users: u64,
    pub posts: u64,
    pub likes: u64,
    pub posts_with_zero_likes: u64,
}

pub use crate::Page;

/// Ground rules and costs of the social workload. The server reads them from the keys API.md
/// names (`limits.max_posts_per_user`, `limits.max_likes_per_user`,
/// `auth.password_hash_memory_kib`, `auth.password_hash_iterations`); this `Default` is the
/// only statement of their defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocialConfig {
    /// `limits.max_posts_per_user`: unset = no limit.
    pub max_posts_per_user: Option<u64>,
    /// `limits.max_likes_per_user`: unset = no limit.
    pub max_likes_per_user: Option<u64>,
    /// argon2id memory cost, KiB (OWASP minimum 19456).
    pub password_hash_memory_kib: u32,
    /// argon2id iterations.
    pub password_hash_iterations: u32,
    /// Entries of the post → author cache (see [`AuthorCache`]); about 40 bytes each.
    pub author_cache_entries_max: usize,
}

impl Default for SocialConfig {
    fn default() -> Self {
        SocialConfig {
            max_posts_per_user: None,
            max_likes_per_user: None,
            password_hash_memory_kib: 19_456,
            password_hash_iterations: 2,
            author_cache_entries_max: 1_000_000,
        }
    }
}

impl DomainConfig for SocialConfig {
    const SECTION: &'static str = "social";
}

impl SocialConfig {
    /// Cheap hashing for tests (never for production).
    pub fn for_tests() -> Self {
        SocialConfig {
            password_hash_memory_kib: 64,
            password_hash_iterations: 1,
            ..SocialConfig::default()
        }
    }
}

/// A sign-up request.
#[derive(Debug, Clone)]
pub struct SignUp {
    pub email: String,
    pub password: String,
    pub full_name: Option<String>,
    /// Found by an enrichment adapter before the call (`None` when none ran or it failed).
    pub enrichment: Option<Enrichment>,
}

/// Post ids: allocated before the command reaches its author, seeded at open from the
/// PostIndex's durable high-water mark, so an id is never reused (gaps are fine).
#[derive(Debug)]
pub(crate) struct PostIds(AtomicU64);

impl PostIds {
    pub fn new(next: u64) -> Self {
        PostIds(AtomicU64::new(next.max(1)))
    }

    fn allocate(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// One turn at a time per liker for likes under `limits.max_likes_per_user` (striped: two
/// likers may share a stripe and wait for each other, which costs time, never correctness).
/// Unlikes do not take a turn: one that overlaps a like can only make the count read high.
pub(crate) struct LikeGate {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl LikeGate {
    const STRIPES: usize = 256;

    pub fn new() -> Self {
        LikeGate {
            stripes: (0..Self::STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    async fn enter(&self, user_id: u64) -> tokio::sync::MutexGuard<'_, ()> {
        self.stripes[(user_id % Self::STRIPES as u64) as usize]
            .lock()
            .await
    }
}

/// post → author, in front of the PostIndex, so a like or a read of a post does not pay a round
/// trip to the index actor. Sound because a post's author never changes and posts are never
/// removed; an entry is added only from a durable answer (a created post, an index lookup).
/// Bounded: a stripe that reaches its share of `author_cache_entries_max` is emptied.
pub(crate) struct AuthorCache {
    stripes: Vec<std::sync::Mutex<std::collections::HashMap<u64, u64>>>,
    stripe_entries_max: usize,
}

impl AuthorCache {
    const STRIPES: usize = 16;

    pub fn new(entries_max: usize) -> Self {
        AuthorCache {
            stripes: (0..Self::STRIPES)
                .map(|_| std::sync::Mutex::new(std::collections::HashMap::new()))
                .collect(),
            stripe_entries_max: (entries_max / Self::STRIPES).max(1),
        }
    }

    fn stripe(
        &self,
        post_id: u64,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, u64>> {
        // Invariant: nothing panics while a stripe is held (only map operations).
        self.stripes[(post_id % Self::STRIPES as u64) as usize]
            .lock()
            .expect("author cache stripe not poisoned")
    }

    fn get(&self, post_id: u64) -> Option<u64> {
        self.stripe(post_id).get(&post_id).copied()
    }

    fn insert(&self, post_id: u64, author_id: u64) {
        let mut stripe = self.stripe(post_id);
        if stripe.len() >= self.stripe_entries_max {
            stripe.clear();
        }
        stripe.insert(post_id, author_id);
    }
}

/// Checks the e-mail syntax: one `@`, a non-empty local part, a domain with a dot, no spaces or
/// control characters, within length limits.
pub fn valid_email_syntax(email: &str) -> bool {
    if email.chars().count() > EMAIL_CHARS_MAX
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.chars().count() <= EMAIL_LOCAL_CHARS_MAX
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
}

/// The disposable-domain list shipped in `data/disposable_domains.txt`.
const DISPOSABLE_DOMAINS: &str = include_str!("../../../data/disposable_domains.txt");

/// The offline verdict: syntax, then the shipped disposable-domain list.
pub fn offline_email_verdict(email: &str) -> Result<()> {
    if !valid_email_syntax(email) {
        return Err(Error::invalid_field(
            "invalid_email",
            "email",
            "not a valid e-mail address",
        ));
    }
    let domain = email
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_ascii_lowercase())
        .unwrap_or_default();
    let disposable = DISPOSABLE_DOMAINS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .any(|listed| listed == domain);
    if disposable {
        return Err(Error::unprocessable(
            "email_undeliverable",
            format!("{domain} is a disposable e-mail domain"),
        ));
    }
    Ok(())
}

fn argon2(config: &SocialConfig) -> Result<argon2::Argon2<'static>> {
    let params = argon2::Params::new(
        config.password_hash_memory_kib,
        config.password_hash_iterations,
        1,
        None,
    )
    .map_err(|e| Error::invalid("invalid_config", format!("argon2 parameters: {e}")))?;
    Ok(argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    ))
}

/// Hashes a password with argon2id and a random salt (PHC string). CPU-heavy: call it off the
/// async threads.
pub fn hash_password(password: &str, config: &SocialConfig) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| Error::invalid("invalid_field", format!("salt: {e}")))?;
    argon2(config)?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::invalid("invalid_field", format!("password hashing: {e}")))
}

/// Verifies a password against its PHC string. CPU-heavy.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Validates a sign-up before hashing: syntax, password strength, lengths.
pub fn validate_sign_up(sign_up: &SignUp) -> Result<()> {
    offline_email_verdict(&sign_up.email)?;
    if sign_up.password.chars().count() < PASSWORD_CHARS_MIN {
        return Err(Error::invalid_field(
            "weak_password",
            "password",
            format!("a password needs at least {PASSWORD_CHARS_MIN} characters"),
        ));
    }
    if sign_up.password.chars().count() > PASSWORD_CHARS_MAX {
        return Err(Error::invalid_field(
            "invalid_field",
            "password",
            format!("a password may have at most {PASSWORD_CHARS_MAX} characters"),
        ));
    }
    if let Some(name) = &sign_up.full_name {
        if name.chars().count() > FULL_NAME_CHARS_MAX || name.chars().any(char::is_control) {
            return Err(Error::invalid_field(
                "invalid_field",
                "full_name",
                format!("full_name must be at most {FULL_NAME_CHARS_MAX} characters of text"),
            ));
        }
    }
    Ok(())
}

/// Checks a post's text.
pub fn validate_text(text: &str) -> Result<()> {
    if text.trim().is_empty() || text.len() > POST_TEXT_BYTES_MAX {
        return Err(Error::invalid_field(
            "invalid_text",
            "text",
            format!("text must be non-empty and at most {POST_TEXT_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

/// The typed embedded API of the social workload. Every method returns once what it reports is
/// durable (in `sync` durability).
pub struct Social<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) post_ids: &'a PostIds,
    pub(crate) authors: &'a AuthorCache,
    pub(crate) like_gate: &'a LikeGate,
    pub(crate) config: &'a SocialConfig,
}

impl Social<'_> {
    /// Signs a user up: validates, hashes the password (blocking the calling task for the hash;
    /// `net` calls [`hash_password`] itself off the async threads and uses
    /// [`Social::sign_up_hashed`]), then registers.
    pub async fn sign_up(&self, sign_up: SignUp) -> Result<UserView> {
        validate_sign_up(&sign_up)?;
        let hash = hash_password(&sign_up.password, self.config)?;
        self.sign_up_hashed(sign_up, hash).await
    }

    /// Registers a validated sign-up whose password is already hashed.
    pub async fn sign_up_hashed(&self, sign_up: SignUp, password_hash: String) -> Result<UserView> {
        validate_sign_up(&sign_up)?;
        self.shared
            .ask::<accounts::Accounts>(
                accounts::ACCOUNTS_ID,
                accounts::AccountsCommand::Register {
                    email: sign_up.email,
                    password_hash,
                    full_name: sign_up.full_name,
                    enrichment: sign_up.enrichment,
                },
            )
            .await
            .and_then(Result::<UserView>::from)
    }

    /// The user id and password hash for an e-mail, if registered (for login).
    pub async fn credentials(&self, email: &str) -> Result<Option<(u64, String)>> {
        let Some(user_id) = self
            .shared
            .ask::<accounts::Accounts>(
                accounts::ACCOUNTS_ID,
                accounts::AccountsCommand::Lookup {
                    email: email.to_string(),
                },
            )
            .await?
            .user_id()
        else {
            return Ok(None);
        };
        match self
            .shared
            .ask::<user::User>(user_id, user::UserCommand::Credentials)
            .await?
        {
            user::UserReply::Credentials(hash) => Ok(Some((user_id, hash))),
            _ => Ok(None),
        }
    }

    /// Checks an e-mail and password; returns the user id. Blocking for the hash verification.
    pub async fn login(&self, email: &str, password: &str) -> Result<u64> {
        let invalid = || Error::Unauthenticated {
            code: "invalid_credentials",
            message: "wrong e-mail or password".into(),
        };
        match self.credentials(email).await? {
            Some((user_id, hash)) if verify_password(password, &hash) => Ok(user_id),
            _ => Err(invalid()),
        }
    }

    pub async fn user(&self, user_id: u64) -> Result<UserView> {
        self.shared
            .ask::<user::User>(user_id, user::UserCommand::Get)
            .await?
            .into_user()
    }

    /// Users by id, after `after` (exclusive), at most `limit`.
    pub async fn users(&self, after: Option<u64>, limit: usize) -> Result<Page<UserView>> {
        let ids = self
            .shared
            .ask::<accounts::Accounts>(
                accounts::ACCOUNTS_ID,
                accounts::AccountsCommand::List { after, limit },
            )
            .await?
            .into_ids();
        let mut items = Vec::with_capacity(ids.items.len());
        for id in ids.items {
            items.push(self.user(id).await?);
        }
        Ok(Page {
            items,
            next: ids.next,
        })
    }

    /// Creates a post by `author_id`.
    pub async fn create_post(&self, author_id: u64, text: String) -> Result<PostView> {
        validate_text(&text)?;
        let post_id = self.post_ids.allocate();
        let post = self
            .shared
            .ask::<user::User>(author_id, user::UserCommand::CreatePost { post_id, text })
            .await?
            .into_post()?;
        self.authors.insert(post.id, post.author_id);
        Ok(post)
    }

    async fn author_of(&self, post_id: u64) -> Result<u64> {
        if let Some(author_id) = self.authors.get(post_id) {
            return Ok(author_id);
        }
        let author_id = self
            .shared
            .ask::<posts::PostIndex>(
                posts::POST_INDEX_ID,
                posts::PostIndexCommand::Author { post_id },
            )
            .await?
            .into_author()
            .ok_or(Error::NotFound("post"))?;
        self.authors.insert(post_id, author_id);
        Ok(author_id)
    }

    pub async fn post(&self, post_id: u64) -> Result<PostView> {
        let author_id = self.author_of(post_id).await?;
        self.shared
            .ask::<user::User>(author_id, user::UserCommand::GetPost { post_id })
            .await?
            .into_post()
    }

    /// Posts by id after `after`; by one author and/or only those with zero likes.
    pub async fn posts(
        &self,
        author_id: Option<u64>,
        zero_likes: bool,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<PostView>> {
        if let Some(author_id) = author_id {
            return self
                .shared
                .ask::<user::User>(
                    author_id,
                    user::UserCommand::ListPosts {
                        zero_likes,
                        after,
                        limit,
                    },
                )
                .await?
                .into_posts();
        }
        let ids = self
            .shared
            .ask::<posts::PostIndex>(
                posts::POST_INDEX_ID,
                posts::PostIndexCommand::List {
                    zero_likes,
                    after,
                    limit,
                },
            )
            .await?
            .into_list();
        let mut items = Vec::with_capacity(ids.items.len());
        for (post_id, author_id) in ids.items {
            let view = self
                .shared
                .ask::<user::User>(author_id, user::UserCommand::GetPost { post_id })
                .await?
                .into_post()?;
            items.push(view);
        }
        Ok(Page {
            items,
            next: ids.next,
        })
    }

    /// `user_id` likes `post_id`. With `limits.max_likes_per_user` set, one user's likes run one
    /// at a time (see `LikeGate`), so the limit is exact under that user's concurrent likes.
    pub async fn like(&self, user_id: u64, post_id: u64) -> Result<LikeOutcome> {
        self.set_like(user_id, post_id, true).await
    }

    /// `user_id` takes back its like of `post_id`.
    pub async fn unlike(&self, user_id: u64, post_id: u64) -> Result<LikeOutcome> {
        self.set_like(user_id, post_id, false).await
    }

    async fn set_like(&self, user_id: u64, post_id: u64, on: bool) -> Result<LikeOutcome> {
        let author_id = self.author_of(post_id).await?;
        // The ground rule is checked against the liker's count read just before; the author
        // applies it after its own checks, so a repeated like is still `already_liked`. The
        // gate makes read-then-decide atomic per liker: the author's "like given" event reaches
        // the liker's mailbox before the author answers, so the next holder reads it.
        let (_turn, limit_reached) = match (on, self.config.max_likes_per_user) {
            (true, Some(max)) => {
                let turn = self.like_gate.enter(user_id).await;
                (Some(turn), self.user(user_id).await?.likes_given >= max)
            }
            _ => (None, false),
        };
        self.shared
            .ask::<user::User>(
                author_id,
                user::UserCommand::SetLike {
                    post_id,
                    liker: user_id,
                    on,
                    limit_reached,
                },
            )
            .await?
            .into_like()
    }

    /// The like records of a post, by user id after `after`.
    pub async fn likes(
        &self,
        post_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<LikeView>> {
        let author_id = self.author_of(post_id).await?;
        self.shared
            .ask::<user::User>(
                author_id,
                user::UserCommand::ListLikes {
                    post_id,
                    after,
                    limit,
                },
            )
            .await?
            .into_likes()
    }

    pub async fn stats(&self) -> Result<SocialStats> {
        let users = self
            .shared
            .ask::<accounts::Accounts>(accounts::ACCOUNTS_ID, accounts::AccountsCommand::Count)
            .await?
            .into_count();
        let mut stats = self
            .shared
            .ask::<posts::PostIndex>(posts::POST_INDEX_ID, posts::PostIndexCommand::Stats)
            .await?
            .into_stats();
        stats.users = users;
        Ok(stats)
    }

    /// Recomputes every counter from the records and returns each difference (empty = sound).
    pub async fn check(&self) -> Result<Vec<Difference>> {
        check::check(self).await
    }
}
