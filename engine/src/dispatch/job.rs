//! One dispatch (an actor per dispatch id): its request as created, its status, its
//! notifications and its transaction log.
//!
//! Life: `scheduled` (a durable timer at the start time) → `waiting_condition` (when it has a
//! condition that does not hold yet; the signal watcher tells it each new quote; at its end time
//! it stops waiting) → `sending` (recipients paged in by `notify.fanout` effects, delivered by
//! `notify.sms`, `notify.email` and `notify.webhook` effects, one batch per channel and page, at most `notify.batches_in_flight` batches open) → `done` (every
//! notification sent or dead, or the end came before the condition held).
//!
//! Notifications: one per (recipient, channel of the event type) on which the contact has an
//! address, id `dispatch id · 10^8 + n` (n from 1, in fan-out order), idempotency key
//! `notification-{id}`. Each has a status (`queued` before its first attempt, `failed` while it
//! waits for a retry, `sent`, `dead`), its attempts and last error, and the channel carrying it.
//! A failed attempt is retried after a delay drawn in `0..=min(retry_max, base·2^(k-1))` (full
//! jitter; k = attempts on this channel), never before a `Retry-After`. After
//! `notify.max_attempts` attempts on a channel, or a refusal, the notification fails over to the
//! event type's next channel (in list order, wrapping) on which the contact has an address and
//! has not already been reached by its own notification; with none left it is dead.
//!
//! Crash safety: a batch's attempt is claimed durably (`Claimed`) before anything is sent, and
//! its outcomes recorded durably (`Recorded`) after. A notification found claimed without an
//! outcome (the process died in between) is sent again under the same key and counted as a
//! possible duplicate (`possible_duplicates`, in the view, the log and `/metrics`).
//!
//! Invariants: a notification's status only leaves `sent` and `dead` never; `counts` equals the
//! notifications by status; a batch is open until all its notifications are sent or dead; the
//! dispatch is `done` only when the fan-out is complete and no batch is open.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::model::{batch_effect, catalog_key, fanout_effect};
pub use super::model::*;
use super::model::{describe_created, describe_fired, fired_by};
use super::courier::{Channel, Message, Outcome};
use super::{DispatchEvent, NotifyConfig, DISPATCH, NOTIFICATIONS_PER_DISPATCH};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::market::Quote;
use crate::runtime::outbox;
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Event, Kind};
use crate::store::{Chunked, SnapshotBatch, Store};

/// The dispatch's header part (everything but notifications, contacts and the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    spec: DispatchSpec,
    status: Status,
    fired: Option<Fired>,
    /// Fan-out: the next page to ask for, the last contact paged in, and whether all were.
    fanout_seq: u32,
    fanout_after: u64,
    fanout_complete: bool,
    /// A page is asked for (its effect pending).
    fanout_asked: bool,
    /// Batches: number → its notifications' id range; open ones not finished.
    batches: BTreeMap<u32, (u64, u64)>,
    open: BTreeSet<u32>,
    /// Batch → the notifications claimed for an attempt whose outcomes are not recorded yet
    /// (kept here, not in the notifications, so a claim rewrites one key, not their chunks).
    claimed: BTreeMap<u32, BTreeSet<u64>>,
    counts: [u64; 4],
    possible_duplicates: u64,
    log_omitted: u64,
    log_lines_max: usize,
}

/// An update of one notification by a `Recorded` event: its new state.
pub type NoteUpdate = Notification;

/// A dispatch actor; `None` until created.
#[derive(Debug, Default)]
pub struct Job {
    header: Option<Header>,
    /// Behind `Arc`s, so a checkpoint takes them without encoding on this thread
    /// (`Chunked::save_later`): a large fan-out changes tens of thousands a second.
    notes: Chunked<u64, Arc<Notification>>,
    log: Chunked<u32, LogLine>,
    /// Derived indexes: notifications by status and by user.
    by_status: [BTreeSet<u64>; 4],
    by_user: BTreeMap<u64, BTreeSet<u64>>,
    /// Contact → its notifications (derived; failover looks for one already sent).
    by_contact: std::collections::HashMap<u64, Vec<u64>>,
    header_dirty: bool,
}

