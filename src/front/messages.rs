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
    arguments_object, content_text, error_message, finish_of, invalid, join_line, json_str,
    literal, reasoning_text, request_object, text_in, usage_of, Chunk, ToolCallDelta,
};
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

// ---------------------------------------------------------------------------------------
// Request

/// Translates an Anthropic Messages request body into an OpenAI chat completion request.
pub fn request_to_chat(body: &[u8]) -> Result<ToChat, GatewayError> {
    let mut req = request_object(body)?;
    let model = match req.remove("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        None | Some(Value::Null) => return Err(invalid("Missing field `model`.", "model")),
        Some(_) => return Err(invalid("`model` must be a non-empty string.", "model")),
    };
    let max_tokens = match req.remove("max_tokens") {
        None | Some(Value::Null) => {
            return Err(invalid(
                "Missing field `max_tokens` (the Messages API requires it).",
                "max_tokens",
            ))
        }
        Some(v) => v
            .as_u64()
            .filter(|&n| n > 0)
            .ok_or_else(|| invalid("`max_tokens` must be a positive integer.", "max_tokens"))?,
    };
    let turns = match req.remove("messages") {
        None | Some(Value::Null) => return Err(invalid("Missing field `messages`.", "messages")),
        Some(Value::Array(turns)) if turns.is_empty() => {
            return Err(invalid(
                "`messages` must hold at least one message.",
                "messages",
            ))
        }
        Some(Value::Array(turns)) => turns,
        Some(_) => return Err(invalid("`messages` must be an array.", "messages")),
    };

    let mut messages = Vec::with_capacity(turns.len() + 1);
    if let Some(system) = req.remove("system") {
        let text = system_text(system)?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, turn) in turns.into_iter().enumerate() {
        push_turn(i, turn, &mut messages)?;
    }

    let mut out = Map::new();
    out.insert("model".into(), model.clone().into());
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), max_tokens.into());
    for key in ["temperature", "top_p"] {
        match req.remove(key) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                out.insert(key.into(), v);
            }
            Some(_) => return Err(invalid(format!("`{key}` must be a number."), key)),
        }
    }
    let stops = stop_sequences(req.remove("stop_sequences"))?;
    if !stops.is_empty() {
        out.insert("stop".into(), stops.into());
    }
    let stream = match req.remove("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(invalid("`stream` must be a boolean.", "stream")),
    };
    if stream {
        out.insert("stream".into(), true.into());
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(Value::Object(mut metadata)) = req.remove("metadata") {
        if let Some(user @ Value::String(_)) = metadata.remove("user_id") {
            out.insert("user".into(), user);
        }
    }

    let mut dropped = Vec::new();
    let tools = tools(req.remove("tools"), &mut dropped)?;
    if !tools.is_empty() {
        let choice = req.remove("tool_choice").filter(|c| !c.is_null());
        let choice = choice.map(|c| tool_choice(c, &tools)).transpose()?;
        out.insert("tools".into(), Value::Array(tools));
        if let Some((choice, parallel)) = choice {
            out.insert("tool_choice".into(), choice);
            if !parallel {
                out.insert("parallel_tool_calls".into(), false.into());
            }
        }
    }
    if let Some(effort) = reasoning_effort(req.remove("thinking"))? {
        out.insert("reasoning_effort".into(), effort.into());
    }

    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| GatewayError::new(ErrorKind::Internal, e.to_string()))?;
    Ok(ToChat {
        body,
        model,
        stream,
        dropped,
    })
}

/// The system prompt as one string: a string, or the text of an array of text blocks.
fn system_text(system: Value) -> Result<String, GatewayError> {
    let bad = || {
        invalid(
            "`system` must be a string or an array of text blocks.",
            "system",
        )
    };
    match system {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Array(blocks) => {
            let mut text = String::new();
            for block in blocks {
                let Value::Object(mut b) = block else {
                    return Err(bad());
                };
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(bad());
                }
                match b.remove("text") {
                    Some(Value::String(t)) => join_line(&mut text, &t),
                    _ => return Err(bad()),
                }
            }
            Ok(text)
        }
        _ => Err(bad()),
    }
}

