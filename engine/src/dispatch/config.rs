//! `NotifyConfig`: the `[notify]` section, every limit of the dispatch domain (catalog, dispatches,
//! delivery and its providers) with its default. This struct is the section's schema; its
//! `Default` is the only statement of the defaults. Secrets are not here: the SMTP password and
//! the SMS gateway's auth token come from the environment only (`SWITCHYARD_SMTP_PASSWORD`,
//! `SWITCHYARD_SMS_AUTH_TOKEN`); the webhook secret may be a key (`notify.webhook_secret`) or
//! `SWITCHYARD_WEBHOOK_SECRET`, and `switchyard config` never shows it.

use serde::{Deserialize, Serialize};

use crate::config::DomainConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Attempts (the first try and a 429 count) before a notification is dead-lettered on its
    /// channel, or fails over to the event type's next one (`notify.max_attempts`).
    pub max_attempts: u32,
    /// The first retry's delay bound; it doubles with each attempt (`notify.retry_base_ms`).
    pub retry_base_ms: u64,
    /// The cap of the doubling delay bound (`notify.retry_max_ms`); the delay is drawn in
    /// `0..=bound` (full jitter), and a `Retry-After` is honoured as the least delay.
    pub retry_max_ms: u64,
    /// The longest `Retry-After` honoured; a longer one is cut to this
    /// (`notify.retry_after_max_ms`).
    pub retry_after_max_ms: u64,
    /// `smtp://host:port` (plain, upgraded with STARTTLS per `notify.smtp_starttls`) or
    /// `smtps://host:port` (TLS from the start); unset: e-mail goes to the outbox only.
    pub smtp_url: Option<String>,
    /// SMTP user; the password from `SWITCHYARD_SMTP_PASSWORD`.
    pub smtp_user: Option<String>,
    /// `required` (refuse a server without STARTTLS), `opportunistic`, or `off`, for `smtp://`.
    pub smtp_starttls: String,
    /// The e-mails' From address.
    pub smtp_from: String,
    /// Base URL of a Twilio-compatible Messages API (`https://api.twilio.com`); unset: SMS goes
    /// to the outbox only. The auth token from `SWITCHYARD_SMS_AUTH_TOKEN`.
    pub sms_url: Option<String>,
    /// The account SID in the Messages path and the basic-auth user.
    pub sms_account_sid: Option<String>,
    /// The SMS sender (`From`).
    pub sms_from: String,
    /// HMAC-SHA256 key of the webhook signature; also `SWITCHYARD_WEBHOOK_SECRET`; unset:
    /// webhooks unsigned.
    pub webhook_secret: Option<String>,
    /// Time allowed for one provider call (`notify.provider_timeout_ms`).
    pub provider_timeout_ms: u64,
    /// Calls in flight at once per provider (`notify.webhook_concurrency`, ...).
    pub webhook_concurrency: usize,
    pub email_concurrency: usize,
    pub sms_concurrency: usize,
    /// Calls started per second per provider; 0 = unlimited (`notify.webhook_rate_per_second`,
    /// ...).
    pub webhook_rate_per_second: u32,
    pub email_rate_per_second: u32,
    pub sms_rate_per_second: u32,
    /// Notifications per delivery batch (one effect; `notify.batch_size`).
    pub batch_size: usize,
    /// Batches of one dispatch in delivery at once (`notify.batches_in_flight`): bounds the
    /// memory and the provider load of a large fan-out.
    pub batches_in_flight: usize,
    /// Threads delivering batches (`notify.workers`).
    pub workers: usize,
    /// Batches waiting for a delivery thread (`notify.queue_depth_max`).
    pub queue_depth_max: usize,
    /// Longest name of a program, event type, group or contact (`notify.name_max_chars`).
    pub name_max_chars: usize,
    /// Longest program message (`notify.message_max_chars`).
    pub message_max_chars: usize,
    /// Longest e-mail address, phone number or webhook URL (`notify.address_max_chars`).
    pub address_max_chars: usize,
    /// Most groups one event type or contact names (`notify.group_ids_max`).
    pub group_ids_max: usize,
    /// Programs, event types, groups and contacts the catalog holds, each
    /// (`notify.catalog_items_max`); beyond, 503 `overloaded`.
    pub catalog_items_max: usize,
    /// Dispatches kept (`notify.dispatches_max`); beyond, 503 `overloaded`.
    pub dispatches_max: usize,
    /// How often dispatches waiting for a condition are checked against the last price, besides
    /// every new price (`notify.signal_check_ms`).
    pub signal_check_ms: u64,
    /// Lines of a dispatch's transaction log kept; later steps are counted, not written
    /// (`notify.log_lines_max`).
    pub log_lines_max: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            max_attempts: 8,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            retry_after_max_ms: 3_600_000,
            smtp_url: None,
            smtp_user: None,
            smtp_starttls: "required".into(),
            smtp_from: "switchyard@localhost".into(),
            sms_url: None,
            sms_account_sid: None,
            sms_from: "Switchyard".into(),
            webhook_secret: None,
            provider_timeout_ms: 10_000,
            webhook_concurrency: 64,
            email_concurrency: 8,
            sms_concurrency: 16,
            webhook_rate_per_second: 0,
            email_rate_per_second: 0,
            sms_rate_per_second: 0,
            batch_size: 256,
            batches_in_flight: 8,
            workers: 4,
            queue_depth_max: 1_024,
            name_max_chars: 200,
            message_max_chars: 1_600,
            address_max_chars: 2_048,
            group_ids_max: 100,
            catalog_items_max: 10_000_000,
            dispatches_max: 1_000_000,
            signal_check_ms: 1_000,
            log_lines_max: 10_000,
        }
    }
}

