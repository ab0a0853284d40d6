//! The client registry: registration (a new client, or a known `external_id` digest whose
//! token is rotated), token verification (a cache of verified tokens in front of the hash),
//! per-client counters, the buckets each client holds, and the per-source registration limit
//! (rebuilt from events, never persisted).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Pool, PoolReply};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::runtime::{Ctx, Decision, Event};
use crate::work::credentials::unauthenticated;
use crate::work::{
    external_id_digest, token_digest, ClientStats, ExternalIdHash, TokenHash, WorkEvent,
};

/// Verified tokens kept in memory (never persisted), so the hash is paid once per token.
const VERIFIED_TOKENS_MAX: usize = 16_384;

/// The rate limiter's window.
const RATE_WINDOW_MS: u64 = 60_000;

/// Source addresses the registration limiter tracks (~64 bytes each). When full, expired
/// windows are dropped, then all (forgetting counts is safe; refusing new sources would not be).
/// A constant because `apply`, which maintains the table, has no config.
const RATE_SOURCES_MAX: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Client {
    pub(super) screen_name: String,
    pub(super) external_id_hash: ExternalIdHash,
    pub(super) token_hash: TokenHash,
    pub(super) active: bool,
    pub(super) registered_at_ms: Millis,
    pub(super) last_seen_at_ms: Option<Millis>,
    pub(super) assigned: u64,
    pub(super) completed: u64,
    pub(super) expired: u64,
    pub(super) rejected: u64,
}

/// A client as format 4 stored it, with its `external_id` in plain text. Read only, to migrate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LegacyClient {
    pub(super) screen_name: String,
    pub(super) external_id: String,
    pub(super) token_hash: TokenHash,
    pub(super) active: bool,
    pub(super) registered_at_ms: Millis,
    pub(super) last_seen_at_ms: Option<Millis>,
    pub(super) assigned: u64,
    pub(super) completed: u64,
    pub(super) expired: u64,
    pub(super) rejected: u64,
}

