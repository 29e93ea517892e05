//! `POST /v1/chat/completions`: auth, read body, parse, route, then forward.

use super::{attempt, auth, body, forward, Gateway};
use crate::config::Snapshot;
use crate::error::{ErrorKind, GatewayError, Printable};
use crate::metrics::Labels;
use crate::providers::openai;
use crate::trace;
use crate::usage::ledger::{Ending, Entry};
use pingora_core::protocols::http::ServerSession;
use std::cell::RefCell;

thread_local! {
    /// simd-json parses in place: a per-thread buffer for the copy it works on.
    static SCRATCH: RefCell<openai::JsonScratch> = RefCell::new(openai::JsonScratch::default());
}
/// Scratch buffers grown beyond this by a large request are released after it.
const SCRATCH_KEEP: usize = 1 << 20;

/// What is known of a request as it goes, for its accounting.
#[derive(Default)]
struct Seen {
    key: Option<std::sync::Arc<str>>,
    model: Option<std::sync::Arc<str>>,
    /// The model's metrics label: a configured name, `provider/*` for a direct address.
    label: Option<std::sync::Arc<str>>,
    stream: bool,
    body: Option<bytes::Bytes>,
    body_read: std::time::Duration,
    tally: attempt::Tally,
}

/// Serves a chat completion and accounts for it.
pub async fn chat_completions(
    gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
) -> Result<forward::Outcome, GatewayError> {
    let started = std::time::Instant::now();
    let ts_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let trace = trace::Context::from_request(session.req_header());
    let ctx = forward::Context {
        traceparent: trace.traceparent(),
        keep: if gateway.accounting.store_content {
            crate::usage::KEEP_FOR_CONTENT
        } else {
            crate::usage::KEEP_FOR_ESTIMATE
        },
    };
    let mut seen = Seen::default();
    let mut result = serve(gateway, session, snapshot, &ctx, &mut seen).await;
    let latency = started.elapsed();
    let tally = std::mem::take(&mut seen.tally);
    let provider = tally.deployment.as_ref().map(|d| d.provider.name.clone());
    let labels = Labels {
        model: seen.label.clone().unwrap_or_else(|| "".into()),
        provider: provider.clone().unwrap_or_else(|| "".into()),
    };
    let mut entry = Entry {
        ts_ms,
        request_id: fastrand::u64(..),
        trace_id: Some(trace.trace_id),
        key: seen.key,
        model: seen.model,
        stream: seen.stream,
        latency,
        ttft: tally.ttft,
        attempts: tally.attempts,
        request: seen.body,
        ..Default::default()
    };
    match &mut result {
        Ok(outcome) => {
            entry.status = outcome.status;
            entry.usage = outcome.usage;
            entry.ending = outcome.ending;
            entry.relayed = std::mem::take(&mut outcome.relayed);
        }
        Err(e) => {
            entry.status = e.status();
            entry.error = e.code;
            entry.ending = if tally.attempts > 0 {
                Ending::UpstreamError
            } else {
                Ending::Rejected
            };
        }
    }
    let overhead =
        (tally.attempts > 0).then(|| latency.saturating_sub(seen.body_read + tally.waited));
    gateway
        .metrics
        .request(&labels, entry.status, latency, tally.ttft, overhead);
    entry.deployment = tally.deployment;
    entry.labels = Some(labels);
    gateway.tracer.span(&trace, &entry, started);
    gateway.accounting.record(entry);
    result
}

async fn serve(
    gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
    ctx: &forward::Context,
    seen: &mut Seen,
) -> Result<forward::Outcome, GatewayError> {
    let key = auth::authenticate(session.req_header(), snapshot)?;
    seen.key = Some(key.name.clone());
    let reading = std::time::Instant::now();
    let body = body::read_body(
        session,
        snapshot.server.max_body_bytes,
        snapshot.server.body_timeout,
    )
    .await;
    seen.body_read = reading.elapsed();
    let body = body?;
    let info = SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let r = openai::parse_request(&body, &mut s);
        if s.capacity() > SCRATCH_KEEP {
            *s = openai::JsonScratch::default();
        }
        r
    })?;
    seen.stream = info.stream;
    let Some(route) = snapshot.route(&info.model) else {
        seen.model = Some(info.model.as_str().into());
        return Err(GatewayError::model_not_found(&info.model));
    };
    seen.model = Some(route.name.clone());
    seen.label = Some(if snapshot.models.contains_key(&*route.name) {
        route.name.clone()
    } else {
        format!("{}/*", route.deployments[0].provider.name).into()
    });
    if !key.allows(&info.model) && !key.allows(&route.name) {
        return Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            format!(
                "This key may not use the model `{}`.",
                Printable(&info.model)
            ),
        )
        .param("model")
        .code("model_not_allowed"));
    }
    let body = seen.body.insert(body);
    attempt::run(
        gateway,
        session,
        snapshot,
        &route,
        &info,
        body,
        ctx,
        &mut seen.tally,
    )
    .await
}
