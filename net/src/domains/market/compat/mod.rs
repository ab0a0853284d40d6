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
//! Invariants:
//! - Every order goes through `Market::place` with an `OrderRequest` made by
//!   `OrderRequest::parse`, exactly as the native route's: same rules, same decision, same book.
//!   A request refused here changed nothing.
//! - All compat orders belong to one user, [`COMPAT_USER_ID`], which no sign-up can be given.

pub mod types;

use hyper::header::{HeaderValue, LOCATION, RETRY_AFTER};
use hyper::{Method, StatusCode};
use serde_json::value::RawValue;
use switchyard_engine::market::{Currency, OrderRequest};
use switchyard_engine::Error as EngineError;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;

use crate::ctx::Ctx;
use crate::domains::CompatSet;
use crate::error::{Response, RETRY_AFTER_SECONDS};
use crate::http::{self, Query};
use crate::json;
use crate::openapi::{self, Op, COMPAT_TAG};
use crate::router::{HandlerResult, Route};
use types::{
    CompatOrderPage, CompatOrderPlaced, CompatOrderRow, FastApiErrorDetail, FastApiLoc,
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

/// What `POST /place_order` was given, once its shape is right.
#[derive(Debug, PartialEq, Eq)]
struct OrderInput {
    currency: String,
    amount: AmountInput,
}

/// An amount whose shape is right: text for `OrderRequest::parse` (`"69"`, `"-5"`, `"69.50"`),
/// or a whole number too long to be any amount (`1e30`).
#[derive(Debug, PartialEq, Eq)]
enum AmountInput {
    Text(String),
    TooLarge,
}

/// One problem for the 422 list.
fn problem(loc: &[FastApiLoc], msg: impl Into<String>, kind: &str) -> FastApiErrorDetail {
    FastApiErrorDetail {
        loc: loc.to_vec(),
        msg: msg.into(),
        kind: kind.to_string(),
    }
}

fn name(text: &str) -> FastApiLoc {
    FastApiLoc::Name(text.to_string())
}

fn missing(place: &str, field: &str) -> FastApiErrorDetail {
    problem(
        &[name(place), name(field)],
        "field required",
        "value_error.missing",
    )
}

fn extra(place: &str, field: &str) -> FastApiErrorDetail {
    problem(
        &[name(place), name(field)],
        "extra fields not permitted",
        "value_error.extra",
    )
}

/// Reads the order from the JSON body, or from the query when the body is empty; every
/// problem found, pydantic's way (the fields in order, then the extra ones), or the input.
fn order_input(body: &[u8], query: Option<&str>) -> Result<OrderInput, Vec<FastApiErrorDetail>> {
    let query = Query::parse(query).map_err(|_| {
        vec![problem(
            &[name("query")],
            "the query string is not valid percent-encoded UTF-8",
            "value_error.query",
        )]
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        if query.is_empty() {
            return Err(vec![problem(
                &[name("body")],
                "field required",
                "value_error.missing",
            )]);
        }
        return order_from_query(query);
    }
    let mut problems: Vec<FastApiErrorDetail> = Vec::new();
    let fields = body_fields(body)?;
    let currency = match fields.iter().find(|(key, _)| key == "currency") {
        None => {
            problems.push(missing("body", "currency"));
            None
        }
        Some((_, value)) => match currency_of(value) {
            Ok(currency) => Some(currency),
            Err(bad) => {
                problems.push(bad);
                None
            }
        },
    };
    let amount = match fields.iter().find(|(key, _)| key == "amount") {
        None => {
            problems.push(missing("body", "amount"));
            None
        }
        Some((_, value)) => match amount_of(value) {
            Ok(amount) => Some(amount),
            Err(bad) => {
                problems.push(bad);
                None
            }
        },
    };
    for (key, _) in &fields {
        if key != "currency" && key != "amount" {
            problems.push(extra("body", key));
        }
    }
    // The order is in the body; query parameters beside it would be ignored, so they are
    // refused rather than let a client think they counted.
    for parameter in query.rest() {
        problems.push(extra("query", &parameter));
    }
    match (currency, amount) {
        (Some(currency), Some(amount)) if problems.is_empty() => {
            Ok(OrderInput { currency, amount })
        }
        _ => Err(problems),
    }
}

/// The README's form: `?currency=eur&amount=69`.
fn order_from_query(mut query: Query) -> Result<OrderInput, Vec<FastApiErrorDetail>> {
    let mut problems = Vec::new();
    let mut take = |field: &str, problems: &mut Vec<FastApiErrorDetail>| match query
        .optional_str(field)
    {
        Ok(Some(value)) => Some(value),
        Ok(None) => {
            problems.push(missing("query", field));
            None
        }
        Err(_) => {
            problems.push(problem(
                &[name("query"), name(field)],
                "given more than once",
                "value_error.duplicate",
            ));
            None
        }
    };
    let currency = take("currency", &mut problems);
    let amount = take("amount", &mut problems).and_then(|text| match amount_text(&text) {
        Some(amount) => Some(amount),
        None => {
            problems.push(not_an_amount(&[name("query"), name("amount")]));
            None
        }
    });
    for parameter in query.rest() {
        problems.push(extra("query", &parameter));
    }
    match (currency, amount) {
        (Some(currency), Some(amount)) if problems.is_empty() => {
            Ok(OrderInput { currency, amount })
        }
        _ => Err(problems),
    }
}

/// The body's keys and raw values: it must be JSON (else `value_error.jsondecode` with the
/// position), without a duplicated key, and an object (else `type_error.dict`).
fn body_fields(body: &[u8]) -> Result<Vec<(String, Box<RawValue>)>, Vec<FastApiErrorDetail>> {
    let raw: Box<RawValue> = serde_json::from_slice(body).map_err(|error| {
        let message = error.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(message, _)| message)
            .to_string();
        // Where the text went wrong; for a truncated body, its end (where more was due).
        let at = match error.classify() {
            serde_json::error::Category::Eof => body.len() as u64,
            _ => position(body, error.line(), error.column()),
        };
        vec![problem(
            &[name("body"), FastApiLoc::Position(at)],
            message,
            "value_error.jsondecode",
        )]
    })?;
    if json::has_duplicate_key(body) {
        return Err(vec![problem(
            &[name("body")],
            "a JSON object has a duplicated key",
            "value_error.jsondecode",
        )]);
    }
    let not_an_object = || {
        vec![problem(
            &[name("body")],
            "value is not a valid dict",
            "type_error.dict",
        )]
    };
    if !raw.get().starts_with('{') {
        return Err(not_an_object());
    }
    // Raw values, so a number keeps the digits the client wrote. Keys are unique (checked
    // above), so the map loses nothing.
    let fields: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(raw.get()).map_err(|_| not_an_object())?;
    Ok(fields.into_iter().collect())
}

/// The byte position of serde_json's `line`:`column` (1-based) in `body`.
fn position(body: &[u8], line: usize, column: usize) -> u64 {
    let mut offset = 0usize;
    for _ in 1..line {
        match body[offset..].iter().position(|byte| *byte == b'\n') {
            Some(at) => offset += at + 1,
            None => break,
        }
    }
    (offset + column.saturating_sub(1)).min(body.len()) as u64
}

fn currency_of(value: &RawValue) -> Result<String, FastApiErrorDetail> {
    let loc = [name("body"), name("currency")];
    match value.get().as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(value.get())
            .map_err(|_| problem(&loc, "str type expected", "type_error.str")),
        _ if value.get() == "null" => Err(none_not_allowed(&loc)),
        _ => Err(problem(&loc, "str type expected", "type_error.str")),
    }
}

