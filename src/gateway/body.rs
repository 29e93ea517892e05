//! Step 2, read body: the whole request body, Content-Length or chunked, up to the limit.

use crate::error::{Code, ErrorKind, GatewayError};
use bytes::{Bytes, BytesMut};
use pingora_core::protocols::http::ServerSession;
use std::time::Duration;

/// How long the rest of a refused body is read and thrown away, so that the client sees the
/// answer instead of a broken pipe.
const DISCARD_TIME: Duration = Duration::from_secs(2);

/// Reads the request body. Over `limit` bytes: 413, before reading anything when the
/// Content-Length already says so.
pub async fn read_body(
    session: &mut ServerSession,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::body_too_large(limit));
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue && session.write_continue_response().await.is_err() {
        return Err(client_gone());
    }
    let deadline = std::time::Instant::now() + timeout;
    // A body in several chunks is joined into one allocation of its size.
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        // Pingora's timer, not tokio's: registering a tokio timer wakes the runtime's driver
        // (an eventfd write and an extra epoll round per request).
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let chunk = match pingora_timeout::timeout(left, session.read_request_body()).await {
            Err(_) => {
                return Err(GatewayError::new(
                    ErrorKind::RequestTimeout,
                    format!(
                        "The request body did not arrive within {} ms.",
                        timeout.as_millis()
                    ),
                )
                .code(Code::RequestTimeout))
            }
            Ok(Err(e)) => {
                return Err(GatewayError::invalid_request(format!(
                    "The request body could not be read: {}",
                    e.etype().as_str()
                )))
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        total += chunk.len();
        if total > limit {
            return Err(GatewayError::body_too_large(limit));
        }
        match (&mut first, &mut joined) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let mut j = BytesMut::with_capacity(declared.unwrap_or(total * 2).min(limit));
                j.extend_from_slice(f);
                j.extend_from_slice(&chunk);
                first = None;
                joined = Some(j);
            }
            (_, Some(j)) => j.extend_from_slice(&chunk),
        }
    }
    Ok(match joined {
        Some(j) => j.freeze(),
        // Pingora's chunk is a slice of its 64 KiB read buffer: held for the request's life
        // (a stream's minutes), it would pin that buffer. The body gets its own allocation.
        None => first.map_or_else(Bytes::new, |f| Bytes::copy_from_slice(&f)),
    })
}

/// After a refusal: reads and discards what is left of the body, for a bounded time.
pub async fn discard_rest(session: &mut ServerSession) {
    let _ = tokio::time::timeout(DISCARD_TIME, session.drain_request_body()).await;
}

fn client_gone() -> GatewayError {
    GatewayError::invalid_request("The client closed the connection.")
}
