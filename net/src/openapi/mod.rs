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

    /// For a logged-in user: a user login token (`userJwt`), 401 without a valid one.
    pub fn user(self) -> Op {
        self.security(USER_JWT).error(
            401,
            "Not authenticated.",
            &[(
                "unauthenticated",
                "no `Authorization: Bearer <jwt>`, or the token is expired, tampered, wrongly \
                 signed or not a user token",
            )],
        )
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

    /// Another content type of the last response added, its schema inline: a route that
    /// answers one status in two formats by the request's `Accept` (JSON or text).
    pub fn content(mut self, content_type: &str, schema: Schema) -> Op {
        let Some((_, RefOr::T(response))) = self.responses.last_mut() else {
            panic!("a content type needs a response written before it");
        };
        response
            .content
            .insert(content_type.to_string(), Content::new(Some(schema)));
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

mod document;

pub use document::{Document, ErrorBody, ErrorDetail};

#[cfg(test)]
mod tests {
    use super::document::state_integer_ranges;
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
