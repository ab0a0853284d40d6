//! The social routes' request and response bodies: the types the handlers read and write, and
//! the schemas of the OpenAPI document (each `ToSchema` derive is the schema; doc comments are
//! the descriptions, `#[schema(...)]` the constraints the engine enforces).
//!
//! Invariant: a response type has `#[serde(deny_unknown_fields)]` too, which the document states
//! as `additionalProperties: false`, so the tests' response validation catches a handler that
//! sends a field the document lacks.

use serde::{Deserialize, Serialize};
use switchyard_engine::social::{self, LikeView, PostView, UserView};
use utoipa::ToSchema;

use crate::http::{NextCursor, Timestamp};

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignUpRequest)]
pub struct SignUpRequest {
    /// `local@domain`: a non-empty local part of at most 64 characters, a domain of letters,
    /// digits, `-` and dots with at least one dot (not first, last or doubled), no whitespace or
    /// control characters, at most 254 characters; not on the disposable-domain list (422).
    #[schema(format = "email", min_length = 5, max_length = 254)]
    pub email: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// At most 200 characters, no control characters.
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub full_name: Option<String>,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// A login token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginResponse {
    /// JWT (HS256): `sub` (user id as a string), `iat`, `exp`, `role`.
    pub access_token: String,
    #[schema(inline)]
    pub token_type: TokenType,
    /// Seconds (`auth.token_ttl_seconds`).
    pub expires_in: u64,
    pub user_id: u64,
}

/// Always `Bearer`.
#[derive(Debug, Serialize, ToSchema)]
pub enum TokenType {
    Bearer,
}

/// `POST /api/v1/posts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePostRequest {
    /// Not blank (some character that is not whitespace); at most 5000 bytes of UTF-8.
    #[schema(
        min_length = 1,
        max_length = 5000,
        pattern = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub text: String,
}

/// What the enrichment adapter knows of a person.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enrichment {
    #[schema(required = true)]
    pub full_name: Option<String>,
    #[schema(required = true)]
    pub company: Option<String>,
    #[schema(required = true)]
    pub location: Option<String>,
    /// Which service produced it.
    pub source: String,
}

/// A user. `email` only to the user itself and to admin.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: u64,
    /// Only to the user itself and to admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub full_name: Option<String>,
    /// Posts the user wrote.
    pub posts_count: u64,
    /// The user's likes that are on.
    pub likes_given: u64,
    pub created_at: Timestamp,
    /// From the enrichment adapter; null when none is configured, the person is unknown or the
    /// adapter failed.
    #[schema(required = true)]
    pub enrichment: Option<Enrichment>,
}

impl User {
    /// The view of `user` for a caller who may (`show_email`) or may not see its e-mail.
    pub fn of(user: UserView, show_email: bool) -> User {
        User {
            id: user.id,
            email: show_email.then_some(user.email),
            full_name: user.full_name,
            posts_count: user.posts_count,
            likes_given: user.likes_given,
            created_at: Timestamp::from_ms(user.created_at_ms),
            enrichment: user.enrichment.map(|enrichment| Enrichment {
                full_name: enrichment.full_name,
                company: enrichment.company,
                location: enrichment.location,
                source: enrichment.source,
            }),
        }
    }
}

/// A post.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Post {
    pub id: u64,
    pub author_id: u64,
    pub text: String,
    /// Users whose like on this post is on.
    pub likes: u64,
    pub created_at: Timestamp,
}

impl From<PostView> for Post {
    fn from(post: PostView) -> Post {
        Post {
            id: post.id,
            author_id: post.author_id,
            text: post.text,
            likes: post.likes,
            created_at: Timestamp::from_ms(post.created_at_ms),
        }
    }
}

/// The reply to a like or an unlike.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LikeOutcome {
    pub post_id: u64,
    pub user_id: u64,
    /// The post's like count after this change.
    pub likes: u64,
}

impl From<social::LikeOutcome> for LikeOutcome {
    fn from(outcome: social::LikeOutcome) -> LikeOutcome {
        LikeOutcome {
            post_id: outcome.post_id,
            user_id: outcome.user_id,
            likes: outcome.likes,
        }
    }
}

/// One user's like record on a post.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LikeRecord {
    pub user_id: u64,
    /// Whether the like is on now.
    pub liked: bool,
    pub first_liked_at: Timestamp,
    pub updated_at: Timestamp,
    /// How often this user turned the like on.
    pub times_liked: u64,
}

impl From<LikeView> for LikeRecord {
    fn from(like: LikeView) -> LikeRecord {
        LikeRecord {
            user_id: like.user_id,
            liked: like.liked,
            first_liked_at: Timestamp::from_ms(like.first_liked_at_ms),
            updated_at: Timestamp::from_ms(like.updated_at_ms),
            times_liked: like.times_liked,
        }
    }
}

/// Totals over all users and posts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SocialStats {
    pub users: u64,
    pub posts: u64,
    /// Likes that are on.
    pub likes: u64,
    pub posts_with_zero_likes: u64,
}

impl From<social::SocialStats> for SocialStats {
    fn from(stats: social::SocialStats) -> SocialStats {
        SocialStats {
            users: stats.users,
            posts: stats.posts,
            likes: stats.likes,
            posts_with_zero_likes: stats.posts_with_zero_likes,
        }
    }
}

/// What the invariant checker found.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvariantReport {
    pub differences: Vec<Difference>,
}

/// One invariant that does not hold.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Difference {
    /// What was checked, e.g. `post 12 likes`.
    pub what: String,
    pub expected: u64,
    pub found: u64,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPage {
    pub items: Vec<User>,
    pub next_cursor: NextCursor,
}

/// A page of posts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostPage {
    pub items: Vec<Post>,
    pub next_cursor: NextCursor,
}

/// A page of like records.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LikeRecordPage {
    pub items: Vec<LikeRecord>,
    pub next_cursor: NextCursor,
}
