//! A chat chunk stream as the Responses event stream.

use super::*;

fn head(out: &mut Vec<u8>, seq: &mut u64, kind: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"sequence_number\":");
    out.extend_from_slice(itoa::Buffer::new().format(*seq).as_bytes());
    *seq += 1;
}

/// `,"item_id":"..","output_index":N`
fn item_ref(out: &mut Vec<u8>, id: &str, index: usize) {
    out.extend_from_slice(b",\"item_id\":\"");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\",\"output_index\":");
    out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
}

/// `,"content_index":N`
fn content_index(out: &mut Vec<u8>, index: usize) {
    out.extend_from_slice(b",\"content_index\":");
    out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
}

/// Turns a chat chunk stream (SSE bytes, split anywhere) into the Responses event stream.
/// `finish` leaves a cut stream (no `finish_reason`, whether or not `[DONE]` came) open: the
/// caller ends it with [`StreamEncoder::failed_event`]. `done`: `response.completed`,
/// `response.incomplete` or `response.failed` was sent. Its usage is the upstream's (OpenAI's
/// sense: input includes cached tokens).
pub type StreamEncoder = Translated<Encoder>;

impl StreamEncoder {
    /// `model`: the model the client asked for, as the response names it.
    pub fn new(model: &str, context: Context) -> Self {
        Translated::with_state(Encoder {
            answer: Answer::new(model),
            context,
            seq: 0,
            started: false,
            reasoning: None,
            message: None,
            calls: Vec::new(),
            kept: None,
        })
    }

    /// The final response object, once it was sent, when the response is stored.
    pub fn take_kept(&mut self) -> Option<Vec<u8>> {
        self.state_mut().kept.take()
    }

    /// Ends the stream with `response.failed` (the upstream broke off, or failed). Empty
    /// when the stream is over.
    pub fn failed_event(&mut self, e: &GatewayError) -> Bytes {
        self.end_with(|state, out| state.fail(out, failure_code(e), &e.text()))
    }
}

/// One chat tool call (one `index`).
struct Call {
    index: u32,
    /// Its output item, once its name is known.
    item: Option<usize>,
    pub(super) id: String,
    pub(super) name: String,
    /// Argument fragments (escaped) that came before the name.
    held: Vec<u8>,
}

/// What the stream has told so far.
pub struct Encoder {
    answer: Answer,
    context: Context,
    /// The next event's sequence_number.
    seq: u64,
    /// response.created was sent.
    started: bool,
    /// The open reasoning item, the open message item (at most one of each).
    reasoning: Option<usize>,
    message: Option<usize>,
    calls: Vec<Call>,
    /// The final response object, for the store (when `context.store`).
    kept: Option<Vec<u8>>,
}

impl Events for Encoder {
    fn usage(&self) -> Option<Usage> {
        self.answer.usage
    }

    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        if data == b"[DONE]" {
            // Without a finish_reason the answer was cut: the caller reports it.
            if self.answer.finish.is_none() {
                return false;
            }
            self.complete(out);
            return true;
        }
        // A `created` that is not a whole number makes the chunk unreadable.
        let chunk = serde_json::from_slice::<Chunk<'_>>(data).and_then(|c| Ok((c.created()?, c)));
        let (created, chunk) = match chunk {
            Ok(c) => c,
            // The unterminated last event of a cut stream: the caller reports the cut.
            Err(_) if at_end => return false,
            Err(_) => {
                let e = unreadable_chunk();
                self.fail(out, failure_code(&e), &e.message);
                return true;
            }
        };
        if !self.started {
            if let Some(created) = created {
                self.answer.created_at = created;
            }
            self.start(out);
        }
        if let Some(choice) = chunk.choices.0 {
            if let Some(d) = choice.delta {
                if let Some(piece) = inside(d.reasoning_content).or(inside(d.reasoning)) {
                    self.reasoning_piece(piece, out);
                }
                if let Some(piece) = inside(d.content) {
                    self.text_piece(false, piece, out);
                }
                if let Some(piece) = inside(d.refusal) {
                    self.text_piece(true, piece, out);
                }
                for (position, call) in d.tool_calls.into_iter().flatten().enumerate() {
                    self.tool_delta(call, position as u32, out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.answer.finish = Some(finish_of(&reason));
                // Nothing follows: let the client act on the items now.
                self.close_all(out);
            }
        }
        if let Some(u) = chunk.usage {
            self.answer.usage = Some(u.into());
        }
        false
    }

    /// A stream that finished but lost its `[DONE]` is ended; a cut one is not.
    fn end(&mut self, out: &mut Vec<u8>) -> bool {
        if self.answer.finish.is_none() {
            return false;
        }
        self.complete(out);
        true
    }
}

impl Encoder {
    /// `response.created` and `response.in_progress`.
    fn start(&mut self, out: &mut Vec<u8>) {
        self.started = true;
        out.reserve(2 * (self.context.echo.len() + 512));
        for kind in ["response.created", "response.in_progress"] {
            head(out, &mut self.seq, kind);
            out.extend_from_slice(b",\"response\":");
            self.answer
                .write(out, &self.context, "in_progress", false, None);
            out.extend_from_slice(b"}\n\n");
        }
    }

