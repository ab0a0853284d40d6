//! The market workload over HTTP (API.md "Market"): buy orders, the price, health reports.
//!
//! - `POST /api/v1/orders` (user): `{"currency", "amount"}` and an optional `Idempotency-Key`
//!   → 201 Order, or 200 with the same Order for a replay of the key with the same body. Order of
//!   checks: the token (401), the body (400/422), the key's shape (400 `invalid_header`), then
//!   the engine's one decision: replay (200/409), rate limit (429), price (503), cap (409).
//! - `GET /api/v1/orders` (user; admin with `?user_id`, or every user's without it): newest
//!   first, keyset pages.
//! - `GET /api/v1/price` (public): the current rates, or 503 `price_unavailable`.
//! - `POST /api/v1/health/reports`, `GET /api/v1/health/reports` (admin).
//!
//! The `market.price` effects (the feed's fetches) run with the source `market.price_source`
//! names: the engine's own for `simulated` and `fixed:`, [`price_http`] for a URL.
//!
//! [`compat`]: the original services' `POST /place_order` and `GET /get_orders/`, the set
//! `--compat market`.

pub mod compat;
pub mod price_http;
pub mod types;

use std::sync::Arc;

use hyper::{Method, StatusCode};
use prometheus_client::metrics::gauge::Gauge;
use switchyard_engine::market::source::SourceSpec;
use switchyard_engine::market::{price_pool, MarketConfig, OrderRequest, Placed};
use switchyard_engine::runtime::effects::EffectPool;
use switchyard_engine::EngineConfig;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;

use super::{HttpDomain, MetricsFuture};
use crate::app::App;
use crate::ctx::{Ctx, Viewer};
use crate::error::{ApiError, Error};
use crate::http::{self, NextCursor};
use crate::openapi::{self, Document, Op, ADMIN_TOKEN, PAGE_INVALID_FIELD, USER_JWT};
use crate::router::{HandlerResult, Route};
use types::{
    HealthReport, HealthReportPage, HealthReportRequest, MarketCheck, OrderBody, OrderPage,
    PlaceOrderRequest, Price,
};

pub const DOMAIN: HttpDomain = HttpDomain {
    name: "market",
    routes,
    describe,
    metrics,
    effects: pools,
    config: Some(crate::config::section::<MarketConfig>()),
    compat: Some(compat::SET),
};

fn routes() -> Vec<Route> {
    vec![
        Route::api(
            Method::POST,
            "/api/v1/orders",
            |ctx| Box::pin(place_order(ctx)),
            place_order_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/orders",
            |ctx| Box::pin(list_orders(ctx)),
            list_orders_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/price",
            |ctx| Box::pin(price(ctx)),
            price_doc,
        ),
        Route::api(
            Method::POST,
            "/api/v1/health/reports",
            |ctx| Box::pin(add_report(ctx)),
            add_report_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/health/reports",
            |ctx| Box::pin(list_reports(ctx)),
            list_reports_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/admin/market/check",
            |ctx| Box::pin(check(ctx)),
            check_doc,
        ),
    ]
}

/// The `market.price` pool, reading the source `market.price_source` names.
fn pools(config: &EngineConfig) -> Result<Vec<EffectPool>, Error> {
    let market = config.section::<MarketConfig>();
    let spec = SourceSpec::parse(&market.price_source)
        .map_err(|error| Error::Config(format!("`market.price_source`: {error}")))?;
    let source = match spec.builtin(market.price_seed) {
        Some(source) => source,
        None => Arc::new(price_http::HttpPriceSource::new(
            market.price_source.clone(),
            std::time::Duration::from_millis(market.price_fetch_timeout_ms),
        )?),
    };
    Ok(vec![price_pool(source)])
}

fn describe(document: &mut Document) {
    document.tag(
        "market",
        "BTC buy orders, the price feed and health reports (API.md \"Market\").",
    );
    document.error_codes(&[
        (
            "unsupported_currency",
            422,
            "An order's currency is not EUR, GBP or USD.",
        ),
        (
            "amount_out_of_range",
            422,
            "An order's amount is not above 0 and below 1,000,000,000.",
        ),
        (
            "btc_cap_exceeded",
            409,
            "The order would take the sum of all orders above `market.cap_satoshis` (100 BTC).",
        ),
        (
            "idempotency_key_reused",
            409,
            "The `Idempotency-Key` was used by this user with another body.",
        ),
        (
            "price_unavailable",
            503,
            "No price younger than `market.max_price_age_seconds`.",
        ),
    ]);
    document.section(SECTION);
    document.section(compat::SECTION);
}

