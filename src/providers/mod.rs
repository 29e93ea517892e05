//! Provider adapters, one module per provider kind, dispatched by `match` on
//! [`crate::config::ProviderKind`].

pub mod anthropic;
pub mod chat;
mod conformance;
pub mod gemini;
pub mod openai;

use crate::error::{ErrorKind, GatewayError};

/// The gateway's own key for a provider was refused: the client's key was fine, so this is
/// the gateway's failure (502), never the provider's message (it may quote part of the key).
pub fn credentials_refused(provider: &str, status: u16) -> GatewayError {
    GatewayError::new(
        ErrorKind::BadGateway,
        format!("Provider `{provider}` refused the gateway's credentials (status {status})."),
    )
    .code("upstream_auth_failed")
}

/// A provider's error type as an error `code` (the codes are a closed set, so that a
/// provider cannot grow the set of values a client or a metric sees).
pub fn static_code(provider_code: &str) -> &'static str {
    match provider_code {
        "invalid_request_error" | "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => {
            "invalid_request_error"
        }
        "authentication_error" | "UNAUTHENTICATED" => "authentication_error",
        "permission_error" | "PERMISSION_DENIED" => "permission_error",
        "not_found_error" | "NOT_FOUND" => "not_found_error",
        "request_too_large" => "request_too_large",
        "rate_limit_error" | "RESOURCE_EXHAUSTED" => "rate_limit_exceeded",
        "overloaded_error" | "UNAVAILABLE" => "overloaded",
        "DEADLINE_EXCEEDED" => "upstream_timeout",
        "api_error" | "INTERNAL" => "upstream_error",
        _ => "upstream_error",
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
}

/// A request ready for the provider.
pub struct UpstreamRequest {
    /// Path and query under the provider's host.
    pub path: String,
    pub body: Bytes,
    pub dialect: Dialect,
}

/// Builds the upstream request for a client's chat completion: patched bytes for OpenAI,
/// a translated body for the others.
pub fn build_request(
    provider: &Provider,
    upstream_model: &str,
    info: &ChatRequestInfo,
    body: &[u8],
) -> Result<UpstreamRequest, GatewayError> {
    let base = &provider.upstream.base_path;
    Ok(match provider.kind {
        ProviderKind::OpenAi => UpstreamRequest {
            path: format!("{base}/chat/completions"),
            body: openai::patch_request(body, info, upstream_model)?.into(),
            dialect: Dialect::OpenAi,
        },
        ProviderKind::Anthropic => {
            let req = chat::ChatRequest::parse(body)?;
            let opts = anthropic::Options {
                default_max_tokens: provider.default_max_tokens,
                unsupported: provider.unsupported,
            };
            let (body, mut t) =
                anthropic::translate_request(&req, upstream_model, &opts, info.stream)?;
            t.include_usage = info.include_usage;
            UpstreamRequest {
                path: format!("{base}/messages"),
                body: body.into(),
                dialect: Dialect::Anthropic(t),
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
            }
        }
    })
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
    match provider.kind {
        ProviderKind::OpenAi => openai::map_error(&provider.name, status, body, retry_after),
        ProviderKind::Anthropic => anthropic::map_error(&provider.name, status, body, retry_after),
        ProviderKind::Gemini => gemini::map_error(&provider.name, status, body, retry_after),
    }
}

/// Turns a stream in the upstream's dialect into OpenAI chunks.
pub enum StreamTranslator {
    /// Passed through; only the usage chunk is looked at.
    OpenAi(openai::StreamFilter),
    Anthropic(anthropic::StreamTranslator),
    Gemini(gemini::StreamTranslator),
}

impl StreamTranslator {
    pub fn new(dialect: Dialect, info: &ChatRequestInfo, upstream_model: &str) -> Self {
        let created = now_secs();
        match dialect {
            Dialect::OpenAi => {
                StreamTranslator::OpenAi(openai::StreamFilter::new(!info.include_usage))
            }
            Dialect::Anthropic(t) => {
                StreamTranslator::Anthropic(anthropic::StreamTranslator::new(t, created))
            }
            Dialect::Gemini(t) => StreamTranslator::Gemini(gemini::StreamTranslator::new(
                t,
                upstream_model,
                created,
                gemini::CallIds::new(),
            )),
        }
    }

    // hot path: every upstream chunk.
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self {
            StreamTranslator::OpenAi(f) => f.filter(chunk),
            StreamTranslator::Anthropic(t) => t.feed(chunk),
            StreamTranslator::Gemini(t) => t.feed(chunk),
        }
    }

    pub fn finish(&mut self) -> Option<Bytes> {
        match self {
            StreamTranslator::OpenAi(f) => f.finish(),
            StreamTranslator::Anthropic(t) => t.finish(),
            StreamTranslator::Gemini(t) => t.finish(),
        }
    }

    /// The stream reached its proper end (or an error event already told the client).
    pub fn done(&self) -> bool {
        match self {
            StreamTranslator::OpenAi(f) => f.done,
            StreamTranslator::Anthropic(t) => t.done(),
            StreamTranslator::Gemini(t) => t.done(),
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match self {
            StreamTranslator::OpenAi(f) => f.usage,
            StreamTranslator::Anthropic(t) => Some(t.usage()),
            StreamTranslator::Gemini(t) => Some(t.usage()),
        }
    }
}

/// Translates a whole response body into an OpenAI `chat.completion`.
pub fn translate_whole(
    dialect: Dialect,
    body: &[u8],
    upstream_model: &str,
) -> Result<(Vec<u8>, Usage), String> {
    match dialect {
        Dialect::OpenAi => Ok((
            body.to_vec(),
            openai::usage_in_tail(body).unwrap_or_default(),
        )),
        Dialect::Anthropic(t) => anthropic::translate_response(body, t, now_secs()),
        Dialect::Gemini(_) => gemini::translate_response(
            body,
            upstream_model,
            now_secs(),
            &mut gemini::CallIds::new(),
        ),
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
