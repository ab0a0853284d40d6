//! Authentication: JWT login tokens for users (HS256, claims `sub`/`iat`/`exp`/`role`, optional
//! `nbf`), the admin bearer token, and the JWT secret's life cycle.
//!
//! The secret comes from `SWITCHYARD_JWT_SECRET`; without it one is generated on first start and
//! kept in `<data dir>/jwt_secret` (mode 0600), so tokens survive restarts.
//!
//! A token's claims are checked here ([`Auth::verify`]); whether its `sub` names a user is the
//! engine's to say, so a token verified for the first time comes back
//! [`Verified::Unconfirmed`] and is remembered ([`Auth::confirm`]) only once the caller has found
//! the user (`routes::social` does both).
//!
//! Invariants: an expired, not-yet-valid (`nbf` or `iat` more than `auth.clock_skew_seconds` in
//! the future), tampered, wrongly signed or malformed token is 401 `unauthenticated`; tokens are
//! never logged; the admin token is compared in constant time.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Error};

/// The name of the generated secret file inside the data directory.
pub const SECRET_FILE: &str = "jwt_secret";
/// Bytes of a generated secret (256 bits, the HS256 key size).
const SECRET_BYTES: usize = 32;
/// `auth.clock_skew_seconds` when not configured.
pub const CLOCK_SKEW_SECONDS_DEFAULT: u64 = 5;

/// What a login token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string (JWT convention).
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub role: String,
    /// Not before (Unix seconds); the server never sets it, but honours it when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// A user token whose signature and claims hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Seen before, and its user was found then (users are never deleted).
    Known(u64),
    /// First seen: the caller must find user `user` before trusting it, then call
    /// [`Auth::confirm`] with `exp`.
    Unconfirmed { user: u64, exp: u64 },
}

/// Token issuing and checking for one server.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_seconds: u64,
    /// How far in the future `nbf` and `iat` may be (clocks of issuers differ a little).
    clock_skew_seconds: u64,
    admin_token: Option<String>,
    verified: VerifiedTokens,
}

/// Tokens that passed a full verification: token → (user id, `exp`). Verifying a JWT (base64,
/// JSON of header and claims, HMAC) was ~8% of the request thread under an HTTP like load; a hit
/// skips it. Sound because the key is the exact token string (a changed byte misses and gets the
/// full check) and `exp` is checked again on every hit. Bounded: emptied when full
/// (`auth.verified_token_cache_entries`; 0 turns it off).
struct VerifiedTokens {
    entries: std::sync::Mutex<HashMap<Box<str>, (u64, u64)>>,
    entries_max: usize,
}

