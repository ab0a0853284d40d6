//! Dispatch and notifications over HTTP (API.md "Dispatch and notifications"), over the
//! engine's `Engine::dispatch()` API. Every route is the admin's:
//!
//! - `POST/GET /api/v1/programs`, `/api/v1/event-types`, `/api/v1/groups`, `/api/v1/contacts`:
//!   add a catalog item (201, with its id) or list them (keyset pages, ascending by id). An item
//!   that names an unknown group is 404 and changes nothing.
//! - `POST /api/v1/dispatches`: notify every contact of an event type's groups with a program's
//!   message, at `start_time`, optionally once `condition` (`btc_eur <op> value`) holds.
//! - `GET /api/v1/dispatches/{id}`: its status and counts, with one page of its notifications
//!   (`deliveries`; `?limit` default and at most 500, `?cursor`, `deliveries_next_cursor`): a
//!   dispatch may have 100,000 and more, so they are never all in one answer.
//! - `GET /api/v1/dispatches/{id}/log`: the transaction log, text (default) or JSON (when
//!   `Accept` names `application/json`).
//! - `GET /api/v1/notifications?status&user_id&dispatch_id`: every dispatch's notifications,
//!   keyset pages ascending by id.
//!
//! Authentication comes first on every route: no token or a bad one is 401 whatever the body
//! or query; a valid user login token is 403 (a user is known but may not do this). Then the
//! query, then the body.
//!
//! Effects: the engine's `notify.fanout` pool and one pool per channel (`notify.sms`, `notify.email`, `notify.webhook`) ([`pools`]), delivering
//! through the [`courier`] built from `[notify]`.
//!
//! [`compat`]: the original's `POST /dispatch`, the set `--compat dispatch`.
//!
//! Invariants: a response shows a contact's addresses (`to`, `email`, ...) only on these admin
//! routes, and never a secret (the webhook secret, SMTP password and SMS token stay in the
//! courier); a request refused here changed nothing (the engine validates before it decides).

pub mod compat;
mod metrics;
pub mod types;

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use switchyard_engine::dispatch::{
    delivery, Condition, Courier, DispatchRequest as EngineDispatchRequest, Item, ItemKind,
    NoteFilter, NoteStatus, NotifyConfig, View,
};
use switchyard_engine::market::Rate;
use switchyard_engine::runtime::effects::EffectPool;
use switchyard_engine::EngineConfig;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::ToSchema;

use super::HttpDomain;
use crate::ctx::Ctx;
use crate::error::{ApiError, Error};
use crate::http::{self, NextCursor, PAGE_LIMIT_MAX};
use crate::openapi::{self, Document, Op, ADMIN_TOKEN, PAGE_INVALID_FIELD};
use crate::router::{HandlerResult, Route};
use types::{
    ContactPage, ContactRequest, Counts, Delivery, DispatchBody, DispatchCreated, DispatchLog,
    DispatchRequest, EventTypePage, EventTypeRequest, FiredBody, GroupPage, GroupRequest, ItemBody,
    ItemPage, LogLineBody, Named, NotificationBody, NotificationPage, ProgramPage, ProgramRequest,
};

pub const DOMAIN: HttpDomain = HttpDomain {
    name: "dispatch",
    routes,
    describe,
    metrics: metrics::metrics,
    effects: pools,
    config: Some(crate::config::section::<NotifyConfig>()),
    compat: Some(compat::SET),
};

/// The content type of the text log.
pub const LOG_TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

