//! The dispatch routes' request and response bodies (the handlers' types and the document's
//! schemas), and the two time formats the routes read: RFC 3339 ([`parse_rfc3339`]) and the
//! original's `MM/DD/YYYY HH:MM` ([`parse_original_time`], for `--compat dispatch`).
//!
//! Invariants: response types have `#[serde(deny_unknown_fields)]` (`additionalProperties:
//! false`), so the tests' response validation catches a field the document lacks; no response
//! carries a secret (a contact's addresses are shown, and every route that shows them is the
//! admin's).

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use switchyard_engine::clock::Millis;
use switchyard_engine::dispatch::{
    Channel, Condition, Contact, EventType, Group, Item, LogLine, NoteStatus, Notification, Op,
    Program, Status,
};
use utoipa::ToSchema;

use crate::http::{NextCursor, Timestamp};
use crate::json;

/// An id in a request body: a JSON integer (also `3.0`), unsigned 64-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = u64)]
pub struct Id(#[serde(deserialize_with = "json::integer")] pub u64);

/// A notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelName {
    Sms,
    Email,
    Webhook,
}

/// Only a JSON string is read (a derived enum would also take `{"sms": null}`).
impl<'de> Deserialize<'de> for ChannelName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Channel::parse(&text)
            .map(ChannelName::from)
            .ok_or_else(|| de::Error::custom("one of sms, email, webhook"))
    }
}

impl From<Channel> for ChannelName {
    fn from(channel: Channel) -> ChannelName {
        match channel {
            Channel::Sms => ChannelName::Sms,
            Channel::Email => ChannelName::Email,
            Channel::Webhook => ChannelName::Webhook,
        }
    }
}

impl From<ChannelName> for Channel {
    fn from(channel: ChannelName) -> Channel {
        match channel {
            ChannelName::Sms => Channel::Sms,
            ChannelName::Email => Channel::Email,
            ChannelName::Webhook => Channel::Webhook,
        }
    }
}

// ---- Catalog --------------------------------------------------------------------------------

/// `POST /api/v1/programs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramRequest {
    /// 1 to 200 characters (`notify.name_max_chars`), no control characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    pub name: String,
    /// What every notification of its dispatches says: 1 to 1600 characters
    /// (`notify.message_max_chars`).
    #[schema(min_length = 1, max_length = 1600)]
    pub message: String,
}

/// `POST /api/v1/event-types`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTypeRequest {
    /// 1 to 200 characters (`notify.name_max_chars`), no control characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    pub name: String,
    /// The groups whose contacts its dispatches notify: existing groups (else 404), each once,
    /// at most 100 (`notify.group_ids_max`).
    #[schema(max_items = 100)]
    pub group_ids: Vec<Id>,
    /// The channels each contact is notified on, in order of preference (a notification that
    /// cannot be delivered on its channel fails over to the next one the contact has an
    /// address for): 1 to 3 distinct channels.
    #[schema(min_items = 1, max_items = 3)]
    pub channels: Vec<ChannelName>,
}

/// `POST /api/v1/groups`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    /// 1 to 200 characters (`notify.name_max_chars`), no control characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    pub name: String,
}

/// `POST /api/v1/contacts`. A contact is notified on a channel only if it has that channel's
/// address.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// 1 to 200 characters (`notify.name_max_chars`), no control characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    pub name: String,
    /// `local@domain` with a dot inside the domain, no whitespace; at most 2048 characters
    /// (`notify.address_max_chars`).
    #[schema(
        max_length = 2048,
        pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]+@[^\s\u0000-\u001f\u007f-\u009f@.][^\s\u0000-\u001f\u007f-\u009f@]*\.[^\s\u0000-\u001f\u007f-\u009f@]*[^\s\u0000-\u001f\u007f-\u009f@.]$"
    )]
    pub email: Option<String>,
    /// An optional `+`, then 3 to 20 digits, with spaces, dashes, dots or parentheses between
    /// them (`555-555-5555`).
    #[schema(max_length = 2048, pattern = r"^\+?[0-9 ().-]*$")]
    pub phone: Option<String>,
    /// An `http://` or `https://` URL without whitespace (loopback allowed), at most 2048
    /// characters; notifications are POSTed to it.
    #[schema(max_length = 2048, pattern = r"^https?://[^\s\u0000-\u001f\u007f-\u009f]*$")]
    pub webhook_url: Option<String>,
    /// Its groups: existing groups (else 404), each once, at most 100 (`notify.group_ids_max`).
    #[schema(max_items = 100)]
    pub group_ids: Vec<Id>,
    /// The user it belongs to (any id; filters `GET /api/v1/notifications?user_id`).
    #[serde(default, deserialize_with = "json::optional_integer")]
    pub user_id: Option<u64>,
}

