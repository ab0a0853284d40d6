//! What an HTTP provider's answer means for a notification: the one table from a status to an
//! [`Outcome`] both HTTP adapters (webhook, SMS) use, and `Retry-After` read as delta-seconds or
//! an HTTP-date.
//!
//! The table: 2xx → `Sent`; 408, 429 and 5xx → `Retry` (with the answer's `Retry-After`); any
//! other 4xx → `Refused` (the request itself is wrong: resending it cannot help); anything else
//! (1xx, 3xx: redirects are not followed) → `Retry`, as API.md says of webhooks ("anything else
//! or no answer is retried"). No answer at all (time-out, refused or dropped connection) is
//! `Retry` without a delay.

use std::time::{Duration, SystemTime};

use hyper::header::RETRY_AFTER;
use hyper::{HeaderMap, StatusCode};
use switchyard_engine::dispatch::Outcome;

/// The outcome of an answer with `status` and `headers`; `what` describes the answer for the
/// error text (for example `webhook answered 404 Not Found`).
pub fn outcome(status: StatusCode, headers: &HeaderMap, what: impl FnOnce() -> String) -> Outcome {
    if status.is_success() {
        Outcome::Sent
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Outcome::Retry {
            error: what(),
            retry_after_ms: retry_after_ms(headers, SystemTime::now()),
        }
    } else if status.is_client_error() {
        Outcome::Refused { error: what() }
    } else {
        Outcome::Retry {
            error: what(),
            retry_after_ms: None,
        }
    }
}

/// A call that got no answer: worth another attempt, at the engine's own pace.
pub fn no_answer(error: String) -> Outcome {
    Outcome::Retry {
        error,
        retry_after_ms: None,
    }
}

/// The `Retry-After` of `headers` in milliseconds from `now`: delta-seconds (`120`) or an
/// HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`; one in the past is 0). `None` when absent,
/// repeated (ambiguous) or unreadable.
pub fn retry_after_ms(headers: &HeaderMap, now: SystemTime) -> Option<u64> {
    let mut values = headers.get_all(RETRY_AFTER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        // More digits than a u64 holds is a delay longer than anyone will wait: the engine
        // caps it (`notify.retry_after_max_ms`).
        return Some(
            text.parse::<u64>()
                .unwrap_or(u64::MAX)
                .saturating_mul(1_000),
        );
    }
    let at = httpdate::parse_http_date(text).ok()?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(retry_after: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in retry_after {
            headers.append(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let check = |values: &[&str], expected: Option<u64>| {
            assert_eq!(
                retry_after_ms(&headers(values), now),
                expected,
                "{values:?}"
            );
        };
        check(&[], None);
        check(&["0"], Some(0));
        check(&["7"], Some(7_000));
        check(&[" 120 "], Some(120_000));
        check(&["99999999999999999999999"], Some(u64::MAX));
        check(&["Wed, 21 Oct 2015 07:28:30 GMT"], Some(30_000));
        check(&["Wed, 21 Oct 2015 07:27:00 GMT"], Some(0));
        check(&["-5"], None);
        check(&["1.5"], None);
        check(&["soon"], None);
        check(&["5", "6"], None);
    }

    #[test]
    fn status_table() {
        let what = || "answered".to_string();
        let check = |status: u16, expected: &str| {
            let status = StatusCode::from_u16(status).unwrap();
            let got = match outcome(status, &headers(&["3"]), what) {
                Outcome::Sent => "sent".to_string(),
                Outcome::Retry { retry_after_ms, .. } => format!("retry {retry_after_ms:?}"),
                Outcome::Refused { .. } => "refused".to_string(),
                Outcome::Outboxed => "outboxed".to_string(),
            };
            assert_eq!(got, expected, "{status}");
        };
        for status in [200, 201, 202, 204, 299] {
            check(status, "sent");
        }
        for status in [408, 429, 500, 502, 503, 504, 599] {
            check(status, "retry Some(3000)");
        }
        for status in [400, 401, 403, 404, 405, 409, 410, 413, 422, 451, 499] {
            check(status, "refused");
        }
        for status in [100, 301, 302, 307, 308] {
            check(status, "retry None");
        }
    }
}
