//! The simulation (`switchyard-bot social`): simulated users sign up, post and like, and after
//! each phase the bot checks its own ledger against the server.
//!
//! # Phases (the original bot's flow, ORIGINALS.md §1, with its bugs fixed)
//! - **I, sign-up.** Addresses are taken from the mail list in order, until `users` users exist.
//!   An address the server refuses as taken or undeliverable is skipped (so a re-run against the
//!   same server moves on to fresh addresses); the password is derived from the seed and the
//!   address's position.
//! - **II, posts.** Each user logs in, draws a post count in `1..=max_posts` and creates that
//!   many posts (`"Post number {n} of user {id}"`). A user whose posts all failed takes no part
//!   in Phase III (the original removed such users with a counter that accumulated across users;
//!   here each user's own posts decide).
//! - **III, likes, in rounds.** Each user with posts draws a like budget in `1..=max_likes`.
//!   A round walks the users in descending order of post count (ties by sign-up order); a user
//!   with budget left builds its *zero list* — every post of every *other* user that has at
//!   least one post with zero likes — draws `1..=remaining budget` and picks that many distinct
//!   posts from it uniformly (index 0 included, unlike the original), then likes each picked post
//!   it does not like yet and unlikes each it does (removing *itself* from the post's likers; the
//!   original popped the first liker). Every like and unlike uses one unit of budget, failed or
//!   not, so the run always ends. Phase III stops when no post with zero likes remains, when no
//!   user has budget left, or when no user with budget has a post of another user to pick.
//!
//! # Determinism and concurrency
//! Every choice is made by the planner, on one thread, from [`Rng`](crate::rng::Rng) streams
//! derived from the seed, in a fixed order (sign-up order; in Phase III, round by round, users
//! in the order above). Operations are named in the op log by bot-side identities (address index `a17`, user
//! slot `u3`, post `u3#2`), not by server ids, so the log is the same whatever ids the server
//! hands out. With `--concurrency N` the planned operations of a phase or round are executed by N
//! tokio tasks, user `k` of the round on task `k mod N`, each task in plan order: a user's own
//! sequence never changes, only how different users interleave. Within a round every (liker,
//! post) pair occurs at most once and all of a liker's operations run on one task, so no two
//! tasks ever race on the same pair, the operations of a round commute, and the ledger after the
//! round is exact whatever the interleaving. (Only the `likes` count that a like answers with
//! depends on the interleaving; it is compared exactly when `concurrency` is 1.)
//!
//! # Checks
//! After each phase (and each Phase III round with `check_every_round`): every user's
//! `posts_count` and `likes_given`, every post's `likes`, author and likers (the `liked = true`
//! records), the stats endpoint against the stats read before the run plus the bot's own
//! changes, and, for the embedded engine, the engine's own invariant check. Operations the server
//! refuses although the ledger says they are valid (`409 already_liked` on a post the bot has not
//! liked) are differences too. Any difference ends the run with [`Outcome::Mismatch`].
//!
//! # Layout
//! - `mod.rs` (this file): [`run`], the options, what the tasks share, the timed and retried
//!   call (`timed!`), running a phase's operations on N tasks (`run_partitioned`), and the end
//!   of a phase (its report line, then the check).
//! - `ledger`: the bot's record of users, posts and likes; what the server should hold.
//! - `phases`: the planner and the three phases (sign-up, posts, like rounds).
//! - `check`: the comparison of the ledger with the server.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::BotError;
use crate::progress::ProgressMode;
use crate::report::{OpLogSummary, Outcome, PhaseReport, Recorder, Report};
use crate::rng::fnv1a;
use crate::transport::{SocialStats, Transport};

/// Times a request refused with 503 (back-pressure) is sent again before the run gives up.
const OVERLOAD_RETRIES_MAX: u32 = 5;

/// First back-off after a 503; doubles with each retry.
const OVERLOAD_BACKOFF_MS: u64 = 20;

