//! Typed JSON request bodies: a handler names the body's Rust type (the same type the OpenAPI
//! document describes) and [`parse`] turns the bytes into it with serde, mapping serde's errors
//! to API.md's codes. Who calls: handlers, through `Ctx::json` / `Ctx::json_or_empty`.
//!
//! A body type derives `Deserialize` with `#[serde(deny_unknown_fields)]` and `ToSchema`; its
//! integer fields use [`integer`] / [`optional_integer`], its arrays of objects [`objects`].
//!
//! Invariants (what API.md and the tests fix):
//! - The body must be a JSON object: empty, malformed or anything else is 400 `invalid_json`.
//! - A JSON object with a duplicated key, at any depth, is `invalid_json`: no "last one wins".
//!   serde's derived structs refuse a duplicated field themselves, so the one parse of a body
//!   that succeeds needs no other check; only a body that fails is scanned again for duplicates
//!   ([`has_duplicate_key`]), so that a duplicated key is `invalid_json` whatever else is wrong
//!   with it. A free-form field (`properties`, `data`) must be a [`StrictValue`], which refuses
//!   duplicates too, never a plain `serde_json::Value` (which keeps the last one).
//! - Field errors carry `field`, a dotted path with indices (`items[3].key`): `missing_field`
//!   when absent, `invalid_field` when present with the wrong type or range (`null` for a
//!   required field included), `unknown_field` for a key the type does not take.
//! - A missing or invalid field is reported before an unknown one, whatever the key order (the
//!   precedence of a reader that takes the fields it knows and then refuses the rest).
//! - An object where a struct is expected must be a JSON object: serde would also read a struct
//!   from an array (`["a@b.c", "pw"]`), which [`Object`] and [`objects`] refuse.
//! - An integer field takes what JSON Schema calls an integer: a number without a fractional
//!   part, so `3`, `3.0` and `3e0` are the same 3 (a schema-driven client may send any of them).
//!
//! Hand-written on purpose: the mapping from serde's error kinds to API.md's codes (serde_json
//! reports them as text, so [`ApiError`]s are made from its stable message prefixes), the
//! integer rule (JSON Schema's, not serde's), and the duplicate-key scan (serde_json keeps the
//! last key). The path comes from `serde_path_to_error`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use crate::error::ApiError;

