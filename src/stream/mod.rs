//! Streams: the incremental SSE framer and the per-stream filters and translators.

pub mod chunk;
pub mod sse;
pub mod translate;
pub mod watch;

use bytes::Bytes;

/// The events kept of a chunk, as one piece (`None`: none), leaving `kept` empty.
pub fn join(kept: &mut Vec<Bytes>) -> Option<Bytes> {
    match kept.len() {
        0 => None,
        1 => kept.pop(),
        _ => {
            let mut out = Vec::with_capacity(kept.iter().map(Bytes::len).sum());
            for e in kept.drain(..) {
                out.extend_from_slice(&e);
            }
            Some(out.into())
        }
    }
}

/// What ended a stream from inside it, as the provider's decoder found it: the gateway makes
/// one [`crate::error::GatewayError`] of it (the provider's `map_error`, as for an error
/// status), so the attempt loop may move on when nothing reached the client yet, the door
/// renders it once, and accounting records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InBand {
    /// An error object in the provider's own format (its error body), with the HTTP status
    /// its type stands for.
    Reported { status: u16, body: Bytes },
    /// An event that is not valid JSON (and not the cut last one).
    Unreadable,
}
