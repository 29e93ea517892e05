//! One small SQL interface over the two databases Junction keeps its state in: SQLite
//! (embedded, the default: nothing to set up) and PostgreSQL (`[store] url`, for several
//! replicas on one database). The tenancy store and the ledger write their statements once,
//! with SQLite's numbered placeholders (`?1`), and run them on either; a statement's rows come
//! back as owned [`Row`]s. Only cold paths use it (the admin API, the ledger's batches, the key
//! refresh): the request path reads memory.
//!
//! What the two disagree on is kept out of the shared statements: each schema has its own
//! migrations, sums are cast to `BIGINT` (PostgreSQL sums integers into `numeric`), truth is
//! counted with `CASE`, and `user` is always quoted (it is reserved in PostgreSQL).
//!
//! The PostgreSQL client is synchronous and drives its own runtime, which must not run inside
//! another: a call made on one of the server's runtime threads runs on a scoped thread of its
//! own (admin calls only; the ledger's and the listener's threads are plain threads).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

impl From<f64> for Param<'_> {
    fn from(v: f64) -> Self {
        Param::Real(v)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Blob(v)
    }
}

impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}

/// The parameters of a statement, each converted with `Into<Param>`.
#[macro_export]
macro_rules! sql_params {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::sql::Param::from($v)),*][..]
    };
}

/// A column's value in a returned row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A returned row, its columns in the statement's order.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, DbError> {
        self.0
            .get(i)
            .ok_or_else(|| DbError(format!("no column {i} in the row")))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            c => Err(DbError(format!(
                "column {i}: an integer expected, not {c:?}"
            ))),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        self.opt_int(i)?
            .ok_or_else(|| DbError(format!("column {i}: NULL")))
    }

    pub fn opt_real(&self, i: usize) -> Result<Option<f64>, DbError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Real(v) => Ok(Some(*v)),
            Cell::Int(v) => Ok(Some(*v as f64)),
            c => Err(DbError(format!("column {i}: a number expected, not {c:?}"))),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v.clone())),
            c => Err(DbError(format!("column {i}: text expected, not {c:?}"))),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, DbError> {
        self.opt_text(i)?
            .ok_or_else(|| DbError(format!("column {i}: NULL")))
    }

    pub fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, DbError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Blob(v) => Ok(Some(v.clone())),
            c => Err(DbError(format!("column {i}: bytes expected, not {c:?}"))),
        }
    }
}

/// A database error, as text (never holding a connection string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(e.to_string())
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        // The database's own message where there is one (its Display says only "db error").
        match e.as_db_error() {
            Some(d) => DbError(format!("postgres: {}", d.message())),
            // The cause too ("error connecting to server: Connection refused").
            None => match std::error::Error::source(&e) {
                Some(cause) => DbError(format!("postgres: {e}: {cause}")),
                None => DbError(format!("postgres: {e}")),
            },
        }
    }
}

/// Which database a [`Db`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A connection, or a transaction on one.
pub trait Conn {
    fn kind(&self) -> Kind;
    /// Runs a statement; the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, DbError>;
    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError>;
    /// Statements without parameters, separated by `;` (migrations).
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;

    fn query_opt(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

// SQLite.

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(v) => ValueRef::Integer(v),
            Param::Real(v) => ValueRef::Real(v),
            Param::Text(v) => ValueRef::Text(v.as_bytes()),
            Param::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

/// An SQLite connection (or a transaction, which derefs to one).
pub struct Lite<'a>(pub &'a rusqlite::Connection);

impl Conn for Lite<'_> {
    fn kind(&self) -> Kind {
        Kind::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, DbError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.0.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                cells.push(match r.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.0.execute_batch(sql)?)
    }
}

// PostgreSQL.

