//! The social workload against a model: random operations (proptest) run on the embedded engine
//! and on a plain in-memory reference built from `BTreeMap`s, and every reply is compared with
//! what the model predicts: sign-ups (duplicate and differently cased addresses, invalid ones),
//! logins, posts (invalid texts, unknown authors), likes and unlikes (own post, double like,
//! not liked, unknown post), reads of users, posts and like records by keyset pages, stats and
//! the engine's invariant checker. `Restart` is one of the operations: the engine is dropped
//! (after a clean shutdown, or without one, as a crash leaves it) and opened again on the same
//! directory and clock, and then the whole state is compared with the model.
//!
//! Time comes from a `ManualClock` that only `Advance` moves, so every timestamp is predicted.
//! Post ids are the engine's to choose (allocated before the author decides, so a refused post
//! leaves a gap); the model checks that each new one is above every id it has seen.
//!
//! CI runs `CASES` cases of up to `OPS_MAX` operations; `SWITCHYARD_SLOW_TESTS=1` runs
//! `SLOW_CASES` of up to `SLOW_OPS_MAX`. A failure prints the shrunk operation list, and proptest
//! keeps its seed in `social_model.proptest-regressions` so the case runs again first.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use switchyard_engine::social::{LikeOutcome, LikeView, PostView, SignUp, SocialStats, UserView};
use switchyard_engine::{Engine, EngineConfig, Error, ManualClock, Page};

const CASES: u32 = 32;
const OPS_MAX: usize = 100;
const SLOW_CASES: u32 = 400;
const SLOW_OPS_MAX: usize = 200;
/// 2026-11-22T14:00:00Z.
const START_MS: u64 = 1_795_356_000_000;
/// Addresses sign-ups draw from (so duplicates are frequent).
const ADDRESSES: usize = 6;
/// A user id or post id no one has.
const UNKNOWN_ID: u64 = 999_999;

fn slow() -> bool {
    std::env::var("SWITCHYARD_SLOW_TESTS").is_ok_and(|value| value == "1")
}

// ---- Operations ----------------------------------------------------------------------------

/// Users and posts are named by position among those the model knows (taken modulo the count,
/// with one extra position standing for an id no one has), so every generated list is valid
/// whatever came before it, and shrinking keeps it meaningful.
#[derive(Debug, Clone)]
enum Op {
    /// Signs up address `address` (its case flipped when `shout`), or a refused variant.
    SignUp {
        address: usize,
        shout: bool,
        flaw: Flaw,
    },
    Login {
        user: usize,
        right_password: bool,
    },
    CreatePost {
        author: usize,
        blank: bool,
    },
    Like {
        user: usize,
        post: usize,
    },
    Unlike {
        user: usize,
        post: usize,
    },
    GetUser {
        user: usize,
    },
    GetPost {
        post: usize,
    },
    Users {
        after: Option<usize>,
        limit: usize,
    },
    Posts {
        author: Option<usize>,
        zero_likes: bool,
        after: Option<usize>,
        limit: usize,
    },
    Likes {
        post: usize,
        after: Option<usize>,
        limit: usize,
    },
    Stats,
    Check,
    Advance {
        ms: u64,
    },
    /// Drops the engine and opens it again: after `shutdown`, or without (a crash).
    Restart {
        crash: bool,
    },
}

/// What is wrong with a sign-up, if anything.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    None,
    InvalidEmail,
    Disposable,
    WeakPassword,
}

