//! What the translating front doors share of OpenAI chat completions: the chunk of a chat
//! stream as they read it, and small helpers for the raw JSON they copy into their answers.

use crate::error::{Code, GatewayError, Printable};
use crate::usage::{OpenAiUsage, Usage};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::marker::PhantomData;

// ---------------------------------------------------------------------------------------
// Requests

/// A 400 `invalid_request_error` about the request field `param`.
pub(crate) fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::invalid_request(message).param(param)
}

/// A client's request body as a JSON object (a 400 when it is not JSON, or not an object).
pub(crate) fn request_object(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!(
            "The request body is not valid JSON: {}",
            Printable(&e.to_string())
        ))
        .code(Code::InvalidJson)
    })?;
    let Value::Object(req) = v else {
        return Err(
            GatewayError::invalid_request("The request body must be a JSON object.")
                .code(Code::InvalidJson),
        );
    };
    Ok(req)
}

/// A piece of a user (or assistant) message as a door reads it: text, or an image as chat's
/// `image_url` object.
pub(crate) enum Piece {
    Text(String),
    Image(Value),
}

impl Piece {
    /// An image by its URL (a data URL or a link).
    pub(crate) fn image_url(url: String) -> Piece {
        Piece::Image(json!({ "url": url }))
    }
}

/// A chat message's `content` from its pieces: content parts when it holds an image, else
/// the texts joined by lines. `None` when there is nothing.
pub(crate) fn message_content(pieces: Vec<Piece>) -> Option<Value> {
    if pieces.is_empty() {
        return None;
    }
    if pieces.iter().any(|p| matches!(p, Piece::Image(_))) {
        let parts = pieces.into_iter().map(|p| match p {
            Piece::Text(text) => json!({"type": "text", "text": text}),
            Piece::Image(image) => json!({"type": "image_url", "image_url": image}),
        });
        return Some(Value::Array(parts.collect()));
    }
    let mut text = String::new();
    for p in &pieces {
        if let Piece::Text(t) = p {
            join_line(&mut text, t);
        }
    }
    Some(Value::String(text))
}

/// An assistant chat message from its text and tool calls; `None` when it holds neither.
pub(crate) fn assistant_message(text: String, calls: Vec<Value>) -> Option<Value> {
    if text.is_empty() && calls.is_empty() {
        return None;
    }
    let mut m = Map::new();
    m.insert("role".into(), "assistant".into());
    let content = if text.is_empty() {
        Value::Null
    } else {
        text.into()
    };
    m.insert("content".into(), content);
    if !calls.is_empty() {
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    Some(Value::Object(m))
}

/// A request's `tools`, each an object: empty when there are none.
pub(crate) fn tool_objects(v: Option<Value>) -> Result<Vec<Map<String, Value>>, GatewayError> {
    let tools = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(invalid("`tools` must be an array.", "tools")),
    };
    tools
        .into_iter()
        .map(|tool| match tool {
            Value::Object(t) => Ok(t),
            _ => Err(invalid("Every tool must be an object.", "tools")),
        })
        .collect()
}

/// Takes the string field `key` out of `object`; `missing` says what is wrong otherwise.
pub(crate) fn take_string(
    object: &mut Map<String, Value>,
    key: &str,
    missing: impl FnOnce() -> GatewayError,
) -> Result<String, GatewayError> {
    match object.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(missing()),
    }
}

// ---------------------------------------------------------------------------------------
// Text

/// Appends `piece` to `acc`, with a line break between non-empty pieces.
pub(crate) fn join_line(acc: &mut String, piece: &str) {
    if piece.is_empty() {
        return;
    }
    if !acc.is_empty() {
        acc.push('\n');
    }
    acc.push_str(piece);
}

/// A non-empty string.
pub(crate) fn text_in(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// The request's `stream` flag (absent or null: false); a streamed request's chat form
/// streams and reports its usage.
pub(crate) fn stream_flag(
    req: &mut Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<bool, GatewayError> {
    let stream = match req.remove("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(invalid("`stream` must be a boolean.", "stream")),
    };
    if stream {
        out.insert("stream".into(), true.into());
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(stream)
}

/// Where a stream encoder keeps the tool call of chat `index`: found by `index_of`, or made
/// by `new` the first time the index comes.
pub(crate) fn call_at<T>(
    calls: &mut Vec<T>,
    index: u32,
    index_of: impl Fn(&T) -> u32,
    new: impl FnOnce(u32) -> T,
) -> usize {
    match calls.iter().position(|c| index_of(c) == index) {
        Some(at) => at,
        None => {
            calls.push(new(index));
            calls.len() - 1
        }
    }
}

/// Writes `s` as a JSON string literal.
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

// ---------------------------------------------------------------------------------------
// Whole response (`chat.completion`)

/// A chat `finish_reason` as one of the four the doors tell apart (`stop` for any other).
pub(crate) fn finish_of(reason: &str) -> &'static str {
    match reason {
        "length" => "length",
        "content_filter" => "content_filter",
        "tool_calls" | "function_call" => "tool_calls",
        _ => "stop",
    }
}

/// A chat message's reasoning, if it has any (`reasoning_content`, else `reasoning`).
pub(crate) fn reasoning_text(message: &Value) -> Option<&str> {
    text_in(&message["reasoning_content"]).or(text_in(&message["reasoning"]))
}

/// A chat message's `content`: its parts' texts one a line when it is an array (some
/// backends answer so), else the string when it is a non-empty one.
pub(crate) fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::Array(parts) => {
            let mut text = String::new();
            for p in parts {
                join_line(&mut text, p["text"].as_str().unwrap_or(""));
            }
            Some(text)
        }
        c => text_in(c).map(str::to_string),
    }
}

