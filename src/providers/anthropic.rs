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

/// Builds the Messages API body for an OpenAI chat request.
pub fn translate_request(
    req: &ChatRequest,
    upstream_model: &str,
    opts: &Options,
    stream: bool,
) -> Result<(Vec<u8>, Translation), GatewayError> {
    let policy = opts.unsupported;
    req.check_common(KIND, policy)?;
    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());

    let mut system: Vec<Value> = Vec::new();
    let mut messages = chat::Turns::default();
    for m in &req.messages {
        match m.role.as_str() {
            "system" | "developer" => {
                if let Some(c) = &m.content {
                    system.extend(text_blocks(c));
                }
            }
            "user" => {
                let blocks = match &m.content {
                    Some(c) => user_blocks(c, policy)?,
                    None => Vec::new(),
                };
                messages.push("user", blocks);
            }
            "assistant" => {
                let mut blocks = Vec::new();
                if let Some(c) = &m.content {
                    let text = c.text();
                    if !text.is_empty() {
                        blocks.push(json!({"type": "text", "text": text}));
                    }
                }
                for call in m.tool_calls.iter().flatten() {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.function.name,
                        "input": call.function.arguments_json()?,
                    }));
                }
                messages.push("assistant", blocks);
            }
            "tool" => {
                let id = m.tool_call_id.as_deref().ok_or_else(|| {
                    GatewayError::invalid_request("A `tool` message needs `tool_call_id`.")
                        .param("messages")
                })?;
                let content = match &m.content {
                    Some(Content::Parts(_)) => {
                        Value::Array(user_blocks(m.content.as_ref().expect("some"), policy)?)
                    }
                    Some(c) => Value::String(c.text()),
                    None => Value::String(String::new()),
                };
                messages.push(
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
                );
            }
            other => {
                return Err(GatewayError::invalid_request(format!(
                    "Unsupported message role `{}`.",
                    Printable(other)
                ))
                .param("messages"))
            }
        }
    }
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), messages.into_json("content"));

    // Output length and thinking.
    let mut max_tokens = req.max_output_tokens();
    if let Some(effort) = &req.reasoning_effort {
        if let Some(budget) = chat::thinking_budget(effort)? {
            let max = *max_tokens.get_or_insert(opts.default_max_tokens + budget);
            let budget = budget.min(max.saturating_sub(1));
            if budget < 1024 {
                return Err(GatewayError::invalid_request(
                    "`max_tokens` is too small for reasoning: Anthropic needs at least 1024 thinking tokens below max_tokens.",
                )
                .param("reasoning_effort"));
            }
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
            if req.temperature.is_some_and(|t| t != 1.0) {
                policy.apply(
                    KIND,
                    "temperature",
                    "it cannot be set together with reasoning",
                )?;
            } else if let Some(t) = req.temperature {
                body.insert("temperature".into(), t.into());
            }
        }
    }
    body.insert(
        "max_tokens".into(),
        max_tokens.unwrap_or(opts.default_max_tokens).into(),
    );
    if !body.contains_key("thinking") {
        if let Some(t) = req.temperature {
            body.insert("temperature".into(), t.into());
        }
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), p.into());
    }
    let stops = req.stop_sequences();
    if !stops.is_empty() {
        body.insert("stop_sequences".into(), stops.into());
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if req.n.is_some_and(|n| n > 1) {
        policy.apply(KIND, "n", "only one choice can be generated")?;
    }
    if req.seed.is_some() {
        policy.apply(KIND, "seed", "there is no seed parameter")?;
    }
    if req.presence_penalty.is_some_and(|p| p != 0.0) {
        policy.apply(KIND, "presence_penalty", "there is no such penalty")?;
    }
    if req.frequency_penalty.is_some_and(|p| p != 0.0) {
        policy.apply(KIND, "frequency_penalty", "there is no such penalty")?;
    }

    // Tools.
    let mut tools: Vec<Value> = Vec::new();
    for t in req.tools.iter().flatten() {
        match (&*t.kind, &t.function) {
            ("function", Some(f)) => {
                let mut tool = Map::new();
                tool.insert("name".into(), f.name.clone().into());
                if let Some(d) = &f.description {
                    tool.insert("description".into(), d.clone().into());
                }
                tool.insert(
                    "input_schema".into(),
                    f.parameters
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                );
                tools.push(Value::Object(tool));
            }
            _ => policy.apply(KIND, "tools", "only function tools can be translated")?,
        }
    }
    let mut tool_choice = req.choice()?.map(|c| match c {
        Choice::Auto => json!({"type": "auto"}),
        Choice::Required => json!({"type": "any"}),
        Choice::None => json!({"type": "none"}),
        Choice::Named(name) => json!({"type": "tool", "name": name}),
    });
    let mut translation = Translation {
        json_tool: false,
        include_usage: false,
    };
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(format) => {
            let schema = match format {
                ResponseFormat::JsonSchema { json_schema } => json_schema
                    .schema
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object"})),
                _ => json!({"type": "object"}),
            };
            tools.push(json!({
                "name": JSON_TOOL,
                "description": "Respond with a JSON value that follows this schema.",
                "input_schema": schema,
            }));
            tool_choice = Some(json!({"type": "tool", "name": JSON_TOOL}));
            translation.json_tool = true;
        }
    }
    if req.parallel_tool_calls == Some(false) && !tools.is_empty() {
        let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = true.into();
        }
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = tool_choice {
        body.insert("tool_choice".into(), c);
    }
    if stream {
        body.insert("stream".into(), true.into());
    }
    let bytes = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| GatewayError::new(ErrorKind::Internal, e.to_string()))?;
    Ok((bytes, translation))
}