fn op() -> impl Strategy<Value = Op> {
    // Few positions, so the same users and posts meet often (double likes, re-likes).
    let index = 0..4usize;
    let limit = 1..4usize;
    prop_oneof![
        4 => (0..ADDRESSES, any::<bool>(), prop_oneof![
            8 => Just(Flaw::None),
            1 => Just(Flaw::InvalidEmail),
            1 => Just(Flaw::Disposable),
            1 => Just(Flaw::WeakPassword),
        ])
            .prop_map(|(address, shout, flaw)| Op::SignUp { address, shout, flaw }),
        1 => (index.clone(), any::<bool>())
            .prop_map(|(user, right_password)| Op::Login { user, right_password }),
        4 => (index.clone(), prop::bool::weighted(0.1))
            .prop_map(|(author, blank)| Op::CreatePost { author, blank }),
        6 => (index.clone(), index.clone()).prop_map(|(user, post)| Op::Like { user, post }),
        3 => (index.clone(), index.clone()).prop_map(|(user, post)| Op::Unlike { user, post }),
        1 => index.clone().prop_map(|user| Op::GetUser { user }),
        1 => index.clone().prop_map(|post| Op::GetPost { post }),
        1 => (prop::option::of(index.clone()), limit.clone())
            .prop_map(|(after, limit)| Op::Users { after, limit }),
        2 => (
            prop::option::of(index.clone()),
            any::<bool>(),
            prop::option::of(index.clone()),
            limit.clone()
        )
            .prop_map(|(author, zero_likes, after, limit)| Op::Posts {
                author,
                zero_likes,
                after,
                limit
            }),
        1 => (index.clone(), prop::option::of(index), limit)
            .prop_map(|(post, after, limit)| Op::Likes { post, after, limit }),
        1 => Just(Op::Stats),
        1 => Just(Op::Check),
        1 => (1..5_000u64).prop_map(|ms| Op::Advance { ms }),
        1 => any::<bool>().prop_map(|crash| Op::Restart { crash }),
    ]
}

// ---- The model -----------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct ModelUser {
    email: String,
    password: String,
    full_name: Option<String>,
    created_at_ms: u64,
}

#[derive(Debug, Clone)]
struct ModelPost {
    author_id: u64,
    text: String,
    created_at_ms: u64,
}

/// What the engine should hold, in plain maps.
#[derive(Debug, Default)]
struct Model {
    now_ms: u64,
    users: BTreeMap<u64, ModelUser>,
    /// Lower-cased e-mail → user id.
    emails: BTreeMap<String, u64>,
    posts: BTreeMap<u64, ModelPost>,
    /// (post, user) → its like record.
    likes: BTreeMap<(u64, u64), LikeView>,
}

impl Model {
    fn user_id(&self, position: usize) -> u64 {
        pick(self.users.keys(), position)
    }

    fn post_id(&self, position: usize) -> u64 {
        pick(self.posts.keys(), position)
    }

    fn likes_of(&self, post_id: u64) -> u64 {
        self.likes
            .range((post_id, 0)..=(post_id, u64::MAX))
            .filter(|(_, record)| record.liked)
            .count() as u64
    }

    fn user_view(&self, user_id: u64) -> Option<UserView> {
        let user = self.users.get(&user_id)?;
        Some(UserView {
            id: user_id,
            email: user.email.clone(),
            full_name: user.full_name.clone(),
            posts_count: self
                .posts
                .values()
                .filter(|post| post.author_id == user_id)
                .count() as u64,
            likes_given: self
                .likes
                .iter()
                .filter(|((_, liker), record)| *liker == user_id && record.liked)
                .count() as u64,
            created_at_ms: user.created_at_ms,
            enrichment: None,
        })
    }

    fn post_view(&self, post_id: u64) -> Option<PostView> {
        let post = self.posts.get(&post_id)?;
        Some(PostView {
            id: post_id,
            author_id: post.author_id,
            text: post.text.clone(),
            likes: self.likes_of(post_id),
            created_at_ms: post.created_at_ms,
        })
    }

    fn stats(&self) -> SocialStats {
        SocialStats {
            users: self.users.len() as u64,
            posts: self.posts.len() as u64,
            likes: self.likes.values().filter(|record| record.liked).count() as u64,
            posts_with_zero_likes: self
                .posts
                .keys()
                .filter(|post_id| self.likes_of(**post_id) == 0)
                .count() as u64,
        }
    }

    fn users_page(&self, after: Option<u64>, limit: usize) -> Page<UserView> {
        page(
            self.users
                .keys()
                .filter_map(|id| self.user_view(*id))
                .map(|view| (view.id, view)),
            after,
            limit,
        )
    }

