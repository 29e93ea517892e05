//! The request: a Messages request as a chat completion.

use super::*;

/// Translates an Anthropic Messages request body into an OpenAI chat completion request.
pub fn request_to_chat(body: &[u8]) -> Result<ToChat, GatewayError> {
    let mut req = request_object(body)?;
    // A server-side message thread (beta `message-threads-2026-08-12`): a continuation holds
    // only the newest messages, so it cannot be translated; the SDKs resend the whole
    // conversation, without `thread`, on this error.
    if req
        .get("thread")
        .is_some_and(|t| !t.is_null() && *t != false)
    {
        return Err(GatewayError::invalid_request(
            "Message threads (`thread`) are served only by an Anthropic upstream, and this model is served by another kind: send the whole conversation without `thread`.",
        )
        .param("thread")
        .code(crate::error::Code::ThreadUnsupportedRequest));
    }
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
    let stream = stream_flag(&mut req, &mut out)?;
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
    let mut effort = reasoning_effort(req.remove("thinking"))?;
    let (format, output_effort) =
        output_config(req.remove("output_config"), req.remove("output_format"))?;
    if let Some(format) = format {
        out.insert("response_format".into(), format);
    }
    effort = effort.or(output_effort);
    if let Some(effort) = effort {
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
    take_string(b, key, || {
        invalid(
            format!(
                "`messages[{i}].content`: a `{}` block needs a string `{key}`.",
                Printable(kind)
            ),
            "messages",
        )
    })
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
            "image" => pieces.push(Piece::image_url(image_url(i, &mut b)?)),
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
    if let Some(content) = message_content(pieces) {
        out.push(json!({"role": "user", "content": content}));
    }
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
    out.extend(assistant_message(text, calls));
    Ok(())
}

/// The client tools as OpenAI function tools; server tools go to `dropped`.
fn tools(v: Option<Value>, dropped: &mut Vec<String>) -> Result<Vec<Value>, GatewayError> {
    let tools = tool_objects(v)?;
    let mut out = Vec::with_capacity(tools.len());
    for mut t in tools {
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
/// Structured output (`output_config.format`, or the beta's older top-level `output_format`:
/// `{"type": "json_schema", "schema": ..}`) as chat's `response_format`, and
/// `output_config.effort` as a reasoning effort.
fn output_config(
    config: Option<Value>,
    older: Option<Value>,
) -> Result<(Option<Value>, Option<&'static str>), GatewayError> {
    let (format, effort, param) = match config {
        None | Some(Value::Null) => (older, None, "output_format"),
        Some(Value::Object(mut c)) => {
            let format = c.remove("format").filter(|f| !f.is_null()).or(older);
            (format, c.remove("effort"), "output_config")
        }
        Some(_) => {
            return Err(invalid(
                "`output_config` must be an object.",
                "output_config",
            ))
        }
    };
    let effort = match effort {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => match e.as_str() {
            "low" => Some("low"),
            "medium" => Some("medium"),
            "high" | "max" => Some("high"),
            _ => None,
        },
        Some(_) => {
            return Err(invalid(
                "`output_config.effort` must be a string.",
                "output_config",
            ))
        }
    };
    let format = match format {
        None | Some(Value::Null) => None,
        Some(Value::Object(f)) => match (f.get("type").and_then(Value::as_str), f.get("schema")) {
            (Some("json_schema"), Some(schema @ Value::Object(_))) => Some(json!({
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema},
            })),
            (Some("json_schema"), _) => {
                return Err(invalid(
                    "A `json_schema` output format needs a `schema` object.",
                    param,
                ))
            }
            _ => {
                return Err(invalid(
                    "The output format's `type` must be `json_schema`.",
                    param,
                ))
            }
        },
        Some(_) => return Err(invalid("The output format must be an object.", param)),
    };
    Ok((format, effort))
}

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
