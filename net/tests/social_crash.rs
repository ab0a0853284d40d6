//! Crash test of the social workload (STYLE 14): writers create posts and like/unlike against the
//! real `switchyard` binary; the process is killed with SIGKILL at a random moment and restarted
//! on the same data dir. Every acknowledged post must exist with its author and text; every
//! (liker, post) pair must be in the state of its last acknowledged like/unlike (a request in
//! flight at the kill may land either way); and the engine's invariant checker must find nothing.
//! CI runs CYCLE_COUNT cycles; `SWITCHYARD_SLOW_TESTS=1` runs SOAK_CYCLE_COUNT;
//! `SWITCHYARD_KEEP_DATA=1` keeps the data directory.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{try_call, Server, FAST_HASH};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng as _, RngExt, SeedableRng};
use serde_json::{json, Value};

const CYCLE_COUNT: usize = 3;
const SOAK_CYCLE_COUNT: usize = 100;
const WRITER_COUNT: usize = 8;
const KILL_DELAY_MS_MIN: u64 = 150;
const KILL_DELAY_MS_MAX: u64 = 900;
const ADMIN_ARGS: [&str; 2] = ["--admin-token", "admin-secret"];

/// What the writers were told durably, plus what was in flight when the server died.
#[derive(Default)]
struct Ledger {
    /// post id → (author, text).
    posts: HashMap<u64, (u64, String)>,
    /// (liker, post) → liked, per the last acknowledged request.
    likes: HashMap<(u64, u64), bool>,
    /// Pairs whose last request got no answer (may have landed either way).
    uncertain: HashMap<(u64, u64), bool>,
}

struct User {
    id: u64,
    token: String,
}

/// rand's xoshiro256++ (the project's seeded generator), seeded per cycle and writer.
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

fn writer(
    addr: SocketAddr,
    me: Arc<User>,
    ledger: Arc<Mutex<Ledger>>,
    seed: u64,
    stop_at: Instant,
) {
    let mut rng = Rng::new(seed);
    while Instant::now() < stop_at {
        if rng.below(3) == 0 {
            let text = format!("post by {} #{}", me.id, rng.next());
            match try_call(
                addr,
                "POST",
                "/api/v1/posts",
                Some(&me.token),
                Some(&json!({"text": text}).to_string()),
            ) {
                Ok(response) if response.status == 201 => {
                    let id = response.json()["id"].as_u64().unwrap();
                    ledger.lock().unwrap().posts.insert(id, (me.id, text));
                }
                Ok(response) => panic!("create post: {} {}", response.status, response.text()),
                Err(_) => return, // the server died
            }
            continue;
        }
        let target = {
            let ledger = ledger.lock().unwrap();
            let candidates: Vec<u64> = ledger
                .posts
                .iter()
                .filter(|(_, (author, _))| *author != me.id)
                .map(|(id, _)| *id)
                .collect();
            if candidates.is_empty() {
                None
            } else {
                let mut sorted = candidates;
                sorted.sort_unstable();
                Some(sorted[rng.below(sorted.len() as u64) as usize])
            }
        };
        let Some(post) = target else { continue };
        let currently = ledger
            .lock()
            .unwrap()
            .likes
            .get(&(me.id, post))
            .copied()
            .unwrap_or(false);
        let method = if currently { "DELETE" } else { "POST" };
        match try_call(
            addr,
            method,
            &format!("/api/v1/posts/{post}/likes"),
            Some(&me.token),
            None,
        ) {
            Ok(response) if response.status == 201 || response.status == 200 => {
                ledger
                    .lock()
                    .unwrap()
                    .likes
                    .insert((me.id, post), !currently);
            }
            Ok(response) => panic!("{method} like: {} {}", response.status, response.text()),
            Err(_) => {
                ledger
                    .lock()
                    .unwrap()
                    .uncertain
                    .insert((me.id, post), !currently);
                return;
            }
        }
    }
}

