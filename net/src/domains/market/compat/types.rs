//! The bodies of the market's compatibility routes, shaped as the original services sent them
//! (ORIGINALS.md §2) and described to the document by the same types. Upper-case row keys,
//! `{"data": ...}` wrappers and FastAPI's `{"detail": [...]}` are the original's, not this API's
//! conventions.
//!
//! Invariant: money in a row is written as a JSON number with the exact decimal text the engine
//! keeps (`69.00`, `55890.2`, `0.00123457`), through [`Decimal`]; no binary float ever holds it.
//! Response types have `#[serde(deny_unknown_fields)]` (`additionalProperties: false`), so the
//! tests' response validation catches a field the document lacks.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use switchyard_engine::market::money::{format_cents, format_sats};
use switchyard_engine::market::Order;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::super::types::CurrencyCode;

/// `POST /place_order`'s JSON body, for the document: `{"currency": str, "amount": int}`. The
/// handler reads it field by field (`compat::order_input`), because FastAPI's 422 lists every
/// problem at once where serde stops at the first, so no value of this type is ever made.
pub struct PlaceOrderBody;

impl PartialSchema for PlaceOrderBody {
    fn schema() -> RefOr<Schema> {
        let amount = OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some(
                        "A whole number (`69`, also `69.0` or `6.9e1`: what JSON Schema calls \
                         an integer). A number with a fractional part is 422: the original \
                         truncated it silently.",
                    )),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^-?[0-9]+(\.[0-9]{1,2})?$"))
                    .description(Some(
                        "A decimal string with at most 2 decimals (`\"69\"`, `\"69.50\"`), as \
                         the native API takes it.",
                    )),
            )
            .description(Some(
                "Above 0 and below 1,000,000,000, else 406 `\"Requested amount exceeds \
                 limit\"`.",
            ));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "currency",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .examples(["eur"])
                    .description(Some(
                        "EUR, GBP or USD in any case; anything else is 406 `\"Requested \
                         currency unsupported\"`.",
                    )),
            )
            .property("amount", Schema::OneOf(amount.build()))
            .required("currency")
            .required("amount")
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(
                false,
            )))
            .description(Some(
                "The original's order body. Unknown fields and duplicated keys are 422 (the \
                 original ignored the first and kept the last of the second).",
            ))
            .into()
    }
}

impl ToSchema for PlaceOrderBody {
    fn name() -> Cow<'static, str> {
        "CompatPlaceOrderRequest".into()
    }
}

/// 201 of `POST /place_order`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatOrderPlaced {
    /// `Order was placed for <CURRENCY>:<amount>`, the amount as Python's `{amount:_.2f}`
    /// writes it (`1_000_000.00`).
    #[schema(
        pattern = r"^Order was placed for (EUR|GBP|USD):[0-9]{1,3}(_[0-9]{3})*\.[0-9]{2}$",
        examples("Order was placed for EUR:69.00")
    )]
    pub data: String,
}

/// 200 of `GET /get_orders/`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatOrderPage {
    /// The compatibility user's orders, newest first.
    pub data: Vec<CompatOrderRow>,
    /// Only when the page is full: the URL of the next page, a plain string
    /// (`http://<Host>/get_orders/?start=<start + page_size>&page_size=<page_size>`, built from
    /// the request's `Host`; a path alone when the request has no usable `Host`).
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        examples("http://127.0.0.1:8080/get_orders/?start=10&page_size=10")
    )]
    pub links: Option<String>,
}

/// One order as the original's `db_proxy` listed it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatOrderRow {
    /// Derived from the order id, stable and reversible: a version-8 UUID holding the id in
    /// hex, its low 48 bits as the last group, the next 12 after the version digit `8`, the top
    /// 4 after the variant digits `800`; so id 69 is `00000000-0000-8000-8000-000000000045`.
    #[serde(rename = "UUID")]
    #[schema(
        format = "uuid",
        pattern = r"^00000000-0000-8[0-9a-f]{3}-800[0-9a-f]-[0-9a-f]{12}$"
    )]
    pub uuid: String,
    /// When the order was placed, UTC, as Python's `str(datetime)`: microseconds only when
    /// not zero (`2021-06-20 19:15:15.782000`, `2021-06-20 19:15:15`).
    #[serde(rename = "TIMESTAMP")]
    #[schema(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?$",
        examples("2021-06-20 19:15:15.782000")
    )]
    pub timestamp: String,
    /// The fiat amount, exactly 2 decimals.
    #[serde(rename = "AMOUNT")]
    pub amount: Decimal,
    #[serde(rename = "CURRENCY")]
    pub currency: CurrencyCode,
    /// Fiat per BTC, the rate the order used.
    #[serde(rename = "EXCHANGE_RATE")]
    pub exchange_rate: Decimal,
    /// `AMOUNT / EXCHANGE_RATE` rounded up at 8 decimals (the original did not round).
    #[serde(rename = "BITCOIN_AMOUNT")]
    pub bitcoin_amount: Decimal,
}

