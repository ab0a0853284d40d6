//! The work domain's events ([`WorkEvent`], one enum for the pool's and the buckets') and what
//! they carry. Variants are encoded by position (see `codec`): new ones go last, and the old
//! ones stay, because format-4 logs are still read.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{valid_key, ExternalIdHash, Outcome, TokenHash};
use crate::clock::Millis;
use crate::runtime::DomainEvent;

/// One result in an item's history, as stored and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub outcome: Outcome,
    pub client_id: u64,
    pub at_ms: Millis,
    pub detail: Option<Box<str>>,
}

/// Every event of the work domain (see the module docs for which actor gets which).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkEvent {
    /// Pool: these keys are added unless known.
    ItemsAdded { items: Vec<(String, i32)> },
    /// Pool: buckets granted to `client_id` (formed ones name their keys).
    Leased {
        client_id: u64,
        at_ms: Millis,
        grants: Vec<Grant>,
    },
    /// Pool: a done item returns to the pool, history kept.
    ItemRerun { key: String },
    /// Pool: a dead-lettered bucket's unfinished items return to the free pool.
    DeadRequeued { bucket_id: u64 },
    /// Pool, format 4 only: a registration that carried the `external_id` in plain text. Never
    /// written any more; replay hashes it (the pool applies it as [`WorkEvent::ClientRegistered`]).
    /// Kept at its place in the enum, because the encoding names variants by position.
    LegacyClientRegistered {
        client_id: u64,
        screen_name: String,
        external_id: String,
        token_hash: TokenHash,
        at_ms: Millis,
        source: Option<IpAddr>,
    },
    /// Pool: a client unregistered; its token stops working.
    ClientUnregistered { client_id: u64, at_ms: Millis },
    /// Pool: one of the client's updates was refused.
    UpdateRejected { client_id: u64, at_ms: Millis },
    /// Pool (from a bucket): new results, discovered keys, and whether the bucket completed.
    ItemsReported {
        bucket_id: u64,
        epoch: u32,
        client_id: u64,
        results: Vec<(String, ResultRecord)>,
        discovered: Vec<String>,
        completed: bool,
        at_ms: Millis,
    },
    /// Pool (from a bucket): the lease at `epoch` expired; the bucket is open again or dead.
    BucketExpired {
        bucket_id: u64,
        epoch: u32,
        client_id: u64,
        expiries: u32,
        dead: bool,
        at_ms: Millis,
    },
    /// Pool (from a bucket): the lease at `epoch` was given back (unregister).
    BucketReleased {
        bucket_id: u64,
        epoch: u32,
        client_id: u64,
    },
    /// Pool (from a bucket): the client was active at `at_ms`.
    ClientSeen { client_id: u64, at_ms: Millis },
    /// Bucket (from the pool): leased to `client_id` at `epoch`; `keys` when just formed.
    LeaseGranted {
        client_id: u64,
        epoch: u32,
        expires_at_ms: Millis,
        keys: Option<KeyList>,
    },
    /// Bucket (from the pool): the holder at `epoch` unregistered; release at once.
    LeaseRevoked { epoch: u32 },
    /// Bucket: these positions (in the bucket's sorted keys) have a result; lease extended.
    ResultsRecorded {
        epoch: u32,
        positions: Vec<u32>,
        expires_at_ms: Millis,
    },
    /// Bucket: heartbeat.
    LeaseExtended { epoch: u32, expires_at_ms: Millis },
    /// Bucket: the lease at `epoch` expired (the `expiries`-th time); `dead` = dead-lettered.
    LeaseExpired {
        epoch: u32,
        expiries: u32,
        dead: bool,
    },
    /// Bucket: the lease at `epoch` was released.
    LeaseReleased { epoch: u32 },
    /// Pool: a client registered (new, or again with a rotated token). Appended last: variants
    /// are encoded by position, and the ones above are read from format-4 logs.
    ClientRegistered {
        client_id: u64,
        screen_name: String,
        external_id_hash: ExternalIdHash,
        token_hash: TokenHash,
        at_ms: Millis,
        source: Option<IpAddr>,
    },
}

impl DomainEvent for WorkEvent {
    const TAG: u32 = 2;
}

/// One bucket granted by a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub bucket_id: u64,
    pub epoch: u32,
    pub expires_at_ms: Millis,
    /// The keys of a bucket formed by this lease; `None` for a reopened bucket.
    pub formed: Option<KeyList>,
}

/// Item keys packed in one string, sorted, separated by `\n` (a key has no control
/// characters): a bucket's keys cost one allocation in events and state, not one per key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyList(String);

impl KeyList {
    /// Packs `keys` in the order given (callers pass them sorted).
    pub fn from_sorted<'a>(keys: impl IntoIterator<Item = &'a str>) -> KeyList {
        let mut packed = String::new();
        for key in keys {
            debug_assert!(valid_key(key), "{key:?}");
            if !packed.is_empty() {
                packed.push('\n');
            }
            packed.push_str(key);
        }
        KeyList(packed)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split('\n').filter(|key| !key.is_empty())
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The byte offset where each key starts.
    pub(crate) fn starts(&self) -> Vec<u32> {
        let mut starts = Vec::new();
        if !self.0.is_empty() {
            starts.push(0);
            starts.extend(
                self.0
                    .bytes()
                    .enumerate()
                    .filter(|(_, byte)| *byte == b'\n')
                    .map(|(at, _)| at as u32 + 1),
            );
        }
        starts
    }

    /// The key at `position`, given `starts` from [`KeyList::starts`].
    pub(crate) fn key<'a>(&'a self, starts: &[u32], position: usize) -> &'a str {
        let start = starts[position] as usize;
        let end = starts
            .get(position + 1)
            .map_or(self.0.len(), |next| *next as usize - 1);
        &self.0[start..end]
    }
}
