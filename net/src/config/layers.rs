//! The layers a [`ServerConfig`] is built from: defaults, the TOML file, `--set` assignments,
//! flags and the environment; and the domains' sections, each read by the engine's own type.
//! Every error names the dotted key it concerns (see [`check_each_key`]).

use std::path::Path;

use switchyard_engine::config::DomainConfig;
use switchyard_engine::EngineConfig;

use super::{Compat, Flags, ServerConfig, ENV_ADMIN_TOKEN, ENV_JWT_SECRET};
use crate::error::Error;

impl ServerConfig {
    /// Builds the configuration from every layer and validates it. `env` reads an environment
    /// variable (injected so tests need not touch the process environment).
    pub fn build(
        file: Option<&Path>,
        sets: &[String],
        flags: Flags,
        env: impl Fn(&str) -> Option<String>,
        sections: &[ConfigSection],
    ) -> Result<ServerConfig, Error> {
        let mut config = ServerConfig::from_layers(file, sets, sections)?;
        if let Some(listen) = flags.listen {
            config.server.listen = listen;
        }
        if let Some(data_dir) = flags.data_dir {
            config.server.data_dir = data_dir;
        }
        config.secrets.admin_token = flags
            .admin_token
            .or_else(|| env(ENV_ADMIN_TOKEN))
            .filter(|token| !token.is_empty());
        config.secrets.jwt_secret = env(ENV_JWT_SECRET).filter(|secret| !secret.is_empty());
        config.compat = Compat::parse(&flags.compat)?;
        config.validate()?;
        Ok(config)
    }

    /// Defaults ← TOML file ← `--set` assignments, the domains' `sections` read into the engine
    /// config by their own types. Not validated.
    pub fn from_layers(
        file: Option<&Path>,
        sets: &[String],
        sections: &[ConfigSection],
    ) -> Result<ServerConfig, Error> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io(format!("reading config file {}", path.display()), e))?;
                text.parse::<toml::Table>().map_err(|e| {
                    let line = e
                        .span()
                        .map(|span| text[..span.start.min(text.len())].lines().count().max(1))
                        .unwrap_or(1);
                    Error::Config(format!(
                        "config file {} line {line}: {}",
                        path.display(),
                        e.message().replace('\n', " ")
                    ))
                })?
            }
            None => toml::Table::new(),
        };
        for assignment in sets {
            apply_set(&mut table, assignment)?;
        }
        let domain_tables: Vec<(&ConfigSection, Option<toml::Value>)> = sections
            .iter()
            .map(|section| (section, table.remove(section.name)))
            .collect();
        check_each_key::<ServerConfig>(&table, &[])?;
        let mut config = toml::Value::Table(table)
            .try_into::<ServerConfig>()
            .map_err(|e| Error::Config(e.to_string().replace('\n', " ")))?;
        for (section, value) in domain_tables {
            (section.load)(value, &mut config.engine)?;
        }
        Ok(config)
    }
}

/// A domain's configuration section: read into the engine config by the domain's own
/// `DomainConfig` type (`section::<T>()`), so its keys, defaults and checks are declared once,
/// in the engine. A domain's net module lists it in `HttpDomain::config`.
#[derive(Clone, Copy)]
pub struct ConfigSection {
    pub name: &'static str,
    /// Reads the section's table (if given) into the engine config; every error names its key.
    pub load: fn(Option<toml::Value>, &mut EngineConfig) -> Result<(), Error>,
    /// The section's effective and default values (`ServerConfig::describe`).
    pub show: fn(&EngineConfig) -> (serde_json::Value, serde_json::Value),
}

/// The section of domain config type `T`.
pub const fn section<T: DomainConfig>() -> ConfigSection {
    ConfigSection {
        name: T::SECTION,
        load: load_section::<T>,
        show: super::describe::show_section::<T>,
    }
}

fn load_section<T: DomainConfig>(
    value: Option<toml::Value>,
    engine: &mut EngineConfig,
) -> Result<(), Error> {
    let table = match value {
        None => toml::Table::new(),
        Some(toml::Value::Table(table)) => table,
        Some(_) => {
            return Err(Error::Config(format!(
                "key `{}` is a section, not a value",
                T::SECTION
            )))
        }
    };
    check_each_key::<T>(&table, &[T::SECTION])?;
    let section = toml::Value::Table(table).try_into::<T>().map_err(|e| {
        Error::Config(format!(
            "[{}] {}",
            T::SECTION,
            e.to_string().replace('\n', " ")
        ))
    })?;
    section.validate().map_err(Error::Config)?;
    *engine.section_mut::<T>() = section;
    Ok(())
}

/// Applies one `KEY=VALUE` to the table. The value is a TOML value when it parses as one
/// (`1024`, `true`, `0.5`, `"quoted"`), else the raw text as a string (`batch`, `fixed:EUR=1`).
fn apply_set(table: &mut toml::Table, assignment: &str) -> Result<(), Error> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| Error::Config(format!("--set `{assignment}`: expected KEY=VALUE")))?;
    let key = key.trim();
    let segments: Vec<&str> = key.split('.').collect();
    let valid_segment = |segment: &&str| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !segments.iter().all(valid_segment) {
        return Err(Error::Config(format!("--set: invalid key `{key}`")));
    }
    let value = parse_set_value(raw);
    let (last, parents) = segments
        .split_last()
        .ok_or_else(|| Error::Config(format!("--set: invalid key `{key}`")))?;
    let mut current = table;
    for (index, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(Error::Config(format!(
                    "key `{key}`: `{}` is not a section",
                    segments[..=index].join(".")
                )))
            }
        };
    }
    current.insert(last.to_string(), value);
    Ok(())
}

fn parse_set_value(raw: &str) -> toml::Value {
    if let Ok(mut parsed) = format!("value = {raw}").parse::<toml::Table>() {
        if parsed.len() == 1 {
            if let Some(value) = parsed.remove("value") {
                return value;
            }
        }
    }
    toml::Value::String(raw.to_string())
}

/// Deserializes each leaf of `table` on its own as a `T` (the table being under `prefix`), so an
/// unknown key or a wrong type is reported with its dotted key even though serde does not track
/// paths.
fn check_each_key<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    prefix: &[&str],
) -> Result<(), Error> {
    let mut leaves = Vec::new();
    collect_leaves(table, &mut Vec::new(), &mut leaves);
    for (path, value) in leaves {
        let mut single = value.clone();
        for segment in path.iter().rev() {
            let mut wrapper = toml::Table::new();
            wrapper.insert(segment.to_string(), single);
            single = toml::Value::Table(wrapper);
        }
        if let Err(error) = single.try_into::<T>() {
            // toml appends "\nin `section`"; the key named here is more precise, and the
            // message must stay on one line.
            let message = error.to_string();
            let first_line = message.lines().next().unwrap_or_default().trim();
            let key: Vec<&str> = prefix.iter().copied().chain(path.iter().copied()).collect();
            return Err(Error::Config(format!(
                "key `{}`: {first_line}",
                key.join("."),
            )));
        }
    }
    Ok(())
}

fn collect_leaves<'a>(
    table: &'a toml::Table,
    prefix: &mut Vec<&'a str>,
    out: &mut Vec<(Vec<&'a str>, &'a toml::Value)>,
) {
    for (key, value) in table {
        prefix.push(key);
        match value {
            toml::Value::Table(inner) if !inner.is_empty() => collect_leaves(inner, prefix, out),
            _ => out.push((prefix.clone(), value)),
        }
        prefix.pop();
    }
}
