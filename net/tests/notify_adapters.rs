//! The notification adapters (`switchyard_net::notify`) against loopback fakes that speak the
//! real protocols (`notify_fakes`: a Standard Webhooks receiver that verifies signatures, a
//! Twilio-shaped Messages API, a small SMTP server), through the public `Courier::deliver`
//! exactly as the engine's effect workers call it (from plain threads).
//!
//! What is checked, per provider: the request as the provider sees it (signature, exact JSON
//! body, path, basic auth, form fields, Subject, Message-ID, dot-unstuffing); the idempotency
//! key deduplicated at the deduplicating fakes; every injected fault mapped to its `Outcome`
//! (time-outs with a small `provider_timeout_ms` come back as `Retry`: no other timing is
//! asserted, except the lower bound the rate limit imposes); concurrency limits held (the fake's
//! most-in-flight never above the configured limit) and batches carried concurrently (more than
//! one in flight); start-up refusing a provider without its secret.

mod notify_fakes;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify_fakes::{
    closed_port, HttpFault, SmtpFake, SmtpFault, SmtpOptions, TwilioFake, WebhookFake,
};
use serde_json::json;
use switchyard_engine::dispatch::{Channel, Courier, Message, NotifyConfig, Outcome};
use switchyard_net::notify::{courier, courier_with, Secrets};

/// A provider time-out short enough for the fault tests.
const SHORT_TIMEOUT_MS: u64 = 300;
/// A time-out no healthy loopback call comes near, for the tests that expect success.
const LONG_TIMEOUT_MS: u64 = 10_000;
/// How long the fakes hold each request when a test looks at concurrency.
const HOLD: Duration = Duration::from_millis(20);
const SID: &str = "AC0123456789abcdef";
const TOKEN: &str = "sms-token-secret-1";

fn config() -> NotifyConfig {
    NotifyConfig {
        provider_timeout_ms: LONG_TIMEOUT_MS,
        ..NotifyConfig::default()
    }
}

fn message(channel: Channel, to: &str, key: &str) -> Message {
    Message {
        key: key.into(),
        notification_id: 41,
        dispatch_id: 7,
        contact_id: 13,
        channel,
        to: to.into(),
        program: "Storm".into(),
        event_type: "Flood alert".into(),
        message: "Move to higher ground.".into(),
        attempts: 0,
    }
}

fn build(config: &NotifyConfig, secrets: Secrets) -> Arc<dyn Courier> {
    match courier_with(config, secrets) {
        Ok(courier) => courier,
        Err(error) => panic!("courier: {error}"),
    }
}

fn deliver_one(courier: &dyn Courier, message: Message) -> Outcome {
    let mut outcomes = courier.deliver(&[message]);
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

/// An outcome's shape, for tables of expectations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Sent,
    Retry(Option<u64>),
    Refused,
}

fn shape(outcome: &Outcome) -> Expect {
    match outcome {
        Outcome::Sent => Expect::Sent,
        Outcome::Retry { retry_after_ms, .. } => Expect::Retry(*retry_after_ms),
        Outcome::Refused { .. } => Expect::Refused,
        Outcome::Outboxed => panic!("outboxed: no provider was used"),
    }
}

