//! The OpenAI Responses front door (`POST /v1/responses`, stateless) for upstreams that speak
//! chat completions: the request as a chat completion, and the chat answer (whole body or
//! chunk stream) as a Responses `response` object or the Responses event stream.
//!
//! Decisions:
//! - Stateless: `previous_response_id`, `conversation`, `prompt`, `item_reference` items and
//!   `background: true` are refused (400); clients send the full input with `store: false`.
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
    content_text, error_message, finish_of, inside, invalid, join_line, json_str, reasoning_text,
    request_object, text_in, usage_of, Chunk, ToolCallDelta,
};
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
    name: String,
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

// ---------------------------------------------------------------------------------------
// Request

const STATELESS: &str =
    "Junction's Responses API is stateless; send the full input with store: false.";

/// Translates a Responses request body into a chat completion request.
pub fn request_to_chat(body: &[u8]) -> Result<ToChat, GatewayError> {
    let mut req = request_object(body)?;
    let model = match req.remove("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        None | Some(Value::Null) => return Err(invalid("Missing field `model`.", "model")),
        Some(_) => return Err(invalid("`model` must be a non-empty string.", "model")),
    };
    for (key, what) in [
        (
            "previous_response_id",
            "previous_response_id is not supported",
        ),
        ("conversation", "conversation is not supported"),
        (
            "prompt",
            "Stored prompt templates (`prompt`) are not supported",
        ),
    ] {
        if req.get(key).is_some_and(|v| !v.is_null()) {
            return Err(invalid(format!("{what}: {STATELESS}"), key));
        }
    }
    match req.remove("background") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            return Err(invalid(
                format!("background responses are not supported: {STATELESS}"),
                "background",
            ))
        }
        Some(_) => return Err(invalid("`background` must be a boolean.", "background")),
    }
    let instructions = match req.remove("instructions") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(invalid("`instructions` must be a string.", "instructions")),
    };

    let mut messages = Vec::new();
    if let Some(text) = instructions.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": text}));
    }
    match req.remove("input") {
        None | Some(Value::Null) if instructions.is_none() => {
            return Err(invalid("Missing field `input`.", "input"))
        }
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            messages.reserve(items.len());
            for (i, item) in items.into_iter().enumerate() {
                push_item(i, item, &mut messages)?;
            }
        }
        Some(_) => {
            return Err(invalid(
                "`input` must be a string or an array of input items.",
                "input",
            ))
        }
    }
    if messages.is_empty() {
        return Err(invalid(
            "`input` holds no message to answer (and there are no `instructions`).",
            "input",
        ));
    }

    let mut out = Map::new();
    out.insert("model".into(), model.clone().into());
    out.insert("messages".into(), Value::Array(messages));
    let mut echo = Map::new();
    echo.insert(
        "instructions".into(),
        instructions.map_or(Value::Null, Value::String),
    );

    match req.remove("max_output_tokens") {
        None | Some(Value::Null) => {
            echo.insert("max_output_tokens".into(), Value::Null);
        }
        Some(v) => {
            let n = v.as_u64().filter(|&n| n > 0).ok_or_else(|| {
                invalid(
                    "`max_output_tokens` must be a positive integer.",
                    "max_output_tokens",
                )
            })?;
            out.insert("max_tokens".into(), n.into());
            echo.insert("max_output_tokens".into(), n.into());
        }
    }
    for key in ["temperature", "top_p"] {
        match req.remove(key) {
            None | Some(Value::Null) => {
                echo.insert(key.into(), Value::Null);
            }
            Some(v @ Value::Number(_)) => {
                out.insert(key.into(), v.clone());
                echo.insert(key.into(), v);
            }
            Some(_) => return Err(invalid(format!("`{key}` must be a number."), key)),
        }
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
    let mut user = None;
    for key in ["user", "safety_identifier"] {
        match req.remove(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => user = Some(s),
            Some(_) => return Err(invalid(format!("`{key}` must be a string."), key)),
        }
    }
    if let Some(user) = user {
        out.insert("user".into(), user.into());
    }
    let mut session = None;
    match req.remove("prompt_cache_key") {
        None | Some(Value::Null) => {}
        Some(key @ Value::String(_)) => {
            session = key
                .as_str()
                .filter(|k| !k.is_empty())
                .map(|k| crate::routing::fnv1a(k.as_bytes()));
            out.insert("prompt_cache_key".into(), key.clone());
            echo.insert("prompt_cache_key".into(), key);
        }
        Some(_) => {
            return Err(invalid(
                "`prompt_cache_key` must be a string.",
                "prompt_cache_key",
            ))
        }
    }

    let mut dropped = Vec::new();
    let mut context = Context::default();
    let mut echo_tools = Vec::new();
    let tools = tools(
        req.remove("tools"),
        &mut dropped,
        &mut context.tools,
        &mut echo_tools,
    )?;
    let choice = req.remove("tool_choice").filter(|c| !c.is_null());
    let parallel = match req.remove("parallel_tool_calls") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => {
            return Err(invalid(
                "`parallel_tool_calls` must be a boolean.",
                "parallel_tool_calls",
            ))
        }
    };
    let chat_choice = choice.as_ref().map(tool_choice).transpose()?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(c) = chat_choice {
            out.insert("tool_choice".into(), c);
        }
        if let Some(p) = parallel {
            out.insert("parallel_tool_calls".into(), p.into());
        }
    }
    echo.insert(
        "parallel_tool_calls".into(),
        parallel.unwrap_or(true).into(),
    );
    echo.insert(
        "tool_choice".into(),
        choice.unwrap_or_else(|| "auto".into()),
    );
    echo.insert("tools".into(), Value::Array(echo_tools));

    match req.remove("reasoning") {
        None | Some(Value::Null) => {
            echo.insert("reasoning".into(), Value::Null);
        }
        Some(Value::Object(r)) => {
            match r.get("effort") {
                None | Some(Value::Null) => {}
                Some(Value::String(e)) => {
                    let effort = match e.as_str() {
                        "none" => None,
                        "minimal" => Some("low"),
                        "xhigh" => Some("high"),
                        other => Some(other),
                    };
                    if let Some(effort) = effort {
                        out.insert("reasoning_effort".into(), effort.into());
                    }
                }
                Some(_) => {
                    return Err(invalid("`reasoning.effort` must be a string.", "reasoning"))
                }
            }
            echo.insert("reasoning".into(), Value::Object(r));
        }
        Some(_) => return Err(invalid("`reasoning` must be an object.", "reasoning")),
    }
    match req.remove("text") {
        None | Some(Value::Null) => {
            echo.insert("text".into(), json!({"format": {"type": "text"}}));
        }
        Some(Value::Object(t)) => {
            if let Some(format) = response_format(t.get("format"))? {
                out.insert("response_format".into(), format);
            }
            echo.insert("text".into(), Value::Object(t));
        }
        Some(_) => return Err(invalid("`text` must be an object.", "text")),
    }
    let metadata = match req.remove("metadata") {
        Some(m @ Value::Object(_)) => m,
        _ => json!({}),
    };
    echo.insert("metadata".into(), metadata);

    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| GatewayError::new(ErrorKind::Internal, e.to_string()))?;
    let echo = serde_json::to_string(&Value::Object(echo))
        .map_err(|e| GatewayError::new(ErrorKind::Internal, e.to_string()))?;
    // The members, without the object's braces.
    context.echo = echo[1..echo.len() - 1].to_string();
    Ok(ToChat {
        body,
        model,
        stream,
        dropped,
        context,
        session,
    })
}

