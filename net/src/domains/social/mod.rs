//! The social workload over HTTP (API.md "Social"): sign-up, login, users, posts, likes, stats.
//! Each route is listed in `routes` with its handler and its OpenAPI operation (`*_doc`, next to
//! the handler); the bodies are in [`types`]; [`DOMAIN`] also gives the document its `userJwt`
//! scheme, the social error codes and a section, and `/metrics` the adapters' failure counts.
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
//! ([`Ctx::viewer`]: a present but invalid token is 401) before path, query or body. A like
//! with no body parses no JSON.

pub mod types;

use hyper::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use switchyard_engine::social::{self, Page, SignUp};
use utoipa::openapi::path::Parameter;
use utoipa::openapi::schema::{ObjectBuilder, Type};

use super::{HttpDomain, MetricsFuture};
use crate::app::App;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::http::{self, NextCursor};
use crate::json::EmptyObject;
use crate::openapi::{self, Document, Op, ADMIN_TOKEN, PAGE_INVALID_FIELD};
use crate::router::{HandlerResult, Route};
use crate::throttle::ThrottleKey;
use types::{
    CreatePostRequest, Difference, InvariantReport, LikeOutcome, LikeRecord, LikeRecordPage,
    LoginRequest, LoginResponse, Post, PostPage, SignUpRequest, SocialStats, TokenType, User,
    UserPage,
};

pub const DOMAIN: HttpDomain = HttpDomain {
    name: "social",
    routes,
    describe,
    metrics,
    effects: HttpDomain::no_effects,
    config: None,
    compat: None,
};

/// The security scheme of user tokens.
use crate::openapi::USER_JWT;

fn routes() -> Vec<Route> {
    vec![
        Route::api(
            Method::POST,
            "/api/v1/users",
            |ctx| Box::pin(sign_up(ctx)),
            sign_up_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/users",
            |ctx| Box::pin(list_users(ctx)),
            list_users_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/users/{id}",
            |ctx| Box::pin(get_user(ctx)),
            get_user_doc,
        ),
        Route::api(
            Method::POST,
            "/api/v1/auth/login",
            |ctx| Box::pin(login(ctx)),
            login_doc,
        ),
        Route::api(
            Method::POST,
            "/api/v1/posts",
            |ctx| Box::pin(create_post(ctx)),
            create_post_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/posts",
            |ctx| Box::pin(list_posts(ctx)),
            list_posts_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/posts/{id}",
            |ctx| Box::pin(get_post(ctx)),
            get_post_doc,
        ),
        Route::api(
            Method::POST,
            "/api/v1/posts/{id}/likes",
            |ctx| Box::pin(set_like(ctx, true)),
            like_doc,
        ),
        Route::api(
            Method::DELETE,
            "/api/v1/posts/{id}/likes",
            |ctx| Box::pin(set_like(ctx, false)),
            unlike_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/posts/{id}/likes",
            |ctx| Box::pin(list_likes(ctx)),
            list_likes_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/stats/social",
            |ctx| Box::pin(stats(ctx)),
            stats_doc,
        ),
        Route::api(
            Method::GET,
            "/api/v1/admin/social/check",
            |ctx| Box::pin(check_invariants(ctx)),
            check_invariants_doc,
        ),
    ]
}

