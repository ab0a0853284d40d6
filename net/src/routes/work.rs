//! Lease-based work distribution over HTTP (API.md "Work"): items, client registration, leases,
//! results, heartbeats and stats.
//!
//! Client routes authenticate with `Authorization: Bearer swc_...` (client tokens, distinct from
//! user tokens); admin routes with the admin token. Registration is rate-limited per source
//! address: the connection's peer IP ([`Ctx::peer_ip`]).
//!
//! Additive fields beyond API.md: a Bucket carries its lease `epoch` (the fencing token), a
//! report and a heartbeat may carry `epoch` to be checked against the lease, and stats carry
//! `buckets.dead` and per-client `leased_buckets`.
//!
//! Invariants: a client's `external_id` is its secret: it is read from the registration body
//! and handed to the engine (which keeps only a digest), never echoed, listed or logged. A
//! client route authenticates before it refuses its input: a bad token is 401 whatever the path,
//! query or body say (see `client_input`).

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard_engine::clock::rfc3339;
use switchyard_engine::work::{
    BucketView, DeadBucketView, ItemResult, ItemState, ItemView, NewItem, Outcome, Registration,
    Report,
};

use switchyard_engine::Engine;

use super::{decode_cursor, page_json, Ctx, HandlerResult, Route};
use crate::auth;
use crate::error::ApiError;
use crate::http::{self, Fields};

pub fn routes() -> Vec<Route> {
    vec![
        Route::api(Method::POST, "/api/v1/work/items", |ctx| {
            Box::pin(add_items(ctx))
        }),
        Route::api(Method::GET, "/api/v1/work/items", |ctx| {
            Box::pin(list_items(ctx))
        }),
        Route::api(Method::GET, "/api/v1/work/items/{key}", |ctx| {
            Box::pin(get_item(ctx))
        }),
        Route::api(Method::POST, "/api/v1/work/items/{key}/rerun", |ctx| {
            Box::pin(rerun(ctx))
        }),
        Route::api(Method::POST, "/api/v1/work/clients", |ctx| {
            Box::pin(register(ctx))
        }),
        Route::api(Method::DELETE, "/api/v1/work/clients/me", |ctx| {
            Box::pin(unregister(ctx))
        }),
        Route::api(Method::POST, "/api/v1/work/leases", |ctx| {
            Box::pin(lease(ctx))
        }),
        Route::api(Method::POST, "/api/v1/work/buckets/{id}/results", |ctx| {
            Box::pin(report(ctx))
        }),
        Route::api(Method::POST, "/api/v1/work/buckets/{id}/heartbeat", |ctx| {
            Box::pin(heartbeat(ctx))
        }),
        Route::api(Method::GET, "/api/v1/work/stats", |ctx| {
            Box::pin(stats(ctx))
        }),
        Route::api(Method::GET, "/api/v1/work/dead-letters", |ctx| {
            Box::pin(dead_letters(ctx))
        }),
    ]
}

pub(crate) fn item_json(item: &ItemView) -> Value {
    json!({
        "key": item.key,
        "state": item.state.as_str(),
        "priority": item.priority,
        "results": item
            .results
            .iter()
            .map(|result| json!({
                "outcome": result.outcome.as_str(),
                "client_id": result.client_id,
                "detail": result.detail,
                "at": rfc3339(result.at_ms),
            }))
            .collect::<Vec<_>>(),
    })
}

pub(crate) fn bucket_json(bucket: &BucketView) -> Value {
    json!({
        "id": bucket.id,
        "items": bucket.items,
        "lease_expires_at": rfc3339(bucket.lease_expires_at_ms),
        "epoch": bucket.epoch,
    })
}

fn dead_json(dead: &DeadBucketView) -> Value {
    json!({
        "bucket_id": dead.bucket_id,
        "items": dead.items,
        "expiries": dead.expiries,
        "last_client_id": dead.last_client_id,
        "dead_at": rfc3339(dead.dead_at_ms),
    })
}

/// The bearer token of a client route (401 `unauthenticated` when absent). Whether it is a valid
/// token is the engine's to say.
fn client_token(ctx: &Ctx) -> Result<String, ApiError> {
    auth::bearer(ctx.authorization()).map(str::to_string)
}

