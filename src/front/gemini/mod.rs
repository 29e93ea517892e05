//! The Gemini front door (`/v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse`) for upstreams that do not speak Gemini: the request as a
//! chat completion, and the chat answer (whole body or chunk stream) as Gemini's
//! `GenerateContentResponse` (one, or one per SSE event).
//!
//! (To a `gemini` upstream the request is passed through instead; see `gateway`.)
//!
//! Decisions (`providers::gemini` maps the other way; these are its decisions reversed):
//! - `systemInstruction` texts are joined with "\n" into one leading system message; the text
//!   parts of a turn likewise. A user turn keeps content parts only when it holds an image.
//! - Thoughts (`thought: true` parts) and every `thoughtSignature` are dropped: they belong to
//!   the Gemini backend that produced them. A model turn left with nothing is left out.
//! - A `functionCall` keeps its `id`, or gets `call_<turn>_<part>`. A `functionResponse`
//!   answers the call with its `id`, or else the earliest unanswered call of that name in the
//!   preceding model turn; its tool message comes before the rest of the user turn. The
//!   content is `response` as JSON, or X itself for `{"content": X}` / `{"output": X}` with X
//!   a string (what `providers::gemini` wraps a non-object result in).
//! - Function declarations' OpenAPI `parameters` get lower-case `type`s;
//!   `parametersJsonSchema` is passed as is. Other Gemini tools (Google Search, code
//!   execution, URL context …) are dropped and named in [`ToChat::dropped`].
//! - `thinkingBudget` → `reasoning_effort`: 0 → none, -1 (dynamic) → medium, low below 4096,
//!   medium below 16384, else high; `thinkingLevel` is passed lower-cased.
//! - `finishReason`: length → MAX_TOKENS, content_filter → SAFETY, anything else → STOP (Gemini
//!   has no reason of its own for tool calls).
//! - usage: `candidatesTokenCount` = completion − reasoning (Gemini counts thoughts apart, in
//!   `thoughtsTokenCount`), `cachedContentTokenCount` = cached.
//! - Streams: one event per chat chunk with content. Gemini sends each `functionCall` whole,
//!   so a call's argument fragments are gathered and the call is sent once complete: when
//!   another call starts and its arguments parse, at `finish_reason`, or at the end. The last
//!   event carries `finishReason` and `usageMetadata`, sent at `[DONE]` (after the usage
//!   chunk). No `thoughtSignature` is ever sent: no Gemini backend signed these answers.

use super::shared::{
    arguments_object, assistant_message, content_text, invalid, join_line, json_str, literal,
    message_content, reasoning_text, request_object, take_string, text_in, tool_objects, unescaped,
    usage_of, Chunk, Piece, ToolCallDelta,
};
use super::{unreadable_chunk, Front};
use crate::error::{ErrorKind, GatewayError, Printable};
use crate::stream::translate::{Events, Translated};
use crate::usage::Usage;
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde_json::{json, Map, Value};

/// A Gemini request, turned into a chat completion request.
#[derive(Debug)]
pub struct ToChat {
    /// The chat completion request body (`stream_options.include_usage` set when streaming).
    pub body: Vec<u8>,
    /// Gemini tools with no chat equivalent (Google Search, code execution …), left out.
    pub dropped: Vec<String>,
}

/// A Gemini method on a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Generate,
    Stream,
    CountTokens,
}

/// The model and method of `/v1beta/models/{model}:{method}` (or `/v1/models/...`).
pub fn route(path: &str) -> Option<(&str, Method)> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    let method = match method {
        "generateContent" => Method::Generate,
        "streamGenerateContent" => Method::Stream,
        "countTokens" => Method::CountTokens,
        _ => return None,
    };
    (!model.is_empty()).then_some((model, method))
}

mod error;
mod request;
mod response;
mod stream;
pub use error::*;
pub use request::*;
pub use response::*;
pub use stream::*;

#[cfg(test)]
mod tests;
