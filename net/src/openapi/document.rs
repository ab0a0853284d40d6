//! [`Document`]: puts the operations together with the server's own parts (the `Error`
//! schema, the `ErrorCode` catalogue, the shared responses, the admin token, the introduction)
//! and each domain's, and finishes the JSON (integer ranges, link operation ids).

use super::*;

/// The document being built: the server's parts, each domain's, every route's operation.
pub struct Document {
    paths: Paths,
    schemas: BTreeMap<String, RefOr<Schema>>,
    security_schemes: Vec<(String, SecurityScheme)>,
    tags: Vec<(String, String)>,
    /// (code, status, when), in catalogue order.
    codes: Vec<(&'static str, u16, &'static str)>,
    sections: Vec<&'static str>,
}

impl Default for Document {
    fn default() -> Self {
        Document::new()
    }
}

impl Document {
    /// The server's own parts: the admin token, the `service` and `admin` tags, the codes any
    /// route may answer.
    pub fn new() -> Document {
        let mut document = Document {
            paths: Paths::new(),
            schemas: BTreeMap::new(),
            security_schemes: Vec::new(),
            tags: Vec::new(),
            codes: Vec::new(),
            sections: Vec::new(),
        };
        document.tag(
            "service",
            "Health, readiness, metrics and this document; always answered, no auth.",
        );
        document.tag("admin", "Operator routes beyond API.md; admin token.");
        document.security_scheme(
            ADMIN_TOKEN,
            "The configured admin token (`--admin-token` or `SWITCHYARD_ADMIN_TOKEN`). Without \
             one, admin routes answer 403 `forbidden`.",
            None,
        );
        document.error_codes(SERVER_CODES);
        document
    }

    /// A tag operations name (shown as a group in `/docs`).
    pub fn tag(&mut self, name: &str, description: &str) {
        self.tags.push((name.to_string(), description.to_string()));
    }

    /// A bearer-token security scheme.
    pub fn security_scheme(&mut self, name: &str, description: &str, bearer_format: Option<&str>) {
        let mut scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(description));
        if let Some(format) = bearer_format {
            scheme = scheme.bearer_format(format);
        }
        self.security_schemes
            .push((name.to_string(), SecurityScheme::Http(scheme.build())));
    }

    /// Error codes for the `ErrorCode` catalogue: (code, usual status, when it is sent).
    pub fn error_codes(&mut self, codes: &[(&'static str, u16, &'static str)]) {
        for code in codes {
            assert!(
                !self.codes.iter().any(|known| known.0 == code.0),
                "error code {} catalogued twice",
                code.0
            );
            self.codes.push(*code);
        }
    }

    /// A section of the introduction (Markdown, starting with a `##` heading).
    pub fn section(&mut self, markdown: &'static str) {
        self.sections.push(markdown);
    }

    /// The operation of `method pattern`.
    pub fn add(&mut self, method: &Method, pattern: &str, op: Op) {
        let (operation, schemas) = op.build();
        for (name, schema) in schemas {
            self.schemas.entry(name).or_insert(schema);
        }
        let method = match *method {
            Method::GET => HttpMethod::Get,
            Method::POST => HttpMethod::Post,
            Method::PUT => HttpMethod::Put,
            Method::DELETE => HttpMethod::Delete,
            Method::PATCH => HttpMethod::Patch,
            Method::OPTIONS => HttpMethod::Options,
            Method::HEAD => HttpMethod::Head,
            ref other => panic!("no OpenAPI operation for method {other}"),
        };
        self.paths
            .add_path_operation(pattern, vec![method], operation);
    }

    /// The document as JSON (module docs: integers get their ranges).
    pub fn finish(mut self) -> Value {
        let mut schemas = std::mem::take(&mut self.schemas);
        let mut catalogue: Schemas = Vec::new();
        schemas_of::<ErrorBody>(&mut catalogue);
        for (name, schema) in catalogue {
            schemas.insert(name, schema);
        }
        schemas.insert("ErrorCode".to_string(), self.error_code_schema());
        let mut description = INTRO.trim_end().to_string();
        for section in &self.sections {
            description.push_str("\n\n");
            description.push_str(section.trim_end());
        }
        let mut components = ComponentsBuilder::new();
        for (name, schema) in schemas {
            components = components.schema(name, schema);
        }
        for (name, scheme) in self.security_schemes {
            components = components.security_scheme(name, scheme);
        }
        for (name, response) in shared_responses() {
            components = components.response(name, response);
        }
        let tags = self
            .tags
            .into_iter()
            .map(|(name, description)| {
                TagBuilder::new()
                    .name(name)
                    .description(Some(description))
                    .build()
            })
            .collect::<Vec<_>>();
        let openapi = OpenApiBuilder::new()
            .info(
                InfoBuilder::new()
                    .title("Switchyard HTTP API")
                    .version("v1")
                    .description(Some(description))
                    .build(),
            )
            .servers(Some([ServerBuilder::new()
                .url("http://127.0.0.1:8080")
                .description(Some("The default `--listen` address."))
                .build()]))
            .tags(Some(tags))
            .paths(self.paths)
            .components(Some(components.build()))
            .build();
        // Invariant: utoipa's types serialize to JSON (maps with string keys only).
        let mut document = serde_json::to_value(&openapi).expect("the document serializes");
        document["info"]["summary"] =
            json!("Social, work distribution and service routes of the Switchyard actor engine.");
        state_integer_ranges(&mut document);
        spell_link_operation_ids(&mut document);
        document
    }

    fn error_code_schema(&self) -> RefOr<Schema> {
        let mut one_of = utoipa::openapi::schema::OneOfBuilder::new();
        for (code, status, when) in &self.codes {
            one_of = one_of.item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([*code]))
                    .description(Some(format!("{status}: {when}"))),
            );
        }
        let mut schema: Schema = one_of
            .description(Some(
                "Every `error.code` this server sends, with its usual status. Codes are exact \
                 and stable.",
            ))
            .build()
            .into();
        if let Schema::OneOf(one_of) = &mut schema {
            one_of.schema_type = SchemaType::new(Type::String);
        }
        RefOr::T(schema)
    }
}

