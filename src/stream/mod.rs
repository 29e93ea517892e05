//! Streams: the incremental SSE framer and the per-stream filters and translators.

pub mod chunk;
pub mod sse;
pub mod translate;
pub mod watch;
