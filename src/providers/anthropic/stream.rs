//! Anthropic's event stream as chat chunks.

use super::*;

#[derive(Deserialize)]
pub(super) struct Event<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, borrow)]
    pub(super) message: Option<StartMessage<'a>>,
    #[serde(default, borrow)]
    pub(super) content_block: Option<StartBlock<'a>>,
    #[serde(default, borrow)]
    delta: Option<EventDelta<'a>>,
    #[serde(default)]
    pub(super) usage: Option<AUsage>,
    #[serde(default, borrow)]
    pub(super) error: Option<EventError<'a>>,
}

impl Event<'_> {
    /// Something of the answer, not an opening event (`message_start`, a text block's start,
    /// `ping`): a delta, a tool call, the end.
    pub(super) fn carries_answer(&self) -> bool {
        matches!(
            &*self.kind,
            "content_block_delta" | "message_delta" | "message_stop"
        ) || self
            .content_block
            .as_ref()
            .is_some_and(|b| b.kind == "tool_use")
    }
}

#[derive(Deserialize)]
pub(super) struct StartMessage<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(default)]
    pub(super) usage: Option<AUsage>,
}

#[derive(Deserialize)]
pub(super) struct StartBlock<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EventDelta<'a> {
    #[serde(default, rename = "type", borrow)]
    pub(super) kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct EventError<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    Tool { index: u32, has_arguments: bool },
    JsonTool,
    Other,
}

/// Translates one Anthropic SSE stream into OpenAI chunks, event by event; complete only
/// after `message_stop`.
pub type StreamTranslator = Translated<State>;

/// What an Anthropic stream has told so far.
pub struct State {
    t: Translation,
    created: u64,
    writer: Option<ChunkWriter>,
    /// Content blocks by Anthropic index.
    blocks: Vec<Block>,
    next_tool: u32,
    stop_reason: Option<String>,
    pub(super) usage: Usage,
    /// Something of the answer came (a delta, a tool call, the end).
    pub started: bool,
    /// The error the stream ended with.
    pub failure: Option<InBand>,
    /// With [`JSON_TOOL`]: text held back until it is known whether the tool is called (its
    /// JSON is then the whole answer) or not (the text is).
    held: Option<String>,
}

impl StreamTranslator {
    pub fn new(t: Translation, created: u64) -> Self {
        Translated::with_state(State {
            t,
            created,
            writer: None,
            blocks: Vec::new(),
            next_tool: 0,
            stop_reason: None,
            usage: Usage::default(),
            started: false,
            failure: None,
            held: t.json_tool.then(String::new),
        })
    }
}

impl translate::Events for State {
    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        self.translate(data, at_end, out)
    }

    /// message_start, then message_delta.
    fn usage(&self) -> Option<Usage> {
        Some(self.usage)
    }
}

impl State {
    fn writer(&mut self) -> &ChunkWriter {
        let created = self.created;
        self.writer
            .get_or_insert_with(|| ChunkWriter::new("msg_unknown", "unknown", created))
    }

