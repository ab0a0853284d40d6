//! Client credentials: the shape of a client token, the stored forms of a token and of an
//! `external_id` (digests; the plain values never reach the pool, the WAL or the store), and the
//! refusal of a missing or unknown token.

use crate::error::Error;

/// The prefix of every client token (never a JWT, which starts with `ey`).
pub const TOKEN_PREFIX: &str = "swc_";

/// Bytes of randomness in a client token (hex-encoded after the prefix).
const TOKEN_SECRET_BYTES: usize = 32;

/// A client token's stored form.
pub type TokenHash = [u8; 32];

/// A client `external_id`'s stored form (see [`external_id_digest`]).
pub type ExternalIdHash = [u8; 32];

/// A fresh client token: the prefix and 32 random bytes in hex (from the OS-seeded CSPRNG).
pub(super) fn new_token() -> String {
    let secret: [u8; TOKEN_SECRET_BYTES] = rand::random();
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 2 * TOKEN_SECRET_BYTES);
    token.push_str(TOKEN_PREFIX);
    for byte in secret {
        token.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        token.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    token
}

/// True when `token` has the shape of a client token (cheap; checked before any hashing).
pub fn is_client_token(token: &str) -> bool {
    token.len() == TOKEN_PREFIX.len() + 2 * TOKEN_SECRET_BYTES
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The stored form of a token: Argon2id at its minimum cost (8 KiB, one pass, ≈ 14 µs). The
/// token carries 256 random bits, so no stretching is needed; argon2 is used because it is the
/// engine's one hash dependency. The pool caches verified tokens in memory, so it is paid once
/// per token, not per request.
pub(crate) fn token_digest(token: &str) -> TokenHash {
    let params = argon2::Params::new(argon2::Params::MIN_M_COST, 1, 1, Some(32))
        // Invariant: constant, valid parameters.
        .expect("valid argon2 parameters");
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    hasher
        .hash_password_into(token.as_bytes(), b"switchyard.work.token", &mut out)
        // Invariant: the salt (21 bytes) and output (32 bytes) are within argon2's limits.
        .expect("argon2 accepts the token hash inputs");
    out
}

/// The stored form of an `external_id`: BLAKE2b-256 of a domain tag and the id. A fast hash is
/// enough here: the id is looked up by its digest (so no per-client salt), registration is rate
/// limited per source, and a valid id has at least `EXTERNAL_ID_BYTES_MIN` characters of a
/// 67-letter alphabet, so guessing one is out of reach; what the digest protects against is a
/// reader of the data dir, a log or a backup learning the secret itself.
pub fn external_id_digest(external_id: &str) -> ExternalIdHash {
    use blake2::Digest as _;
    let mut hasher = blake2::Blake2b::<blake2::digest::consts::U32>::new();
    hasher.update(b"switchyard.work.external_id\0");
    hasher.update(external_id.as_bytes());
    hasher.finalize().into()
}

pub(super) fn unauthenticated() -> Error {
    Error::Unauthenticated {
        code: "unauthenticated",
        message: "missing, unknown or revoked client token".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_their_shape_and_differ() {
        let a = new_token();
        let b = new_token();
        assert!(is_client_token(&a) && is_client_token(&b));
        assert_ne!(a, b);
        assert!(!is_client_token("eyJhbGciOiJIUzI1NiJ9.e30.x"));
        assert!(!is_client_token(&a[..a.len() - 1]));
        assert_eq!(token_digest(&a), token_digest(&a));
        assert_ne!(token_digest(&a), token_digest(&b));
    }

    #[test]
    fn external_id_digests_are_stable_and_distinct() {
        let digest = external_id_digest("dora-secret-0001");
        assert_eq!(digest, external_id_digest("dora-secret-0001"));
        assert_ne!(digest, external_id_digest("dora-secret-0002"));
        // Pinned: the digest is stored, so changing it would orphan every registered client.
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hex, PINNED_DIGEST_OF_DORA);
    }

    /// BLAKE2b-256 of `switchyard.work.external_id\0dora-secret-0001`.
    const PINNED_DIGEST_OF_DORA: &str =
        "44eda3ca4fcec66d7aff911f8ae39949c5686bac03f938ac2d5209fe65dd514d";
}