fn ids(ids: Vec<Id>) -> Vec<u64> {
    ids.into_iter().map(|id| id.0).collect()
}

impl From<ProgramRequest> for Item {
    fn from(request: ProgramRequest) -> Item {
        Item::Program(Program {
            id: 0,
            name: request.name,
            message: request.message,
        })
    }
}

impl From<EventTypeRequest> for Item {
    fn from(request: EventTypeRequest) -> Item {
        Item::EventType(EventType {
            id: 0,
            name: request.name,
            group_ids: ids(request.group_ids),
            channels: request.channels.into_iter().map(Channel::from).collect(),
        })
    }
}

impl From<GroupRequest> for Item {
    fn from(request: GroupRequest) -> Item {
        Item::Group(Group {
            id: 0,
            name: request.name,
        })
    }
}

impl From<ContactRequest> for Item {
    fn from(request: ContactRequest) -> Item {
        Item::Contact(Contact {
            id: 0,
            name: request.name,
            email: request.email,
            phone: request.phone,
            webhook_url: request.webhook_url,
            group_ids: ids(request.group_ids),
            user_id: request.user_id,
        })
    }
}

/// A program.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Program)]
pub struct ProgramBody {
    pub id: u64,
    pub name: String,
    pub message: String,
}

/// An event type.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EventType)]
pub struct EventTypeBody {
    pub id: u64,
    pub name: String,
    pub group_ids: Vec<u64>,
    /// In order of preference.
    pub channels: Vec<ChannelName>,
}

/// A group.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Group)]
pub struct GroupBody {
    pub id: u64,
    pub name: String,
}

/// A contact (its addresses are shown: every route that answers one is the admin's).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Contact)]
pub struct ContactBody {
    pub id: u64,
    pub name: String,
    #[schema(required = true)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub phone: Option<String>,
    #[schema(required = true)]
    pub webhook_url: Option<String>,
    pub group_ids: Vec<u64>,
    #[schema(required = true)]
    pub user_id: Option<u64>,
}

/// What a catalog route answers: the item of its kind. The routes of one kind only ever see
/// that kind (the engine answers the kind asked for).
pub enum ItemBody {
    Program(ProgramBody),
    EventType(EventTypeBody),
    Group(GroupBody),
    Contact(ContactBody),
}

impl From<Item> for ItemBody {
    fn from(item: Item) -> ItemBody {
        match item {
            Item::Program(p) => ItemBody::Program(ProgramBody {
                id: p.id,
                name: p.name,
                message: p.message,
            }),
            Item::EventType(e) => ItemBody::EventType(EventTypeBody {
                id: e.id,
                name: e.name,
                group_ids: e.group_ids,
                channels: e.channels.into_iter().map(ChannelName::from).collect(),
            }),
            Item::Group(g) => ItemBody::Group(GroupBody {
                id: g.id,
                name: g.name,
            }),
            Item::Contact(c) => ItemBody::Contact(ContactBody {
                id: c.id,
                name: c.name,
                email: c.email,
                phone: c.phone,
                webhook_url: c.webhook_url,
                group_ids: c.group_ids,
                user_id: c.user_id,
            }),
        }
    }
}

impl Serialize for ItemBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ItemBody::Program(body) => body.serialize(serializer),
            ItemBody::EventType(body) => body.serialize(serializer),
            ItemBody::Group(body) => body.serialize(serializer),
            ItemBody::Contact(body) => body.serialize(serializer),
        }
    }
}

/// A page of catalog items, ascending by id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramPage {
    pub items: Vec<ProgramBody>,
    pub next_cursor: NextCursor,
}

/// A page of event types, ascending by id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTypePage {
    pub items: Vec<EventTypeBody>,
    pub next_cursor: NextCursor,
}

/// A page of groups, ascending by id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPage {
    pub items: Vec<GroupBody>,
    pub next_cursor: NextCursor,
}

/// A page of contacts, ascending by id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPage {
    pub items: Vec<ContactBody>,
    pub next_cursor: NextCursor,
}

/// Any page of catalog items (serialized as `{"items", "next_cursor"}`).
#[derive(Serialize)]
pub struct ItemPage {
    pub items: Vec<ItemBody>,
    pub next_cursor: NextCursor,
}

// ---- Dispatches -----------------------------------------------------------------------------

/// The one signal a condition can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalName {
    /// The market's BTC price in euros (the price feed, `market.price_source`).
    BtcEur,
}

