//! The mock upstream: speaks OpenAI chat completions, Anthropic Messages and Gemini
//! generateContent / streamGenerateContent (`alt=sse`), shaped like the real captures in
//! `tests/fixtures/providers/`, with per-request fault injection through `x-mock-*` headers.
//! Used by the tests, the demo and the load tests.

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_http::ResponseHeader;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Behaviour of a request; each field can be set per request by its `x-mock-*` header.
#[derive(Debug, Clone, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Controls {
    /// `x-mock-ttft-ms`: delay before the first token (streams: after the header).
    #[arg(long, default_value_t = 0)]
    pub ttft_ms: u64,
    /// `x-mock-chunk-delay-ms`: delay between stream chunks.
    #[arg(long, default_value_t = 0)]
    pub chunk_delay_ms: u64,
    /// `x-mock-chunks`: number of content chunks (tokens) in the answer.
    #[arg(long, default_value_t = 8)]
    pub chunks: u64,
    /// `x-mock-status`: answer with this status and the provider's error body.
    #[arg(long)]
    pub status: Option<u16>,
    /// `x-mock-retry-after`: `Retry-After` seconds sent with an error status.
    #[arg(long)]
    pub retry_after: Option<u64>,
    /// `x-mock-fail-rate`: fraction (0..1) of requests that fail with `status` (default 500).
    #[arg(long)]
    pub fail_rate: Option<f64>,
    /// `x-mock-fail-with`: with `fail_rate`, the failures to pick from at random: statuses,
    /// `reset` (close the connection without answering) and `stall` (answer nothing for
    /// `stall_ms`, default 10 s), comma-separated.
    #[arg(long)]
    pub fail_with: Option<String>,
    /// `x-mock-cut-after`: close the connection after this many chunks.
    #[arg(long)]
    pub cut_after: Option<u64>,
    /// `x-mock-stall-ms`: wait this long before answering anything (not even a header).
    #[arg(long, default_value_t = 0)]
    pub stall_ms: u64,
    /// `x-mock-hold-after`: streams send this many content chunks, then hold the stream open
    /// (sending nothing) until the client leaves, or for `stall_ms` (default 30 s).
    #[arg(long)]
    pub hold_after: Option<u64>,
    /// `x-mock-cached-tokens`: report this many of the prompt's tokens as read from cache.
    #[arg(long, default_value_t = 0)]
    pub cached_tokens: u64,
}

impl Default for Controls {
    /// The same defaults as the flags.
    fn default() -> Self {
        Controls {
            ttft_ms: 0,
            chunk_delay_ms: 0,
            chunks: 8,
            status: None,
            retry_after: None,
            fail_rate: None,
            fail_with: None,
            cut_after: None,
            stall_ms: 0,
            hold_after: None,
            cached_tokens: 0,
        }
    }
}

impl Controls {
    fn for_request(&self, session: &ServerSession) -> Controls {
        let h = |name: &str| -> Option<&str> {
            session
                .req_header()
                .headers
                .get(name)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                .map(str::trim)
        };
        let mut c = self.clone();
        if let Some(v) = h("x-mock-ttft-ms").and_then(|v| v.parse().ok()) {
            c.ttft_ms = v;
        }
        if let Some(v) = h("x-mock-chunk-delay-ms").and_then(|v| v.parse().ok()) {
            c.chunk_delay_ms = v;
        }
        if let Some(v) = h("x-mock-chunks").and_then(|v| v.parse().ok()) {
            c.chunks = v;
        }
        if let Some(v) = h("x-mock-status").and_then(|v| v.parse().ok()) {
            c.status = Some(v);
        }
        if let Some(v) = h("x-mock-retry-after").and_then(|v| v.parse().ok()) {
            c.retry_after = Some(v);
        }
        if let Some(v) = h("x-mock-fail-rate").and_then(|v| v.parse().ok()) {
            c.fail_rate = Some(v);
        }
        if let Some(v) = h("x-mock-fail-with") {
            c.fail_with = Some(v.to_string());
        }
        if let Some(v) = h("x-mock-cut-after").and_then(|v| v.parse().ok()) {
            c.cut_after = Some(v);
        }
        if let Some(v) = h("x-mock-stall-ms").and_then(|v| v.parse().ok()) {
            c.stall_ms = v;
        }
        if let Some(v) = h("x-mock-hold-after").and_then(|v| v.parse().ok()) {
            c.hold_after = Some(v);
        }
        if let Some(v) = h("x-mock-cached-tokens").and_then(|v| v.parse().ok()) {
            c.cached_tokens = v;
        }
        c
    }

    /// How this request must fail, if it must.
    fn failure(&self) -> Option<Fault> {
        match self.fail_rate {
            Some(rate) if fastrand::f64() < rate => match &self.fail_with {
                Some(list) => {
                    let options: Vec<&str> = list.split(',').map(str::trim).collect();
                    match options[fastrand::usize(..options.len())] {
                        "reset" => Some(Fault::Reset),
                        "stall" => Some(Fault::Stall),
                        s => Some(Fault::Status(s.parse().unwrap_or(500))),
                    }
                }
                None => Some(Fault::Status(self.status.unwrap_or(500))),
            },
            Some(_) => None,
            None => self
                .status
                .filter(|s| !(200..300).contains(s))
                .map(Fault::Status),
        }
    }
}

/// An injected failure.
enum Fault {
    Status(u16),
    /// Close the connection without an answer.
    Reset,
    /// Answer nothing for a long time.
    Stall,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

/// Counters served at `GET /mock/stats`, so tests can see what reached the upstream.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    streams_completed: AtomicU64,
    /// Streams whose client (the gateway) went away before the end.
    streams_aborted: AtomicU64,
    /// What the mock billed, per wire (OpenAI, Anthropic, Gemini).
    billed: std::sync::Mutex<[Billed; 3]>,
}

