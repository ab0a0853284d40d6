//! The catalog (singleton): programs, event types, groups and contacts, and the index of
//! dispatches (each one's summary: status, groups, per-status counts), which it also creates.
//!
//! Items are only added (API.md has no update or delete), so a contact's groups never change
//! and the recipients of a dispatch are fixed by its groups and `contacts_through`, the highest
//! contact id when it was created: the dispatch pages through them later without a copy.
//!
//! Invariants: ids of each item type are 1, 2, 3, … in creation order and never reused; every
//! id an item names (an event type's or contact's groups) existed when it was created; a
//! group's member list is ascending; a dispatch's summary is written by the dispatch's own
//! records (assignments, so replay may re-apply them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;


pub use super::model::{Contact, EventType, Group, Item, Program, Summary, Totals};
use super::model::{fanout_effect, Condition, DispatchSpec, Status};
use super::{DispatchEvent, NotifyConfig, CATALOG, DISPATCH};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::market::Quote;
use crate::runtime::outbox;
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Event, Kind};
use crate::store::{Chunked, SnapshotBatch, Store};
use crate::Page;

/// Which item list a command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Program,
    EventType,
    Group,
    Contact,
}

pub enum CatalogCommand {
    Add(Item),
    List {
        kind: ItemKind,
        after: Option<u64>,
        limit: usize,
    },
    /// Creates a dispatch (ids checked here; the request's own fields by the caller).
    Dispatch {
        program_id: u64,
        event_type_id: u64,
        start_ms: Millis,
        end_ms: Option<Millis>,
        condition: Option<Condition>,
        /// The `btc_eur` quote at creation, if fresh (a condition that holds fires at once).
        quote: Option<Quote>,
    },
    /// Up to `limit` recipients of a dispatch after contact `after`, ascending.
    Recipients {
        group_ids: Vec<u64>,
        through: u64,
        after: u64,
        limit: usize,
    },
    /// Dispatches from `from` on, at most `limit`, with their summaries.
    Summaries { from: u64, limit: usize },
    /// The contacts of user `user_id`.
    ContactsOf { user_id: u64 },
    /// The dispatches waiting for a condition.
    Waiting,
    /// Every dispatch's counts added up.
    Totals,
}

pub enum CatalogReply {
    Added(Item),
    Page(Page<Item>),
    Dispatched { id: u64, status: Status, recipients: u64 },
    Recipients(Vec<Contact>),
    Summaries(Vec<Summary>),
    Contacts(Vec<u64>),
    Waiting(Vec<(u64, Condition)>),
    Totals(Totals),
}

#[derive(Debug, Default)]
pub struct Catalog {
    programs: Chunked<u64, Program>,
    event_types: Chunked<u64, EventType>,
    groups: Chunked<u64, Group>,
    /// Behind `Arc`s: written by the hundred thousand, and snapshotted off this thread
    /// (`Chunked::save_later`).
    contacts: Chunked<u64, Arc<Contact>>,
    dispatches: Chunked<u64, Summary>,
    /// Group → its contacts, ascending (derived).
    members: HashMap<u64, Vec<u64>>,
    /// User → its contacts (derived).
    by_user: BTreeMap<u64, Vec<u64>>,
    /// Dispatches waiting for a condition (derived from their summaries).
    waiting: BTreeMap<u64, Condition>,
    totals: Totals,
}

const PROGRAMS: &[u8] = b"p";
const EVENT_TYPES: &[u8] = b"e";
const GROUPS: &[u8] = b"g";
const CONTACTS: &[u8] = b"c";
const DISPATCHES: &[u8] = b"d";

fn next_id<V>(map: &Chunked<u64, V>) -> u64 {
    map.iter().next_back().map_or(1, |(id, _)| id + 1)
}

impl Catalog {
    fn index(&mut self, contact: &Contact) {
        for group in &contact.group_ids {
            let members = self.members.entry(*group).or_default();
            if members.last().is_none_or(|last| *last < contact.id) {
                members.push(contact.id);
            }
        }
        if let Some(user) = contact.user_id {
            let contacts = self.by_user.entry(user).or_default();
            if contacts.last().is_none_or(|last| *last < contact.id) {
                contacts.push(contact.id);
            }
        }
    }