/// Takes the string field `key` of input item `i` (of type `kind`).
fn item_string(
    i: usize,
    item: &mut Map<String, Value>,
    kind: &str,
    key: &str,
) -> Result<String, GatewayError> {
    match item.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(invalid(
            format!("`input[{i}]`: a `{kind}` item needs a string `{key}`."),
            "input",
        )),
    }
}

/// The upstream name of a tool the client may have declared in a namespace.
fn upstream_name(name: String, namespace: Option<Value>) -> String {
    match namespace {
        Some(Value::String(ns)) if !ns.is_empty() => format!("{ns}__{name}"),
        _ => name,
    }
}

/// Appends the chat messages for input item `i`.
fn push_item(i: usize, item: Value, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let Value::Object(mut item) = item else {
        return Err(invalid(format!("`input[{i}]` must be an object."), "input"));
    };
    let kind = match item.remove("type") {
        Some(Value::String(kind)) => Cow::Owned(kind),
        None | Some(Value::Null) if item.contains_key("role") => Cow::Borrowed("message"),
        None | Some(Value::Null) if item.contains_key("id") => Cow::Borrowed("item_reference"),
        _ => {
            return Err(invalid(
                format!("`input[{i}]` needs a string `type` (or a `role`)."),
                "input",
            ))
        }
    };
    match &*kind {
        "message" => push_message(i, item, out),
        "function_call" => {
            let call_id = item_string(i, &mut item, &kind, "call_id")?;
            let name = item_string(i, &mut item, &kind, "name")?;
            let arguments = match item.remove("arguments") {
                Some(Value::String(a)) => a,
                None | Some(Value::Null) => "{}".to_string(),
                Some(other) => other.to_string(),
            };
            let name = upstream_name(name, item.remove("namespace"));
            push_call(call_id, name, arguments, out);
            Ok(())
        }
        "custom_tool_call" => {
            let call_id = item_string(i, &mut item, &kind, "call_id")?;
            let name = item_string(i, &mut item, &kind, "name")?;
            let input = item_string(i, &mut item, &kind, "input")?;
            let name = upstream_name(name, item.remove("namespace"));
            push_call(call_id, name, json!({ "input": input }).to_string(), out);
            Ok(())
        }
        "function_call_output" | "custom_tool_call_output" => {
            let call_id = item_string(i, &mut item, &kind, "call_id")?;
            let content = match item.remove("output") {
                Some(Value::String(s)) => s,
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for part in &parts {
                        match part["type"].as_str() {
                            Some("input_text" | "output_text" | "text") => {
                                join_line(&mut text, part["text"].as_str().unwrap_or(""))
                            }
                            Some("input_image") => join_line(&mut text, "[image]"),
                            Some("input_file") => join_line(&mut text, "[file]"),
                            _ => {
                                return Err(invalid(
                                    format!("`input[{i}].output` must hold `input_text`, `input_image` or `input_file` parts."),
                                    "input",
                                ))
                            }
                        }
                    }
                    text
                }
                _ => {
                    return Err(invalid(
                        format!("`input[{i}]`: a `{kind}` item needs an `output` string or an array of content parts."),
                        "input",
                    ))
                }
            };
            out.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
            Ok(())
        }
        // Opaque to every other backend (encrypted_content), and chat has no field for it.
        "reasoning" => Ok(()),
        "item_reference" => Err(invalid(
            format!("`input[{i}]`: item_reference is not supported: {STATELESS}"),
            "input",
        )),
        other => Err(invalid(
            format!(
                "`input[{i}]`: input items of type `{}` are not supported by this gateway.",
                Printable(other)
            ),
            "input",
        )),
    }
}

/// Adds a tool call to the assistant message the history ends with, or to a new one.
fn push_call(id: String, name: String, arguments: String, out: &mut Vec<Value>) {
    let call = json!({
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    });
    if let Some(Value::Object(last)) = out.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some("assistant") {
            match last.get_mut("tool_calls") {
                Some(Value::Array(calls)) => calls.push(call),
                _ => {
                    last.insert("tool_calls".into(), Value::Array(vec![call]));
                }
            }
            return;
        }
    }
    out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
}

