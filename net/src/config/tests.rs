use std::path::Path;

use super::*;

fn sets(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn build(items: &[&str]) -> Result<ServerConfig, Error> {
    build_with(None, &sets(items), Flags::default(), no_env)
}

fn build_with(
    file: Option<&Path>,
    sets: &[String],
    flags: Flags,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ServerConfig, Error> {
    ServerConfig::build(file, sets, flags, env, &crate::domains::config_sections())
}

fn work(config: &ServerConfig) -> switchyard_engine::work::WorkConfig {
    config
        .engine_config()
        .section_mut::<switchyard_engine::work::WorkConfig>()
        .clone()
}

#[test]
fn defaults_match_api_md() {
    let config = build(&[]).expect("defaults are valid");
    assert_eq!(config.durability, Durability::Sync);
    assert_eq!(config.auth.token_ttl_seconds, 3600);
    assert_eq!(config.limits.max_body_bytes, 1_048_576);
    assert_eq!(config.limits.max_posts_per_user, None);
    assert_eq!(config.limits.max_likes_per_user, None);
    let work = work(&config);
    assert_eq!(work.bucket_size, 180);
    assert_eq!(work.max_buckets_per_request, 10);
    assert_eq!(work.lease_seconds, 7200);
    assert_eq!(work.max_expiries, 5);
    assert_eq!(work.leased_buckets_per_client_max, 100);
    assert_eq!(config.auth.verified_token_cache_entries, 65_536);
    let market = config
        .engine_config()
        .section::<switchyard_engine::market::MarketConfig>()
        .clone();
    assert_eq!(market.rate_limit_per_minute, 60);
    assert_eq!(market.max_price_age_seconds, 300);
    assert_eq!(market.price_source, "simulated");
    let notify = config
        .engine_config()
        .section::<switchyard_engine::dispatch::NotifyConfig>()
        .clone();
    assert_eq!(notify.max_attempts, 8);
    assert_eq!(config.server.listen, "127.0.0.1:8080");
    assert_eq!(config.server.data_dir, PathBuf::from("data/state"));
    assert_eq!(config.server.worker_threads, 1);
    assert_eq!(config.compat, Compat::default());
    let engine = config.engine_config();
    let defaults = EngineConfig::new("data/state");
    assert_eq!(engine.shards, defaults.shards);
    assert_eq!(engine.mailbox_depth_max, defaults.mailbox_depth_max);
    assert_eq!(engine.wal_segment_bytes_max, defaults.wal_segment_bytes_max);
    assert_eq!(engine.data_dir, defaults.data_dir);
}

#[test]
fn the_store_cache_key_has_its_sled_era_name_too() {
    for key in ["engine.store_cache_bytes", "engine.sled_cache_bytes"] {
        let config = build(&[&format!("{key}=1048576")]).expect(key);
        assert_eq!(config.engine_config().store_cache_bytes, 1 << 20, "{key}");
    }
}

#[test]
fn set_overrides_defaults_with_typed_values() {
    let config = build(&[
        "limits.max_body_bytes=1024",
        "durability=batch",
        "durability_batch_ms=5",
        "limits.max_posts_per_user=3",
        "market.price_source=fixed:EUR=1,GBP=2,USD=3",
        "engine.wal_preallocate=false",
        "engine.shards=2",
        "server.listen=127.0.0.1:0",
        "work.max_expiries=2",
        "work.leased_buckets_per_client_max=5000",
    ])
    .expect("valid");
    assert_eq!(config.limits.max_body_bytes, 1024);
    assert_eq!(config.durability, Durability::Batch);
    assert_eq!(config.limits.max_posts_per_user, Some(3));
    assert_eq!(
        config
            .engine_config()
            .section::<switchyard_engine::market::MarketConfig>()
            .price_source,
        "fixed:EUR=1,GBP=2,USD=3"
    );
    assert!(!config.engine.wal_preallocate);
    assert_eq!(config.server.listen, "127.0.0.1:0");
    let engine = config.engine_config();
    assert_eq!(engine.durability, Durability::Batch);
    assert_eq!(engine.durability_batch_ms, 5);
    assert_eq!(engine.shards, 2);
    assert_eq!(
        engine
            .section::<switchyard_engine::work::WorkConfig>()
            .max_expiries,
        2
    );
    assert_eq!(
        engine
            .section::<switchyard_engine::work::WorkConfig>()
            .leased_buckets_per_client_max,
        5000
    );
}

#[test]
fn file_then_set_then_flags_then_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchyard.toml");
    std::fs::write(
        &path,
        "durability = \"batch\"\n[limits]\nmax_body_bytes = 2048\nmax_in_flight = 7\n[server]\nlisten = \"0.0.0.0:9\"\n",
    )
    .expect("write");
    let flags = Flags {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some("elsewhere".into()),
        admin_token: None,
        compat: vec!["social".into(), "market".into()],
    };
    let env = |name: &str| match name {
        ENV_ADMIN_TOKEN => Some("from-env".to_string()),
        ENV_JWT_SECRET => Some("secret".to_string()),
        _ => None,
    };
    let config = build_with(
        Some(&path),
        &sets(&["limits.max_body_bytes=4096"]),
        flags.clone(),
        env,
    )
    .expect("valid");
    assert_eq!(config.durability, Durability::Batch);
    assert_eq!(config.limits.max_body_bytes, 4096);
    assert_eq!(config.limits.max_in_flight, 7);
    assert_eq!(config.server.listen, "127.0.0.1:0");
    assert_eq!(config.server.data_dir, PathBuf::from("elsewhere"));
    assert_eq!(config.secrets.admin_token.as_deref(), Some("from-env"));
    assert_eq!(config.secrets.jwt_secret.as_deref(), Some("secret"));
    assert_eq!(config.compat.names(), vec!["social", "market"]);
    assert!(
        !format!("{config:?}").contains("from-env"),
        "secrets are redacted"
    );

    let flags = Flags {
        admin_token: Some("from-flag".into()),
        ..flags
    };
    let config = build_with(Some(&path), &[], flags, env).expect("valid");
    assert_eq!(config.secrets.admin_token.as_deref(), Some("from-flag"));
}

#[test]
fn unknown_key_names_the_key() {
    for (assignment, key) in [
        ("limits.nope=1", "limits.nope"),
        ("nope=1", "nope"),
        ("nope.deeper=true", "nope.deeper"),
        ("engine.wal_segment_bytes=1", "engine.wal_segment_bytes"),
    ] {
        let error = build(&[assignment]).expect_err(assignment).to_string();
        assert!(error.contains(&format!("`{key}`")), "{assignment}: {error}");
    }
}

#[test]
fn wrong_type_names_the_key() {
    for (assignment, key) in [
        ("limits.max_body_bytes=abc", "limits.max_body_bytes"),
        ("limits.max_body_bytes=-1", "limits.max_body_bytes"),
        ("durability=fast", "durability"),
        ("engine.wal_preallocate=1", "engine.wal_preallocate"),
        ("market.price_source=5", "market.price_source"),
        ("limits=5", "limits"),
    ] {
        let error = build(&[assignment]).expect_err(assignment).to_string();
        assert!(error.contains(&format!("`{key}`")), "{assignment}: {error}");
    }
}

#[test]
fn errors_in_the_file_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[work]\nbucket_size = \"big\"\n").expect("write");
    let error = build_with(Some(&path), &[], Flags::default(), no_env)
        .expect_err("wrong type")
        .to_string();
    assert!(error.contains("`work.bucket_size`"), "{error}");

    std::fs::write(&path, "[work]\nbucket_sise = 3\n").expect("write");
    let error = build_with(Some(&path), &[], Flags::default(), no_env)
        .expect_err("unknown")
        .to_string();
    assert!(error.contains("`work.bucket_sise`"), "{error}");

    std::fs::write(&path, "[work\n").expect("write");
    let error = build_with(Some(&path), &[], Flags::default(), no_env)
        .expect_err("syntax")
        .to_string();
    assert!(error.contains("bad.toml"), "{error}");
}

