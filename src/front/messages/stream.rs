//! A chat chunk stream as Anthropic's event stream, and errors in Anthropic's format.

use super::*;

/// The content block being streamed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Nothing,
    Thinking,
    Text,
    /// The tool call at this position of `Encoder::calls`.
    Tool(usize),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Not started yet: its fragments are held back.
    Waiting,
    Open,
    Closed,
}

/// One OpenAI tool call (one `index`), as a tool_use block.
struct Call {
    index: u32,
    id: String,
    name: String,
    state: CallState,
    /// Fragments held back: the insides of their JSON string literals, joined (the insides
    /// of string literals join into the inside of one).
    held: Vec<u8>,
    arguments: Balance,
}

/// Follows the nesting of a JSON text given in pieces as the (escaped) insides of JSON
/// string literals, far enough to tell when an object or array has been closed.
#[derive(Default, Clone, Copy)]
pub(super) struct Balance {
    depth: u32,
    in_string: bool,
    /// In a string of the arguments, after a backslash.
    escaped: bool,
    pub(super) complete: bool,
}

impl Balance {
    pub(super) fn feed(&mut self, inside: &[u8]) {
        let mut i = 0;
        while i < inside.len() {
            // One character of the arguments, undoing the literal's escaping.
            let c = match inside[i] {
                b'\\' => {
                    let e = inside.get(i + 1).copied().unwrap_or(b'\\');
                    i += 2;
                    match e {
                        b'u' => {
                            let hex = inside.get(i..i + 4).unwrap_or(b"0000");
                            i += 4;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u16::from_str_radix(h, 16).ok())
                                .unwrap_or(0);
                            // Only ASCII structure matters here.
                            u8::try_from(code).ok().filter(u8::is_ascii).unwrap_or(b'x')
                        }
                        b'n' | b'r' | b't' | b'b' | b'f' => b' ',
                        other => other,
                    }
                }
                c => {
                    i += 1;
                    c
                }
            };
            self.step(c);
        }
    }

    fn step(&mut self, c: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == b'\\' {
                self.escaped = true;
            } else if c == b'"' {
                self.in_string = false;
            }
            return;
        }
        match c {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' if self.depth > 0 => {
                self.depth -= 1;
                self.complete |= self.depth == 0;
            }
            _ => {}
        }
    }
}

const BLOCK_START: &[u8] =
    b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":";
const BLOCK_DELTA: &[u8] =
    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":";
const BLOCK_STOP: &[u8] =
    b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":";
const MESSAGE_STOP: &[u8] = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn write_index(out: &mut Vec<u8>, prefix: &[u8], index: u32) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
}

/// The head of a content_block_delta, up to its string value.
fn delta_head(out: &mut Vec<u8>, at: u32, open: Open) {
    write_index(out, BLOCK_DELTA, at);
    out.extend_from_slice(match open {
        Open::Text => b",\"delta\":{\"type\":\"text_delta\",\"text\":",
        Open::Thinking => b",\"delta\":{\"type\":\"thinking_delta\",\"thinking\":",
        _ => b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":",
    });
}

/// Turns an OpenAI chunk stream (SSE bytes, split anywhere) into Anthropic's event stream.
/// `finish` leaves a cut stream (no `[DONE]`, no `finish_reason`) open for the caller's error
/// event; `done`: `message_stop` or an `error` event was sent. Its usage is the upstream's
/// (OpenAI's sense: input includes cached tokens).
pub type StreamEncoder = Translated<Encoder>;

impl StreamEncoder {
    /// `model`: the model the client asked for, as the events name it.
    pub fn new(model: &str) -> Self {
        Translated::with_state(Encoder {
            model: model.to_string(),
            started: false,
            next_index: 0,
            open: Open::Nothing,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
        })
    }
}

/// What the stream has told so far.
pub struct Encoder {
    model: String,
    /// message_start was sent.
    started: bool,
    /// Anthropic index of the next content block (the open one is `next_index - 1`).
    next_index: u32,
    open: Open,
    calls: Vec<Call>,
    /// The finish_reason, once one came.
    finish_reason: Option<&'static str>,
    usage: Option<Usage>,
}

