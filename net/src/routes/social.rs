//! The social workload over HTTP (API.md "Social"): sign-up, login, users, posts, likes, stats.
//!
//! Sign-up order: the per-address flood limit (`auth.signups_per_minute_per_source`, 429); the
//! engine's own checks (syntax, disposable domains, password strength), so bad input is refused
//! before any outside call; then the optional e-mail verifier (422 `email_undeliverable` on its
//! verdict) and enrichment adapters, whose failures never block sign-up; then argon2 hashing off
//! the async threads; then the engine registers the user.
//!
//! Login order: the body (400); the failure throttles per e-mail and per address
//! (`auth.login_failures_per_minute`, 429 with `Retry-After`), taken before the password is
//! checked, for known and unknown e-mails alike; the password, verified even for an unknown
//! e-mail (against a fixed hash), so neither the answer nor its timing tells which addresses are
//! registered. A success gives its slot back, so only failures count.
//!
//! Invariants: `email` is shown only to the user itself and to admin; passwords and tokens are
//! never logged; every list is keyset-paginated with an opaque cursor. Authentication comes
//! first: a user route checks its token ([`Ctx::user`]) and an optional-token route its viewer
//! ([`Ctx::viewer`]: a present but invalid token is 401) before path, query or body.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard_engine::clock::rfc3339;
use switchyard_engine::social::{self, LikeView, Page, PostView, SignUp, UserView};

use super::{decode_cursor, page_json, Ctx, HandlerResult, Route};
use crate::error::ApiError;
use crate::http;
use crate::throttle::ThrottleKey;

pub fn routes() -> Vec<Route> {
    vec![
        Route::api(Method::POST, "/api/v1/users", |ctx| Box::pin(sign_up(ctx))),
        Route::api(Method::GET, "/api/v1/users", |ctx| {
            Box::pin(list_users(ctx))
        }),
        Route::api(Method::GET, "/api/v1/users/{id}", |ctx| {
            Box::pin(get_user(ctx))
        }),
        Route::api(Method::POST, "/api/v1/auth/login", |ctx| {
            Box::pin(login(ctx))
        }),
        Route::api(Method::POST, "/api/v1/posts", |ctx| {
            Box::pin(create_post(ctx))
        }),
        Route::api(Method::GET, "/api/v1/posts", |ctx| {
            Box::pin(list_posts(ctx))
        }),
        Route::api(Method::GET, "/api/v1/posts/{id}", |ctx| {
            Box::pin(get_post(ctx))
        }),
        Route::api(Method::POST, "/api/v1/posts/{id}/likes", |ctx| {
            Box::pin(set_like(ctx, true))
        }),
        Route::api(Method::DELETE, "/api/v1/posts/{id}/likes", |ctx| {
            Box::pin(set_like(ctx, false))
        }),
        Route::api(Method::GET, "/api/v1/posts/{id}/likes", |ctx| {
            Box::pin(list_likes(ctx))
        }),
        Route::api(Method::GET, "/api/v1/stats/social", |ctx| {
            Box::pin(stats(ctx))
        }),
        Route::api(Method::GET, "/api/v1/admin/social/check", |ctx| {
            Box::pin(check_invariants(ctx))
        }),
    ]
}

pub(crate) fn user_json(user: &UserView, show_email: bool) -> Value {
    let mut value = json!({
        "id": user.id,
        "full_name": user.full_name,
        "posts_count": user.posts_count,
        "likes_given": user.likes_given,
        "created_at": rfc3339(user.created_at_ms),
        "enrichment": user.enrichment.as_ref().map(|e| json!({
            "full_name": e.full_name,
            "company": e.company,
            "location": e.location,
            "source": e.source,
        })),
    });
    if show_email {
        value["email"] = Value::String(user.email.clone());
    }
    value
}

pub(crate) fn post_json(post: &PostView) -> Value {
    json!({
        "id": post.id,
        "author_id": post.author_id,
        "text": post.text,
        "likes": post.likes,
        "created_at": rfc3339(post.created_at_ms),
    })
}

fn like_json(like: &LikeView) -> Value {
    json!({
        "user_id": like.user_id,
        "liked": like.liked,
        "first_liked_at": rfc3339(like.first_liked_at_ms),
        "updated_at": rfc3339(like.updated_at_ms),
        "times_liked": like.times_liked,
    })
}