    /// The distinct contacts of `group_ids` in `(after, through]`, ascending, at most `limit`.
    fn recipients(&self, group_ids: &[u64], through: u64, after: u64, limit: usize) -> Vec<u64> {
        // A k-way merge by repeated minimum: each group's list is ascending.
        let mut cursors: Vec<&[u64]> = group_ids
            .iter()
            .filter_map(|group| self.members.get(group))
            .map(|members| {
                let start = members.partition_point(|id| *id <= after);
                &members[start..]
            })
            .collect();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(next) = cursors.iter().filter_map(|c| c.first()).min().copied() else {
                break;
            };
            if next > through {
                break;
            }
            out.push(next);
            for cursor in &mut cursors {
                if cursor.first() == Some(&next) {
                    *cursor = &cursor[1..];
                }
            }
        }
        out
    }

    /// How many distinct contacts `group_ids` hold.
    fn count_recipients(&self, group_ids: &[u64]) -> u64 {
        let lists: Vec<&Vec<u64>> = group_ids
            .iter()
            .filter_map(|group| self.members.get(group))
            .collect();
        match lists.as_slice() {
            [] => 0,
            [one] => one.len() as u64,
            many => many
                .iter()
                .flat_map(|list| list.iter())
                .collect::<BTreeSet<_>>()
                .len() as u64,
        }
    }

    fn check_groups(&self, group_ids: &[u64]) -> Result<()> {
        if group_ids.iter().all(|id| self.groups.contains_key(id)) {
            Ok(())
        } else {
            Err(Error::NotFound("group"))
        }
    }

    fn add(&self, item: Item, config: &NotifyConfig) -> Result<(Item, DispatchEvent)> {
        let full = |len: usize| {
            if len >= config.catalog_items_max {
                Err(Error::Overloaded("the dispatch catalog"))
            } else {
                Ok(())
            }
        };
        let item = match item {
            Item::Program(mut program) => {
                full(self.programs.len())?;
                program.id = next_id(&self.programs);
                Item::Program(program)
            }
            Item::EventType(mut event_type) => {
                full(self.event_types.len())?;
                self.check_groups(&event_type.group_ids)?;
                event_type.id = next_id(&self.event_types);
                Item::EventType(event_type)
            }
            Item::Group(mut group) => {
                full(self.groups.len())?;
                group.id = next_id(&self.groups);
                Item::Group(group)
            }
            Item::Contact(mut contact) => {
                full(self.contacts.len())?;
                self.check_groups(&contact.group_ids)?;
                contact.id = next_id(&self.contacts);
                Item::Contact(contact)
            }
        };
        Ok((item.clone(), DispatchEvent::ItemAdded(item)))
    }

    fn list(&self, kind: ItemKind, after: Option<u64>, limit: usize) -> Page<Item> {
        let after = after.unwrap_or(0);
        let limit = limit.max(1);
        // Up to `limit + 1` items after `after`, ascending (one more tells a next page).
        fn first<V>(map: &Chunked<u64, V>, after: u64, limit: usize, item: impl Fn(&V) -> Item) -> Vec<Item> {
            map.range(after + 1..).take(limit + 1).map(|(_, v)| item(v)).collect()
        }
        let items = match kind {
            ItemKind::Program => first(&self.programs, after, limit, |p| Item::Program(p.clone())),
            ItemKind::EventType => {
                first(&self.event_types, after, limit, |e| Item::EventType(e.clone()))
            }
            ItemKind::Group => first(&self.groups, after, limit, |g| Item::Group(g.clone())),
            ItemKind::Contact => {
                first(&self.contacts, after, limit, |c| Item::Contact(Contact::clone(c)))
            }
        };
        crate::market::book::page_of(items, limit, Item::id)
    }

    fn dispatch(
        &self,
        command: CatalogCommand,
        ctx: &Ctx<'_>,
    ) -> Result<Decision<CatalogReply>> {
        let CatalogCommand::Dispatch {
            program_id,
            event_type_id,
            start_ms,
            end_ms,
            condition,
            quote,
        } = command
        else {
            unreachable!("called with a dispatch command")
        };
        let config = ctx.config.section::<NotifyConfig>();
        let program = self
            .programs
            .get(&program_id)
            .ok_or(Error::NotFound("program"))?;
        let event_type = self
            .event_types
            .get(&event_type_id)
            .ok_or(Error::NotFound("event type"))?;
        if self.dispatches.len() >= config.dispatches_max {
            return Err(Error::Overloaded("the dispatch index"));
        }
        let recipients = self.count_recipients(&event_type.group_ids);
        let per_dispatch = recipients.saturating_mul(event_type.channels.len() as u64);
        if per_dispatch >= super::NOTIFICATIONS_PER_DISPATCH {
            return Err(Error::unprocessable(
                "too_many_recipients",
                format!(
                    "{recipients} recipients on {} channels exceed the {} notifications one dispatch may hold",
                    event_type.channels.len(),
                    super::NOTIFICATIONS_PER_DISPATCH - 1
                ),
            ));
        }
        let id = next_id(&self.dispatches);
        let spec = DispatchSpec {
            id,
            program: program.clone(),
            event_type: event_type.clone(),
            start_ms,
            end_ms,
            condition,
            contacts_through: next_id(&self.contacts) - 1,
            recipients,
            created_ms: ctx.now_ms,
            log_lines_max: config.log_lines_max,
        };
        let (status, fired) = spec.initial_status(ctx.now_ms, quote.as_ref());
        let summary = Summary {
            id,
            status,
            group_ids: event_type.group_ids.clone(),
            contacts_through: spec.contacts_through,
            counts: [0; 4],
            waiting: condition.filter(|_| status == Status::WaitingCondition),
            possible_duplicates: 0,
        };
        let mut events = vec![
            (ctx.key, Event::new(DispatchEvent::Summarized(summary))),
            (
                ActorKey::new(DISPATCH, id),
                Event::new(DispatchEvent::Created {
                    spec,
                    status,
                    fired,
                }),
            ),
        ];
        if status == Status::Sending {
            events.push(outbox::effect(fanout_effect(id, 0)));
        }
        Ok(Decision {
            events,
            reply: CatalogReply::Dispatched {
                id,
                status,
                recipients,
            },
        })
    }
}