impl CompatOrderRow {
    pub fn new(order: &Order) -> CompatOrderRow {
        CompatOrderRow {
            uuid: order_uuid(order.id),
            timestamp: python_datetime(order.created_at_ms),
            amount: Decimal::new(format_cents(order.amount_cents)),
            currency: order.currency.into(),
            exchange_rate: Decimal::new(order.rate.to_string()),
            bitcoin_amount: Decimal::new(format_sats(order.btc_sats)),
        }
    }
}

/// The UUID of order `id` (see [`CompatOrderRow::uuid`]): bits 0..48 of the id in the last
/// group, bits 48..60 after the version nibble, bits 60..64 after the variant nibble.
pub fn order_uuid(id: u64) -> String {
    format!(
        "00000000-0000-8{:03x}-800{:x}-{:012x}",
        (id >> 48) & 0xfff,
        id >> 60,
        id & 0xffff_ffff_ffff
    )
}

/// `ms` after the epoch as Python's `str(datetime)` of a naive UTC datetime.
pub fn python_datetime(ms: switchyard_engine::clock::Millis) -> String {
    // `rfc3339` is `YYYY-MM-DDTHH:MM:SSZ`.
    let text = switchyard_engine::clock::rfc3339(ms).replacen('T', " ", 1);
    let seconds = text.trim_end_matches('Z');
    match ms % 1000 {
        0 => seconds.to_string(),
        millis => format!("{seconds}.{:06}", millis * 1000),
    }
}

/// Cents as Python's `format(amount, "_.2f")`: `100000000` → `1_000_000.00`.
pub fn python_amount(cents: u64) -> String {
    let whole = (cents / 100).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index).is_multiple_of(3) {
            grouped.push('_');
        }
        grouped.push(digit);
    }
    format!("{grouped}.{:02}", cents % 100)
}

/// A decimal written as a JSON number with its exact text (`0.00123457`), never through a
/// binary float.
#[derive(Debug)]
pub struct Decimal(Box<RawValue>);

impl Decimal {
    /// `text` must be a JSON number (the engine's formats are: digits, a point, digits).
    fn new(text: String) -> Decimal {
        // Invariant: `format_cents`, `format_sats` and `Rate`'s `Display` write plain decimals
        // (no sign, no exponent, no leading zero but the one before the point), valid JSON
        // numbers; a failure here is a bug in them.
        let raw = RawValue::from_string(text).expect("the engine's decimals are JSON numbers");
        Decimal(raw)
    }
}

impl Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl PartialSchema for Decimal {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0))
            .description(Some(
                "A decimal as a JSON number, written with its exact digits (`69.00`, \
                 `55890.2`, `0.00123457`): read it as a decimal, not a double, to keep them.",
            ))
            .into()
    }
}

impl ToSchema for Decimal {
    fn name() -> Cow<'static, str> {
        "CompatDecimal".into()
    }
}

/// 422: FastAPI's validation error, `{"detail": [...]}`, every problem of the request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FastApiValidationError {
    pub detail: Vec<FastApiErrorDetail>,
}

/// One problem of a request, as pydantic v1 reports it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FastApiErrorDetail {
    /// Where: `["body"]`, `["body", "amount"]`, `["body", <position>]` for malformed JSON,
    /// `["query", "start"]`.
    pub loc: Vec<FastApiLoc>,
    /// What, for people.
    #[schema(examples("field required"))]
    pub msg: String,
    /// pydantic's error type (`value_error.missing`, `type_error.integer`,
    /// `value_error.extra`, `value_error.jsondecode`, ...).
    #[serde(rename = "type")]
    #[schema(examples("value_error.missing"))]
    pub kind: String,
}

/// One step of a problem's `loc`: a name, or a byte position in the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum FastApiLoc {
    Name(String),
    Position(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_hold_the_id_and_have_the_uuid_shape() {
        assert_eq!(order_uuid(69), "00000000-0000-8000-8000-000000000045");
        assert_eq!(order_uuid(u64::MAX), "00000000-0000-8fff-800f-ffffffffffff");
        assert_eq!(
            order_uuid(0x1234_5678_9abc_def0),
            "00000000-0000-8234-8001-56789abcdef0"
        );
        for id in [0, 1, 1 << 48, 1 << 60, u64::MAX] {
            let uuid = order_uuid(id);
            let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
        }
    }

    #[test]
    fn times_and_amounts_read_as_python_writes_them() {
        assert_eq!(python_datetime(1_624_216_515_782), "2021-06-20 19:15:15.782000");
        assert_eq!(python_datetime(1_624_216_515_000), "2021-06-20 19:15:15");
        assert_eq!(python_datetime(1), "1970-01-01 00:00:00.001000");
        for (cents, text) in [
            (6900, "69.00"),
            (1, "0.01"),
            (99_950, "999.50"),
            (100_000, "1_000.00"),
            (100_000_000, "1_000_000.00"),
            (99_999_999_999, "999_999_999.99"),
        ] {
            assert_eq!(python_amount(cents), text);
        }
    }
}
