//! The Gemini front door (`/v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse`) for upstreams that do not speak Gemini: the request as a
//! chat completion, and the chat answer (whole body or chunk stream) as Gemini's
//! `GenerateContentResponse` (one, or one per SSE event).
//!
//! (To a `gemini` upstream the request is passed through instead; see `gateway`.)

use crate::error::GatewayError;
use bytes::Bytes;

/// A Gemini request, turned into a chat completion request.
#[derive(Debug)]
pub struct ToChat {
    /// The chat completion request body (`stream_options.include_usage` set when streaming).
    pub body: Vec<u8>,
    /// Gemini tools with no chat equivalent (Google Search, code execution …), left out.
    pub dropped: Vec<String>,
}

/// Translates a Gemini `generateContent` body for `model` into a chat completion request.
pub fn request_to_chat(body: &[u8], model: &str, stream: bool) -> Result<ToChat, GatewayError> {
    let _ = (body, model, stream);
    todo!()
}

/// Translates a `chat.completion` body into a Gemini `GenerateContentResponse`.
pub fn response_from_chat(body: &[u8], model: &str) -> Result<Vec<u8>, String> {
    let _ = (body, model);
    todo!()
}

/// Turns a chat chunk stream (SSE bytes, split anywhere) into Gemini's SSE stream.
pub struct StreamEncoder {}

impl StreamEncoder {
    pub fn new(model: &str) -> Self {
        let _ = model;
        todo!()
    }

    // hot path: every chunk of a translated stream.
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        let _ = chunk;
        todo!()
    }

    pub fn finish(&mut self) -> Option<Bytes> {
        todo!()
    }

    pub fn done(&self) -> bool {
        todo!()
    }
}

/// A Google error body: `{"error":{"code":..,"message":..,"status":..}}`.
pub fn error_body(status: u16, message: &str) -> Bytes {
    let _ = (status, message);
    todo!()
}
