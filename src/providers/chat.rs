//! The OpenAI chat completion request, typed, as the translating adapters read it; and the
//! policy for parameters a provider cannot honour.

use crate::error::{Code, GatewayError};
use serde::Deserialize;
use serde_json::{Map, Value};

/// What to do with a request parameter the provider cannot honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unsupported {
    /// Answer 400, naming the parameter (default: nothing is silently lost).
    #[default]
    Reject,
    /// Leave the parameter out and go on.
    Drop,
}

impl Unsupported {
    /// Applies the policy to `param`; `Ok(())` means: leave it out.
    pub fn apply(
        self,
        provider_kind: &str,
        param: impl Into<std::borrow::Cow<'static, str>>,
        why: &str,
    ) -> Result<(), GatewayError> {
        match self {
            Unsupported::Drop => Ok(()),
            Unsupported::Reject => {
                let param = param.into();
                Err(GatewayError::invalid_request(format!(
                    "`{}` is not supported by {provider_kind} models: {why}. Set `unsupported_params = \"drop\"` on the provider to leave such parameters out instead.",
                    crate::error::Printable(&param)
                ))
                .param(param)
                .code(Code::UnsupportedParameter))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<Value>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub n: Option<u64>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Every other field, for the unsupported-parameter policy.
    #[serde(skip)]
    pub other: Map<String, Value>,
}

/// The fields [`ChatRequest`] reads itself.
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "user",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
];

impl ChatRequest {
    pub fn parse(body: &[u8]) -> Result<ChatRequest, GatewayError> {
        let invalid = |e: serde_json::Error| {
            GatewayError::invalid_request(format!(
                "Invalid request: {}",
                crate::error::Printable(&e.to_string())
            ))
        };
        // `#[serde(flatten)]` would buffer the whole request; instead the top level is read
        // a second time as raw slices, and only unknown fields are parsed.
        let mut req: ChatRequest = serde_json::from_slice(body).map_err(invalid)?;
        let fields: Map<String, Value> = serde_json::from_slice::<
            std::collections::HashMap<&str, &serde_json::value::RawValue>,
        >(body)
        .map_err(invalid)?
        .into_iter()
        .filter(|(k, _)| !KNOWN.contains(k))
        .map(|(k, v)| Ok((k.to_string(), serde_json::from_str(v.get())?)))
        .collect::<Result<_, serde_json::Error>>()
        .map_err(invalid)?;
        req.other = fields;
        Ok(req)
    }

    /// `max_completion_tokens`, or the older `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn stop_sequences(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        }
    }

    /// Fields this gateway knows no provider-neutral meaning for, other than those it handles:
    /// each goes through the policy. Values that ask for nothing (null, false, 0, 1 choice)
    /// are accepted everywhere, and so are fields that only hint (caching keys, safety and
    /// user identifiers, metadata): they change no answer, so they never fail a request, and
    /// are used where they mean something (`prompt_cache_key` drives deployment affinity) and
    /// left out where they do not. Only parameters that change the answer meet the policy.
    pub fn check_common(&self, kind: &str, policy: Unsupported) -> Result<(), GatewayError> {
        /// Hints, and fields the gateway handles itself.
        const IGNORED: &[&str] = &[
            "store",
            "metadata",
            "service_tier",
            "stream_options",
            "prompt_cache_key",
            "prompt_cache_retention",
            "safety_identifier",
        ];
        for (k, v) in &self.other {
            if IGNORED.contains(&k.as_str()) || is_neutral(v) {
                continue;
            }
            let why = match k.as_str() {
                "modalities" if v == &serde_json::json!(["text"]) => continue,
                "logit_bias" | "logprobs" | "top_logprobs" | "audio" | "modalities"
                | "prediction" | "web_search_options" | "functions" | "function_call" => {
                    "it has no equivalent".to_string()
                }
                // Unknown to OpenAI as well: likely a vendor extension. Same policy.
                _ => "the field is not an OpenAI chat completion parameter".to_string(),
            };
            policy.apply(kind, k.clone(), &why)?;
        }
        Ok(())
    }
}

fn is_neutral(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

impl Content {
    /// The text of all text parts, joined.
    pub fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    Part::Text { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
        /// Anthropic-style prompt caching marks (sent by agents through OpenAI-compatible
        /// routers); kept for Anthropic upstreams, left out for the others.
        #[serde(default)]
        cache_control: Option<Value>,
    },
    ImageUrl {
        image_url: ImageUrl,
        #[serde(default)]
        cache_control: Option<Value>,
    },
    /// Audio, files and anything newer.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct ImageUrl {
    pub url: String,
}

/// An image reference, as the providers distinguish them.
pub enum Image<'a> {
    /// `data:<mime>;base64,<data>`
    Inline {
        mime: &'a str,
        data: &'a str,
    },
    Url(&'a str),
}

impl ImageUrl {
    pub fn parse(&self) -> Result<Image<'_>, GatewayError> {
        if let Some(rest) = self.url.strip_prefix("data:") {
            let (meta, data) = rest.split_once(',').ok_or_else(bad_data_url)?;
            let mime = meta.strip_suffix(";base64").ok_or_else(bad_data_url)?;
            if mime.is_empty() {
                return Err(bad_data_url());
            }
            return Ok(Image::Inline { mime, data });
        }
        if self.url.starts_with("https://")
            || self.url.starts_with("http://")
            || self.url.starts_with("gs://")
        {
            return Ok(Image::Url(&self.url));
        }
        Err(GatewayError::invalid_request(
            "`image_url.url` must be an http(s) URL or a base64 data URL (data:<mime>;base64,...).",
        )
        .param("messages"))
    }
}

fn bad_data_url() -> GatewayError {
    GatewayError::invalid_request("An image data URL must look like data:<mime>;base64,<data>.")
        .param("messages")
}

/// Guesses an image's MIME type from its URL's extension.
pub fn mime_from_url(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        Some("heic") => "image/heic",
        _ => "image/jpeg",
    }
}

