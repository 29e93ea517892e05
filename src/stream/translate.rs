//! The loop every stream translator shares, both the providers' decoders (upstream events to
//! chat chunks) and the front doors' encoders (chat chunks to the door's events): frame the
//! bytes into events, hand each event's data to the translator, collect its output, and stop
//! after the end.

use super::sse::{data_of, SseFramer};
use crate::usage::Usage;
use bytes::Bytes;

/// Room reserved for the OpenAI bytes of one upstream chunk.
const OUT_CAPACITY: usize = 512;

/// A stream translator's per-event logic.
pub trait Events {
    /// Translates one event's data into `out`; true when the stream is over. `at_end`: the
    /// stream ended without this event's blank line, so it may be cut short.
    fn event(&mut self, data: &[u8], at_end: bool, out: &mut Vec<u8>) -> bool;

    /// After the last event of a stream that is not over yet; true when it is complete.
    fn end(&mut self, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// Tokens as reported so far (`None`: no report yet, where that differs from zero).
    fn usage(&self) -> Option<Usage>;
}

/// A stream translator: the shared event loop and one protocol's per-stream state.
pub struct Translated<S> {
    events: EventLoop,
    state: S,
}

impl<S: Events> Translated<S> {
    pub fn with_state(state: S) -> Self {
        Translated {
            events: EventLoop::default(),
            state,
        }
    }

    // hot path: every upstream chunk.
    /// The OpenAI bytes for an upstream chunk (`None`: nothing complete yet).
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        self.events.feed(chunk, &mut self.state)
    }

    /// At the end of the upstream body.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.events.finish(&mut self.state)
    }

    /// The stream reached its proper end, or an error event already told the client.
    pub fn done(&self) -> bool {
        self.events.done
    }

    pub fn usage(&self) -> Option<Usage> {
        self.state.usage()
    }

    /// The protocol's per-stream state.
    pub fn state(&self) -> &S {
        &self.state
    }

    pub fn state_mut(&mut self) -> &mut S {
        &mut self.state
    }

    /// Ends the stream with what `last` writes (an error event in the stream's protocol);
    /// empty when it is over already.
    pub fn end_with(&mut self, last: impl FnOnce(&mut S, &mut Vec<u8>)) -> Bytes {
        if self.events.done {
            return Bytes::new();
        }
        self.events.done = true;
        let mut out = Vec::with_capacity(1024);
        last(&mut self.state, &mut out);
        out.into()
    }
}

/// Framing and output of one translated stream.
#[derive(Default)]
pub struct EventLoop {
    framer: SseFramer,
    out: Vec<u8>,
    /// The stream ended as it should, or with a translated error event: nothing to add.
    pub done: bool,
}

impl EventLoop {
    // hot path: every upstream chunk.
    /// Translates each whole event of `chunk`; returns the OpenAI bytes to send (`None`:
    /// nothing yet).
    pub fn feed(&mut self, chunk: Bytes, events: &mut impl Events) -> Option<Bytes> {
        self.framer.push(chunk);
        while let Some(event) = self.framer.next_event() {
            self.event(&event, false, events);
        }
        self.take()
    }

    /// At the end of the upstream body: the last event if it lacked its blank line, then
    /// [`Events::end`].
    pub fn finish(&mut self, events: &mut impl Events) -> Option<Bytes> {
        if let Some(event) = self.framer.finish() {
            self.event(&event, true, events);
        }
        if !self.done {
            self.done = events.end(&mut self.out);
        }
        self.take()
    }

    fn event(&mut self, event: &[u8], at_end: bool, events: &mut impl Events) {
        if self.done {
            return;
        }
        if let Some(data) = data_of(event) {
            self.done = events.event(data, at_end, &mut self.out);
        }
    }

    fn take(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            return None;
        }
        // One allocation for the next chunk's output instead of a chain of regrowths.
        let next = Vec::with_capacity(OUT_CAPACITY.max(self.out.len()));
        Some(Bytes::from(std::mem::replace(&mut self.out, next)))
    }
}
