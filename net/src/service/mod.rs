//! The server's own routes, which no domain owns: `GET /healthz` (the process runs), `GET
//! /readyz` (the engine is open and writable, and the server is not draining), `GET /metrics`
//! (Prometheus text: HTTP metrics, each domain's lines, the engine's, the process's memory),
//! `GET /api/v1/openapi.json` (the generated OpenAPI 3.1 document) and `GET /docs` (the document
//! rendered by Swagger UI, whose assets are in the binary: no CDN, no internet needed). They are
//! [`RouteKind::Service`](crate::router::RouteKind) routes: answered during recovery and under
//! overload, without auth.

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::ToSchema;

use crate::ctx::Ctx;
use crate::domains::DOMAINS;
use crate::http;
use crate::openapi::Op;
use crate::router::{HandlerResult, Route};

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The page of `GET /docs`.
const DOCS_HTML: &[u8] = include_bytes!("docs.html");
/// Swagger UI (npm `swagger-ui-dist`, see `net/assets/swagger-ui/README.md`).
const SWAGGER_UI_JS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

pub fn routes() -> Vec<Route> {
    vec![
        Route::service(
            Method::GET,
            "/healthz",
            |ctx| Box::pin(healthz(ctx)),
            healthz_doc,
        ),
        Route::service(
            Method::GET,
            "/readyz",
            |ctx| Box::pin(readyz(ctx)),
            readyz_doc,
        ),
        Route::service(
            Method::GET,
            "/metrics",
            |ctx| Box::pin(metrics(ctx)),
            metrics_doc,
        ),
        Route::service(
            Method::GET,
            "/api/v1/openapi.json",
            |ctx| Box::pin(openapi(ctx)),
            openapi_doc,
        ),
        Route::service(Method::GET, "/docs", |ctx| Box::pin(docs(ctx)), docs_doc),
        Route::service(
            Method::GET,
            "/docs/swagger-ui.css",
            |ctx| Box::pin(docs_css(ctx)),
            docs_css_doc,
        ),
        Route::service(
            Method::GET,
            "/docs/swagger-ui-bundle.js",
            |ctx| Box::pin(docs_js(ctx)),
            docs_js_doc,
        ),
    ]
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Health)]
struct Health {
    #[schema(inline)]
    status: Alive,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Alive {
    Ok,
}

/// `GET /readyz`, ready or not.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Readiness)]
struct Readiness {
    #[schema(inline)]
    status: ReadinessStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReadinessStatus {
    Ready,
    Recovering,
    Draining,
    NotReady,
}

fn service_op(id: &str, summary: &str, description: &str) -> Op {
    Op::new(id, "service")
        .summary(summary)
        .description(description)
        .public()
}

fn healthz_doc() -> Op {
    service_op(
        "healthz",
        "Liveness",
        "200 while the process runs, also during recovery and under overload (a service route: \
         not counted against `limits.max_in_flight`).",
    )
    .ok::<Health>(200, "The process runs.")
}

async fn healthz(_: Ctx) -> HandlerResult {
    Ok(http::json(StatusCode::OK, &Health { status: Alive::Ok }))
}

fn readyz_doc() -> Op {
    service_op(
        "readyz",
        "Readiness",
        "200 once recovery has finished and the WAL is writable; 503 while recovering, when the \
         engine is not ready (WAL poisoned) or while the server is draining for shutdown. The \
         503 body is `{\"status\": ...}`, not the error shape.",
    )
    .ok::<Readiness>(200, "Ready: `{\"status\": \"ready\"}`.")
    .ok::<Readiness>(
        503,
        "Not ready: `status` is `recovering`, `draining` or `not_ready`.",
    )
}

async fn readyz(ctx: Ctx) -> HandlerResult {
    let (status, text) = match ctx.app.engine() {
        None => (StatusCode::SERVICE_UNAVAILABLE, ReadinessStatus::Recovering),
        Some(_) if ctx.app.is_draining() => {
            (StatusCode::SERVICE_UNAVAILABLE, ReadinessStatus::Draining)
        }
        Some(engine) if engine.is_ready() => (StatusCode::OK, ReadinessStatus::Ready),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, ReadinessStatus::NotReady),
    };
    Ok(http::json(status, &Readiness { status: text }))
}

fn text_schema() -> utoipa::openapi::schema::Schema {
    ObjectBuilder::new().schema_type(Type::String).into()
}

fn metrics_doc() -> Op {
    service_op(
        "metrics",
        "Prometheus metrics",
        "Prometheus text exposition (`text/plain; version=0.0.4`): HTTP request counters and \
         latency histograms by route pattern, in-flight and connection gauges, each domain's \
         lines (sign-up adapter failures, the work pool's totals), the engine's metrics (once \
         open), and the process's resident memory (Linux).",
    )
    .ok_as(200, "Metrics.", METRICS_CONTENT_TYPE, text_schema())
}

async fn metrics(ctx: Ctx) -> HandlerResult {
    let mut out = String::with_capacity(16 * 1024);
    ctx.app.metrics.render(&mut out);
    for domain in DOMAINS {
        (domain.metrics)(&ctx.app, &mut out).await;
    }
    if let Some(engine) = ctx.app.engine() {
        engine.render_metrics(&mut out);
    }
    crate::metrics::render_process_memory(&mut out);
    Ok(http::with_body(
        StatusCode::OK,
        METRICS_CONTENT_TYPE,
        Bytes::from(out),
    ))
}

fn openapi_doc() -> Op {
    service_op(
        "openapi",
        "This document",
        "The OpenAPI 3.1 document of this server, generated from its code at start-up. No \
         authentication; answered during recovery. `/docs` renders it.",
    )
    .ok_as(
        200,
        "The OpenAPI document.",
        "application/json",
        ObjectBuilder::new().schema_type(Type::Object).into(),
    )
}

async fn openapi(ctx: Ctx) -> HandlerResult {
    Ok(http::with_body(
        StatusCode::OK,
        "application/json",
        ctx.app.openapi_json.clone(),
    ))
}

fn docs_doc() -> Op {
    service_op(
        "docs",
        "This document in a browser",
        "An HTML page that renders `/api/v1/openapi.json` with Swagger UI. Its scripts and \
         styles are served by this server (`/docs/swagger-ui-bundle.js`, \
         `/docs/swagger-ui.css`), so it needs no internet access.",
    )
    .ok_as(200, "The page.", "text/html; charset=utf-8", text_schema())
}

async fn docs(_: Ctx) -> HandlerResult {
    Ok(http::with_body(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from_static(DOCS_HTML),
    ))
}

fn docs_css_doc() -> Op {
    service_op(
        "docsStyles",
        "Swagger UI's styles",
        "The stylesheet of `/docs` (Swagger UI, from the binary).",
    )
    .ok_as(
        200,
        "The stylesheet.",
        "text/css; charset=utf-8",
        text_schema(),
    )
}

async fn docs_css(_: Ctx) -> HandlerResult {
    Ok(http::with_body(
        StatusCode::OK,
        "text/css; charset=utf-8",
        Bytes::from_static(SWAGGER_UI_CSS),
    ))
}

fn docs_js_doc() -> Op {
    service_op(
        "docsScript",
        "Swagger UI's script",
        "The script of `/docs` (Swagger UI, from the binary).",
    )
    .ok_as(
        200,
        "The script.",
        "text/javascript; charset=utf-8",
        text_schema(),
    )
}

async fn docs_js(_: Ctx) -> HandlerResult {
    Ok(http::with_body(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        Bytes::from_static(SWAGGER_UI_JS),
    ))
}
