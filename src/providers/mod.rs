//! Provider adapters, one module per provider kind, dispatched by `match` on
//! [`crate::config::ProviderKind`].

pub mod anthropic;
pub mod chat;
#[cfg(test)]
pub(crate) mod conformance;
pub mod gemini;
pub mod openai;

use crate::error::{Code, ErrorKind, GatewayError};

/// The gateway's own key for a provider was refused: the client's key was fine, so this is
/// the gateway's failure (502), never the provider's message (it may quote part of the key).
/// Another deployment may serve the request; this one would refuse the key again.
pub fn credentials_refused(provider: &str, status: u16) -> GatewayError {
    GatewayError::new(
        ErrorKind::BadGateway,
        format!("Provider `{provider}` refused the gateway's credentials (status {status})."),
    )
    .code(Code::UpstreamAuthFailed)
    .fails_over()
    .not_retried()
}

/// A provider's error type as an error [`Code`].
pub fn static_code(provider_code: &str) -> Code {
    match provider_code {
        "invalid_request_error" | "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => {
            Code::InvalidRequestError
        }
        "authentication_error" | "UNAUTHENTICATED" => Code::AuthenticationError,
        "permission_error" | "PERMISSION_DENIED" => Code::PermissionError,
        "not_found_error" | "NOT_FOUND" => Code::NotFoundError,
        "request_too_large" => Code::RequestTooLarge,
        "rate_limit_error" | "RESOURCE_EXHAUSTED" => Code::RateLimitExceeded,
        "overloaded_error" | "UNAVAILABLE" => Code::Overloaded,
        "DEADLINE_EXCEEDED" => Code::UpstreamTimeout,
        _ => Code::UpstreamError,
    }
}

use crate::config::{Provider, ProviderKind};
use crate::usage::Usage;
use bytes::Bytes;
use openai::ChatRequestInfo;
use pingora_http::RequestHeader;

/// How this request's upstream speaks: what its answer needs on the way back.
#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    OpenAi,
    Anthropic(anthropic::Translation),
    Gemini(gemini::Translation),
    /// An Anthropic client's request passed through to an Anthropic upstream.
    AnthropicPass,
    /// A Gemini client's request passed through to a Gemini upstream.
    GeminiPass,
    /// A Responses client's request passed through to a provider serving the Responses API.
    ResponsesPass,
}

impl Dialect {
    /// The request went as the client sent it: the answer is in the client's protocol.
    pub fn passed_through(self) -> bool {
        matches!(
            self,
            Dialect::AnthropicPass | Dialect::GeminiPass | Dialect::ResponsesPass
        )
    }

    /// The provider kind that speaks this dialect.
    pub fn kind(self) -> ProviderKind {
        match self {
            Dialect::OpenAi | Dialect::ResponsesPass => ProviderKind::OpenAi,
            Dialect::Anthropic(_) | Dialect::AnthropicPass => ProviderKind::Anthropic,
            Dialect::Gemini(_) | Dialect::GeminiPass => ProviderKind::Gemini,
        }
    }

    /// The usage of a whole answer in this dialect, from the last few KiB of its body.
    pub fn usage_in_tail(self, tail: &[u8]) -> Option<Usage> {
        match self {
            Dialect::OpenAi => openai::usage_in_tail(tail),
            Dialect::AnthropicPass | Dialect::Anthropic(_) => anthropic::usage_in_tail(tail),
            Dialect::GeminiPass | Dialect::Gemini(_) => gemini::usage_in_tail(tail),
            Dialect::ResponsesPass => openai::responses_usage_in_tail(tail),
        }
    }
}

