//! Dispatch and notifications (ORIGINALS.md §3, "VOLTANS"): a catalog of programs, event types,
//! groups and contacts; dispatches that notify every contact of an event type's groups on each
//! of its channels, at a start time or when a market signal holds; delivery through the
//! [`courier::Courier`] the server gives, with retries, dead letters and failover.
//!
//! # Actors
//! - [`catalog::Catalog`] (singleton): the catalog and the index of dispatches; creates them.
//! - [`job::Job`] (one per dispatch): its status, notifications and transaction log.
//!
//! # Effects (see [`delivery`])
//! `notify.fanout` pages recipients into notifications; `notify.sms`, `notify.email` and
//! `notify.webhook` carry a batch of their channel's notifications through the courier, each
//! kind on its own worker pool. Both are outbox effects: they run only after the record
//! that asked for them is durable, and again after a crash until they complete.
//!
//! # Signal
//! [`signal`]: a thread following the market's price subscription fires waiting dispatches.
//!
//! # Fixed from the original
//! The recipients are the contacts of the event type's groups (not one fixed number);
//! credentials come from configuration and the environment (never the source); every attempt's
//! outcome is recorded (a failed send is retried or dead-lettered, never lost); the transaction
//! log is kept in the engine, per dispatch, not in a loose file; ids are sequences, not
//! `time.time()` seconds that collide.

pub mod catalog;
pub mod config;
pub mod courier;
pub mod delivery;
pub mod job;
pub mod model;
mod signal;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Domain, DomainEvent, Kind, Registry};
use crate::Page;

pub use catalog::ItemKind;
pub use model::{Contact, EventType, Group, Item, Program, Summary, Totals};
pub use config::NotifyConfig;
pub use courier::{Channel, Courier, Message, OfflineCourier, Outcome};
pub use job::{Condition, Fired, LogLine, NoteStatus, Notification, Op, Status, View};

/// The dispatch domain: registered in `lib.rs`'s `domains!`.
pub const DOMAIN: DispatchDomain = DispatchDomain;

/// The catalog (singleton, id 0).
pub const CATALOG: Kind = Kind::new(10);
/// Dispatches (id = the dispatch's id).
pub const DISPATCH: Kind = Kind::new(11);

/// The effect kinds (see [`delivery`]): the fan-out, and one per channel for its batches.
pub const FANOUT_EFFECT: &str = "notify.fanout";

/// The effect kind (and worker pool) of `channel`'s batches.
pub fn batch_kind(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "notify.sms",
        Channel::Email => "notify.email",
        Channel::Webhook => "notify.webhook",
    }
}

/// A notification's id is `dispatch id · this + n`, n from 1: readable, and below 2^53 (exact
/// in any JSON reader) for every dispatch id up to `notify.dispatches_max`'s ceiling.
pub const NOTIFICATIONS_PER_DISPATCH: u64 = 100_000_000;

/// Dispatches one page of `GET /notifications` may look through before it answers with what it
/// found and a cursor (so a page's cost is bounded whatever the filters).
const DISPATCHES_PER_PAGE_MAX: usize = 256;

pub struct DispatchDomain;

impl Domain for DispatchDomain {
    fn name(&self) -> &'static str {
        "dispatch"
    }

    fn register(&self, registry: &mut Registry) {
        registry.kind::<catalog::Catalog>("dispatch_catalog");
        registry.kind::<job::Job>("dispatch");
        registry.config::<NotifyConfig>();
    }

    fn opened(&self, engine: &crate::Engine) -> Result<()> {
        // Only with delivery pools: an engine opened without them (a test of another domain)
        // runs no dispatch.
        if !engine.shared().effects.has_pool(batch_kind(Channel::Webhook)) {
            return Ok(());
        }
        signal::spawn(engine, engine.config().section::<NotifyConfig>().signal_check_ms)
    }
}

