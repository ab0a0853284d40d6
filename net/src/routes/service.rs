//! Service routes: `GET /healthz` (the process runs), `GET /readyz` (the engine is open and
//! writable, and the server is not draining), `GET /metrics` (Prometheus text: HTTP metrics, then
//! the engine's), `GET /api/v1/openapi.json` (the OpenAPI 3.1 document of every mounted route,
//! [`OPENAPI_JSON`]). They are [`RouteKind::Service`](super::RouteKind) routes: answered during
//! recovery and under overload, without auth. `/metrics` ends with the process's resident memory
//! (Linux).
//!
//! Invariant: `net/src/openapi.json` documents exactly the routes of [`super::table`] (same
//! patterns and methods); `net/tests/openapi.rs` fails on any drift, so a new route and its
//! documentation land together.

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

use super::{Ctx, HandlerResult, Route};
use crate::http;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The OpenAPI 3.1 document served at `GET /api/v1/openapi.json`: a static file kept by hand
/// (`net/src/openapi.json`), embedded in the binary.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub fn routes() -> Vec<Route> {
    vec![
        Route::service(Method::GET, "/healthz", |ctx| Box::pin(healthz(ctx))),
        Route::service(Method::GET, "/readyz", |ctx| Box::pin(readyz(ctx))),
        Route::service(Method::GET, "/metrics", |ctx| Box::pin(metrics(ctx))),
        Route::service(Method::GET, "/api/v1/openapi.json", |ctx| {
            Box::pin(openapi(ctx))
        }),
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

async fn openapi(_: Ctx) -> HandlerResult {
    Ok(http::with_body(
        StatusCode::OK,
        "application/json",
        Bytes::from_static(OPENAPI_JSON.as_bytes()),
    ))
}

#[cfg(test)]
mod tests {
    use super::OPENAPI_JSON;

    /// A hand edit that breaks the JSON fails here, before any server starts (the drift check
    /// against the routing table is `net/tests/openapi.rs`).
    #[test]
    fn the_openapi_document_is_json_of_version_3_1() {
        let document: serde_json::Value =
            serde_json::from_str(OPENAPI_JSON).expect("net/src/openapi.json is valid JSON");
        let version = document["openapi"].as_str().expect("an `openapi` string");
        assert!(version.starts_with("3.1"), "{version}");
    }
}