impl std::str::FromStr for SignalName {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<SignalName, &'static str> {
        match text {
            "btc_eur" => Ok(SignalName::BtcEur),
            _ => Err("the only signal is btc_eur"),
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum OpName {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
}

impl std::str::FromStr for OpName {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<OpName, &'static str> {
        Op::parse(text)
            .map(OpName::from)
            .ok_or("one of <, <=, >, >=, ==")
    }
}

impl From<Op> for OpName {
    fn from(op: Op) -> OpName {
        match op {
            Op::Lt => OpName::Lt,
            Op::Le => OpName::Le,
            Op::Gt => OpName::Gt,
            Op::Ge => OpName::Ge,
            Op::Eq => OpName::Eq,
        }
    }
}

impl From<OpName> for Op {
    fn from(op: OpName) -> Op {
        match op {
            OpName::Lt => Op::Lt,
            OpName::Le => Op::Le,
            OpName::Gt => Op::Gt,
            OpName::Ge => Op::Ge,
            OpName::Eq => Op::Eq,
        }
    }
}

/// `signal op value`: the dispatch sends once it holds (at or after its start time).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionRequest {
    #[serde(deserialize_with = "json::string_of")]
    pub signal: SignalName,
    #[serde(deserialize_with = "json::string_of")]
    pub op: OpName,
    /// Euros per BTC, a decimal string above 0 (`"50000"`, `"49999.5"`): up to 12 integer
    /// digits and 6 decimals.
    #[schema(pattern = r"^[0-9]{1,12}(\.[0-9]{1,6})?$", examples("50000"))]
    pub value: String,
}

/// `POST /api/v1/dispatches`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchRequest {
    pub program_id: Id,
    pub event_type_id: Id,
    /// RFC 3339 (an offset other than `Z` is converted to UTC), from 1970 to 9999; a time in
    /// the past or now starts at once.
    #[schema(format = DateTime, examples("2026-11-22T10:00:00Z"))]
    pub start_time: String,
    /// RFC 3339, not before `start_time`. A dispatch waiting for its condition stops waiting
    /// then (and is `done` without sending).
    #[schema(format = DateTime)]
    pub end_time: Option<String>,
    pub condition: Option<ConditionRequest>,
}

/// A dispatch's status.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DispatchStatus {
    Scheduled,
    WaitingCondition,
    Sending,
    Done,
}

impl From<Status> for DispatchStatus {
    fn from(status: Status) -> DispatchStatus {
        match status {
            Status::Scheduled => DispatchStatus::Scheduled,
            Status::WaitingCondition => DispatchStatus::WaitingCondition,
            Status::Sending => DispatchStatus::Sending,
            Status::Done => DispatchStatus::Done,
        }
    }
}

/// A created dispatch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchCreated {
    pub id: u64,
    /// `scheduled` (its start time is ahead), `waiting_condition` or `sending`.
    pub status: DispatchStatus,
    /// The contacts of the event type's groups (each counted once).
    pub recipients: u64,
}

/// A notification's status.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// Not attempted yet.
    Queued,
    /// An attempt failed; it waits for a retry.
    Failed,
    /// Delivered (or kept in the outbox when no provider is configured for its channel).
    Sent,
    /// Given up on every channel (the dead letter).
    Dead,
}

impl From<NoteStatus> for NotificationStatus {
    fn from(status: NoteStatus) -> NotificationStatus {
        match status {
            NoteStatus::Queued => NotificationStatus::Queued,
            NoteStatus::Failed => NotificationStatus::Failed,
            NoteStatus::Sent => NotificationStatus::Sent,
            NoteStatus::Dead => NotificationStatus::Dead,
        }
    }
}

/// One notification of a dispatch, as `GET /api/v1/dispatches/{id}` lists it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    pub notification_id: u64,
    pub contact_id: u64,
    /// The channel it is for.
    pub channel: ChannelName,
    /// The channel carrying it now (another one after a failover).
    pub via: ChannelName,
    pub status: NotificationStatus,
    /// Attempts on every channel.
    pub attempts: u32,
    #[schema(required = true)]
    pub last_error: Option<String>,
}

impl From<Notification> for Delivery {
    fn from(note: Notification) -> Delivery {
        Delivery {
            notification_id: note.id,
            contact_id: note.contact_id,
            channel: note.channel.into(),
            via: note.via.into(),
            status: note.status.into(),
            attempts: note.attempts,
            last_error: note.last_error,
        }
    }
}

/// A catalog item a dispatch names: its id and name as they were when it was created.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Named {
    pub id: u64,
    pub name: String,
}

/// A condition as kept.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionBody {
    pub signal: SignalName,
    pub op: OpName,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub value: String,
}