/// The domain's events (one enum for its two kinds; each applies its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DispatchEvent {
    /// Catalog: an item was added.
    ItemAdded(Item),
    /// Catalog: a dispatch's summary (an assignment, from the dispatch's own records).
    Summarized(Summary),
    /// Dispatch: created (by the catalog's record).
    Created {
        spec: job::DispatchSpec,
        status: Status,
        fired: Option<Fired>,
    },
    /// Dispatch: sending starts (its start time came, or its condition held).
    Started { fired: Option<Fired>, at_ms: Millis },
    /// Dispatch: its start time came; it waits for its condition.
    Waiting { at_ms: Millis },
    /// Dispatch: its end came while it waited for its condition.
    Expired { at_ms: Millis },
    /// Dispatch: fan-out page `seq` made these notifications, in `batches` (number, channel,
    /// first and last notification id).
    Expanded {
        seq: u32,
        after: u64,
        /// Contacts on the page.
        recipients: u64,
        notes: Vec<Notification>,
        batches: Vec<(u32, Channel, u64, u64)>,
        complete: bool,
        asked_next: bool,
        unreachable: u64,
        done: bool,
        at_ms: Millis,
    },
    /// Dispatch: an attempt of these notifications starts.
    Claimed {
        batch: u32,
        ids: Vec<u64>,
        possible_duplicates: u64,
        at_ms: Millis,
    },
    /// Dispatch: the outcomes of a batch's attempt (each notification's new state).
    Recorded {
        batch: u32,
        updates: Vec<Notification>,
        finished: bool,
        resume: bool,
        done: bool,
        at_ms: Millis,
    },
}

impl DomainEvent for DispatchEvent {
    const TAG: u32 = 4;
}

impl crate::Engine {
    /// The dispatch workload (see [`crate::dispatch`]).
    pub fn dispatch(&self) -> Dispatch<'_> {
        Dispatch {
            engine: self,
            config: self.config().section::<NotifyConfig>(),
        }
    }
}

/// The dispatch workload's API, through [`crate::Engine::dispatch`].
pub struct Dispatch<'a> {
    engine: &'a crate::Engine,
    config: &'a NotifyConfig,
}

/// A dispatch to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchRequest {
    pub program_id: u64,
    pub event_type_id: u64,
    pub start_ms: Millis,
    pub end_ms: Option<Millis>,
    pub condition: Option<Condition>,
}

/// A created dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    pub id: u64,
    pub status: Status,
    pub recipients: u64,
}

/// Filters of `GET /api/v1/notifications`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoteFilter {
    pub status: Option<NoteStatus>,
    pub user_id: Option<u64>,
    pub dispatch_id: Option<u64>,
}

fn check_text(field: &str, text: &str, max: usize, may_be_empty: bool) -> Result<()> {
    let chars = text.chars().count();
    if (chars == 0 && !may_be_empty) || chars > max {
        return Err(Error::invalid_field(
            "invalid_field",
            field,
            format!("`{field}` must be 1 to {max} characters"),
        ));
    }
    if field != "message" && text.chars().any(char::is_control) {
        return Err(Error::invalid_field(
            "invalid_field",
            field,
            format!("`{field}` may not contain control characters"),
        ));
    }
    Ok(())
}

fn check_groups(config: &NotifyConfig, group_ids: &[u64]) -> Result<()> {
    if group_ids.len() > config.group_ids_max {
        return Err(Error::invalid_field(
            "invalid_field",
            "group_ids",
            format!("at most {} groups", config.group_ids_max),
        ));
    }
    let distinct: std::collections::BTreeSet<_> = group_ids.iter().collect();
    if distinct.len() != group_ids.len() {
        return Err(Error::invalid_field(
            "invalid_field",
            "group_ids",
            "`group_ids` names a group twice",
        ));
    }
    Ok(())
}

/// A plausible e-mail address: `local@domain` with a dot in the domain, no spaces.
fn plausible_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// E.164-ish: an optional `+`, then 3 to 20 digits with optional spaces, dashes, dots or
/// parentheses between them (the original's `555-555-5555` passes).
fn plausible_phone(text: &str) -> bool {
    let body = text.strip_prefix('+').unwrap_or(text);
    let digits = body.chars().filter(char::is_ascii_digit).count();
    (3..=20).contains(&digits)
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
}

