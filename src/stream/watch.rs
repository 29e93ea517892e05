//! The loop every pass-through watcher shares: the client gets the upstream's bytes unchanged,
//! while the events are framed aside and shown to a protocol's reader for the usage and the
//! end of the stream.

use super::sse::{data_of, SseFramer};
use crate::usage::Usage;
use bytes::Bytes;

/// What a protocol's watcher reads of each event.
pub trait Watch {
    /// Notes one event's data; true when it ends the stream (its last event, or an error).
    fn observe(&mut self, data: &[u8]) -> bool;

    /// Usage as reported so far.
    fn usage(&self) -> Option<Usage>;

    /// The error the stream reported, if it ended with one.
    fn failure(&self) -> Option<&super::InBand>;

    /// The stream sent something of the answer (not only its opening events).
    fn started(&self) -> bool;
}

/// A stream passed through unchanged, watched by `W`.
#[derive(Default)]
pub struct Watched<W> {
    framer: SseFramer,
    state: W,
    done: bool,
}

impl<W: Watch> Watched<W> {
    // hot path: every chunk of a passed-through stream.
    /// The chunk itself, after `W` saw the events it completes.
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        if !self.done {
            self.framer.push(chunk.clone());
            while let Some(event) = self.framer.next_event() {
                self.event(&event);
            }
        }
        Some(chunk)
    }

    /// At the end of the upstream body: the last event, if it lacked its blank line.
    pub fn finish(&mut self) -> Option<Bytes> {
        if let Some(event) = self.framer.finish() {
            self.event(&event);
        }
        None
    }

    /// The stream's last event (or an error event) went by.
    pub fn done(&self) -> bool {
        self.done
    }

    pub fn usage(&self) -> Option<Usage> {
        self.state.usage()
    }

    pub fn state(&self) -> &W {
        &self.state
    }

    fn event(&mut self, event: &[u8]) {
        if self.done {
            return;
        }
        if let Some(data) = data_of(event) {
            self.done = self.state.observe(data);
        }
    }
}
