//! The HTTP transport (`--url`): API.md's Social routes over hyper 1.x's pooled client.
//!
//! - One `hyper_util` legacy client, keep-alive, at most `connections` idle connections kept
//!   per host (the simulation's concurrency), `TCP_NODELAY`, a connect timeout and a whole-request
//!   timeout (`timeout`), so an unreachable or stuck server ends the run instead of hanging it.
//! - A user's JWT from `POST /api/v1/auth/login` travels in [`Session::token`] and is sent as
//!   `Authorization: Bearer`.
//! - An error status is mapped to [`BotError::api`] with the code from the body
//!   `{"error": {"code", "message"}}`; a body without one gets the code `http_<status>`. A
//!   `Retry-After` (429, 503) travels with it as [`BotError::retry_after_ms`].
//! - [`HttpTransport::exchange`] sends extra headers (the market's `Idempotency-Key`) and hands
//!   back any answer as a [`Reply`] for routes whose success status matters (201 or 200).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::{
    Answer, BotError, LikeInfo, NewUser, PostInfo, Session, SocialStats, Transport, UserInfo,
};

/// Likes read per page when listing a post's likers (API.md's maximum `limit`).
const LIKES_PAGE_LIMIT: usize = 500;
/// Longest response body the bot reads; every Social answer is far smaller.
const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Pause before retrying a sign-up the server refused with 429 (its per-address flood limit,
/// `auth.signups_per_minute_per_source`). The refusal created nothing, so the retry is safe and
/// the ledger stays exact.
const SIGN_UP_RATE_LIMITED_PAUSE: Duration = Duration::from_millis(500);
/// Retries of one sign-up refused with 429: two minutes, two windows of the limit.
const SIGN_UP_RATE_LIMITED_RETRIES_MAX: u32 = 240;

/// A server at a base URL such as `http://127.0.0.1:8080`.
pub struct HttpTransport {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, no trailing slash.
    base: String,
    timeout: Duration,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

/// An answer of any status, as [`HttpTransport::exchange`] read it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// `Retry-After` in milliseconds (the header holds whole seconds).
    pub retry_after_ms: Option<u64>,
    pub body: Bytes,
}

impl Reply {
    /// The body of a 2xx decoded as `T`; an error status becomes an API error (with the code of
    /// its `{"error": {"code"}}` body, or `http_<status>`, and the `Retry-After`).
    pub fn decode<T: DeserializeOwned>(&self, path: &str) -> Answer<T> {
        let bytes = &self.body;
        let status = self.status;
        if !(200..300).contains(&status) {
            let error = match serde_json::from_slice::<ErrorBody>(bytes) {
                Ok(body) => BotError::api(status, body.error.code, body.error.message),
                Err(_) => BotError::api(
                    status,
                    format!("http_{status}"),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
                ),
            };
            return Err(error.with_retry_after_ms(self.retry_after_ms));
        }
        serde_json::from_slice(bytes).map_err(|error| {
            BotError::transport(
                "bad_response",
                format!(
                    "{path}: {error}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            )
        })
    }
}

#[derive(Deserialize)]
struct LoginBody {
    access_token: String,
    user_id: u64,
}

#[derive(Deserialize)]
struct LikesPage {
    items: Vec<LikeItem>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct LikeItem {
    user_id: u64,
    liked: bool,
}

/// `http://host:port[/]` → `http://host:port`. A bare `host:port` gets `http://`. TLS is not
/// spoken (the bot targets servers on this machine).
pub fn normalize_base_url(url: &str) -> Answer<String> {
    let url = url.trim().trim_end_matches('/');
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|error| BotError::transport("bad_url", format!("{url}: {error}")))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(BotError::transport(
            "bad_url",
            format!("{url}: expected http://host:port"),
        ));
    }
    Ok(url)
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for opaque cursors).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl HttpTransport {
    /// A client for `url` keeping up to `connections` idle keep-alive connections.
    pub fn new(url: &str, connections: usize, timeout: Duration) -> Answer<Self> {
        let base = normalize_base_url(url)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(connections.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(HttpTransport {
            client,
            base,
            timeout,
        })
    }

    /// The base URL, `http://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; returns the status and body of any answer (error statuses included).
    /// Public for scenarios that speak routes outside [`Transport`] (`work`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Answer<(u16, Bytes)> {
        let body = body.map(|value| Bytes::from(value.to_string()));
        self.send_bytes(method, path, token, body).await
    }

    /// As [`HttpTransport::send`], with a JSON body already serialized (large bodies, such as
    /// 18000 work items, skip the intermediate `serde_json::Value`).
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> Answer<(u16, Bytes)> {
        let reply = self.exchange(method, path, token, &[], body).await?;
        Ok((reply.status, reply.body))
    }

    /// Sends one request with extra `headers` (`Idempotency-Key`); returns the status, the
    /// `Retry-After` the server sent (whole seconds, as milliseconds) and the body of any answer.
    pub async fn exchange(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Answer<Reply> {
        let uri = format!("{}{path}", self.base);
        let mut builder = Request::builder().method(method).uri(&uri);
        if let Some(token) = token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = match body {
            Some(bytes) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                bytes
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(body))
            .map_err(|error| BotError::transport("bad_request", format!("{uri}: {error}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                let code = if error.is_connect() { "connect" } else { "io" };
                BotError::transport(code, format!("{uri}: {error:?}"))
            })?;
            let status = response.status().as_u16();
            let retry_after_ms = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(|seconds| seconds.saturating_mul(1000));
            let body = http_body_util::Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|error| BotError::transport("io", format!("{uri}: body: {error}")))?
                .to_bytes();
            Ok(Reply {
                status,
                retry_after_ms,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                BotError::transport(
                    "timeout",
                    format!("{uri}: no answer within {:?}", self.timeout),
                )
            })?
    }

    /// Sends a request and decodes a 2xx JSON body as `T`; an error status becomes an API error.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Answer<T> {
        let body = body.map(|value| Bytes::from(value.to_string()));
        self.call_bytes(method, path, token, body).await
    }

    /// As `call`, with the JSON body already serialized.
    pub(crate) async fn call_bytes<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> Answer<T> {
        let reply = self.exchange(method, path, token, &[], body).await?;
        reply.decode(path)
    }

    /// `GET /healthz`: Ok when the server answers 200.
    pub async fn health(&self) -> Answer<()> {
        let _: serde_json::Value = self.call(Method::GET, "/healthz", None, None).await?;
        Ok(())
    }
}

fn token(session: &Session) -> Option<&str> {
    session.token.as_deref()
}

impl Transport for HttpTransport {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn sign_up(&self, user: &NewUser) -> Answer<UserInfo> {
        let mut body = json!({ "email": user.email, "password": user.password });
        if let Some(name) = &user.full_name {
            body["full_name"] = json!(name);
        }
        let mut retries = 0;
        loop {
            match self
                .call(Method::POST, "/api/v1/users", None, Some(body.clone()))
                .await
            {
                Err(error)
                    if error.status == Some(429) && retries < SIGN_UP_RATE_LIMITED_RETRIES_MAX =>
                {
                    retries += 1;
                    tokio::time::sleep(SIGN_UP_RATE_LIMITED_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    async fn login(&self, email: &str, password: &str) -> Answer<Session> {
        let body = json!({ "email": email, "password": password });
        let login: LoginBody = self
            .call(Method::POST, "/api/v1/auth/login", None, Some(body))
            .await?;
        Ok(Session {
            user_id: login.user_id,
            token: Some(login.access_token.into()),
        })
    }

    async fn create_post(&self, session: &Session, text: &str) -> Answer<PostInfo> {
        let body = json!({ "text": text });
        self.call(Method::POST, "/api/v1/posts", token(session), Some(body))
            .await
    }

    async fn like(&self, session: &Session, post_id: u64) -> Answer<LikeInfo> {
        let path = format!("/api/v1/posts/{post_id}/likes");
        self.call(Method::POST, &path, token(session), None).await
    }

    async fn unlike(&self, session: &Session, post_id: u64) -> Answer<LikeInfo> {
        let path = format!("/api/v1/posts/{post_id}/likes");
        self.call(Method::DELETE, &path, token(session), None).await
    }

    async fn user(&self, user_id: u64) -> Answer<UserInfo> {
        let path = format!("/api/v1/users/{user_id}");
        self.call(Method::GET, &path, None, None).await
    }

    async fn post(&self, post_id: u64) -> Answer<PostInfo> {
        let path = format!("/api/v1/posts/{post_id}");
        self.call(Method::GET, &path, None, None).await
    }

    async fn likers(&self, post_id: u64) -> Answer<Vec<u64>> {
        let mut likers = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/posts/{post_id}/likes?limit={LIKES_PAGE_LIMIT}");
            if let Some(cursor) = &cursor {
                path.push_str("&cursor=");
                path.push_str(&percent_encode(cursor));
            }
            let page: LikesPage = self.call(Method::GET, &path, None, None).await?;
            likers.extend(
                page.items
                    .iter()
                    .filter(|like| like.liked)
                    .map(|like| like.user_id),
            );
            match page.next_cursor {
                Some(next) if !page.items.is_empty() => cursor = Some(next),
                _ => break,
            }
        }
        likers.sort_unstable();
        Ok(likers)
    }

    async fn stats(&self) -> Answer<SocialStats> {
        self.call(Method::GET, "/api/v1/stats/social", None, None)
            .await
    }

    async fn self_check(&self) -> Answer<Option<Vec<String>>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalized() {
        assert_eq!(
            normalize_base_url("http://127.0.0.1:80/").unwrap(),
            "http://127.0.0.1:80"
        );
        assert_eq!(
            normalize_base_url("localhost:8080").unwrap(),
            "http://localhost:8080"
        );
        assert_eq!(
            normalize_base_url("https://x:1").unwrap_err().code,
            "bad_url"
        );
        assert_eq!(percent_encode("a b/+="), "a%20b%2F%2B%3D");
    }
}
