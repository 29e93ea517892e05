//! Front doors: the client protocols Junction serves, one contract dispatched by `match` on
//! [`Front`]. OpenAI chat completions is the form the providers' adapters take; every other
//! door translates its requests into it and its answers (whole, [`Front::whole_from_chat`], or
//! streamed, [`Front::encoder`]) back into its own form, or passes through to a provider that
//! speaks it natively ([`Front::native_to`]). Each door also writes its own errors and
//! keep-alives.

pub(crate) mod chat;
pub mod gemini;
pub mod messages;
pub mod responses;
#[cfg(test)]
pub(crate) mod test_support;

use crate::config::{Provider, ProviderKind};
use crate::error::{ErrorKind, GatewayError, UpstreamBody};
use bytes::Bytes;

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
                let body = anthropic_error_body(e);
                let mut out = Vec::with_capacity(body.len() + 24);
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\n\n");
                out.into()
            }
            // Before any event of the response (a stream that only sent keep-alives).
            Front::Responses => responses::StreamEncoder::new("", responses::Context::default())
                .failed_event(responses_code(e), &e.message_or_code()),
            Front::Gemini => {
                let body = Front::Gemini.error_body(e);
                let mut out = Vec::with_capacity(body.len() + 10);
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\r\n\r\n");
                out.into()
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

    /// The event that ends the stream with an error, in the door's protocol.
    pub fn error_event(&mut self, e: &GatewayError) -> Bytes {
        match self {
            Encoder::Messages(_) => Front::Messages.error_event(e),
            Encoder::Responses(r) => r.failed_event(responses_code(e), &e.message_or_code()),
            Encoder::Gemini(_) => Front::Gemini.error_event(e),
        }
    }
}

/// The machine-readable `response.failed` code for an error.
pub fn responses_code(e: &GatewayError) -> &'static str {
    match e.status() {
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_prompt",
        _ => "server_error",
    }
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
    let body = serde_json::json!({
        "type": "error",
        "error": {"type": anthropic_error_type(e), "message": message},
    });
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
