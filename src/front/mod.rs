//! Front doors: the client protocols Junction serves. OpenAI chat completions is the one the
//! providers' adapters speak; the others translate their requests into it, and its answers
//! (whole or streamed) back into their own form, or pass through to a provider that speaks
//! them natively.

pub(crate) mod chat;
pub mod gemini;
pub mod messages;
pub mod responses;
#[cfg(test)]
pub(crate) mod test_support;

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
