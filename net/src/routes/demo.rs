//! The demonstration counters over HTTP (the engine's `demo` domain), which back the foundation's
//! HTTP and crash tests:
//! - `POST /api/v1/demo/counters/{id}` body `{"by": i64, "mirror_to"?: u64, "notify_url"?:
//!   string}` → 200 CounterView; with `mirror_to`, the new value is recorded in that counter's
//!   `mirrors` in the same WAL record; with `notify_url` (admin token only: the server calls that
//!   URL), the new value is POSTed there once the add is durable (a `demo.notify` effect, at
//!   least once, with an `Idempotency-Key`). The reply comes only once the change is durable.
//! - `GET /api/v1/demo/counters/{id}` → 200 CounterView (a counter never written reads as 0).
//!
//! Not a product feature; it is also the template for a domain module: parse the path, the body
//! (rejecting unknown fields) or the query, call the engine, map the view to JSON.

use hyper::{Method, StatusCode};

use super::{Ctx, HandlerResult, Route};
use crate::error::ApiError;
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
    let mut fields = ctx.json().await?;
    let by = fields.required_i64("by")?;
    let mirror_to = fields.optional_u64("mirror_to")?;
    let notify_url = fields.optional_str("notify_url")?;
    fields.finish()?;
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
    Ok(http::json(StatusCode::OK, &view))
}

async fn get(ctx: Ctx) -> HandlerResult {
    let id = ctx.param_u64("id")?;
    ctx.query()?.finish()?;
    let view = ctx.engine()?.counters().get(id).await?;
    Ok(http::json(StatusCode::OK, &view))
}