/// Parses a body that must be a JSON object of type `T` (module docs for the errors).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if is_blank(bytes) {
        return Err(ApiError::invalid_json(
            "the body is empty; expected a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize::<_, Object<T>>(&mut deserializer);
    let Object(value) = parsed.map_err(|error| failed::<T>(bytes, error))?;
    // Anything after the object but whitespace.
    deserializer
        .end()
        .map_err(|error| ApiError::invalid_json(format!("malformed JSON: {error}")))?;
    Ok(value)
}

/// Unknown keys [`failed`] takes out of a body, at most, to find an error that comes before them.
const UNKNOWN_KEYS_SKIPPED_MAX: usize = 32;

/// The error of a body that did not parse as a `T`. Only this path pays for more than the one
/// parse: a duplicated key anywhere is `invalid_json`; otherwise an unknown key is reported
/// only when the rest of the body is sound, so a missing or invalid field comes first, as a
/// reader that takes the fields it knows and then refuses the rest would say (API.md's tests fix
/// `{"things": []}` as `missing_field`).
fn failed<T: DeserializeOwned>(
    bytes: &[u8],
    error: serde_path_to_error::Error<serde_json::Error>,
) -> ApiError {
    if has_duplicate_key(bytes) {
        return ApiError::invalid_json("a JSON object has a duplicated key");
    }
    let (first, mut unknown) = classify(error);
    let Some(path) = unknown.take() else {
        return first;
    };
    let Ok(mut body) = serde_json::from_slice::<Value>(bytes) else {
        return first;
    };
    let mut path = path;
    for _ in 0..UNKNOWN_KEYS_SKIPPED_MAX {
        if !remove_at(&mut body, &path) {
            break;
        }
        match serde_path_to_error::deserialize::<_, Object<T>>(&body) {
            Ok(_) => break,
            Err(error) => match classify(error) {
                (_, Some(next)) => path = next,
                (other, None) => return other,
            },
        }
    }
    first
}

/// The API.md error, and the path of the key when it is an unknown one.
fn classify(
    error: serde_path_to_error::Error<serde_json::Error>,
) -> (ApiError, Option<Vec<serde_path_to_error::Segment>>) {
    let segments: Vec<serde_path_to_error::Segment> = error.path().iter().cloned().collect();
    let api = api_error(error);
    let unknown = (api.code == "unknown_field").then_some(segments);
    (api, unknown)
}

/// Removes the key `path` ends with from `body`; false when the path leads nowhere.
fn remove_at(body: &mut Value, path: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    let Some((Segment::Map { key }, parents)) = path.split_last() else {
        return false;
    };
    let mut node = body;
    for segment in parents {
        node = match (segment, node) {
            (Segment::Map { key }, Value::Object(map)) => match map.get_mut(key) {
                Some(child) => child,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    node.as_object_mut()
        .is_some_and(|map| map.remove(key).is_some())
}

/// As [`parse`], but an empty body is `T::default()` (routes whose body is optional). An empty
/// body costs no JSON parsing at all.
pub fn parse_or_empty<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if is_blank(bytes) {
        return Ok(T::default());
    }
    parse(bytes)
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// The API.md error for a failed parse: the path says where, serde's message what.
fn api_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if matches!(
        inner.classify(),
        serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io
    ) {
        return ApiError::invalid_json(format!("malformed JSON: {inner}"));
    }
    let message = message_of(&inner);
    let at_top = path == "." || path.is_empty();
    if let Some(name) = quoted_after(&message, "missing field `") {
        let field = if at_top {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        return ApiError::missing_field(&field);
    }
    if message.starts_with("duplicate field `") {
        return ApiError::invalid_json("a JSON object has a duplicated key");
    }
    if let Some(name) = quoted_after(&message, "unknown field `") {
        // The path already ends with the unknown key.
        let field = if at_top { name.to_string() } else { path };
        return ApiError::unknown_field(&field);
    }
    if at_top {
        return ApiError::invalid_json("the body must be a JSON object");
    }
    let what = match message.split_once(", expected ") {
        Some((_, expected)) => format!("must be {expected}"),
        None => match quoted_after(&message, "unknown variant `") {
            Some(_) => match message.split_once("expected one of ") {
                Some((_, choices)) => format!("must be one of {choices}"),
                None => message.clone(),
            },
            None => message.clone(),
        },
    };
    ApiError::invalid_field(&path, &what)
}

/// serde_json's message without its ` at line L column C` suffix.
fn message_of(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_string(),
        None => text,
    }
}

/// The text between `prefix` (which ends with a backquote) and the next backquote.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
}

/// A JSON object read as `T`: a struct, but never from an array (module docs).
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// `#[serde(deserialize_with = "json::objects")]` for a `Vec` of structs: an array whose
/// elements must each be a JSON object ([`Object`]).
pub fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Objects<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Objects<T> {
        type Value = Vec<T>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("an array of objects")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // The hint comes from the client: cap what it may make us reserve up front.
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(Object(item)) = seq.next_element::<Object<T>>()? {
                items.push(item);
            }
            Ok(items)
        }
    }
    deserializer.deserialize_seq(Objects(PhantomData))
}

/// An integer type a body may hold, with the words its errors use.
pub trait Integer: TryFrom<i128> {
    /// "a signed 64-bit integer", ...
    const WHAT: &'static str;
}

impl Integer for i64 {
    const WHAT: &'static str = "a signed 64-bit integer";
}
impl Integer for u64 {
    const WHAT: &'static str = "an unsigned 64-bit integer";
}
impl Integer for i32 {
    const WHAT: &'static str = "a signed 32-bit integer";
}
impl Integer for u32 {
    const WHAT: &'static str = "an unsigned 32-bit integer";
}

/// Magnitude below which every integral double is exactly the integer its literal wrote.
const EXACT_FLOAT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53

/// `#[serde(deserialize_with = "json::integer")]`: a JSON number without a fractional part that
/// fits `T` (JSON Schema's `integer`: `3.0` and `3e0` are 3). A number in float notation counts
/// only below 2^53 in magnitude: beyond, the double may not be what the client wrote
/// (`-9223372036854775809` arrives as the double -2^63, which would pass for `i64::MIN`), so it
/// is refused as out of range. Integers written as integers are exact up to the u64 / i64 limits.
pub fn integer<'de, D: Deserializer<'de>, T: Integer>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_any(IntegerVisitor(PhantomData))
}

