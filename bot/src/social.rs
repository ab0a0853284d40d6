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
//! Every choice is made by the planner, on one thread, from [`Rng`] streams derived from the
//! seed, in a fixed order (sign-up order; in Phase III, round by round, users in the order
//! above). Operations are named in the op log by bot-side identities (address index `a17`, user
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

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::BotError;
use crate::progress::{Progress, ProgressMode};
use crate::report::{OpLogSummary, Outcome, PhaseReport, Recorder, Report};
use crate::rng::{fnv1a, Rng};
use crate::transport::{NewUser, Session, SocialStats, Transport};

/// Times a request refused with 503 (back-pressure) is sent again before the run gives up.
const OVERLOAD_RETRIES_MAX: u32 = 5;
/// First back-off after a 503; doubles with each retry.
const OVERLOAD_BACKOFF_MS: u64 = 20;
/// Refusals of a sign-up that only mean "use the next address".
const SIGN_UP_SKIP_CODES: [&str; 2] = ["email_taken", "email_undeliverable"];

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
            let started = Instant::now();
            let result = $call.await;
            $shared
                .recorder
                .record($kind, started.elapsed(), result.as_ref().err());
            match result {
                Err(error) if error.is_overloaded() && retries < OVERLOAD_RETRIES_MAX => {
                    tokio::time::sleep(Duration::from_millis(OVERLOAD_BACKOFF_MS << retries)).await;
                    retries += 1;
                }
                other => break other,
            }
        }
    }};
}

/// A simulated user, as the bot knows it.
#[derive(Debug, Clone)]
struct User {
    address_index: usize,
    email: String,
    password: String,
    id: u64,
    session: Option<Session>,
    /// Indices into `Ledger::posts`; contiguous, in creation order.
    posts: Vec<usize>,
    /// Posts this user likes now (indices into `Ledger::posts`).
    likes: BTreeSet<usize>,
    /// Of this user's posts, how many have no liker.
    zero_posts: usize,
    like_budget: u64,
    like_budget_used: u64,
}

#[derive(Debug, Clone)]
struct Post {
    /// Slot of the author in `Ledger::users`.
    author: usize,
    /// 1-based, per author.
    ordinal: usize,
    id: u64,
    /// Slots of the users whose like is on.
    likers: BTreeSet<usize>,
}

/// The bot's own record of what the server should hold for this run.
#[derive(Debug, Clone, Default)]
struct Ledger {
    users: Vec<User>,
    posts: Vec<Post>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LikeAction {
    Like,
    Unlike,
}

impl LikeAction {
    fn kind(self) -> &'static str {
        match self {
            LikeAction::Like => "like",
            LikeAction::Unlike => "unlike",
        }
    }
}

impl Ledger {
    fn user_label(&self, slot: usize) -> String {
        let user = &self.users[slot];
        format!(
            "u{slot} (user {}, a{} {})",
            user.id, user.address_index, user.email
        )
    }

    fn post_label(&self, index: usize) -> String {
        let post = &self.posts[index];
        format!("post {} (u{}#{})", post.id, post.author, post.ordinal)
    }

    /// Applies a like or unlike of `post` by `liker` (planned or confirmed).
    fn apply(&mut self, liker: usize, post: usize, action: LikeAction) {
        let author = self.posts[post].author;
        let likers = &mut self.posts[post].likers;
        let was_zero = likers.is_empty();
        match action {
            LikeAction::Like => {
                assert!(
                    likers.insert(liker),
                    "ledger: u{liker} already likes post {post}"
                );
                assert!(self.users[liker].likes.insert(post));
            }
            LikeAction::Unlike => {
                assert!(
                    likers.remove(&liker),
                    "ledger: u{liker} does not like post {post}"
                );
                assert!(self.users[liker].likes.remove(&post));
            }
        }
        let is_zero = self.posts[post].likers.is_empty();
        let zero_posts = &mut self.users[author].zero_posts;
        match (was_zero, is_zero) {
            (true, false) => *zero_posts -= 1,
            (false, true) => *zero_posts += 1,
            _ => {}
        }
    }

