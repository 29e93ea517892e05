//! Step 5 and 6, attempt and respond: send the request to the provider over a pooled
//! connection, then hand its answer back to the client as it arrives.

use super::respond;
use crate::config::{Provider, Route, Timeouts};
use crate::error::{ErrorKind, GatewayError};
use crate::providers::openai::{self, ChatRequestInfo};
use crate::providers::{self, Dialect, StreamTranslator, UpstreamRequest};
use crate::usage::Usage;
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::http::ServerSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::ErrorType;
use pingora_http::{RequestHeader, ResponseHeader};
use std::future::Future;
use std::time::Duration;

/// How long an idle upstream connection stays in the pool.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// Largest upstream error body read to pass on.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How the exchange ended, for the downstream connection and for accounting.
#[derive(Debug)]
pub struct Outcome {
    /// The downstream connection must be closed, not reused: the response is incomplete.
    pub close: bool,
    pub status: u16,
    pub usage: Option<Usage>,
}

/// Sends the request to the route's provider and streams the answer back to `session`.
/// An `Err` means nothing was written to the client yet.
pub async fn forward(
    connector: &Connector,
    session: &mut ServerSession,
    route: &Route,
    info: &ChatRequestInfo,
    upstream: UpstreamRequest,
) -> Result<Outcome, GatewayError> {
    let provider = &*route.provider;
    let peer = provider.upstream.peer().await?;
    let request = request_header(provider, &upstream.path, info.stream, upstream.body.len())?;
    let Some(up) = send(connector, session, &peer, provider, request, upstream.body).await? else {
        // The client left while we waited for the upstream; the upstream request is dropped.
        return Ok(Outcome {
            close: true,
            status: 499,
            usage: None,
        });
    };
    let status = up.response_header().map_or(502, |h| h.status.as_u16());
    if !(200..300).contains(&status) {
        return Err(upstream_error_status(connector, up, &peer, provider, status).await);
    }
    Ok(relay(connector, session, up, &peer, route, info, upstream.dialect).await)
}

fn request_header(
    provider: &Provider,
    path: &str,
    stream: bool,
    len: usize,
) -> Result<RequestHeader, GatewayError> {
    let bad = |_| GatewayError::new(ErrorKind::Internal, "cannot build the upstream request");
    let mut req = RequestHeader::build("POST", path.as_bytes(), Some(8 + provider.headers.len()))
        .map_err(bad)?;
    req.insert_header(http::header::HOST, &provider.upstream.authority)
        .map_err(bad)?;
    req.insert_header(http::header::CONTENT_TYPE, "application/json")
        .map_err(bad)?;
    req.insert_header(http::header::CONTENT_LENGTH, len)
        .map_err(bad)?;
    req.insert_header(
        http::header::ACCEPT,
        if stream {
            "text/event-stream"
        } else {
            "application/json"
        },
    )
    .map_err(bad)?;
    req.insert_header(
        http::header::USER_AGENT,
        concat!("junction/", env!("CARGO_PKG_VERSION")),
    )
    .map_err(bad)?;
    providers::authenticate(provider, &mut req)?;
    for (name, value) in &provider.headers {
        req.insert_header(name.clone(), value.expose().clone())
            .map_err(bad)?;
    }
    Ok(req)
}

/// Sends the request and reads the response header. A stale pooled connection is retried once
/// on a fresh one. `Ok(None)`: the client went away first.
async fn send(
    connector: &Connector,
    session: &mut ServerSession,
    peer: &HttpPeer,
    provider: &Provider,
    request: RequestHeader,
    body: Bytes,
) -> Result<Option<HttpSession>, GatewayError> {
    let t = provider.timeouts;
    for attempt in 0..2 {
        let (mut up, reused) = match or_client_gone(session, connector.get_http_session(peer)).await
        {
            None => return Ok(None),
            Some(Ok(s)) => s,
            Some(Err(e)) => return Err(transport_error(provider, &e, "connecting", &t)),
        };
        up.set_write_timeout(Some(t.write));
        up.set_read_timeout(Some(t.first_byte));
        let exchange = async {
            up.write_request_header(Box::new(request.clone())).await?;
            up.write_request_body(body.clone(), true).await?;
            up.finish_request_body().await?;
            up.read_response_header().await
        };
        match or_client_gone(session, exchange).await {
            None => return Ok(None),
            Some(Ok(())) => return Ok(Some(up)),
            Some(Err(mut e)) => {
                e.retry.decide_reuse(reused);
                if attempt == 0 && e.retry() {
                    tracing::debug!(provider = %provider.name, "stale pooled connection, retrying on a new one");
                    continue;
                }
                return Err(transport_error(
                    provider,
                    &e,
                    "waiting for the response",
                    &t,
                ));
            }
        }
    }
    unreachable!("the loop returns on its second pass")
}

