//! The token counting endpoints (Messages' `POST /v1/messages/count_tokens`, Gemini's
//! `:countTokens`): the prompt's tokens, counted with the tokenizer of the model it would be
//! routed to (OpenAI's exactly; others' approximately, as estimates are). The door reads the
//! request and writes the answer; the counting is the same for every door.

use super::auth::Caller;
use super::{body, reply, route};
use crate::config::{ModelRoute, Snapshot};
use crate::error::GatewayError;
use crate::front::Front;
use crate::usage::estimate::{prompt_tokens, Tokenizer};
use pingora_core::protocols::http::ServerSession;

pub async fn count_tokens(
    session: &mut ServerSession,
    snapshot: &Snapshot,
    caller: Caller<'_>,
    front: Front,
) -> Result<(), GatewayError> {
    let body = body::read_body(
        session,
        snapshot.server.max_body_bytes,
        snapshot.server.body_timeout,
    )
    .await?;
    let model = front.count_model(&body, session.req_header())?;
    let route = route::allowed(snapshot, caller, &model)?;
    let chat = front.count_chat(&body, &model)?;
    let n = prompt_count(&route, &chat)?;
    reply::write_json(session, 200, front.count_answer(n).into()).await;
    Ok(())
}

/// A chat request's prompt tokens, with the tokenizer of the model it would be routed to.
fn prompt_count(route: &ModelRoute, chat: &[u8]) -> Result<u64, GatewayError> {
    let t = Tokenizer::for_model(&route.deployments[0].upstream_model);
    prompt_tokens(chat, t)
        .ok_or_else(|| GatewayError::invalid_request("The request has nothing to count."))
}
