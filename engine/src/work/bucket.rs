//! The `Bucket` actor (one per bucket id): its keys (sorted), which of them have a result, the
//! lease (holder, epoch, deadline, revoked) and its past holders. It decides reports,
//! heartbeats, expiry and release; the pool decides grants and tells it (`LeaseGranted`).
//!
//! The lease deadline is a durable timer: `next_deadline` is the lease's expiry (or now, once
//! revoked by an unregister), so a passivated bucket or a restarted engine still expires it.
//!
//! Refusals: a client that is not the holder gets `not_owner`, unless it held this bucket
//! before (its lease expired or was released), which gets `lease_expired`; the holder gets
//! `lease_expired` once the deadline passed (even before the timer ran), after a revoke, or
//! when it names an older epoch. A completed bucket answers a repeated report from its last
//! holder with `remaining: 0` and changes nothing (a retry after a lost response).
//!
//! Snapshot part: `state` (the whole bucket, at most `bucket_size` keys).

use serde::{Deserialize, Serialize};

use super::pool::POOL_ID;
use super::{
    BucketInfo, BucketStatus, HeartbeatOutcome, ItemResult, KeyList, ReportOutcome, ResultRecord,
    WorkEvent,
};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Event, Kind};
use crate::store::{SnapshotBatch, Store};

/// Past holders remembered (to answer `lease_expired` rather than `not_owner`).
const HOLDERS_MAX: usize = 16;

const STATE: &[u8] = b"state";

#[derive(Debug)]
pub enum BucketCommand {
    Report {
        client_id: u64,
        epoch: Option<u32>,
        results: Vec<ItemResult>,
        discovered: Vec<String>,
    },
    Heartbeat {
        client_id: u64,
        epoch: Option<u32>,
    },
    /// The timer: expire the lease if its deadline passed.
    Expire,
    /// Give back the lease at `epoch` held by `client_id` (unregister); a no-op otherwise.
    Release {
        client_id: u64,
        epoch: u32,
    },
    /// Read the bucket.
    Get,
}

#[derive(Debug)]
pub enum BucketReply {
    Reported(ReportOutcome),
    Heartbeat(HeartbeatOutcome),
    Info(BucketInfo),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
enum Status {
    /// Never granted: the bucket does not exist.
    #[default]
    Unformed,
    Leased {
        client_id: u64,
        expires_at_ms: Millis,
        revoked: bool,
    },
    /// Expired or released: waiting in the pool for the next grant.
    Open,
    /// Every item has a result.
    Done,
    Dead,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    keys: KeyList,
    reported: Vec<bool>,
    status: Status,
    epoch: u32,
    expiries: u32,
    /// Every client that held it, most recent last (bounded by `HOLDERS_MAX`).
    holders: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct Bucket {
    id: u64,
    state: State,
    /// Where each key starts in `state.keys` (derived).
    starts: Vec<u32>,
    remaining: usize,
    dirty: bool,
}

fn lease_expired() -> Error {
    Error::conflict(
        "lease_expired",
        "the lease on this bucket expired or was given up; the result was not recorded",
    )
}

fn not_owner() -> Error {
    Error::forbidden("not_owner", "this bucket is leased to another client")
}

impl Bucket {
    fn pool_key() -> ActorKey {
        ActorKey::new(super::POOL, POOL_ID)
    }

    /// The refusal for a client that does not hold the live lease.
    fn refusal(&self, client_id: u64) -> Error {
        if self.state.holders.contains(&client_id) {
            lease_expired()
        } else {
            not_owner()
        }
    }

    /// Checks that `client_id` holds a live lease (at `epoch`, when given).
    fn live_lease(&self, client_id: u64, epoch: Option<u32>, now_ms: Millis) -> Result<()> {
        match self.state.status {
            Status::Unformed => Err(Error::NotFound("bucket")),
            Status::Leased {
                client_id: holder,
                expires_at_ms,
                revoked,
            } if holder == client_id => {
                if revoked
                    || now_ms >= expires_at_ms
                    || epoch.is_some_and(|epoch| epoch != self.state.epoch)
                {
                    Err(lease_expired())
                } else {
                    Ok(())
                }
            }
            _ => Err(self.refusal(client_id)),
        }
    }

    /// The position of `key` in the sorted keys.
    fn position_of(&self, key: &str) -> Option<usize> {
        let (mut low, mut high) = (0, self.starts.len());
        while low < high {
            let middle = (low + high) / 2;
            match self.state.keys.key(&self.starts, middle).cmp(key) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some(middle),
            }
        }
        None
    }