/// A request ready for the provider.
pub struct UpstreamRequest {
    /// Path and query under the provider's host.
    pub path: String,
    pub body: Bytes,
    pub dialect: Dialect,
    /// Client headers passed on (an Anthropic client's `anthropic-*` headers).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// What the client sent, in the forms the provider kinds need.
pub struct Inbound<'a> {
    pub info: &'a ChatRequestInfo,
    /// The request as an OpenAI chat completion (the client's own body at the chat front
    /// door; a translation at the others, or why it could not be translated).
    pub chat: Result<&'a [u8], &'a GatewayError>,
    /// The request in the client's own protocol (not chat's), for an upstream that speaks
    /// it: a Messages request for Anthropic, a Gemini one for Gemini, a Responses one for an
    /// OpenAI provider serving the Responses API.
    pub native: Option<Native<'a>>,
}

/// A request as the client sent it, for a pass-through.
pub struct Native<'a> {
    pub body: &'a [u8],
    /// The query string (`beta=true`), passed on.
    pub query: Option<&'a str>,
    pub headers: &'a [(http::HeaderName, http::HeaderValue)],
}

/// Builds the upstream request: the client's own request passed through when `native` (the
/// upstream speaks the client's protocol: see `gateway::translate::native`); otherwise from
/// the chat completion: patched bytes for OpenAI, a translated body for the others.
pub fn build_request(
    deployment: &crate::config::Deployment,
    inbound: &Inbound<'_>,
    native: bool,
) -> Result<UpstreamRequest, GatewayError> {
    let provider = &*deployment.provider;
    let upstream_model = &*deployment.upstream_model;
    let limit = deployment.max_output_tokens;
    let base = &provider.upstream.base_path;
    let native = inbound.native.as_ref().filter(|_| native);
    if let (ProviderKind::Gemini, Some(native)) = (provider.kind, native) {
        // The model is in the path: the body goes as the client sent it, byte for byte (unless
        // it asks for more output than the model allows).
        let body = clamp_output(
            native.body,
            limit,
            &[&["generationConfig", "maxOutputTokens"]],
        );
        return Ok(UpstreamRequest {
            path: gemini::path(base, upstream_model, inbound.info.stream),
            body: Bytes::from(body.into_owned()),
            dialect: Dialect::GeminiPass,
            headers: Vec::new(),
        });
    }
    if let (ProviderKind::OpenAi, Some(native)) = (provider.kind, native) {
        let body = clamp_output(native.body, limit, &[&["max_output_tokens"]]);
        return Ok(UpstreamRequest {
            path: format!("{base}/responses"),
            body: splice_model(&body, upstream_model)?.into(),
            dialect: Dialect::ResponsesPass,
            headers: Vec::new(),
        });
    }
    if let (ProviderKind::Anthropic, Some(native)) = (provider.kind, native) {
        let path = match native.query {
            Some(q) => format!("{base}/messages?{q}"),
            None => format!("{base}/messages"),
        };
        let body = clamp_output(native.body, limit, &[&["max_tokens"]]);
        return Ok(UpstreamRequest {
            path,
            body: anthropic::pass_request(&body, upstream_model)?.into(),
            dialect: Dialect::AnthropicPass,
            headers: native.headers.to_vec(),
        });
    }
    let info = inbound.info;
    let body = inbound.chat.map_err(|e| e.clone())?;
    let body = &*clamp_output(body, limit, &[&["max_tokens"], &["max_completion_tokens"]]);
    Ok(match provider.kind {
        ProviderKind::OpenAi => UpstreamRequest {
            path: format!("{base}/chat/completions"),
            body: openai::patch_request(body, info, upstream_model)?.into(),
            dialect: Dialect::OpenAi,
            headers: Vec::new(),
        },
        ProviderKind::Anthropic => {
            let req = chat::ChatRequest::parse(body)?;
            let opts = anthropic::Options {
                default_max_tokens: provider.default_max_tokens,
                unsupported: provider.unsupported,
                structured: provider.structured_output,
            };
            let (body, mut t) =
                anthropic::translate_request(&req, upstream_model, &opts, info.stream)?;
            t.include_usage = info.include_usage;
            UpstreamRequest {
                path: format!("{base}/messages"),
                body: body.into(),
                dialect: Dialect::Anthropic(t),
                headers: Vec::new(),
            }
        }
        ProviderKind::Gemini => {
            let req = chat::ChatRequest::parse(body)?;
            let (body, mut t) = gemini::translate_request(&req, provider.unsupported, info.stream)?;
            t.include_usage = info.include_usage;
            UpstreamRequest {
                path: gemini::path(base, upstream_model, info.stream),
                body: body.into(),
                dialect: Dialect::Gemini(t),
                headers: Vec::new(),
            }
        }
    })
}

