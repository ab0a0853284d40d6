//! Lease-based work distribution over HTTP (API.md "Work"): items, client registration, leases,
//! results, heartbeats, stats and dead letters. Each route is listed in `routes` with its handler
//! and its OpenAPI operation (`*_doc`, next to the handler); the bodies are in [`types`];
//! [`DOMAIN`] also gives the document its `workClientToken` scheme, the work error codes and a
//! section, and `/metrics` the pool's totals.
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

pub mod types;

use hyper::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use switchyard_engine::work::{self, ItemResult, NewItem, Registration, Report};
use switchyard_engine::Engine;
use utoipa::openapi::path::Parameter;

use super::{HttpDomain, MetricsFuture};
use crate::app::App;
use crate::metrics::gauge;
use crate::auth;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::http::{self, NextCursor};
use crate::json::EmptyObject;
use crate::openapi::{self, Document, Op, PAGE_INVALID_FIELD};
use crate::router::{HandlerResult, Route};
use types::{
    AddItemsRequest, AddItemsResponse, Bucket, DeadBucket, DeadBucketPage, HeartbeatRequest,
    HeartbeatResponse, ItemKey, ItemState, LeaseRequest, LeaseResponse, RegisterClientRequest,
    RegisterClientResponse, ReportRequest, ReportResponse, WorkItem, WorkItemPage, WorkStats,
};

pub const DOMAIN: HttpDomain = HttpDomain {
    name: "work",
    routes,
    describe,
    metrics,
    effects: HttpDomain::no_effects,
    config: Some(crate::config::section::<switchyard_engine::work::WorkConfig>()),
    compat: None,
};

/// The security scheme of work client tokens.
const WORK_CLIENT_TOKEN: &str = "workClientToken";

fn routes() -> Vec<Route> {
    vec![
        Route::api(
            Method::POST,
            "/api/v1/work/items",
            |ctx| Box::pin(add_items(ctx)),
            add_items_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/work/items",
            |ctx| Box::pin(list_items(ctx)),
            list_items_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/work/items/{key}",
            |ctx| Box::pin(get_item(ctx)),
            get_item_doc,
        ),
        Route::api(
            Method::POST,
            "/api/v1/work/items/{key}/rerun",
            |ctx| Box::pin(rerun(ctx)),
            rerun_doc,
        ),
        Route::api(
            Method::POST,
            "/api/v1/work/clients",
            |ctx| Box::pin(register(ctx)),
            register_doc,
        ),
        Route::api(
            Method::DELETE,
            "/api/v1/work/clients/me",
            |ctx| Box::pin(unregister(ctx)),
            unregister_doc,
        ),
        Route::api(
            Method::POST,
            "/api/v1/work/leases",
            |ctx| Box::pin(lease(ctx)),
            lease_doc,
        ),
        Route::api(
            Method::POST,
            "/api/v1/work/buckets/{id}/results",
            |ctx| Box::pin(report(ctx)),
            report_doc,
        ),
        Route::api(
            Method::POST,
            "/api/v1/work/buckets/{id}/heartbeat",
            |ctx| Box::pin(heartbeat(ctx)),
            heartbeat_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/work/stats",
            |ctx| Box::pin(stats(ctx)),
            stats_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/work/dead-letters",
            |ctx| Box::pin(dead_letters(ctx)),
            dead_letters_doc,
        ),
    ]
}

fn describe(document: &mut Document) {
    document.tag(
        "work",
        "Lease-based work distribution (API.md \"Work\").",
    );
    document.security_scheme(
        WORK_CLIENT_TOKEN,
        "A work client token from `POST /api/v1/work/clients`, bound to its `client_id`; \
         registering the same `external_id` (the client's secret) again rotates it: the old \
         token stops working.",
        Some("swc_<64 hex digits>"),
    );
    document.error_codes(&[
        (
            "too_many_buckets",
            400,
            "`max_buckets` is outside 1..=`work.max_buckets_per_request`, or the client holds \
             the most leased buckets allowed (100).",
        ),
        ("not_owner", 403, "The bucket is leased to another client."),
        ("not_done", 409, "Only a done item can be re-run."),
        (
            "lease_expired",
            409,
            "The client's lease on the bucket expired or was released, or the `epoch` is stale.",
        ),
        (
            "item_not_in_bucket",
            422,
            "A reported key is not an item of the bucket.",
        ),
    ]);
    document.section(SECTION);
}

