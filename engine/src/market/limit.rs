//! The per-user rate limit on order creation: a token bucket of `market.rate_limit_per_minute`
//! tokens per user, refilled continuously (one token every 60/n seconds). Kept in memory only:
//! a restart forgives, which costs a client at most one extra minute's worth of orders.
//!
//! The book's decision takes a token after the idempotency check (a replay never counts) and
//! before the price and cap checks (a refused order counts: it was a request). Integer
//! arithmetic: tokens are counted in 1/60,000ths, so a bucket refills `per_minute` units per
//! millisecond and an order costs 60,000.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::Millis;
use crate::error::{Error, Result};

const MINUTE_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens × 60,000.
    units: u64,
    at_ms: Millis,
}

pub struct RateLimiter {
    per_minute: u32,
    users_max: usize,
    buckets: Mutex<HashMap<u64, Bucket>>,
}

impl RateLimiter {
    /// `per_minute` = 0: unlimited.
    pub fn new(per_minute: u32, users_max: usize) -> RateLimiter {
        RateLimiter {
            per_minute,
            users_max,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn capacity(&self) -> u64 {
        u64::from(self.per_minute) * MINUTE_MS
    }

    /// Takes one token of `user_id`'s bucket, or says when one will be there (429).
    pub fn take(&self, user_id: u64, now_ms: Millis) -> Result<()> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = self.capacity();
        let per_minute = u64::from(self.per_minute);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&user_id) && buckets.len() >= self.users_max {
            // A full bucket is the same as none: forget those first.
            buckets.retain(|_, bucket| {
                bucket.units + now_ms.saturating_sub(bucket.at_ms) * per_minute < capacity
            });
            if buckets.len() >= self.users_max {
                return Err(Error::Overloaded("order rate limiter"));
            }
        }
        let bucket = buckets.entry(user_id).or_insert(Bucket {
            units: capacity,
            at_ms: now_ms,
        });
        let refilled = now_ms.saturating_sub(bucket.at_ms).saturating_mul(per_minute);
        bucket.units = bucket.units.saturating_add(refilled).min(capacity);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.units >= MINUTE_MS {
            bucket.units -= MINUTE_MS;
            return Ok(());
        }
        let retry_after_ms = (MINUTE_MS - bucket.units).div_ceil(per_minute);
        Err(Error::RateLimited {
            message: format!(
                "at most {} orders per minute; retry in {} ms",
                self.per_minute, retry_after_ms
            ),
            retry_after_ms,
        })
    }

    /// Users with a bucket.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(result: Result<()>) -> u64 {
        match result {
            Err(Error::RateLimited { retry_after_ms, .. }) => retry_after_ms,
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }

    #[test]
    fn a_bucket_holds_a_minute_of_orders_and_refills_continuously() {
        let limiter = RateLimiter::new(60, 10);
        for _ in 0..60 {
            limiter.take(1, 1_000).unwrap();
        }
        // One token per second.
        assert_eq!(retry_after(limiter.take(1, 1_000)), 1_000);
        assert_eq!(retry_after(limiter.take(1, 1_400)), 600);
        limiter.take(1, 2_000).unwrap();
        assert_eq!(retry_after(limiter.take(1, 2_000)), 1_000);
        // Another user has its own bucket.
        limiter.take(2, 2_000).unwrap();
        // A long pause refills to the capacity, not beyond.
        for _ in 0..60 {
            limiter.take(1, 1_000_000).unwrap();
        }
        assert!(limiter.take(1, 1_000_000).is_err());
    }

    #[test]
    fn zero_is_unlimited_and_the_table_is_bounded() {
        let unlimited = RateLimiter::new(0, 1);
        for user in 0..1000 {
            unlimited.take(user, 0).unwrap();
        }
        assert!(unlimited.is_empty());
        let limiter = RateLimiter::new(2, 2);
        limiter.take(1, 0).unwrap();
        limiter.take(2, 0).unwrap();
        // Both buckets are partly drained: a third user must wait.
        assert!(matches!(limiter.take(3, 0), Err(Error::Overloaded(_))));
        // Once they refilled, they are forgotten and the third user gets one.
        limiter.take(3, 60_000).unwrap();
        assert_eq!(limiter.len(), 1);
    }
}