fn error_of(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Retry { error, .. } | Outcome::Refused { error } => error,
        other => panic!("no error in {other:?}"),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Webhooks

#[test]
fn webhook_is_signed_and_carries_the_exact_body() {
    let fake = WebhookFake::start(Some("whsec-test-1"), HttpFault::None, Duration::ZERO);
    let config = NotifyConfig {
        webhook_secret: Some("whsec-test-1".into()),
        ..config()
    };
    let courier = build(&config, Secrets::default());
    let outcome = deliver_one(
        &*courier,
        message(Channel::Webhook, &fake.url("/hooks/a?x=1"), "n-41-k"),
    );
    assert_eq!(outcome, Outcome::Sent);
    fake.seen(|seen| {
        assert_eq!(seen.bad_signatures, 0);
        assert_eq!(seen.deliveries.len(), 1);
        let delivery = &seen.deliveries[0];
        assert_eq!(delivery.id, "n-41-k");
        assert_eq!(delivery.path, "/hooks/a");
        assert_eq!(delivery.content_type.as_deref(), Some("application/json"));
        assert!(delivery.signature.as_deref().unwrap().starts_with("v1,"));
        assert!(delivery.timestamp.abs_diff(unix_now()) < 300);
        assert_eq!(
            delivery.body,
            json!({
                "notification_id": 41,
                "dispatch_id": 7,
                "program": "Storm",
                "event_type": "Flood alert",
                "message": "Move to higher ground.",
                "contact_id": 13,
            })
        );
    });
}

#[test]
fn webhook_without_a_secret_is_unsigned() {
    let fake = WebhookFake::start(None, HttpFault::None, Duration::ZERO);
    let courier = build(&config(), Secrets::default());
    let outcome = deliver_one(&*courier, message(Channel::Webhook, &fake.url("/"), "k-1"));
    assert_eq!(outcome, Outcome::Sent);
    fake.seen(|seen| {
        assert_eq!(seen.deliveries.len(), 1);
        assert_eq!(seen.deliveries[0].signature, None);
    });
}

/// The receiver really checks: a signature made with another secret is refused (401 →
/// `Refused`), and the environment's secret beats the config's.
#[test]
fn webhook_signature_uses_the_secret_in_force() {
    let fake = WebhookFake::start(Some("from-env"), HttpFault::None, Duration::ZERO);
    let config = NotifyConfig {
        webhook_secret: Some("from-config".into()),
        ..config()
    };
    let config_only = build(&config, Secrets::default());
    let outcome = deliver_one(
        &*config_only,
        message(Channel::Webhook, &fake.url("/"), "k-1"),
    );
    assert_eq!(shape(&outcome), Expect::Refused, "{outcome:?}");
    assert!(error_of(&outcome).contains("401"), "{outcome:?}");
    assert!(!error_of(&outcome).contains("from-config"));

    let env_wins = build(
        &config,
        Secrets {
            webhook_secret: Some("from-env".into()),
            ..Secrets::default()
        },
    );
    let outcome = deliver_one(&*env_wins, message(Channel::Webhook, &fake.url("/"), "k-1"));
    assert_eq!(outcome, Outcome::Sent);
    fake.seen(|seen| {
        assert_eq!(seen.bad_signatures, 1);
        assert_eq!(seen.deliveries.len(), 1);
    });
}

#[test]
fn webhook_same_key_twice_is_one_delivery() {
    let fake = WebhookFake::start(Some("s"), HttpFault::None, Duration::ZERO);
    let config = NotifyConfig {
        webhook_secret: Some("s".into()),
        ..config()
    };
    let courier = build(&config, Secrets::default());
    let again = message(Channel::Webhook, &fake.url("/"), "same-key");
    assert_eq!(deliver_one(&*courier, again.clone()), Outcome::Sent);
    assert_eq!(deliver_one(&*courier, again), Outcome::Sent);
    fake.seen(|seen| {
        assert_eq!(seen.requests, 2);
        assert_eq!(seen.deliveries.len(), 1);
        assert_eq!(seen.duplicates, 1);
    });
}

#[test]
fn webhook_faults_map_to_outcomes() {
    let check = |fault: HttpFault, message_bytes: usize, expected: Expect| {
        let fake = WebhookFake::start(None, fault.clone(), Duration::ZERO);
        let config = NotifyConfig {
            provider_timeout_ms: SHORT_TIMEOUT_MS,
            ..config()
        };
        let courier = build(&config, Secrets::default());
        let mut sent = message(Channel::Webhook, &fake.url("/"), "k-fault");
        sent.message = "m".repeat(message_bytes);
        let outcome = deliver_one(&*courier, sent);
        assert_eq!(shape(&outcome), expected, "{fault:?}: {outcome:?}");
    };
    check(HttpFault::Status(500, None), 10, Expect::Retry(None));
    check(
        HttpFault::Status(503, Some("120")),
        10,
        Expect::Retry(Some(120_000)),
    );
    check(
        HttpFault::Status(429, Some("7")),
        10,
        Expect::Retry(Some(7_000)),
    );
    check(HttpFault::Status(408, None), 10, Expect::Retry(None));
    check(HttpFault::Status(400, None), 10, Expect::Refused);
    check(HttpFault::Status(404, None), 10, Expect::Refused);
    check(HttpFault::Status(410, None), 10, Expect::Refused);
    check(HttpFault::Status(302, None), 10, Expect::Retry(None));
    check(HttpFault::Status(204, None), 10, Expect::Sent);
    check(HttpFault::NeverAnswer, 10, Expect::Retry(None));
    check(HttpFault::DropConnection, 10, Expect::Retry(None));
    // 16 MiB: more than the loopback socket buffers hold, so the write itself stalls.
    check(HttpFault::SlowReader, 16 << 20, Expect::Retry(None));
}

#[test]
fn webhook_without_an_answer_is_retried() {
    let courier = build(
        &NotifyConfig {
            provider_timeout_ms: SHORT_TIMEOUT_MS,
            ..config()
        },
        Secrets::default(),
    );
    let nobody = format!("http://{}/hook", closed_port());
    let outcome = deliver_one(&*courier, message(Channel::Webhook, &nobody, "k"));
    assert_eq!(shape(&outcome), Expect::Retry(None), "{outcome:?}");
    for not_a_url in ["", "ftp://example.com/x", "mailto:a@b.c", "http://"] {
        let outcome = deliver_one(&*courier, message(Channel::Webhook, not_a_url, "k"));
        assert_eq!(shape(&outcome), Expect::Refused, "{not_a_url}: {outcome:?}");
    }
}

#[test]
fn webhook_batch_is_carried_concurrently_within_the_limit() {
    const BATCH: usize = 200;
    let fake = WebhookFake::start(None, HttpFault::None, HOLD);
    let config = NotifyConfig {
        webhook_concurrency: 64,
        ..config()
    };
    let courier = build(&config, Secrets::default());
    let batch: Vec<Message> = (0..BATCH)
        .map(|index| message(Channel::Webhook, &fake.url("/"), &format!("k-{index}")))
        .collect();
    let outcomes = courier.deliver(&batch);
    assert_eq!(outcomes, vec![Outcome::Sent; BATCH]);
    fake.seen(|seen| {
        assert_eq!(seen.deliveries.len(), BATCH);
        assert_eq!(seen.duplicates, 0);
    });
    let most = fake.most_in_flight();
    assert!(most > 1 && most <= 64, "most in flight: {most}");
}

/// The limit is one semaphore for the provider: two workers delivering at once share it.
#[test]
fn webhook_concurrency_limit_holds_across_deliver_calls() {
    let fake = WebhookFake::start(None, HttpFault::None, HOLD);
    let config = NotifyConfig {
        webhook_concurrency: 4,
        ..config()
    };
    let courier = build(&config, Secrets::default());
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let courier = courier.clone();
            let url = fake.url("/");
            thread::spawn(move || {
                let batch: Vec<Message> = (0..20)
                    .map(|index| message(Channel::Webhook, &url, &format!("w{worker}-{index}")))
                    .collect();
                courier.deliver(&batch)
            })
        })
        .collect();
    for worker in workers {
        assert_eq!(worker.join().unwrap(), vec![Outcome::Sent; 20]);
    }
    let most = fake.most_in_flight();
    assert!((2..=4).contains(&most), "most in flight: {most}");
    fake.seen(|seen| assert_eq!(seen.deliveries.len(), 40));
}

