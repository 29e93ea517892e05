//! Accounting: every chat request becomes one [`Entry`], handed by the request path to a
//! bounded queue (never waiting: a full queue drops the entry and counts it). One thread
//! takes them off in batches, estimates usage the upstream did not report, prices it, writes
//! the access-log line, inserts the ledger rows in one SQLite transaction per batch (WAL) and
//! adds the tokens and cost to the metrics. On shutdown the queue is written out before the
//! process exits.

use super::estimate::{self, Tokenizer};
use super::{cost_micros, Kept, Usage};
use crate::access_log::{Record, Sink};
use crate::config::Deployment;
use crate::metrics::{Labels, Metrics};
use crate::sql_params;
use crate::store::sql::{migrate, Db, DbError, Kind, Url};
use bytes::Bytes;
use rusqlite::Connection;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most entries written in one transaction.
const BATCH: usize = 1024;
/// Bytes of request bodies and relayed chunks (kept for estimates or content) the queue may
/// hold; beyond it new entries lose them (their usage cannot be estimated, and is counted).
const QUEUE_BYTES: usize = 256 * 1024 * 1024;
/// After the close, entries still arriving (requests dropped as the runtimes stop) are taken
/// until none came for this long.
const LATE_ENTRIES: Duration = Duration::from_millis(200);
/// How often the accounting thread looks for entries: the most an entry waits to be written
/// (65,536 queued entries last 8 s at 8,000 requests a second).
const POLL: Duration = Duration::from_millis(10);

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ending {
    /// The whole answer reached the client.
    #[default]
    Complete,
    /// The client left before the answer was complete.
    ClientAborted,
    /// The upstream failed: an error status, a connection failure, a cut stream.
    UpstreamError,
    /// Refused before any upstream was asked (auth, bad request, unknown model).
    Rejected,
    /// The gateway stopped (shutdown) before the answer was complete.
    Interrupted,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::ClientAborted => "client_aborted",
            Ending::UpstreamError => "upstream_error",
            Ending::Rejected => "rejected",
            Ending::Interrupted => "interrupted",
        }
    }
}

/// Everything known of one finished request.
#[derive(Default)]
pub struct Entry {
    /// Milliseconds since the Unix epoch, at arrival.
    pub ts_ms: u64,
    pub request_id: u64,
    pub trace_id: Option<u128>,
    pub key: Option<Arc<str>>,
    /// A stored key's team, user and project.
    pub tenant: Option<Arc<crate::tenancy::Entry>>,
    /// The public model name (the route's), or as requested when it matched none.
    pub model: Option<Arc<str>>,
    /// The deployment that answered, or the last one tried.
    pub deployment: Option<Deployment>,
    pub status: u16,
    pub stream: bool,
    /// As the upstream reported it; `None`: not reported (then estimated).
    pub usage: Option<Usage>,
    /// Of an answer that did not complete, what the upstream had reported (then the estimate
    /// takes its prompt counts, which are the provider's own).
    pub partial: Option<Usage>,
    pub ending: Ending,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub attempts: u32,
    pub error: Option<crate::error::Code>,
    /// The client's request body (for estimates, and content when stored).
    pub request: Option<Bytes>,
    /// What was relayed to the client (a bounded prefix).
    pub relayed: Kept,
    /// The labels of its metrics.
    pub labels: Option<Labels>,
    /// Its limits' hold: settled to the usage and cost written here.
    pub hold: Option<crate::limits::Hold>,
}

impl Entry {
    /// Bytes of body and chunks the entry holds while queued.
    fn held_bytes(&self) -> u64 {
        (self.request.as_ref().map_or(0, |b| b.len()) + self.relayed.kept()) as u64
    }
}

/// Where an entry's token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Upstream,
    Estimate(Tokenizer),
    None,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Estimate(_) => "estimate",
            Source::None => "none",
        }
    }
}

