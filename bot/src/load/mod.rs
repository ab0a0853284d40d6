//! Load mode (`switchyard-bot load`): an open-model load generator over HTTP.
//!
//! # Model
//! Arrival `i` (0-based) is scheduled at `start + i / rate`, for every `i` with a scheduled time
//! inside `--duration`, whatever the server does: arrivals do not wait for responses (an open
//! model, unlike a closed loop of "send, wait, send"). Arrival `i` goes to connection
//! `i mod connections`; each connection is one tokio task with its own keep-alive TCP
//! connection, writing a request as soon as it is due and the connection has room for it
//! (`--pipeline` requests in flight, 1 by default: plain keep-alive, no pipelining).
//!
//! **Latency is measured from the scheduled send time**, not from the moment the request was
//! written: when the server (or the connection) falls behind, the requests that queue up carry
//! the wait in their latency, which corrects the coordinated omission of closed-loop tools. The
//! latency from the actual write (the uncorrected service time) is reported beside it. Both are
//! HDR histograms in microseconds. tokio's timer has millisecond resolution, so a request that
//! falls due while its connection is idle may be written up to ~1 ms late, and that lateness is
//! counted in the corrected latency (conservatively).
//!
//! Requests still unanswered `DRAIN` after the last scheduled arrival are counted as
//! `unanswered`, as are those lost with a broken connection (which is then reopened).
//!
//! # Operations (`--mix like=70,post=20,read=10`)
//! - `like`: a user likes a post of another user, or unlikes it if it already likes it (so the
//!   like/unlike pair stays valid without asking the server). Users are partitioned across
//!   connections, so two connections never race on the same (user, post) pair.
//! - `post`: a user creates a post. `read`: `GET /api/v1/posts/{id}` of a setup post.
//! - `order`: a user buys BTC (`POST /api/v1/orders`) for a small amount in EUR, GBP or USD,
//!   each order with its own `Idempotency-Key` (`load.<seed>.<connection>.<n>`): the market's
//!   durable write path with keys. Start the server with `market.rate_limit_per_minute=0` and a
//!   raised `market.cap_satoshis` to measure it, else most answers are 429 or 409.
//! - `health`: `GET /healthz` (the trivial route; `--mix health=100` measures the generator and
//!   the HTTP layer alone).
//!
//! # Setup
//! When the mix has `like`, `post` or `read`: `--setup-users` users (at least one per connection)
//! are signed up as `load.<seed in hex>.<n>@example.net` with a password derived from the seed
//! (an address already taken by an earlier run with the same seed is reused: its password is the
//! same), each logs in (its JWT is sent as `Authorization: Bearer`), and each creates
//! `--setup-posts` posts (`"Load post <k> of user <id>"`). The setup is not measured.

pub mod wire;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::error::BotError;
use crate::progress::{Progress, ProgressMode};
use crate::report::{Latency, LoadReport, Outcome, Report, Tally};
use crate::rng::Rng;
use crate::transport::{HttpTransport, NewUser, Transport};
use wire::Connection;

/// How long after the last scheduled arrival the generator waits for answers.
const DRAIN: Duration = Duration::from_secs(2);
/// Delay between the end of setup and the first arrival, so every connection is open.
const START_DELAY: Duration = Duration::from_millis(100);
/// Progress is advanced in steps of this many completed requests (a shared atomic per request
/// would be measurable at 30,000 requests/s).
const PROGRESS_STEP: u64 = 100;
/// Pause before reopening a connection that failed to connect.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// One kind of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoadKind {
    Like,
    Post,
    Read,
    Order,
    Health,
}

impl LoadKind {
    pub fn name(self) -> &'static str {
        match self {
            LoadKind::Like => "like",
            LoadKind::Post => "post",
            LoadKind::Read => "read",
            LoadKind::Order => "order",
            LoadKind::Health => "health",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "like" => Some(LoadKind::Like),
            "post" => Some(LoadKind::Post),
            "read" => Some(LoadKind::Read),
            "order" => Some(LoadKind::Order),
            "health" => Some(LoadKind::Health),
            _ => None,
        }
    }
}

/// The operation mix: kinds with integer weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<(LoadKind, u32)>,
    total: u32,
}

