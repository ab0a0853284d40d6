//! Wire helpers every handler uses: reading a request body within its limits, the strict JSON
//! object reader [`Fields`], query strings ([`Query`], [`Page`]) and JSON responses.
//!
//! Invariants:
//! - A body is never held beyond `limits.max_body_bytes`: a declared `Content-Length` over the
//!   limit is refused before reading, and a chunked body is refused as soon as the running total
//!   passes it. The whole body must arrive within `limits.body_read_timeout_ms` (else 408).
//! - Handlers reject unknown fields: every [`Fields`] and [`Query`] ends with `finish()`, which
//!   fails with `unknown_field` naming a key no accessor consumed.
//! - Field errors always carry `"field"`: `missing_field` when absent, `invalid_field` when
//!   present with the wrong type or range (including `null` for a required field).
//! - A JSON object with a duplicated key, at any depth, is `invalid_json`: no "last one wins".
//! - An integer field takes what JSON Schema calls an integer: a number without a fractional
//!   part, so `3`, `3.0` and `3e0` are the same 3 (a schema-driven client may send any of them).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::error::{ApiError, Response};

/// `limit` when a list request gives none.
pub const PAGE_LIMIT_DEFAULT: usize = 50;
/// Largest `limit` a list request may ask for; above it is 400 `invalid_field`.
pub const PAGE_LIMIT_MAX: usize = 500;

/// Reads a whole request body, refusing it (413) once it is over `max_bytes` and (408) when it
/// has not fully arrived after `timeout`.
pub async fn read_body<B>(mut body: B, max_bytes: u64, timeout: Duration) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    // hyper reports a declared Content-Length as an exact size hint: refuse before reading.
    if body.size_hint().lower() > max_bytes {
        return Err(ApiError::body_too_large(max_bytes));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total_bytes: u64 = 0;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::request_timeout()),
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("reading the request body failed: {error}"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry no body bytes
        };
        total_bytes += data.len() as u64;
        if total_bytes > max_bytes {
            return Err(ApiError::body_too_large(max_bytes));
        }
        // The common case is one frame: keep it without copying.
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(head), None) => {
                let mut buffer = BytesMut::with_capacity(head.len() + data.len());
                buffer.extend_from_slice(head);
                buffer.extend_from_slice(&data);
                rest = Some(buffer);
            }
            (Some(_), Some(buffer)) => buffer.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buffer)) => buffer.freeze(),
        (Some(head), None) => head,
        (None, None) => Bytes::new(),
    })
}

/// A JSON object from a request body, read one field at a time. Each accessor removes its field;
/// [`Fields::finish`] rejects whatever is left. Field names in errors are dotted paths for nested
/// objects (`when.noun`).
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
    /// Path of this object inside the body, `""` at the top.
    prefix: String,
}

