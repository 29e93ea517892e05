//! An OpenAI chunk stream passed through, its usage chunk read (and dropped when the client did not ask for it).

use super::*;

#[derive(Deserialize)]
struct UsageChunk {
    #[serde(default)]
    choices: Vec<IgnoredAny>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

// Searchers built once: `memmem::find` would rebuild one for every event.
static USAGE_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
static USAGE_NULL: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\":null"));

/// Passes an OpenAI SSE stream through, event by event: takes the usage report out of it,
/// drops the usage chunk when the client did not ask for it, and notes whether `[DONE]` came.
pub struct StreamFilter {
    framer: SseFramer,
    strip_usage: bool,
    kept: Vec<Bytes>,
    scratch: Vec<u8>,
    pub usage: Option<Usage>,
    pub done: bool,
    /// An event of the answer went by (anything but an error).
    pub started: bool,
    /// The error the stream ended with (its event is not passed on: the gateway renders it).
    pub failure: Option<InBand>,
}

impl StreamFilter {
    pub fn new(strip_usage: bool) -> Self {
        StreamFilter {
            framer: SseFramer::new(),
            strip_usage,
            kept: Vec::new(),
            scratch: Vec::new(),
            usage: None,
            done: false,
            started: false,
            failure: None,
        }
    }

    // hot path: runs for every upstream chunk; the chunk goes out untouched (zero copy) when
    // it holds whole events and none of them is dropped.
    /// What to send the client for this upstream chunk (`None`: nothing yet).
    pub fn filter(&mut self, chunk: Bytes) -> Option<Bytes> {
        let started_clean = self.framer.pending_len() == 0;
        let original = chunk.clone();
        self.framer.push(chunk);
        let mut dropped = false;
        self.kept.clear();
        while let Some(event) = self.framer.next_event() {
            if self.inspect(&event) {
                self.kept.push(event);
            } else {
                dropped = true;
            }
        }
        if started_clean && !dropped && self.framer.pending_len() == 0 {
            return Some(original);
        }
        crate::stream::join(&mut self.kept)
    }

    /// At the end of the upstream body: any unterminated last event.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.kept.clear();
        if let Some(event) = self.framer.finish() {
            if self.inspect(&event) {
                self.kept.push(event);
            }
        }
        crate::stream::join(&mut self.kept)
    }

    /// Looks at one event; false when it must not reach the client.
    fn inspect(&mut self, event: &[u8]) -> bool {
        let Some(data) = data_of(event) else {
            return true;
        };
        if self.failure.is_some() {
            return false;
        }
        if data == b"[DONE]" {
            self.done = true;
            self.started = true;
            return true;
        }
        if is_error_object(data) {
            self.failure = Some(in_band(data));
            self.done = true;
            return false;
        }
        self.started = true;
        // Cheap test first: most chunks carry `"usage":null` or no usage at all.
        if USAGE_KEY.find(data).is_none() || USAGE_NULL.find(data).is_some() {
            return true;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(data);
        let Ok(chunk) = simd_json::serde::from_slice::<UsageChunk>(&mut self.scratch) else {
            return true;
        };
        let Some(usage) = chunk.usage else {
            return true;
        };
        self.usage = Some(usage.into());
        !(self.strip_usage && chunk.choices.is_empty())
    }
}
