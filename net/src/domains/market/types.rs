//! The market routes' request and response bodies (the handlers' types and the document's
//! schemas). Money is text: amounts with exactly 2 decimals, BTC with exactly 8, rates as
//! decimals without trailing zeros; never a JSON number.
//!
//! Invariant: response types have `#[serde(deny_unknown_fields)]` (`additionalProperties:
//! false`), so the tests' response validation catches a field the document lacks.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use switchyard_engine::market::money::{format_cents, format_sats};
use switchyard_engine::market::{Currency, Level, Order, Quote, Report};
use utoipa::ToSchema;

use crate::http::{NextCursor, Timestamp};
use crate::json;

/// `POST /api/v1/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PlaceOrderRequest)]
pub struct PlaceOrderRequest {
    /// EUR, GBP or USD, in any case; another currency is 422 `unsupported_currency`.
    #[schema(pattern = "^([Ee][Uu][Rr]|[Gg][Bb][Pp]|[Uu][Ss][Dd])$", examples("EUR"))]
    pub currency: String,
    /// A decimal string with at most 2 decimals, above 0 and below 1,000,000,000 (else 422
    /// `amount_out_of_range`); a JSON number is 400 `invalid_field`.
    #[schema(
        pattern = r"^0*([1-9][0-9]{0,8}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?))$",
        examples("69.00")
    )]
    pub amount: String,
}

/// A currency code, upper case.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum CurrencyCode {
    Eur,
    Gbp,
    Usd,
}

impl From<Currency> for CurrencyCode {
    fn from(currency: Currency) -> CurrencyCode {
        match currency {
            Currency::Eur => CurrencyCode::Eur,
            Currency::Gbp => CurrencyCode::Gbp,
            Currency::Usd => CurrencyCode::Usd,
        }
    }
}

/// A buy order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Order)]
pub struct OrderBody {
    pub id: u64,
    /// The user who placed it.
    pub user_id: u64,
    pub currency: CurrencyCode,
    /// Fiat amount, exactly 2 decimals.
    #[schema(pattern = r"^[0-9]+\.[0-9]{2}$", examples("69.00"))]
    pub amount: String,
    /// Fiat per BTC, the rate the order used.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$", examples("55890.2"))]
    pub exchange_rate: String,
    /// `amount / exchange_rate`, rounded up at 8 decimals.
    #[schema(pattern = r"^[0-9]+\.[0-9]{8}$", examples("0.00123457"))]
    pub btc_amount: String,
    pub created_at: Timestamp,
    /// When the price it used was read.
    pub price_at: Timestamp,
}

impl From<Order> for OrderBody {
    fn from(order: Order) -> OrderBody {
        OrderBody {
            id: order.id,
            user_id: order.user_id,
            currency: order.currency.into(),
            amount: format_cents(order.amount_cents),
            exchange_rate: order.rate.to_string(),
            btc_amount: format_sats(order.btc_sats),
            created_at: Timestamp::from_ms(order.created_at_ms),
            price_at: Timestamp::from_ms(order.price_at_ms),
        }
    }
}

/// A page of orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderPage {
    pub items: Vec<OrderBody>,
    pub next_cursor: NextCursor,
}

/// The rates of a price, fiat per BTC.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceRates {
    #[serde(rename = "EUR")]
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub eur: String,
    #[serde(rename = "GBP")]
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub gbp: String,
    #[serde(rename = "USD")]
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub usd: String,
}

/// The current BTC price.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub rates: PriceRates,
    /// `simulated`, `fixed`, or the URL of the document read.
    pub source: String,
    pub updated_at: Timestamp,
}

impl From<Quote> for Price {
    fn from(quote: Quote) -> Price {
        Price {
            rates: PriceRates {
                eur: quote.rates.eur.to_string(),
                gbp: quote.rates.gbp.to_string(),
                usd: quote.rates.usd.to_string(),
            },
            source: quote.source,
            updated_at: Timestamp::from_ms(quote.at_ms),
        }
    }
}

/// A health report's level.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl FromStr for HealthLevel {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<HealthLevel, &'static str> {
        match Level::parse(text) {
            Some(level) => Ok(level.into()),
            None => Err("one of debug, info, warning, error, critical"),
        }
    }
}

impl From<Level> for HealthLevel {
    fn from(level: Level) -> HealthLevel {
        match level {
            Level::Debug => HealthLevel::Debug,
            Level::Info => HealthLevel::Info,
            Level::Warning => HealthLevel::Warning,
            Level::Error => HealthLevel::Error,
            Level::Critical => HealthLevel::Critical,
        }
    }
}

impl From<HealthLevel> for Level {
    fn from(level: HealthLevel) -> Level {
        match level {
            HealthLevel::Debug => Level::Debug,
            HealthLevel::Info => Level::Info,
            HealthLevel::Warning => Level::Warning,
            HealthLevel::Error => Level::Error,
            HealthLevel::Critical => Level::Critical,
        }
    }
}

/// `POST /api/v1/health/reports` (the original's `/report`, kept).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = HealthReportRequest)]
pub struct HealthReportRequest {
    #[serde(deserialize_with = "json::string_of")]
    pub level: HealthLevel,
    /// Who reports, 1 to 200 characters (`market.health_name_max_chars`), no control
    /// characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    pub service: String,
    /// What it says, 1 to 200 characters (`market.health_name_max_chars`), no control
    /// characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    pub status: String,
    /// Free text, at most 8192 characters (`market.health_data_max_chars`).
    #[schema(max_length = 8192)]
    pub data: String,
}

/// A health report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    pub id: u64,
    pub level: HealthLevel,
    pub service: String,
    pub status: String,
    pub data: String,
    pub at: Timestamp,
}

impl From<Report> for HealthReport {
    fn from(report: Report) -> HealthReport {
        HealthReport {
            id: report.id,
            level: report.level.into(),
            service: report.service,
            status: report.status,
            data: report.data,
            at: Timestamp::from_ms(report.at_ms),
        }
    }
}

/// A page of health reports, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthReportPage {
    pub items: Vec<HealthReport>,
    pub next_cursor: NextCursor,
}

/// What the order book's self-check found.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarketCheck {
    /// Each invariant that does not hold, in words; empty when the book is sound.
    pub differences: Vec<String>,
}
