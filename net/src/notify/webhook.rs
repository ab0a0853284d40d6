//! The webhook adapter: one HTTP POST per notification to the contact's `webhook_url` (the
//! message's `to`), signed per the Standard Webhooks spec as API.md words it.
//!
//! The request: `content-type: application/json`, the body exactly
//! `{"notification_id", "dispatch_id", "program", "event_type", "message", "contact_id"}` (ids as
//! JSON integers, `program` and `event_type` as names), and the headers
//! - `webhook-id`: the message's idempotency key (the same on every attempt, so a receiver
//!   deduplicates by it);
//! - `webhook-timestamp`: Unix seconds when this attempt was signed;
//! - `webhook-signature`: `v1,` + base64 (standard alphabet, padded) of HMAC-SHA256 keyed with
//!   the UTF-8 bytes of the webhook secret over `{id}.{timestamp}.{body}`; absent when no secret
//!   is configured. (API.md's key is the secret's bytes as written, not the base64-decoded
//!   `whsec_` form of some Standard Webhooks libraries.)
//!
//! The answer is read through [`crate::notify::answer::outcome`]; at most
//! [`RESPONSE_BODY_BYTES_MAX`] of its body is read. A `to` that is not an `http(s)://` URL is
//! refused without a call.
//!
//! Invariant: the secret is used only as the HMAC key: never logged, never in an error text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::{Request, Uri};
use serde::Serialize;
use sha2::Sha256;
use switchyard_engine::dispatch::{Message, Outcome};

use crate::adapters::AdapterClient;
use crate::notify::answer;

/// The most of a receiver's answer body read (then the connection is closed, not pooled).
pub const RESPONSE_BODY_BYTES_MAX: usize = 64 * 1024;

/// The JSON body, in API.md's field order.
#[derive(Serialize)]
struct Body<'a> {
    notification_id: u64,
    dispatch_id: u64,
    program: &'a str,
    event_type: &'a str,
    message: &'a str,
    contact_id: u64,
}

/// The request body for `message`.
pub fn body(message: &Message) -> Vec<u8> {
    let body = Body {
        notification_id: message.notification_id,
        dispatch_id: message.dispatch_id,
        program: &message.program,
        event_type: &message.event_type,
        message: &message.message,
        contact_id: message.contact_id,
    };
    // Invariant: a struct of integers and strings always serializes.
    serde_json::to_vec(&body).expect("the webhook body serializes")
}

/// `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.
pub fn signature(secret: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // Invariant: HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

pub struct WebhookAdapter {
    client: AdapterClient,
    /// The HMAC key; `None`: unsigned.
    secret: Option<Vec<u8>>,
}

impl WebhookAdapter {
    pub fn new(client: AdapterClient, secret: Option<String>) -> WebhookAdapter {
        WebhookAdapter {
            client,
            secret: secret.map(String::into_bytes),
        }
    }

    /// One attempt of `message`, bounded by `timeout`.
    pub async fn send(&self, message: &Message, timeout: Duration) -> Outcome {
        let uri = match message.to.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                uri
            }
            _ => {
                return Outcome::Refused {
                    error: "the webhook URL is not an http(s):// URL".into(),
                }
            }
        };
        let body = body(message);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut request = Request::post(uri)
            .header("content-type", "application/json")
            .header("webhook-id", message.key.as_str())
            .header("webhook-timestamp", timestamp);
        if let Some(secret) = &self.secret {
            request = request.header(
                "webhook-signature",
                signature(secret, &message.key, timestamp, &body),
            );
        }
        let request = match request.body(Full::new(Bytes::from(body))) {
            Ok(request) => request,
            // Only the key can make a header invalid (a control character in it).
            Err(error) => {
                return Outcome::Refused {
                    error: format!("the webhook request cannot be built: {error}"),
                }
            }
        };
        match self
            .client
            .send(request, timeout, RESPONSE_BODY_BYTES_MAX)
            .await
        {
            Ok(reply) => answer::outcome(reply.status, &reply.headers, || {
                format!("webhook answered {}", reply.status)
            }),
            Err(failure) => answer::no_answer(format!("webhook: {}", failure.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_engine::dispatch::Channel;

    #[test]
    fn body_has_api_md_fields_in_order() {
        let message = Message {
            key: "n-7".into(),
            notification_id: 7,
            dispatch_id: 3,
            contact_id: 11,
            channel: Channel::Webhook,
            to: "http://127.0.0.1:9/hook".into(),
            program: "Storm \"warning\"".into(),
            event_type: "Alert".into(),
            message: "Take cover ✓".into(),
            attempts: 0,
        };
        assert_eq!(
            String::from_utf8(body(&message)).unwrap(),
            r#"{"notification_id":7,"dispatch_id":3,"program":"Storm \"warning\"","event_type":"Alert","message":"Take cover ✓","contact_id":11}"#
        );
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // Computed independently (Python: hmac.new(b"secret", b"msg_1.1700000000.{}",
        // hashlib.sha256), base64-encoded), so a change of framing or encoding fails here.
        assert_eq!(
            signature(b"secret", "msg_1", 1_700_000_000, b"{}"),
            "v1,A5oIrJxXPB/PkULSoVu0e4khvPiqpF9vljmhkSKg0FI="
        );
    }
}