pub enum JobCommand {
    /// The timer: the start time (or the end time while waiting) has come.
    Tick,
    /// A new `btc_eur` quote: fire if waiting and the condition holds.
    Signal(Quote),
    /// Which recipients fan-out page `seq` is (`None`: stale, or the fan-out is complete).
    NextPage { seq: u32 },
    /// The page of recipients after `after` for fan-out page `seq`.
    Expand {
        seq: u32,
        after: u64,
        contacts: Vec<Contact>,
        page_size: usize,
    },
    /// Claim batch `batch`'s due notifications for an attempt.
    Claim { batch: u32 },
    /// The outcomes of a batch's attempt, in the order claimed.
    Record {
        batch: u32,
        outcomes: Vec<(u64, Outcome)>,
    },
    View,
    /// Notifications after `after` (ascending), of `status` and of `contacts` when given.
    Notes {
        after: u64,
        status: Option<NoteStatus>,
        user_id: Option<u64>,
        limit: usize,
    },
    Log,
}

/// What a fan-out page asks the catalog for.
pub struct PageRequest {
    pub group_ids: Vec<u64>,
    pub through: u64,
    pub after: u64,
}

pub enum JobReply {
    /// A command that changed the status, or a view.
    View(Box<View>),
    /// The fan-out page to ask the catalog for (`None`: the page is stale or not wanted).
    Page(Option<PageRequest>),
    Claimed(Claim),
    /// After recording: the batch is finished, or its next attempt is due at this time.
    Recorded(Option<Millis>),
    Notes(Vec<Notification>),
    Log(Vec<LogLine>, u64),
    Fired(bool),
}

/// A claimed batch: the messages to carry now, and when its next notification is due if none
/// is now (`None` with no messages: the batch is finished).
pub struct Claim {
    pub messages: Vec<Message>,
    pub next_due_ms: Option<Millis>,
}

/// A dispatch as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub spec: DispatchSpec,
    pub status: Status,
    pub fired: Option<Fired>,
    pub counts: [u64; 4],
    pub notifications: u64,
    pub possible_duplicates: u64,
}

const HEADER: &[u8] = b"h";
const NOTES: &[u8] = b"n";
const LOG: &[u8] = b"l";

impl Job {
    fn header(&self) -> Result<&Header> {
        self.header.as_ref().ok_or(Error::NotFound("dispatch"))
    }

    fn view(&self) -> Result<View> {
        let header = self.header()?;
        Ok(View {
            spec: header.spec.clone(),
            status: header.status,
            fired: header.fired,
            counts: header.counts,
            notifications: self.notes.len() as u64,
            possible_duplicates: header.possible_duplicates,
        })
    }

    fn summary(header: &Header, status: Status, counts: [u64; 4]) -> Summary {
        Summary {
            id: header.spec.id,
            status,
            group_ids: header.spec.event_type.group_ids.clone(),
            contacts_through: header.spec.contacts_through,
            counts,
            waiting: header
                .spec
                .condition
                .filter(|_| status == Status::WaitingCondition),
            possible_duplicates: header.possible_duplicates,
        }
    }

    /// The events that start sending (status, summary, the first fan-out page).
    fn start_sending(&self, ctx: &Ctx<'_>, header: &Header, fired: Option<Fired>) -> Vec<(ActorKey, Event)> {
        vec![
            (
                ctx.key,
                Event::new(DispatchEvent::Started {
                    fired,
                    at_ms: ctx.now_ms,
                }),
            ),
            (
                catalog_key(),
                Event::new(DispatchEvent::Summarized(Self::summary(
                    header,
                    Status::Sending,
                    header.counts,
                ))),
            ),
            outbox::effect(fanout_effect(header.spec.id, header.fanout_seq)),
        ]
    }

