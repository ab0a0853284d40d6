//! The engine's one error enum. Variants separate misuse (bad input, not found, conflict),
//! back-pressure (overloaded), and the two fatal kinds (IO, corruption). `net` maps every variant
//! to an HTTP status and code in one table; bad input is always a 4xx, IO and corruption are 5xx.

use std::path::PathBuf;

/// Expected failures of the engine. Programmer errors are assertions, not variants.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command failed validation; nothing changed. `code` is the API.md error code.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// The addressed entity does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The command conflicts with current state (e.g. `email_taken`, `already_liked`).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The caller could not be authenticated (e.g. `invalid_credentials`).
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    /// The caller may not do this (e.g. `own_post`, `not_owner`).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// The command is well-formed but cannot be processed (e.g. `email_undeliverable`).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// A rate limit was reached (e.g. registrations per source address); retry after
    /// `retry_after_ms`. Nothing changed.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_ms: u64,
    },
    /// A bounded queue or mailbox is full; retry later. Nothing changed.
    #[error("overloaded: {0} is full")]
    Overloaded(&'static str),
    /// Something the command needs is missing for now (e.g. `price_unavailable`: no fresh
    /// price); retry later. Nothing changed.
    #[error("{message}")]
    NotNow { code: &'static str, message: String },
    /// The engine is shutting down or not ready; nothing changed.
    #[error("engine unavailable: {0}")]
    Unavailable(&'static str),
    /// The engine stopped taking commands after a fault it cannot repair while running (a
    /// poisoned WAL, a failed checkpoint pass, an event that could not reach its actor);
    /// nothing changed. Everything acknowledged is in the WAL; a restart recovers.
    #[error("the engine stopped after a fault ({0}); restart it to recover")]
    Stopped(String),
    /// An I/O error. After a failed WAL write or fdatasync the WAL is poisoned and every later
    /// write fails with this variant.
    #[error("i/o error in {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// On-disk data failed a check (CRC, length, sequence) somewhere other than a torn tail.
    #[error("corruption in {path} at offset {offset}: {detail}")]
    Corruption {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// The checkpoint store (redb) failed.
    #[error("checkpoint store error: {0}")]
    Store(String),
    /// Another process holds the data directory.
    #[error("data directory {0} is locked by another process")]
    Locked(PathBuf),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid_field(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Error::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub fn unavailable_now(code: &'static str, message: impl Into<String>) -> Self {
        Error::NotNow {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Error::Unprocessable {
            code,
            message: message.into(),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(error: sled::Error) -> Self {
        Error::Store(error.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
