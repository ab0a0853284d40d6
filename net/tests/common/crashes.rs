//! Crash episodes of the real `switchyard` binary under mixed load (issue 11), shared by
//! `powercut.rs` (power cuts on the `switchyard-powercut` FUSE file system) and `kill_soak.rs`
//! (SIGKILL on an ordinary directory). Each *episode* starts the server on a fresh data dir,
//! signs up users and work clients, then `cycles` times: drives mixed load (sign-ups, posts,
//! likes/unlikes; work item adds, leases, results) for a seeded while, crashes the server
//! (SIGKILL; with a power cut, the file system first drops every write no fsync/fdatasync
//! covered, alternating `DropAll` and a seeded `KeepSubset`), restarts it on the same data dir
//! and checks that every acknowledged (2xx) write is there: users, posts, like states, work
//! items, leases and results, that the tokens issued before still work, and that
//! `GET /api/v1/admin/social/check` finds nothing. A request in flight at the crash may land
//! either way; it is resolved after the restart.
//!
//! Seeds: an episode is fully named by its seed (load schedule, crash moment, cut seeds and
//! modes); what the crash meets also depends on timing, so a seed replays the same *kind* of
//! failure. Every episode runs even after a failure; the summary lists each failure with its
//! seed and cycle. Environment (with the test's prefix, `SWITCHYARD_POWERCUT` or
//! `SWITCHYARD_SOAK`): `<PREFIX>_EPISODES=N` runs N episodes, `<PREFIX>_SEED=S` exactly the
//! episode with seed S; `SWITCHYARD_SLOW_TESTS=1` the long run; `SWITCHYARD_KEEP_DATA=1` copies
//! the post-crash image of a failed cycle (before the restart touches it) to
//! `$TMPDIR/switchyard-<name>-<seed>-cycle<k>`.
//!
//! Power cuts need root and /dev/fuse (mounting uses mount(2)); without them the test fails,
//! it does not skip.

#![allow(dead_code)] // each test file uses a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::common::{self, try_call, Response, Server, FAST_HASH};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng as _, RngExt, SeedableRng};
use serde_json::{json, Value};
use switchyard_powercut::{CutMode, PowerCutFs};

/// How a crash test runs: its name, its environment prefix, how many episodes and cycles.
pub struct Settings {
    pub name: &'static str,
    pub env_prefix: &'static str,
    pub crash: Crash,
    pub ci_episodes: usize,
    pub slow_episodes: usize,
    /// Cycles (crashes) per episode. Verification reads every acknowledged write, so its cost
    /// grows with the episode: keep episodes short and run many.
    pub cycles_per_episode: usize,
}

/// What ends each cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// SIGKILL: the page cache survives, the process does not.
    Kill,
    /// Power off the FUSE file system (dropping unsynced writes), then SIGKILL.
    PowerCut,
}
const SOCIAL_WRITER_COUNT: usize = 4;
const WORK_CLIENT_COUNT: usize = 2;
/// Load runs this long (seeded, uniform) before the SIGKILL and the cut.
const LOAD_MS_MIN: u64 = 200;
const LOAD_MS_MAX: u64 = 1500;
/// Work items per add request (cut into buckets of `work.bucket_size`, ENGINE_ARGS).
const ITEMS_PER_ADD: usize = 10;
/// A sign-up is one writer operation in this many.
const SIGN_UP_ONE_IN: u64 = 12;
/// The file system's fsync latency, like a fast SSD's flush: the WAL's group commit then gathers
/// multi-page batches, and a power-off at a random moment often finds one written but unsynced.
const SYNC_DELAY: Duration = Duration::from_millis(2);
const ADMIN: &str = "admin-secret";
/// Small segments and frequent checkpoints, so that segment rolls, checkpoint passes and the
/// removal of covered segments all happen within one load phase.
const ENGINE_ARGS: [&str; 14] = [
    "--set",
    "engine.wal_segment_bytes_max=65536",
    "--set",
    "engine.checkpoint_interval_ms=100",
    "--set",
    "work.bucket_size=4",
    "--set",
    "work.lease_seconds=3600",
    "--set",
    "engine.sled_cache_bytes=8388608",
    // Clients keep the buckets they leave unreported across cycles.
    "--set",
    "work.leased_buckets_per_client_max=100000",
    // Every writer signs up from loopback: the per-source sign-up throttle is not under test.
    "--set",
    "auth.signups_per_minute_per_source=0",
];