/// 10 per second from a full bucket: 10 start at once, the 15th no sooner than 0.5 s later.
#[test]
fn webhook_rate_limit_paces_starts() {
    let fake = WebhookFake::start(None, HttpFault::None, Duration::ZERO);
    let config = NotifyConfig {
        webhook_rate_per_second: 10,
        ..config()
    };
    let courier = build(&config, Secrets::default());
    let batch: Vec<Message> = (0..15)
        .map(|index| message(Channel::Webhook, &fake.url("/"), &format!("k-{index}")))
        .collect();
    assert_eq!(courier.deliver(&batch), vec![Outcome::Sent; 15]);
    fake.seen(|seen| {
        let first = seen.deliveries.iter().map(|d| d.at).min().unwrap();
        let last = seen.deliveries.iter().map(|d| d.at).max().unwrap();
        assert!(
            last - first >= Duration::from_millis(450),
            "15 starts at 10/s took only {:?}",
            last - first
        );
    });
}

#[test]
fn outcomes_keep_batch_order_and_unconfigured_channels_go_to_the_outbox() {
    let ok = WebhookFake::start(None, HttpFault::None, Duration::ZERO);
    let gone = WebhookFake::start(None, HttpFault::Status(410, None), Duration::ZERO);
    let courier = build(&config(), Secrets::default());
    let batch = [
        message(Channel::Email, "someone@example.com", "k-1"),
        message(Channel::Webhook, &gone.url("/"), "k-2"),
        message(Channel::Sms, "+15005550006", "k-3"),
        message(Channel::Webhook, &ok.url("/"), "k-4"),
    ];
    let outcomes = courier.deliver(&batch);
    assert_eq!(outcomes.len(), 4);
    assert_eq!(outcomes[0], Outcome::Outboxed);
    assert_eq!(shape(&outcomes[1]), Expect::Refused);
    assert_eq!(outcomes[2], Outcome::Outboxed);
    assert_eq!(outcomes[3], Outcome::Sent);
    assert!(courier.deliver(&[]).is_empty());
}