enum Msg {
    Entry(Box<Entry>),
    /// Written everything sent before? Answered once it is committed.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// Write what came before, then stop.
    Close,
}

/// The request path's handle on accounting.
pub struct Accounting {
    tx: SyncSender<Msg>,
    closed: std::sync::atomic::AtomicBool,
    /// Entries queued and not yet written.
    depth: Arc<AtomicU64>,
    pub dropped: AtomicU64,
    pub written: Arc<AtomicU64>,
    /// Rows lost because the ledger could not be written.
    pub write_errors: Arc<AtomicU64>,
    /// Entries whose body and chunks were let go (queue over its byte budget).
    pub unestimated: AtomicU64,
    /// Bytes of bodies and chunks waiting in the queue.
    queued_bytes: Arc<AtomicU64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    ledger: Option<Arc<Reader>>,
    pub store_content: bool,
}

/// What the accounting thread writes to.
pub struct Outputs {
    pub ledger: Option<PathBuf>,
    /// The ledger in PostgreSQL instead (`ledger` is then not used).
    pub postgres: Option<Url>,
    pub store_content: bool,
    pub access_log: Option<Sink>,
    pub queue: usize,
    pub metrics: Arc<Metrics>,
}

impl Accounting {
    /// Opens the ledger (creating its table) and the access log, and starts the thread.
    pub fn start(o: Outputs) -> Result<Arc<Accounting>, String> {
        let (db, reader) = match (&o.postgres, &o.ledger) {
            (Some(url), _) => {
                let open = || -> Result<Db, DbError> {
                    let db = Db::postgres(url)?;
                    db.with(|c| migrate(c, "ledger", PG_SCHEMA))?;
                    Ok(db)
                };
                let e = |e: DbError| format!("cannot open the ledger in PostgreSQL: {e}");
                let db = open().map_err(e)?;
                let reader = Db::postgres(url).map_err(e)?;
                (Some(db), Some(Reader::Postgres(reader)))
            }
            (None, Some(path)) => {
                let db = open(path)
                    .map_err(|e| format!("cannot open the ledger {}: {e}", path.display()))?;
                (
                    Some(Db::Sqlite(Mutex::new(db))),
                    Some(Reader::Sqlite(path.clone())),
                )
            }
            (None, None) => (None, None),
        };
        let log = match &o.access_log {
            Some(sink) => Some(
                sink.open()
                    .map_err(|e| format!("cannot open the access log: {e}"))?,
            ),
            None => None,
        };
        let (tx, rx) = sync_channel(o.queue);
        let depth = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let write_errors = Arc::new(AtomicU64::new(0));
        let queued_bytes = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            db,
            log,
            metrics: o.metrics,
            depth: depth.clone(),
            written: written.clone(),
            write_errors: write_errors.clone(),
            queued_bytes: queued_bytes.clone(),
            store_content: o.store_content,
        };
        let thread = std::thread::Builder::new()
            .name("junction-accounting".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Accounting {
            tx,
            closed: std::sync::atomic::AtomicBool::new(false),
            depth,
            dropped: AtomicU64::new(0),
            written,
            write_errors,
            unestimated: AtomicU64::new(0),
            queued_bytes,
            thread: Mutex::new(Some(thread)),
            ledger: reader.map(Arc::new),
            store_content: o.store_content,
        }))
    }

    /// No ledger, no access log: entries are only counted into the metrics.
    pub fn metrics_only(metrics: Arc<Metrics>) -> Arc<Accounting> {
        Accounting::start(Outputs {
            ledger: None,
            postgres: None,
            store_content: false,
            access_log: None,
            queue: 1024,
            metrics,
        })
        .expect("no file to open")
    }

    // hot path: one allocation and a non-blocking send.
    pub fn record(&self, mut entry: Entry) {
        let mut bytes = entry.held_bytes();
        if bytes > 0 && self.queued_bytes.load(Relaxed) + bytes > QUEUE_BYTES as u64 {
            entry.request = None;
            entry.relayed = Kept::default();
            bytes = 0;
            self.unestimated.fetch_add(1, Relaxed);
        }
        self.depth.fetch_add(1, Relaxed);
        self.queued_bytes.fetch_add(bytes, Relaxed);
        match self.tx.try_send(Msg::Entry(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.depth.fetch_sub(1, Relaxed);
                self.queued_bytes.fetch_sub(bytes, Relaxed);
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn depth(&self) -> u64 {
        self.depth.load(Relaxed)
    }

    /// Where the ledger is read (`/admin/usage`).
    pub fn ledger(&self) -> Option<&Reader> {
        self.ledger.as_deref()
    }

    /// Where new budget counters read what was spent so far.
    pub fn spent_source(&self) -> Option<Arc<dyn crate::limits::Spent>> {
        self.ledger
            .clone()
            .map(|r| r as Arc<dyn crate::limits::Spent>)
    }

    /// Waits until everything recorded before this call is written.
    pub async fn flush(&self) {
        let (ack, done) = tokio::sync::oneshot::channel();
        let tx = self.tx.clone();
        // A full queue: wait for room off the runtime's threads.
        let sent = tokio::task::spawn_blocking(move || tx.send(Msg::Flush(ack)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = done.await;
        }
    }

    /// Writes what is queued, and what still arrives until none came for a moment (requests
    /// dropped as the runtimes stop), then waits for the thread to finish. Call it once the
    /// server stopped.
    pub fn close(&self) {
        if self.closed.swap(true, Relaxed) {
            return;
        }
        let _ = self.tx.send(Msg::Close);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    trace_id TEXT,
    key TEXT,
    model TEXT,
    deployment TEXT,
    provider TEXT,
    upstream_model TEXT,
    status INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd_micros INTEGER,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    attempts INTEGER NOT NULL,
    usage_source TEXT NOT NULL,
    tokenizer TEXT,
    ending TEXT NOT NULL,
    error TEXT,
    prompt TEXT,
    completion TEXT,
    team TEXT,
    user TEXT,
    project TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts_ms);
";

/// The ledger on PostgreSQL, in versioned migrations (`junction_schema`'s `ledger` row).
pub const PG_SCHEMA: &[&str] = &["
CREATE TABLE requests (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    trace_id TEXT,
    key TEXT,
    model TEXT,
    deployment TEXT,
    provider TEXT,
    upstream_model TEXT,
    status BIGINT NOT NULL,
    stream BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_usd_micros BIGINT,
    latency_ms DOUBLE PRECISION NOT NULL,
    ttft_ms DOUBLE PRECISION,
    attempts BIGINT NOT NULL,
    usage_source TEXT NOT NULL,
    tokenizer TEXT,
    ending TEXT NOT NULL,
    error TEXT,
    prompt TEXT,
    completion TEXT,
    team TEXT,
    \"user\" TEXT,
    project TEXT
);
CREATE INDEX requests_ts ON requests (ts_ms);
CREATE INDEX requests_team ON requests (team, ts_ms);
"];

/// Where `/admin/usage` reads the ledger: an SQLite file (opened read-only for each query, so
/// that it never waits for the writer), or a PostgreSQL connection of its own.
pub enum Reader {
    Sqlite(PathBuf),
    Postgres(Db),
}

/// Opens (creating or migrating) the ledger where the settings put it, and closes it: for
/// `junction migrate`. Says where and at which version.
pub fn migrate_only(path: Option<&Path>, postgres: Option<&Url>) -> Result<String, String> {
    match (postgres, path) {
        (Some(url), _) => {
            let v = Db::postgres(url)
                .and_then(|db| db.with(|c| migrate(c, "ledger", PG_SCHEMA)))
                .map_err(|e| format!("the ledger in PostgreSQL: {e}"))?;
            Ok(format!("ledger: {} at schema version {v}", url.shown()))
        }
        (None, Some(p)) => {
            open(p).map_err(|e| format!("the ledger {}: {e}", p.display()))?;
            Ok(format!("ledger: {}", p.display()))
        }
        (None, None) => Ok("ledger: off".into()),
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let db = Connection::open(path)?;
    db.busy_timeout(Duration::from_secs(5))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.execute_batch(SCHEMA)?;
    // A ledger written before keys had teams: the columns they add.
    let has_team: bool = db
        .prepare("SELECT 1 FROM pragma_table_info('requests') WHERE name = 'team'")?
        .exists([])?;
    if !has_team {
        db.execute_batch(
            "ALTER TABLE requests ADD COLUMN team TEXT;
             ALTER TABLE requests ADD COLUMN user TEXT;
             ALTER TABLE requests ADD COLUMN project TEXT;",
        )?;
    }
    db.execute_batch("CREATE INDEX IF NOT EXISTS requests_team ON requests (team, ts_ms);")?;
    Ok(db)
}

struct Writer {
    db: Option<Db>,
    log: Option<Box<dyn Write + Send>>,
    metrics: Arc<Metrics>,
    depth: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    write_errors: Arc<AtomicU64>,
    queued_bytes: Arc<AtomicU64>,
    store_content: bool,
}

/// An entry made final: usage known or estimated, priced.
struct Final {
    e: Box<Entry>,
    usage: Usage,
    source: Source,
    cost: Option<u64>,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<Final> = Vec::with_capacity(BATCH);
        let mut acks = Vec::new();
        let mut closing = false;
        loop {
            let first = if closing {
                rx.recv_timeout(LATE_ENTRIES).ok()
            } else {
                // Polled, never woken: a request that queues its entry does not pay for waking
                // this thread (a futex call, and on a busy core a context switch, per request),
                // and the entries of a poll interval are written as one batch.
                match rx.try_recv() {
                    Ok(msg) => Some(msg),
                    Err(TryRecvError::Empty) => {
                        std::thread::sleep(POLL);
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            let Some(first) = first else { break };
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Entry(e) => {
                        self.queued_bytes.fetch_sub(e.held_bytes(), Relaxed);
                        batch.push(finalize(e));
                    }
                    Msg::Flush(ack) => acks.push(ack),
                    Msg::Close => closing = true,
                }
                if batch.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.write(&mut batch);
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }

    fn write(&mut self, batch: &mut Vec<Final>) {
        if batch.is_empty() {
            return;
        }
        if let Some(log) = &mut self.log {
            for f in batch.iter() {
                let request_id = format!("{:016x}", f.e.request_id);
                let trace_id = f.e.trace_id.map(|t| format!("{t:032x}"));
                let _ =
                    serde_json::to_writer(&mut *log, &record(f, &request_id, trace_id.as_deref()));
                let _ = log.write_all(b"\n");
            }
            let _ = log.flush();
        }
        if let Some(db) = &self.db {
            // A file fails for good at once; a database server may be restarting or failing
            // over: its batch is held (and the queue fills behind it) for up to a minute.
            let patience = match db.kind() {
                Kind::Sqlite => Duration::from_millis(700),
                Kind::Postgres => Duration::from_secs(60),
            };
            let since = std::time::Instant::now();
            let mut tries = 0;
            while let Err(e) = insert(db, batch, self.store_content) {
                tries += 1;
                if since.elapsed() >= patience {
                    tracing::error!(error = %e, rows = batch.len(), "ledger write failed; rows lost");
                    self.write_errors.fetch_add(batch.len() as u64, Relaxed);
                    break;
                }
                tracing::warn!(error = %e, "ledger write failed; trying again");
                std::thread::sleep(Duration::from_millis((100u64 << tries.min(5)).min(2000)));
            }
        }
        for f in batch.iter() {
            if let Some(labels) = &f.e.labels {
                self.metrics.usage(labels, &f.usage, f.cost);
            }
        }
        let n = batch.len() as u64;
        self.written.fetch_add(n, Relaxed);
        self.depth.fetch_sub(n, Relaxed);
        batch.clear();
    }
}

fn finalize(mut e: Box<Entry>) -> Final {
    // Estimated only when the upstream answered (something was relayed): a request that
    // failed, or whose client left, before any answer cost nothing.
    let (usage, source) = match e.usage {
        Some(u) => (u, Source::Upstream),
        None if e.attempts > 0 && e.relayed.total > 0 => {
            let t = Tokenizer::for_model(e.deployment.as_ref().map_or("", |d| &*d.upstream_model));
            let mut u = estimate::estimate(
                e.request.as_deref().unwrap_or_default(),
                e.relayed.bytes(),
                e.relayed.total,
                e.stream,
                t,
            );
            // The provider bills the prompt it counted: where it said so before the answer
            // broke off, that count, and never less output than it had reported.
            if let Some(p) = e.partial.filter(|p| p.input_tokens > 0) {
                u.input_tokens = p.input_tokens;
                u.cached_input_tokens = p.cached_input_tokens;
                u.cache_write_tokens = p.cache_write_tokens;
                u.output_tokens = u.output_tokens.max(p.output_tokens);
                u.reasoning_tokens = p.reasoning_tokens.min(u.output_tokens);
            }
            (u, Source::Estimate(t))
        }
        None => (Usage::default(), Source::None),
    };
    // Nothing used costs nothing (when the price is known).
    let cost = e
        .deployment
        .as_ref()
        .and_then(|d| d.price)
        .map(|p| cost_micros(&usage, &p));
    if source == Source::None {
        e.relayed = Kept::default();
    }
    if let Some(hold) = e.hold.take() {
        hold.settle(usage.input_tokens + usage.output_tokens, cost.unwrap_or(0));
    }
    Final {
        e,
        usage,
        source,
        cost,
    }
}

fn record<'a>(f: &'a Final, request_id: &'a str, trace_id: Option<&'a str>) -> Record<'a> {
    let e = &f.e;
    let counted = f.source != Source::None;
    Record {
        ts_ms: e.ts_ms,
        request_id,
        trace_id,
        key: e.key.as_deref(),
        model: e.model.as_deref(),
        deployment: e.deployment.as_ref().map(|d| &*d.id),
        provider: e.deployment.as_ref().map(|d| &*d.provider.name),
        status: e.status,
        stream: e.stream,
        input_tokens: counted.then_some(f.usage.input_tokens),
        output_tokens: counted.then_some(f.usage.output_tokens),
        cached_tokens: counted.then_some(f.usage.cached_input_tokens),
        cache_write_tokens: counted.then_some(f.usage.cache_write_tokens),
        reasoning_tokens: counted.then_some(f.usage.reasoning_tokens),
        cost_usd_micros: f.cost,
        usage_source: f.source.as_str(),
        ending: e.ending.as_str(),
        latency_ms: e.latency.as_secs_f64() * 1000.0,
        ttft_ms: e.ttft.map(|t| t.as_secs_f64() * 1000.0),
        attempts: e.attempts,
        error: e.error.map(crate::error::Code::as_str),
    }
}

/// Only requests that reached an upstream go into the ledger.
fn insert(db: &Db, batch: &[Final], store_content: bool) -> Result<(), DbError> {
    const INSERT: &str = "INSERT INTO requests (ts_ms, request_id, trace_id, key, model, deployment, provider,
                upstream_model, status, stream, input_tokens, output_tokens, cached_tokens,
                cache_write_tokens, reasoning_tokens, cost_usd_micros, latency_ms, ttft_ms,
                attempts, usage_source, tokenizer, ending, error, prompt, completion, team, \"user\",
                project)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)";
    // A batch whose commit went unanswered (the server restarting as it committed) is
    // written again: on PostgreSQL the rows already there are left as they are, so none is
    // counted twice.
    let insert = match db.kind() {
        Kind::Sqlite => std::borrow::Cow::Borrowed(INSERT),
        Kind::Postgres => format!("{INSERT} ON CONFLICT (request_id) DO NOTHING").into(),
    };
    db.tx(|c| {
        for f in batch.iter().filter(|f| f.e.attempts > 0) {
            let e = &f.e;
            let d = e.deployment.as_ref();
            let (prompt, completion) = if store_content {
                (
                    e.request
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                    Some(estimate::Completion::text(e.relayed.bytes(), e.stream)),
                )
            } else {
                (None, None)
            };
            let request_id = format!("{:016x}", e.request_id);
            let trace_id = e.trace_id.map(|t| format!("{t:032x}"));
            c.execute(
                &insert,
                sql_params![
                    e.ts_ms as i64,
                    &request_id,
                    trace_id.as_deref(),
                    e.key.as_deref(),
                    e.model.as_deref(),
                    d.map(|d| &*d.id),
                    d.map(|d| &*d.provider.name),
                    d.map(|d| &*d.upstream_model),
                    i64::from(e.status),
                    i64::from(e.stream),
                    f.usage.input_tokens as i64,
                    f.usage.output_tokens as i64,
                    f.usage.cached_input_tokens as i64,
                    f.usage.cache_write_tokens as i64,
                    f.usage.reasoning_tokens as i64,
                    f.cost.map(|c| c as i64),
                    e.latency.as_secs_f64() * 1000.0,
                    e.ttft.map(|t| t.as_secs_f64() * 1000.0),
                    i64::from(e.attempts),
                    f.source.as_str(),
                    match f.source {
                        Source::Estimate(t) => Some(t.as_str()),
                        _ => None,
                    },
                    e.ending.as_str(),
                    e.error.map(crate::error::Code::as_str),
                    prompt.as_deref(),
                    completion.as_deref(),
                    e.tenant.as_ref().map(|t| &*t.key.team),
                    e.tenant.as_ref().and_then(|t| t.key.user.as_deref()),
                    e.tenant.as_ref().and_then(|t| t.key.project.as_deref()),
                ],
            )?;
        }
        Ok(())
    })
}

/// What `/admin/usage` groups by: one or more of these (`group_by=team,day`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Model,
    Provider,
    Team,
    User,
    Project,
    /// The UTC day, `2026-12-03`.
    Day,
}

impl GroupBy {
    pub const NAMES: &'static str = "key, model, provider, team, user, project or day";

    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "key" => GroupBy::Key,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "team" => GroupBy::Team,
            "user" => GroupBy::User,
            "project" => GroupBy::Project,
            "day" => GroupBy::Day,
            _ => return None,
        })
    }

    /// A comma-separated list, each at most once.
    pub fn parse_list(s: &str) -> Option<Vec<GroupBy>> {
        let mut out = Vec::new();
        for part in s.split(',') {
            let g = GroupBy::parse(part.trim())?;
            if !out.contains(&g) {
                out.push(g);
            }
        }
        Some(out)
    }

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Key => "key",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Team => "team",
            GroupBy::User => "user",
            GroupBy::Project => "project",
            GroupBy::Day => "day",
        }
    }

    fn column(self, kind: Kind) -> &'static str {
        match (self, kind) {
            (GroupBy::Day, Kind::Sqlite) => "date(ts_ms / 1000, 'unixepoch')",
            (GroupBy::Day, Kind::Postgres) => {
                "to_char(to_timestamp(ts_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
            (GroupBy::User, _) => "\"user\"",
            (g, _) => g.name(),
        }
    }
}

