//! The bot's only source of randomness: a seeded SplitMix64 generator.
//!
//! It is written out here (a dozen lines) instead of taken from `rand` so that a seed means the
//! same sequence on every build: `rand`'s `StdRng` does not promise that across versions, and a
//! bot run is only replayable if its seed is.
//!
//! **Invariant:** every random choice of a run comes from a [`Rng`] derived from the run's seed
//! with [`Rng::derive`]; nothing reads the time or the OS for randomness except
//! [`seed_from_time`], which only picks a seed when none was given (and the seed is printed).

/// A SplitMix64 generator (Steele, Lea and Flood, 2014): 64 bits of state, full period, good
/// enough statistical quality for choosing users and posts.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// An independent stream for one purpose (`"posts"`, `"likes"`, `"password"`, ...), so that
    /// adding a draw to one phase does not shift the choices of another.
    pub fn derive(seed: u64, stream: &str) -> Self {
        let mut rng = Rng::new(seed ^ fnv1a(stream.as_bytes()));
        // One step mixes the xor above into every bit.
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..count`. Every index can come out, 0 included (the original bot's
    /// `randint(1, len - 1)` never picked index 0). Unbiased: draws in the biased tail are
    /// rejected. Panics when `count` is 0 (a caller bug: there is nothing to pick).
    pub fn below(&mut self, count: u64) -> u64 {
        assert!(count > 0, "Rng::below(0): nothing to pick from");
        let zone = u64::MAX - (u64::MAX % count);
        loop {
            let value = self.next_u64();
            if value < zone {
                return value % count;
            }
        }
    }

    /// Uniform in `low..=high`. Panics when `low > high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "Rng::between({low}, {high})");
        match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            None => self.next_u64(),
        }
    }

    /// `count` distinct elements of `items` in random order (a partial Fisher–Yates shuffle);
    /// all of them when `count >= items.len()`.
    pub fn sample<T>(&mut self, mut items: Vec<T>, count: usize) -> Vec<T> {
        let count = count.min(items.len());
        for index in 0..count {
            let remaining = (items.len() - index) as u64;
            let pick = index + self.below(remaining) as usize;
            items.swap(index, pick);
        }
        items.truncate(count);
        items
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
        // Pinned: a seed must mean the same run on every build.
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

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
        let items: Vec<u32> = (0..10).collect();
        let mut picked = rng.sample(items.clone(), 4);
        assert_eq!(picked.len(), 4);
        picked.sort_unstable();
        picked.dedup();
        assert_eq!(picked.len(), 4);
        assert_eq!(rng.sample(items, 50).len(), 10);
    }
}
