//! `--compat market`: the original BTC order services' routes (ORIGINALS.md §2,
//! `RadoslawKzm/Microservices_Task`) over the market's engine API, so a client of the original
//! runs unchanged. Mounted only with `--compat market` (the router reads
//! [`super::DOMAIN`]`.compat`).
//!
//! - `POST /place_order`: `{"currency": str, "amount": int}` as JSON, or, with no body, the
//!   README's query form `?currency=eur&amount=69` → 201 `{"data": "Order was placed for
//!   EUR:69.00"}`. Order of checks, the original's: the input (422, FastAPI's `{"detail":
//!   [...]}` listing every problem), the currency (406 `"Requested currency unsupported"`), the
//!   amount (406 `"Requested amount exceeds limit"`), then the engine's one decision: rate limit
//!   (429, the server's envelope: the original had none), price (503 `"API Service
//!   unavailable"`), cap (406 `"Requested btc value exceeds limit"`).
//! - `GET /get_orders/?start=0&page_size=10` → 200 `{"data": [rows]}` newest first, plus
//!   `"_links"` (the next page's URL) when the page is full.
//! - `POST /place_order/` and `GET /get_orders` → 307 to the declared path, query kept, as
//!   Starlette redirected a wrong trailing slash.
//!
//! The original's bugs are not kept: GBP is a currency (the original listed `GPB`, so a GBP
//! order got 406 and a `GPB` one a 500; `GPB` is 406 here), the cap is exact (one actor decides
//! every order; the original's check and insert could race past it), BTC is rounded up at 8
//! decimals, numbers are exact decimals. What the original could not say in its format (a full
//! queue, a stopped engine, a failed disk, the rate limit) is the server's JSON error envelope.
//!
//! Files: this one (routes, handlers, their operations, the introduction's section),
//! [`input`] (reading bodies and queries field by field into FastAPI's 422), [`types`] (the
//! original's bodies as serde + utoipa types).
//!
//! Invariants:
//! - Every order goes through `Market::place` with an `OrderRequest` made by
//!   `OrderRequest::parse`, exactly as the native route's: same rules, same decision, same book.
//!   A request refused here changed nothing.
//! - All compat orders belong to one user, [`COMPAT_USER_ID`], which no sign-up can be given.

pub mod input;
pub mod types;

use hyper::header::{HeaderValue, LOCATION, RETRY_AFTER};
use hyper::{Method, StatusCode};
use switchyard_engine::market::{Currency, OrderRequest};
use switchyard_engine::Error as EngineError;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;

use crate::ctx::Ctx;
use crate::domains::CompatSet;
use crate::error::{Response, RETRY_AFTER_SECONDS};
use crate::http;
use crate::openapi::{self, Op, COMPAT_TAG};
use crate::router::{HandlerResult, Route};
use input::{order_input, page_input, AmountInput};
use types::{
    CompatOrderPage, CompatOrderPlaced, CompatOrderRow, FastApiErrorDetail,
    FastApiValidationError, PlaceOrderBody,
};

/// The set `--compat market` mounts.
pub const SET: CompatSet = CompatSet {
    name: "market",
    routes,
};

/// The user every compat order belongs to. Sign-up allocates ids from
/// `switchyard_engine::social::accounts::FIRST_USER_ID` (1) upwards, so 0 is never a real
/// user: no login token names it, and the native API shows these orders only to the admin
/// (`GET /api/v1/orders?user_id=0`, or every user's).
pub const COMPAT_USER_ID: u64 = 0;
const _: () = assert!(COMPAT_USER_ID < switchyard_engine::social::accounts::FIRST_USER_ID);

/// `page_size` when `GET /get_orders/` gives none (the original's default).
pub const PAGE_SIZE_DEFAULT: usize = 10;
/// Largest `page_size`; above it is 422. The native lists' cap ([`http::PAGE_LIMIT_MAX`]), so
/// a page costs at most that many orders whatever its `start` (the engine reads an offset page
/// by index).
pub const PAGE_SIZE_MAX: usize = http::PAGE_LIMIT_MAX;

/// Longest `Host` used in a link; a longer one (or one with characters a host name and port do
/// not have) gives a relative link.
const HOST_CHARS_MAX: usize = 255;

/// The original's messages, JSON strings.
const CURRENCY_UNSUPPORTED: &str = "Requested currency unsupported";
const AMOUNT_EXCEEDS_LIMIT: &str = "Requested amount exceeds limit";
const BTC_EXCEEDS_LIMIT: &str = "Requested btc value exceeds limit";
const SERVICE_UNAVAILABLE: &str = "API Service unavailable";

