//! Front doors: the client protocols Junction serves, one contract dispatched by `match` on
//! [`Front`]. OpenAI chat completions is the form the providers' adapters take; every other
//! door translates its requests into it and its answers (whole, [`Front::whole_from_chat`], or
//! streamed, [`Front::encoder`]) back into its own form, or passes through to a provider that
//! speaks it natively ([`Front::native_to`]). Each door also writes its own errors and
//! keep-alives.

pub mod gemini;
pub mod messages;
pub mod responses;
pub(crate) mod shared;
#[cfg(test)]
pub(crate) mod test_support;

use crate::config::{Provider, ProviderKind};
use crate::error::{ErrorKind, GatewayError, UpstreamBody};
use crate::providers::openai::{self, ChatRequestInfo};
use bytes::Bytes;
use pingora_http::RequestHeader;
use std::cell::RefCell;

thread_local! {
    /// simd-json parses in place: a per-thread buffer for the copy it works on.
    static SCRATCH: RefCell<openai::JsonScratch> = RefCell::new(openai::JsonScratch::default());
}
/// Scratch buffers grown beyond this by a large request are released after it.
const SCRATCH_KEEP: usize = 1 << 20;

/// What a door makes of a request: what routing needs, the request as a chat completion,
/// and what an upstream speaking the door's own protocol needs besides the body.
pub struct Parsed {
    pub info: ChatRequestInfo,
    /// The request as a chat completion; `None` at the chat door (the body is one already);
    /// an error when it cannot be translated (then only a native upstream can take it).
    pub chat: Option<Result<Vec<u8>, GatewayError>>,
    /// Client headers passed on to a native upstream (a Messages client's `anthropic-*`).
    pub native_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// At the Responses door: what the answer's translation needs of the request.
    pub responses: Option<responses::Context>,
}

/// The protocol a client spoke: how its answers and errors must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Front {
    /// OpenAI `POST /v1/chat/completions`.
    #[default]
    Chat,
    /// Anthropic `POST /v1/messages`.
    Messages,
    /// OpenAI `POST /v1/responses` (stateless).
    Responses,
    /// Gemini `POST /v1beta/models/{model}:generateContent` (and its stream).
    Gemini,
}