impl postgres::types::ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, ToSql, Type};
        match (*self, ty) {
            (Param::Null, _) => Ok(IsNull::Yes),
            (Param::Int(v), &Type::INT8) => v.to_sql(ty, out),
            (Param::Int(v), &Type::INT4) => i32::try_from(v)?.to_sql(ty, out),
            (Param::Int(v), &Type::INT2) => i16::try_from(v)?.to_sql(ty, out),
            (Param::Int(v), &Type::FLOAT8) => (v as f64).to_sql(ty, out),
            (Param::Int(v), &Type::BOOL) => (v != 0).to_sql(ty, out),
            (Param::Real(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (Param::Real(v), &Type::FLOAT4) => (v as f32).to_sql(ty, out),
            (Param::Text(v), _) if <&str as ToSql>::accepts(ty) => v.to_sql(ty, out),
            (Param::Blob(v), &Type::BYTEA) => v.to_sql(ty, out),
            (p, ty) => Err(format!("cannot bind {p:?} to a {ty} column").into()),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// `?1` → `$1`: the shared statements in PostgreSQL's placeholders.
pub fn pg_sql(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    Cow::Owned(sql.replace('?', "$"))
}

fn pg_row(r: &postgres::Row) -> Result<Row, DbError> {
    use postgres::types::Type;
    let mut cells = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let cell = match *c.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|v| Cell::Int(v.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|v| Cell::Int(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Cell::Int(v.into())),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(Cell::Real),
            Type::FLOAT4 => r
                .try_get::<_, Option<f32>>(i)?
                .map(|v| Cell::Real(v.into())),
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob),
            _ => r
                .try_get::<_, Option<String>>(i)
                .map_err(|_| DbError(format!("column {}: type {} not read", c.name(), c.type_())))?
                .map(Cell::Text),
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

fn pg_params<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// A PostgreSQL client or transaction, with the statements it prepared.
struct Pgc<'a, C: postgres::GenericClient> {
    client: &'a mut C,
    prepared: &'a mut std::collections::HashMap<String, postgres::Statement>,
}

impl<C: postgres::GenericClient> Pgc<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, DbError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&pg_sql(sql))?;
        if self.prepared.len() > 256 {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

impl<C: postgres::GenericClient> Conn for Pgc<'_, C> {
    fn kind(&self) -> Kind {
        Kind::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, DbError> {
        let s = self.statement(sql)?;
        Ok(self.client.execute(&s, &pg_params(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        let s = self.statement(sql)?;
        self.client
            .query(&s, &pg_params(params))?
            .iter()
            .map(pg_row)
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.client.batch_execute(sql)?)
    }
}

/// A PostgreSQL connection string: never shown (it may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Url(String);

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let ok = s.starts_with("postgres://") || s.starts_with("postgresql://");
        if !ok {
            return Err("must be a postgres:// URL".into());
        }
        s.parse::<postgres::Config>()
            .map_err(|_| "is not a valid PostgreSQL connection URL".to_string())?;
        Ok(Url(s.to_string()))
    }

    /// The URL with its password left out: safe to show.
    pub fn shown(&self) -> String {
        match self.0.parse::<postgres::Config>() {
            Ok(c) => {
                let ports = c.get_ports();
                let hosts: Vec<String> = c
                    .get_hosts()
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let host = match h {
                            postgres::config::Host::Tcp(h) => h.clone(),
                            postgres::config::Host::Unix(p) => p.display().to_string(),
                        };
                        // One port for every host, or one each.
                        match ports.get(i).or(ports.first().filter(|_| ports.len() == 1)) {
                            Some(p) => format!("{host}:{p}"),
                            None => host,
                        }
                    })
                    .collect();
                format!(
                    "postgres://{}@{}/{}",
                    c.get_user().unwrap_or(""),
                    hosts.join(","),
                    c.get_dbname().unwrap_or("")
                )
            }
            Err(_) => "postgres://…".into(),
        }
    }

    pub fn connect(&self) -> Result<postgres::Client, DbError> {
        let mut c: postgres::Config = self
            .0
            .parse()
            .map_err(|_| DbError("not a valid PostgreSQL URL".into()))?;
        if c.get_connect_timeout().is_none() {
            c.connect_timeout(Duration::from_secs(5));
        }
        c.application_name("junction");
        // No TLS here: a database on the local network or a socket (TLS to PostgreSQL is not
        // built in yet).
        c.connect(postgres::NoTls).map_err(|e| {
            DbError(format!(
                "cannot connect to {}: {}",
                self.shown(),
                DbError::from(e).0.trim_start_matches("postgres: ")
            ))
        })
    }
}

impl std::fmt::Debug for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// A PostgreSQL connection that comes back after a failure.
pub struct PgConn {
    url: Url,
    client: Option<postgres::Client>,
    prepared: std::collections::HashMap<String, postgres::Statement>,
}

impl PgConn {
    pub fn connect(url: &Url) -> Result<PgConn, DbError> {
        Ok(PgConn {
            url: url.clone(),
            client: Some(url.connect()?),
            prepared: Default::default(),
        })
    }

    /// Connects again if the connection was lost.
    fn ensure(&mut self) -> Result<(), DbError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.prepared.clear();
            self.client = None;
            self.client = Some(self.url.connect()?);
        }
        Ok(())
    }

    /// Whether the connection is gone, after a call failed: closed, or ended by the server
    /// (a restart, a failover, an administrator; its last words arrive as an error while the
    /// socket still looks open, so an empty query asks).
    fn lost(&mut self) -> bool {
        match self.client.as_mut() {
            None => true,
            Some(c) => c.is_closed() || c.is_valid(Duration::from_secs(2)).is_err(),
        }
    }

    /// Runs `f` on the connection (connecting again first if it was lost), in a transaction
    /// when `tx`; a call that failed because the connection was lost is tried once more on a
    /// new one.
    pub fn run<T>(
        &mut self,
        tx: bool,
        mut f: impl FnMut(&mut dyn Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut tried = false;
        loop {
            self.ensure()?;
            let PgConn {
                client, prepared, ..
            } = self;
            let client = client.as_mut().expect("connected above");
            let result = if tx {
                (|| {
                    let mut t = client.transaction()?;
                    let v = f(&mut Pgc {
                        client: &mut t,
                        prepared,
                    })?;
                    t.commit()?;
                    Ok(v)
                })()
            } else {
                f(&mut Pgc { client, prepared })
            };
            match result {
                Err(e) if !tried && self.lost() => {
                    tracing::warn!(error = %e, "the PostgreSQL connection was lost; connecting again");
                    self.client = None;
                    tried = true;
                }
                r => return r,
            }
        }
    }
}

