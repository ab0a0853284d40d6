//! `--compat dispatch`: the original dispatch server's `POST` (ORIGINALS.md §3,
//! `MBogert/Notification_System_Exercise`) over the dispatch engine API, mounted as
//! `POST /dispatch` only with `--compat dispatch` (the router reads [`super::DOMAIN`]`.compat`).
//!
//! The body is the original's: `{"start_time": "08/27/2019 21:04", "end_time": ...,
//! "program_id": 1, "event_type_id": "1"}`. Ids are JSON integers or strings of digits (the
//! original compared whatever JSON type it got with the stored documents); times are
//! `MM/DD/YYYY HH:MM` in UTC (API.md) or RFC 3339. The answer is 201 JSON `{"dispatch_id",
//! "transaction_log"}`, the log as text (the original answered a dict repr in the *reason
//! phrase* of a 200 with no body, naming a log file).
//!
//! Decisions where the original was loose or wrong:
//! - No auth, as the original and the other compat sets (`--compat market`): the set is off by
//!   default, and an operator who turns it on exposes "send this program to this event type's
//!   contacts" to whoever reaches the port. The native `POST /api/v1/dispatches` needs the
//!   admin token.
//! - The input is checked (the original had none): unknown fields, duplicated keys, a
//!   malformed time or id are 400, an unknown program or event type 404, all in the server's
//!   error envelope (the original closed the connection with no answer).
//! - The recipients are the event type's groups' contacts on its channels (the original sent
//!   one fixed SMS and one e-mail to itself); ids are sequences (the original's epoch seconds
//!   collided).
//!
//! Invariant: a dispatch made here is made by `Dispatch::create`, exactly as the native
//! route's; a request refused here changed nothing.

use std::fmt;

use hyper::{Method, StatusCode};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use switchyard_engine::dispatch::DispatchRequest;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::types::{log_text, parse_original_time};
use crate::ctx::Ctx;
use crate::domains::CompatSet;
use crate::error::ApiError;
use crate::http;
use crate::openapi::{Op, COMPAT_TAG};
use crate::router::{HandlerResult, Route};

/// The set `--compat dispatch` mounts.
pub const SET: CompatSet = CompatSet {
    name: "dispatch",
    routes,
};

fn routes() -> Vec<Route> {
    vec![Route::api(
        Method::POST,
        "/dispatch",
        |ctx| Box::pin(dispatch(ctx)),
        dispatch_doc,
    )]
}

/// The introduction's section on this route (added by the dispatch domain's `describe`).
pub const SECTION: &str = "## Dispatch compatibility route (`--compat dispatch`)

The original dispatch server's `POST` (it ignored the path; here it is `POST /dispatch`),
taking its body `{\"start_time\": \"08/27/2019 21:04\", \"end_time\"?, \"program_id\",
\"event_type_id\"}` and creating the dispatch with the same engine command as
`POST /api/v1/dispatches`. Decisions where the original was loose or wrong:

- No auth, as the original (and `--compat market`). The set is off by default; turning it on
  lets whoever reaches the port start a dispatch of an existing program and event type.
- Times are `MM/DD/YYYY HH:MM` in UTC, or RFC 3339. Ids are JSON integers or strings of digits
  (the original's README sends one of each).
- The answer is 201 `{\"dispatch_id\", \"transaction_log\"}` with the log as text (the
  original put a dict in the reason phrase of a bodiless 200 and named a log file).
- Bad input is 400 and an unknown program or event type 404, in the server's error envelope
  (the original dropped the connection); unknown fields and duplicated keys are 400.";

/// An id as the original took it: a JSON integer (`1`, `1.0`) or a string of 1 to 20 digits
/// (`\"1\"`) that fits an unsigned 64-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LooseId(pub u64);

struct LooseIdVisitor;

impl Visitor<'_> for LooseIdVisitor {
    type Value = LooseId;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an unsigned integer, or a string of its digits")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<LooseId, E> {
        Ok(LooseId(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<LooseId, E> {
        u64::try_from(value)
            .map(LooseId)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<LooseId, E> {
        // Integral and below 2^53, as `json::integer` takes them.
        if value.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&value) {
            Ok(LooseId(value as u64))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(value), &self))
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<LooseId, E> {
        (!text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
            .map(LooseId)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &self))
    }
}

impl<'de> Deserialize<'de> for LooseId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseIdVisitor)
    }
}

