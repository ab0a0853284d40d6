//! The health log: reports from operators (`POST /api/v1/health/reports`) and from the engine
//! itself (the price feed's failures), newest first, at most `market.health_reports_max` (the
//! oldest go). The original's health service printed reports and kept nothing; this one keeps
//! them, durably, and lists them with keyset paging and filters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::book::page_of;
use super::{MarketConfig, MarketEvent, HEALTH_LOG};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Event, Kind};
use crate::store::{SnapshotBatch, Store};
use crate::Page;

/// A report's level (the original's five).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|level| level.as_str() == text)
    }
}

/// One report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub id: u64,
    pub level: Level,
    pub service: String,
    pub status: String,
    pub data: String,
    pub at_ms: Millis,
}

/// Checks a report's texts against `market.health_name_max_chars` and
/// `market.health_data_max_chars` (400 `invalid_field`).
pub(crate) fn check_text(config: &MarketConfig, service: &str, status: &str, data: &str) -> Result<()> {
    for (field, text, max, may_be_empty) in [
        ("service", service, config.health_name_max_chars, false),
        ("status", status, config.health_name_max_chars, false),
        ("data", data, config.health_data_max_chars, true),
    ] {
        let chars = text.chars().count();
        if (chars == 0 && !may_be_empty) || chars > max {
            return Err(Error::invalid_field(
                "invalid_field",
                field,
                format!("`{field}` must be {}1 to {max} characters", if may_be_empty { "0 or " } else { "" }),
            ));
        }
        if field != "data" && text.chars().any(char::is_control) {
            return Err(Error::invalid_field(
                "invalid_field",
                field,
                format!("`{field}` may not contain control characters"),
            ));
        }
    }
    Ok(())
}

pub enum HealthCommand {
    Add {
        level: Level,
        service: String,
        status: String,
        data: String,
    },
    List {
        level: Option<Level>,
        service: Option<String>,
        before: Option<u64>,
        limit: usize,
    },
}

pub enum HealthReply {
    Report(Report),
    Page(Page<Report>),
}

impl HealthReply {
    pub(crate) fn report(self) -> Result<Report> {
        match self {
            HealthReply::Report(report) => Ok(report),
            HealthReply::Page(_) => Err(Error::Unavailable("unexpected reply kind")),
        }
    }

    pub(crate) fn page(self) -> Result<Page<Report>> {
        match self {
            HealthReply::Page(page) => Ok(page),
            HealthReply::Report(_) => Err(Error::Unavailable("unexpected reply kind")),
        }
    }
}

#[derive(Debug, Default)]
pub struct HealthLog {
    reports: BTreeMap<u64, Report>,
    next_id: u64,
    added: Vec<u64>,
    removed: Vec<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Part {
    NextId(u64),
    Report(Report),
}

const NEXT_ID: &[u8] = b"n";
const REPORT: &[u8] = b"r";

fn report_sub(id: u64) -> Vec<u8> {
    let mut sub = REPORT.to_vec();
    sub.extend_from_slice(&id.to_be_bytes());
    sub
}

impl Entity for HealthLog {
    const KIND: Kind = HEALTH_LOG;
    type Event = MarketEvent;
    type Command = HealthCommand;
    type Reply = HealthReply;

    fn load(id: u64, store: &Store) -> Result<Self> {
        let mut log = HealthLog {
            next_id: 1,
            ..HealthLog::default()
        };
        for (_, part) in store.scan::<Part>(ActorKey::new(HEALTH_LOG, id))? {
            match part {
                Part::NextId(next) => log.next_id = log.next_id.max(next),
                Part::Report(report) => {
                    log.next_id = log.next_id.max(report.id + 1);
                    log.reports.insert(report.id, report);
                }
            }
        }
        Ok(log)
    }

    fn decide(&self, command: HealthCommand, ctx: &Ctx<'_>) -> Result<Decision<HealthReply>> {
        match command {
            HealthCommand::Add {
                level,
                service,
                status,
                data,
            } => {
                let report = Report {
                    id: self.next_id,
                    level,
                    service,
                    status,
                    data,
                    at_ms: ctx.now_ms,
                };
                let keep = ctx.config.section::<MarketConfig>().health_reports_max;
                // With this one added, the oldest beyond `keep` go.
                let excess = (self.reports.len() + 1).saturating_sub(keep);
                let evict_through = self.reports.keys().nth(excess.saturating_sub(1)).copied();
                let evict_through = if excess == 0 { None } else { evict_through };
                Ok(Decision {
                    events: vec![(
                        ctx.key,
                        Event::new(MarketEvent::ReportAdded {
                            report: report.clone(),
                            evict_through,
                        }),
                    )],
                    reply: HealthReply::Report(report),
                })
            }
            HealthCommand::List {
                level,
                service,
                before,
                limit,
            } => {
                let limit = limit.max(1);
                let items = self
                    .reports
                    .range(..before.unwrap_or(u64::MAX))
                    .rev()
                    .map(|(_, report)| report)
                    .filter(|report| level.is_none_or(|level| report.level == level))
                    .filter(|report| service.as_ref().is_none_or(|s| &report.service == s))
                    .take(limit + 1)
                    .cloned()
                    .collect();
                Ok(Decision::read(HealthReply::Page(page_of(
                    items,
                    limit,
                    |report| report.id,
                ))))
            }
        }
    }

    fn apply(&mut self, event: &MarketEvent) {
        if let MarketEvent::ReportAdded {
            report,
            evict_through,
        } = event
        {
            if let Some(through) = evict_through {
                while let Some((&id, _)) = self.reports.first_key_value() {
                    if id > *through {
                        break;
                    }
                    self.reports.remove(&id);
                    self.removed.push(id);
                }
            }
            self.next_id = self.next_id.max(report.id + 1);
            self.reports.insert(report.id, report.clone());
            self.added.push(report.id);
        }
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        if self.added.is_empty() && self.removed.is_empty() {
            return;
        }
        for id in std::mem::take(&mut self.removed) {
            batch.remove(key, &report_sub(id));
        }
        for id in std::mem::take(&mut self.added) {
            if let Some(report) = self.reports.get(&id) {
                batch.put(key, &report_sub(id), &Part::Report(report.clone()));
            }
        }
        // Kept so ids never repeat even when every report was evicted.
        batch.put(key, NEXT_ID, &Part::NextId(self.next_id));
    }
}
