//! Loopback fakes of the notification providers, each speaking the real protocol on
//! `127.0.0.1:0` (no mock of our own code): a Standard Webhooks receiver and a Twilio-shaped
//! Messages API (both hyper 1.x servers), and a small SMTP server on raw tokio sockets. Each runs
//! on its own runtime (so the tests can call the courier's blocking `deliver` from plain
//! threads), records what it saw, and can inject one fault:
//! - HTTP ([`HttpFault`]): a status (500, 429 with `Retry-After`), never answering, dropping the
//!   connection after reading the request head, reading the body very slowly;
//! - SMTP ([`SmtpFault`]): never greeting, dropping the connection, a 4xx or 5xx reply to RCPT.
//!
//! Each fake checks what a real provider checks (the webhook signature recomputed from its own
//! copy of the secret, Twilio's path, basic auth and form fields, SMTP's command order and AUTH)
//! and deduplicates where the real one does (webhook-id, the idempotency header), counting the
//! duplicates. Each also records the most requests (or SMTP transactions) it had in flight at
//! once: handlers hold each one for `hold` before answering, so concurrency is observable.

#![allow(dead_code)] // each test uses a different subset

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Requests and transactions in flight, and the most seen at once.
#[derive(Default)]
struct InFlight {
    now: usize,
    most: usize,
}

/// Counts one in-flight request or transaction until dropped.
struct InFlightGuard(Arc<Mutex<InFlight>>);

impl InFlightGuard {
    fn enter(in_flight: &Arc<Mutex<InFlight>>) -> InFlightGuard {
        let mut state = in_flight.lock().unwrap();
        state.now += 1;
        state.most = state.most.max(state.now);
        InFlightGuard(in_flight.clone())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.lock().unwrap().now -= 1;
    }
}

/// A runtime for one fake, shut down (without waiting) when the fake is dropped.
struct FakeRuntime(Option<tokio::runtime::Runtime>);