const SECTION: &str = "## Market

- Money is text: `amount` with at most 2 decimals in requests and exactly 2 in answers,
  `btc_amount` with exactly 8, rates without trailing zeros. `btc_amount` = amount / rate,
  rounded **up** at 8 decimals, computed exactly.
- Order of checks for `POST /api/v1/orders`: the token (401); the body (400, 422); the
  `Idempotency-Key` (400 `invalid_header`); a replay of the key (200 with the same order, or
  409 `idempotency_key_reused`; a replay never counts against the rate limit); the rate limit
  (429 with `Retry-After`); the price (503 `price_unavailable`); the cap (409
  `btc_cap_exceeded`). Concurrent requests with one key get one 201; the others wait for it and
  get 200 with the same order. A key is the user's: another user's same key is another order.
- All orders together never exceed the cap: one actor decides every order against the total of
  those accepted before it.

| key | default | effect |
| --- | --- | --- |
| `market.rate_limit_per_minute` | 60 | orders per user per minute (token bucket; 0 = unlimited); beyond: 429 |
| `market.max_price_age_seconds` | 300 | an older price is unavailable: 503 `price_unavailable` |
| `market.idempotency_key_ttl_seconds` | 86400 | how long a key is remembered (durably) |
| `market.idempotency_key_max_chars` | 255 | longer keys, or keys with other than visible ASCII: 400 `invalid_header` |
| `market.price_refresh_seconds` | 15 | how often the feed is read |
| `market.price_source` | `simulated` | `simulated`, `fixed:EUR=..,GBP=..,USD=..`, or an `http(s)://` URL of a CoinDesk-v1-shaped document (`bpi.{USD,GBP,EUR}.rate_float`) |
| `market.cap_satoshis` | 10000000000 | 100 BTC: the sum of all orders' `btc_amount` |
| `market.health_reports_max` | 100000 | reports kept (the oldest go) |";


fn idempotency_key() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes the request safe to retry: the same key and body again give the same order \
             (200). 1 to 255 visible ASCII characters (`market.idempotency_key_max_chars`); \
             kept for `market.idempotency_key_ttl_seconds`.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[!-~]+$")),
        ))
        .build()
}

fn place_order_doc() -> Op {
    Op::new("placeOrder", "market")
            .summary("Place a buy order")
            .description(
                "Buys BTC for `amount` of `currency` at the current price. See the market \
                 section for the order of checks, idempotency and the cap.",
            )
.user()
    .parameter(idempotency_key())
    .body::<PlaceOrderRequest>()
    .ok::<OrderBody>(201, "The new order.")
    .ok::<OrderBody>(
        200,
        "A replay: the order this `Idempotency-Key` made with the same body.",
    )
    .body_errors(
        "`amount` is not a decimal string with at most 2 decimals (a JSON number, too)",
        &[],
    )
    .error(
        409,
        "Refused; nothing changed.",
        &[
            (
                "btc_cap_exceeded",
                "all orders together would exceed `market.cap_satoshis`",
            ),
            (
                "idempotency_key_reused",
                "this user used the `Idempotency-Key` with another body",
            ),
        ],
    )
    .error(
        422,
        "Not an order this market takes; nothing changed.",
        &[
            ("unsupported_currency", "`currency` is not EUR, GBP or USD"),
            (
                "amount_out_of_range",
                "`amount` is not above 0 and below 1,000,000,000",
            ),
        ],
    )
    .error_with_retry(
        429,
        "Too many orders.",
        &[(
            "rate_limited",
            "more than `market.rate_limit_per_minute` orders this minute; `Retry-After` says \
             when the next one is allowed",
        )],
    )
    .error_with_retry(
        503,
        "Not now; nothing changed.",
        &[
            (
                "price_unavailable",
                "no price younger than `market.max_price_age_seconds`",
            ),
            ("overloaded", "a queue is full"),
            ("unavailable", "the engine is recovering or stopping"),
        ],
    )
    .api()
}

