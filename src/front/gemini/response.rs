//! A whole chat completion as a Gemini generateContent answer.

use super::*;

/// Gemini's `finishReason` for a chat `finish_reason`.
pub(super) fn finish_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("length") => "MAX_TOKENS",
        Some("content_filter") => "SAFETY",
        _ => "STOP",
    }
}

/// Gemini's `usageMetadata`, keys in Gemini's order.
pub(super) fn usage_metadata(u: &Usage) -> Value {
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
pub(super) fn response_id(chat_id: Option<&str>) -> String {
    match chat_id.filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => format!("{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..)),
    }
}

/// A call id for a tool call that came without one.
pub(super) fn call_id() -> String {
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