/// A JSON request body with its top-level `model` value replaced, every other byte as it was.
pub fn splice_model(body: &[u8], model: &str) -> Result<Vec<u8>, GatewayError> {
    #[derive(serde::Deserialize)]
    struct Model<'a> {
        #[serde(borrow)]
        model: &'a serde_json::value::RawValue,
    }
    let m: Model<'_> = serde_json::from_slice(body).map_err(|_| {
        GatewayError::invalid_request("The request body is not a JSON object with a `model`.")
            .param("model")
    })?;
    let raw = m.model.get().as_bytes();
    let at = raw.as_ptr() as usize - body.as_ptr() as usize;
    let model = serde_json::to_vec(model).expect("a string serializes");
    let mut out = Vec::with_capacity(body.len() + model.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(&model);
    out.extend_from_slice(&body[at + raw.len()..]);
    Ok(out)
}

/// The body with each output limit at `paths` lowered to `limit` where it asks for more
/// (the target model would refuse it); the same bytes when nothing needs lowering.
pub fn clamp_output<'a>(
    body: &'a [u8],
    limit: Option<u64>,
    paths: &[&[&str]],
) -> std::borrow::Cow<'a, [u8]> {
    use std::borrow::Cow;
    let Some(limit) = limit else {
        return Cow::Borrowed(body);
    };
    let named = |p: &&[&str]| {
        p.last()
            .is_some_and(|k| memchr::memmem::find(body, k.as_bytes()).is_some())
    };
    if !paths.iter().any(named) {
        return Cow::Borrowed(body);
    }
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Cow::Borrowed(body);
    };
    let mut changed = false;
    for path in paths {
        let mut at = Some(&mut v);
        for key in *path {
            at = at.and_then(|x| x.get_mut(*key));
        }
        if let Some(n) = at.filter(|n| n.as_u64().is_some_and(|n| n > limit)) {
            *n = limit.into();
            changed = true;
        }
    }
    if !changed {
        return Cow::Borrowed(body);
    }
    Cow::Owned(serde_json::to_vec(&v).expect("a JSON value serializes"))
}

/// Puts the provider's key where its API expects it.
pub fn authenticate(provider: &Provider, req: &mut RequestHeader) -> Result<(), GatewayError> {
    let bad = |_| {
        GatewayError::new(
            ErrorKind::Internal,
            "the provider key is not a valid header value",
        )
    };
    let Some(key) = &provider.api_key else {
        if provider.kind == ProviderKind::Anthropic {
            req.insert_header("anthropic-version", provider.anthropic_version.clone())
                .map_err(bad)?;
        }
        return Ok(());
    };
    let (name, value) = match provider.kind {
        ProviderKind::OpenAi => (
            http::header::AUTHORIZATION.as_str(),
            format!("Bearer {}", key.expose()),
        ),
        ProviderKind::Anthropic => ("x-api-key", key.expose().clone()),
        ProviderKind::Gemini => ("x-goog-api-key", key.expose().clone()),
    };
    let mut value = http::HeaderValue::from_str(&value).map_err(|_| {
        GatewayError::new(
            ErrorKind::Internal,
            "the provider key is not a valid header value",
        )
    })?;
    value.set_sensitive(true);
    req.insert_header(name, value).map_err(bad)?;
    if provider.kind == ProviderKind::Anthropic {
        req.insert_header("anthropic-version", provider.anthropic_version.clone())
            .map_err(bad)?;
    }
    Ok(())
}