fn describe(document: &mut Document) {
    document.tag("social", "Users, login, posts and likes (API.md \"Social\").");
    document.security_scheme(
        USER_JWT,
        "A login token from `POST /api/v1/auth/login`: JWT HS256 with `sub` (user id as a \
         string), `iat`, `exp`, `role` = `user` (and `nbf` honoured when present); valid for \
         `auth.token_ttl_seconds`. Refused (401) when expired, when `nbf` or `iat` is more than \
         `auth.clock_skew_seconds` in the future, or when `sub` names no user. The signing \
         secret is `SWITCHYARD_JWT_SECRET` or one generated and kept in the data dir.",
        Some("JWT"),
    );
    document.error_codes(&[
        (
            "invalid_email",
            400,
            "Sign-up: not a valid e-mail address.",
        ),
        (
            "weak_password",
            400,
            "Sign-up: the password has fewer than 8 characters.",
        ),
        (
            "invalid_config",
            400,
            "Sign-up: the password-hashing parameters are unusable (prevented by start-up \
             validation).",
        ),
        (
            "invalid_text",
            400,
            "A post's text is empty or longer than 5000 bytes.",
        ),
        (
            "invalid_credentials",
            401,
            "Login: unknown e-mail or wrong password.",
        ),
        ("own_post", 403, "Users cannot like their own posts."),
        (
            "post_limit_reached",
            403,
            "`limits.max_posts_per_user` is reached.",
        ),
        (
            "like_limit_reached",
            403,
            "`limits.max_likes_per_user` is reached.",
        ),
        (
            "email_taken",
            409,
            "The e-mail is registered (case-insensitive).",
        ),
        ("already_liked", 409, "The like is already on."),
        ("not_liked", 409, "There is no like that is on to take back."),
        (
            "email_undeliverable",
            422,
            "The e-mail domain is disposable, or the verifier says the address is undeliverable.",
        ),
    ]);
    document.section(SECTION);
}

/// The social part of the document's introduction.
const SECTION: &str = "## Social

- **Auth**: a user JWT from `POST /api/v1/auth/login` (`userJwt`). Where a token is optional
  (`GET /api/v1/users`, `GET /api/v1/users/{id}`), a token that is present but not valid is 401,
  never \"anonymous\". A user JWT is 401 when it is expired, when its `nbf` or `iat` is more than
  `auth.clock_skew_seconds` in the future, or when its `sub` names no user.
- A post's `text` is limited to 5000 bytes of UTF-8 (API.md fixes bytes), so its `maxLength` of
  5000 characters is an upper bound; every other text limit counts characters.

| key | default | effect |
| --- | --- | --- |
| `limits.max_posts_per_user` | unset (no limit) | 403 `post_limit_reached` |
| `limits.max_likes_per_user` | unset (no limit) | 403 `like_limit_reached` |
| `auth.login_failures_per_minute` | 10 | failed logins per e-mail and, separately, per source address within a minute (0 = unlimited); beyond: 429 `rate_limited` + `Retry-After`, for known and unknown e-mails alike |
| `auth.signups_per_minute_per_source` | 60 | sign-up requests (with a well-formed body) per source address per minute (0 = unlimited); beyond: 429 `rate_limited` + `Retry-After` |
| `auth.throttle_keys_max` | 65536 | e-mails and addresses each throttle tracks; when full, expired windows go first, then all |

Fixed limits: post text 1..=5000 bytes; password 8 to 1024 characters; e-mail at most 254
characters (local part at most 64); `full_name` at most 200 characters.";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdapterLabels {
    adapter: &'static str,
}

/// `switchyard_adapter_failures_total{adapter}`: sign-up adapter calls that failed or timed out.
fn metrics<'a>(app: &'a App, out: &'a mut String) -> MetricsFuture<'a> {
    Box::pin(async move {
        let (verifier, enricher) = app.adapters.failures();
        crate::metrics::encode(out, |registry| {
            let failures = Family::<AdapterLabels, Counter>::default();
            for (adapter, count) in [("email_verifier", verifier), ("enrichment", enricher)] {
                failures.get_or_create(&AdapterLabels { adapter }).inc_by(count);
            }
            registry.register(
                "switchyard_adapter_failures",
                "Sign-up adapter calls that failed or timed out, by adapter",
                failures,
            );
        });
    })
}

/// The source-address key of a throttle, when the peer address is known.
fn address_key(ctx: &Ctx) -> Vec<ThrottleKey> {
    ctx.peer_ip()
        .map(ThrottleKey::Address)
        .into_iter()
        .collect()
}

fn user_id() -> Parameter {
    openapi::id_parameter("id", "User id; not a number → 404.")
}

fn post_id() -> Parameter {
    openapi::id_parameter("id", "Post id; not a number → 404.")
}