fn routes() -> Vec<Route> {
    vec![
        Route::api(
            Method::POST,
            "/api/v1/programs",
            |ctx| Box::pin(add_item::<ProgramRequest>(ctx)),
            || add_item_doc::<ProgramRequest, types::ProgramBody>(&PROGRAM),
        ),
        Route::api(
            Method::GET,
            "/api/v1/programs",
            |ctx| Box::pin(list_items(ctx, ItemKind::Program)),
            || list_items_doc::<ProgramPage>(&PROGRAM),
        ),
        Route::api(
            Method::POST,
            "/api/v1/event-types",
            |ctx| Box::pin(add_item::<EventTypeRequest>(ctx)),
            || add_item_doc::<EventTypeRequest, types::EventTypeBody>(&EVENT_TYPE),
        ),
        Route::api(
            Method::GET,
            "/api/v1/event-types",
            |ctx| Box::pin(list_items(ctx, ItemKind::EventType)),
            || list_items_doc::<EventTypePage>(&EVENT_TYPE),
        ),
        Route::api(
            Method::POST,
            "/api/v1/groups",
            |ctx| Box::pin(add_item::<GroupRequest>(ctx)),
            || add_item_doc::<GroupRequest, types::GroupBody>(&GROUP),
        ),
        Route::api(
            Method::GET,
            "/api/v1/groups",
            |ctx| Box::pin(list_items(ctx, ItemKind::Group)),
            || list_items_doc::<GroupPage>(&GROUP),
        ),
        Route::api(
            Method::POST,
            "/api/v1/contacts",
            |ctx| Box::pin(add_item::<ContactRequest>(ctx)),
            || add_item_doc::<ContactRequest, types::ContactBody>(&CONTACT),
        ),
        Route::api(
            Method::GET,
            "/api/v1/contacts",
            |ctx| Box::pin(list_items(ctx, ItemKind::Contact)),
            || list_items_doc::<ContactPage>(&CONTACT),
        ),
        Route::api(
            Method::POST,
            "/api/v1/dispatches",
            |ctx| Box::pin(create_dispatch(ctx)),
            create_dispatch_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/dispatches/{id}",
            |ctx| Box::pin(get_dispatch(ctx)),
            get_dispatch_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/dispatches/{id}/log",
            |ctx| Box::pin(get_log(ctx)),
            get_log_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/notifications",
            |ctx| Box::pin(list_notifications(ctx)),
            list_notifications_doc,
        ),
    ]
}

/// The courier that carries notifications, from `[notify]` and the environment: the webhook,
/// SMTP and SMS adapters of [`crate::notify`] (a channel without a provider configured keeps
/// its messages in the outbox).
fn courier(config: &NotifyConfig) -> Result<Arc<dyn Courier>, Error> {
    crate::notify::courier(config)
}

/// The `notify.fanout` pool and the three channel pools, delivering through [`courier`].
fn pools(config: &EngineConfig) -> Result<Vec<EffectPool>, Error> {
    let notify = config.section::<NotifyConfig>();
    Ok(delivery::pools(notify, courier(notify)?))
}

// ---- Authentication -------------------------------------------------------------------------

/// Admin only: the admin token passes; a valid user login token is 403 (known, not allowed);
/// anything else 401. Nothing of the request is read before this.
async fn admin(ctx: &Ctx) -> Result<(), ApiError> {
    match ctx.app.auth.require_admin(ctx.authorization()) {
        Err(error) if error.status == StatusCode::UNAUTHORIZED => {
            if ctx.user().await.is_ok() {
                Err(ApiError::forbidden(
                    "forbidden",
                    "dispatch routes need the admin token, not a user token",
                ))
            } else {
                Err(error)
            }
        }
        other => other,
    }
}

/// [`admin`]'s answers in the document.
fn admin_op(op: Op) -> Op {
    op.security(ADMIN_TOKEN)
        .error(
            401,
            "Not authenticated.",
            &[(
                "unauthenticated",
                "no `Authorization: Bearer <admin token>`, or a token that is neither the admin \
                 token nor a valid user login token",
            )],
        )
        .error(
            403,
            "Not the admin.",
            &[(
                "forbidden",
                "a user login token (these routes are the admin's), or no admin token is \
                 configured on this server (`--admin-token` / `SWITCHYARD_ADMIN_TOKEN`)",
            )],
        )
}

// ---- The catalog ----------------------------------------------------------------------------

/// What the document says of one catalog item kind.
struct ItemDoc {
    /// `Program`, `EventType`, ... (operation ids).
    id: &'static str,
    /// `program`, `event type`, ...
    noun: &'static str,
    /// Its 400s beyond the body's shape.
    invalid: &'static str,
    /// Whether it names groups (404 for an unknown one).
    names_groups: bool,
}

