//! Per-key rate limits for the unauthenticated social routes (API.md Social): failed logins per
//! e-mail and per source address (`auth.login_failures_per_minute`), and sign-ups per source
//! address (`auth.signups_per_minute_per_source`). Over the limit a request gets 429
//! `rate_limited` with `Retry-After` (the seconds until its window ends).
//!
//! A [`Throttle`] is a table of fixed one-minute windows, key → (window start, count). An attempt
//! is counted *before* the work it guards ([`Throttle::take`]), so concurrent attempts cannot
//! overshoot the limit; a login that turns out to succeed gives its slot back
//! ([`Throttle::refund`]), so only failures count against an e-mail.
//!
//! Invariants:
//! - Memory is bounded: a table holds at most `auth.throttle_keys_max` keys. When full, expired
//!   windows are dropped first, then every window (forgetting counts lets some attempts through;
//!   refusing new keys would lock honest users out).
//! - Keys are fixed-size: an e-mail is kept as a 64-bit keyed hash of its lowercase form (never
//!   the address itself, whatever its length), an address as its IP.
//! - Nothing here reveals whether an e-mail is registered: the login throttle counts an unknown
//!   e-mail's failures exactly like a known one's, and is checked before the password is.
//! - Time comes from the caller (the engine's clock), in milliseconds.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::error::ApiError;

/// The length of a window.
pub const WINDOW_MS: u64 = 60_000;

/// What a throttle is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// A keyed hash of an e-mail address, lowercased (see [`Throttle::email_key`]).
    Email(u64),
    /// A source address.
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: u64,
    count: u32,
}

/// One table of windows with one limit. See the module docs.
#[derive(Debug)]
pub struct Throttle {
    /// Attempts allowed per key per window; 0 = no limit.
    limit: u32,
    keys_max: usize,
    /// What a refusal says (the 429's message).
    what: &'static str,
    hasher: RandomState,
    windows: Mutex<HashMap<ThrottleKey, Window>>,
}

impl Throttle {
    /// A throttle allowing `limit` attempts per key per minute (0 = unlimited) over at most
    /// `keys_max` keys; `what` names the attempts in the 429 message ("failed logins").
    pub fn new(limit: u32, keys_max: usize, what: &'static str) -> Throttle {
        Throttle {
            limit,
            keys_max: keys_max.max(1),
            what,
            hasher: RandomState::new(),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The key of an e-mail: a hash keyed per process of its trimmed, lowercased form, so
    /// `Ann@Example.com` and `ann@example.com` share a window and no address is stored.
    pub fn email_key(&self, email: &str) -> ThrottleKey {
        ThrottleKey::Email(self.hasher.hash_one(email.trim().to_lowercase()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThrottleKey, Window>> {
        // Invariant: nothing panics while the map is held (only map operations).
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one attempt for each of `keys` at `now_ms`, or refuses (429 `rate_limited`, nothing
    /// counted) when any of them is at its limit in its current window.
    pub fn take(&self, keys: &[ThrottleKey], now_ms: u64) -> Result<(), ApiError> {
        if self.limit == 0 || keys.is_empty() {
            return Ok(());
        }
        let mut windows = self.lock();
        let mut wait_ms = 0;
        for key in keys {
            if let Some(window) = windows.get(key) {
                let end_ms = window.start_ms + WINDOW_MS;
                if now_ms < end_ms && window.count >= self.limit {
                    wait_ms = wait_ms.max(end_ms - now_ms);
                }
            }
        }
        if wait_ms > 0 {
            return Err(ApiError::rate_limited(
                format!(
                    "too many {} (at most {} per minute); retry later",
                    self.what, self.limit
                ),
                wait_ms,
            ));
        }
        for key in keys {
            if !windows.contains_key(key) && windows.len() >= self.keys_max {
                windows.retain(|_, window| now_ms < window.start_ms + WINDOW_MS);
                if windows.len() >= self.keys_max {
                    tracing::warn!(
                        keys = windows.len(),
                        what = self.what,
                        "throttle table full; forgetting every window"
                    );
                    windows.clear();
                }
            }
            let window = windows.entry(*key).or_insert(Window {
                start_ms: now_ms,
                count: 0,
            });
            if now_ms >= window.start_ms + WINDOW_MS {
                *window = Window {
                    start_ms: now_ms,
                    count: 0,
                };
            }
            window.count += 1;
        }
        Ok(())
    }

    /// Gives back one attempt counted by [`Throttle::take`] for each of `keys` (a login that
    /// succeeded), if its window is still the same.
    pub fn refund(&self, keys: &[ThrottleKey]) {
        if self.limit == 0 {
            return;
        }
        let mut windows = self.lock();
        for key in keys {
            if let Some(window) = windows.get_mut(key) {
                window.count = window.count.saturating_sub(1);
            }
        }
    }

    /// Keys tracked now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(last: u8) -> ThrottleKey {
        ThrottleKey::Address(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn the_limit_holds_per_key_and_per_window() {
        let throttle = Throttle::new(3, 100, "attempts");
        let ann = throttle.email_key("Ann@Example.com ");
        assert_eq!(ann, throttle.email_key("ann@example.com"));
        for _ in 0..3 {
            throttle.take(&[ann, address(1)], 1_000).unwrap();
        }
        let refused = throttle.take(&[ann], 1_500).unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        assert_eq!(refused.code, "rate_limited");
        // 59.5 s left in the window, rounded up.
        assert_eq!(refused.retry_after_seconds, Some(60));
        // Refused on either key: the address is full too.
        let other = throttle.email_key("bob@example.com");
        assert!(throttle.take(&[other, address(1)], 2_000).is_err());
        // A refusal counts nothing: `other` alone is still free.
        throttle.take(&[other], 2_000).unwrap();
        // The next window starts afresh.
        throttle.take(&[ann, address(1)], 61_000).unwrap();
    }

    #[test]
    fn a_refund_gives_an_attempt_back() {
        let throttle = Throttle::new(1, 100, "attempts");
        let key = address(9);
        throttle.take(&[key], 0).unwrap();
        throttle.refund(&[key]);
        throttle.take(&[key], 1).unwrap();
        assert!(throttle.take(&[key], 2).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let throttle = Throttle::new(5, 4, "attempts");
        for last in 0..4 {
            throttle.take(&[address(last)], 0).unwrap();
        }
        assert_eq!(throttle.len(), 4);
        // Full, nothing expired: everything is forgotten to make room.
        throttle.take(&[address(200)], 10).unwrap();
        assert_eq!(throttle.len(), 1);
        for last in 0..3 {
            throttle.take(&[address(last)], 10).unwrap();
        }
        // Full again; the windows from t=10 have expired at t=70_000 and go first.
        throttle.take(&[address(201)], 70_000).unwrap();
        assert_eq!(throttle.len(), 1);
    }

    #[test]
    fn zero_means_unlimited() {
        let throttle = Throttle::new(0, 1, "attempts");
        for _ in 0..100 {
            throttle.take(&[address(1), address(2)], 0).unwrap();
        }
        assert!(throttle.is_empty());
    }
}
