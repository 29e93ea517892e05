//! Gemini's SSE stream as chat chunks.

use super::*;

/// Translates one Gemini SSE stream into OpenAI chunks, event by event. Gemini sends no
/// terminator: a stream that gave its finish reason is closed at its end with usage and
/// `[DONE]`.
pub type StreamTranslator = Translated<State>;

/// What a Gemini stream has told so far.
pub struct State {
    t: Translation,
    created: u64,
    upstream_model: String,
    writer: Option<ChunkWriter>,
    ids: CallIds,
    next_tool: u32,
    /// A finish reason came: the stream may end.
    finished: bool,
    /// The last finish reason, sent at the end: early models repeat it on every event, and
    /// a choice has one finish, after all its text.
    finish: Option<&'static str>,
    /// As last reported (`None`: no report yet; early models send none at all, and their
    /// usage is then the gateway's estimate, never a report of zero).
    usage: Option<Usage>,
    /// The error the stream ended with.
    pub failure: Option<InBand>,
    /// The call whose arguments are streaming in pieces: its tool index and what is written.
    streaming: Option<(u32, Arguments)>,
}

impl StreamTranslator {
    pub fn new(t: Translation, upstream_model: &str, created: u64, ids: CallIds) -> Self {
        Translated::with_state(State {
            t,
            created,
            upstream_model: upstream_model.to_string(),
            writer: None,
            ids,
            next_tool: 0,
            finished: false,
            finish: None,
            usage: None,
            failure: None,
            streaming: None,
        })
    }
}

impl State {
    /// An event of the answer came (Gemini's first one carries its first part).
    pub fn started(&self) -> bool {
        self.writer.is_some()
    }

    /// Ends the call whose arguments were streaming, if one is: the rest of its JSON.
    fn close_call(&mut self, out: &mut Vec<u8>) {
        if let Some((index, mut args)) = self.streaming.take() {
            let mut rest = String::new();
            args.finish(&mut rest);
            self.writer().delta(
                out,
                Delta::ToolArguments {
                    index,
                    arguments: &rest,
                },
                None,
            );
        }
    }

    fn writer(&mut self) -> &ChunkWriter {
        if self.writer.is_none() {
            let id = self.ids.completion_id(None);
            self.writer = Some(ChunkWriter::new(&id, &self.upstream_model, self.created));
        }
        self.writer.as_ref().expect("set above")
    }
}

impl translate::Events for State {
    /// Gemini's counts are cumulative: the last report holds.
    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// After the last event: closes a finished stream; false when it never finished.
    fn end(&mut self, out: &mut Vec<u8>) -> bool {
        if !self.finished {
            return false;
        }
        // A call whose last piece did not say it was the last.
        self.close_call(out);
        if let Some(reason) = self.finish {
            self.writer().delta(out, Delta::Empty, Some(reason));
        }
        // No usage chunk for a stream that reported none: zeros would read as a report.
        if let (true, Some(usage)) = (self.t.include_usage, self.usage) {
            self.writer().usage(out, &usage);
        }
        out.extend_from_slice(chunk::DONE);
        true
    }

    /// Translates one event into `out`; true when the stream is over (an error).
    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool {
        if self.writer.is_some() {
            if let Some(literal) = fast_text(data) {
                self.writer()
                    .delta(out, Delta::ContentLiteral(literal), None);
                return false;
            }
        }
        let r: GResponse<'_> = match serde_json::from_slice(data) {
            Ok(r) => r,
            // The unterminated last event of a cut stream: the caller reports the cut.
            Err(_) if at_end => return false,
            Err(_) => {
                self.failure = Some(InBand::Unreadable);
                return true;
            }
        };
        if let Some(e) = &r.error {
            self.failure = Some(in_band(e, data));
            return true;
        }
        if self.writer.is_none() {
            let id = self.ids.completion_id(r.response_id.as_deref());
            let model = r
                .model_version
                .as_deref()
                .unwrap_or(&self.upstream_model)
                .to_string();
            let w = ChunkWriter::new(&id, &model, self.created);
            w.delta(out, Delta::Role, None);
            self.writer = Some(w);
        }
        if let Some(u) = r.usage_metadata {
            self.usage = Some(u.into());
        }
        if let Some(c) = r.candidates.first() {
            for p in c.content.iter().flat_map(|c| &c.parts) {
                if let Some(f) = &p.function_call {
                    self.call(f, out);
                } else if let Some(t) = p.text.as_deref().filter(|t| !t.is_empty()) {
                    let d = if p.thought == Some(true) {
                        Delta::Reasoning(t)
                    } else {
                        Delta::Content(t)
                    };
                    self.writer().delta(out, d, None);
                }
            }
            if let Some(reason) = &c.finish_reason {
                self.finish = Some(finish_reason(reason, self.next_tool > 0));
                self.finished = true;
            }
        } else if r.prompt_feedback.is_some() {
            self.finish = Some("content_filter");
            self.finished = true;
        }
        false
    }
}

impl State {
    /// A function call, whole, or the start or a piece of one whose arguments stream.
    fn call(&mut self, f: &GFunctionCall<'_>, out: &mut Vec<u8>) {
        let more = f.will_continue == Some(true);
        let Some(name) = f.name.as_deref().filter(|n| !n.is_empty()) else {
            // A piece of the call under way (a bare `{}` or one without `willContinue` ends it).
            let Some((index, args)) = self.streaming.as_mut() else {
                return;
            };
            let index = *index;
            let mut piece = String::new();
            for a in &f.partial_args {
                args.piece(a, &mut piece);
            }
            if !more {
                args.finish(&mut piece);
                self.streaming = None;
            }
            if !piece.is_empty() {
                self.writer().delta(
                    out,
                    Delta::ToolArguments {
                        index,
                        arguments: &piece,
                    },
                    None,
                );
            }
            return;
        };
        self.close_call(out);
        let id = self.ids.next();
        let index = self.next_tool;
        self.next_tool += 1;
        let arguments = if more && f.args.is_none() {
            let mut args = Arguments::default();
            let mut written = String::new();
            for a in &f.partial_args {
                args.piece(a, &mut written);
            }
            self.streaming = Some((index, args));
            written
        } else {
            arguments_of(f)
        };
        self.writer().delta(
            out,
            Delta::ToolStart {
                index,
                id: &id,
                name,
                arguments: &arguments,
            },
            None,
        );
    }
}

/// Skips whitespace, then each token in turn (with whitespace allowed between them).
fn tokens<'a>(mut b: &'a [u8], expected: &[&[u8]]) -> Option<&'a [u8]> {
    for t in expected {
        b = b.trim_ascii_start().strip_prefix(*t)?;
    }
    Some(b.trim_ascii_start())
}

static FINISH_REASON: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"finishReason\""));

// hot path: most events of a Gemini stream hold one text part and nothing else that
// matters before the last one; reading them by their bytes skips a full JSON parse and
// re-escaping. Anything else (thoughts, calls, several parts, the final event) takes the
// general path.
/// The text literal of an event whose only part is plain text and that does not finish.
fn fast_text(data: &[u8]) -> Option<&[u8]> {
    let rest = tokens(
        data,
        &[
            b"{",
            b"\"candidates\"",
            b":",
            b"[",
            b"{",
            b"\"content\"",
            b":",
            b"{",
            b"\"parts\"",
            b":",
            b"[",
            b"{",
            b"\"text\"",
            b":",
        ],
    )?;
    let len = chunk::json_string_literal(rest)?;
    let after = tokens(&rest[len..], &[b"}", b"]"])?;
    if FINISH_REASON.find(after).is_some() {
        return None;
    }
    Some(&rest[..len])
}