impl From<LegacyClient> for Client {
    fn from(legacy: LegacyClient) -> Client {
        Client {
            screen_name: legacy.screen_name,
            external_id_hash: external_id_digest(&legacy.external_id),
            token_hash: legacy.token_hash,
            active: legacy.active,
            registered_at_ms: legacy.registered_at_ms,
            last_seen_at_ms: legacy.last_seen_at_ms,
            assigned: legacy.assigned,
            completed: legacy.completed,
            expired: legacy.expired,
            rejected: legacy.rejected,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RateWindow {
    start_ms: Millis,
    count: u32,
}

/// The refusal of a registration beyond the per-source limit.
fn rate_limited(retry_after_ms: u64) -> Error {
    Error::RateLimited {
        message: "too many registrations from this source address".into(),
        retry_after_ms,
    }
}

impl Pool {
    pub(super) fn held_count(&self, client_id: u64) -> usize {
        self.held.get(&client_id).copied().unwrap_or(0)
    }

    pub(super) fn take_hold(&mut self, client_id: u64, bucket_id: u64) {
        if self.client_buckets.insert((client_id, bucket_id)) {
            *self.held.entry(client_id).or_insert(0) += 1;
        }
    }

    pub(super) fn release_hold(&mut self, client_id: u64, bucket_id: u64) {
        if self.client_buckets.remove(&(client_id, bucket_id)) {
            if let Some(count) = self.held.get_mut(&client_id) {
                *count -= 1;
                if *count == 0 {
                    self.held.remove(&client_id);
                }
            }
        }
    }

    /// Verifies a client token: from the cache when the client's current hash still matches,
    /// else by hashing it.
    pub(super) fn verify(&self, token: &str) -> Result<u64> {
        let cached = self.verified.borrow().get(token).copied();
        if let Some((client_id, hash)) = cached {
            if self
                .clients
                .get(&client_id)
                .is_some_and(|client| client.active && client.token_hash == hash)
            {
                return Ok(client_id);
            }
        }
        let hash = token_digest(token);
        let client_id = *self.by_token.get(&hash).ok_or_else(unauthenticated)?;
        if !self
            .clients
            .get(&client_id)
            .is_some_and(|client| client.active)
        {
            return Err(unauthenticated());
        }
        let mut verified = self.verified.borrow_mut();
        if verified.len() >= VERIFIED_TOKENS_MAX {
            verified.clear();
        }
        verified.insert(token.into(), (client_id, hash));
        Ok(client_id)
    }

    pub(super) fn touch_client(&mut self, client_id: u64, at_ms: Millis) {
        if let Some(client) = self.clients.get_mut(&client_id) {
            if client.last_seen_at_ms.is_none_or(|seen| seen < at_ms) {
                client.last_seen_at_ms = Some(at_ms);
                self.dirty.clients.insert(client_id);
            }
        }
    }

    pub(super) fn client_stats(&self, client_id: u64, client: &Client) -> ClientStats {
        ClientStats {
            client_id,
            screen_name: client.screen_name.clone(),
            active: client.active,
            buckets_assigned: client.assigned,
            buckets_completed: client.completed,
            buckets_expired: client.expired,
            rejected_updates: client.rejected,
            last_seen_at_ms: client.last_seen_at_ms,
            leased_buckets: self.held_count(client_id) as u64,
        }
    }

    pub(super) fn decide_register(
        &self,
        screen_name: String,
        external_id_hash: ExternalIdHash,
        token_hash: TokenHash,
        source: Option<IpAddr>,
        ctx: &Ctx<'_>,
    ) -> Result<Decision<PoolReply>> {
        let config = ctx.config.section::<crate::work::WorkConfig>();
        let limit = config.registrations_per_minute_per_source;
        if let (Some(source), true) = (source, limit > 0) {
            if let Some(window) = self.rate.get(&source) {
                let window_end_ms = window.start_ms + RATE_WINDOW_MS;
                if ctx.now_ms < window_end_ms && window.count >= limit {
                    return Err(rate_limited(window_end_ms - ctx.now_ms));
                }
            }
        }
        let (client_id, created) = match self.by_external.get(&external_id_hash) {
            Some(client_id) => (*client_id, false),
            None => {
                if self.clients.len() >= config.clients_max {
                    return Err(Error::Overloaded("work client registry"));
                }
                (self.next_client_id, true)
            }
        };
        Ok(Decision {
            events: vec![(
                ctx.key,
                Event::new(WorkEvent::ClientRegistered {
                    client_id,
                    screen_name,
                    external_id_hash,
                    token_hash,
                    at_ms: ctx.now_ms,
                    source,
                }),
            )],
            reply: PoolReply::Registered { client_id, created },
        })
    }

    /// A registration: a new client, or a known one with its token rotated (the old token
    /// stops working at once).
    pub(super) fn apply_registered(
        &mut self,
        client_id: u64,
        screen_name: &str,
        external_id_hash: ExternalIdHash,
        token_hash: TokenHash,
        at_ms: Millis,
        source: Option<IpAddr>,
    ) {
        let client = self.clients.entry(client_id).or_insert_with(|| Client {
            screen_name: String::new(),
            external_id_hash,
            token_hash,
            active: false,
            registered_at_ms: at_ms,
            last_seen_at_ms: None,
            assigned: 0,
            completed: 0,
            expired: 0,
            rejected: 0,
        });
        if client.active {
            self.by_token.remove(&client.token_hash);
        }
        client.screen_name = screen_name.to_string();
        client.token_hash = token_hash;
        client.active = true;
        self.by_token.insert(token_hash, client_id);
        self.by_external.insert(external_id_hash, client_id);
        if client_id >= self.next_client_id {
            self.next_client_id = client_id + 1;
            self.dirty.meta = true;
        }
        self.dirty.clients.insert(client_id);
        self.touch_client(client_id, at_ms);
        if let Some(source) = source {
            self.count_registration(source, at_ms);
        }
    }

    /// Indexes a client read from a snapshot.
    pub(super) fn load_client(&mut self, client_id: u64, client: Client) {
        self.by_external.insert(client.external_id_hash, client_id);
        if client.active {
            self.by_token.insert(client.token_hash, client_id);
        }
        self.clients.insert(client_id, client);
    }

    pub(super) fn count_registration(&mut self, source: IpAddr, at_ms: Millis) {
        if let Some(window) = self.rate.get_mut(&source) {
            if at_ms < window.start_ms + RATE_WINDOW_MS {
                window.count += 1;
            } else {
                *window = RateWindow {
                    start_ms: at_ms,
                    count: 1,
                };
            }
            return;
        }
        if self.rate.len() >= RATE_SOURCES_MAX {
            self.rate
                .retain(|_, window| at_ms < window.start_ms + RATE_WINDOW_MS);
            if self.rate.len() >= RATE_SOURCES_MAX {
                self.rate.clear();
            }
        }
        self.rate.insert(
            source,
            RateWindow {
                start_ms: at_ms,
                count: 1,
            },
        );
    }
}
