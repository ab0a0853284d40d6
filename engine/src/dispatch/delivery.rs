//! The dispatch's two effect kinds and their worker pools (bounded crossbeam queues, see
//! `runtime::effects`):
//! - `notify.fanout` (one worker): pages a dispatch's recipients from the catalog, `batch_size`
//!   contacts at a time, and records the page with the dispatch, which makes its notifications
//!   and asks for their batches' effects, one per channel (and for the next page while fewer than
//!   `notify.batches_in_flight` batches are open).
//! - `notify.sms`, `notify.email`, `notify.webhook` (a pool of `notify.workers` workers each, so
//!   a slow provider holds up only its own channel): claims the batch's due notifications (a durable
//!   record, before anything is sent), hands them to the [`Courier`] in one call, records the
//!   outcomes, and comes back when the next retry is due (the effect's retry time).
//!
//! Neither runs on an actor thread; a courier may block. Each step is idempotent: a stale
//! page or a second claim after a crash changes nothing it should not (see `job.rs`).

use std::sync::Arc;

use super::catalog::{Catalog, CatalogCommand, CatalogReply};
use super::courier::Courier;
use super::job::{Job, JobCommand, JobReply};
use super::courier::Channel;
use super::{batch_kind, NotifyConfig, FANOUT_EFFECT};
use crate::clock::Millis;
use crate::runtime::effects::{EffectContext, EffectHandler, EffectOutcome, EffectPool};
use crate::runtime::outbox::Effect;

/// The pools running a dispatch's effects, delivering through `courier`.
pub fn pools(config: &NotifyConfig, courier: Arc<dyn Courier>) -> Vec<EffectPool> {
    vec![
        EffectPool {
            kind: FANOUT_EFFECT.into(),
            handler: Arc::new(Fanout {
                page_size: config.batch_size,
            }),
            workers: 1,
            queue_depth_max: config.queue_depth_max,
        },
    ]
    .into_iter()
    .chain(Channel::ALL.into_iter().map(|channel| EffectPool {
        kind: batch_kind(channel).into(),
        handler: Arc::new(Deliver {
            courier: courier.clone(),
        }),
        workers: config.workers,
        queue_depth_max: config.queue_depth_max,
    }))
    .collect()
}

fn retry(error: impl std::fmt::Display) -> EffectOutcome {
    EffectOutcome::Retry {
        after_ms: 1_000,
        error: error.to_string(),
    }
}

struct Fanout {
    page_size: usize,
}

impl EffectHandler for Fanout {
    fn run(&self, effect: &Effect, _attempts: u32, engine: &EffectContext<'_>) -> EffectOutcome {
        let Ok((id, seq)) = crate::codec::decode::<(u64, u32)>(&effect.payload) else {
            return EffectOutcome::GiveUp {
                error: "unreadable fan-out effect".into(),
            };
        };
        let page = match engine.ask::<Job>(id, JobCommand::NextPage { seq }) {
            Ok(JobReply::Page(Some(page))) => page,
            Ok(_) => return EffectOutcome::Done, // stale: the page was recorded already
            Err(error) => return retry(error),
        };
        let contacts = match engine.ask::<Catalog>(
            0,
            CatalogCommand::Recipients {
                group_ids: page.group_ids,
                through: page.through,
                after: page.after,
                limit: self.page_size,
            },
        ) {
            Ok(CatalogReply::Recipients(contacts)) => contacts,
            Ok(_) => return retry("unexpected catalog reply"),
            Err(error) => return retry(error),
        };
        match engine.ask::<Job>(
            id,
            JobCommand::Expand {
                seq,
                after: page.after,
                contacts,
                page_size: self.page_size,
            },
        ) {
            Ok(_) => EffectOutcome::Done,
            Err(error) => retry(error),
        }
    }
}

struct Deliver {
    courier: Arc<dyn Courier>,
}

/// `Done` when the batch is finished, else come back when its next notification is due.
fn come_back(next_due: Option<Millis>, now_ms: Millis) -> EffectOutcome {
    match next_due {
        None => EffectOutcome::Done,
        Some(at) => EffectOutcome::Retry {
            after_ms: at.saturating_sub(now_ms),
            error: "notifications of this batch wait for a retry".into(),
        },
    }
}

impl EffectHandler for Deliver {
    fn run(&self, effect: &Effect, _attempts: u32, engine: &EffectContext<'_>) -> EffectOutcome {
        let Ok((id, batch)) = crate::codec::decode::<(u64, u32)>(&effect.payload) else {
            return EffectOutcome::GiveUp {
                error: "unreadable delivery effect".into(),
            };
        };
        let claim = match engine.ask::<Job>(id, JobCommand::Claim { batch }) {
            Ok(JobReply::Claimed(claim)) => claim,
            Ok(_) => return retry("unexpected dispatch reply"),
            Err(error) => return retry(error),
        };
        if claim.messages.is_empty() {
            return come_back(claim.next_due_ms, engine.now_ms());
        }
        let outcomes = self.courier.deliver(&claim.messages);
        let outcomes = claim
            .messages
            .iter()
            .map(|m| m.notification_id)
            .zip(outcomes.into_iter().chain(std::iter::repeat(
                super::courier::Outcome::Retry {
                    error: "the courier gave no outcome".into(),
                    retry_after_ms: None,
                },
            )))
            .collect();
        match engine.ask::<Job>(id, JobCommand::Record { batch, outcomes }) {
            Ok(JobReply::Recorded(next_due)) => {
                let next_due = match (next_due, claim.next_due_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                come_back(next_due, engine.now_ms())
            }
            Ok(_) => retry("unexpected dispatch reply"),
            Err(error) => retry(error),
        }
    }
}