/// The text parts of a content as text blocks, with their cache marks.
fn text_blocks(c: &Content) -> Vec<Value> {
    match c {
        Content::Text(t) => vec![json!({"type": "text", "text": t})],
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Part::Text {
                    text,
                    cache_control,
                } => Some(with_cache_mark(
                    json!({"type": "text", "text": text}),
                    cache_control,
                )),
                _ => None,
            })
            .collect(),
    }
}

/// A block with the part's `cache_control`, when it had one.
fn with_cache_mark(mut block: Value, cache_control: &Option<Value>) -> Value {
    if let (Some(cc), Some(o)) = (cache_control, block.as_object_mut()) {
        o.insert("cache_control".into(), cc.clone());
    }
    block
}

fn user_blocks(c: &Content, policy: Unsupported) -> Result<Vec<Value>, GatewayError> {
    let parts = match c {
        Content::Text(t) => return Ok(vec![json!({"type": "text", "text": t})]),
        Content::Parts(parts) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for p in parts {
        match p {
            Part::Text {
                text,
                cache_control,
            } => blocks.push(with_cache_mark(
                json!({"type": "text", "text": text}),
                cache_control,
            )),
            Part::ImageUrl {
                image_url,
                cache_control,
            } => {
                let (kind, source) = match image_url.parse()? {
                    Image::Inline { mime, data } => (
                        if mime == "application/pdf" {
                            "document"
                        } else {
                            "image"
                        },
                        json!({"type": "base64", "media_type": mime, "data": data}),
                    ),
                    Image::Url(url) => (
                        if chat::mime_from_url(url) == "application/pdf" {
                            "document"
                        } else {
                            "image"
                        },
                        json!({"type": "url", "url": url}),
                    ),
                };
                blocks.push(with_cache_mark(
                    json!({"type": kind, "source": source}),
                    cache_control,
                ));
            }
            Part::Other => policy.apply(
                KIND,
                "messages",
                "a content part of this type cannot be translated",
            )?,
        }
    }
    Ok(blocks)
}

/// The OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: Option<&str>, json_tool: bool) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") if !json_tool => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
struct AUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl AUsage {
    /// Folds a (possibly partial) report into `u`: message_start carries the input side,
    /// message_delta the output side (and, on newer models, the input side again).
    fn apply(&self, u: &mut Usage) {
        if let Some(i) = self.input_tokens {
            let read = self.cache_read_input_tokens.unwrap_or(0);
            let write = self.cache_creation_input_tokens.unwrap_or(0);
            u.input_tokens = i + read + write;
            u.cached_input_tokens = read;
            u.cache_write_tokens = write;
        }
        if let Some(o) = self.output_tokens {
            u.output_tokens = o;
        }
    }
}

/// Translates a whole Messages response into an OpenAI `chat.completion`.
pub fn translate_response(
    body: &[u8],
    t: Translation,
    created: u64,
) -> Result<(Vec<u8>, Usage), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in v["content"].as_array().ok_or("no `content` array")? {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("thinking") => reasoning.push_str(block["thinking"].as_str().unwrap_or("")),
            Some("tool_use") if t.json_tool && block["name"] == JSON_TOOL => {
                text.push_str(&block["input"].to_string());
            }
            Some("tool_use") => tool_calls.push(json!({
                "id": block["id"],
                "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()},
            })),
            _ => {}
        }
    }
    let mut usage = Usage::default();
    let u: AUsage = serde_json::from_value(v["usage"].clone()).unwrap_or_default();
    u.apply(&mut usage);
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert(
        "content".into(),
        if text.is_empty() && !tool_calls.is_empty() {
            Value::Null
        } else {
            text.into()
        },
    );
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), reasoning.into());
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), tool_calls.into());
    }
    message.insert("refusal".into(), Value::Null);
    let mut usage_json = Vec::new();
    chunk::write_usage(&mut usage_json, &usage);
    let out = json!({
        "id": v["id"],
        "object": "chat.completion",
        "created": created,
        "model": v["model"],
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(v["stop_reason"].as_str(), t.json_tool),
        }],
        "usage": serde_json::from_slice::<Value>(&usage_json).unwrap_or(Value::Null),
    });
    Ok((serde_json::to_vec(&out).map_err(|e| e.to_string())?, usage))
}