/// The shared error responses (`#/components/responses/...`).
fn shared_responses() -> Vec<(&'static str, Response)> {
    vec![
        (
            "Unavailable",
            error_response(
                "Back-pressure or recovery; retry after `Retry-After` seconds. Nothing changed.",
                &[
                    (
                        "unavailable",
                        "the engine is still recovering (before `/readyz` is 200) or is \
                         shutting down",
                    ),
                    (
                        "overloaded",
                        "`limits.max_in_flight` API requests are in flight, or an actor mailbox \
                         (`engine.mailbox_depth_max`), the WAL queue \
                         (`engine.wal_queue_depth_max`) or a work limit (pool items, client \
                         registry) is full",
                    ),
                ],
                true,
            ),
        ),
        (
            "Internal",
            error_response(
                "IO, corruption or a bug; the cause is in the server log.",
                &[("internal", "a generic message; no internals")],
                false,
            ),
        ),
        (
            "RequestTimeout",
            error_response(
                "The body was too slow.",
                &[(
                    "request_timeout",
                    "the whole body did not arrive within `limits.body_read_timeout_ms`",
                )],
                false,
            ),
        ),
        (
            "BodyTooLarge",
            error_response(
                "The body is too large; nothing was read beyond the limit.",
                &[(
                    "body_too_large",
                    "larger than `limits.max_body_bytes` (declared `Content-Length`, or \
                     counted while reading a chunked body)",
                )],
                false,
            ),
        ),
    ]
}