/// Totals per group over `[from, to)` (milliseconds since the epoch), as JSON.
pub fn totals(
    ledger: &Reader,
    group_by: &[GroupBy],
    from_ms: i64,
    to_ms: i64,
    team: Option<&str>,
) -> Result<serde_json::Value, DbError> {
    ledger.read(|db| totals_in(db, group_by, from_ms, to_ms, team))
}

impl Reader {
    /// `f` over the ledger: a read-only connection of its own to an SQLite file.
    fn read<T>(&self, f: impl FnOnce(&Db) -> Result<T, DbError>) -> Result<T, DbError> {
        match self {
            Reader::Sqlite(path) => {
                let c =
                    Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                c.busy_timeout(Duration::from_secs(5))?;
                f(&Db::Sqlite(Mutex::new(c)))
            }
            Reader::Postgres(db) => f(db),
        }
    }
}

/// What a budget's level spent since `since_ms`: the money of every ledger row it is named
/// in (the key column holds a config key's name or a stored key's id).
impl crate::limits::Spent for Reader {
    fn spent(&self, kind: crate::limits::Kind, id: &str, since_ms: i64) -> Result<u64, String> {
        use crate::limits::Kind as L;
        let column = match kind {
            L::Key => GroupBy::Key,
            L::User => GroupBy::User,
            L::Project => GroupBy::Project,
            L::Team => GroupBy::Team,
            L::Deployment => return Ok(0),
        };
        self.read(|db| {
            let sql = format!(
                "SELECT CAST(COALESCE(SUM(cost_usd_micros), 0) AS BIGINT) FROM requests WHERE {} = ?1 AND ts_ms >= ?2",
                column.column(db.kind())
            );
            let rows = db.with(|c| c.query(&sql, sql_params![id, since_ms]))?;
            Ok(rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0).max(0) as u64)
        })
        .map_err(|e| format!("the ledger: {e}"))
    }
}

