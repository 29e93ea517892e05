//! `POST /v1/chat/completions`: auth, read body, parse, route, then forward.

use super::{attempt, auth, body, forward, Gateway};
use crate::access_log::Record;
use crate::config::Snapshot;
use crate::error::{ErrorKind, GatewayError, Printable};
use crate::providers::openai;
use pingora_core::protocols::http::ServerSession;
use std::cell::RefCell;

thread_local! {
    /// simd-json parses in place: a per-thread buffer for the copy it works on.
    static SCRATCH: RefCell<openai::JsonScratch> = RefCell::new(openai::JsonScratch::default());
}
/// Scratch buffers grown beyond this by a large request are released after it.
const SCRATCH_KEEP: usize = 1 << 20;

/// What is known of a request as it goes, for its access-log line.
#[derive(Default)]
struct Seen {
    key: Option<std::sync::Arc<str>>,
    model: Option<String>,
    stream: bool,
}

/// Serves a chat completion and writes its access-log line.
pub async fn chat_completions(
    gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
) -> Result<forward::Outcome, GatewayError> {
    let started = std::time::Instant::now();
    let ts_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut seen = Seen::default();
    let result = serve(gateway, session, snapshot, &mut seen).await;
    let request_id = format!("{:016x}", fastrand::u64(..));
    let mut record = Record {
        ts_ms,
        request_id: &request_id,
        key: seen.key.as_deref(),
        model: seen.model.as_deref(),
        stream: seen.stream,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        ..Default::default()
    };
    match &result {
        Ok(served) => {
            record.status = served.outcome.status;
            record.attempts = served.attempts;
            record.ttft_ms = served.ttft.map(|t| t.as_secs_f64() * 1000.0);
            record.deployment = served.deployment.as_ref().map(|(id, _)| &**id);
            if let Some(u) = &served.outcome.usage {
                record.input_tokens = Some(u.input_tokens);
                record.output_tokens = Some(u.output_tokens);
                record.cached_tokens = Some(u.cached_input_tokens);
                record.reasoning_tokens = Some(u.reasoning_tokens);
                record.cost_usd_micros = served
                    .deployment
                    .as_ref()
                    .map(|(_, price)| crate::usage::cost_micros(u, price));
            }
        }
        Err(e) => {
            record.status = e.status();
            record.error = e.code;
        }
    }
    gateway.access_log.log(&record);
    result.map(|served| served.outcome)
}

async fn serve(
    gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
    seen: &mut Seen,
) -> Result<forward::Served, GatewayError> {
    let key = auth::authenticate(session.req_header(), snapshot)?;
    seen.key = Some(key.name.clone());
    let body = body::read_body(
        session,
        snapshot.server.max_body_bytes,
        snapshot.server.body_timeout,
    )
    .await?;
    let info = SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let r = openai::parse_request(&body, &mut s);
        if s.capacity() > SCRATCH_KEEP {
            *s = openai::JsonScratch::default();
        }
        r
    })?;
    seen.model = Some(info.model.clone());
    seen.stream = info.stream;
    let route = snapshot
        .route(&info.model)
        .ok_or_else(|| GatewayError::model_not_found(&info.model))?;
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
    attempt::run(gateway, session, snapshot, &route, &info, &body).await
}
