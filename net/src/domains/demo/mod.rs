//! The demonstration counters over HTTP (the engine's `demo` domain), which back the foundation's
//! HTTP and crash tests:
//! - `POST /api/v1/demo/counters/{id}` body `{"by": i64, "mirror_to"?: u64, "notify_url"?:
//!   string}` → 200 Counter; with `mirror_to`, the new value is recorded in that counter's
//!   `mirrors` in the same WAL record; with `notify_url` (admin token only: the server calls that
//!   URL), the new value is POSTed there once the add is durable (a `demo.notify` effect, at
//!   least once, with an `Idempotency-Key`; [`effects`] runs it). The reply comes only once the
//!   change is durable.
//! - `GET /api/v1/demo/counters/{id}` → 200 Counter (a counter never written reads as 0).
//!
//! Not a product feature; it is also the smallest template of a domain: its routes, each next to
//! its OpenAPI operation, its body and view types, its document parts and its effect handlers
//! ([`DOMAIN`]).

pub mod effects;

use std::collections::BTreeMap;

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use switchyard_engine::demo::CounterView;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::HttpDomain;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::http;
use crate::json;
use crate::openapi::{self, Document, Op};
use crate::router::{HandlerResult, Route};

pub const DOMAIN: HttpDomain = HttpDomain {
    name: "demo",
    routes,
    describe,
    metrics: HttpDomain::no_metrics,
    effects: effects::pools,
    config: None,
    compat: None,
};

fn routes() -> Vec<Route> {
    vec![
        Route::api(
            Method::POST,
            "/api/v1/demo/counters/{id}",
            |ctx| Box::pin(add(ctx)),
            add_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/demo/counters/{id}",
            |ctx| Box::pin(get(ctx)),
            get_doc,
        ),
    ]
}

fn describe(document: &mut Document) {
    document.tag(
        "demo",
        "The engine's demonstration counters (test support, not a product feature).",
    );
    document.error_codes(&[(
        "counter_overflow",
        409,
        "The demo counter's value would overflow a signed 64-bit integer.",
    )]);
}

/// `POST /api/v1/demo/counters/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AddToCounterRequest)]
pub struct AddRequest {
    #[serde(deserialize_with = "json::integer")]
    pub by: i64,
    /// Another counter that records the new value in its `mirrors`.
    #[serde(default, deserialize_with = "json::optional_integer")]
    pub mirror_to: Option<u64>,
    /// Needs the admin token: once the add is durable the server POSTs `{"counter", "value",
    /// "seq"}` there (a `demo.notify` effect: at least once, header `Idempotency-Key` stable
    /// across attempts). Cannot be combined with `mirror_to`.
    #[schema(min_length = 1, max_length = 2048)]
    pub notify_url: Option<String>,
}

/// A counter.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Counter)]
pub struct Counter {
    pub id: u64,
    pub value: i64,
    /// Counter id (as a string key) → the last value it mirrored here.
    #[schema(value_type = BTreeMap<String, i64>)]
    pub mirrors: BTreeMap<u64, i64>,
    /// The pending scheduled add as `[by, at_ms]` (at_ms: Unix milliseconds), or null.
    #[schema(schema_with = scheduled_schema, required = true)]
    pub scheduled: Option<(i64, u64)>,
}

impl From<CounterView> for Counter {
    fn from(view: CounterView) -> Counter {
        Counter {
            id: view.id,
            value: view.value,
            mirrors: view.mirrors,
            scheduled: view.scheduled,
        }
    }
}

/// `[by, at_ms]` or null. Stated as an array of integers because tuple schemas (`prefixItems`)
/// trip schema-driven tools.
fn scheduled_schema() -> RefOr<Schema> {
    let pair = ArrayBuilder::new()
        .items(openapi::integer("int64"))
        .min_items(Some(2))
        .max_items(Some(2))
        .description(Some(
            "`[by, at_ms]`: `by` an int64, `at_ms` Unix milliseconds (a uint64). Stated as an \
             array of integers because tuple schemas (`prefixItems`) trip schema-driven tools.",
        ));
    OneOfBuilder::new()
        .item(pair)
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "The pending scheduled add as `[by, at_ms]` (at_ms: Unix milliseconds), or null.",
        ))
        .into()
}