fn totals_in(
    db: &Db,
    group_by: &[GroupBy],
    from_ms: i64,
    to_ms: i64,
    team: Option<&str>,
) -> Result<serde_json::Value, DbError> {
    let cols: Vec<&str> = group_by.iter().map(|g| g.column(db.kind())).collect();
    // The same order on both: no group before the named ones, then by bytes.
    let order: Vec<String> = cols
        .iter()
        .map(|c| match db.kind() {
            Kind::Sqlite => format!("{c} NULLS FIRST"),
            Kind::Postgres => format!("{c} COLLATE \"C\" NULLS FIRST"),
        })
        .collect();
    let order = order.join(", ");
    let cols = cols.join(", ");
    let k = group_by.len();
    let sum = |e: &str| format!("CAST(SUM({e}) AS BIGINT)");
    let count = |cond: &str| sum(&format!("CASE WHEN {cond} THEN 1 ELSE 0 END"));
    let sql = format!(
        "SELECT {cols}, COUNT(*), {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}
         FROM requests WHERE ts_ms >= ?1 AND ts_ms < ?2 AND (CAST(?3 AS TEXT) IS NULL OR team = ?3)
         GROUP BY {cols} ORDER BY {order}",
        sum("input_tokens"),
        sum("output_tokens"),
        sum("cached_tokens"),
        sum("cache_write_tokens"),
        sum("reasoning_tokens"),
        sum("COALESCE(cost_usd_micros, 0)"),
        count("cost_usd_micros IS NULL"),
        count("usage_source = 'estimate'"),
        count("ending = 'complete'"),
        count("ending = 'client_aborted'"),
        count("ending = 'upstream_error'"),
    );
    let rows = db.with(|c| c.query(&sql, sql_params![from_ms, to_ms, team]))?;
    let mut groups = Vec::with_capacity(rows.len());
    for r in &rows {
        // The aggregates as numbered when there was one group column: 1 is the count.
        let n = |i: usize| r.int(k + i - 1);
        let cost = n(7)?;
        let mut group = serde_json::Map::new();
        for (i, g) in group_by.iter().enumerate() {
            group.insert(g.name().into(), r.opt_text(i)?.into());
        }
        let totals = serde_json::json!({
            "requests": n(1)?,
            "input_tokens": n(2)?,
            "output_tokens": n(3)?,
            "cached_input_tokens": n(4)?,
            "cache_write_tokens": n(5)?,
            "reasoning_tokens": n(6)?,
            "cost_usd_micros": cost,
            "cost_usd": format!("{}.{:06}", cost / 1_000_000, cost % 1_000_000),
            "unpriced_requests": n(8)?,
            "estimated_requests": n(9)?,
            "endings": {
                "complete": n(10)?,
                "client_aborted": n(11)?,
                "upstream_error": n(12)?,
            },
        });
        if let serde_json::Value::Object(t) = totals {
            group.extend(t);
        }
        groups.push(serde_json::Value::Object(group));
    }
    Ok(serde_json::json!({
        "group_by": group_by.iter().map(|g| g.name()).collect::<Vec<_>>().join(","),
        "from_ms": from_ms,
        "to_ms": to_ms,
        "groups": groups,
    }))
}

