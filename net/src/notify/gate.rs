//! [`Gate`]: what a provider call waits for before it starts: a permit of the provider's
//! concurrency limit (`notify.*_concurrency`, a tokio `Semaphore`) and then its turn under the
//! provider's rate limit (`notify.*_rate_per_second`, a token bucket). One gate per provider,
//! shared by every `deliver` call, so several effect workers delivering at once still keep the
//! limits together.
//!
//! Invariants: at most `concurrency` calls of a provider run at once (a permit is held for the
//! whole call, time-out included); in any window of one second at most `rate` calls start
//! (the bucket holds one second of tokens, so an idle provider may start `rate` calls at once,
//! then one every `1/rate` s). The bucket's arithmetic ([`RateLimiter::reserve`]) is a pure
//! function of the time it is given, so it is tested without sleeping.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A token bucket of `rate` starts per second, holding at most `rate` tokens. It is kept as the
/// time the bucket will next be full (GCRA's "theoretical arrival time"), in nanoseconds since
/// the limiter was made.
#[derive(Debug)]
pub struct RateLimiter {
    /// Nanoseconds between two starts at the sustained rate.
    interval_ns: u64,
    /// How far ahead of now the full-time may run before a start must wait: a burst of `rate`.
    burst_ns: u64,
    full_at_ns: Mutex<u64>,
}

impl RateLimiter {
    /// `None` for 0 (unlimited).
    pub fn new(rate_per_second: u32) -> Option<RateLimiter> {
        if rate_per_second == 0 {
            return None;
        }
        let interval_ns = (NANOS_PER_SECOND / u64::from(rate_per_second)).max(1);
        Some(RateLimiter {
            interval_ns,
            burst_ns: interval_ns * (u64::from(rate_per_second) - 1),
            full_at_ns: Mutex::new(0),
        })
    }

    /// Takes the next start at or after `now_ns`; how long to wait for it, in nanoseconds.
    pub fn reserve(&self, now_ns: u64) -> u64 {
        // Invariant: the lock is only held for this arithmetic, which cannot panic.
        let mut full_at_ns = self.full_at_ns.lock().expect("rate limiter lock poisoned");
        let start_ns = now_ns.max(full_at_ns.saturating_sub(self.burst_ns));
        *full_at_ns = (*full_at_ns).max(now_ns) + self.interval_ns;
        start_ns - now_ns
    }
}

/// A provider's concurrency and rate limits.
pub struct Gate {
    permits: Arc<Semaphore>,
    rate: Option<RateLimiter>,
    /// The origin of `RateLimiter`'s clock.
    epoch: Instant,
}

impl Gate {
    /// `concurrency` calls at once (at least 1), `rate_per_second` starts per second (0 = no
    /// limit).
    pub fn new(concurrency: usize, rate_per_second: u32) -> Gate {
        Gate {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            rate: RateLimiter::new(rate_per_second),
            epoch: Instant::now(),
        }
    }

    /// Runs `call` once a permit is held and its start is due; the permit is held until it ends.
    pub async fn run<F: Future>(&self, call: F) -> F::Output {
        // Invariant: the semaphore is never closed, so acquiring cannot fail.
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("a gate's semaphore is never closed");
        if let Some(rate) = &self.rate {
            let now_ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let wait_ns = rate.reserve(now_ns);
            if wait_ns > 0 {
                tokio::time::sleep(Duration::from_nanos(wait_ns)).await;
            }
        }
        call.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn zero_rate_is_unlimited() {
        assert!(RateLimiter::new(0).is_none());
    }

    #[test]
    fn a_full_bucket_starts_a_burst_then_paces() {
        let limiter = RateLimiter::new(10).unwrap();
        // Ten at once from a full bucket, then one every 100 ms.
        let waits: Vec<u64> = (0..13).map(|_| limiter.reserve(0)).collect();
        assert_eq!(&waits[..10], &[0; 10]);
        assert_eq!(&waits[10..], &[100 * MS, 200 * MS, 300 * MS]);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let limiter = RateLimiter::new(10).unwrap();
        for _ in 0..10 {
            assert_eq!(limiter.reserve(0), 0);
        }
        // 250 ms later two tokens are back (and a half): two start at once, the third waits.
        assert_eq!(limiter.reserve(250 * MS), 0);
        assert_eq!(limiter.reserve(250 * MS), 0);
        assert_eq!(limiter.reserve(250 * MS), 50 * MS);
        // After a long idle the bucket is full again, but holds no more than `rate`.
        let later = 10_000 * MS;
        let waits: Vec<u64> = (0..11).map(|_| limiter.reserve(later)).collect();
        assert_eq!(&waits[..10], &[0; 10]);
        assert_eq!(waits[10], 100 * MS);
    }

    #[test]
    fn one_per_second() {
        let limiter = RateLimiter::new(1).unwrap();
        assert_eq!(limiter.reserve(0), 0);
        assert_eq!(limiter.reserve(0), 1_000 * MS);
        assert_eq!(limiter.reserve(0), 2_000 * MS);
    }

    #[tokio::test]
    async fn a_gate_holds_its_concurrency() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = Arc::new(Gate::new(3, 0));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    gate.run(async {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }
}