impl FakeRuntime {
    fn new() -> FakeRuntime {
        FakeRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
        ))
    }

    /// Binds `127.0.0.1:0` and runs `serve` with the listener; the bound address.
    fn listen<F, Fut>(&self, serve: F) -> SocketAddr
    where
        F: FnOnce(TcpListener) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let runtime = self.0.as_ref().unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(serve(listener));
        addr
    }
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A fault an HTTP fake injects on every request.
#[derive(Clone, Debug)]
pub enum HttpFault {
    None,
    /// Read the request, then answer this status (and `Retry-After` when given).
    Status(u16, Option<&'static str>),
    /// Read whatever comes and never answer.
    NeverAnswer,
    /// Read the request head, then close the connection without a word.
    DropConnection,
    /// Read the request a few bytes at a time, slowly, and never answer.
    SlowReader,
}

type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFuture + Send + Sync>;
type HandlerFuture = std::pin::Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// Accepts connections forever; each is served by hyper with `handler`, or gets `fault`.
async fn serve_http(listener: TcpListener, fault: HttpFault, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let handler = handler.clone();
        let fault = fault.clone();
        tokio::spawn(async move {
            match fault {
                HttpFault::NeverAnswer => drain(stream).await,
                HttpFault::DropConnection => {
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
                        if line == "\r\n" {
                            break;
                        }
                        line.clear();
                    }
                    // Dropped here: the client sees the connection close with no answer.
                }
                HttpFault::SlowReader => {
                    let mut stream = stream;
                    let mut byte = [0u8; 16];
                    loop {
                        match stream.read(&mut byte).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
                HttpFault::None | HttpFault::Status(..) => {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let handler = handler.clone();
                        let fault = fault.clone();
                        async move {
                            Ok::<_, Infallible>(match fault {
                                HttpFault::Status(status, retry_after) => {
                                    let _ = request.into_body().collect().await;
                                    let mut response = Response::builder().status(status);
                                    if let Some(value) = retry_after {
                                        response = response.header("retry-after", value);
                                    }
                                    response.body(Full::new(Bytes::new())).unwrap()
                                }
                                _ => handler(request).await,
                            })
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// Reads and discards until the peer closes.
async fn drain(mut stream: TcpStream) {
    let mut buffer = [0u8; 4096];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            return;
        }
    }
}

fn answer(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// One webhook the receiver accepted.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub timestamp: u64,
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub path: String,
    pub body: serde_json::Value,
    /// When it arrived, from the fake's start.
    pub at: Duration,
}

#[derive(Default)]
pub struct WebhookSeen {
    /// Requests that reached the handler (faults by status included).
    pub requests: usize,
    /// First deliveries, one per `webhook-id`.
    pub deliveries: Vec<Delivery>,
    /// Requests whose `webhook-id` was already delivered.
    pub duplicates: usize,
    /// Requests refused with 401: a signature missing, unexpected or not matching.
    pub bad_signatures: usize,
}

/// A Standard Webhooks receiver. With a secret it verifies `webhook-signature` (HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` keyed with the secret's UTF-8 bytes, any of the space-separated
/// `v1,` entries) and answers 401 when it does not match; without one it answers 401 to a
/// signed request. It answers 200 to a delivery and to a duplicate alike.
pub struct WebhookFake {
    pub addr: SocketAddr,
    seen: Arc<Mutex<WebhookSeen>>,
    in_flight: Arc<Mutex<InFlight>>,
    _runtime: FakeRuntime,
}

impl WebhookFake {
    pub fn start(secret: Option<&str>, fault: HttpFault, hold: Duration) -> WebhookFake {
        let runtime = FakeRuntime::new();
        let seen = Arc::new(Mutex::new(WebhookSeen::default()));
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let started = std::time::Instant::now();
        let handler: Handler = {
            let (seen, in_flight) = (seen.clone(), in_flight.clone());
            let secret = secret.map(str::to_string);
            Arc::new(move |request: Request<Incoming>| {
                let (seen, in_flight, secret) = (seen.clone(), in_flight.clone(), secret.clone());
                Box::pin(async move {
                    let _guard = InFlightGuard::enter(&in_flight);
                    let header = |name: &str| {
                        request
                            .headers()
                            .get(name)
                            .and_then(|value| value.to_str().ok())
                            .map(str::to_string)
                    };
                    let id = header("webhook-id").unwrap_or_default();
                    let timestamp = header("webhook-timestamp").unwrap_or_default();
                    let signature = header("webhook-signature");
                    let content_type = header("content-type");
                    let path = request.uri().path().to_string();
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    tokio::time::sleep(hold).await;
                    let mut seen = seen.lock().unwrap();
                    seen.requests += 1;
                    let signed_well = match (&secret, &signature) {
                        (None, None) => true,
                        (Some(secret), Some(signature)) => {
                            let expected = expected_signature(secret, &id, &timestamp, &body);
                            signature.split(' ').any(|entry| entry == expected)
                        }
                        _ => false,
                    };
                    if !signed_well {
                        seen.bad_signatures += 1;
                        return answer(StatusCode::UNAUTHORIZED, "{}");
                    }
                    if seen.deliveries.iter().any(|delivery| delivery.id == id) {
                        seen.duplicates += 1;
                        return answer(StatusCode::OK, "{}");
                    }
                    seen.deliveries.push(Delivery {
                        id,
                        timestamp: timestamp.parse().unwrap_or(0),
                        signature,
                        content_type,
                        path,
                        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                        at: started.elapsed(),
                    });
                    answer(StatusCode::OK, "{}")
                }) as HandlerFuture
            })
        };
        let addr = runtime.listen(move |listener| serve_http(listener, fault, handler));
        WebhookFake {
            addr,
            seen,
            in_flight,
            _runtime: runtime,
        }
    }

    /// The URL of a webhook at `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen<T>(&self, read: impl FnOnce(&WebhookSeen) -> T) -> T {
        read(&self.seen.lock().unwrap())
    }

    /// The most requests it had in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().most
    }
}

/// The receiver's own computation of the signature it expects.
fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&signed);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

// ---------------------------------------------------------------------------------------------
// SMS (Twilio's Messages API)

/// One SMS the gateway accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sms {
    pub to: String,
    pub from: String,
    pub body: String,
    pub key: String,
}

#[derive(Default)]
pub struct TwilioSeen {
    pub requests: usize,
    pub messages: Vec<Sms>,
    /// Requests whose idempotency key was already accepted (answered with the first answer).
    pub duplicates: usize,
    /// Requests refused with 401 (no or wrong basic auth).
    pub auth_failures: usize,
}

/// A Twilio-shaped Messages API for one account: `POST /2010-04-01/Accounts/{sid}/Messages.json`
/// with basic auth `sid:token`, a form body with `To`, `From` and `Body`; 201 with a message
/// JSON, 400 with Twilio's error JSON (21211 for a `To` that is not `+` and digits, 21604 for a
/// missing field), 401 (20003) for bad credentials, 404 for another path. Deduplicates by
/// `I-Twilio-Idempotency-Token` (which must equal `Idempotency-Key`).
pub struct TwilioFake {
    pub addr: SocketAddr,
    seen: Arc<Mutex<TwilioSeen>>,
    in_flight: Arc<Mutex<InFlight>>,
    _runtime: FakeRuntime,
}

impl TwilioFake {
    pub fn start(sid: &str, token: &str, fault: HttpFault, hold: Duration) -> TwilioFake {
        let runtime = FakeRuntime::new();
        let seen = Arc::new(Mutex::new(TwilioSeen::default()));
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let path = format!("/2010-04-01/Accounts/{sid}/Messages.json");
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"))
        );
        let handler: Handler = {
            let (seen, in_flight) = (seen.clone(), in_flight.clone());
            Arc::new(move |request: Request<Incoming>| {
                let (seen, in_flight) = (seen.clone(), in_flight.clone());
                let (path, authorization) = (path.clone(), authorization.clone());
                Box::pin(async move {
                    let _guard = InFlightGuard::enter(&in_flight);
                    let header = |name: &str| {
                        request
                            .headers()
                            .get(name)
                            .and_then(|value| value.to_str().ok())
                            .map(str::to_string)
                    };
                    let auth = header("authorization");
                    let content_type = header("content-type");
                    let key = header("i-twilio-idempotency-token");
                    let other_key = header("idempotency-key");
                    let right_place =
                        request.method() == hyper::Method::POST && request.uri().path() == path;
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    tokio::time::sleep(hold).await;
                    let mut seen = seen.lock().unwrap();
                    seen.requests += 1;
                    if !right_place {
                        return answer(
                            StatusCode::NOT_FOUND,
                            r#"{"code": 20404, "message": "The requested resource was not found", "status": 404}"#,
                        );
                    }
                    if auth.as_deref() != Some(authorization.as_str()) {
                        seen.auth_failures += 1;
                        return answer(
                            StatusCode::UNAUTHORIZED,
                            r#"{"code": 20003, "message": "Authenticate", "status": 401}"#,
                        );
                    }
                    if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
                        return answer(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            r#"{"code": 20415, "message": "Unsupported media type", "status": 415}"#,
                        );
                    }
                    let form: Vec<(String, String)> = form_urlencoded::parse(&body)
                        .map(|(name, value)| (name.into_owned(), value.into_owned()))
                        .collect();
                    let field = |name: &str| {
                        form.iter()
                            .find(|(field, _)| field == name)
                            .map(|(_, value)| value.clone())
                    };
                    let (Some(to), Some(from), Some(text)) =
                        (field("To"), field("From"), field("Body"))
                    else {
                        return answer(
                            StatusCode::BAD_REQUEST,
                            r#"{"code": 21604, "message": "A 'To', 'From' and 'Body' are required.", "status": 400}"#,
                        );
                    };
                    let Some(key) = key.filter(|key| Some(key) == other_key.as_ref()) else {
                        return answer(
                            StatusCode::BAD_REQUEST,
                            r#"{"code": 20001, "message": "The idempotency headers are missing or disagree.", "status": 400}"#,
                        );
                    };
                    let valid_number = to.len() > 1
                        && to.starts_with('+')
                        && to[1..].bytes().all(|byte| byte.is_ascii_digit());
                    if !valid_number {
                        let body = serde_json::json!({
                            "code": 21211,
                            "message": format!("The 'To' number {to} is not a valid phone number."),
                            "more_info": "https://www.twilio.com/docs/errors/21211",
                            "status": 400,
                        });
                        return answer(StatusCode::BAD_REQUEST, &body.to_string());
                    }
                    let sid = match seen.messages.iter().position(|sms| sms.key == key) {
                        Some(index) => {
                            seen.duplicates += 1;
                            index
                        }
                        None => {
                            seen.messages.push(Sms {
                                to,
                                from,
                                body: text,
                                key,
                            });
                            seen.messages.len() - 1
                        }
                    };
                    answer(
                        StatusCode::CREATED,
                        &format!(r#"{{"sid": "SM{sid:032}", "status": "queued"}}"#),
                    )
                }) as HandlerFuture
            })
        };
        let addr = runtime.listen(move |listener| serve_http(listener, fault, handler));
        TwilioFake {
            addr,
            seen,
            in_flight,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen<T>(&self, read: impl FnOnce(&TwilioSeen) -> T) -> T {
        read(&self.seen.lock().unwrap())
    }

    pub fn most_in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().most
    }
}

// ---------------------------------------------------------------------------------------------
// SMTP

/// A fault the SMTP fake injects on every connection.
#[derive(Clone, Debug)]
pub enum SmtpFault {
    None,
    /// Accept and never send the greeting.
    NeverGreet,
    /// Accept and close at once.
    DropConnection,
    /// Answer every RCPT TO with this reply (`451 4.3.0 try later`, `550 5.1.1 no such user`).
    Rcpt(&'static str),
}

/// What the SMTP fake offers and requires.
#[derive(Clone, Debug)]
pub struct SmtpOptions {
    pub fault: SmtpFault,
    /// `(user, password)`: AUTH is advertised and required before MAIL.
    pub auth: Option<(String, String)>,
    /// The mechanisms advertised (`PLAIN`, `LOGIN`).
    pub mechanisms: &'static str,
    /// How long a transaction is held before DATA's final answer.
    pub hold: Duration,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        SmtpOptions {
            fault: SmtpFault::None,
            auth: None,
            mechanisms: "PLAIN LOGIN",
            hold: Duration::ZERO,
        }
    }
}

/// One message the SMTP fake accepted.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA, dot-unstuffed, without the final `.` line.
    pub data: String,
    pub message_id: Option<String>,
}

impl Mail {
    /// A header's value (the first; unfolded lines are not needed here).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        head.lines().find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

#[derive(Default)]
pub struct SmtpSeen {
    /// Connections accepted.
    pub connections: usize,
    pub messages: Vec<Mail>,
    /// AUTH attempts that succeeded and failed.
    pub auth_ok: usize,
    pub auth_failed: usize,
    /// Commands seen, in order, over all connections (`EHLO`, `MAIL`, ...).
    pub commands: Vec<String>,
}

/// A small SMTP server: EHLO/HELO, AUTH PLAIN/LOGIN (when configured), MAIL FROM, RCPT TO, DATA
/// (dot-unstuffing), RSET, NOOP, QUIT. It never offers STARTTLS (so `smtp_starttls = required`
/// must fail against it). It records each accepted message with its Message-ID.
pub struct SmtpFake {
    pub addr: SocketAddr,
    seen: Arc<Mutex<SmtpSeen>>,
    in_flight: Arc<Mutex<InFlight>>,
    _runtime: FakeRuntime,
}

impl SmtpFake {
    pub fn start(options: SmtpOptions) -> SmtpFake {
        let runtime = FakeRuntime::new();
        let seen = Arc::new(Mutex::new(SmtpSeen::default()));
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let addr = {
            let (seen, in_flight) = (seen.clone(), in_flight.clone());
            runtime.listen(move |listener| async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    seen.lock().unwrap().connections += 1;
                    let (seen, in_flight, options) =
                        (seen.clone(), in_flight.clone(), options.clone());
                    tokio::spawn(async move {
                        match options.fault {
                            SmtpFault::NeverGreet => drain(stream).await,
                            SmtpFault::DropConnection => drop(stream),
                            _ => {
                                let _ = smtp_session(stream, &options, &seen, &in_flight).await;
                            }
                        }
                    });
                }
            })
        };
        SmtpFake {
            addr,
            seen,
            in_flight,
            _runtime: runtime,
        }
    }

