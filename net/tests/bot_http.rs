//! The bot against the real server over HTTP. Starts the `switchyard` binary with the shared
//! `common::start` (port 0, a temp data dir, cheap argon2, ready before the test goes on), then
//! runs through the bot library:
//! - the simulation (sign-up, posts, likes, with four concurrent tasks), which must end with
//!   exit code 0 and no difference between the bot's ledger and the server after any phase;
//! - a short open-model load with a like/post/read mix (its setup signs up and logs in users
//!   and creates posts), which must be answered in full with 2xx statuses only.
//!
//! The server is SIGKILLed when the test ends, whatever happens.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_bot::cli::builtin_mail_list;
use switchyard_bot::load::{self, LoadOptions, Mix};
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::transport::HttpTransport;
use switchyard_bot::{social, Outcome, SocialOptions, Transport};

/// How long the social routes may take to answer once the server is ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Per-request timeout of the bot.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
    let server = common::start(&dir.path().join("data"), &[]);
    let url = format!("http://{}", server.addr);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let transport = Arc::new(HttpTransport::new(&url, 4, REQUEST_TIMEOUT).unwrap());
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
            url: url.clone(),
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