impl Entity for Catalog {
    const KIND: Kind = CATALOG;
    type Event = DispatchEvent;
    type Command = CatalogCommand;
    type Reply = CatalogReply;

    fn load(id: u64, store: &Store) -> Result<Self> {
        let key = ActorKey::new(CATALOG, id);
        let mut catalog = Catalog {
            programs: Chunked::load(store, key, PROGRAMS)?,
            event_types: Chunked::load(store, key, EVENT_TYPES)?,
            groups: Chunked::load(store, key, GROUPS)?,
            contacts: Chunked::load_mapped(store, key, CONTACTS, Arc::new)?,
            dispatches: Chunked::load(store, key, DISPATCHES)?,
            ..Catalog::default()
        };
        let contacts: Vec<Contact> = catalog.contacts.values().map(|c| Contact::clone(c)).collect();
        for contact in &contacts {
            catalog.index(contact);
        }
        catalog.waiting = catalog
            .dispatches
            .values()
            .filter_map(|summary| summary.waiting.map(|c| (summary.id, c)))
            .collect();
        let summaries: Vec<Summary> = catalog.dispatches.values().cloned().collect();
        for summary in &summaries {
            catalog.totals.add(summary, 1);
        }
        Ok(catalog)
    }

    fn decide(&self, command: CatalogCommand, ctx: &Ctx<'_>) -> Result<Decision<CatalogReply>> {
        let config = ctx.config.section::<NotifyConfig>();
        let reply = match command {
            CatalogCommand::Add(item) => {
                let (item, event) = self.add(item, config)?;
                return Ok(Decision {
                    events: vec![(ctx.key, Event::new(event))],
                    reply: CatalogReply::Added(item),
                });
            }
            command @ CatalogCommand::Dispatch { .. } => return self.dispatch(command, ctx),
            CatalogCommand::List { kind, after, limit } => {
                CatalogReply::Page(self.list(kind, after, limit))
            }
            CatalogCommand::Recipients {
                group_ids,
                through,
                after,
                limit,
            } => CatalogReply::Recipients(
                self.recipients(&group_ids, through, after, limit)
                    .into_iter()
                    .filter_map(|id| self.contacts.get(&id).map(|c| Contact::clone(c)))
                    .collect(),
            ),
            CatalogCommand::Summaries { from, limit } => CatalogReply::Summaries(
                self.dispatches
                    .range(from..)
                    .take(limit)
                    .map(|(_, summary)| summary.clone())
                    .collect(),
            ),
            CatalogCommand::ContactsOf { user_id } => CatalogReply::Contacts(
                self.by_user.get(&user_id).cloned().unwrap_or_default(),
            ),
            CatalogCommand::Totals => CatalogReply::Totals(self.totals),
            CatalogCommand::Waiting => {
                CatalogReply::Waiting(self.waiting.iter().map(|(id, c)| (*id, *c)).collect())
            }
        };
        Ok(Decision::read(reply))
    }

    fn apply(&mut self, event: &DispatchEvent) {
        match event {
            DispatchEvent::ItemAdded(item) => match item {
                Item::Program(p) => {
                    self.programs.insert_or_assign(p.id, p.clone());
                }
                Item::EventType(e) => {
                    self.event_types.insert_or_assign(e.id, e.clone());
                }
                Item::Group(g) => {
                    self.groups.insert_or_assign(g.id, g.clone());
                }
                Item::Contact(c) => {
                    if self.contacts.insert_or_assign(c.id, Arc::new(c.clone())).is_none() {
                        self.index(c);
                    }
                }
            },
            DispatchEvent::Summarized(summary) => {
                match summary.waiting {
                    Some(condition) => self.waiting.insert(summary.id, condition),
                    None => self.waiting.remove(&summary.id),
                };
                if let Some(old) = self.dispatches.get(&summary.id).cloned() {
                    self.totals.add(&old, -1);
                }
                self.totals.add(summary, 1);
                self.dispatches.insert_or_assign(summary.id, summary.clone());
            }
            _ => {}
        }
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        self.programs.save(key, PROGRAMS, batch);
        self.event_types.save(key, EVENT_TYPES, batch);
        self.groups.save(key, GROUPS, batch);
        self.contacts.save_later(key, CONTACTS, batch);
        self.dispatches.save(key, DISPATCHES, batch);
    }
}

impl CatalogReply {
    pub(crate) fn unexpected() -> Error {
        Error::Unavailable("unexpected reply kind")
    }
}
