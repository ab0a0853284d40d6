//! The OpenAPI 3.1 document, generated: schemas come from the request and response types the
//! handlers use (`#[derive(ToSchema)]`, utoipa), operations from each route's [`Op`] (written
//! next to its handler), and [`Document`] puts them together with the server's own parts (the
//! `Error` schema, the `ErrorCode` catalogue, the shared responses, the admin token, the
//! introduction in `intro.md`) and each domain's (tags, security schemes, error codes, a section
//! of the introduction). `crate::routes::document` builds it from the route table; the server
//! serves it at `GET /api/v1/openapi.json` and renders it at `GET /docs`.
//!
//! Conventions the helpers keep, so every operation states them the same way:
//! - every error response has the `Error` schema, a description listing its codes
//!   (`- \`code\`: when`) and the same codes in `x-error-codes`;
//! - every API operation answers 500 `Internal` and 503 `Unavailable` ([`Op::api`]), every
//!   operation with a body 408 and 413 ([`Op::body_errors`]);
//! - every integer states its range: [`Document::finish`] gives each integer schema the
//!   `minimum` and `maximum` of its format (`int32`, `int64`, `uint32`, `uint64`) unless the
//!   type states a narrower one.
//!
//! Invariant: the document is a pure function of the code (no configuration): limits that
//! depend on configuration are stated with their defaults, as the descriptions say.

use std::collections::BTreeMap;

use hyper::Method;
use serde_json::{json, Value};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, Content, InfoBuilder, OpenApiBuilder, Paths, Ref, RefOr, Required, Response,
    ResponseBuilder, ServerBuilder,
};
use utoipa::{PartialSchema, ToSchema};

/// The document's introduction (conventions, server limits); each domain appends a section.
const INTRO: &str = include_str!("intro.md");

/// The admin token's security scheme (the server's own; domains add theirs).
pub const ADMIN_TOKEN: &str = "adminToken";
/// The tag of compatibility routes (`--compat`; see `crate::domains::CompatSet`).
pub const COMPAT_TAG: &str = "compat";

/// The security scheme of user login tokens (declared by the social domain, which issues them;
/// named here because other domains' user routes take them too).
pub const USER_JWT: &str = "userJwt";

/// A schema and the schemas it refers to, by name, as components want them.
type Schemas = Vec<(String, RefOr<Schema>)>;

/// The schema of `T` and every schema it refers to.
fn schemas_of<T: ToSchema>(schemas: &mut Schemas) {
    schemas.push((T::name().into_owned(), <T as PartialSchema>::schema()));
    T::schemas(schemas);
}

fn schema_ref<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

fn error_content() -> Content {
    Content::new(Some(RefOr::Ref(Ref::from_schema_name("Error"))))
}

/// The description of an error response: a headline, then one line per code.
fn error_description(headline: &str, codes: &[(&str, &str)]) -> String {
    let mut text = headline.to_string();
    if !codes.is_empty() {
        text.push_str("\n\n");
        let lines: Vec<String> = codes
            .iter()
            .map(|(code, when)| format!("- `{code}`: {when}"))
            .collect();
        text.push_str(&lines.join("\n"));
    }
    text
}

fn error_codes_extension(codes: &[(&str, &str)]) -> Extensions {
    Extensions::from_iter([(
        "x-error-codes",
        json!(codes.iter().map(|(code, _)| *code).collect::<Vec<_>>()),
    )])
}

fn retry_after() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        )
        .description(Some("Seconds to wait before retrying (at least 1)."))
        .build()
}

/// An error response: the `Error` schema, `codes` in the description and in `x-error-codes`.
fn error_response(headline: &str, codes: &[(&str, &str)], retry: bool) -> Response {
    let mut response = ResponseBuilder::new()
        .description(error_description(headline, codes))
        .content("application/json", error_content())
        .extensions(Some(error_codes_extension(codes)));
    if retry {
        response = response.header("Retry-After", retry_after());
    }
    response.build()
}