const _: () = assert!(LOAD_MS_MIN < LOAD_MS_MAX);

/// The episode's random choices, all from its seed: rand's xoshiro256++, the project's seeded
/// generator.
#[derive(Clone)]
struct Rng(Xoshiro256PlusPlus);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n.max(1))
    }
}

struct User {
    id: u64,
    token: String,
}

struct Client {
    id: u64,
    token: String,
}

/// Everything the server acknowledged, plus what was in flight at the kill.
#[derive(Default)]
struct Ledger {
    /// Acknowledged sign-ups: user id → e-mail.
    users: BTreeMap<u64, String>,
    /// post id → (author, text).
    posts: BTreeMap<u64, (u64, String)>,
    /// (liker, post) → liked, per the last acknowledged request.
    likes: BTreeMap<(u64, u64), bool>,
    /// Pairs whose last request got no answer.
    uncertain_likes: BTreeSet<(u64, u64)>,
    /// Acknowledged work item keys.
    items: BTreeSet<String>,
    /// Item adds in flight at the kill.
    uncertain_items: BTreeSet<String>,
    /// Acknowledged leases: bucket id → (client index, keys).
    leases: BTreeMap<u64, (usize, Vec<String>)>,
    /// Acknowledged results: key → client id.
    done: BTreeMap<String, u64>,
    /// Results in flight at the kill.
    uncertain_done: BTreeSet<String>,
}

/// What one load phase shares between its threads.
struct Phase {
    addr: SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    stop: AtomicBool,
    /// Set just before the file system's power-off: from then on an error answer is expected
    /// (the server's disk is gone) and means "unknown", not a failure.
    powered_off: AtomicBool,
    episode_seed: u64,
    /// Which cycle of the episode this load leads up to (keeps sign-up e-mails unique).
    cut: usize,
}

enum Outcome {
    Acknowledged(Response),
    /// No answer, or a 503: the request may or may not have been applied.
    Unknown,
}