    /// Adds an output item: `response.output_item.added`. Returns its output_index.
    fn add(&mut self, item: Item, out: &mut Vec<u8>) -> usize {
        let at = self.answer.items.len();
        head(out, &mut self.seq, "response.output_item.added");
        out.extend_from_slice(b",\"output_index\":");
        out.extend_from_slice(itoa::Buffer::new().format(at).as_bytes());
        out.extend_from_slice(b",\"item\":");
        item.write(out, true);
        out.extend_from_slice(b"}\n\n");
        self.answer.items.push(item);
        at
    }

    // hot path: one call per reasoning delta.
    fn reasoning_piece(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let at = match self.reasoning {
            Some(at) => at,
            None => {
                if let Some(m) = self.message.take() {
                    self.close(m, "completed", out);
                }
                let at = self.add(Item::new(Kind::Reasoning), out);
                head(out, &mut self.seq, "response.reasoning_summary_part.added");
                item_ref(out, &self.answer.items[at].id, at);
                out.extend_from_slice(
                    b",\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":\"\"}}\n\n",
                );
                self.reasoning = Some(at);
                at
            }
        };
        let item = &mut self.answer.items[at];
        item.text.extend_from_slice(piece);
        head(out, &mut self.seq, "response.reasoning_summary_text.delta");
        item_ref(out, &item.id, at);
        out.extend_from_slice(b",\"summary_index\":0,\"delta\":\"");
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\"}\n\n");
    }

    // hot path: one call per text delta.
    /// A text (or refusal) fragment, in the open message item's last part of its kind.
    fn text_piece(&mut self, refusal: bool, piece: &[u8], out: &mut Vec<u8>) {
        if let Some(r) = self.reasoning.take() {
            self.close(r, "completed", out);
        }
        let at = match self.message {
            Some(at) => at,
            None => {
                let at = self.add(Item::new(Kind::Message), out);
                self.message = Some(at);
                at
            }
        };
        let item = &mut self.answer.items[at];
        if item.parts.last().is_none_or(|p| p.refusal != refusal) {
            close_part(item, at, &mut self.seq, out);
            item.parts.push(Part {
                refusal,
                text: Vec::new(),
            });
            head(out, &mut self.seq, "response.content_part.added");
            item_ref(out, &item.id, at);
            content_index(out, item.parts.len() - 1);
            out.extend_from_slice(b",\"part\":");
            write_part(out, refusal, b"");
            out.extend_from_slice(b"}\n\n");
        }
        let n = item.parts.len() - 1;
        item.parts[n].text.extend_from_slice(piece);
        head(
            out,
            &mut self.seq,
            if refusal {
                "response.refusal.delta"
            } else {
                "response.output_text.delta"
            },
        );
        item_ref(out, &item.id, at);
        content_index(out, n);
        out.extend_from_slice(b",\"delta\":\"");
        out.extend_from_slice(piece);
        out.extend_from_slice(if refusal {
            b"\"}\n\n"
        } else {
            b"\",\"logprobs\":[]}\n\n"
        });
    }

    // hot path: one call per tool call fragment.
    fn tool_delta(&mut self, call: ToolCallDelta<'_>, position: u32, out: &mut Vec<u8>) {
        let index = call.index.unwrap_or(position);
        let at = call_at(
            &mut self.calls,
            index,
            |c| c.index,
            |index| Call {
                index,
                item: None,
                id: String::new(),
                name: String::new(),
                held: Vec::new(),
            },
        );
        let c = &mut self.calls[at];
        let arguments = inside(call.fill(&mut c.id, &mut c.name));
        match c.item {
            Some(item) => {
                if let Some(piece) = arguments {
                    self.arguments(item, piece, out);
                }
            }
            None => {
                if let Some(piece) = arguments {
                    c.held.extend_from_slice(piece);
                }
                if !c.name.is_empty() {
                    self.open_call(at, out);
                }
            }
        }
    }

    /// Opens the output item of call `at`, with the fragments held for it.
    fn open_call(&mut self, at: usize, out: &mut Vec<u8>) {
        let c = &mut self.calls[at];
        let id = match std::mem::take(&mut c.id) {
            id if id.is_empty() => new_id("call_"),
            id => id,
        };
        let held = std::mem::take(&mut c.held);
        let item = Item::call(&c.name, id, &self.context);
        let item = self.add(item, out);
        self.calls[at].item = Some(item);
        if !held.is_empty() {
            self.arguments(item, &held, out);
        }
    }

