//! The request: a Responses request as a chat completion.

use super::*;

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
    let stream = stream_flag(&mut req, &mut out)?;
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
    take_string(item, key, || {
        invalid(
            format!("`input[{i}]`: a `{kind}` item needs a string `{key}`."),
            "input",
        )
    })
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
    let content = match message_content(pieces) {
        Some(Value::String(text)) if role == "assistant" && text.is_empty() => return Ok(()),
        Some(content) => content,
        None if role == "assistant" => return Ok(()),
        None => Value::String(String::new()),
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
    let tools = tool_objects(v)?;
    let mut out = Vec::with_capacity(tools.len());
    for mut t in tools {
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