/// Runs `fut` unless the client disconnects first (then `None`).
async fn or_client_gone<T>(session: &mut ServerSession, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        r = fut => Some(r),
        _ = session.read_body_or_idle(true) => None,
    }
}

fn transport_error(
    provider: &Provider,
    e: &pingora_error::Error,
    phase: &str,
    t: &Timeouts,
) -> GatewayError {
    let name = &provider.name;
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout => GatewayError::new(
            ErrorKind::GatewayTimeout,
            format!(
                "Provider `{name}` did not accept a connection within {} ms.",
                t.connect.as_millis()
            ),
        )
        .code("upstream_timeout"),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => GatewayError::new(
            ErrorKind::GatewayTimeout,
            format!(
                "Provider `{name}` did not answer within {} ms ({phase}).",
                t.first_byte.as_millis()
            ),
        )
        .code("upstream_timeout"),
        other => GatewayError::new(
            ErrorKind::BadGateway,
            format!(
                "Provider `{name}` could not be reached ({phase}): {}.",
                other.as_str()
            ),
        )
        .code("upstream_unreachable"),
    }
}

/// An upstream error status, turned into what the client is told.
async fn upstream_error_status(
    connector: &Connector,
    mut up: HttpSession,
    peer: &HttpPeer,
    provider: &Provider,
    status: u16,
) -> GatewayError {
    let retry_after = up
        .response_header()
        .and_then(|h| h.headers.get(http::header::RETRY_AFTER))
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = read_small_body(&mut up, provider.timeouts.idle).await;
    if body.is_some() {
        connector
            .release_http_session(up, peer, Some(POOL_IDLE))
            .await;
    }
    providers::map_error(provider, status, &body.unwrap_or_default(), retry_after)
}

/// Reads a whole body up to [`MAX_ERROR_BODY`]; `None` if it failed or was larger.
async fn read_small_body(up: &mut HttpSession, idle: Duration) -> Option<Bytes> {
    up.set_read_timeout(Some(idle));
    let mut out = Vec::new();
    loop {
        match up.read_response_body().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > MAX_ERROR_BODY {
                    return None;
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Some(out.into()),
            Err(_) => return None,
        }
    }
}

/// How a response body is relayed.
enum Relay {
    /// An SSE stream, event by event (passed through or translated).
    Stream(StreamTranslator),
    /// An OpenAI body, chunk by chunk as it arrives; the last few KiB are kept for its usage.
    Whole { tail: Vec<u8> },
    /// A body in another dialect: gathered whole, then translated.
    Translate { body: Vec<u8>, dialect: Dialect },
}

/// How many bytes of a whole response's end are kept to find its `usage`.
const USAGE_TAIL: usize = 8 * 1024;
/// Largest non-streaming body gathered for translation.
const MAX_TRANSLATED_BODY: usize = 64 * 1024 * 1024;

impl Relay {
    /// What to send the client for an upstream chunk; `Err` when a gathered body grows too big.
    fn on_chunk(&mut self, chunk: Bytes) -> Result<Option<Bytes>, ()> {
        Ok(match self {
            Relay::Stream(t) => t.feed(chunk),
            Relay::Whole { tail } => {
                keep_tail(tail, &chunk);
                Some(chunk)
            }
            Relay::Translate { body, .. } => {
                if body.len() + chunk.len() > MAX_TRANSLATED_BODY {
                    return Err(());
                }
                body.extend_from_slice(&chunk);
                None
            }
        })
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
        .code("upstream_stream_cut");
        Some(join(tail, e.sse_event()))
    }

