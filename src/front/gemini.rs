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
    arguments_object, content_text, error_message, invalid, join_line, json_str, literal,
    reasoning_text, request_object, text_in, unescaped, usage_of, Chunk, ToolCallDelta,
};
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

// ---------------------------------------------------------------------------------------
// Request

/// Translates a Gemini `generateContent` body for `model` into a chat completion request.
pub fn request_to_chat(body: &[u8], model: &str, stream: bool) -> Result<ToChat, GatewayError> {
    let mut req = request_object(body)?;
    let contents = match req.remove("contents") {
        None | Some(Value::Null) => return Err(invalid("Missing field `contents`.", "contents")),
        Some(Value::Array(c)) if c.is_empty() => {
            return Err(invalid(
                "`contents` must hold at least one content.",
                "contents",
            ))
        }
        Some(Value::Array(c)) => c,
        Some(_) => return Err(invalid("`contents` must be an array.", "contents")),
    };

    let mut messages = Vec::with_capacity(contents.len() + 1);
    let system = req
        .remove("systemInstruction")
        .or_else(|| req.remove("system_instruction"));
    if let Some(system) = system {
        let text = system_text(system)?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    // The calls of the last model turn not answered yet: (name, id), in order.
    let mut unanswered: Vec<(String, String)> = Vec::new();
    for (i, content) in contents.into_iter().enumerate() {
        push_content(i, content, &mut unanswered, &mut messages)?;
    }

    let mut out = Map::new();
    out.insert("model".into(), model.into());
    out.insert("messages".into(), Value::Array(messages));
    let effort = match req.remove("generationConfig") {
        None | Some(Value::Null) => None,
        Some(Value::Object(config)) => generation_config(config, &mut out)?,
        Some(_) => {
            return Err(invalid(
                "`generationConfig` must be an object.",
                "generationConfig",
            ))
        }
    };
    if stream {
        out.insert("stream".into(), true.into());
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }

    let mut dropped = Vec::new();
    let tools = tools(req.remove("tools"), &mut dropped)?;
    if !tools.is_empty() {
        let choice = tool_choice(req.remove("toolConfig"))?;
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = choice {
            out.insert("tool_choice".into(), choice);
        }
    }
    if let Some(effort) = effort {
        out.insert("reasoning_effort".into(), effort.into());
    }
    if let Some(format) = out.remove("response_format") {
        // Kept last, after the fields a reader looks for first.
        out.insert("response_format".into(), format);
    }

    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| GatewayError::new(ErrorKind::Internal, e.to_string()))?;
    Ok(ToChat { body, dropped })
}

/// The system instruction as one string: a string, or the texts of a content's parts.
fn system_text(system: Value) -> Result<String, GatewayError> {
    let bad = || {
        invalid(
            "`systemInstruction` must be a string or a content with text parts.",
            "systemInstruction",
        )
    };
    match system {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Object(mut c) => {
            let Some(Value::Array(parts)) = c.remove("parts") else {
                return Err(bad());
            };
            let mut text = String::new();
            for p in parts {
                match p.get("text") {
                    Some(Value::String(t)) => join_line(&mut text, t),
                    _ => return Err(bad()),
                }
            }
            Ok(text)
        }
        _ => Err(bad()),
    }
}

/// A piece of a user message.
enum Piece {
    Text(String),
    ImageUrl(String),
}

fn part_error(i: usize, j: usize, what: impl std::fmt::Display) -> GatewayError {
    invalid(format!("`contents[{i}].parts[{j}]`: {what}"), "contents")
}

/// The string field `key` of a part's object `kind`.
fn string_in(
    (i, j): (usize, usize),
    o: &mut Map<String, Value>,
    kind: &str,
    key: &str,
) -> Result<String, GatewayError> {
    match o.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(part_error(
            i,
            j,
            format_args!("`{kind}` needs a string `{key}`."),
        )),
    }
}

