//! [`BotError`]: the one error type every transport returns, so the scenario and the report
//! treat an HTTP error body and an engine `Error` alike and count errors by `(status, code)`.
//!
//! An API refusal carries the HTTP status and the API.md error code (`409 already_liked`). The
//! embedded transport maps engine errors to the status `switchyard-net` would answer with (the
//! same table as API.md's Conventions). A failure below the API (connection refused, timeout,
//! a malformed response) has no status; its code names the failure (`connect`, `timeout`,
//! `io`, `bad_response`).

use std::fmt;

/// An operation that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BotError {
    /// HTTP status of an API refusal; `None` when the request got no (usable) answer.
    pub status: Option<u16>,
    /// API.md error code (`email_taken`), or the transport failure (`connect`, `timeout`).
    pub code: String,
    pub message: String,
    /// How long the server asked the client to wait before sending again (`Retry-After` of a
    /// 429 or 503; the engine's own figure for an embedded 429), in milliseconds.
    pub retry_after_ms: Option<u64>,
}

impl fmt::Display for BotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key(), self.message)
    }
}

impl BotError {
    /// The server answered with an error status.
    pub fn api(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        BotError {
            status: Some(status),
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// The same error with the wait the server asked for.
    pub fn with_retry_after_ms(mut self, retry_after_ms: Option<u64>) -> Self {
        self.retry_after_ms = retry_after_ms;
        self
    }

    /// The request got no usable answer.
    pub fn transport(code: impl Into<String>, message: impl Into<String>) -> Self {
        BotError {
            status: None,
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// How the report counts it: `"409 already_liked"`, `"transport connect"`.
    pub fn key(&self) -> String {
        match self.status {
            Some(status) => format!("{status} {}", self.code),
            None => format!("transport {}", self.code),
        }
    }

    /// Back-pressure (503 `overloaded`): nothing changed, the request may be sent again.
    pub fn is_overloaded(&self) -> bool {
        self.status == Some(503)
    }

    /// The server refused the request and said why (a 4xx): nothing changed.
    pub fn is_refusal(&self) -> bool {
        matches!(self.status, Some(400..=499))
    }

    /// Anything but a refusal: no answer at all (the request may or may not have taken
    /// effect), a 5xx, or back-pressure that outlasted the retries. The simulation cannot keep
    /// its ledger exact after one and stops with exit code 1.
    pub fn is_fatal(&self) -> bool {
        !self.is_refusal()
    }

    /// Maps an engine error the way `switchyard-net` does (API.md Conventions).
    pub fn from_engine(error: &switchyard_engine::Error) -> Self {
        use switchyard_engine::Error as E;
        let message = error.to_string();
        match error {
            E::Invalid { code, .. } => BotError::api(400, *code, message),
            E::NotFound(_) => BotError::api(404, "not_found", message),
            E::Conflict { code, .. } => BotError::api(409, *code, message),
            E::Unauthenticated { code, .. } => BotError::api(401, *code, message),
            E::Forbidden { code, .. } => BotError::api(403, *code, message),
            E::Unprocessable { code, .. } => BotError::api(422, *code, message),
            E::RateLimited { retry_after_ms, .. } => BotError::api(429, "rate_limited", message)
                .with_retry_after_ms(Some(*retry_after_ms)),
            E::Overloaded(_) => BotError::api(503, "overloaded", message),
            E::NotNow { code, .. } => BotError::api(503, *code, message),
            E::Unavailable(_) | E::Stopped(_) => BotError::api(503, "unavailable", message),
            E::Io { .. } | E::Corruption { .. } | E::Store(_) | E::Locked(_) => {
                BotError::api(500, "internal", message)
            }
        }
    }
}

impl From<switchyard_engine::Error> for BotError {
    fn from(error: switchyard_engine::Error) -> Self {
        BotError::from_engine(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_api_statuses() {
        use switchyard_engine::Error as E;
        let check = |error: E, expected: &str| assert_eq!(BotError::from(error).key(), expected);
        check(E::conflict("already_liked", "x"), "409 already_liked");
        check(E::forbidden("own_post", "x"), "403 own_post");
        check(E::NotFound("post"), "404 not_found");
        check(E::invalid("invalid_text", "x"), "400 invalid_text");
        check(
            E::unprocessable("email_undeliverable", "x"),
            "422 email_undeliverable",
        );
        check(E::Overloaded("mailbox"), "503 overloaded");
        let limited = BotError::from(E::RateLimited {
            message: "slow down".into(),
            retry_after_ms: 1500,
        });
        assert_eq!(limited.key(), "429 rate_limited");
        assert_eq!(limited.retry_after_ms, Some(1500));
        let unavailable = BotError::from(E::Unavailable("closing"));
        assert!(unavailable.is_overloaded());
        assert!(BotError::transport("connect", "refused").is_fatal());
        assert!(BotError::api(500, "internal", "x").is_fatal());
        assert!(!BotError::api(409, "email_taken", "x").is_fatal());
    }
}
