//! The sign-up adapters over real TLS, against the real `switchyard` binary. A loopback fake
//! (tokio-rustls, one certificate chain made by rcgen at test time: a CA and a leaf for
//! 127.0.0.1) answers in hunter.io's and Clearbit's JSON shapes and records every request it
//! read after a completed handshake, and every handshake that failed.
//!
//! - Trusted (`social.adapter_ca_file` = the test CA): the verdict and the enrichment come back
//!   through TLS, with the right path, query and bearer key.
//! - Untrusted (no CA file) or a leaf for another host: the handshake fails on the server's
//!   certificate, no request is read, sign-up still succeeds (201, `enrichment: null`) and both
//!   adapter failure counters go up.
//! - An unusable CA file stops start-up with a message naming the key.
//!
//! The fake speaks only TLS, so a plain-HTTP client would fail the first test; a client that
//! skipped certificate or name checks would fail the second and third.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{call, check, Server};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::TlsAcceptor;

const HUNTER_PATH: &str = "/v2/email-verifier";
const CLEARBIT_PATH: &str = "/v2/people/find";
/// How long to wait for the server's warning line to reach its stderr pipe.
const LOG_WAIT: Duration = Duration::from_secs(5);
/// The fake reads at most this many header bytes per request.
const FAKE_HEAD_BYTES_MAX: usize = 16 * 1024;

/// A test CA and a leaf it signed.
struct Chain {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    leaf_key: PrivateKeyDer<'static>,
}

/// A fresh CA and a leaf for `names` (IP addresses become IP SANs).
fn chain(names: &[&str]) -> Chain {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Switchyard test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(
        names
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "switchyard adapter fake");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    Chain {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        leaf_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    }
}

/// What the fake saw.
#[derive(Default)]
struct Seen {
    /// `(request target, Authorization header)` of each request read over a completed handshake.
    requests: Vec<(String, Option<String>)>,
    /// Why each failed handshake failed.
    handshake_errors: Vec<String>,
}

/// A loopback HTTPS server answering like hunter.io (on [`HUNTER_PATH`]) and Clearbit (on
/// [`CLEARBIT_PATH`]), on its own thread and tokio runtime, for the rest of the test process.
struct TlsFake {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl TlsFake {
    fn start(chain: &Chain) -> TlsFake {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![chain.leaf.clone()], chain.leaf_key.clone_key())
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let recorder = seen.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    let recorder = recorder.clone();
                    tokio::spawn(async move {
                        match acceptor.accept(stream).await {
                            Ok(tls) => serve(tls, recorder).await,
                            Err(error) => recorder
                                .lock()
                                .unwrap()
                                .handshake_errors
                                .push(error.to_string()),
                        }
                    });
                }
            });
        });
        TlsFake { addr, seen }
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().unwrap().requests.clone()
    }

    fn handshake_errors(&self) -> Vec<String> {
        self.seen.lock().unwrap().handshake_errors.clone()
    }
}

/// Reads one request head from a TLS stream, records it, answers and closes.
async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    recorder: Arc<Mutex<Seen>>,
) {
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut authorization = None;
    let mut head_bytes = line.len();
    loop {
        let mut header = String::new();
        let read = reader.read_line(&mut header).await.unwrap_or(0);
        head_bytes += read;
        if read == 0 || header == "\r\n" || head_bytes > FAKE_HEAD_BYTES_MAX {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    recorder
        .lock()
        .unwrap()
        .requests
        .push((target.clone(), authorization));
    let (status, body) = answer(&target);
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut tls = reader.into_inner();
    let _ = tls.write_all(response.as_bytes()).await;
    let _ = tls.shutdown().await;
}

/// hunter.io's and Clearbit's documented answers; `bounce@` is undeliverable.
fn answer(target: &str) -> (u16, String) {
    if target.starts_with(HUNTER_PATH) {
        let (result, status) = if target.contains("email=bounce%40example.com") {
            ("undeliverable", "invalid")
        } else {
            ("deliverable", "valid")
        };
        let body = json!({"data": {"status": status, "result": result, "score": 90,
            "email": "x", "regexp": true, "gibberish": false, "disposable": false,
            "webmail": false, "mx_records": true, "smtp_server": true, "smtp_check": true,
            "accept_all": false, "block": false, "sources": []}, "meta": {"params": {"email": "x"}}});
        (200, body.to_string())
    } else if target.starts_with(CLEARBIT_PATH) {
        let body = json!({"id": "d54c54ad", "name": {"fullName": "Alex MacCaw",
            "givenName": "Alex", "familyName": "MacCaw"}, "email": "alex@example.com",
            "location": "San Francisco, CA, US",
            "employment": {"domain": "clearbit.com", "name": "Clearbit", "title": "CEO"}});
        (200, body.to_string())
    } else {
        (404, json!({"error": "no such path"}).to_string())
    }
}

/// Starts the binary with both adapters pointed at `https://{fake}` and the CA file if given.
fn start(dir: &Path, fake: SocketAddr, ca_file: Option<&Path>) -> Server {
    let hunter_url = format!("social.hunter_url=https://{fake}{HUNTER_PATH}");
    let clearbit_url = format!("social.clearbit_url=https://{fake}{CLEARBIT_PATH}");
    let ca_setting = ca_file.map(|path| format!("social.adapter_ca_file={}", path.display()));
    let mut args: Vec<&str> = vec![
        "--set",
        &hunter_url,
        "--set",
        "social.hunter_api_key=hunter-key",
        "--set",
        &clearbit_url,
        "--set",
        "social.clearbit_api_key=clearbit-key",
        "--set",
        "social.adapter_timeout_ms=5000",
    ];
    if let Some(setting) = &ca_setting {
        args.extend_from_slice(&["--set", setting]);
    }
    common::start(&dir.join("data"), &args)
}

fn write_ca(dir: &Path, chain: &Chain) -> PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, &chain.ca_pem).unwrap();
    path
}

