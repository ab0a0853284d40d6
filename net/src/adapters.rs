//! Adapters to outside services used at sign-up, each behind a trait with a real HTTP adapter and
//! an offline default (no call):
//! - [`EmailVerifier`]: hunter.io's e-mail verifier (`GET {url}?email=..&api_key=..`, answer
//!   `{"data": {"status": "valid"|"invalid"|"accept_all"|"webmail"|"disposable"|"unknown",
//!   "result": "deliverable"|"undeliverable"|"risky", ...}}`). `undeliverable` (or status
//!   `invalid`/`disposable`) refuses the sign-up with 422; `risky` passes, as in the original.
//! - [`Enricher`]: Clearbit's person enrichment (`GET {url}?email=..` with `Authorization: Bearer
//!   key`; 200 person `{"name": {"fullName"}, "location", "employment": {"name"}}`, 404 unknown,
//!   202 queued).
//!
//! Invariant: an adapter that fails or times out (`social.adapter_timeout_ms`) never blocks a
//! sign-up: the verifier's failure lets it pass, the enricher's gives `enrichment: null`; both are
//! counted in `/metrics` (`switchyard_adapter_failures_total{adapter}`).
//!
//! The HTTP client is hyper's (no second HTTP stack) over plain TCP: `http://` URLs only. A TLS
//! connector is not built in; reach the https services through a local TLS-terminating proxy.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde_json::Value;
use switchyard_engine::metrics::Counter;
use switchyard_engine::social::Enrichment;

use crate::error::ApiError;

/// A boxed future, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a verifier says of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deliverable,
    Risky,
    Undeliverable,
}

/// An adapter's failure: the call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterFailure(pub String);

pub trait EmailVerifier: Send + Sync {
    fn verify<'a>(&'a self, email: &'a str) -> BoxFuture<'a, Result<Verdict, AdapterFailure>>;
}