/// The chat messages for Gemini content `i`.
fn push_content(
    i: usize,
    content: Value,
    unanswered: &mut Vec<(String, String)>,
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    let Value::Object(mut content) = content else {
        return Err(invalid(
            format!("`contents[{i}]` must be an object."),
            "contents",
        ));
    };
    let user = match content.get("role").and_then(Value::as_str) {
        None | Some("user" | "" | "function") => true,
        Some("model") => false,
        Some(other) => {
            return Err(invalid(
                format!(
                    "`contents[{i}].role` must be `user` or `model`, not `{}`.",
                    Printable(other)
                ),
                "contents",
            ))
        }
    };
    let parts = match content.remove("parts") {
        Some(Value::Array(parts)) => parts,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(invalid(
                format!("`contents[{i}].parts` must be an array."),
                "contents",
            ))
        }
    };
    if user {
        user_content(i, parts, unanswered, out)
    } else {
        model_content(i, parts, unanswered, out)
    }
}

/// A part as an object, and whether it is a thought.
fn part_object(i: usize, j: usize, part: Value) -> Result<Map<String, Value>, GatewayError> {
    match part {
        Value::Object(p) => Ok(p),
        _ => Err(part_error(i, j, "a part must be an object.")),
    }
}

fn is_thought(p: &Map<String, Value>) -> bool {
    p.get("thought") == Some(&Value::Bool(true))
}

/// The part's kinds this front door refuses: code execution has no chat equivalent.
fn unsupported_part(i: usize, j: usize, p: &Map<String, Value>) -> GatewayError {
    let kind = p
        .keys()
        .find(|k| !matches!(k.as_str(), "thought" | "thoughtSignature" | "videoMetadata"))
        .map_or("empty", String::as_str);
    part_error(
        i,
        j,
        format_args!(
            "parts of kind `{}` cannot be sent to this model.",
            Printable(kind)
        ),
    )
}