fn amount_of(value: &RawValue) -> Result<AmountInput, FastApiErrorDetail> {
    let loc = [name("body"), name("amount")];
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text)
            .ok()
            .and_then(|text| amount_text(&text))
            .ok_or_else(|| not_an_amount(&loc)),
        Some(b'-' | b'0'..=b'9') => whole_number(text).ok_or_else(|| not_an_amount(&loc)),
        _ if text == "null" => Err(none_not_allowed(&loc)),
        _ => Err(not_an_amount(&loc)),
    }
}

fn none_not_allowed(loc: &[FastApiLoc]) -> FastApiErrorDetail {
    problem(loc, "none is not an allowed value", "type_error.none.not_allowed")
}

fn not_an_amount(loc: &[FastApiLoc]) -> FastApiErrorDetail {
    problem(
        loc,
        "value is not a valid integer (nor a decimal string with at most 2 decimals)",
        "type_error.integer",
    )
}

/// A string amount: what `money::parse_amount` reads as well formed (digits, at most 2
/// decimals, an optional `-`, which is out of range); `None` for anything else.
fn amount_text(text: &str) -> Option<AmountInput> {
    use switchyard_engine::market::money::{parse_amount, AmountError};
    match parse_amount(text) {
        Ok(_) | Err(AmountError::OutOfRange) => Some(AmountInput::Text(text.to_string())),
        Err(AmountError::Malformed) => None,
    }
}

