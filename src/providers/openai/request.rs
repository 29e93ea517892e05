//! The request: what routing needs of a chat completion (read once, without building it), and the body patched for the upstream.

use super::*;

/// What the gateway needs to know of a chat completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequestInfo {
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The session the request belongs to (`prompt_cache_key`, or a session header), for
    /// deployment affinity.
    pub session: Option<u64>,
}

/// Reusable buffers for parsing request bodies (simd-json parses in place, into a tape).
#[derive(Default)]
pub struct JsonScratch {
    input: Vec<u8>,
    buffers: simd_json::Buffers,
}

impl JsonScratch {
    /// Bytes held; a large request grows it, and the owner may drop it afterwards.
    pub fn capacity(&self) -> usize {
        self.input.capacity()
    }
}

// hot path: one simd-json pass over the whole body into a reused tape; no tree is built and
// the original bytes stay untouched for the upstream.
/// Parses and checks a chat completion request body.
pub fn parse_request(
    body: &[u8],
    scratch: &mut JsonScratch,
) -> Result<ChatRequestInfo, GatewayError> {
    use simd_json::prelude::*;
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => {
            return Err(GatewayError::invalid_request(
                "The request body is empty; expected a JSON object.",
            ))
        }
        Some(b'{') => {}
        Some(_) => {
            return Err(GatewayError::invalid_request(
                "Invalid request: the body must be a JSON object.",
            ))
        }
    }
    // simd-json lets some control bytes after a number pass (a NUL reads as the end of its
    // padded input). Valid JSON has no byte below 0x20 but tab, LF and CR, anywhere (raw ones
    // are not allowed in strings either), so the check is exact.
    if let Some(at) = control_byte(body) {
        return Err(GatewayError::invalid_request(format!(
            "The request body is not valid JSON: control byte 0x{:02x} at offset {at}.",
            body[at]
        ))
        .code(Code::InvalidJson));
    }
    scratch.input.clear();
    scratch.input.extend_from_slice(body);
    let tape =
        simd_json::to_tape_with_buffers(&mut scratch.input, &mut scratch.buffers).map_err(|e| {
            GatewayError::invalid_request(format!(
                "The request body is not valid JSON: {}",
                clean_serde_message(&e.to_string())
            ))
            .code(Code::InvalidJson)
        })?;
    let root = tape.as_value();
    let Some(obj) = root.as_object() else {
        return Err(GatewayError::invalid_request(
            "Invalid request: the body must be a JSON object.",
        ));
    };
    // The gateway and the upstream must read the same fields: a repeated one could be read
    // differently by the upstream's parser than by ours.
    for field in ["model", "stream", "stream_options", "messages"] {
        if obj.iter().filter(|(k, _)| *k == field).count() > 1 {
            return Err(GatewayError::invalid_request(format!(
                "Invalid request: duplicate field `{field}`."
            )));
        }
    }
    let model = match obj.get("model") {
        None => {
            return Err(
                GatewayError::invalid_request("Invalid request: missing field `model`.")
                    .param("model"),
            )
        }
        Some(v) => v.as_str().map(str::to_string).ok_or_else(|| {
            GatewayError::invalid_request(
                "Invalid request: `model` must be a string (invalid type).",
            )
            .param("model")
        })?,
    };
    if model.is_empty() {
        return Err(GatewayError::invalid_request("`model` must not be empty.").param("model"));
    }
    match obj.get("messages") {
        None => {
            return Err(
                GatewayError::invalid_request("Invalid request: missing field `messages`.")
                    .param("messages"),
            )
        }
        Some(v) => match v.as_array() {
            None => {
                return Err(GatewayError::invalid_request(
                    "Invalid request: `messages` must be an array (invalid type).",
                )
                .param("messages"))
            }
            Some(a) if a.is_empty() => {
                return Err(GatewayError::invalid_request(
                    "`messages` must hold at least one message.",
                )
                .param("messages"))
            }
            Some(_) => {}
        },
    }
    let stream = match obj.get("stream") {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => v.as_bool().ok_or_else(|| {
            GatewayError::invalid_request(
                "Invalid request: `stream` must be a boolean (invalid type).",
            )
            .param("stream")
        })?,
    };
    let include_usage = match obj.get("stream_options") {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => match v.as_object() {
            None => {
                return Err(GatewayError::invalid_request(
                    "Invalid request: `stream_options` must be an object (invalid type).",
                )
                .param("stream_options"))
            }
            Some(o) => o
                .get("include_usage")
                .and_then(|u| u.as_bool())
                .unwrap_or(false),
        },
    };
    let session = obj.get("prompt_cache_key").and_then(|v| {
        v.as_str()
            .filter(|k| !k.is_empty())
            .map(|k| crate::routing::fnv1a(k.as_bytes()))
    });
    Ok(ChatRequestInfo {
        model,
        stream,
        include_usage,
        session,
    })
}

// hot path: a branch-free pass per 64 bytes that the compiler vectorizes.
/// The offset of the first byte below 0x20 other than tab, LF and CR.
fn control_byte(body: &[u8]) -> Option<usize> {
    let bad = |b: u8| b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r';
    for (i, chunk) in body.chunks(64).enumerate() {
        if chunk.iter().fold(false, |acc, &b| acc | bad(b)) {
            return chunk.iter().position(|&b| bad(b)).map(|p| i * 64 + p);
        }
    }
    None
}

fn clean_serde_message(msg: &str) -> String {
    crate::error::Printable(msg).to_string()
}