    /// Translates one event into `out`; true when the stream is over.
    fn translate(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        if let Some((index, kind, literal)) = fast_delta(data) {
            self.started = true;
            self.delta_literal(index, kind, literal, out);
            return false;
        }
        let ev: Event<'_> = match serde_json::from_slice(data) {
            Ok(ev) => ev,
            // The unterminated last event of a cut stream: the caller reports the cut.
            Err(_) if at_end => return false,
            Err(_) => {
                self.failure = Some(InBand::Unreadable);
                return true;
            }
        };
        self.started |= ev.carries_answer();
        match &*ev.kind {
            "message_start" => {
                if let Some(m) = ev.message {
                    if let Some(u) = m.usage {
                        u.apply(&mut self.usage);
                    }
                    self.writer = Some(ChunkWriter::new(&m.id, &m.model, self.created));
                }
                self.writer().delta(out, Delta::Role, None);
            }
            "content_block_start" => {
                let (Some(index), Some(block)) = (ev.index, ev.content_block) else {
                    return false;
                };
                let kind = match &*block.kind {
                    "text" => Block::Text,
                    "thinking" => Block::Thinking,
                    "tool_use" => {
                        let name = block.name.as_deref().unwrap_or("");
                        if self.t.json_tool && name == JSON_TOOL {
                            // The JSON is the answer; what was written before it is not.
                            self.held = None;
                            Block::JsonTool
                        } else {
                            let tool = self.next_tool;
                            self.next_tool += 1;
                            let id = block.id.as_deref().unwrap_or("");
                            self.writer().delta(
                                out,
                                Delta::ToolStart {
                                    index: tool,
                                    id,
                                    name,
                                    arguments: "",
                                },
                                None,
                            );
                            Block::Tool {
                                index: tool,
                                has_arguments: false,
                            }
                        }
                    }
                    _ => Block::Other,
                };
                if self.blocks.len() <= index {
                    self.blocks.resize(index + 1, Block::Other);
                }
                self.blocks[index] = kind;
            }
            "content_block_delta" => {
                let (Some(index), Some(delta)) = (ev.index, ev.delta) else {
                    return false;
                };
                let block = self.blocks.get(index).copied().unwrap_or(Block::Other);
                match (block, delta.kind.as_deref()) {
                    (_, Some("text_delta")) => {
                        if let Some(t) = delta.text.as_deref().filter(|t| !t.is_empty()) {
                            match &mut self.held {
                                Some(held) => held.push_str(t),
                                None => self.writer().delta(out, Delta::Content(t), None),
                            }
                        }
                    }
                    (_, Some("thinking_delta")) => {
                        if let Some(t) = delta.thinking.as_deref().filter(|t| !t.is_empty()) {
                            self.writer().delta(out, Delta::Reasoning(t), None);
                        }
                    }
                    (Block::Tool { index: tool, .. }, Some("input_json_delta")) => {
                        if let Some(p) = delta.partial_json.as_deref().filter(|p| !p.is_empty()) {
                            self.writer().delta(
                                out,
                                Delta::ToolArguments {
                                    index: tool,
                                    arguments: p,
                                },
                                None,
                            );
                            self.blocks[index] = Block::Tool {
                                index: tool,
                                has_arguments: true,
                            };
                        }
                    }
                    (Block::JsonTool, Some("input_json_delta")) => {
                        if let Some(p) = delta.partial_json.as_deref().filter(|p| !p.is_empty()) {
                            self.writer().delta(out, Delta::Content(p), None);
                        }
                    }
                    // signature_delta and anything newer: nothing an OpenAI client can use.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let Some(index) = ev.index else { return false };
                if let Some(Block::Tool {
                    index: tool,
                    has_arguments: false,
                }) = self.blocks.get(index).copied()
                {
                    // A tool called without input: its arguments must still parse as JSON.
                    self.writer().delta(
                        out,
                        Delta::ToolArguments {
                            index: tool,
                            arguments: "{}",
                        },
                        None,
                    );
                    self.blocks[index] = Block::Tool {
                        index: tool,
                        has_arguments: true,
                    };
                }
            }
            "message_delta" => {
                if let Some(u) = ev.usage {
                    u.apply(&mut self.usage);
                }
                if let Some(r) = ev.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(r.into_owned());
                }
                if let Some(held) = self.held.take().filter(|h| !h.is_empty()) {
                    self.writer().delta(out, Delta::Content(&held), None);
                }
                let json_only = self.t.json_tool && self.next_tool == 0;
                let reason = finish_reason(self.stop_reason.as_deref(), json_only);
                self.writer().delta(out, Delta::Empty, Some(reason));
            }
            "message_stop" => {
                if self.t.include_usage {
                    let usage = self.usage;
                    self.writer().usage(out, &usage);
                }
                out.extend_from_slice(chunk::DONE);
                return true;
            }
            "error" => {
                self.failure = Some(in_band(ev.error.as_ref(), data));
                return true;
            }
            // ping, and event types newer than this code.
            _ => {}
        }
        false
    }

    /// A text, thinking or tool-input delta found by [`fast_delta`].
    fn delta_literal(&mut self, index: usize, kind: FastDelta, literal: &[u8], out: &mut Vec<u8>) {
        if literal == b"\"\"" {
            return;
        }
        let block = self.blocks.get(index).copied().unwrap_or(Block::Other);
        let delta = match (kind, block) {
            (FastDelta::Text, _) if self.held.is_some() => {
                if let (Some(held), Ok(t)) =
                    (&mut self.held, serde_json::from_slice::<String>(literal))
                {
                    held.push_str(&t);
                }
                return;
            }
            (FastDelta::Text, _) => Delta::ContentLiteral(literal),
            (FastDelta::Thinking, _) => Delta::ReasoningLiteral(literal),
            (FastDelta::InputJson, Block::Tool { index: tool, .. }) => {
                self.blocks[index] = Block::Tool {
                    index: tool,
                    has_arguments: true,
                };
                Delta::ToolArgumentsLiteral {
                    index: tool,
                    arguments: literal,
                }
            }
            (FastDelta::InputJson, Block::JsonTool) => Delta::ContentLiteral(literal),
            (FastDelta::InputJson, _) => return,
        };
        self.writer().delta(out, delta, None);
    }
}

#[derive(Clone, Copy)]
pub(super) enum FastDelta {
    Text,
    Thinking,
    InputJson,
}

// hot path: most events of a stream are content_block_delta in exactly this compact layout;
// reading them by their bytes skips a full JSON parse and re-escaping. Anything else (another
// layout, extra fields, an odd string) takes the general path.
/// `(index, kind, string literal)` of a compact content_block_delta event.
pub(super) fn fast_delta(data: &[u8]) -> Option<(usize, FastDelta, &[u8])> {
    let rest = data.strip_prefix(br#"{"type":"content_block_delta","index":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 6 {
        return None;
    }
    let index: usize = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(br#","delta":{"type":""#)?;
    let (kind, rest) = if let Some(r) = rest.strip_prefix(br#"text_delta","text":"#) {
        (FastDelta::Text, r)
    } else if let Some(r) = rest.strip_prefix(br#"thinking_delta","thinking":"#) {
        (FastDelta::Thinking, r)
    } else if let Some(r) = rest.strip_prefix(br#"input_json_delta","partial_json":"#) {
        (FastDelta::InputJson, r)
    } else {
        return None;
    };
    let len = chunk::json_string_literal(rest)?;
    // Then exactly two closing braces, with any padding around them.
    let mut tail = rest[len..].iter().filter(|b| !b.is_ascii_whitespace());
    if tail.next() != Some(&b'}') || tail.next() != Some(&b'}') || tail.next().is_some() {
        return None;
    }
    Some((index, kind, &rest[..len]))
}