impl Dispatch<'_> {
    pub fn config(&self) -> &NotifyConfig {
        self.config
    }

    fn shared(&self) -> &std::sync::Arc<crate::runtime::Shared> {
        self.engine.shared()
    }

    async fn catalog(&self, command: catalog::CatalogCommand) -> Result<catalog::CatalogReply> {
        self.shared().ask::<catalog::Catalog>(0, command).await
    }

    async fn job(&self, id: u64, command: job::JobCommand) -> Result<job::JobReply> {
        if id == 0 {
            return Err(Error::NotFound("dispatch"));
        }
        self.shared().ask::<job::Job>(id, command).await
    }

    /// Checks an item's fields (400 `invalid_field`); ids referenced are checked by the catalog
    /// (404).
    pub fn check(&self, item: &Item) -> Result<()> {
        let config = self.config;
        match item {
            Item::Program(p) => {
                check_text("name", &p.name, config.name_max_chars, false)?;
                check_text("message", &p.message, config.message_max_chars, false)
            }
            Item::EventType(e) => {
                check_text("name", &e.name, config.name_max_chars, false)?;
                check_groups(config, &e.group_ids)?;
                let distinct: std::collections::BTreeSet<_> = e.channels.iter().collect();
                if e.channels.is_empty() || distinct.len() != e.channels.len() {
                    return Err(Error::invalid_field(
                        "invalid_field",
                        "channels",
                        "`channels` must name 1 to 3 distinct channels of sms, email, webhook",
                    ));
                }
                Ok(())
            }
            Item::Group(g) => check_text("name", &g.name, config.name_max_chars, false),
            Item::Contact(c) => {
                check_text("name", &c.name, config.name_max_chars, false)?;
                check_groups(config, &c.group_ids)?;
                let max = config.address_max_chars;
                if let Some(email) = &c.email {
                    check_text("email", email, max, false)?;
                    if !plausible_email(email) {
                        return Err(Error::invalid_field("invalid_field", "email", "`email` is not an e-mail address"));
                    }
                }
                if let Some(phone) = &c.phone {
                    check_text("phone", phone, max, false)?;
                    if !plausible_phone(phone) {
                        return Err(Error::invalid_field("invalid_field", "phone", "`phone` is not a phone number"));
                    }
                }
                if let Some(url) = &c.webhook_url {
                    check_text("webhook_url", url, max, false)?;
                    if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(char::is_whitespace) {
                        return Err(Error::invalid_field(
                            "invalid_field",
                            "webhook_url",
                            "`webhook_url` must be an http:// or https:// URL",
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// Adds a catalog item (its id is assigned); returns it once durable.
    pub async fn add(&self, item: Item) -> Result<Item> {
        self.check(&item)?;
        match self.catalog(catalog::CatalogCommand::Add(item)).await? {
            catalog::CatalogReply::Added(item) => Ok(item),
            _ => Err(catalog::CatalogReply::unexpected()),
        }
    }

    /// A page of catalog items of `kind`, ascending by id, after `after`.
    pub async fn items(&self, kind: ItemKind, after: Option<u64>, limit: usize) -> Result<Page<Item>> {
        match self.catalog(catalog::CatalogCommand::List { kind, after, limit }).await? {
            catalog::CatalogReply::Page(page) => Ok(page),
            _ => Err(catalog::CatalogReply::unexpected()),
        }
    }

    /// Creates a dispatch (400 when it ends before it starts; 404 for an unknown program or
    /// event type). A condition that holds on the current fresh price fires at once.
    pub async fn create(&self, request: DispatchRequest) -> Result<Created> {
        if request.end_ms.is_some_and(|end| end < request.start_ms) {
            return Err(Error::invalid_field(
                "invalid_field",
                "end_time",
                "`end_time` is before `start_time`",
            ));
        }
        let quote = self.engine.market().price().ok();
        match self
            .catalog(catalog::CatalogCommand::Dispatch {
                program_id: request.program_id,
                event_type_id: request.event_type_id,
                start_ms: request.start_ms,
                end_ms: request.end_ms,
                condition: request.condition,
                quote,
            })
            .await?
        {
            catalog::CatalogReply::Dispatched { id, status, recipients } => Ok(Created { id, status, recipients }),
            _ => Err(catalog::CatalogReply::unexpected()),
        }
    }

    /// Every dispatch's counts added up (dispatches and notifications by status, possible
    /// duplicates): kept by the catalog as dispatches record, so a scrape costs the same
    /// however many there are.
    pub async fn totals(&self) -> Result<Totals> {
        match self.catalog(catalog::CatalogCommand::Totals).await? {
            catalog::CatalogReply::Totals(totals) => Ok(totals),
            _ => Err(catalog::CatalogReply::unexpected()),
        }
    }

    /// A dispatch's state.
    pub async fn get(&self, id: u64) -> Result<View> {
        match self.job(id, job::JobCommand::View).await? {
            job::JobReply::View(view) => Ok(*view),
            _ => Err(catalog::CatalogReply::unexpected()),
        }
    }

    /// A dispatch's transaction log, and how many later lines were not kept.
    pub async fn log(&self, id: u64) -> Result<(Vec<LogLine>, u64)> {
        match self.job(id, job::JobCommand::Log).await? {
            job::JobReply::Log(lines, omitted) => Ok((lines, omitted)),
            _ => Err(catalog::CatalogReply::unexpected()),
        }
    }

    /// A page of notifications, ascending by id, after `after` (0: from the first).
    pub async fn notifications(&self, filter: NoteFilter, after: u64, limit: usize) -> Result<Page<Notification>> {
        let limit = limit.max(1);
        let notes_of = |id: u64, after: u64, limit: usize| {
            self.job(
                id,
                job::JobCommand::Notes {
                    after,
                    status: filter.status,
                    user_id: filter.user_id,
                    limit,
                },
            )
        };
        let unwrap = |reply: job::JobReply| match reply {
            job::JobReply::Notes(notes) => Ok(notes),
            _ => Err(catalog::CatalogReply::unexpected()),
        };
        if let Some(id) = filter.dispatch_id {
            // An id no dispatch can have (its notifications' ids would not fit) has none.
            let Some(first) = id.checked_mul(NOTIFICATIONS_PER_DISPATCH) else {
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                });
            };
            let from = after.max(first);
            let notes = match notes_of(id, from, limit + 1).await {
                Ok(reply) => unwrap(reply)?,
                Err(Error::NotFound(_)) => Vec::new(),
                Err(error) => return Err(error),
            };
            return Ok(crate::market::book::page_of(notes, limit, |n| n.id));
        }
        let mut items = Vec::new();
        let mut from = (after / NOTIFICATIONS_PER_DISPATCH).max(1);
        let mut visited = 0;
        loop {
            let summaries = match self
                .catalog(catalog::CatalogCommand::Summaries { from, limit: 64 })
                .await?
            {
                catalog::CatalogReply::Summaries(summaries) => summaries,
                _ => return Err(catalog::CatalogReply::unexpected()),
            };
            let Some(last) = summaries.last().map(|s| s.id) else {
                return Ok(crate::market::book::page_of(items, limit, |n| n.id));
            };
            for summary in summaries {
                if visited == DISPATCHES_PER_PAGE_MAX {
                    // Looked far enough: answer what was found, continue after this dispatch.
                    let next = summary.id.saturating_mul(NOTIFICATIONS_PER_DISPATCH);
                    return Ok(Page { items, next: Some(next) });
                }
                visited += 1;
                let total: u64 = summary.counts.iter().sum();
                let matching = match filter.status {
                    Some(status) => summary.counts[status as usize],
                    None => total,
                };
                if matching == 0 {
                    continue;
                }
                let start = after.max(summary.id.saturating_mul(NOTIFICATIONS_PER_DISPATCH));
                let want = limit + 1 - items.len();
                items.extend(unwrap(notes_of(summary.id, start, want).await?)?);
                if items.len() > limit {
                    return Ok(crate::market::book::page_of(items, limit, |n| n.id));
                }
            }
            from = last + 1;
        }
    }
}

/// The key of a singleton.
fn singleton(kind: Kind) -> ActorKey {
    ActorKey::new(kind, 0)
}