fn routes() -> Vec<Route> {
    vec![
        Route::api(
            Method::POST,
            "/place_order",
            |ctx| Box::pin(place_order(ctx)),
            place_order_doc,
        ),
        Route::api(
            Method::POST,
            "/place_order/",
            |ctx| Box::pin(redirect(ctx, "/place_order")),
            place_order_slash_doc,
        ),
        Route::api(
            Method::GET,
            "/get_orders/",
            |ctx| Box::pin(get_orders(ctx)),
            get_orders_doc,
        ),
        Route::api(
            Method::GET,
            "/get_orders",
            |ctx| Box::pin(redirect(ctx, "/get_orders/")),
            get_orders_slash_doc,
        ),
    ]
}

/// The introduction's section on these routes (added by the market's `describe`).
pub const SECTION: &str = "## Market compatibility routes (`--compat market`)

The original BTC order services' `POST /place_order` and `GET /get_orders/`, in their format,
over the same engine commands as `POST /api/v1/orders` (so the same book, cap, price and rate
limit). Decisions where the original was loose or wrong:

- No auth. Every compat order belongs to one built-in user, id **0** (sign-up allocates ids
  from 1, so no real user can be it). The admin sees these orders in `GET /api/v1/orders`
  (all users, or `?user_id=0`).
- The rate limit is the native one, per user: all compat clients together share user 0's
  `market.rate_limit_per_minute` (60 by default, the original README's promise of 60 requests
  a minute, which the original never enforced). Beyond it: 429 `rate_limited` with
  `Retry-After`, in the server's error envelope. An operator expecting heavier compat traffic
  raises the key (0 = unlimited).
- `amount`: a JSON integer (also `69.0` or `6.9e1`), or a decimal string with at most 2
  decimals (`\"69\"`, `\"69.50\"`). A JSON number with a fractional part is 422: pydantic
  truncated it to an integer, and silently losing money is worse than refusing. `currency`
  must be a JSON string (pydantic turned numbers into strings). Unknown fields, duplicated keys,
  and query parameters next to a JSON body are 422.
- The README's query form (`POST /place_order?currency=eur&amount=69`) is accepted when the
  body is empty (the original answered it 422).
- GBP is accepted (the original's list had the typo `GPB`); the cap is exact; BTC is rounded up
  at 8 decimals. No `Idempotency-Key`: the original had none, so each request is a new order.
- `GET /get_orders/`: `start` is an offset, as in the original; the engine reads the page by
  index, so its cost is `page_size` orders whatever `start` is. `page_size` is 1..=500
  (default 10; the original let 0 through, which made an endless `_links` chain). `_links`
  uses the request's `Host` (the original hard-coded `127.0.0.1:8020`), `http://` as the
  server speaks plain HTTP; without a usable `Host` it is a path. Offset pages shift when
  orders arrive between two reads, as they did.
- Rows: `UUID` is derived from the order id (a version-8 UUID holding it), `TIMESTAMP` is the
  order's UTC time as Python printed it, and `AMOUNT`, `EXCHANGE_RATE`, `BITCOIN_AMOUNT` are JSON
  numbers written with the engine's exact decimal digits.
- Answers the original did not have use the server's error envelope: 404 `not_found` when the
  set is off, 400 `invalid_header`, 405, 408, 413, 429, 500, 503 `overloaded`/`unavailable`.";

// ---- POST /place_order ----------------------------------------------------------------------

fn place_order_doc() -> Op {
    Op::new("compatPlaceOrder", COMPAT_TAG)
        .summary("Place a buy order (the original's format)")
        .description(
            "The original `create_buy_order` service's route. The order is the JSON body \
             `{\"currency\", \"amount\"}`, or, when the body is empty, the query parameters \
             `currency` and `amount` (the original README's form). No auth: the order belongs \
             to the built-in compat user (id 0). Order of checks: the input (422), currency \
             (406), amount (406), rate limit (429), price (503), cap (406). See the section \
             \"Market compatibility routes\".",
        )
        .public()
        .parameter(query_string(
            "currency",
            "With an empty body only: EUR, GBP or USD, any case.",
            None,
        ))
        .parameter(query_string(
            "amount",
            "With an empty body only: a whole number or a decimal with at most 2 decimals.",
            Some(r"^-?[0-9]+(\.[0-9]{1,2})?$"),
        ))
        .optional_body::<PlaceOrderBody>()
        .ok::<CompatOrderPlaced>(201, "The order was placed (and is durable).")
        .original_error(
            406,
            "Refused as the original refused it; nothing changed.",
            &[
                (CURRENCY_UNSUPPORTED, "`currency` is not EUR, GBP or USD (any case)"),
                (
                    AMOUNT_EXCEEDS_LIMIT,
                    "`amount` is not above 0 and below 1,000,000,000",
                ),
                (
                    BTC_EXCEEDS_LIMIT,
                    "all orders together would exceed `market.cap_satoshis` (100 BTC)",
                ),
            ],
            &[],
            false,
        )
        .answer::<FastApiValidationError>(
            422,
            "The input is missing or malformed (FastAPI's shape, every problem listed); \
             nothing changed: no body and no query, JSON that does not parse or is not an \
             object, a duplicated key, `currency` not a string, `amount` not a whole number or \
             decimal string, an unknown field, a query parameter next to a JSON body, a \
             parameter given twice.",
        )
        .error_with_retry(
            429,
            "Too many orders (the server's envelope; the original had no limit).",
            &[(
                "rate_limited",
                "all compat clients together placed `market.rate_limit_per_minute` orders \
                 this minute (they share the compat user's limit); `Retry-After` says when",
            )],
        )
        .original_error(
            503,
            "Not now; nothing changed. Retry after `Retry-After` seconds.",
            &[(
                SERVICE_UNAVAILABLE,
                "no price younger than `market.max_price_age_seconds`",
            )],
            &[
                ("overloaded", "a queue is full"),
                ("unavailable", "the engine is recovering or stopping"),
            ],
            true,
        )
        .body_limits()
        .compat("market")
}

/// An optional query parameter holding a string.
fn query_string(name: &str, description: &str, pattern: Option<&str>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(pattern),
        ))
        .build()
}

