//! One JSON line per request, written by a background task: the request path only hands a
//! finished line to a bounded channel and never waits on the output.

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Lines waiting to be written; beyond this the newest are dropped (and counted).
const QUEUE: usize = 16 * 1024;

/// What is logged of one request: never a key, a prompt or a completion.
#[derive(Serialize, Debug, Default)]
pub struct Record<'a> {
    /// Milliseconds since the Unix epoch, when the request arrived.
    pub ts_ms: u64,
    pub request_id: &'a str,
    /// The client key's name.
    pub key: Option<&'a str>,
    pub model: Option<&'a str>,
    /// The deployment that answered (`provider/model`).
    pub deployment: Option<&'a str>,
    pub status: u16,
    pub stream: bool,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cost_usd_micros: Option<u64>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub attempts: u32,
    /// The error code, when the request failed.
    pub error: Option<&'a str>,
}

/// Where the lines go.
pub enum Sink {
    Stdout,
    File(std::path::PathBuf),
}

/// The sending side, held by the request path.
pub struct AccessLog {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    sink: Option<Sink>,
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// `None`: access logging off.
    pub fn new(sink: Option<Sink>) -> Self {
        let (tx, rx) = match sink {
            Some(_) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        AccessLog {
            tx,
            rx: Mutex::new(rx),
            sink,
            dropped: AtomicU64::new(0),
        }
    }

    // hot path: one serialization into a fresh line, one channel send.
    pub fn log(&self, record: &Record<'_>) {
        let Some(tx) = &self.tx else { return };
        let mut line = Vec::with_capacity(320);
        if serde_json::to_writer(&mut line, record).is_err() {
            return;
        }
        line.push(b'\n');
        if tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The background writer.
pub struct Writer(pub std::sync::Arc<AccessLog>);

#[async_trait]
impl BackgroundService for Writer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.0.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let mut out: Box<dyn Write + Send> = match &self.0.sink {
            Some(Sink::File(p)) => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                Ok(f) => Box::new(std::io::BufWriter::new(f)),
                Err(e) => {
                    tracing::error!(path = %p.display(), error = %e, "cannot open the access log");
                    return;
                }
            },
            _ => Box::new(std::io::BufWriter::new(std::io::stdout())),
        };
        loop {
            let line = tokio::select! {
                line = rx.recv() => line,
                _ = shutdown.changed() => None,
            };
            let Some(line) = line else { break };
            let _ = out.write_all(&line);
            // Write what else is waiting, then flush once.
            while let Ok(more) = rx.try_recv() {
                let _ = out.write_all(&more);
            }
            let _ = out.flush();
        }
        // Shutting down: what is queued is written too.
        rx.close();
        while let Some(line) = rx.recv().await {
            let _ = out.write_all(&line);
        }
        let _ = out.flush();
    }
}
