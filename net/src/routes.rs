//! The route table and the document made from it: [`table`] is the server's own routes
//! ([`crate::service`]) followed by every registered domain's ([`crate::domains::DOMAINS`]);
//! [`document`] is the OpenAPI document of the same routes, so what is served and what is
//! documented come from one list. Tests read [`mounted`] to compare the two.

use hyper::Method;
use serde_json::Value;

use crate::config::ServerConfig;
use crate::domains::DOMAINS;
use crate::openapi::Document;
use crate::router::Route;
use crate::service;

/// Every route the server serves with this configuration.
pub fn table(config: &ServerConfig) -> Vec<Route> {
    // No route depends on the configuration yet; compatibility sets (`--compat`) will mount
    // theirs only when enabled.
    let _ = config;
    all()
}

/// Every route any configuration mounts: what the document describes.
fn all() -> Vec<Route> {
    let mut routes = service::routes();
    for domain in DOMAINS {
        routes.extend((domain.routes)());
    }
    routes
}

/// Every `(method, pattern)` the router mounts with `config`, in table order. Read from the same
/// [`table`] the router is built from (never a second list), so the OpenAPI drift test
/// (`net/tests/openapi.rs`) compares the document with what is really served. Patterns use
/// `{name}` parameters, the syntax of OpenAPI path templates.
pub fn mounted(config: &ServerConfig) -> Vec<(Method, &'static str)> {
    table(config)
        .into_iter()
        .map(|route| (route.method, route.pattern))
        .collect()
}

/// The OpenAPI document of every route ([`crate::openapi`]).
pub fn document() -> Value {
    let mut document = Document::new();
    for domain in DOMAINS {
        (domain.describe)(&mut document);
    }
    for route in all() {
        document.add(&route.method, route.pattern, (route.doc)());
    }
    document.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Router;

    #[test]
    fn the_server_table_is_valid_and_documented() {
        let router = Router::new(table(&ServerConfig::default()));
        assert!(router.patterns().contains(&"/healthz"));
        assert!(router.patterns().contains(&"/api/v1/demo/counters/{id}"));
        let document = document();
        assert!(document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.1")));
        for pattern in router.patterns() {
            assert!(
                document["paths"].get(*pattern).is_some(),
                "{pattern} is not documented"
            );
        }
    }
}