    /// What to send last when the upstream failed mid-body; `None`: the client can only learn
    /// it from the connection closing before the body is complete.
    fn on_error(&mut self, provider: &Provider, e: &pingora_error::Error) -> Option<Bytes> {
        let Relay::Stream(t) = self else {
            return None;
        };
        let timed_out = e.etype() == &ErrorType::ReadTimedout;
        let (kind, message) = if timed_out {
            (
                ErrorKind::GatewayTimeout,
                format!(
                    "Provider `{}` sent nothing for {} ms; the stream was ended.",
                    provider.name,
                    provider.timeouts.idle.as_millis()
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
        let err = GatewayError::new(kind, message).code("upstream_stream_cut");
        Some(join(t.finish(), err.sse_event()))
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Relay::Stream(t) => t.usage(),
            Relay::Whole { tail } => openai::usage_in_tail(tail),
            Relay::Translate { .. } => None,
        }
    }
}

/// The response header for the client: SSE for streams; for whole bodies, the upstream's
/// content type and length (chunked when it gave none).
fn client_header(up: &HttpSession, stream: bool) -> ResponseHeader {
    let mut header = ResponseHeader::build(200, Some(5)).expect("valid status");
    if stream {
        let _ = header.insert_header(http::header::CONTENT_TYPE, "text/event-stream");
        let _ = header.insert_header(http::header::CACHE_CONTROL, "no-cache");
        let _ = header.insert_header(http::header::TRANSFER_ENCODING, "chunked");
        let _ = header.insert_header("x-accel-buffering", "no");
        return header;
    }
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
/// Relays the upstream's response body to the client until it ends, fails, or the client
/// leaves (then the upstream request is dropped with its connection).
async fn relay(
    connector: &Connector,
    session: &mut ServerSession,
    mut up: HttpSession,
    peer: &HttpPeer,
    route: &Route,
    info: &ChatRequestInfo,
    dialect: Dialect,
) -> Outcome {
    let provider = &*route.provider;
    let mut relay = match (info.stream, dialect) {
        (true, d) => Relay::Stream(StreamTranslator::new(d, info, &route.upstream_model)),
        (false, Dialect::OpenAi) => Relay::Whole { tail: Vec::new() },
        (false, d) => Relay::Translate {
            body: Vec::new(),
            dialect: d,
        },
    };
    let mut outcome = Outcome {
        close: true,
        status: 200,
        usage: None,
    };
    if !matches!(relay, Relay::Translate { .. }) {
        let header = client_header(&up, info.stream);
        if session
            .write_response_header(Box::new(header))
            .await
            .is_err()
        {
            return outcome;
        }
    }
    up.set_read_timeout(Some(provider.timeouts.idle));
    loop {
        let Some(next) = or_client_gone(session, up.read_response_body()).await else {
            break;
        };
        match next {
            Ok(Some(chunk)) => match relay.on_chunk(chunk) {
                Ok(Some(out)) => {
                    if session.write_response_body(out, false).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(()) => {
                    let e = GatewayError::new(
                        ErrorKind::BadGateway,
                        format!(
                            "Provider `{}` sent a response larger than {MAX_TRANSLATED_BODY} bytes.",
                            provider.name
                        ),
                    )
                    .code("upstream_response_too_large");
                    outcome.status = e.status();
                    respond::write_error(session, &e).await;
                    outcome.close = false;
                    break;
                }
            },
            Ok(None) => {
                connector
                    .release_http_session(up, peer, Some(POOL_IDLE))
                    .await;
                if let Relay::Translate { body, dialect } = &relay {
                    match providers::translate_whole(*dialect, body, &route.upstream_model) {
                        Ok((json, usage)) => {
                            outcome.usage = Some(usage);
                            respond::write_json(session, 200, json.into()).await;
                        }
                        Err(why) => {
                            let e = GatewayError::new(
                                ErrorKind::BadGateway,
                                format!(
                                    "Provider `{}` sent a response that cannot be translated: {why}.",
                                    provider.name
                                ),
                            )
                            .code("upstream_bad_response");
                            outcome.status = e.status();
                            respond::write_error(session, &e).await;
                        }
                    }
                    outcome.close = false;
                    return outcome;
                }
                let last = relay.on_end(provider).unwrap_or_default();
                outcome.close = session.write_response_body(last, true).await.is_err();
                break;
            }
            Err(e) => {
                tracing::warn!(provider = %provider.name, error = %e.etype().as_str(), "upstream body failed");
                outcome.status = 502;
                if let Relay::Translate { .. } = relay {
                    // Nothing was sent yet: the client gets a clean error.
                    let err =
                        transport_error(provider, &e, "reading the response", &provider.timeouts);
                    outcome.status = err.status();
                    respond::write_error(session, &err).await;
                    outcome.close = false;
                    break;
                }
                if let Some(last) = relay.on_error(provider, &e) {
                    outcome.close = session.write_response_body(last, true).await.is_err();
                }
                break;
            }
        }
    }
    outcome.usage = outcome.usage.or(relay.usage());
    outcome
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
