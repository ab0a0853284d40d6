//! The e-mail adapter: SMTP through lettre's protocol client (`AsyncSmtpConnection`: EHLO,
//! STARTTLS, AUTH, MAIL/RCPT/DATA with dot-stuffing), its message builder, and rustls with the
//! `ring` provider and Mozilla's roots.
//!
//! `notify.smtp_url`: `smtp://host[:port]` (default port 25) speaks plain SMTP upgraded with
//! STARTTLS per `notify.smtp_starttls` (`required`: a server without STARTTLS fails the attempt;
//! `opportunistic`: upgraded when offered; `off`: never); `smtps://host[:port]` (default 465) is
//! TLS from the first byte. The URL may carry no user or password: the user is
//! `notify.smtp_user`, the password `SWITCHYARD_SMTP_PASSWORD` (AUTH PLAIN or LOGIN).
//!
//! The message: From `notify.smtp_from`, To the message's `to`, Subject
//! `{program}: {event_type}`, a text/plain body (the program's message), and Message-ID
//! `<{key}@switchyard>` (the idempotency key, so a receiving system can deduplicate).
//!
//! Outcomes: the server's permanent (5xx) answer to MAIL, RCPT or DATA → `Refused`; a transient
//! (4xx) answer, and any failure to connect, upgrade, authenticate, write or read → `Retry`
//! (a failure before the transaction, even a 5xx to AUTH, says nothing about this message). An
//! address lettre cannot parse is refused without a call.
//!
//! **Connection pool.** Idle connections are kept (at most `notify.email_concurrency`, for at
//! most [`IDLE_MS_MAX`]) and checked with NOOP before reuse, so a batch of hundreds of mails
//! does not open a connection each. The pool is ours, not lettre's `AsyncSmtpTransport` pool:
//! lettre's returns a connection to its pool when the send future is dropped, and our time-out
//! drops it mid-command, so a connection cut off inside DATA would carry the next mail's
//! commands as message text. Here a connection goes back only after a send that finished with
//! the connection intact; a cancelled send drops (closes) it.
//!
//! Invariant: the password is only handed to lettre's AUTH: never logged, never in an error
//! text (lettre's errors carry the server's reply, which never echoes it).

use std::sync::Mutex;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use switchyard_engine::dispatch::{Message, Outcome};
use tokio::time::Instant;

use crate::notify::answer;

/// An idle connection older than this is closed rather than reused (servers drop idle clients
/// after a few minutes; RFC 5321 asks them to wait at least 5).
pub const IDLE_MS_MAX: u64 = 30_000;
/// The default port of `smtp://`.
const SMTP_PORT: u16 = 25;
/// The default port of `smtps://` (submissions, RFC 8314).
const SMTPS_PORT: u16 = 465;

/// How the connection is secured.
#[derive(Clone)]
enum Security {
    Plain,
    StartTlsOpportunistic(TlsParameters),
    StartTlsRequired(TlsParameters),
    Implicit(TlsParameters),
}

/// Where the server is, read from `notify.smtp_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `smtps://`: TLS from the start.
    pub implicit_tls: bool,
    /// A name or an IP address (without an IPv6 literal's brackets).
    pub host: String,
    pub port: u16,
}

/// Reads `smtp://host[:port]` or `smtps://host[:port]` (an optional trailing `/`). The error
/// never quotes the URL (it might hold a password).
pub fn parse_url(url: &str) -> Result<Endpoint, String> {
    let (implicit_tls, rest) = if let Some(rest) = url.strip_prefix("smtps://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("smtp://") {
        (false, rest)
    } else {
        return Err("`notify.smtp_url` must be smtp://host[:port] or smtps://host[:port]".into());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err("`notify.smtp_url` must not carry a user or password: set `notify.smtp_user` and SWITCHYARD_SMTP_PASSWORD".into());
    }
    if authority.contains(['/', '?', '#']) {
        return Err("`notify.smtp_url` must be smtp://host[:port] or smtps://host[:port], with no path or query".into());
    }
    let default_port = if implicit_tls { SMTPS_PORT } else { SMTP_PORT };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("`notify.smtp_url` has an unclosed [ in its host")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("`notify.smtp_url` has text after its host")?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("`notify.smtp_url` has no host".into());
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or("`notify.smtp_url` has a port that is not 1..=65535")?,
    };
    Ok(Endpoint {
        implicit_tls,
        host: host.to_string(),
        port,
    })
}

