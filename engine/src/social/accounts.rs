//! The `Accounts` singleton: e-mail → user id, and user id allocation. Sign-up uniqueness is
//! decided here alone (case-insensitive), so it is race-free. Snapshot parts: `email/<key>` per
//! account and `next` (the next user id).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Enrichment, Page, Profile, SocialEvent, UserView};
use crate::error::{Error, Result};
use crate::runtime::{ActorKey, Ctx, Decision, Entity, Event, Kind};
use crate::store::{SnapshotBatch, Store};

/// The id of the one `Accounts` actor.
pub const ACCOUNTS_ID: u64 = 0;

/// The first user id sign-up allocates; ids only grow from it, so no user ever has an id below
/// it (the server's compatibility routes keep their orders under user 0 for that reason).
pub const FIRST_USER_ID: u64 = 1;

#[derive(Debug)]
pub enum AccountsCommand {
    Register {
        email: String,
        password_hash: String,
        full_name: Option<String>,
        enrichment: Option<Enrichment>,
    },
    Lookup {
        email: String,
    },
    List {
        after: Option<u64>,
        limit: usize,
    },
    Count,
}

#[derive(Debug)]
pub enum AccountsReply {
    Registered(UserView),
    Found(Option<u64>),
    Ids(Page<u64>),
    Count(u64),
}

impl AccountsReply {
    pub fn user_id(self) -> Option<u64> {
        match self {
            AccountsReply::Found(found) => found,
            _ => None,
        }
    }
    pub fn into_ids(self) -> Page<u64> {
        match self {
            AccountsReply::Ids(page) => page,
            _ => Page {
                items: Vec::new(),
                next: None,
            },
        }
    }
    pub fn into_count(self) -> u64 {
        match self {
            AccountsReply::Count(count) => count,
            _ => 0,
        }
    }
}

impl From<AccountsReply> for Result<UserView> {
    fn from(reply: AccountsReply) -> Self {
        match reply {
            AccountsReply::Registered(view) => Ok(view),
            _ => Err(Error::Unavailable("unexpected reply kind")),
        }
    }
}

#[derive(Debug, Default)]
pub struct Accounts {
    by_email: BTreeMap<String, u64>,
    ids: BTreeSet<u64>,
    next_id: u64,
    dirty: Vec<String>,
    next_dirty: bool,
}

const EMAIL: &[u8] = b"email/";
const NEXT: &[u8] = b"next";

#[derive(Debug, Serialize, Deserialize)]
enum Part {
    Account(u64),
    Next(u64),
}

/// The uniqueness key of an e-mail: the whole address, lower-cased.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Entity for Accounts {
    type Event = SocialEvent;
    const KIND: Kind = super::ACCOUNTS;
    type Command = AccountsCommand;
    type Reply = AccountsReply;

    fn load(_id: u64, store: &Store) -> Result<Self> {
        let key = ActorKey::new(super::ACCOUNTS, ACCOUNTS_ID);
        let mut accounts = Accounts {
            next_id: FIRST_USER_ID,
            ..Accounts::default()
        };
        for (name, part) in store.scan::<Part>(key)? {
            match part {
                Part::Account(user_id) => {
                    let email = String::from_utf8(name[EMAIL.len()..].to_vec())
                        .map_err(|_| Error::Store("accounts: bad e-mail key".into()))?;
                    accounts.by_email.insert(email, user_id);
                    accounts.ids.insert(user_id);
                }
                Part::Next(next) => accounts.next_id = next,
            }
        }
        Ok(accounts)
    }

    fn decide(&self, command: AccountsCommand, ctx: &Ctx<'_>) -> Result<Decision<AccountsReply>> {
        match command {
            AccountsCommand::Register {
                email,
                password_hash,
                full_name,
                enrichment,
            } => {
                let key = email_key(&email);
                if self.by_email.contains_key(&key) {
                    return Err(Error::conflict(
                        "email_taken",
                        "this e-mail address is already registered",
                    ));
                }
                let user_id = self.next_id;
                let profile = Profile {
                    id: user_id,
                    email,
                    password_hash,
                    full_name,
                    created_at_ms: ctx.now_ms,
                    enrichment,
                };
                let view = UserView {
                    id: user_id,
                    email: profile.email.clone(),
                    full_name: profile.full_name.clone(),
                    posts_count: 0,
                    likes_given: 0,
                    created_at_ms: profile.created_at_ms,
                    enrichment: profile.enrichment.clone(),
                };
                Ok(Decision {
                    events: vec![
                        (
                            ctx.key,
                            Event::new(SocialEvent::AccountRegistered {
                                email_key: key,
                                user_id,
                            }),
                        ),
                        (
                            ActorKey::new(super::USER, user_id),
                            Event::new(SocialEvent::UserCreated { profile }),
                        ),
                    ],
                    reply: AccountsReply::Registered(view),
                })
            }
            AccountsCommand::Lookup { email } => Ok(Decision::read(AccountsReply::Found(
                self.by_email.get(&email_key(&email)).copied(),
            ))),
            AccountsCommand::List { after, limit } => {
                let start = after.map_or(0, |after| after.saturating_add(1));
                let mut items: Vec<u64> =
                    self.ids.range(start..).take(limit + 1).copied().collect();
                let next = if items.len() > limit {
                    items.truncate(limit);
                    items.last().copied()
                } else {
                    None
                };
                Ok(Decision::read(AccountsReply::Ids(Page { items, next })))
            }
            AccountsCommand::Count => {
                Ok(Decision::read(AccountsReply::Count(self.ids.len() as u64)))
            }
        }
    }

    fn apply(&mut self, event: &SocialEvent) {
        match event {
            SocialEvent::AccountRegistered { email_key, user_id } => {
                self.by_email.insert(email_key.clone(), *user_id);
                self.ids.insert(*user_id);
                self.next_id = self.next_id.max(user_id + 1);
                self.dirty.push(email_key.clone());
                self.next_dirty = true;
            }
            other => unreachable!("not an accounts event: {other:?}"),
        }
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        for email in std::mem::take(&mut self.dirty) {
            let mut name = EMAIL.to_vec();
            name.extend_from_slice(email.as_bytes());
            batch.put(key, &name, &Part::Account(self.by_email[&email]));
        }
        if std::mem::take(&mut self.next_dirty) {
            batch.put(key, NEXT, &Part::Next(self.next_id));
        }
    }
}
