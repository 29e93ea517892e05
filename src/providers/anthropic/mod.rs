//! Anthropic Messages (`/v1/messages`) behind the OpenAI endpoint: request translation,
//! whole-response translation, a per-stream event translator, and error mapping.
//!
//! Decisions where the reference gateways disagree (see `tests/fixtures/providers/MAPPINGS.md`):
//! - `stop_reason`: end_turn, stop_sequence, pause_turn → `stop`; max_tokens and
//!   model_context_window_exceeded → `length`; tool_use → `tool_calls`; refusal →
//!   `content_filter`; anything else → `stop`.
//! - usage: `prompt_tokens` = input + cache read + cache write (OpenAI counts every prompt
//!   token; Anthropic's `input_tokens` excludes cached ones), `cached_tokens` = cache read.
//! - All system and developer messages, wherever they are, become top-level `system` blocks.
//! - `response_format` json_object / json_schema: a forced tool whose input comes back as the
//!   message content, with `finish_reason: stop`.
//! - Thinking comes back as `reasoning_content`; signatures are not passed to OpenAI clients.

use super::chat::{self, ChatRequest, Choice, Content, Image, Part, ResponseFormat, Unsupported};
use crate::error::{ErrorKind, GatewayError, Printable, UpstreamBody};
use crate::stream::chunk::{self, ChunkWriter, Delta};
use crate::stream::translate::{self, Translated};
use crate::stream::InBand;
use crate::usage::Usage;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// The tool that carries `response_format` answers.
pub const JSON_TOOL: &str = "json_response";

/// Per-provider settings of the translation.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `max_tokens` when the client gives none (Anthropic requires one).
    pub default_max_tokens: u64,
    pub unsupported: Unsupported,
}

/// What the response translation must know of the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Translation {
    /// `response_format` was turned into [`JSON_TOOL`].
    pub json_tool: bool,
    pub include_usage: bool,
}

const KIND: &str = "Anthropic";

mod error;
mod pass;
mod request;
mod response;
mod stream;
pub use error::*;
pub use pass::*;
pub use request::*;
pub use response::*;
pub use stream::*;

#[cfg(test)]
mod tests;