    /// The next channel to carry `note` after `via` gave up, if any: in the event type's order
    /// after `via`, wrapping; one on which the contact has an address, not given up, and whose
    /// own notification for this contact is not already sent.
    ///
    /// The contact has an address on a channel exactly when it has a notification of its own
    /// there (fan-out makes one for each), which holds the address.
    fn failover(&self, header: &Header, note: &Notification, given_up: u8) -> Option<(Channel, String)> {
        let own: Vec<&Notification> = self
            .by_contact
            .get(&note.contact_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.notes.get(id).map(|n| &**n))
            .collect();
        let channels = &header.spec.event_type.channels;
        let at = channels.iter().position(|c| *c == note.via)?;
        (1..channels.len())
            .map(|step| channels[(at + step) % channels.len()])
            .filter(|channel| given_up & (1 << *channel as u8) == 0)
            .find_map(|channel| {
                let other = own.iter().find(|other| other.channel == channel)?;
                (other.status != NoteStatus::Sent).then(|| (channel, other.to.clone()))
            })
    }

    fn decide_record(
        &self,
        header: &Header,
        batch: u32,
        outcomes: Vec<(u64, Outcome)>,
        ctx: &Ctx<'_>,
    ) -> Result<Decision<JobReply>> {
        let config = ctx.config.section::<NotifyConfig>();
        let mut updates = Vec::new();
        let mut counts = header.counts;
        for (id, outcome) in outcomes {
            let Some(old) = self.notes.get(&id) else { continue };
            let claimed = header.claimed.get(&batch).is_some_and(|ids| ids.contains(&id));
            if old.status.is_final() || !claimed || old.batch != batch {
                continue;
            }
            let mut note = Notification::clone(old);
            note.attempts += 1;
            note.via_attempts += 1;
            let give_up = match outcome {
                Outcome::Sent => {
                    note.status = NoteStatus::Sent;
                    note.last_error = None;
                    None
                }
                Outcome::Outboxed => {
                    note.status = NoteStatus::Sent;
                    note.outboxed = true;
                    None
                }
                Outcome::Refused { error } => Some(format!("{} refused: {error}", note.via.name())),
                Outcome::Retry {
                    error,
                    retry_after_ms,
                } => {
                    if note.via_attempts >= config.max_attempts {
                        Some(format!(
                            "{} failed {} times, last: {error}",
                            note.via.name(),
                            note.via_attempts
                        ))
                    } else {
                        let seed = id ^ (u64::from(note.attempts) << 48) ^ ctx.now_ms;
                        note.status = NoteStatus::Failed;
                        note.next_ms = ctx.now_ms
                            + backoff_ms(config, note.via_attempts, retry_after_ms, seed);
                        note.last_error = Some(error);
                        None
                    }
                }
            };
            if let Some(error) = give_up {
                let given_up = note.given_up | (1 << note.via as u8);
                note.given_up = given_up;
                match self.failover(header, &note, given_up) {
                    Some((channel, to)) => {
                        note.last_error = Some(format!("{error}; failing over to {}", channel.name()));
                        note.via = channel;
                        note.to = to;
                        note.via_attempts = 0;
                        note.status = NoteStatus::Failed;
                        note.next_ms = ctx.now_ms;
                    }
                    None => {
                        note.status = NoteStatus::Dead;
                        note.last_error = Some(error);
                    }
                }
            }
            counts[old.status.index()] -= 1;
            counts[note.status.index()] += 1;
            updates.push(note);
        }
        // The batch is finished when none of its notifications is left to attempt.
        let (first, last) = header.batches.get(&batch).copied().unwrap_or((1, 0));
        let updated: std::collections::HashMap<u64, &Notification> =
            updates.iter().map(|u| (u.id, u)).collect();
        let pending_after = |id: &u64| -> Option<Millis> {
            let note = updated
                .get(id)
                .copied()
                .or_else(|| self.notes.get(id).map(|n| &**n))?;
            (!note.status.is_final()).then_some(note.next_ms)
        };
        let next_due = (first..=last).filter_map(|id| pending_after(&id)).min();
        let finished = next_due.is_none() && header.open.contains(&batch);
        let mut events = vec![];
        let open_after = header.open.len() - usize::from(finished);
        let resume = finished
            && !header.fanout_complete
            && !header.fanout_asked
            && open_after < config.batches_in_flight;
        let done = finished && header.fanout_complete && open_after == 0;
        let status = if done { Status::Done } else { header.status };
        events.push((
            ctx.key,
            Event::new(DispatchEvent::Recorded {
                batch,
                updates,
                finished,
                resume,
                done,
                at_ms: ctx.now_ms,
            }),
        ));
        events.push((
            catalog_key(),
            Event::new(DispatchEvent::Summarized(Self::summary(header, status, counts))),
        ));
        if resume {
            events.push(outbox::effect(fanout_effect(
                header.spec.id,
                header.fanout_seq,
            )));
        }
        Ok(Decision {
            events,
            reply: JobReply::Recorded(next_due),
        })
    }