fn user_content(
    i: usize,
    parts: Vec<Value>,
    unanswered: &mut Vec<(String, String)>,
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    let mut pieces = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let mut p = part_object(i, j, part)?;
        if let Some(text) = p.remove("text") {
            match text {
                Value::String(t) if !is_thought(&p) => pieces.push(Piece::Text(t)),
                Value::String(_) => {}
                _ => return Err(part_error(i, j, "`text` must be a string.")),
            }
        } else if let Some(data) = p.remove("inlineData") {
            let Value::Object(mut data) = data else {
                return Err(part_error(i, j, "`inlineData` must be an object."));
            };
            let mime = string_in((i, j), &mut data, "inlineData", "mimeType")?;
            if !mime.starts_with("image/") {
                return Err(part_error(
                    i,
                    j,
                    format_args!(
                        "only images can be sent to this model, not `{}` data.",
                        Printable(&mime)
                    ),
                ));
            }
            let data = string_in((i, j), &mut data, "inlineData", "data")?;
            pieces.push(Piece::ImageUrl(format!("data:{mime};base64,{data}")));
        } else if let Some(file) = p.remove("fileData") {
            let Value::Object(mut file) = file else {
                return Err(part_error(i, j, "`fileData` must be an object."));
            };
            let mime = match file.remove("mimeType") {
                Some(Value::String(m)) => m,
                _ => String::new(),
            };
            if !mime.starts_with("image/") {
                return Err(part_error(
                    i,
                    j,
                    format_args!(
                        "only image files can be sent to this model, not `{}`.",
                        Printable(if mime.is_empty() {
                            "(no mimeType)"
                        } else {
                            &mime
                        })
                    ),
                ));
            }
            pieces.push(Piece::ImageUrl(string_in(
                (i, j),
                &mut file,
                "fileData",
                "fileUri",
            )?));
        } else if let Some(response) = p.remove("functionResponse") {
            let Value::Object(mut r) = response else {
                return Err(part_error(i, j, "`functionResponse` must be an object."));
            };
            let name = string_in((i, j), &mut r, "functionResponse", "name")?;
            let id = match r.remove("id") {
                Some(Value::String(id)) if !id.is_empty() => {
                    if let Some(at) = unanswered.iter().position(|(_, c)| *c == id) {
                        unanswered.remove(at);
                    }
                    id
                }
                _ => match unanswered.iter().position(|(n, _)| *n == name) {
                    Some(at) => unanswered.remove(at).1,
                    None => {
                        return Err(part_error(
                            i,
                            j,
                            format_args!(
                                "this `functionResponse` for `{}` answers no `functionCall` of the preceding model turn.",
                                Printable(&name)
                            ),
                        ))
                    }
                },
            };
            let content = response_text(r.remove("response"));
            out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
        } else if p.contains_key("functionCall") {
            return Err(part_error(
                i,
                j,
                "a `functionCall` belongs in a `model` turn.",
            ));
        } else if p.keys().all(|k| k == "thought" || k == "thoughtSignature") {
            // A bare signature: it belongs to the Gemini backend that produced it.
        } else {
            return Err(unsupported_part(i, j, &p));
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

/// A function's result as tool message content: X for `{"content": X}` or `{"output": X}`
/// with X a string, else the JSON.
fn response_text(response: Option<Value>) -> String {
    match response {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(o))
            if o.len() == 1
                && matches!(
                    o.iter().next(),
                    Some((k, Value::String(_))) if k == "content" || k == "output"
                ) =>
        {
            match o.into_iter().next().map(|(_, v)| v) {
                Some(Value::String(s)) => s,
                _ => String::new(),
            }
        }
        Some(v) => v.to_string(),
    }
}

fn model_content(
    i: usize,
    parts: Vec<Value>,
    unanswered: &mut Vec<(String, String)>,
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    unanswered.clear();
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, part) in parts.into_iter().enumerate() {
        let mut p = part_object(i, j, part)?;
        if let Some(t) = p.remove("text") {
            match t {
                Value::String(t) if !is_thought(&p) => join_line(&mut text, &t),
                Value::String(_) => {}
                _ => return Err(part_error(i, j, "`text` must be a string.")),
            }
        } else if let Some(call) = p.remove("functionCall") {
            let Value::Object(mut call) = call else {
                return Err(part_error(i, j, "`functionCall` must be an object."));
            };
            let name = string_in((i, j), &mut call, "functionCall", "name")?;
            let id = match call.remove("id") {
                Some(Value::String(id)) if !id.is_empty() => id,
                _ => format!("call_{i}_{j}"),
            };
            let arguments = match call.remove("args") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(args) => args.to_string(),
            };
            unanswered.push((name.clone(), id.clone()));
            calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }));
        } else if p.keys().all(|k| k == "thought" || k == "thoughtSignature") {
        } else if p.contains_key("functionResponse") {
            return Err(part_error(
                i,
                j,
                "a `functionResponse` belongs in a `user` turn.",
            ));
        } else if p.contains_key("inlineData") || p.contains_key("fileData") {
            return Err(part_error(
                i,
                j,
                "a `model` turn can only hold text and function calls for this model.",
            ));
        } else {
            return Err(unsupported_part(i, j, &p));
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

/// An OpenAPI schema (Gemini's `parameters`, `responseSchema`) as JSON Schema: `type`
/// values lower-cased ("OBJECT" → "object"), in every subschema.
pub fn json_schema(v: Value) -> Value {
    let Value::Object(o) = v else {
        return v;
    };
    let o = o
        .into_iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("type", Value::String(t)) => Value::String(t.to_ascii_lowercase()),
                ("type", Value::Array(ts)) => Value::Array(
                    ts.into_iter()
                        .map(|t| match t {
                            Value::String(t) => Value::String(t.to_ascii_lowercase()),
                            t => t,
                        })
                        .collect(),
                ),
                // Maps of subschemas: the names are data.
                ("properties" | "$defs" | "definitions", Value::Object(props)) => Value::Object(
                    props
                        .into_iter()
                        .map(|(n, s)| (n, json_schema(s)))
                        .collect(),
                ),
                ("items" | "additionalProperties" | "not", s) => json_schema(s),
                ("anyOf" | "oneOf" | "allOf" | "prefixItems", Value::Array(list)) => {
                    Value::Array(list.into_iter().map(json_schema).collect())
                }
                (_, v) => v,
            };
            (k, v)
        })
        .collect();
    Value::Object(o)
}

