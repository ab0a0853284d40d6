//! The notification providers behind the engine's [`Courier`] seam: [`courier`] builds a
//! [`ProviderCourier`] from `[notify]` and the environment, which the server gives the engine
//! when it opens it.
//!
//! # Layout
//! - this file: [`courier`], [`Secrets`] (where each secret comes from), [`ProviderCourier`]
//!   (routing by channel, the runtime, the time-out).
//! - [`webhook`]: signed HTTP POSTs (Standard Webhooks headers).
//! - [`sms`]: a Twilio-compatible Messages API.
//! - [`email`]: SMTP through lettre, with its own connection pool.
//! - [`answer`]: the one table from an HTTP answer to an [`Outcome`], and `Retry-After`.
//! - [`gate`]: each provider's concurrency and rate limits.
//!
//! Routing: `webhook` → the webhook adapter (always on: the address is the contact's
//! `webhook_url`); `email` → SMTP when `notify.smtp_url` is set, else [`Outcome::Outboxed`];
//! `sms` → the gateway when `notify.sms_url` is set, else `Outboxed`.
//!
//! Secrets: the SMTP password from `SWITCHYARD_SMTP_PASSWORD`, the SMS auth token from
//! `SWITCHYARD_SMS_AUTH_TOKEN` (required when `notify.sms_url` is set: start-up fails naming it),
//! the webhook secret from `SWITCHYARD_WEBHOOK_SECRET` or else `notify.webhook_secret` (the
//! environment wins, as it does for every secret the server reads). An empty variable counts as
//! unset.
//!
//! **Invariants:**
//! - `deliver` runs a batch's messages concurrently, on a tokio runtime the courier owns
//!   ([`COURIER_THREADS`] threads), and returns one outcome per message, in order. It blocks
//!   its caller (an effect worker thread) and must not be called from inside a tokio runtime.
//! - Each provider call starts only inside its provider's [`gate::Gate`] (concurrency permits
//!   and rate shared by every `deliver` call) and is bounded by `notify.provider_timeout_ms`,
//!   waiting for the gate excluded; a time-out is [`Outcome::Retry`].
//! - Every call carries the message's idempotency key (`webhook-id`, the SMS gateway's
//!   idempotency headers, the e-mail's Message-ID).
//! - No secret is logged, put in an error text or shown by `Debug`.

pub mod answer;
pub mod email;
pub mod gate;
pub mod sms;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use switchyard_engine::dispatch::{Channel, Courier, Message, NotifyConfig, Outcome};

use crate::adapters::AdapterClient;
use crate::error::Error;
use email::{EmailAdapter, EmailSettings};
use gate::Gate;
use sms::SmsAdapter;
use webhook::WebhookAdapter;

/// Environment variable holding the SMTP password (`notify.smtp_user`'s).
pub const ENV_SMTP_PASSWORD: &str = "SWITCHYARD_SMTP_PASSWORD";
/// Environment variable holding the SMS gateway's auth token.
pub const ENV_SMS_AUTH_TOKEN: &str = "SWITCHYARD_SMS_AUTH_TOKEN";
/// Environment variable holding the webhook signing secret (beats `notify.webhook_secret`).
pub const ENV_WEBHOOK_SECRET: &str = "SWITCHYARD_WEBHOOK_SECRET";
/// Threads of the courier's runtime: the calls are I/O; two keep a TLS handshake or a large
/// batch's bookkeeping from holding up the rest on a 2-core machine.
pub const COURIER_THREADS: usize = 2;

/// The secrets the providers need, as the environment gives them. `Debug` shows only whether
/// each is set.
#[derive(Clone, Default)]
pub struct Secrets {
    /// `SWITCHYARD_SMTP_PASSWORD`.
    pub smtp_password: Option<String>,
    /// `SWITCHYARD_SMS_AUTH_TOKEN`.
    pub sms_auth_token: Option<String>,
    /// `SWITCHYARD_WEBHOOK_SECRET`; when unset, `notify.webhook_secret` is used.
    pub webhook_secret: Option<String>,
}

impl Secrets {
    /// Reads the three variables; an empty one counts as unset.
    pub fn from_env() -> Secrets {
        let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        Secrets {
            smtp_password: read(ENV_SMTP_PASSWORD),
            sms_auth_token: read(ENV_SMS_AUTH_TOKEN),
            webhook_secret: read(ENV_WEBHOOK_SECRET),
        }
    }

