//! `switchyard config`: every key with its effective value, its default and its unit, from
//! the server's own sections, `[engine]` and each domain's section. A key that proves identity
//! to a third party (`*_api_key`, `*_secret`, `*_password`, `*_token`) is shown only as set or
//! unset, and a URL's user-info (`smtp://user:password@host`) as `(hidden)`.

use switchyard_engine::config::DomainConfig;
use switchyard_engine::EngineConfig;

use super::{ConfigSection, ServerConfig};

impl ServerConfig {
    /// Every key with its value, its default and its unit (`switchyard config`): the server's
    /// own sections, `[engine]`, and each of `sections`.
    pub fn describe(&self, sections: &[ConfigSection]) -> Vec<KeyRow> {
        let defaults = ServerConfig::default();
        let mut rows = Vec::new();
        let value = |config: &ServerConfig| serde_json::to_value(config).unwrap_or_default();
        flatten_into("", &value(self), &value(&defaults), &mut rows);
        for section in sections {
            let (value, default) = (section.show)(&self.engine);
            flatten_into(section.name, &value, &default, &mut rows);
        }
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    }
}

pub(super) fn show_section<T: DomainConfig>(
    engine: &EngineConfig,
) -> (serde_json::Value, serde_json::Value) {
    let mut engine = engine.clone();
    let value = serde_json::to_value(&*engine.section_mut::<T>()).unwrap_or_default();
    (
        value,
        serde_json::to_value(T::default()).unwrap_or_default(),
    )
}

/// One key for `switchyard config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub key: String,
    /// As TOML would write it; `unset` for an empty optional key.
    pub value: String,
    pub default: String,
    /// From the key's suffix (`_ms`, `_seconds`, `_bytes`, `_kib`), else empty.
    pub unit: &'static str,
}

pub(super) fn flatten_into(
    prefix: &str,
    value: &serde_json::Value,
    default: &serde_json::Value,
    rows: &mut Vec<KeyRow>,
) {
    let shown = |value: Option<&serde_json::Value>| match value {
        None | Some(serde_json::Value::Null) => "unset".to_string(),
        Some(serde_json::Value::String(text)) => format!("{text:?}"),
        Some(other) => other.to_string(),
    };
    let serde_json::Value::Object(map) = value else {
        return;
    };
    for (name, inner) in map {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let default_inner = default.get(name);
        match inner {
            serde_json::Value::Object(_) => flatten_into(
                &key,
                inner,
                default_inner.unwrap_or(&serde_json::Value::Null),
                rows,
            ),
            // A key that proves identity to a third party is never printed, only whether it is set.
            _ if is_secret_key(name) && !inner.is_null() => rows.push(KeyRow {
                unit: "",
                value: "set (hidden)".into(),
                default: shown(default_inner),
                key,
            }),
            // A URL's user-info may hold a password (`smtp://user:password@host`).
            serde_json::Value::String(text) if without_userinfo(text).is_some() => {
                rows.push(KeyRow {
                    unit: unit_of(name),
                    value: shown(
                        without_userinfo(text)
                            .map(serde_json::Value::String)
                            .as_ref(),
                    ),
                    default: shown(default_inner),
                    key,
                })
            }
            _ => rows.push(KeyRow {
                unit: unit_of(name),
                value: shown(Some(inner)),
                default: shown(default_inner),
                key,
            }),
        }
    }
}

/// Whether a key's value proves identity (`*_api_key`, `*_secret`, `*_password`, `*_token`):
/// `switchyard config` shows only whether it is set.
pub(super) fn is_secret_key(name: &str) -> bool {
    ["_api_key", "_secret", "_password", "_token"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// `text` with the user-info of its URL replaced by `(hidden)` (`smtp://(hidden)@host:587`), or
/// `None` when it is not a URL with user-info.
pub(super) fn without_userinfo(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some(format!("{scheme}://(hidden){}", &rest[at..]))
}

fn unit_of(name: &str) -> &'static str {
    [
        ("_ms", "ms"),
        ("_seconds", "s"),
        ("_bytes", "bytes"),
        ("_kib", "KiB"),
        ("_per_minute", "per minute"),
    ]
    .iter()
    .find(|(suffix, _)| name.ends_with(suffix) || name.contains(&format!("{suffix}_")))
    .map_or("", |(_, unit)| unit)
}