/// What the simulation is asked to do.
#[derive(Debug, Clone)]
pub struct SocialOptions {
    pub seed: u64,
    /// Users to sign up (Phase I stops earlier if the mail list runs out).
    pub users: usize,
    /// Each user creates `1..=max_posts` posts.
    pub max_posts: u64,
    /// Each user's like budget is drawn from `1..=max_likes`.
    pub max_likes: u64,
    /// Users run on this many tokio tasks.
    pub concurrency: usize,
    /// The addresses Phase I signs up, in order.
    pub mail_list: Arc<Vec<String>>,
    /// Also check after every Phase III round (costs one full check per round).
    pub check_every_round: bool,
    pub progress: ProgressMode,
}

/// A finished (or stopped) run: its report and the whole operation log.
#[derive(Debug, Clone)]
pub struct SocialRun {
    pub report: Report,
    pub op_log: Vec<String>,
}

impl SocialRun {
    pub fn outcome(&self) -> Outcome {
        self.report.outcome
    }
}

/// Runs the three phases against `transport` and returns the report. Never panics on a server
/// error: an unusable answer ends the run with [`Outcome::Error`], a disagreement with
/// [`Outcome::Mismatch`].
pub async fn run<T: Transport>(transport: Arc<T>, options: SocialOptions) -> SocialRun {
    assert!(options.concurrency >= 1, "concurrency must be at least 1");
    let started = Instant::now();
    let shared = Arc::new(Shared {
        transport,
        recorder: Recorder::default(),
        abort: AtomicBool::new(false),
    });
    let mut simulation = Simulation {
        report: Report::new("social", shared.transport.name(), options.seed),
        shared,
        options,
        ledger: Ledger::default(),
        baseline: SocialStats::default(),
        op_log: Vec::new(),
        pending: Vec::new(),
    };
    let outcome = match simulation.phases().await {
        Ok(()) => Outcome::Finished,
        Err(Stop::Mismatch) => Outcome::Mismatch,
        Err(Stop::Failed(error)) => {
            simulation.report.failure = Some(error.to_string());
            Outcome::Error
        }
    };
    simulation.finish(outcome, started.elapsed())
}

/// Why the phases stopped early.
enum Stop {
    /// A check found differences (already in the report).
    Mismatch,
    /// A request failed in a way the ledger cannot absorb.
    Failed(BotError),
}

impl From<BotError> for Stop {
    fn from(error: BotError) -> Self {
        Stop::Failed(error)
    }
}

/// What the tasks of a run share.
struct Shared<T> {
    transport: Arc<T>,
    recorder: Recorder,
    /// Set on the first fatal error so the other tasks stop at their next operation.
    abort: AtomicBool,
}

/// Sends one transport call, timing it into the recorder and retrying on back-pressure.
macro_rules! timed {
    ($shared:expr, $kind:expr, $call:expr) => {{
        let mut retries = 0u32;
        loop {
            let started = ::std::time::Instant::now();
            let result = $call.await;
            $shared
                .recorder
                .record($kind, started.elapsed(), result.as_ref().err());
            match result {
                Err(error)
                    if error.is_overloaded() && retries < $crate::social::OVERLOAD_RETRIES_MAX =>
                {
                    tokio::time::sleep(::std::time::Duration::from_millis(
                        $crate::social::OVERLOAD_BACKOFF_MS << retries,
                    ))
                    .await;
                    retries += 1;
                }
                other => break other,
            }
        }
    }};
}

// After the macro: a `macro_rules!` is visible only below its definition.
mod check;
mod ledger;
mod phases;

pub use phases::password_for;

use ledger::Ledger;

struct Simulation<T> {
    shared: Arc<Shared<T>>,
    options: SocialOptions,
    ledger: Ledger,
    /// Server stats before the run; the check expects these plus the ledger.
    baseline: SocialStats,
    op_log: Vec<String>,
    /// Differences found while operating, reported with the next check.
    pending: Vec<String>,
    report: Report,
}