/// Integer digits beyond which a whole number is too large for any amount (amounts are below
/// 10^9); it is then not written out, so `1e999999` costs nothing.
const WHOLE_DIGITS_MAX: i64 = 18;

/// The whole number a JSON number's text denotes (`69`, `69.0`, `6.9e1`, `-5`), exactly, as
/// decimal text; `None` when it has a fractional part (`69.5`). `text` is a JSON number
/// (serde_json checked the body).
fn whole_number(text: &str) -> Option<AmountInput> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, "0"),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // An exponent too long for an i64 is far beyond any amount or far below one.
    let exponent: i64 = exponent.parse().unwrap_or(if exponent.starts_with('-') {
        i64::MIN / 2
    } else {
        i64::MAX / 2
    });
    // value = digits × 10^-scale
    let mut digits = format!("{whole}{fraction}");
    let mut scale = (fraction.len() as i64).saturating_sub(exponent);
    while scale > 0 && digits.ends_with('0') {
        digits.pop();
        scale -= 1;
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(AmountInput::Text("0".into()));
    }
    if scale > 0 {
        return None;
    }
    if (digits.len() as i64).saturating_sub(scale) > WHOLE_DIGITS_MAX {
        return Some(AmountInput::TooLarge);
    }
    let zeros = "0".repeat(scale.unsigned_abs() as usize);
    let sign = if negative { "-" } else { "" };
    Some(AmountInput::Text(format!("{sign}{digits}{zeros}")))
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