    fn revert(&mut self, liker: usize, post: usize, action: LikeAction) {
        let opposite = match action {
            LikeAction::Like => LikeAction::Unlike,
            LikeAction::Unlike => LikeAction::Like,
        };
        self.apply(liker, post, opposite);
    }

    fn zero_posts_total(&self) -> usize {
        self.users.iter().map(|user| user.zero_posts).sum()
    }

    fn stats(&self) -> SocialStats {
        SocialStats {
            users: self.users.len() as u64,
            posts: self.posts.len() as u64,
            likes: self.posts.iter().map(|post| post.likers.len() as u64).sum(),
            posts_with_zero_likes: self.zero_posts_total() as u64,
        }
    }
}

/// One planned like or unlike.
#[derive(Debug, Clone)]
struct PlannedLike {
    post: usize,
    post_id: u64,
    action: LikeAction,
    /// The post's like count right after this operation, when the interleaving is fixed
    /// (concurrency 1), so the answer can be compared exactly.
    expected_likes: Option<u64>,
}

/// A user's turn in a Phase III round.
#[derive(Debug, Clone)]
struct Turn {
    slot: usize,
    session: Session,
    email: String,
    password: String,
    likes: Vec<PlannedLike>,
}

/// What became of one planned like or unlike.
#[derive(Debug)]
enum LikeResult {
    Done(crate::transport::LikeInfo),
    Refused(BotError),
}

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