    fn posts_page(
        &self,
        author: Option<u64>,
        zero_likes: bool,
        after: Option<u64>,
        limit: usize,
    ) -> Page<PostView> {
        page(
            self.posts
                .iter()
                .filter(|(_, post)| author.is_none_or(|author| post.author_id == author))
                .filter(|(post_id, _)| !zero_likes || self.likes_of(**post_id) == 0)
                .filter_map(|(post_id, _)| self.post_view(*post_id))
                .map(|view| (view.id, view)),
            after,
            limit,
        )
    }

    fn likes_page(&self, post_id: u64, after: Option<u64>, limit: usize) -> Page<LikeView> {
        page(
            self.likes
                .range((post_id, 0)..=(post_id, u64::MAX))
                .map(|((_, user_id), record)| (*user_id, *record)),
            after,
            limit,
        )
    }
}

/// The id at `position` of `ids` (modulo one more than their count); the extra position is an
/// id no one has.
fn pick<'a>(ids: impl ExactSizeIterator<Item = &'a u64>, position: usize) -> u64 {
    let count = ids.len();
    let position = position % (count + 1);
    ids.copied().nth(position).unwrap_or(UNKNOWN_ID)
}

/// A keyset page: the entries with a key above `after`, at most `limit`, and the key to continue
/// after when more remain.
fn page<T>(entries: impl Iterator<Item = (u64, T)>, after: Option<u64>, limit: usize) -> Page<T> {
    let mut entries = entries.filter(|(key, _)| after.is_none_or(|after| *key > after));
    let mut items = Vec::new();
    let mut last = None;
    for (key, item) in entries.by_ref().take(limit) {
        items.push(item);
        last = Some(key);
    }
    let next = if entries.next().is_some() { last } else { None };
    Page { items, next }
}

fn address(index: usize, shout: bool) -> String {
    let address = format!("model.user{index}@example.com");
    if shout {
        address.to_uppercase()
    } else {
        address
    }
}

fn password(index: usize) -> String {
    format!("password of user {index}")
}

/// The API.md code of an error, or its kind for the few that have none.
fn code(error: &Error) -> String {
    match error {
        Error::Invalid { code, .. }
        | Error::Conflict { code, .. }
        | Error::Forbidden { code, .. }
        | Error::Unprocessable { code, .. }
        | Error::Unauthenticated { code, .. } => (*code).to_string(),
        Error::NotFound(what) => format!("not_found {what}"),
        other => format!("unexpected {other:?}"),
    }
}

/// Compares a reply with the model's prediction: `Ok(value)` or the error code.
fn expect<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: Result<T, Error>,
    expected: Result<T, &str>,
) -> Result<(), String> {
    match (got, expected) {
        (Ok(got), Ok(expected)) if got == expected => Ok(()),
        (Err(error), Err(expected)) if code(&error) == expected => Ok(()),
        (got, expected) => Err(format!(
            "{what}: the engine answered {:?}, the model expects {expected:?}",
            got.map_err(|error| code(&error))
        )),
    }
}

// ---- The run -------------------------------------------------------------------------------

