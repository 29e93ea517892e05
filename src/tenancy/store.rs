//! The store: teams, keys and the audit trail, in SQLite (the same data directory as the
//! ledger by default; memory only when no path is given) or in PostgreSQL (`[store] url`,
//! shared by several replicas). The schema is versioned and migrated forward by Junction
//! itself when it opens the store (`junction migrate` runs the migrations alone); every change
//! to the keys is announced on PostgreSQL's `junction_keys` channel, on which each replica
//! listens (`Tenancy::listen`).

use super::{new_id, new_secret, Cidr, Entry, Member, MemberKind, Role, Status, StoredKey, Team};
use crate::sql_params;
use crate::store::sql::{migrate, Conn, Db, DbError, Kind, Param, Row, Url};

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

/// The same schema on PostgreSQL (its own versions: a migration added here is added to
/// [`MIGRATIONS`] too).
const PG_MIGRATIONS: &[&str] = &["
CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    models TEXT,
    ips TEXT,
    created_ms BIGINT NOT NULL
);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash BYTEA NOT NULL UNIQUE,
    previous_hash BYTEA,
    previous_until_ms BIGINT,
    team TEXT NOT NULL,
    \"user\" TEXT,
    project TEXT,
    models TEXT,
    ips TEXT,
    expires_ms BIGINT,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    role TEXT NOT NULL DEFAULT 'member'
);
CREATE INDEX keys_team ON keys (team);
CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    address TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    change TEXT NOT NULL,
    team TEXT
);
CREATE INDEX audit_ts ON audit (ts_ms);
CREATE INDEX audit_team ON audit (team, id);
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE members (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    team TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT,
    created_ms BIGINT NOT NULL,
    UNIQUE (kind, team, name)
);
"];

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

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        StoreError::Db(e.0)
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
    db: Db,
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

const KEY_COLUMNS: &str = "id, name, prefix, team, \"user\", project, models, ips, expires_ms, metadata, status, created_ms, previous_until_ms, role";

fn key_of(r: &Row) -> Result<StoredKey, DbError> {
    Ok(StoredKey {
        id: r.text(0)?,
        name: r.text(1)?,
        prefix: r.text(2)?,
        team: r.text(3)?,
        user: r.opt_text(4)?,
        project: r.opt_text(5)?,
        models: models_of(r.opt_text(6)?),
        ips: ips_of(r.opt_text(7)?),
        expires_ms: r.opt_int(8)?,
        metadata: serde_json::from_str(&r.text(9)?).unwrap_or_default(),
        status: if r.text(10)? == "revoked" {
            Status::Revoked
        } else {
            Status::Active
        },
        created_ms: r.int(11)?,
        previous_until_ms: r.opt_int(12)?,
        role: if r.text(13)? == "team_admin" {
            Role::TeamAdmin
        } else {
            Role::Member
        },
    })
}

const MEMBER_COLUMNS: &str = "id, team, name, email, created_ms";

fn member_of(r: &Row) -> Result<Member, DbError> {
    Ok(Member {
        id: r.text(0)?,
        team: r.text(1)?,
        name: r.text(2)?,
        email: r.opt_text(3)?,
        created_ms: r.int(4)?,
    })
}

const TEAM_COLUMNS: &str = "id, name, models, ips, created_ms";

fn team_of(r: &Row) -> Result<Team, DbError> {
    Ok(Team {
        id: r.text(0)?,
        name: r.text(1)?,
        models: models_of(r.opt_text(2)?),
        ips: ips_of(r.opt_text(3)?),
        created_ms: r.int(4)?,
    })
}

fn check_name(field: &'static str, name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(invalid(field, "must be a name of 1 to 200 characters"));
    }
    Ok(())
}

/// The channel on which a PostgreSQL store says its keys changed.
pub const CHANGED: &str = "junction_keys";

/// Tells every replica listening on the store that its keys changed (on commit; SQLite's
/// one process is told in-process).
fn changed(c: &mut dyn Conn) -> Result<(), DbError> {
    if c.kind() == Kind::Postgres {
        c.batch(&format!("NOTIFY {CHANGED}"))?;
    }
    Ok(())
}

fn all<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Result<T, DbError>) -> Result<Vec<T>, DbError> {
    rows.iter().map(f).collect()
}

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file; `None`: memory only.
    Sqlite(Option<std::path::PathBuf>),
    Postgres(Url),
}

