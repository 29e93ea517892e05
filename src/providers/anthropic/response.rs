//! A whole Messages answer as a chat completion, and its usage.

use super::*;

/// The OpenAI `finish_reason` for an Anthropic `stop_reason`.
/// `json_only`: the only tool called was [`JSON_TOOL`], whose input is the answer.
pub fn finish_reason(stop_reason: Option<&str>, json_only: bool) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") if !json_only => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
pub(super) struct AUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
    /// Context compaction (a beta): one entry per pass. The top-level numbers are the
    /// non-compaction passes only; what is billed is the sum over every pass.
    #[serde(default)]
    iterations: Option<Iterations>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct OutputDetails {
    /// Of `output_tokens`, the extended thinking.
    #[serde(default)]
    thinking_tokens: Option<u64>,
}

/// The compaction passes of `usage.iterations`, summed (`Copy`, so that a report stays a
/// few numbers).
#[derive(Default, Clone, Copy)]
struct Iterations {
    input: u64,
    output: u64,
    read: u64,
    write: u64,
}

impl<'de> Deserialize<'de> for Iterations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Pass {
            #[serde(default, rename = "type")]
            kind: Option<String>,
            #[serde(default)]
            input_tokens: u64,
            #[serde(default)]
            output_tokens: u64,
            #[serde(default)]
            cache_read_input_tokens: u64,
            #[serde(default)]
            cache_creation_input_tokens: u64,
        }
        let passes = Vec::<Pass>::deserialize(d)?;
        let mut sum = Iterations::default();
        // Only the compaction passes are outside the top-level numbers; every other kind
        // (the message itself, an advisor, a declined fallback) is as the top level says.
        for p in passes
            .iter()
            .filter(|p| p.kind.as_deref() == Some("compaction"))
        {
            sum.input += p.input_tokens;
            sum.output += p.output_tokens;
            sum.read += p.cache_read_input_tokens;
            sum.write += p.cache_creation_input_tokens;
        }
        Ok(sum)
    }
}

impl AUsage {
    /// Folds a (possibly partial) report into `u`: message_start carries the input side,
    /// message_delta the output side (and, on newer models, the input side again). A
    /// report with `iterations` is the final one: its compaction passes are added.
    pub(super) fn apply(&self, u: &mut Usage) {
        let extra = self.iterations.unwrap_or_default();
        if let Some(i) = self.input_tokens {
            let read = self.cache_read_input_tokens.unwrap_or(0) + extra.read;
            let write = self.cache_creation_input_tokens.unwrap_or(0) + extra.write;
            u.input_tokens = i + extra.input + read + write;
            u.cached_input_tokens = read;
            u.cache_write_tokens = write;
        }
        if let Some(o) = self.output_tokens {
            u.output_tokens = o + extra.output;
        }
        if let Some(t) = self.output_tokens_details.and_then(|d| d.thinking_tokens) {
            u.reasoning_tokens = t;
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
    let mut json: Option<String> = None;
    for block in v["content"].as_array().ok_or("no `content` array")? {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("thinking") => reasoning.push_str(block["thinking"].as_str().unwrap_or("")),
            Some("tool_use") if t.json_tool && block["name"] == JSON_TOOL => {
                json.get_or_insert_with(|| block["input"].to_string());
            }
            Some("tool_use") => tool_calls.push(json!({
                "id": block["id"],
                "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()},
            })),
            _ => {}
        }
    }
    // The JSON is the answer: text written before the tool call is not glued in front of it.
    if let Some(json) = json {
        text = json;
    }
    let mut usage = Usage::default();
    let u: AUsage = serde_json::from_value(v["usage"].clone()).unwrap_or_default();
    u.apply(&mut usage);
    let json_only = t.json_tool && tool_calls.is_empty();
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
            "finish_reason": finish_reason(
                v["stop_reason"].as_str(),
                json_only,
            ),
        }],
        "usage": serde_json::from_slice::<Value>(&usage_json).unwrap_or(Value::Null),
    });
    Ok((serde_json::to_vec(&out).map_err(|e| e.to_string())?, usage))
}