    /// The webhook secret in force: the environment's, else the config's (an empty one is
    /// none: webhooks go unsigned).
    pub fn webhook_secret(&self, config: &NotifyConfig) -> Option<String> {
        self.webhook_secret
            .clone()
            .or_else(|| config.webhook_secret.clone())
            .filter(|secret| !secret.is_empty())
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("Secrets")
            .field("smtp_password", &shown(&self.smtp_password))
            .field("sms_auth_token", &shown(&self.sms_auth_token))
            .field("webhook_secret", &shown(&self.webhook_secret))
            .finish()
    }
}

/// The courier `[notify]` and the environment ask for. Fails, naming the key or variable, when
/// a provider is configured but unusable (an SMS gateway without its token, an SMTP URL that is
/// not one, a From that is not an address) or the runtime cannot start.
pub fn courier(config: &NotifyConfig) -> Result<Arc<dyn Courier>, Error> {
    courier_with(config, Secrets::from_env())
}

/// [`courier`] with the secrets given rather than read from the environment (tests).
pub fn courier_with(config: &NotifyConfig, secrets: Secrets) -> Result<Arc<dyn Courier>, Error> {
    Ok(Arc::new(ProviderCourier::new(config, secrets)?))
}

/// `call`, or a `Retry` once `timeout` has passed (the call is then dropped, and with it its
/// connection).
async fn bounded(timeout: Duration, call: impl std::future::Future<Output = Outcome>) -> Outcome {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            answer::no_answer(format!("no answer within {} ms", timeout.as_millis()))
        })
}

/// An adapter with its gate.
struct Provider<A> {
    adapter: A,
    gate: Gate,
}

/// Everything a delivery task needs (shared by the tasks of every batch).
struct Providers {
    webhook: Provider<WebhookAdapter>,
    email: Option<Provider<EmailAdapter>>,
    sms: Option<Provider<SmsAdapter>>,
    timeout: Duration,
}

impl Providers {
    /// One attempt of `message`: its provider's gate, then the call within the time-out.
    async fn carry(&self, message: Message) -> Outcome {
        let timeout = self.timeout;
        match message.channel {
            Channel::Webhook => {
                let provider = &self.webhook;
                let call = provider.adapter.send(&message, timeout);
                provider.gate.run(bounded(timeout, call)).await
            }
            Channel::Sms => match &self.sms {
                Some(provider) => {
                    let call = provider.adapter.send(&message, timeout);
                    provider.gate.run(bounded(timeout, call)).await
                }
                None => Outcome::Outboxed,
            },
            Channel::Email => match &self.email {
                Some(provider) => {
                    let call = provider.adapter.send(&message);
                    provider.gate.run(bounded(timeout, call)).await
                }
                None => Outcome::Outboxed,
            },
        }
    }

    /// Whether `channel` has a provider (else its messages are outboxed without a task).
    fn carries(&self, channel: Channel) -> bool {
        match channel {
            Channel::Webhook => true,
            Channel::Email => self.email.is_some(),
            Channel::Sms => self.sms.is_some(),
        }
    }
}

/// The real courier: routes each message to its channel's adapter and carries a batch
/// concurrently on its own runtime. See the module docs.
pub struct ProviderCourier {
    /// `Some` until dropped (`Drop` shuts it down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
    providers: Arc<Providers>,
}

impl ProviderCourier {
    pub fn new(config: &NotifyConfig, secrets: Secrets) -> Result<ProviderCourier, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(COURIER_THREADS)
            .thread_name("notify-courier")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the notification courier's runtime", e))?;
        // The HTTP client and lettre's TLS set-up may look for the runtime they run on.
        let providers = {
            let _entered = runtime.enter();
            Providers::new(config, &secrets)?
        };
        Ok(ProviderCourier {
            runtime: Some(runtime),
            providers: Arc::new(providers),
        })
    }
}