impl Fields {
    /// Parses a body that must be a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<Fields, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid_json(
                "the body is empty; expected a JSON object",
            ));
        }
        let StrictValue(value) = serde_json::from_slice(bytes)
            .map_err(|error| ApiError::invalid_json(format!("malformed JSON: {error}")))?;
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                prefix: String::new(),
            }),
            _ => Err(ApiError::invalid_json("the body must be a JSON object")),
        }
    }

    /// As [`Fields::parse`], but an empty body is an empty object (routes whose body is optional).
    pub fn parse_or_empty(bytes: &[u8]) -> Result<Fields, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields {
                map: Map::new(),
                prefix: String::new(),
            });
        }
        Fields::parse(bytes)
    }

    /// A nested object (an array element, say) as `Fields`; `path` names it in errors
    /// (`items[3]`). A non-object is `invalid_field` at `path`.
    pub fn from_value(value: Value, path: &str) -> Result<Fields, ApiError> {
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                prefix: path.to_string(),
            }),
            _ => Err(ApiError::invalid_field(path, "must be an object")),
        }
    }

    fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn take_required(&mut self, name: &str) -> Result<Value, ApiError> {
        self.map
            .remove(name)
            .ok_or_else(|| ApiError::missing_field(&self.path(name)))
    }

    /// Absent and `null` are both `None`.
    fn take_optional(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|value| !value.is_null())
    }

    fn invalid(&self, name: &str, what: &str) -> ApiError {
        ApiError::invalid_field(&self.path(name), what)
    }

    fn as_u64(&self, name: &str, value: &Value) -> Result<u64, ApiError> {
        integer(value)
            .and_then(|number| u64::try_from(number).ok())
            .ok_or_else(|| self.invalid(name, "must be an unsigned 64-bit integer"))
    }

    fn as_u32(&self, name: &str, value: &Value) -> Result<u32, ApiError> {
        integer(value)
            .and_then(|number| u32::try_from(number).ok())
            .ok_or_else(|| self.invalid(name, "must be an unsigned 32-bit integer"))
    }

    fn as_i64(&self, name: &str, value: &Value) -> Result<i64, ApiError> {
        integer(value)
            .and_then(|number| i64::try_from(number).ok())
            .ok_or_else(|| self.invalid(name, "must be a signed 64-bit integer"))
    }

    fn as_bool(&self, name: &str, value: &Value) -> Result<bool, ApiError> {
        value
            .as_bool()
            .ok_or_else(|| self.invalid(name, "must be true or false"))
    }

    fn string_value(&self, name: &str, value: Value) -> Result<String, ApiError> {
        match value {
            Value::String(text) => Ok(text),
            _ => Err(self.invalid(name, "must be a string")),
        }
    }

    pub fn required_u64(&mut self, name: &str) -> Result<u64, ApiError> {
        let value = self.take_required(name)?;
        self.as_u64(name, &value)
    }

    pub fn optional_u64(&mut self, name: &str) -> Result<Option<u64>, ApiError> {
        self.take_optional(name)
            .map(|value| self.as_u64(name, &value))
            .transpose()
    }

    pub fn optional_u32(&mut self, name: &str) -> Result<Option<u32>, ApiError> {
        self.take_optional(name)
            .map(|value| self.as_u32(name, &value))
            .transpose()
    }

    pub fn required_i64(&mut self, name: &str) -> Result<i64, ApiError> {
        let value = self.take_required(name)?;
        self.as_i64(name, &value)
    }

    pub fn optional_i64(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        self.take_optional(name)
            .map(|value| self.as_i64(name, &value))
            .transpose()
    }

    pub fn required_bool(&mut self, name: &str) -> Result<bool, ApiError> {
        let value = self.take_required(name)?;
        self.as_bool(name, &value)
    }

    pub fn optional_bool(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        self.take_optional(name)
            .map(|value| self.as_bool(name, &value))
            .transpose()
    }

    pub fn required_str(&mut self, name: &str) -> Result<String, ApiError> {
        let value = self.take_required(name)?;
        self.string_value(name, value)
    }

    pub fn optional_str(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        self.take_optional(name)
            .map(|value| self.string_value(name, value))
            .transpose()
    }

    /// A required array, returned as raw values (pair with [`Fields::from_value`] for objects).
    pub fn required_array(&mut self, name: &str) -> Result<Vec<Value>, ApiError> {
        match self.take_required(name)? {
            Value::Array(items) => Ok(items),
            _ => Err(self.invalid(name, "must be an array")),
        }
    }

    pub fn optional_array(&mut self, name: &str) -> Result<Option<Vec<Value>>, ApiError> {
        match self.take_optional(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(self.invalid(name, "must be an array")),
        }
    }

    /// A required nested object; its own `finish()` must be called too.
    pub fn required_object(&mut self, name: &str) -> Result<Fields, ApiError> {
        let value = self.take_required(name)?;
        Fields::from_value(value, &self.path(name))
    }

    pub fn optional_object(&mut self, name: &str) -> Result<Option<Fields>, ApiError> {
        let path = self.path(name);
        self.take_optional(name)
            .map(|value| Fields::from_value(value, &path))
            .transpose()
    }

    /// Any JSON value, unchecked (free-form `properties`, `data`).
    pub fn optional_value(&mut self, name: &str) -> Option<Value> {
        self.take_optional(name)
    }

    pub fn required_value(&mut self, name: &str) -> Result<Value, ApiError> {
        self.take_required(name)
    }

    /// Fails with `unknown_field` naming the first key (in key order) no accessor consumed.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(name) => Err(ApiError::unknown_field(&self.path(name))),
        }
    }
}