#[test]
fn validate_names_the_key() {
    for (assignment, key) in [
        ("limits.max_header_bytes=10", "limits.max_header_bytes"),
        ("limits.max_in_flight=0", "limits.max_in_flight"),
        ("server.worker_threads=0", "server.worker_threads"),
        ("market.price_source=coindesk", "market.price_source"),
        ("work.bucket_size=0", "work.bucket_size"),
        ("work.max_expiries=0", "work.max_expiries"),
        (
            "work.leased_buckets_per_client_max=0",
            "work.leased_buckets_per_client_max",
        ),
        ("social.hunter_url=ftp://example.com/v", "social.hunter_url"),
        (
            "social.clearbit_url=example.com/find",
            "social.clearbit_url",
        ),
        (
            "social.adapter_ca_file=/nonexistent/switchyard-ca.pem",
            "social.adapter_ca_file",
        ),
    ] {
        let error = build(&[assignment]).expect_err(assignment).to_string();
        assert!(error.contains(&format!("`{key}`")), "{assignment}: {error}");
    }
    assert!(build(&["engine.shards=0"]).is_err());
}

#[test]
fn adapter_urls_take_https_and_http() {
    let defaults = build(&[]).expect("defaults are valid");
    assert!(defaults.social.hunter_url.starts_with("https://"));
    assert!(defaults.social.clearbit_url.starts_with("https://"));
    assert_eq!(defaults.social.adapter_ca_file, None);
    let config = build(&[
        "social.hunter_url=http://127.0.0.1:9/v2/email-verifier",
        "social.clearbit_url=https://127.0.0.1:9/v2/people/find",
    ])
    .expect("http:// and https:// are both accepted");
    assert_eq!(
        config.social.clearbit_url,
        "https://127.0.0.1:9/v2/people/find"
    );
}