impl Mix {
    /// Parses `like=70,post=20,read=10`. Weights are relative (they need not add up to 100).
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut entries: Vec<(LoadKind, u32)> = Vec::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix: `{part}` is not NAME=WEIGHT"))?;
            let kind = LoadKind::parse(name.trim()).ok_or_else(|| {
                format!(
                    "--mix: unknown operation `{name}`; expected like, post, read, order or health"
                )
            })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("--mix: weight of `{name}` is not a whole number"))?;
            if entries.iter().any(|(seen, _)| *seen == kind) {
                return Err(format!("--mix: `{name}` appears twice"));
            }
            if weight > 0 {
                entries.push((kind, weight));
            }
        }
        let total = entries.iter().map(|(_, weight)| weight).sum();
        if total == 0 {
            return Err("--mix: no operation has a weight above 0".into());
        }
        Ok(Mix { entries, total })
    }

    fn pick(&self, rng: &mut Rng) -> LoadKind {
        let mut draw = rng.below(u64::from(self.total)) as u32;
        for (kind, weight) in &self.entries {
            if draw < *weight {
                return *kind;
            }
            draw -= weight;
        }
        unreachable!("draw below the total weight")
    }

    fn needs_setup(&self) -> bool {
        self.entries
            .iter()
            .any(|(kind, _)| *kind != LoadKind::Health)
    }

    fn has(&self, kind: LoadKind) -> bool {
        self.entries.iter().any(|(seen, _)| *seen == kind)
    }

    pub fn to_map(&self) -> BTreeMap<String, u32> {
        self.entries
            .iter()
            .map(|(kind, weight)| (kind.name().to_string(), *weight))
            .collect()
    }
}

impl<'de> Deserialize<'de> for Mix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Mix::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What load mode is asked to do.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub url: String,
    pub seed: u64,
    /// Arrivals per second.
    pub rate: f64,
    pub duration: Duration,
    pub connections: usize,
    /// Requests in flight per connection (1 = no pipelining).
    pub pipeline: usize,
    /// Worker threads of the runtime (for the report; the caller builds the runtime).
    pub threads: usize,
    pub mix: Mix,
    pub setup_users: usize,
    pub setup_posts: usize,
    pub timeout: Duration,
    pub progress: ProgressMode,
}

/// A setup user as the connections see it.
#[derive(Debug, Clone)]
struct LoadUser {
    id: u64,
    /// `Authorization: Bearer <token>\r\n`, pre-rendered.
    authorization: String,
}

#[derive(Debug, Clone, Copy)]
struct LoadPost {
    id: u64,
    author: usize,
}

/// Everything a connection needs, shared read-only.
struct Plan {
    address: SocketAddr,
    host: String,
    start: Instant,
    /// Arrivals scheduled in total.
    arrivals: u64,
    rate: f64,
    connections: usize,
    pipeline: usize,
    mix: Mix,
    users: Vec<LoadUser>,
    posts: Vec<LoadPost>,
    seed: u64,
    progress: Progress,
}

impl Plan {
    fn scheduled(&self, arrival: u64) -> Instant {
        self.start + Duration::from_nanos((arrival as f64 * 1e9 / self.rate) as u64)
    }
}

/// What one connection measured.
struct ConnectionOutcome {
    tally: Tally,
    from_send: Histogram<u64>,
    send_lag: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    sent: u64,
    completed: u64,
    /// Requests lost with a broken connection.
    lost: u64,
    /// Times the connection broke.
    breaks: u64,
    last_response: Option<Instant>,
}

/// A request written and not yet answered.
struct InFlight {
    scheduled: Instant,
    sent: Instant,
    kind: &'static str,
    /// For likes: the (user, post) pair, so a 409 can correct the local like state.
    pair: Option<(usize, usize)>,
}

/// Runs the load: setup, then the open-model generator. Returns the report (its outcome is
/// `Error` if the server could not be reached or the setup failed).
pub async fn run(options: LoadOptions) -> Report {
    let mut report = Report::new("load", "http", options.seed);
    match run_inner(&options, &mut report).await {
        Ok(()) => report.set_outcome(Outcome::Finished),
        Err(error) => {
            report.failure = Some(error.to_string());
            report.set_outcome(Outcome::Error);
        }
    }
    report
}