/// What [`EmailAdapter::new`] needs.
pub struct EmailSettings {
    pub endpoint: Endpoint,
    /// `required`, `opportunistic` or `off` (`notify.smtp_starttls`; `smtp://` only).
    pub starttls: String,
    /// `notify.smtp_user` and the password.
    pub credentials: Option<(String, String)>,
    /// `notify.smtp_from`.
    pub from: String,
    /// Idle connections kept (`notify.email_concurrency`).
    pub idle_max: usize,
}

pub struct EmailAdapter {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    from: Mailbox,
    hello: ClientId,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    idle_max: usize,
}

impl EmailAdapter {
    /// Fails (naming the key) when `from` is not an address or TLS cannot be set up for the host.
    pub fn new(settings: EmailSettings) -> Result<EmailAdapter, String> {
        let EmailSettings {
            endpoint,
            starttls,
            credentials,
            from,
            idle_max,
        } = settings;
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| format!("`notify.smtp_from` is not an e-mail address: {e}"))?;
        let tls = || {
            TlsParameters::new(endpoint.host.clone())
                .map_err(|e| format!("`notify.smtp_url`: TLS for its host cannot be set up: {e}"))
        };
        let security = match (endpoint.implicit_tls, starttls.as_str()) {
            (true, _) => Security::Implicit(tls()?),
            (false, "required") => Security::StartTlsRequired(tls()?),
            (false, "opportunistic") => Security::StartTlsOpportunistic(tls()?),
            (false, "off") => Security::Plain,
            (false, _) => {
                return Err(
                    "`notify.smtp_starttls` must be `required`, `opportunistic` or `off`".into(),
                )
            }
        };
        if credentials.is_some() && matches!(security, Security::Plain) {
            tracing::warn!(
                "notify.smtp_starttls is off: the SMTP password is sent without encryption"
            );
        }
        Ok(EmailAdapter {
            host: endpoint.host,
            port: endpoint.port,
            security,
            credentials: credentials.map(|(user, password)| Credentials::new(user, password)),
            from,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            idle_max: idle_max.max(1),
        })
    }

    /// One attempt of `message`. Not bounded here: the caller's time-out drops the future, and
    /// with it the connection in use.
    pub async fn send(&self, message: &Message) -> Outcome {
        let Ok(to) = message.to.parse::<Mailbox>() else {
            return Outcome::Refused {
                error: "not an e-mail address".into(),
            };
        };
        let mail = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("{}: {}", message.program, message.event_type))
            .message_id(Some(format!("<{}@switchyard>", message.key)))
            .header(ContentType::TEXT_PLAIN)
            .body(message.message.clone());
        let mail = match mail {
            Ok(mail) => mail,
            Err(error) => {
                return Outcome::Refused {
                    error: format!("the e-mail cannot be built: {error}"),
                }
            }
        };
        let mut connection = match self.connection().await {
            Ok(connection) => connection,
            Err(error) => return answer::no_answer(format!("SMTP: {error}")),
        };
        let sent = connection.send(mail.envelope(), &mail.formatted()).await;
        if !connection.has_broken() {
            self.park(connection);
        }
        match sent {
            Ok(_) => Outcome::Sent,
            Err(error) if error.is_permanent() => Outcome::Refused {
                error: format!("SMTP: {error}"),
            },
            Err(error) => answer::no_answer(format!("SMTP: {error}")),
        }
    }

    /// An idle connection that still answers NOOP, or a new one (connected, secured,
    /// authenticated).
    async fn connection(&self) -> Result<AsyncSmtpConnection, String> {
        while let Some(mut connection) = self.unpark() {
            if connection.test_connected().await {
                return Ok(connection);
            }
        }
        self.connect().await
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let implicit = match &self.security {
            Security::Implicit(tls) => Some(tls.clone()),
            _ => None,
        };
        // lettre bounds only the TCP connect with this; the caller bounds the whole attempt.
        let mut connection = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            None,
            &self.hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| format!("connecting to the server failed: {}", with_sources(&e)))?;
        match &self.security {
            Security::StartTlsRequired(tls) => {
                if !connection.can_starttls() {
                    connection.abort().await;
                    return Err("the server does not offer STARTTLS, which `notify.smtp_starttls = required` asks for".into());
                }
                connection
                    .starttls(tls.clone(), &self.hello)
                    .await
                    .map_err(|e| format!("STARTTLS failed: {}", with_sources(&e)))?;
            }
            Security::StartTlsOpportunistic(tls) if connection.can_starttls() => {
                connection
                    .starttls(tls.clone(), &self.hello)
                    .await
                    .map_err(|e| format!("STARTTLS failed: {}", with_sources(&e)))?;
            }
            _ => {}
        }
        if let Some(credentials) = &self.credentials {
            if let Err(e) = connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
            {
                connection.abort().await;
                return Err(format!("authentication failed: {}", with_sources(&e)));
            }
        }
        Ok(connection)
    }

    /// The most recently parked connection that is not too old; older ones are dropped.
    fn unpark(&self) -> Option<AsyncSmtpConnection> {
        // Invariant: the lock guards only a Vec's push and pop, which cannot panic.
        let mut idle = self.idle.lock().expect("SMTP pool lock poisoned");
        idle.retain(|(_, since)| since.elapsed() < Duration::from_millis(IDLE_MS_MAX));
        idle.pop().map(|(connection, _)| connection)
    }

    fn park(&self, connection: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().expect("SMTP pool lock poisoned");
        if idle.len() < self.idle_max {
            idle.push((connection, Instant::now()));
        }
    }
}