impl From<Condition> for ConditionBody {
    fn from(condition: Condition) -> ConditionBody {
        ConditionBody {
            signal: SignalName::BtcEur,
            op: condition.op.into(),
            value: condition.value.to_string(),
        }
    }
}

/// What fired a condition: the price and when it was read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FiredBody {
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub price: String,
    pub price_at: Timestamp,
}

/// Notifications by status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub queued: u64,
    pub failed: u64,
    pub sent: u64,
    pub dead: u64,
}

impl Counts {
    /// From the engine's counts, in [`NoteStatus::ALL`]'s order.
    pub fn new(counts: [u64; 4]) -> Counts {
        let of = |status: NoteStatus| counts[status as usize];
        Counts {
            queued: of(NoteStatus::Queued),
            failed: of(NoteStatus::Failed),
            sent: of(NoteStatus::Sent),
            dead: of(NoteStatus::Dead),
        }
    }
}

/// A dispatch, with one page of its notifications (`deliveries`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Dispatch)]
pub struct DispatchBody {
    pub id: u64,
    pub status: DispatchStatus,
    pub recipients: u64,
    /// One page of its notifications, ascending by id (`?limit`, default and at most 500, and
    /// `?cursor`).
    pub deliveries: Vec<Delivery>,
    /// The `cursor` of the next page of `deliveries`, `null` on the last.
    pub deliveries_next_cursor: NextCursor,
    pub program: Named,
    pub event_type: Named,
    pub start_time: Timestamp,
    #[schema(required = true)]
    pub end_time: Option<Timestamp>,
    #[schema(required = true)]
    pub condition: Option<ConditionBody>,
    /// What fired its condition, once it did.
    #[schema(required = true)]
    pub fired: Option<FiredBody>,
    /// Its notifications so far (one per recipient and channel it has an address for).
    pub notifications: u64,
    pub counts: Counts,
    /// Notifications sent again after a crash between an attempt and its record: the provider
    /// may have got them twice (each time under the same idempotency key).
    pub possible_duplicates: u64,
    pub created_at: Timestamp,
}

/// A notification, as `GET /api/v1/notifications` lists it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Notification)]
pub struct NotificationBody {
    pub id: u64,
    pub dispatch_id: u64,
    pub contact_id: u64,
    /// The channel it is for.
    pub channel: ChannelName,
    /// The channel carrying it now (another one after a failover).
    pub via: ChannelName,
    /// The address on `via` (a phone number, an e-mail address or a webhook URL).
    pub to: String,
    pub status: NotificationStatus,
    pub attempts: u32,
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// Kept in the outbox only: no provider is configured for `via`.
    pub outboxed: bool,
}

impl From<Notification> for NotificationBody {
    fn from(note: Notification) -> NotificationBody {
        NotificationBody {
            id: note.id,
            dispatch_id: note.dispatch_id,
            contact_id: note.contact_id,
            channel: note.channel.into(),
            via: note.via.into(),
            to: note.to,
            status: note.status.into(),
            attempts: note.attempts,
            last_error: note.last_error,
            outboxed: note.outboxed,
        }
    }
}

/// A page of notifications, ascending by id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationPage {
    pub items: Vec<NotificationBody>,
    pub next_cursor: NextCursor,
}

/// One line of a transaction log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLineBody {
    pub at: Timestamp,
    pub text: String,
}

/// A dispatch's transaction log (the JSON form, for `Accept: application/json`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchLog {
    pub lines: Vec<LogLineBody>,
    /// Later lines not kept (beyond `notify.log_lines_max`).
    pub omitted: u64,
}

/// The log as text: one line per entry, `{RFC 3339} {text}`, and a last line saying how many
/// were not kept, if any.
pub fn log_text(lines: &[LogLine], omitted: u64) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(&switchyard_engine::clock::rfc3339(line.at_ms));
        text.push(' ');
        text.push_str(&line.text);
        text.push('\n');
    }
    if omitted > 0 {
        text.push_str(&format!("… {omitted} later lines not kept\n"));
    }
    text
}

// ---- Times ----------------------------------------------------------------------------------

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's `days_from_civil`, the
/// inverse of `clock::rfc3339`'s).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Exactly `width` ASCII digits.
fn digits(text: &str, width: usize) -> Option<i64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Epoch milliseconds of a UTC civil time, or `None` when a field is out of range or the time
/// is before 1970. `second` may be 60 (a leap second, read as the next second).
fn civil_ms(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> Option<i64> {
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1000)
}

fn to_millis(ms: i64) -> Option<Millis> {
    Millis::try_from(ms).ok()
}