fn stop_sequences(v: Option<Value>) -> Result<Vec<Value>, GatewayError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => Ok(stops),
        Some(_) => Err(invalid(
            "`stop_sequences` must be an array of strings.",
            "stop_sequences",
        )),
    }
}

/// One content block of message `i`: its fields, and its type.
fn block(i: usize, block: Value) -> Result<(Map<String, Value>, String), GatewayError> {
    let Value::Object(mut b) = block else {
        return Err(invalid(
            format!("`messages[{i}].content` must hold content block objects."),
            "messages",
        ));
    };
    match b.remove("type") {
        Some(Value::String(kind)) => Ok((b, kind)),
        _ => Err(invalid(
            format!("`messages[{i}].content`: every content block needs a string `type`."),
            "messages",
        )),
    }
}

/// Takes the string field `key` of a `kind` block of message `i`.
fn string_field(
    i: usize,
    b: &mut Map<String, Value>,
    kind: &str,
    key: &str,
) -> Result<String, GatewayError> {
    match b.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(invalid(
            format!(
                "`messages[{i}].content`: a `{}` block needs a string `{key}`.",
                Printable(kind)
            ),
            "messages",
        )),
    }
}

fn unsupported_block(i: usize, kind: &str) -> GatewayError {
    invalid(
        format!(
            "`messages[{i}].content`: content blocks of type `{}` cannot be sent to this model.",
            Printable(kind)
        ),
        "messages",
    )
}

/// A piece of a user message.
enum Piece {
    Text(String),
    ImageUrl(String),
}

