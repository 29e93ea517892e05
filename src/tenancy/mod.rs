//! Who may use what, at run time: teams and the keys that belong to them, kept in the store
//! (`store.rs`, SQLite beside the ledger) and held in memory by every replica, so that the
//! request path never queries the database. Keys declared in the config file work beside them
//! (`gateway::auth` looks there first).
//!
//! A stored key's secret is shown once, when it is made, and kept only as its SHA-256; its
//! public id (`key_…`) and its prefix are safe to log and show. A team's allowed models and
//! addresses bound its keys': a key can narrow them, never widen them.

mod store;
pub mod token;

pub use store::{
    now_ms as store_now_ms, KeyChange, Location, NewKey, NewTeam, Store, StoreError, CHANGED,
};

pub use crate::config::Cidr;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The start of every stored key's secret: recognisable (by people and secret scanners).
pub const SECRET_PREFIX: &str = "sk-jn-";

/// A team: the keys' owner, and the bounds of what they may use.
#[derive(Debug, Clone, Serialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    /// Allowed models (names, aliases, `provider/*`); `None`: all.
    pub models: Option<Vec<String>>,
    /// Allowed client addresses; `None`: any.
    pub ips: Option<Vec<Cidr>>,
    pub created_ms: i64,
}

/// A user (a member of a team) or a project: what a key can be accounted to within its team.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: String,
    pub team: String,
    pub name: String,
    /// Users only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    User,
    Project,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::User => "user",
            MemberKind::Project => "project",
        }
    }
}

/// Whether a stored key may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
        }
    }
}

/// What a stored key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Model requests, on the client listener.
    #[default]
    Member,
    /// Its team's administration, on the admin listener (its keys, its usage, its audit
    /// trail), and nothing else: not model requests.
    TeamAdmin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "team_admin" => Some(Role::TeamAdmin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::TeamAdmin => "team_admin",
        }
    }
}

/// A stored key, as the admin API shows it (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct StoredKey {
    /// Public: safe to log, show and put in the ledger.
    pub id: String,
    pub name: String,
    /// The secret's first characters, to tell keys apart (`sk-jn-AbCd`).
    pub prefix: String,
    pub team: String,
    pub user: Option<String>,
    pub project: Option<String>,
    /// The key's own allowed models, within its team's.
    pub models: Option<Vec<String>>,
    /// The key's own allowed addresses, within its team's.
    pub ips: Option<Vec<Cidr>>,
    /// Unix ms after which the key is refused.
    pub expires_ms: Option<i64>,
    pub metadata: serde_json::Value,
    pub status: Status,
    pub created_ms: i64,
    /// After a rotation: until when the secret before it still works.
    pub previous_until_ms: Option<i64>,
    pub role: Role,
}

/// A stored key with its team's bounds, as the request path reads it.
#[derive(Debug)]
pub struct Entry {
    pub key: StoredKey,
    /// The first bytes of its current secret's hash: a token minted with an older secret
    /// names another.
    pub secret_tag: String,
    pub team_models: Option<Vec<String>>,
    pub team_ips: Option<Vec<Cidr>>,
}

/// Why a stored key may not be used now (401: the key itself is no good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Revoked,
    Expired,
    /// A secret replaced by a rotation, past its grace period.
    Rotated,
}

impl Entry {
    /// Whether the key may be used at `now_ms` (by this secret: `previous` when it is the one
    /// a rotation replaced).
    pub fn usable(&self, previous: bool, now_ms: i64) -> Result<(), Refusal> {
        if self.key.status == Status::Revoked {
            return Err(Refusal::Revoked);
        }
        if self.key.expires_ms.is_some_and(|e| now_ms >= e) {
            return Err(Refusal::Expired);
        }
        if previous && self.key.previous_until_ms.is_none_or(|u| now_ms >= u) {
            return Err(Refusal::Rotated);
        }
        Ok(())
    }

    /// Whether the key and its team allow a request from `addr`.
    pub fn allows_address(&self, addr: Option<IpAddr>) -> bool {
        let within = |list: &Option<Vec<Cidr>>| match list {
            None => true,
            Some(list) => addr.is_some_and(|a| list.iter().any(|c| c.contains(a))),
        };
        within(&self.team_ips) && within(&self.key.ips)
    }

    /// Whether the key and its team allow a model known by `names` (each list may name it
    /// by any of them).
    pub fn allows(&self, names: crate::config::Names<'_>) -> bool {
        let within = |list: &Option<Vec<String>>| match list {
            None => true,
            Some(list) => names.allowed_by(list),
        };
        within(&self.team_models) && within(&self.key.models)
    }
}

/// Every stored key, by the hash of each secret that may still work.
#[derive(Default)]
struct Index {
    /// `(entry, previous)`: `previous` for the secret a rotation replaced.
    by_hash: HashMap<[u8; 32], (Arc<Entry>, bool)>,
    /// By public id: a token's parent.
    by_id: HashMap<String, Arc<Entry>>,
}

/// The store and what every request reads of it: the keys, in memory.
pub struct Tenancy {
    store: Store,
    index: ArcSwap<Index>,
    /// One refresh at a time, from its read to its swap: an older read never replaces a newer.
    refreshing: std::sync::Mutex<()>,
    /// Signs and verifies short-lived tokens ([`token`]).
    token_key: [u8; 32],
}