/// `ada.adams@example.com` → `Ada Adams`.
fn full_name_of(email: &str) -> String {
    let local = email.split('@').next().unwrap_or(email);
    local
        .split(['.', '_', '-'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The password of the user signed up from address `address_index`: a function of the seed.
pub fn password_for(seed: u64, address_index: usize) -> String {
    let mut rng = Rng::derive(seed, &format!("password/{address_index}"));
    format!("pw-{:016x}", rng.next_u64())
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

    async fn phase_sign_up(&mut self) -> Result<(), Stop> {
        let started = Instant::now();
        let operations_before = self.operations_so_far();
        let wanted = self.options.users;
        let progress = Arc::new(Progress::start(
            "phase I sign-up",
            wanted as u64,
            self.options.progress,
        ));
        let mail_list = self.options.mail_list.clone();
        let mut next_address = 0;
        let mut skipped = 0usize;
        while self.ledger.users.len() < wanted && next_address < mail_list.len() {
            let batch_end = (next_address + wanted - self.ledger.users.len()).min(mail_list.len());
            let batch: Vec<usize> = (next_address..batch_end).collect();
            next_address = batch_end;
            let mut requests = Vec::with_capacity(batch.len());
            for &address_index in &batch {
                let email = mail_list[address_index].clone();
                self.log(format!("sign_up a{address_index} {email}"));
                requests.push(NewUser {
                    full_name: Some(full_name_of(&email)),
                    password: password_for(self.options.seed, address_index),
                    email,
                });
            }
            let progress_in_tasks = progress.clone();
            let results = run_partitioned(
                &self.shared,
                requests,
                self.options.concurrency,
                move |shared, request| {
                    let progress = progress_in_tasks.clone();
                    async move {
                        let result = timed!(shared, "sign_up", shared.transport.sign_up(&request));
                        match result {
                            Ok(user) => {
                                progress.advance(1);
                                Ok(Ok(user))
                            }
                            Err(error) if error.is_refusal() => Ok(Err(error)),
                            Err(error) => Err(error),
                        }
                    }
                },
            )
            .await?;
            for (address_index, result) in batch.into_iter().zip(results) {
                let email = mail_list[address_index].clone();
                match result {
                    Ok(user) => self.ledger.users.push(User {
                        address_index,
                        password: password_for(self.options.seed, address_index),
                        email,
                        id: user.id,
                        session: None,
                        posts: Vec::new(),
                        likes: BTreeSet::new(),
                        zero_posts: 0,
                        like_budget: 0,
                        like_budget_used: 0,
                    }),
                    Err(error) if SIGN_UP_SKIP_CODES.contains(&error.code.as_str()) => {
                        skipped += 1;
                    }
                    Err(error) => {
                        skipped += 1;
                        self.pending.push(format!(
                            "sign-up of a{address_index} {email} refused: {error}"
                        ));
                    }
                }
            }
        }
        let summary = format!(
            "{} users signed up, {skipped} addresses skipped",
            self.ledger.users.len()
        );
        progress.finish(&summary);
        if self.ledger.users.is_empty() {
            return Err(Stop::Failed(BotError::transport(
                "no_users",
                format!("no user could be signed up ({skipped} addresses refused)"),
            )));
        }
        let note = (self.ledger.users.len() < wanted).then(|| {
            format!(
                "the mail list ran out: {} of {wanted} users",
                self.ledger.users.len()
            )
        });
        self.end_phase("phase I", started, operations_before, note)
            .await
    }

    // ---- Phase II ------------------------------------------------------------------------

    async fn phase_posts(&mut self) -> Result<(), Stop> {
        let started = Instant::now();
        let operations_before = self.operations_so_far();
        let mut rng = Rng::derive(self.options.seed, "posts");
        let mut work = Vec::with_capacity(self.ledger.users.len());
        let mut planned_posts = 0u64;
        for slot in 0..self.ledger.users.len() {
            let count = rng.between(1, self.options.max_posts);
            planned_posts += count;
            self.log(format!("login u{slot}"));
            for ordinal in 1..=count {
                self.log(format!("create_post u{slot}#{ordinal}"));
            }
            let user = &self.ledger.users[slot];
            work.push((slot, user.email.clone(), user.password.clone(), count));
        }
        let progress = Arc::new(Progress::start(
            "phase II posts",
            planned_posts + work.len() as u64,
            self.options.progress,
        ));
        let progress_in_tasks = progress.clone();
        let results = run_partitioned(
            &self.shared,
            work,
            self.options.concurrency,
            move |shared, (slot, email, password, count)| {
                let progress = progress_in_tasks.clone();
                async move {
                    let login = timed!(shared, "login", shared.transport.login(&email, &password));
                    progress.advance(1);
                    let session = match login {
                        Ok(session) => session,
                        Err(error) if error.is_refusal() => {
                            progress.advance(count);
                            return Ok((slot, Err(error), Vec::new()));
                        }
                        Err(error) => return Err(error),
                    };
                    let mut posts = Vec::with_capacity(count as usize);
                    for ordinal in 1..=count {
                        let text = format!("Post number {ordinal} of user {}", session.user_id);
                        let result = timed!(
                            shared,
                            "create_post",
                            shared.transport.create_post(&session, &text)
                        );
                        progress.advance(1);
                        match result {
                            Ok(post) => posts.push(Ok(post)),
                            Err(error) if error.is_refusal() => posts.push(Err(error)),
                            Err(error) => return Err(error),
                        }
                    }
                    Ok((slot, Ok(session), posts))
                }
            },
        )
        .await?;
        let mut refused = 0usize;
        for (slot, login, posts) in results {
            let session = match login {
                Ok(session) => session,
                Err(error) => {
                    self.pending.push(format!(
                        "login of {} refused: {error}",
                        self.ledger.user_label(slot)
                    ));
                    continue;
                }
            };
            if session.user_id != self.ledger.users[slot].id {
                self.pending.push(format!(
                    "login of {} answered user id {}",
                    self.ledger.user_label(slot),
                    session.user_id
                ));
            }
            self.ledger.users[slot].session = Some(session);
            let mut ordinal = 0;
            for result in posts {
                match result {
                    Ok(post) => {
                        ordinal += 1;
                        if post.author_id != self.ledger.users[slot].id || post.likes != 0 {
                            self.pending.push(format!(
                                "new post {} of {} answered author {} and {} likes",
                                post.id,
                                self.ledger.user_label(slot),
                                post.author_id,
                                post.likes
                            ));
                        }
                        let index = self.ledger.posts.len();
                        self.ledger.posts.push(Post {
                            author: slot,
                            ordinal,
                            id: post.id,
                            likers: BTreeSet::new(),
                        });
                        let user = &mut self.ledger.users[slot];
                        user.posts.push(index);
                        user.zero_posts += 1;
                    }
                    // The server's own ground rule (limits.max_posts_per_user): the user simply
                    // has fewer posts, as in the original.
                    Err(error) if error.code == "post_limit_reached" => refused += 1,
                    Err(error) => {
                        refused += 1;
                        self.pending.push(format!(
                            "a post of {} was refused: {error}",
                            self.ledger.user_label(slot)
                        ));
                    }
                }
            }
        }
        progress.finish(&format!(
            "{} posts created, {refused} refused",
            self.ledger.posts.len()
        ));
        self.end_phase("phase II", started, operations_before, None)
            .await
    }

    // ---- Phase III -----------------------------------------------------------------------

    /// Users that take part in Phase III, in turn order: descending post count, then slot.
    fn like_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.ledger.users.len())
            .filter(|&slot| {
                let user = &self.ledger.users[slot];
                !user.posts.is_empty() && user.session.is_some()
            })
            .collect();
        order.sort_by_key(|&slot| (std::cmp::Reverse(self.ledger.users[slot].posts.len()), slot));
        order
    }

    /// The zero list of `slot`: every post of every other user with at least one post that
    /// has no like, in post order.
    fn zero_list(&self, slot: usize) -> Vec<usize> {
        let mut list = Vec::new();
        for (author, user) in self.ledger.users.iter().enumerate() {
            if author != slot && user.zero_posts > 0 {
                list.extend_from_slice(&user.posts);
            }
        }
        list
    }

    /// Plans one round: each user in turn order with budget left picks and applies (to the
    /// ledger, as planned) its likes and unlikes. Returns the turns, in order.
    fn plan_round(&mut self, rng: &mut Rng, order: &[usize]) -> Vec<Turn> {
        let exact_counts = self.options.concurrency == 1;
        let mut turns = Vec::new();
        for &slot in order {
            let user = &self.ledger.users[slot];
            let remaining = user.like_budget - user.like_budget_used;
            if remaining == 0 {
                continue;
            }
            let zero_list = self.zero_list(slot);
            if zero_list.is_empty() {
                continue;
            }
            let wanted = rng.between(1, remaining);
            let picked = rng.sample(zero_list, wanted as usize);
            let mut likes = Vec::with_capacity(picked.len());
            for post in picked {
                let action = if self.ledger.posts[post].likers.contains(&slot) {
                    LikeAction::Unlike
                } else {
                    LikeAction::Like
                };
                self.ledger.apply(slot, post, action);
                self.ledger.users[slot].like_budget_used += 1;
                let target = &self.ledger.posts[post];
                let line = format!(
                    "{} u{slot} u{}#{}",
                    action.kind(),
                    target.author,
                    target.ordinal
                );
                likes.push(PlannedLike {
                    post,
                    post_id: target.id,
                    action,
                    expected_likes: exact_counts.then_some(target.likers.len() as u64),
                });
                self.log(line);
            }
            let user = &self.ledger.users[slot];
            turns.push(Turn {
                slot,
                // Invariant: like_order only admits users with a session.
                session: user.session.clone().expect("session of a Phase III user"),
                email: user.email.clone(),
                password: user.password.clone(),
                likes,
            });
        }
        turns
    }

    async fn phase_likes(&mut self) -> Result<(), Stop> {
        let started = Instant::now();
        let operations_before = self.operations_so_far();
        let mut rng = Rng::derive(self.options.seed, "likes");
        let order = self.like_order();
        let mut budget_total = 0;
        for &slot in &order {
            let budget = rng.between(1, self.options.max_likes);
            self.ledger.users[slot].like_budget = budget;
            budget_total += budget;
        }
        let progress = Arc::new(Progress::start(
            "phase III likes",
            budget_total,
            self.options.progress,
        ));
        let mut rounds = 0u64;
        let note = loop {
            if self.ledger.zero_posts_total() == 0 {
                break "no post with zero likes remains";
            }
            if order.iter().all(|&slot| {
                let user = &self.ledger.users[slot];
                user.like_budget_used >= user.like_budget
            }) {
                break "no user has like budget left";
            }
            let turns = self.plan_round(&mut rng, &order);
            if turns.is_empty() {
                break "no user with budget left has a post of another user to like";
            }
            rounds += 1;
            self.run_round(turns, &progress).await?;
            if self.options.check_every_round {
                let differences = self.check(&format!("phase III round {rounds}")).await?;
                self.pending.extend(differences);
                if !self.pending.is_empty() {
                    break "a check after a round found differences";
                }
            }
        };
        let note = format!("{rounds} rounds; stopped: {note}");
        progress.finish(&note);
        self.end_phase("phase III", started, operations_before, Some(note))
            .await
    }

    /// Executes the planned turns, then folds the answers into the ledger: a refused operation
    /// is taken back from the ledger (and, unless it is the server's like limit, reported).
    async fn run_round(&mut self, turns: Vec<Turn>, progress: &Arc<Progress>) -> Result<(), Stop> {
        let plan: Vec<(usize, Vec<PlannedLike>)> = turns
            .iter()
            .map(|turn| (turn.slot, turn.likes.clone()))
            .collect();
        let progress_in_tasks = progress.clone();
        let results = run_partitioned(
            &self.shared,
            turns,
            self.options.concurrency,
            move |shared, turn| {
                let progress = progress_in_tasks.clone();
                async move { execute_turn(&shared, turn, &progress).await }
            },
        )
        .await?;
        for ((slot, likes), (new_session, outcomes)) in plan.into_iter().zip(results) {
            if let Some(session) = new_session {
                self.ledger.users[slot].session = Some(session);
            }
            let user_id = self.ledger.users[slot].id;
            for (planned, outcome) in likes.into_iter().zip(outcomes) {
                let what = format!(
                    "{} of {} by {}",
                    planned.action.kind(),
                    self.ledger.post_label(planned.post),
                    self.ledger.user_label(slot)
                );
                match outcome {
                    LikeResult::Done(answer) => {
                        if answer.post_id != planned.post_id || answer.user_id != user_id {
                            self.pending.push(format!(
                                "{what} answered post {} user {}",
                                answer.post_id, answer.user_id
                            ));
                        }
                        if let Some(expected) = planned.expected_likes {
                            if answer.likes != expected {
                                self.pending.push(format!(
                                    "{what} answered likes {}, the bot expected {expected}",
                                    answer.likes
                                ));
                            }
                        }
                    }
                    LikeResult::Refused(error) => {
                        self.ledger.revert(slot, planned.post, planned.action);
                        if error.code != "like_limit_reached" {
                            self.pending.push(format!("{what} refused: {error}"));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    // ---- The check -----------------------------------------------------------------------

    /// Compares the ledger with the server; returns every difference (empty = agreed).
    async fn check(&mut self, name: &str) -> Result<Vec<String>, Stop> {
        enum Item {
            User {
                label: String,
                id: u64,
                posts_count: u64,
                likes_given: u64,
            },
            Post {
                label: String,
                id: u64,
                author_id: u64,
                likers: Vec<u64>,
            },
        }
        let ledger = &self.ledger;
        let mut items = Vec::with_capacity(ledger.users.len() + ledger.posts.len());
        for (slot, user) in ledger.users.iter().enumerate() {
            items.push(Item::User {
                label: ledger.user_label(slot),
                id: user.id,
                posts_count: user.posts.len() as u64,
                likes_given: user.likes.len() as u64,
            });
        }
        for (index, post) in ledger.posts.iter().enumerate() {
            let mut likers: Vec<u64> = post
                .likers
                .iter()
                .map(|&slot| ledger.users[slot].id)
                .collect();
            likers.sort_unstable();
            items.push(Item::Post {
                label: ledger.post_label(index),
                id: post.id,
                author_id: ledger.users[post.author].id,
                likers,
            });
        }
        let progress = Arc::new(Progress::start(
            &format!("check after {name}"),
            items.len() as u64,
            self.options.progress,
        ));
        let progress_in_tasks = progress.clone();
        let per_item = run_partitioned(
            &self.shared,
            items,
            self.options.concurrency,
            move |shared, item| {
                let progress = progress_in_tasks.clone();
                async move {
                    let mut differences = Vec::new();
                    match item {
                        Item::User {
                            label,
                            id,
                            posts_count,
                            likes_given,
                        } => match timed!(shared, "get_user", shared.transport.user(id)) {
                            Ok(user) => {
                                if user.posts_count != posts_count {
                                    differences.push(format!(
                                        "{label}: posts_count is {}, the bot counts {posts_count}",
                                        user.posts_count
                                    ));
                                }
                                if user.likes_given != likes_given {
                                    differences.push(format!(
                                        "{label}: likes_given is {}, the bot counts {likes_given}",
                                        user.likes_given
                                    ));
                                }
                            }
                            Err(error) if error.is_refusal() => {
                                differences.push(format!("{label}: GET refused: {error}"))
                            }
                            Err(error) => return Err(error),
                        },
                        Item::Post {
                            label,
                            id,
                            author_id,
                            likers,
                        } => {
                            match timed!(shared, "get_post", shared.transport.post(id)) {
                                Ok(post) => {
                                    if post.likes != likers.len() as u64 {
                                        differences.push(format!(
                                            "{label}: likes is {}, the bot counts {}",
                                            post.likes,
                                            likers.len()
                                        ));
                                    }
                                    if post.author_id != author_id {
                                        differences.push(format!(
                                            "{label}: author is user {}, the bot has user {author_id}",
                                            post.author_id
                                        ));
                                    }
                                }
                                Err(error) if error.is_refusal() => {
                                    differences.push(format!("{label}: GET refused: {error}"))
                                }
                                Err(error) => return Err(error),
                            }
                            match timed!(shared, "get_likes", shared.transport.likers(id)) {
                                Ok(mut found) => {
                                    found.sort_unstable();
                                    if found != likers {
                                        differences.push(format!(
                                            "{label}: likers are {found:?}, the bot has {likers:?}"
                                        ));
                                    }
                                }
                                Err(error) if error.is_refusal() => differences
                                    .push(format!("{label}: GET likes refused: {error}")),
                                Err(error) => return Err(error),
                            }
                        }
                    }
                    progress.advance(1);
                    Ok(differences)
                }
            },
        )
        .await?;
        let mut differences: Vec<String> = per_item.into_iter().flatten().collect();
        let found = timed!(self.shared, "get_stats", self.shared.transport.stats())?;
        let ours = self.ledger.stats();
        let base = self.baseline;
        let expected = SocialStats {
            users: base.users + ours.users,
            posts: base.posts + ours.posts,
            likes: base.likes + ours.likes,
            posts_with_zero_likes: base.posts_with_zero_likes + ours.posts_with_zero_likes,
        };
        let fields = [
            ("users", found.users, expected.users),
            ("posts", found.posts, expected.posts),
            ("likes", found.likes, expected.likes),
            (
                "posts_with_zero_likes",
                found.posts_with_zero_likes,
                expected.posts_with_zero_likes,
            ),
        ];
        for (field, found, expected) in fields {
            if found != expected {
                differences.push(format!(
                    "stats {field} is {found}, the bot expects {expected} (before the run + this run)"
                ));
            }
        }
        let started = Instant::now();
        let engine_check = self.shared.transport.self_check().await;
        // Only a transport that can reach the engine's check (embedded) counts it as an operation.
        if !matches!(engine_check, Ok(None)) {
            self.shared.recorder.record(
                "self_check",
                started.elapsed(),
                engine_check.as_ref().err(),
            );
        }
        if let Some(engine_differences) = engine_check? {
            differences.extend(
                engine_differences
                    .into_iter()
                    .map(|difference| format!("engine check: {difference}")),
            );
        }
        progress.finish(&format!("{} differences", differences.len()));
        Ok(differences)
    }
}

/// Runs one user's planned likes and unlikes in order. A 401 (an expired token) logs the user
/// in again once and repeats the operation. Returns the new session, if any, and one result
/// per planned operation; a fatal error stops the turn (and the run).
async fn execute_turn<T: Transport>(
    shared: &Arc<Shared<T>>,
    turn: Turn,
    progress: &Progress,
) -> Result<(Option<Session>, Vec<LikeResult>), BotError> {
    let mut session = turn.session;
    let mut new_session = None;
    let mut outcomes = Vec::with_capacity(turn.likes.len());
    for planned in &turn.likes {
        let mut relogged = false;
        let result = loop {
            let result = match planned.action {
                LikeAction::Like => {
                    timed!(
                        shared,
                        "like",
                        shared.transport.like(&session, planned.post_id)
                    )
                }
                LikeAction::Unlike => {
                    timed!(
                        shared,
                        "unlike",
                        shared.transport.unlike(&session, planned.post_id)
                    )
                }
            };
            match result {
                Err(error) if error.status == Some(401) && !relogged => {
                    relogged = true;
                    let fresh = timed!(
                        shared,
                        "login",
                        shared.transport.login(&turn.email, &turn.password)
                    );
                    match fresh {
                        Ok(fresh) => {
                            session = fresh.clone();
                            new_session = Some(fresh);
                        }
                        Err(error) if error.is_refusal() => break Err(error),
                        Err(error) => return Err(error),
                    }
                }
                other => break other,
            }
        };
        progress.advance(1);
        outcomes.push(match result {
            Ok(answer) => LikeResult::Done(answer),
            Err(error) if error.is_refusal() => LikeResult::Refused(error),
            Err(error) => return Err(error),
        });
    }
    Ok((new_session, outcomes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_are_derived() {
        assert_eq!(full_name_of("ada.adams@example.com"), "Ada Adams");
        assert_eq!(password_for(1, 0), password_for(1, 0));
        assert_ne!(password_for(1, 0), password_for(1, 1));
        assert!(password_for(1, 0).len() >= 8);
    }

    fn ledger_with(users: usize, posts_per_user: usize) -> Ledger {
        let mut ledger = Ledger::default();
        for slot in 0..users {
            let mut user = User {
                address_index: slot,
                email: format!("u{slot}@example.com"),
                password: String::new(),
                id: slot as u64 + 1,
                session: None,
                posts: Vec::new(),
                likes: BTreeSet::new(),
                zero_posts: 0,
                like_budget: 0,
                like_budget_used: 0,
            };
            for ordinal in 1..=posts_per_user {
                user.posts.push(ledger.posts.len());
                user.zero_posts += 1;
                ledger.posts.push(Post {
                    author: slot,
                    ordinal,
                    id: ledger.posts.len() as u64 + 100,
                    likers: BTreeSet::new(),
                });
            }
            ledger.users.push(user);
        }
        ledger
    }

    #[test]
    fn unlike_removes_the_liker_itself_and_zero_counts_follow() {
        let mut ledger = ledger_with(3, 1);
        assert_eq!(ledger.zero_posts_total(), 3);
        ledger.apply(1, 0, LikeAction::Like);
        ledger.apply(2, 0, LikeAction::Like);
        assert_eq!(ledger.zero_posts_total(), 2);
        // The original popped the *first* liker (u1); the liker that unlikes is u2.
        ledger.apply(2, 0, LikeAction::Unlike);
        assert_eq!(
            ledger.posts[0].likers.iter().copied().collect::<Vec<_>>(),
            vec![1]
        );
        assert!(ledger.users[2].likes.is_empty());
        ledger.revert(1, 0, LikeAction::Like);
        assert_eq!(ledger.zero_posts_total(), 3);
        assert_eq!(ledger.stats().likes, 0);
    }
}