/// [`integer`] for an optional field (with `#[serde(default)]`): absent and `null` are `None`.
pub fn optional_integer<'de, D: Deserializer<'de>, T: Integer>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    deserializer.deserialize_option(OptionalInteger(PhantomData))
}

struct IntegerVisitor<T>(PhantomData<T>);

impl<T: Integer> IntegerVisitor<T> {
    fn fit<E: de::Error>(number: i128, unexpected: de::Unexpected) -> Result<T, E> {
        T::try_from(number)
            .map_err(|_| E::invalid_value(unexpected, &IntegerVisitor::<T>(PhantomData)))
    }
}

impl<'de, T: Integer> Visitor<'de> for IntegerVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(T::WHAT)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        Self::fit(i128::from(value), de::Unexpected::Unsigned(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        Self::fit(i128::from(value), de::Unexpected::Signed(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        if value.fract() == 0.0 && value.abs() < EXACT_FLOAT_INTEGER_LIMIT {
            Self::fit(value as i128, de::Unexpected::Float(value))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(value), &self))
        }
    }
}

struct OptionalInteger<T>(PhantomData<T>);

impl<'de, T: Integer> Visitor<'de> for OptionalInteger<T> {
    type Value = Option<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(T::WHAT)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        integer(deserializer).map(Some)
    }
}

/// `#[serde(deserialize_with = "json::string_of")]` for a field whose value is one of a closed
/// set of strings (`"yes"`, `"no"`, ...): only a JSON string is read, then `T::from_str`. serde's
/// derived enums would also take an object (`{"yes": null}`).
pub fn string_of<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = &'static str>,
{
    let text = Cow::<'de, str>::deserialize(deserializer)?;
    text.parse::<T>().map_err(de::Error::custom)
}

/// Whether the JSON text holds an object with a duplicated key, at any depth. `false` for text
/// that is not JSON (the parse error says what is wrong with it). Costs one pass and, per
/// object, a list (or, past a few keys, a set) of its keys, borrowed where they have no escapes.
pub fn has_duplicate_key(bytes: &[u8]) -> bool {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    matches!(
        NoDuplicates::deserialize(&mut deserializer),
        Err(error) if error.to_string().starts_with(DUPLICATE_KEY)
    )
}

const DUPLICATE_KEY: &str = "duplicate key";

/// Keys an object may have before [`NoDuplicates`] switches from a list to a set.
const LINEAR_KEYS_MAX: usize = 16;

struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_none<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut few: Vec<Cow<'de, str>> = Vec::new();
        let mut many: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let duplicated = if many.is_empty() && few.len() < LINEAR_KEYS_MAX {
                let seen = few.contains(&key);
                few.push(key);
                seen
            } else {
                many.extend(few.drain(..));
                !many.insert(key)
            };
            if duplicated {
                return Err(de::Error::custom(DUPLICATE_KEY));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

/// A free-form JSON value (`properties`, `data`) parsed like `serde_json::Value`, except that an
/// object with a duplicated key is an error (serde_json keeps the last one). Use it, never a
/// plain `Value`, for free-form fields of a body.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
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
                return Err(de::Error::custom(format!("{DUPLICATE_KEY} `{key}`")));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// The body of routes that take none but accept `{}` (likes, re-runs): any field is
/// `unknown_field`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(description = "An empty JSON object; the body may also be omitted.")]
pub struct EmptyObject {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Add {
        #[serde(deserialize_with = "integer")]
        by: i64,
        #[serde(default, deserialize_with = "optional_integer")]
        mirror_to: Option<u64>,
        note: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        key: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Items {
        #[serde(deserialize_with = "objects")]
        items: Vec<Item>,
    }

    fn check(body: &str, expected_code: Option<&str>, expected_field: Option<&str>) {
        match (parse::<Add>(body.as_bytes()), expected_code) {
            (Ok(add), None) => {
                assert!(add.by != 0 || add.mirror_to.is_some() || add.note.is_some())
            }
            (Err(error), Some(code)) => {
                assert_eq!(error.code, code, "{body}: {error:?}");
                assert_eq!(error.field.as_deref(), expected_field, "{body}");
                assert_eq!(error.status, hyper::StatusCode::BAD_REQUEST);
            }
            (result, expected) => panic!("{body}: got {result:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn bodies_accept_and_reject() {
        check(r#"{"by": 1}"#, None, None);
        check(r#"{"by": -3, "mirror_to": 9, "note": "x"}"#, None, None);
        check(r#"{"by": 1, "mirror_to": null}"#, None, None);
        check(r#"{"by": 1"#, Some("invalid_json"), None);
        check(r#"{"by": 1} x"#, Some("invalid_json"), None);
        check("", Some("invalid_json"), None);
        check("  ", Some("invalid_json"), None);
        check("[1]", Some("invalid_json"), None);
        check("null", Some("invalid_json"), None);
        check(r#"[1, null, null]"#, Some("invalid_json"), None);
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
        // Duplicated keys, known or not, at the top or nested, are malformed JSON, not "last one
        // wins", whatever else is wrong with the body.
        check(r#"{"by": 1, "by": 2}"#, Some("invalid_json"), None);
        check(
            r#"{"dup": 1, "dup": 2, "by": 1}"#,
            Some("invalid_json"),
            None,
        );
        check(r#"{"by": "x", "by": 2}"#, Some("invalid_json"), None);
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
        // A missing or invalid field comes before an unknown one, wherever the keys are.
        check(r#"{"bye": 2}"#, Some("missing_field"), Some("by"));
        check(
            r#"{"bye": 2, "by": "x"}"#,
            Some("invalid_field"),
            Some("by"),
        );
        check(
            r#"{"bye": 2, "by": 1, "hi": 3}"#,
            Some("unknown_field"),
            Some("bye"),
        );
    }

    #[test]
    fn nested_errors_name_their_path() {
        let field = |body: &str| {
            let error = parse::<Items>(body.as_bytes()).expect_err(body);
            (error.code, error.field)
        };
        assert_eq!(
            field(r#"{"items": [{"key": "a"}, {"key": 3}]}"#),
            ("invalid_field", Some("items[1].key".into()))
        );
        assert_eq!(
            field(r#"{"items": [{"key": "a"}, {}]}"#),
            ("missing_field", Some("items[1].key".into()))
        );
        assert_eq!(
            field(r#"{"items": [{"key": "a", "x": 1}]}"#),
            ("unknown_field", Some("items[0].x".into()))
        );
        assert_eq!(
            field(r#"{"items": [["a"]]}"#),
            ("invalid_field", Some("items[0]".into()))
        );
        assert_eq!(
            field(r#"{"items": "a"}"#),
            ("invalid_field", Some("items".into()))
        );
        assert_eq!(
            field(r#"{"items": [{"x": 1}]}"#),
            ("missing_field", Some("items[0].key".into()))
        );
        assert_eq!(
            field(r#"{"things": []}"#),
            ("missing_field", Some("items".into()))
        );
        let items = parse::<Items>(br#"{"items": [{"key": "a"}]}"#).expect("valid");
        assert_eq!(items.items[0].key, "a");
    }

    #[test]
    fn empty_bodies_cost_nothing_and_are_the_default() {
        assert!(parse_or_empty::<EmptyObject>(b"").is_ok());
        assert!(parse_or_empty::<EmptyObject>(b" \r\n").is_ok());
        assert!(parse_or_empty::<EmptyObject>(b"{}").is_ok());
        let error = parse_or_empty::<EmptyObject>(br#"{"extra": 1}"#).expect_err("unknown");
        assert_eq!(
            (error.code, error.field.as_deref()),
            ("unknown_field", Some("extra"))
        );
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        assert!(!has_duplicate_key(
            br#"{"a": 1, "b": [{"a": 2}], "c": {"a": 3}}"#
        ));
        assert!(has_duplicate_key(br#"{"a": 1, "a": 2}"#));
        assert!(has_duplicate_key(br#"[{"x": {"y": 1, "y": 2}}]"#));
        assert!(has_duplicate_key(br#"{"a\u0062": 1, "ab": 2}"#));
        let many: String = (0..100).map(|i| format!("\"k{i}\": {i},")).collect();
        assert!(!has_duplicate_key(
            format!("{{{many} \"end\": 0}}").as_bytes()
        ));
        assert!(has_duplicate_key(
            format!("{{{many} \"k7\": 0}}").as_bytes()
        ));
        assert!(!has_duplicate_key(b"{"));
        let StrictValue(value) = serde_json::from_str(r#"{"a": [1, {"b": null}]}"#).expect("ok");
        assert_eq!(value["a"][1]["b"], Value::Null);
        assert!(serde_json::from_str::<StrictValue>(r#"{"a": 1, "a": 2}"#).is_err());
    }
}