/// Magnitude below which every integral double is exactly the integer its literal wrote.
const EXACT_FLOAT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53

/// The integer a JSON number denotes, when it has no fractional part (JSON Schema's `integer`:
/// `3.0` and `3e0` are 3). A number in float notation counts only below 2^53 in magnitude:
/// beyond, the double may not be what the client wrote (`-9223372036854775809` arrives as the
/// double -2^63, which would pass for `i64::MIN`), so it is refused as out of range. Integers
/// written as integers are exact up to the u64 / i64 limits.
fn integer(value: &Value) -> Option<i128> {
    let number = match value {
        Value::Number(number) => number,
        _ => return None,
    };
    if let Some(unsigned) = number.as_u64() {
        return Some(i128::from(unsigned));
    }
    if let Some(signed) = number.as_i64() {
        return Some(i128::from(signed));
    }
    let float = number.as_f64()?;
    (float.fract() == 0.0 && float.abs() < EXACT_FLOAT_INTEGER_LIMIT).then_some(float as i128)
}

/// A JSON value parsed like `serde_json::Value`, except that an object with a duplicated key is
/// an error (serde_json keeps the last one, so `{"email": a, "email": b}` would register `b`).
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let StrictValue(value) = access.next_value()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// One page request: `?limit=N&cursor=C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// 1..=[`PAGE_LIMIT_MAX`], default [`PAGE_LIMIT_DEFAULT`].
    pub limit: usize,
    /// Opaque; the domain that issued it decodes it.
    pub cursor: Option<String>,
}