/// A piece of a message.
enum Piece {
    Text(String),
    Image(Value),
}

fn push_message(
    i: usize,
    mut item: Map<String, Value>,
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "system" | "developer" | "assistant")) => r.to_string(),
        Some(other) => {
            return Err(invalid(
                format!(
                    "`input[{i}].role` must be user, assistant, system or developer, not `{}`.",
                    Printable(other)
                ),
                "input",
            ))
        }
        None => {
            return Err(invalid(
                format!("`input[{i}]`: a message needs a string `role`."),
                "input",
            ))
        }
    };
    let parts = match item.remove("content") {
        Some(Value::String(text)) => {
            if role != "assistant" || !text.is_empty() {
                out.push(json!({"role": role, "content": text}));
            }
            return Ok(());
        }
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(invalid(
                format!("`input[{i}].content` must be a string or an array of content parts."),
                "input",
            ))
        }
    };
    let mut pieces = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let Value::Object(mut p) = part else {
            return Err(invalid(
                format!("`input[{i}].content[{j}]` must be an object."),
                "input",
            ));
        };
        let bad = |what: &str| invalid(format!("`input[{i}].content[{j}]`: {what}"), "input");
        let kind = p.remove("type");
        match kind.as_ref().and_then(Value::as_str) {
            Some(k @ ("input_text" | "output_text")) => match p.remove("text") {
                Some(Value::String(t)) => pieces.push(Piece::Text(t)),
                _ => return Err(bad(&format!("an `{k}` part needs a string `text`."))),
            },
            Some("refusal") => match p.remove("refusal") {
                Some(Value::String(t)) => pieces.push(Piece::Text(t)),
                _ => return Err(bad("a `refusal` part needs a string `refusal`.")),
            },
            Some("input_image") => {
                if role != "user" {
                    return Err(bad("images can only be sent in user messages."));
                }
                let url = match (p.remove("image_url"), p.get("file_id")) {
                    (Some(Value::String(url)), _) => url,
                    (_, Some(Value::String(_))) => return Err(bad(
                        "images given by `file_id` are not supported (Junction keeps no files); send an `image_url` (a URL or a data URL).",
                    )),
                    _ => return Err(bad("an `input_image` part needs a string `image_url`.")),
                };
                let mut image = Map::new();
                image.insert("url".into(), url.into());
                if let Some(d @ Value::String(_)) = p.remove("detail") {
                    if matches!(d.as_str(), Some("low" | "high" | "auto")) {
                        image.insert("detail".into(), d);
                    }
                }
                pieces.push(Piece::Image(Value::Object(image)));
            }
            Some("input_file") => return Err(bad(
                "`input_file` parts are not supported by this gateway; send the file's text as `input_text`.",
            )),
            Some(other) => {
                return Err(bad(&format!(
                    "content parts of type `{}` are not supported.",
                    Printable(other)
                )))
            }
            None => return Err(bad("every content part needs a string `type`.")),
        }
    }
    let content = if pieces.iter().any(|p| matches!(p, Piece::Image(_))) {
        let parts = pieces.into_iter().map(|p| match p {
            Piece::Text(text) => json!({"type": "text", "text": text}),
            Piece::Image(image) => json!({"type": "image_url", "image_url": image}),
        });
        Value::Array(parts.collect())
    } else {
        let mut text = String::new();
        for p in &pieces {
            if let Piece::Text(t) = p {
                join_line(&mut text, t);
            }
        }
        if role == "assistant" && text.is_empty() {
            return Ok(());
        }
        Value::String(text)
    };
    out.push(json!({"role": role, "content": content}));
    Ok(())
}

/// Parameters of a custom (freeform) tool, as a function upstream.
fn custom_parameters() -> Value {
    json!({"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]})
}

/// The chat tools; built-in tools go to `dropped`; custom and namespaced ones to `renamed`;
/// the tools kept, as the client declared them, to `echo`.
fn tools(
    v: Option<Value>,
    dropped: &mut Vec<String>,
    renamed: &mut Vec<Renamed>,
    echo: &mut Vec<Value>,
) -> Result<Vec<Value>, GatewayError> {
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
        match t.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => out.push(chat_tool(&t, None, renamed)?),
            Some("namespace") => {
                let Some(ns) = t.get("name").and_then(Value::as_str) else {
                    return Err(invalid(
                        "A `namespace` tool needs a string `name`.",
                        "tools",
                    ));
                };
                let Some(inner) = t.get("tools").and_then(Value::as_array) else {
                    return Err(invalid(
                        "A `namespace` tool needs a `tools` array.",
                        "tools",
                    ));
                };
                for inner in inner {
                    let Value::Object(inner) = inner else {
                        return Err(invalid("Every tool must be an object.", "tools"));
                    };
                    match inner.get("type").and_then(Value::as_str) {
                        Some("function" | "custom") => {
                            out.push(chat_tool(inner, Some(ns), renamed)?)
                        }
                        other => dropped.push(format!("{ns}.{}", other.unwrap_or("?"))),
                    }
                }
                // The SDK's NamespaceTool requires a description.
                t.entry("description").or_insert_with(|| "".into());
            }
            Some(builtin) => {
                dropped.push(builtin.to_string());
                continue;
            }
            None => return Err(invalid("Every tool needs a string `type`.", "tools")),
        }
        echo.push(Value::Object(t));
    }
    Ok(out)
}

