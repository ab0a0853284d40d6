//! The demonstration counters over HTTP (the engine's `demo` domain), which back the foundation's
//! HTTP and crash tests:
//! - `POST /api/v1/demo/counters/{id}` body `{"by": i64, "mirror_to"?: u64}` → 200 CounterView;
//!   with `mirror_to`, the new value is recorded in that counter's `mirrors` in the same WAL
//!   record. The reply comes only once the change is durable.
//! - `GET /api/v1/demo/counters/{id}` → 200 CounterView (a counter never written reads as 0).
//!
//! Not a product feature; it is also the template for a domain module: parse the path, the body
//! (rejecting unknown fields) or the query, call the engine, map the view to JSON.

use hyper::{Method, StatusCode};

use super::{Ctx, HandlerResult, Route};
use crate::http;

pub fn routes() -> Vec<Route> {
    vec![
        Route::api(Method::POST, "/api/v1/demo/counters/{id}", |ctx| {
            Box::pin(add(ctx))
        }),
        Route::api(Method::GET, "/api/v1/demo/counters/{id}", |ctx| {
            Box::pin(get(ctx))
        }),
    ]
}

async fn add(mut ctx: Ctx) -> HandlerResult {
    let id = ctx.param_u64("id")?;
    let engine = ctx.engine()?;
    let mut fields = ctx.json().await?;
    let by = fields.required_i64("by")?;
    let mirror_to = fields.optional_u64("mirror_to")?;
    fields.finish()?;
    let view = engine.counters().add(id, by, mirror_to).await?;
    Ok(http::json(StatusCode::OK, &view))
}

async fn get(ctx: Ctx) -> HandlerResult {
    let id = ctx.param_u64("id")?;
    ctx.query()?.finish()?;
    let view = ctx.engine()?.counters().get(id).await?;
    Ok(http::json(StatusCode::OK, &view))
}