/// Appends the OpenAI messages for Anthropic message `i`.
fn push_turn(i: usize, turn: Value, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let Value::Object(mut turn) = turn else {
        return Err(invalid(
            format!("`messages[{i}]` must be an object."),
            "messages",
        ));
    };
    let user = match turn.get("role").and_then(Value::as_str) {
        Some("user") => true,
        Some("assistant") => false,
        // Mid-conversation system messages (Claude Code's `mid-conversation-system` beta):
        // a system message in place.
        Some("system") => {
            let text = system_text(turn.remove("content").unwrap_or(Value::Null))?;
            out.push(json!({"role": "system", "content": text}));
            return Ok(());
        }
        Some(other) => {
            return Err(invalid(
                format!(
                    "`messages[{i}].role` must be `user`, `assistant` or `system`, not `{}`.",
                    Printable(other)
                ),
                "messages",
            ))
        }
        None => {
            return Err(invalid(
                format!("`messages[{i}]` needs a string `role`."),
                "messages",
            ))
        }
    };
    let role = if user { "user" } else { "assistant" };
    let blocks = match turn.remove("content") {
        Some(Value::String(text)) => {
            out.push(json!({"role": role, "content": text}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(invalid(
                format!("`messages[{i}].content` must be a string or an array of content blocks."),
                "messages",
            ))
        }
    };
    if user {
        user_turn(i, blocks, out)
    } else {
        assistant_turn(i, blocks, out)
    }
}

fn user_turn(i: usize, blocks: Vec<Value>, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let mut pieces = Vec::with_capacity(blocks.len());
    for b in blocks {
        let (mut b, kind) = block(i, b)?;
        match kind.as_str() {
            "text" => pieces.push(Piece::Text(string_field(i, &mut b, &kind, "text")?)),
            "image" => pieces.push(Piece::ImageUrl(image_url(i, &mut b)?)),
            "document" => {
                let text = document_text(&mut b).ok_or_else(|| {
                    invalid(
                        format!("`messages[{i}].content`: only documents with a `text` source can be sent to this model (not PDFs or files)."),
                        "messages",
                    )
                })?;
                pieces.push(Piece::Text(text));
            }
            "tool_result" => out.push(tool_message(i, b)?),
            other => return Err(unsupported_block(i, other)),
        }
    }
    if pieces.is_empty() {
        return Ok(());
    }
    let content = if pieces.iter().any(|p| matches!(p, Piece::ImageUrl(_))) {
        let parts = pieces.into_iter().map(|p| match p {
            Piece::Text(text) => json!({"type": "text", "text": text}),
            Piece::ImageUrl(url) => json!({"type": "image_url", "image_url": {"url": url}}),
        });
        Value::Array(parts.collect())
    } else {
        let mut text = String::new();
        for p in &pieces {
            if let Piece::Text(t) = p {
                join_line(&mut text, t);
            }
        }
        Value::String(text)
    };
    out.push(json!({"role": "user", "content": content}));
    Ok(())
}

/// The OpenAI `image_url.url` of an image block: a data URL or the image's URL.
fn image_url(i: usize, b: &mut Map<String, Value>) -> Result<String, GatewayError> {
    let Some(Value::Object(mut source)) = b.remove("source") else {
        return Err(invalid(
            format!("`messages[{i}].content`: an `image` block needs a `source` object."),
            "messages",
        ));
    };
    let kind = source.remove("type");
    match kind.as_ref().and_then(Value::as_str) {
        Some("base64") => {
            let media = string_field(i, &mut source, "image", "media_type")?;
            let data = string_field(i, &mut source, "image", "data")?;
            Ok(format!("data:{media};base64,{data}"))
        }
        Some("url") => string_field(i, &mut source, "image", "url"),
        _ => Err(invalid(
            format!("`messages[{i}].content`: only `base64` and `url` image sources can be sent to this model."),
            "messages",
        )),
    }
}

/// The text of a document block with a `text` source; `None` for other sources.
fn document_text(b: &mut Map<String, Value>) -> Option<String> {
    let Some(Value::Object(mut source)) = b.remove("source") else {
        return None;
    };
    if source.get("type").and_then(Value::as_str) != Some("text") {
        return None;
    }
    match source.remove("data") {
        Some(Value::String(text)) => Some(text),
        _ => None,
    }
}

/// A `tool_result` block as an OpenAI `tool` message.
fn tool_message(i: usize, mut b: Map<String, Value>) -> Result<Value, GatewayError> {
    let id = string_field(i, &mut b, "tool_result", "tool_use_id")?;
    let content = match b.remove("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for inner in blocks {
                let (mut inner, kind) = block(i, inner)?;
                match kind.as_str() {
                    "text" => join_line(&mut text, &string_field(i, &mut inner, &kind, "text")?),
                    "image" => join_line(&mut text, "[image]"),
                    "document" => match document_text(&mut inner) {
                        Some(t) => join_line(&mut text, &t),
                        None => join_line(&mut text, "[document]"),
                    },
                    other => join_line(&mut text, &format!("[{}]", Printable(other))),
                }
            }
            text
        }
        Some(_) => {
            return Err(invalid(
                format!("`messages[{i}].content`: a `tool_result` block's `content` must be a string or an array of content blocks."),
                "messages",
            ))
        }
    };
    Ok(json!({"role": "tool", "tool_call_id": id, "content": content}))
}

fn assistant_turn(i: usize, blocks: Vec<Value>, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        let (mut b, kind) = block(i, b)?;
        match kind.as_str() {
            "text" => join_line(&mut text, &string_field(i, &mut b, &kind, "text")?),
            "tool_use" => {
                let id = string_field(i, &mut b, &kind, "id")?;
                let name = string_field(i, &mut b, &kind, "name")?;
                let arguments = match b.remove("input") {
                    None | Some(Value::Null) => "{}".to_string(),
                    Some(input) => input.to_string(),
                };
                calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }));
            }
            // Anthropic's own reasoning, signed for Anthropic only.
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(i, other)),
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let mut m = Map::new();
    m.insert("role".into(), "assistant".into());
    let content = if text.is_empty() {
        Value::Null
    } else {
        text.into()
    };
    m.insert("content".into(), content);
    if !calls.is_empty() {
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    out.push(Value::Object(m));
    Ok(())
}