impl Front {
    /// Step 3 at this door: the body read into what routing needs and the chat form.
    pub fn parse(self, body: &[u8], req: &RequestHeader) -> Result<Parsed, GatewayError> {
        let mut parsed = match self {
            Front::Chat => Parsed {
                info: SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    let r = openai::parse_request(body, &mut s);
                    if s.capacity() > SCRATCH_KEEP {
                        *s = openai::JsonScratch::default();
                    }
                    r
                })?,
                chat: None,
                native_headers: Vec::new(),
                responses: None,
            },
            Front::Messages => {
                let peeked = messages::peek(body)?;
                Parsed {
                    info: ChatRequestInfo {
                        model: peeked.model,
                        stream: peeked.stream,
                        include_usage: true,
                        session: peeked.session,
                    },
                    chat: Some(messages::request_to_chat(body).map(|c| c.body)),
                    native_headers: messages::passed_headers(req),
                    responses: None,
                }
            }
            Front::Gemini => {
                let (model, method) = gemini::route(req.uri.path())
                    .ok_or_else(|| GatewayError::invalid_request("Unknown Gemini method."))?;
                let stream = method == gemini::Method::Stream;
                let chat = gemini::request_to_chat(body, model, stream).map(|c| c.body);
                // Not a JSON object: nothing to pass through either (what the translation
                // could not do otherwise may still go to a Gemini upstream as it is).
                if let Err(e) = &chat {
                    if e.code == Some(crate::error::Code::InvalidJson) {
                        return Err(e.clone());
                    }
                }
                Parsed {
                    chat: Some(chat),
                    info: ChatRequestInfo {
                        model: model.to_string(),
                        stream,
                        include_usage: true,
                        session: None,
                    },
                    native_headers: Vec::new(),
                    responses: None,
                }
            }
            Front::Responses => {
                let c = responses::request_to_chat(body)?;
                Parsed {
                    info: ChatRequestInfo {
                        model: c.model,
                        stream: c.stream,
                        include_usage: true,
                        session: c.session,
                    },
                    chat: Some(Ok(c.body)),
                    native_headers: Vec::new(),
                    responses: Some(c.context),
                }
            }
        };
        // A session header (Claude Code sends one) outranks what the body says.
        if let Some(id) = req
            .headers
            .get("x-claude-code-session-id")
            .filter(|v| !v.is_empty())
        {
            parsed.info.session = Some(crate::routing::fnv1a(id.as_bytes()));
        }
        Ok(parsed)
    }

    /// For this door's token counting endpoint: the model the count is for.
    pub fn count_model(self, body: &[u8], req: &RequestHeader) -> Result<String, GatewayError> {
        match self {
            Front::Gemini => Ok(gemini::route(req.uri.path())
                .map(|(m, _)| m.to_string())
                .unwrap_or_default()),
            _ => Ok(messages::peek(body)?.model),
        }
    }

    /// For this door's token counting endpoint: the prompt to count, as a chat completion.
    pub fn count_chat(self, body: &[u8], model: &str) -> Result<Vec<u8>, GatewayError> {
        let mut v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            GatewayError::invalid_request(format!("The request body is not valid JSON: {e}."))
        })?;
        match self {
            Front::Gemini => {
                // `countTokens` may wrap the request: `{"generateContentRequest": {...}}`.
                let inner = v.get("generateContentRequest").unwrap_or(&v);
                let inner = serde_json::to_vec(inner).expect("a JSON value serializes");
                Ok(gemini::request_to_chat(&inner, model, false)?.body)
            }
            _ => {
                // A count request carries no `max_tokens`; the translation wants one.
                if let Some(o) = v.as_object_mut() {
                    o.entry("max_tokens").or_insert(1.into());
                }
                let with_max = serde_json::to_vec(&v).expect("a JSON value serializes");
                Ok(messages::request_to_chat(&with_max)?.body)
            }
        }
    }

    /// The token count endpoint's answer at this door.
    pub fn count_answer(self, tokens: u64) -> String {
        match self {
            Front::Gemini => format!("{{\"totalTokens\":{tokens}}}"),
            _ => format!("{{\"input_tokens\":{tokens}}}"),
        }
    }

    /// Whether a request at this door goes to `provider` as the client sent it (the provider
    /// speaks the door's protocol), rather than as a chat completion.
    pub fn native_to(self, provider: &Provider) -> bool {
        match self {
            // The chat completion is the client's own body already.
            Front::Chat => false,
            Front::Messages => provider.kind == ProviderKind::Anthropic,
            Front::Gemini => provider.kind == ProviderKind::Gemini,
            Front::Responses => provider.responses,
        }
    }

    /// The encoder that turns a chat chunk stream into this door's events (`None`: the chat
    /// door, whose clients take the chunks as they are). `model`: the model the answer names.
    pub fn encoder(self, model: &str, responses: Option<&responses::Context>) -> Option<Encoder> {
        match self {
            Front::Chat => None,
            Front::Messages => Some(Encoder::Messages(messages::StreamEncoder::new(model))),
            Front::Gemini => Some(Encoder::Gemini(gemini::StreamEncoder::new(model))),
            Front::Responses => Some(Encoder::Responses(responses::StreamEncoder::new(
                model,
                responses.cloned().unwrap_or_default(),
            ))),
        }
    }

    /// A whole chat completion as this door's answer.
    pub fn whole_from_chat(
        self,
        chat: Vec<u8>,
        model: &str,
        responses: Option<&responses::Context>,
    ) -> Result<Vec<u8>, String> {
        match self {
            Front::Chat => Ok(chat),
            Front::Messages => messages::response_from_chat(&chat, model),
            Front::Gemini => gemini::response_from_chat(&chat, model),
            Front::Responses => match responses {
                Some(context) => responses::response_from_chat(&chat, model, context),
                None => responses::response_from_chat(&chat, model, &Default::default()),
            },
        }
    }

    /// An error body in this protocol's format.
    pub fn error_body(self, e: &GatewayError) -> Bytes {
        match self {
            Front::Chat | Front::Responses => e.body(),
            Front::Messages => anthropic_error_body(e),
            Front::Gemini => match &e.upstream_body {
                Some(UpstreamBody::Gemini(b)) => b.clone(),
                _ => gemini::error_body(e.status(), &e.message_or_code()),
            },
        }
    }

    /// The error as a stream event, for a stream already under way.
    pub fn error_event(self, e: &GatewayError) -> Bytes {
        match self {
            Front::Chat => e.sse_event(),
            Front::Messages => {
                crate::error::sse_event(b"event: error\ndata: ", &anthropic_error_body(e), b"\n\n")
            }
            // Before any event of the response (a stream that only sent keep-alives).
            Front::Responses => {
                responses::StreamEncoder::new("", responses::Context::default()).failed_event(e)
            }
            Front::Gemini => {
                crate::error::sse_event(b"data: ", &Front::Gemini.error_body(e), b"\r\n\r\n")
            }
        }
    }

    /// A keep-alive for a stream that waits for its first token.
    pub fn keep_alive(self) -> &'static [u8] {
        match self {
            Front::Chat | Front::Responses | Front::Gemini => b": keep-alive\n\n",
            Front::Messages => b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
        }
    }
}

/// A door's stream encoder: chat chunk SSE in (split anywhere), the door's own events out.
pub enum Encoder {
    Messages(messages::StreamEncoder),
    Responses(responses::StreamEncoder),
    Gemini(gemini::StreamEncoder),
}