    /// The positions of `results` in the sorted keys; 422 for a key not in the bucket.
    fn positions(&self, results: &[ItemResult]) -> Result<Vec<usize>> {
        results
            .iter()
            .map(|result| {
                self.position_of(&result.key).ok_or_else(|| {
                    Error::unprocessable(
                        "item_not_in_bucket",
                        format!("{:?} is not an item of this bucket", result.key),
                    )
                })
            })
            .collect()
    }

    fn decide_report(
        &self,
        client_id: u64,
        epoch: Option<u32>,
        results: Vec<ItemResult>,
        discovered: Vec<String>,
        ctx: &Ctx<'_>,
    ) -> Result<Decision<BucketReply>> {
        let repeat_after_done = self.state.status == Status::Done
            && self.state.holders.last() == Some(&client_id)
            && epoch.is_none_or(|epoch| epoch == self.state.epoch);
        if !repeat_after_done {
            self.live_lease(client_id, epoch, ctx.now_ms)?;
        }
        let positions = self.positions(&results)?;
        if repeat_after_done {
            return Ok(Decision::read(BucketReply::Reported(ReportOutcome {
                bucket_id: self.id,
                remaining: 0,
            })));
        }
        let mut taken = vec![false; self.starts.len()];
        let mut new_positions = Vec::new();
        let mut records = Vec::new();
        for (position, result) in positions.into_iter().zip(results) {
            if self.state.reported[position] || taken[position] {
                continue; // the first result of an item stands
            }
            taken[position] = true;
            new_positions.push(position as u32);
            records.push((
                result.key,
                ResultRecord {
                    outcome: result.outcome,
                    client_id,
                    at_ms: ctx.now_ms,
                    detail: result.detail.map(String::into_boxed_str),
                },
            ));
        }
        let remaining = self.remaining - new_positions.len();
        let expires_at_ms = ctx.now_ms + ctx.config.section::<super::WorkConfig>().lease_ms();
        Ok(Decision {
            events: vec![
                (
                    ctx.key,
                    Event::new(WorkEvent::ResultsRecorded {
                        epoch: self.state.epoch,
                        positions: new_positions,
                        expires_at_ms,
                    }),
                ),
                (
                    Self::pool_key(),
                    Event::new(WorkEvent::ItemsReported {
                        bucket_id: self.id,
                        epoch: self.state.epoch,
                        client_id,
                        results: records,
                        discovered,
                        completed: remaining == 0,
                        at_ms: ctx.now_ms,
                    }),
                ),
            ],
            reply: BucketReply::Reported(ReportOutcome {
                bucket_id: self.id,
                remaining: remaining as u64,
            }),
        })
    }

    fn holder(&self) -> Option<(u64, Millis, bool)> {
        match self.state.status {
            Status::Leased {
                client_id,
                expires_at_ms,
                revoked,
            } => Some((client_id, expires_at_ms, revoked)),
            _ => None,
        }
    }
}

impl Entity for Bucket {
    type Event = WorkEvent;
    const KIND: Kind = super::BUCKET;
    const PACKED: bool = true;
    type Command = BucketCommand;
    type Reply = BucketReply;

    fn load(id: u64, store: &Store) -> Result<Self> {
        let state: State = store
            .get(ActorKey::new(super::BUCKET, id), STATE)?
            .unwrap_or_default();
        let remaining = state.reported.iter().filter(|reported| !**reported).count();
        Ok(Bucket {
            id,
            starts: state.keys.starts(),
            state,
            remaining,
            dirty: false,
        })
    }

    /// A grant that forms the bucket (`keys` given, epoch 1) names an id the pool never used.
    fn created_by(id: u64, event: &WorkEvent) -> Option<Self> {
        match event {
            WorkEvent::LeaseGranted {
                epoch: 1,
                keys: Some(_),
                ..
            } => Some(Bucket {
                id,
                ..Bucket::default()
            }),
            _ => None,
        }
    }