impl VerifiedTokens {
    fn new(entries_max: usize) -> Self {
        VerifiedTokens {
            entries: std::sync::Mutex::new(HashMap::new()),
            entries_max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, (u64, u64)>> {
        // Invariant: nothing panics while the map is held (only map operations).
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The user of a token verified before, unless it has expired at `now` (Unix seconds; the
    /// same rule as the full check with no leeway: valid while `exp >= now`).
    fn get(&self, token: &str, now: u64) -> Option<u64> {
        if self.entries_max == 0 {
            return None;
        }
        let mut entries = self.lock();
        match entries.get(token) {
            Some(&(user, exp)) if exp >= now => Some(user),
            Some(_) => {
                entries.remove(token);
                None
            }
            None => None,
        }
    }

    fn insert(&self, token: &str, user: u64, exp: u64) {
        if self.entries_max == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.entries_max {
            entries.clear();
        }
        entries.insert(token.into(), (user, exp));
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("ttl_seconds", &self.ttl_seconds)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Builds from a configured secret, or from the one kept in `data_dir` (generated if absent).
    pub fn load(
        configured_secret: Option<&str>,
        data_dir: &Path,
        ttl_seconds: u64,
        admin_token: Option<String>,
    ) -> Result<Auth, Error> {
        let secret = match configured_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => load_or_create_secret(data_dir)?,
        };
        Ok(Auth::from_secret(&secret, ttl_seconds, admin_token))
    }

    pub fn from_secret(secret: &[u8], ttl_seconds: u64, admin_token: Option<String>) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        // `nbf` and `iat` are checked in `verify`, against `clock_skew_seconds`.
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_seconds,
            clock_skew_seconds: CLOCK_SKEW_SECONDS_DEFAULT,
            admin_token,
            verified: VerifiedTokens::new(0),
        }
    }

    /// Accepts `nbf` and `iat` up to `seconds` in the future (`auth.clock_skew_seconds`).
    pub fn with_clock_skew(mut self, seconds: u64) -> Auth {
        self.clock_skew_seconds = seconds;
        self
    }

    /// Remembers up to `entries` verified tokens (see `VerifiedTokens`); 0 = verify every time.
    pub fn with_verified_cache(mut self, entries: usize) -> Auth {
        self.verified = VerifiedTokens::new(entries);
        self
    }

    pub fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    /// Issues a token for `user_id` at `now_seconds` (Unix time).
    pub fn issue(&self, user_id: u64, now_seconds: u64) -> Result<String, ApiError> {
        self.sign(&Claims {
            sub: user_id.to_string(),
            iat: now_seconds,
            exp: now_seconds + self.ttl_seconds,
            role: "user".into(),
            nbf: None,
        })
    }

    /// Signs arbitrary claims (the tests forge `nbf`, `iat` and `sub` with it).
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(
            |error| {
                tracing::error!(%error, "cannot sign a token");
                ApiError::internal()
            },
        )
    }

    /// Checks a user token: signature, `exp`, `nbf` and `iat` (not beyond the clock skew in the
    /// future), `role`, and that `sub` is a user id. Whether that user exists is the caller's to
    /// check for a [`Verified::Unconfirmed`] token.
    pub fn verify(&self, token: &str) -> Result<Verified, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(user) = self.verified.get(token, now) {
            return Ok(Verified::Known(user));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| {
                let reason = match error.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "the token's signature is not valid"
                    }
                    _ => "the token is not valid",
                };
                ApiError::unauthenticated(reason)
            })?;
        let claims = data.claims;
        let latest = now.saturating_add(self.clock_skew_seconds);
        if claims.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(ApiError::unauthenticated(
                "the token is not valid yet (nbf)",
            ));
        }
        if claims.iat > latest {
            return Err(ApiError::unauthenticated(
                "the token is issued in the future (iat)",
            ));
        }
        if claims.role != "user" {
            return Err(ApiError::unauthenticated("the token is not a user token"));
        }
        let user = parse_user_id(&claims.sub)
            .ok_or_else(|| ApiError::unauthenticated("the token's subject is not a user id"))?;
        Ok(Verified::Unconfirmed {
            user,
            exp: claims.exp,
        })
    }

    /// Remembers a token whose user the caller found, so its next use skips the checks (its
    /// `exp` is still checked on every use).
    pub fn confirm(&self, token: &str, user: u64, exp: u64) {
        self.verified.insert(token, user, exp);
    }

    /// Checks `Authorization: Bearer <admin token>`; 401 without a valid one, 403 when no admin
    /// token is configured at all (admin routes are then closed).
    pub fn require_admin(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = &self.admin_token else {
            return Err(ApiError::forbidden(
                "forbidden",
                "no admin token is configured on this server",
            ));
        };
        let token = bearer(authorization)?;
        if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::unauthenticated("not the admin token"))
        }
    }

    /// True when `authorization` carries the admin token.
    pub fn is_admin(&self, authorization: Option<&str>) -> bool {
        self.admin_token.is_some() && self.require_admin(authorization).is_ok()
    }
}

/// A user id as JWT `sub` carries it: decimal digits, no sign or padding.
fn parse_user_id(sub: &str) -> Option<u64> {
    sub.bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| sub.parse().ok())
        .flatten()
}