/// The source-address key of a throttle, when the peer address is known.
fn address_key(ctx: &Ctx) -> Vec<ThrottleKey> {
    ctx.peer_ip()
        .map(ThrottleKey::Address)
        .into_iter()
        .collect()
}

async fn sign_up(mut ctx: Ctx) -> HandlerResult {
    let engine = ctx.engine()?;
    let mut fields = ctx.json().await?;
    let email = fields.required_str("email")?;
    let password = fields.required_str("password")?;
    let full_name = fields.optional_str("full_name")?;
    fields.finish()?;
    let now_ms = engine.clock().now_ms();
    ctx.app
        .throttles
        .signup_by_address
        .take(&address_key(&ctx), now_ms)?;
    let mut request = SignUp {
        email,
        password,
        full_name,
        enrichment: None,
    };
    social::validate_sign_up(&request)?;
    let adapters = &ctx.app.adapters;
    adapters.verify(&request.email).await?;
    request.enrichment = adapters.enrich(&request.email).await;
    if request.full_name.is_none() {
        request.full_name = request
            .enrichment
            .as_ref()
            .and_then(|enrichment| enrichment.full_name.clone());
    }
    let hashing = engine
        .config()
        .section::<switchyard_engine::social::SocialConfig>()
        .clone();
    let password = request.password.clone();
    let hash = tokio::task::spawn_blocking(move || social::hash_password(&password, &hashing))
        .await
        .map_err(|_| ApiError::internal())??;
    let user = engine.social().sign_up_hashed(request, hash).await?;
    Ok(http::json(StatusCode::CREATED, &user_json(&user, true)))
}

async fn login(mut ctx: Ctx) -> HandlerResult {
    let engine = ctx.engine()?;
    let mut fields = ctx.json().await?;
    let email = fields.required_str("email")?;
    let password = fields.required_str("password")?;
    fields.finish()?;
    let invalid = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong e-mail or password",
        )
    };
    // Counted before the password is checked, for every e-mail, known or not (module docs).
    let throttles = &ctx.app.throttles;
    let email_key = [throttles.login_by_email.email_key(&email)];
    let address_key = address_key(&ctx);
    let now_ms = engine.clock().now_ms();
    throttles.login_by_address.take(&address_key, now_ms)?;
    if let Err(refused) = throttles.login_by_email.take(&email_key, now_ms) {
        throttles.login_by_address.refund(&address_key);
        return Err(refused);
    }
    let credentials = engine.social().credentials(&email).await?;
    // Verify even for an unknown e-mail (against a fixed hash), so timing does not tell which
    // addresses are registered.
    let hashing = engine
        .config()
        .section::<switchyard_engine::social::SocialConfig>()
        .clone();
    let verified = tokio::task::spawn_blocking(move || match credentials {
        Some((user_id, hash)) => social::verify_password(&password, &hash).then_some(user_id),
        None => {
            let _ = social::verify_password(&password, &dummy_hash(&hashing));
            None
        }
    })
    .await
    .map_err(|_| ApiError::internal())?;
    let user_id = verified.ok_or_else(invalid)?;
    throttles.login_by_email.refund(&email_key);
    throttles.login_by_address.refund(&address_key);
    let now_seconds = engine.clock().now_ms() / 1000;
    let token = ctx.app.auth.issue(user_id, now_seconds)?;
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ctx.app.auth.ttl_seconds(),
            "user_id": user_id,
        }),
    ))
}

/// A hash of a password nobody has, made once with the configured cost, so a login for an
/// unknown e-mail spends the same time verifying as one for a known e-mail.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn dummy_hash(config: &social::SocialConfig) -> String {
    DUMMY_HASH
        .get_or_init(|| {
            let password: [u8; 16] = rand::random();
            let password: String = password.iter().map(|b| format!("{b:02x}")).collect();
            social::hash_password(&password, config).unwrap_or_default()
        })
        .clone()
}

