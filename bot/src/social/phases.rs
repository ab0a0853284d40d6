//! The three phases and their planner. Every choice (post counts, like budgets, which posts a
//! user picks) is drawn here, on one thread, in a fixed order, from [`Rng`] streams derived from
//! the seed; the planned operations then run on `concurrency` tasks (`run_partitioned`) and
//! their answers are folded into the ledger in plan order.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use super::ledger::{LikeAction, Post, User};
use super::{run_partitioned, Shared, Simulation, Stop};
use crate::error::BotError;
use crate::progress::Progress;
use crate::rng::Rng;
use crate::transport::{NewUser, Session, Transport};

/// Refusals of a sign-up that only mean "use the next address".
const SIGN_UP_SKIP_CODES: [&str; 2] = ["email_taken", "email_undeliverable"];

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
    pub(super) async fn phase_sign_up(&mut self) -> Result<(), Stop> {
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

    pub(super) async fn phase_posts(&mut self) -> Result<(), Stop> {
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

    pub(super) async fn phase_likes(&mut self) -> Result<(), Stop> {
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
}
