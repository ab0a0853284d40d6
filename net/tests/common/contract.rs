//! Every response an HTTP test receives is checked against the OpenAPI document the server
//! serves (`switchyard_net::routes::document`, the same function): the status is documented for
//! the operation, the content type is one the response documents, the body validates against
//! its schema (the document's types say `additionalProperties: false`, so a field the document
//! lacks fails), and an error's code (in the `Error` envelope) is in that response's
//! `x-error-codes`. A path no operation has must be 404 `not_found`, a method the path lacks 405
//! `method_not_allowed`.
//!
//! The request helpers of `common` call [`check`]; `raw` does not (it sends bytes that need not
//! be HTTP, and hyper's own answers to malformed requests are not the API's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use super::Response;

/// The document and the validators compiled from it so far.
struct Contract {
    document: Value,
    /// (operation id, status) → the validator of that response's JSON body.
    validators: Mutex<HashMap<(String, u16), Arc<jsonschema::Validator>>>,
}

fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| Contract {
        document: switchyard_net::routes::document(),
        validators: Mutex::new(HashMap::new()),
    })
}

/// Whether a path template (`/api/v1/posts/{id}/likes`) matches a concrete path.
fn matches(template: &str, path: &str) -> bool {
    let template: Vec<&str> = template.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    template.len() == path.len()
        && template.iter().zip(&path).all(|(expected, actual)| {
            if expected.starts_with('{') {
                !actual.is_empty()
            } else {
                expected == actual
            }
        })
}

/// Follows a local `$ref`.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => document
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("$ref {reference} does not resolve")),
        None => value,
    }
}

/// Checks `response` to `method target` against the document; panics with what is wrong.
pub fn check(method: &str, target: &str, response: &Response) {
    if let Err(problem) = verify(method, target, response) {
        panic!(
            "{method} {target} -> {}: {problem}\nbody: {}",
            response.status,
            response.text()
        );
    }
}

fn verify(method: &str, target: &str, response: &Response) -> Result<(), String> {
    let contract = contract();
    let document = &contract.document;
    let path = target.split('?').next().unwrap_or(target);
    let head = method.eq_ignore_ascii_case("HEAD");
    let key = if head {
        "get".to_string()
    } else {
        method.to_ascii_lowercase()
    };
    let paths = document["paths"].as_object().expect("paths");
    // A literal template wins over one with a parameter (`/clients/me` before `/clients/{id}`),
    // as in the router.
    let mut candidates: Vec<(&String, &Value)> = paths
        .iter()
        .filter(|(template, _)| matches(template, path))
        .collect();
    candidates.sort_by_key(|(template, _)| template.matches('{').count());
    let Some((template, item)) = candidates.first() else {
        return expect_error(
            response,
            head,
            404,
            "not_found",
            "no operation has this path",
        );
    };
    let Some(operation) = item.get(&key) else {
        return expect_error(
            response,
            head,
            405,
            "method_not_allowed",
            &format!("{template} has no {method}"),
        );
    };
    let id = operation["operationId"].as_str().unwrap_or("?").to_string();
    let Some(documented) = operation["responses"].get(response.status.to_string()) else {
        return Err(format!("status not documented for {id}"));
    };
    let documented = resolve(document, documented);
    let content = documented.get("content").and_then(Value::as_object);
    let content_type = response.header("content-type");
    let Some(content) = content.filter(|content| !content.is_empty()) else {
        if !response.body.is_empty() || content_type.is_some() {
            return Err(format!("{id} documents no body for this status"));
        }
        return Ok(());
    };
    let Some(content_type) = content_type else {
        return Err(format!(
            "no Content-Type; {id} documents {:?}",
            content.keys()
        ));
    };
    let Some(media) = content.get(content_type) else {
        return Err(format!(
            "Content-Type {content_type} not documented for {id} (documented: {:?})",
            content.keys().collect::<Vec<_>>()
        ));
    };
    if head {
        if !response.body.is_empty() {
            return Err("HEAD answered with a body".into());
        }
        return Ok(());
    }
    if content_type != "application/json" {
        return Ok(());
    }
    let body: Value = serde_json::from_slice(&response.body)
        .map_err(|error| format!("the body is not JSON: {error}"))?;
    let validator = contract
        .validators
        .lock()
        .expect("validators lock")
        .entry((id.clone(), response.status))
        .or_insert_with(|| Arc::new(compile(document, &media["schema"])))
        .clone();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    if !errors.is_empty() {
        return Err(format!(
            "the body does not match {id}'s schema: {}",
            errors.join("; ")
        ));
    }
    // Error responses (those with `x-error-codes`; `/readyz`'s 503 is a status body) list their
    // codes. A compatibility route's response may also allow the original's body (a JSON
    // string, say) beside the `Error` envelope (the schema check above holds it to one of
    // them); the codes are the envelope's.
    let envelope = body.get("error").is_some();
    if response.status >= 400 && documented.get("x-error-codes").is_some() && envelope {
        let code = body["error"]["code"].as_str().unwrap_or_default();
        let listed = documented["x-error-codes"]
            .as_array()
            .is_some_and(|codes| codes.iter().any(|listed| listed == code));
        if !listed {
            return Err(format!("code `{code}` is not in {id}'s x-error-codes"));
        }
    }
    Ok(())
}

/// A routing error outside any operation: its status, the `Error` shape and its code.
fn expect_error(
    response: &Response,
    head: bool,
    status: u16,
    code: &str,
    why: &str,
) -> Result<(), String> {
    if response.status != status {
        return Err(format!("{why}: expected {status}"));
    }
    if head {
        return Ok(());
    }
    let body: Value = serde_json::from_slice(&response.body)
        .map_err(|error| format!("the body is not JSON: {error}"))?;
    let error_schema = serde_json::json!({"$ref": "#/components/schemas/Error"});
    let validator = compile(&contract().document, &error_schema);
    if !validator.is_valid(&body) || body["error"]["code"] != code {
        return Err(format!("{why}: expected the Error shape with code {code}"));
    }
    Ok(())
}

/// A validator of `schema`, whose `$ref`s point into the document's components.
fn compile(document: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    if let Value::Object(map) = &mut root {
        map.insert("components".into(), document["components"].clone());
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(true)
        .build(&root)
        .unwrap_or_else(|error| panic!("the document's schema does not compile: {error}"))
}
