//! A whole chat completion as a Messages answer.

use super::*;

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`; `tools`: the answer calls tools.
pub(super) fn stop_reason(finish_reason: Option<&str>, tools: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if tools => "tool_use",
        _ => "end_turn",
    }
}

/// The Anthropic message id for an OpenAI completion id (a random one when there is none).
pub(super) fn message_id(openai_id: Option<&str>) -> String {
    match openai_id.filter(|id| !id.is_empty()) {
        Some(id) => format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id)),
        None => format!("msg_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..)),
    }
}

/// An id for a tool call that came without one.
pub(super) fn tool_use_id() -> String {
    format!("toolu_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

/// Anthropic's `usage` object (zeros when the upstream reported none).
pub(super) fn write_usage(out: &mut Vec<u8>, usage: Option<Usage>) {
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
