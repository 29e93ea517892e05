//! Step 6, relay: the committed answer goes back to the client as the upstream sends it, a
//! stream event by event through its [`Stream`] (passed through or translated), a whole body
//! passed through chunk by chunk, and ends the client's stream properly when the upstream
//! ends, fails or goes quiet.

use super::reply;
use super::translate::Stream;
use crate::config::{Provider, Timeouts};
use crate::error::{Code, ErrorKind, GatewayError};
use crate::net::session::or_client_gone;
use crate::providers::Dialect;
use crate::usage::ledger::Ending;
use crate::usage::{Kept, Usage};
use bytes::Bytes;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::http::ServerSession;
use pingora_error::ErrorType;
use pingora_http::ResponseHeader;
use std::time::{Duration, Instant};

/// How the exchange ended, for the downstream connection and for accounting.
pub struct Outcome {
    /// The downstream connection must be closed, not reused: the response is incomplete.
    pub close: bool,
    pub status: u16,
    /// As the upstream reported it, for an answer it completed.
    pub usage: Option<Usage>,
    /// Of an answer that did not complete: what the upstream had reported of it (Anthropic's
    /// prompt in `message_start`, Gemini's counts so far), for the estimate to start from.
    pub partial: Option<Usage>,
    pub ending: Ending,
    /// Why an answer that began did not complete.
    pub error: Option<Code>,
    /// Time the gateway itself spent translating while relaying.
    pub own: Duration,
}

impl Outcome {
    pub fn client_gone() -> Outcome {
        Outcome {
            close: true,
            status: 499,
            usage: None,
            partial: None,
            ending: Ending::ClientAborted,
            error: None,
            own: Duration::ZERO,
        }
    }
}

/// How a response body is relayed. (Not boxed: a relay holds one or the other for the life
/// of an answer, and a box would be one more allocation per stream.)
#[allow(clippy::large_enum_variant)]
pub enum Relay {
    /// An SSE stream, event by event (passed through or translated).
    Stream(Stream),
    /// A body passed through chunk by chunk as it arrives (OpenAI's, or Anthropic's to an
    /// Anthropic client); the last few KiB are kept for its usage.
    Whole { tail: Vec<u8>, wire: Dialect },
}

/// How many bytes of a whole response's end are kept to find its `usage`.
pub(super) const USAGE_TAIL: usize = 8 * 1024;

impl Relay {
    /// What to send the client for an upstream chunk.
    fn on_chunk(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self {
            Relay::Stream(t) => t.feed(chunk),
            Relay::Whole { tail, .. } => {
                keep_tail(tail, &chunk);
                Some(chunk)
            }
        }
    }

    /// What to send last when the upstream body ended (streams only).
    fn on_end(&mut self, provider: &Provider) -> Option<Bytes> {
        let Relay::Stream(t) = self else { return None };
        let tail = t.finish();
        if t.done() {
            return tail;
        }
        let e = GatewayError::new(
            ErrorKind::BadGateway,
            format!(
                "Provider `{}` ended the stream before it was complete.",
                provider.name
            ),
        )
        .code(Code::UpstreamStreamCut);
        Some(join(tail, t.error_event(&e)))
    }

    /// What to send last when the upstream failed mid-body; `None`: the client can only learn
    /// it from the connection closing before the body is complete.
    fn on_error(
        &mut self,
        provider: &Provider,
        t: &Timeouts,
        e: &pingora_error::Error,
    ) -> Option<Bytes> {
        let Relay::Stream(translator) = self else {
            return None;
        };
        let (kind, message) = if e.etype() == &ErrorType::ReadTimedout {
            (
                ErrorKind::GatewayTimeout,
                format!(
                    "Provider `{}` sent nothing for {} ms; the stream was ended.",
                    provider.name,
                    t.idle.as_millis()
                ),
            )
        } else {
            (
                ErrorKind::BadGateway,
                format!(
                    "The connection to provider `{}` failed mid-stream: {}.",
                    provider.name,
                    e.etype().as_str()
                ),
            )
        };
        let err = GatewayError::new(kind, message).code(Code::UpstreamStreamCut);
        Some(join(translator.finish(), translator.error_event(&err)))
    }