const PROGRAM: ItemDoc = ItemDoc {
    id: "Program",
    noun: "program",
    invalid: "`name` empty, longer than 200 characters or with control characters; `message` \
              empty or longer than 1600 characters",
    names_groups: false,
};
const EVENT_TYPE: ItemDoc = ItemDoc {
    id: "EventType",
    noun: "event type",
    invalid: "`name` empty, longer than 200 characters or with control characters; \
              `group_ids` with more than 100 ids or one twice; `channels` empty, with one \
              twice, or naming other than sms, email, webhook",
    names_groups: true,
};
const GROUP: ItemDoc = ItemDoc {
    id: "Group",
    noun: "group",
    invalid: "`name` empty, longer than 200 characters or with control characters",
    names_groups: false,
};
const CONTACT: ItemDoc = ItemDoc {
    id: "Contact",
    noun: "contact",
    invalid: "`name` empty, longer than 200 characters or with control characters; `email` \
              not `local@domain.tld`; `phone` not 3 to 20 digits (with an optional `+`, \
              spaces, dashes, dots, parentheses); `webhook_url` not an http(s) URL; an address \
              longer than 2048 characters; `group_ids` with more than 100 ids or one twice",
    names_groups: true,
};

fn add_item_doc<Request: ToSchema, Body: ToSchema>(kind: &ItemDoc) -> Op {
    let mut op = admin_op(
        Op::new(&format!("add{}", kind.id), "dispatch")
            .summary(&format!("Add a {}", kind.noun))
            .description(&format!(
                "Adds a {} to the dispatch catalog; its id is assigned (1, 2, 3, ... per \
                 kind). Items are never changed or removed.",
                kind.noun
            )),
    )
    .body::<Request>()
    .ok::<Body>(201, &format!("The new {}, with its id (durable).", kind.noun))
    .body_errors(kind.invalid, &[]);
    if kind.names_groups {
        op = op.error(
            404,
            "A referenced id is unknown; nothing changed.",
            &[("not_found", "a group of `group_ids` does not exist")],
        );
    }
    op.api()
}

fn list_items_doc<Page: ToSchema>(kind: &ItemDoc) -> Op {
    admin_op(
        Op::new(&format!("list{}s", kind.id), "dispatch")
            .summary(&format!("List {}s", kind.noun))
            .description(&format!(
                "The catalog's {}s, ascending by id, keyset-paginated.",
                kind.noun
            )),
    )
    .page()
    .ok::<Page>(200, "A page, ascending by id.")
    .query_errors(Some(PAGE_INVALID_FIELD))
    .api()
}

async fn add_item<Request: DeserializeOwned + Into<Item>>(mut ctx: Ctx) -> HandlerResult {
    admin(&ctx).await?;
    let engine = ctx.engine()?;
    let request: Request = ctx.json().await?;
    let item = engine.dispatch().add(request.into()).await?;
    Ok(http::json(StatusCode::CREATED, &ItemBody::from(item)))
}

async fn list_items(ctx: Ctx, kind: ItemKind) -> HandlerResult {
    admin(&ctx).await?;
    let mut query = ctx.query()?;
    let page = query.page()?;
    query.finish()?;
    let after = page.after()?;
    let items = ctx
        .engine()?
        .dispatch()
        .items(kind, after, page.limit)
        .await?;
    Ok(http::json(
        StatusCode::OK,
        &ItemPage {
            items: items.items.into_iter().map(ItemBody::from).collect(),
            next_cursor: NextCursor(items.next),
        },
    ))
}

// ---- Dispatches -----------------------------------------------------------------------------

fn create_dispatch_doc() -> Op {
    admin_op(
        Op::new("createDispatch", "dispatch")
            .summary("Create a dispatch")
            .description(
                "Notifies every contact of the event type's groups (each contact once), on \
                 each of the event type's channels it has an address for, with the program's \
                 message: at `start_time` (at once when it has come), or, with a `condition`, \
                 from `start_time` on once the condition holds, until `end_time`. A condition \
                 that already holds on the current price fires at once. The recipients are \
                 the contacts that exist now.",
            ),
    )
    .body::<DispatchRequest>()
    .ok::<DispatchCreated>(201, "The dispatch (durable); follow it with its id.")
    .link(
        "GetDispatch",
        "getDispatch",
        &[("id", "$response.body#/id")],
        "The dispatch's state and deliveries.",
    )
    .body_errors(
        "`start_time` or `end_time` not RFC 3339 or before 1970; `end_time` before \
         `start_time`; `condition.signal` not `btc_eur`; `condition.op` not one of <, <=, >, \
         >=, ==; `condition.value` not a decimal above 0 with up to 12 integer digits and 6 \
         decimals",
        &[],
    )
    .error(
        404,
        "A referenced id is unknown; nothing changed.",
        &[("not_found", "no program or no event type has that id")],
    )
    .error(
        422,
        "Too large; nothing changed.",
        &[(
            "too_many_recipients",
            "recipients × channels reach the 100,000,000 notifications one dispatch may hold",
        )],
    )
    .api()
}

