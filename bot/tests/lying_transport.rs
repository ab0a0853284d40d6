//! The checker catches a lying server. A test-only transport wraps the embedded engine and
//! changes its answers — one variant adds a like to every post it reports, one drops a liker
//! from every non-empty likers list, one under-reports a user's likes_given — and the library's
//! simulation must end with `Outcome::Mismatch` (exit code 2), naming the lie in its differences.
//! An honest wrapper around the same engine must finish clean, so the failures come from the lies.

use std::sync::Arc;

use switchyard_bot::cli::builtin_mail_list;
use switchyard_bot::progress::ProgressMode;
use switchyard_bot::transport::{
    Answer, EmbeddedTransport, LikeInfo, NewUser, PostInfo, Session, SocialStats, UserInfo,
};
use switchyard_bot::{social, Outcome, SocialOptions, Transport};
use switchyard_engine::EngineConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lie {
    None,
    ExtraLike,
    DroppedLiker,
    FewerLikesGiven,
}

struct Liar {
    inner: EmbeddedTransport,
    lie: Lie,
}

impl Transport for Liar {
    fn name(&self) -> &'static str {
        "liar"
    }
    async fn sign_up(&self, user: &NewUser) -> Answer<UserInfo> {
        self.inner.sign_up(user).await
    }
    async fn login(&self, email: &str, password: &str) -> Answer<Session> {
        self.inner.login(email, password).await
    }
    async fn create_post(&self, session: &Session, text: &str) -> Answer<PostInfo> {
        self.inner.create_post(session, text).await
    }
    async fn like(&self, session: &Session, post_id: u64) -> Answer<LikeInfo> {
        self.inner.like(session, post_id).await
    }
    async fn unlike(&self, session: &Session, post_id: u64) -> Answer<LikeInfo> {
        self.inner.unlike(session, post_id).await
    }
    async fn user(&self, user_id: u64) -> Answer<UserInfo> {
        let mut user = self.inner.user(user_id).await?;
        if self.lie == Lie::FewerLikesGiven && user.likes_given > 0 {
            user.likes_given -= 1;
        }
        Ok(user)
    }
    async fn post(&self, post_id: u64) -> Answer<PostInfo> {
        let mut post = self.inner.post(post_id).await?;
        if self.lie == Lie::ExtraLike {
            post.likes += 1;
        }
        Ok(post)
    }
    async fn likers(&self, post_id: u64) -> Answer<Vec<u64>> {
        let mut likers = self.inner.likers(post_id).await?;
        if self.lie == Lie::DroppedLiker && !likers.is_empty() {
            likers.remove(0);
        }
        Ok(likers)
    }
    async fn stats(&self) -> Answer<SocialStats> {
        self.inner.stats().await
    }
    async fn self_check(&self) -> Answer<Option<Vec<String>>> {
        self.inner.self_check().await
    }
}

async fn simulate(lie: Lie) -> social::SocialRun {
    let dir = tempfile::tempdir().unwrap();
    let inner = EmbeddedTransport::open(EngineConfig::for_tests(dir.path())).unwrap();
    let liar = Arc::new(Liar { inner, lie });
    let options = SocialOptions {
        seed: 7,
        users: 8,
        max_posts: 2,
        max_likes: 3,
        concurrency: 2,
        mail_list: Arc::new(builtin_mail_list()),
        check_every_round: false,
        progress: ProgressMode::Off,
    };
    let run = social::run(liar.clone(), options).await;
    liar.inner.shutdown().unwrap();
    run
}

fn check(lie: Lie, expected_fragment: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = runtime.block_on(simulate(lie));
    let report = &run.report;
    assert_eq!(
        run.outcome(),
        Outcome::Mismatch,
        "{lie:?}: {}",
        report.render_text()
    );
    assert_eq!(report.exit_code, 2);
    assert!(
        report
            .differences
            .iter()
            .any(|difference| difference.contains(expected_fragment)),
        "{lie:?}: no difference mentions {expected_fragment:?}: {:#?}",
        report.differences
    );
}

#[test]
fn an_honest_wrapper_finishes_clean() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = runtime.block_on(simulate(Lie::None));
    assert_eq!(
        run.outcome(),
        Outcome::Finished,
        "{}",
        run.report.render_text()
    );
    assert_eq!(run.report.exit_code, 0);
}

#[test]
fn an_extra_like_is_a_mismatch() {
    check(Lie::ExtraLike, "likes is 1, the bot counts 0");
}

#[test]
fn a_dropped_liker_is_a_mismatch() {
    check(Lie::DroppedLiker, "likers are");
}

#[test]
fn fewer_likes_given_is_a_mismatch() {
    check(Lie::FewerLikesGiven, "likes_given is");
}