/// `courier` reads its secrets from the environment; with no provider needing one it starts.
#[test]
fn courier_from_the_default_config_starts() {
    let courier = match courier(&NotifyConfig::default()) {
        Ok(courier) => courier,
        Err(error) => panic!("{error}"),
    };
    let outcomes = courier.deliver(&[message(Channel::Email, "a@example.com", "k")]);
    assert_eq!(outcomes, vec![Outcome::Outboxed]);
}

// ---------------------------------------------------------------------------------------------
// SMS

fn sms_config(fake_url: &str) -> NotifyConfig {
    NotifyConfig {
        sms_url: Some(fake_url.into()),
        sms_account_sid: Some(SID.into()),
        sms_from: "+15005550001".into(),
        ..config()
    }
}

fn sms_secrets(token: &str) -> Secrets {
    Secrets {
        sms_auth_token: Some(token.into()),
        ..Secrets::default()
    }
}

#[test]
fn sms_reaches_the_gateway_with_auth_form_and_key() {
    let fake = TwilioFake::start(SID, TOKEN, HttpFault::None, Duration::ZERO);
    let courier = build(&sms_config(&fake.url()), sms_secrets(TOKEN));
    let mut sent = message(Channel::Sms, "+15005550006", "sms-key-1");
    sent.message = "Flood: move up & stay safe = 100% ✓".into();
    assert_eq!(deliver_one(&*courier, sent), Outcome::Sent);
    fake.seen(|seen| {
        assert_eq!(seen.auth_failures, 0);
        assert_eq!(
            seen.messages,
            vec![notify_fakes::Sms {
                to: "+15005550006".into(),
                from: "+15005550001".into(),
                body: "Flood: move up & stay safe = 100% ✓".into(),
                key: "sms-key-1".into(),
            }]
        );
    });
    // A trailing slash on the base URL changes nothing.
    let courier = build(&sms_config(&format!("{}/", fake.url())), sms_secrets(TOKEN));
    let outcome = deliver_one(
        &*courier,
        message(Channel::Sms, "+15005550006", "sms-key-2"),
    );
    assert_eq!(outcome, Outcome::Sent);
}