/// The engine's condition from the request's (400 `invalid_field` for a value that is not a
/// positive decimal of the documented shape).
fn condition(request: types::ConditionRequest) -> Result<Condition, ApiError> {
    let shaped = {
        let (whole, fraction) = match request.value.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (request.value.as_str(), None),
        };
        let all_digits = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
        (1..=12).contains(&whole.len())
            && all_digits(whole)
            && fraction.is_none_or(|f| (1..=6).contains(&f.len()) && all_digits(f))
    };
    let value = shaped
        .then(|| Rate::parse(&request.value))
        .flatten()
        .ok_or_else(|| {
            ApiError::invalid_field(
                "condition.value",
                "must be a decimal above 0 with up to 12 integer digits and 6 decimals",
            )
        })?;
    Ok(Condition {
        op: request.op.into(),
        value,
    })
}

/// A request time (RFC 3339), or 400 `invalid_field` naming `field`.
fn time(field: &str, text: &str) -> Result<u64, ApiError> {
    types::parse_rfc3339(text).ok_or_else(|| {
        ApiError::invalid_field(field, "must be an RFC 3339 time from 1970 on")
    })
}

async fn create_dispatch(mut ctx: Ctx) -> HandlerResult {
    admin(&ctx).await?;
    let engine = ctx.engine()?;
    let request: DispatchRequest = ctx.json().await?;
    let start_ms = time("start_time", &request.start_time)?;
    let end_ms = request
        .end_time
        .as_deref()
        .map(|text| time("end_time", text))
        .transpose()?;
    let condition = request.condition.map(condition).transpose()?;
    let created = engine
        .dispatch()
        .create(EngineDispatchRequest {
            program_id: request.program_id.0,
            event_type_id: request.event_type_id.0,
            start_ms,
            end_ms,
            condition,
        })
        .await?;
    Ok(http::json(
        StatusCode::CREATED,
        &DispatchCreated {
            id: created.id,
            status: created.status.into(),
            recipients: created.recipients,
        },
    ))
}

fn get_dispatch_doc() -> Op {
    admin_op(
        Op::new("getDispatch", "dispatch")
            .summary("A dispatch, with a page of its deliveries")
            .description(
                "The dispatch's status, what it sends, its counts by status, and one page of \
                 its notifications (`deliveries`, ascending by id; `limit` defaults to 500, \
                 the most, and `deliveries_next_cursor` is the `cursor` of the next page). \
                 The state and the page are read one after the other, so while it sends a \
                 page may be newer than the counts.",
            ),
    )
    .parameter(openapi::id_parameter(
        "id",
        "The dispatch's id (a non-number is 404).",
    ))
    .parameter(openapi::query_parameter(
        "limit",
        "Deliveries per page, 1..=500 (default 500).",
        openapi::integer("int64")
            .minimum(Some(1))
            .maximum(Some(PAGE_LIMIT_MAX as u64))
            .default(Some((PAGE_LIMIT_MAX as u64).into()))
            .into(),
    ))
    .parameter(cursor_parameter())
    .ok::<DispatchBody>(200, "The dispatch.")
    .link(
        "GetDispatchLog",
        "getDispatchLog",
        &[("id", "$response.body#/id")],
        "Its transaction log.",
    )
    .query_errors(Some(PAGE_INVALID_FIELD))
    .error(404, "No such dispatch.", &[("not_found", "no dispatch has this id")])
    .api()
}

/// The `cursor` of a page, as [`Op::page`] states it.
fn cursor_parameter() -> utoipa::openapi::path::Parameter {
    openapi::query_parameter(
        "cursor",
        "The `next_cursor` (here `deliveries_next_cursor`) of the previous page: opaque, `c` \
         and 1 to 16 lowercase hex digits; absent or empty for the first page. Any other \
         string is 400 `invalid_field`.",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(c[0-9a-f]{1,16})?$"))
            .into(),
    )
}

fn named(id: u64, name: &str) -> Named {
    Named {
        id,
        name: name.to_string(),
    }
}