async fn place_order(mut ctx: Ctx) -> HandlerResult {
    let user_id = ctx.user().await?;
    let engine = ctx.engine()?;
    let PlaceOrderRequest { currency, amount } = ctx.json().await?;
    let request = OrderRequest::parse(&currency, &amount)?;
    let key = match ctx.head.headers.get_all("idempotency-key").iter().count() {
        0 => None,
        1 => Some(
            ctx.header("idempotency-key")
                .filter(|key| !key.is_empty())
                .ok_or_else(|| invalid_key("`Idempotency-Key` must be visible ASCII"))?
                .to_string(),
        ),
        _ => return Err(invalid_key("`Idempotency-Key` is given twice")),
    };
    let placed = engine.market().place(user_id, key, request).await?;
    let status = match placed {
        Placed::Created(_) => StatusCode::CREATED,
        Placed::Replayed(_) => StatusCode::OK,
    };
    let order = match placed {
        Placed::Created(order) | Placed::Replayed(order) => order,
    };
    Ok(http::json(status, &OrderBody::from(order)))
}

fn invalid_key(message: &'static str) -> ApiError {
    ApiError {
        field: Some("Idempotency-Key".into()),
        ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_header", message)
    }
}

fn list_orders_doc() -> Op {
    Op::new("listOrders", "market")
        .summary("List orders")
        .description(
            "The caller's orders, newest first, keyset-paginated (a page costs the same at any \
             depth). The admin token lists every user's orders, or one user's with `user_id`; \
             a user may give only its own id.",
        )
        .security(USER_JWT)
        .security(ADMIN_TOKEN)
        .parameter(openapi::query_parameter(
            "user_id",
            "Only this user's orders (admin; a user only its own id, else 403).",
            openapi::integer("uint64").into(),
        ))
        .page()
        .ok::<OrderPage>(200, "A page of orders, newest first.")
        .query_errors(Some(&format!(
            "{PAGE_INVALID_FIELD}; `user_id` not an unsigned integer"
        )))
        .error(
            401,
            "Not authenticated.",
            &[(
                "unauthenticated",
                "no bearer token, or neither a valid user token nor the admin token",
            )],
        )
        .error(
            403,
            "Not allowed.",
            &[("forbidden", "a user asked for another user's orders")],
        )
        .api()
}

async fn list_orders(ctx: Ctx) -> HandlerResult {
    let viewer = match ctx.viewer().await? {
        Viewer::Anonymous => {
            return Err(ApiError::unauthenticated(
                "a user token or the admin token is required",
            ))
        }
        viewer => viewer,
    };
    let mut query = ctx.query()?;
    let user_id = query.optional_u64("user_id")?;
    let page = query.page()?;
    query.finish()?;
    let before = page.after()?;
    let whose = match (viewer, user_id) {
        (Viewer::Admin, whose) => whose,
        (Viewer::User(me), None) => Some(me),
        (Viewer::User(me), Some(other)) if other == me => Some(me),
        (Viewer::User(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "forbidden",
                "only the admin may list another user's orders",
            ))
        }
        (Viewer::Anonymous, _) => unreachable!("refused above"),
    };
    let orders = ctx
        .engine()?
        .market()
        .orders(whose, before, page.limit)
        .await?;
    Ok(http::json(
        StatusCode::OK,
        &OrderPage {
            items: orders.items.into_iter().map(OrderBody::from).collect(),
            next_cursor: NextCursor(orders.next),
        },
    ))
}

fn price_doc() -> Op {
    Op::new("getPrice", "market")
        .summary("The current BTC price")
        .description(
            "The rates the next order would use, with their source and time. A price older \
             than `market.max_price_age_seconds` is unavailable.",
        )
        .public()
        .ok::<Price>(200, "The price.")
        .query_errors(None)
        .error_with_retry(
            503,
            "No price; nothing changed.",
            &[
                (
                    "price_unavailable",
                    "no price younger than `market.max_price_age_seconds`",
                ),
                ("overloaded", "a queue is full"),
                ("unavailable", "the engine is recovering or stopping"),
            ],
        )
        .api()
}

async fn price(ctx: Ctx) -> HandlerResult {
    ctx.query()?.finish()?;
    let quote = ctx.engine()?.market().price()?;
    Ok(http::json(StatusCode::OK, &Price::from(quote)))
}

fn add_report_doc() -> Op {
    Op::new("addHealthReport", "market")
        .summary("Add a health report")
        .description(
            "A service reports its health (the original's `POST /report`). Kept durably, at \
             most `market.health_reports_max` (the oldest go). The price feed writes its own \
             failures here too (`service` = `market.price_feed`).",
        )
        .admin()
        .body::<HealthReportRequest>()
        .ok::<HealthReport>(201, "The report as kept.")
        .body_errors(
            "`level` not one of debug, info, warning, error, critical; `service` or `status` \
             empty, too long or with control characters; `data` too long",
            &[],
        )
        .api()
}

