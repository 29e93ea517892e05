//! Google Gemini (AI Studio, `generateContent` / `streamGenerateContent?alt=sse`) behind the
//! OpenAI endpoint: request translation, whole-response translation, a per-stream event
//! translator, and error mapping.
//!
//! Decisions where the reference gateways disagree (see `tests/fixtures/providers/MAPPINGS.md`):
//! - `finishReason`: STOP → `stop`, or `tool_calls` when the answer holds function calls
//!   (Gemini has no tool-call reason); MAX_TOKENS → `length`; SAFETY, RECITATION, BLOCKLIST,
//!   PROHIBITED_CONTENT, SPII, IMAGE_* and LANGUAGE → `content_filter`; anything else → `stop`.
//! - usage: `completion_tokens` = candidates + thoughts (OpenAI counts reasoning as output),
//!   `reasoning_tokens` = thoughts, `cached_tokens` = cachedContentTokenCount.
//! - Every system and developer message becomes a `systemInstruction` part, in order.
//! - Tool calls get ids `call_<24 hex>` (Gemini sends none); a tool result finds its function
//!   name through the id of the assistant call it answers.
//! - Thoughts (`thought: true` parts) come back as `reasoning_content`.

use super::chat::{self, ChatRequest, Choice, Content, Image, Part, ResponseFormat, Unsupported};
use crate::error::{ErrorKind, GatewayError, Printable};
use crate::stream::chunk::{self, ChunkWriter, Delta};
use crate::stream::translate::{self, Translated};
use crate::stream::InBand;
use crate::usage::Usage;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

const KIND: &str = "Gemini";

/// What the response translation must know of the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Translation {
    pub include_usage: bool,
}

mod error;
mod partial;
mod pass;
mod request;
mod response;
mod stream;
pub use error::*;
use partial::*;
pub use pass::*;
pub use request::*;
pub use response::*;
pub use stream::*;

#[cfg(test)]
mod tests;
