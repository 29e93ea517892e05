//! The Responses API's state: responses created with `store` on keep their input and output
//! items, so that a later request's `previous_response_id` and `item_reference` items can be
//! resolved against them, whatever upstream served either request.
//!
//! Decisions:
//! - A response belongs to the key that created it: another key asking for it is told it does
//!   not exist (a conversation is never readable through someone else's key).
//! - The most recent responses are held in memory (up to `[responses] memory_mb`), so that
//!   the next turn, which a client sends the moment the last one ended, finds its predecessor
//!   without waiting for a write. Every response is also written, by a thread of its own, to
//!   an SQLite file beside the ledger; a lookup that misses memory reads it there (one
//!   indexed row).
//! - A response is kept for `[responses] retention_days` (30 by default, as OpenAI does);
//!   older ones are deleted by the writer and not found.
//! - A response records only its own input (with references resolved) and the id of the one
//!   before it: a conversation is the chain, walked back when a request continues it, so a
//!   long conversation is stored once, not once per turn.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `[responses]`, fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Responses with `store` on are kept (default true); off, the door is stateless.
    pub enabled: bool,
    /// The SQLite file; `None`: memory only (lost at restart).
    pub path: Option<PathBuf>,
    pub retention: Duration,
    /// What the most recent responses may take in memory.
    pub memory_bytes: usize,
}

/// A stored response.
#[derive(Debug)]
pub struct Stored {
    pub id: String,
    /// The name of the key that created it.
    pub owner: String,
    /// When it was stored, in seconds since the Unix epoch.
    pub created_at: u64,
    /// The response this one continued.
    pub previous: Option<String>,
    /// Its own input items, references resolved (the conversation before it is `previous`).
    pub input: Vec<Value>,
    /// Its output items.
    pub output: Vec<Value>,
    /// The response object as the client was given it.
    pub response: String,
}

impl Stored {
    fn bytes(&self) -> usize {
        // The response object holds the output; the input is about as large as its JSON.
        2 * self.response.len() + self.input.iter().map(approx_len).sum::<usize>() + 256
    }

    /// The item with this id, among its input and output items.
    pub fn item(&self, id: &str) -> Option<&Value> {
        self.input
            .iter()
            .chain(&self.output)
            .find(|i| i.get("id").and_then(Value::as_str) == Some(id))
    }

    fn item_ids(&self) -> impl Iterator<Item = &str> {
        self.input
            .iter()
            .chain(&self.output)
            .filter_map(|i| i.get("id").and_then(Value::as_str))
    }
}

fn approx_len(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Array(a) => a.iter().map(approx_len).sum::<usize>() + 2,
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + 3 + approx_len(v)).sum(),
        _ => 8,
    }
}

/// The most recent responses, by id and by item id; the oldest go first.
#[derive(Default)]
struct Recent {
    by_id: HashMap<String, Arc<Stored>>,
    items: HashMap<String, Arc<Stored>>,
    order: VecDeque<Arc<Stored>>,
    bytes: usize,
}

impl Recent {
    fn insert(&mut self, s: Arc<Stored>, cap: usize) {
        for id in s.item_ids() {
            self.items.insert(id.to_string(), s.clone());
        }
        self.bytes += s.bytes();
        self.by_id.insert(s.id.clone(), s.clone());
        self.order.push_back(s);
        while self.bytes > cap && self.order.len() > 1 {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.forget(&old);
        }
    }

    fn forget(&mut self, old: &Arc<Stored>) {
        self.bytes = self.bytes.saturating_sub(old.bytes());
        if self.by_id.get(&old.id).is_some_and(|s| Arc::ptr_eq(s, old)) {
            self.by_id.remove(&old.id);
        }
        for id in old.item_ids() {
            if self.items.get(id).is_some_and(|s| Arc::ptr_eq(s, old)) {
                self.items.remove(id);
            }
        }
    }
}