#[test]
fn sms_same_key_twice_is_one_message() {
    let fake = TwilioFake::start(SID, TOKEN, HttpFault::None, Duration::ZERO);
    let courier = build(&sms_config(&fake.url()), sms_secrets(TOKEN));
    let again = message(Channel::Sms, "+15005550006", "sms-same");
    assert_eq!(deliver_one(&*courier, again.clone()), Outcome::Sent);
    assert_eq!(deliver_one(&*courier, again), Outcome::Sent);
    fake.seen(|seen| {
        assert_eq!(seen.messages.len(), 1);
        assert_eq!(seen.duplicates, 1);
    });
}

#[test]
fn sms_invalid_number_is_refused_with_the_gateway_message() {
    let fake = TwilioFake::start(SID, TOKEN, HttpFault::None, Duration::ZERO);
    let courier = build(&sms_config(&fake.url()), sms_secrets(TOKEN));
    let outcome = deliver_one(&*courier, message(Channel::Sms, "555-not-a-number", "k"));
    assert_eq!(shape(&outcome), Expect::Refused, "{outcome:?}");
    let error = error_of(&outcome);
    assert!(error.contains("21211"), "{error}");
    assert!(error.contains("is not a valid phone number"), "{error}");
}

#[test]
fn sms_wrong_token_is_refused_and_never_quoted() {
    let fake = TwilioFake::start(SID, TOKEN, HttpFault::None, Duration::ZERO);
    let courier = build(&sms_config(&fake.url()), sms_secrets("wrong-token-secret"));
    let outcome = deliver_one(&*courier, message(Channel::Sms, "+15005550006", "k"));
    assert_eq!(shape(&outcome), Expect::Refused, "{outcome:?}");
    assert!(error_of(&outcome).contains("401"), "{outcome:?}");
    assert!(!error_of(&outcome).contains("secret"), "{outcome:?}");
    fake.seen(|seen| assert_eq!(seen.auth_failures, 1));
}

#[test]
fn sms_faults_map_to_outcomes() {
    let check = |fault: HttpFault, expected: Expect| {
        let fake = TwilioFake::start(SID, TOKEN, fault.clone(), Duration::ZERO);
        let config = NotifyConfig {
            provider_timeout_ms: SHORT_TIMEOUT_MS,
            ..sms_config(&fake.url())
        };
        let courier = build(&config, sms_secrets(TOKEN));
        let outcome = deliver_one(&*courier, message(Channel::Sms, "+15005550006", "k"));
        assert_eq!(shape(&outcome), expected, "{fault:?}: {outcome:?}");
    };
    check(HttpFault::Status(500, None), Expect::Retry(None));
    check(
        HttpFault::Status(429, Some("3")),
        Expect::Retry(Some(3_000)),
    );
    check(HttpFault::Status(503, Some("0")), Expect::Retry(Some(0)));
    check(HttpFault::NeverAnswer, Expect::Retry(None));
    check(HttpFault::DropConnection, Expect::Retry(None));
    check(HttpFault::SlowReader, Expect::Retry(None));

    let nobody = format!("http://{}", closed_port());
    let courier = build(&sms_config(&nobody), sms_secrets(TOKEN));
    let outcome = deliver_one(&*courier, message(Channel::Sms, "+15005550006", "k"));
    assert_eq!(shape(&outcome), Expect::Retry(None), "{outcome:?}");
}

