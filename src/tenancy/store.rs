//! The store: teams, keys and the audit trail in SQLite (the same data directory as the
//! ledger by default; memory only when no path is given). The schema is versioned
//! (`PRAGMA user_version`) and migrated forward by Junction itself when it opens the file.

use super::{new_id, new_secret, Cidr, Entry, Member, MemberKind, Role, Status, StoredKey, Team};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// The schema, one migration per version; a file at version N gets the ones after N.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    models TEXT,
    ips TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    previous_hash BLOB,
    previous_until_ms INTEGER,
    team TEXT NOT NULL,
    user TEXT,
    project TEXT,
    models TEXT,
    ips TEXT,
    expires_ms INTEGER,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX keys_team ON keys (team);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    address TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    change TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit (ts_ms);
",
    "
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
",
    "
ALTER TABLE keys ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
ALTER TABLE audit ADD COLUMN team TEXT;
CREATE INDEX audit_team ON audit (team, id);
",
    "
CREATE TABLE members (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    team TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT,
    created_ms INTEGER NOT NULL,
    UNIQUE (kind, team, name)
);
",
];

/// A store error: bad input (a 400 naming the field), something missing (404), or the
/// database failing (500).
#[derive(Debug)]
pub enum StoreError {
    Invalid {
        field: &'static str,
        message: String,
    },
    NotFound(String),
    Conflict(String),
    Db(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Invalid { field, message } => write!(f, "{field}: {message}"),
            StoreError::NotFound(m) | StoreError::Conflict(m) | StoreError::Db(m) => f.write_str(m),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        message: message.into(),
    }
}

/// A team to create.
#[derive(Debug, Default)]
pub struct NewTeam {
    pub name: String,
    pub models: Option<Vec<String>>,
    pub ips: Option<Vec<Cidr>>,
}

/// A key to create.
#[derive(Debug, Default)]
pub struct NewKey {
    pub name: String,
    pub team: String,
    pub user: Option<String>,
    pub project: Option<String>,
    pub models: Option<Vec<String>>,
    pub ips: Option<Vec<Cidr>>,
    pub expires_ms: Option<i64>,
    pub metadata: Option<serde_json::Value>,
    pub role: Role,
}

/// A change to a key: each field given is set (`Some(None)` clears it).
#[derive(Debug, Default)]
pub struct KeyChange {
    pub name: Option<String>,
    pub user: Option<Option<String>>,
    pub project: Option<Option<String>>,
    pub models: Option<Option<Vec<String>>>,
    pub ips: Option<Option<Vec<Cidr>>>,
    pub expires_ms: Option<Option<i64>>,
    pub metadata: Option<serde_json::Value>,
}

pub struct Store {
    db: Mutex<Connection>,
}

/// A key as the index takes it: with its team's bounds, the hash of its secret, and the hash
/// of the secret a rotation replaced.
pub(super) type Hashed = (Entry, [u8; 32], Option<[u8; 32]>);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn hash(secret: &str) -> [u8; 32] {
    crate::config::hash_key(secret.as_bytes())
}

fn list_json<T: serde::Serialize>(v: &Option<Vec<T>>) -> Option<String> {
    v.as_ref()
        .map(|v| serde_json::to_string(v).unwrap_or_default())
}

/// A stored list; a damaged one allows nothing (never everything).
fn models_of(s: Option<String>) -> Option<Vec<String>> {
    s.map(|s| serde_json::from_str(&s).unwrap_or_default())
}

/// A stored list of ranges; a damaged one (or entry) allows nothing of it.
fn ips_of(s: Option<String>) -> Option<Vec<Cidr>> {
    let list: Vec<String> = serde_json::from_str(&s?).unwrap_or_default();
    Some(list.iter().filter_map(|c| Cidr::parse(c)).collect())
}

const KEY_COLUMNS: &str = "id, name, prefix, team, user, project, models, ips, expires_ms, metadata, status, created_ms, previous_until_ms, role";

