//! Writes OpenAI `chat.completion.chunk` SSE events into a buffer, for the stream
//! translators. The constant head of every chunk (id, created, model) is built once.

use crate::usage::Usage;
use std::io::Write;

/// One piece of an assistant message, as a chunk's `delta`.
pub enum Delta<'a> {
    /// The first chunk: `{"role":"assistant","content":""}`.
    Role,
    Content(&'a str),
    Reasoning(&'a str),
    /// Content given as a JSON string literal, quotes included, already checked by
    /// [`json_string_literal`]: copied as is, never unescaped and escaped again.
    ContentLiteral(&'a [u8]),
    ReasoningLiteral(&'a [u8]),
    /// A tool call begins: id, name and empty (or, when whole, complete) arguments.
    ToolStart {
        index: u32,
        id: &'a str,
        name: &'a str,
        arguments: &'a str,
    },
    ToolArguments {
        index: u32,
        arguments: &'a str,
    },
    ToolArgumentsLiteral {
        index: u32,
        arguments: &'a [u8],
    },
    /// Nothing: the chunk that carries `finish_reason`.
    Empty,
}

/// Writes the chunks of one stream.
pub struct ChunkWriter {
    /// `data: {"id":..,"object":"chat.completion.chunk","created":..,"model":..,`
    head: Vec<u8>,
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl ChunkWriter {
    pub fn new(id: &str, model: &str, created: u64) -> ChunkWriter {
        let mut head = Vec::with_capacity(96 + id.len() + model.len());
        head.extend_from_slice(b"data: {\"id\":");
        json_str(&mut head, id);
        head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        let _ = write!(head, "{created}");
        head.extend_from_slice(b",\"model\":");
        json_str(&mut head, model);
        head.push(b',');
        ChunkWriter { head }
    }

    // hot path: one call per translated event.
    /// Appends a chunk with one choice (index 0).
    pub fn delta(&self, out: &mut Vec<u8>, delta: Delta<'_>, finish_reason: Option<&str>) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":");
        match delta {
            Delta::Role => out.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"\"}"),
            Delta::Content(t) => {
                out.extend_from_slice(b"{\"content\":");
                json_str(out, t);
                out.push(b'}');
            }
            Delta::Reasoning(t) => {
                out.extend_from_slice(b"{\"reasoning_content\":");
                json_str(out, t);
                out.push(b'}');
            }
            Delta::ContentLiteral(lit) => {
                out.extend_from_slice(b"{\"content\":");
                out.extend_from_slice(lit);
                out.push(b'}');
            }
            Delta::ReasoningLiteral(lit) => {
                out.extend_from_slice(b"{\"reasoning_content\":");
                out.extend_from_slice(lit);
                out.push(b'}');
            }
            Delta::ToolArgumentsLiteral { index, arguments } => {
                let _ = write!(
                    out,
                    "{{\"tool_calls\":[{{\"index\":{index},\"function\":{{\"arguments\":"
                );
                out.extend_from_slice(arguments);
                out.extend_from_slice(b"}}]}");
            }
            Delta::ToolStart {
                index,
                id,
                name,
                arguments,
            } => {
                let _ = write!(out, "{{\"tool_calls\":[{{\"index\":{index},\"id\":");
                json_str(out, id);
                out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                json_str(out, name);
                out.extend_from_slice(b",\"arguments\":");
                json_str(out, arguments);
                out.extend_from_slice(b"}}]}");
            }
            Delta::ToolArguments { index, arguments } => {
                let _ = write!(
                    out,
                    "{{\"tool_calls\":[{{\"index\":{index},\"function\":{{\"arguments\":"
                );
                json_str(out, arguments);
                out.extend_from_slice(b"}}]}");
            }
            Delta::Empty => out.extend_from_slice(b"{}"),
        }
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish_reason {
            Some(r) => json_str(out, r),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]}\n\n");
    }

    /// Appends the usage chunk (`choices: []`), as OpenAI sends it with `include_usage`.
    pub fn usage(&self, out: &mut Vec<u8>, usage: &Usage) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"\"choices\":[],\"usage\":");
        write_usage(out, usage);
        out.extend_from_slice(b"}\n\n");
    }
}

/// OpenAI's `usage` object.
pub fn write_usage(out: &mut Vec<u8>, u: &Usage) {
    let _ = write!(
        out,
        "{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{},\"prompt_tokens_details\":{{\"cached_tokens\":{}}},\"completion_tokens_details\":{{\"reasoning_tokens\":{}}}}}",
        u.input_tokens,
        u.output_tokens,
        u.input_tokens + u.output_tokens,
        u.cached_input_tokens,
        u.reasoning_tokens
    );
}

/// If `b` starts with a JSON string literal, its length (quotes included), after checking
/// that it is valid JSON as it stands: UTF-8, no raw control characters, only valid escapes.
/// Such a literal can be copied from one JSON document into another unchanged.
pub fn json_string_literal(b: &[u8]) -> Option<usize> {
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    loop {
        let rel = b[i..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        i += rel;
        match b[i] {
            b'"' => break,
            b'\\' => match *b.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' => {
                    let hex = b.get(i + 2..i + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    i += 6;
                }
                _ => return None,
            },
            _ => return None,
        }
    }
    std::str::from_utf8(&b[..=i]).ok()?;
    Some(i + 1)
}

/// The end of every OpenAI stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_are_checked_before_being_copied() {
        assert_eq!(json_string_literal(br#""abc" rest"#), Some(5));
        assert_eq!(json_string_literal(br#""a\"b\u00e9\n""#), Some(14));
        assert_eq!(json_string_literal("\"é\"".as_bytes()), Some(4));
        assert_eq!(json_string_literal(b"\"a\nb\""), None, "raw newline");
        assert_eq!(json_string_literal(br#""\x""#), None, "bad escape");
        assert_eq!(
            json_string_literal(br#""\u12""#),
            None,
            "short unicode escape"
        );
        assert_eq!(json_string_literal(b"\"\xff\""), None, "not UTF-8");
        assert_eq!(json_string_literal(br#""open"#), None);
        assert_eq!(json_string_literal(b"x"), None);
    }

    #[test]
    fn chunks_are_valid_openai_json() {
        let w = ChunkWriter::new("msg_1", "claude \"x\"", 7);
        let mut out = Vec::new();
        w.delta(&mut out, Delta::Role, None);
        w.delta(&mut out, Delta::Content("a\"b\n"), None);
        w.delta(
            &mut out,
            Delta::ToolStart {
                index: 0,
                id: "toolu_1",
                name: "f",
                arguments: "",
            },
            None,
        );
        w.delta(
            &mut out,
            Delta::ToolArguments {
                index: 0,
                arguments: "{\"a\":",
            },
            None,
        );
        w.delta(&mut out, Delta::Empty, Some("tool_calls"));
        w.usage(&mut out, &Usage::default());
        let text = String::from_utf8(out).unwrap();
        let events: Vec<serde_json::Value> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(events.len(), 6);
        assert_eq!(events[0]["model"], "claude \"x\"");
        assert_eq!(events[1]["choices"][0]["delta"]["content"], "a\"b\n");
        assert_eq!(
            events[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "toolu_1"
        );
        assert_eq!(
            events[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":"
        );
        assert_eq!(events[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(events[5]["usage"]["total_tokens"], 0);
    }
}