/// A route where a token is optional: anonymous, a user or the admin; a present but invalid
/// token is 401.
fn token_optional(op: Op) -> Op {
    op.anonymous()
        .security(USER_JWT)
        .security(ADMIN_TOKEN)
        .error(
            401,
            "A token was given and is not valid (a token is optional here, but a present one \
             must be valid).",
            &[(
                "unauthenticated",
                "the bearer token is neither the admin token nor a valid user token (expired, \
                 not yet valid, tampered, or its user does not exist)",
            )],
        )
}

fn sign_up_doc() -> Op {
    Op::new("signUp", "social")
        .summary("Sign up")
        .description(
            "Order of checks: the body; the sign-up flood limit of the source address \
             (`auth.signups_per_minute_per_source`, 429); the e-mail syntax and the shipped \
             disposable-domain list; the password; `full_name`; then the optional e-mail \
             verifier adapter (hunter.io, on when `social.hunter_api_key` is set) and \
             enrichment adapter (Clearbit-style, on when `social.clearbit_api_key` is set). An \
             adapter that fails or does not answer within `social.adapter_timeout_ms` never \
             blocks sign-up: the user gets `enrichment: null` and the failure is counted in \
             `/metrics`. Without `full_name`, the enrichment's `full_name` is used when there \
             is one. The reply includes `email`.",
        )
        .public()
        .body::<SignUpRequest>()
        .ok::<User>(201, "The new user (with `email`).")
        .link(
            "GetUser",
            "getUser",
            &[("id", "$response.body#/id")],
            "The new user.",
        )
        .body_errors(
            "`password` over 1024 characters, or `full_name` over 200 characters or with \
             control characters",
            &[
                (
                    "invalid_email",
                    "not a valid e-mail address (syntax, at most 254 characters); `field` is \
                     `email`",
                ),
                (
                    "weak_password",
                    "fewer than 8 characters; `field` is `password`",
                ),
                (
                    "invalid_config",
                    "the password-hashing parameters are unusable (`auth.password_hash_*`; \
                     prevented by start-up validation)",
                ),
            ],
        )
        .error(
            409,
            "Conflict.",
            &[(
                "email_taken",
                "a user with this e-mail exists (compared case-insensitively)",
            )],
        )
        .error(
            422,
            "The e-mail address is refused.",
            &[(
                "email_undeliverable",
                "the domain is on the disposable-domain list, or the e-mail verifier says the \
                 address is undeliverable; `field` is `email` for the verifier's verdict",
            )],
        )
        .error_with_retry(
            429,
            "Too many sign-ups from this source address; retry after `Retry-After` seconds. \
             Nothing changed.",
            &[(
                "rate_limited",
                "more than `auth.signups_per_minute_per_source` sign-up requests with a \
                 well-formed body from this address within a minute",
            )],
        )
        .api()
}

