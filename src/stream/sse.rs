//! An incremental Server-Sent Events framer: splits an upstream byte stream into whole
//! events, whatever the chunk boundaries are, without re-scanning what it has already seen.

use bytes::{Buf, Bytes, BytesMut};

/// Splits chunks into events. An event is handed out with its terminating blank line, as
/// the bytes that arrived (LF or CRLF framing both work). While a chunk holds whole events,
/// they are slices of it (zero copy); only an event split across chunks is copied.
#[derive(Default)]
pub struct SseFramer {
    /// Start of an event whose end has not arrived yet.
    pending: BytesMut,
    /// What is left of the current chunk.
    chunk: Bytes,
}

impl SseFramer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands the framer the next chunk. Drain [`Self::next_event`] before pushing again.
    pub fn push(&mut self, chunk: Bytes) {
        debug_assert!(
            self.chunk.is_empty(),
            "push before the last chunk was drained"
        );
        if self.chunk.is_empty() {
            self.chunk = chunk;
        } else {
            self.pending
                .extend_from_slice(&std::mem::replace(&mut self.chunk, chunk));
        }
    }

    // hot path: one memchr pass over each byte, no copy unless an event spans chunks.
    /// The next whole event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Option<Bytes> {
        if self.chunk.is_empty() {
            return None;
        }
        if self.pending.is_empty() {
            match find_boundary(&[], &self.chunk) {
                Some(end) => Some(self.chunk.split_to(end)),
                None => {
                    self.pending.extend_from_slice(&self.chunk);
                    self.chunk.clear();
                    None
                }
            }
        } else {
            let tail = &self.pending[self.pending.len().saturating_sub(2)..];
            match find_boundary(tail, &self.chunk) {
                Some(end) => {
                    self.pending.extend_from_slice(&self.chunk[..end]);
                    self.chunk.advance(end);
                    Some(self.pending.split().freeze())
                }
                None => {
                    self.pending.extend_from_slice(&self.chunk);
                    self.chunk.clear();
                    None
                }
            }
        }
    }

    /// Bytes held for an event that has not ended yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len() + self.chunk.len()
    }

    /// At the end of the stream: whatever is left (an event without its blank line).
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.take_rest();
        if rest.iter().all(|b| b.is_ascii_whitespace()) {
            return None;
        }
        Some(rest)
    }

    /// Every byte held, as it came (for a stream passed on byte for byte).
    pub fn take_rest(&mut self) -> Bytes {
        if self.pending.is_empty() {
            return std::mem::take(&mut self.chunk);
        }
        self.pending
            .extend_from_slice(&std::mem::take(&mut self.chunk));
        self.pending.split().freeze()
    }
}

/// End (exclusive, as an offset into `data`) of the first blank line that completes in
/// `data`, where `prev` holds the bytes just before `data`.
fn find_boundary(prev: &[u8], data: &[u8]) -> Option<usize> {
    let at = |k: usize| -> Option<u8> {
        if k < prev.len() {
            Some(prev[k])
        } else {
            data.get(k - prev.len()).copied()
        }
    };
    // A blank line: "\n" then an optional "\r" then "\n".
    let blank_after = |k: usize| -> Option<usize> {
        let mut j = k + 1;
        if at(j) == Some(b'\r') {
            j += 1;
        }
        (at(j) == Some(b'\n')).then_some(j + 1)
    };
    for k in 0..prev.len() {
        if prev[k] == b'\n' {
            if let Some(end) = blank_after(k) {
                if end > prev.len() {
                    return Some(end - prev.len());
                }
            }
        }
    }
    memchr::memchr_iter(b'\n', data)
        .find_map(|i| blank_after(prev.len() + i))
        .map(|end| end - prev.len())
}

/// The payload of an event's first `data:` line (without the field name and one optional
/// space, and without the line end), or `None` for events without data (comments, pings).
pub fn data_of(event: &[u8]) -> Option<&[u8]> {
    let mut rest = event;
    loop {
        let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = line.strip_prefix(b"data:") {
            return Some(v.strip_prefix(b" ").unwrap_or(v));
        }
        if line_end >= rest.len() {
            return None;
        }
        rest = &rest[line_end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_of(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut f = SseFramer::new();
        let mut out = Vec::new();
        for c in chunks {
            f.push(Bytes::copy_from_slice(c));
            while let Some(e) = f.next_event() {
                out.push(e.to_vec());
            }
        }
        if let Some(e) = f.finish() {
            out.push(e.to_vec());
        }
        out
    }

    #[test]
    fn splits_lf_and_crlf_events() {
        let got = events_of(&[b"data: a\n\ndata: b\r\n\r\nevent: x\ndata: c\n\n"]);
        assert_eq!(
            got,
            vec![
                b"data: a\n\n".to_vec(),
                b"data: b\r\n\r\n".to_vec(),
                b"event: x\ndata: c\n\n".to_vec()
            ]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream: &[u8] =
            b"data: {\"a\":1}\r\n\r\n: comment\n\ndata: two\ndata: lines\n\ndata: [DONE]\n\n";
        let whole = events_of(&[stream]);
        assert_eq!(whole.len(), 4);
        for i in 0..stream.len() {
            for j in i..stream.len() {
                let got = events_of(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(got, whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn whole_events_in_one_chunk_are_not_copied() {
        let chunk = Bytes::from_static(b"data: a\n\ndata: b\n\n");
        let mut f = SseFramer::new();
        f.push(chunk.clone());
        let e = f.next_event().unwrap();
        assert_eq!(e.as_ptr(), chunk.as_ptr());
    }

    #[test]
    fn finish_returns_an_unterminated_event_and_ignores_whitespace() {
        assert_eq!(events_of(&[b"data: a\n\ndata: b"]).len(), 2);
        assert_eq!(events_of(&[b"data: a\n\n\n"]).len(), 1);
    }

    #[test]
    fn data_of_finds_the_payload() {
        assert_eq!(data_of(b"data: {\"x\":1}\n\n"), Some(&b"{\"x\":1}"[..]));
        assert_eq!(data_of(b"event: ping\r\ndata:{}\r\n\r\n"), Some(&b"{}"[..]));
        assert_eq!(data_of(b": keep-alive\n\n"), None);
    }
}
