//! Google Gemini (AI Studio, `generateContent` / `streamGenerateContent?alt=sse`) behind the
//! OpenAI endpoint: request translation, whole-response translation, a per-stream event
//! translator, and error mapping.
//!
//! Decisions where the reference gateways disagree (see `tests/fixtures/providers/MAPPINGS.md`):
//! - `finishReason`: STOP → `stop`, or `tool_calls` when the answer holds function calls
//!   (Gemini has no tool-call reason); MAX_TOKENS → `length`; SAFETY, RECITATION, BLOCKLIST,
//!   PROHIBITED_CONTENT, SPII, IMAGE_* and LANGUAGE → `content_filter`; anything else → `stop`.
//! - usage: `completion_tokens` = candidates + thoughts (OpenAI counts reasoning as output),
//!   `reasoning_tokens` = thoughts, `cached_tokens` = cachedContentTokenCount.
//! - Every system and developer message becomes a `systemInstruction` part, in order.
//! - Tool calls get ids `call_<24 hex>` (Gemini sends none); a tool result finds its function
//!   name through the id of the assistant call it answers.
//! - Thoughts (`thought: true` parts) come back as `reasoning_content`.

use super::chat::{self, ChatRequest, Choice, Content, Image, Part, ResponseFormat, Unsupported};
use crate::error::{ErrorKind, GatewayError, Printable};
use crate::stream::chunk::{self, ChunkWriter, Delta};
use crate::stream::translate::{self, Translated};
use crate::usage::Usage;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

const KIND: &str = "Gemini";

/// What the response translation must know of the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Translation {
    pub include_usage: bool,
}

/// The path (under the base URL) of a request.
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
struct GUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

impl From<GUsage> for Usage {
    fn from(u: GUsage) -> Usage {
        Usage {
            input_tokens: u.prompt_token_count,
            output_tokens: u.candidates_token_count + u.thoughts_token_count,
            cached_input_tokens: u.cached_content_token_count,
            cache_write_tokens: 0,
            reasoning_tokens: u.thoughts_token_count,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GResponse<'a> {
    #[serde(default, borrow)]
    candidates: Vec<GCandidate<'a>>,
    #[serde(default)]
    usage_metadata: Option<GUsage>,
    #[serde(default, borrow)]
    model_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    response_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    prompt_feedback: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<GError<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GCandidate<'a> {
    #[serde(default, borrow)]
    content: Option<GContent<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u32>,
}

#[derive(Deserialize)]
struct GContent<'a> {
    #[serde(default, borrow)]
    parts: Vec<GPart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GPart<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default, borrow)]
    function_call: Option<GFunctionCall<'a>>,
}

#[derive(Deserialize)]
struct GFunctionCall<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    args: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct GError<'a> {
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
}

/// Function call arguments as a compact JSON string.
fn arguments_of(call: &GFunctionCall<'_>) -> String {
    match call.args {
        None => "{}".to_string(),
        Some(raw) => serde_json::from_str::<Value>(raw.get())
            .map(|v| v.to_string())
            .unwrap_or_else(|_| raw.get().to_string()),
    }
}

/// Makes tool call ids (`call_` + 24 hex digits); seeded in tests.
pub struct CallIds(fastrand::Rng);

impl CallIds {
    pub fn new() -> Self {
        CallIds(fastrand::Rng::new())
    }

    pub fn with_seed(seed: u64) -> Self {
        CallIds(fastrand::Rng::with_seed(seed))
    }

    fn next(&mut self) -> String {
        format!("call_{:016x}{:08x}", self.0.u64(..), self.0.u32(..))
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
                    "function": {"name": f.name, "arguments": arguments_of(f)},
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
        "id": format!("chatcmpl-{}", r.response_id.as_deref().unwrap_or("gemini")),
        "object": "chat.completion",
        "created": created,
        "model": r.model_version.as_deref().unwrap_or(upstream_model),
        "choices": choices,
        "usage": serde_json::from_slice::<Value>(&usage_json).unwrap_or(Value::Null),
    });
    Ok((serde_json::to_vec(&out).map_err(|e| e.to_string())?, usage))
}

