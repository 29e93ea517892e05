//! One JSON line per request, written by the accounting thread ([`crate::usage::ledger`]):
//! the request path never formats or writes a line.

use serde::Serialize;
use std::io::Write;

/// What is logged of one request: never a key, a prompt or a completion.
#[derive(Serialize, Debug, Default)]
pub struct Record<'a> {
    /// Milliseconds since the Unix epoch, when the request arrived.
    pub ts_ms: u64,
    pub request_id: &'a str,
    /// W3C trace id, as sent upstream in `traceparent`.
    pub trace_id: Option<&'a str>,
    /// The client key's name.
    pub key: Option<&'a str>,
    pub model: Option<&'a str>,
    /// The deployment that answered (`provider/model`).
    pub deployment: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub status: u16,
    pub stream: bool,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cost_usd_micros: Option<u64>,
    /// `upstream`, `estimate` or `none`.
    pub usage_source: &'a str,
    /// `complete`, `client_aborted`, `upstream_error` or `rejected`.
    pub ending: &'a str,
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

impl Sink {
    /// From `[log] access`: `stdout`, `off` (none) or a path.
    pub fn from_setting(access: Option<&str>) -> Option<Sink> {
        match access {
            None | Some("off") => None,
            Some("stdout") => Some(Sink::Stdout),
            Some(path) => Some(Sink::File(path.into())),
        }
    }

    pub fn open(&self) -> std::io::Result<Box<dyn Write + Send>> {
        Ok(match self {
            Sink::File(p) => Box::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            Sink::Stdout => Box::new(std::io::BufWriter::new(std::io::stdout())),
        })
    }
}