fn dispatch_body(view: View, deliveries: Vec<Delivery>, next: Option<u64>) -> DispatchBody {
    let spec = view.spec;
    DispatchBody {
        id: spec.id,
        status: view.status.into(),
        recipients: spec.recipients,
        deliveries,
        deliveries_next_cursor: NextCursor(next),
        program: named(spec.program.id, &spec.program.name),
        event_type: named(spec.event_type.id, &spec.event_type.name),
        start_time: http::Timestamp::from_ms(spec.start_ms),
        end_time: spec.end_ms.map(http::Timestamp::from_ms),
        condition: spec.condition.map(Into::into),
        fired: view.fired.map(|fired| FiredBody {
            price: fired.price.to_string(),
            price_at: http::Timestamp::from_ms(fired.price_at_ms),
        }),
        notifications: view.notifications,
        counts: Counts::new(view.counts),
        possible_duplicates: view.possible_duplicates,
        created_at: http::Timestamp::from_ms(spec.created_ms),
    }
}

async fn get_dispatch(ctx: Ctx) -> HandlerResult {
    admin(&ctx).await?;
    let id = ctx.param_u64("id")?;
    let mut query = ctx.query()?;
    let limit = match query.optional_u64("limit")? {
        None => PAGE_LIMIT_MAX,
        Some(limit) if (1..=PAGE_LIMIT_MAX as u64).contains(&limit) => limit as usize,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "limit",
                "must be between 1 and 500",
            ))
        }
    };
    let cursor = query.optional_str("cursor")?;
    query.finish()?;
    let after = http::decode_cursor(cursor.as_deref().filter(|c| !c.is_empty()))?;
    let engine = ctx.engine()?;
    let dispatch = engine.dispatch();
    let view = dispatch.get(id).await?;
    let filter = NoteFilter {
        dispatch_id: Some(id),
        ..NoteFilter::default()
    };
    let page = dispatch
        .notifications(filter, after.unwrap_or(0), limit)
        .await?;
    let deliveries = page.items.into_iter().map(Delivery::from).collect();
    Ok(http::json(
        StatusCode::OK,
        &dispatch_body(view, deliveries, page.next),
    ))
}

fn get_log_doc() -> Op {
    let text = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "One line per entry, `{RFC 3339 time} {text}`, oldest first; when later lines were \
             not kept (beyond `notify.log_lines_max`), a last line `… N later lines not kept`.",
        ))
        .into();
    admin_op(
        Op::new("getDispatchLog", "dispatch")
            .summary("A dispatch's transaction log")
            .description(
                "What happened to the dispatch, step by step: created, its status changes, \
                 each batch's attempts and outcomes, failovers, dead letters. Text by default; \
                 JSON when the request's `Accept` names `application/json`.",
            ),
    )
    .parameter(openapi::id_parameter(
        "id",
        "The dispatch's id (a non-number is 404).",
    ))
    .ok::<DispatchLog>(200, "The log.")
    .content(LOG_TEXT_CONTENT_TYPE, text)
    .query_errors(None)
    .error(404, "No such dispatch.", &[("not_found", "no dispatch has this id")])
    .api()
}

async fn get_log(ctx: Ctx) -> HandlerResult {
    admin(&ctx).await?;
    let id = ctx.param_u64("id")?;
    ctx.query()?.finish()?;
    let wants_json = ctx
        .head
        .headers
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/json"));
    let (lines, omitted) = ctx.engine()?.dispatch().log(id).await?;
    if wants_json {
        let lines = lines
            .into_iter()
            .map(|line| LogLineBody {
                at: http::Timestamp::from_ms(line.at_ms),
                text: line.text,
            })
            .collect();
        return Ok(http::json(StatusCode::OK, &DispatchLog { lines, omitted }));
    }
    Ok(http::with_body(
        StatusCode::OK,
        LOG_TEXT_CONTENT_TYPE,
        types::log_text(&lines, omitted).into(),
    ))
}

fn list_notifications_doc() -> Op {
    admin_op(
        Op::new("listNotifications", "dispatch")
            .summary("List notifications")
            .description(
                "Every dispatch's notifications, ascending by id (dispatch by dispatch), \
                 keyset-paginated, optionally of one status, one contact's user and one \
                 dispatch. A page looks through at most 256 dispatches: it may hold fewer \
                 than `limit` items (none, even) with a `next_cursor`; follow it to the end.",
            ),
    )
    .parameter(openapi::query_parameter(
        "status",
        "Only notifications in this status.",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(NoteStatus::ALL.map(NoteStatus::as_str)))
            .into(),
    ))
    .parameter(openapi::query_parameter(
        "user_id",
        "Only notifications of contacts with this `user_id`.",
        openapi::integer("uint64").into(),
    ))
    .parameter(openapi::query_parameter(
        "dispatch_id",
        "Only this dispatch's notifications (an unknown dispatch has none).",
        openapi::integer("uint64").into(),
    ))
    .page()
    .ok::<NotificationPage>(200, "A page of notifications, ascending by id.")
    .query_errors(Some(&format!(
        "{PAGE_INVALID_FIELD}; `status` not one of queued, failed, sent, dead; `user_id` or \
         `dispatch_id` not an unsigned integer"
    )))
    .api()
}