/// A Gemini error status and body, as the client is told.
pub fn map_error(
    provider: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
) -> GatewayError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = &v["error"];
    let reason_is = |r: &str| {
        err["details"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["reason"] == r))
    };
    // Gemini answers a bad key with 400 INVALID_ARGUMENT / API_KEY_INVALID.
    if status == 401 || status == 403 || reason_is("API_KEY_INVALID") {
        return super::credentials_refused(provider, status);
    }
    let message = err["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let status_name = err["status"].as_str().unwrap_or("UNKNOWN");
    // RetryInfo.retryDelay ("34.4s") when the header said nothing.
    let retry_after = retry_after.or_else(|| {
        err["details"].as_array()?.iter().find_map(|d| {
            let delay = d["retryDelay"].as_str()?.strip_suffix('s')?;
            delay.parse::<f64>().ok().map(|s| s.ceil() as u64)
        })
    });
    let mut e = GatewayError::new(
        ErrorKind::Upstream(status),
        format!("Provider `{provider}`: {}", Printable(&message)),
    );
    e.code = Some(super::static_code(status_name));
    e.retry_after = retry_after;
    if err.is_object() {
        e.upstream_body = Some(crate::error::UpstreamBody::Gemini(Bytes::copy_from_slice(
            body,
        )));
    }
    e
}

/// The usage of a whole `generateContent` response, from the end of its body.
pub fn usage_in_tail(tail: &[u8]) -> Option<Usage> {
    crate::usage::in_tail::<GUsage>(tail, b"\"usageMetadata\"").map(Usage::from)
}

/// Translates one Gemini SSE stream into OpenAI chunks, event by event. Gemini sends no
/// terminator: a stream that gave its finish reason is closed at its end with usage and
/// `[DONE]`.
pub type StreamTranslator = Translated<State>;

/// What a Gemini stream has told so far.
pub struct State {
    t: Translation,
    created: u64,
    upstream_model: String,
    writer: Option<ChunkWriter>,
    ids: CallIds,
    next_tool: u32,
    /// A finish reason came: the stream may end.
    finished: bool,
    usage: Usage,
}

impl StreamTranslator {
    pub fn new(t: Translation, upstream_model: &str, created: u64, ids: CallIds) -> Self {
        Translated::with_state(State {
            t,
            created,
            upstream_model: upstream_model.to_string(),
            writer: None,
            ids,
            next_tool: 0,
            finished: false,
            usage: Usage::default(),
        })
    }
}

impl State {
    fn writer(&mut self) -> &ChunkWriter {
        let (created, model) = (self.created, &self.upstream_model);
        self.writer
            .get_or_insert_with(|| ChunkWriter::new("chatcmpl-gemini", model, created))
    }
}

impl translate::Events for State {
    /// Gemini's counts are cumulative: the last report holds.
    fn usage(&self) -> Option<Usage> {
        Some(self.usage)
    }

    /// After the last event: closes a finished stream; false when it never finished.
    fn end(&mut self, out: &mut Vec<u8>) -> bool {
        if !self.finished {
            return false;
        }
        if self.t.include_usage {
            let usage = self.usage;
            self.writer().usage(out, &usage);
        }
        out.extend_from_slice(chunk::DONE);
        true
    }

