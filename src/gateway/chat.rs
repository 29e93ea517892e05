//! `POST /v1/chat/completions`: auth, read body, parse, route, then forward.

use super::{attempt, auth, body, forward, Gateway};
use crate::config::Snapshot;
use crate::error::GatewayError;
use crate::front::{messages, Front};
use crate::metrics::Labels;
use crate::providers::{self, openai};
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

/// A request being served, accounted for exactly once: when it finishes, or when it is
/// dropped unfinished (the runtime stopping under a request still in flight).
struct Accounted<'a> {
    gateway: &'a Gateway,
    started: std::time::Instant,
    ts_ms: u64,
    trace: trace::Context,
    seen: Seen,
    done: bool,
}

impl Accounted<'_> {
    /// Metrics, span and the accounting record of the finished (or dropped) request.
    fn finish(&mut self, result: Option<&Result<forward::Outcome, GatewayError>>) {
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
            model: seen.model,
            stream: seen.stream,
            latency,
            ttft: tally.ttft,
            attempts: tally.attempts,
            request: seen.body,
            relayed: tally.relayed,
            ..Default::default()
        };
        match result {
            Some(Ok(outcome)) => {
                entry.status = outcome.status;
                entry.usage = outcome.usage;
                entry.ending = outcome.ending;
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
                entry.error = Some("interrupted");
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

/// Serves a chat completion (or, at another front door, a request translated into one) and
/// accounts for it.
pub async fn chat_completions(
    gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
    front: Front,
) -> Result<forward::Outcome, GatewayError> {
    let trace = trace::Context::from_request(session.req_header());
    let mut ctx = forward::Context {
        front,
        keepalive: snapshot.server.stream_keepalive,
        responses: None,
        traceparent: trace.traceparent(),
        retry_statuses: &snapshot.routing.retry_statuses,
    };
    let mut accounted = Accounted {
        gateway,
        started: std::time::Instant::now(),
        ts_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        trace,
        seen: Seen::default(),
        done: false,
    };
    accounted.seen.tally.relayed =
        crate::usage::Kept::with_limit(if gateway.accounting.store_content {
            crate::usage::KEEP_FOR_CONTENT
        } else {
            crate::usage::KEEP_FOR_ESTIMATE
        });
    let result = serve(gateway, session, snapshot, &mut ctx, &mut accounted.seen).await;
    accounted.finish(Some(&result));
    result
}

async fn serve(
    gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
    ctx: &mut forward::Context<'_>,
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
    // At the Messages front door: the request as a chat completion, for upstreams that do not
    // speak Messages (and for estimates); the client's own bytes for those that do.
    let mut native_headers = Vec::new();
    let (info, as_chat) = match ctx.front {
        Front::Chat => (
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                let r = openai::parse_request(&body, &mut s);
                if s.capacity() > SCRATCH_KEEP {
                    *s = openai::JsonScratch::default();
                }
                r
            })?,
            None,
        ),
        Front::Messages => {
            let peeked = super::messages::peek(&body)?;
            native_headers = super::messages::passed_headers(session.req_header());
            let info = openai::ChatRequestInfo {
                model: peeked.model,
                stream: peeked.stream,
                include_usage: true,
                session: peeked.session,
            };
            (info, Some(messages::request_to_chat(&body).map(|c| c.body)))
        }
        Front::Gemini => {
            let (model, method) = super::gemini::route(session.req_header().uri.path())
                .ok_or_else(|| GatewayError::invalid_request("Unknown Gemini method."))?;
            let info = openai::ChatRequestInfo {
                model: model.to_string(),
                stream: method == super::gemini::Method::Stream,
                include_usage: true,
                session: None,
            };
            let chat = crate::front::gemini::request_to_chat(&body, &info.model, info.stream);
            (info, Some(chat.map(|c| c.body)))
        }
        Front::Responses => {
            let c = crate::front::responses::request_to_chat(&body)?;
            let info = openai::ChatRequestInfo {
                model: c.model,
                stream: c.stream,
                include_usage: true,
                session: c.session,
            };
            ctx.responses = Some(c.context);
            (info, Some(Ok(c.body)))
        }
    };
    seen.stream = info.stream;
    let mut info = info;
    // A session header (Claude Code sends one) outranks what the body says.
    if let Some(id) = session
        .req_header()
        .headers
        .get("x-claude-code-session-id")
        .filter(|v| !v.is_empty())
    {
        info.session = Some(crate::routing::fnv1a(id.as_bytes()));
    }
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
        return Err(GatewayError::model_not_allowed(&info.model));
    }
    let query = session.req_header().uri.query().map(str::to_owned);
    let (chat, native) = match &as_chat {
        None => (body.clone(), None),
        Some(Ok(c)) => (
            bytes::Bytes::from(c.clone()),
            // Every front door but chat's can pass through to an upstream that speaks it.
            (ctx.front != Front::Chat).then(|| body.clone()),
        ),
        Some(Err(_)) => (body.clone(), Some(body.clone())),
    };
    let chat = seen.body.insert(chat);
    let inbound = providers::Inbound {
        info: &info,
        chat: match &as_chat {
            Some(Err(e)) => Err(e),
            _ => Ok(chat),
        },
        native: native.as_deref().map(|body| providers::Native {
            body,
            query: query.as_deref(),
            headers: &native_headers,
        }),
    };
    attempt::run(
        gateway,
        session,
        snapshot,
        &route,
        &inbound,
        ctx,
        &mut seen.tally,
    )
    .await
}