fn send(
    phase: &Phase,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Outcome {
    match try_call(phase.addr, method, path, token, body) {
        Ok(response) if (200..300).contains(&response.status) => Outcome::Acknowledged(response),
        Ok(response) if response.status == 503 => Outcome::Unknown,
        Ok(_) if phase.powered_off.load(Ordering::SeqCst) => Outcome::Unknown,
        Ok(response) => panic!(
            "{method} {path}: unexpected {} {}",
            response.status,
            response.text()
        ),
        Err(_) => Outcome::Unknown,
    }
}

fn social_writer(phase: &Phase, me: &User, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut sign_ups = 0u64;
    while !phase.stop.load(Ordering::Relaxed) {
        let choice = rng.below(SIGN_UP_ONE_IN);
        if choice == 0 {
            sign_ups += 1;
            let email = format!(
                "u{:x}-{}-{}-{sign_ups}@example.com",
                phase.episode_seed, phase.cut, me.id
            );
            let body = json!({"email": email, "password": "password123"}).to_string();
            match send(phase, "POST", "/api/v1/users", None, Some(&body)) {
                Outcome::Acknowledged(response) => {
                    let id = response.json()["id"].as_u64().expect("user id");
                    phase.ledger.lock().unwrap().users.insert(id, email);
                }
                Outcome::Unknown => return, // resolved as "may exist": nothing to check
            }
        } else if choice <= 4 {
            let text = format!("post by {} #{:x}", me.id, rng.next());
            let body = json!({ "text": text }).to_string();
            match send(phase, "POST", "/api/v1/posts", Some(&me.token), Some(&body)) {
                Outcome::Acknowledged(response) => {
                    let id = response.json()["id"].as_u64().expect("post id");
                    phase.ledger.lock().unwrap().posts.insert(id, (me.id, text));
                }
                Outcome::Unknown => return,
            }
        } else {
            let (post, liked) = {
                let ledger = phase.ledger.lock().unwrap();
                let candidates: Vec<u64> = ledger
                    .posts
                    .iter()
                    .filter(|(_, (author, _))| *author != me.id)
                    .map(|(id, _)| *id)
                    .collect();
                if candidates.is_empty() {
                    drop(ledger);
                    continue;
                }
                let post = candidates[rng.below(candidates.len() as u64) as usize];
                let liked = ledger.likes.get(&(me.id, post)).copied().unwrap_or(false);
                (post, liked)
            };
            let method = if liked { "DELETE" } else { "POST" };
            let path = format!("/api/v1/posts/{post}/likes");
            match send(phase, method, &path, Some(&me.token), None) {
                Outcome::Acknowledged(_) => {
                    phase
                        .ledger
                        .lock()
                        .unwrap()
                        .likes
                        .insert((me.id, post), !liked);
                }
                Outcome::Unknown => {
                    phase
                        .ledger
                        .lock()
                        .unwrap()
                        .uncertain_likes
                        .insert((me.id, post));
                    return;
                }
            }
        }
    }
}

fn work_admin(phase: &Phase, first_batch: u64) {
    let mut batch = first_batch;
    while !phase.stop.load(Ordering::Relaxed) {
        let keys: Vec<String> = (0..ITEMS_PER_ADD)
            .map(|i| format!("k{:x}-{batch}-{i}", phase.episode_seed))
            .collect();
        batch += 1;
        let items: Vec<Value> = keys.iter().map(|key| json!({ "key": key })).collect();
        let body = json!({ "items": items }).to_string();
        match send(
            phase,
            "POST",
            "/api/v1/work/items",
            Some(ADMIN),
            Some(&body),
        ) {
            Outcome::Acknowledged(_) => phase.ledger.lock().unwrap().items.extend(keys),
            Outcome::Unknown => {
                phase.ledger.lock().unwrap().uncertain_items.extend(keys);
                return;
            }
        }
        // Leave the clients room: more items than they take only grow the pool.
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn work_client(phase: &Phase, index: usize, client: &Client, seed: u64) {
    let mut rng = Rng::new(seed);
    while !phase.stop.load(Ordering::Relaxed) {
        let body = json!({ "max_buckets": 1 + rng.below(2) }).to_string();
        let response = match send(
            phase,
            "POST",
            "/api/v1/work/leases",
            Some(&client.token),
            Some(&body),
        ) {
            Outcome::Acknowledged(response) => response,
            Outcome::Unknown => return,
        };
        let buckets: Vec<(u64, Vec<String>)> = response.json()["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|bucket| {
                let keys = bucket["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|key| key.as_str().expect("key").to_string())
                    .collect();
                (bucket["id"].as_u64().expect("bucket id"), keys)
            })
            .collect();
        if buckets.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        {
            let mut ledger = phase.ledger.lock().unwrap();
            for (id, keys) in &buckets {
                ledger.leases.insert(*id, (index, keys.clone()));
            }
        }
        for (id, keys) in buckets {
            // Report all, some or none of the bucket (kept leases stay held across the cut).
            let reported = rng.below(keys.len() as u64 + 2).min(keys.len() as u64) as usize;
            if reported == 0 {
                continue;
            }
            let keys = &keys[..reported];
            let results: Vec<Value> = keys
                .iter()
                .map(|key| json!({"key": key, "outcome": "yes", "detail": "powercut"}))
                .collect();
            let body = json!({ "results": results }).to_string();
            let path = format!("/api/v1/work/buckets/{id}/results");
            match send(phase, "POST", &path, Some(&client.token), Some(&body)) {
                Outcome::Acknowledged(_) => {
                    let mut ledger = phase.ledger.lock().unwrap();
                    for key in keys {
                        ledger.done.insert(key.clone(), client.id);
                    }
                }
                Outcome::Unknown => {
                    let mut ledger = phase.ledger.lock().unwrap();
                    ledger.uncertain_done.extend(keys.iter().cloned());
                    return;
                }
            }
        }
    }
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Response {
    try_call(addr, "GET", path, token, None).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn ok_json(response: Response, what: &str) -> Value {
    assert_eq!(
        response.status,
        200,
        "{what}: {} {}",
        response.status,
        response.text()
    );
    response.json()
}

/// Every acknowledged write is there, every invariant holds; then the uncertain entries are
/// resolved to what the server now says.
fn verify(addr: SocketAddr, ledger: &mut Ledger, clients: &[Client]) {
    for (id, email) in &ledger.users {
        let user = ok_json(
            get(addr, &format!("/api/v1/users/{id}"), Some(ADMIN)),
            &format!("acknowledged user {id}"),
        );
        assert_eq!(user["email"].as_str(), Some(email.as_str()), "user {id}");
    }
    for (id, (author, text)) in &ledger.posts {
        let post = ok_json(
            get(addr, &format!("/api/v1/posts/{id}"), None),
            &format!("acknowledged post {id}"),
        );
        assert_eq!(post["author_id"].as_u64(), Some(*author), "post {id}");
        assert_eq!(post["text"].as_str(), Some(text.as_str()), "post {id}");
    }
    let mut posts_with_likes: BTreeSet<u64> = ledger.likes.keys().map(|(_, post)| *post).collect();
    posts_with_likes.extend(ledger.uncertain_likes.iter().map(|(_, post)| *post));
    let mut found_likes: BTreeMap<(u64, u64), bool> = BTreeMap::new();
    for post in posts_with_likes {
        let page = ok_json(
            get(addr, &format!("/api/v1/posts/{post}/likes?limit=500"), None),
            &format!("likes of post {post}"),
        );
        for record in page["items"].as_array().expect("items") {
            let liker = record["user_id"].as_u64().expect("user_id");
            let liked = record["liked"].as_bool().expect("liked");
            found_likes.insert((liker, post), liked);
        }
    }
    for (pair, liked) in &ledger.likes {
        if ledger.uncertain_likes.contains(pair) {
            continue;
        }
        assert_eq!(
            found_likes.get(pair).copied().unwrap_or(false),
            *liked,
            "like of post {} by user {}: the acknowledged state is lost",
            pair.1,
            pair.0
        );
    }
    let check = ok_json(
        get(addr, "/api/v1/admin/social/check", Some(ADMIN)),
        "social check",
    );
    assert_eq!(check["differences"], json!([]), "social invariants broken");

    let mut states: BTreeMap<String, Value> = BTreeMap::new();
    for key in ledger.items.iter().chain(&ledger.uncertain_items) {
        let response = get(addr, &format!("/api/v1/work/items/{key}"), None);
        match response.status {
            200 => {
                states.insert(key.clone(), response.json());
            }
            404 if ledger.uncertain_items.contains(key) => {}
            status => panic!("acknowledged work item {key}: {status} {}", response.text()),
        }
    }
    let state_of = |key: &String| -> &Value {
        states
            .get(key)
            .unwrap_or_else(|| panic!("{key} is in the ledger but not among the items"))
    };
    for (key, client_id) in &ledger.done {
        let item = state_of(key);
        assert_eq!(
            item["state"], "done",
            "acknowledged result of {key}: {item}"
        );
        let results = item["results"].as_array().expect("results");
        assert!(
            results
                .iter()
                .any(|r| r["client_id"].as_u64() == Some(*client_id) && r["outcome"] == "yes"),
            "acknowledged result of {key} by client {client_id}: {item}"
        );
    }
    for (bucket, (index, keys)) in &ledger.leases {
        for key in keys {
            if ledger.done.contains_key(key) {
                continue;
            }
            let item = state_of(key);
            let state = item["state"].as_str();
            let allowed = state == Some("leased")
                || (state == Some("done") && ledger.uncertain_done.contains(key));
            assert!(
                allowed,
                "{key} of bucket {bucket} leased to client {index}: {item}"
            );
        }
    }
    // The tokens issued before the cut still work, and the held leases are still held.
    for (bucket, (index, keys)) in &ledger.leases {
        if keys.iter().all(|key| state_of(key)["state"] == "done") {
            continue;
        }
        let path = format!("/api/v1/work/buckets/{bucket}/heartbeat");
        let response = try_call(addr, "POST", &path, Some(&clients[*index].token), None)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert_eq!(
            response.status,
            200,
            "heartbeat of held bucket {bucket} by client {index}: {}",
            response.text()
        );
    }
    let stats = ok_json(get(addr, "/api/v1/work/stats", None), "work stats");
    let counts = &stats["items"];
    let total: u64 = ["pending", "leased", "done"]
        .iter()
        .map(|state| counts[state].as_u64().expect("count"))
        .sum();
    let at_least = ledger.items.len() as u64;
    let at_most = at_least + ledger.uncertain_items.len() as u64;
    assert!(
        (at_least..=at_most).contains(&total),
        "work stats count {total} items, the ledger {at_least}..={at_most}: {stats}"
    );
    assert!(
        counts["done"].as_u64() >= Some(ledger.done.len() as u64),
        "work stats: {stats}"
    );

    // Resolve what was in flight.
    for pair in std::mem::take(&mut ledger.uncertain_likes) {
        ledger
            .likes
            .insert(pair, found_likes.get(&pair).copied().unwrap_or(false));
    }
    for key in std::mem::take(&mut ledger.uncertain_items) {
        if states.contains_key(&key) {
            ledger.items.insert(key);
        }
    }
    for key in std::mem::take(&mut ledger.uncertain_done) {
        if let Some(item) = states.get(&key) {
            if item["state"] == "done" {
                let client = item["results"][0]["client_id"].as_u64().expect("client");
                ledger.done.insert(key, client);
            }
        }
    }
}

fn server_args() -> Vec<&'static str> {
    let mut args: Vec<&str> = vec!["--admin-token", ADMIN];
    args.extend_from_slice(&FAST_HASH);
    args.extend_from_slice(&ENGINE_ARGS);
    args
}

/// Starts the server; a refusal to start is a failure of the cut before it.
fn start(data_dir: &Path) -> Server {
    let started = Server::try_start(data_dir, &server_args()).and_then(|mut server| {
        server.wait_ready_or_exit()?;
        Ok(server)
    });
    match started {
        Ok(server) => server,
        Err(exited) => panic!(
            "the server refused to start after the crash ({}): {}\nits stderr:\n{}\nfiles:\n{}",
            exited.status,
            exited.stderr.lines().last().unwrap_or_default(),
            tail(&exited.stderr, 20),
            common::describe_dir(data_dir)
        ),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn mode_of(episode_seed: u64, cut: usize) -> CutMode {
    // Alternating, so every episode of two or more cycles meets both modes.
    if episode_seed.wrapping_add(cut as u64) & 1 == 0 {
        CutMode::DropAll
    } else {
        CutMode::KeepSubset
    }
}

/// Which cycle of the episode is under way (for the failure summary).
type Progress = Arc<Mutex<Option<(usize, String)>>>;

fn run_episode(settings: &Settings, seed: u64, progress: &Progress) {
    let mut rng = Rng::new(seed);
    let mount = tempfile::tempdir().unwrap();
    let mut fs = match settings.crash {
        Crash::PowerCut => {
            let fs = PowerCutFs::mount(mount.path()).expect("mount the power-cut file system");
            fs.set_sync_delay(SYNC_DELAY);
            Some(fs)
        }
        Crash::Kill => None,
    };
    let data_dir = mount.path().join("data");
    let mut server = start(&data_dir);

    let mut users = Vec::new();
    let mut ledger = Ledger::default();
    for i in 0..SOCIAL_WRITER_COUNT {
        let email = format!("w{seed:x}-{i}@example.com");
        let body = json!({"email": email, "password": "password123"}).to_string();
        let created = ok_json_status(
            try_call(server.addr, "POST", "/api/v1/users", None, Some(&body)).unwrap(),
            201,
        );
        let login = ok_json_status(
            try_call(server.addr, "POST", "/api/v1/auth/login", None, Some(&body)).unwrap(),
            200,
        );
        let id = created["id"].as_u64().unwrap();
        ledger.users.insert(id, email);
        users.push(User {
            id,
            token: login["access_token"].as_str().unwrap().to_string(),
        });
    }
    let clients: Vec<Client> = (0..WORK_CLIENT_COUNT)
        .map(|i| {
            let body = json!({
                "screen_name": format!("powercut{i}"),
                "external_id": format!("powercut-client-{seed:016x}-{i}"),
            })
            .to_string();
            let registered = ok_json_status(
                try_call(
                    server.addr,
                    "POST",
                    "/api/v1/work/clients",
                    None,
                    Some(&body),
                )
                .unwrap(),
                201,
            );
            Client {
                id: registered["client_id"].as_u64().unwrap(),
                token: registered["token"].as_str().unwrap().to_string(),
            }
        })
        .collect();
    let users = Arc::new(users);
    let clients = Arc::new(clients);
    let ledger = Arc::new(Mutex::new(ledger));

    for cut in 0..settings.cycles_per_episode {
        let mode = mode_of(seed, cut);
        let what = match settings.crash {
            Crash::PowerCut => format!("power cut, {mode}"),
            Crash::Kill => "SIGKILL".to_string(),
        };
        *progress.lock().unwrap() = Some((cut, what));
        let load_ms = LOAD_MS_MIN + rng.below(LOAD_MS_MAX - LOAD_MS_MIN);
        let phase = Arc::new(Phase {
            addr: server.addr,
            ledger: Arc::clone(&ledger),
            stop: AtomicBool::new(false),
            powered_off: AtomicBool::new(false),
            episode_seed: seed,
            cut,
        });
        let mut threads = Vec::new();
        for index in 0..users.len() {
            let (phase, users, thread_seed) = (Arc::clone(&phase), Arc::clone(&users), rng.next());
            threads.push(std::thread::spawn(move || {
                social_writer(&phase, &users[index], thread_seed)
            }));
        }
        for index in 0..clients.len() {
            let (phase, clients, thread_seed) =
                (Arc::clone(&phase), Arc::clone(&clients), rng.next());
            threads.push(std::thread::spawn(move || {
                work_client(&phase, index, &clients[index], thread_seed)
            }));
        }
        {
            let phase = Arc::clone(&phase);
            let first_batch = cut as u64 * 1_000_000;
            threads.push(std::thread::spawn(move || work_admin(&phase, first_batch)));
        }
        // The moment of the crash is the point of the test: a seeded delay, not a wait for a
        // condition. With a power cut the power goes first (nothing the server does after it
        // reaches the disk), then the process.
        std::thread::sleep(Duration::from_millis(load_ms));
        if let Some(fs) = &fs {
            phase.powered_off.store(true, Ordering::SeqCst);
            fs.power_off();
        }
        server.kill();
        phase.stop.store(true, Ordering::Relaxed);
        for thread in threads {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        if let Some(fs) = &mut fs {
            let cut_seed = rng.next();
            let report = fs.cut(cut_seed, mode).expect("cut and remount");
            let files: Vec<String> = report
                .files
                .iter()
                .map(|file| {
                    format!(
                        "{}{}: {} pages dropped, {} kept, size {} -> {}",
                        file.path,
                        if file.survived {
                            ""
                        } else {
                            " (name not durable)"
                        },
                        file.pages_dropped,
                        file.pages_kept,
                        file.size_before,
                        file.size_after
                    )
                })
                .collect();
            eprintln!(
                "episode {seed:#018x} cut {cut} ({mode}, cut seed {cut_seed:#x}) after {load_ms} \
                 ms of load: {} pages dropped, {} kept, {} files resized, {} nodes lost\n  {}",
                report.pages_dropped,
                report.pages_kept,
                report.files_resized,
                report.nodes_lost,
                files.join("\n  ")
            );
        }
        let kept = keep_image(settings.name, &data_dir, seed, cut);
        let started = Instant::now();
        server = start(&data_dir);
        let mut ledger = ledger.lock().unwrap();
        verify(server.addr, &mut ledger, &clients);
        if let Some(kept) = kept {
            let _ = std::fs::remove_dir_all(kept);
        }
        eprintln!(
            "episode {seed:#018x} cycle {cut}: restarted and verified in {} ms: {} users, {} \
             posts, {} like pairs, {} items, {} results",
            started.elapsed().as_millis(),
            ledger.users.len(),
            ledger.posts.len(),
            ledger.likes.len(),
            ledger.items.len(),
            ledger.done.len(),
        );
    }
    server.kill();
    drop(server);
    if let Some(fs) = &fs {
        let stats = fs.stats();
        assert!(stats.file_syncs > 0 && stats.cuts == settings.cycles_per_episode as u64);
    }
    let ledger = ledger.lock().unwrap();
    assert!(
        !ledger.posts.is_empty() && !ledger.done.is_empty(),
        "the load acknowledged too little to test anything: {} posts, {} results",
        ledger.posts.len(),
        ledger.done.len()
    );
}

fn ok_json_status(response: Response, status: u16) -> Value {
    assert_eq!(response.status, status, "{}", response.text());
    response.json()
}

/// With `SWITCHYARD_KEEP_DATA=1`, copies the post-cut image before the restart can change it.
fn keep_image(name: &str, data_dir: &Path, seed: u64, cut: usize) -> Option<PathBuf> {
    if !std::env::var("SWITCHYARD_KEEP_DATA").is_ok_and(|v| v == "1") {
        return None;
    }
    let target = std::env::temp_dir().join(format!("switchyard-{name}-{seed:016x}-cycle{cut}"));
    let _ = std::fs::remove_dir_all(&target);
    common::copy_dir(data_dir, &target).expect("copy the post-cut image");
    Some(target)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Runs the episodes `settings` asks for (see the module docs) and fails with a summary of
/// every failed one.
pub fn run(settings: &Settings) {
    let env = |suffix: &str| std::env::var(format!("{}_{suffix}", settings.env_prefix)).ok();
    let replay = env("SEED").map(|text| {
        let text = text.trim().to_string();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        parsed.unwrap_or_else(|_| panic!("{}_SEED={text:?} is not a u64", settings.env_prefix))
    });
    let episode_count = if replay.is_some() {
        1
    } else if let Some(count) = env("EPISODES") {
        count.parse().expect("the episode count is a number")
    } else if std::env::var("SWITCHYARD_SLOW_TESTS").is_ok_and(|v| v == "1") {
        settings.slow_episodes
    } else {
        settings.ci_episodes
    };
    let base_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!(
        "{}: {episode_count} episodes of {} cycles ({:?}), base seed {base_seed:#x}",
        settings.name, settings.cycles_per_episode, settings.crash
    );
    let mut failures = Vec::new();
    for episode in 0..episode_count {
        let seed =
            replay.unwrap_or_else(|| Rng::new(base_seed.wrapping_add(episode as u64)).next());
        let progress: Progress = Arc::new(Mutex::new(None));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_episode(settings, seed, &progress)
        }));
        if let Err(panic) = outcome {
            let at = match &*progress.lock().unwrap() {
                Some((cycle, what)) => format!("cycle {cycle} ({what})"),
                None => "before the first cycle".to_string(),
            };
            let message = panic_message(panic.as_ref());
            eprintln!("episode {seed:#018x} FAILED at {at}: {message}");
            failures.push(format!(
                "seed {seed:#018x}, {at}: {}",
                message.lines().next().unwrap_or_default()
            ));
        }
    }
    eprintln!(
        "{}: {} of {episode_count} episodes passed ({} cycles in all)",
        settings.name,
        episode_count - failures.len(),
        episode_count * settings.cycles_per_episode
    );
    assert!(
        failures.is_empty(),
        "{} of {episode_count} episodes failed (replay one with {}_SEED=<seed>):\n{}",
        failures.len(),
        settings.env_prefix,
        failures.join("\n")
    );
}