async fn list_notifications(ctx: Ctx) -> HandlerResult {
    admin(&ctx).await?;
    let mut query = ctx.query()?;
    let status = query
        .optional_str("status")?
        .map(|text| {
            NoteStatus::parse(&text).ok_or_else(|| {
                ApiError::invalid_field("status", "must be one of queued, failed, sent, dead")
            })
        })
        .transpose()?;
    let user_id = query.optional_u64("user_id")?;
    let dispatch_id = query.optional_u64("dispatch_id")?;
    let page = query.page()?;
    query.finish()?;
    let after = page.after()?;
    let filter = NoteFilter {
        status,
        user_id,
        dispatch_id,
    };
    let notes = ctx
        .engine()?
        .dispatch()
        .notifications(filter, after.unwrap_or(0), page.limit)
        .await?;
    Ok(http::json(
        StatusCode::OK,
        &NotificationPage {
            items: notes
                .items
                .into_iter()
                .map(NotificationBody::from)
                .collect(),
            next_cursor: NextCursor(notes.next),
        },
    ))
}

// ---- The document ---------------------------------------------------------------------------

fn describe(document: &mut Document) {
    document.tag(
        "dispatch",
        "Programs, event types, groups and contacts; dispatches that notify contacts by SMS, \
         e-mail and webhook, and their notifications (API.md \"Dispatch and notifications\"). \
         Admin only.",
    );
    document.error_codes(&[(
        "too_many_recipients",
        422,
        "A dispatch's recipients × channels reach the 100,000,000 notifications one dispatch \
         may hold.",
    )]);
    document.section(SECTION);
    document.section(compat::SECTION);
}

const SECTION: &str = "## Dispatch and notifications

- Every route is the admin's: no token or a bad one is 401, a user login token 403, before
  anything else of the request is read.
- A dispatch notifies each contact of its event type's groups once per channel of the event
  type on which the contact has an address (`phone` for sms, `email`, `webhook_url`): one
  notification each, id `dispatch id × 10^8 + n`, with an idempotency key kept across attempts
  and restarts. A failed attempt is retried with exponential backoff and full jitter
  (`notify.retry_base_ms` doubling up to `notify.retry_max_ms`; a `Retry-After` is honoured);
  after `notify.max_attempts` attempts, or a refusal, it fails over to the event type's next
  channel the contact can be reached on, and with none left it is `dead`.
- A channel with no provider configured (no `notify.smtp_url`, no `notify.sms_url`) keeps its
  notifications in the outbox: `sent`, with `outboxed: true`.
- `GET /api/v1/dispatches/{id}` pages its `deliveries` (default and at most 500); follow
  `deliveries_next_cursor`. `GET /api/v1/notifications` pages across dispatches and may answer
  a short (or empty) page with a cursor when it looked through many dispatches without matches.
- Times are RFC 3339; answers are UTC with second precision.";

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Result<Condition, ApiError> {
        condition(types::ConditionRequest {
            signal: types::SignalName::BtcEur,
            op: types::OpName::Le,
            value: text.into(),
        })
    }

    #[test]
    fn condition_values() {
        for good in ["1", "50000", "49999.5", "000000000001", "999999999999.999999"] {
            let condition = value(good).unwrap_or_else(|e| panic!("{good}: {e:?}"));
            assert_eq!(condition.op, switchyard_engine::dispatch::Op::Le);
        }
        assert_eq!(value("49999.50").map(|c| c.value.to_string()).ok(), Some("49999.5".into()));
        for bad in [
            "", "0", "0.0", "-1", "1e3", "1.", ".5", "1.1234567", "1000000000000", " 1", "1,5",
        ] {
            let error = value(bad).expect_err(bad);
            assert_eq!(error.field.as_deref(), Some("condition.value"), "{bad}");
        }
    }
}