/// An upstream error status and body, as the client is told.
pub fn map_error(
    provider: &Provider,
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
) -> GatewayError {
    // The provider's own secrets never go further than this (issue 19): the message, the
    // body passed on, the logs and the ledger all start from the redacted body.
    let body = provider.redactor.redact(body);
    let name = &provider.name;
    match provider.kind {
        ProviderKind::OpenAi => openai::map_error(name, status, &body, retry_after),
        ProviderKind::Anthropic => anthropic::map_error(name, status, &body, retry_after),
        ProviderKind::Gemini => gemini::map_error(name, status, &body, retry_after),
    }
}

/// A provider's stream decoder: the upstream's events as chat chunks (an OpenAI stream passed
/// on, only its usage chunk read), or, for a request passed through in the client's own
/// protocol, a watcher that hands the bytes on unchanged and reads their usage and end.
pub enum Decoder {
    /// Passed through; only the usage chunk is looked at.
    OpenAi(openai::StreamFilter),
    Anthropic(anthropic::StreamTranslator),
    Gemini(gemini::StreamTranslator),
    /// A Messages stream passed through to a Messages client.
    AnthropicPass(anthropic::PassThrough),
    /// A Gemini stream passed through to a Gemini client.
    GeminiPass(gemini::PassThrough),
    /// A Responses stream passed through to a Responses client.
    ResponsesPass(openai::ResponsesPass),
}

impl Decoder {
    pub fn new(dialect: Dialect, info: &ChatRequestInfo, upstream_model: &str) -> Self {
        match dialect {
            Dialect::OpenAi => Decoder::OpenAi(openai::StreamFilter::new(!info.include_usage)),
            Dialect::Anthropic(t) => {
                Decoder::Anthropic(anthropic::StreamTranslator::new(t, now_secs()))
            }
            Dialect::Gemini(t) => Decoder::Gemini(gemini::StreamTranslator::new(
                t,
                upstream_model,
                now_secs(),
                gemini::CallIds::new(),
            )),
            Dialect::AnthropicPass => Decoder::AnthropicPass(Default::default()),
            Dialect::GeminiPass => Decoder::GeminiPass(Default::default()),
            Dialect::ResponsesPass => Decoder::ResponsesPass(Default::default()),
        }
    }