/// A token is optional here; a present but invalid one is 401.
async fn get_user(ctx: Ctx) -> HandlerResult {
    let viewer = ctx.viewer().await?;
    let id = ctx.param_u64("id")?;
    ctx.query()?.finish()?;
    let engine = ctx.engine()?;
    let user = engine.social().user(id).await?;
    Ok(http::json(
        StatusCode::OK,
        &user_json(&user, viewer.sees_email_of(id)),
    ))
}

/// A token is optional here; a present but invalid one is 401.
async fn list_users(ctx: Ctx) -> HandlerResult {
    let viewer = ctx.viewer().await?;
    let mut query = ctx.query()?;
    let page = query.page()?;
    query.finish()?;
    let after = decode_cursor(page.cursor)?;
    let engine = ctx.engine()?;
    let users = engine.social().users(after, page.limit).await?;
    Ok(http::json(
        StatusCode::OK,
        &page_json(users, |user| user_json(user, viewer.sees_email_of(user.id))),
    ))
}

async fn create_post(mut ctx: Ctx) -> HandlerResult {
    let user_id = ctx.user().await?;
    let engine = ctx.engine()?;
    let mut fields = ctx.json().await?;
    let text = fields.required_str("text")?;
    fields.finish()?;
    let post = engine.social().create_post(user_id, text).await?;
    Ok(http::json(StatusCode::CREATED, &post_json(&post)))
}

async fn get_post(ctx: Ctx) -> HandlerResult {
    let id = ctx.param_u64("id")?;
    ctx.query()?.finish()?;
    let post = ctx.engine()?.social().post(id).await?;
    Ok(http::json(StatusCode::OK, &post_json(&post)))
}

async fn list_posts(ctx: Ctx) -> HandlerResult {
    let mut query = ctx.query()?;
    let author_id = query.optional_u64("author_id")?;
    let zero_likes = query.optional_bool("zero_likes")?.unwrap_or(false);
    let page = query.page()?;
    query.finish()?;
    let after = decode_cursor(page.cursor)?;
    let posts = ctx
        .engine()?
        .social()
        .posts(author_id, zero_likes, after, page.limit)
        .await;
    // An unknown author has no posts: an empty page, not 404 (it is a filter).
    let posts = match posts {
        Err(switchyard_engine::Error::NotFound(_)) if author_id.is_some() => Page {
            items: Vec::new(),
            next: None,
        },
        other => other?,
    };
    Ok(http::json(StatusCode::OK, &page_json(posts, post_json)))
}

async fn set_like(mut ctx: Ctx, on: bool) -> HandlerResult {
    let user_id = ctx.user().await?;
    let post_id = ctx.param_u64("id")?;
    let engine = ctx.engine()?;
    ctx.json_or_empty().await?.finish()?;
    let social = engine.social();
    let outcome = if on {
        social.like(user_id, post_id).await?
    } else {
        social.unlike(user_id, post_id).await?
    };
    let status = if on {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(http::json(
        status,
        &json!({"post_id": outcome.post_id, "user_id": outcome.user_id, "likes": outcome.likes}),
    ))
}

async fn list_likes(ctx: Ctx) -> HandlerResult {
    let post_id = ctx.param_u64("id")?;
    let mut query = ctx.query()?;
    let page = query.page()?;
    query.finish()?;
    let after = decode_cursor(page.cursor)?;
    let likes = ctx
        .engine()?
        .social()
        .likes(post_id, after, page.limit)
        .await?;
    Ok(http::json(StatusCode::OK, &page_json(likes, like_json)))
}

async fn stats(ctx: Ctx) -> HandlerResult {
    ctx.query()?.finish()?;
    let stats = ctx.engine()?.social().stats().await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "users": stats.users,
            "posts": stats.posts,
            "likes": stats.likes,
            "posts_with_zero_likes": stats.posts_with_zero_likes,
        }),
    ))
}

/// Admin: recomputes every social counter from the records (the engine's invariant checker).
/// Costs O(users + posts + likes); meant for operators, tests and the bot, not for hot paths.
async fn check_invariants(ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    ctx.query()?.finish()?;
    let differences = ctx.engine()?.social().check().await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "differences": differences
                .iter()
                .map(|d| json!({"what": d.what, "expected": d.expected, "found": d.found}))
                .collect::<Vec<_>>(),
        }),
    ))
}
