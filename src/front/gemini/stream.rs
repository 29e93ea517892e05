//! A chat chunk stream as Gemini's SSE stream.

use super::*;

const EVENT_HEAD: &[u8] = b"data: {\"candidates\":[{\"content\":{\"parts\":[";
const PARTS_END: &[u8] = b"],\"role\":\"model\"}";

/// Turns a chat chunk stream (SSE bytes, split anywhere) into Gemini's SSE stream. `finish`
/// leaves a cut stream (no `[DONE]`, no `finish_reason`) open for the caller's error event;
/// `done`: the final event or an error event was sent. Its usage is the upstream's (OpenAI's
/// sense: output includes reasoning).
pub type StreamEncoder = Translated<Encoder>;

impl StreamEncoder {
    /// `model`: the model the client asked for, as `modelVersion` names it.
    pub fn new(model: &str) -> Self {
        Translated::with_state(Encoder {
            model: model.to_string(),
            tail: Vec::new(),
            parts: Vec::with_capacity(256),
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
        })
    }
}

/// One chat tool call (one `index`), gathered until it is sent whole.
struct Call {
    index: u32,
    id: String,
    name: String,
    /// The arguments' JSON text so far.
    arguments: String,
    sent: bool,
}

/// What the stream has told so far.
pub struct Encoder {
    model: String,
    /// `,"modelVersion":..,"responseId":..}` and the event's end, once the id is known.
    tail: Vec<u8>,
    /// The parts of the event being built, comma-separated.
    parts: Vec<u8>,
    calls: Vec<Call>,
    /// Gemini's finishReason, once a finish_reason came.
    finish_reason: Option<&'static str>,
    usage: Option<Usage>,
}

impl Events for Encoder {
    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        if data == b"[DONE]" {
            self.end_stream(out);
            return true;
        }
        let chunk = serde_json::from_slice::<Chunk<'_>>(data).and_then(arguments_are_strings);
        let chunk = match chunk {
            Ok(c) => c,
            // The unterminated last event of a cut stream: the caller reports the cut.
            Err(_) if at_end => return false,
            Err(_) => {
                out.extend_from_slice(&Front::Gemini.error_event(&unreadable_chunk()));
                return true;
            }
        };
        if self.tail.is_empty() {
            self.set_tail(chunk.id.as_deref());
        }
        self.parts.clear();
        if let Some(choice) = chunk.choices.0 {
            if let Some(d) = choice.delta {
                let reasoning = literal(d.reasoning_content).or(literal(d.reasoning));
                let text = literal(d.content).or(literal(d.refusal));
                if reasoning.is_some() || text.is_some() {
                    self.send_calls(false);
                }
                if let Some(lit) = reasoning {
                    self.part_start();
                    self.parts.extend_from_slice(b"{\"text\":");
                    self.parts.extend_from_slice(lit);
                    self.parts.extend_from_slice(b",\"thought\":true}");
                }
                if let Some(lit) = text {
                    self.part_start();
                    self.parts.extend_from_slice(b"{\"text\":");
                    self.parts.extend_from_slice(lit);
                    self.parts.push(b'}');
                }
                for (position, call) in d.tool_calls.into_iter().flatten().enumerate() {
                    self.tool_delta(call, position as u32);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(finish_reason(Some(&reason)));
                // Nothing follows: let the client act on the calls now.
                self.send_calls(true);
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
        }
        if !self.parts.is_empty() {
            self.write_event(out, None);
        }
        false
    }

    /// A stream that finished but lost its `[DONE]` is ended; a cut one is not.
    fn end(&mut self, out: &mut Vec<u8>) -> bool {
        if self.finish_reason.is_none() {
            return false;
        }
        self.end_stream(out);
        true
    }
}

impl Encoder {
    fn set_tail(&mut self, chat_id: Option<&str>) {
        self.tail.extend_from_slice(b",\"modelVersion\":");
        json_str(&mut self.tail, &self.model);
        self.tail.extend_from_slice(b",\"responseId\":");
        json_str(&mut self.tail, &response_id(chat_id));
        self.tail.extend_from_slice(b"}\r\n\r\n");
    }