    /// The upstream's body ended already (a stream's opening was all of it).
    fn upstream_ended(&self) -> bool {
        matches!(self, Relay::Stream(t) if t.finished())
    }

    /// The error the upstream's stream ended with.
    fn failure(&self) -> Option<&GatewayError> {
        match self {
            Relay::Stream(t) => t.failure(),
            Relay::Whole { .. } => None,
        }
    }

    /// The stream reached its proper end (a whole body always does when it ends).
    pub fn complete(&self) -> bool {
        match self {
            Relay::Stream(t) => t.done(),
            Relay::Whole { .. } => true,
        }
    }

    /// The upstream's usage report, when it made one for the whole answer: a translated
    /// stream's report is only whole once the upstream ended it (whether or not the client
    /// took the last bytes); an OpenAI stream's comes in its own final chunk.
    fn usage(&self) -> Option<Usage> {
        match self {
            Relay::Stream(t) => t.whole_usage(),
            Relay::Whole { tail, wire } => wire.usage_in_tail(tail),
        }
    }

    /// What a stream that did not complete had reported of its usage.
    fn partial_usage(&self) -> Option<Usage> {
        match self {
            Relay::Stream(t) => t.partial_usage(),
            Relay::Whole { .. } => None,
        }
    }
}

/// The response header for the client: SSE for streams; for whole bodies, the upstream's
/// content type and length (chunked when it gave none).
fn client_header(up: &HttpSession, stream: bool) -> ResponseHeader {
    if stream {
        return reply::sse_header();
    }
    let mut header = reply::client_header(200);
    let upstream = up.response_header();
    let content_type = upstream
        .and_then(|h| h.headers.get(http::header::CONTENT_TYPE).cloned())
        .unwrap_or_else(|| http::HeaderValue::from_static("application/json"));
    let _ = header.insert_header(http::header::CONTENT_TYPE, content_type);
    match upstream.and_then(|h| h.headers.get(http::header::CONTENT_LENGTH).cloned()) {
        Some(len) => {
            let _ = header.insert_header(http::header::CONTENT_LENGTH, len);
        }
        None => {
            let _ = header.insert_header(http::header::TRANSFER_ENCODING, "chunked");
        }
    }
    header
}

