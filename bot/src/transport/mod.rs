//! [`Transport`]: the social operations the simulation performs, behind one trait with two
//! implementations, so the same scenario code drives a server over HTTP ([`http`]) or an engine
//! opened in-process ([`embedded`]).
//!
//! **Invariant:** a transport reports, it never decides. It returns what the server said, mapped
//! to plain structs and one [`BotError`]; whether that matches the ledger is the scenario's
//! business. (Test doubles that lie wrap a real transport and change its answers.)

pub mod embedded;
pub mod http;

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::error::BotError;
pub use embedded::EmbeddedTransport;
pub use http::{HttpTransport, Reply};

/// A sign-up request.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub password: String,
    pub full_name: Option<String>,
}

/// A logged-in user: who it is and, over HTTP, its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: u64,
    /// The JWT from `POST /api/v1/auth/login`; `None` for the embedded transport.
    pub token: Option<Arc<str>>,
}

/// The fields of a User the bot checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    pub id: u64,
    pub posts_count: u64,
    pub likes_given: u64,
}

/// The fields of a Post the bot checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PostInfo {
    pub id: u64,
    pub author_id: u64,
    pub likes: u64,
}

/// The answer to like and unlike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct LikeInfo {
    pub post_id: u64,
    pub user_id: u64,
    pub likes: u64,
}

/// `GET /api/v1/stats/social`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SocialStats {
    pub users: u64,
    pub posts: u64,
    pub likes: u64,
    pub posts_with_zero_likes: u64,
}

/// Result of one transport call.
pub type Answer<T> = Result<T, BotError>;

/// The social operations of API.md, as the bot uses them. Every future is `Send`, so the
/// scenario can run users on tokio tasks.
pub trait Transport: Send + Sync + 'static {
    /// `"http"` or `"embedded"` (for the report).
    fn name(&self) -> &'static str;

    /// `POST /api/v1/users`.
    fn sign_up(&self, user: &NewUser) -> impl Future<Output = Answer<UserInfo>> + Send;

    /// `POST /api/v1/auth/login`.
    fn login(&self, email: &str, password: &str) -> impl Future<Output = Answer<Session>> + Send;

    /// `POST /api/v1/posts` as `session`.
    fn create_post(
        &self,
        session: &Session,
        text: &str,
    ) -> impl Future<Output = Answer<PostInfo>> + Send;

    /// `POST /api/v1/posts/{id}/likes` as `session`.
    fn like(
        &self,
        session: &Session,
        post_id: u64,
    ) -> impl Future<Output = Answer<LikeInfo>> + Send;

    /// `DELETE /api/v1/posts/{id}/likes` as `session`.
    fn unlike(
        &self,
        session: &Session,
        post_id: u64,
    ) -> impl Future<Output = Answer<LikeInfo>> + Send;

    /// `GET /api/v1/users/{id}`.
    fn user(&self, user_id: u64) -> impl Future<Output = Answer<UserInfo>> + Send;

    /// `GET /api/v1/posts/{id}`.
    fn post(&self, post_id: u64) -> impl Future<Output = Answer<PostInfo>> + Send;

    /// Every user whose like on `post_id` is on (`GET /api/v1/posts/{id}/likes`, all pages,
    /// `liked = true`), in ascending id order.
    fn likers(&self, post_id: u64) -> impl Future<Output = Answer<Vec<u64>>> + Send;

    /// `GET /api/v1/stats/social`.
    fn stats(&self) -> impl Future<Output = Answer<SocialStats>> + Send;

    /// The server's own invariant check, where the transport can reach it: `Some(differences)`
    /// (empty = sound) for the embedded engine (`Social::check`), `None` over HTTP.
    fn self_check(&self) -> impl Future<Output = Answer<Option<Vec<String>>>> + Send;
}