    fn decide_expand(
        &self,
        header: &Header,
        seq: u32,
        contacts: Vec<Contact>,
        page_size: usize,
        ctx: &Ctx<'_>,
    ) -> Result<Decision<JobReply>> {
        if seq != header.fanout_seq || header.fanout_complete {
            return Ok(Decision::read(JobReply::Page(None)));
        }
        let config = ctx.config.section::<NotifyConfig>();
        let complete = contacts.len() < page_size;
        // One batch per channel (so each channel's pool carries its own, and a slow provider
        // holds up only its channel); a batch's notifications have consecutive ids.
        let mut batch = header.batches.keys().next_back().map_or(0, |b| b + 1);
        let mut next = self.notes.iter().next_back().map_or(
            header.spec.id * NOTIFICATIONS_PER_DISPATCH + 1,
            |(id, _)| id + 1,
        );
        let mut notes = Vec::new();
        let mut batches = Vec::new();
        for channel in &header.spec.event_type.channels {
            let first = next;
            for contact in &contacts {
                if let Some(to) = contact.address(*channel) {
                    notes.push(Notification {
                        id: next,
                        dispatch_id: header.spec.id,
                        contact_id: contact.id,
                        user_id: contact.user_id,
                        channel: *channel,
                        via: *channel,
                        to: to.to_string(),
                        status: NoteStatus::Queued,
                        attempts: 0,
                        via_attempts: 0,
                        given_up: 0,
                        next_ms: 0,
                        last_error: None,
                        outboxed: false,
                        batch,
                    });
                    next += 1;
                }
            }
            if next > first {
                batches.push((batch, *channel, first, next - 1));
                batch += 1;
            }
        }
        let unreachable = contacts
            .iter()
            .filter(|contact| {
                header
                    .spec
                    .event_type
                    .channels
                    .iter()
                    .all(|channel| contact.address(*channel).is_none())
            })
            .count() as u64;
        let after = contacts.last().map_or(header.fanout_after, |c| c.id);
        let has_batch = !batches.is_empty();
        let open_after = header.open.len() + batches.len();
        let ask_next = !complete && open_after < config.batches_in_flight;
        let done = complete && open_after == 0;
        let mut events = vec![];
        for (batch, channel, _, _) in &batches {
            events.push(outbox::effect(batch_effect(header.spec.id, *batch, *channel)));
        }
        if ask_next {
            events.push(outbox::effect(fanout_effect(header.spec.id, seq + 1)));
        }
        if done {
            events.push((
                catalog_key(),
                Event::new(DispatchEvent::Summarized(Self::summary(
                    header,
                    Status::Done,
                    header.counts,
                ))),
            ));
        }
        let mut counts = header.counts;
        counts[NoteStatus::Queued.index()] += notes.len() as u64;
        if has_batch && !done {
            events.push((
                catalog_key(),
                Event::new(DispatchEvent::Summarized(Self::summary(header, header.status, counts))),
            ));
        }
        events.insert(
            0,
            (
                ctx.key,
                Event::new(DispatchEvent::Expanded {
                    seq,
                    after,
                    recipients: contacts.len() as u64,
                    notes,
                    batches,
                    complete,
                    asked_next: ask_next,
                    unreachable,
                    done,
                    at_ms: ctx.now_ms,
                }),
            ),
        );
        Ok(Decision {
            events,
            reply: JobReply::Page(None),
        })
    }