#[test]
fn malformed_set_and_compat_are_rejected() {
    assert!(build(&["limits.max_body_bytes"]).is_err());
    assert!(build(&["limits..x=1"]).is_err());
    assert!(build(&["durability=sync", "durability.x=1"]).is_err());
    let flags = Flags {
        compat: vec!["social".into(), "chat".into()],
        ..Flags::default()
    };
    let error = build_with(None, &[], flags, no_env)
        .expect_err("unknown compat")
        .to_string();
    assert!(error.contains("`chat`"), "{error}");
}

/// README's key table lists every key `switchyard config` knows, and no other: a key added
/// to a config struct without a README row (or a row left behind) fails here.
#[test]
fn readme_lists_every_key() {
    let readme = include_str!("../../../README.md");
    let mut rows = readme
        .lines()
        .skip_while(|line| !line.starts_with("| key | default | meaning |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'));
    let mut listed = std::collections::BTreeSet::new();
    for row in rows.by_ref() {
        let first = row.split('|').nth(1).unwrap_or_default();
        // `(or its old name `x`)` names an alias, not a key of its own.
        let first = first.split("old name").next().unwrap_or_default();
        for key in first.split('`').skip(1).step_by(2) {
            assert!(listed.insert(key.to_string()), "README lists `{key}` twice");
        }
    }
    assert!(!listed.is_empty(), "README has no key table");
    let known: std::collections::BTreeSet<String> = build(&[])
        .expect("defaults are valid")
        .describe(&crate::domains::config_sections())
        .into_iter()
        .map(|row| row.key)
        .collect();
    let missing: Vec<_> = known.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&known).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README's key table is out of date: missing {missing:?}, not keys {unknown:?}"
    );
}