    /// An argument fragment of the call item at `at`: streamed, or buffered (custom tools).
    fn arguments(&mut self, at: usize, piece: &[u8], out: &mut Vec<u8>) {
        let item = &mut self.answer.items[at];
        if item.done {
            tracing::warn!(at, "tool call arguments after the call's item was done");
            return;
        }
        item.text.extend_from_slice(piece);
        if item.kind == Kind::Function {
            head(out, &mut self.seq, "response.function_call_arguments.delta");
            item_ref(out, &item.id, at);
            out.extend_from_slice(b",\"delta\":\"");
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\"}\n\n");
        }
    }

    /// Closes item `at`: its `.done` events and `response.output_item.done`.
    fn close(&mut self, at: usize, status: &'static str, out: &mut Vec<u8>) {
        let seq = &mut self.seq;
        let item = &mut self.answer.items[at];
        if item.done {
            return;
        }
        match item.kind {
            Kind::Reasoning => {
                head(out, seq, "response.reasoning_summary_text.done");
                item_ref(out, &item.id, at);
                out.extend_from_slice(b",\"summary_index\":0,\"text\":\"");
                out.extend_from_slice(&item.text);
                out.extend_from_slice(b"\"}\n\n");
                head(out, seq, "response.reasoning_summary_part.done");
                item_ref(out, &item.id, at);
                out.extend_from_slice(
                    b",\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":\"",
                );
                out.extend_from_slice(&item.text);
                out.extend_from_slice(b"\"}}\n\n");
            }
            Kind::Message => close_part(item, at, seq, out),
            Kind::Function => {
                head(out, seq, "response.function_call_arguments.done");
                item_ref(out, &item.id, at);
                out.extend_from_slice(b",\"name\":");
                json_str(out, &item.name);
                out.extend_from_slice(b",\"arguments\":\"");
                out.extend_from_slice(&item.text);
                out.extend_from_slice(b"\"}\n\n");
            }
            Kind::Custom => {
                item.text = custom_input(&item.text);
                if !item.text.is_empty() {
                    head(out, seq, "response.custom_tool_call_input.delta");
                    item_ref(out, &item.id, at);
                    out.extend_from_slice(b",\"delta\":\"");
                    out.extend_from_slice(&item.text);
                    out.extend_from_slice(b"\"}\n\n");
                }
                head(out, seq, "response.custom_tool_call_input.done");
                item_ref(out, &item.id, at);
                out.extend_from_slice(b",\"input\":\"");
                out.extend_from_slice(&item.text);
                out.extend_from_slice(b"\"}\n\n");
            }
        }
        item.status = status;
        item.done = true;
        head(out, seq, "response.output_item.done");
        out.extend_from_slice(b",\"output_index\":");
        out.extend_from_slice(itoa::Buffer::new().format(at).as_bytes());
        out.extend_from_slice(b",\"item\":");
        item.write(out, false);
        out.extend_from_slice(b"}\n\n");
    }

    /// Closes every open item, in output order (calls still without a name are opened
    /// first: the answer ends with them).
    fn close_all(&mut self, out: &mut Vec<u8>) {
        for at in 0..self.calls.len() {
            if self.calls[at].item.is_none() {
                self.open_call(at, out);
            }
        }
        let status = match status_of(self.answer.finish) {
            (_, Some(_)) => "incomplete",
            _ => "completed",
        };
        for at in 0..self.answer.items.len() {
            self.close(at, status, out);
        }
        self.reasoning = None;
        self.message = None;
    }

    /// `response.completed` (or `response.incomplete`) with the whole response.
    fn complete(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(out);
        }
        self.close_all(out);
        let (status, _) = status_of(self.answer.finish);
        head(
            out,
            &mut self.seq,
            if status == "completed" {
                "response.completed"
            } else {
                "response.incomplete"
            },
        );
        out.extend_from_slice(b",\"response\":");
        let at = out.len();
        self.answer.write(out, &self.context, status, true, None);
        if self.context.store {
            self.kept = Some(out[at..].to_vec());
        }
        out.extend_from_slice(b"}\n\n");
    }

    /// `response.failed`: the stream is over. Open items stay as they are.
    fn fail(&mut self, out: &mut Vec<u8>, code: &str, message: &str) {
        if !self.started {
            self.start(out);
        }
        head(out, &mut self.seq, "response.failed");
        out.extend_from_slice(b",\"response\":");
        self.answer
            .write(out, &self.context, "failed", true, Some((code, message)));
        out.extend_from_slice(b"}\n\n");
    }
}

/// Closes the last content part of a message item (if any): `.done` and
/// `response.content_part.done`.
fn close_part(item: &Item, at: usize, seq: &mut u64, out: &mut Vec<u8>) {
    let Some(part) = item.parts.last() else {
        return;
    };
    let n = item.parts.len() - 1;
    if part.refusal {
        head(out, seq, "response.refusal.done");
        item_ref(out, &item.id, at);
        content_index(out, n);
        out.extend_from_slice(b",\"refusal\":\"");
        out.extend_from_slice(&part.text);
        out.extend_from_slice(b"\"}\n\n");
    } else {
        head(out, seq, "response.output_text.done");
        item_ref(out, &item.id, at);
        content_index(out, n);
        out.extend_from_slice(b",\"text\":\"");
        out.extend_from_slice(&part.text);
        out.extend_from_slice(b"\",\"logprobs\":[]}\n\n");
    }
    head(out, seq, "response.content_part.done");
    item_ref(out, &item.id, at);
    content_index(out, n);
    out.extend_from_slice(b",\"part\":");
    write_part(out, part.refusal, &part.text);
    out.extend_from_slice(b"}\n\n");
}