fn counter_id() -> utoipa::openapi::path::Parameter {
    openapi::id_parameter("id", "Counter id; not a number → 404.")
}

const NOT_A_NUMBER: (&str, &str) = ("not_found", "`id` is not an unsigned 64-bit integer");

fn add_doc() -> Op {
    Op::new("addToCounter", "demo")
        .summary("Add to a demo counter")
        .description(
            "Not a product feature: the engine's demonstration counters, which back the \
             foundation's tests. Adds `by` to counter `id`; with `mirror_to`, the new value is \
             also recorded in that counter's `mirrors`, in the same WAL record. The reply comes \
             once the change is durable. The token is optional; a present one must be the admin \
             token, which `notify_url` needs (the server then calls that URL).",
        )
        .anonymous()
        .security(openapi::ADMIN_TOKEN)
        .parameter(counter_id())
        .body::<AddRequest>()
        .ok::<Counter>(200, "The counter after the add.")
        .body_errors(
            "`mirror_to` is the counter itself, or `mirror_to` and `notify_url` together",
            &[],
        )
        .error(
            401,
            "A token was given and is not the admin token, or `notify_url` was given without it.",
            &[(
                "unauthenticated",
                "the bearer token is not the admin token, or `notify_url` needs it",
            )],
        )
        .error(
            403,
            "A token was given and no admin token is configured.",
            &[(
                "forbidden",
                "no admin token is configured on this server (`--admin-token` / \
                 `SWITCHYARD_ADMIN_TOKEN`)",
            )],
        )
        .error(404, "Not found.", &[NOT_A_NUMBER])
        .error(
            409,
            "The counter's value makes the add impossible; nothing changed.",
            &[(
                "counter_overflow",
                "the new value would overflow a signed 64-bit integer",
            )],
        )
        .api()
}

async fn add(mut ctx: Ctx) -> HandlerResult {
    // The token is optional, needed only for `notify_url` (the server then calls that URL); a
    // present token must be the admin's, whatever the body says.
    let admin = match ctx.authorization() {
        None => false,
        Some(_) => {
            ctx.app.auth.require_admin(ctx.authorization())?;
            true
        }
    };
    let id = ctx.param_u64("id")?;
    let engine = ctx.engine()?;
    let AddRequest {
        by,
        mirror_to,
        notify_url,
    } = ctx.json().await?;
    if notify_url.is_some() && !admin {
        return Err(ApiError::unauthenticated(
            "notify_url needs the admin token (the server calls that URL)",
        ));
    }
    let view = match notify_url {
        Some(url) if mirror_to.is_none() => engine.counters().add_notify(id, by, url).await?,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "mirror_to and notify_url cannot be combined",
            )
            .with_field("notify_url"))
        }
        None => engine.counters().add(id, by, mirror_to).await?,
    };
    Ok(http::json(StatusCode::OK, &Counter::from(view)))
}

fn get_doc() -> Op {
    Op::new("getCounter", "demo")
        .summary("Read a demo counter")
        .description("A counter never written reads as 0.")
        .public()
        .parameter(counter_id())
        .ok::<Counter>(200, "The counter.")
        .query_errors(None)
        .error(404, "Not found.", &[NOT_A_NUMBER])
        .api()
}

async fn get(ctx: Ctx) -> HandlerResult {
    let id = ctx.param_u64("id")?;
    ctx.query()?.finish()?;
    let view = ctx.engine()?.counters().get(id).await?;
    Ok(http::json(StatusCode::OK, &Counter::from(view)))
}