/// The work part of the document's introduction.
const SECTION: &str = "## Work

- **Auth**: client routes take a work client token `swc_...` from `POST /api/v1/work/clients`
  (`workClientToken`); admin routes the admin token.

| key | default | effect |
| --- | --- | --- |
| `work.bucket_size` | 180 | items per bucket; results per report at most |
| `work.max_buckets_per_request` | 10 | `max_buckets` above: 400 `too_many_buckets` |
| `work.lease_seconds` | 7200 | lease length without a heartbeat or result |
| `work.registrations_per_minute_per_source` | 120 | client registrations per source address per minute (0 = unlimited); beyond: 429 `rate_limited` |
| `work.max_expiries` | 5 | lease expiries after which a bucket is dead-lettered |
| `work.leased_buckets_per_client_max` | 100 | buckets one client may hold leased; a lease beyond: 400 `too_many_buckets` |

Fixed limits: work item keys 1..=128 characters; 18000 items per add; result `detail` at most
512 characters; 1000 `discovered` keys per report; a report's keys, details and discovered keys
together at most 786432 bytes of UTF-8 (else 400 `invalid_field`: report the bucket in parts);
`screen_name` 1..=64 characters; `external_id` 16..=64 characters (the client's secret);
`work.bucket_size` at most 700. A lease returns fewer buckets than asked when their keys would
not fit one log record (only with very long keys).";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The pool's totals: `switchyard_work_items{state}`, `switchyard_work_buckets{state}`,
/// `switchyard_work_clients_active` and the clients' summed counters
/// (`switchyard_work_buckets_assigned_total`, ...). A pool that cannot answer now (overloaded,
/// stopping, still opening) only leaves them out of this scrape.
fn metrics<'a>(app: &'a App, out: &'a mut String) -> MetricsFuture<'a> {
    Box::pin(async move {
        let Some(engine) = app.engine() else {
            return;
        };
        let stats = match engine.work().stats().await {
            Ok(stats) => stats,
            Err(error) => {
                tracing::debug!(%error, "work stats unavailable for /metrics");
                return;
            }
        };
        crate::metrics::encode(out, |registry| {
            let items = Family::<StateLabels, Gauge>::default();
            for (state, count) in [
                ("pending", stats.items.pending),
                ("leased", stats.items.leased),
                ("done", stats.items.done),
            ] {
                items.get_or_create(&StateLabels { state }).set(gauge(count));
            }
            registry.register("switchyard_work_items", "Work items by state", items);
            let buckets = Family::<StateLabels, Gauge>::default();
            for (state, count) in [
                ("open", stats.buckets.open),
                ("leased", stats.buckets.leased),
                ("dead", stats.buckets.dead),
            ] {
                buckets.get_or_create(&StateLabels { state }).set(gauge(count));
            }
            registry.register("switchyard_work_buckets", "Work buckets by state", buckets);
            let active = stats.clients.iter().filter(|client| client.active).count();
            registry.register(
                "switchyard_work_clients_active",
                "Registered work clients that have not unregistered",
                ConstGauge::new(gauge(active as u64)),
            );
            let sum = |field: fn(&work::ClientStats) -> u64| -> u64 {
                stats.clients.iter().map(field).sum()
            };
            for (name, help, value) in [
                (
                    "switchyard_work_buckets_assigned",
                    "Buckets leased to clients",
                    sum(|client| client.buckets_assigned),
                ),
                (
                    "switchyard_work_buckets_completed",
                    "Buckets clients completed",
                    sum(|client| client.buckets_completed),
                ),
                (
                    "switchyard_work_buckets_expired",
                    "Leases that expired",
                    sum(|client| client.buckets_expired),
                ),
                (
                    "switchyard_work_rejected_updates",
                    "Results and heartbeats refused",
                    sum(|client| client.rejected_updates),
                ),
            ] {
                registry.register(name, help, ConstCounter::new(value));
            }
        });
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

fn item_key() -> Parameter {
    openapi::path_parameter(
        "key",
        "The item key, percent-encoded (`/` as `%2F`).",
        openapi::reference::<ItemKey>(),
    )
}

fn bucket_id() -> Parameter {
    openapi::id_parameter("id", "Bucket id; not a number → 404.")
}

/// A client route: `workClientToken`, and its 401.
fn client_only(op: Op) -> Op {
    op.security(WORK_CLIENT_TOKEN).error(
        401,
        "Not authenticated.",
        &[(
            "unauthenticated",
            "no `Authorization: Bearer swc_...`, or the client token is unknown, rotated by a \
             later registration, or unregistered",
        )],
    )
}

/// The answers of a route that acts on a bucket this client holds.
fn bucket_errors(op: Op) -> Op {
    op.error(
        403,
        "Not this client's bucket.",
        &[(
            "not_owner",
            "the bucket is leased to another client, or this client never held it",
        )],
    )
    .error(
        404,
        "Not found.",
        &[(
            "not_found",
            "no such bucket, or `id` is not an unsigned 64-bit integer",
        )],
    )
    .error(
        409,
        "The lease is gone.",
        &[(
            "lease_expired",
            "this client's lease expired, was released or given up, or `epoch` is not the \
             current lease's",
        )],
    )
}

fn add_items_doc() -> Op {
    Op::new("addWorkItems", "work")
        .summary("Add work items (admin)")
        .description(
            "Adds items unless their key is already known (known keys count as `duplicates`; \
             items are never deleted, so a key once seen is known for ever). At most 18000 \
             items per request. Atomic per chunk of about 256 KiB of keys: a retry after a \
             failure reports the already-added keys as duplicates.",
        )
        .admin()
        .body::<AddItemsRequest>()
        .ok::<AddItemsResponse>(202, "Added.")
        .body_errors(
            "more than 18000 items, a key that is not 1..=128 characters without control \
             characters (`field` is `items`), an element that is not an object (`items[i]`), or \
             a `priority` outside 32 bits (`priority`)",
            &[],
        )
        .api()
}

async fn add_items(mut ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    let engine = ctx.engine()?;
    let AddItemsRequest { items } = ctx.json().await?;
    let items = items
        .into_iter()
        .map(|item| NewItem {
            key: item.key.0,
            priority: item.priority,
        })
        .collect();
    let added = engine.work().add_items(items).await?;
    Ok(http::json(
        StatusCode::ACCEPTED,
        &AddItemsResponse {
            added: added.added,
            duplicates: added.duplicates,
        },
    ))
}

fn get_item_doc() -> Op {
    Op::new("getWorkItem", "work")
        .summary("Get a work item")
        .description("An item with its whole result history (newest last).")
        .public()
        .parameter(item_key())
        .ok::<WorkItem>(200, "The item.")
        .link(
            "RerunItem",
            "rerunWorkItem",
            &[("key", "$response.body#/key")],
            "Rerun this item.",
        )
        .query_errors(None)
        .error(
            404,
            "Not found.",
            &[(
                "not_found",
                "no item with this key (a key that is not a valid key included)",
            )],
        )
        .api()
}

async fn get_item(ctx: Ctx) -> HandlerResult {
    let key = ctx.param("key")?.to_string();
    ctx.query()?.finish()?;
    let item = ctx.engine()?.work().item(&key).await?;
    Ok(http::json(StatusCode::OK, &WorkItem::from(item)))
}

fn list_items_doc() -> Op {
    Op::new("listWorkItems", "work")
        .summary("List work items")
        .description(
            "Items in the order they were added, keyset-paginated, optionally in one state.",
        )
        .public()
        .parameter(openapi::query_parameter(
            "state",
            "Only items in this state.",
            openapi::reference::<ItemState>(),
        ))
        .page()
        .ok::<WorkItemPage>(200, "A page of items.")
        .link(
            "GetItem",
            "getWorkItem",
            &[("key", "$response.body#/items/0/key")],
            "The first item of the page.",
        )
        .link(
            "RerunItem",
            "rerunWorkItem",
            &[("key", "$response.body#/items/0/key")],
            "Rerun the first item of the page (409 `not_done` unless it is done).",
        )
        .query_errors(Some(
            "`limit` outside 1..=500 or not a number, a `cursor` this list did not issue, or a \
             parameter given twice; `field` names it; `state` is not `pending`, `leased` or \
             `done`",
        ))
        .api()
}

async fn list_items(ctx: Ctx) -> HandlerResult {
    let mut query = ctx.query()?;
    let state = query
        .optional_str("state")?
        .map(|state| {
            work::ItemState::parse(&state)
                .ok_or_else(|| ApiError::invalid_field("state", "must be pending, leased or done"))
        })
        .transpose()?;
    let page = query.page()?;
    query.finish()?;
    let after = page.after()?;
    let items = ctx.engine()?.work().items(state, after, page.limit).await?;
    Ok(http::json(
        StatusCode::OK,
        &WorkItemPage {
            items: items.items.into_iter().map(WorkItem::from).collect(),
            next_cursor: NextCursor(items.next),
        },
    ))
}

fn rerun_doc() -> Op {
    Op::new("rerunWorkItem", "work")
        .summary("Re-run a done item (admin)")
        .description(
            "Returns a done item to the pool (state `pending`); its result history is kept. The \
             body is optional: empty or `{}`.",
        )
        .admin()
        .parameter(item_key())
        .optional_body::<EmptyObject>()
        .ok::<WorkItem>(200, "The item, now pending.")
        .error(
            400,
            "The request is malformed; nothing changed.",
            &[
                (
                    "invalid_json",
                    "the body is empty (where one is required), not JSON, or not a JSON object",
                ),
                (
                    "missing_field",
                    "a required field is absent; `field` names it",
                ),
                (
                    "invalid_field",
                    "a field has the wrong type or is out of range (`null` for a required \
                     field included); `field` names it",
                ),
                (
                    "unknown_field",
                    "the body has a field this route does not take; `field` names it; a query \
                     parameter this route does not take; `field` names it",
                ),
                (
                    "invalid_body",
                    "the body could not be read (the connection failed mid-body)",
                ),
                (
                    "invalid_query",
                    "the query string is not valid percent-encoded UTF-8",
                ),
                ("invalid_header", "more than one `Authorization` header"),
            ],
        )
        .body_limits()
        .error(404, "Not found.", &[("not_found", "no item with this key")])
        .error(
            409,
            "Conflict.",
            &[("not_done", "only a done item can be re-run")],
        )
        .api()
}

async fn rerun(mut ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    let key = ctx.param("key")?.to_string();
    ctx.query()?.finish()?;
    let EmptyObject {} = ctx.json_or_empty().await?;
    let item = ctx.engine()?.work().rerun(&key).await?;
    Ok(http::json(StatusCode::OK, &WorkItem::from(item)))
}

fn register_doc() -> Op {
    Op::new("registerWorkClient", "work")
        .summary("Register a work client")
        .description(
            "Registers `(screen_name, external_id)` and returns a client token (`swc_` + 64 hex \
             digits) for the client routes. The `external_id` is the client's secret (16..=64 \
             characters): the server keeps only a hash of it and never returns or lists it. \
             Registering a known `external_id` again answers 200 with the same `client_id` and \
             a new token; the old token stops working (two processes with the same \
             registration act as one client). Rate-limited per source address (the \
             connection's peer IP) to `work.registrations_per_minute_per_source` per minute.",
        )
        .public()
        .body::<RegisterClientRequest>()
        .ok::<RegisterClientResponse>(
            200,
            "A known `external_id`: the same `client_id`, a new token.",
        )
        .ok::<RegisterClientResponse>(201, "A new client.")
        .body_errors(
            "`screen_name` not 1..=64 characters of text, or `external_id` not 16..=64 \
             characters of `A-Z a-z 0-9 . _ : @ -`",
            &[],
        )
        .error_with_retry(
            429,
            "Too many registrations from this source address; retry after `Retry-After` \
             seconds.",
            &[(
                "rate_limited",
                "more than `work.registrations_per_minute_per_source` registrations from this \
                 address within a minute",
            )],
        )
        .api()
}

async fn register(mut ctx: Ctx) -> HandlerResult {
    let engine = ctx.engine()?;
    let source = ctx.peer_ip();
    let RegisterClientRequest {
        screen_name,
        external_id,
    } = ctx.json().await?;
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
        &RegisterClientResponse {
            client_id: registered.client_id,
            token: registered.token,
        },
    ))
}

fn unregister_doc() -> Op {
    client_only(
        Op::new("unregisterWorkClient", "work")
            .summary("Unregister this client")
            .description(
                "The token stops working and every bucket the client holds is released to the \
                 pool before the reply.",
            ),
    )
    .no_content(204, "Unregistered; no body.")
    .query_errors(None)
    .api()
}

async fn unregister(ctx: Ctx) -> HandlerResult {
    let token = client_token(&ctx)?;
    let engine = ctx.engine()?;
    let parsed = ctx.query().and_then(|query| query.finish());
    client_input(&engine, &token, parsed).await?;
    engine.work().unregister(&token).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

fn lease_doc() -> Op {
    client_only(
        Op::new("leaseBuckets", "work")
            .summary("Lease buckets")
            .description(
                "Up to `max_buckets` buckets of `work.bucket_size` items, formed at random \
                 among the pending items (higher priority first, then oldest first), each \
                 leased to this client for `work.lease_seconds`; an empty list when nothing is \
                 available. A client holds at most 100 leased buckets at once. Fewer buckets \
                 than asked come back when their keys would not fit one log record (only with \
                 very long keys); lease again for the rest.",
            ),
    )
    .body::<LeaseRequest>()
    .ok::<LeaseResponse>(200, "The buckets leased (possibly none).")
    .link(
        "ReportResults",
        "reportResults",
        &[("id", "$response.body#/buckets/0/id")],
        "Report on the first leased bucket.",
    )
    .link(
        "Heartbeat",
        "heartbeat",
        &[("id", "$response.body#/buckets/0/id")],
        "Extend the first leased bucket's lease.",
    )
    .link(
        "GetItem",
        "getWorkItem",
        &[("key", "$response.body#/buckets/0/items/0")],
        "The first item of the first leased bucket.",
    )
    .body_errors(
        "",
        &[(
            "too_many_buckets",
            "`max_buckets` < 1 or > `work.max_buckets_per_request`, or the client already holds \
             `work.leased_buckets_per_client_max` leased buckets; `field` is `max_buckets`",
        )],
    )
    .api()
}

async fn lease(mut ctx: Ctx) -> HandlerResult {
    let token = client_token(&ctx)?;
    let engine = ctx.engine()?;
    let parsed = ctx.json::<LeaseRequest>().await;
    let LeaseRequest { max_buckets } = client_input(&engine, &token, parsed).await?;
    let buckets = engine.work().lease(&token, max_buckets).await?;
    Ok(http::json(
        StatusCode::OK,
        &LeaseResponse {
            buckets: buckets.into_iter().map(Bucket::from).collect(),
        },
    ))
}

fn report_doc() -> Op {
    bucket_errors(
        client_only(
            Op::new("reportResults", "work")
                .summary("Report results")
                .description(
                    "Records results for items of a bucket this client holds (partial reports \
                     allowed; the first result of an item in a bucket stands, so retries are \
                     safe) and adds `discovered` keys as new items unless already known. \
                     Extends the lease. The bucket is done when every item has a result. A \
                     refused report changes nothing but the client's `rejected_updates`.",
                ),
        )
        .parameter(bucket_id())
        .body::<ReportRequest>()
        .ok::<ReportResponse>(
            200,
            "Recorded; `remaining` items of the bucket still lack a result (0 = done).",
        )
        .body_errors(
            "more than `work.bucket_size` results, `results[i].outcome` not \
             `yes`/`no`/`unknown`, a `detail` over 512 characters, more than 1000 `discovered` \
             keys or one that is not a valid key, an `epoch` outside 32 bits, or (`field` \
             `results`) keys, details and discovered keys together over 786432 bytes of UTF-8 \
             (report the bucket in parts)",
            &[],
        ),
    )
    .error(
        422,
        "A result names a key outside the bucket.",
        &[(
            "item_not_in_bucket",
            "a `results[i].key` is not an item of this bucket",
        )],
    )
    .api()
}

async fn report(mut ctx: Ctx) -> HandlerResult {
    let token = client_token(&ctx)?;
    let engine = ctx.engine()?;
    let parsed = match ctx.param_u64("id") {
        Ok(bucket_id) => ctx
            .json::<ReportRequest>()
            .await
            .map(|report| (bucket_id, report)),
        Err(error) => Err(error),
    };
    let (bucket_id, body) = client_input(&engine, &token, parsed).await?;
    let report = Report {
        results: body
            .results
            .into_iter()
            .map(|result| ItemResult {
                key: result.key.0,
                outcome: result.outcome.into(),
                detail: result.detail,
            })
            .collect(),
        discovered: body
            .discovered
            .unwrap_or_default()
            .into_iter()
            .map(|key| key.0)
            .collect(),
        epoch: body.epoch,
    };
    let outcome = engine.work().report(&token, bucket_id, report).await?;
    Ok(http::json(StatusCode::OK, &ReportResponse::from(outcome)))
}

fn heartbeat_doc() -> Op {
    bucket_errors(
        client_only(
            Op::new("heartbeat", "work")
                .summary("Extend a lease")
                .description(
                    "Extends this client's lease on the bucket by `work.lease_seconds` from \
                     now. The body is optional: empty, `{}` or `{\"epoch\": n}` (checked \
                     against the lease when given).",
                ),
        )
        .parameter(bucket_id())
        .optional_body::<HeartbeatRequest>()
        .ok::<HeartbeatResponse>(200, "The new deadline.")
        .body_errors("`epoch` outside 32 bits", &[]),
    )
    .api()
}

async fn heartbeat(mut ctx: Ctx) -> HandlerResult {
    let token = client_token(&ctx)?;
    let engine = ctx.engine()?;
    let parsed = match ctx.param_u64("id") {
        Ok(bucket_id) => ctx
            .json_or_empty::<HeartbeatRequest>()
            .await
            .map(|body| (bucket_id, body.epoch)),
        Err(error) => Err(error),
    };
    let (bucket_id, epoch) = client_input(&engine, &token, parsed).await?;
    let outcome = engine.work().heartbeat(&token, bucket_id, epoch).await?;
    Ok(http::json(
        StatusCode::OK,
        &HeartbeatResponse::from(outcome),
    ))
}

fn stats_doc() -> Op {
    Op::new("workStats", "work")
        .summary("Work totals and per-client counters")
        .description(
            "Item counts by state, bucket counts by state and every client's counters (never a \
             client's `external_id`: it is the client's secret).",
        )
        .public()
        .ok::<WorkStats>(200, "The stats.")
        .query_errors(None)
        .api()
}

async fn stats(ctx: Ctx) -> HandlerResult {
    ctx.query()?.finish()?;
    let stats = ctx.engine()?.work().stats().await?;
    Ok(http::json(StatusCode::OK, &WorkStats::from(stats)))
}

fn dead_letters_doc() -> Op {
    Op::new("listDeadLetters", "admin")
        .summary("List dead-lettered buckets (admin)")
        .description(
            "Buckets whose lease expired `work.max_expiries` times: their unfinished items are \
             parked instead of returning to the pool. By bucket id, keyset-paginated.",
        )
        .admin()
        .page()
        .ok::<DeadBucketPage>(200, "A page of dead-lettered buckets.")
        .query_errors(Some(PAGE_INVALID_FIELD))
        .api()
}

/// Admin: dead-lettered buckets (expired `work.max_expiries` times), by bucket id.
async fn dead_letters(ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    let mut query = ctx.query()?;
    let page = query.page()?;
    query.finish()?;
    let after = page.after()?;
    let dead = ctx.engine()?.work().dead_letters(after, page.limit).await?;
    Ok(http::json(
        StatusCode::OK,
        &DeadBucketPage {
            items: dead.items.into_iter().map(DeadBucket::from).collect(),
            next_cursor: NextCursor(dead.next),
        },
    ))
}