/// An error and its sources on one line (lettre's own text is often only "network error").
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(implicit_tls: bool, host: &str, port: u16) -> Result<Endpoint, String> {
        Ok(Endpoint {
            implicit_tls,
            host: host.into(),
            port,
        })
    }

    #[test]
    fn smtp_urls() {
        let check = |url: &str, expected: Result<Endpoint, String>| {
            let got = parse_url(url);
            match (&got, &expected) {
                (Ok(_), Ok(_)) => assert_eq!(got, expected, "{url}"),
                (Err(error), Err(part)) => {
                    assert!(error.contains(part.as_str()), "{url}: {error}");
                    assert!(
                        !error.contains("hunter2"),
                        "{url}: the error quotes the URL"
                    );
                }
                _ => panic!("{url}: {got:?}"),
            }
        };
        check(
            "smtp://mail.example.com",
            endpoint(false, "mail.example.com", 25),
        );
        check(
            "smtp://mail.example.com:587/",
            endpoint(false, "mail.example.com", 587),
        );
        check(
            "smtps://mail.example.com",
            endpoint(true, "mail.example.com", 465),
        );
        check("smtp://127.0.0.1:2525", endpoint(false, "127.0.0.1", 2525));
        check("smtp://[::1]:2525", endpoint(false, "::1", 2525));
        check("smtps://[::1]", endpoint(true, "::1", 465));
        check(
            "smtp://user:hunter2@mail.example.com",
            Err("user or password".into()),
        );
        check("http://mail.example.com", Err("must be smtp://".into()));
        check("smtp://", Err("no host".into()));
        check("smtp://host:0", Err("port".into()));
        check("smtp://host:99999", Err("port".into()));
        check("smtp://host:25/path", Err("no path".into()));
        check("smtp://[::1", Err("unclosed".into()));
    }
}