/// The client tools as OpenAI function tools; server tools go to `dropped`.
fn tools(v: Option<Value>, dropped: &mut Vec<String>) -> Result<Vec<Value>, GatewayError> {
    let tools = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(invalid("`tools` must be an array.", "tools")),
    };
    let mut out = Vec::with_capacity(tools.len());
    for tool in tools {
        let Value::Object(mut t) = tool else {
            return Err(invalid("Every tool must be an object.", "tools"));
        };
        let name = match t.remove("name") {
            Some(Value::String(name)) => Some(name),
            _ => None,
        };
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(server) => {
                dropped.push(name.unwrap_or_else(|| server.to_string()));
                continue;
            }
        }
        let Some(name) = name else {
            return Err(invalid("Every tool needs a string `name`.", "tools"));
        };
        let mut function = Map::new();
        function.insert("name".into(), name.into());
        if let Some(d @ Value::String(_)) = t.remove("description") {
            function.insert("description".into(), d);
        }
        let parameters = match t.remove("input_schema") {
            Some(schema @ Value::Object(_)) => schema,
            _ => json!({"type": "object", "properties": {}}),
        };
        function.insert("parameters".into(), parameters);
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// OpenAI's `tool_choice`, and whether parallel calls stay allowed.
fn tool_choice(choice: Value, tools: &[Value]) -> Result<(Value, bool), GatewayError> {
    let bad = || {
        invalid(
            "`tool_choice` must be an object with `type` auto, any, tool or none.",
            "tool_choice",
        )
    };
    let Value::Object(c) = choice else {
        return Err(bad());
    };
    let parallel = c.get("disable_parallel_tool_use") != Some(&Value::Bool(true));
    let choice = match c.get("type").and_then(Value::as_str) {
        Some("auto") => "auto".into(),
        Some("any") => "required".into(),
        Some("none") => return Ok(("none".into(), true)),
        Some("tool") => {
            let name = c.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid(
                    "`tool_choice` of type `tool` needs a string `name`.",
                    "tool_choice",
                )
            })?;
            if !tools.iter().any(|t| t["function"]["name"] == name) {
                return Err(invalid(
                    format!(
                        "`tool_choice` names `{}`, which is not among the tools this model can call.",
                        Printable(name)
                    ),
                    "tool_choice",
                ));
            }
            json!({"type": "function", "function": {"name": name}})
        }
        _ => return Err(bad()),
    };
    Ok((choice, parallel))
}