/// `start` and `page_size`, or every problem with them.
fn page_input(query: Option<&str>) -> Result<(u64, usize), Vec<FastApiErrorDetail>> {
    let mut query = Query::parse(query).map_err(|_| {
        vec![problem(
            &[name("query")],
            "the query string is not valid percent-encoded UTF-8",
            "value_error.query",
        )]
    })?;
    let mut problems = Vec::new();
    let mut number = |field: &str, minimum: u64, maximum: u64, default: u64| {
        let loc = [name("query"), name(field)];
        let text = match query.optional_str(field) {
            Ok(None) => return Some(default),
            Ok(Some(text)) => text,
            Err(_) => {
                problems.push(problem(&loc, "given more than once", "value_error.duplicate"));
                return None;
            }
        };
        let negative = text.starts_with('-') && text.len() > 1;
        let digits = text.strip_prefix('-').unwrap_or(&text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(problem(
                &loc,
                "value is not a valid integer",
                "type_error.integer",
            ));
            return None;
        }
        let value = if negative { None } else { digits.parse::<u64>().ok() };
        match value {
            Some(value) if (minimum..=maximum).contains(&value) => Some(value),
            Some(value) if value > maximum => {
                problems.push(problem(
                    &loc,
                    format!("ensure this value is less than or equal to {maximum}"),
                    "value_error.number.not_le",
                ));
                None
            }
            None if !negative => {
                problems.push(problem(
                    &loc,
                    format!("ensure this value is less than or equal to {maximum}"),
                    "value_error.number.not_le",
                ));
                None
            }
            _ => {
                problems.push(problem(
                    &loc,
                    format!("ensure this value is greater than or equal to {minimum}"),
                    "value_error.number.not_ge",
                ));
                None
            }
        }
    };
    let start = number("start", 0, u64::MAX, 0);
    let page_size = number(
        "page_size",
        1,
        PAGE_SIZE_MAX as u64,
        PAGE_SIZE_DEFAULT as u64,
    );
    for parameter in query.rest() {
        problems.push(extra("query", &parameter));
    }
    match (start, page_size) {
        (Some(start), Some(page_size)) if problems.is_empty() => {
            // page_size ≤ PAGE_SIZE_MAX, a usize.
            Ok((start, page_size as usize))
        }
        _ => Err(problems),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Option<AmountInput> {
        Some(AmountInput::Text(value.to_string()))
    }

    #[test]
    fn whole_numbers_are_read_exactly_from_their_text() {
        let table: &[(&str, Option<AmountInput>)] = &[
            ("69", text("69")),
            ("69.0", text("69")),
            ("69.000", text("69")),
            ("6.9e1", text("69")),
            ("690E-1", text("69")),
            ("1e9", text("1000000000")),
            ("0", text("0")),
            ("-0", text("0")),
            ("0.0e-7", text("0")),
            ("-5", text("-5")),
            ("999999999", text("999999999")),
            ("69.5", None),
            ("0.01", None),
            ("1e-1", None),
            ("1e99999999999999999999", Some(AmountInput::TooLarge)),
            ("1e-99999999999999999999", None),
            ("123456789012345678901234567890", Some(AmountInput::TooLarge)),
            ("1e18", Some(AmountInput::TooLarge)),
            ("1e17", text("100000000000000000")),
        ];
        for (number, expected) in table {
            assert_eq!(whole_number(number), *expected, "{number}");
        }
    }

    fn input(body: &str, query: Option<&str>) -> Result<OrderInput, Vec<(String, String)>> {
        order_input(body.as_bytes(), query).map_err(|problems| {
            problems
                .into_iter()
                .map(|problem| {
                    let loc = serde_json::to_string(&problem.loc).expect("serializes");
                    (loc, problem.kind)
                })
                .collect()
        })
    }

    fn order(currency: &str, amount: &str) -> Result<OrderInput, Vec<(String, String)>> {
        Ok(OrderInput {
            currency: currency.into(),
            amount: AmountInput::Text(amount.into()),
        })
    }

    fn problems(list: &[(&str, &str)]) -> Result<OrderInput, Vec<(String, String)>> {
        Err(list
            .iter()
            .map(|(loc, kind)| (loc.to_string(), kind.to_string()))
            .collect())
    }

    #[test]
    fn order_input_reads_the_body_or_the_query_and_lists_every_problem() {
        let table: &[(&str, Option<&str>, Result<OrderInput, Vec<(String, String)>>)] = &[
            (r#"{"currency":"eur","amount":69}"#, None, order("eur", "69")),
            (r#"{"amount":"69.50","currency":"GBP"}"#, None, order("GBP", "69.50")),
            (r#"{"currency":"usd","amount":-3}"#, None, order("usd", "-3")),
            ("", Some("currency=eur&amount=69"), order("eur", "69")),
            (" \n", Some("amount=0.5&currency=gpb"), order("gpb", "0.5")),
            ("", None, problems(&[(r#"["body"]"#, "value_error.missing")])),
            (
                "{}",
                None,
                problems(&[
                    (r#"["body","currency"]"#, "value_error.missing"),
                    (r#"["body","amount"]"#, "value_error.missing"),
                ]),
            ),
            (
                r#"{"currency":5,"amount":69.5,"colour":"red"}"#,
                None,
                problems(&[
                    (r#"["body","currency"]"#, "type_error.str"),
                    (r#"["body","amount"]"#, "type_error.integer"),
                    (r#"["body","colour"]"#, "value_error.extra"),
                ]),
            ),
            (
                r#"{"currency":null,"amount":null}"#,
                None,
                problems(&[
                    (r#"["body","currency"]"#, "type_error.none.not_allowed"),
                    (r#"["body","amount"]"#, "type_error.none.not_allowed"),
                ]),
            ),
            (
                r#"{"currency":"eur","amount":"69.001"}"#,
                None,
                problems(&[(r#"["body","amount"]"#, "type_error.integer")]),
            ),
            (
                r#"{"currency":"eur","amount":true}"#,
                None,
                problems(&[(r#"["body","amount"]"#, "type_error.integer")]),
            ),
            ("{", None, problems(&[(r#"["body",1]"#, "value_error.jsondecode")])),
            (
                r#"{"currency":"eur","currency":"usd","amount":1}"#,
                None,
                problems(&[(r#"["body"]"#, "value_error.jsondecode")]),
            ),
            ("[]", None, problems(&[(r#"["body"]"#, "type_error.dict")])),
            ("\"eur\"", None, problems(&[(r#"["body"]"#, "type_error.dict")])),
            (
                r#"{"currency":"eur","amount":69}"#,
                Some("amount=70"),
                problems(&[(r#"["query","amount"]"#, "value_error.extra")]),
            ),
            (
                "",
                Some("currency=eur"),
                problems(&[(r#"["query","amount"]"#, "value_error.missing")]),
            ),
            (
                "",
                Some("currency=eur&amount=1&amount=2&x=1"),
                problems(&[
                    (r#"["query","amount"]"#, "value_error.duplicate"),
                    (r#"["query","x"]"#, "value_error.extra"),
                ]),
            ),
            (
                "",
                Some("currency=eur&amount=lots"),
                problems(&[(r#"["query","amount"]"#, "type_error.integer")]),
            ),
            ("", Some("a=%zz"), problems(&[(r#"["query"]"#, "value_error.query")])),
        ];
        for (body, query, expected) in table {
            assert_eq!(input(body, *query), *expected, "{body:?} ?{query:?}");
        }
    }

    #[test]
    fn page_input_has_defaults_bounds_and_pydantic_words() {
        let kinds = |query: &str| -> Result<(u64, usize), Vec<String>> {
            page_input(Some(query)).map_err(|problems| {
                problems
                    .into_iter()
                    .map(|problem| problem.kind)
                    .collect()
            })
        };
        assert_eq!(page_input(None).map_err(|_| ()), Ok((0, 10)));
        assert_eq!(kinds("start=20&page_size=500"), Ok((20, 500)));
        assert_eq!(
            kinds("start=18446744073709551615"),
            Ok((u64::MAX, PAGE_SIZE_DEFAULT))
        );
        for (query, kind) in [
            ("start=-1", "value_error.number.not_ge"),
            ("page_size=0", "value_error.number.not_ge"),
            ("page_size=501", "value_error.number.not_le"),
            ("start=18446744073709551616", "value_error.number.not_le"),
            ("start=x", "type_error.integer"),
            ("start=1.5", "type_error.integer"),
            ("start=", "type_error.integer"),
            ("start=-", "type_error.integer"),
            ("limit=5", "value_error.extra"),
            ("start=1&start=2", "value_error.duplicate"),
        ] {
            assert_eq!(kinds(query), Err(vec![kind.to_string()]), "{query}");
        }
    }
}