/// Byte ranges of the top-level values the gateway patches.
#[derive(Debug, Default, PartialEq, Eq)]
struct TopLevel {
    model: Option<Range<usize>>,
    stream_options: Option<Range<usize>>,
}

// hot path: one memchr pass over an already validated body. Only object depth matters: a
// top-level key is a string at depth 1 followed by `:` (strings inside arrays are not).
fn scan_top_level(body: &[u8]) -> Option<TopLevel> {
    let mut out = TopLevel::default();
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut depth = 1usize;
    loop {
        i += memchr::memchr3(b'"', b'{', b'}', body.get(i..)?)?;
        match body[i] {
            b'{' => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Some(out);
                }
            }
            _ => {
                let end = string_end(body, i)?;
                let colon = skip_ws(body, end);
                if depth == 1 && body.get(colon) == Some(&b':') {
                    let slot = match &body[i + 1..end - 1] {
                        b"model" => Some(&mut out.model),
                        b"stream_options" => Some(&mut out.stream_options),
                        _ => None,
                    };
                    if let Some(slot) = slot {
                        let start = skip_ws(body, colon + 1);
                        let value_end = value_end(body, start)?;
                        *slot = Some(start..value_end);
                        i = value_end;
                        continue;
                    }
                }
                i = end;
            }
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `b[start]` is `"`; returns the index just past the closing quote.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[i] == b'\\' {
            i += 2;
        } else {
            return Some(i + 1);
        }
    }
}

/// End of the JSON value starting at `start`.
fn value_end(b: &[u8], start: usize) -> Option<usize> {
    let (open, close) = match *b.get(start)? {
        b'"' => return string_end(b, start),
        b'{' => (b'{', b'}'),
        b'[' => (b'[', b']'),
        _ => {
            let rel = b[start..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(b.len() - start);
            return Some(start + rel);
        }
    };
    let mut depth = 0usize;
    let mut i = start;
    loop {
        i += memchr::memchr3(b'"', open, close, b.get(i..)?)?;
        if b[i] == b'"' {
            i = string_end(b, i)?;
        } else if b[i] == open {
            depth += 1;
            i += 1;
        } else {
            depth -= 1;
            i += 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
}

const USAGE_ON: &[u8] = br#"{"include_usage":true}"#;

/// The body to send upstream: the client's bytes with `model` replaced by `upstream_model`
/// and, for streams, `stream_options.include_usage` set so that usage is always reported.
pub fn patch_request(
    body: &[u8],
    info: &ChatRequestInfo,
    upstream_model: &str,
) -> Result<Vec<u8>, GatewayError> {
    let Some(top) = scan_top_level(body).filter(|t| t.model.is_some()) else {
        return patch_by_reserializing(body, info, upstream_model);
    };
    let model = top.model.expect("checked above");
    let mut edits: [(Range<usize>, Option<Vec<u8>>); 2] = [(model, None), (0..0, None)];
    edits[0].1 = Some(serde_json::to_vec(upstream_model).map_err(internal)?);
    if info.stream && !info.include_usage {
        edits[1] = match top.stream_options {
            None => {
                // Insert as the first member, just after `{`.
                let at = skip_ws(body, 0) + 1;
                let mut v = Vec::with_capacity(40);
                v.extend_from_slice(br#""stream_options":"#);
                v.extend_from_slice(USAGE_ON);
                v.push(b',');
                (at..at, Some(v))
            }
            Some(range) => {
                let mut opts: serde_json::Value =
                    serde_json::from_slice(&body[range.clone()]).map_err(internal)?;
                let value = match &mut opts {
                    serde_json::Value::Object(o) => {
                        o.insert("include_usage".into(), true.into());
                        serde_json::to_vec(&opts).map_err(internal)?
                    }
                    serde_json::Value::Null => USAGE_ON.to_vec(),
                    _ => {
                        return Err(GatewayError::invalid_request(
                            "`stream_options` must be an object.",
                        )
                        .param("stream_options"))
                    }
                };
                (range, Some(value))
            }
        };
    }
    edits.sort_by_key(|(r, _)| r.start);
    let extra: usize = edits
        .iter()
        .filter_map(|(_, v)| v.as_ref())
        .map(Vec::len)
        .sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut at = 0;
    for (range, value) in edits {
        let Some(value) = value else { continue };
        out.extend_from_slice(&body[at..range.start]);
        out.extend_from_slice(&value);
        at = range.end;
    }
    out.extend_from_slice(&body[at..]);
    Ok(out)
}

/// Slow path for bodies the byte scanner cannot place `model` in (an escaped key name).
fn patch_by_reserializing(
    body: &[u8],
    info: &ChatRequestInfo,
    upstream_model: &str,
) -> Result<Vec<u8>, GatewayError> {
    let mut v: serde_json::Value = serde_json::from_slice(body).map_err(internal)?;
    let o = v
        .as_object_mut()
        .ok_or_else(|| GatewayError::invalid_request("The request body must be a JSON object."))?;
    o.insert("model".into(), upstream_model.into());
    if info.stream && !info.include_usage {
        let opts = o
            .entry("stream_options")
            .or_insert_with(|| serde_json::json!({}));
        if opts.is_null() {
            *opts = serde_json::json!({});
        }
        match opts.as_object_mut() {
            Some(opts) => {
                opts.insert("include_usage".into(), true.into());
            }
            None => {
                return Err(
                    GatewayError::invalid_request("`stream_options` must be an object.")
                        .param("stream_options"),
                )
            }
        }
    }
    serde_json::to_vec(&v).map_err(internal)
}

fn internal(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::invalid_request(format!("Invalid request: {e}"))
}