async fn place_order(mut ctx: Ctx) -> HandlerResult {
    let engine = ctx.engine()?;
    let body = ctx.body().await?;
    let input = match order_input(&body, ctx.head.uri.query()) {
        Ok(input) => input,
        Err(detail) => return Ok(validation_error(detail)),
    };
    // The original's order: the currency, then the amount; the engine's rules decide both.
    let Some(currency) = Currency::parse(&input.currency) else {
        return Ok(original(StatusCode::NOT_ACCEPTABLE, CURRENCY_UNSUPPORTED));
    };
    let AmountInput::Text(amount) = input.amount else {
        return Ok(original(StatusCode::NOT_ACCEPTABLE, AMOUNT_EXCEEDS_LIMIT));
    };
    let request = match OrderRequest::parse(currency.code(), &amount) {
        Ok(request) => request,
        Err(EngineError::Unprocessable {
            code: "amount_out_of_range",
            ..
        }) => return Ok(original(StatusCode::NOT_ACCEPTABLE, AMOUNT_EXCEEDS_LIMIT)),
        // `order_input` passes only amounts the engine reads; anything else is the engine's
        // word (and a 4xx).
        Err(error) => return Err(error.into()),
    };
    match engine.market().place(COMPAT_USER_ID, None, request).await {
        Ok(placed) => {
            let order = placed.order();
            let data = format!(
                "Order was placed for {}:{}",
                order.currency.code(),
                types::python_amount(order.amount_cents)
            );
            Ok(http::json(
                StatusCode::CREATED,
                &CompatOrderPlaced { data },
            ))
        }
        Err(EngineError::Conflict {
            code: "btc_cap_exceeded",
            ..
        }) => Ok(original(StatusCode::NOT_ACCEPTABLE, BTC_EXCEEDS_LIMIT)),
        Err(EngineError::NotNow {
            code: "price_unavailable",
            ..
        }) => {
            let mut response = original(StatusCode::SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            Ok(response)
        }
        // Rate limit, overload, a stopped engine, IO: the server's own answers.
        Err(error) => Err(error.into()),
    }
}

/// The original's error body: a JSON string.
fn original(status: StatusCode, message: &'static str) -> Response {
    http::json(status, message)
}

fn validation_error(detail: Vec<FastApiErrorDetail>) -> Response {
    http::json(
        StatusCode::UNPROCESSABLE_ENTITY,
        &FastApiValidationError { detail },
    )
}

// ---- GET /get_orders/ -----------------------------------------------------------------------

fn get_orders_doc() -> Op {
    Op::new("compatListOrders", COMPAT_TAG)
        .summary("List orders (the original's format)")
        .description(
            "The original `fetch_buy_orders` service's route: the compat user's orders, newest \
             first, `page_size` of them after skipping the `start` newest (an offset; the \
             engine reads the page by index, so its cost does not grow with `start`). A full \
             page adds `_links`, the next page's URL. Orders placed through the native API by \
             real users are not listed here (they are theirs).",
        )
        .public()
        .parameter(openapi::query_parameter(
            "start",
            "How many of the newest orders to skip (default 0).",
            openapi::integer("uint64").default(Some(0.into())).into(),
        ))
        .parameter(openapi::query_parameter(
            "page_size",
            "Orders per page, 1..=500 (default 10).",
            openapi::integer("int64")
                .minimum(Some(1))
                .maximum(Some(PAGE_SIZE_MAX as u64))
                .default(Some((PAGE_SIZE_DEFAULT as u64).into()))
                .into(),
        ))
        .ok::<CompatOrderPage>(200, "A page of orders, newest first.")
        .answer::<FastApiValidationError>(
            422,
            "A query parameter is malformed (FastAPI's shape); nothing was read: `start` or \
             `page_size` not a whole number, `page_size` outside 1..=500, a parameter given \
             twice, an unknown parameter, a query string that does not decode.",
        )
        .compat("market")
}

async fn get_orders(ctx: Ctx) -> HandlerResult {
    let engine = ctx.engine()?;
    let (start, page_size) = match page_input(ctx.head.uri.query()) {
        Ok(page) => page,
        Err(detail) => return Ok(validation_error(detail)),
    };
    let orders = engine
        .market()
        .orders_at(COMPAT_USER_ID, start, page_size)
        .await?;
    let links = (orders.len() == page_size).then(|| {
        format!(
            "{}/get_orders/?start={}&page_size={page_size}",
            origin(&ctx),
            start.saturating_add(page_size as u64)
        )
    });
    Ok(http::json(
        StatusCode::OK,
        &CompatOrderPage {
            data: orders.iter().map(CompatOrderRow::new).collect(),
            links,
        },
    ))
}

/// `http://<Host>` from the request's `Host` header (what the client called us by), or `""`
/// (a relative link) when it has none or one that is not a host name or address with a port.
fn origin(ctx: &Ctx) -> String {
    let usable = |host: &&str| {
        !host.is_empty()
            && host.len() <= HOST_CHARS_MAX
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    };
    match ctx.header("host").filter(usable) {
        Some(host) => format!("http://{host}"),
        None => String::new(),
    }
}

// ---- The trailing-slash redirects -----------------------------------------------------------

fn place_order_slash_doc() -> Op {
    Op::new("compatPlaceOrderSlash", COMPAT_TAG)
        .summary("Redirect to POST /place_order")
        .description(
            "As Starlette answered the wrong trailing slash: 307 to `/place_order` with the \
             query kept (an absolute URL from the request's `Host`), so the client sends the \
             same POST, body and all, again. The body is not read.",
        )
        .public()
        .redirect("Send the same request to `Location`.")
        .compat("market")
}

fn get_orders_slash_doc() -> Op {
    Op::new("compatListOrdersSlash", COMPAT_TAG)
        .summary("Redirect to GET /get_orders/")
        .description(
            "As Starlette answered the missing trailing slash: 307 to `/get_orders/` with the \
             query kept (an absolute URL from the request's `Host`).",
        )
        .public()
        .redirect("Send the same request to `Location`.")
        .compat("market")
}

/// 307 to `path` on this server, the query kept.
async fn redirect(ctx: Ctx, path: &'static str) -> HandlerResult {
    let mut location = format!("{}{path}", origin(&ctx));
    if let Some(query) = ctx.head.uri.query() {
        location.push('?');
        location.push_str(query);
    }
    let mut response = http::empty(StatusCode::TEMPORARY_REDIRECT);
    // The query is the request's own bytes (visible ASCII, as hyper parsed them) and the
    // origin is checked above, so the value is a valid header; a failure would be a bug.
    let value = HeaderValue::from_str(&location).map_err(|error| {
        tracing::error!(%error, "a redirect location is not a header value");
        crate::error::ApiError::internal()
    })?;
    response.headers_mut().insert(LOCATION, value);
    Ok(response)
}