/// The token of `Authorization: Bearer <token>` (401 when absent or of another scheme).
pub fn bearer(authorization: Option<&str>) -> Result<&str, ApiError> {
    let header = authorization
        .ok_or_else(|| ApiError::unauthenticated("an Authorization header is required"))?;
    let (scheme, token) = header
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthenticated("expected `Authorization: Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthenticated(
            "expected `Authorization: Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn load_or_create_secret(data_dir: &Path) -> Result<Vec<u8>, Error> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= SECRET_BYTES => return Ok(secret),
        Ok(_) => {
            return Err(Error::Config(format!(
                "{} is shorter than {SECRET_BYTES} bytes; remove it to generate a new secret \
                 (every issued token becomes invalid)",
                path.display()
            )))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(Error::io(format!("read {}", path.display()), error)),
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::io(format!("create {}", data_dir.display()), e))?;
    let secret: [u8; SECRET_BYTES] = rand::random();
    let hex: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    file.write_all(hex.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok(hex.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_tokens_expire_and_stay_bounded() {
        let cache = VerifiedTokens::new(2);
        cache.insert("a", 1, 100);
        assert_eq!(cache.get("a", 100), Some(1));
        assert_eq!(cache.get("a", 101), None, "expired: the full check decides");
        assert_eq!(cache.get("a", 50), None, "an expired entry is dropped");
        cache.insert("a", 1, 100);
        cache.insert("b", 2, 100);
        cache.insert("c", 3, 100);
        assert_eq!(cache.get("c", 0), Some(3));
        assert!(cache.lock().len() <= 2);
        let off = VerifiedTokens::new(0);
        off.insert("a", 1, 100);
        assert_eq!(off.get("a", 0), None);
    }

    #[test]
    fn tokens_sign_verify_and_reject_tampering_and_expiry() {
        // With the cache on: a verified token is remembered, a tampered one still fails.
        let auth = Auth::from_secret(b"0123456789abcdef0123456789abcdef", 60, None)
            .with_verified_cache(16);
        let now = jsonwebtoken::get_current_timestamp();
        let token = auth.issue(42, now).unwrap();
        assert_eq!(
            auth.verify(&token).unwrap(),
            Verified::Unconfirmed {
                user: 42,
                exp: now + 60
            },
            "not remembered before its user is confirmed"
        );
        assert!(matches!(
            auth.verify(&token),
            Ok(Verified::Unconfirmed { .. })
        ));
        auth.confirm(&token, 42, now + 60);
        assert_eq!(auth.verify(&token).unwrap(), Verified::Known(42));
        assert_eq!(bearer(Some(&format!("Bearer {token}"))).unwrap(), token);
        // Another secret's token is refused.
        let other = Auth::from_secret(b"another secret another secret!!!", 60, None);
        assert_eq!(other.verify(&token).unwrap_err().code(), "unauthenticated");
        // A flipped payload byte breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut payload = parts[1].clone().into_bytes();
        payload[3] = if payload[3] == b'A' { b'B' } else { b'A' };
        parts[1] = String::from_utf8(payload).unwrap();
        assert_eq!(
            auth.verify(&parts.join(".")).unwrap_err().code(),
            "unauthenticated"
        );
        // Expired.
        let old = auth.issue(42, now - 3600).unwrap();
        assert_eq!(auth.verify(&old).unwrap_err().code(), "unauthenticated");
        assert_eq!(bearer(None).unwrap_err().code(), "unauthenticated");
        assert_eq!(
            bearer(Some("Basic abc")).unwrap_err().code(),
            "unauthenticated"
        );
    }

    #[test]
    fn nbf_iat_role_and_sub_are_checked() {
        let auth =
            Auth::from_secret(b"0123456789abcdef0123456789abcdef", 60, None).with_clock_skew(5);
        let now = jsonwebtoken::get_current_timestamp();
        let claims = |iat: u64, nbf: Option<u64>, sub: &str, role: &str| Claims {
            sub: sub.into(),
            iat,
            exp: now + 600,
            role: role.into(),
            nbf,
        };
        let check = |claims: Claims, ok: bool| {
            let token = auth.sign(&claims).unwrap();
            assert_eq!(auth.verify(&token).is_ok(), ok, "{claims:?}");
        };
        check(claims(now, None, "7", "user"), true);
        check(claims(now + 3, Some(now + 3), "7", "user"), true); // within the skew
        check(claims(now, Some(now + 60), "7", "user"), false); // not valid yet
        check(claims(now + 60, None, "7", "user"), false); // issued in the future
        check(claims(now, None, "7", "admin"), false);
        for sub in ["", "x", "-7", "+7", " 7", "18446744073709551616"] {
            check(claims(now, None, sub, "user"), false);
        }
    }

    #[test]
    fn the_generated_secret_is_kept_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Auth::load(None, dir.path(), 60, None).unwrap();
        let token = first
            .issue(7, jsonwebtoken::get_current_timestamp())
            .unwrap();
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = Auth::load(None, dir.path(), 60, None).unwrap();
        assert!(
            matches!(
                second.verify(&token),
                Ok(Verified::Unconfirmed { user: 7, .. })
            ),
            "tokens survive a restart"
        );
    }

    #[test]
    fn admin_token_is_checked() {
        let auth = Auth::from_secret(
            b"0123456789abcdef0123456789abcdef",
            60,
            Some("s3cret".into()),
        );
        assert!(auth.require_admin(Some("Bearer s3cret")).is_ok());
        assert_eq!(
            auth.require_admin(Some("Bearer nope")).unwrap_err().code(),
            "unauthenticated"
        );
        let closed = Auth::from_secret(b"0123456789abcdef0123456789abcdef", 60, None);
        assert_eq!(
            closed
                .require_admin(Some("Bearer s3cret"))
                .unwrap_err()
                .code(),
            "forbidden"
        );
    }
}
