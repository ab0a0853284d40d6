//! The crate's two error types.
//!
//! - [`Error`]: why the server could not start or stopped abnormally (bad config, bind failure,
//!   the engine could not open). `main` prints it on one line and exits 1.
//! - [`ApiError`]: a failed request, rendered as API.md's JSON error body
//!   `{"error": {"code", "message"[, "field"]}}` with its status and headers.
//!
//! [`ApiError::from_engine`] is THE table from engine errors to `(status, code)`; nothing else in
//! the crate maps engine errors. Invariant: bad input is 4xx, back-pressure and unavailability are
//! 503 with `Retry-After`, and only IO, corruption and store failures are 500 (logged at error,
//! with a generic message so no internals leak to clients).

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::StatusCode;
use serde::Serialize;

use switchyard_engine::Error as EngineError;

/// Seconds a client should wait after a 503 before retrying.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Why the server could not start, or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names the key.
    #[error("configuration: {0}")]
    Config(String),
    /// An operating-system call failed (bind, signal setup, reading the config file). The
    /// message includes the cause, so it is not also a `source` (which would print it twice).
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    /// The engine failed to open or to shut down cleanly.
    #[error("engine: {0}")]
    Engine(EngineError),
}

impl From<EngineError> for Error {
    fn from(error: EngineError) -> Self {
        Error::Engine(error)
    }
}

impl Error {
    pub fn io(context: impl Into<String>, cause: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            cause,
        }
    }
}

/// The response body of a hyper response built by this crate.
pub type Body = Full<Bytes>;
/// A response built by this crate.
pub type Response = hyper::Response<Body>;