    fn part_start(&mut self) {
        if !self.parts.is_empty() {
            self.parts.push(b',');
        }
    }

    fn tool_delta(&mut self, call: ToolCallDelta<'_>, position: u32) {
        let index = call.index.unwrap_or(position);
        let at = match self.calls.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                // A new call: the earlier ones whose arguments are complete can go.
                self.send_calls(false);
                self.calls.push(Call {
                    index,
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                    sent: false,
                });
                self.calls.len() - 1
            }
        };
        let c = &mut self.calls[at];
        if c.sent {
            // Only a broken upstream extends a call after its end came.
            tracing::warn!(index, "tool call fragment after the call was sent");
            return;
        }
        if let Some(arguments) = call.fill(&mut c.id, &mut c.name).and_then(unescaped) {
            c.arguments.push_str(&arguments);
        }
    }

    /// Adds the calls not sent yet to the event's parts, as `functionCall` parts: all of
    /// them, or (`all` false) those whose arguments are a complete JSON value.
    fn send_calls(&mut self, all: bool) {
        for at in 0..self.calls.len() {
            let c = &self.calls[at];
            if c.sent {
                continue;
            }
            let complete = serde_json::from_str::<IgnoredAny>(&c.arguments).is_ok();
            if !all && !complete {
                continue;
            }
            let (parts, c) = (&mut self.parts, &mut self.calls[at]);
            let args = Some(c.arguments.trim()).filter(|a| complete && a.starts_with('{'));
            c.sent = true;
            if c.name.is_empty() {
                tracing::warn!(index = c.index, "tool call without a name");
                continue;
            }
            if c.id.is_empty() {
                c.id = call_id();
            }
            if !parts.is_empty() {
                parts.push(b',');
            }
            parts.extend_from_slice(b"{\"functionCall\":{\"id\":");
            json_str(parts, &c.id);
            parts.extend_from_slice(b",\"name\":");
            json_str(parts, &c.name);
            parts.extend_from_slice(b",\"args\":");
            match args {
                Some(a) => parts.extend_from_slice(a.as_bytes()),
                None => parts.extend_from_slice(b"{}"),
            }
            parts.extend_from_slice(b"}}");
        }
    }

    /// One event with the parts gathered, and the final fields when `finish` is given.
    fn write_event(&mut self, out: &mut Vec<u8>, finish: Option<&str>) {
        if self.tail.is_empty() {
            self.set_tail(None);
        }
        out.extend_from_slice(EVENT_HEAD);
        out.extend_from_slice(&self.parts);
        out.extend_from_slice(PARTS_END);
        if let Some(reason) = finish {
            out.extend_from_slice(b",\"finishReason\":\"");
            out.extend_from_slice(reason.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"index\":0}]");
        if finish.is_some() {
            if let Some(u) = &self.usage {
                out.extend_from_slice(b",\"usageMetadata\":");
                let _ = serde_json::to_writer(&mut *out, &usage_metadata(u));
            }
        }
        out.extend_from_slice(&self.tail);
        self.parts.clear();
    }

    /// The final event: the calls still held, `finishReason` and `usageMetadata`.
    fn end_stream(&mut self, out: &mut Vec<u8>) {
        self.parts.clear();
        self.send_calls(true);
        if self.parts.is_empty() {
            self.parts.extend_from_slice(b"{\"text\":\"\"}");
        }
        let reason = self.finish_reason.unwrap_or("STOP");
        self.write_event(out, Some(reason));
    }
}

/// The chunk, or an error when a tool call's `arguments` are not a string (the chunk is then
/// not one this door can read).
fn arguments_are_strings(chunk: Chunk<'_>) -> Result<Chunk<'_>, serde_json::Error> {
    let calls = chunk.choices.0.as_ref().and_then(|c| c.delta.as_ref());
    let calls = calls.and_then(|d| d.tool_calls.as_deref()).unwrap_or(&[]);
    let functions = calls.iter().filter_map(|c| c.function.as_ref());
    if functions
        .filter_map(|f| f.arguments)
        .any(|a| !a.get().starts_with('"'))
    {
        return Err(serde::de::Error::custom("`arguments` is not a string"));
    }
    Ok(chunk)
}
