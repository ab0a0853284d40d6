//! Reading the original's input the original's way: FastAPI with pydantic v1 validated the whole
//! request and answered 422 `{"detail": [...]}` listing every problem (the fields in order, then
//! the extra ones), where serde stops at the first; so the bodies and queries of the market's
//! compat routes are read here field by field. What passes has the right shape; the engine's
//! rules (`OrderRequest::parse`) still decide the values.
//!
//! Decisions (also in the document's section): `amount` is a JSON whole number, read exactly
//! from its text (`69`, `69.0`, `6.9e1`; `69.5` is 422, where pydantic truncated it), or a
//! decimal string with at most 2 decimals; `currency` a JSON string; unknown fields, duplicated
//! keys, and query parameters beside a JSON body are 422 (pydantic ignored the first, Python's
//! JSON kept the last of the second).

use serde_json::value::RawValue;

use super::types::{FastApiErrorDetail, FastApiLoc};
use super::{PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX};
use crate::http::Query;
use crate::json;

/// What `POST /place_order` was given, once its shape is right.
#[derive(Debug, PartialEq, Eq)]
pub struct OrderInput {
    pub currency: String,
    pub amount: AmountInput,
}

/// An amount whose shape is right: text for `OrderRequest::parse` (`"69"`, `"-5"`, `"69.50"`),
/// or a whole number too long to be any amount (`1e30`).
#[derive(Debug, PartialEq, Eq)]
pub enum AmountInput {
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
pub fn order_input(body: &[u8], query: Option<&str>) -> Result<OrderInput, Vec<FastApiErrorDetail>> {
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

/// `start` and `page_size`, or every problem with them.
pub fn page_input(query: Option<&str>) -> Result<(u64, usize), Vec<FastApiErrorDetail>> {
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

    /// The input, or each problem's `(loc as JSON, type)`.
    type Read = Result<OrderInput, Vec<(String, String)>>;

    fn input(body: &str, query: Option<&str>) -> Read {
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

    fn order(currency: &str, amount: &str) -> Read {
        Ok(OrderInput {
            currency: currency.into(),
            amount: AmountInput::Text(amount.into()),
        })
    }

    fn problems(list: &[(&str, &str)]) -> Read {
        Err(list
            .iter()
            .map(|(loc, kind)| (loc.to_string(), kind.to_string()))
            .collect())
    }

    #[test]
    fn order_input_reads_the_body_or_the_query_and_lists_every_problem() {
        let table: &[(&str, Option<&str>, Read)] = &[
            (r#"{"currency":"eur","amount":69}"#, None, order("eur", "69")),
            (r#"{"amount":"69.50","currency":"GBP"}"#, None, order("GBP", "69.50")),
            (r#"{"currency":"usd","amount":-3}"#, None, order("usd", "-3")),
            (
                r#"{"currency":"usd","amount":1e400}"#,
                None,
                Ok(OrderInput {
                    currency: "usd".into(),
                    amount: AmountInput::TooLarge,
                }),
            ),
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