#[derive(Debug, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub function: FunctionCall,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

impl FunctionCall {
    /// The arguments as JSON; `{}` when empty.
    pub fn arguments_json(&self) -> Result<Value, GatewayError> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_str(&self.arguments).map_err(|_| {
            GatewayError::invalid_request(format!(
                "The arguments of the tool call `{}` are not valid JSON.",
                crate::error::Printable(&self.name)
            ))
            .param("messages")
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: Option<FunctionDef>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Named { function: NamedFunction },
}

/// `tool_choice`, checked: what each provider maps from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice<'a> {
    Auto,
    Required,
    None,
    Named(&'a str),
}

impl ChatRequest {
    /// The request's `tool_choice`; 400 for a mode OpenAI does not have.
    pub fn choice(&self) -> Result<Option<Choice<'_>>, GatewayError> {
        Ok(match &self.tool_choice {
            None => None,
            Some(ToolChoice::Named { function }) => Some(Choice::Named(&function.name)),
            Some(ToolChoice::Mode(m)) => Some(match m.as_str() {
                "auto" => Choice::Auto,
                "required" => Choice::Required,
                "none" => Choice::None,
                other => {
                    return Err(GatewayError::invalid_request(format!(
                        "`tool_choice` must be auto, none, required or a named function; got `{}`.",
                        crate::error::Printable(other)
                    ))
                    .param("tool_choice"))
                }
            }),
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct NamedFunction {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaSpec },
}

#[derive(Debug, Deserialize)]
pub struct JsonSchemaSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub schema: Option<Value>,
}

/// A conversation in a provider's shape: turns of (role, items), where consecutive items of
/// the same role go into one turn (both Anthropic and Gemini want roles to alternate).
#[derive(Default)]
pub struct Turns(pub Vec<(&'static str, Vec<Value>)>);

impl Turns {
    pub fn push(&mut self, role: &'static str, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some((r, existing)) if *r == role => existing.extend(items),
            _ => self.0.push((role, items)),
        }
    }

    /// As a JSON array of `{"role": .., key: [..]}`.
    pub fn into_json(self, key: &str) -> Value {
        Value::Array(
            self.0
                .into_iter()
                .map(|(role, items)| {
                    let mut o = Map::new();
                    o.insert("role".into(), role.into());
                    o.insert(key.into(), Value::Array(items));
                    Value::Object(o)
                })
                .collect(),
        )
    }
}

/// Maps `reasoning_effort` to a thinking budget in tokens; `None`: no thinking.
pub fn thinking_budget(effort: &str) -> Result<Option<u64>, GatewayError> {
    match effort {
        "none" => Ok(None),
        "minimal" => Ok(Some(1024)),
        "low" => Ok(Some(2048)),
        "medium" => Ok(Some(8192)),
        "high" => Ok(Some(24576)),
        other => Err(GatewayError::invalid_request(format!(
            "`reasoning_effort` must be one of none, minimal, low, medium, high; got `{}`.",
            crate::error::Printable(other)
        ))
        .param("reasoning_effort")),
    }
}
