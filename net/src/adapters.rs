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
//! [`AdapterClient`] is the one HTTP client both adapters share: hyper-util's legacy client (no
//! second HTTP stack) over hyper-rustls, so `http://` and `https://` URLs both work (HTTP/1 only).
//! TLS is rustls with the `ring` provider; the trusted roots are Mozilla's (`webpki-roots`, built
//! in, so no system store is read) plus the PEM certificates of `social.adapter_ca_file` when set
//! (a private CA or a TLS-inspecting proxy; the tests' loopback CA). A certificate that does not
//! chain to those roots or does not name the URL's host fails the call like any other adapter
//! failure. [`Adapters::from_config`] builds what `[social]` turns on; an unreadable or invalid
//! CA file stops start-up (checked first by `ServerConfig::validate`, via
//! [`crate::tls::load_ca_file`]).

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use rustls::RootCertStore;
use serde_json::Value;
use switchyard_engine::metrics::Counter;
use switchyard_engine::social::Enrichment;

use crate::config::SocialSection;
use crate::error::{ApiError, Error};
use crate::tls::load_ca_file;

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

/// A TCP connect to an adapter's host gives up after this long (the whole call is also bounded
/// by `social.adapter_timeout_ms`).
const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// The HTTP client the adapters share (one connection pool, one TLS configuration): `http://`
/// over plain TCP, `https://` over rustls, HTTP/1 only. Cloning shares the pool.
#[derive(Clone)]
pub struct AdapterClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl AdapterClient {
    /// A client trusting `webpki-roots` plus the certificates in `ca_file`. Fails, naming
    /// `social.adapter_ca_file`, if that file cannot be read or holds no valid certificate.
    pub fn new(ca_file: Option<&Path>) -> Result<AdapterClient, Error> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_file {
            roots.roots.extend(load_ca_file(path)?.roots);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            // Invariant: ring's default provider supports rustls' default protocol versions.
            .expect("the ring provider supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)));
        // Let `https://` URIs through the TCP layer; the TLS layer above handles them.
        tcp.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(AdapterClient { client })
    }
}

impl AdapterClient {
    /// POSTs `body` (JSON) to `url` with `headers`; the status, or why there is none within
    /// `timeout`.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<StatusCode, AdapterFailure> {
        let mut request = Request::post(url).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| AdapterFailure(format!("bad request: {e}")))?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| AdapterFailure(format!("request failed: {}", with_sources(&e))))?;
            let status = response.status();
            // Read (and drop) the body so the connection goes back to the pool.
            let _ = response.into_body().collect().await;
            Ok(status)
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| AdapterFailure(format!("no answer within {} ms", timeout.as_millis())))?
    }
}

impl AdapterClient {
    /// GETs `url`; the status and at most `max_bytes` of body, or why there is none within
    /// `timeout`. A longer body is a failure (the document is not what was asked for).
    pub async fn get(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<(StatusCode, Bytes), AdapterFailure> {
        let request = Request::get(url)
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| AdapterFailure(format!("bad request: {e}")))?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| AdapterFailure(format!("request failed: {}", with_sources(&e))))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
                .map_err(|e| AdapterFailure(format!("body failed: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| AdapterFailure(format!("no answer within {} ms", timeout.as_millis())))?
    }
}

/// An answer read by [`AdapterClient::send`]: its status, its headers, and at most the first
/// `body_bytes_max` bytes of its body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl AdapterClient {
    /// Sends `request`; the answer with at most `body_bytes_max` bytes of its body (the rest is
    /// never read, and the connection is then closed rather than pooled), or why there is none
    /// within `timeout`. The whole call (connect, write, status, headers, body) is inside
    /// `timeout`, so a peer that reads or answers slowly cannot hold the caller longer.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
        body_bytes_max: usize,
    ) -> Result<Reply, AdapterFailure> {
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| AdapterFailure(format!("request failed: {}", with_sources(&e))))?;
            let (parts, mut body) = response.into_parts();
            let mut kept = Vec::new();
            while kept.len() < body_bytes_max {
                let Some(frame) = body.frame().await else {
                    break;
                };
                // A body cut short after the status is still an answer: keep what came.
                let Ok(frame) = frame else {
                    break;
                };
                if let Ok(data) = frame.into_data() {
                    let room = body_bytes_max - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body: Bytes::from(kept),
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| AdapterFailure(format!("no answer within {} ms", timeout.as_millis())))?
    }
}

/// An error and its sources on one line: hyper-util's client error alone says only "client
/// error (Connect)"; the cause (refused, certificate not trusted, ...) is in its sources.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
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
    client: &AdapterClient,
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
        .body(Full::new(Bytes::new()))
        .map_err(|e| AdapterFailure(format!("bad request: {e}")))?;
    let call = async {
        let response = client
            .client
            .request(request)
            .await
            .map_err(|e| AdapterFailure(format!("request failed: {}", with_sources(&e))))?;
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
    client: AdapterClient,
    url: String,
    api_key: String,
    timeout: Duration,
}

impl HunterVerifier {
    pub fn new(client: AdapterClient, url: String, api_key: String, timeout: Duration) -> Self {
        HunterVerifier {
            client,
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
    client: AdapterClient,
    url: String,
    api_key: String,
    timeout: Duration,
}

impl ClearbitEnricher {
    pub fn new(client: AdapterClient, url: String, api_key: String, timeout: Duration) -> Self {
        ClearbitEnricher {
            client,
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

    /// The adapters `[social]` turns on (an API key turns one on), sharing one client. Fails
    /// if `social.adapter_ca_file` is set but unusable, even when no adapter is on.
    pub fn from_config(social: &SocialSection) -> Result<Adapters, Error> {
        let client = AdapterClient::new(social.adapter_ca_file.as_deref())?;
        let timeout = Duration::from_millis(social.adapter_timeout_ms);
        let verifier = social.hunter_api_key.as_ref().map(|key| {
            Box::new(HunterVerifier::new(
                client.clone(),
                social.hunter_url.clone(),
                key.clone(),
                timeout,
            )) as Box<dyn EmailVerifier>
        });
        let enricher = social.clearbit_api_key.as_ref().map(|key| {
            Box::new(ClearbitEnricher::new(
                client.clone(),
                social.clearbit_url.clone(),
                key.clone(),
                timeout,
            )) as Box<dyn Enricher>
        });
        Ok(Adapters::new(verifier, enricher))
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

    /// Calls that failed or timed out so far: (e-mail verifier, enrichment), for `/metrics`.
    pub fn failures(&self) -> (u64, u64) {
        (self.verifier_failures.get(), self.enricher_failures.get())
    }
}