// hot path: every upstream chunk goes to the client as soon as it arrives.
/// Commits (writes the response header, and `first` if the attempt already read it) and
/// relays the rest of the upstream's body until it ends, fails, or the client leaves (then
/// the upstream request is dropped with its connection). True with the outcome when the
/// upstream session ended cleanly and may go back to the pool.
///
/// The upstream session and the relay mode are borrowed, not moved in: an async fn's moved
/// arguments are kept twice in its future (the argument and its local copy), and this future
/// lives as long as the stream.
#[allow(clippy::too_many_arguments)] // each borrowed, not bundled: see above
pub async fn relay(
    session: &mut ServerSession,
    up: &mut HttpSession,
    provider: &Provider,
    t: &Timeouts,
    relay: &mut Relay,
    held: Option<Bytes>,
    relayed: &mut Kept,
    rate: &crate::limits::RateHeaders,
) -> (Outcome, bool) {
    let mut outcome = Outcome {
        close: true,
        status: 200,
        usage: None,
        partial: None,
        ending: Ending::ClientAborted,
        error: None,
        own: Duration::ZERO,
    };
    // A stream's opening, already read and translated: it goes out with the header.
    let mut pending = held;
    // A stream's header may have gone out already, with keep-alives while it waited.
    if !reply::header_sent(session) {
        let header = reply::with_rate(client_header(up, matches!(relay, Relay::Stream(_))), rate);
        if pending.is_some() {
            // Its first bytes follow at once: one write for both.
            crate::net::listener::hold_next_flush(session);
        }
        if session
            .write_response_header(Box::new(header))
            .await
            .is_err()
        {
            return (outcome, false);
        }
    }
    up.set_read_timeout(Some(t.idle));
    let mut reusable = false;
    let mut gone = false;
    loop {
        if let Some(out) = pending.take() {
            relayed.keep(&out);
            if session.write_response_body(out, false).await.is_err() {
                gone = true;
                break;
            }
        }
        let next = if relay.upstream_ended() {
            Ok(None)
        } else {
            match or_client_gone(session, up.read_response_body()).await {
                None => {
                    gone = true;
                    break;
                }
                Some(r) => r,
            }
        };
        match next {
            Ok(Some(chunk)) => {
                let translating = Instant::now();
                pending = relay.on_chunk(chunk);
                outcome.own += translating.elapsed();
            }
            Ok(None) => {
                reusable = true;
                let last = relay.on_end(provider).unwrap_or_default();
                relayed.keep(&last);
                outcome.ending = match relay.failure() {
                    Some(e) => {
                        outcome.status = e.status();
                        outcome.error = e.code;
                        Ending::UpstreamError
                    }
                    None if relay.complete() => Ending::Complete,
                    None => {
                        outcome.status = 502;
                        outcome.error = Some(Code::UpstreamStreamCut);
                        Ending::UpstreamError
                    }
                };
                if session.write_response_body(last, true).await.is_err() {
                    outcome.ending = Ending::ClientAborted;
                } else {
                    outcome.close = false;
                }
                break;
            }
            Err(e) => {
                tracing::warn!(provider = %provider.name, error = %e.etype().as_str(), "upstream body failed");
                outcome.status = 502;
                outcome.ending = Ending::UpstreamError;
                outcome.error = Some(Code::UpstreamStreamCut);
                if let Some(last) = relay.on_error(provider, t, &e) {
                    // The stream ends properly (with an error event): the connection stays.
                    relayed.keep(&last);
                    outcome.close = session.write_response_body(last, true).await.is_err();
                }
                break;
            }
        }
    }
    if gone {
        drain(up, relay, relayed).await;
    }
    outcome.usage = relay.usage();
    if outcome.usage.is_none() {
        outcome.partial = relay.partial_usage();
    }
    (outcome, reusable)
}

/// How long a stream whose client left is still read for what the upstream had already
/// sent: each read waits this long at most, all of them together `DRAIN_FOR`.
const DRAIN_GAP: Duration = Duration::from_millis(2);
const DRAIN_FOR: Duration = Duration::from_millis(20);
/// And at most this much of it.
const DRAIN_BYTES: usize = 1 << 20;

/// The client left mid-stream: what the upstream had sent by then is still read (never waited
/// for long) and counted, since the provider bills it; a stream that turns out to be complete
/// gives its own usage report. Then the connection is dropped, which stops the upstream.
async fn drain(up: &mut HttpSession, relay: &mut Relay, relayed: &mut Kept) {
    let until = Instant::now() + DRAIN_FOR;
    let mut read = 0;
    while !relay.upstream_ended() && read < DRAIN_BYTES {
        let wait = until
            .saturating_duration_since(Instant::now())
            .min(DRAIN_GAP);
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(wait, up.read_response_body()).await else {
            break;
        };
        read += chunk.len();
        if let Some(out) = relay.on_chunk(chunk) {
            relayed.keep(&out);
        }
    }
}

fn keep_tail(tail: &mut Vec<u8>, chunk: &[u8]) {
    if chunk.len() >= USAGE_TAIL {
        tail.clear();
        tail.extend_from_slice(&chunk[chunk.len() - USAGE_TAIL..]);
    } else {
        let excess = (tail.len() + chunk.len()).saturating_sub(USAGE_TAIL);
        tail.drain(..excess);
        tail.extend_from_slice(chunk);
    }
}

fn join(head: Option<Bytes>, tail: Bytes) -> Bytes {
    match head {
        None => tail,
        Some(h) => {
            let mut v = Vec::with_capacity(h.len() + tail.len());
            v.extend_from_slice(&h);
            v.extend_from_slice(&tail);
            v.into()
        }
    }
}