/// A parsed query string, read one parameter at a time like [`Fields`].
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `a=1&b=two`; names and values are percent-decoded (`+` is a space).
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|part| !part.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let decode = |text: &str| {
                percent_decode(text, true).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        "the query string is not valid percent-encoded UTF-8",
                    )
                })
            };
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Query { pairs })
    }

    /// Removes the parameter; given twice is `invalid_field`.
    pub fn optional_str(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        let mut found = None;
        let mut index = 0;
        while index < self.pairs.len() {
            if self.pairs[index].0 == name {
                let (_, value) = self.pairs.remove(index);
                if found.is_some() {
                    return Err(ApiError::invalid_field(name, "is given more than once"));
                }
                found = Some(value);
            } else {
                index += 1;
            }
        }
        Ok(found)
    }

    /// Decimal digits only (no sign, no spaces): what a schema's `integer` query value is.
    pub fn optional_u64(&mut self, name: &str) -> Result<Option<u64>, ApiError> {
        self.optional_str(name)?
            .map(|value| {
                value
                    .bytes()
                    .all(|byte| byte.is_ascii_digit())
                    .then(|| value.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| {
                        ApiError::invalid_field(name, "must be an unsigned 64-bit integer")
                    })
            })
            .transpose()
    }

    pub fn optional_bool(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        self.optional_str(name)?
            .map(|value| match value.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::invalid_field(name, "must be true or false")),
            })
            .transpose()
    }

    /// `limit` (default 50, 1..=500, else `invalid_field`) and `cursor`.
    pub fn page(&mut self) -> Result<Page, ApiError> {
        let limit = match self.optional_u64("limit")? {
            None => PAGE_LIMIT_DEFAULT,
            Some(limit) if (1..=PAGE_LIMIT_MAX as u64).contains(&limit) => limit as usize,
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "limit",
                    "must be between 1 and 500",
                ))
            }
        };
        let cursor = self
            .optional_str("cursor")?
            .filter(|cursor| !cursor.is_empty());
        Ok(Page { limit, cursor })
    }

    /// Fails with `unknown_field` naming the first parameter no accessor consumed.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.pairs.first() {
            None => Ok(()),
            Some((name, _)) => Err(ApiError::unknown_field(name)),
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); `None` on a bad escape or
/// invalid UTF-8.
pub fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    if !text
        .bytes()
        .any(|b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return Some(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes.get(index + 1..index + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A JSON response. Serializing our own view types cannot fail short of a bug; if it does, the
/// bug is logged and the client gets 500.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, "application/json", Bytes::from(body)),
        Err(error) => {
            tracing::error!(%error, "serializing a response failed");
            ApiError::internal().into_response()
        }
    }
}

/// A response with the given content type.
pub fn with_body(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A response with no body (204, say).
pub fn empty(status: StatusCode) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, expected_code: Option<&str>, expected_field: Option<&str>) {
        let result = (|| {
            let mut fields = Fields::parse(body.as_bytes())?;
            let _ = fields.required_i64("by")?;
            let _ = fields.optional_u64("mirror_to")?;
            let _ = fields.optional_str("note")?;
            fields.finish()
        })();
        match (result, expected_code) {
            (Ok(()), None) => {}
            (Err(error), Some(code)) => {
                assert_eq!(error.code, code, "{body}: {error:?}");
                assert_eq!(error.field.as_deref(), expected_field, "{body}");
                assert_eq!(error.status, StatusCode::BAD_REQUEST);
            }
            (result, expected) => panic!("{body}: got {result:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn fields_accept_and_reject() {
        check(r#"{"by": 1}"#, None, None);
        check(r#"{"by": -3, "mirror_to": 9, "note": "x"}"#, None, None);
        check(r#"{"by": 1, "mirror_to": null}"#, None, None);
        check(r#"{"by": 1"#, Some("invalid_json"), None);
        check("", Some("invalid_json"), None);
        check("[1]", Some("invalid_json"), None);
        check(r#"{}"#, Some("missing_field"), Some("by"));
        check(r#"{"by": "1"}"#, Some("invalid_field"), Some("by"));
        check(r#"{"by": 1.5}"#, Some("invalid_field"), Some("by"));
        check(r#"{"by": 2.0, "mirror_to": 3e1}"#, None, None);
        check(r#"{"by": -2.0}"#, None, None);
        check(
            r#"{"by": 1, "mirror_to": -1.0}"#,
            Some("invalid_field"),
            Some("mirror_to"),
        );
        check(r#"{"by": 1e300}"#, Some("invalid_field"), Some("by"));
        // Beyond i64: serde_json reads it as the double -2^63, which must not pass for i64::MIN.
        check(
            r#"{"by": -9223372036854775809}"#,
            Some("invalid_field"),
            Some("by"),
        );
        check(r#"{"by": 9007199254740991.0}"#, None, None);
        check(
            r#"{"by": 9007199254740993.0}"#,
            Some("invalid_field"),
            Some("by"),
        );
        check(r#"{"by": -9223372036854775808}"#, None, None);
        // Duplicated keys, at the top or nested, are malformed JSON, not "last one wins".
        check(r#"{"by": 1, "by": 2}"#, Some("invalid_json"), None);
        check(
            r#"{"by": 1, "note": {"a": 1, "a": 1}}"#,
            Some("invalid_json"),
            None,
        );
        check(
            r#"{"by": 1, "note": [{"a": 1, "a": 1}]}"#,
            Some("invalid_json"),
            None,
        );
        check(r#"{"by": null}"#, Some("invalid_field"), Some("by"));
        check(
            r#"{"by": 1, "mirror_to": -1}"#,
            Some("invalid_field"),
            Some("mirror_to"),
        );
        check(r#"{"by": 1, "bye": 2}"#, Some("unknown_field"), Some("bye"));
    }

    #[test]
    fn nested_fields_name_their_path() {
        let mut fields = Fields::parse(br#"{"when": {"noun": 3}}"#).expect("object");
        let mut when = fields.required_object("when").expect("object");
        let error = when.required_str("noun").expect_err("wrong type");
        assert_eq!(error.field.as_deref(), Some("when.noun"));
        let mut fields = Fields::parse(br#"{"when": {"noun": "a", "x": 1}}"#).expect("object");
        let mut when = fields.required_object("when").expect("object");
        when.required_str("noun").expect("string");
        assert_eq!(
            when.finish().expect_err("x").field.as_deref(),
            Some("when.x")
        );
    }

    #[test]
    fn query_pages() {
        let page = |raw: &str| {
            let mut query = Query::parse(Some(raw))?;
            let page = query.page()?;
            query.finish()?;
            Ok::<_, ApiError>(page)
        };
        assert_eq!(page("").expect("default").limit, 50);
        let parsed = page("limit=500&cursor=a%2Bb+c").expect("max");
        assert_eq!(parsed.limit, 500);
        assert_eq!(parsed.cursor.as_deref(), Some("a+b c"));
        for bad in [
            "limit=0",
            "limit=501",
            "limit=x",
            "limit=1&limit=2",
            "limit=+5",
            "limit=5.0",
            "limit=%205",
        ] {
            let error = page(bad).expect_err(bad);
            assert_eq!(
                (error.code, error.field.as_deref()),
                ("invalid_field", Some("limit"))
            );
        }
        let error = page("limit=5&colour=red").expect_err("unknown");
        assert_eq!(
            (error.code, error.field.as_deref()),
            ("unknown_field", Some("colour"))
        );
        assert_eq!(
            Query::parse(Some("a=%zz")).expect_err("bad").code,
            "invalid_query"
        );
        let mut query = Query::parse(Some("zero_likes=true&author_id=7")).expect("parse");
        assert_eq!(query.optional_bool("zero_likes").expect("bool"), Some(true));
        assert_eq!(query.optional_u64("author_id").expect("u64"), Some(7));
        query.finish().expect("all consumed");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn body_limits() {
        let timeout = Duration::from_secs(1);
        let small = Full::new(Bytes::from_static(b"0123456789"));
        assert_eq!(read_body(small, 10, timeout).await.expect("fits").len(), 10);
        let large = Full::new(Bytes::from_static(b"0123456789"));
        let error = read_body(large, 9, timeout).await.expect_err("too large");
        assert_eq!(
            (error.status, error.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
        );

        // A chunked body (no size hint) is cut off while reading.
        let error = read_body(Chunked::of(8), 20, timeout)
            .await
            .expect_err("too large");
        assert_eq!(error.code, "body_too_large");
        assert_eq!(
            read_body(Chunked::of(3), 20, timeout).await.expect("fits"),
            "abcdabcdabcd"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn body_timeout() {
        let (_sender, body) = pending_body();
        let error = read_body(body, 10, Duration::from_millis(50))
            .await
            .expect_err("timeout");
        assert_eq!(
            (error.status, error.code),
            (StatusCode::REQUEST_TIMEOUT, "request_timeout")
        );
    }

    /// A body of `abcd` chunks with no size hint, like a chunked request.
    struct Chunked(usize);

    impl Chunked {
        fn of(count: usize) -> Self {
            Chunked(count)
        }
    }

    impl Body for Chunked {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(None);
            }
            self.0 -= 1;
            let frame = hyper::body::Frame::data(Bytes::from_static(b"abcd"));
            std::task::Poll::Ready(Some(Ok(frame)))
        }
    }

    /// A body that never yields a frame until its sender is dropped.
    fn pending_body() -> (tokio::sync::oneshot::Sender<()>, PendingBody) {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        (sender, PendingBody(receiver))
    }

    struct PendingBody(tokio::sync::oneshot::Receiver<()>);

    impl Body for PendingBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            use std::future::Future;
            match std::pin::Pin::new(&mut self.0).poll(cx) {
                std::task::Poll::Pending => std::task::Poll::Pending,
                std::task::Poll::Ready(_) => std::task::Poll::Ready(None),
            }
        }
    }
}