impl Tenancy {
    pub fn open(at: &Location) -> Result<Arc<Tenancy>, String> {
        let store = Store::open(at).map_err(|e| format!("the store: {e}"))?;
        let token_key = store.signing_key().map_err(|e| format!("the store: {e}"))?;
        let t = Tenancy {
            store,
            index: ArcSwap::default(),
            refreshing: std::sync::Mutex::new(()),
            token_key,
        };
        t.refresh().map_err(|e| format!("the store: {e}"))?;
        Ok(Arc::new(t))
    }

    /// Reads the keys again every `every`, on a thread of its own, for as long as the
    /// tenancy lives.
    pub fn refresh_every(self: &Arc<Self>, every: std::time::Duration) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("junction-store-refresh".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(t) = weak.upgrade() else { return };
                if let Err(e) = t.refresh() {
                    tracing::warn!(error = %e, "the store could not be read; the keys in memory keep serving");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no periodic refresh of the store's keys");
        }
    }

    /// The store, for the admin API; every change through it is followed by [`Self::refresh`].
    /// Listens on a PostgreSQL store for changes another replica made, and reads the keys
    /// again on each (several at once: once). A lost connection is made again, and the keys
    /// read again then, since changes may have been missed while it was down.
    pub fn listen(self: &Arc<Self>, url: crate::store::sql::Url) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("junction-store-listen".into())
            .spawn(move || loop {
                if weak.strong_count() == 0 {
                    return;
                }
                match url.connect() {
                    Ok(mut client) => match client.batch_execute(&format!("LISTEN {CHANGED}")) {
                        Ok(()) => listen_on(&mut client, &weak),
                        Err(e) => tracing::warn!(error = %crate::store::sql::DbError::from(e), "cannot listen on the store"),
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot connect to the store to listen for changes; trying again"),
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no listener for the store's changes");
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads every key again and swaps in the new index: after each change, and periodically
    /// as a backstop.
    pub fn refresh(&self) -> Result<(), StoreError> {
        let _one = self.refreshing.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = Index::default();
        for (entry, hash, previous) in self.store.entries()? {
            let entry = Arc::new(entry);
            index.by_id.insert(entry.key.id.clone(), entry.clone());
            if let Some(p) = previous {
                index.by_hash.insert(p, (entry.clone(), true));
            }
            index.by_hash.insert(hash, (entry, false));
        }
        self.index.store(Arc::new(index));
        Ok(())
    }

    /// The stored key whose secret hashes to `hash`, and whether that is the secret a
    /// rotation replaced. A hash of a secret of at least 128 random bits: looking it up in a
    /// map tells nothing of the secret.
    pub fn lookup(&self, hash: &[u8; 32]) -> Option<(Arc<Entry>, bool)> {
        self.index.load().by_hash.get(hash).cloned()
    }

    /// The stored key of this public id.
    pub fn by_id(&self, id: &str) -> Option<Arc<Entry>> {
        self.index.load().by_id.get(id).cloned()
    }

    /// A token for `claims`, signed with the store's key.
    pub fn sign(&self, claims: &token::Claims) -> String {
        token::sign(&self.token_key, claims)
    }

    /// The claims of a token signed with the store's key, not expired.
    pub fn verify(&self, t: &[u8], now_ms: i64) -> Result<token::Claims, token::Bad> {
        token::verify(&self.token_key, t, now_ms)
    }

    /// Stored keys held in memory.
    pub fn len(&self) -> usize {
        self.index.load().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a token says of the secret it was minted with: its hash's first 6 bytes, in hex.
/// Reads the keys again at once (what changed while not listening), then on every
/// notification, until the connection fails or the tenancy is gone.
fn listen_on(client: &mut postgres::Client, tenancy: &std::sync::Weak<Tenancy>) {
    let refresh = || match tenancy.upgrade() {
        Some(t) => {
            if let Err(e) = t.refresh() {
                tracing::warn!(error = %e, "the store could not be read; the keys in memory keep serving");
            }
            true
        }
        None => false,
    };
    if !refresh() {
        return;
    }
    use postgres::fallible_iterator::FallibleIterator;
    loop {
        let mut n = client.notifications();
        let next = n.timeout_iter(std::time::Duration::from_secs(1)).next();
        match next {
            Ok(Some(_)) => {
                // Every notification already here is answered by the one read.
                while let Ok(Some(_)) = n.iter().next() {}
                tracing::debug!("told of a change in the store: reading the keys again");
                if !refresh() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::store::sql::DbError::from(e), "lost the store's notifications; connecting again");
                return;
            }
            Ok(None) => {
                drop(n);
                if tenancy.strong_count() == 0 || client.is_closed() {
                    return;
                }
            }
        }
    }
}

pub fn secret_tag(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..6])
}

/// A new secret: the prefix, then 32 characters of base62 (190 random bits).
pub fn new_secret() -> Result<String, String> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    let mut s = String::with_capacity(SECRET_PREFIX.len() + 32);
    s.push_str(SECRET_PREFIX);
    // 248 is the largest multiple of 62 in a byte: rejection keeps every character uniform.
    let mut more = [0u8; 64];
    getrandom::fill(&mut more).map_err(|e| format!("no randomness: {e}"))?;
    for b in bytes
        .iter()
        .chain(more.iter())
        .filter(|b| **b < 248)
        .take(32)
    {
        s.push(ALPHABET[(*b % 62) as usize] as char);
    }
    (s.len() == SECRET_PREFIX.len() + 32)
        .then_some(s)
        .ok_or_else(|| "no randomness".to_string())
}

/// A new public id: `prefix_` and 16 hex digits.
pub fn new_id(prefix: &str) -> Result<String, String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!("{prefix}_{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests;