/// An Anthropic error status and body, as the client is told.
pub fn map_error(
    provider: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
) -> GatewayError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(rename = "type")]
        kind: String,
        message: String,
    }
    let parsed = serde_json::from_slice::<Envelope>(body).ok();
    if status == 401 || status == 403 {
        return super::credentials_refused(provider, status);
    }
    let (kind_code, message) = match &parsed {
        Some(e) => (e.error.kind.clone(), e.error.message.clone()),
        None => (
            "api_error".to_string(),
            String::from_utf8_lossy(body).trim().to_string(),
        ),
    };
    let kind = match status {
        // Overloaded: the provider's trouble, and worth retrying elsewhere.
        529 => ErrorKind::Unavailable,
        s => ErrorKind::Upstream(s),
    };
    let mut e = GatewayError::new(
        kind,
        format!("Provider `{provider}`: {}", Printable(&message)),
    );
    e.fails_over = status == 529;
    e.code = Some(super::static_code(&kind_code));
    e.retry_after = retry_after;
    if parsed.is_some() {
        e.upstream_body = Some(UpstreamBody::Anthropic(Bytes::copy_from_slice(body)));
    }
    e
}

// ---------------------------------------------------------------------------------------
// Streams

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, borrow)]
    message: Option<StartMessage<'a>>,
    #[serde(default, borrow)]
    content_block: Option<StartBlock<'a>>,
    #[serde(default, borrow)]
    delta: Option<EventDelta<'a>>,
    #[serde(default)]
    usage: Option<AUsage>,
    #[serde(default, borrow)]
    error: Option<EventError<'a>>,
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(default)]
    usage: Option<AUsage>,
}

#[derive(Deserialize)]
struct StartBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EventDelta<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EventError<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    message: Cow<'a, str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    Tool { index: u32, has_arguments: bool },
    JsonTool,
    Other,
}

/// Translates one Anthropic SSE stream into OpenAI chunks, event by event; complete only
/// after `message_stop`.
pub type StreamTranslator = Translated<State>;

/// What an Anthropic stream has told so far.
pub struct State {
    t: Translation,
    created: u64,
    writer: Option<ChunkWriter>,
    /// Content blocks by Anthropic index.
    blocks: Vec<Block>,
    next_tool: u32,
    stop_reason: Option<String>,
    usage: Usage,
}

impl StreamTranslator {
    pub fn new(t: Translation, created: u64) -> Self {
        Translated::with_state(State {
            t,
            created,
            writer: None,
            blocks: Vec::new(),
            next_tool: 0,
            stop_reason: None,
            usage: Usage::default(),
        })
    }
}

impl translate::Events for State {
    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        self.translate(data, at_end, out)
    }

    /// message_start, then message_delta.
    fn usage(&self) -> Option<Usage> {
        Some(self.usage)
    }
}

impl State {
    fn writer(&mut self) -> &ChunkWriter {
        let created = self.created;
        self.writer
            .get_or_insert_with(|| ChunkWriter::new("msg_unknown", "unknown", created))
    }