/// The totals of [`totals`] as CSV: the group columns, then every total, a row per group.
pub fn csv_of(v: &serde_json::Value) -> String {
    const TOTALS: [&str; 12] = [
        "requests",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cost_usd_micros",
        "cost_usd",
        "unpriced_requests",
        "estimated_requests",
        "complete",
        "client_aborted",
    ];
    let groups: Vec<&str> = v["group_by"].as_str().unwrap_or("").split(',').collect();
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    let header: Vec<&str> = groups
        .iter()
        .copied()
        .chain(TOTALS)
        .chain(["upstream_error"])
        .collect();
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for g in v["groups"].as_array().into_iter().flatten() {
        let mut row: Vec<String> = groups
            .iter()
            .map(|c| field(g[*c].as_str().unwrap_or("")))
            .collect();
        for t in TOTALS.iter().chain(["upstream_error"].iter()) {
            let cell = match *t {
                "complete" | "client_aborted" | "upstream_error" => &g["endings"][*t],
                t => &g[t],
            };
            row.push(match cell {
                serde_json::Value::String(s) => field(s),
                other => other.to_string(),
            });
        }
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_from_before_teams_gets_their_columns_and_keeps_its_rows() {
        let dir = std::env::temp_dir().join(format!("junction-ledger-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.sqlite");
        // The table as it was, with one row.
        let old = SCHEMA
            .replace(",\n    team TEXT,\n    user TEXT,\n    project TEXT", "")
            .replace(
                "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts_ms);",
                "",
            );
        assert!(!old.contains("team"));
        let db = Connection::open(&path).unwrap();
        db.execute_batch(&old).unwrap();
        db.execute(
            "INSERT INTO requests (ts_ms, request_id, status, stream, input_tokens, output_tokens,
                cached_tokens, cache_write_tokens, reasoning_tokens, latency_ms, attempts,
                usage_source, ending) VALUES (1, 'r', 200, 0, 3, 4, 0, 0, 0, 1.0, 1, 'upstream', 'complete')",
            [],
        )
        .unwrap();
        drop(db);
        let db = open(&path).unwrap();
        let (n, team): (i64, Option<String>) = db
            .query_row("SELECT COUNT(*), MAX(team) FROM requests", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, team), (1, None));
        drop(db);
        // Opened again: nothing to add.
        drop(open(&path).unwrap());
        let v = totals(
            &Reader::Sqlite(path.clone()),
            &[GroupBy::Team, GroupBy::Day],
            0,
            i64::MAX,
            None,
        )
        .unwrap();
        assert_eq!(v["groups"][0]["requests"], 1);
        assert_eq!(v["groups"][0]["day"], "1970-01-01");
        let _ = std::fs::remove_dir_all(dir);
    }
}