/// Tokens a provider bills, in OpenAI's sense (input includes cached and cache-written
/// tokens, output includes reasoning). For an answer it completed: what it reported. For a
/// stream cut short (by the client or on purpose): the prompt as a tokenizer counts it and the
/// text chunks it sent, counted the same way (as a real provider bills an aborted stream).
#[derive(Default, Clone, Copy, Debug, serde::Serialize)]
pub struct Billed {
    pub requests: u64,
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

impl Stats {
    fn bill(&self, wire: Wire, b: Billed) {
        let mut all = self.billed.lock().unwrap_or_else(|e| e.into_inner());
        let t = &mut all[wire as usize];
        t.requests += 1;
        t.input += b.input;
        t.output += b.output;
        t.cached_input += b.cached_input;
        t.cache_write += b.cache_write;
        t.reasoning += b.reasoning;
    }
}

/// The mock upstream application.
pub struct Mock {
    /// The flags' defaults, replaced at run time by `POST /mock/controls`.
    defaults: std::sync::RwLock<Controls>,
    initial: Controls,
    options: HttpServerOptions,
    next_id: AtomicU64,
    stats: Stats,
}

impl Mock {
    pub fn new(defaults: Controls) -> Self {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        Mock {
            defaults: std::sync::RwLock::new(defaults.clone()),
            initial: defaults,
            options,
            next_id: AtomicU64::new(1),
            stats: Stats::default(),
        }
    }
}

#[derive(Deserialize, Default)]
struct RequestShape {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

const WORDS: [&str; 8] = [
    "Hello",
    " from",
    " the",
    " Junction",
    " mock",
    " upstream",
    ",",
    " friend",
];

/// Tokens of each of [`WORDS`], as `o200k_base` counts them (and every family the mock
/// stands in for: each is one common word). The mock's own bill, not the gateway's estimator;
/// a unit test checks the table against the tokenizer.
const WORD_TOKENS: [u64; 8] = [1, 1, 1, 1, 1, 1, 1, 1];

/// What one answer holds.
struct Answer {
    wire: Wire,
    id: String,
    model: String,
    include_usage: bool,
    prompt_tokens: u64,
    /// Of `prompt_tokens`, reported as read from cache.
    cached: u64,
    /// Text of the echo (`x-mock-echo`), or generated words.
    echo: Option<String>,
    /// Answer with a call to this tool (the request offered tools and is not a tool result).
    tool: Option<String>,
    /// Its arguments: `{"city": "Paris"}`, or, for a tool the request forces, a value its
    /// schema allows (a structured-output tool's answer).
    tool_args: String,
    /// Think before answering (the request asked for reasoning).
    thinking: bool,
    /// Images in the request; the answer says how many it saw.
    images: usize,
}

/// Arguments of the mock's tool calls, and the pieces they stream in.
const TOOL_ARGS: [&str; 2] = ["{\"city\": ", "\"Paris\"}"];
const THOUGHT: &str = "Let me think about that.";

impl Answer {
    fn piece(&self, i: u64) -> String {
        match &self.echo {
            // The echo comes whole in the first chunk.
            Some(e) => {
                if i == 0 {
                    e.clone()
                } else {
                    String::new()
                }
            }
            None if i == 0 && self.images > 0 => {
                format!("I see {} image(s). {}", self.images, WORDS[0])
            }
            None => WORDS[(i % WORDS.len() as u64) as usize].to_string(),
        }
    }

    /// The tool call's arguments in the two pieces they stream in.
    fn arg_pieces(&self) -> [&str; 2] {
        let mut at = self.tool_args.len() / 2;
        while !self.tool_args.is_char_boundary(at) {
            at += 1;
        }
        let (a, b) = self.tool_args.split_at(at);
        [a, b]
    }

    fn text(&self, chunks: u64) -> String {
        (0..chunks).map(|i| self.piece(i)).collect()
    }

    /// Reasoning tokens reported: the thought, on the wires that count it apart.
    fn reasoning(&self) -> u64 {
        if self.thinking && self.wire != Wire::Anthropic {
            3
        } else {
            0
        }
    }

    /// What a completed answer of `chunks` reports, in OpenAI's sense.
    fn billed(&self, chunks: u64) -> Billed {
        Billed {
            requests: 1,
            input: self.prompt_tokens,
            output: chunks + self.reasoning(),
            cached_input: self.cached,
            cache_write: 0,
            reasoning: self.reasoning(),
        }
    }