async fn run_inner(options: &LoadOptions, report: &mut Report) -> Result<(), BotError> {
    assert!(options.rate > 0.0 && options.connections > 0 && options.pipeline > 0);
    let transport = Arc::new(HttpTransport::new(
        &options.url,
        options.connections,
        options.timeout,
    )?);
    let base = transport.base().to_string();
    let host = base.trim_start_matches("http://").to_string();
    let address = tokio::net::lookup_host(&host)
        .await
        .map_err(|error| BotError::transport("resolve", format!("{host}: {error}")))?
        .next()
        .ok_or_else(|| BotError::transport("resolve", format!("{host}: no address")))?;
    transport.health().await?;
    let (users, posts) = if options.mix.needs_setup() {
        setup(&transport, options).await?
    } else {
        (Vec::new(), Vec::new())
    };
    let arrivals = (options.rate * options.duration.as_secs_f64()).floor() as u64;
    let mut connections = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let connection = Connection::connect(address)
            .await
            .map_err(|error| BotError::transport("connect", format!("{address}: {error}")))?;
        connections.push(connection);
    }
    let plan = Arc::new(Plan {
        address,
        host,
        start: Instant::now() + START_DELAY,
        arrivals,
        rate: options.rate,
        connections: options.connections,
        pipeline: options.pipeline,
        mix: options.mix.clone(),
        users,
        posts,
        seed: options.seed,
        progress: Progress::start("load", arrivals, options.progress),
    });
    let mut handles = Vec::with_capacity(options.connections);
    for (index, connection) in connections.into_iter().enumerate() {
        let plan = plan.clone();
        handles.push(tokio::spawn(drive(plan, index, connection)));
    }
    let mut tally = Tally::default();
    let mut from_send = new_histogram();
    let mut send_lag = new_histogram();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut sent, mut completed, mut lost) = (0u64, 0u64, 0u64);
    let mut last_response = plan.start;
    for handle in handles {
        let outcome = handle
            .await
            .map_err(|error| BotError::transport("join", format!("connection task: {error}")))?;
        tally.merge(&outcome.tally);
        // Invariant: every histogram here has the same bounds.
        from_send.add(&outcome.from_send).expect("same bounds");
        send_lag.add(&outcome.send_lag).expect("same bounds");
        for (status, count) in outcome.statuses {
            *statuses.entry(status).or_default() += count;
        }
        sent += outcome.sent;
        completed += outcome.completed;
        lost += outcome.lost;
        if let Some(at) = outcome.last_response {
            last_response = last_response.max(at);
        }
    }
    let window = last_response.saturating_duration_since(plan.start);
    let unanswered = arrivals - completed.min(arrivals);
    // Lost requests are already counted as `transport io`; the rest were never sent or not
    // answered before the drain deadline.
    let late = unanswered.saturating_sub(lost);
    if late > 0 {
        tally.record_error_only_count("transport unanswered", late);
    }
    tally.fill(report, window);
    plan.progress.finish(&format!("{completed} responses"));
    report.load = Some(LoadReport {
        url: base,
        rate_target_per_second: options.rate,
        duration_seconds: options.duration.as_secs_f64(),
        connections: options.connections,
        pipeline_depth: options.pipeline,
        threads: options.threads,
        mix: options.mix.to_map(),
        scheduled: arrivals,
        sent,
        completed,
        unanswered,
        achieved_rate_per_second: report.throughput_per_second,
        statuses,
        latency_from_schedule_us: report.latency_us,
        latency_from_send_us: Latency::of(&from_send),
        send_lag_us: Latency::of(&send_lag),
        setup_users: plan.users.len(),
        setup_posts: plan.posts.len(),
    });
    Ok(())
}