impl PartialSchema for LooseId {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(crate::openapi::integer("uint64"))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]{1,20}$")),
            )
            .description(Some(
                "An id: a JSON integer, or a string of its digits (as the original's README \
                 sends `\"event_type_id\": \"1\"`).",
            ))
            .into()
    }
}

impl ToSchema for LooseId {
    fn name() -> std::borrow::Cow<'static, str> {
        "LooseId".into()
    }
}

/// The original's body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatDispatchRequest {
    /// `MM/DD/YYYY HH:MM` (UTC) or RFC 3339.
    #[schema(examples("08/27/2019 21:04"))]
    pub start_time: String,
    /// `MM/DD/YYYY HH:MM` (UTC) or RFC 3339, not before `start_time`.
    pub end_time: Option<String>,
    pub program_id: LooseId,
    pub event_type_id: LooseId,
}

/// The answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatDispatchCreated {
    pub dispatch_id: u64,
    /// The transaction log so far, one line per entry (`{RFC 3339 time} {text}`); follow it
    /// with `GET /api/v1/dispatches/{id}/log` (admin).
    pub transaction_log: String,
}

fn dispatch_doc() -> Op {
    Op::new("compatDispatch", COMPAT_TAG)
        .summary("Create a dispatch (the original's format)")
        .description(
            "The original dispatch server's POST: `start_time`, optional `end_time` \
             (`MM/DD/YYYY HH:MM` UTC, or RFC 3339), `program_id` and `event_type_id` (JSON \
             integers or strings of digits). No auth. The dispatch is created as by \
             `POST /api/v1/dispatches`. See the section \"Dispatch compatibility route\".",
        )
        .public()
        .body::<CompatDispatchRequest>()
        .ok::<CompatDispatchCreated>(201, "The dispatch (durable), with its log so far.")
        .body_errors(
            "a time not `MM/DD/YYYY HH:MM` or RFC 3339, or before 1970; `end_time` before \
             `start_time`; an id not an unsigned integer or a string of its digits",
            &[],
        )
        .error(
            404,
            "Not found; nothing changed.",
            &[(
                "not_found",
                "no program or no event type has that id, or the server runs without \
                 `--compat dispatch` (the default)",
            )],
        )
        .error(
            422,
            "Too large; nothing changed.",
            &[(
                "too_many_recipients",
                "recipients × channels reach the 100,000,000 notifications one dispatch may \
                 hold",
            )],
        )
        .api()
}

fn time(field: &str, text: &str) -> Result<u64, ApiError> {
    parse_original_time(text).ok_or_else(|| {
        ApiError::invalid_field(field, "must be `MM/DD/YYYY HH:MM` (UTC) or RFC 3339, from 1970 on")
    })
}

async fn dispatch(mut ctx: Ctx) -> HandlerResult {
    let engine = ctx.engine()?;
    let request: CompatDispatchRequest = ctx.json().await?;
    let start_ms = time("start_time", &request.start_time)?;
    let end_ms = request
        .end_time
        .as_deref()
        .map(|text| time("end_time", text))
        .transpose()?;
    let dispatch = engine.dispatch();
    let created = dispatch
        .create(DispatchRequest {
            program_id: request.program_id.0,
            event_type_id: request.event_type_id.0,
            start_ms,
            end_ms,
            condition: None,
        })
        .await?;
    let (lines, omitted) = dispatch.log(created.id).await?;
    Ok(http::json(
        StatusCode::CREATED,
        &CompatDispatchCreated {
            dispatch_id: created.id,
            transaction_log: log_text(&lines, omitted),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(json: &str) -> Option<u64> {
        serde_json::from_str::<LooseId>(json).ok().map(|id| id.0)
    }

    #[test]
    fn ids_are_integers_or_their_digits() {
        assert_eq!(id("1"), Some(1));
        assert_eq!(id("1.0"), Some(1));
        assert_eq!(id(r#""1""#), Some(1));
        assert_eq!(id(r#""18446744073709551615""#), Some(u64::MAX));
        for bad in [
            "-1", "1.5", r#""""#, r#""-1""#, r#"" 1""#, r#""1a""#, r#""18446744073709551616""#,
            "null", "true", "[1]", "{}",
        ] {
            assert_eq!(id(bad), None, "{bad}");
        }
    }
}