impl Events for Encoder {
    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        if data == b"[DONE]" {
            self.end_message(out);
            return true;
        }
        let chunk: Chunk<'_> = match serde_json::from_slice(data) {
            Ok(c) => c,
            // The unterminated last event of a cut stream: the caller reports the cut.
            Err(_) if at_end => return false,
            Err(_) => {
                out.extend_from_slice(&Front::Messages.error_event(&unreadable_chunk()));
                return true;
            }
        };
        if !self.started {
            self.start(chunk.id.as_deref(), out);
        }
        if let Some(choice) = chunk.choices.0 {
            if let Some(d) = choice.delta {
                let reasoning = literal(d.reasoning_content).or(literal(d.reasoning));
                if let Some(lit) = reasoning {
                    self.piece(Open::Thinking, lit, out);
                }
                if let Some(lit) = literal(d.content).or(literal(d.refusal)) {
                    self.piece(Open::Text, lit, out);
                }
                for (position, call) in d.tool_calls.into_iter().flatten().enumerate() {
                    self.tool_delta(call, position as u32, out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(finish_of(&reason));
                // Nothing follows: let the client act on the blocks now.
                self.close_all(out);
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
        }
        false
    }

    /// A stream that finished but lost its `[DONE]` is ended; a cut one is not.
    fn end(&mut self, out: &mut Vec<u8>) -> bool {
        if self.finish_reason.is_none() {
            return false;
        }
        self.end_message(out);
        true
    }
}

impl Encoder {
    fn start(&mut self, openai_id: Option<&str>, out: &mut Vec<u8>) {
        self.started = true;
        out.extend_from_slice(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":",
        );
        json_str(out, &message_id(openai_id));
        out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        json_str(out, &self.model);
        out.extend_from_slice(b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n");
    }

    // hot path: one call per text or thinking delta.
    /// A text or thinking fragment (a JSON string literal), in a block of its kind.
    fn piece(&mut self, kind: Open, literal: &[u8], out: &mut Vec<u8>) {
        if self.open != kind {
            self.close_all(out);
            self.open_block(kind, out);
        }
        delta_head(out, self.next_index - 1, kind);
        out.extend_from_slice(literal);
        out.extend_from_slice(b"}}\n\n");
    }

    /// Opens a text or thinking block.
    fn open_block(&mut self, kind: Open, out: &mut Vec<u8>) {
        write_index(out, BLOCK_START, self.next_index);
        out.extend_from_slice(if kind == Open::Text {
            b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        } else {
            b",\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n"
        });
        self.next_index += 1;
        self.open = kind;
    }

    fn tool_delta(&mut self, call: ToolCallDelta<'_>, position: u32, out: &mut Vec<u8>) {
        let index = call.index.unwrap_or(position);
        let at = call_at(
            &mut self.calls,
            index,
            |c| c.index,
            |index| Call {
                index,
                id: String::new(),
                name: String::new(),
                state: CallState::Waiting,
                held: Vec::new(),
                arguments: Balance::default(),
            },
        );
        let c = &mut self.calls[at];
        let arguments = literal(call.fill(&mut c.id, &mut c.name));
        if let Some(lit) = arguments {
            let inside = &lit[1..lit.len() - 1];
            match c.state {
                CallState::Open => {
                    c.arguments.feed(inside);
                    delta_head(out, self.next_index - 1, Open::Tool(at));
                    out.extend_from_slice(lit);
                    out.extend_from_slice(b"}}\n\n");
                }
                CallState::Waiting => {
                    c.arguments.feed(inside);
                    c.held.extend_from_slice(inside);
                }
                // Only a broken upstream extends arguments after content or the end came
                // between them; the block is closed and cannot take them.
                CallState::Closed => {
                    tracing::warn!(index, "tool call arguments after the call's block closed");
                }
            }
        }
        self.advance(out);
    }

    /// Starts waiting tool calls, in order, while the open block may be closed: it is not a
    /// tool call, or its arguments are complete.
    fn advance(&mut self, out: &mut Vec<u8>) {
        while let Some(next) = self
            .calls
            .iter()
            .position(|c| c.state == CallState::Waiting)
        {
            if self.calls[next].name.is_empty() {
                break;
            }
            if let Open::Tool(at) = self.open {
                if !self.calls[at].arguments.complete {
                    break;
                }
            }
            self.close_block(out);
            self.start_tool(next, out);
        }
    }

    fn start_tool(&mut self, at: usize, out: &mut Vec<u8>) {
        let block = self.next_index;
        let c = &mut self.calls[at];
        if c.id.is_empty() {
            c.id = tool_use_id();
        }
        write_index(out, BLOCK_START, block);
        out.extend_from_slice(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
        json_str(out, &c.id);
        out.extend_from_slice(b",\"name\":");
        json_str(out, &c.name);
        out.extend_from_slice(b",\"input\":{}}}\n\n");
        if !c.held.is_empty() {
            delta_head(out, block, Open::Tool(at));
            out.push(b'"');
            out.extend_from_slice(&c.held);
            out.extend_from_slice(b"\"}}\n\n");
            c.held = Vec::new();
        }
        c.state = CallState::Open;
        self.open = Open::Tool(at);
        self.next_index += 1;
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open == Open::Nothing {
            return;
        }
        if let Open::Tool(at) = self.open {
            self.calls[at].state = CallState::Closed;
        }
        write_index(out, BLOCK_STOP, self.next_index - 1);
        out.extend_from_slice(b"}\n\n");
        self.open = Open::Nothing;
    }

    /// Closes the open block and sends every waiting tool call whole.
    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close_block(out);
        while let Some(next) = self
            .calls
            .iter()
            .position(|c| c.state == CallState::Waiting)
        {
            self.start_tool(next, out);
            self.close_block(out);
        }
    }

    /// Closes the message: the last block, message_delta and message_stop.
    fn end_message(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(None, out);
        }
        self.close_all(out);
        if self.next_index == 0 {
            // An Anthropic message always has a content block.
            self.open_block(Open::Text, out);
            self.close_block(out);
        }
        out.extend_from_slice(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
        out.extend_from_slice(stop_reason(self.finish_reason, !self.calls.is_empty()).as_bytes());
        out.extend_from_slice(b"\",\"stop_sequence\":null},\"usage\":");
        write_usage(out, self.usage);
        out.extend_from_slice(b"}\n\n");
        out.extend_from_slice(MESSAGE_STOP);
    }
}