fn new_histogram() -> Histogram<u64> {
    // Invariant: valid constant bounds (1 µs to 10 minutes, 3 digits), as in `report`.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Setup users signed up (and logged in, and given posts) at once.
const SETUP_PARALLELISM: usize = 16;

/// Signs up, logs in and gives posts to the setup users (see the module docs), up to
/// `SETUP_PARALLELISM` users at a time (sign-up and login cost an argon2 hash each).
async fn setup(
    transport: &Arc<HttpTransport>,
    options: &LoadOptions,
) -> Result<(Vec<LoadUser>, Vec<LoadPost>), BotError> {
    let user_count = if options.mix.has(LoadKind::Like)
        || options.mix.has(LoadKind::Post)
        || options.mix.has(LoadKind::Order)
    {
        // Every connection owns at least one user; a like needs a post of another user.
        options.setup_users.max(options.connections).max(2)
    } else {
        options.setup_users.max(1)
    };
    let progress = Arc::new(Progress::start(
        "load setup",
        (user_count * (2 + options.setup_posts)) as u64,
        options.progress,
    ));
    let permits = Arc::new(tokio::sync::Semaphore::new(SETUP_PARALLELISM));
    let mut handles = Vec::with_capacity(user_count);
    for index in 0..user_count {
        let transport = transport.clone();
        let progress = progress.clone();
        let permits = permits.clone();
        let seed = options.seed;
        let post_count = options.setup_posts;
        handles.push(tokio::spawn(async move {
            // Invariant: the semaphore is never closed.
            let _permit = permits.acquire().await.expect("open semaphore");
            let email = format!("load.{seed:x}.{index}@example.net");
            let password = crate::social::password_for(seed, index);
            let new_user = NewUser {
                email: email.clone(),
                password: password.clone(),
                full_name: Some(format!("Load User {index}")),
            };
            match transport.sign_up(&new_user).await {
                Ok(_) => {}
                Err(error) if error.code == "email_taken" => {}
                Err(error) => return Err(error),
            }
            let session = transport.login(&email, &password).await?;
            progress.advance(2);
            let mut posts = Vec::with_capacity(post_count);
            for ordinal in 1..=post_count {
                let text = format!("Load post {ordinal} of user {}", session.user_id);
                let post = transport.create_post(&session, &text).await?;
                posts.push(LoadPost {
                    id: post.id,
                    author: index,
                });
                progress.advance(1);
            }
            let token = session.token.as_deref().unwrap_or_default();
            let user = LoadUser {
                id: session.user_id,
                authorization: format!("Authorization: Bearer {token}\r\n"),
            };
            Ok::<_, BotError>((user, posts))
        }));
    }
    let mut users = Vec::with_capacity(user_count);
    let mut posts = Vec::new();
    for handle in handles {
        let (user, own_posts) = handle
            .await
            .map_err(|error| BotError::transport("join", format!("setup task: {error}")))??;
        users.push(user);
        posts.extend(own_posts);
    }
    progress.finish(&format!("{} users, {} posts", users.len(), posts.len()));
    if options.mix.has(LoadKind::Read) && posts.is_empty() {
        return Err(BotError::transport(
            "setup",
            "--mix has read but --setup-posts is 0",
        ));
    }
    if options.mix.has(LoadKind::Like) && posts.is_empty() {
        return Err(BotError::transport(
            "setup",
            "--mix has like but --setup-posts is 0",
        ));
    }
    Ok((users, posts))
}

/// State of one connection's share of the users.
struct Actors {
    /// Slots of the setup users this connection owns.
    own: Vec<usize>,
    /// (user slot, post index) pairs whose like is on, as far as this connection knows.
    liked: HashSet<(usize, usize)>,
    posts_written: u64,
    orders_placed: u64,
    /// This connection's index (in its orders' idempotency keys).
    index: usize,
}

/// Renders the request for `kind` into `out`; returns the report kind and, for likes, the pair.
fn render(
    plan: &Plan,
    actors: &mut Actors,
    rng: &mut Rng,
    kind: LoadKind,
    out: &mut Vec<u8>,
) -> (&'static str, Option<(usize, usize)>) {
    let host = &plan.host;
    let mut text = String::with_capacity(256);
    let result = match kind {
        LoadKind::Health => {
            let _ = write!(text, "GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
            ("health", None)
        }
        LoadKind::Read => {
            let post = &plan.posts[rng.below(plan.posts.len() as u64) as usize];
            let _ = write!(
                text,
                "GET /api/v1/posts/{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                post.id
            );
            ("read", None)
        }
        LoadKind::Post => {
            let slot = actors.own[rng.below(actors.own.len() as u64) as usize];
            actors.posts_written += 1;
            let body = format!(
                "{{\"text\":\"Load post {} of user {}\"}}",
                actors.posts_written, plan.users[slot].id
            );
            let _ = write!(
                text,
                "POST /api/v1/posts HTTP/1.1\r\nHost: {host}\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                plan.users[slot].authorization,
                body.len()
            );
            ("post", None)
        }
        LoadKind::Order => {
            let slot = actors.own[rng.below(actors.own.len() as u64) as usize];
            actors.orders_placed += 1;
            let currency = ["EUR", "GBP", "USD"][rng.below(3) as usize];
            let body = format!(
                "{{\"currency\":\"{currency}\",\"amount\":\"{}.{:02}\"}}",
                1 + rng.below(99),
                rng.below(100)
            );
            let _ = write!(
                text,
                "POST /api/v1/orders HTTP/1.1\r\nHost: {host}\r\n{}Idempotency-Key: load.{:x}.{}.{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                plan.users[slot].authorization,
                plan.seed,
                actors.index,
                actors.orders_placed,
                body.len()
            );
            ("order", None)
        }
        LoadKind::Like => {
            let slot = actors.own[rng.below(actors.own.len() as u64) as usize];
            // Setup guaranteed a post by another user; draw until one is found.
            let post_index = loop {
                let index = rng.below(plan.posts.len() as u64) as usize;
                if plan.posts[index].author != slot {
                    break index;
                }
            };
            let pair = (slot, post_index);
            let (method, name) = if actors.liked.remove(&pair) {
                ("DELETE", "unlike")
            } else {
                actors.liked.insert(pair);
                ("POST", "like")
            };
            let _ = write!(
                text,
                "{method} /api/v1/posts/{}/likes HTTP/1.1\r\nHost: {host}\r\n{}Content-Length: 0\r\n\r\n",
                plan.posts[post_index].id, plan.users[slot].authorization
            );
            (name, Some(pair))
        }
    };
    out.extend_from_slice(text.as_bytes());
    result
}

/// The error code of an error response body, `http_<status>` when it has none.
fn error_key(status: u16, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        code: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(body) => format!("{status} {}", body.error.code),
        Err(_) => format!("{status} http_{status}"),
    }
}

/// One connection: writes its arrivals when due, reads the answers, measures.
async fn drive(plan: Arc<Plan>, index: usize, connection: Connection) -> ConnectionOutcome {
    let mut outcome = ConnectionOutcome {
        tally: Tally::default(),
        from_send: new_histogram(),
        send_lag: new_histogram(),
        statuses: BTreeMap::new(),
        sent: 0,
        completed: 0,
        lost: 0,
        breaks: 0,
        last_response: None,
    };
    let mut rng = Rng::derive(plan.seed, &format!("load/{index}"));
    let own: Vec<usize> = (0..plan.users.len())
        .filter(|slot| slot % plan.connections == index)
        .collect();
    let mut actors = Actors {
        own,
        liked: HashSet::new(),
        posts_written: 0,
        orders_placed: 0,
        index,
    };
    let mut connection = Some(connection);
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(plan.pipeline);
    let mut next_arrival = index as u64;
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let last_scheduled = plan.scheduled(plan.arrivals);
    let deadline = last_scheduled + DRAIN;
    let mut unreported = 0u64;
    loop {
        let Some(open) = connection.as_mut() else {
            if Instant::now() > deadline {
                break;
            }
            match Connection::connect(plan.address).await {
                Ok(fresh) => connection = Some(fresh),
                Err(error) => {
                    if outcome.breaks <= 1 {
                        eprintln!("load: reconnecting to {} failed: {error}", plan.address);
                    }
                    outcome.tally.record_error_only("transport connect".into());
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
            continue;
        };
        // Write every arrival that is due and fits in the pipeline.
        let now = Instant::now();
        let mut fresh = 0;
        while in_flight.len() < plan.pipeline && next_arrival < plan.arrivals {
            let scheduled = plan.scheduled(next_arrival);
            if scheduled > now {
                break;
            }
            let kind = plan.mix.pick(&mut rng);
            let kind =
                if actors.own.is_empty() && kind != LoadKind::Health && kind != LoadKind::Read {
                    // Cannot happen after setup (one user per connection at least); keep the
                    // arrival, as a read.
                    LoadKind::Read
                } else {
                    kind
                };
            let (name, pair) = render(&plan, &mut actors, &mut rng, kind, &mut buffer);
            in_flight.push_back(InFlight {
                scheduled,
                sent: now,
                kind: name,
                pair,
            });
            fresh += 1;
            next_arrival += plan.connections as u64;
        }
        if fresh > 0 {
            let sent_at = Instant::now();
            let written = open.write_all(&buffer).await;
            buffer.clear();
            for request in in_flight.iter_mut().rev().take(fresh) {
                request.sent = sent_at;
                let lag = sent_at.saturating_duration_since(request.scheduled);
                outcome
                    .send_lag
                    .saturating_record((lag.as_micros() as u64).max(1));
            }
            outcome.sent += fresh as u64;
            if let Err(error) = written {
                lose(&mut outcome, &mut in_flight, &error.to_string());
                connection = None;
                continue;
            }
        }
        let next_due = (next_arrival < plan.arrivals).then(|| plan.scheduled(next_arrival));
        if in_flight.is_empty() {
            match next_due {
                Some(due) => {
                    tokio::time::sleep_until(due.into()).await;
                    continue;
                }
                None => break,
            }
        }
        if Instant::now() > deadline {
            break;
        }
        let wake = match next_due {
            Some(due) if in_flight.len() < plan.pipeline => due,
            _ => deadline,
        };
        let read = tokio::select! {
            read = open.read_response() => Some(read),
            _ = tokio::time::sleep_until(wake.into()) => None,
        };
        match read {
            None => continue,
            Some(Ok(response)) => {
                let done = Instant::now();
                // Invariant: a response only arrives for a request in flight; an extra one is
                // a protocol error, treated like a broken connection below.
                let Some(request) = in_flight.pop_front() else {
                    lose(&mut outcome, &mut in_flight, "response without a request");
                    connection = None;
                    continue;
                };
                let error = (!(200..300).contains(&response.status))
                    .then(|| error_key(response.status, &response.body));
                if let (Some(pair), Some(key)) = (request.pair, &error) {
                    // The server's like state differs from ours (a reused setup user): follow it.
                    if key.ends_with("already_liked") {
                        actors.liked.insert(pair);
                    } else if key.ends_with("not_liked") {
                        actors.liked.remove(&pair);
                    }
                }
                let from_schedule = done.saturating_duration_since(request.scheduled);
                let from_send = done.saturating_duration_since(request.sent);
                outcome.tally.record_keyed(
                    request.kind,
                    (from_schedule.as_micros() as u64).max(1),
                    error,
                );
                outcome
                    .from_send
                    .saturating_record((from_send.as_micros() as u64).max(1));
                *outcome.statuses.entry(response.status).or_default() += 1;
                outcome.completed += 1;
                outcome.last_response = Some(done);
                unreported += 1;
                if unreported >= PROGRESS_STEP {
                    plan.progress.advance(unreported);
                    unreported = 0;
                }
                if response.close {
                    lose(&mut outcome, &mut in_flight, "server closed the connection");
                    connection = None;
                }
            }
            Some(Err(error)) => {
                lose(&mut outcome, &mut in_flight, &error.to_string());
                connection = None;
            }
        }
    }
    plan.progress.advance(unreported);
    outcome
}

/// Requests in flight on a connection that broke: counted as errors, never answered.
/// `why` goes to the log once per connection break; the report counts them as `transport io`.
fn lose(outcome: &mut ConnectionOutcome, in_flight: &mut VecDeque<InFlight>, why: &str) {
    if outcome.lost == 0 && outcome.breaks == 0 {
        eprintln!("load: a connection broke ({why}); reconnecting");
    }
    outcome.breaks += 1;
    let lost = in_flight.len() as u64;
    in_flight.clear();
    outcome.lost += lost;
    outcome.tally.record_error_only_count("transport io", lost);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_pick_by_weight() {
        let mix = Mix::parse("like=70, post=20,read=10").unwrap();
        assert_eq!(mix.total, 100);
        let mut rng = Rng::new(5);
        let likes = (0..10_000)
            .filter(|_| mix.pick(&mut rng) == LoadKind::Like)
            .count();
        assert!((6_500..7_500).contains(&likes), "{likes}");
        assert!(Mix::parse("health=100").is_ok());
        for bad in ["", "like", "like=x", "jump=3", "like=0", "like=1,like=2"] {
            assert!(Mix::parse(bad).is_err(), "{bad}");
        }
    }
}