    fn decide(&self, command: BucketCommand, ctx: &Ctx<'_>) -> Result<Decision<BucketReply>> {
        match command {
            BucketCommand::Report {
                client_id,
                epoch,
                results,
                discovered,
            } => self.decide_report(client_id, epoch, results, discovered, ctx),
            BucketCommand::Heartbeat { client_id, epoch } => {
                self.live_lease(client_id, epoch, ctx.now_ms)?;
                let expires_at_ms = ctx.now_ms + ctx.config.section::<super::WorkConfig>().lease_ms();
                Ok(Decision {
                    events: vec![
                        (
                            ctx.key,
                            Event::new(WorkEvent::LeaseExtended {
                                epoch: self.state.epoch,
                                expires_at_ms,
                            }),
                        ),
                        (
                            Self::pool_key(),
                            Event::new(WorkEvent::ClientSeen {
                                client_id,
                                at_ms: ctx.now_ms,
                            }),
                        ),
                    ],
                    reply: BucketReply::Heartbeat(HeartbeatOutcome {
                        bucket_id: self.id,
                        epoch: self.state.epoch,
                        lease_expires_at_ms: expires_at_ms,
                    }),
                })
            }
            BucketCommand::Expire => {
                let Some((client_id, expires_at_ms, false)) = self.holder() else {
                    return Ok(Decision::read(BucketReply::Done));
                };
                if ctx.now_ms < expires_at_ms {
                    return Ok(Decision::read(BucketReply::Done));
                }
                let expiries = self.state.expiries + 1;
                let dead = expiries >= ctx.config.section::<super::WorkConfig>().max_expiries;
                let epoch = self.state.epoch;
                Ok(Decision {
                    events: vec![
                        (
                            ctx.key,
                            Event::new(WorkEvent::LeaseExpired {
                                epoch,
                                expiries,
                                dead,
                            }),
                        ),
                        (
                            Self::pool_key(),
                            Event::new(WorkEvent::BucketExpired {
                                bucket_id: self.id,
                                epoch,
                                client_id,
                                expiries,
                                dead,
                                at_ms: ctx.now_ms,
                            }),
                        ),
                    ],
                    reply: BucketReply::Done,
                })
            }
            BucketCommand::Get => {
                let status = match self.state.status {
                    Status::Unformed => return Err(Error::NotFound("bucket")),
                    Status::Leased { .. } => BucketStatus::Leased,
                    Status::Open => BucketStatus::Open,
                    Status::Done => BucketStatus::Done,
                    Status::Dead => BucketStatus::Dead,
                };
                let holder = self.holder();
                Ok(Decision::read(BucketReply::Info(BucketInfo {
                    id: self.id,
                    status,
                    epoch: self.state.epoch,
                    holder: holder.map(|(client_id, _, _)| client_id),
                    lease_expires_at_ms: holder.map(|(_, expires_at_ms, _)| expires_at_ms),
                    items: self.state.keys.iter().map(str::to_string).collect(),
                    remaining: self.remaining as u64,
                    expiries: self.state.expiries,
                })))
            }
            BucketCommand::Release { client_id, epoch } => {
                match self.holder() {
                    Some((holder, _, _)) if holder == client_id && epoch == self.state.epoch => {}
                    _ => return Ok(Decision::read(BucketReply::Done)),
                }
                Ok(Decision {
                    events: vec![
                        (ctx.key, Event::new(WorkEvent::LeaseReleased { epoch })),
                        (
                            Self::pool_key(),
                            Event::new(WorkEvent::BucketReleased {
                                bucket_id: self.id,
                                epoch,
                                client_id,
                            }),
                        ),
                    ],
                    reply: BucketReply::Done,
                })
            }
        }
    }

    fn apply(&mut self, event: &WorkEvent) {
        let state = &mut self.state;
        match event {
            // From the pool: an assignment guarded by the epoch (replay may repeat it).
            WorkEvent::LeaseGranted {
                client_id,
                epoch,
                expires_at_ms,
                keys,
            } => {
                if *epoch <= state.epoch {
                    return;
                }
                if let (Some(keys), true) = (keys, state.keys.is_empty()) {
                    // The pool sends them sorted (positions are binary searched).
                    state.keys = keys.clone();
                    self.starts = state.keys.starts();
                    state.reported = vec![false; self.starts.len()];
                    self.remaining = self.starts.len();
                }
                state.status = Status::Leased {
                    client_id: *client_id,
                    expires_at_ms: *expires_at_ms,
                    revoked: false,
                };
                state.epoch = *epoch;
                state.holders.retain(|holder| holder != client_id);
                state.holders.push(*client_id);
                if state.holders.len() > HOLDERS_MAX {
                    state.holders.remove(0);
                }
            }
            // From the pool: guarded by the epoch too.
            WorkEvent::LeaseRevoked { epoch } => {
                if let Status::Leased { revoked, .. } = &mut state.status {
                    if *epoch == state.epoch {
                        *revoked = true;
                    }
                }
            }
            WorkEvent::ResultsRecorded {
                positions,
                expires_at_ms,
                ..
            } => {
                for position in positions {
                    let slot = &mut state.reported[*position as usize];
                    if !*slot {
                        *slot = true;
                        self.remaining -= 1;
                    }
                }
                if self.remaining == 0 {
                    state.status = Status::Done;
                } else if let Status::Leased {
                    expires_at_ms: deadline,
                    ..
                } = &mut state.status
                {
                    *deadline = *expires_at_ms;
                }
            }
            WorkEvent::LeaseExtended { expires_at_ms, .. } => {
                if let Status::Leased {
                    expires_at_ms: deadline,
                    ..
                } = &mut state.status
                {
                    *deadline = *expires_at_ms;
                }
            }
            WorkEvent::LeaseExpired { expiries, dead, .. } => {
                state.expiries = *expiries;
                state.status = if *dead { Status::Dead } else { Status::Open };
            }
            WorkEvent::LeaseReleased { .. } => state.status = Status::Open,
            other => unreachable!("not a bucket event: {other:?}"),
        }
        self.dirty = true;
    }

