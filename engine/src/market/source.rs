//! Price sources and the `market.price` effect that reads them.
//!
//! A [`PriceSource`] gives the BTC rates in EUR, GBP and USD. The engine has two: [`Simulated`]
//! (a seeded random walk, the default, so a server works offline) and [`Fixed`]. An HTTP source
//! of a CoinDesk-v1-shaped document needs a network client, so the embedding program gives it
//! (the server's is in `net/src/domains/market/`), as it gives every effect handler.
//!
//! [`price_pool`] is the worker pool of `market.price` effects: one worker reads the source,
//! records the quote (or the failure) with the feed actor, writes a failure to the health log,
//! and publishes a recorded quote to [`super::Market::subscribe`] once it is durable.

use std::sync::Arc;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt as _, SeedableRng};
use serde::{Deserialize, Serialize};

use super::feed::{FeedCommand, FeedReply, PriceFeed};
use super::health::{HealthCommand, HealthLog, Level};
use super::money::Rate;
use super::{Currency, MarketState, PRICE_EFFECT};
use crate::clock::Millis;
use crate::runtime::effects::{EffectContext, EffectHandler, EffectOutcome, EffectPool};
use crate::runtime::outbox::Effect;

/// The rates of one read of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub eur: Rate,
    pub gbp: Rate,
    pub usd: Rate,
}

/// A price as recorded: the rates, where they came from and when they were read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub rates: Rates,
    pub source: String,
    pub at_ms: Millis,
}

impl Quote {
    /// The rate of `currency`.
    pub fn rate(&self, currency: Currency) -> Rate {
        match currency {
            Currency::Eur => self.rates.eur,
            Currency::Gbp => self.rates.gbp,
            Currency::Usd => self.rates.usd,
        }
    }
}

/// Where prices come from. `fetch` runs on an effect worker thread: it may block (an HTTP
/// source waits for its answer there, with its own timeout).
pub trait PriceSource: Send + Sync + 'static {
    /// What `GET /api/v1/price` names as the source (`simulated`, a URL, ...).
    fn describe(&self) -> String;

    /// Reads the rates; `seq` numbers the fetches and `previous` is the last recorded quote.
    fn fetch(&self, seq: u64, previous: Option<&Quote>) -> Result<Rates, String>;
}

/// `market.price_source`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Simulated,
    Fixed(Rates),
    Http(String),
}

impl SourceSpec {
    pub fn parse(text: &str) -> Result<SourceSpec, String> {
        if text == "simulated" {
            return Ok(SourceSpec::Simulated);
        }
        if let Some(list) = text.strip_prefix("fixed:") {
            let mut rates = [None; 3];
            for pair in list.split(',') {
                let (code, value) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("`{pair}` is not CUR=rate"))?;
                let currency = Currency::parse(code.trim())
                    .ok_or_else(|| format!("`{code}` is not EUR, GBP or USD"))?;
                let rate = Rate::parse(value.trim())
                    .ok_or_else(|| format!("`{value}` is not a rate above 0 and below 10^12"))?;
                rates[currency as usize] = Some(rate);
            }
            return match rates {
                [Some(eur), Some(gbp), Some(usd)] => Ok(SourceSpec::Fixed(Rates { eur, gbp, usd })),
                _ => Err("`fixed:` needs EUR, GBP and USD, like fixed:EUR=50000,GBP=43000,USD=58000".into()),
            };
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return Ok(SourceSpec::Http(text.to_string()));
        }
        Err(format!(
            "`{text}` is not `simulated`, `fixed:EUR=..,GBP=..,USD=..` or an http(s):// URL"
        ))
    }

    /// The engine's own source for this spec; `None` for an HTTP URL (the embedder gives it).
    pub fn builtin(&self, seed: u64) -> Option<Arc<dyn PriceSource>> {
        match self {
            SourceSpec::Simulated => Some(Arc::new(Simulated { seed })),
            SourceSpec::Fixed(rates) => Some(Arc::new(Fixed(*rates))),
            SourceSpec::Http(_) => None,
        }
    }
}