impl Store {
    /// Opens (or creates) the store and migrates it.
    pub fn open(at: &Location) -> Result<Store, StoreError> {
        let db = match at {
            Location::Sqlite(path) => Db::sqlite(path.as_deref())?,
            Location::Postgres(url) => Db::postgres(url)?,
        };
        let migrations = match db.kind() {
            Kind::Sqlite => MIGRATIONS,
            Kind::Postgres => PG_MIGRATIONS,
        };
        db.with(|c| migrate(c, "store", migrations))?;
        Ok(Store { db })
    }

    pub fn kind(&self) -> Kind {
        self.db.kind()
    }

    /// Opens (creating or migrating) the store and closes it: for `junction migrate`. Says
    /// where and at which version.
    pub fn migrate_only(at: &Location) -> Result<String, String> {
        let store = Store::open(at).map_err(|e| format!("the store: {e}"))?;
        let version = match store.kind() {
            Kind::Sqlite => MIGRATIONS.len(),
            Kind::Postgres => PG_MIGRATIONS.len(),
        };
        Ok(match at {
            Location::Sqlite(Some(p)) => {
                format!("store: {} at schema version {version}", p.display())
            }
            Location::Sqlite(None) => "store: in memory".into(),
            Location::Postgres(url) => {
                format!("store: {} at schema version {version}", url.shown())
            }
        })
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
        let (models, ips) = (list_json(&team.models), list_json(&team.ips));
        let made = self.db.tx(|c| {
            if c.query_opt(
                "SELECT 1 FROM teams WHERE name = ?1",
                sql_params![&team.name],
            )?
            .is_some()
            {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO teams (id, name, models, ips, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                sql_params![
                    &team.id,
                    &team.name,
                    models.as_deref(),
                    ips.as_deref(),
                    team.created_ms
                ],
            )?;
            Ok(true)
        });
        match made {
            Ok(true) => Ok(team),
            Ok(false) => Err(StoreError::Conflict(format!(
                "A team named `{}` exists already.",
                team.name
            ))),
            Err(e) if unique_violation(&e) => Err(StoreError::Conflict(format!(
                "A team named `{}` exists already.",
                team.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub fn teams(&self) -> Result<Vec<Team>, StoreError> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams ORDER BY created_ms, id");
        Ok(self.db.with(|c| all(c.query(&sql, &[])?, team_of))?)
    }

    pub fn team(&self, id: &str) -> Result<Team, StoreError> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = ?1");
        self.one(&sql, sql_params![id], team_of, || {
            format!("No team `{id}`.")
        })
    }

    /// The row `sql` finds, read by `of`; not found, saying `missing`, when there is none.
    fn one<T: Send>(
        &self,
        sql: &str,
        params: &[Param],
        of: impl Fn(&Row) -> Result<T, DbError> + Send + Sync,
        missing: impl FnOnce() -> String,
    ) -> Result<T, StoreError> {
        self.db
            .with(|c| c.query_opt(sql, params)?.map(|r| of(&r)).transpose())?
            .ok_or_else(|| StoreError::NotFound(missing()))
    }

    /// Deletes a team and revokes every key it had (none of them works a moment longer).
    pub fn delete_team(&self, id: &str) -> Result<usize, StoreError> {
        self.db
            .tx(|c| {
                if c.execute("DELETE FROM teams WHERE id = ?1", sql_params![id])? == 0 {
                    return Ok(None);
                }
                let revoked = c.execute(
                    "UPDATE keys SET status = 'revoked' WHERE team = ?1 AND status != 'revoked'",
                    sql_params![id],
                )?;
                c.execute("DELETE FROM members WHERE team = ?1", sql_params![id])?;
                changed(c)?;
                Ok(Some(revoked as usize))
            })?
            .ok_or_else(|| StoreError::NotFound(format!("No team `{id}`.")))
    }

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
        let taken = || {
            StoreError::Conflict(format!(
                "The team has a {} named `{name}` already.",
                kind.as_str()
            ))
        };
        let made = self.db.tx(|c| {
            if c.query_opt(
                "SELECT 1 FROM members WHERE kind = ?1 AND team = ?2 AND name = ?3",
                sql_params![kind.as_str(), team, name],
            )?
            .is_some()
            {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO members (id, kind, team, name, email, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                sql_params![&m.id, kind.as_str(), &m.team, &m.name, m.email.as_deref(), m.created_ms],
            )?;
            Ok(true)
        });
        match made {
            Ok(true) => Ok(m),
            Ok(false) => Err(taken()),
            Err(e) if unique_violation(&e) => Err(taken()),
            Err(e) => Err(e.into()),
        }
    }

    /// Users or projects, of one team or all.
    pub fn members(&self, kind: MemberKind, team: Option<&str>) -> Result<Vec<Member>, StoreError> {
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} FROM members
             WHERE kind = ?1 AND (CAST(?2 AS TEXT) IS NULL OR team = ?2) ORDER BY created_ms, id"
        );
        Ok(self
            .db
            .with(|c| all(c.query(&sql, sql_params![kind.as_str(), team])?, member_of))?)
    }

    pub fn member(&self, kind: MemberKind, id: &str) -> Result<Member, StoreError> {
        let sql = format!("SELECT {MEMBER_COLUMNS} FROM members WHERE kind = ?1 AND id = ?2");
        self.one(&sql, sql_params![kind.as_str(), id], member_of, || {
            format!("No {} `{id}`.", kind.as_str())
        })
    }

    /// Deletes a user or a project and revokes its keys.
    pub fn delete_member(&self, kind: MemberKind, id: &str) -> Result<usize, StoreError> {
        let column = match kind {
            MemberKind::User => "\"user\"",
            MemberKind::Project => "project",
        };
        let revoke = format!(
            "UPDATE keys SET status = 'revoked' WHERE {column} = ?1 AND status != 'revoked'"
        );
        self.db
            .tx(|c| {
                if c.execute(
                    "DELETE FROM members WHERE kind = ?1 AND id = ?2",
                    sql_params![kind.as_str(), id],
                )? == 0
                {
                    return Ok(None);
                }
                let revoked = c.execute(&revoke, sql_params![id])?;
                changed(c)?;
                Ok(Some(revoked as usize))
            })?
            .ok_or_else(|| StoreError::NotFound(format!("No {} `{id}`.", kind.as_str())))
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

    /// Creates a key; returns it and its secret (the only time the secret exists outside the
    /// caller's hands).
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
        let sql = format!("INSERT INTO keys ({KEY_COLUMNS}, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");
        let (models, ips, metadata) = (
            list_json(&key.models),
            list_json(&key.ips),
            key.metadata.to_string(),
        );
        let h = hash(&secret);
        self.db.tx(|c| {
            c.execute(
                &sql,
                sql_params![
                    &key.id,
                    &key.name,
                    &key.prefix,
                    &key.team,
                    key.user.as_deref(),
                    key.project.as_deref(),
                    models.as_deref(),
                    ips.as_deref(),
                    key.expires_ms,
                    &metadata,
                    key.status.as_str(),
                    key.created_ms,
                    key.previous_until_ms,
                    key.role.as_str(),
                    &h[..],
                ],
            )?;
            changed(c)
        })?;
        Ok((key, secret))
    }

    /// Keys, of one team or all, in the order they were made.
    pub fn keys(&self, team: Option<&str>) -> Result<Vec<StoredKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE CAST(?1 AS TEXT) IS NULL OR team = ?1 ORDER BY created_ms, id"
        );
        Ok(self
            .db
            .with(|c| all(c.query(&sql, sql_params![team])?, key_of))?)
    }

