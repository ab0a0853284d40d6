//! The route table and the document made from it: [`table`] is the server's own routes
//! ([`crate::service`]) followed by every registered domain's ([`crate::domains::DOMAINS`]), each
//! domain's compatibility set ([`crate::domains::CompatSet`]) included when its `--compat` flag
//! is on; [`document`] is the OpenAPI document of every route any configuration mounts (compat
//! sets included, tagged `compat`), so what is served and what is documented come from one list.
//! Tests read [`mounted`] to compare the two.

use hyper::Method;
use serde_json::Value;

use crate::config::ServerConfig;
use crate::domains::DOMAINS;
use crate::openapi::{Document, COMPAT_TAG};
use crate::router::Route;
use crate::service;

/// Every route the server serves with this configuration: a compatibility set's routes only
/// when `--compat` names it.
pub fn table(config: &ServerConfig) -> Vec<Route> {
    routes(|name| config.compat.enabled(name))
}

/// Every route any configuration mounts: what the document describes.
fn all() -> Vec<Route> {
    routes(|_| true)
}

/// The server's routes, then each domain's, with the compat sets `mount` accepts by name.
fn routes(mount: impl Fn(&str) -> bool) -> Vec<Route> {
    let mut routes = service::routes();
    for domain in DOMAINS {
        routes.extend((domain.routes)());
        if let Some(set) = domain.compat.as_ref().filter(|set| mount(set.name)) {
            routes.extend((set.routes)());
        }
    }
    routes
}

/// The `--compat` names some domain provides a set for.
pub fn compat_sets() -> Vec<&'static str> {
    DOMAINS
        .iter()
        .filter_map(|domain| domain.compat.as_ref().map(|set| set.name))
        .collect()
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
    if !compat_sets().is_empty() {
        document.tag(
            COMPAT_TAG,
            "Compatibility routes (`--compat <set>`; API.md \"Compatibility routes\"): another \
             service's routes in its own wire format, over the same engine commands as the \
             native API. Off by default: a server started without the set answers them 404 \
             `not_found`. Their bodies, error bodies included, are the original's, not this \
             API's error envelope; only the server's own answers (404 for a set that is off, \
             400 `invalid_header`, 408, 413, 429, 500, 503 `overloaded`/`unavailable`) use it.",
        );
    }
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

    /// Each compat set has a `--compat` name, is mounted only when that name is on, and names
    /// a set once.
    #[test]
    fn compat_sets_mount_only_when_named() {
        use crate::config::Compat;
        let sets = compat_sets();
        assert!(sets.contains(&"market"), "{sets:?}");
        for (index, name) in sets.iter().enumerate() {
            assert!(Compat::NAMES.contains(name), "unknown --compat name {name}");
            assert!(!sets[..index].contains(name), "two sets named {name}");
        }
        let patterns = |names: &[&str]| -> Vec<&'static str> {
            let config = ServerConfig {
                compat: Compat::parse(names).expect("known names"),
                ..ServerConfig::default()
            };
            mounted(&config).into_iter().map(|(_, p)| p).collect()
        };
        let off = patterns(&[]);
        let on = patterns(&["market"]);
        assert!(!off.contains(&"/place_order") && !off.contains(&"/get_orders/"));
        assert!(on.contains(&"/place_order") && on.contains(&"/get_orders/"));
        // Another set leaves market's off; every route stays routable together.
        assert!(!patterns(&["social"]).contains(&"/place_order"));
        Router::new(table(&ServerConfig {
            compat: Compat::parse(&Compat::NAMES).expect("every name"),
            ..ServerConfig::default()
        }));
    }

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