enum Msg {
    Put(Arc<Stored>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// The store: memory in front of an SQLite file.
pub struct Responses {
    settings: Settings,
    recent: Mutex<Recent>,
    reader: Option<Mutex<rusqlite::Connection>>,
    tx: Option<SyncSender<Msg>>,
}

impl std::fmt::Debug for Responses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responses")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    previous TEXT,
    input TEXT NOT NULL,
    response TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON responses (created_at);
CREATE TABLE IF NOT EXISTS response_items (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (owner, id)
);
CREATE INDEX IF NOT EXISTS response_items_created ON response_items (created_at);
";

/// How often the writer deletes what is past retention.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Responses waiting to be written; beyond this they stay in memory only (and are counted).
const QUEUE: usize = 4096;

fn open(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open(path)?;
    db.busy_timeout(Duration::from_secs(5))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.execute_batch(SCHEMA)?;
    Ok(db)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Responses {
    /// Opens the file (creating its tables) and starts the writer.
    pub fn open(settings: Settings) -> Result<Arc<Responses>, String> {
        let (reader, tx) = match &settings.path {
            None => (None, None),
            Some(path) => {
                let what = |e: rusqlite::Error| {
                    format!("cannot open the response store {}: {e}", path.display())
                };
                let db = open(path).map_err(what)?;
                let reader = open(path).map_err(what)?;
                let (tx, rx) = sync_channel(QUEUE);
                let retention = settings.retention;
                std::thread::Builder::new()
                    .name("junction-responses".into())
                    .spawn(move || write(db, rx, retention))
                    .map_err(|e| e.to_string())?;
                (Some(Mutex::new(reader)), Some(tx))
            }
        };
        Ok(Arc::new(Responses {
            settings,
            recent: Mutex::default(),
            reader,
            tx,
        }))
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    fn fresh(&self, s: &Stored) -> bool {
        s.created_at + self.settings.retention.as_secs() >= now()
    }

    /// Keeps a response (the object the client was given: its id and output are read from
    /// it). `input`: its own input items.
    pub fn put(
        &self,
        owner: &str,
        previous: Option<String>,
        input: Vec<Value>,
        response: &[u8],
    ) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        struct Object {
            id: String,
            #[serde(default)]
            output: Vec<Value>,
        }
        let o: Object =
            serde_json::from_slice(response).map_err(|e| format!("not a response: {e}"))?;
        let stored = Arc::new(Stored {
            id: o.id,
            owner: owner.to_string(),
            // When it was stored: the object's own `created_at` may be the upstream's clock.
            created_at: now(),
            previous,
            input,
            output: o.output,
            response: String::from_utf8_lossy(response).into_owned(),
        });
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stored.clone(), self.settings.memory_bytes);
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Put(stored)) {
                tracing::warn!(
                    "the response store's queue is full: a response stays in memory only"
                );
            }
        }
        Ok(())
    }

    /// The response `id`, if `owner` created it and it is within retention.
    pub fn get(&self, owner: &str, id: &str) -> Option<Arc<Stored>> {
        let found = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .get(id)
            .cloned();
        let found = found.or_else(|| self.read(id))?;
        (found.owner == owner && self.fresh(&found)).then_some(found)
    }

    /// The response holding item `id` (an input or output item), if `owner` created it.
    pub fn holding(&self, owner: &str, item: &str) -> Option<Arc<Stored>> {
        let found = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .items
            .get(item)
            .filter(|s| s.owner == owner)
            .cloned();
        let found = found.or_else(|| {
            let reader = self
                .reader
                .as_ref()?
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let id: String = reader
                .query_row(
                    "SELECT response FROM response_items WHERE owner = ?1 AND id = ?2",
                    (owner, item),
                    |r| r.get(0),
                )
                .ok()?;
            drop(reader);
            self.read(&id)
        })?;
        (found.owner == owner && self.fresh(&found)).then_some(found)
    }

    fn read(&self, id: &str) -> Option<Arc<Stored>> {
        let reader = self
            .reader
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let row = reader.query_row(
            "SELECT owner, created_at, previous, input, response FROM responses WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        );
        let (owner, created_at, previous, input, response) = match row {
            Ok(row) => row,
            Err(rusqlite::Error::QueryReturnedNoRows) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the response store");
                return None;
            }
        };
        drop(reader);
        let output = serde_json::from_str::<Value>(&response)
            .ok()
            .and_then(|mut v| match v.get_mut("output").map(Value::take) {
                Some(Value::Array(items)) => Some(items),
                _ => None,
            })
            .unwrap_or_default();
        Some(Arc::new(Stored {
            id: id.to_string(),
            owner,
            created_at: u64::try_from(created_at).unwrap_or(0),
            previous,
            input: serde_json::from_str(&input).unwrap_or_default(),
            output,
            response,
        }))
    }

    /// Waits until every response kept before this call is written.
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack, done) = std::sync::mpsc::channel();
        if tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Writes what is queued (the writer itself ends with the store). Call it once the
    /// server stopped.
    pub fn close(&self) {
        self.flush();
    }
}