pub trait Enricher: Send + Sync {
    fn enrich<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<Enrichment>, AdapterFailure>>;
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

async fn get_json(
    client: &HttpClient,
    url: String,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<(StatusCode, Value), AdapterFailure> {
    let mut request = Request::get(&url);
    if let Some(key) = bearer {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request
        .header("accept", "application/json")
        .body(Empty::new())
        .map_err(|e| AdapterFailure(format!("bad request: {e}")))?;
    let call = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| AdapterFailure(format!("request failed: {e}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| AdapterFailure(format!("body failed: {e}")))?
            .to_bytes();
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| AdapterFailure(format!("answer is not JSON: {e}")))?
        };
        Ok((status, value))
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| AdapterFailure(format!("no answer within {} ms", timeout.as_millis())))?
}

/// hunter.io's e-mail verifier.
pub struct HunterVerifier {
    client: HttpClient,
    url: String,
    api_key: String,
    timeout: Duration,
}

impl HunterVerifier {
    pub fn new(url: String, api_key: String, timeout: Duration) -> Self {
        HunterVerifier {
            client: client(),
            url,
            api_key,
            timeout,
        }
    }
}

impl EmailVerifier for HunterVerifier {
    fn verify<'a>(&'a self, email: &'a str) -> BoxFuture<'a, Result<Verdict, AdapterFailure>> {
        Box::pin(async move {
            let url = format!(
                "{}?email={}&api_key={}",
                self.url,
                encode(email),
                encode(&self.api_key)
            );
            let (status, body) = get_json(&self.client, url, None, self.timeout).await?;
            if status != StatusCode::OK {
                return Err(AdapterFailure(format!("hunter.io answered {status}")));
            }
            let data = &body["data"];
            let result = data["result"].as_str();
            let verdict_status = data["status"].as_str();
            Ok(match (result, verdict_status) {
                (Some("undeliverable"), _) | (_, Some("invalid")) | (_, Some("disposable")) => {
                    Verdict::Undeliverable
                }
                (Some("deliverable"), _) | (_, Some("valid")) => Verdict::Deliverable,
                (Some("risky"), _)
                | (_, Some("accept_all"))
                | (_, Some("webmail"))
                | (_, Some("unknown")) => Verdict::Risky,
                _ => {
                    return Err(AdapterFailure(
                        "hunter.io answer has no data.result or data.status".into(),
                    ))
                }
            })
        })
    }
}

/// Clearbit's person enrichment.
pub struct ClearbitEnricher {
    client: HttpClient,
    url: String,
    api_key: String,
    timeout: Duration,
}

impl ClearbitEnricher {
    pub fn new(url: String, api_key: String, timeout: Duration) -> Self {
        ClearbitEnricher {
            client: client(),
            url,
            api_key,
            timeout,
        }
    }
}

/// Longest enrichment text kept per field, in bytes.
const ENRICHMENT_FIELD_BYTES_MAX: usize = 200;

fn text(value: &Value) -> Option<String> {
    value.as_str().filter(|text| !text.is_empty()).map(|text| {
        let mut end = text.len().min(ENRICHMENT_FIELD_BYTES_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_string()
    })
}

impl Enricher for ClearbitEnricher {
    fn enrich<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<Enrichment>, AdapterFailure>> {
        Box::pin(async move {
            let url = format!("{}?email={}", self.url, encode(email));
            let (status, person) =
                get_json(&self.client, url, Some(&self.api_key), self.timeout).await?;
            match status {
                StatusCode::OK => Ok(Some(Enrichment {
                    full_name: text(&person["name"]["fullName"]),
                    company: text(&person["employment"]["name"]),
                    location: text(&person["location"]),
                    source: "clearbit".into(),
                })),
                // Unknown person, or looked up asynchronously: nothing to add now.
                StatusCode::NOT_FOUND | StatusCode::ACCEPTED => Ok(None),
                other => Err(AdapterFailure(format!("clearbit answered {other}"))),
            }
        })
    }
}

/// The adapters a server uses; `None` = the offline default (no call).
#[derive(Default)]
pub struct Adapters {
    pub verifier: Option<Box<dyn EmailVerifier>>,
    pub enricher: Option<Box<dyn Enricher>>,
    verifier_failures: Counter,
    enricher_failures: Counter,
}

impl Adapters {
    pub fn new(
        verifier: Option<Box<dyn EmailVerifier>>,
        enricher: Option<Box<dyn Enricher>>,
    ) -> Self {
        Adapters {
            verifier,
            enricher,
            ..Adapters::default()
        }
    }

    /// 422 `email_undeliverable` when the verifier says so; a failing verifier lets it pass.
    pub async fn verify(&self, email: &str) -> Result<(), ApiError> {
        let Some(verifier) = &self.verifier else {
            return Ok(());
        };
        match verifier.verify(email).await {
            Ok(Verdict::Undeliverable) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "email_undeliverable",
                "the e-mail verifier says this address is undeliverable",
            )
            .with_field("email")),
            Ok(Verdict::Deliverable | Verdict::Risky) => Ok(()),
            Err(AdapterFailure(reason)) => {
                self.verifier_failures.increment();
                tracing::warn!(%reason, "e-mail verifier failed; sign-up goes on");
                Ok(())
            }
        }
    }

    /// The enrichment found, or `None` (none configured, unknown person, or a failure).
    pub async fn enrich(&self, email: &str) -> Option<Enrichment> {
        let enricher = self.enricher.as_ref()?;
        match enricher.enrich(email).await {
            Ok(found) => found,
            Err(AdapterFailure(reason)) => {
                self.enricher_failures.increment();
                tracing::warn!(%reason, "enrichment failed; the user gets enrichment null");
                None
            }
        }
    }

    pub fn render_metrics(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# TYPE switchyard_adapter_failures_total counter\n\
             switchyard_adapter_failures_total{{adapter=\"email_verifier\"}} {}\n\
             switchyard_adapter_failures_total{{adapter=\"enrichment\"}} {}",
            self.verifier_failures.get(),
            self.enricher_failures.get()
        );
    }
}