/// `reasoning_effort` for Anthropic's `thinking` setting.
fn reasoning_effort(thinking: Option<Value>) -> Result<Option<&'static str>, GatewayError> {
    let Some(Value::Object(t)) = thinking else {
        return match thinking {
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(invalid("`thinking` must be an object.", "thinking")),
        };
    };
    Ok(match t.get("type").and_then(Value::as_str) {
        Some("enabled") => Some(match t.get("budget_tokens").and_then(Value::as_u64) {
            Some(b) if b < 4096 => "low",
            Some(b) if b >= 16384 => "high",
            _ => "medium",
        }),
        Some("adaptive") => Some("medium"),
        // disabled, and anything newer than this code.
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// Whole response

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`; `tools`: the answer calls tools.
fn stop_reason(finish_reason: Option<&str>, tools: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if tools => "tool_use",
        _ => "end_turn",
    }
}

/// The Anthropic message id for an OpenAI completion id (a random one when there is none).
fn message_id(openai_id: Option<&str>) -> String {
    match openai_id.filter(|id| !id.is_empty()) {
        Some(id) => format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id)),
        None => format!("msg_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..)),
    }
}

/// An id for a tool call that came without one.
fn tool_use_id() -> String {
    format!("toolu_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

/// Anthropic's `usage` object (zeros when the upstream reported none).
fn write_usage(out: &mut Vec<u8>, usage: Option<Usage>) {
    let u = usage.unwrap_or_default();
    let cached = u.cached_input_tokens.min(u.input_tokens);
    let _ = write!(
        out,
        "{{\"input_tokens\":{},\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":{cached},\"output_tokens\":{}}}",
        u.input_tokens - cached,
        u.output_tokens
    );
}

/// Translates an OpenAI `chat.completion` body into an Anthropic `message` body.
pub fn response_from_chat(body: &[u8], model: &str) -> Result<Vec<u8>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let choice = v["choices"].get(0).ok_or("no `choices`")?;
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(r) = reasoning_text(message) {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    let text = content_text(&message["content"])
        .or_else(|| text_in(&message["refusal"]).map(str::to_string))
        .unwrap_or_default();
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    let calls = message["tool_calls"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for call in calls {
        let f = &call["function"];
        let input = arguments_object(f);
        let id = text_in(&call["id"]).map_or_else(tool_use_id, str::to_string);
        content.push(json!({
            "type": "tool_use",
            "id": id,
            "name": f["name"].as_str().unwrap_or(""),
            "input": input,
        }));
    }
    if content.is_empty() {
        content.push(json!({"type": "text", "text": ""}));
    }
    let usage = usage_of(&v);
    let mut usage_json = Vec::with_capacity(128);
    write_usage(&mut usage_json, usage);
    let out = json!({
        "id": message_id(v["id"].as_str()),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str(), !calls.is_empty()),
        "stop_sequence": null,
        "usage": serde_json::from_slice::<Value>(&usage_json).map_err(|e| e.to_string())?,
    });
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Streams

/// The content block being streamed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Nothing,
    Thinking,
    Text,
    /// The tool call at this position of `Encoder::calls`.
    Tool(usize),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Not started yet: its fragments are held back.
    Waiting,
    Open,
    Closed,
}

/// One OpenAI tool call (one `index`), as a tool_use block.
struct Call {
    index: u32,
    id: String,
    name: String,
    state: CallState,
    /// Fragments held back: the insides of their JSON string literals, joined (the insides
    /// of string literals join into the inside of one).
    held: Vec<u8>,
    arguments: Balance,
}

/// Follows the nesting of a JSON text given in pieces as the (escaped) insides of JSON
/// string literals, far enough to tell when an object or array has been closed.
#[derive(Default, Clone, Copy)]
struct Balance {
    depth: u32,
    in_string: bool,
    /// In a string of the arguments, after a backslash.
    escaped: bool,
    complete: bool,
}

impl Balance {
    fn feed(&mut self, inside: &[u8]) {
        let mut i = 0;
        while i < inside.len() {
            // One character of the arguments, undoing the literal's escaping.
            let c = match inside[i] {
                b'\\' => {
                    let e = inside.get(i + 1).copied().unwrap_or(b'\\');
                    i += 2;
                    match e {
                        b'u' => {
                            let hex = inside.get(i..i + 4).unwrap_or(b"0000");
                            i += 4;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u16::from_str_radix(h, 16).ok())
                                .unwrap_or(0);
                            // Only ASCII structure matters here.
                            u8::try_from(code).ok().filter(u8::is_ascii).unwrap_or(b'x')
                        }
                        b'n' | b'r' | b't' | b'b' | b'f' => b' ',
                        other => other,
                    }
                }
                c => {
                    i += 1;
                    c
                }
            };
            self.step(c);
        }
    }

    fn step(&mut self, c: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == b'\\' {
                self.escaped = true;
            } else if c == b'"' {
                self.in_string = false;
            }
            return;
        }
        match c {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' if self.depth > 0 => {
                self.depth -= 1;
                self.complete |= self.depth == 0;
            }
            _ => {}
        }
    }
}

const BLOCK_START: &[u8] =
    b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":";
const BLOCK_DELTA: &[u8] =
    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":";
const BLOCK_STOP: &[u8] =
    b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":";
const MESSAGE_STOP: &[u8] = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn write_index(out: &mut Vec<u8>, prefix: &[u8], index: u32) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
}

/// The head of a content_block_delta, up to its string value.
fn delta_head(out: &mut Vec<u8>, at: u32, open: Open) {
    write_index(out, BLOCK_DELTA, at);
    out.extend_from_slice(match open {
        Open::Text => b",\"delta\":{\"type\":\"text_delta\",\"text\":",
        Open::Thinking => b",\"delta\":{\"type\":\"thinking_delta\",\"thinking\":",
        _ => b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":",
    });
}

/// An Anthropic `error` event.
fn error_event(out: &mut Vec<u8>, kind: &str, message: &str) {
    out.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":");
    json_str(out, kind);
    out.extend_from_slice(b",\"message\":");
    json_str(out, message);
    out.extend_from_slice(b"}}\n\n");
}

/// Anthropic's error type for an OpenAI error object (or a bare message).
fn error_of(error: &Value) -> (&'static str, &str) {
    let message = error_message(error);
    let kind = error["type"].as_str().unwrap_or("");
    let code = error["code"].as_str().unwrap_or("");
    let kind = match (kind, code) {
        ("rate_limit_error", _) | (_, "rate_limit_exceeded") => "rate_limit_error",
        ("overloaded" | "overloaded_error", _) | (_, "overloaded" | "overloaded_error") => {
            "overloaded_error"
        }
        ("invalid_request_error", _) => "invalid_request_error",
        ("authentication_error", _) => "authentication_error",
        ("permission_error", _) => "permission_error",
        _ => "api_error",
    };
    (kind, message)
}

/// Turns an OpenAI chunk stream (SSE bytes, split anywhere) into Anthropic's event stream.
/// `finish` leaves a cut stream (no `[DONE]`, no `finish_reason`) open for the caller's error
/// event; `done`: `message_stop` or an `error` event was sent. Its usage is the upstream's
/// (OpenAI's sense: input includes cached tokens).
pub type StreamEncoder = Translated<Encoder>;

impl StreamEncoder {
    /// `model`: the model the client asked for, as the events name it.
    pub fn new(model: &str) -> Self {
        Translated::with_state(Encoder {
            model: model.to_string(),
            started: false,
            next_index: 0,
            open: Open::Nothing,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
        })
    }
}

/// What the stream has told so far.
pub struct Encoder {
    model: String,
    /// message_start was sent.
    started: bool,
    /// Anthropic index of the next content block (the open one is `next_index - 1`).
    next_index: u32,
    open: Open,
    calls: Vec<Call>,
    /// The finish_reason, once one came.
    finish_reason: Option<&'static str>,
    usage: Option<Usage>,
}

impl Events for Encoder {
    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        if data == b"[DONE]" {
            self.end_message(out);
            return true;
        }
        let chunk: Chunk<'_> = match serde_json::from_slice(data) {
            Ok(c) => c,
            // The unterminated last event of a cut stream: the caller reports the cut.
            Err(_) if at_end => return false,
            Err(_) => {
                error_event(
                    out,
                    "api_error",
                    "The upstream sent an event that is not valid JSON.",
                );
                return true;
            }
        };
        if let Some(e) = &chunk.error {
            let (kind, message) = error_of(e);
            error_event(out, kind, message);
            return true;
        }
        if !self.started {
            self.start(chunk.id.as_deref(), out);
        }
        if let Some(choice) = chunk.choices.0 {
            if let Some(d) = choice.delta {
                let reasoning = literal(d.reasoning_content).or(literal(d.reasoning));
                if let Some(lit) = reasoning {
                    self.piece(Open::Thinking, lit, out);
                }
                if let Some(lit) = literal(d.content).or(literal(d.refusal)) {
                    self.piece(Open::Text, lit, out);
                }
                for (position, call) in d.tool_calls.into_iter().flatten().enumerate() {
                    self.tool_delta(call, position as u32, out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(finish_of(&reason));
                // Nothing follows: let the client act on the blocks now.
                self.close_all(out);
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
        }
        false
    }

    /// A stream that finished but lost its `[DONE]` is ended; a cut one is not.
    fn end(&mut self, out: &mut Vec<u8>) -> bool {
        if self.finish_reason.is_none() {
            return false;
        }
        self.end_message(out);
        true
    }
}

impl Encoder {
    fn start(&mut self, openai_id: Option<&str>, out: &mut Vec<u8>) {
        self.started = true;
        out.extend_from_slice(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":",
        );
        json_str(out, &message_id(openai_id));
        out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        json_str(out, &self.model);
        out.extend_from_slice(b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n");
    }

    // hot path: one call per text or thinking delta.
    /// A text or thinking fragment (a JSON string literal), in a block of its kind.
    fn piece(&mut self, kind: Open, literal: &[u8], out: &mut Vec<u8>) {
        if self.open != kind {
            self.close_all(out);
            self.open_block(kind, out);
        }
        delta_head(out, self.next_index - 1, kind);
        out.extend_from_slice(literal);
        out.extend_from_slice(b"}}\n\n");
    }

    /// Opens a text or thinking block.
    fn open_block(&mut self, kind: Open, out: &mut Vec<u8>) {
        write_index(out, BLOCK_START, self.next_index);
        out.extend_from_slice(if kind == Open::Text {
            b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        } else {
            b",\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n"
        });
        self.next_index += 1;
        self.open = kind;
    }

    fn tool_delta(&mut self, call: ToolCallDelta<'_>, position: u32, out: &mut Vec<u8>) {
        let index = call.index.unwrap_or(position);
        let at = match self.calls.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                self.calls.push(Call {
                    index,
                    id: String::new(),
                    name: String::new(),
                    state: CallState::Waiting,
                    held: Vec::new(),
                    arguments: Balance::default(),
                });
                self.calls.len() - 1
            }
        };
        let c = &mut self.calls[at];
        let arguments = literal(call.fill(&mut c.id, &mut c.name));
        if let Some(lit) = arguments {
            let inside = &lit[1..lit.len() - 1];
            match c.state {
                CallState::Open => {
                    c.arguments.feed(inside);
                    delta_head(out, self.next_index - 1, Open::Tool(at));
                    out.extend_from_slice(lit);
                    out.extend_from_slice(b"}}\n\n");
                }
                CallState::Waiting => {
                    c.arguments.feed(inside);
                    c.held.extend_from_slice(inside);
                }
                // Only a broken upstream extends arguments after content or the end came
                // between them; the block is closed and cannot take them.
                CallState::Closed => {
                    tracing::warn!(index, "tool call arguments after the call's block closed");
                }
            }
        }
        self.advance(out);
    }

    /// Starts waiting tool calls, in order, while the open block may be closed: it is not a
    /// tool call, or its arguments are complete.
    fn advance(&mut self, out: &mut Vec<u8>) {
        while let Some(next) = self
            .calls
            .iter()
            .position(|c| c.state == CallState::Waiting)
        {
            if self.calls[next].name.is_empty() {
                break;
            }
            if let Open::Tool(at) = self.open {
                if !self.calls[at].arguments.complete {
                    break;
                }
            }
            self.close_block(out);
            self.start_tool(next, out);
        }
    }

    fn start_tool(&mut self, at: usize, out: &mut Vec<u8>) {
        let block = self.next_index;
        let c = &mut self.calls[at];
        if c.id.is_empty() {
            c.id = tool_use_id();
        }
        write_index(out, BLOCK_START, block);
        out.extend_from_slice(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
        json_str(out, &c.id);
        out.extend_from_slice(b",\"name\":");
        json_str(out, &c.name);
        out.extend_from_slice(b",\"input\":{}}}\n\n");
        if !c.held.is_empty() {
            delta_head(out, block, Open::Tool(at));
            out.push(b'"');
            out.extend_from_slice(&c.held);
            out.extend_from_slice(b"\"}}\n\n");
            c.held = Vec::new();
        }
        c.state = CallState::Open;
        self.open = Open::Tool(at);
        self.next_index += 1;
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open == Open::Nothing {
            return;
        }
        if let Open::Tool(at) = self.open {
            self.calls[at].state = CallState::Closed;
        }
        write_index(out, BLOCK_STOP, self.next_index - 1);
        out.extend_from_slice(b"}\n\n");
        self.open = Open::Nothing;
    }

    /// Closes the open block and sends every waiting tool call whole.
    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close_block(out);
        while let Some(next) = self
            .calls
            .iter()
            .position(|c| c.state == CallState::Waiting)
        {
            self.start_tool(next, out);
            self.close_block(out);
        }
    }

    /// Closes the message: the last block, message_delta and message_stop.
    fn end_message(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(None, out);
        }
        self.close_all(out);
        if self.next_index == 0 {
            // An Anthropic message always has a content block.
            self.open_block(Open::Text, out);
            self.close_block(out);
        }
        out.extend_from_slice(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
        out.extend_from_slice(stop_reason(self.finish_reason, !self.calls.is_empty()).as_bytes());
        out.extend_from_slice(b"\",\"stop_sequence\":null},\"usage\":");
        write_usage(out, self.usage);
        out.extend_from_slice(b"}\n\n");
        out.extend_from_slice(MESSAGE_STOP);
    }
}

#[cfg(test)]
mod tests;