/// A function or custom tool (in namespace `ns`) as a chat function tool.
fn chat_tool(
    t: &Map<String, Value>,
    ns: Option<&str>,
    renamed: &mut Vec<Renamed>,
) -> Result<Value, GatewayError> {
    let custom = t.get("type").and_then(Value::as_str) == Some("custom");
    let Some(name) = t
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return Err(invalid("Every tool needs a string `name`.", "tools"));
    };
    let upstream = match ns {
        Some(ns) => format!("{ns}__{name}"),
        None => name.to_string(),
    };
    if custom || ns.is_some() {
        renamed.push(Renamed {
            upstream: upstream.clone(),
            name: name.to_string(),
            namespace: ns.map(str::to_string),
            custom,
        });
    }
    let mut function = Map::new();
    function.insert("name".into(), upstream.into());
    let description = t.get("description").and_then(Value::as_str);
    if custom {
        let mut d = description.unwrap_or("").to_string();
        let format = t.get("format");
        if format.and_then(|f| f["type"].as_str()) == Some("grammar") {
            let f = format.unwrap_or(&Value::Null);
            let syntax = f["syntax"].as_str().unwrap_or("lark");
            let definition = f["definition"].as_str().unwrap_or("");
            join_line(
                &mut d,
                &format!("`input` must follow this {syntax} grammar:\n{definition}"),
            );
        }
        if !d.is_empty() {
            function.insert("description".into(), d.into());
        }
        function.insert("parameters".into(), custom_parameters());
    } else {
        if let Some(d) = description {
            function.insert("description".into(), d.into());
        }
        let parameters = match t.get("parameters") {
            Some(schema @ Value::Object(_)) => schema.clone(),
            _ => json!({"type": "object", "properties": {}}),
        };
        function.insert("parameters".into(), parameters);
        if let Some(strict @ Value::Bool(_)) = t.get("strict") {
            function.insert("strict".into(), strict.clone());
        }
    }
    Ok(json!({"type": "function", "function": function}))
}

/// The chat `tool_choice` for the Responses one.
fn tool_choice(choice: &Value) -> Result<Value, GatewayError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(c) => match (c.get("type").and_then(Value::as_str), c.get("name")) {
            (Some("function" | "custom"), Some(Value::String(name))) => {
                Ok(json!({"type": "function", "function": {"name": name}}))
            }
            // allowed_tools, built-in tools, MCP: let the model choose.
            _ => Ok("auto".into()),
        },
        _ => Err(invalid(
            "`tool_choice` must be auto, none, required or a tool choice object.",
            "tool_choice",
        )),
    }
}