    /// `smtp://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn seen<T>(&self, read: impl FnOnce(&SmtpSeen) -> T) -> T {
        read(&self.seen.lock().unwrap())
    }

    /// The most transactions (MAIL to DATA's answer) it had in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().most
    }
}

/// The longest command line or DATA line the fake reads.
const SMTP_LINE_BYTES_MAX: usize = 64 * 1024;

async fn smtp_session(
    stream: TcpStream,
    options: &SmtpOptions,
    seen: &Mutex<SmtpSeen>,
    in_flight: &Arc<Mutex<InFlight>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    async fn next_line(
        read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        line: &mut String,
    ) -> std::io::Result<bool> {
        line.clear();
        let count = read.read_line(line).await?;
        assert!(line.len() <= SMTP_LINE_BYTES_MAX, "SMTP line too long");
        Ok(count > 0)
    }
    write.write_all(b"220 fake.test ESMTP ready\r\n").await?;
    let mut authenticated = options.auth.is_none();
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut transaction: Option<InFlightGuard> = None;
    while next_line(&mut read, &mut line).await? {
        let command = line.trim_end_matches(['\r', '\n']).to_string();
        let verb = command
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        seen.lock().unwrap().commands.push(verb.clone());
        let reply: String = match verb.as_str() {
            "EHLO" => {
                let mut reply = String::from("250-fake.test greets you\r\n");
                if options.auth.is_some() {
                    reply.push_str(&format!("250-AUTH {}\r\n", options.mechanisms));
                }
                reply.push_str("250-8BITMIME\r\n250 SMTPUTF8");
                reply
            }
            "HELO" => "250 fake.test".into(),
            "AUTH" => {
                let mut words = command.split(' ').skip(1);
                let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
                let initial = words.next().map(str::to_string);
                let decode = |text: &str| {
                    base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .unwrap_or_default()
                };
                let offered = options
                    .mechanisms
                    .split(' ')
                    .any(|offered| offered == mechanism);
                let given = match mechanism.as_str() {
                    _ if !offered => None,
                    "PLAIN" => {
                        let response = match initial {
                            Some(initial) => initial,
                            None => {
                                write.write_all(b"334 \r\n").await?;
                                next_line(&mut read, &mut line).await?;
                                line.clone()
                            }
                        };
                        let plain = decode(&response);
                        let mut parts = plain.split('\0').skip(1);
                        Some((
                            parts.next().unwrap_or_default().to_string(),
                            parts.next().unwrap_or_default().to_string(),
                        ))
                    }
                    "LOGIN" => {
                        write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                        next_line(&mut read, &mut line).await?;
                        let user = decode(&line);
                        write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        next_line(&mut read, &mut line).await?;
                        Some((user, decode(&line)))
                    }
                    _ => None,
                };
                match (given, &options.auth) {
                    (None, _) => "504 5.5.4 unrecognized authentication type".into(),
                    (Some(given), Some(expected)) if &given == expected => {
                        authenticated = true;
                        seen.lock().unwrap().auth_ok += 1;
                        "235 2.7.0 authentication successful".into()
                    }
                    _ => {
                        seen.lock().unwrap().auth_failed += 1;
                        "535 5.7.8 authentication credentials invalid".into()
                    }
                }
            }
            "MAIL" if !authenticated => "530 5.7.0 authentication required".into(),
            "MAIL" if from.is_some() => "503 5.5.1 nested MAIL command".into(),
            "MAIL" => {
                from = Some(angle_address(&command));
                transaction = Some(InFlightGuard::enter(in_flight));
                "250 2.1.0 ok".into()
            }
            "RCPT" if from.is_none() => "503 5.5.1 need MAIL first".into(),
            "RCPT" => match options.fault {
                SmtpFault::Rcpt(reply) => reply.into(),
                _ => {
                    to.push(angle_address(&command));
                    "250 2.1.5 ok".into()
                }
            },
            "DATA" if to.is_empty() => "503 5.5.1 need RCPT first".into(),
            "DATA" => {
                write
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    if !next_line(&mut read, &mut line).await? {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                tokio::time::sleep(options.hold).await;
                let mut mail = Mail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                    message_id: None,
                };
                mail.message_id = mail.header("Message-ID");
                seen.lock().unwrap().messages.push(mail);
                transaction = None;
                "250 2.0.0 queued".into()
            }
            "RSET" => {
                from = None;
                to.clear();
                transaction = None;
                "250 2.0.0 ok".into()
            }
            "NOOP" => "250 2.0.0 ok".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 command not implemented".into(),
        };
        let _ = &transaction;
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
    Ok(())
}

/// The address between `<` and `>` of `MAIL FROM:<a@b> ...` or `RCPT TO:<a@b>`.
fn angle_address(command: &str) -> String {
    let start = command.find('<').map_or(0, |index| index + 1);
    let end = command[start..]
        .find('>')
        .map_or(command.len(), |index| start + index);
    command[start..end].to_string()
}

/// Addresses the fakes hand out for "nothing listens here": a port bound and released.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
