//! Writing what the gateway says itself: response headers, JSON bodies, and errors in the
//! client's protocol (before or after a stream's header went out).

use crate::error::GatewayError;
use crate::front::Front;
use bytes::Bytes;
use pingora_core::protocols::http::ServerSession;
use pingora_http::ResponseHeader;

/// A response header for the client, sized for ours and the two Pingora adds (`date`,
/// `connection`), without Pingora's second map of header-name spellings: every name we send
/// is lower case anyway, and each open stream holds its header for its whole life (the map
/// and regrowing past the first capacity were 1.2 KB a stream).
pub fn client_header(status: u16) -> ResponseHeader {
    ResponseHeader::build_no_case(status, Some(8)).expect("valid status")
}

/// The header of an SSE stream (chunked over HTTP/1.1, so the connection stays reusable).
pub fn sse_header() -> ResponseHeader {
    let mut header = client_header(200);
    let _ = header.insert_header(http::header::CONTENT_TYPE, "text/event-stream");
    let _ = header.insert_header(http::header::CACHE_CONTROL, "no-cache");
    let _ = header.insert_header(http::header::TRANSFER_ENCODING, "chunked");
    let _ = header.insert_header("x-accel-buffering", "no");
    header
}

/// A response header with a JSON content type and a known length.
pub fn json_header(status: u16, len: usize) -> ResponseHeader {
    let mut h = client_header(status);
    let _ = h.insert_header(http::header::CONTENT_TYPE, "application/json");
    let _ = h.insert_header(http::header::CONTENT_LENGTH, len);
    h
}

/// `header` with the caller's rate-limit state, when it has limits.
pub fn with_rate(mut header: ResponseHeader, rate: &crate::limits::RateHeaders) -> ResponseHeader {
    rate.write(&mut header);
    header
}

/// Writes a whole JSON response; false when the client could not be written to.
pub async fn write_json(session: &mut ServerSession, status: u16, body: Bytes) -> bool {
    let header = json_header(status, body.len());
    session
        .write_response_header(Box::new(header))
        .await
        .is_ok()
        && session.write_response_body(body, true).await.is_ok()
}

/// The final response header is out (an interim `100 Continue` does not count).
pub fn header_sent(session: &ServerSession) -> bool {
    session
        .response_written()
        .is_some_and(|h| h.status.as_u16() >= 200)
}

/// Writes an error in the client's protocol's format, with `Retry-After` when it has one.
pub async fn write_error(session: &mut ServerSession, e: &GatewayError, front: Front) {
    // A stream that sent keep-alives while it waited has its header out: the error ends
    // the stream as an event.
    if header_sent(session) {
        let _ = session
            .write_response_body(front.error_event(e), true)
            .await;
        return;
    }
    let body = front.error_body(e);
    let mut header = json_header(e.status(), body.len());
    if let Some(secs) = e.retry_after {
        let _ = header.insert_header(http::header::RETRY_AFTER, secs);
    }
    if let Some(rate) = &e.rate {
        rate.write(&mut header);
    }
    if session
        .write_response_header(Box::new(header))
        .await
        .is_ok()
    {
        let _ = session.write_response_body(body, true).await;
    }
}