impl Encoder {
    // hot path: every chunk of a translated stream.
    /// The door's events for a piece of the chat stream (`None`: nothing complete yet).
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self {
            Encoder::Messages(e) => e.feed(chunk),
            Encoder::Responses(e) => e.feed(chunk),
            Encoder::Gemini(e) => e.feed(chunk),
        }
    }

    /// At the end of the chat stream: whatever must still be sent. A stream that was cut is
    /// left open for [`Encoder::error_event`].
    pub fn finish(&mut self) -> Option<Bytes> {
        match self {
            Encoder::Messages(e) => e.finish(),
            Encoder::Responses(e) => e.finish(),
            Encoder::Gemini(e) => e.finish(),
        }
    }

    /// The final answer object, once sent, when the door stores its answers (the
    /// Responses door with `store` on).
    pub fn take_kept(&mut self) -> Option<Vec<u8>> {
        match self {
            Encoder::Responses(e) => e.take_kept(),
            Encoder::Messages(_) | Encoder::Gemini(_) => None,
        }
    }

    /// The event that ends the stream with an error, in the door's protocol.
    pub fn error_event(&mut self, e: &GatewayError) -> Bytes {
        match self {
            Encoder::Messages(_) => Front::Messages.error_event(e),
            Encoder::Responses(r) => r.failed_event(e),
            Encoder::Gemini(_) => Front::Gemini.error_event(e),
        }
    }
}

/// The chat stream an encoder was given had an event that is not valid JSON (an OpenAI
/// upstream's, passed on to be encoded).
pub(crate) fn unreadable_chunk() -> GatewayError {
    GatewayError::new(
        ErrorKind::BadGateway,
        "The upstream sent an event that is not valid JSON.",
    )
    .code(crate::error::Code::UpstreamBadResponse)
}

/// Anthropic's `error.type` for an error.
pub fn anthropic_error_type(e: &GatewayError) -> &'static str {
    match e.kind {
        ErrorKind::Unavailable => "overloaded_error",
        ErrorKind::GatewayTimeout => "timeout_error",
        ErrorKind::Upstream(529) => "overloaded_error",
        _ => match e.status() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        },
    }
}

/// `{"type":"error","error":{"type":..,"message":..}}`; an Anthropic upstream's own error
/// body is passed on unchanged.
fn anthropic_error_body(e: &GatewayError) -> Bytes {
    let message = match &e.upstream_body {
        Some(UpstreamBody::Anthropic(b)) => return b.clone(),
        Some(UpstreamBody::OpenAi(_) | UpstreamBody::Gemini(_)) => e.message_or_code(),
        None => e.message.clone(),
    };
    let mut body = serde_json::json!({
        "type": "error",
        "error": {"type": anthropic_error_type(e), "message": message},
    });
    // What Anthropic's SDKs read to fall back from a message thread to the whole history.
    if e.code == Some(crate::error::Code::ThreadUnsupportedRequest) {
        body["error"]["details"] = serde_json::json!({"error_code": e.code.map(|c| c.as_str())});
    }
    serde_json::to_vec(&body)
        .unwrap_or_else(|_| b"{\"type\":\"error\",\"error\":{}}".to_vec())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_anthropic_format_carry_the_matching_type() {
        let cases = [
            (GatewayError::missing_key(), 401, "authentication_error"),
            (
                GatewayError::new(ErrorKind::RateLimited, "slow down"),
                429,
                "rate_limit_error",
            ),
            (
                GatewayError::new(ErrorKind::Unavailable, "none left"),
                503,
                "overloaded_error",
            ),
            (
                GatewayError::invalid_request("bad"),
                400,
                "invalid_request_error",
            ),
            (GatewayError::body_too_large(10), 413, "request_too_large"),
            (
                GatewayError::new(ErrorKind::BadGateway, "cut"),
                502,
                "api_error",
            ),
        ];
        for (e, status, kind) in cases {
            assert_eq!(e.status(), status);
            let v: serde_json::Value =
                serde_json::from_slice(&Front::Messages.error_body(&e)).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind, "{e}");
            assert_eq!(v["error"]["message"], e.message.as_str());
        }
        let event = Front::Messages.error_event(&GatewayError::new(ErrorKind::BadGateway, "x"));
        assert!(event.starts_with(b"event: error\ndata: {\"type\":\"error\""));
        assert!(event.ends_with(b"\n\n"));
    }

    #[test]
    fn an_anthropic_upstream_error_passes_unchanged() {
        let mut e = GatewayError::new(ErrorKind::Upstream(529), "Provider `a`: Overloaded");
        let raw = Bytes::from_static(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        e.upstream_body = Some(UpstreamBody::Anthropic(raw.clone()));
        assert_eq!(Front::Messages.error_body(&e), raw);
        // The chat front door still answers in OpenAI's format.
        let v: serde_json::Value = serde_json::from_slice(&Front::Chat.error_body(&e)).unwrap();
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded"));
    }
}
