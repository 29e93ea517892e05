//! The request: a chat completion as a Messages request.

use super::*;

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
    let schema = match &req.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            Some(json_schema.schema.as_ref().unwrap_or(&Value::Null))
        }
        Some(_) => Some(&Value::Null),
    };
    let native = match opts.structured {
        StructuredOutput::Native => true,
        StructuredOutput::Tool => false,
        StructuredOutput::Auto => has_native_structured_output(upstream_model),
    };
    match schema.map(|s| (s, native.then(|| native_schema(s)).flatten())) {
        None => {}
        Some((_, Some(native))) => {
            body.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": native}}),
            );
        }
        Some((schema, None)) => {
            let schema = if schema.is_object() {
                schema.clone()
            } else {
                json!({"type": "object"})
            };
            // Forced, unless the request's own tools must stay callable.
            if tools.is_empty() || matches!(tool_choice, Some(ref c) if c["type"] == "none") {
                tool_choice = Some(json!({"type": "tool", "name": JSON_TOOL}));
            }
            tools.push(json!({
                "name": JSON_TOOL,
                "description": "Respond with a JSON value that follows this schema.",
                "input_schema": schema,
            }));
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
    // Anthropic refuses thinking with a forced tool ("any" or a named one): with thinking on,
    // the model is let choose, and the structured-output tool is then what it is asked for
    // by its description.
    if body.contains_key("thinking") {
        if let Some(c) = tool_choice.as_mut() {
            if c["type"] == "any" || c["type"] == "tool" {
                c["type"] = "auto".into();
                if let Some(o) = c.as_object_mut() {
                    o.remove("name");
                }
            }
        }
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

/// String formats Anthropic's structured output accepts.
const FORMATS: [&str; 10] = [
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "uri",
    "ipv4",
    "ipv6",
    "uuid",
];

/// A client's JSON schema reduced to the subset Anthropic's structured output accepts, as
/// Anthropic's SDKs reduce it: every object closed, `oneOf` as `anyOf`, and the constraints it
/// does not enforce (lengths, bounds, patterns, other formats) kept as a hint in the
/// description. `None` when that would change what the schema allows beyond a hint: an object
/// that admits other properties (a map), or a root that is not an object; the request then
/// takes the tool.
pub fn native_schema(schema: &Value) -> Option<Value> {
    (schema["type"] == "object").then_some(())?;
    reduce(schema)
}

fn reduce(schema: &Value) -> Option<Value> {
    let Some(input) = schema.as_object() else {
        return Some(schema.clone());
    };
    let mut rest = input.clone();
    let mut out = Map::new();
    if let Some(defs) = rest.remove("$defs").or_else(|| rest.remove("definitions")) {
        let mut reduced = Map::new();
        for (k, v) in defs.as_object()? {
            reduced.insert(k.clone(), reduce(v)?);
        }
        out.insert("$defs".into(), Value::Object(reduced));
    }
    if let Some(r) = rest.remove("$ref") {
        out.insert(
            "$ref".into(),
            match r.as_str() {
                Some(r) => r.replacen("#/definitions/", "#/$defs/", 1).into(),
                None => r,
            },
        );
        if let Some(d) = rest.remove("description") {
            out.insert("description".into(), d);
        }
        return Some(Value::Object(out));
    }
    for (from, to) in [("anyOf", "anyOf"), ("oneOf", "anyOf"), ("allOf", "allOf")] {
        if let Some(list) = rest.remove(from) {
            let list = list
                .as_array()?
                .iter()
                .map(reduce)
                .collect::<Option<Vec<_>>>()?;
            out.insert(to.into(), list.into());
        }
    }
    let kind = rest.remove("type");
    for k in ["type", "description", "title", "enum", "const", "default"] {
        if k == "type" {
            if let Some(t) = &kind {
                out.insert("type".into(), t.clone());
            }
        } else if let Some(v) = rest.remove(k) {
            out.insert(k.into(), v);
        }
    }
    let kind = kind.as_ref().and_then(Value::as_str);
    if kind == Some("object") || rest.contains_key("properties") {
        let mut props = Map::new();
        if let Some(p) = rest.remove("properties") {
            for (k, v) in p.as_object()? {
                props.insert(k.clone(), reduce(v)?);
            }
        }
        match rest.remove("additionalProperties") {
            None | Some(Value::Bool(false)) => {}
            Some(_) => return None,
        }
        out.insert("properties".into(), Value::Object(props));
        out.insert("additionalProperties".into(), false.into());
        if let Some(r) = rest.remove("required") {
            out.insert("required".into(), r);
        }
    } else if kind == Some("array") {
        if let Some(items) = rest.remove("items") {
            out.insert("items".into(), reduce(&items)?);
        }
        if let Some(m) = rest.remove("minItems") {
            if m == 0 || m == 1 {
                out.insert("minItems".into(), m);
            } else {
                rest.insert("minItems".into(), m);
            }
        }
    } else if kind == Some("string") {
        if let Some(f) = rest.remove("format") {
            if f.as_str().is_some_and(|f| FORMATS.contains(&f)) {
                out.insert("format".into(), f);
            } else {
                rest.insert("format".into(), f);
            }
        }
    }
    rest.remove("$schema");
    if !rest.is_empty() {
        let hint = Value::Object(rest).to_string();
        let description = match out.get("description").and_then(Value::as_str) {
            Some(d) => format!("{d}\n\n{hint}"),
            None => hint,
        };
        out.insert("description".into(), description.into());
    }
    Some(Value::Object(out))
}
