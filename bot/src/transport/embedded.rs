//! The embedded transport: the engine opened in this process (`--embedded --data-dir DIR`), no
//! HTTP. Engine errors become [`BotError`]s with the status `switchyard-net` would answer.
//!
//! Password hashing and verification (argon2, CPU-heavy) run on tokio's blocking pool, as
//! `switchyard-net` does, so they do not stall the other users' tasks.

use std::path::Path;
use std::sync::Arc;

use switchyard_engine::runtime::effects::EffectPool;
use switchyard_engine::social::{self, SignUp};
use switchyard_engine::store::DirLock;
use switchyard_engine::{Engine, EngineConfig, SystemClock};

use super::{
    Answer, BotError, LikeInfo, NewUser, PostInfo, Session, SocialStats, Transport, UserInfo,
};

/// Likes read per page when listing a post's likers.
const LIKES_PAGE_LIMIT: usize = 500;

/// The engine, in-process. Cheap to share: [`Engine`] is a handle.
pub struct EmbeddedTransport {
    engine: Engine,
}

impl EmbeddedTransport {
    /// Opens (or creates) the engine on `config.data_dir`. Blocking: recovery runs here.
    pub fn open(config: EngineConfig) -> Answer<Self> {
        let engine = Engine::open(config).map_err(BotError::from)?;
        Ok(EmbeddedTransport { engine })
    }

    /// As [`EmbeddedTransport::open`], with worker pools for the effects the domains ask for
    /// (the market's price pool: an engine opened without one never has a price). Blocking.
    pub fn open_with_effects(config: EngineConfig, pools: Vec<EffectPool>) -> Answer<Self> {
        let lock = DirLock::acquire(&config.data_dir).map_err(BotError::from)?;
        let engine = Engine::open_with_effects(config, lock, Arc::new(SystemClock), pools)
            .map_err(BotError::from)?;
        Ok(EmbeddedTransport { engine })
    }

    /// Defaults for `data_dir`, with the given argon2 cost (`None` keeps the engine's).
    pub fn config(
        data_dir: &Path,
        hash_memory_kib: Option<u32>,
        hash_iterations: Option<u32>,
    ) -> EngineConfig {
        let mut config = EngineConfig::new(data_dir);
        if let Some(kib) = hash_memory_kib {
            config
                .section_mut::<switchyard_engine::social::SocialConfig>()
                .password_hash_memory_kib = kib;
        }
        if let Some(iterations) = hash_iterations {
            config
                .section_mut::<switchyard_engine::social::SocialConfig>()
                .password_hash_iterations = iterations;
        }
        config
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Shuts the engine down in order (last checkpoint, WAL closed). Blocking.
    pub fn shutdown(&self) -> Answer<()> {
        self.engine.shutdown().map_err(BotError::from)
    }
}

fn user_info(view: social::UserView) -> UserInfo {
    UserInfo {
        id: view.id,
        posts_count: view.posts_count,
        likes_given: view.likes_given,
    }
}

fn post_info(view: social::PostView) -> PostInfo {
    PostInfo {
        id: view.id,
        author_id: view.author_id,
        likes: view.likes,
    }
}

fn like_info(outcome: social::LikeOutcome) -> LikeInfo {
    LikeInfo {
        post_id: outcome.post_id,
        user_id: outcome.user_id,
        likes: outcome.likes,
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Answer<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| BotError::transport("join", error.to_string()))
}

impl Transport for EmbeddedTransport {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn sign_up(&self, user: &NewUser) -> Answer<UserInfo> {
        let request = SignUp {
            email: user.email.clone(),
            password: user.password.clone(),
            full_name: user.full_name.clone(),
            enrichment: None,
        };
        social::validate_sign_up(&request)?;
        let password = request.password.clone();
        let cost = self
            .engine
            .config()
            .section::<switchyard_engine::social::SocialConfig>()
            .clone();
        let hash = blocking(move || social::hash_password(&password, &cost)).await??;
        let view = self.engine.social().sign_up_hashed(request, hash).await?;
        Ok(user_info(view))
    }

    async fn login(&self, email: &str, password: &str) -> Answer<Session> {
        let invalid = || BotError::api(401, "invalid_credentials", "wrong e-mail or password");
        let Some((user_id, hash)) = self.engine.social().credentials(email).await? else {
            return Err(invalid());
        };
        let password = password.to_string();
        if blocking(move || social::verify_password(&password, &hash)).await? {
            Ok(Session {
                user_id,
                token: None,
            })
        } else {
            Err(invalid())
        }
    }

    async fn create_post(&self, session: &Session, text: &str) -> Answer<PostInfo> {
        let view = self
            .engine
            .social()
            .create_post(session.user_id, text.to_string())
            .await?;
        Ok(post_info(view))
    }

    async fn like(&self, session: &Session, post_id: u64) -> Answer<LikeInfo> {
        let outcome = self.engine.social().like(session.user_id, post_id).await?;
        Ok(like_info(outcome))
    }

    async fn unlike(&self, session: &Session, post_id: u64) -> Answer<LikeInfo> {
        let outcome = self
            .engine
            .social()
            .unlike(session.user_id, post_id)
            .await?;
        Ok(like_info(outcome))
    }

    async fn user(&self, user_id: u64) -> Answer<UserInfo> {
        Ok(user_info(self.engine.social().user(user_id).await?))
    }

    async fn post(&self, post_id: u64) -> Answer<PostInfo> {
        Ok(post_info(self.engine.social().post(post_id).await?))
    }

    async fn likers(&self, post_id: u64) -> Answer<Vec<u64>> {
        let mut likers = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .engine
                .social()
                .likes(post_id, after, LIKES_PAGE_LIMIT)
                .await?;
            likers.extend(
                page.items
                    .iter()
                    .filter(|like| like.liked)
                    .map(|like| like.user_id),
            );
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(likers),
            }
        }
    }

    async fn stats(&self) -> Answer<SocialStats> {
        let stats = self.engine.social().stats().await?;
        Ok(SocialStats {
            users: stats.users,
            posts: stats.posts,
            likes: stats.likes,
            posts_with_zero_likes: stats.posts_with_zero_likes,
        })
    }

    async fn self_check(&self) -> Answer<Option<Vec<String>>> {
        let differences = self.engine.social().check().await?;
        Ok(Some(differences.iter().map(ToString::to_string).collect()))
    }
}
