//! The OpenAI Responses front door (`POST /v1/responses`) for upstreams that speak chat
//! completions: the request as a chat completion, and the chat answer (whole body or chunk
//! stream) as a Responses `response` object or the Responses event stream.
//!
//! Decisions:
//! - State: `previous_response_id` and `item_reference` items are resolved by the gateway
//!   before the door reads the request (`gateway::state`, against `store::responses`); with
//!   the store off (`[responses] store = false`) they are refused (400). `conversation`,
//!   `prompt` and `background: true` are refused (400).
//! - `instructions` → a leading `system` message; `developer` messages stay `developer`.
//!   The text parts of a message are joined with "\n"; a user message keeps content parts
//!   only when it holds an image. Images by `file_id`, and `input_file` parts, are refused.
//! - `reasoning` items (summaries, `encrypted_content`) are dropped: an opaque blob of one
//!   backend must never reach another, and chat has no field for them.
//! - `function_call` / `custom_tool_call` items become assistant `tool_calls` (consecutive
//!   calls, and an assistant message right before them, make one assistant message); their
//!   outputs become `tool` messages (text parts joined, images as `[image]`).
//! - Custom (freeform) tools are functions upstream taking `{"input": string}`; their calls
//!   come back as `custom_tool_call` with that string. Namespace tools are flattened as
//!   `NS__name` and come back as `name` with `namespace: NS`. Built-in tools are dropped and
//!   named in [`ToChat::dropped`].
//! - `reasoning.effort`: minimal → low, xhigh → high, none → no `reasoning_effort`.
//! - Answers: finish_reason length → `incomplete` (max_output_tokens), content_filter →
//!   `incomplete` (content_filter); items cut that way have status `incomplete`.
//! - Streams: items may be open concurrently in the Responses protocol, so every item (the
//!   reasoning summary, the message, each tool call) streams live under its own
//!   `output_index`, given on first sight; all are closed, in order, at `finish_reason`.
//!   A custom tool call's JSON arguments are buffered and its input sent whole at its end.
//!   Text is copied as raw JSON string literals, never unescaped and escaped again.

use super::shared::{
    call_at, content_text, finish_of, inside, invalid, join_line, json_str, message_content,
    reasoning_text, request_object, stream_flag, take_string, text_in, tool_objects, usage_of,
    Chunk, Piece, ToolCallDelta,
};
use super::unreadable_chunk;
use crate::error::{ErrorKind, GatewayError, Printable};
use crate::stream::translate::{Events, Translated};
use crate::usage::Usage;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::io::Write;

/// A tool the upstream knows as a plain function under `upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Renamed {
    upstream: String,
    /// The name the client declared.
    pub(super) name: String,
    namespace: Option<String>,
    /// A custom (freeform) tool: its calls are `custom_tool_call` items.
    custom: bool,
}

/// What the answer's translation must know of the request (custom and namespaced tools are
/// plain functions upstream, and are turned back into what the client declared).
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Custom and namespaced tools; plain functions are not listed.
    tools: Vec<Renamed>,
    /// The request's settings as the response object repeats them: JSON object members
    /// without the braces (`"instructions":..,"tools":[..],..`). Empty: defaults.
    echo: String,
    /// The response is stored (`"store":true`), and the stream encoder keeps the final
    /// response object for the store ([`StreamEncoder::take_kept`]).
    pub store: bool,
    /// The response this one continues, as the answer repeats it.
    pub previous: Option<String>,
}

impl Context {
    fn lookup(&self, upstream: &str) -> Option<&Renamed> {
        self.tools.iter().find(|t| t.upstream == upstream)
    }
}

/// A Responses request, turned into an OpenAI chat completion request.
#[derive(Debug)]
pub struct ToChat {
    /// The chat completion request body (`stream_options.include_usage` set when streaming).
    pub body: Vec<u8>,
    pub model: String,
    pub stream: bool,
    /// Names of built-in tools left out (no chat upstream can run them).
    pub dropped: Vec<String>,
    pub context: Context,
    /// The session (`prompt_cache_key`), for deployment affinity.
    pub session: Option<u64>,
}

mod request;
mod response;
mod stream;
pub use request::*;
pub use response::*;
pub use stream::*;

#[cfg(test)]
mod tests;