struct Run {
    // Fields drop in declaration order: the engine closes before its directory is deleted.
    engine: Option<Engine>,
    config: EngineConfig,
    clock: ManualClock,
    model: Model,
    dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = EngineConfig::for_tests(dir.path());
        let clock = ManualClock::new(START_MS);
        let engine = Engine::open_with_clock(config.clone(), Arc::new(clock.clone()))
            .expect("the engine opens");
        Run {
            dir,
            config,
            clock,
            engine: Some(engine),
            model: Model {
                now_ms: START_MS,
                ..Model::default()
            },
        }
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("the engine is open")
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        let social = self.engine.as_ref().expect("the engine is open").social();
        let model = &mut self.model;
        match *op {
            Op::SignUp {
                address: index,
                shout,
                flaw,
            } => {
                let email = match flaw {
                    Flaw::InvalidEmail => format!("model user{index} at example.com"),
                    Flaw::Disposable => format!("model.user{index}@mailinator.com"),
                    Flaw::None | Flaw::WeakPassword => address(index, shout),
                };
                let password = match flaw {
                    Flaw::WeakPassword => "short".to_string(),
                    _ => password(index),
                };
                let full_name = (index % 2 == 0).then(|| format!("Model User {index}"));
                let got = social
                    .sign_up(SignUp {
                        email: email.clone(),
                        password: password.clone(),
                        full_name: full_name.clone(),
                        enrichment: None,
                    })
                    .await;
                let key = email.to_lowercase();
                let expected = match flaw {
                    Flaw::InvalidEmail => Err("invalid_email"),
                    Flaw::Disposable => Err("email_undeliverable"),
                    Flaw::WeakPassword => Err("weak_password"),
                    Flaw::None if model.emails.contains_key(&key) => Err("email_taken"),
                    Flaw::None => {
                        let id = model.users.keys().next_back().map_or(1, |last| last + 1);
                        model.users.insert(
                            id,
                            ModelUser {
                                email,
                                password,
                                full_name,
                                created_at_ms: model.now_ms,
                            },
                        );
                        model.emails.insert(key, id);
                        Ok(model.user_view(id).expect("just signed up"))
                    }
                };
                expect("sign-up", got, expected)
            }
            Op::Login {
                user,
                right_password,
            } => {
                let user_id = model.user_id(user);
                let (email, password) = match model.users.get(&user_id) {
                    Some(known) => (known.email.to_lowercase(), known.password.clone()),
                    None => ("nobody@example.com".into(), password(0)),
                };
                let password = if right_password {
                    password
                } else {
                    "wrong password".into()
                };
                let expected = if right_password && model.users.contains_key(&user_id) {
                    Ok(user_id)
                } else {
                    Err("invalid_credentials")
                };
                expect("login", social.login(&email, &password).await, expected)
            }
            Op::CreatePost { author, blank } => {
                let author_id = model.user_id(author);
                let text = if blank {
                    "   ".to_string()
                } else {
                    format!("post {} of user {author_id}", model.posts.len())
                };
                let got = social.create_post(author_id, text.clone()).await;
                if blank {
                    return expect("create_post", got, Err("invalid_text"));
                }
                if !model.users.contains_key(&author_id) {
                    return expect("create_post", got, Err("not_found user"));
                }
                let view = got.map_err(|error| format!("create_post: {}", code(&error)))?;
                let highest = model.posts.keys().next_back().copied().unwrap_or(0);
                if view.id <= highest {
                    return Err(format!(
                        "create_post gave id {}, not above the highest post id {highest}",
                        view.id
                    ));
                }
                model.posts.insert(
                    view.id,
                    ModelPost {
                        author_id,
                        text,
                        created_at_ms: model.now_ms,
                    },
                );
                let expected = model.post_view(view.id).expect("just posted");
                expect("create_post", Ok(view), Ok::<_, &str>(expected))
            }
            Op::Like { user, post } | Op::Unlike { user, post } => {
                let on = matches!(op, Op::Like { .. });
                // A liker is an authenticated user: the routes never name one that does not
                // exist, so neither does the model.
                if model.users.is_empty() {
                    return Ok(());
                }
                let user_id = pick(model.users.keys(), user % model.users.len());
                let post_id = model.post_id(post);
                let got = if on {
                    social.like(user_id, post_id).await
                } else {
                    social.unlike(user_id, post_id).await
                };
                let current = model.likes.get(&(post_id, user_id)).copied();
                let is_on = current.is_some_and(|record| record.liked);
                let expected = match model.posts.get(&post_id) {
                    None => Err("not_found post"),
                    Some(post) if post.author_id == user_id => {
                        Err(if on { "own_post" } else { "not_liked" })
                    }
                    Some(_) if on && is_on => Err("already_liked"),
                    Some(_) if !on && !is_on => Err("not_liked"),
                    Some(_) => {
                        let now = model.now_ms;
                        let record = match current {
                            None => LikeView {
                                user_id,
                                liked: true,
                                first_liked_at_ms: now,
                                updated_at_ms: now,
                                times_liked: 1,
                            },
                            Some(record) => LikeView {
                                liked: on,
                                updated_at_ms: now,
                                times_liked: record.times_liked + u64::from(on),
                                ..record
                            },
                        };
                        model.likes.insert((post_id, user_id), record);
                        Ok(LikeOutcome {
                            post_id,
                            user_id,
                            likes: model.likes_of(post_id),
                        })
                    }
                };
                expect(if on { "like" } else { "unlike" }, got, expected)
            }
            Op::GetUser { user } => {
                let user_id = model.user_id(user);
                let expected = model.user_view(user_id).ok_or("not_found user");
                expect("user", social.user(user_id).await, expected)
            }
            Op::GetPost { post } => {
                let post_id = model.post_id(post);
                let expected = model.post_view(post_id).ok_or("not_found post");
                expect("post", social.post(post_id).await, expected)
            }
            Op::Users { after, limit } => {
                let after = after.map(|after| model.user_id(after));
                expect(
                    "users",
                    social.users(after, limit).await,
                    Ok(model.users_page(after, limit)),
                )
            }
            Op::Posts {
                author,
                zero_likes,
                after,
                limit,
            } => {
                let author = author.map(|author| model.user_id(author));
                let after = after.map(|after| model.post_id(after));
                expect(
                    "posts",
                    social.posts(author, zero_likes, after, limit).await,
                    Ok(model.posts_page(author, zero_likes, after, limit)),
                )
            }
            Op::Likes { post, after, limit } => {
                let post_id = model.post_id(post);
                let after = after.map(|after| model.user_id(after));
                let expected = if model.posts.contains_key(&post_id) {
                    Ok(model.likes_page(post_id, after, limit))
                } else {
                    Err("not_found post")
                };
                expect("likes", social.likes(post_id, after, limit).await, expected)
            }
            Op::Stats => expect("stats", social.stats().await, Ok(model.stats())),
            Op::Check => expect("check", social.check().await, Ok(Vec::new())),
            Op::Advance { ms } => {
                self.clock.advance_ms(ms);
                model.now_ms += ms;
                Ok(())
            }
            Op::Restart { crash } => {
                let engine = self.engine.take().expect("the engine is open");
                if !crash {
                    engine
                        .shutdown()
                        .map_err(|error| format!("shutdown: {error}"))?;
                }
                drop(engine);
                self.engine = Some(
                    Engine::open_with_clock(self.config.clone(), Arc::new(self.clock.clone()))
                        .map_err(|error| format!("reopening: {error}"))?,
                );
                self.check_everything().await
            }
        }
    }

    /// Compares the whole state with the model: every user, post and like record, each through
    /// its single read and through every list (pages of two, so cursors are crossed), logins,
    /// the stats and the engine's own checker.
    async fn check_everything(&self) -> Result<(), String> {
        let social = self.engine().social();
        let model = &self.model;
        expect("stats", social.stats().await, Ok(model.stats()))?;
        expect("check", social.check().await, Ok(Vec::new()))?;
        let mut cursor = None;
        loop {
            let expected = model.users_page(cursor, 2);
            expect(
                "users page",
                social.users(cursor, 2).await,
                Ok(expected.clone()),
            )?;
            match expected.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut authors: Vec<Option<u64>> = vec![None, Some(UNKNOWN_ID)];
        authors.extend(model.users.keys().map(|id| Some(*id)));
        for user_id in model.users.keys() {
            expect(
                "user",
                social.user(*user_id).await,
                Ok(model.user_view(*user_id).unwrap()),
            )?;
            let user = &model.users[user_id];
            expect(
                "login",
                social.login(&user.email, &user.password).await,
                Ok(*user_id),
            )?;
        }
        for author in authors {
            for zero_likes in [false, true] {
                let mut cursor = None;
                loop {
                    let expected = model.posts_page(author, zero_likes, cursor, 2);
                    expect(
                        &format!("posts page (author {author:?}, zero_likes {zero_likes})"),
                        social.posts(author, zero_likes, cursor, 2).await,
                        Ok(expected.clone()),
                    )?;
                    match expected.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
        }
        for post_id in model.posts.keys() {
            expect(
                "post",
                social.post(*post_id).await,
                Ok(model.post_view(*post_id).unwrap()),
            )?;
            let mut cursor = None;
            loop {
                let expected = model.likes_page(*post_id, cursor, 2);
                expect(
                    "likes page",
                    social.likes(*post_id, cursor, 2).await,
                    Ok(expected.clone()),
                )?;
                match expected.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        expect(
            "unknown user",
            social.user(UNKNOWN_ID).await,
            Err("not_found user"),
        )?;
        expect(
            "unknown post",
            social.post(UNKNOWN_ID).await,
            Err("not_found post"),
        )
    }
}

/// Runs `ops` on a fresh engine; the first disagreement, with its position.
fn run(ops: &[Op]) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut run = Run::new();
        for (index, op) in ops.iter().enumerate() {
            run.apply(op)
                .await
                .map_err(|message| format!("operation {index} ({op:?}): {message}"))?;
        }
        run.check_everything()
            .await
            .map_err(|message| format!("after the last operation: {message}"))?;
        let engine = run.engine.take().expect("the engine is open");
        engine
            .shutdown()
            .map_err(|error| format!("final shutdown: {error}"))?;
        drop(engine);
        drop(run.dir);
        Ok(())
    })
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(if slow() { SLOW_CASES } else { CASES })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..if slow() { SLOW_OPS_MAX } else { OPS_MAX })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn social_matches_its_model(ops in ops()) {
        if let Err(message) = run(&ops) {
            prop_assert!(false, "{}", message);
        }
    }
}