    // hot path: every upstream chunk.
    /// What this upstream chunk completes (`None`: nothing yet).
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self {
            Decoder::OpenAi(f) => f.filter(chunk),
            Decoder::Anthropic(t) => t.feed(chunk),
            Decoder::Gemini(t) => t.feed(chunk),
            Decoder::AnthropicPass(p) => p.feed(chunk),
            Decoder::GeminiPass(p) => p.feed(chunk),
            Decoder::ResponsesPass(p) => p.feed(chunk),
        }
    }

    /// At the end of the upstream body.
    pub fn finish(&mut self) -> Option<Bytes> {
        match self {
            Decoder::OpenAi(f) => f.finish(),
            Decoder::Anthropic(t) => t.finish(),
            Decoder::Gemini(t) => t.finish(),
            Decoder::AnthropicPass(p) => p.finish(),
            Decoder::GeminiPass(p) => p.finish(),
            Decoder::ResponsesPass(p) => p.finish(),
        }
    }

    /// The stream reached its proper end (or an error event already told the client).
    pub fn done(&self) -> bool {
        match self {
            Decoder::OpenAi(f) => f.done,
            Decoder::Anthropic(t) => t.done(),
            Decoder::Gemini(t) => t.done(),
            Decoder::AnthropicPass(p) => p.done(),
            Decoder::GeminiPass(p) => p.done(),
            Decoder::ResponsesPass(p) => p.done(),
        }
    }

    /// Keep a passed-through Responses stream's final response object (for the store).
    pub fn keep_final(&mut self) {
        if let Decoder::ResponsesPass(p) = self {
            p.state_mut().keep = true;
        }
    }

    /// The final response object of a passed-through Responses stream, once it went by
    /// (after [`Decoder::keep_final`]).
    pub fn take_kept(&mut self) -> Option<Vec<u8>> {
        match self {
            Decoder::ResponsesPass(p) => p.state_mut().kept.take(),
            _ => None,
        }
    }

    /// The error the upstream's stream ended with, as its decoder found it.
    pub fn failure(&self) -> Option<&crate::stream::InBand> {
        match self {
            Decoder::OpenAi(f) => f.failure.as_ref(),
            Decoder::Anthropic(t) => t.state().failure.as_ref(),
            Decoder::Gemini(t) => t.state().failure.as_ref(),
            Decoder::AnthropicPass(p) => p.failure(),
            Decoder::GeminiPass(p) => p.failure(),
            Decoder::ResponsesPass(p) => p.failure(),
        }
    }

    /// The upstream sent something of the answer, beyond its opening events (a stream that
    /// fails before this may still be tried elsewhere: nothing of it needs to reach the client).
    pub fn started(&self) -> bool {
        match self {
            Decoder::OpenAi(f) => f.started,
            Decoder::Anthropic(t) => t.state().started,
            Decoder::Gemini(t) => t.state().started(),
            Decoder::AnthropicPass(p) => p.started(),
            Decoder::GeminiPass(p) => p.started(),
            Decoder::ResponsesPass(p) => p.started(),
        }
    }

    /// Tokens as reported so far.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Decoder::OpenAi(f) => f.usage,
            Decoder::Anthropic(t) => t.usage(),
            Decoder::Gemini(t) => t.usage(),
            Decoder::AnthropicPass(p) => p.usage(),
            Decoder::GeminiPass(p) => p.usage(),
            Decoder::ResponsesPass(p) => p.usage(),
        }
    }

    /// The usage report, once it is whole: an OpenAI stream's comes in its own final chunk;
    /// the others' only once the upstream ended the stream.
    pub fn whole_usage(&self) -> Option<Usage> {
        match self {
            Decoder::OpenAi(f) => f.usage,
            d => d.usage().filter(|_| d.done()),
        }
    }
}

/// Decodes a whole response body into an OpenAI `chat.completion` (a body passed through is
/// kept as it is), with its usage.
pub fn decode_whole(
    dialect: Dialect,
    body: &[u8],
    upstream_model: &str,
) -> Result<(Vec<u8>, Usage), String> {
    match dialect {
        Dialect::OpenAi => Ok((
            body.to_vec(),
            dialect.usage_in_tail(body).unwrap_or_default(),
        )),
        Dialect::Anthropic(t) => anthropic::translate_response(body, t, now_secs()),
        Dialect::Gemini(_) => gemini::translate_response(
            body,
            upstream_model,
            now_secs(),
            &mut gemini::CallIds::new(),
        ),
        Dialect::AnthropicPass | Dialect::GeminiPass | Dialect::ResponsesPass => Ok((
            body.to_vec(),
            dialect.usage_in_tail(body).unwrap_or_default(),
        )),
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod clamp_tests {
    use super::clamp_output;

    #[test]
    fn only_limits_above_the_models_are_lowered() {
        let paths: &[&[&str]] = &[&["max_tokens"], &["max_completion_tokens"]];
        let body = br#"{"model":"m", "max_tokens": 32000,"messages":[]}"#;
        let out = clamp_output(body, Some(8192), paths);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["max_tokens"], 8192);
        assert_eq!(v["model"], "m");
        // Within the limit, or no limit: the very same bytes.
        assert!(matches!(
            clamp_output(body, Some(64000), paths),
            std::borrow::Cow::Borrowed(b) if b == body
        ));
        assert!(matches!(
            clamp_output(body, None, paths),
            std::borrow::Cow::Borrowed(_)
        ));
        let nested = br#"{"contents":[],"generationConfig":{"maxOutputTokens":65536}}"#;
        let out = clamp_output(
            nested,
            Some(1000),
            &[&["generationConfig", "maxOutputTokens"]],
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["generationConfig"]["maxOutputTokens"], 1000);
    }
}