    /// Translates one event into `out`; true when the stream is over.
    fn translate(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        if let Some((index, kind, literal)) = fast_delta(data) {
            self.delta_literal(index, kind, literal, out);
            return false;
        }
        let ev: Event<'_> = match serde_json::from_slice(data) {
            Ok(ev) => ev,
            Err(_) => return translate::unreadable_event(out, at_end),
        };
        match &*ev.kind {
            "message_start" => {
                if let Some(m) = ev.message {
                    if let Some(u) = m.usage {
                        u.apply(&mut self.usage);
                    }
                    self.writer = Some(ChunkWriter::new(&m.id, &m.model, self.created));
                }
                self.writer().delta(out, Delta::Role, None);
            }
            "content_block_start" => {
                let (Some(index), Some(block)) = (ev.index, ev.content_block) else {
                    return false;
                };
                let kind = match &*block.kind {
                    "text" => Block::Text,
                    "thinking" => Block::Thinking,
                    "tool_use" => {
                        let name = block.name.as_deref().unwrap_or("");
                        if self.t.json_tool && name == JSON_TOOL {
                            Block::JsonTool
                        } else {
                            let tool = self.next_tool;
                            self.next_tool += 1;
                            let id = block.id.as_deref().unwrap_or("");
                            self.writer().delta(
                                out,
                                Delta::ToolStart {
                                    index: tool,
                                    id,
                                    name,
                                    arguments: "",
                                },
                                None,
                            );
                            Block::Tool {
                                index: tool,
                                has_arguments: false,
                            }
                        }
                    }
                    _ => Block::Other,
                };
                if self.blocks.len() <= index {
                    self.blocks.resize(index + 1, Block::Other);
                }
                self.blocks[index] = kind;
            }
            "content_block_delta" => {
                let (Some(index), Some(delta)) = (ev.index, ev.delta) else {
                    return false;
                };
                let block = self.blocks.get(index).copied().unwrap_or(Block::Other);
                match (block, delta.kind.as_deref()) {
                    (_, Some("text_delta")) => {
                        if let Some(t) = delta.text.as_deref().filter(|t| !t.is_empty()) {
                            self.writer().delta(out, Delta::Content(t), None);
                        }
                    }
                    (_, Some("thinking_delta")) => {
                        if let Some(t) = delta.thinking.as_deref().filter(|t| !t.is_empty()) {
                            self.writer().delta(out, Delta::Reasoning(t), None);
                        }
                    }
                    (Block::Tool { index: tool, .. }, Some("input_json_delta")) => {
                        if let Some(p) = delta.partial_json.as_deref().filter(|p| !p.is_empty()) {
                            self.writer().delta(
                                out,
                                Delta::ToolArguments {
                                    index: tool,
                                    arguments: p,
                                },
                                None,
                            );
                            self.blocks[index] = Block::Tool {
                                index: tool,
                                has_arguments: true,
                            };
                        }
                    }
                    (Block::JsonTool, Some("input_json_delta")) => {
                        if let Some(p) = delta.partial_json.as_deref().filter(|p| !p.is_empty()) {
                            self.writer().delta(out, Delta::Content(p), None);
                        }
                    }
                    // signature_delta and anything newer: nothing an OpenAI client can use.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let Some(index) = ev.index else { return false };
                if let Some(Block::Tool {
                    index: tool,
                    has_arguments: false,
                }) = self.blocks.get(index).copied()
                {
                    // A tool called without input: its arguments must still parse as JSON.
                    self.writer().delta(
                        out,
                        Delta::ToolArguments {
                            index: tool,
                            arguments: "{}",
                        },
                        None,
                    );
                    self.blocks[index] = Block::Tool {
                        index: tool,
                        has_arguments: true,
                    };
                }
            }
            "message_delta" => {
                if let Some(u) = ev.usage {
                    u.apply(&mut self.usage);
                }
                if let Some(r) = ev.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(r.into_owned());
                }
                let reason = finish_reason(self.stop_reason.as_deref(), self.t.json_tool);
                self.writer().delta(out, Delta::Empty, Some(reason));
            }
            "message_stop" => {
                if self.t.include_usage {
                    let usage = self.usage;
                    self.writer().usage(out, &usage);
                }
                out.extend_from_slice(chunk::DONE);
                return true;
            }
            "error" => {
                let (kind, message) = ev
                    .error
                    .map(|e| (e.kind.into_owned(), e.message.into_owned()))
                    .unwrap_or_else(|| {
                        ("api_error".into(), "The provider reported an error.".into())
                    });
                translate::error_event(out, &kind, &message);
                return true;
            }
            // ping, and event types newer than this code.
            _ => {}
        }
        false
    }

    /// A text, thinking or tool-input delta found by [`fast_delta`].
    fn delta_literal(&mut self, index: usize, kind: FastDelta, literal: &[u8], out: &mut Vec<u8>) {
        if literal == b"\"\"" {
            return;
        }
        let block = self.blocks.get(index).copied().unwrap_or(Block::Other);
        let delta = match (kind, block) {
            (FastDelta::Text, _) => Delta::ContentLiteral(literal),
            (FastDelta::Thinking, _) => Delta::ReasoningLiteral(literal),
            (FastDelta::InputJson, Block::Tool { index: tool, .. }) => {
                self.blocks[index] = Block::Tool {
                    index: tool,
                    has_arguments: true,
                };
                Delta::ToolArgumentsLiteral {
                    index: tool,
                    arguments: literal,
                }
            }
            (FastDelta::InputJson, Block::JsonTool) => Delta::ContentLiteral(literal),
            (FastDelta::InputJson, _) => return,
        };
        self.writer().delta(out, delta, None);
    }
}