/// The codes any route of this server may answer, whatever its domain.
const SERVER_CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_json",
        400,
        "The body is empty (where one is required), not JSON, or not a JSON object.",
    ),
    (
        "missing_field",
        400,
        "A required field is absent; `field` names it (dotted path for nested objects, \
         `items[3].key`).",
    ),
    (
        "invalid_field",
        400,
        "A field or query parameter has the wrong type or is out of range; `field` names it \
         when known.",
    ),
    (
        "unknown_field",
        400,
        "A body field or query parameter the route does not take; `field` names it.",
    ),
    ("invalid_body", 400, "The request body could not be read."),
    (
        "invalid_query",
        400,
        "The query string is not valid percent-encoded UTF-8.",
    ),
    (
        "invalid_header",
        400,
        "A request header is malformed or ambiguous: more than one `Authorization` header.",
    ),
    (
        "unauthenticated",
        401,
        "No, expired, not yet valid, malformed or wrong bearer token, or a user token whose \
         user does not exist.",
    ),
    (
        "forbidden",
        403,
        "The route is closed to this caller (admin routes when no admin token is configured).",
    ),
    (
        "not_found",
        404,
        "No such resource, no route for the path, or a numeric path parameter that is not a \
         number.",
    ),
    (
        "method_not_allowed",
        405,
        "The path exists but not with this method; `Allow` lists the methods it has.",
    ),
    (
        "request_timeout",
        408,
        "The body did not fully arrive within `limits.body_read_timeout_ms`.",
    ),
    (
        "body_too_large",
        413,
        "The body is larger than `limits.max_body_bytes` (by `Content-Length`, or while \
         reading a chunked body).",
    ),
    (
        "rate_limited",
        429,
        "Too many requests from this source (work client registrations, sign-ups) or failed \
         logins for this e-mail or source; wait `Retry-After` seconds.",
    ),
    (
        "internal",
        500,
        "IO, corruption or a bug; details only in the server log.",
    ),
    (
        "unavailable",
        503,
        "The engine is recovering or shutting down; retry after `Retry-After` seconds. \
         Nothing changed.",
    ),
    (
        "overloaded",
        503,
        "A bounded queue is full (`limits.max_in_flight`, an actor mailbox \
         `engine.mailbox_depth_max`, the WAL queue `engine.wal_queue_depth_max`, the work pool \
         or client registry); retry after `Retry-After` seconds. Nothing changed.",
    ),
];

// The schema of `ApiError::into_response`'s body, which serializes a borrowed twin of it.
/// Every error response: `{"error": {"code", "message"[, "field"]}}` with `Content-Type: application/json`. 503 and 429 add `Retry-After`; 405 adds `Allow`.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of an error body.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    #[schema(schema_with = error_code_ref)]
    pub code: String,
    /// Human-readable; not for matching.
    pub message: String,
    /// The request field (or query parameter) at fault, for field errors: a dotted path for
    /// nested objects and `name[i]` for array elements (`results[2].outcome`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

fn error_code_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name("ErrorCode"))
}

/// utoipa 5 serializes a link's `operationId` as `operation_id`; OpenAPI spells it
/// `operationId` (tools that follow links, Schemathesis's stateful phase among them, read that).
fn spell_link_operation_ids(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let responses = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) else {
            continue;
        };
        for link in links.values_mut().filter_map(Value::as_object_mut) {
            if let Some(id) = link.remove("operation_id") {
                link.insert("operationId".to_string(), id);
            }
        }
    }
}

/// Gives every integer schema the range of its format, unless it states its own bound, and
/// spells the unsigned formats as OpenAPI tools expect (`uint64`; utoipa writes `u-int64`).
pub(super) fn state_integer_ranges(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(format)) = map.get_mut("format") {
                if let Some(rest) = format.strip_prefix("u-int") {
                    *format = format!("uint{rest}");
                }
                let range: Option<(Value, Value)> = match format.as_str() {
                    "int32" => Some((json!(i32::MIN), json!(i32::MAX))),
                    "int64" => Some((json!(i64::MIN), json!(i64::MAX))),
                    "uint32" => Some((json!(0), json!(u32::MAX))),
                    "uint64" => Some((json!(0), json!(u64::MAX))),
                    _ => None,
                };
                if let Some((minimum, maximum)) = range {
                    map.entry("minimum").or_insert(minimum);
                    map.entry("maximum").or_insert(maximum);
                }
            }
            map.values_mut().for_each(state_integer_ranges);
        }
        Value::Array(items) => items.iter_mut().for_each(state_integer_ranges),
        _ => {}
    }
}