impl Providers {
    fn new(config: &NotifyConfig, secrets: &Secrets) -> Result<Providers, Error> {
        // One HTTP client (one pool, one TLS configuration) for the webhook and SMS adapters.
        let client = AdapterClient::new(None)?;
        let webhook = Provider {
            adapter: WebhookAdapter::new(client.clone(), secrets.webhook_secret(config)),
            gate: Gate::new(config.webhook_concurrency, config.webhook_rate_per_second),
        };
        let sms = match &config.sms_url {
            None => None,
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(Error::Config(
                        "`notify.sms_url` must be an http(s):// URL".into(),
                    ));
                }
                let sid = config
                    .sms_account_sid
                    .as_deref()
                    .filter(|sid| !sid.is_empty())
                    .ok_or_else(|| {
                        Error::Config("`notify.sms_url` needs `notify.sms_account_sid`".into())
                    })?;
                if !sid.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
                    return Err(Error::Config(
                        "`notify.sms_account_sid` must be ASCII letters and digits".into(),
                    ));
                }
                let token = secrets.sms_auth_token.as_deref().ok_or_else(|| {
                    Error::Config(format!(
                        "`notify.sms_url` is set but {ENV_SMS_AUTH_TOKEN} is not: the SMS gateway needs its auth token"
                    ))
                })?;
                Some(Provider {
                    adapter: SmsAdapter::new(
                        client.clone(),
                        url,
                        sid,
                        token,
                        config.sms_from.clone(),
                    ),
                    gate: Gate::new(config.sms_concurrency, config.sms_rate_per_second),
                })
            }
        };
        let email = match &config.smtp_url {
            None => None,
            Some(url) => {
                let endpoint = email::parse_url(url).map_err(Error::Config)?;
                let credentials = match (&config.smtp_user, &secrets.smtp_password) {
                    (Some(user), Some(password)) => Some((user.clone(), password.clone())),
                    (Some(_), None) => {
                        return Err(Error::Config(format!(
                            "`notify.smtp_user` is set but {ENV_SMTP_PASSWORD} is not"
                        )))
                    }
                    (None, _) => None,
                };
                let adapter = EmailAdapter::new(EmailSettings {
                    endpoint,
                    starttls: config.smtp_starttls.clone(),
                    credentials,
                    from: config.smtp_from.clone(),
                    idle_max: config.email_concurrency,
                })
                .map_err(Error::Config)?;
                Some(Provider {
                    adapter,
                    gate: Gate::new(config.email_concurrency, config.email_rate_per_second),
                })
            }
        };
        Ok(Providers {
            webhook,
            email,
            sms,
            timeout: Duration::from_millis(config.provider_timeout_ms.max(1)),
        })
    }
}

impl Courier for ProviderCourier {
    fn deliver(&self, messages: &[Message]) -> Vec<Outcome> {
        // Invariant: `runtime` is only taken by `Drop`.
        let runtime = self
            .runtime
            .as_ref()
            .expect("the courier's runtime is running");
        let tasks: Vec<_> = messages
            .iter()
            .map(|message| {
                if !self.providers.carries(message.channel) {
                    return None;
                }
                let providers = Arc::clone(&self.providers);
                let message = message.clone();
                Some(runtime.spawn(async move { providers.carry(message).await }))
            })
            .collect();
        runtime.block_on(async {
            let mut outcomes = Vec::with_capacity(tasks.len());
            for task in tasks {
                outcomes.push(match task {
                    None => Outcome::Outboxed,
                    Some(task) => task.await.unwrap_or_else(|error| {
                        answer::no_answer(format!("the delivery task failed: {error}"))
                    }),
                });
            }
            outcomes
        })
    }
}

impl Drop for ProviderCourier {
    fn drop(&mut self) {
        // Dropping a runtime blocks on its tasks and panics inside another runtime; this does
        // neither (calls still in flight are abandoned, as a time-out would).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_beats_the_config_for_the_webhook_secret() {
        let mut config = NotifyConfig::default();
        let none = Secrets::default();
        assert_eq!(none.webhook_secret(&config), None);
        config.webhook_secret = Some("from-config".into());
        assert_eq!(none.webhook_secret(&config).as_deref(), Some("from-config"));
        let env = Secrets {
            webhook_secret: Some("from-env".into()),
            ..Secrets::default()
        };
        assert_eq!(env.webhook_secret(&config).as_deref(), Some("from-env"));
        config.webhook_secret = Some(String::new());
        assert_eq!(none.webhook_secret(&config), None, "empty is unsigned");
    }

    #[test]
    fn secrets_debug_hides_values() {
        let secrets = Secrets {
            smtp_password: Some("pw-1".into()),
            sms_auth_token: Some("tok-2".into()),
            webhook_secret: None,
        };
        let shown = format!("{secrets:?}");
        assert!(
            !shown.contains("pw-1") && !shown.contains("tok-2"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