#[test]
fn describe_hides_api_keys() {
    let config = build(&[
        "social.hunter_api_key=hk-secret-1",
        "social.clearbit_api_key=cb-secret-2",
        "notify.webhook_secret=wh-secret-3",
    ])
    .expect("valid");
    let rows = config.describe(&crate::domains::config_sections());
    for row in &rows {
        assert!(
            !row.value.contains("secret") && !row.default.contains("secret"),
            "{} shows its value",
            row.key
        );
    }
    let hunter = rows
        .iter()
        .find(|row| row.key == "social.hunter_api_key")
        .expect("listed");
    assert_eq!(hunter.value, "set (hidden)");
    let webhook = rows
        .iter()
        .find(|row| row.key == "notify.webhook_secret")
        .expect("listed");
    assert_eq!(webhook.value, "set (hidden)");
    let port = rows
        .iter()
        .find(|row| row.key == "server.listen")
        .expect("listed");
    assert!(
        port.value.contains("8080"),
        "other values are shown: {}",
        port.value
    );

    // `[notify]`'s secrets. The section reaches `describe()` only once the dispatch domain
    // registers it on the server, so the rows are made from its keys directly, through the same
    // flattening `describe()` uses.
    let value = serde_json::json!({"notify": {
        "webhook_secret": "wh-secret-3",
        "smtp_password": "pw-secret-4",
        "sms_auth_token": "tok-secret-5",
        "smtp_url": "smtp://mailer:pw-secret-6@mail.example.com:587",
        "sms_url": "https://api.twilio.com",
        "smtp_user": "mailer",
        "provider_timeout_ms": 10000,
    }});
    let defaults = serde_json::json!({"notify": {"webhook_secret": null, "smtp_url": null}});
    let mut rows = Vec::new();
    super::describe::flatten_into("", &value, &defaults, &mut rows);
    let shown = |key: &str| {
        rows.iter()
            .find(|row| row.key == key)
            .unwrap_or_else(|| panic!("{key} listed"))
            .value
            .clone()
    };
    for row in &rows {
        assert!(!row.value.contains("secret"), "{} shows its value", row.key);
    }
    for key in [
        "notify.webhook_secret",
        "notify.smtp_password",
        "notify.sms_auth_token",
    ] {
        assert_eq!(shown(key), "set (hidden)", "{key}");
    }
    assert_eq!(
        shown("notify.smtp_url"),
        "\"smtp://(hidden)@mail.example.com:587\""
    );
    assert_eq!(shown("notify.sms_url"), "\"https://api.twilio.com\"");
    assert_eq!(shown("notify.smtp_user"), "\"mailer\"");
    assert_eq!(shown("notify.provider_timeout_ms"), "10000");
}

#[test]
fn secret_key_and_userinfo_rules() {
    use super::describe::{is_secret_key, without_userinfo};
    for name in [
        "hunter_api_key",
        "webhook_secret",
        "smtp_password",
        "admin_token",
    ] {
        assert!(is_secret_key(name), "{name}");
    }
    for name in [
        "smtp_user",
        "secret_count",
        "verified_token_cache_entries",
        "smtp_url",
    ] {
        assert!(!is_secret_key(name), "{name}");
    }
    let check = |text: &str, expected: Option<&str>| {
        assert_eq!(without_userinfo(text).as_deref(), expected, "{text}");
    };
    check("smtp://u:p@host:25", Some("smtp://(hidden)@host:25"));
    check("smtps://u@host", Some("smtps://(hidden)@host"));
    check(
        "https://a:b@host/path?q=x@y",
        Some("https://(hidden)@host/path?q=x@y"),
    );
    check("https://host/path?to=a@b", None);
    check("smtp://host:25", None);
    check("user@example.com", None);
}

#[test]
fn for_tests_is_valid() {
    ServerConfig::for_tests("/tmp/x").validate().expect("valid");
}