impl DomainConfig for NotifyConfig {
    const SECTION: &'static str = "notify";

    fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("notify.max_attempts", u64::from(self.max_attempts)),
            ("notify.retry_base_ms", self.retry_base_ms),
            ("notify.retry_max_ms", self.retry_max_ms),
            ("notify.provider_timeout_ms", self.provider_timeout_ms),
            ("notify.webhook_concurrency", self.webhook_concurrency as u64),
            ("notify.email_concurrency", self.email_concurrency as u64),
            ("notify.sms_concurrency", self.sms_concurrency as u64),
            ("notify.batch_size", self.batch_size as u64),
            ("notify.batches_in_flight", self.batches_in_flight as u64),
            ("notify.workers", self.workers as u64),
            ("notify.queue_depth_max", self.queue_depth_max as u64),
            ("notify.name_max_chars", self.name_max_chars as u64),
            ("notify.message_max_chars", self.message_max_chars as u64),
            ("notify.address_max_chars", self.address_max_chars as u64),
            ("notify.group_ids_max", self.group_ids_max as u64),
            ("notify.catalog_items_max", self.catalog_items_max as u64),
            ("notify.dispatches_max", self.dispatches_max as u64),
            ("notify.log_lines_max", self.log_lines_max as u64),
            ("notify.signal_check_ms", self.signal_check_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("`{key}` must be at least 1"));
            }
        }
        // Notification ids are `dispatch id · 10^8 + n`: below 2^53 (exact in any JSON reader)
        // for every dispatch id up to this.
        if self.dispatches_max > 90_000_000 {
            return Err("`notify.dispatches_max` must be 1..=90000000".into());
        }
        if self.retry_max_ms < self.retry_base_ms {
            return Err("`notify.retry_max_ms` must be at least `notify.retry_base_ms`".into());
        }
        // A fan-out page is one WAL record (its contacts and their notifications, about 600
        // bytes per contact on three channels), which must stay under `record_bytes_max`.
        if self.batch_size > 1_024 {
            return Err("`notify.batch_size` must be 1..=1024".into());
        }
        if !["required", "opportunistic", "off"].contains(&self.smtp_starttls.as_str()) {
            return Err(
                "`notify.smtp_starttls` must be `required`, `opportunistic` or `off`".into(),
            );
        }
        if let Some(url) = &self.smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err("`notify.smtp_url` must be smtp://host:port or smtps://host:port".into());
            }
        }
        if let Some(url) = &self.sms_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err("`notify.sms_url` must be an http(s):// URL".into());
            }
            if self.sms_account_sid.is_none() {
                return Err("`notify.sms_url` needs `notify.sms_account_sid`".into());
            }
        }
        Ok(())
    }
}
