//! The request: a chat completion as a generateContent request, and the path it goes to.

use super::*;

/// The path (under the base URL) of a request.
/// Whether a model name can go into a Gemini request path (`models/{model}:…`) as it is:
/// letters, digits and `-._@/`, with no empty, `.` or `..` segment (nothing that would change
/// the path it lands on, or make it invalid).
pub fn fits_path(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= 256
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._@/".contains(&b))
        && model.split('/').all(|s| !matches!(s, "" | "." | ".."))
}

pub fn path(base: &str, model: &str, stream: bool) -> String {
    if stream {
        format!("{base}/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("{base}/models/{model}:generateContent")
    }
}

/// Builds the generateContent body for an OpenAI chat request.
pub fn translate_request(
    req: &ChatRequest,
    policy: Unsupported,
    stream: bool,
) -> Result<(Vec<u8>, Translation), GatewayError> {
    req.check_common(KIND, policy)?;
    let mut body = Map::new();
    let mut system: Vec<Value> = Vec::new();
    let mut contents = chat::Turns::default();
    // Tool call id → function name, for the results that answer them.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for m in &req.messages {
        match m.role.as_str() {
            "system" | "developer" => {
                if let Some(c) = &m.content {
                    let text = c.text();
                    if !text.is_empty() {
                        system.push(json!({"text": text}));
                    }
                }
            }
            "user" => {
                let parts = match &m.content {
                    Some(c) => user_parts(c, policy)?,
                    None => Vec::new(),
                };
                contents.push("user", parts);
            }
            "assistant" => {
                let mut parts = Vec::new();
                if let Some(c) = &m.content {
                    let text = c.text();
                    if !text.is_empty() {
                        parts.push(json!({"text": text}));
                    }
                }
                for call in m.tool_calls.iter().flatten() {
                    call_names.insert(&call.id, &call.function.name);
                    parts.push(json!({"functionCall": {
                        "name": call.function.name,
                        "args": call.function.arguments_json()?,
                    }}));
                }
                contents.push("model", parts);
            }
            "tool" => {
                let id = m.tool_call_id.as_deref().unwrap_or("");
                let name = call_names
                    .get(id)
                    .copied()
                    .or(m.name.as_deref())
                    .ok_or_else(|| {
                        GatewayError::invalid_request(format!(
                            "The tool message with tool_call_id `{}` answers no earlier assistant tool call; Gemini needs the function name.",
                            Printable(id)
                        ))
                        .param("messages")
                    })?;
                let text = m.content.as_ref().map(Content::text).unwrap_or_default();
                // A JSON object result is passed as is; anything else is wrapped.
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(o)) => Value::Object(o),
                    _ => json!({"content": text}),
                };
                contents.push(
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
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
    body.insert("contents".into(), contents.into_json("parts"));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }

    let mut generation = Map::new();
    if let Some(m) = req.max_output_tokens() {
        generation.insert("maxOutputTokens".into(), m.into());
    }
    if let Some(t) = req.temperature {
        generation.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        generation.insert("topP".into(), p.into());
    }
    let stops = req.stop_sequences();
    if !stops.is_empty() {
        generation.insert("stopSequences".into(), stops.into());
    }
    if let Some(n) = req.n.filter(|&n| n > 1) {
        if stream {
            policy.apply(KIND, "n", "several choices cannot be streamed")?;
        } else {
            generation.insert("candidateCount".into(), n.into());
        }
    }
    if let Some(s) = req.seed {
        generation.insert("seed".into(), s.into());
    }
    if let Some(p) = req.presence_penalty {
        generation.insert("presencePenalty".into(), p.into());
    }
    if let Some(p) = req.frequency_penalty {
        generation.insert("frequencyPenalty".into(), p.into());
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            generation.insert("responseMimeType".into(), "application/json".into());
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            generation.insert("responseMimeType".into(), "application/json".into());
            if let Some(schema) = &json_schema.schema {
                generation.insert("responseJsonSchema".into(), schema.clone());
            }
        }
    }
    if let Some(effort) = &req.reasoning_effort {
        let config = match chat::thinking_budget(effort)? {
            Some(budget) => json!({"thinkingBudget": budget, "includeThoughts": true}),
            None => json!({"thinkingBudget": 0}),
        };
        generation.insert("thinkingConfig".into(), config);
    }
    if req.user.is_some() {
        // Only an abuse-monitoring hint at OpenAI; nothing to honour.
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }

    let mut declarations = Vec::new();
    for t in req.tools.iter().flatten() {
        match (&*t.kind, &t.function) {
            ("function", Some(f)) => {
                let mut d = Map::new();
                d.insert("name".into(), f.name.clone().into());
                if let Some(desc) = &f.description {
                    d.insert("description".into(), desc.clone().into());
                }
                if let Some(p) = &f.parameters {
                    d.insert("parameters".into(), openapi_schema(p));
                }
                declarations.push(Value::Object(d));
            }
            _ => policy.apply(KIND, "tools", "only function tools can be translated")?,
        }
    }
    if !declarations.is_empty() {
        body.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
        if req.parallel_tool_calls == Some(false) && declarations.len() > 1 {
            policy.apply(
                KIND,
                "parallel_tool_calls",
                "parallel calls cannot be turned off",
            )?;
        }
    }
    let mode = req.choice()?.map(|c| match c {
        Choice::Auto => json!({"mode": "AUTO"}),
        Choice::Required => json!({"mode": "ANY"}),
        Choice::None => json!({"mode": "NONE"}),
        Choice::Named(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
    });
    if let Some(m) = mode {
        body.insert("toolConfig".into(), json!({"functionCallingConfig": m}));
    }
    let bytes = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| GatewayError::new(ErrorKind::Internal, e.to_string()))?;
    Ok((
        bytes,
        Translation {
            include_usage: false,
        },
    ))
}

/// Gemini's `parameters` take the OpenAPI subset of JSON Schema: keys it rejects are removed.
fn openapi_schema(v: &Value) -> Value {
    const DROP: &[&str] = &[
        "$schema",
        "$id",
        "additionalProperties",
        "strict",
        "$comment",
    ];
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !DROP.contains(&k.as_str()))
                .map(|(k, v)| {
                    // Property names are data, not keywords: keep them all.
                    if k == "properties" {
                        let props = v
                            .as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(n, s)| (n.clone(), openapi_schema(s)))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (k.clone(), Value::Object(props))
                    } else {
                        (k.clone(), openapi_schema(v))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(openapi_schema).collect()),
        other => other.clone(),
    }
}

fn user_parts(c: &Content, policy: Unsupported) -> Result<Vec<Value>, GatewayError> {
    let parts = match c {
        Content::Text(t) => return Ok(vec![json!({"text": t})]),
        Content::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p {
            Part::Text { text, .. } => out.push(json!({"text": text})),
            Part::ImageUrl { image_url, .. } => out.push(match image_url.parse()? {
                Image::Inline { mime, data } => {
                    json!({"inlineData": {"mimeType": mime, "data": data}})
                }
                Image::Url(url) => {
                    json!({"fileData": {"mimeType": chat::mime_from_url(url), "fileUri": url}})
                }
            }),
            Part::Other => policy.apply(
                KIND,
                "messages",
                "a content part of this type cannot be translated",
            )?,
        }
    }
    Ok(out)
}