/// The parsed input (path, query, body) of a client route, or its error once the token has been
/// checked: a bad token is 401 whatever the input says. Only this error path pays the extra
/// round trip to the pool; on the happy path the engine authenticates as part of the command.
async fn client_input<T>(
    engine: &Engine,
    token: &str,
    parsed: Result<T, ApiError>,
) -> Result<T, ApiError> {
    match parsed {
        Ok(input) => Ok(input),
        Err(error) => {
            engine.work().authenticate(token).await?;
            Err(error)
        }
    }
}

fn string_array(values: Vec<Value>, field: &str) -> Result<Vec<String>, ApiError> {
    values
        .into_iter()
        .map(|value| match value {
            Value::String(text) => Ok(text),
            _ => Err(ApiError::invalid_field(
                field,
                "must be an array of strings",
            )),
        })
        .collect()
}

/// A lease's `epoch` (the fencing token): an unsigned 32-bit integer, as in every Bucket.
fn optional_epoch(fields: &mut Fields) -> Result<Option<u32>, ApiError> {
    fields.optional_u32("epoch")
}

async fn add_items(mut ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    let engine = ctx.engine()?;
    let mut fields = ctx.json().await?;
    let raw = fields.required_array("items")?;
    fields.finish()?;
    let mut items = Vec::with_capacity(raw.len());
    for (index, value) in raw.into_iter().enumerate() {
        let mut item = Fields::from_value(value, &format!("items[{index}]"))?;
        let key = item.required_str("key")?;
        let priority = item.optional_i64("priority")?;
        item.finish()?;
        items.push(NewItem { key, priority });
    }
    let added = engine.work().add_items(items).await?;
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"added": added.added, "duplicates": added.duplicates}),
    ))
}

async fn get_item(ctx: Ctx) -> HandlerResult {
    let key = ctx.param("key")?.to_string();
    ctx.query()?.finish()?;
    let item = ctx.engine()?.work().item(&key).await?;
    Ok(http::json(StatusCode::OK, &item_json(&item)))
}

async fn list_items(ctx: Ctx) -> HandlerResult {
    let mut query = ctx.query()?;
    let state = query
        .optional_str("state")?
        .map(|state| {
            ItemState::parse(&state)
                .ok_or_else(|| ApiError::invalid_field("state", "must be pending, leased or done"))
        })
        .transpose()?;
    let page = query.page()?;
    query.finish()?;
    let after = decode_cursor(page.cursor)?;
    let items = ctx.engine()?.work().items(state, after, page.limit).await?;
    Ok(http::json(StatusCode::OK, &page_json(items, item_json)))
}

async fn rerun(mut ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    let key = ctx.param("key")?.to_string();
    ctx.query()?.finish()?;
    ctx.json_or_empty().await?.finish()?;
    let item = ctx.engine()?.work().rerun(&key).await?;
    Ok(http::json(StatusCode::OK, &item_json(&item)))
}

async fn register(mut ctx: Ctx) -> HandlerResult {
    let engine = ctx.engine()?;
    let source = ctx.peer_ip();
    let mut fields = ctx.json().await?;
    let screen_name = fields.required_str("screen_name")?;
    let external_id = fields.required_str("external_id")?;
    fields.finish()?;
    let registered = engine
        .work()
        .register(
            Registration {
                screen_name,
                external_id,
            },
            source,
        )
        .await?;
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(http::json(
        status,
        &json!({"client_id": registered.client_id, "token": registered.token}),
    ))
}

async fn unregister(ctx: Ctx) -> HandlerResult {
    let token = client_token(&ctx)?;
    let engine = ctx.engine()?;
    let parsed = ctx.query().and_then(|query| query.finish());
    client_input(&engine, &token, parsed).await?;
    engine.work().unregister(&token).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

async fn lease(mut ctx: Ctx) -> HandlerResult {
    let token = client_token(&ctx)?;
    let engine = ctx.engine()?;
    let parsed = async {
        let mut fields = ctx.json().await?;
        let max_buckets = fields.required_i64("max_buckets")?;
        fields.finish()?;
        Ok(max_buckets)
    }
    .await;
    let max_buckets = client_input(&engine, &token, parsed).await?;
    let buckets = engine.work().lease(&token, max_buckets).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"buckets": buckets.iter().map(bucket_json).collect::<Vec<_>>()}),
    ))
}