fn verify(addr: SocketAddr, ledger: &mut Ledger) {
    for (id, (author, text)) in &ledger.posts {
        let response = try_call(addr, "GET", &format!("/api/v1/posts/{id}"), None, None).unwrap();
        assert_eq!(
            response.status,
            200,
            "acknowledged post {id} is missing: {}",
            response.text()
        );
        let post = response.json();
        assert_eq!(post["author_id"].as_u64(), Some(*author));
        assert_eq!(post["text"].as_str(), Some(text.as_str()));
    }
    let mut by_post: HashMap<u64, Vec<(u64, bool)>> = HashMap::new();
    for ((liker, post), liked) in &ledger.likes {
        by_post.entry(*post).or_default().push((*liker, *liked));
    }
    for (post, expected) in by_post {
        let records = try_call(
            addr,
            "GET",
            &format!("/api/v1/posts/{post}/likes?limit=500"),
            None,
            None,
        )
        .unwrap()
        .json();
        let found: HashMap<u64, bool> = records["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                (
                    item["user_id"].as_u64().unwrap(),
                    item["liked"].as_bool().unwrap(),
                )
            })
            .collect();
        for (liker, liked) in expected {
            if ledger.uncertain.contains_key(&(liker, post)) {
                continue;
            }
            assert_eq!(
                found.get(&liker).copied().unwrap_or(false),
                liked,
                "like of post {post} by user {liker}: acknowledged state lost"
            );
        }
    }
    let check = try_call(
        addr,
        "GET",
        "/api/v1/admin/social/check",
        Some("admin-secret"),
        None,
    )
    .unwrap();
    assert_eq!(check.status, 200, "{}", check.text());
    assert_eq!(
        check.json()["differences"],
        json!([]),
        "invariants broken after restart"
    );
    // Resolve the uncertain pairs to what the server now says, for the next cycle.
    let uncertain: Vec<((u64, u64), bool)> = ledger.uncertain.drain().collect();
    for ((liker, post), _) in uncertain {
        let records = try_call(
            addr,
            "GET",
            &format!("/api/v1/posts/{post}/likes?limit=500"),
            None,
            None,
        )
        .unwrap()
        .json();
        let liked = records["items"].as_array().unwrap().iter().any(|item| {
            item["user_id"].as_u64() == Some(liker) && item["liked"] == Value::Bool(true)
        });
        ledger.likes.insert((liker, post), liked);
    }
}

#[test]
fn acknowledged_posts_and_likes_survive_kill_9() {
    let cycles = if std::env::var("SWITCHYARD_SLOW_TESTS").is_ok_and(|v| v == "1") {
        SOAK_CYCLE_COUNT
    } else {
        CYCLE_COUNT
    };
    let mut dir = tempfile::tempdir().unwrap();
    // `SWITCHYARD_KEEP_DATA=1` keeps the data dir (its path is printed) for a post-mortem.
    if std::env::var("SWITCHYARD_KEEP_DATA").is_ok_and(|v| v == "1") {
        eprintln!("data dir kept: {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    let args: Vec<&str> = FAST_HASH.iter().chain(&ADMIN_ARGS).copied().collect();
    let mut server = Server::start(dir.path(), &args);
    server.wait_ready();
    let users: Vec<Arc<User>> = (0..WRITER_COUNT)
        .map(|i| {
            let email = format!("writer{i}@example.com");
            let body = json!({"email": email, "password": "password123"}).to_string();
            let created =
                try_call(server.addr, "POST", "/api/v1/users", None, Some(&body)).unwrap();
            assert_eq!(created.status, 201, "{}", created.text());
            let login =
                try_call(server.addr, "POST", "/api/v1/auth/login", None, Some(&body)).unwrap();
            Arc::new(User {
                id: created.json()["id"].as_u64().unwrap(),
                token: login.json()["access_token"].as_str().unwrap().to_string(),
            })
        })
        .collect();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Rng::new(0x5eed_0000_0000_0001);
    for cycle in 0..cycles {
        let delay = KILL_DELAY_MS_MIN + rng.below(KILL_DELAY_MS_MAX - KILL_DELAY_MS_MIN);
        let stop_at = Instant::now() + Duration::from_secs(10);
        let threads: Vec<_> = users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let (user, ledger, addr) = (user.clone(), ledger.clone(), server.addr);
                let seed = rng.next() ^ i as u64;
                std::thread::spawn(move || writer(addr, user, ledger, seed, stop_at))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(delay));
        server.kill();
        for thread in threads {
            thread.join().unwrap();
        }
        server = Server::start(dir.path(), &args);
        server.wait_ready();
        let mut ledger = ledger.lock().unwrap();
        verify(server.addr, &mut ledger);
        eprintln!(
            "cycle {cycle}: killed after {delay} ms; {} posts and {} like pairs verified",
            ledger.posts.len(),
            ledger.likes.len()
        );
    }
    assert!(
        !ledger.lock().unwrap().posts.is_empty(),
        "the writers acknowledged nothing"
    );
}