/// An integer schema of the given format (`uint64`, ...); [`Document::finish`] adds its range.
pub fn integer(format: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::Custom(format.to_string())))
}

/// A required path parameter holding an unsigned 64-bit id (`description` says what a
/// non-number gets).
pub fn id_parameter(name: &str, description: &str) -> Parameter {
    path_parameter(name, description, integer("uint64").into())
}

/// A required path parameter.
pub fn path_parameter(name: &str, description: &str, schema: RefOr<Schema>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// An optional query parameter.
pub fn query_parameter(name: &str, description: &str, schema: RefOr<Schema>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// A `$ref` to the schema of `T` (registered with the document by the operation that uses it).
pub fn reference<T: ToSchema>() -> RefOr<Schema> {
    schema_ref::<T>()
}

/// The 400 bullets of a route that takes a JSON body, in order.
const BODY_ERRORS: [(&str, &str); 5] = [
    (
        "invalid_json",
        "the body is empty (where one is required), not JSON, or not a JSON object",
    ),
    (
        "missing_field",
        "a required field is absent; `field` names it",
    ),
    (
        "invalid_field",
        "a field has the wrong type or is out of range (`null` for a required field included); \
         `field` names it",
    ),
    (
        "unknown_field",
        "the body has a field this route does not take; `field` names it",
    ),
    (
        "invalid_body",
        "the body could not be read (the connection failed mid-body)",
    ),
];

/// The bullet every API route's 400 ends with.
const INVALID_HEADER: (&str, &str) = ("invalid_header", "more than one `Authorization` header");

/// The `invalid_field` bullet of a paginated list's 400.
pub const PAGE_INVALID_FIELD: &str = "`limit` outside 1..=500 or not a number, a `cursor` this \
     list did not issue, or a parameter given twice; `field` names it";

/// One operation of the document, written next to its handler (a route's `doc`). Build it with
/// the methods below; they keep the conventions of the module docs.
pub struct Op {
    operation: OperationBuilder,
    security: Option<Vec<SecurityRequirement>>,
    /// (status, response), sorted by status when the operation is built.
    responses: Vec<(u16, RefOr<Response>)>,
    schemas: Schemas,
}

impl Op {
    /// An operation with its `operationId` and tag.
    pub fn new(id: &str, tag: &str) -> Op {
        Op {
            operation: OperationBuilder::new().operation_id(Some(id)).tag(tag),
            security: None,
            responses: Vec::new(),
            schemas: Vec::new(),
        }
    }

    pub fn summary(mut self, summary: &str) -> Op {
        self.operation = self.operation.summary(Some(summary));
        self
    }

    pub fn description(mut self, description: &str) -> Op {
        self.operation = self.operation.description(Some(description));
        self
    }

    /// No credential needed (`security: []`).
    pub fn public(mut self) -> Op {
        self.security.get_or_insert_with(Vec::new);
        self
    }

    /// A credential is optional: anonymous (`{}`) is one of the accepted requirements.
    pub fn anonymous(mut self) -> Op {
        self.security
            .get_or_insert_with(Vec::new)
            .push(SecurityRequirement::default());
        self
    }

    /// The bearer token of `scheme` is accepted.
    pub fn security(mut self, scheme: &str) -> Op {
        self.security
            .get_or_insert_with(Vec::new)
            .push(SecurityRequirement::new(scheme, Vec::<String>::new()));
        self
    }

    /// Admin only: the admin token, 401 for another token, 403 when none is configured.
    pub fn admin(self) -> Op {
        self.security(ADMIN_TOKEN)
            .error(
                401,
                "Not the admin token.",
                &[(
                    "unauthenticated",
                    "no `Authorization: Bearer <admin token>`, or a different token",
                )],
            )
            .error(
                403,
                "Admin routes are closed.",
                &[(
                    "forbidden",
                    "no admin token is configured on this server (`--admin-token` / \
                     `SWITCHYARD_ADMIN_TOKEN`)",
                )],
            )
    }

    pub fn parameter(mut self, parameter: Parameter) -> Op {
        self.operation = self.operation.parameter(parameter);
        self
    }

    /// `limit` and `cursor` of a keyset-paginated list.
    pub fn page(self) -> Op {
        self.parameter(query_parameter(
            "limit",
            "Page size, 1..=500 (default 50).",
            integer("int64")
                .minimum(Some(1))
                .maximum(Some(500))
                .default(Some(json!(50)))
                .into(),
        ))
        .parameter(query_parameter(
            "cursor",
            "The `next_cursor` of the previous page: opaque, `c` and 1 to 16 lowercase hex \
             digits as the list issued it; absent or empty for the first page. Any other \
             string is 400 `invalid_field`.",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^(c[0-9a-f]{1,16})?$"))
                .into(),
        ))
    }

    /// A JSON request body of type `T`, required.
    pub fn body<T: ToSchema>(self) -> Op {
        self.request_body::<T>(true)
    }

    /// A JSON request body of type `T` that may be omitted.
    pub fn optional_body<T: ToSchema>(self) -> Op {
        self.request_body::<T>(false)
    }

    fn request_body<T: ToSchema>(mut self, required: bool) -> Op {
        schemas_of::<T>(&mut self.schemas);
        let body = RequestBodyBuilder::new()
            .required(Some(if required {
                Required::True
            } else {
                Required::False
            }))
            .content("application/json", Content::new(Some(schema_ref::<T>())))
            .build();
        self.operation = self.operation.request_body(Some(body));
        self
    }

    /// A success with a JSON body of type `T`.
    pub fn ok<T: ToSchema>(mut self, status: u16, description: &str) -> Op {
        schemas_of::<T>(&mut self.schemas);
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", Content::new(Some(schema_ref::<T>())))
            .build();
        self.responses.push((status, RefOr::T(response)));
        self
    }

    /// A response with a JSON body of type `T` whatever its status: a compatibility route's
    /// own error bodies (FastAPI's `{"detail": [...]}`, say), which are not the `Error`
    /// envelope.
    pub fn answer<T: ToSchema>(self, status: u16, description: &str) -> Op {
        self.ok::<T>(status, description)
    }

    /// A compatibility route's error response as the original sent it: a JSON string, one of
    /// `messages` (`(exact text, when)`), and, when `codes` is not empty, also the server's own
    /// `Error` envelope with those codes (listed in `x-error-codes`, which apply to envelope
    /// bodies only). `retry`: the response carries `Retry-After`.
    pub fn original_error(
        mut self,
        status: u16,
        headline: &str,
        messages: &[(&str, &str)],
        codes: &[(&str, &str)],
        retry: bool,
    ) -> Op {
        assert!(!messages.is_empty(), "an original error has a message");
        let strings: Schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(messages.iter().map(|(text, _)| *text)))
            .description(Some("The original's message, a JSON string."))
            .into();
        let schema: RefOr<Schema> = if codes.is_empty() {
            RefOr::T(strings)
        } else {
            RefOr::T(
                utoipa::openapi::schema::OneOfBuilder::new()
                    .item(strings)
                    .item(RefOr::Ref(Ref::from_schema_name("Error")))
                    .into(),
            )
        };
        let mut lines: Vec<String> = messages
            .iter()
            .map(|(text, when)| format!("- `\"{text}\"`: {when}"))
            .collect();
        lines.extend(
            codes
                .iter()
                .map(|(code, when)| format!("- `{code}` (the server's `Error` envelope): {when}")),
        );
        let mut response = ResponseBuilder::new()
            .description(format!("{headline}\n\n{}", lines.join("\n")))
            .content("application/json", Content::new(Some(schema)));
        if !codes.is_empty() {
            response = response.extensions(Some(error_codes_extension(codes)));
        }
        if retry {
            response = response.header("Retry-After", retry_after());
        }
        self.responses.push((status, RefOr::T(response.build())));
        self
    }

    /// A `307 Temporary Redirect` to the `Location` header's URL, with no body.
    pub fn redirect(mut self, description: &str) -> Op {
        let location = HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::Custom("uri-reference".into()))),
            )
            .description(Some("Where to send the same request again."))
            .build();
        let response = ResponseBuilder::new()
            .description(description)
            .header("Location", location)
            .build();
        self.responses.push((307, RefOr::T(response)));
        self
    }

    /// What any route of the compatibility set `set` may answer besides its own responses, all
    /// in the server's `Error` envelope: 404 `not_found` when the server runs without
    /// `--compat <set>`, 400 `invalid_header` (two `Authorization` headers, refused before any
    /// handler), and [`Op::api`]'s 500 and 503.
    pub fn compat(self, set: &str) -> Op {
        let not_mounted = format!("the server runs without `--compat {set}` (the default)");
        self.error(
            404,
            "This compatibility set is not mounted.",
            &[("not_found", &not_mounted)],
        )
        .error(
            400,
            "Ambiguous credentials (the route takes none, but the server refuses two).",
            &[INVALID_HEADER],
        )
        .api()
    }

    /// A success with a body of `content_type` (a schema given inline).
    pub fn ok_as(
        mut self,
        status: u16,
        description: &str,
        content_type: &str,
        schema: Schema,
    ) -> Op {
        let response = ResponseBuilder::new()
            .description(description)
            .content(content_type, Content::new(Some(schema)))
            .build();
        self.responses.push((status, RefOr::T(response)));
        self
    }

    /// A success with no body (204).
    pub fn no_content(mut self, status: u16, description: &str) -> Op {
        let response = ResponseBuilder::new().description(description).build();
        self.responses.push((status, RefOr::T(response)));
        self
    }

    /// A link from the last response added: `operation_id`'s `parameters` (name, runtime
    /// expression such as `$response.body#/id`).
    pub fn link(
        mut self,
        name: &str,
        operation_id: &str,
        parameters: &[(&str, &str)],
        description: &str,
    ) -> Op {
        let mut link = LinkBuilder::new()
            .operation_id(operation_id)
            .description(description);
        for (parameter, expression) in parameters {
            link = link.parameter(*parameter, *expression);
        }
        let Some((_, RefOr::T(response))) = self.responses.last_mut() else {
            panic!("a link needs a response written before it");
        };
        response
            .links
            .insert(name.to_string(), RefOr::T(link.build()));
        self
    }

    /// An error response: `headline`, then each `(code, when)`.
    pub fn error(mut self, status: u16, headline: &str, codes: &[(&str, &str)]) -> Op {
        let response = error_response(headline, codes, false);
        self.responses.push((status, RefOr::T(response)));
        self
    }

    /// An error response with `Retry-After` (429).
    pub fn error_with_retry(mut self, status: u16, headline: &str, codes: &[(&str, &str)]) -> Op {
        let response = error_response(headline, codes, true);
        self.responses.push((status, RefOr::T(response)));
        self
    }

    /// The 400 of a route with a JSON body: the body bullets (`invalid_field_more` appended to
    /// the `invalid_field` one after "; " when not empty), `extra` codes, `invalid_header`; and
    /// the 408 and 413 every body may get.
    pub fn body_errors(self, invalid_field_more: &str, extra: &[(&str, &str)]) -> Op {
        let invalid_field = match invalid_field_more {
            "" => BODY_ERRORS[2].1.to_string(),
            more => format!("{}; {more}", BODY_ERRORS[2].1),
        };
        let mut codes: Vec<(&str, &str)> = BODY_ERRORS.to_vec();
        codes[2].1 = &invalid_field;
        codes.extend_from_slice(extra);
        codes.push(INVALID_HEADER);
        self.error(400, "The request is malformed; nothing changed.", &codes)
            .body_limits()
    }

    /// 408 and 413 (a body too slow or too large).
    pub fn body_limits(mut self) -> Op {
        for (status, name) in [(408, "RequestTimeout"), (413, "BodyTooLarge")] {
            self.responses
                .push((status, RefOr::Ref(Ref::from_response_name(name))));
        }
        self
    }

    /// The 400 of a route that takes only a query: `invalid_field` (when the route has
    /// parameters of its own, saying what is wrong with them) between `unknown_field` and
    /// `invalid_header`.
    pub fn query_errors(self, invalid_field: Option<&str>) -> Op {
        let mut codes = vec![
            (
                "invalid_query",
                "the query string is not valid percent-encoded UTF-8",
            ),
            (
                "unknown_field",
                "a query parameter this route does not take; `field` names it",
            ),
        ];
        if let Some(when) = invalid_field {
            codes.push(("invalid_field", when));
        }
        codes.push(INVALID_HEADER);
        self.error(400, "The request is malformed; nothing changed.", &codes)
    }

    /// 500 and 503, which every API route may answer (a route that documents a 503 of its
    /// own, with more codes, keeps that one).
    pub fn api(mut self) -> Op {
        for (status, name) in [(500, "Internal"), (503, "Unavailable")] {
            if self.responses.iter().any(|(known, _)| *known == status) {
                continue;
            }
            self.responses
                .push((status, RefOr::Ref(Ref::from_response_name(name))));
        }
        self
    }

    /// The operation and the schemas it uses.
    fn build(self) -> (Operation, Schemas) {
        let mut responses = self.responses;
        responses.sort_by_key(|(status, _)| *status);
        let mut operation = self.operation;
        for (status, response) in responses {
            operation = operation.response(status.to_string(), response);
        }
        if let Some(security) = self.security {
            operation = operation.securities(Some(security));
        }
        (operation.build(), self.schemas)
    }
}

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
fn state_integer_ranges(value: &mut Value) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_get_their_ranges_and_unsigned_formats_their_spelling() {
        let mut value = json!({
            "a": {"type": "integer", "format": "u-int64", "minimum": 0},
            "b": {"type": "integer", "format": "int32"},
            "c": [{"type": "integer", "format": "int64", "minimum": 1, "maximum": 10}],
        });
        state_integer_ranges(&mut value);
        assert_eq!(
            value["a"],
            json!({"type": "integer", "format": "uint64", "minimum": 0, "maximum": u64::MAX})
        );
        assert_eq!(value["b"]["minimum"], json!(i32::MIN));
        assert_eq!(value["c"][0]["maximum"], json!(10));
    }

    #[test]
    fn an_operation_lists_its_codes_and_sorts_its_responses() {
        let mut document = Document::new();
        let op = Op::new("thing", "service")
            .public()
            .api()
            .error(404, "Not found.", &[("not_found", "no such thing")])
            .ok::<ErrorBody>(200, "A thing.")
            .link(
                "Again",
                "thing",
                &[("id", "$response.body#/id")],
                "Once more.",
            )
            .body_errors("`x` is odd", &[]);
        document.add(&Method::POST, "/things/{id}", op);
        let value = document.finish();
        let operation = &value["paths"]["/things/{id}"]["post"];
        let statuses: Vec<&String> = operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .collect();
        assert_eq!(statuses, ["200", "400", "404", "408", "413", "500", "503"]);
        let bad = &operation["responses"]["400"];
        assert_eq!(bad["x-error-codes"][5], "invalid_header");
        assert!(bad["description"]
            .as_str()
            .expect("text")
            .contains("`field` names it; `x` is odd"));
        assert_eq!(operation["security"], json!([]));
        assert_eq!(
            operation["responses"]["200"]["links"]["Again"]["operationId"],
            "thing"
        );
        assert!(value["components"]["schemas"]["ErrorCode"]["oneOf"]
            .as_array()
            .expect("catalogue")
            .iter()
            .any(|entry| entry["enum"] == json!(["not_found"])));
    }
}