#[derive(Clone, Copy)]
enum FastDelta {
    Text,
    Thinking,
    InputJson,
}

// hot path: most events of a stream are content_block_delta in exactly this compact layout;
// reading them by their bytes skips a full JSON parse and re-escaping. Anything else (another
// layout, extra fields, an odd string) takes the general path.
/// `(index, kind, string literal)` of a compact content_block_delta event.
fn fast_delta(data: &[u8]) -> Option<(usize, FastDelta, &[u8])> {
    let rest = data.strip_prefix(br#"{"type":"content_block_delta","index":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 6 {
        return None;
    }
    let index: usize = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(br#","delta":{"type":""#)?;
    let (kind, rest) = if let Some(r) = rest.strip_prefix(br#"text_delta","text":"#) {
        (FastDelta::Text, r)
    } else if let Some(r) = rest.strip_prefix(br#"thinking_delta","thinking":"#) {
        (FastDelta::Thinking, r)
    } else if let Some(r) = rest.strip_prefix(br#"input_json_delta","partial_json":"#) {
        (FastDelta::InputJson, r)
    } else {
        return None;
    };
    let len = chunk::json_string_literal(rest)?;
    // Then exactly two closing braces, with any padding around them.
    let mut tail = rest[len..].iter().filter(|b| !b.is_ascii_whitespace());
    if tail.next() != Some(&b'}') || tail.next() != Some(&b'}') || tail.next().is_some() {
        return None;
    }
    Some((index, kind, &rest[..len]))
}

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------------------
// Pass-through (an Anthropic client to an Anthropic upstream)

/// The client's Messages request for an Anthropic upstream: the same bytes with only the
/// model replaced. Thinking blocks another backend produced (Junction marks their signature
/// empty) are removed first: Anthropic would reject them, and their reasoning is not its own.
pub fn pass_request(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, GatewayError> {
    let owned;
    let body = if memchr::memmem::find(body, b"\"signature\":\"\"").is_some() {
        owned = without_foreign_thinking(body)?;
        &owned[..]
    } else {
        body
    };
    super::splice_model(body, upstream_model)
}

/// Removes thinking blocks whose signature is empty from the assistant turns.
fn without_foreign_thinking(body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}."))
    })?;
    if let Some(messages) = v.get_mut("messages").and_then(Value::as_array_mut) {
        for m in messages {
            if let Some(blocks) = m.get_mut("content").and_then(Value::as_array_mut) {
                blocks.retain(|b| {
                    !(b.get("type").and_then(Value::as_str) == Some("thinking")
                        && b.get("signature").and_then(Value::as_str) == Some(""))
                });
            }
        }
    }
    Ok(serde_json::to_vec(&v).expect("a JSON value serializes"))
}

/// Watches an Anthropic stream passed through unchanged, for its usage and its end.
pub type PassThrough = crate::stream::watch::Watched<PassState>;

/// What a passed-through Anthropic stream told of its usage.
#[derive(Default)]
pub struct PassState {
    usage: Usage,
}

impl crate::stream::watch::Watch for PassState {
    fn observe(&mut self, data: &[u8]) -> bool {
        if fast_delta(data).is_some() {
            return false;
        }
        let Ok(ev) = serde_json::from_slice::<Event<'_>>(data) else {
            return false;
        };
        match &*ev.kind {
            "message_start" => {
                if let Some(u) = ev.message.and_then(|m| m.usage) {
                    u.apply(&mut self.usage);
                }
            }
            "message_delta" => {
                if let Some(u) = ev.usage {
                    u.apply(&mut self.usage);
                }
            }
            "message_stop" | "error" => return true,
            _ => {}
        }
        false
    }

    fn usage(&self) -> Option<Usage> {
        Some(self.usage)
    }
}

/// The usage of a whole Messages response, from the end of its body.
pub fn usage_in_tail(tail: &[u8]) -> Option<Usage> {
    let u = crate::usage::in_tail::<AUsage>(tail, b"\"usage\"")?;
    let mut usage = Usage::default();
    u.apply(&mut usage);
    Some(usage)
}