/// The function declarations as chat function tools; other Gemini tools go to `dropped`.
fn tools(v: Option<Value>, dropped: &mut Vec<String>) -> Result<Vec<Value>, GatewayError> {
    let tools = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(invalid("`tools` must be an array.", "tools")),
    };
    let mut out = Vec::new();
    for tool in tools {
        let Value::Object(tool) = tool else {
            return Err(invalid("Every tool must be an object.", "tools"));
        };
        for (kind, v) in tool {
            if kind != "functionDeclarations" && kind != "function_declarations" {
                dropped.push(kind);
                continue;
            }
            let Value::Array(declarations) = v else {
                return Err(invalid("`functionDeclarations` must be an array.", "tools"));
            };
            for d in declarations {
                out.push(function_tool(d)?);
            }
        }
    }
    Ok(out)
}

fn function_tool(d: Value) -> Result<Value, GatewayError> {
    let Value::Object(mut d) = d else {
        return Err(invalid(
            "Every function declaration must be an object.",
            "tools",
        ));
    };
    let Some(Value::String(name)) = d.remove("name") else {
        return Err(invalid(
            "Every function declaration needs a string `name`.",
            "tools",
        ));
    };
    let mut function = Map::new();
    function.insert("name".into(), name.into());
    if let Some(desc @ Value::String(_)) = d.remove("description") {
        function.insert("description".into(), desc);
    }
    let parameters = match (d.remove("parametersJsonSchema"), d.remove("parameters")) {
        (Some(schema @ Value::Object(_)), _) => schema,
        (_, Some(schema @ Value::Object(_))) => json_schema(schema),
        _ => json!({"type": "object", "properties": {}}),
    };
    function.insert("parameters".into(), parameters);
    Ok(json!({"type": "function", "function": function}))
}

/// The chat `tool_choice` for `toolConfig.functionCallingConfig`.
fn tool_choice(config: Option<Value>) -> Result<Option<Value>, GatewayError> {
    let config = match config {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(c)) => c,
        Some(_) => return Err(invalid("`toolConfig` must be an object.", "toolConfig")),
    };
    let Some(Value::Object(f)) = config.get("functionCallingConfig") else {
        return Ok(None);
    };
    let allowed = f
        .get("allowedFunctionNames")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    Ok(match f.get("mode").and_then(Value::as_str) {
        Some("AUTO" | "VALIDATED") => Some("auto".into()),
        Some("NONE") => Some("none".into()),
        Some("ANY") => Some(match allowed {
            [Value::String(name)] => json!({"type": "function", "function": {"name": name}}),
            _ => "required".into(),
        }),
        None | Some("MODE_UNSPECIFIED") => None,
        Some(other) => {
            return Err(invalid(
                format!(
                    "`toolConfig.functionCallingConfig.mode` must be AUTO, ANY, NONE or VALIDATED, not `{}`.",
                    Printable(other)
                ),
                "toolConfig",
            ))
        }
    })
}