/// The chat `response_format` for `text.format`.
fn response_format(format: Option<&Value>) -> Result<Option<Value>, GatewayError> {
    let Some(Value::Object(f)) = format else {
        return Ok(None);
    };
    Ok(match f.get("type").and_then(Value::as_str) {
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "description", "schema", "strict"] {
                if let Some(v) = f.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            if !schema.contains_key("name") {
                return Err(invalid(
                    "`text.format` of type json_schema needs a `name`.",
                    "text",
                ));
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        Some("json_object") => Some(json!({"type": "json_object"})),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// The response object (shared by whole answers and streams)

/// What the response object echoes when the request's settings are unknown.
const DEFAULT_ECHO: &str = "\"instructions\":null,\"max_output_tokens\":null,\"temperature\":null,\"top_p\":null,\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",\"tools\":[],\"reasoning\":null,\"text\":{\"format\":{\"type\":\"text\"}},\"metadata\":{}";

/// The codes `response.failed` may carry (the SDK's `ResponseError.code`).
const ERROR_CODES: &[&str] = &[
    "server_error",
    "rate_limit_exceeded",
    "invalid_prompt",
    "data_residency_mismatch",
    "bio_policy",
    "vector_store_timeout",
    "invalid_image",
    "invalid_image_format",
    "invalid_base64_image",
    "invalid_image_url",
    "image_too_large",
    "image_too_small",
    "image_parse_error",
    "image_content_policy_violation",
    "invalid_image_mode",
    "image_file_too_large",
    "unsupported_image_media_type",
    "empty_image_file",
    "failed_to_download_image",
    "image_file_not_found",
];

/// A Responses error code: `code` when the protocol knows it, else one for the error type.
fn error_code(code: &str, kind: &str) -> &'static str {
    if let Some(known) = ERROR_CODES.iter().find(|c| **c == code) {
        return known;
    }
    match (kind, code) {
        ("rate_limit_error" | "tokens" | "requests", _)
        | (_, "rate_limit" | "insufficient_quota") => "rate_limit_exceeded",
        ("invalid_request_error", _) | (_, "context_length_exceeded" | "invalid_request") => {
            "invalid_prompt"
        }
        _ => "server_error",
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Reasoning,
    Message,
    Function,
    Custom,
}

/// A content part of a message item.
struct Part {
    refusal: bool,
    /// The escaped inside of the text's JSON string literal.
    text: Vec<u8>,
}

/// One output item.
struct Item {
    kind: Kind,
    id: String,
    /// Escaped inside of a JSON string literal: the reasoning summary, a function call's
    /// arguments, a custom call's input (its raw arguments while they stream).
    text: Vec<u8>,
    parts: Vec<Part>,
    call_id: String,
    name: String,
    namespace: Option<String>,
    status: &'static str,
    done: bool,
}

impl Item {
    fn new(kind: Kind) -> Item {
        let prefix = match kind {
            Kind::Reasoning => "rs_",
            Kind::Message => "msg_",
            Kind::Function => "fc_",
            Kind::Custom => "ctc_",
        };
        Item {
            kind,
            id: new_id(prefix),
            text: Vec::new(),
            parts: Vec::new(),
            call_id: String::new(),
            name: String::new(),
            namespace: None,
            status: "in_progress",
            done: false,
        }
    }

    /// A tool call item; `upstream`: the function name the upstream called.
    fn call(upstream: &str, call_id: String, context: &Context) -> Item {
        let renamed = context.lookup(upstream);
        let custom = renamed.is_some_and(|r| r.custom);
        let mut item = Item::new(if custom { Kind::Custom } else { Kind::Function });
        item.call_id = call_id;
        match renamed {
            Some(r) => {
                item.name = r.name.clone();
                item.namespace = r.namespace.clone();
            }
            None => item.name = upstream.to_string(),
        }
        item
    }

    /// The item as JSON: as added (nothing yet) or in full.
    fn write(&self, out: &mut Vec<u8>, added: bool) {
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(self.id.as_bytes());
        let status = if added { "in_progress" } else { self.status };
        match self.kind {
            Kind::Reasoning => {
                out.extend_from_slice(b"\",\"type\":\"reasoning\",\"summary\":[");
                if !added && !self.text.is_empty() {
                    out.extend_from_slice(b"{\"type\":\"summary_text\",\"text\":\"");
                    out.extend_from_slice(&self.text);
                    out.extend_from_slice(b"\"}");
                }
                out.extend_from_slice(b"]}");
            }
            Kind::Message => {
                out.extend_from_slice(b"\",\"type\":\"message\",\"status\":\"");
                out.extend_from_slice(status.as_bytes());
                out.extend_from_slice(b"\",\"role\":\"assistant\",\"content\":[");
                if !added {
                    for (n, p) in self.parts.iter().enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        write_part(out, p.refusal, &p.text);
                    }
                }
                out.extend_from_slice(b"]}");
            }
            Kind::Function | Kind::Custom => {
                out.extend_from_slice(if self.kind == Kind::Function {
                    b"\",\"type\":\"function_call\",\"status\":\""
                } else {
                    b"\",\"type\":\"custom_tool_call\",\"status\":\""
                });
                out.extend_from_slice(status.as_bytes());
                out.extend_from_slice(b"\",\"call_id\":");
                json_str(out, &self.call_id);
                out.extend_from_slice(b",\"name\":");
                json_str(out, &self.name);
                if let Some(ns) = &self.namespace {
                    out.extend_from_slice(b",\"namespace\":");
                    json_str(out, ns);
                }
                out.extend_from_slice(if self.kind == Kind::Function {
                    b",\"arguments\":\""
                } else {
                    b",\"input\":\""
                });
                if !added {
                    out.extend_from_slice(&self.text);
                }
                out.extend_from_slice(b"\"}");
            }
        }
    }
}

/// An `output_text` or `refusal` content part, `text` the escaped inside of its literal.
fn write_part(out: &mut Vec<u8>, refusal: bool, text: &[u8]) {
    out.extend_from_slice(if refusal {
        b"{\"type\":\"refusal\",\"refusal\":\""
    } else {
        b"{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":\""
    });
    out.extend_from_slice(text);
    out.extend_from_slice(b"\"}");
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The escaped inside of `s`'s JSON string literal.
fn escaped(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    json_str(&mut out, s);
    out.pop();
    out.remove(0);
    out
}

/// A custom call's input (escaped) from its arguments (escaped): the `input` string of the
/// `{"input": ..}` object, or the arguments themselves when they are not that.
fn custom_input(arguments: &[u8]) -> Vec<u8> {
    let mut literal = Vec::with_capacity(arguments.len() + 2);
    literal.push(b'"');
    literal.extend_from_slice(arguments);
    literal.push(b'"');
    let input = serde_json::from_slice::<String>(&literal)
        .ok()
        .and_then(|a| serde_json::from_str::<Value>(&a).ok())
        .and_then(|v| match v {
            Value::Object(mut o) => match o.remove("input") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            },
            _ => None,
        });
    match input {
        Some(s) => escaped(&s),
        None => arguments.to_vec(),
    }
}

/// The response's status and incomplete reason for a finish_reason.
fn status_of(finish: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

fn write_usage(out: &mut Vec<u8>, usage: Option<Usage>) {
    let Some(u) = usage else {
        out.extend_from_slice(b"null");
        return;
    };
    let _ = write!(
        out,
        "{{\"input_tokens\":{},\"input_tokens_details\":{{\"cached_tokens\":{},\"cache_write_tokens\":{}}},\"output_tokens\":{},\"output_tokens_details\":{{\"reasoning_tokens\":{}}},\"total_tokens\":{}}}",
        u.input_tokens,
        u.cached_input_tokens,
        u.cache_write_tokens,
        u.output_tokens,
        u.reasoning_tokens,
        u.input_tokens + u.output_tokens
    );
}

/// What the response object tells.
struct Answer {
    id: String,
    created_at: u64,
    model: String,
    items: Vec<Item>,
    finish: Option<&'static str>,
    usage: Option<Usage>,
}

impl Answer {
    fn new(model: &str) -> Answer {
        Answer {
            id: format!(
                "resp_{:016x}{:016x}{:016x}",
                fastrand::u64(..),
                fastrand::u64(..),
                fastrand::u64(..)
            ),
            created_at: now(),
            model: model.to_string(),
            items: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    /// The response object; `full`: with its output and usage (else `[]` and null, as
    /// `response.created` has them); `error`: a failed response's code and message.
    fn write(
        &self,
        out: &mut Vec<u8>,
        context: &Context,
        status: &str,
        full: bool,
        error: Option<(&str, &str)>,
    ) {
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(b"\",\"object\":\"response\",\"created_at\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.created_at).as_bytes());
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(b"\",\"background\":false,\"error\":");
        match error {
            Some((code, message)) => {
                out.extend_from_slice(b"{\"code\":\"");
                out.extend_from_slice(code.as_bytes());
                out.extend_from_slice(b"\",\"message\":");
                json_str(out, message);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"incomplete_details\":");
        match status_of(self.finish) {
            (_, Some(reason)) if status == "incomplete" => {
                out.extend_from_slice(b"{\"reason\":\"");
                out.extend_from_slice(reason.as_bytes());
                out.extend_from_slice(b"\"}");
            }
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"model\":");
        json_str(out, &self.model);
        out.extend_from_slice(b",\"output\":[");
        if full {
            for (n, item) in self.items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                item.write(out, false);
            }
        }
        out.extend_from_slice(b"],");
        out.extend_from_slice(if context.echo.is_empty() {
            DEFAULT_ECHO.as_bytes()
        } else {
            context.echo.as_bytes()
        });
        out.extend_from_slice(b",\"store\":false,\"usage\":");
        write_usage(out, if full { self.usage } else { None });
        out.push(b'}');
    }
}

/// Translates a `chat.completion` body into a Responses `response` object.
pub fn response_from_chat(body: &[u8], model: &str, context: &Context) -> Result<Vec<u8>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let choice = v["choices"].get(0).ok_or("no `choices`")?;
    let message = &choice["message"];
    let mut a = Answer::new(model);
    if let Some(created) = v["created"].as_u64() {
        a.created_at = created;
    }
    a.finish = Some(finish_of(
        choice["finish_reason"].as_str().unwrap_or("stop"),
    ));
    let (status, incomplete) = status_of(a.finish);
    let item_status = if incomplete.is_some() {
        "incomplete"
    } else {
        "completed"
    };
    if let Some(r) = reasoning_text(message) {
        let mut item = Item::new(Kind::Reasoning);
        item.text = escaped(r);
        a.items.push(item);
    }
    let text = content_text(&message["content"]).unwrap_or_default();
    let refusal = text_in(&message["refusal"]);
    if !text.is_empty() || refusal.is_some() {
        let mut item = Item::new(Kind::Message);
        if !text.is_empty() {
            item.parts.push(Part {
                refusal: false,
                text: escaped(&text),
            });
        }
        if let Some(r) = refusal {
            item.parts.push(Part {
                refusal: true,
                text: escaped(r),
            });
        }
        a.items.push(item);
    }
    for call in message["tool_calls"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        let f = &call["function"];
        let call_id = text_in(&call["id"]).map_or_else(|| new_id("call_"), str::to_string);
        let mut item = Item::call(f["name"].as_str().unwrap_or(""), call_id, context);
        let arguments = escaped(f["arguments"].as_str().unwrap_or(""));
        item.text = if item.kind == Kind::Custom {
            custom_input(&arguments)
        } else {
            arguments
        };
        a.items.push(item);
    }
    for item in &mut a.items {
        item.status = item_status;
        item.done = true;
    }
    a.usage = usage_of(&v);
    let mut out = Vec::with_capacity(body.len() + context.echo.len() + 512);
    a.write(&mut out, context, status, true, None);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Streams

fn head(out: &mut Vec<u8>, seq: &mut u64, kind: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"sequence_number\":");
    out.extend_from_slice(itoa::Buffer::new().format(*seq).as_bytes());
    *seq += 1;
}

/// `,"item_id":"..","output_index":N`
fn item_ref(out: &mut Vec<u8>, id: &str, index: usize) {
    out.extend_from_slice(b",\"item_id\":\"");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\",\"output_index\":");
    out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
}

/// `,"content_index":N`
fn content_index(out: &mut Vec<u8>, index: usize) {
    out.extend_from_slice(b",\"content_index\":");
    out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
}

/// Turns a chat chunk stream (SSE bytes, split anywhere) into the Responses event stream.
/// `finish` leaves a cut stream (no `finish_reason`, whether or not `[DONE]` came) open: the
/// caller ends it with [`StreamEncoder::failed_event`]. `done`: `response.completed`,
/// `response.incomplete` or `response.failed` was sent. Its usage is the upstream's (OpenAI's
/// sense: input includes cached tokens).
pub type StreamEncoder = Translated<Encoder>;

impl StreamEncoder {
    /// `model`: the model the client asked for, as the response names it.
    pub fn new(model: &str, context: Context) -> Self {
        Translated::with_state(Encoder {
            answer: Answer::new(model),
            context,
            seq: 0,
            started: false,
            reasoning: None,
            message: None,
            calls: Vec::new(),
        })
    }

    /// Ends the stream with `response.failed` (the upstream broke off, or failed): `code` is
    /// a Responses error code (others become `server_error`). Empty when the stream is over.
    pub fn failed_event(&mut self, code: &str, message: &str) -> Bytes {
        self.end_with(|state, out| state.fail(out, error_code(code, ""), message))
    }
}

/// One chat tool call (one `index`).
struct Call {
    index: u32,
    /// Its output item, once its name is known.
    item: Option<usize>,
    id: String,
    name: String,
    /// Argument fragments (escaped) that came before the name.
    held: Vec<u8>,
}

/// What the stream has told so far.
pub struct Encoder {
    answer: Answer,
    context: Context,
    /// The next event's sequence_number.
    seq: u64,
    /// response.created was sent.
    started: bool,
    /// The open reasoning item, the open message item (at most one of each).
    reasoning: Option<usize>,
    message: Option<usize>,
    calls: Vec<Call>,
}

impl Events for Encoder {
    fn usage(&self) -> Option<Usage> {
        self.answer.usage
    }

    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        if data == b"[DONE]" {
            // Without a finish_reason the answer was cut: the caller reports it.
            if self.answer.finish.is_none() {
                return false;
            }
            self.complete(out);
            return true;
        }
        // A `created` that is not a whole number makes the chunk unreadable.
        let chunk = serde_json::from_slice::<Chunk<'_>>(data).and_then(|c| Ok((c.created()?, c)));
        let (created, chunk) = match chunk {
            Ok(c) => c,
            // The unterminated last event of a cut stream: the caller reports the cut.
            Err(_) if at_end => return false,
            Err(_) => {
                self.fail(
                    out,
                    "server_error",
                    "The upstream sent an event that is not valid JSON.",
                );
                return true;
            }
        };
        if let Some(e) = &chunk.error {
            let message = error_message(e);
            let code = error_code(
                e["code"].as_str().unwrap_or(""),
                e["type"].as_str().unwrap_or(""),
            );
            self.fail(out, code, message);
            return true;
        }
        if !self.started {
            if let Some(created) = created {
                self.answer.created_at = created;
            }
            self.start(out);
        }
        if let Some(choice) = chunk.choices.0 {
            if let Some(d) = choice.delta {
                if let Some(piece) = inside(d.reasoning_content).or(inside(d.reasoning)) {
                    self.reasoning_piece(piece, out);
                }
                if let Some(piece) = inside(d.content) {
                    self.text_piece(false, piece, out);
                }
                if let Some(piece) = inside(d.refusal) {
                    self.text_piece(true, piece, out);
                }
                for (position, call) in d.tool_calls.into_iter().flatten().enumerate() {
                    self.tool_delta(call, position as u32, out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.answer.finish = Some(finish_of(&reason));
                // Nothing follows: let the client act on the items now.
                self.close_all(out);
            }
        }
        if let Some(u) = chunk.usage {
            self.answer.usage = Some(u.into());
        }
        false
    }

    /// A stream that finished but lost its `[DONE]` is ended; a cut one is not.
    fn end(&mut self, out: &mut Vec<u8>) -> bool {
        if self.answer.finish.is_none() {
            return false;
        }
        self.complete(out);
        true
    }
}

impl Encoder {
    /// `response.created` and `response.in_progress`.
    fn start(&mut self, out: &mut Vec<u8>) {
        self.started = true;
        out.reserve(2 * (self.context.echo.len() + 512));
        for kind in ["response.created", "response.in_progress"] {
            head(out, &mut self.seq, kind);
            out.extend_from_slice(b",\"response\":");
            self.answer
                .write(out, &self.context, "in_progress", false, None);
            out.extend_from_slice(b"}\n\n");
        }
    }

    /// Adds an output item: `response.output_item.added`. Returns its output_index.
    fn add(&mut self, item: Item, out: &mut Vec<u8>) -> usize {
        let at = self.answer.items.len();
        head(out, &mut self.seq, "response.output_item.added");
        out.extend_from_slice(b",\"output_index\":");
        out.extend_from_slice(itoa::Buffer::new().format(at).as_bytes());
        out.extend_from_slice(b",\"item\":");
        item.write(out, true);
        out.extend_from_slice(b"}\n\n");
        self.answer.items.push(item);
        at
    }

    // hot path: one call per reasoning delta.
    fn reasoning_piece(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let at = match self.reasoning {
            Some(at) => at,
            None => {
                if let Some(m) = self.message.take() {
                    self.close(m, "completed", out);
                }
                let at = self.add(Item::new(Kind::Reasoning), out);
                head(out, &mut self.seq, "response.reasoning_summary_part.added");
                item_ref(out, &self.answer.items[at].id, at);
                out.extend_from_slice(
                    b",\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":\"\"}}\n\n",
                );
                self.reasoning = Some(at);
                at
            }
        };
        let item = &mut self.answer.items[at];
        item.text.extend_from_slice(piece);
        head(out, &mut self.seq, "response.reasoning_summary_text.delta");
        item_ref(out, &item.id, at);
        out.extend_from_slice(b",\"summary_index\":0,\"delta\":\"");
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\"}\n\n");
    }

    // hot path: one call per text delta.
    /// A text (or refusal) fragment, in the open message item's last part of its kind.
    fn text_piece(&mut self, refusal: bool, piece: &[u8], out: &mut Vec<u8>) {
        if let Some(r) = self.reasoning.take() {
            self.close(r, "completed", out);
        }
        let at = match self.message {
            Some(at) => at,
            None => {
                let at = self.add(Item::new(Kind::Message), out);
                self.message = Some(at);
                at
            }
        };
        let item = &mut self.answer.items[at];
        if item.parts.last().is_none_or(|p| p.refusal != refusal) {
            close_part(item, at, &mut self.seq, out);
            item.parts.push(Part {
                refusal,
                text: Vec::new(),
            });
            head(out, &mut self.seq, "response.content_part.added");
            item_ref(out, &item.id, at);
            content_index(out, item.parts.len() - 1);
            out.extend_from_slice(b",\"part\":");
            write_part(out, refusal, b"");
            out.extend_from_slice(b"}\n\n");
        }
        let n = item.parts.len() - 1;
        item.parts[n].text.extend_from_slice(piece);
        head(
            out,
            &mut self.seq,
            if refusal {
                "response.refusal.delta"
            } else {
                "response.output_text.delta"
            },
        );
        item_ref(out, &item.id, at);
        content_index(out, n);
        out.extend_from_slice(b",\"delta\":\"");
        out.extend_from_slice(piece);
        out.extend_from_slice(if refusal {
            b"\"}\n\n"
        } else {
            b"\",\"logprobs\":[]}\n\n"
        });
    }

    // hot path: one call per tool call fragment.
    fn tool_delta(&mut self, call: ToolCallDelta<'_>, position: u32, out: &mut Vec<u8>) {
        let index = call.index.unwrap_or(position);
        let at = match self.calls.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                self.calls.push(Call {
                    index,
                    item: None,
                    id: String::new(),
                    name: String::new(),
                    held: Vec::new(),
                });
                self.calls.len() - 1
            }
        };
        let c = &mut self.calls[at];
        let arguments = inside(call.fill(&mut c.id, &mut c.name));
        match c.item {
            Some(item) => {
                if let Some(piece) = arguments {
                    self.arguments(item, piece, out);
                }
            }
            None => {
                if let Some(piece) = arguments {
                    c.held.extend_from_slice(piece);
                }
                if !c.name.is_empty() {
                    self.open_call(at, out);
                }
            }
        }
    }

    /// Opens the output item of call `at`, with the fragments held for it.
    fn open_call(&mut self, at: usize, out: &mut Vec<u8>) {
        let c = &mut self.calls[at];
        let id = match std::mem::take(&mut c.id) {
            id if id.is_empty() => new_id("call_"),
            id => id,
        };
        let held = std::mem::take(&mut c.held);
        let item = Item::call(&c.name, id, &self.context);
        let item = self.add(item, out);
        self.calls[at].item = Some(item);
        if !held.is_empty() {
            self.arguments(item, &held, out);
        }
    }

    /// An argument fragment of the call item at `at`: streamed, or buffered (custom tools).
    fn arguments(&mut self, at: usize, piece: &[u8], out: &mut Vec<u8>) {
        let item = &mut self.answer.items[at];
        if item.done {
            tracing::warn!(at, "tool call arguments after the call's item was done");
            return;
        }
        item.text.extend_from_slice(piece);
        if item.kind == Kind::Function {
            head(out, &mut self.seq, "response.function_call_arguments.delta");
            item_ref(out, &item.id, at);
            out.extend_from_slice(b",\"delta\":\"");
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\"}\n\n");
        }
    }

    /// Closes item `at`: its `.done` events and `response.output_item.done`.
    fn close(&mut self, at: usize, status: &'static str, out: &mut Vec<u8>) {
        let seq = &mut self.seq;
        let item = &mut self.answer.items[at];
        if item.done {
            return;
        }
        match item.kind {
            Kind::Reasoning => {
                head(out, seq, "response.reasoning_summary_text.done");
                item_ref(out, &item.id, at);
                out.extend_from_slice(b",\"summary_index\":0,\"text\":\"");
                out.extend_from_slice(&item.text);
                out.extend_from_slice(b"\"}\n\n");
                head(out, seq, "response.reasoning_summary_part.done");
                item_ref(out, &item.id, at);
                out.extend_from_slice(
                    b",\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":\"",
                );
                out.extend_from_slice(&item.text);
                out.extend_from_slice(b"\"}}\n\n");
            }
            Kind::Message => close_part(item, at, seq, out),
            Kind::Function => {
                head(out, seq, "response.function_call_arguments.done");
                item_ref(out, &item.id, at);
                out.extend_from_slice(b",\"name\":");
                json_str(out, &item.name);
                out.extend_from_slice(b",\"arguments\":\"");
                out.extend_from_slice(&item.text);
                out.extend_from_slice(b"\"}\n\n");
            }
            Kind::Custom => {
                item.text = custom_input(&item.text);
                if !item.text.is_empty() {
                    head(out, seq, "response.custom_tool_call_input.delta");
                    item_ref(out, &item.id, at);
                    out.extend_from_slice(b",\"delta\":\"");
                    out.extend_from_slice(&item.text);
                    out.extend_from_slice(b"\"}\n\n");
                }
                head(out, seq, "response.custom_tool_call_input.done");
                item_ref(out, &item.id, at);
                out.extend_from_slice(b",\"input\":\"");
                out.extend_from_slice(&item.text);
                out.extend_from_slice(b"\"}\n\n");
            }
        }
        item.status = status;
        item.done = true;
        head(out, seq, "response.output_item.done");
        out.extend_from_slice(b",\"output_index\":");
        out.extend_from_slice(itoa::Buffer::new().format(at).as_bytes());
        out.extend_from_slice(b",\"item\":");
        item.write(out, false);
        out.extend_from_slice(b"}\n\n");
    }

    /// Closes every open item, in output order (calls still without a name are opened
    /// first: the answer ends with them).
    fn close_all(&mut self, out: &mut Vec<u8>) {
        for at in 0..self.calls.len() {
            if self.calls[at].item.is_none() {
                self.open_call(at, out);
            }
        }
        let status = match status_of(self.answer.finish) {
            (_, Some(_)) => "incomplete",
            _ => "completed",
        };
        for at in 0..self.answer.items.len() {
            self.close(at, status, out);
        }
        self.reasoning = None;
        self.message = None;
    }

    /// `response.completed` (or `response.incomplete`) with the whole response.
    fn complete(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(out);
        }
        self.close_all(out);
        let (status, _) = status_of(self.answer.finish);
        head(
            out,
            &mut self.seq,
            if status == "completed" {
                "response.completed"
            } else {
                "response.incomplete"
            },
        );
        out.extend_from_slice(b",\"response\":");
        self.answer.write(out, &self.context, status, true, None);
        out.extend_from_slice(b"}\n\n");
    }

    /// `response.failed`: the stream is over. Open items stay as they are.
    fn fail(&mut self, out: &mut Vec<u8>, code: &str, message: &str) {
        if !self.started {
            self.start(out);
        }
        head(out, &mut self.seq, "response.failed");
        out.extend_from_slice(b",\"response\":");
        self.answer
            .write(out, &self.context, "failed", true, Some((code, message)));
        out.extend_from_slice(b"}\n\n");
    }
}

/// Closes the last content part of a message item (if any): `.done` and
/// `response.content_part.done`.
fn close_part(item: &Item, at: usize, seq: &mut u64, out: &mut Vec<u8>) {
    let Some(part) = item.parts.last() else {
        return;
    };
    let n = item.parts.len() - 1;
    if part.refusal {
        head(out, seq, "response.refusal.done");
        item_ref(out, &item.id, at);
        content_index(out, n);
        out.extend_from_slice(b",\"refusal\":\"");
        out.extend_from_slice(&part.text);
        out.extend_from_slice(b"\"}\n\n");
    } else {
        head(out, seq, "response.output_text.done");
        item_ref(out, &item.id, at);
        content_index(out, n);
        out.extend_from_slice(b",\"text\":\"");
        out.extend_from_slice(&part.text);
        out.extend_from_slice(b"\",\"logprobs\":[]}\n\n");
    }
    head(out, seq, "response.content_part.done");
    item_ref(out, &item.id, at);
    content_index(out, n);
    out.extend_from_slice(b",\"part\":");
    write_part(out, part.refusal, &part.text);
    out.extend_from_slice(b"}\n\n");
}

#[cfg(test)]
mod tests;