    fn decide_claim(&self, header: &Header, batch: u32, ctx: &Ctx<'_>) -> Result<Decision<JobReply>> {
        let Some((first, last)) = header.batches.get(&batch).copied() else {
            return Ok(Decision::read(JobReply::Claimed(Claim {
                messages: vec![],
                next_due_ms: None,
            })));
        };
        let mut due = Vec::new();
        let mut later: Option<Millis> = None;
        let mut duplicates = 0u64;
        let claimed = header.claimed.get(&batch);
        for (_, note) in self.notes.range(first..=last) {
            if note.status.is_final() {
                continue;
            }
            if note.next_ms <= ctx.now_ms {
                duplicates += u64::from(claimed.is_some_and(|ids| ids.contains(&note.id)));
                due.push(note);
            } else {
                later = Some(later.map_or(note.next_ms, |l: Millis| l.min(note.next_ms)));
            }
        }
        if due.is_empty() {
            return Ok(Decision::read(JobReply::Claimed(Claim {
                messages: vec![],
                next_due_ms: later,
            })));
        }
        let spec = &header.spec;
        let messages = due
            .iter()
            .map(|note| Message {
                key: note.key(),
                notification_id: note.id,
                dispatch_id: spec.id,
                contact_id: note.contact_id,
                channel: note.via,
                to: note.to.clone(),
                program: spec.program.name.clone(),
                event_type: spec.event_type.name.clone(),
                message: spec.program.message.clone(),
                attempts: note.attempts,
            })
            .collect();
        let ids = due.iter().map(|note| note.id).collect();
        Ok(Decision {
            events: vec![(
                ctx.key,
                Event::new(DispatchEvent::Claimed {
                    batch,
                    ids,
                    possible_duplicates: duplicates,
                    at_ms: ctx.now_ms,
                }),
            )],
            reply: JobReply::Claimed(Claim {
                messages,
                next_due_ms: later,
            }),
        })
    }

    fn log(&mut self, at_ms: Millis, text: String) {
        let Some(header) = self.header.as_mut() else { return };
        if self.log.len() >= header.log_lines_max {
            header.log_omitted += 1;
            return;
        }
        let n = self.log.len() as u32;
        self.log.insert_or_assign(n, LogLine { at_ms, text });
    }

    fn index(&mut self, note: &Notification, old: Option<NoteStatus>) {
        if let Some(old) = old {
            self.by_status[old.index()].remove(&note.id);
        }
        self.by_status[note.status.index()].insert(note.id);
        if let Some(user) = note.user_id {
            self.by_user.entry(user).or_default().insert(note.id);
        }
        if old.is_none() {
            self.by_contact.entry(note.contact_id).or_default().push(note.id);
        }
    }
}

impl Entity for Job {
    const KIND: Kind = DISPATCH;
    type Event = DispatchEvent;
    type Command = JobCommand;
    type Reply = JobReply;

    fn load(id: u64, store: &Store) -> Result<Self> {
        let key = ActorKey::new(DISPATCH, id);
        let mut job = Job {
            header: store.get::<Header>(key, HEADER)?,
            notes: Chunked::load_mapped(store, key, NOTES, Arc::new)?,
            log: Chunked::load(store, key, LOG)?,
            ..Job::default()
        };
        let notes: Vec<Notification> = job.notes.values().map(|n| Notification::clone(n)).collect();
        for note in &notes {
            job.index(note, None);
        }
        Ok(job)
    }

    fn created_by(_id: u64, event: &DispatchEvent) -> Option<Self> {
        matches!(event, DispatchEvent::Created { .. }).then(Job::default)
    }