/// Copies `generationConfig` into the chat request; returns the `reasoning_effort`.
fn generation_config(
    mut c: Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<Option<&'static str>, GatewayError> {
    const P: &str = "generationConfig";
    let number = |c: &mut Map<String, Value>, key: &str| match c.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(_)) => Ok(Some(v)),
        Some(_) => Err(invalid(
            format!("`generationConfig.{key}` must be a number."),
            P,
        )),
    };
    if let Some(n) = number(&mut c, "candidateCount")? {
        if n.as_f64().is_some_and(|n| n > 1.0) {
            return Err(invalid(
                "`generationConfig.candidateCount` above 1 is not supported for this model.",
                P,
            ));
        }
    }
    if let Some(n) = number(&mut c, "maxOutputTokens")? {
        if n.as_u64().is_none_or(|n| n == 0) {
            return Err(invalid(
                "`generationConfig.maxOutputTokens` must be a positive integer.",
                P,
            ));
        }
        out.insert("max_tokens".into(), n);
    }
    for (gemini, chat) in [
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("seed", "seed"),
        ("presencePenalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty"),
    ] {
        if let Some(n) = number(&mut c, gemini)? {
            out.insert(chat.into(), n);
        }
    }
    match c.remove("stopSequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            if !stops.is_empty() {
                out.insert("stop".into(), Value::Array(stops));
            }
        }
        Some(_) => {
            return Err(invalid(
                "`generationConfig.stopSequences` must be an array of strings.",
                P,
            ))
        }
    }
    let json_mime = match c.remove("responseMimeType") {
        None | Some(Value::Null) => false,
        Some(Value::String(m)) => m == "application/json",
        Some(_) => {
            return Err(invalid(
                "`generationConfig.responseMimeType` must be a string.",
                P,
            ))
        }
    };
    let schema = match (c.remove("responseJsonSchema"), c.remove("responseSchema")) {
        (Some(s @ Value::Object(_)), _) => Some(s),
        (_, Some(s @ Value::Object(_))) => Some(json_schema(s)),
        _ => None,
    };
    match schema {
        Some(schema) => {
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}),
            );
        }
        None if json_mime => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        None => {}
    }
    // topK, responseModalities, mediaResolution … have no chat equivalent.
    let Some(Value::Object(thinking)) = c.remove("thinkingConfig") else {
        return Ok(None);
    };
    if let Some(level) = thinking.get("thinkingLevel").and_then(Value::as_str) {
        return Ok(match level.to_ascii_lowercase().as_str() {
            "minimal" => Some("minimal"),
            "low" => Some("low"),
            "medium" => Some("medium"),
            "high" => Some("high"),
            _ => None,
        });
    }
    Ok(
        match thinking.get("thinkingBudget").and_then(Value::as_i64) {
            None | Some(0) => None,
            Some(b) if b < 0 => Some("medium"),
            Some(b) if b < 4096 => Some("low"),
            Some(b) if b < 16384 => Some("medium"),
            Some(_) => Some("high"),
        },
    )
}

// ---------------------------------------------------------------------------------------
// Whole response

/// Gemini's `finishReason` for a chat `finish_reason`.
fn finish_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("length") => "MAX_TOKENS",
        Some("content_filter") => "SAFETY",
        _ => "STOP",
    }
}

/// Gemini's `usageMetadata`, keys in Gemini's order.
fn usage_metadata(u: &Usage) -> Value {
    let reasoning = u.reasoning_tokens.min(u.output_tokens);
    let mut m = Map::new();
    m.insert("promptTokenCount".into(), u.input_tokens.into());
    m.insert(
        "candidatesTokenCount".into(),
        (u.output_tokens - reasoning).into(),
    );
    m.insert(
        "totalTokenCount".into(),
        (u.input_tokens + u.output_tokens).into(),
    );
    if u.cached_input_tokens > 0 {
        m.insert(
            "cachedContentTokenCount".into(),
            u.cached_input_tokens.into(),
        );
    }
    if reasoning > 0 {
        m.insert("thoughtsTokenCount".into(), reasoning.into());
    }
    Value::Object(m)
}

/// The `responseId` for a chat completion id (a random one when there is none).
fn response_id(chat_id: Option<&str>) -> String {
    match chat_id.filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => format!("{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..)),
    }
}

