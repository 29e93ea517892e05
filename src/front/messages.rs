//! The Anthropic Messages front door (`POST /v1/messages`) for upstreams that do not speak
//! Anthropic: the request as an OpenAI chat completion, and the OpenAI answer (whole body or
//! chunk stream) as an Anthropic message or Anthropic's event stream.
//!
//! (To an `anthropic` upstream the request is passed through instead; see `gateway`.)

use crate::error::GatewayError;
use bytes::Bytes;

/// An Anthropic Messages request, turned into an OpenAI chat completion request.
#[derive(Debug)]
pub struct ToChat {
    /// The OpenAI request body (`stream_options.include_usage` set when streaming).
    pub body: Vec<u8>,
    pub model: String,
    pub stream: bool,
}

/// Translates an Anthropic Messages request body into an OpenAI chat completion request.
pub fn request_to_chat(body: &[u8]) -> Result<ToChat, GatewayError> {
    let _ = body;
    todo!()
}

/// Translates an OpenAI `chat.completion` body into an Anthropic `message` body.
pub fn response_from_chat(body: &[u8], model: &str) -> Result<Vec<u8>, String> {
    let _ = (body, model);
    todo!()
}

/// Turns an OpenAI chunk stream (SSE bytes, split anywhere) into Anthropic's event stream.
pub struct StreamEncoder {}

impl StreamEncoder {
    pub fn new(model: &str) -> Self {
        let _ = model;
        todo!()
    }

    // hot path: every chunk of a translated stream.
    /// The Anthropic events for an OpenAI chunk (`None`: nothing complete yet).
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        let _ = chunk;
        todo!()
    }

    /// At the end of the OpenAI stream: whatever must still be sent.
    pub fn finish(&mut self) -> Option<Bytes> {
        todo!()
    }
}
