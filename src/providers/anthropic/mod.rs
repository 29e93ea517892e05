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
//! - `response_format` json_schema: Anthropic's own structured output (`output_config.format`,
//!   the schema reduced to the subset Anthropic accepts, as its SDKs do) where the model has it;
//!   otherwise, and for json_object, a tool whose input comes back as the message content, with
//!   `finish_reason: stop`. The tool is forced unless the request has tools of its own or
//!   thinking (Anthropic refuses thinking with a forced tool); then text the model writes
//!   before the tool call is not glued in front of the JSON.
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
    pub structured: StructuredOutput,
}

/// How `response_format` reaches Anthropic (`structured_output` in the provider's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StructuredOutput {
    /// Native where the model has it ([`has_native_structured_output`]), else the tool.
    #[default]
    Auto,
    /// Always `output_config.format`.
    Native,
    /// Always the [`JSON_TOOL`] tool.
    Tool,
}

/// Whether an Anthropic model has native structured output (`output_config.format`): Claude
/// 4.5 and later, and Opus 4.1, as Anthropic documents it. The name may carry a prefix
/// (`anthropic.`, `us.anthropic.`, `anthropic/`) and a date or version suffix.
pub fn has_native_structured_output(model: &str) -> bool {
    let Some(at) = model.find("claude-") else {
        return false;
    };
    let mut family = "";
    let mut version: Vec<u32> = Vec::new();
    for part in model[at + "claude-".len()..].split(['-', '@', ':', '.']) {
        match part {
            "opus" | "sonnet" | "haiku" => family = part,
            // A date (20250805) or anything else ends the version.
            p if p.len() <= 2 && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                // Claude 3 names put the version before the family: claude-3-5-sonnet.
                if !family.is_empty() || version.len() < 2 {
                    version.push(p.parse().unwrap_or(0));
                }
            }
            _ if version.is_empty() => {}
            _ => break,
        }
        if !family.is_empty() && version.len() == 2 {
            break;
        }
    }
    let major = version.first().copied().unwrap_or(0);
    let minor = version.get(1).copied().unwrap_or(0);
    major > 4 || (major == 4 && minor >= 5) || (major == 4 && minor >= 1 && family == "opus")
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