    /// Translates one event into `out`; true when the stream is over (an error).
    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        if self.writer.is_some() {
            if let Some(literal) = fast_text(data) {
                self.writer()
                    .delta(out, Delta::ContentLiteral(literal), None);
                return false;
            }
        }
        let r: GResponse<'_> = match serde_json::from_slice(data) {
            Ok(r) => r,
            Err(_) => return translate::unreadable_event(out, at_end),
        };
        if let Some(e) = r.error {
            let code = super::static_code(e.status.as_deref().unwrap_or("UNKNOWN"));
            let message = e
                .message
                .as_deref()
                .unwrap_or("The provider reported an error.");
            translate::error_event(out, code.as_str(), message);
            return true;
        }
        if self.writer.is_none() {
            let id = format!("chatcmpl-{}", r.response_id.as_deref().unwrap_or("gemini"));
            let model = r
                .model_version
                .as_deref()
                .unwrap_or(&self.upstream_model)
                .to_string();
            let w = ChunkWriter::new(&id, &model, self.created);
            w.delta(out, Delta::Role, None);
            self.writer = Some(w);
        }
        if let Some(u) = r.usage_metadata {
            self.usage = u.into();
        }
        if let Some(c) = r.candidates.first() {
            for p in c.content.iter().flat_map(|c| &c.parts) {
                if let Some(f) = &p.function_call {
                    let id = self.ids.next();
                    let index = self.next_tool;
                    self.next_tool += 1;
                    let arguments = arguments_of(f);
                    self.writer().delta(
                        out,
                        Delta::ToolStart {
                            index,
                            id: &id,
                            name: &f.name,
                            arguments: &arguments,
                        },
                        None,
                    );
                } else if let Some(t) = p.text.as_deref().filter(|t| !t.is_empty()) {
                    let d = if p.thought == Some(true) {
                        Delta::Reasoning(t)
                    } else {
                        Delta::Content(t)
                    };
                    self.writer().delta(out, d, None);
                }
            }
            if let Some(reason) = &c.finish_reason {
                let reason = finish_reason(reason, self.next_tool > 0);
                self.writer().delta(out, Delta::Empty, Some(reason));
                self.finished = true;
            }
        } else if r.prompt_feedback.is_some() {
            self.writer()
                .delta(out, Delta::Empty, Some("content_filter"));
            self.finished = true;
        }
        false
    }
}

/// Skips whitespace, then each token in turn (with whitespace allowed between them).
fn tokens<'a>(mut b: &'a [u8], expected: &[&[u8]]) -> Option<&'a [u8]> {
    for t in expected {
        b = b.trim_ascii_start().strip_prefix(*t)?;
    }
    Some(b.trim_ascii_start())
}

static FINISH_REASON: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"finishReason\""));

// hot path: most events of a Gemini stream hold one text part and nothing else that
// matters before the last one; reading them by their bytes skips a full JSON parse and
// re-escaping. Anything else (thoughts, calls, several parts, the final event) takes the
// general path.
/// The text literal of an event whose only part is plain text and that does not finish.
fn fast_text(data: &[u8]) -> Option<&[u8]> {
    let rest = tokens(
        data,
        &[
            b"{",
            b"\"candidates\"",
            b":",
            b"[",
            b"{",
            b"\"content\"",
            b":",
            b"{",
            b"\"parts\"",
            b":",
            b"[",
            b"{",
            b"\"text\"",
            b":",
        ],
    )?;
    let len = chunk::json_string_literal(rest)?;
    let after = tokens(&rest[len..], &[b"}", b"]"])?;
    if FINISH_REASON.find(after).is_some() {
        return None;
    }
    Some(&rest[..len])
}

#[cfg(test)]
mod tests;

/// Watches a Gemini stream passed through unchanged, for its usage and its end: only events
/// that carry `usageMetadata`, a `finishReason` or an `error` are parsed. (Gemini sends no
/// other end marker.)
pub type PassThrough = crate::stream::watch::Watched<PassState>;

/// What a passed-through Gemini stream told of its usage.
#[derive(Default)]
pub struct PassState {
    usage: Usage,
}

impl crate::stream::watch::Watch for PassState {
    fn observe(&mut self, data: &[u8]) -> bool {
        let has = |needle: &[u8]| memchr::memmem::find(data, needle).is_some();
        let finished = has(b"\"finishReason\"") || has(b"\"error\"");
        if !finished && !has(b"\"usageMetadata\"") {
            return false;
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Report {
            #[serde(default)]
            usage_metadata: Option<GUsage>,
        }
        if let Ok(Report {
            usage_metadata: Some(u),
        }) = serde_json::from_slice::<Report>(data)
        {
            self.usage = u.into();
        }
        finished
    }

    fn usage(&self) -> Option<Usage> {
        Some(self.usage)
    }
}