/// A tool call's `function.arguments` as the JSON object they encode (`{}` when they are not
/// one).
pub(crate) fn arguments_object(function: &Value) -> Value {
    function["arguments"]
        .as_str()
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Default::default()))
}

/// The tokens of a completion's `usage`, when it has a readable one.
pub(crate) fn usage_of(completion: &Value) -> Option<Usage> {
    serde_json::from_value::<OpenAiUsage>(completion["usage"].clone())
        .ok()
        .map(Usage::from)
}

// ---------------------------------------------------------------------------------------
// Streams (`chat.completion.chunk`)

/// A `chat.completion.chunk`, as far as it is read. Strings that are copied into the output
/// stay raw JSON literals: never unescaped and escaped again.
#[derive(Deserialize)]
pub(crate) struct Chunk<'a> {
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    /// Raw: only the Responses door reads it, and it alone refuses a chunk where it is not
    /// a whole number (see [`Chunk::created`]).
    #[serde(default, borrow)]
    pub created: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub choices: First<ChunkChoice<'a>>,
    #[serde(default)]
    pub usage: Option<OpenAiUsage>,
}

impl Chunk<'_> {
    /// `created`, where the chunk has it; an error where it is not a whole number.
    pub fn created(&self) -> Result<Option<u64>, serde_json::Error> {
        self.created
            .map(|r| serde_json::from_str(r.get()))
            .transpose()
    }
}

/// The first (only) choice of a chunk.
#[derive(Deserialize)]
pub(crate) struct ChunkChoice<'a> {
    #[serde(default, borrow)]
    pub delta: Option<ChunkDelta<'a>>,
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// A choice's `delta`: text as raw literals.
#[derive(Deserialize)]
pub(crate) struct ChunkDelta<'a> {
    #[serde(default, borrow)]
    pub content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub refusal: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub reasoning_content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub reasoning: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

/// A fragment of one tool call (`index`).
#[derive(Deserialize)]
pub(crate) struct ToolCallDelta<'a> {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub function: Option<FunctionDelta<'a>>,
}

impl<'a> ToolCallDelta<'a> {
    /// Sets `id` and `name` from the fragment where they are still empty; the fragment's
    /// arguments (raw) are left to the caller.
    pub fn fill(self, id: &mut String, name: &mut String) -> Option<&'a RawValue> {
        if id.is_empty() {
            if let Some(i) = self.id {
                *id = i.into_owned();
            }
        }
        let f = self.function?;
        if name.is_empty() {
            if let Some(n) = f.name {
                *name = n.into_owned();
            }
        }
        f.arguments
    }
}

/// A fragment of a tool call's function: `arguments` as a raw literal.
#[derive(Deserialize)]
pub(crate) struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub arguments: Option<&'a RawValue>,
}

/// The first element of a JSON array (or nothing, for null); the others are skipped (no
/// `Vec` per chunk).
pub(crate) struct First<T>(pub Option<T>);

impl<T> Default for First<T> {
    fn default() -> Self {
        First(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FirstVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for FirstVisitor<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array or null")
            }
            fn visit_unit<E>(self) -> Result<First<T>, E> {
                Ok(First(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First<T>, A::Error> {
                let first = seq.next_element()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_any(FirstVisitor(PhantomData))
    }
}

/// The literal (quotes included) of a raw value that is a non-empty JSON string.
pub(crate) fn literal(raw: Option<&RawValue>) -> Option<&[u8]> {
    let s = raw?.get();
    (s.len() > 2 && s.starts_with('"')).then_some(s.as_bytes())
}

/// The escaped inside (quotes left off) of a raw value that is a non-empty JSON string.
pub(crate) fn inside(raw: Option<&RawValue>) -> Option<&[u8]> {
    literal(raw).map(|l| &l[1..l.len() - 1])
}

/// The text of a raw value that is a JSON string, unescaped (borrowed when it has no
/// escapes); `None` for any other value.
pub(crate) fn unescaped(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get();
    if !s.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(s) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(s).ok().map(Cow::Owned),
    }
}