    pub fn key(&self, id: &str) -> Result<StoredKey, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = ?1");
        self.one(&sql, sql_params![id], key_of, || format!("No key `{id}`."))
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
        let (models, ips, metadata) = (
            list_json(&key.models),
            list_json(&key.ips),
            key.metadata.to_string(),
        );
        self.db.tx(|c| {
            c.execute(
                "UPDATE keys SET name = ?2, \"user\" = ?3, project = ?4, models = ?5, ips = ?6, expires_ms = ?7, metadata = ?8 WHERE id = ?1",
                sql_params![
                    &key.id,
                    &key.name,
                    key.user.as_deref(),
                    key.project.as_deref(),
                    models.as_deref(),
                    ips.as_deref(),
                    key.expires_ms,
                    &metadata
                ],
            )?;
            changed(c)
        })?;
        Ok(key)
    }

    pub fn revoke_key(&self, id: &str) -> Result<StoredKey, StoreError> {
        let found = self.db.tx(|c| {
            let n = c.execute(
                "UPDATE keys SET status = 'revoked' WHERE id = ?1",
                sql_params![id],
            )?;
            changed(c)?;
            Ok(n > 0)
        })?;
        if !found {
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
        let h = hash(&secret);
        self.db.tx(|c| {
            c.execute(
                "UPDATE keys SET previous_hash = hash, previous_until_ms = ?2, hash = ?3, prefix = ?4 WHERE id = ?1",
                sql_params![id, until, &h[..], &secret[..SECRET_SHOWN]],
            )?;
            changed(c)
        })?;
        Ok((self.key(id)?, secret))
    }

    /// Every key with its team's bounds and the hashes of its secrets (the current one, and
    /// the one before a rotation while it may still work). A key whose team is gone is
    /// revoked.
    pub(super) fn entries(&self) -> Result<Vec<Hashed>, StoreError> {
        let teams_sql = format!("SELECT {TEAM_COLUMNS} FROM teams");
        let keys_sql = format!("SELECT {KEY_COLUMNS}, hash, previous_hash FROM keys");
        // One snapshot of both tables.
        let (teams, keys) = self
            .db
            .tx(|c| Ok((c.query(&teams_sql, &[])?, c.query(&keys_sql, &[])?)))?;
        let mut by_id = std::collections::HashMap::new();
        for t in all(teams, team_of)? {
            by_id.insert(t.id.clone(), t);
        }
        let mut out = Vec::with_capacity(keys.len());
        for r in &keys {
            let mut key = key_of(r)?;
            let Some(Ok(h)) = r.opt_blob(14)?.map(|h| <[u8; 32]>::try_from(h.as_slice())) else {
                continue;
            };
            let team = by_id.get(&key.team);
            if team.is_none() {
                key.status = Status::Revoked;
            }
            // Kept past its grace period, so that its refusal can say it was rotated.
            let previous = r
                .opt_blob(15)?
                .and_then(|p| <[u8; 32]>::try_from(p.as_slice()).ok());
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
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| StoreError::Db(format!("no randomness: {e}")))?;
        // Another replica may have made one first: the stored one wins.
        let stored = self.db.tx(|c| {
            c.execute(
                "INSERT INTO meta (name, value) VALUES ('token_key', ?1) ON CONFLICT (name) DO NOTHING",
                sql_params![&k[..]],
            )?;
            c.query_opt("SELECT value FROM meta WHERE name = 'token_key'", &[])?
                .map(|r| r.opt_blob(0))
                .transpose()
        })?;
        stored
            .flatten()
            .and_then(|s| <[u8; 32]>::try_from(s.as_slice()).ok())
            .ok_or_else(|| StoreError::Db("the token key in the store is damaged".into()))
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
        let change = change.to_string();
        self.db.with(|c| {
            c.execute(
                "INSERT INTO audit (ts_ms, actor, address, team, action, target, change) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                sql_params![now_ms(), actor, address, team, action, target, &change],
            )
        })?;
        Ok(())
    }

    /// The audit trail, newest first, at most `limit` entries.
    /// Of one team (`Some`), or all.
    pub fn audit_entries(
        &self,
        team: Option<&str>,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = self.db.with(|c| {
            c.query(
                "SELECT ts_ms, actor, address, action, target, change, team FROM audit
                 WHERE CAST(?1 AS TEXT) IS NULL OR team = ?1 ORDER BY id DESC LIMIT ?2",
                sql_params![team, i64::from(limit)],
            )
        })?;
        Ok(all(rows, |r| {
            Ok(serde_json::json!({
                "ts_ms": r.int(0)?,
                "actor": r.text(1)?,
                "address": r.opt_text(2)?,
                "action": r.text(3)?,
                "target": r.text(4)?,
                "team": r.opt_text(6)?,
                "change": serde_json::from_str::<serde_json::Value>(&r.text(5)?).unwrap_or_default(),
            }))
        })?)
    }
}

/// Two replicas made the same name at once: the loser's insert breaks the unique index.
fn unique_violation(e: &DbError) -> bool {
    e.0.contains("UNIQUE constraint failed") || e.0.contains("duplicate key value")
}

/// The longest a replaced secret keeps working after a rotation.
const MAX_GRACE_MS: i64 = 7 * 86_400_000;

/// Characters of a secret kept as its shown prefix: `sk-jn-` and four more.
const SECRET_SHOWN: usize = super::SECRET_PREFIX.len() + 4;
