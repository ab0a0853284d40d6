//! The bot against the real server over HTTP. Starts the `switchyard` binary on port 0 with a
//! temp data dir (the address is read from its stdout line `switchyard listening on http://ADDR`),
//! waits until the social routes answer, then runs through the bot library:
//! - the simulation (sign-up, posts, likes, with four concurrent tasks), which must end with
//!   exit code 0 and no difference between the bot's ledger and the server after any phase;
//! - a short open-model load with a like/post/read mix (its setup signs up and logs in users
//!   and creates posts), which must be answered in full with 2xx statuses only.
//!
//! Sizes are small because every sign-up and login costs an argon2 hash at the server's default
//! cost (the server has no configuration key to lower it), about half a second in a debug build.
//! The server is SIGKILLed when the test ends, whatever happens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_bot::cli::builtin_mail_list;
use switchyard_bot::load::{self, LoadOptions, Mix};
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::transport::HttpTransport;
use switchyard_bot::{social, Outcome, SocialOptions, Transport};

/// How long the server may take to print its address and to answer the social routes.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Per-request timeout of the bot.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The server process; killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(data_dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        // Cheap argon2: the test is about the bot and the API, not about hashing cost.
        .args(["--set", "auth.password_hash_memory_kib=64"])
        .args(["--set", "auth.password_hash_iterations=1"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the switchyard binary");
    let stdout = child.stdout.take().expect("piped stdout");
    // Read the listening line on a thread so a server that never prints cannot hang the test.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(url) = line.strip_prefix("switchyard listening on ") {
                let _ = sender.send(url.trim().to_string());
            }
        }
    });
    let url = match receiver.recv_timeout(START_TIMEOUT) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            panic!("the server printed no `switchyard listening on` line");
        }
    };
    Server { child, url }
}

/// Waits until `GET /api/v1/stats/social` answers (the engine has opened).
async fn wait_ready(transport: &HttpTransport) {
    let started = Instant::now();
    loop {
        match transport.stats().await {
            Ok(_) => return,
            Err(error) if started.elapsed() < START_TIMEOUT && error.status != Some(404) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the server does not answer the social stats route: {error}"),
        }
    }
}

#[test]
fn the_simulation_and_a_load_run_pass_against_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("data"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let transport = Arc::new(HttpTransport::new(&server.url, 4, REQUEST_TIMEOUT).unwrap());
        wait_ready(&transport).await;

        let options = SocialOptions {
            seed: 2024,
            users: 8,
            max_posts: 3,
            max_likes: 4,
            concurrency: 4,
            mail_list: Arc::new(builtin_mail_list()),
            check_every_round: true,
            progress: ProgressMode::Off,
        };
        let run = social::run(transport, options).await;
        let report = &run.report;
        assert_eq!(run.outcome(), Outcome::Finished, "{}", report.render_text());
        assert_eq!(report.exit_code, 0);
        assert!(report.differences.is_empty());
        assert_eq!(report.phases.len(), 3);
        let ledger = report.ledger.expect("ledger");
        assert_eq!(ledger.users, 8);
        assert!(ledger.likes > 0, "{}", report.render_text());
        assert_eq!(report.errors_total, 0, "{}", report.render_text());

        let load = load::run(LoadOptions {
            url: server.url.clone(),
            seed: 7,
            rate: 200.0,
            duration: Duration::from_secs(1),
            connections: 2,
            pipeline: 1,
            threads: 2,
            mix: Mix::parse("like=60,post=20,read=10,health=10").unwrap(),
            setup_users: 2,
            setup_posts: 2,
            timeout: REQUEST_TIMEOUT,
            progress: ProgressMode::Off,
        })
        .await;
        assert_eq!(load.outcome, Outcome::Finished, "{}", load.render_text());
        let figures = load.load.as_ref().expect("load figures");
        assert_eq!(figures.scheduled, 200);
        assert_eq!(figures.completed, 200, "{}", load.render_text());
        assert_eq!(load.errors_total, 0, "{}", load.render_text());
        assert_eq!(figures.setup_users, 2);
        assert_eq!(figures.setup_posts, 4);
    });
}