    /// What a stream cut short after `sent` text chunks bills, as a provider bills it: the
    /// prompt as the mock counted it and had reported (Anthropic's `message_start`, Gemini's
    /// first chunk), and the tokens it generated, from its own table of its words. Neither is
    /// the gateway's estimator, so a test comparing the ledger with this bill catches an
    /// estimate that is wrong. The OpenAI wire reports nothing before its end: its prompt is
    /// counted as OpenAI counts a chat (its published tokenizer and framing).
    fn billed_partial(&self, body: &[u8], sent: u64) -> Billed {
        let t = crate::usage::estimate::Tokenizer::for_model(&self.model);
        let output = if self.echo.is_none() && self.images == 0 {
            (0..sent)
                .map(|i| WORD_TOKENS[(i % WORDS.len() as u64) as usize])
                .sum()
        } else {
            let text: String = (0..sent).map(|i| self.piece(i)).collect();
            t.count(&text)
        };
        let (input, cached) = match self.wire {
            Wire::Anthropic | Wire::Gemini if sent > 0 => (self.prompt_tokens, self.cached),
            _ => (prompt_count(self.wire, body, t), 0),
        };
        Billed {
            requests: 1,
            input,
            output,
            cached_input: cached,
            ..Default::default()
        }
    }
}

/// The prompt of a request in this wire format, counted as OpenAI counts a chat (so that
/// the same conversation counts the same in every format).
fn prompt_count(wire: Wire, body: &[u8], t: crate::usage::estimate::Tokenizer) -> u64 {
    use crate::usage::estimate::{openai_conversation, texts_of, Conversation, Message};
    use serde_json::Value;
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    if wire == Wire::OpenAi {
        return openai_conversation(&v).tokens(t);
    }
    fn message<'a>(role: &'a str, content: &'a Value) -> Message<'a> {
        Message {
            role,
            texts: texts_of(content),
            ..Default::default()
        }
    }
    let mut messages = Vec::new();
    match wire {
        Wire::Anthropic => {
            messages.extend(v.get("system").map(|s| message("system", s)));
            for m in v["messages"].as_array().into_iter().flatten() {
                messages.push(message(m["role"].as_str().unwrap_or(""), &m["content"]));
            }
        }
        _ => {
            messages.extend(
                v.get("systemInstruction")
                    .map(|s| message("system", &s["parts"])),
            );
            for m in v["contents"].as_array().into_iter().flatten() {
                let role = match m["role"].as_str() {
                    Some("model") => "assistant",
                    _ => "user",
                };
                messages.push(message(role, &m["parts"]));
            }
        }
    }
    Conversation {
        messages,
        tools: Vec::new(),
    }
    .tokens(t)
}

/// The answer to a request for structured output: a JSON value its schema allows (the
/// first of each choice, every property), as text. OpenAI's `response_format`, Anthropic's
/// `output_config.format` (and the beta's `output_format`), Gemini's `responseJsonSchema` or
/// `responseSchema`.
fn structured(wire: Wire, body: &[u8]) -> Option<String> {
    let has = |needle: &[u8]| memchr::memmem::find(body, needle).is_some();
    if !has(b"schema") && !has(b"Schema") && !has(b"json_object") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let schema = match wire {
        Wire::OpenAi => {
            let f = &v["response_format"];
            match f["type"].as_str()? {
                "json_schema" => f["json_schema"]["schema"].clone(),
                "json_object" => return Some("{}".into()),
                _ => return None,
            }
        }
        Wire::Anthropic => {
            let f = v["output_config"]
                .get("format")
                .or_else(|| v.get("output_format"))?;
            (f["type"] == "json_schema").then(|| f["schema"].clone())?
        }
        Wire::Gemini => {
            let g = &v["generationConfig"];
            g.get("responseJsonSchema")
                .or_else(|| g.get("responseSchema"))?
                .clone()
        }
    };
    Some(instance(&schema, &schema, 0).to_string())
}

/// A value `schema` allows; `root` holds its `$defs`.
fn instance(schema: &serde_json::Value, root: &serde_json::Value, depth: u32) -> serde_json::Value {
    use serde_json::{json, Value};
    if depth > 8 {
        return Value::Null;
    }
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or("");
        let def = root["$defs"]
            .get(name)
            .or_else(|| root["definitions"].get(name));
        return def.map_or(Value::Null, |d| instance(d, root, depth + 1));
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(options) = schema[key].as_array() {
            let pick = options
                .iter()
                .find(|o| o["type"] != "null")
                .or(options.first());
            return pick.map_or(Value::Null, |o| instance(o, root, depth + 1));
        }
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.to_ascii_lowercase(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_ascii_lowercase(),
        _ if schema.get("properties").is_some() => "object".into(),
        _ => "string".into(),
    };
    match kind.as_str() {
        "object" => {
            let mut o = serde_json::Map::new();
            for (k, p) in schema["properties"].as_object().into_iter().flatten() {
                o.insert(k.clone(), instance(p, root, depth + 1));
            }
            Value::Object(o)
        }
        "array" => json!([instance(&schema["items"], root, depth + 1)]),
        "integer" => json!(1),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => match schema["format"].as_str() {
            Some("date") => json!("2026-01-01"),
            Some("date-time") => json!("2026-01-01T00:00:00Z"),
            _ => json!("Paris"),
        },
    }
}

/// What a request asks of the answer beyond text: read only when the body mentions it, so
/// that plain load-test requests are not parsed twice.
#[allow(clippy::type_complexity)]
fn extras(wire: Wire, body: &[u8]) -> (Option<(String, Option<String>)>, bool, usize) {
    let has = |needle: &[u8]| memchr::memmem::find(body, needle).is_some();
    if !has(b"tools")
        && !has(b"image")
        && !has(b"thinking")
        && !has(b"reasoning_effort")
        && !has(b"Data")
    {
        return (None, false, 0);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, false, 0);
    };
    let text = v.to_string();
    let images = match wire {
        Wire::OpenAi => text.matches("\"type\":\"image_url\"").count(),
        Wire::Anthropic => text.matches("\"type\":\"image\"").count(),
        Wire::Gemini => {
            text.matches("\"inlineData\"").count() + text.matches("\"fileData\"").count()
        }
    };
    let (tool, answered, thinking) = match wire {
        Wire::OpenAi => (
            v["tools"][0]["function"]["name"].as_str(),
            v["messages"]
                .as_array()
                .and_then(|m| m.last())
                .is_some_and(|m| m["role"] == "tool"),
            v.get("reasoning_effort").is_some_and(|e| e != "none"),
        ),
        Wire::Anthropic => (
            v["tools"][0]["name"].as_str(),
            v["messages"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_array())
                .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result")),
            v["thinking"]["type"] == "enabled",
        ),
        Wire::Gemini => (
            v["tools"][0]["functionDeclarations"][0]["name"].as_str(),
            v["contents"]
                .as_array()
                .and_then(|c| c.last())
                .and_then(|c| c["parts"].as_array())
                .is_some_and(|p| p.iter().any(|x| x.get("functionResponse").is_some())),
            v["generationConfig"]["thinkingConfig"]["includeThoughts"] == true,
        ),
    };
    // A tool the request forces (how structured output rides on a tool) is the one called,
    // with arguments its schema allows.
    let tools = match wire {
        Wire::OpenAi => v["tools"].as_array(),
        Wire::Anthropic => v["tools"].as_array(),
        Wire::Gemini => v["tools"][0]["functionDeclarations"].as_array(),
    };
    let forced = match wire {
        Wire::OpenAi => v["tool_choice"]["function"]["name"].as_str(),
        Wire::Anthropic => Some(&v["tool_choice"])
            .filter(|c| c["type"] == "tool")
            .and_then(|c| c["name"].as_str()),
        Wire::Gemini => Some(&v["toolConfig"]["functionCallingConfig"])
            .filter(|c| c["mode"] == "ANY")
            .and_then(|c| c["allowedFunctionNames"][0].as_str()),
    };
    let forced = forced.and_then(|name| {
        let t = tools?.iter().find(|t| match wire {
            Wire::OpenAi => t["function"]["name"] == name,
            _ => t["name"] == name,
        })?;
        let schema = match wire {
            Wire::OpenAi => &t["function"]["parameters"],
            Wire::Anthropic => &t["input_schema"],
            Wire::Gemini => t.get("parametersJsonSchema").unwrap_or(&t["parameters"]),
        };
        Some((
            name.to_string(),
            Some(instance(schema, schema, 0).to_string()),
        ))
    });
    let tool = forced
        .or_else(|| tool.map(|t| (t.to_string(), None)))
        .filter(|_| !answered);
    (tool, thinking, images)
}

/// The signature the mock gives Gemini function calls (Gemini 3 sends one with each; base64,
/// as Google's SDKs require).
const THOUGHT_SIGNATURE: &str = "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ==";

/// Why a request that replays a signature the mock never made would be refused, as Anthropic
/// ("Invalid `signature` in `thinking` block") and Gemini ("Corrupted thought signature.")
/// refuse them: the proof that a gateway never sends one backend's signature to another.
fn foreign_signature(wire: Wire, body: &[u8]) -> Option<&'static str> {
    let has = |needle: &[u8]| memchr::memmem::find(body, needle).is_some();
    match wire {
        Wire::Anthropic if has(b"\"thinking\"") => {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            let blocks = v["messages"]
                .as_array()?
                .iter()
                .filter_map(|m| m["content"].as_array());
            blocks
                .flatten()
                .any(|b| b["type"] == "thinking" && b["signature"] != "mock-signature")
                .then_some("messages: Invalid `signature` in `thinking` block")
        }
        Wire::Gemini if has(b"thoughtSignature") => {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            let parts = v["contents"]
                .as_array()?
                .iter()
                .filter_map(|c| c["parts"].as_array());
            parts
                .flatten()
                .any(|p| {
                    p.get("thoughtSignature")
                        .is_some_and(|s| s != THOUGHT_SIGNATURE)
                })
                .then_some("Corrupted thought signature.")
        }
        _ => None,
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[async_trait]
impl HttpServerApp for Mock {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let timeout = crate::net::session::HEADER_TIMEOUT;
        if !crate::net::session::read_request(&mut session, shutdown, timeout).await {
            return None;
        }
        session.set_keepalive(Some(60));
        session.set_abort_on_close(true);
        let keep = self.serve(&mut session).await;
        crate::net::session::finish(session, !keep).await
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

impl Mock {
    /// Serves one request; false when the connection must be closed.
    async fn serve(&self, session: &mut ServerSession) -> bool {
        let controls = self
            .defaults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .for_request(session);
        let method = session.req_header().method.as_str().to_string();
        let path = session.req_header().uri.path().to_string();
        let query = session.req_header().uri.query().unwrap_or("").to_string();
        if method == "POST" && path == "/mock/controls" {
            // New defaults for every later request (`{}`: back to the flags' defaults).
            let mut body = Vec::new();
            while let Ok(Some(b)) = session.read_request_body().await {
                body.extend_from_slice(&b);
            }
            let parsed: Result<Option<Controls>, _> =
                if body.iter().all(u8::is_ascii_whitespace) || body == b"{}" {
                    Ok(None)
                } else {
                    serde_json::from_slice(&body).map(Some)
                };
            return match parsed {
                Ok(c) => {
                    *self.defaults.write().unwrap_or_else(|e| e.into_inner()) =
                        c.unwrap_or_else(|| self.initial.clone());
                    respond(
                        session,
                        200,
                        "application/json",
                        Bytes::from_static(b"{}"),
                        None,
                    )
                    .await
                }
                Err(e) => {
                    respond(session, 400, "text/plain", Bytes::from(e.to_string()), None).await
                }
            };
        }
        if method == "GET" && path == "/mock/stats" {
            let billed = *self.stats.billed.lock().unwrap_or_else(|e| e.into_inner());
            let body = serde_json::json!({
                "requests": self.stats.requests.load(Ordering::Relaxed),
                "streams_completed": self.stats.streams_completed.load(Ordering::Relaxed),
                "streams_aborted": self.stats.streams_aborted.load(Ordering::Relaxed),
                "billed": {"openai": billed[0], "anthropic": billed[1], "gemini": billed[2]},
            });
            return respond(
                session,
                200,
                "application/json",
                body.to_string().into(),
                None,
            )
            .await;
        }
        if method == "GET" {
            // Model lists (what health checks read) fail as chat requests would.
            if let Some(Fault::Status(status)) = controls.failure() {
                let wire = if path.starts_with("/v1beta/") {
                    Wire::Gemini
                } else {
                    Wire::OpenAi
                };
                return respond(
                    session,
                    status,
                    "application/json",
                    error_body(wire, status, "mock: injected failure"),
                    None,
                )
                .await;
            }
            let body = if path.starts_with("/v1beta/models") {
                r#"{"models":[{"name":"models/gemini-2.5-flash","supportedGenerationMethods":["generateContent"]}]}"#
            } else if path.ends_with("/models") {
                r#"{"object":"list","data":[{"id":"mock-model","object":"model","created":0,"owned_by":"mock"}]}"#
            } else if path == "/health" {
                r#"{"status":"ok"}"#
            } else {
                return respond(session, 404, "application/json", Bytes::from_static(br#"{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}"#), None).await;
            };
            return respond(
                session,
                200,
                "application/json",
                Bytes::from_static(body.as_bytes()),
                None,
            )
            .await;
        }
        let (wire, gemini_stream) = if path.ends_with("/chat/completions") {
            (Wire::OpenAi, false)
        } else if path.ends_with("/messages") {
            (Wire::Anthropic, false)
        } else if let Some(rest) = path.strip_prefix("/v1beta/models/") {
            if rest.ends_with(":streamGenerateContent") {
                (Wire::Gemini, true)
            } else if rest.ends_with(":generateContent") {
                (Wire::Gemini, false)
            } else {
                return respond(session, 404, "application/json", Bytes::from_static(br#"{"error":{"code":404,"message":"unknown method","status":"NOT_FOUND"}}"#), None).await;
            }
        } else {
            return respond(session, 404, "application/json", Bytes::from_static(br#"{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}"#), None).await;
        };
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        // Read the whole request body.
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(b)) => body.extend_from_slice(&b),
                Ok(None) => break,
                Err(_) => return false,
            }
        }
        if controls.stall_ms > 0 {
            tokio::time::sleep(Duration::from_millis(controls.stall_ms)).await;
        }
        // Like the real providers: a thinking signature the mock did not make is refused.
        if let Some(why) = foreign_signature(wire, &body) {
            return respond(
                session,
                400,
                "application/json",
                error_body(wire, 400, why),
                None,
            )
            .await;
        }
        let mut scratch = body.clone();
        let shape: RequestShape = match simd_json::serde::from_slice(&mut scratch) {
            Ok(s) => s,
            Err(_) => {
                return respond(
                    session,
                    400,
                    "application/json",
                    error_body(wire, 400, "mock: the request body is not valid JSON"),
                    None,
                )
                .await;
            }
        };
        match controls.failure() {
            Some(Fault::Status(status)) => {
                return respond(
                    session,
                    status,
                    "application/json",
                    error_body(wire, status, "mock: injected failure"),
                    controls.retry_after,
                )
                .await;
            }
            Some(Fault::Reset) => return false,
            Some(Fault::Stall) => {
                let ms = if controls.stall_ms > 0 {
                    controls.stall_ms
                } else {
                    10_000
                };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return false;
            }
            None => {}
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let echo = session
            .req_header()
            .headers
            .get("x-mock-echo")
            .map(|_| echo_of(session, &body));
        let model = match wire {
            Wire::Gemini => path
                .strip_prefix("/v1beta/models/")
                .and_then(|r| r.split(':').next())
                .unwrap_or("gemini")
                .to_string(),
            _ => shape.model.clone().unwrap_or_else(|| "mock-model".into()),
        };
        let (tool, thinking, images) = extras(wire, &body);
        let echo = echo.or_else(|| structured(wire, &body));
        let answer = Answer {
            wire,
            id: match wire {
                Wire::OpenAi => format!("chatcmpl-mock{id:016}"),
                Wire::Anthropic => format!("msg_mock{id:016}"),
                Wire::Gemini => format!("mock{id:016}"),
            },
            model,
            include_usage: shape
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            prompt_tokens: (body.len() as u64 / 4).max(1).max(controls.cached_tokens),
            cached: controls.cached_tokens,
            echo,
            tool_args: tool
                .as_ref()
                .and_then(|(_, a)| a.clone())
                .unwrap_or_else(|| TOOL_ARGS.concat()),
            tool: tool.map(|(t, _)| t),
            thinking,
            images,
        };
        let stream = match wire {
            Wire::Gemini => gemini_stream,
            _ => shape.stream.unwrap_or(false),
        };
        if wire == Wire::Gemini && gemini_stream && !query.contains("alt=sse") {
            return respond(
                session,
                400,
                "application/json",
                error_body(wire, 400, "mock: streamGenerateContent needs alt=sse"),
                None,
            )
            .await;
        }
        let body_in: &[u8] = &body;
        if stream {
            let (completed, sent) = stream_answer(session, &answer, &controls).await;
            match (completed == StreamEnd::Completed, sent) {
                (true, _) => self.stats.bill(wire, answer.billed(controls.chunks)),
                (false, Some(sent)) => self.stats.bill(wire, answer.billed_partial(body_in, sent)),
                // Nothing reached the client: nothing is billed.
                (false, None) => {}
            }
            let counter = match completed {
                StreamEnd::Completed => &self.stats.streams_completed,
                StreamEnd::ClientGone => &self.stats.streams_aborted,
                StreamEnd::Cut => return false,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            completed == StreamEnd::Completed
        } else {
            if controls.ttft_ms > 0 {
                tokio::time::sleep(Duration::from_millis(controls.ttft_ms)).await;
            }
            let body = whole_answer(&answer, controls.chunks);
            if let Some(cut) = controls.cut_after {
                // Announce the whole length, send part of it, then close.
                let mut h = ResponseHeader::build(200, Some(2)).expect("status");
                let _ = h.insert_header("content-type", "application/json");
                let _ = h.insert_header("content-length", body.len());
                if session.write_response_header(Box::new(h)).await.is_err() {
                    return false;
                }
                let part = (body.len() as u64 * cut / controls.chunks.max(1)) as usize;
                let part = part.min(body.len().saturating_sub(1));
                let _ = session
                    .write_response_body(Bytes::from(body).slice(..part), false)
                    .await;
                self.stats.bill(wire, answer.billed_partial(body_in, 0));
                return false;
            }
            self.stats.bill(wire, answer.billed(controls.chunks));
            respond(session, 200, "application/json", body.into(), None).await
        }
    }
}

fn echo_of(session: &ServerSession, body: &[u8]) -> String {
    let mut headers = serde_json::Map::new();
    for (k, v) in session.req_header().headers.iter() {
        headers.insert(
            k.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
        );
    }
    serde_json::json!({
        "method": session.req_header().method.as_str(),
        "version": format!("{:?}", session.req_header().version),
        "path": session.req_header().uri.to_string(),
        "bytes": body.len(),
        "peer": session.client_addr().map(|a| a.to_string()),
        "sha256": hex::encode(Sha256::digest(body)),
        "headers": headers,
    })
    .to_string()
}

async fn respond(
    session: &mut ServerSession,
    status: u16,
    content_type: &str,
    body: Bytes,
    retry_after: Option<u64>,
) -> bool {
    let mut h = ResponseHeader::build(status, Some(3)).expect("status");
    let _ = h.insert_header("content-type", content_type);
    let _ = h.insert_header("content-length", body.len());
    if let Some(s) = retry_after {
        let _ = h.insert_header("retry-after", s);
    }
    if session.write_response_header(Box::new(h)).await.is_err() {
        return false;
    }
    session.write_response_body(body, true).await.is_ok()
}

fn error_body(wire: Wire, status: u16, message: &str) -> Bytes {
    let m = json_str(message);
    let s = match wire {
        Wire::OpenAi => {
            let (t, code) = match status {
                401 => ("invalid_request_error", "\"invalid_api_key\""),
                429 => ("requests", "\"rate_limit_exceeded\""),
                400..=499 => ("invalid_request_error", "null"),
                _ => ("server_error", "null"),
            };
            format!(r#"{{"error":{{"message":{m},"type":"{t}","param":null,"code":{code}}}}}"#)
        }
        Wire::Anthropic => {
            let t = match status {
                401 => "authentication_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                400..=499 => "invalid_request_error",
                _ => "api_error",
            };
            format!(
                r#"{{"type":"error","error":{{"type":"{t}","message":{m}}},"request_id":"req_mock"}}"#
            )
        }
        Wire::Gemini => {
            let st = match status {
                400 => "INVALID_ARGUMENT",
                401 | 403 => "PERMISSION_DENIED",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            format!(r#"{{"error":{{"code":{status},"message":{m},"status":"{st}"}}}}"#)
        }
    };
    s.into()
}

fn whole_answer(a: &Answer, chunks: u64) -> Vec<u8> {
    let text = a.text(chunks);
    let (p, c, cached, r) = (a.prompt_tokens, chunks, a.cached, a.reasoning());
    let args = a.tool_args.clone();
    let input: serde_json::Value = serde_json::from_str(&args).unwrap_or_default();
    let v = match a.wire {
        Wire::OpenAi => {
            let mut message = serde_json::json!({"role": "assistant", "content": text, "refusal": null, "annotations": []});
            if let Some(tool) = &a.tool {
                message["content"] = serde_json::Value::Null;
                message["tool_calls"] = serde_json::json!([{"id": "call_mock1", "type": "function", "function": {"name": tool, "arguments": args}}]);
            }
            if a.thinking {
                message["reasoning_content"] = THOUGHT.into();
            }
            serde_json::json!({
                "id": a.id, "object": "chat.completion", "created": 1770933883, "model": a.model,
                "choices": [{"index": 0, "message": message, "logprobs": null,
                    "finish_reason": if a.tool.is_some() { "tool_calls" } else { "stop" }}],
                "usage": {"prompt_tokens": p, "completion_tokens": c + r, "total_tokens": p + c + r,
                    "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": r, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
                "service_tier": "default", "system_fingerprint": "fp_mock"
            })
        }
        Wire::Anthropic => {
            let mut content = Vec::new();
            if a.thinking {
                content.push(serde_json::json!({"type": "thinking", "thinking": THOUGHT, "signature": "mock-signature"}));
            }
            match &a.tool {
                Some(tool) => {
                    content.push(serde_json::json!({"type": "text", "text": "Let me check."}));
                    content.push(serde_json::json!({"type": "tool_use", "id": "toolu_mock1", "name": tool, "input": input}));
                }
                None => content.push(serde_json::json!({"type": "text", "text": text})),
            }
            serde_json::json!({
                "model": a.model, "id": a.id, "type": "message", "role": "assistant", "content": content,
                "stop_reason": if a.tool.is_some() { "tool_use" } else { "end_turn" }, "stop_sequence": null,
                "usage": {"input_tokens": p - cached, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached, "output_tokens": c, "service_tier": "standard"}
            })
        }
        Wire::Gemini => {
            let mut parts = Vec::new();
            if a.thinking {
                parts.push(serde_json::json!({"text": THOUGHT, "thought": true}));
            }
            match &a.tool {
                Some(tool) => parts.push(serde_json::json!({
                    "functionCall": {"name": tool, "args": input},
                    "thoughtSignature": THOUGHT_SIGNATURE,
                })),
                None => parts.push(serde_json::json!({"text": text})),
            }
            let thoughts = if a.thinking { 3 } else { 0 };
            serde_json::json!({
                "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c + thoughts, "thoughtsTokenCount": thoughts, "cachedContentTokenCount": cached},
                "modelVersion": a.model, "responseId": a.id
            })
        }
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The SSE events of a streamed answer, in order.
#[cfg(test)]
fn stream_events(a: &Answer, chunks: u64) -> Vec<Bytes> {
    stream_events_marked(a, chunks).0
}

/// The SSE events of a streamed answer, in order, and which of them carry a text chunk.
fn stream_events_marked(a: &Answer, chunks: u64) -> (Vec<Bytes>, Vec<bool>) {
    let mut out: Vec<String> = Vec::with_capacity(chunks as usize + 8);
    let mut pieces: Vec<usize> = Vec::with_capacity(chunks as usize);
    let (p, c, cached, r) = (a.prompt_tokens, chunks, a.cached, a.reasoning());
    let model = json_str(&a.model);
    match a.wire {
        Wire::OpenAi => {
            let usage_null = if a.include_usage {
                r#","usage":null"#
            } else {
                ""
            };
            let head = format!(
                r#"data: {{"id":"{}","object":"chat.completion.chunk","created":1753357673,"model":{model},"service_tier":"default","system_fingerprint":"fp_mock","choices":[{{"index":0,"#,
                a.id
            );
            let chunk = |delta: String, finish: &str| {
                format!(
                    r#"{head}"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]{usage_null}}}"#
                )
            };
            out.push(chunk(
                r#"{"role":"assistant","content":"","refusal":null}"#.into(),
                "null",
            ));
            if a.thinking {
                out.push(chunk(
                    format!(r#"{{"reasoning_content":{}}}"#, json_str(THOUGHT)),
                    "null",
                ));
            }
            match &a.tool {
                Some(tool) => {
                    out.push(chunk(
                        format!(r#"{{"tool_calls":[{{"index":0,"id":"call_mock1","type":"function","function":{{"name":{},"arguments":""}}}}]}}"#, json_str(tool)),
                        "null",
                    ));
                    for piece in a.arg_pieces() {
                        out.push(chunk(
                            format!(
                                r#"{{"tool_calls":[{{"index":0,"function":{{"arguments":{}}}}}]}}"#,
                                json_str(piece)
                            ),
                            "null",
                        ));
                    }
                    out.push(chunk("{}".into(), r#""tool_calls""#));
                }
                None => {
                    for i in 0..chunks {
                        pieces.push(out.len());
                        out.push(chunk(
                            format!(r#"{{"content":{}}}"#, json_str(&a.piece(i))),
                            "null",
                        ));
                    }
                    out.push(chunk("{}".into(), r#""stop""#));
                }
            }
            if a.include_usage {
                out.push(format!(
                    r#"data: {{"id":"{}","object":"chat.completion.chunk","created":1753357673,"model":{model},"service_tier":"default","system_fingerprint":"fp_mock","choices":[],"usage":{{"prompt_tokens":{p},"completion_tokens":{},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":{cached},"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":{r},"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}}}"#,
                    a.id,
                    c + r,
                    p + c + r
                ));
            }
            out.push("data: [DONE]".into());
        }
        Wire::Anthropic => {
            out.push(format!(r#"event: message_start
data: {{"type":"message_start","message":{{"id":"{}","type":"message","role":"assistant","model":{model},"content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":{},"cache_creation_input_tokens":0,"cache_read_input_tokens":{cached},"output_tokens":1}}}}}}"#, a.id, p - cached));
            let mut index = 0;
            if a.thinking {
                out.push(format!("event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}}}"));
                out.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"thinking_delta\",\"thinking\":{}}}}}", json_str(THOUGHT)));
                out.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"signature_delta\",\"signature\":\"mock-signature\"}}}}"));
                out.push(format!("event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":{index}}}"));
                index += 1;
            }
            out.push(format!("event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}"));
            out.push("event: ping\ndata: {\"type\": \"ping\"}".into());
            let text_pieces: Vec<String> = match &a.tool {
                Some(_) => vec!["Let me check.".into()],
                None => (0..chunks).map(|i| a.piece(i)).collect(),
            };
            let counted = a.tool.is_none();
            for piece in text_pieces {
                if counted {
                    pieces.push(out.len());
                }
                out.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}", json_str(&piece)));
            }
            out.push(format!("event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":{index}}}"));
            if let Some(tool) = &a.tool {
                index += 1;
                out.push(format!("event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"toolu_mock1\",\"name\":{},\"input\":{{}}}}}}", json_str(tool)));
                for piece in [""].into_iter().chain(a.arg_pieces()) {
                    out.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{}}}}}", json_str(piece)));
                }
                out.push(format!("event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":{index}}}"));
            }
            let stop = if a.tool.is_some() {
                "tool_use"
            } else {
                "end_turn"
            };
            out.push(format!("event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{stop}\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{c}}}}}"));
            out.push("event: message_stop\ndata: {\"type\":\"message_stop\"}".into());
        }
        Wire::Gemini => {
            let thoughts = if a.thinking { 3 } else { 0 };
            let event = |parts: String, finish: bool, done: u64| {
                let finish = if finish {
                    r#""finishReason": "STOP","#
                } else {
                    ""
                };
                format!(
                    r#"data: {{"candidates": [{{"content": {{"parts": [{parts}],"role": "model"}},{finish}"index": 0}}],"usageMetadata": {{"promptTokenCount": {p},"candidatesTokenCount": {done},"totalTokenCount": {},"thoughtsTokenCount": {thoughts},"cachedContentTokenCount": {cached}}},"modelVersion": {model},"responseId": "{}"}}"#,
                    p + done + thoughts,
                    a.id
                )
            };
            if a.thinking {
                out.push(event(
                    format!(r#"{{"text": {},"thought": true}}"#, json_str(THOUGHT)),
                    false,
                    0,
                ));
            }
            match &a.tool {
                Some(tool) => out.push(event(
                    format!(
                        r#"{{"functionCall": {{"name": {},"args": {}}},"thoughtSignature": "{THOUGHT_SIGNATURE}"}}"#,
                        json_str(tool),
                        a.tool_args
                    ),
                    true,
                    c,
                )),
                None => {
                    for i in 0..chunks {
                        pieces.push(out.len());
                        out.push(event(
                            format!(r#"{{"text": {}}}"#, json_str(&a.piece(i))),
                            i + 1 == chunks,
                            i + 1,
                        ));
                    }
                }
            }
        }
    }
    let end = match a.wire {
        Wire::Gemini => "\r\n\r\n",
        _ => "\n\n",
    };
    let mut marks = vec![false; out.len()];
    for i in pieces {
        marks[i] = true;
    }
    (
        out.into_iter().map(|e| Bytes::from(e + end)).collect(),
        marks,
    )
}

#[derive(PartialEq, Eq)]
enum StreamEnd {
    Completed,
    /// Cut on purpose (`x-mock-cut-after`).
    Cut,
    ClientGone,
}

/// Streams the answer; how it ended and how many text chunks were sent (`None`: no event
/// at all).
async fn stream_answer(
    session: &mut ServerSession,
    a: &Answer,
    c: &Controls,
) -> (StreamEnd, Option<u64>) {
    let mut h = ResponseHeader::build(200, Some(3)).expect("status");
    let _ = h.insert_header("content-type", "text/event-stream");
    let _ = h.insert_header("cache-control", "no-cache");
    let _ = h.insert_header("transfer-encoding", "chunked");
    if session.write_response_header(Box::new(h)).await.is_err() {
        return (StreamEnd::ClientGone, None);
    }
    if c.ttft_ms > 0 {
        tokio::time::sleep(Duration::from_millis(c.ttft_ms)).await;
    }
    let (events, marks) = stream_events_marked(a, c.chunks);
    let last = events.len() - 1;
    let mut sent = 0;
    let written = |i: usize, sent: u64| (i > 0).then_some(sent);
    for (i, (event, piece)) in events.into_iter().zip(marks).enumerate() {
        if c.cut_after.is_some_and(|n| i as u64 >= n) {
            return (StreamEnd::Cut, written(i, sent));
        }
        let hold = piece && c.hold_after.is_some_and(|n| sent >= n);
        let wait = match (hold, i > 0 && c.chunk_delay_ms > 0) {
            (true, _) => Some(if c.stall_ms > 0 { c.stall_ms } else { 30_000 }),
            (false, true) => Some(c.chunk_delay_ms),
            _ => None,
        };
        if let Some(ms) = wait {
            // Notice a client that went away while we wait.
            let gone = tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => false,
                r = session.read_body_or_idle(true) => r.is_err(),
            };
            if gone {
                return (StreamEnd::ClientGone, written(i, sent));
            }
        }
        if session.write_response_body(event, i == last).await.is_err() {
            return (StreamEnd::ClientGone, written(i, sent));
        }
        sent += u64::from(piece);
    }
    (StreamEnd::Completed, Some(sent))
}

/// The mock upstream's listener; TLS when given a certificate and key (PEM files).
pub fn service(
    listen: std::net::SocketAddr,
    tls: Option<(&str, &str)>,
    defaults: Controls,
) -> pingora_error::Result<pingora_core::services::listening::Service<Mock>> {
    let mut service = pingora_core::services::listening::Service::new(
        "junction mock".to_string(),
        Mock::new(defaults),
    );
    match tls {
        Some((cert, key)) => {
            let mut tls = pingora_core::listeners::tls::TlsSettings::intermediate(cert, key)?;
            tls.enable_h2();
            service.add_tls_with_settings(&listen.to_string(), None, tls);
        }
        None => service.add_tcp(&listen.to_string()),
    }
    Ok(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mocks_own_token_table_is_what_the_tokenizer_counts() {
        let t = crate::usage::estimate::Tokenizer::O200k;
        for (w, n) in WORDS.iter().zip(WORD_TOKENS) {
            assert_eq!(t.count(w), n, "{w:?}");
        }
        // The whole answer too: no token spans two words.
        assert_eq!(t.count(&WORDS.concat()), WORD_TOKENS.iter().sum::<u64>());
    }

    fn answer(wire: Wire, include_usage: bool) -> Answer {
        Answer {
            wire,
            id: "x".into(),
            model: "m".into(),
            include_usage,
            prompt_tokens: 5,
            cached: 0,
            echo: None,
            tool: None,
            tool_args: TOOL_ARGS.concat(),
            thinking: false,
            images: 0,
        }
    }

    #[test]
    fn openai_stream_has_usage_only_when_asked() {
        let with: Vec<_> = stream_events(&answer(Wire::OpenAi, true), 3);
        let without: Vec<_> = stream_events(&answer(Wire::OpenAi, false), 3);
        assert_eq!(with.len(), without.len() + 1);
        let usage = &with[with.len() - 2];
        let v: serde_json::Value =
            serde_json::from_slice(crate::stream::sse::data_of(usage).unwrap()).unwrap();
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["choices"].as_array().unwrap().len(), 0);
        assert_eq!(&with.last().unwrap()[..], b"data: [DONE]\n\n");
    }

    #[test]
    fn every_event_and_whole_answer_is_valid_json() {
        for (wire, tool, thinking) in [Wire::OpenAi, Wire::Anthropic, Wire::Gemini]
            .into_iter()
            .flat_map(|w| [(w, false, false), (w, true, true)])
        {
            let mut a = answer(wire, true);
            a.tool = tool.then(|| "f".to_string());
            a.thinking = thinking;
            for e in stream_events(&a, 4) {
                let data = crate::stream::sse::data_of(&e).unwrap();
                if data != b"[DONE]" {
                    serde_json::from_slice::<serde_json::Value>(data).unwrap_or_else(|err| {
                        panic!("{wire:?}: {err}: {}", String::from_utf8_lossy(&e))
                    });
                }
            }
            serde_json::from_slice::<serde_json::Value>(&whole_answer(&a, 4)).unwrap();
            serde_json::from_slice::<serde_json::Value>(&error_body(wire, 429, "x")).unwrap();
        }
    }

    #[test]
    fn signatures_the_mock_did_not_make_are_refused() {
        let ok = br#"{"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"mock-signature"}]}]}"#;
        let forged = br#"{"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":""}]}]}"#;
        assert_eq!(foreign_signature(Wire::Anthropic, ok), None);
        assert!(foreign_signature(Wire::Anthropic, forged).is_some());
        let ok = format!(
            r#"{{"contents":[{{"role":"model","parts":[{{"functionCall":{{"name":"f","args":{{}}}},"thoughtSignature":"{THOUGHT_SIGNATURE}"}}]}}]}}"#
        );
        let forged = br#"{"contents":[{"role":"model","parts":[{"functionCall":{"name":"f","args":{}},"thoughtSignature":"c2lnbmVk"}]}]}"#;
        assert_eq!(foreign_signature(Wire::Gemini, ok.as_bytes()), None);
        assert!(foreign_signature(Wire::Gemini, forged).is_some());
    }
}