/// The body of a results report.
async fn report_body(ctx: &mut Ctx) -> Result<Report, ApiError> {
    let mut fields = ctx.json().await?;
    let raw = fields.required_array("results")?;
    let discovered = fields.optional_array("discovered")?.unwrap_or_default();
    let epoch = optional_epoch(&mut fields)?;
    fields.finish()?;
    let mut results = Vec::with_capacity(raw.len());
    for (index, value) in raw.into_iter().enumerate() {
        let path = format!("results[{index}]");
        let mut result = Fields::from_value(value, &path)?;
        let key = result.required_str("key")?;
        let outcome = result.required_str("outcome")?;
        let outcome = Outcome::parse(&outcome).ok_or_else(|| {
            ApiError::invalid_field(&format!("{path}.outcome"), "must be yes, no or unknown")
        })?;
        let detail = result.optional_str("detail")?;
        result.finish()?;
        results.push(ItemResult {
            key,
            outcome,
            detail,
        });
    }
    let discovered = string_array(discovered, "discovered")?;
    Ok(Report {
        results,
        discovered,
        epoch,
    })
}

async fn report(mut ctx: Ctx) -> HandlerResult {
    let token = client_token(&ctx)?;
    let engine = ctx.engine()?;
    let parsed = match ctx.param_u64("id") {
        Ok(bucket_id) => report_body(&mut ctx)
            .await
            .map(|report| (bucket_id, report)),
        Err(error) => Err(error),
    };
    let (bucket_id, report) = client_input(&engine, &token, parsed).await?;
    let outcome = engine.work().report(&token, bucket_id, report).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"bucket_id": outcome.bucket_id, "remaining": outcome.remaining}),
    ))
}

async fn heartbeat(mut ctx: Ctx) -> HandlerResult {
    let token = client_token(&ctx)?;
    let engine = ctx.engine()?;
    let parsed = async {
        let bucket_id = ctx.param_u64("id")?;
        let mut fields = ctx.json_or_empty().await?;
        let epoch = optional_epoch(&mut fields)?;
        fields.finish()?;
        Ok((bucket_id, epoch))
    }
    .await;
    let (bucket_id, epoch) = client_input(&engine, &token, parsed).await?;
    let outcome = engine.work().heartbeat(&token, bucket_id, epoch).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "bucket_id": outcome.bucket_id,
            "epoch": outcome.epoch,
            "lease_expires_at": rfc3339(outcome.lease_expires_at_ms),
        }),
    ))
}

async fn stats(ctx: Ctx) -> HandlerResult {
    ctx.query()?.finish()?;
    let stats = ctx.engine()?.work().stats().await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "items": {
                "pending": stats.items.pending,
                "leased": stats.items.leased,
                "done": stats.items.done,
            },
            "buckets": {
                "open": stats.buckets.open,
                "leased": stats.buckets.leased,
                "dead": stats.buckets.dead,
            },
            "clients": stats.clients.iter().map(|client| json!({
                "client_id": client.client_id,
                "screen_name": client.screen_name,
                "active": client.active,
                "buckets_assigned": client.buckets_assigned,
                "buckets_completed": client.buckets_completed,
                "buckets_expired": client.buckets_expired,
                "rejected_updates": client.rejected_updates,
                "last_seen_at": client.last_seen_at_ms.map(rfc3339),
                "leased_buckets": client.leased_buckets,
            })).collect::<Vec<_>>(),
        }),
    ))
}

/// Admin: dead-lettered buckets (expired `work.max_expiries` times), by bucket id.
async fn dead_letters(ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    let mut query = ctx.query()?;
    let page = query.page()?;
    query.finish()?;
    let after = decode_cursor(page.cursor)?;
    let dead = ctx.engine()?.work().dead_letters(after, page.limit).await?;
    Ok(http::json(StatusCode::OK, &page_json(dead, dead_json)))
}
