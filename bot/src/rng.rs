//! The bot's only source of randomness: rand's [`Xoshiro256PlusPlus`], seeded from the run's
//! seed through named streams.
//!
//! Why this generator: it is one of rand's *named portable* generators, so a seed means the same
//! sequence on every platform and in every rand release of a minor version (`Cargo.lock` pins
//! the version); `StdRng` and `SmallRng` are explicitly not portable (rand may change their
//! algorithm in any release), and a bot run is only replayable if its seed is. The same
//! generator forms the engine's work buckets. Ranges and samples use rand's own
//! `random_range` and `partial_shuffle`, which are value-stable within a minor version too.
//!
//! **Invariant:** every random choice of a run comes from a [`Rng`] derived from the run's seed
//! with [`Rng::derive`]; nothing reads the time or the OS for randomness except
//! [`seed_from_time`], which only picks a seed when none was given (and the seed is printed).

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{Rng as _, RngExt, SeedableRng};

/// A seeded generator (xoshiro256++, Blackman and Vigna): 256 bits of state, seeded from 64
/// bits by rand's SplitMix64 expansion.
#[derive(Debug, Clone)]
pub struct Rng {
    inner: Xoshiro256PlusPlus,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng {
            inner: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }

    /// An independent stream for one purpose (`"posts"`, `"likes"`, `"password"`, ...), so that
    /// adding a draw to one phase does not shift the choices of another. (`seed_from_u64`
    /// mixes the xor into every bit of the state.)
    pub fn derive(seed: u64, stream: &str) -> Self {
        Rng::new(seed ^ fnv1a(stream.as_bytes()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `0..count`. Every index can come out, 0 included (the original bot's
    /// `randint(1, len - 1)` never picked index 0). Unbiased. Panics when `count` is 0 (a caller
    /// bug: there is nothing to pick).
    pub fn below(&mut self, count: u64) -> u64 {
        assert!(count > 0, "Rng::below(0): nothing to pick from");
        self.inner.random_range(0..count)
    }

    /// Uniform in `low..=high`. Panics when `low > high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "Rng::between({low}, {high})");
        self.inner.random_range(low..=high)
    }

    /// `count` distinct elements of `items` in random order; all of them (shuffled) when
    /// `count >= items.len()`.
    pub fn sample<T>(&mut self, mut items: Vec<T>, count: usize) -> Vec<T> {
        let count = count.min(items.len());
        // `partial_shuffle` moves the `count` picked elements, shuffled, to the end.
        let rest = items.len() - count;
        let _ = items.partial_shuffle(&mut self.inner, count);
        items.split_off(rest)
    }
}

/// FNV-1a, 64-bit: names streams and hashes the operation log. Stable by construction.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// A seed for a run that was not given one: the wall clock's nanoseconds, mixed. The caller
/// prints it so the run can be replayed with `--seed`.
pub fn seed_from_time() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0);
    Rng::new(nanos ^ u64::from(std::process::id())).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_streams_differ() {
        let draw = |rng: &mut Rng| (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>();
        assert_eq!(draw(&mut Rng::new(7)), draw(&mut Rng::new(7)));
        assert_ne!(
            draw(&mut Rng::derive(7, "posts")),
            draw(&mut Rng::derive(7, "likes"))
        );
        // Pinned: a seed must mean the same run on every build. rand promises this sequence for
        // xoshiro256++ (a portable generator); if an upgrade of rand changes it, seeds of
        // earlier runs no longer replay: say so in the upgrade's commit.
        assert_eq!(Rng::new(0).next_u64(), PINNED_FIRST_DRAW_OF_SEED_0);
        let mut rng = Rng::new(0);
        let drawn: Vec<u64> = (0..6).map(|_| rng.between(1, 6)).collect();
        assert_eq!(drawn, PINNED_DICE_OF_SEED_0);
    }

    const PINNED_FIRST_DRAW_OF_SEED_0: u64 = 0x5317_5D61_490B_23DF;
    const PINNED_DICE_OF_SEED_0: [u64; 6] = [2, 3, 3, 1, 3, 1];

    #[test]
    fn below_reaches_every_index_including_zero() {
        let mut rng = Rng::new(1);
        for count in 1..6u64 {
            let mut seen = vec![false; count as usize];
            for _ in 0..200 {
                seen[rng.below(count) as usize] = true;
            }
            assert!(seen.iter().all(|hit| *hit), "count {count}: {seen:?}");
        }
    }

    #[test]
    fn between_is_inclusive_and_sample_is_distinct() {
        let mut rng = Rng::new(3);
        let draws: Vec<u64> = (0..300).map(|_| rng.between(1, 3)).collect();
        assert!(draws.contains(&1) && draws.contains(&3));
        assert!(draws.iter().all(|value| (1..=3).contains(value)));
        assert_eq!(rng.between(5, 5), 5);
        let _ = rng.between(0, u64::MAX);
        let items: Vec<u32> = (0..10).collect();
        let mut picked = rng.sample(items.clone(), 4);
        assert_eq!(picked.len(), 4);
        picked.sort_unstable();
        picked.dedup();
        assert_eq!(picked.len(), 4);
        let mut all = rng.sample(items.clone(), 50);
        all.sort_unstable();
        assert_eq!(all, items);
        assert!(rng.sample(items, 0).is_empty());
    }

    #[test]
    fn sample_reaches_every_element_first() {
        let mut rng = Rng::new(5);
        let mut seen = [false; 6];
        for _ in 0..300 {
            seen[rng.sample((0..6).collect::<Vec<usize>>(), 2)[0]] = true;
        }
        assert!(seen.iter().all(|hit| *hit), "{seen:?}");
    }
}