/// A call id for a tool call that came without one.
fn call_id() -> String {
    format!("call_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

/// Translates a `chat.completion` body into a Gemini `GenerateContentResponse`.
pub fn response_from_chat(body: &[u8], model: &str) -> Result<Vec<u8>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let choice = v["choices"].get(0).ok_or("no `choices`")?;
    let message = &choice["message"];
    let mut parts = Vec::new();
    if let Some(r) = reasoning_text(message) {
        parts.push(json!({"text": r, "thought": true}));
    }
    let text = content_text(&message["content"])
        .or_else(|| text_in(&message["refusal"]).map(str::to_string))
        .unwrap_or_default();
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let f = &call["function"];
        let args = arguments_object(f);
        let id = text_in(&call["id"]).map_or_else(call_id, str::to_string);
        parts.push(json!({"functionCall": {
            "id": id,
            "name": f["name"].as_str().unwrap_or(""),
            "args": args,
        }}));
    }
    if parts.is_empty() {
        parts.push(json!({"text": ""}));
    }
    let mut out = Map::new();
    out.insert(
        "candidates".into(),
        json!([{
            "content": {"parts": parts, "role": "model"},
            "finishReason": finish_reason(choice["finish_reason"].as_str()),
            "index": 0,
        }]),
    );
    if v["usage"].is_object() {
        if let Some(u) = usage_of(&v) {
            out.insert("usageMetadata".into(), usage_metadata(&u));
        }
    }
    out.insert("modelVersion".into(), model.into());
    out.insert("responseId".into(), response_id(v["id"].as_str()).into());
    serde_json::to_vec(&Value::Object(out)).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Errors

/// Google's canonical status name for an HTTP status.
pub fn google_status(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 | 529 => "UNAVAILABLE",
        408 | 504 => "DEADLINE_EXCEEDED",
        400..=499 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

/// A Google error body: `{"error":{"code":..,"message":..,"status":..}}`.
pub fn error_body(status: u16, message: &str) -> Bytes {
    let body = json!({"error": {
        "code": status,
        "message": message,
        "status": google_status(status),
    }});
    serde_json::to_vec(&body)
        .unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
        .into()
}

/// The HTTP status and message for an OpenAI error object (or a bare message).
fn error_of(error: &Value) -> (u16, &str) {
    let message = error_message(error);
    let kind = error["type"].as_str().unwrap_or("");
    let code = error["code"].as_str().unwrap_or("");
    let status = match (kind, code) {
        ("rate_limit_error", _) | (_, "rate_limit_exceeded" | "insufficient_quota") => 429,
        ("overloaded" | "overloaded_error", _) | (_, "overloaded" | "server_overloaded") => 503,
        ("invalid_request_error", _) => 400,
        ("authentication_error", _) => 401,
        ("permission_error", _) => 403,
        ("not_found_error", _) => 404,
        ("upstream_error", _) | (_, "upstream_error") => 502,
        (_, "timeout" | "upstream_timeout") => 504,
        _ => error["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c))
            .unwrap_or(500),
    };
    (status, message)
}

// ---------------------------------------------------------------------------------------
// Streams

const EVENT_HEAD: &[u8] = b"data: {\"candidates\":[{\"content\":{\"parts\":[";
const PARTS_END: &[u8] = b"],\"role\":\"model\"}";

/// Turns a chat chunk stream (SSE bytes, split anywhere) into Gemini's SSE stream. `finish`
/// leaves a cut stream (no `[DONE]`, no `finish_reason`) open for the caller's error event;
/// `done`: the final event or an error event was sent. Its usage is the upstream's (OpenAI's
/// sense: output includes reasoning).
pub type StreamEncoder = Translated<Encoder>;

impl StreamEncoder {
    /// `model`: the model the client asked for, as `modelVersion` names it.
    pub fn new(model: &str) -> Self {
        Translated::with_state(Encoder {
            model: model.to_string(),
            tail: Vec::new(),
            parts: Vec::with_capacity(256),
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
        })
    }
}

/// One chat tool call (one `index`), gathered until it is sent whole.
struct Call {
    index: u32,
    id: String,
    name: String,
    /// The arguments' JSON text so far.
    arguments: String,
    sent: bool,
}

/// What the stream has told so far.
pub struct Encoder {
    model: String,
    /// `,"modelVersion":..,"responseId":..}` and the event's end, once the id is known.
    tail: Vec<u8>,
    /// The parts of the event being built, comma-separated.
    parts: Vec<u8>,
    calls: Vec<Call>,
    /// Gemini's finishReason, once a finish_reason came.
    finish_reason: Option<&'static str>,
    usage: Option<Usage>,
}

impl Events for Encoder {
    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        if data == b"[DONE]" {
            self.end_stream(out);
            return true;
        }
        let chunk = serde_json::from_slice::<Chunk<'_>>(data).and_then(arguments_are_strings);
        let chunk = match chunk {
            Ok(c) => c,
            // The unterminated last event of a cut stream: the caller reports the cut.
            Err(_) if at_end => return false,
            Err(_) => {
                error_event(
                    out,
                    502,
                    "The upstream sent an event that is not valid JSON.",
                );
                return true;
            }
        };
        if let Some(e) = &chunk.error {
            let (status, message) = error_of(e);
            error_event(out, status, message);
            return true;
        }
        if self.tail.is_empty() {
            self.set_tail(chunk.id.as_deref());
        }
        self.parts.clear();
        if let Some(choice) = chunk.choices.0 {
            if let Some(d) = choice.delta {
                let reasoning = literal(d.reasoning_content).or(literal(d.reasoning));
                let text = literal(d.content).or(literal(d.refusal));
                if reasoning.is_some() || text.is_some() {
                    self.send_calls(false);
                }
                if let Some(lit) = reasoning {
                    self.part_start();
                    self.parts.extend_from_slice(b"{\"text\":");
                    self.parts.extend_from_slice(lit);
                    self.parts.extend_from_slice(b",\"thought\":true}");
                }
                if let Some(lit) = text {
                    self.part_start();
                    self.parts.extend_from_slice(b"{\"text\":");
                    self.parts.extend_from_slice(lit);
                    self.parts.push(b'}');
                }
                for (position, call) in d.tool_calls.into_iter().flatten().enumerate() {
                    self.tool_delta(call, position as u32);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(finish_reason(Some(&reason)));
                // Nothing follows: let the client act on the calls now.
                self.send_calls(true);
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
        }
        if !self.parts.is_empty() {
            self.write_event(out, None);
        }
        false
    }

    /// A stream that finished but lost its `[DONE]` is ended; a cut one is not.
    fn end(&mut self, out: &mut Vec<u8>) -> bool {
        if self.finish_reason.is_none() {
            return false;
        }
        self.end_stream(out);
        true
    }
}

impl Encoder {
    fn set_tail(&mut self, chat_id: Option<&str>) {
        self.tail.extend_from_slice(b",\"modelVersion\":");
        json_str(&mut self.tail, &self.model);
        self.tail.extend_from_slice(b",\"responseId\":");
        json_str(&mut self.tail, &response_id(chat_id));
        self.tail.extend_from_slice(b"}\r\n\r\n");
    }

    fn part_start(&mut self) {
        if !self.parts.is_empty() {
            self.parts.push(b',');
        }
    }

    fn tool_delta(&mut self, call: ToolCallDelta<'_>, position: u32) {
        let index = call.index.unwrap_or(position);
        let at = match self.calls.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                // A new call: the earlier ones whose arguments are complete can go.
                self.send_calls(false);
                self.calls.push(Call {
                    index,
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                    sent: false,
                });
                self.calls.len() - 1
            }
        };
        let c = &mut self.calls[at];
        if c.sent {
            // Only a broken upstream extends a call after its end came.
            tracing::warn!(index, "tool call fragment after the call was sent");
            return;
        }
        if let Some(arguments) = call.fill(&mut c.id, &mut c.name).and_then(unescaped) {
            c.arguments.push_str(&arguments);
        }
    }

    /// Adds the calls not sent yet to the event's parts, as `functionCall` parts: all of
    /// them, or (`all` false) those whose arguments are a complete JSON value.
    fn send_calls(&mut self, all: bool) {
        for at in 0..self.calls.len() {
            let c = &self.calls[at];
            if c.sent {
                continue;
            }
            let complete = serde_json::from_str::<IgnoredAny>(&c.arguments).is_ok();
            if !all && !complete {
                continue;
            }
            let (parts, c) = (&mut self.parts, &mut self.calls[at]);
            let args = Some(c.arguments.trim()).filter(|a| complete && a.starts_with('{'));
            c.sent = true;
            if c.name.is_empty() {
                tracing::warn!(index = c.index, "tool call without a name");
                continue;
            }
            if c.id.is_empty() {
                c.id = call_id();
            }
            if !parts.is_empty() {
                parts.push(b',');
            }
            parts.extend_from_slice(b"{\"functionCall\":{\"id\":");
            json_str(parts, &c.id);
            parts.extend_from_slice(b",\"name\":");
            json_str(parts, &c.name);
            parts.extend_from_slice(b",\"args\":");
            match args {
                Some(a) => parts.extend_from_slice(a.as_bytes()),
                None => parts.extend_from_slice(b"{}"),
            }
            parts.extend_from_slice(b"}}");
        }
    }

    /// One event with the parts gathered, and the final fields when `finish` is given.
    fn write_event(&mut self, out: &mut Vec<u8>, finish: Option<&str>) {
        if self.tail.is_empty() {
            self.set_tail(None);
        }
        out.extend_from_slice(EVENT_HEAD);
        out.extend_from_slice(&self.parts);
        out.extend_from_slice(PARTS_END);
        if let Some(reason) = finish {
            out.extend_from_slice(b",\"finishReason\":\"");
            out.extend_from_slice(reason.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"index\":0}]");
        if finish.is_some() {
            if let Some(u) = &self.usage {
                out.extend_from_slice(b",\"usageMetadata\":");
                let _ = serde_json::to_writer(&mut *out, &usage_metadata(u));
            }
        }
        out.extend_from_slice(&self.tail);
        self.parts.clear();
    }

    /// The final event: the calls still held, `finishReason` and `usageMetadata`.
    fn end_stream(&mut self, out: &mut Vec<u8>) {
        self.parts.clear();
        self.send_calls(true);
        if self.parts.is_empty() {
            self.parts.extend_from_slice(b"{\"text\":\"\"}");
        }
        let reason = self.finish_reason.unwrap_or("STOP");
        self.write_event(out, Some(reason));
    }
}

/// The chunk, or an error when a tool call's `arguments` are not a string (the chunk is then
/// not one this door can read).
fn arguments_are_strings(chunk: Chunk<'_>) -> Result<Chunk<'_>, serde_json::Error> {
    let calls = chunk.choices.0.as_ref().and_then(|c| c.delta.as_ref());
    let calls = calls.and_then(|d| d.tool_calls.as_deref()).unwrap_or(&[]);
    let functions = calls.iter().filter_map(|c| c.function.as_ref());
    if functions
        .filter_map(|f| f.arguments)
        .any(|a| !a.get().starts_with('"'))
    {
        return Err(serde::de::Error::custom("`arguments` is not a string"));
    }
    Ok(chunk)
}

/// A Google error object event.
fn error_event(out: &mut Vec<u8>, status: u16, message: &str) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&error_body(status, message));
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests;
