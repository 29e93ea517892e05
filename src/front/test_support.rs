//! Helpers shared by the front doors' unit tests: the provider captures, chat chunk
//! streams built from JSON values, and a runner that feeds an encoder in pieces.

use crate::stream::translate::{Events, Translated};
use bytes::Bytes;
use serde_json::{json, Value};

/// The provider captures shared with the other implementations.
pub(crate) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers/");

/// The bytes of the capture `name`.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs a stream through the encoder `e`, fed in the given pieces, then finished; gives
/// what it wrote and the encoder.
pub(crate) fn feed_pieces<S: Events>(
    mut e: Translated<S>,
    pieces: &[&[u8]],
) -> (Vec<u8>, Translated<S>) {
    let mut out = Vec::new();
    for p in pieces {
        if let Some(b) = e.feed(Bytes::copy_from_slice(p)) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = e.finish() {
        out.extend_from_slice(&b);
    }
    (out, e)
}

/// SSE text of chat chunks given as JSON values (and `[DONE]` when `done`).
pub(crate) fn chat_stream(chunks: &[Value], done: bool) -> Vec<u8> {
    let mut s = Vec::new();
    for c in chunks {
        s.extend_from_slice(format!("data: {c}\n\n").as_bytes());
    }
    if done {
        s.extend_from_slice(b"data: [DONE]\n\n");
    }
    s
}

/// A chat chunk whose first choice carries the delta `d`.
pub(crate) fn delta(d: Value) -> Value {
    json!({"id": "chatcmpl-t1", "object": "chat.completion.chunk", "created": 1700000000, "choices": [{"index": 0, "delta": d, "finish_reason": null}]})
}

/// A chat chunk that finishes the first choice with `reason`.
pub(crate) fn finish(reason: &str) -> Value {
    json!({"id": "chatcmpl-t1", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}

/// A chat chunk with no choices and only usage.
pub(crate) fn usage(prompt: u64, completion: u64, cached: u64) -> Value {
    json!({"id": "chatcmpl-t1", "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}})
}

/// One tool call fragment of a delta (`id` and `name` only where given).
pub(crate) fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
    let mut c = json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        c["id"] = id.into();
        c["type"] = "function".into();
    }
    if let Some(name) = name {
        c["function"]["name"] = name.into();
    }
    c
}

/// A chat chunk whose delta carries the tool call fragments `list`.
pub(crate) fn calls(list: Vec<Value>) -> Value {
    delta(json!({ "tool_calls": list }))
}