    fn decide(&self, command: JobCommand, ctx: &Ctx<'_>) -> Result<Decision<JobReply>> {
        let header = self.header()?;
        match command {
            JobCommand::View => Ok(Decision::read(JobReply::View(Box::new(self.view()?)))),
            JobCommand::Log => Ok(Decision::read(JobReply::Log(
                self.log.values().cloned().collect(),
                header.log_omitted,
            ))),
            JobCommand::Notes {
                after,
                status,
                user_id,
                limit,
            } => {
                let range = (std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded);
                let ids: Box<dyn Iterator<Item = &u64>> = match (status, user_id) {
                    (Some(status), _) => Box::new(self.by_status[status.index()].range(range)),
                    (None, Some(user)) => match self.by_user.get(&user) {
                        Some(ids) => Box::new(ids.range(range)),
                        None => Box::new(std::iter::empty()),
                    },
                    (None, None) => Box::new(self.notes.range(range).map(|(id, _)| id)),
                };
                let notes = ids
                    .filter_map(|id| self.notes.get(id))
                    .filter(|note| user_id.is_none() || note.user_id == user_id)
                    .take(limit)
                    .map(|note| Notification::clone(note))
                    .collect();
                Ok(Decision::read(JobReply::Notes(notes)))
            }
            JobCommand::Tick => {
                let (status, fired) = match header.status {
                    Status::Scheduled if ctx.now_ms >= header.spec.start_ms => {
                        // The condition is checked by the signal watcher's next quote (or at
                        // once, below, when the caller passed none).
                        header.spec.status_from_start(None)
                    }
                    Status::WaitingCondition
                        if header.spec.end_ms.is_some_and(|end| ctx.now_ms >= end) =>
                    {
                        return Ok(Decision {
                            events: vec![
                                (ctx.key, Event::new(DispatchEvent::Expired { at_ms: ctx.now_ms })),
                                (
                                    catalog_key(),
                                    Event::new(DispatchEvent::Summarized(Self::summary(
                                        header,
                                        Status::Done,
                                        header.counts,
                                    ))),
                                ),
                            ],
                            reply: JobReply::Fired(false),
                        })
                    }
                    _ => return Ok(Decision::read(JobReply::Fired(false))),
                };
                if status == Status::Sending {
                    return Ok(Decision {
                        events: self.start_sending(ctx, header, fired),
                        reply: JobReply::Fired(true),
                    });
                }
                Ok(Decision {
                    events: vec![
                        (ctx.key, Event::new(DispatchEvent::Waiting { at_ms: ctx.now_ms })),
                        (
                            catalog_key(),
                            Event::new(DispatchEvent::Summarized(Self::summary(
                                header,
                                Status::WaitingCondition,
                                header.counts,
                            ))),
                        ),
                    ],
                    reply: JobReply::Fired(false),
                })
            }
            JobCommand::Signal(quote) => {
                let fresh = ctx
                    .now_ms
                    .saturating_sub(quote.at_ms)
                    <= ctx
                        .config
                        .section::<crate::market::MarketConfig>()
                        .max_price_age_seconds
                        .saturating_mul(1000);
                let fired = header
                    .spec
                    .condition
                    .and_then(|condition| fired_by(condition, &quote));
                match (header.status, fired) {
                    (Status::WaitingCondition, Some(fired)) if fresh => Ok(Decision {
                        events: self.start_sending(ctx, header, Some(fired)),
                        reply: JobReply::Fired(true),
                    }),
                    _ => Ok(Decision::read(JobReply::Fired(
                        header.status != Status::WaitingCondition,
                    ))),
                }
            }
            JobCommand::Expand {
                seq,
                after,
                contacts,
                page_size,
            } => {
                if after != header.fanout_after {
                    return Ok(Decision::read(JobReply::Page(None)));
                }
                self.decide_expand(header, seq, contacts, page_size, ctx)
            }
            JobCommand::NextPage { seq } => Ok(Decision::read(JobReply::Page(
                (seq == header.fanout_seq && !header.fanout_complete).then(|| PageRequest {
                    group_ids: header.spec.event_type.group_ids.clone(),
                    through: header.spec.contacts_through,
                    after: header.fanout_after,
                }),
            ))),
            JobCommand::Claim { batch } => self.decide_claim(header, batch, ctx),
            JobCommand::Record { batch, outcomes } => {
                self.decide_record(header, batch, outcomes, ctx)
            }
        }
    }

