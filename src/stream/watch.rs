//! The loop every pass-through watcher shares: the client gets the upstream's bytes unchanged,
//! while the events are framed aside and shown to a protocol's reader for the usage and the
//! end of the stream. Only whole events are passed on (a chunk that ends inside an event
//! waits for the rest of it, as a client must anyway), so an error event can be looked at,
//! and its provider's secrets taken out, before any byte of it leaves.

use super::sse::{data_of, SseFramer};
use crate::usage::Usage;
use bytes::Bytes;

/// What one event of a stream was.
pub enum Seen {
    /// An opening event (a message start, a created response): nothing of the answer yet.
    Opening,
    /// Something of the answer.
    Answer,
    /// The stream's last event.
    End,
    /// An error that ends the stream.
    Failed(super::InBand),
}

/// What a protocol's watcher reads of each event.
pub trait Watch {
    /// Notes one event's data (its usage), and says what it was.
    fn observe(&mut self, data: &[u8]) -> Seen;

    /// Usage as reported so far.
    fn usage(&self) -> Option<Usage>;
}

/// A stream passed through unchanged, watched by `W`.
#[derive(Default)]
pub struct Watched<W> {
    framer: SseFramer,
    state: W,
    done: bool,
    /// Something of the answer went by.
    started: bool,
    /// The error the stream ended with.
    failure: Option<super::InBand>,
    /// The whole events of the chunk being fed, when it did not hold exactly whole events.
    kept: Vec<Bytes>,
}

impl<W: Watch> Watched<W> {
    /// The protocol's watcher.
    pub fn state_mut(&mut self) -> &mut W {
        &mut self.state
    }

    // hot path: every chunk of a passed-through stream; the chunk goes out untouched (zero
    // copy) when it holds whole events.
    /// The whole events this chunk completes, after `W` saw them (`None`: none yet).
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.failure.is_some() {
            // After an error: whatever else comes goes on as it is.
            let rest = self.framer.take_rest();
            if rest.is_empty() {
                return Some(chunk);
            }
            return Some([rest, chunk].concat().into());
        }
        let clean = self.framer.pending_len() == 0;
        self.framer.push(chunk.clone());
        self.kept.clear();
        while let Some(event) = self.framer.next_event() {
            self.event(&event);
            self.kept.push(event);
        }
        if clean && self.framer.pending_len() == 0 {
            self.kept.clear();
            return Some(chunk);
        }
        super::join(&mut self.kept)
    }

    /// At the end of the upstream body: the last event, if it lacked its blank line.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.framer.take_rest();
        if rest.is_empty() {
            return None;
        }
        if !rest.iter().all(|b| b.is_ascii_whitespace()) {
            self.event(&rest);
        }
        Some(rest)
    }

    /// The stream's last event (or an error event) went by.
    pub fn done(&self) -> bool {
        self.done
    }

    pub fn usage(&self) -> Option<Usage> {
        self.state.usage()
    }

    /// The error the stream ended with.
    pub fn failure(&self) -> Option<&super::InBand> {
        self.failure.as_ref()
    }

    /// Something of the answer went by (not only its opening events).
    pub fn started(&self) -> bool {
        self.started
    }

    fn event(&mut self, event: &[u8]) {
        if self.failure.is_some() {
            return;
        }
        let Some(data) = data_of(event) else { return };
        let seen = self.state.observe(data);
        if self.done {
            // After the last event, only the usage a later one reports counts (Gemini,
            // which has no terminator, may repeat its finish and report usage after it).
            return;
        }
        match seen {
            Seen::Opening => {}
            Seen::Answer => self.started = true,
            Seen::End => {
                self.started = true;
                self.done = true;
            }
            Seen::Failed(f) => {
                self.failure = Some(f);
                self.done = true;
            }
        }
    }
}
