//! The Anthropic Messages front door (`POST /v1/messages`) for upstreams that do not speak
//! Anthropic: the request as an OpenAI chat completion, and the OpenAI answer (whole body or
//! chunk stream) as an Anthropic message or Anthropic's event stream.
//!
//! (To an `anthropic` upstream the request is passed through instead; see `gateway`.)
//!
//! Decisions (`tests/fixtures/providers/MAPPINGS.md`; `providers::anthropic` maps the other
//! way):
//! - `system` blocks, and the text blocks of a message, are joined with "\n" into one string;
//!   a user message keeps content parts only when it holds an image.
//! - A user message's `tool_result` blocks become `tool` messages, in order, before the rest of
//!   it (OpenAI wants the results right after the assistant's calls). Non-text blocks inside a
//!   result become placeholders (`[image]`).
//! - Thinking blocks (and their signatures) and `cache_control` are dropped: they belong to
//!   Anthropic. An assistant turn left with nothing (only thinking) is left out.
//! - Anthropic server tools (any tool `type` but `custom`) are dropped and named in
//!   [`ToChat::dropped`]; a `tool_choice` naming one is refused.
//! - `thinking.budget_tokens` → `reasoning_effort`: low below 4096, medium below 16384, else
//!   high; `adaptive` → medium.
//! - `stop_reason`: length → max_tokens, tool_calls / function_call → tool_use,
//!   content_filter → refusal; stop (or anything else) → end_turn, but tool_use when the answer
//!   holds tool calls (Anthropic never ends a turn that asks for tools with end_turn).
//! - usage: `input_tokens` = prompt − cached (Anthropic's count excludes cache reads),
//!   `cache_read_input_tokens` = cached, `cache_creation_input_tokens` = 0.
//! - Streams: OpenAI may interleave the argument fragments of parallel tool calls, Anthropic
//!   may not interleave blocks. A call's block stays open while its fragments stream; another
//!   call takes over only once the open call's arguments form a complete JSON value (which
//!   nothing valid can extend). Until then the other calls' fragments are held back and sent
//!   whole when their turn comes (at the latest at `finish_reason`). Contiguous calls, as
//!   OpenAI sends them, thus stream live, and interleaved ones arrive complete and in order.
//!   Text, thinking or `finish_reason` close the open call and send the held ones; fragments
//!   for a call closed that way (only a broken upstream sends them) are dropped, with a warning.

use super::shared::{
    arguments_object, assistant_message, call_at, content_text, finish_of, invalid, join_line,
    json_str, literal, message_content, reasoning_text, request_object, stream_flag, take_string,
    text_in, tool_objects, usage_of, Chunk, Piece, ToolCallDelta,
};
use super::{unreadable_chunk, Front};
use crate::error::{ErrorKind, GatewayError, Printable};
use crate::stream::translate::{Events, Translated};
use crate::usage::Usage;
use pingora_http::RequestHeader;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::io::Write;

/// An Anthropic Messages request, turned into an OpenAI chat completion request.
#[derive(Debug)]
pub struct ToChat {
    /// The OpenAI request body (`stream_options.include_usage` set when streaming).
    pub body: Vec<u8>,
    pub model: String,
    pub stream: bool,
    /// Names of the Anthropic server tools left out (no other backend can run them).
    pub dropped: Vec<String>,
}

/// What routing needs of a Messages request body: the model, whether to stream, and the
/// session (`metadata.user_id`, which Claude Code makes per session).
#[derive(Debug)]
pub struct Peeked {
    pub model: String,
    pub stream: bool,
    pub session: Option<u64>,
}

/// Reads [`Peeked`] from a Messages request body.
pub fn peek(body: &[u8]) -> Result<Peeked, GatewayError> {
    #[derive(Deserialize)]
    struct Metadata<'a> {
        #[serde(borrow, default)]
        user_id: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        model: Option<Cow<'a, str>>,
        #[serde(default)]
        stream: Option<bool>,
        #[serde(borrow, default)]
        metadata: Option<Metadata<'a>>,
    }
    let p: Peek<'_> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}."))
    })?;
    let model = p
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| GatewayError::invalid_request("model: Field required").param("model"))?;
    Ok(Peeked {
        model: model.into_owned(),
        stream: p.stream.unwrap_or(false),
        session: p
            .metadata
            .and_then(|m| m.user_id)
            .filter(|u| !u.is_empty())
            .map(|u| crate::routing::fnv1a(u.as_bytes())),
    })
}

/// The client's `anthropic-*` headers (version, betas), passed on to an Anthropic upstream
/// together with the body they describe.
pub fn passed_headers(req: &RequestHeader) -> Vec<(http::HeaderName, http::HeaderValue)> {
    req.headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("anthropic-"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

mod request;
mod response;
mod stream;
pub use request::*;
pub use response::*;
pub use stream::*;

#[cfg(test)]
mod tests;