/// RFC 3339 (`2026-11-22T10:00:00Z`, `2026-11-22t10:00:00.5+01:00`) → epoch milliseconds
/// (fractions below a millisecond are cut); `None` for anything else, or a time before 1970.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !bytes.is_ascii() {
        return None;
    }
    if bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't') {
        return None;
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let year = digits(&text[0..4], 4)?;
    let month = digits(&text[5..7], 2)?;
    let day = digits(&text[8..10], 2)?;
    let hour = digits(&text[11..13], 2)?;
    let minute = digits(&text[14..16], 2)?;
    let second = digits(&text[17..19], 2)?;
    let mut rest = &text[19..];
    let mut fraction_ms = 0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let end = after_dot
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_dot.len());
        if end == 0 {
            return None;
        }
        let first_three = format!("{:0<3}", &after_dot[..end.min(3)]);
        fraction_ms = first_three.parse::<i64>().ok()?;
        rest = &after_dot[end..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let (sign, offset) = match rest.split_at_checked(1)? {
                ("+", offset) => (1, offset),
                ("-", offset) => (-1, offset),
                _ => return None,
            };
            let (hours, minutes) = offset.split_once(':')?;
            let (hours, minutes) = (digits(hours, 2)?, digits(minutes, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 60 + minutes)
        }
    };
    let local = civil_ms(year, month, day, hour, minute, second)? + fraction_ms;
    to_millis(local - offset_minutes * 60_000)
}

/// The original's `MM/DD/YYYY HH:MM` (UTC, API.md), or RFC 3339.
pub fn parse_original_time(text: &str) -> Option<Millis> {
    if let Some(ms) = parse_rfc3339(text) {
        return Some(ms);
    }
    let (date, time) = text.split_once(' ')?;
    let mut date = date.split('/');
    let (month, day, year) = (date.next()?, date.next()?, date.next()?);
    if date.next().is_some() {
        return None;
    }
    let (hour, minute) = time.split_once(':')?;
    let ms = civil_ms(
        digits(year, 4)?,
        digits(month, 2)?,
        digits(day, 2)?,
        digits(hour, 2)?,
        digits(minute, 2)?,
        0,
    )?;
    to_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<&str>) {
        let parsed = parse_rfc3339(text).map(switchyard_engine::clock::rfc3339);
        assert_eq!(parsed.as_deref(), expected, "{text}");
    }

    #[test]
    fn rfc3339_times() {
        check("2026-11-22T10:00:00Z", Some("2026-11-22T10:00:00Z"));
        check("2026-11-22t10:00:00z", Some("2026-11-22T10:00:00Z"));
        check("2026-11-22T11:30:00+01:30", Some("2026-11-22T10:00:00Z"));
        check("2026-11-22T08:00:00-02:00", Some("2026-11-22T10:00:00Z"));
        check("2000-02-29T00:00:00.999Z", Some("2000-02-29T00:00:00Z"));
        check("1970-01-01T00:00:00Z", Some("1970-01-01T00:00:00Z"));
        check("2016-12-31T23:59:60Z", Some("2017-01-01T00:00:00Z"));
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22 10:00:00Z",
            "2026-11-22T10:00:00",
            "2026-13-22T10:00:00Z",
            "2026-02-29T10:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:00:00.Z",
            "2026-11-22T10:00:00+1:00",
            "1969-12-31T23:59:59Z",
            "2026-11-22T10:00:00Zjunk",
            "+026-11-22T10:00:00Z",
        ] {
            check(bad, None);
        }
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500));
    }

    #[test]
    fn original_times_are_utc() {
        let parsed = parse_original_time("08/27/2019 21:04").map(switchyard_engine::clock::rfc3339);
        assert_eq!(parsed.as_deref(), Some("2019-08-27T21:04:00Z"));
        assert_eq!(
            parse_original_time("2019-08-27T21:04:00Z"),
            parse_original_time("08/27/2019 21:04")
        );
        for bad in ["8/27/2019 21:04", "08/27/2019", "13/01/2019 10:00", "08/27/2019 21:04:00"] {
            assert_eq!(parse_original_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_log_as_text() {
        let lines = [
            LogLine {
                at_ms: 0,
                text: "Created".into(),
            },
            LogLine {
                at_ms: 1_000,
                text: "Status: done".into(),
            },
        ];
        assert_eq!(
            log_text(&lines, 0),
            "1970-01-01T00:00:00Z Created\n1970-01-01T00:00:01Z Status: done\n"
        );
        assert!(log_text(&lines, 3).ends_with("… 3 later lines not kept\n"));
    }
}