/// A fixed sequence through every rule once, so a plain `cargo test` exercises each even if the
/// random cases happen to miss one.
#[test]
fn social_model_walks_every_rule() {
    use Op::*;
    let ops = [
        SignUp {
            address: 0,
            shout: false,
            flaw: Flaw::None,
        },
        SignUp {
            address: 0,
            shout: true,
            flaw: Flaw::None,
        },
        SignUp {
            address: 1,
            shout: true,
            flaw: Flaw::None,
        },
        SignUp {
            address: 2,
            shout: false,
            flaw: Flaw::InvalidEmail,
        },
        SignUp {
            address: 2,
            shout: false,
            flaw: Flaw::Disposable,
        },
        SignUp {
            address: 2,
            shout: false,
            flaw: Flaw::WeakPassword,
        },
        Login {
            user: 0,
            right_password: true,
        },
        Login {
            user: 1,
            right_password: false,
        },
        Login {
            user: 2,
            right_password: true,
        },
        CreatePost {
            author: 0,
            blank: false,
        },
        CreatePost {
            author: 0,
            blank: true,
        },
        CreatePost {
            author: 2,
            blank: false,
        },
        CreatePost {
            author: 1,
            blank: false,
        },
        Advance { ms: 7 },
        Like { user: 1, post: 0 },
        Like { user: 1, post: 0 },
        Like { user: 0, post: 0 },
        Unlike { user: 0, post: 0 },
        Unlike { user: 0, post: 1 },
        Like { user: 0, post: 1 },
        Like { user: 0, post: 2 },
        Restart { crash: true },
        Unlike { user: 1, post: 0 },
        Advance { ms: 3 },
        Like { user: 1, post: 0 },
        Likes {
            post: 0,
            after: None,
            limit: 1,
        },
        Posts {
            author: None,
            zero_likes: true,
            after: None,
            limit: 1,
        },
        Users {
            after: Some(0),
            limit: 1,
        },
        Restart { crash: false },
        Stats,
        Check,
    ];
    if let Err(message) = run(&ops) {
        panic!("{message}");
    }
}
