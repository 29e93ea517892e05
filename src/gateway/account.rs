//! Step 7, account: every model request, served or refused, is accounted for exactly once:
//! its metrics, its span, and its record (ledger, access log, token metrics), whatever the
//! steps before it made of it.

use super::failover::Tally;
use super::relay::Outcome;
use super::Gateway;
use crate::error::{Code, GatewayError};
use crate::metrics::Labels;
use crate::trace;
use crate::usage::ledger::{Ending, Entry};

/// What is known of a request as it goes, for its accounting.
#[derive(Default)]
pub struct Seen {
    pub key: Option<std::sync::Arc<str>>,
    /// A stored key's team, user and project, for the ledger.
    pub tenant: Option<std::sync::Arc<crate::tenancy::Entry>>,
    pub model: Option<std::sync::Arc<str>>,
    /// The model's metrics label: a configured name, `provider/*` for a direct address.
    pub label: Option<std::sync::Arc<str>>,
    pub stream: bool,
    /// The request as a chat completion (sent upstream, kept for an estimate or storage).
    pub body: Option<bytes::Bytes>,
    pub body_read: std::time::Duration,
    pub tally: Tally,
    /// What the request holds of its limits and budgets, settled with its record.
    pub hold: Option<crate::limits::Hold>,
}

/// A request being served, accounted for exactly once: when it finishes, or when it is
/// dropped unfinished (the runtime stopping under a request still in flight).
pub struct Accounted<'a> {
    gateway: &'a Gateway,
    started: std::time::Instant,
    ts_ms: u64,
    trace: trace::Context,
    pub seen: Seen,
    done: bool,
}

impl<'a> Accounted<'a> {
    /// A request that has begun.
    pub fn start(gateway: &'a Gateway, trace: trace::Context) -> Self {
        let mut seen = Seen::default();
        seen.tally.relayed = crate::usage::Kept::with_limit(if gateway.accounting.store_content {
            crate::usage::KEEP_FOR_CONTENT
        } else {
            crate::usage::KEEP_FOR_ESTIMATE
        });
        Accounted {
            gateway,
            started: std::time::Instant::now(),
            ts_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            trace,
            seen,
            done: false,
        }
    }

    /// Metrics, span and the accounting record of the finished (or dropped) request.
    pub fn finish(&mut self, result: Option<&Result<Outcome, GatewayError>>) {
        self.done = true;
        let gateway = self.gateway;
        let latency = self.started.elapsed();
        let seen = std::mem::take(&mut self.seen);
        let tally = seen.tally;
        let labels = Labels {
            model: seen.label.unwrap_or_else(|| "".into()),
            provider: tally
                .deployment
                .as_ref()
                .map_or_else(|| "".into(), |d| d.provider.name.clone()),
        };
        let mut entry = Entry {
            ts_ms: self.ts_ms,
            request_id: fastrand::u64(..),
            trace_id: Some(self.trace.trace_id),
            key: seen.key,
            tenant: seen.tenant,
            model: seen.model,
            stream: seen.stream,
            latency,
            ttft: tally.ttft,
            attempts: tally.attempts,
            request: seen.body,
            relayed: tally.relayed,
            hold: seen.hold,
            ..Default::default()
        };
        match result {
            Some(Ok(outcome)) => {
                entry.status = outcome.status;
                entry.usage = outcome.usage;
                entry.partial = outcome.partial;
                entry.ending = outcome.ending;
                entry.error = outcome.error;
            }
            Some(Err(e)) => {
                entry.status = e.status();
                entry.error = e.code;
                entry.ending = if tally.attempts > 0 {
                    Ending::UpstreamError
                } else {
                    Ending::Rejected
                };
            }
            None => {
                entry.status = if tally.ttft.is_some() { 200 } else { 503 };
                entry.error = Some(Code::Interrupted);
                entry.ending = Ending::Interrupted;
            }
        }
        let overhead =
            (tally.attempts > 0).then(|| latency.saturating_sub(seen.body_read + tally.waited));
        gateway
            .metrics
            .request(&labels, entry.status, latency, tally.ttft, overhead);
        entry.deployment = tally.deployment;
        entry.labels = Some(labels);
        // The body and the relayed chunks only wait in the queue when they are needed: for an
        // estimate (no usage reported) or to be stored.
        if entry.usage.is_some() && !gateway.accounting.store_content {
            entry.request = None;
            entry.relayed = Default::default();
        }
        gateway.tracer.span(&self.trace, &entry, self.started);
        gateway.accounting.record(entry);
    }
}

impl Drop for Accounted<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(None);
        }
    }
}