    fn next_deadline(&self) -> Option<Millis> {
        match self.holder() {
            Some((_, _, true)) => Some(0),
            Some((_, expires_at_ms, false)) => Some(expires_at_ms),
            None => None,
        }
    }

    fn timer_command(&self, now_ms: Millis) -> Option<BucketCommand> {
        match self.holder() {
            Some((client_id, _, true)) => Some(BucketCommand::Release {
                client_id,
                epoch: self.state.epoch,
            }),
            Some((_, expires_at_ms, false)) if now_ms >= expires_at_ms => {
                Some(BucketCommand::Expire)
            }
            _ => None,
        }
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        if std::mem::take(&mut self.dirty) {
            batch.put(key, STATE, &self.state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> Vec<(WorkEvent, bool)> {
        vec![
            (
                WorkEvent::LeaseGranted {
                    client_id: 1,
                    epoch: 1,
                    expires_at_ms: 100,
                    keys: Some(KeyList::from_sorted(["a", "b", "c"])),
                },
                true,
            ),
            (
                WorkEvent::ResultsRecorded {
                    epoch: 1,
                    positions: vec![0],
                    expires_at_ms: 150,
                },
                false,
            ),
            (
                WorkEvent::LeaseExpired {
                    epoch: 1,
                    expiries: 1,
                    dead: false,
                },
                false,
            ),
            (
                WorkEvent::LeaseGranted {
                    client_id: 2,
                    epoch: 2,
                    expires_at_ms: 300,
                    keys: None,
                },
                true,
            ),
            (WorkEvent::LeaseRevoked { epoch: 2 }, true),
            (WorkEvent::LeaseReleased { epoch: 2 }, false),
            (
                WorkEvent::LeaseGranted {
                    client_id: 3,
                    epoch: 3,
                    expires_at_ms: 500,
                    keys: None,
                },
                true,
            ),
            (
                WorkEvent::ResultsRecorded {
                    epoch: 3,
                    positions: vec![1],
                    expires_at_ms: 550,
                },
                false,
            ),
        ]
    }

    fn fingerprint(bucket: &Bucket) -> String {
        format!(
            "{:?} {} {:?}",
            bucket.state,
            bucket.remaining,
            bucket.next_deadline()
        )
    }

    #[test]
    fn replaying_grants_and_revokes_again_changes_nothing_and_snapshots_round_trip() {
        let mut bucket = Bucket {
            id: 9,
            ..Bucket::default()
        };
        for (event, _) in history() {
            bucket.apply(&event);
        }
        assert_eq!(bucket.state.keys.key(&bucket.starts, 0), "a");
        assert_eq!(bucket.state.keys.key(&bucket.starts, 2), "c");
        assert_eq!(bucket.state.holders, vec![1, 2, 3]);
        assert_eq!(bucket.remaining, 1);
        assert_eq!(bucket.next_deadline(), Some(550));
        assert_eq!(bucket.timer_command(549).map(|_| ()), None);
        assert!(matches!(
            bucket.timer_command(550),
            Some(BucketCommand::Expire)
        ));
        let once = fingerprint(&bucket);
        for (event, foreign) in history() {
            if foreign {
                bucket.apply_foreign(&event);
            }
        }
        assert_eq!(fingerprint(&bucket), once);

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let key = ActorKey::new(crate::work::BUCKET, 9);
        let mut batch = SnapshotBatch::default();
        bucket.save(key, &mut batch);
        store
            .apply(vec![crate::store::Snapshot {
                key,
                lsn: 7,
                parts: batch,
                deadline: None,
            }])
            .unwrap();
        assert_eq!(fingerprint(&Bucket::load(9, &store).unwrap()), once);
    }

    #[test]
    fn a_revoked_lease_is_due_at_once_and_released_by_its_timer() {
        let mut bucket = Bucket::default();
        for event in [
            WorkEvent::LeaseGranted {
                client_id: 4,
                epoch: 1,
                expires_at_ms: 1_000,
                keys: Some(KeyList::from_sorted(["k"])),
            },
            WorkEvent::LeaseRevoked { epoch: 1 },
        ] {
            bucket.apply_foreign(&event);
        }
        assert_eq!(bucket.next_deadline(), Some(0));
        assert!(matches!(
            bucket.timer_command(0),
            Some(BucketCommand::Release {
                client_id: 4,
                epoch: 1
            })
        ));
    }
}