async fn add_report(mut ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    let engine = ctx.engine()?;
    let HealthReportRequest {
        level,
        service,
        status,
        data,
    } = ctx.json().await?;
    let report = engine
        .market()
        .report(level.into(), service, status, data)
        .await?;
    Ok(http::json(StatusCode::CREATED, &HealthReport::from(report)))
}

fn list_reports_doc() -> Op {
    Op::new("listHealthReports", "market")
        .summary("List health reports")
        .description("Health reports, newest first, optionally of one level and one service.")
        .admin()
        .parameter(openapi::query_parameter(
            "level",
            "Only reports of this level.",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["debug", "info", "warning", "error", "critical"]))
                .into(),
        ))
        .parameter(openapi::query_parameter(
            "service",
            "Only reports of this service.",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(200))
                .into(),
        ))
        .page()
        .ok::<HealthReportPage>(200, "A page of reports, newest first.")
        .query_errors(Some(&format!(
            "{PAGE_INVALID_FIELD}; `level` not one of debug, info, warning, error, critical; \
             `service` longer than 200 characters (`market.health_name_max_chars`)"
        )))
        .api()
}

async fn list_reports(ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    let mut query = ctx.query()?;
    let level = match query.optional_str("level")? {
        None => None,
        Some(text) => Some(
            switchyard_engine::market::Level::parse(&text).ok_or_else(|| {
                ApiError::invalid_field(
                    "level",
                    "`level` must be one of debug, info, warning, error, critical",
                )
            })?,
        ),
    };
    let service = query.optional_str("service")?;
    let page = query.page()?;
    query.finish()?;
    let before = page.after()?;
    let engine = ctx.engine()?;
    let longest = engine.market().config().health_name_max_chars;
    if service.as_ref().is_some_and(|s| s.chars().count() > longest) {
        return Err(ApiError::invalid_field(
            "service",
            "`service` is longer than `market.health_name_max_chars`",
        ));
    }
    let reports = engine
        .market()
        .reports(level, service, before, page.limit)
        .await?;
    Ok(http::json(
        StatusCode::OK,
        &HealthReportPage {
            items: reports.items.into_iter().map(HealthReport::from).collect(),
            next_cursor: NextCursor(reports.next),
        },
    ))
}

fn check_doc() -> Op {
    Op::new("checkMarketInvariants", "admin")
        .summary("Check the market invariants (admin)")
        .description(
            "The order book checks itself: the BTC total is the sum of the orders and within \
             `market.cap_satoshis`, every order is in its user's index, every remembered \
             `Idempotency-Key` names an order of its user made with the key's body. An empty \
             list means all hold. Costs O(orders + keys): for operators, tests and the bot.",
        )
        .admin()
        .ok::<MarketCheck>(200, "The differences found (empty when sound).")
        .query_errors(None)
        .api()
}

async fn check(ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    ctx.query()?.finish()?;
    let differences = ctx.engine()?.market().check().await?;
    Ok(http::json(StatusCode::OK, &MarketCheck { differences }))
}

/// `/metrics`: the book's totals and the price's age.
fn metrics<'a>(app: &'a App, out: &'a mut String) -> MetricsFuture<'a> {
    Box::pin(async move {
        let Some(engine) = app.engine() else {
            return;
        };
        let Ok((sats, orders)) = engine.market().totals().await else {
            return;
        };
        let feed = engine.market().feed().await.ok();
        let now = engine.clock().now_ms();
        crate::metrics::encode(out, |registry| {
            let gauge = |value: u64| {
                let gauge = Gauge::<i64>::default();
                gauge.set(crate::metrics::gauge(value));
                gauge
            };
            registry.register("switchyard_market_orders", "Orders in the book", gauge(orders));
            registry.register(
                "switchyard_market_btc_satoshis",
                "The sum of all orders' BTC, in satoshis",
                gauge(sats),
            );
            if let Some(feed) = feed {
                registry.register(
                    "switchyard_market_price_fetch_failures",
                    "Consecutive failed reads of the price source",
                    gauge(u64::from(feed.failures)),
                );
                if let Some(quote) = feed.quote {
                    registry.register(
                        "switchyard_market_price_age_seconds",
                        "Age of the last recorded price",
                        gauge(now.saturating_sub(quote.at_ms) / 1000),
                    );
                }
            }
        });
    })
}
