//! The seam between dispatch and the providers that carry notifications: a [`Courier`] takes a
//! batch of [`Message`]s and says what became of each ([`Outcome`]). The engine does no network
//! I/O: the server gives the courier (webhook, SMTP, Twilio-compatible SMS adapters) when it
//! opens the engine, and [`OfflineCourier`] (every message kept in the outbox only) is the
//! default. A courier is called on an effect worker thread, never on an actor thread; it may
//! block, and should carry a batch's messages concurrently (within its providers' limits).
//!
//! Invariant: a message's `key` is the notification's idempotency key, the same on every attempt
//! and after a restart; an adapter passes it to its provider (`webhook-id`, the e-mail's
//! Message-ID, the SMS gateway's idempotency header) so a provider that deduplicates by it never
//! delivers twice.

use serde::{Deserialize, Serialize};

/// A notification channel, in the order API.md names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Channel {
    Sms,
    Email,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Sms, Channel::Email, Channel::Webhook];

    /// `sms`, `email` or `webhook`.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        Channel::ALL
            .into_iter()
            .find(|channel| channel.name() == text)
    }
}

/// One notification to carry, as the courier sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The idempotency key (stable across attempts and restarts).
    pub key: String,
    pub notification_id: u64,
    pub dispatch_id: u64,
    pub contact_id: u64,
    /// The channel carrying it now (the notification's own, or the one it failed over to).
    pub channel: Channel,
    /// The address on that channel: a phone number, an e-mail address or a webhook URL.
    pub to: String,
    /// The program's name.
    pub program: String,
    /// The event type's name.
    pub event_type: String,
    /// The program's message.
    pub message: String,
    /// Attempts that failed before this one (on any channel).
    pub attempts: u32,
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted it: delivered.
    Sent,
    /// Not delivered; worth another attempt (a time-out, a dropped connection, a 5xx, a 429).
    /// `retry_after_ms`: the provider's `Retry-After`, honoured as the least delay.
    Retry {
        error: String,
        retry_after_ms: Option<u64>,
    },
    /// The provider refused it for good (a 4xx other than 408 and 429, an address it rejects):
    /// no more attempts on this channel.
    Refused { error: String },
    /// No provider is configured for the channel: the message is kept in the outbox (what would
    /// have been sent) and counts as delivered there.
    Outboxed,
}

/// Carries messages to their providers.
pub trait Courier: Send + Sync + 'static {
    /// One attempt of each message, in any order and concurrently; the outcomes in the order
    /// of `messages`.
    fn deliver(&self, messages: &[Message]) -> Vec<Outcome>;
}

/// The offline default: no provider, every message kept in the outbox.
#[derive(Debug, Default, Clone, Copy)]
pub struct OfflineCourier;

impl Courier for OfflineCourier {
    fn deliver(&self, messages: &[Message]) -> Vec<Outcome> {
        vec![Outcome::Outboxed; messages.len()]
    }
}
