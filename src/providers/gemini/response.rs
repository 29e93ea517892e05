//! A whole generateContent answer as a chat completion, and its usage.

use super::*;

/// The OpenAI `finish_reason` for a Gemini `finishReason`.
pub fn finish_reason(reason: &str, has_tool_calls: bool) -> &'static str {
    match reason {
        "STOP" if has_tool_calls => "tool_calls",
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "LANGUAGE"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ => "stop",
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(super) struct GUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    /// The prompts of the tools Google runs itself (code execution, Search grounding):
    /// billed as input, outside `promptTokenCount`, inside `totalTokenCount`.
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

impl From<GUsage> for Usage {
    fn from(u: GUsage) -> Usage {
        Usage {
            input_tokens: u.prompt_token_count + u.tool_use_prompt_token_count,
            output_tokens: u.candidates_token_count + u.thoughts_token_count,
            cached_input_tokens: u.cached_content_token_count,
            cache_write_tokens: 0,
            reasoning_tokens: u.thoughts_token_count,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GResponse<'a> {
    #[serde(default, borrow)]
    pub(super) candidates: Vec<GCandidate<'a>>,
    #[serde(default)]
    pub(super) usage_metadata: Option<GUsage>,
    #[serde(default, borrow)]
    pub(super) model_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) response_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) prompt_feedback: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(super) error: Option<GError<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GCandidate<'a> {
    #[serde(default, borrow)]
    pub(super) content: Option<GContent<'a>>,
    #[serde(default, borrow)]
    pub(super) finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct GContent<'a> {
    #[serde(default, borrow)]
    pub(super) parts: Vec<GPart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GPart<'a> {
    #[serde(default, borrow)]
    pub(super) text: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) thought: Option<bool>,
    #[serde(default, borrow)]
    pub(super) function_call: Option<GFunctionCall<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GFunctionCall<'a> {
    /// Absent on the parts that continue a call whose arguments stream (Vertex AI's
    /// `streamFunctionCallArguments`).
    #[serde(default, borrow)]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) args: Option<&'a RawValue>,
    /// More parts of this call follow.
    #[serde(default)]
    pub(super) will_continue: Option<bool>,
    /// Pieces of the arguments, each at a JSON path.
    #[serde(default, borrow)]
    pub(super) partial_args: Vec<PartialArg<'a>>,
}

#[derive(Deserialize)]
pub(super) struct GError<'a> {
    /// The HTTP status.
    #[serde(default)]
    pub(super) code: Option<u16>,
    #[serde(default, borrow)]
    pub(super) status: Option<Cow<'a, str>>,
}

/// Function call arguments as a compact JSON string.
pub(super) fn arguments_of(call: &GFunctionCall<'_>) -> String {
    match call.args {
        None => "{}".to_string(),
        Some(raw) => serde_json::from_str::<Value>(raw.get())
            .map(|v| v.to_string())
            .unwrap_or_else(|_| raw.get().to_string()),
    }
}

/// Makes the ids Gemini does not send: tool call ids (`call_` + 24 hex digits) and, for an
/// answer without a `responseId`, the completion's (`chatcmpl-` + 24 hex digits); seeded in
/// tests.
pub struct CallIds(fastrand::Rng);

impl CallIds {
    pub fn new() -> Self {
        CallIds(fastrand::Rng::new())
    }

    pub fn with_seed(seed: u64) -> Self {
        CallIds(fastrand::Rng::with_seed(seed))
    }

    pub(super) fn next(&mut self) -> String {
        format!("call_{:016x}{:08x}", self.0.u64(..), self.0.u32(..))
    }

    /// The completion's id: `chatcmpl-` and Gemini's `responseId`, or a new one when it sent
    /// none (each answer has its own, as OpenAI's do).
    pub(super) fn completion_id(&mut self, response_id: Option<&str>) -> String {
        match response_id.filter(|id| !id.is_empty()) {
            Some(id) => format!("chatcmpl-{id}"),
            None => format!("chatcmpl-{:016x}{:08x}", self.0.u64(..), self.0.u32(..)),
        }
    }
}

impl Default for CallIds {
    fn default() -> Self {
        Self::new()
    }
}

/// Translates a whole generateContent response into an OpenAI `chat.completion`.
pub fn translate_response(
    body: &[u8],
    upstream_model: &str,
    created: u64,
    ids: &mut CallIds,
) -> Result<(Vec<u8>, Usage), String> {
    let r: GResponse<'_> =
        serde_json::from_slice(body).map_err(|e| format!("not a generateContent response: {e}"))?;
    let mut choices = Vec::new();
    for (i, c) in r.candidates.iter().enumerate() {
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut calls = Vec::new();
        for p in c.content.iter().flat_map(|c| &c.parts) {
            if let Some(f) = &p.function_call {
                calls.push(json!({
                    "id": ids.next(),
                    "type": "function",
                    "function": {"name": f.name.as_deref().unwrap_or(""), "arguments": arguments_of(f)},
                }));
            } else if let Some(t) = &p.text {
                if p.thought == Some(true) {
                    reasoning.push_str(t);
                } else {
                    text.push_str(t);
                }
            }
        }
        let mut message = Map::new();
        message.insert("role".into(), "assistant".into());
        message.insert(
            "content".into(),
            if text.is_empty() && !calls.is_empty() {
                Value::Null
            } else {
                text.into()
            },
        );
        if !reasoning.is_empty() {
            message.insert("reasoning_content".into(), reasoning.into());
        }
        let has_calls = !calls.is_empty();
        if has_calls {
            message.insert("tool_calls".into(), calls.into());
        }
        message.insert("refusal".into(), Value::Null);
        choices.push(json!({
            "index": c.index.unwrap_or(i as u32),
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(c.finish_reason.as_deref().unwrap_or("STOP"), has_calls),
        }));
    }
    if choices.is_empty() {
        // The prompt itself was blocked (promptFeedback.blockReason).
        let filtered = r.prompt_feedback.is_some();
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": null, "refusal": null},
            "logprobs": null,
            "finish_reason": if filtered { "content_filter" } else { "stop" },
        }));
    }
    let usage: Usage = r.usage_metadata.unwrap_or_default().into();
    let mut usage_json = Vec::new();
    chunk::write_usage(&mut usage_json, &usage);
    let out = json!({
        "id": ids.completion_id(r.response_id.as_deref()),
        "object": "chat.completion",
        "created": created,
        "model": r.model_version.as_deref().unwrap_or(upstream_model),
        "choices": choices,
        "usage": serde_json::from_slice::<Value>(&usage_json).unwrap_or(Value::Null),
    });
    Ok((serde_json::to_vec(&out).map_err(|e| e.to_string())?, usage))
}