/// A database shared by the threads of a process: one connection behind a lock.
pub enum Db {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(Box<Mutex<PgConn>>),
}

impl Db {
    /// An SQLite file (WAL), or memory when `path` is `None`.
    pub fn sqlite(path: Option<&Path>) -> Result<Db, DbError> {
        let db = match path {
            Some(p) => rusqlite::Connection::open(p)?,
            None => rusqlite::Connection::open_in_memory()?,
        };
        db.busy_timeout(Duration::from_secs(5))?;
        if path.is_some() {
            db.pragma_update(None, "journal_mode", "WAL")?;
        }
        Ok(Db::Sqlite(Mutex::new(db)))
    }

    pub fn postgres(url: &Url) -> Result<Db, DbError> {
        Ok(Db::Postgres(Box::new(Mutex::new(PgConn::connect(url)?))))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Db::Sqlite(_) => Kind::Sqlite,
            Db::Postgres(_) => Kind::Postgres,
        }
    }

    /// Runs `f` on the connection.
    pub fn with<T: Send>(
        &self,
        f: impl FnMut(&mut dyn Conn) -> Result<T, DbError> + Send,
    ) -> Result<T, DbError> {
        self.run(false, f)
    }

    /// Runs `f` in a transaction, committed when it returns `Ok`.
    pub fn tx<T: Send>(
        &self,
        f: impl FnMut(&mut dyn Conn) -> Result<T, DbError> + Send,
    ) -> Result<T, DbError> {
        self.run(true, f)
    }

    fn run<T: Send>(
        &self,
        tx: bool,
        mut f: impl FnMut(&mut dyn Conn) -> Result<T, DbError> + Send,
    ) -> Result<T, DbError> {
        match self {
            Db::Sqlite(db) => {
                let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
                if tx {
                    let t = db.transaction()?;
                    let v = f(&mut Lite(&t))?;
                    t.commit()?;
                    Ok(v)
                } else {
                    f(&mut Lite(&db))
                }
            }
            Db::Postgres(pg) => {
                let mut call = move || {
                    let mut pg = pg.lock().unwrap_or_else(|p| p.into_inner());
                    pg.run(tx, &mut f)
                };
                if tokio::runtime::Handle::try_current().is_ok() {
                    std::thread::scope(|s| {
                        s.spawn(call)
                            .join()
                            .unwrap_or_else(|_| Err(DbError("the database call panicked".into())))
                    })
                } else {
                    call()
                }
            }
        }
    }
}