/// Runs `work` on every item, spread over `tasks` tokio tasks (item `k` on task `k mod tasks`,
/// each task in item order), and returns the results in item order. `work` returning `Err`
/// is fatal: the other tasks stop before their next item and the first such error (in item
/// order) is returned.
async fn run_partitioned<T, I, R, F, Fut>(
    shared: &Arc<Shared<T>>,
    items: Vec<I>,
    tasks: usize,
    work: F,
) -> Result<Vec<R>, BotError>
where
    T: Transport,
    I: Send + 'static,
    R: Send + 'static,
    F: Fn(Arc<Shared<T>>, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, BotError>> + Send,
{
    let count = items.len();
    let tasks = tasks.clamp(1, count.max(1));
    let mut lanes: Vec<Vec<(usize, I)>> = (0..tasks).map(|_| Vec::new()).collect();
    for (index, item) in items.into_iter().enumerate() {
        lanes[index % tasks].push((index, item));
    }
    let work = Arc::new(work);
    let mut handles = Vec::with_capacity(tasks);
    for lane in lanes {
        let shared = shared.clone();
        let work = work.clone();
        handles.push(tokio::spawn(async move {
            let mut done = Vec::with_capacity(lane.len());
            for (index, item) in lane {
                if shared.abort.load(Ordering::Acquire) {
                    break;
                }
                let result = work(shared.clone(), item).await;
                if result.is_err() {
                    shared.abort.store(true, Ordering::Release);
                }
                let failed = result.is_err();
                done.push((index, result));
                if failed {
                    break;
                }
            }
            done
        }));
    }
    let mut slots: Vec<Option<Result<R, BotError>>> = (0..count).map(|_| None).collect();
    for handle in handles {
        let done = handle
            .await
            .map_err(|error| BotError::transport("join", format!("task failed: {error}")))?;
        for (index, result) in done {
            slots[index] = Some(result);
        }
    }
    let mut results = Vec::with_capacity(count);
    let mut first_error = None;
    for slot in slots {
        match slot {
            Some(Ok(result)) => results.push(result),
            Some(Err(error)) => {
                first_error.get_or_insert(error);
            }
            None => {}
        }
    }
    match first_error {
        Some(error) => Err(error),
        None if shared.abort.load(Ordering::Acquire) => Err(BotError::transport(
            "aborted",
            "stopped after a fatal error in another task",
        )),
        None => Ok(results),
    }
}

impl<T: Transport> Simulation<T> {
    async fn phases(&mut self) -> Result<(), Stop> {
        self.baseline = timed!(self.shared, "get_stats", self.shared.transport.stats())?;
        self.phase_sign_up().await?;
        self.phase_posts().await?;
        self.phase_likes().await
    }

    fn log(&mut self, line: String) {
        self.op_log.push(line);
    }

    fn finish(mut self, outcome: Outcome, elapsed: Duration) -> SocialRun {
        let tally = self.shared.recorder.snapshot();
        tally.fill(&mut self.report, elapsed);
        self.report.set_outcome(outcome);
        self.report.ledger = Some(self.ledger.stats());
        self.report.op_log = OpLogSummary {
            count: self.op_log.len() as u64,
            hash: format!("{:016x}", fnv1a(self.op_log.join("\n").as_bytes())),
        };
        SocialRun {
            report: self.report,
            op_log: self.op_log,
        }
    }

    fn operations_so_far(&self) -> u64 {
        self.shared.recorder.snapshot().operations_total()
    }

    /// Records a phase, then checks the ledger against the server. `Err(Stop::Mismatch)` when
    /// anything differs.
    async fn end_phase(
        &mut self,
        name: &str,
        started: Instant,
        operations_before: u64,
        note: Option<String>,
    ) -> Result<(), Stop> {
        let operations = self.operations_so_far() - operations_before;
        let elapsed_seconds = started.elapsed().as_secs_f64();
        let mut differences = std::mem::take(&mut self.pending);
        differences.extend(self.check(name).await?);
        self.report.phases.push(PhaseReport {
            name: name.to_string(),
            operations,
            elapsed_seconds: (elapsed_seconds * 1000.0).round() / 1000.0,
            differences: differences.len(),
            note,
        });
        if differences.is_empty() {
            return Ok(());
        }
        self.report.differences.extend(
            differences
                .into_iter()
                .map(|difference| format!("after {name}: {difference}")),
        );
        Err(Stop::Mismatch)
    }

    // ---- Phase I -------------------------------------------------------------------------
}