    fn apply(&mut self, event: &DispatchEvent) {
        match event {
            DispatchEvent::Created {
                spec,
                status,
                fired,
            } => {
                if self.header.is_some() {
                    return; // replayed after its snapshot
                }
                self.header = Some(Header {
                    spec: spec.clone(),
                    status: *status,
                    fired: *fired,
                    fanout_seq: 0,
                    fanout_after: 0,
                    fanout_complete: false,
                    fanout_asked: *status == Status::Sending,
                    batches: BTreeMap::new(),
                    open: BTreeSet::new(),
                    claimed: BTreeMap::new(),
                    counts: [0; 4],
                    possible_duplicates: 0,
                    log_omitted: 0,
                    log_lines_max: spec.log_lines_max,
                });
                self.header_dirty = true;
                self.log(spec.created_ms, describe_created(spec));
                match (status, fired) {
                    (Status::Scheduled, _) => self.log(
                        spec.created_ms,
                        format!("Status: scheduled (starts {})", crate::clock::rfc3339(spec.start_ms)),
                    ),
                    (Status::WaitingCondition, _) => self.log(
                        spec.created_ms,
                        format!(
                            "Status: waiting_condition ({})",
                            spec.condition.map(|c| c.describe()).unwrap_or_default()
                        ),
                    ),
                    (_, Some(fired)) => {
                        self.log(spec.created_ms, describe_fired(spec, fired));
                        self.log(spec.created_ms, "Status: sending".into());
                    }
                    _ => self.log(spec.created_ms, "Status: sending".into()),
                }
            }
            DispatchEvent::Started { fired, at_ms } => {
                let Some(header) = self.header.as_mut() else { return };
                header.status = Status::Sending;
                header.fired = *fired;
                header.fanout_asked = true;
                self.header_dirty = true;
                let spec = header.spec.clone();
                if let Some(fired) = fired {
                    self.log(*at_ms, describe_fired(&spec, fired));
                }
                self.log(*at_ms, "Status: sending".into());
            }
            DispatchEvent::Waiting { at_ms } => {
                let Some(header) = self.header.as_mut() else { return };
                header.status = Status::WaitingCondition;
                self.header_dirty = true;
                let condition = header.spec.condition.map(|c| c.describe()).unwrap_or_default();
                self.log(*at_ms, format!("Status: waiting_condition ({condition})"));
            }
            DispatchEvent::Expired { at_ms } => {
                let Some(header) = self.header.as_mut() else { return };
                header.status = Status::Done;
                self.header_dirty = true;
                self.log(
                    *at_ms,
                    "Status: done (the end time came before the condition held; nothing sent)".into(),
                );
            }
            DispatchEvent::Expanded {
                seq,
                after,
                recipients,
                notes,
                batches,
                complete,
                asked_next,
                unreachable,
                done,
                at_ms,
            } => {
                let Some(header) = self.header.as_mut() else { return };
                header.fanout_seq = seq + 1;
                header.fanout_after = *after;
                header.fanout_complete = *complete;
                header.fanout_asked = *asked_next;
                for (batch, _, first, last) in batches {
                    header.batches.insert(*batch, (*first, *last));
                    header.open.insert(*batch);
                }
                header.counts[NoteStatus::Queued.index()] += notes.len() as u64;
                if *done {
                    header.status = Status::Done;
                }
                self.header_dirty = true;
                for note in notes {
                    self.notes.insert_or_assign(note.id, Arc::new(note.clone()));
                    self.index(note, None);
                }
                let named: Vec<String> = batches
                    .iter()
                    .map(|(batch, channel, first, last)| {
                        format!("batch {batch}: {} {}", last - first + 1, channel.name())
                    })
                    .collect();
                let mut line = format!(
                    "Fan-out page {seq}: {recipients} recipients, {} notifications ({})",
                    notes.len(),
                    named.join(", ")
                );
                if *unreachable > 0 {
                    line.push_str(&format!(
                        "; {unreachable} without an address on any of its channels"
                    ));
                }
                if *complete {
                    line.push_str("; fan-out complete");
                }
                self.log(*at_ms, line);
                if *done {
                    self.log(*at_ms, "Status: done".into());
                }
            }
            DispatchEvent::Claimed {
                batch,
                ids,
                possible_duplicates,
                at_ms,
            } => {
                let Some(header) = self.header.as_mut() else { return };
                header.possible_duplicates += possible_duplicates;
                header.claimed.insert(*batch, ids.iter().copied().collect());
                self.header_dirty = true;
                let mut line = format!("Batch {batch}: {} attempts started", ids.len());
                if *possible_duplicates > 0 {
                    line.push_str(&format!(
                        "; {possible_duplicates} had been started before a restart without a recorded outcome (possible duplicates, same idempotency keys)"
                    ));
                }
                self.log(*at_ms, line);
            }
            DispatchEvent::Recorded {
                batch,
                updates,
                finished,
                resume,
                done,
                at_ms,
            } => {
                let Some(header) = self.header.as_mut() else { return };
                let mut tally = [0u64; 4];
                let mut failovers = Vec::new();
                for note in updates {
                    let old = self.notes.get(&note.id).map(|n| n.status);
                    if let Some(old) = old {
                        header.counts[old.index()] -= 1;
                    }
                    header.counts[note.status.index()] += 1;
                    tally[note.status.index()] += 1;
                    if note.status == NoteStatus::Dead || note.via != note.channel {
                        failovers.push(note.clone());
                    }
                }
                if let Some(claimed) = header.claimed.get_mut(batch) {
                    for note in updates {
                        claimed.remove(&note.id);
                    }
                    if claimed.is_empty() {
                        header.claimed.remove(batch);
                    }
                }
                if *finished {
                    header.open.remove(batch);
                }
                if *resume {
                    header.fanout_asked = true;
                }
                if *done {
                    header.status = Status::Done;
                }
                self.header_dirty = true;
                for note in updates {
                    let old = self.notes.get(&note.id).map(|n| n.status);
                    self.notes.insert_or_assign(note.id, Arc::new(note.clone()));
                    self.index(note, old);
                }
                self.log(
                    *at_ms,
                    format!(
                        "Batch {batch}: {} sent, {} to retry, {} dead{}",
                        tally[2],
                        tally[1],
                        tally[3],
                        if *finished { "; batch finished" } else { "" }
                    ),
                );
                for note in failovers {
                    self.log(
                        *at_ms,
                        format!(
                            "Notification {} (contact {}, {}): {}",
                            note.id,
                            note.contact_id,
                            note.channel.name(),
                            note.last_error.as_deref().unwrap_or(note.status.as_str())
                        ),
                    );
                }
                if *done {
                    self.log(*at_ms, "Status: done".into());
                }
            }
            DispatchEvent::ItemAdded(_) | DispatchEvent::Summarized(_) => {}
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        let header = self.header.as_ref()?;
        match header.status {
            Status::Scheduled => Some(header.spec.start_ms),
            Status::WaitingCondition => header.spec.end_ms,
            _ => None,
        }
    }

    fn timer_command(&self, _now_ms: Millis) -> Option<JobCommand> {
        Some(JobCommand::Tick)
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        if std::mem::take(&mut self.header_dirty) {
            if let Some(header) = &self.header {
                batch.put(key, HEADER, header);
            }
        }
        self.notes.save_later(key, NOTES, batch);
        self.log.save(key, LOG, batch);
    }
}