/// A sign-up whose answer the caller checks (the adapters may refuse it).
fn try_sign_up(addr: SocketAddr, email: &str) -> common::Response {
    call(
        addr,
        "POST",
        "/api/v1/users",
        None,
        Some(&json!({"email": email, "password": "password123"}).to_string()),
    )
}

/// The two `switchyard_adapter_failures_total` values: (email_verifier, enrichment).
fn adapter_failures(addr: SocketAddr) -> (u64, u64) {
    let metrics = call(addr, "GET", "/metrics", None, None).text();
    let value = |adapter: &str| {
        let prefix = format!("switchyard_adapter_failures_total{{adapter=\"{adapter}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no failure counter for {adapter}: {metrics}"))
            .parse::<u64>()
            .unwrap()
    };
    (value("email_verifier"), value("enrichment"))
}

/// Waits until the server's stderr contains `needle`; panics with the stderr after [`LOG_WAIT`].
fn wait_for_log(server: &Server, needle: &str) {
    let deadline = Instant::now() + LOG_WAIT;
    while !server.stderr().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "stderr lacks {needle:?}: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn adapters_speak_tls_to_a_server_signed_by_the_configured_ca() {
    let chain = chain(&["127.0.0.1", "localhost"]);
    let fake = TlsFake::start(&chain);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write_ca(dir.path(), &chain);
    let server = start(dir.path(), fake.addr, Some(&ca_file));

    check(
        &try_sign_up(server.addr, "bounce@example.com"),
        422,
        Some("email_undeliverable"),
    );
    let created = try_sign_up(server.addr, "alex@example.com");
    check(&created, 201, None);
    let user = created.json();
    assert_eq!(user["enrichment"]["company"], "Clearbit", "{user}");
    assert_eq!(user["enrichment"]["full_name"], "Alex MacCaw", "{user}");
    assert_eq!(user["enrichment"]["location"], "San Francisco, CA, US");

    let requests = fake.requests();
    let expected_hunter = (
        format!("{HUNTER_PATH}?email=alex%40example.com&api_key=hunter-key"),
        None,
    );
    let expected_clearbit = (
        format!("{CLEARBIT_PATH}?email=alex%40example.com"),
        Some("Bearer clearbit-key".to_string()),
    );
    assert!(requests.contains(&expected_hunter), "{requests:?}");
    assert!(requests.contains(&expected_clearbit), "{requests:?}");
    assert!(
        requests
            .iter()
            .any(|(target, _)| target.contains("email=bounce%40example.com")),
        "{requests:?}"
    );
    assert_eq!(fake.handshake_errors(), Vec::<String>::new());
    assert_eq!(adapter_failures(server.addr), (0, 0));
}

#[test]
fn without_the_ca_file_the_handshake_fails_and_sign_up_goes_on() {
    let chain = chain(&["127.0.0.1", "localhost"]);
    let fake = TlsFake::start(&chain);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), fake.addr, None);

    // hunter.io would refuse this address; with the verifier failing, sign-up passes.
    let created = try_sign_up(server.addr, "bounce@example.com");
    check(&created, 201, None);
    assert_eq!(created.json()["enrichment"], Value::Null);
    assert_eq!(adapter_failures(server.addr), (1, 1));
    assert_eq!(
        fake.requests(),
        Vec::new(),
        "no request may pass the handshake"
    );
    let errors = fake.handshake_errors();
    assert!(!errors.is_empty(), "the adapters never tried TLS");
    assert!(
        errors.iter().all(|error| error.contains("UnknownCA")),
        "the client must refuse the unknown issuer: {errors:?}"
    );
    wait_for_log(&server, "UnknownIssuer");
}

#[test]
fn a_certificate_for_another_host_is_refused_even_from_a_trusted_ca() {
    let chain = chain(&["adapters.example.com"]);
    let fake = TlsFake::start(&chain);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write_ca(dir.path(), &chain);
    let server = start(dir.path(), fake.addr, Some(&ca_file));

    let created = try_sign_up(server.addr, "alex@example.com");
    check(&created, 201, None);
    assert_eq!(created.json()["enrichment"], Value::Null);
    assert_eq!(adapter_failures(server.addr), (1, 1));
    assert_eq!(fake.requests(), Vec::new());
    assert!(!fake.handshake_errors().is_empty());
    wait_for_log(&server, "certificate not valid for name \"127.0.0.1\"");
}

#[test]
fn an_unusable_ca_file_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let key_only = dir.path().join("key-only.pem");
    std::fs::write(&key_only, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    for path in [&missing, &garbage, &key_only] {
        let setting = format!("social.adapter_ca_file={}", path.display());
        let exited = match Server::try_start(&dir.path().join("data"), &["--set", &setting]) {
            Ok(_) => panic!("started with {}", path.display()),
            Err(exited) => exited,
        };
        assert!(!exited.status.success(), "{}", path.display());
        assert!(
            exited.stderr.contains("`social.adapter_ca_file`"),
            "{}: {}",
            path.display(),
            exited.stderr
        );
    }
}
