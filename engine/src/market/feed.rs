//! The price feed: the last recorded quote and the refresh schedule, a durable timer.
//!
//! When the timer fires (every `market.price_refresh_seconds`, and at once on a data dir that
//! never fetched) the feed asks for fetch `seq` as a `market.price` effect, unless an earlier
//! fetch is still pending, in which case it only moves the timer: at most one fetch is ever
//! pending, so a missing or stuck source never piles effects up. The effect's handler records
//! the outcome here ([`FeedCommand::Record`]). A quote is kept only if it is newer (by `seq`)
//! than the one held, so a fetch handed out again after a crash cannot roll the price back.

use serde::{Deserialize, Serialize};

use super::{singleton, MarketConfig, MarketEvent, Quote, PRICE_EFFECT, PRICE_FEED};
use crate::clock::Millis;
use crate::error::Result;
use crate::runtime::outbox::{self, Effect};
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Event, Kind};
use crate::store::{SnapshotBatch, Store};

/// The feed as shown (admin and tests). The default (`next_at_ms` 0) is a feed that never
/// fetched: due at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedView {
    pub quote: Option<Quote>,
    /// The fetch whose quote is held.
    pub quote_seq: u64,
    /// Fetches asked for so far.
    pub asked: u64,
    /// The pending fetch, if any.
    pub pending: Option<u64>,
    /// Failures since the last quote.
    pub failures: u32,
    pub last_error: Option<String>,
    pub next_at_ms: Millis,
}

pub enum FeedCommand {
    /// Activates the feed (its timer arms with the activation).
    Wake,
    /// The timer: ask for a fetch (or postpone while one is pending).
    Refresh,
    /// The outcome of fetch `seq`.
    Record {
        seq: u64,
        outcome: std::result::Result<Quote, String>,
    },
    Get,
}

/// What recording a fetch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The quote is now the feed's (newer than the one held).
    pub published: bool,
    /// Consecutive failures, this one included (0 after a success).
    pub failures: u32,
    /// A success after this many failures (0 otherwise).
    pub recovered_after: u32,
}

pub enum FeedReply {
    View(FeedView),
    Recorded(Recorded),
}

impl From<FeedReply> for Result<FeedView> {
    fn from(reply: FeedReply) -> Self {
        match reply {
            FeedReply::View(view) => Ok(view),
            FeedReply::Recorded(_) => Err(crate::Error::Unavailable("unexpected reply kind")),
        }
    }
}

#[derive(Debug, Default)]
pub struct PriceFeed {
    view: FeedView,
    dirty: bool,
}


const STATE: &[u8] = b"state";

impl PriceFeed {
    /// The last recorded quote in the store (for the subscription's first value at open, after
    /// recovery's checkpoint).
    pub(crate) fn stored_quote(store: &Store) -> Result<Option<Quote>> {
        Ok(store
            .get::<FeedView>(singleton(PRICE_FEED), STATE)?
            .and_then(|view| view.quote))
    }

    fn refresh_ms(ctx: &Ctx<'_>) -> Millis {
        ctx.config
            .section::<MarketConfig>()
            .price_refresh_seconds
            .saturating_mul(1000)
    }
}

impl Entity for PriceFeed {
    const KIND: Kind = PRICE_FEED;
    type Event = MarketEvent;
    type Command = FeedCommand;
    type Reply = FeedReply;

    fn load(id: u64, store: &Store) -> Result<Self> {
        let view = store
            .get::<FeedView>(ActorKey::new(PRICE_FEED, id), STATE)?
            .unwrap_or_default();
        Ok(PriceFeed { view, dirty: false })
    }

    fn decide(&self, command: FeedCommand, ctx: &Ctx<'_>) -> Result<Decision<FeedReply>> {
        let view = &self.view;
        match command {
            FeedCommand::Wake | FeedCommand::Get => {
                Ok(Decision::read(FeedReply::View(view.clone())))
            }
            FeedCommand::Refresh => {
                if view.next_at_ms > ctx.now_ms {
                    return Ok(Decision::read(FeedReply::View(view.clone())));
                }
                let next_at_ms = ctx.now_ms.saturating_add(Self::refresh_ms(ctx));
                if view.pending.is_some() {
                    return Ok(Decision {
                        events: vec![(
                            ctx.key,
                            Event::new(MarketEvent::FetchPostponed { next_at_ms }),
                        )],
                        reply: FeedReply::View(view.clone()),
                    });
                }
                let seq = view.asked + 1;
                Ok(Decision {
                    events: vec![
                        (
                            ctx.key,
                            Event::new(MarketEvent::FetchAsked { seq, next_at_ms }),
                        ),
                        outbox::effect(Effect {
                            kind: PRICE_EFFECT.to_string(),
                            key: format!("market-price-{seq}"),
                            payload: crate::codec::encode(&seq),
                        }),
                    ],
                    reply: FeedReply::View(view.clone()),
                })
            }
            FeedCommand::Record { seq, outcome } => {
                let event = match outcome {
                    Ok(quote) => {
                        let published = seq > view.quote_seq;
                        let recorded = Recorded {
                            published,
                            failures: 0,
                            recovered_after: if published { view.failures } else { 0 },
                        };
                        if !published && view.pending != Some(seq) {
                            return Ok(Decision::read(FeedReply::Recorded(recorded)));
                        }
                        (MarketEvent::PriceRecorded { seq, quote }, recorded)
                    }
                    Err(_) if view.pending != Some(seq) => {
                        // A fetch handed out again after a crash, already recorded.
                        return Ok(Decision::read(FeedReply::Recorded(Recorded {
                            published: false,
                            failures: view.failures,
                            recovered_after: 0,
                        })));
                    }
                    Err(error) => {
                        let failures = view.failures.saturating_add(1);
                        (
                            MarketEvent::FetchFailed {
                                seq,
                                error,
                                at_ms: ctx.now_ms,
                            },
                            Recorded {
                                published: false,
                                failures,
                                recovered_after: 0,
                            },
                        )
                    }
                };
                Ok(Decision {
                    events: vec![(ctx.key, Event::new(event.0))],
                    reply: FeedReply::Recorded(event.1),
                })
            }
        }
    }

    fn apply(&mut self, event: &MarketEvent) {
        let view = &mut self.view;
        match event {
            MarketEvent::FetchAsked { seq, next_at_ms } => {
                view.asked = view.asked.max(*seq);
                view.pending = Some(*seq);
                view.next_at_ms = *next_at_ms;
            }
            MarketEvent::FetchPostponed { next_at_ms } => view.next_at_ms = *next_at_ms,
            MarketEvent::PriceRecorded { seq, quote } => {
                if *seq > view.quote_seq {
                    view.quote = Some(quote.clone());
                    view.quote_seq = *seq;
                    view.failures = 0;
                    view.last_error = None;
                }
                if view.pending == Some(*seq) {
                    view.pending = None;
                }
            }
            MarketEvent::FetchFailed { seq, error, .. } => {
                view.failures = view.failures.saturating_add(1);
                view.last_error = Some(error.clone());
                if view.pending == Some(*seq) {
                    view.pending = None;
                }
            }
            _ => return,
        }
        self.dirty = true;
    }

    fn next_deadline(&self) -> Option<Millis> {
        Some(self.view.next_at_ms)
    }

    fn timer_command(&self, now_ms: Millis) -> Option<FeedCommand> {
        (self.view.next_at_ms <= now_ms).then_some(FeedCommand::Refresh)
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        if std::mem::take(&mut self.dirty) {
            batch.put(key, STATE, &self.view);
        }
    }
}