/// The writer thread: each response in its own small transaction, batched when they queue up.
fn write(mut db: rusqlite::Connection, rx: Receiver<Msg>, retention: Duration) {
    let mut purged = std::time::Instant::now() - PURGE_EVERY;
    loop {
        if purged.elapsed() >= PURGE_EVERY {
            purged = std::time::Instant::now();
            let before = now().saturating_sub(retention.as_secs()) as i64;
            let deleted = db
                .execute("DELETE FROM responses WHERE created_at < ?1", [before])
                .and_then(|_| {
                    db.execute("DELETE FROM response_items WHERE created_at < ?1", [before])
                });
            if let Err(e) = deleted {
                tracing::warn!(error = %e, "cannot delete old responses");
            }
        }
        let first = match rx.recv_timeout(PURGE_EVERY) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            let tx = db.transaction()?;
            for m in batch {
                match m {
                    Msg::Put(s) => insert(&tx, &s)?,
                    Msg::Flush(ack) => acks.push(ack),
                }
            }
            tx.commit()
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write to the response store");
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

fn insert(tx: &rusqlite::Transaction<'_>, s: &Stored) -> rusqlite::Result<()> {
    let input = serde_json::to_string(&s.input).unwrap_or_else(|_| "[]".into());
    let created = s.created_at as i64;
    tx.execute(
        "INSERT OR REPLACE INTO responses (id, owner, created_at, previous, input, response) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        (&s.id, &s.owner, created, &s.previous, &input, &s.response),
    )?;
    let mut item = tx.prepare_cached(
        "INSERT OR REPLACE INTO response_items (owner, id, response, created_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for id in s.item_ids() {
        item.execute((&s.owner, id, &s.id, created))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(path: Option<PathBuf>, memory_bytes: usize) -> Settings {
        Settings {
            enabled: true,
            path,
            retention: Duration::from_secs(30 * 86400),
            memory_bytes,
        }
    }

    /// A fresh file for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("junction-responses-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.sqlite"));
        for end in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{end}", path.display()));
        }
        path
    }

    fn response(id: &str, item: &str, text: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": id, "object": "response", "created_at": now(), "status": "completed",
            "output": [{"type": "message", "id": item, "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}]
        }))
        .unwrap()
    }

    #[test]
    fn a_response_is_found_by_its_owner_only_in_memory_and_after_a_restart() {
        let path = scratch("restart");
        let input = vec![json!({"type": "message", "role": "user", "content": "hi"})];
        {
            let store = Responses::open(settings(Some(path.clone()), 1 << 20)).unwrap();
            store
                .put(
                    "alice",
                    None,
                    input.clone(),
                    &response("resp_1", "msg_1", "hello"),
                )
                .unwrap();
            let got = store.get("alice", "resp_1").expect("in memory");
            assert_eq!(got.input, input);
            assert_eq!(got.output[0]["content"][0]["text"], "hello");
            assert!(store.get("bob", "resp_1").is_none(), "another key's");
            assert_eq!(store.holding("alice", "msg_1").unwrap().id, "resp_1");
            assert!(store.holding("bob", "msg_1").is_none());
            store.close();
        }
        let store = Responses::open(settings(Some(path), 1 << 20)).unwrap();
        let got = store
            .get("alice", "resp_1")
            .expect("read back from the file");
        assert_eq!(got.input, input);
        assert_eq!(got.item("msg_1").unwrap()["content"][0]["text"], "hello");
        assert_eq!(store.holding("alice", "msg_1").unwrap().id, "resp_1");
        assert!(store.get("bob", "resp_1").is_none());
        assert!(store.get("alice", "resp_2").is_none());
    }

    #[test]
    fn memory_holds_the_most_recent_and_the_file_the_rest() {
        let store = Responses::open(settings(Some(scratch("memory")), 4096)).unwrap();
        for n in 0..50 {
            let text = "x".repeat(100);
            store
                .put(
                    "k",
                    None,
                    vec![],
                    &response(&format!("resp_{n}"), &format!("msg_{n}"), &text),
                )
                .unwrap();
        }
        let recent = store.recent.lock().unwrap();
        assert!(recent.bytes <= 4096, "{}", recent.bytes);
        assert!(
            !recent.by_id.contains_key("resp_0"),
            "the oldest left memory"
        );
        assert!(recent.by_id.contains_key("resp_49"));
        assert!(!recent.items.contains_key("msg_0"));
        drop(recent);
        store.flush();
        assert_eq!(store.get("k", "resp_0").unwrap().output[0]["id"], "msg_0");
        assert_eq!(store.holding("k", "msg_0").unwrap().id, "resp_0");
    }

    #[test]
    fn a_response_past_retention_is_not_found() {
        let mut s = settings(None, 1 << 20);
        s.retention = Duration::from_secs(60);
        let store = Responses::open(s).unwrap();
        let old = Arc::new(Stored {
            id: "resp_old".into(),
            owner: "k".into(),
            created_at: now() - 3600,
            previous: None,
            input: vec![],
            output: vec![],
            response: "{}".into(),
        });
        store.recent.lock().unwrap().insert(old, 1 << 20);
        assert!(store.get("k", "resp_old").is_none());
        store
            .put("k", None, vec![], &response("resp_new", "m", "t"))
            .unwrap();
        assert!(store.get("k", "resp_new").is_some());
    }
}
