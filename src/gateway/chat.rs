//! `POST /v1/chat/completions`: auth, read body, parse, route, then forward.

use super::{attempt, auth, body, forward, Gateway};
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

pub async fn chat_completions(
    gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
) -> Result<forward::Outcome, GatewayError> {
    let key = auth::authenticate(session.req_header(), snapshot)?;
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
    let outcome = attempt::run(gateway, session, snapshot, &route, &info, &body).await?;
    tracing::debug!(
        key = %key.name,
        model = %info.model,
        status = outcome.status,
        usage = ?outcome.usage,
        "chat completion"
    );
    Ok(outcome)
}