async fn sign_up(mut ctx: Ctx) -> HandlerResult {
    let engine = ctx.engine()?;
    let body: SignUpRequest = ctx.json().await?;
    let now_ms = engine.clock().now_ms();
    ctx.app
        .throttles
        .signup_by_address
        .take(&address_key(&ctx), now_ms)?;
    let mut request = SignUp {
        email: body.email,
        password: body.password,
        full_name: body.full_name,
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
    Ok(http::json(StatusCode::CREATED, &User::of(user, true)))
}

fn login_doc() -> Op {
    Op::new("login", "social")
        .summary("Log in")
        .description(
            "Issues a JWT (HS256) with claims `sub` (the user id as a string), `iat`, `exp` and \
             `role` (`user`), valid for `auth.token_ttl_seconds`. An unknown e-mail costs the \
             same password-hash time as a wrong password. Throttled: after \
             `auth.login_failures_per_minute` failed logins for one e-mail, or from one source \
             address, within a minute, further logins (even with the right password) are 429 \
             until the window ends; the throttle counts unknown e-mails like known ones, so it \
             does not tell which are registered. A successful login does not count.",
        )
        .public()
        .body::<LoginRequest>()
        .ok::<LoginResponse>(200, "A login token.")
        .body_errors("", &[])
        .error(
            401,
            "Wrong credentials.",
            &[(
                "invalid_credentials",
                "unknown e-mail or wrong password",
            )],
        )
        .error_with_retry(
            429,
            "Too many failed logins for this e-mail or from this address; retry after \
             `Retry-After` seconds.",
            &[(
                "rate_limited",
                "`auth.login_failures_per_minute` failures within the minute, for the e-mail \
                 (known or not) or the source address",
            )],
        )
        .api()
}

async fn login(mut ctx: Ctx) -> HandlerResult {
    let engine = ctx.engine()?;
    let LoginRequest { email, password } = ctx.json().await?;
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
    let access_token = ctx.app.auth.issue(user_id, now_seconds)?;
    Ok(http::json(
        StatusCode::OK,
        &LoginResponse {
            access_token,
            token_type: TokenType::Bearer,
            expires_in: ctx.app.auth.ttl_seconds(),
            user_id,
        },
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

fn get_user_doc() -> Op {
    token_optional(
        Op::new("getUser", "social")
            .summary("Get a user")
            .description(
                "`email` is included only for the user itself (user token) or admin. The token \
                 is optional; a token that is present but not valid is 401.",
            ),
    )
    .parameter(user_id())
    .ok::<User>(200, "The user.")
    .query_errors(None)
    .error(
        404,
        "Not found.",
        &[(
            "not_found",
            "no such user, or `id` is not an unsigned 64-bit integer",
        )],
    )
    .api()
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
        &User::of(user, viewer.sees_email_of(id)),
    ))
}

fn list_users_doc() -> Op {
    token_optional(
        Op::new("listUsers", "social")
            .summary("List users")
            .description(
                "Users by id, keyset-paginated. `email` is included only for the caller's own \
                 user (user token) or for every user (admin token). The token is optional; a \
                 token that is present but not valid is 401.",
            ),
    )
    .page()
    .ok::<UserPage>(200, "A page of users, by id.")
    .query_errors(Some(PAGE_INVALID_FIELD))
    .api()
}

/// A token is optional here; a present but invalid one is 401.
async fn list_users(ctx: Ctx) -> HandlerResult {
    let viewer = ctx.viewer().await?;
    let mut query = ctx.query()?;
    let page = query.page()?;
    query.finish()?;
    let after = page.after()?;
    let engine = ctx.engine()?;
    let users = engine.social().users(after, page.limit).await?;
    Ok(http::json(
        StatusCode::OK,
        &UserPage {
            items: users
                .items
                .into_iter()
                .map(|user| {
                    let show_email = viewer.sees_email_of(user.id);
                    User::of(user, show_email)
                })
                .collect(),
            next_cursor: NextCursor(users.next),
        },
    ))
}

fn create_post_doc() -> Op {
    Op::new("createPost", "social")
            .summary("Create a post")
            .description("Creates a post by the authenticated user.")
.user()
    .body::<CreatePostRequest>()
    .ok::<Post>(201, "The new post.")
    .link(
        "GetPost",
        "getPost",
        &[("id", "$response.body#/id")],
        "The new post.",
    )
    .link(
        "LikePost",
        "likePost",
        &[("id", "$response.body#/id")],
        "Like the new post (its author gets 403 `own_post`).",
    )
    .link(
        "UnlikePost",
        "unlikePost",
        &[("id", "$response.body#/id")],
        "Take back a like of the new post.",
    )
    .link(
        "ListLikes",
        "listLikes",
        &[("id", "$response.body#/id")],
        "The new post's like records.",
    )
    .body_errors(
        "",
        &[(
            "invalid_text",
            "`text` is empty (or only whitespace) or longer than 5000 bytes; `field` is `text`",
        )],
    )
    .error(
        403,
        "Refused by a ground rule.",
        &[(
            "post_limit_reached",
            "`limits.max_posts_per_user` is set and the user has written that many posts",
        )],
    )
    .error(
        404,
        "Not found.",
        &[("not_found", "the token's user does not exist")],
    )
    .api()
}

async fn create_post(mut ctx: Ctx) -> HandlerResult {
    let user_id = ctx.user().await?;
    let engine = ctx.engine()?;
    let CreatePostRequest { text } = ctx.json().await?;
    let post = engine.social().create_post(user_id, text).await?;
    Ok(http::json(StatusCode::CREATED, &Post::from(post)))
}

fn get_post_doc() -> Op {
    Op::new("getPost", "social")
        .summary("Get a post")
        .description("A post with its current like count.")
        .public()
        .parameter(post_id())
        .ok::<Post>(200, "The post.")
        .query_errors(None)
        .error(404, "Not found.", &[NO_SUCH_POST])
        .api()
}

const NO_SUCH_POST: (&str, &str) = (
    "not_found",
    "no such post, or `id` is not an unsigned 64-bit integer",
);

async fn get_post(ctx: Ctx) -> HandlerResult {
    let id = ctx.param_u64("id")?;
    ctx.query()?.finish()?;
    let post = ctx.engine()?.social().post(id).await?;
    Ok(http::json(StatusCode::OK, &Post::from(post)))
}

fn list_posts_doc() -> Op {
    Op::new("listPosts", "social")
        .summary("List posts")
        .description(
            "Posts by id, keyset-paginated, optionally only those of one author and/or only \
             those with zero likes. An unknown `author_id` gives an empty page, not 404.",
        )
        .public()
        .parameter(openapi::query_parameter(
            "author_id",
            "Only this author's posts (unknown author: empty page).",
            openapi::integer("uint64").into(),
        ))
        .parameter(openapi::query_parameter(
            "zero_likes",
            "`true`: only posts with no likes.",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .default(Some(serde_json::json!(false)))
                .into(),
        ))
        .page()
        .ok::<PostPage>(200, "A page of posts, by id.")
        .query_errors(Some(
            "`limit` outside 1..=500 or not a number, a `cursor` this list did not issue, or a \
             parameter given twice; `field` names it; `author_id` not an unsigned integer, or \
             `zero_likes` not `true`/`false`",
        ))
        .api()
}

async fn list_posts(ctx: Ctx) -> HandlerResult {
    let mut query = ctx.query()?;
    let author_id = query.optional_u64("author_id")?;
    let zero_likes = query.optional_bool("zero_likes")?.unwrap_or(false);
    let page = query.page()?;
    query.finish()?;
    let after = page.after()?;
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
    Ok(http::json(
        StatusCode::OK,
        &PostPage {
            items: posts.items.into_iter().map(Post::from).collect(),
            next_cursor: NextCursor(posts.next),
        },
    ))
}

/// The links of a like's or an unlike's answer.
fn like_links(op: Op) -> Op {
    op.link(
        "GetPost",
        "getPost",
        &[("id", "$response.body#/post_id")],
        "The post liked or unliked.",
    )
    .link(
        "ListLikes",
        "listLikes",
        &[("id", "$response.body#/post_id")],
        "Its like records.",
    )
}

const NO_SUCH_POST_OR_USER: (&str, &str) = (
    "not_found",
    "no such post (or user), or `id` is not an unsigned 64-bit integer",
);

fn like_doc() -> Op {
    like_links(
        Op::new("likePost", "social")
                .summary("Like a post")
                .description(
                    "The authenticated user likes the post. A (user, post) pair has one like \
                     record; liking again after an unlike turns it back on. The body is \
                     optional: empty or `{}` (any field is `unknown_field`).",
                )
.user()
        .parameter(post_id())
        .optional_body::<EmptyObject>()
        .ok::<LikeOutcome>(201, "Liked; `likes` is the post's new count."),
    )
    .body_errors("", &[])
    .error(
        403,
        "Refused.",
        &[
            ("own_post", "users cannot like their own posts"),
            (
                "like_limit_reached",
                "`limits.max_likes_per_user` is set and the user has that many likes on",
            ),
        ],
    )
    .error(404, "Not found.", &[NO_SUCH_POST_OR_USER])
    .error(
        409,
        "Conflict.",
        &[(
            "already_liked",
            "the user's like on this post is already on",
        )],
    )
    .api()
}

fn unlike_doc() -> Op {
    like_links(
        Op::new("unlikePost", "social")
                .summary("Take back a like")
                .description(
                    "Turns the authenticated user's like on the post off (the record is kept, \
                     `liked: false`). The body is optional: empty or `{}` (any field is \
                     `unknown_field`).",
                )
.user()
        .parameter(post_id())
        .optional_body::<EmptyObject>()
        .ok::<LikeOutcome>(200, "Unliked; `likes` is the post's new count."),
    )
    .body_errors("", &[])
    .error(404, "Not found.", &[NO_SUCH_POST_OR_USER])
    .error(
        409,
        "Conflict.",
        &[(
            "not_liked",
            "the user has no like on this post that is on (always so for the user's own post, \
             which it cannot like)",
        )],
    )
    .api()
}

/// The hot path of the social load: no JSON is parsed when the body is empty.
async fn set_like(mut ctx: Ctx, on: bool) -> HandlerResult {
    let user_id = ctx.user().await?;
    let post_id = ctx.param_u64("id")?;
    let engine = ctx.engine()?;
    let EmptyObject {} = ctx.json_or_empty().await?;
    let social = engine.social();
    let (outcome, status) = if on {
        (social.like(user_id, post_id).await?, StatusCode::CREATED)
    } else {
        (social.unlike(user_id, post_id).await?, StatusCode::OK)
    };
    Ok(http::json(status, &LikeOutcome::from(outcome)))
}

fn list_likes_doc() -> Op {
    Op::new("listLikes", "social")
        .summary("List a post's like records")
        .description("Every like record of the post (on and off), by user id, keyset-paginated.")
        .public()
        .parameter(post_id())
        .page()
        .ok::<LikeRecordPage>(200, "A page of like records, by user id.")
        .query_errors(Some(PAGE_INVALID_FIELD))
        .error(404, "Not found.", &[NO_SUCH_POST])
        .api()
}

async fn list_likes(ctx: Ctx) -> HandlerResult {
    let post_id = ctx.param_u64("id")?;
    let mut query = ctx.query()?;
    let page = query.page()?;
    query.finish()?;
    let after = page.after()?;
    let likes = ctx
        .engine()?
        .social()
        .likes(post_id, after, page.limit)
        .await?;
    Ok(http::json(
        StatusCode::OK,
        &LikeRecordPage {
            items: likes.items.into_iter().map(LikeRecord::from).collect(),
            next_cursor: NextCursor(likes.next),
        },
    ))
}

fn stats_doc() -> Op {
    Op::new("socialStats", "social")
        .summary("Social totals")
        .description("Totals over all users and posts.")
        .public()
        .ok::<SocialStats>(200, "The totals.")
        .query_errors(None)
        .api()
}

async fn stats(ctx: Ctx) -> HandlerResult {
    ctx.query()?.finish()?;
    let stats = ctx.engine()?.social().stats().await?;
    Ok(http::json(StatusCode::OK, &SocialStats::from(stats)))
}

fn check_invariants_doc() -> Op {
    Op::new("checkSocialInvariants", "admin")
        .summary("Check the social invariants (admin)")
        .description(
            "Recomputes every social counter from the records (the engine's invariant checker) \
             and lists each difference; an empty list means every invariant holds. Costs \
             O(users + posts + likes): for operators, tests and the bot, not hot paths.",
        )
        .admin()
        .ok::<InvariantReport>(200, "The differences found (empty when sound).")
        .query_errors(None)
        .api()
}

/// Admin: recomputes every social counter from the records (the engine's invariant checker).
/// Costs O(users + posts + likes); meant for operators, tests and the bot, not for hot paths.
async fn check_invariants(ctx: Ctx) -> HandlerResult {
    ctx.app.auth.require_admin(ctx.authorization())?;
    ctx.query()?.finish()?;
    let differences = ctx.engine()?.social().check().await?;
    Ok(http::json(
        StatusCode::OK,
        &InvariantReport {
            differences: differences
                .into_iter()
                .map(|difference| Difference {
                    what: difference.what,
                    expected: difference.expected,
                    found: difference.found,
                })
                .collect(),
        },
    ))
}
