//! [`Ctx`]: what a handler sees of one request (the server state, the request head, its body,
//! the path parameters) and the helpers that establish who calls ([`Ctx::user`],
//! [`Ctx::viewer`]) and read the input ([`Ctx::json`], [`Ctx::query`], [`Ctx::param_u64`]).
//!
//! Invariants:
//! - A handler gets path parameters already percent-decoded; [`Ctx::param_u64`] turns a
//!   non-number into 404, because `/counters/abc` names no resource.
//! - Authentication comes before validation: a handler establishes who calls ([`Ctx::user`],
//!   [`Ctx::viewer`], the admin check, or a work client's token) before it reads its path, query
//!   or body, so a bad credential is 401 whatever the rest of the request says.
//! - The body is read at most once, within `limits.max_body_bytes` and
//!   `limits.body_read_timeout_ms`; a route whose body is optional pays for no JSON parsing when
//!   it has none ([`Ctx::json_or_empty`]).

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::http::request::Parts;
use serde::de::DeserializeOwned;
use switchyard_engine::Engine;

use crate::app::App;
use crate::auth::{self, Verified};
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::http::{self, Query};
use crate::json;

/// The connection's peer address, put in each request's extensions by the server (read it with
/// [`Ctx::peer_ip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Path parameters of the matched route, by name, percent-decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn new(params: Vec<(&'static str, String)>) -> Params {
        Params(params)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Who calls a route where a token is optional ([`Ctx::viewer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Anonymous,
    Admin,
    User(u64),
}

impl Viewer {
    /// Whether this caller may see the e-mail of user `user_id` (itself, or the admin).
    pub fn sees_email_of(self, user_id: u64) -> bool {
        match self {
            Viewer::Admin => true,
            Viewer::User(id) => id == user_id,
            Viewer::Anonymous => false,
        }
    }
}

/// Everything a handler may use: the server state, the request head, its body (read at most
/// once, within the limits) and the path parameters.
pub struct Ctx {
    pub app: Arc<App>,
    pub head: Parts,
    body: Option<Incoming>,
    params: Params,
}

impl Ctx {
    pub fn new(app: Arc<App>, head: Parts, body: Incoming, params: Params) -> Ctx {
        Ctx {
            app,
            head,
            body: Some(body),
            params,
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.app.config
    }

    /// The engine, or 503 `unavailable` while it is still recovering.
    pub fn engine(&self) -> Result<Engine, ApiError> {
        self.app
            .engine()
            .cloned()
            .ok_or_else(|| ApiError::unavailable("the engine is recovering"))
    }

    /// A path parameter as text. Asking for a name the pattern lacks is a bug in the handler.
    pub fn param(&self, name: &str) -> Result<&str, ApiError> {
        self.params.get(name).ok_or_else(|| {
            tracing::error!(
                name,
                path = self.head.uri.path(),
                "handler asked for a missing path parameter"
            );
            ApiError::internal()
        })
    }

    /// A path parameter that must be a u64 id; anything else is 404 (no such resource).
    pub fn param_u64(&self, name: &str) -> Result<u64, ApiError> {
        let text = self.param(name)?;
        text.parse::<u64>()
            .map_err(|_| ApiError::not_found(format!("no resource with {name} `{text}`")))
    }

    /// The query string, for `optional_*` accessors, `page()` and `finish()`.
    pub fn query(&self) -> Result<Query, ApiError> {
        Query::parse(self.head.uri.query())
    }

    /// The IP address of the connection's peer, when the server recorded it.
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.head
            .extensions
            .get::<PeerAddr>()
            .map(|peer| peer.0.ip())
    }

    /// A request header as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name)?.to_str().ok()
    }

    /// The `Authorization` header when present; one that is not visible ASCII reads as `""`, so
    /// it is refused as a bad credential rather than taken for no credential. (Two of them were
    /// refused before routing, see the pipeline.)
    pub fn authorization(&self) -> Option<&str> {
        let value = self.head.headers.get(AUTHORIZATION)?;
        Some(value.to_str().unwrap_or(""))
    }

    /// The user of `Authorization: Bearer <login token>`: 401 without one, with a bad one, or
    /// with one whose `sub` names no user. The first use of a token asks the engine for its
    /// user; later uses hit `Auth`'s verified-token cache (users are never deleted).
    pub async fn user(&self) -> Result<u64, ApiError> {
        let token = auth::bearer(self.authorization())?;
        match self.app.auth.verify(token)? {
            Verified::Known(user) => Ok(user),
            Verified::Unconfirmed { user, exp } => match self.engine()?.social().user(user).await {
                Ok(_) => {
                    self.app.auth.confirm(token, user, exp);
                    Ok(user)
                }
                Err(switchyard_engine::Error::NotFound(_)) => {
                    Err(ApiError::unauthenticated("the token's user does not exist"))
                }
                Err(error) => Err(error.into()),
            },
        }
    }

    /// Who calls a route where a token is optional: nobody (no `Authorization`), the admin, or
    /// a user. A credential that is present but not valid is 401, never "anonymous".
    pub async fn viewer(&self) -> Result<Viewer, ApiError> {
        match self.authorization() {
            None => Ok(Viewer::Anonymous),
            Some(_) if self.app.auth.is_admin(self.authorization()) => Ok(Viewer::Admin),
            Some(_) => self.user().await.map(Viewer::User),
        }
    }

    /// The whole body, within `limits.max_body_bytes` and `limits.body_read_timeout_ms`.
    /// A second call returns an empty body.
    pub async fn body(&mut self) -> Result<Bytes, ApiError> {
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        let limits = &self.app.config.limits;
        http::read_body(
            body,
            limits.max_body_bytes,
            std::time::Duration::from_millis(limits.body_read_timeout_ms),
        )
        .await
    }

    /// The body as a `T` (a JSON object; see [`crate::json`] for the errors).
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        let body = self.body().await?;
        json::parse(&body)
    }

    /// The body as a `T`, an empty body counting as `T::default()` without any parsing.
    pub async fn json_or_empty<T: DeserializeOwned + Default>(&mut self) -> Result<T, ApiError> {
        let body = self.body().await?;
        json::parse_or_empty(&body)
    }
}