/// Versioned migrations: a database at version N gets the ones after N, each in its own
/// transaction. SQLite keeps the version in `PRAGMA user_version` (one schema per file);
/// PostgreSQL in `junction_schema`, a row per schema (`store`, `ledger`), under an advisory
/// lock so that replicas starting together migrate once.
pub fn migrate(c: &mut dyn Conn, schema: &str, migrations: &[&str]) -> Result<usize, DbError> {
    let newest = migrations.len();
    let too_new = |v: usize| {
        DbError(format!(
            "the {schema} is at schema version {v}, newer than this Junction ({newest}): upgrade Junction"
        ))
    };
    match c.kind() {
        Kind::Sqlite => {
            let version = c
                .query_opt("PRAGMA user_version", &[])?
                .map_or(Ok(0), |r| r.int(0))? as usize;
            if version > newest {
                return Err(too_new(version));
            }
            for (i, m) in migrations.iter().enumerate().skip(version) {
                c.batch(&format!(
                    "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
                    i + 1
                ))
                .inspect_err(|_| {
                    let _ = c.batch("ROLLBACK");
                })?;
            }
        }
        Kind::Postgres => {
            // Asked first, so that a replica starting on a made schema says nothing (the
            // server's "already exists, skipping" notice would be logged).
            let made = c
                .query_opt("SELECT CAST(to_regclass('junction_schema') AS TEXT)", &[])?
                .is_some_and(|r| r.opt_text(0).ok().flatten().is_some());
            if made {
                Ok(())
            } else {
                c.batch(
                    "CREATE TABLE IF NOT EXISTS junction_schema (name TEXT PRIMARY KEY, version BIGINT NOT NULL)",
                )
            }
            .or_else(|e| {
                // Two replicas creating it at once: one of them loses, and the table is there.
                if e.0.contains("already exists") || e.0.contains("duplicate key") {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
            loop {
                let version = c
                    .query_opt(
                        "SELECT version FROM junction_schema WHERE name = ?1",
                        crate::sql_params![schema],
                    )?
                    .map_or(Ok(0), |r| r.int(0))? as usize;
                if version > newest {
                    return Err(too_new(version));
                }
                if version == newest {
                    break;
                }
                c.batch("BEGIN; SELECT pg_advisory_xact_lock(7305626)")?;
                let step = (|| {
                    let now = c
                        .query_opt(
                            "SELECT version FROM junction_schema WHERE name = ?1",
                            crate::sql_params![schema],
                        )?
                        .map_or(Ok(0), |r| r.int(0))? as usize;
                    if now == version {
                        c.batch(migrations[version])?;
                        c.execute(
                            "INSERT INTO junction_schema (name, version) VALUES (?1, ?2)
                             ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version",
                            crate::sql_params![schema, (version + 1) as i64],
                        )?;
                    }
                    c.batch("COMMIT")
                })();
                if let Err(e) = step {
                    let _ = c.batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_postgres_ones() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE ?1 IS NULL OR b = ?1 LIMIT ?2"),
            "SELECT a FROM t WHERE $1 IS NULL OR b = $1 LIMIT $2"
        );
        assert!(matches!(pg_sql("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        let u = Url::parse("postgres://junction:hunter2secret@db.internal:5432/junction").unwrap();
        let shown = format!("{u:?} {}", u.shown());
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(
            shown.contains("db.internal:5432") && shown.contains("junction"),
            "{shown}"
        );
        assert!(Url::parse("mysql://x").is_err());
        assert!(Url::parse("sqlite:///tmp/x").is_err());
    }

    /// A row written in a transaction into the migrated table `a (x, y)` is read back.
    fn a_row_goes_in_and_out(db: &Db) {
        db.tx(|c| {
            c.execute(
                "INSERT INTO a (x, y) VALUES (?1, ?2)",
                sql_params![3i64, "z"],
            )
        })
        .unwrap();
        let rows = db.with(|c| c.query("SELECT x, y FROM a", &[])).unwrap();
        assert_eq!(rows[0].int(0).unwrap(), 3);
        assert_eq!(rows[0].text(1).unwrap(), "z");
    }

    #[test]
    fn sqlite_migrates_forward_and_refuses_a_newer_file() {
        let dir = std::env::temp_dir().join(format!("junction-sql-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.sqlite");
        let _ = std::fs::remove_file(&path);
        let db = Db::sqlite(Some(&path)).unwrap();
        let m1 = ["CREATE TABLE a (x INTEGER)"];
        let m2 = [
            "CREATE TABLE a (x INTEGER)",
            "ALTER TABLE a ADD COLUMN y TEXT",
        ];
        assert_eq!(db.with(|c| migrate(c, "store", &m1)).unwrap(), 1);
        assert_eq!(db.with(|c| migrate(c, "store", &m2)).unwrap(), 2);
        a_row_goes_in_and_out(&db);
        let e = db.with(|c| migrate(c, "store", &m1)).unwrap_err();
        assert!(e.0.contains("newer than this Junction"), "{e}");
        // A failed migration leaves the version where it was.
        let bad = [
            "CREATE TABLE a (x INTEGER)",
            "ALTER TABLE a ADD COLUMN y TEXT",
            "NOT SQL",
        ];
        assert!(db.with(|c| migrate(c, "store", &bad)).is_err());
        let v = db.with(|c| c.query("PRAGMA user_version", &[])).unwrap();
        assert_eq!(v[0].int(0).unwrap(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A new database on the cluster `JUNCTION_TEST_STORE` names (`tests/postgres/start`);
    /// `None` when it is not set, and the PostgreSQL tests pass by doing nothing.
    fn fresh_postgres() -> Option<Url> {
        let base = std::env::var("JUNCTION_TEST_STORE").ok()?;
        if base.is_empty() {
            return None;
        }
        let name = format!(
            "jsql_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut admin = Url::parse(&base).unwrap().connect().unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (server, _) = base.rsplit_once('/').unwrap();
        Some(Url::parse(&format!("{server}/{name}")).unwrap())
    }

    #[test]
    fn postgres_migrates_once_under_racing_replicas_and_refuses_a_newer_schema() {
        let Some(url) = fresh_postgres() else { return };
        let m2 = [
            "CREATE TABLE a (x BIGINT)",
            "ALTER TABLE a ADD COLUMN y TEXT",
        ];
        // Four replicas start at once: each migration runs once (a second run of the
        // CREATE TABLE would fail), and all of them end at version 2.
        let versions: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let db = Db::postgres(&url).unwrap();
                        db.with(|c| migrate(c, "store", &m2))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for v in versions {
            assert_eq!(v.unwrap(), 2);
        }
        let db = Db::postgres(&url).unwrap();
        a_row_goes_in_and_out(&db);
        let e = db.with(|c| migrate(c, "store", &m2[..1])).unwrap_err();
        assert!(e.0.contains("newer than this Junction"), "{e}");
        // A failed migration leaves the version, and the schema, where they were.
        let bad = [m2[0], m2[1], "ALTER TABLE a ADD COLUMN w TEXT; NOT SQL"];
        assert!(db.with(|c| migrate(c, "store", &bad)).is_err());
        let v = db
            .with(|c| {
                c.query(
                    "SELECT version FROM junction_schema WHERE name = ?1",
                    sql_params!["store"],
                )
            })
            .unwrap();
        assert_eq!(v[0].int(0).unwrap(), 2);
        assert!(db.with(|c| c.query("SELECT w FROM a", &[])).is_err());
        // Another schema in the same database has its own version.
        assert_eq!(db.with(|c| migrate(c, "ledger", &m2[..0])).unwrap(), 0);
    }

    #[test]
    fn a_lost_postgres_connection_is_made_again() {
        let Some(url) = fresh_postgres() else { return };
        let db = Db::postgres(&url).unwrap();
        let pid = db
            .with(|c| c.query("SELECT CAST(pg_backend_pid() AS BIGINT)", &[]))
            .unwrap()[0]
            .int(0)
            .unwrap();
        // The server ends the connection (a restart, a failover, an idle timeout).
        let mut other = url.connect().unwrap();
        other
            .execute("SELECT pg_terminate_backend($1::int)", &[&(pid as i32)])
            .unwrap();
        let again = db
            .with(|c| c.query("SELECT CAST(pg_backend_pid() AS BIGINT)", &[]))
            .unwrap()[0]
            .int(0)
            .unwrap();
        assert_ne!(again, pid);
    }
}