fn key_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredKey> {
    Ok(StoredKey {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        team: r.get(3)?,
        user: r.get(4)?,
        project: r.get(5)?,
        models: models_of(r.get(6)?),
        ips: ips_of(r.get(7)?),
        expires_ms: r.get(8)?,
        metadata: serde_json::from_str(&r.get::<_, String>(9)?).unwrap_or_default(),
        status: if r.get::<_, String>(10)? == "revoked" {
            Status::Revoked
        } else {
            Status::Active
        },
        created_ms: r.get(11)?,
        previous_until_ms: r.get(12)?,
        role: if r.get::<_, String>(13)? == "team_admin" {
            Role::TeamAdmin
        } else {
            Role::Member
        },
    })
}

fn member_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        id: r.get(0)?,
        team: r.get(1)?,
        name: r.get(2)?,
        email: r.get(3)?,
        created_ms: r.get(4)?,
    })
}

fn team_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Team> {
    Ok(Team {
        id: r.get(0)?,
        name: r.get(1)?,
        models: models_of(r.get(2)?),
        ips: ips_of(r.get(3)?),
        created_ms: r.get(4)?,
    })
}

fn check_name(field: &'static str, name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(invalid(field, "must be a name of 1 to 200 characters"));
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the store at `path` and migrates it; `None`: in memory.
    pub fn open(path: Option<&Path>) -> Result<Store, StoreError> {
        let db = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        if path.is_some() {
            db.pragma_update(None, "journal_mode", "WAL")?;
        }
        let mut db = db;
        migrate(&mut db)?;
        Ok(Store { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn create_team(&self, t: NewTeam) -> Result<Team, StoreError> {
        check_name("name", &t.name)?;
        let team = Team {
            id: new_id("team").map_err(StoreError::Db)?,
            name: t.name,
            models: t.models,
            ips: t.ips,
            created_ms: now_ms(),
        };
        let db = self.db();
        let taken: bool = db
            .query_row("SELECT 1 FROM teams WHERE name = ?1", [&team.name], |_| {
                Ok(true)
            })
            .optional()?
            .unwrap_or(false);
        if taken {
            return Err(StoreError::Conflict(format!(
                "A team named `{}` exists already.",
                team.name
            )));
        }
        db.execute(
            "INSERT INTO teams (id, name, models, ips, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                team.id,
                team.name,
                list_json(&team.models),
                list_json(&team.ips),
                team.created_ms
            ],
        )?;
        Ok(team)
    }

    pub fn teams(&self) -> Result<Vec<Team>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(
            "SELECT id, name, models, ips, created_ms FROM teams ORDER BY created_ms, id",
        )?;
        let rows = q.query_map([], team_of)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn team(&self, id: &str) -> Result<Team, StoreError> {
        self.db()
            .query_row(
                "SELECT id, name, models, ips, created_ms FROM teams WHERE id = ?1",
                [id],
                team_of,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("No team `{id}`.")))
    }

    /// Deletes a team and revokes every key it had (none of them works a moment longer).
    pub fn delete_team(&self, id: &str) -> Result<usize, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        if tx.execute("DELETE FROM teams WHERE id = ?1", [id])? == 0 {
            return Err(StoreError::NotFound(format!("No team `{id}`.")));
        }
        let revoked = tx.execute(
            "UPDATE keys SET status = 'revoked' WHERE team = ?1 AND status != 'revoked'",
            [id],
        )?;
        tx.execute("DELETE FROM members WHERE team = ?1", [id])?;
        tx.commit()?;
        Ok(revoked)
    }

    /// Creates a key; returns it and its secret (the only time the secret exists outside the
    /// caller's hands).
    /// Makes a user or a project of a team.
    pub fn create_member(
        &self,
        kind: MemberKind,
        team: &str,
        name: &str,
        email: Option<String>,
    ) -> Result<Member, StoreError> {
        check_name("name", name)?;
        self.team(team)
            .map_err(|_| invalid("team", format!("no team `{team}`")))?;
        let m = Member {
            id: new_id(kind.as_str()).map_err(StoreError::Db)?,
            team: team.to_string(),
            name: name.to_string(),
            email: if kind == MemberKind::User {
                email
            } else {
                None
            },
            created_ms: now_ms(),
        };
        let db = self.db();
        let taken = db
            .query_row(
                "SELECT 1 FROM members WHERE kind = ?1 AND team = ?2 AND name = ?3",
                params![kind.as_str(), team, name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if taken {
            return Err(StoreError::Conflict(format!(
                "The team has a {} named `{name}` already.",
                kind.as_str()
            )));
        }
        db.execute(
            "INSERT INTO members (id, kind, team, name, email, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![m.id, kind.as_str(), m.team, m.name, m.email, m.created_ms],
        )?;
        Ok(m)
    }

    /// Users or projects, of one team or all.
    pub fn members(&self, kind: MemberKind, team: Option<&str>) -> Result<Vec<Member>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(
            "SELECT id, team, name, email, created_ms FROM members
             WHERE kind = ?1 AND (?2 IS NULL OR team = ?2) ORDER BY created_ms, id",
        )?;
        let rows = q
            .query_map(params![kind.as_str(), team], member_of)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn member(&self, kind: MemberKind, id: &str) -> Result<Member, StoreError> {
        self.db()
            .query_row(
                "SELECT id, team, name, email, created_ms FROM members WHERE kind = ?1 AND id = ?2",
                params![kind.as_str(), id],
                member_of,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("No {} `{id}`.", kind.as_str())))
    }

    /// Deletes a user or a project and revokes its keys.
    pub fn delete_member(&self, kind: MemberKind, id: &str) -> Result<usize, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        if tx.execute(
            "DELETE FROM members WHERE kind = ?1 AND id = ?2",
            params![kind.as_str(), id],
        )? == 0
        {
            return Err(StoreError::NotFound(format!(
                "No {} `{id}`.",
                kind.as_str()
            )));
        }
        let column = match kind {
            MemberKind::User => "user",
            MemberKind::Project => "project",
        };
        let revoked = tx.execute(
            &format!(
                "UPDATE keys SET status = 'revoked' WHERE {column} = ?1 AND status != 'revoked'"
            ),
            [id],
        )?;
        tx.commit()?;
        Ok(revoked)
    }

    /// `id` is a user (or project) of `team`.
    fn check_member(&self, kind: MemberKind, team: &str, id: &str) -> Result<(), StoreError> {
        let field = match kind {
            MemberKind::User => "user",
            MemberKind::Project => "project",
        };
        match self.member(kind, id) {
            Ok(m) if m.team == team => Ok(()),
            _ => Err(invalid(
                field,
                format!("no {field} `{id}` in the key's team"),
            )),
        }
    }

    pub fn create_key(&self, k: NewKey) -> Result<(StoredKey, String), StoreError> {
        check_name("name", &k.name)?;
        self.team(&k.team)
            .map_err(|_| invalid("team", format!("no team `{}`", k.team)))?;
        if let Some(u) = &k.user {
            self.check_member(MemberKind::User, &k.team, u)?;
        }
        if let Some(p) = &k.project {
            self.check_member(MemberKind::Project, &k.team, p)?;
        }
        let secret = new_secret().map_err(StoreError::Db)?;
        let key = StoredKey {
            id: new_id("key").map_err(StoreError::Db)?,
            name: k.name,
            prefix: secret[..SECRET_SHOWN].to_string(),
            team: k.team,
            user: k.user,
            project: k.project,
            models: k.models,
            ips: k.ips,
            expires_ms: k.expires_ms,
            metadata: k.metadata.unwrap_or_else(|| serde_json::json!({})),
            status: Status::Active,
            created_ms: now_ms(),
            previous_until_ms: None,
            role: k.role,
        };
        self.db().execute(
            &format!("INSERT INTO keys ({KEY_COLUMNS}, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
            params![
                key.id,
                &*key.name,
                key.prefix,
                key.team,
                key.user,
                key.project,
                list_json(&key.models),
                list_json(&key.ips),
                key.expires_ms,
                key.metadata.to_string(),
                key.status.as_str(),
                key.created_ms,
                key.previous_until_ms,
                key.role.as_str(),
                hash(&secret).to_vec(),
            ],
        )?;
        Ok((key, secret))
    }

    /// Keys, of one team or all, in the order they were made.
    pub fn keys(&self, team: Option<&str>) -> Result<Vec<StoredKey>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE ?1 IS NULL OR team = ?1 ORDER BY created_ms, id"
        ))?;
        let rows = q.query_map([team], key_of)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn key(&self, id: &str) -> Result<StoredKey, StoreError> {
        self.db()
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = ?1"),
                [id],
                key_of,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("No key `{id}`.")))
    }

    pub fn change_key(&self, id: &str, c: KeyChange) -> Result<StoredKey, StoreError> {
        let mut key = self.key(id)?;
        if let Some(Some(u)) = &c.user {
            self.check_member(MemberKind::User, &key.team, u)?;
        }
        if let Some(Some(p)) = &c.project {
            self.check_member(MemberKind::Project, &key.team, p)?;
        }
        if let Some(n) = c.name {
            check_name("name", &n)?;
            key.name = n;
        }
        if let Some(u) = c.user {
            key.user = u;
        }
        if let Some(p) = c.project {
            key.project = p;
        }
        if let Some(m) = c.models {
            key.models = m;
        }
        if let Some(i) = c.ips {
            key.ips = i;
        }
        if let Some(e) = c.expires_ms {
            key.expires_ms = e;
        }
        if let Some(m) = c.metadata {
            key.metadata = m;
        }
        self.db().execute(
            "UPDATE keys SET name = ?2, user = ?3, project = ?4, models = ?5, ips = ?6, expires_ms = ?7, metadata = ?8 WHERE id = ?1",
            params![
                key.id,
                &*key.name,
                key.user,
                key.project,
                list_json(&key.models),
                list_json(&key.ips),
                key.expires_ms,
                key.metadata.to_string()
            ],
        )?;
        Ok(key)
    }

    pub fn revoke_key(&self, id: &str) -> Result<StoredKey, StoreError> {
        if self
            .db()
            .execute("UPDATE keys SET status = 'revoked' WHERE id = ?1", [id])?
            == 0
        {
            return Err(StoreError::NotFound(format!("No key `{id}`.")));
        }
        self.key(id)
    }

    /// A new secret for the key; the one it replaces works for `grace_ms` more.
    pub fn rotate_key(&self, id: &str, grace_ms: i64) -> Result<(StoredKey, String), StoreError> {
        if !(0..=MAX_GRACE_MS).contains(&grace_ms) {
            return Err(invalid(
                "grace_seconds",
                format!("must be from 0 to {} (7 days)", MAX_GRACE_MS / 1000),
            ));
        }
        let key = self.key(id)?;
        if key.status == Status::Revoked {
            return Err(StoreError::Conflict(format!(
                "The key `{id}` is revoked: it cannot be rotated."
            )));
        }
        let secret = new_secret().map_err(StoreError::Db)?;
        let until = now_ms() + grace_ms;
        self.db().execute(
            "UPDATE keys SET previous_hash = hash, previous_until_ms = ?2, hash = ?3, prefix = ?4 WHERE id = ?1",
            params![id, until, hash(&secret).to_vec(), &secret[..SECRET_SHOWN]],
        )?;
        Ok((self.key(id)?, secret))
    }

    /// Every key with its team's bounds and the hashes of its secrets (the current one, and
    /// the one before a rotation while it may still work). A key whose team is gone is
    /// revoked.
    pub(super) fn entries(&self) -> Result<Vec<Hashed>, StoreError> {
        let db = self.db();
        let mut teams = std::collections::HashMap::new();
        {
            let mut q = db.prepare("SELECT id, name, models, ips, created_ms FROM teams")?;
            for t in q.query_map([], team_of)? {
                let t = t?;
                teams.insert(t.id.clone(), t);
            }
        }
        let mut q = db.prepare(&format!(
            "SELECT {KEY_COLUMNS}, hash, previous_hash FROM keys"
        ))?;
        let rows = q.query_map([], |r| {
            let key = key_of(r)?;
            let h: Vec<u8> = r.get(14)?;
            let p: Option<Vec<u8>> = r.get(15)?;
            Ok((key, h, p))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut key, h, p) = row?;
            let Ok(h) = <[u8; 32]>::try_from(h.as_slice()) else {
                continue;
            };
            let team = teams.get(&key.team);
            if team.is_none() {
                key.status = Status::Revoked;
            }
            // Kept past its grace period, so that its refusal can say it was rotated.
            let previous = p.and_then(|p| <[u8; 32]>::try_from(p.as_slice()).ok());
            out.push((
                Entry {
                    secret_tag: super::secret_tag(&h),
                    team_models: team.and_then(|t| t.models.clone()),
                    team_ips: team.and_then(|t| t.ips.clone()),
                    key,
                },
                h,
                previous,
            ));
        }
        Ok(out)
    }

    /// The key that signs short-lived tokens: made at the store's first use, the same for every
    /// replica on the store.
    pub fn signing_key(&self) -> Result<[u8; 32], StoreError> {
        let db = self.db();
        let found: Option<Vec<u8>> = db
            .query_row("SELECT value FROM meta WHERE name = 'token_key'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(k) = found.and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok()) {
            return Ok(k);
        }
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| StoreError::Db(format!("no randomness: {e}")))?;
        // Another replica may have made one first: the stored one wins.
        db.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('token_key', ?1)",
            [k.to_vec()],
        )?;
        let stored: Vec<u8> =
            db.query_row("SELECT value FROM meta WHERE name = 'token_key'", [], |r| {
                r.get(0)
            })?;
        <[u8; 32]>::try_from(stored.as_slice())
            .map_err(|_| StoreError::Db("the token key in the store is damaged".into()))
    }

    /// Records a change made through the admin API (never a secret).
    /// `team`: the team the change was in (its admins see it).
    pub fn audit(
        &self,
        actor: &str,
        address: Option<&str>,
        team: Option<&str>,
        change: (&str, &str, &serde_json::Value),
    ) -> Result<(), StoreError> {
        let (action, target, change) = change;
        self.db().execute(
            "INSERT INTO audit (ts_ms, actor, address, team, action, target, change) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![now_ms(), actor, address, team, action, target, change.to_string()],
        )?;
        Ok(())
    }

    /// The audit trail, newest first, at most `limit` entries.
    /// Of one team (`Some`), or all.
    pub fn audit_entries(
        &self,
        team: Option<&str>,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(
            "SELECT ts_ms, actor, address, action, target, change, team FROM audit
             WHERE ?1 IS NULL OR team = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = q
            .query_map(params![team, limit], |r| {
                Ok(serde_json::json!({
                    "ts_ms": r.get::<_, i64>(0)?,
                    "actor": r.get::<_, String>(1)?,
                    "address": r.get::<_, Option<String>>(2)?,
                    "action": r.get::<_, String>(3)?,
                    "target": r.get::<_, String>(4)?,
                    "team": r.get::<_, Option<String>>(6)?,
                    "change": serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(5)?).unwrap_or_default(),
                }))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

/// The longest a replaced secret keeps working after a rotation.
const MAX_GRACE_MS: i64 = 7 * 86_400_000;

/// Characters of a secret kept as its shown prefix: `sk-jn-` and four more.
const SECRET_SHOWN: usize = super::SECRET_PREFIX.len() + 4;

fn migrate(db: &mut Connection) -> Result<(), StoreError> {
    let version: usize = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Db(format!(
            "the store is at schema version {version}, newer than this Junction ({}): upgrade Junction",
            MIGRATIONS.len()
        )));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = db.transaction()?;
        tx.execute_batch(m)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