/// A fixed price.
pub struct Fixed(pub Rates);

impl PriceSource for Fixed {
    fn describe(&self) -> String {
        "fixed".into()
    }

    fn fetch(&self, _seq: u64, _previous: Option<&Quote>) -> Result<Rates, String> {
        Ok(self.0)
    }
}

/// A seeded random walk: each fetch moves the previous quote by a factor within ±0.5%, the
/// same for the three currencies (one BTC price, fixed cross rates). Deterministic in
/// (`seed`, `seq`, previous quote), so a restart continues the walk from the recorded price.
pub struct Simulated {
    pub seed: u64,
}

/// Where the simulated walk starts (rates with 4 decimals).
const SIMULATED_START: [u64; 3] = [500_000_000, 430_000_000, 580_000_000];
const SIMULATED_SCALE: u32 = 4;
/// The walk stays between these (in rate units of 4 decimals): 1,000 and 10,000,000.
const SIMULATED_FLOOR: u64 = 10_000_000;
const SIMULATED_CEILING: u64 = 100_000_000_000;

impl PriceSource for Simulated {
    fn describe(&self) -> String {
        "simulated".into()
    }

    fn fetch(&self, seq: u64, previous: Option<&Quote>) -> Result<Rates, String> {
        let mut rng =
            Xoshiro256PlusPlus::seed_from_u64(self.seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // Parts per million: −5,000 ..= 5,000.
        let step: i64 = rng.random_range(-5_000..=5_000);
        let start = |index: usize| Rate::new(SIMULATED_START[index], SIMULATED_SCALE);
        let walk = |rate: Option<Rate>, index: usize| -> Result<Rate, String> {
            let rate = rate.or_else(|| start(index)).ok_or("no start rate")?;
            let (units, scale) = rate.parts();
            // In 4-decimal units whatever the previous scale (a fixed source may have left
            // another): exact when the scale is at most 4, else truncated.
            let units = if scale <= SIMULATED_SCALE {
                units * 10u64.pow(SIMULATED_SCALE - scale)
            } else {
                units / 10u64.pow(scale - SIMULATED_SCALE)
            };
            let moved = (i128::from(units) * i128::from(1_000_000 + step) / 1_000_000) as u64;
            let moved = moved.clamp(SIMULATED_FLOOR, SIMULATED_CEILING);
            Rate::new(moved, SIMULATED_SCALE).ok_or_else(|| "the walk left its range".into())
        };
        let previous = previous.map(|quote| quote.rates);
        Ok(Rates {
            eur: walk(previous.map(|r| r.eur), 0)?,
            gbp: walk(previous.map(|r| r.gbp), 1)?,
            usd: walk(previous.map(|r| r.usd), 2)?,
        })
    }
}

/// Worker threads of the price pool: one fetch at a time is all a feed ever asks for.
const PRICE_WORKERS: usize = 1;
/// Its queue (the feed keeps at most one fetch pending).
const PRICE_QUEUE_DEPTH_MAX: usize = 4;
/// The `service` of the feed's own health reports.
pub const FEED_SERVICE: &str = "market.price_feed";
/// Consecutive failures after which the feed reports `critical` (the original's threshold).
const CRITICAL_AFTER_FAILURES: u32 = 3;

/// The worker pool that runs `market.price` effects with `source`.
pub fn price_pool(source: Arc<dyn PriceSource>) -> EffectPool {
    EffectPool {
        kind: PRICE_EFFECT.to_string(),
        handler: Arc::new(PriceFetch { source }),
        workers: PRICE_WORKERS,
        queue_depth_max: PRICE_QUEUE_DEPTH_MAX,
    }
}

struct PriceFetch {
    source: Arc<dyn PriceSource>,
}

impl EffectHandler for PriceFetch {
    fn run(&self, effect: &Effect, _attempts: u32, engine: &EffectContext<'_>) -> EffectOutcome {
        let Ok(seq) = crate::codec::decode::<u64>(&effect.payload) else {
            return EffectOutcome::GiveUp {
                error: "unreadable price fetch".into(),
            };
        };
        let state = engine.state::<MarketState>();
        let previous = state.quotes.borrow().clone();
        let name = self.source.describe();
        let outcome = self
            .source
            .fetch(seq, previous.as_ref())
            .map(|rates| super::Quote {
                rates,
                source: name.clone(),
                at_ms: engine.now_ms(),
            });
        let recorded = engine.ask::<PriceFeed>(
            0,
            FeedCommand::Record {
                seq,
                outcome: outcome.clone(),
            },
        );
        let reply = match recorded {
            Ok(FeedReply::Recorded(reply)) => reply,
            Ok(_) => {
                return EffectOutcome::GiveUp {
                    error: "unexpected feed reply".into(),
                }
            }
            Err(error) => {
                return EffectOutcome::Retry {
                    after_ms: 1_000,
                    error: format!("recording the fetch: {error}"),
                }
            }
        };
        if reply.published {
            if let Ok(quote) = &outcome {
                // Durable now (the feed's reply waited for it): subscribers may act on it.
                state.quotes.send_replace(Some(quote.clone()));
            }
        }
        let report = match &outcome {
            Err(error) => Some((
                if reply.failures > CRITICAL_AFTER_FAILURES {
                    Level::Critical
                } else {
                    Level::Error
                },
                "fetch_failed",
                format!(
                    "{name}: {error} ({} consecutive failures)",
                    reply.failures
                ),
            )),
            Ok(_) if reply.recovered_after > 0 => Some((
                Level::Info,
                "recovered",
                format!("{name}: a price again after {} failures", reply.recovered_after),
            )),
            Ok(_) => None,
        };
        if let Some((level, status, data)) = report {
            let added = engine.ask::<HealthLog>(
                0,
                HealthCommand::Add {
                    level,
                    service: FEED_SERVICE.into(),
                    status: status.into(),
                    data,
                },
            );
            if let Err(error) = added {
                tracing::warn!(%error, "market: the feed's health report was not written");
            }
        }
        EffectOutcome::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse_and_refuse_what_is_not_one() {
        assert_eq!(SourceSpec::parse("simulated"), Ok(SourceSpec::Simulated));
        let fixed = SourceSpec::parse("fixed:eur=50000,GBP=43000.5,USD=58000").unwrap();
        assert_eq!(
            fixed,
            SourceSpec::Fixed(Rates {
                eur: Rate::parse("50000").unwrap(),
                gbp: Rate::parse("43000.5").unwrap(),
                usd: Rate::parse("58000").unwrap(),
            })
        );
        assert_eq!(
            SourceSpec::parse("https://example.com/bpi.json"),
            Ok(SourceSpec::Http("https://example.com/bpi.json".into()))
        );
        for bad in [
            "",
            "simulated ",
            "fixed:EUR=1,GBP=2",
            "fixed:EUR=1,GBP=2,USD=0",
            "fixed:EUR=1,GPB=2,USD=3",
            "fixed:EUR:1",
            "ftp://example.com",
        ] {
            assert!(SourceSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_simulated_walk_is_seeded_and_moves_at_most_half_a_percent() {
        let source = Simulated { seed: 7 };
        let first = source.fetch(1, None).unwrap();
        assert_eq!(first, Simulated { seed: 7 }.fetch(1, None).unwrap());
        assert_ne!(first, Simulated { seed: 8 }.fetch(1, None).unwrap());
        let mut quote = Quote {
            rates: first,
            source: "simulated".into(),
            at_ms: 0,
        };
        for seq in 2..200 {
            let next = source.fetch(seq, Some(&quote)).unwrap();
            let (before, _) = quote.rates.eur.parts();
            let (after, scale) = next.eur.parts();
            let after = after * 10u64.pow(SIMULATED_SCALE - scale);
            let before = before * 10u64.pow(SIMULATED_SCALE - quote.rates.eur.parts().1);
            assert!(after.abs_diff(before) * 200 <= before + 200, "{before} → {after}");
            quote.rates = next;
        }
    }
}
