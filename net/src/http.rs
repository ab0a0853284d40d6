//! Wire helpers every handler uses: reading a request body within its limits, query strings
//! ([`Query`], [`Page`], cursors) and responses. Bodies are typed: see [`crate::json`].
//!
//! Invariants:
//! - A body is never held beyond `limits.max_body_bytes`: a declared `Content-Length` over the
//!   limit is refused before reading, and a chunked body is refused as soon as the running total
//!   passes it. The whole body must arrive within `limits.body_read_timeout_ms` (else 408).
//! - Handlers reject unknown query parameters: every [`Query`] ends with `finish()`, which fails
//!   with `unknown_field` naming a parameter no accessor consumed; one given twice is
//!   `invalid_field`.
//! - Cursors have one shape, stated by the document (`NextCursor`, the `cursor` parameter).
//!
//! Hand-written on purpose: the query reader, because the query rules (a parameter given twice
//! is an error, integers are plain digits, unknown names are refused) are stricter than a
//! general form decoder's, and it is a few lines.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use serde::Serialize;

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

/// One page request: `?limit=N&cursor=C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// 1..=[`PAGE_LIMIT_MAX`], default [`PAGE_LIMIT_DEFAULT`].
    pub limit: usize,
    /// Opaque; the domain that issued it decodes it.
    pub cursor: Option<String>,
}

impl Page {
    /// The key the page starts after: the cursor decoded (400 `invalid_field` for a cursor of
    /// another shape than [`NextCursor`]'s).
    pub fn after(&self) -> Result<Option<u64>, ApiError> {
        decode_cursor(self.cursor.as_deref())
    }
}

/// Hex digits of the largest cursor (a u64).
pub const CURSOR_HEX_DIGITS_MAX: usize = 16;

/// The `next_cursor` of a page: the last key of the page in lowercase hex, prefixed so it is
/// visibly opaque (`c` and 1 to [`CURSOR_HEX_DIGITS_MAX`] digits), or `null` on the last page.
/// The document states exactly this shape (the `NextCursor` schema, the `cursor` parameter), so
/// a schema-driven client can tell a cursor from any string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextCursor(pub Option<u64>);

/// The pattern of a cursor, for the document.
pub const CURSOR_PATTERN: &str = "^c[0-9a-f]{1,16}$";

impl Serialize for NextCursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(key) => serializer.collect_str(&format_args!("c{key:x}")),
            None => serializer.serialize_none(),
        }
    }
}

impl utoipa::PartialSchema for NextCursor {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .pattern(Some(CURSOR_PATTERN))
            .description(Some(
                "Opaque cursor of the next page (pass it back as `cursor`; `c` and 1 to 16 \
                 lowercase hex digits), or `null` on the last page.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for NextCursor {
    fn name() -> std::borrow::Cow<'static, str> {
        "NextCursor".into()
    }
}

/// RFC 3339 UTC, e.g. `2026-11-22T10:00:00Z`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime, examples("2026-11-22T10:00:00Z"))]
pub struct Timestamp(String);

impl Timestamp {
    /// The time `ms` milliseconds after the Unix epoch.
    pub fn from_ms(ms: switchyard_engine::clock::Millis) -> Timestamp {
        Timestamp(switchyard_engine::clock::rfc3339(ms))
    }
}

/// The key a cursor of [`NextCursor`]'s shape names; anything else is 400 `invalid_field`. An
/// absent or empty cursor is the first page.
pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<u64>, ApiError> {
    cursor
        .map(|cursor| {
            cursor
                .strip_prefix('c')
                .filter(|hex| {
                    (1..=CURSOR_HEX_DIGITS_MAX).contains(&hex.len())
                        && hex
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                })
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    ApiError::invalid_field("cursor", "is not a cursor this list issued")
                })
        })
        .transpose()
}

/// A parsed query string, read one parameter at a time; `finish()` refuses the rest.
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

    /// Whether no parameter is left.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The names of the parameters no accessor consumed, in order (for a route that reports
    /// them in its own format rather than [`Query::finish`]'s `unknown_field`).
    pub fn rest(self) -> Vec<String> {
        self.pairs.into_iter().map(|(name, _)| name).collect()
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

    #[test]
    fn cursors_have_one_shape() {
        for key in [0, 1, 255, u64::MAX] {
            let cursor = serde_json::to_value(NextCursor(Some(key))).expect("serializes");
            let text = cursor.as_str().expect("a string").to_string();
            assert!(regex_like_cursor(&text), "{text}");
            assert_eq!(decode_cursor(Some(&text)).expect("decodes"), Some(key));
        }
        assert_eq!(
            serde_json::to_value(NextCursor(None)).expect("null"),
            serde_json::Value::Null
        );
        assert_eq!(decode_cursor(None).expect("first page"), None);
        for bad in [
            "",
            "c",
            "cFF",
            "c+f",
            "c-1",
            "c00000000000000001",
            "cg",
            "x1",
            " c1",
        ] {
            let error = decode_cursor(Some(bad)).expect_err(bad);
            assert_eq!(error.field.as_deref(), Some("cursor"), "{bad}");
        }
    }

    /// [`CURSOR_PATTERN`], spelled out.
    fn regex_like_cursor(text: &str) -> bool {
        text.strip_prefix('c').is_some_and(|hex| {
            (1..=16).contains(&hex.len())
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
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
