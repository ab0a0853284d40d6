//! Service routes: `GET /healthz` (the process runs), `GET /readyz` (the engine is open and
//! writable, and the server is not draining), `GET /metrics` (Prometheus text: HTTP metrics, then
//! the engine's). They are [`RouteKind::Service`](super::RouteKind) routes: answered during
//! recovery and under overload. `/metrics` ends with the process's resident memory (Linux).

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

use super::{Ctx, HandlerResult, Route};
use crate::http;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

pub fn routes() -> Vec<Route> {
    vec![
        Route::service(Method::GET, "/healthz", |ctx| Box::pin(healthz(ctx))),
        Route::service(Method::GET, "/readyz", |ctx| Box::pin(readyz(ctx))),
        Route::service(Method::GET, "/metrics", |ctx| Box::pin(metrics(ctx))),
    ]
}

async fn healthz(_: Ctx) -> HandlerResult {
    Ok(http::json(StatusCode::OK, &json!({"status": "ok"})))
}

async fn readyz(ctx: Ctx) -> HandlerResult {
    let (status, text) = match ctx.app.engine() {
        None => (StatusCode::SERVICE_UNAVAILABLE, "recovering"),
        Some(_) if ctx.app.is_draining() => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        Some(engine) if engine.is_ready() => (StatusCode::OK, "ready"),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    Ok(http::json(status, &json!({ "status": text })))
}

async fn metrics(ctx: Ctx) -> HandlerResult {
    let mut out = String::with_capacity(16 * 1024);
    ctx.app.metrics.render(&mut out);
    ctx.app.adapters.render_metrics(&mut out);
    if let Some(engine) = ctx.app.engine() {
        engine.render_metrics(&mut out);
        // The work pool's totals; a pool that cannot answer now (overloaded, stopping) only
        // leaves them out of this scrape.
        match engine.work().stats().await {
            Ok(stats) => stats.render_prometheus(&mut out),
            Err(error) => tracing::debug!(%error, "work stats unavailable for /metrics"),
        }
    }
    crate::metrics::render_process_memory(&mut out);
    Ok(http::with_body(
        StatusCode::OK,
        METRICS_CONTENT_TYPE,
        Bytes::from(out),
    ))
}
