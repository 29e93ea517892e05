//! The request: a Gemini generateContent request as a chat completion, and the model and method its path names.

use super::*;

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
    take_string(o, key, || {
        part_error(i, j, format_args!("`{kind}` needs a string `{key}`."))
    })
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
            pieces.push(Piece::image_url(format!("data:{mime};base64,{data}")));
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
            pieces.push(Piece::image_url(string_in(
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
    if let Some(content) = message_content(pieces) {
        out.push(json!({"role": "user", "content": content}));
    }
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
    out.extend(assistant_message(text, calls));
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
    let mut out = Vec::new();
    for tool in tool_objects(v)? {
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