#[test]
fn sms_concurrency_limit_holds() {
    let fake = TwilioFake::start(SID, TOKEN, HttpFault::None, HOLD);
    let config = NotifyConfig {
        sms_concurrency: 3,
        ..sms_config(&fake.url())
    };
    let courier = build(&config, sms_secrets(TOKEN));
    let batch: Vec<Message> = (0..24)
        .map(|index| message(Channel::Sms, "+15005550006", &format!("k-{index}")))
        .collect();
    assert_eq!(courier.deliver(&batch), vec![Outcome::Sent; 24]);
    let most = fake.most_in_flight();
    assert!((2..=3).contains(&most), "most in flight: {most}");
    fake.seen(|seen| assert_eq!(seen.messages.len(), 24));
}

#[test]
fn sms_gateway_without_its_token_stops_start_up() {
    let config = sms_config("http://127.0.0.1:9");
    let error = match courier_with(&config, Secrets::default()) {
        Ok(_) => panic!("started without SWITCHYARD_SMS_AUTH_TOKEN"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("SWITCHYARD_SMS_AUTH_TOKEN"), "{error}");
    let config = NotifyConfig {
        sms_account_sid: None,
        ..config
    };
    let error = match courier_with(&config, sms_secrets(TOKEN)) {
        Ok(_) => panic!("started without notify.sms_account_sid"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("notify.sms_account_sid"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// E-mail

fn email_config(fake: &SmtpFake, starttls: &str) -> NotifyConfig {
    NotifyConfig {
        smtp_url: Some(fake.url()),
        smtp_starttls: starttls.into(),
        smtp_from: "alerts@switchyard.test".into(),
        ..config()
    }
}

#[test]
fn email_is_sent_with_subject_message_id_and_body() {
    let fake = SmtpFake::start(SmtpOptions::default());
    let courier = build(&email_config(&fake, "off"), Secrets::default());
    let mut sent = message(Channel::Email, "ops@example.com", "mail-key-1");
    sent.message = "First line.\n.leading dot\n..two dots\nLast line.".into();
    assert_eq!(deliver_one(&*courier, sent), Outcome::Sent);
    fake.seen(|seen| {
        assert_eq!(seen.messages.len(), 1);
        let mail = &seen.messages[0];
        assert_eq!(mail.from, "alerts@switchyard.test");
        assert_eq!(mail.to, vec!["ops@example.com".to_string()]);
        assert_eq!(mail.message_id.as_deref(), Some("<mail-key-1@switchyard>"));
        assert_eq!(
            mail.header("Subject").as_deref(),
            Some("Storm: Flood alert")
        );
        assert_eq!(
            mail.header("From").as_deref(),
            Some("alerts@switchyard.test")
        );
        assert_eq!(mail.header("To").as_deref(), Some("ops@example.com"));
        // Dot-stuffed by the client, unstuffed by the server: the lines arrive as written.
        assert!(
            mail.data
                .contains("First line.\r\n.leading dot\r\n..two dots\r\nLast line."),
            "{}",
            mail.data
        );
        assert!(!seen.commands.contains(&"STARTTLS".to_string()));
    });
}

#[test]
fn email_opportunistic_starttls_goes_plain_when_not_offered() {
    let fake = SmtpFake::start(SmtpOptions::default());
    let courier = build(&email_config(&fake, "opportunistic"), Secrets::default());
    let outcome = deliver_one(&*courier, message(Channel::Email, "ops@example.com", "k"));
    assert_eq!(outcome, Outcome::Sent);
}

#[test]
fn email_required_starttls_fails_against_a_server_without_it() {
    let fake = SmtpFake::start(SmtpOptions::default());
    let courier = build(&email_config(&fake, "required"), Secrets::default());
    let outcome = deliver_one(&*courier, message(Channel::Email, "ops@example.com", "k"));
    assert_eq!(shape(&outcome), Expect::Retry(None), "{outcome:?}");
    assert!(error_of(&outcome).contains("STARTTLS"), "{outcome:?}");
    fake.seen(|seen| {
        assert!(seen.messages.is_empty());
        assert!(
            !seen.commands.contains(&"MAIL".to_string()),
            "{:?}",
            seen.commands
        );
    });
}

#[test]
fn email_authenticates_with_plain_or_login() {
    for mechanisms in ["PLAIN LOGIN", "LOGIN"] {
        let fake = SmtpFake::start(SmtpOptions {
            auth: Some(("mailer".into(), "smtp-pass-secret".into())),
            mechanisms,
            ..SmtpOptions::default()
        });
        let config = NotifyConfig {
            smtp_user: Some("mailer".into()),
            ..email_config(&fake, "off")
        };
        let secrets = Secrets {
            smtp_password: Some("smtp-pass-secret".into()),
            ..Secrets::default()
        };
        let courier = build(&config, secrets);
        let outcome = deliver_one(&*courier, message(Channel::Email, "ops@example.com", "k"));
        assert_eq!(outcome, Outcome::Sent, "{mechanisms}");
        fake.seen(|seen| {
            assert_eq!((seen.auth_ok, seen.auth_failed), (1, 0), "{mechanisms}");
            assert_eq!(seen.messages.len(), 1);
        });
    }
}

#[test]
fn email_wrong_password_is_retried_and_never_quoted() {
    let fake = SmtpFake::start(SmtpOptions {
        auth: Some(("mailer".into(), "right".into())),
        ..SmtpOptions::default()
    });
    let config = NotifyConfig {
        smtp_user: Some("mailer".into()),
        ..email_config(&fake, "off")
    };
    let secrets = Secrets {
        smtp_password: Some("wrong-pass-secret".into()),
        ..Secrets::default()
    };
    let courier = build(&config, secrets);
    let outcome = deliver_one(&*courier, message(Channel::Email, "ops@example.com", "k"));
    assert_eq!(shape(&outcome), Expect::Retry(None), "{outcome:?}");
    assert!(error_of(&outcome).contains("authentication"), "{outcome:?}");
    assert!(!error_of(&outcome).contains("secret"), "{outcome:?}");
    fake.seen(|seen| assert!(seen.messages.is_empty()));
}

#[test]
fn email_faults_map_to_outcomes() {
    let check = |fault: SmtpFault, expected: Expect| {
        let fake = SmtpFake::start(SmtpOptions {
            fault: fault.clone(),
            ..SmtpOptions::default()
        });
        let config = NotifyConfig {
            provider_timeout_ms: SHORT_TIMEOUT_MS,
            ..email_config(&fake, "off")
        };
        let courier = build(&config, Secrets::default());
        let outcome = deliver_one(&*courier, message(Channel::Email, "ops@example.com", "k"));
        assert_eq!(shape(&outcome), expected, "{fault:?}: {outcome:?}");
        outcome
    };
    let transient = check(
        SmtpFault::Rcpt("451 4.3.0 try again later"),
        Expect::Retry(None),
    );
    assert!(error_of(&transient).contains("451"), "{transient:?}");
    let permanent = check(SmtpFault::Rcpt("550 5.1.1 no such user"), Expect::Refused);
    assert!(error_of(&permanent).contains("550"), "{permanent:?}");
    check(SmtpFault::NeverGreet, Expect::Retry(None));
    check(SmtpFault::DropConnection, Expect::Retry(None));

    let courier = build(
        &NotifyConfig {
            smtp_url: Some(format!("smtp://{}", closed_port())),
            smtp_starttls: "off".into(),
            provider_timeout_ms: SHORT_TIMEOUT_MS,
            ..config()
        },
        Secrets::default(),
    );
    let outcome = deliver_one(&*courier, message(Channel::Email, "ops@example.com", "k"));
    assert_eq!(shape(&outcome), Expect::Retry(None), "{outcome:?}");

    // smtps:// to a server that speaks plain SMTP: the TLS handshake fails.
    let plain = SmtpFake::start(SmtpOptions::default());
    let courier = build(
        &NotifyConfig {
            smtp_url: Some(format!("smtps://{}", plain.addr)),
            provider_timeout_ms: SHORT_TIMEOUT_MS,
            ..config()
        },
        Secrets::default(),
    );
    let outcome = deliver_one(&*courier, message(Channel::Email, "ops@example.com", "k"));
    assert_eq!(shape(&outcome), Expect::Retry(None), "{outcome:?}");
    plain.seen(|seen| assert!(seen.messages.is_empty()));
}

#[test]
fn email_to_a_non_address_is_refused_without_a_call() {
    let fake = SmtpFake::start(SmtpOptions::default());
    let courier = build(&email_config(&fake, "off"), Secrets::default());
    let outcome = deliver_one(&*courier, message(Channel::Email, "not an address", "k"));
    assert_eq!(shape(&outcome), Expect::Refused, "{outcome:?}");
    fake.seen(|seen| assert_eq!(seen.connections, 0));
}

/// A batch shares a few pooled connections: never more transactions at once than
/// `notify.email_concurrency`, never more connections than that either, across two batches.
#[test]
fn email_pool_reuses_connections_within_the_concurrency_limit() {
    let fake = SmtpFake::start(SmtpOptions {
        hold: HOLD,
        ..SmtpOptions::default()
    });
    let config = NotifyConfig {
        email_concurrency: 3,
        ..email_config(&fake, "off")
    };
    let courier = build(&config, Secrets::default());
    for round in 0..2 {
        let batch: Vec<Message> = (0..30)
            .map(|index| {
                message(
                    Channel::Email,
                    &format!("user{index}@example.com"),
                    &format!("r{round}-{index}"),
                )
            })
            .collect();
        assert_eq!(courier.deliver(&batch), vec![Outcome::Sent; 30]);
    }
    let most = fake.most_in_flight();
    assert!((2..=3).contains(&most), "most in flight: {most}");
    fake.seen(|seen| {
        assert_eq!(seen.messages.len(), 60);
        assert!(seen.connections <= 3, "{} connections", seen.connections);
        let mut ids: Vec<_> = seen.messages.iter().map(|m| m.message_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 60, "every Message-ID is its own key");
    });
}

#[test]
fn email_same_key_keeps_its_message_id() {
    let fake = SmtpFake::start(SmtpOptions::default());
    let courier = build(&email_config(&fake, "off"), Secrets::default());
    let again = message(Channel::Email, "ops@example.com", "retry-key");
    assert_eq!(deliver_one(&*courier, again.clone()), Outcome::Sent);
    assert_eq!(deliver_one(&*courier, again), Outcome::Sent);
    fake.seen(|seen| {
        let ids: Vec<_> = seen.messages.iter().map(|m| m.message_id.clone()).collect();
        assert_eq!(ids, vec![Some("<retry-key@switchyard>".to_string()); 2]);
    });
}

#[test]
fn email_configuration_errors_stop_start_up() {
    let check = |config: NotifyConfig, secrets: Secrets, part: &str| {
        let error = match courier_with(&config, secrets) {
            Ok(_) => panic!("started: expected an error naming {part}"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains(part), "{error}");
        assert!(
            !error.contains("hunter2"),
            "the error quotes a secret: {error}"
        );
    };
    let base = NotifyConfig {
        smtp_url: Some("smtp://127.0.0.1:2525".into()),
        ..config()
    };
    check(
        NotifyConfig {
            smtp_user: Some("mailer".into()),
            ..base.clone()
        },
        Secrets::default(),
        "SWITCHYARD_SMTP_PASSWORD",
    );
    check(
        NotifyConfig {
            smtp_url: Some("smtp://mailer:hunter2@127.0.0.1:2525".into()),
            ..base.clone()
        },
        Secrets::default(),
        "notify.smtp_user",
    );
    check(
        NotifyConfig {
            smtp_from: "not an address".into(),
            ..base.clone()
        },
        Secrets::default(),
        "notify.smtp_from",
    );
    check(
        NotifyConfig {
            smtp_starttls: "sometimes".into(),
            ..base
        },
        Secrets::default(),
        "notify.smtp_starttls",
    );
}
