//! The SMS adapter: Twilio's Messages API, or any gateway that speaks it
//! (`notify.sms_url` is its base URL).
//!
//! The request: `POST {sms_url}/2010-04-01/Accounts/{sid}/Messages.json`, form-encoded
//! (`application/x-www-form-urlencoded`) `To` (the message's `to`), `From` (`notify.sms_from`)
//! and `Body` (the program's message), HTTP basic auth `sid:token` (the token from
//! `SWITCHYARD_SMS_AUTH_TOKEN`), and the idempotency key in `I-Twilio-Idempotency-Token`
//! (Twilio's header) and `Idempotency-Key` (the common one), so a gateway deduplicating by
//! either never sends twice.
//!
//! The answer: 200/201 → `Sent`; otherwise [`crate::notify::answer::outcome`]'s table (429, 5xx
//! and no answer retried with `Retry-After`; a 400 such as Twilio's 21211 "invalid To number"
//! refused), with the gateway's own `code` and `message` (Twilio's error JSON) in the error text.
//!
//! Invariant: the auth token is only ever in the `Authorization` header: never logged, never in
//! an error text, and this type has no `Debug`.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use switchyard_engine::dispatch::{Message, Outcome};

use crate::adapters::AdapterClient;
use crate::notify::answer;

/// The most of a gateway's answer body read (its error JSON is well under 1 KiB).
pub const RESPONSE_BODY_BYTES_MAX: usize = 64 * 1024;
/// The most of a gateway's error message kept in an outcome's error text, in characters.
const GATEWAY_MESSAGE_CHARS_MAX: usize = 300;

/// Twilio's error body: `{"code": 21211, "message": "...", "more_info": "...", "status": 400}`.
#[derive(Deserialize)]
struct GatewayError {
    code: Option<u64>,
    message: Option<String>,
}

pub struct SmsAdapter {
    client: AdapterClient,
    /// `{sms_url}/2010-04-01/Accounts/{sid}/Messages.json`.
    messages_url: String,
    /// `Basic base64(sid:token)`: holds the secret.
    authorization: String,
    from: String,
}

impl SmsAdapter {
    /// `account_sid` must be checked by the caller (ASCII letters and digits: it is a path
    /// segment as it is).
    pub fn new(
        client: AdapterClient,
        sms_url: &str,
        account_sid: &str,
        auth_token: &str,
        from: String,
    ) -> SmsAdapter {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{account_sid}:{auth_token}"));
        SmsAdapter {
            client,
            messages_url: format!(
                "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                sms_url.trim_end_matches('/')
            ),
            authorization: format!("Basic {credentials}"),
            from,
        }
    }

    /// The form body for `message`.
    pub fn form(&self, message: &Message) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("To", &message.to)
            .append_pair("From", &self.from)
            .append_pair("Body", &message.message)
            .finish()
    }

    /// One attempt of `message`, bounded by `timeout`.
    pub async fn send(&self, message: &Message, timeout: Duration) -> Outcome {
        let request = Request::post(self.messages_url.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("authorization", self.authorization.as_str())
            .header("i-twilio-idempotency-token", message.key.as_str())
            .header("idempotency-key", message.key.as_str())
            .body(Full::new(Bytes::from(self.form(message))));
        let request = match request {
            Ok(request) => request,
            // The URL and the authorization were checked at start-up: only the key is left.
            Err(_) => {
                return Outcome::Refused {
                    error: "the SMS request cannot be built (the idempotency key is not a valid header value)".into(),
                }
            }
        };
        let reply = match self
            .client
            .send(request, timeout, RESPONSE_BODY_BYTES_MAX)
            .await
        {
            Ok(reply) => reply,
            Err(failure) => return answer::no_answer(format!("SMS gateway: {}", failure.0)),
        };
        if reply.status == StatusCode::OK || reply.status == StatusCode::CREATED {
            return Outcome::Sent;
        }
        answer::outcome(reply.status, &reply.headers, || {
            describe_error(reply.status, &reply.body)
        })
    }
}

/// `SMS gateway answered 400 Bad Request: code 21211: The 'To' number ... is not valid.`
fn describe_error(status: StatusCode, body: &[u8]) -> String {
    let mut text = format!("SMS gateway answered {status}");
    if let Ok(error) = serde_json::from_slice::<GatewayError>(body) {
        if let Some(code) = error.code {
            text.push_str(&format!(": code {code}"));
        }
        if let Some(message) = error.message {
            text.push_str(": ");
            text.extend(message.chars().take(GATEWAY_MESSAGE_CHARS_MAX));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_errors_are_quoted() {
        let body = br#"{"code": 21211, "message": "The 'To' number 123 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#;
        assert_eq!(
            describe_error(StatusCode::BAD_REQUEST, body),
            "SMS gateway answered 400 Bad Request: code 21211: The 'To' number 123 is not a valid phone number."
        );
        assert_eq!(
            describe_error(StatusCode::BAD_GATEWAY, b"<html>"),
            "SMS gateway answered 502 Bad Gateway"
        );
        let long = format!(r#"{{"message": "{}"}}"#, "x".repeat(1_000));
        assert!(
            describe_error(StatusCode::BAD_REQUEST, long.as_bytes()).len()
                < GATEWAY_MESSAGE_CHARS_MAX + 60
        );
    }
}