/// A failed request: status, API.md error code, human-readable message, optional field, and the
/// headers some statuses require (`Retry-After` on 503, `Allow` on 405).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// The exact snake_case code of API.md.
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// The request field at fault, for field errors.
    pub field: Option<String>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after_seconds: Option<u32>,
    /// Sent as `Allow` (405 only).
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_seconds: None,
            allow: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed(allow: String) -> Self {
        let mut error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method not allowed; allowed: {allow}"),
        );
        error.allow = Some(allow);
        error
    }

    pub fn invalid_json(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    pub fn missing_field(field: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_field",
            format!("field `{field}` is required"),
        )
        .with_field(field)
    }

    /// `message` says what the field must be, e.g. "must be an unsigned integer".
    pub fn invalid_field(field: &str, message: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("field `{field}` {message}"),
        )
        .with_field(field)
    }

    pub fn unknown_field(field: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_field",
            format!("unknown field `{field}`"),
        )
        .with_field(field)
    }

    pub fn body_too_large(limit_bytes: u64) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is larger than {limit_bytes} bytes"),
        )
    }

    pub fn request_timeout() -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body was not received in time",
        )
    }

    /// 503 with `Retry-After`: a queue or the in-flight limit is full; nothing changed.
    pub fn overloaded(message: impl Into<Cow<'static, str>>) -> Self {
        let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message);
        error.retry_after_seconds = Some(RETRY_AFTER_SECONDS);
        error
    }

    /// 503 with `Retry-After`: the engine is recovering or shutting down; nothing changed.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        error.retry_after_seconds = Some(RETRY_AFTER_SECONDS);
        error
    }

    /// 429 `rate_limited` with `Retry-After`: `retry_after_ms` as whole seconds, rounded up, at
    /// least 1 (the header has second resolution).
    pub fn rate_limited(message: impl Into<Cow<'static, str>>, retry_after_ms: u64) -> Self {
        let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        error.retry_after_seconds =
            Some(retry_after_ms.div_ceil(1000).clamp(1, u64::from(u32::MAX)) as u32);
        error
    }

    /// 400 `invalid_header`: a header is malformed or ambiguous (two `Authorization` headers).
    pub fn invalid_header(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_header", message)
    }

    /// 401 `unauthenticated`: no, expired or bad token.
    pub fn unauthenticated(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 with `code` (`forbidden` or a domain code such as `own_post`).
    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    /// The API.md error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 500 with a generic message; the cause must already be logged.
    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// THE table: every engine error to its status and code. A new engine variant fails to
    /// compile here until it is given a row (and a case in the test below).
    pub fn from_engine(error: EngineError) -> Self {
        match error {
            EngineError::Invalid {
                code,
                message,
                field,
            } => ApiError {
                field,
                ..ApiError::new(StatusCode::BAD_REQUEST, code, message)
            },
            EngineError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            EngineError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            EngineError::Unauthenticated { code, message } => {
                ApiError::new(StatusCode::UNAUTHORIZED, code, message)
            }
            EngineError::Forbidden { code, message } => {
                ApiError::new(StatusCode::FORBIDDEN, code, message)
            }
            EngineError::Unprocessable { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            EngineError::RateLimited {
                message,
                retry_after_ms,
            } => ApiError::rate_limited(message, retry_after_ms),
            EngineError::Overloaded(what) => ApiError::overloaded(format!("{what} is full")),
            EngineError::NotNow { code, message } => {
                let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
                error.retry_after_seconds = Some(RETRY_AFTER_SECONDS);
                error
            }
            EngineError::Unavailable(what) => {
                ApiError::unavailable(format!("engine unavailable: {what}"))
            }
            // The reason (logged once, when the fault happened) may name files: not shown.
            EngineError::Stopped(_) => ApiError::unavailable(
                "the engine stopped after a fault and refuses commands until it is restarted",
            ),
            error @ (EngineError::Io { .. }
            | EngineError::Corruption { .. }
            | EngineError::Store(_)
            | EngineError::Locked(_)) => {
                tracing::error!(%error, "engine error on a request");
                ApiError::internal()
            }
        }
    }

    /// Renders the JSON error body with its status and headers.
    pub fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            field: Option<&'a str>,
        }
        let envelope = Envelope {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        // Serializing two strings and an option cannot fail; fall back to a fixed body anyway.
        let body = serde_json::to_vec(&envelope).unwrap_or_else(|_| {
            br#"{"error":{"code":"internal","message":"error body"}}"#.to_vec()
        });
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self.allow {
            if let Ok(value) = HeaderValue::from_str(&allow) {
                headers.insert(ALLOW, value);
            }
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        ApiError::from_engine(error)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// One sample of every engine variant. The match below has no wildcard, so a new variant
    /// fails to compile here until it gets a sample and an expected row.
    fn samples() -> Vec<EngineError> {
        let all = vec![
            EngineError::invalid_field("invalid_email", "email", "bad email"),
            EngineError::NotFound("counter"),
            EngineError::conflict("email_taken", "taken"),
            EngineError::Unauthenticated {
                code: "invalid_credentials",
                message: "bad password".into(),
            },
            EngineError::forbidden("own_post", "own post"),
            EngineError::unprocessable("email_undeliverable", "undeliverable"),
            EngineError::RateLimited {
                message: "slow down".into(),
                retry_after_ms: 1500,
            },
            EngineError::Overloaded("mailbox"),
            EngineError::unavailable_now("price_unavailable", "no price"),
            EngineError::Unavailable("shutting down"),
            EngineError::Stopped("a checkpoint pass failed: sled".into()),
            EngineError::io("wal write", std::io::Error::other("disk")),
            EngineError::Corruption {
                path: PathBuf::from("wal/1.log"),
                offset: 7,
                detail: "crc".into(),
            },
            EngineError::Store("sled".into()),
            EngineError::Locked(PathBuf::from("data")),
        ];
        for error in &all {
            match error {
                EngineError::Invalid { .. }
                | EngineError::NotFound(_)
                | EngineError::Conflict { .. }
                | EngineError::Unauthenticated { .. }
                | EngineError::Forbidden { .. }
                | EngineError::Unprocessable { .. }
                | EngineError::RateLimited { .. }
                | EngineError::Overloaded(_)
                | EngineError::NotNow { .. }
                | EngineError::Unavailable(_)
                | EngineError::Stopped(_)
                | EngineError::Io { .. }
                | EngineError::Corruption { .. }
                | EngineError::Store(_)
                | EngineError::Locked(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_engine_error_has_a_status_and_code() {
        let expected: &[(u16, &str, bool)] = &[
            (400, "invalid_email", false),
            (404, "not_found", false),
            (409, "email_taken", false),
            (401, "invalid_credentials", false),
            (403, "own_post", false),
            (422, "email_undeliverable", false),
            (429, "rate_limited", true),
            (503, "overloaded", true),
            (503, "price_unavailable", true),
            (503, "unavailable", true),
            (503, "unavailable", true),
            (500, "internal", false),
            (500, "internal", false),
            (500, "internal", false),
            (500, "internal", false),
        ];
        let samples = samples();
        assert_eq!(samples.len(), expected.len());
        for (error, (status, code, retry_after)) in samples.into_iter().zip(expected) {
            let shown = error.to_string();
            let api = ApiError::from_engine(error);
            assert_eq!(api.status.as_u16(), *status, "{shown}");
            assert_eq!(api.code, *code, "{shown}");
            assert_eq!(api.retry_after_seconds.is_some(), *retry_after, "{shown}");
            if *status >= 500 {
                assert!(!api.message.contains("disk") && !api.message.contains("sled"));
            }
        }
    }

    #[test]
    fn invalid_keeps_its_field() {
        let api = ApiError::from_engine(EngineError::invalid_field("invalid_email", "email", "x"));
        assert_eq!(api.field.as_deref(), Some("email"));
    }

    #[test]
    fn error_body_has_the_api_shape() {
        let response = ApiError::missing_field("by").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = response.into_body();
        let bytes = futures_body(body);
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(value["error"]["code"], "missing_field");
        assert_eq!(value["error"]["field"], "by");
        assert!(value["error"]["message"].is_string());

        let response = ApiError::overloaded("full").into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let response = ApiError::method_not_allowed("GET, POST".into()).into_response();
        assert_eq!(response.headers()[ALLOW], "GET, POST");
    }

    fn futures_body(body: Body) -> Bytes {
        use http_body_util::BodyExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime
            .block_on(body.collect())
            .expect("full body is infallible")
            .to_bytes()
    }
}
