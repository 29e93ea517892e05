//! Step 5b, one attempt: the request, in the deployment's protocol, to one deployment over a
//! pooled connection; the upstream's status and first bytes classified. An answer that is
//! good is committed (its first bytes go to the client) and relayed ([`super::relay`]); a
//! failure is reported for the failover loop ([`super::failover`]) to move on from.

use super::relay::{relay, Outcome, Relay};
use super::reply::{self, with_rate};
use super::translate::{self, Stream};
use crate::config::{Deployment, Provider, Timeouts};
use crate::error::{Code, ErrorKind, GatewayError};
use crate::front::{self, Front};
use crate::limits::RateHeaders;
use crate::net::session::or_client_gone;
use crate::providers::openai::ChatRequestInfo;
use crate::providers::{self, UpstreamRequest};
use crate::routing::health::Failure;
use crate::usage::ledger::Ending;
use crate::usage::Kept;
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::http::ServerSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::ErrorType;
use pingora_http::RequestHeader;
use std::time::{Duration, Instant};

/// How long an idle upstream connection stays in the pool.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// Largest upstream error body read to pass on.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What every attempt of a request shares: its trace context and which statuses move on.
pub struct Context<'a> {
    /// The protocol the client speaks.
    pub front: Front,
    /// How often a stream waiting for its first token sends the client a keep-alive.
    pub keepalive: Option<Duration>,
    /// At the Responses front door: what the answer's translation needs of the request.
    pub responses: Option<front::responses::Context>,
    /// Where the answer goes when it is stored (a Responses request with `store` on).
    pub keep: Option<std::sync::Arc<super::state::Keep>>,
    /// The W3C `traceparent` header value for upstream requests.
    pub traceparent: String,
    pub retry_statuses: &'a [u16],
    /// The caller's rate limits, told in every answer's header.
    pub rate: crate::limits::RateHeaders,
}

/// How one attempt ended.
pub enum Attempt {
    /// The answer is (being) delivered to the client: nothing else may be tried.
    Committed { outcome: Outcome, ttft: Duration },
    /// Nothing reached the client; another deployment may be tried.
    Failed {
        error: GatewayError,
        failure: Failure,
        retry_after: Option<Duration>,
    },
    /// Stop here: the upstream judged the request itself (a 4xx that is not a rate limit),
    /// or the client left.
    Final(Result<Outcome, GatewayError>),
}

fn failed(error: GatewayError, failure: Failure) -> Attempt {
    let retry_after = error.retry_after.map(|s| Duration::from_secs(s.into()));
    Attempt::Failed {
        error,
        failure,
        retry_after,
    }
}

fn client_gone() -> Attempt {
    Attempt::Final(Ok(Outcome::client_gone()))
}

/// Tries one deployment. Nothing is written to the client before the commit point: the
/// response header for whole bodies passed through, the first chunk for streams (within the
/// TTFT deadline), the whole translated body otherwise.
pub async fn attempt(
    connector: &Connector,
    session: &mut ServerSession,
    deployment: &Deployment,
    info: &ChatRequestInfo,
    upstream: UpstreamRequest,
    ctx: &Context<'_>,
    relayed: &mut Kept,
) -> Attempt {
    let provider = &*deployment.provider;
    let t = deployment.timeouts;
    let started = Instant::now();
    let peer = match provider.upstream.peer().await {
        Ok(p) => p,
        Err(e) => return failed(e, Failure::Broken),
    };
    let request = match request_header(
        provider,
        &upstream.path,
        info.stream,
        upstream.body.len(),
        &ctx.traceparent,
        &upstream.headers,
    ) {
        Ok(r) => r,
        Err(e) => return Attempt::Final(Err(e)),
    };
    // Boxed: inline, the exchange's futures would stay part of the request's future for as
    // long as the answer streams. (Connecting has its own box inside: see `send`.)
    let mut up = match Box::pin(send(
        connector,
        session,
        &peer,
        provider,
        &t,
        request,
        upstream.body,
    ))
    .await
    {
        Err(e) => return failed(e, Failure::Broken),
        Ok(None) => return client_gone(),
        Ok(Some(up)) => up,
    };
    let status = up.response_header().map_or(502, |h| h.status.as_u16());
    if !(200..300).contains(&status) {
        // Boxed, like `send`: a rare path whose 4 KB future should not size every request's.
        let e = Box::pin(upstream_error_status(
            connector, up, &peer, provider, status,
        ))
        .await;
        return judged(e, status, ctx);
    }
    let (mut mode, held, ttft) = match (info.stream, upstream.dialect) {
        (true, dialect) => {
            let mut stream = Stream::new(
                ctx.front,
                dialect,
                &deployment.provider,
                info,
                &deployment.upstream_model,
                ctx.responses.as_ref(),
                ctx.keep.as_ref(),
            );
            let deadline = started + t.ttft();
            let opened = opening(session, &mut up, &mut stream, deadline, ctx, provider, &t);
            let held = match opened.await {
                Opening::ClientGone => return client_gone(),
                Opening::Failed(e) => return e,
                Opening::Answer(held) => held,
            };
            (Relay::Stream(stream), held, started.elapsed())
        }
        (false, dialect) if translate::as_is(ctx.front, dialect) && ctx.keep.is_none() => {
            let mode = Relay::Whole {
                tail: Vec::new(),
                wire: dialect,
            };
            (mode, None, started.elapsed())
        }
        (false, dialect) => {
            let body = match read_whole_body(session, &mut up, provider, &t).await {
                None => return client_gone(),
                Some(Err(e)) => return failed(e, Failure::Broken),
                Some(Ok(body)) => body,
            };
            release(connector, up, &peer).await;
            let translating = Instant::now();
            // A stored answer in the client's protocol already is gathered whole, to be
            // stored before the client has it.
            let translated = if translate::as_is(ctx.front, dialect) {
                let usage = dialect
                    .usage_in_tail(&body[body.len().saturating_sub(super::relay::USAGE_TAIL)..]);
                Ok((body, usage))
            } else {
                translate::whole(
                    ctx.front,
                    dialect,
                    &body,
                    &deployment.upstream_model,
                    ctx.responses.as_ref(),
                )
                .map(|(json, usage)| (json, Some(usage)))
            };
            let (json, usage) = match translated {
                Ok(r) => r,
                Err(why) => {
                    let e = GatewayError::new(
                        ErrorKind::BadGateway,
                        format!(
                            "Provider `{}` sent a response that cannot be translated: {why}.",
                            provider.name
                        ),
                    )
                    .code(Code::UpstreamBadResponse);
                    return failed(e, Failure::Broken);
                }
            };
            if let Some(keep) = &ctx.keep {
                keep.put(&json);
            }
            let own = translating.elapsed();
            let ttft = started.elapsed();
            let json = Bytes::from(json);
            relayed.keep(&json);
            let delivered = reply::write_json(session, 200, json).await;
            return Attempt::Committed {
                outcome: Outcome {
                    close: !delivered,
                    status: 200,
                    usage,
                    partial: None,
                    ending: if delivered {
                        Ending::Complete
                    } else {
                        Ending::ClientAborted
                    },
                    error: None,
                    own,
                },
                ttft,
            };
        }
    };
    // Committed: relayed as it comes (a stream, or a whole body in the client's protocol).
    let (outcome, reusable) = relay(
        session, &mut up, provider, &t, &mut mode, held, relayed, &ctx.rate,
    )
    .await;
    if reusable {
        release(connector, up, &peer).await;
    }
    Attempt::Committed { outcome, ttft }
}

/// Largest non-streaming body gathered for translation.
const MAX_TRANSLATED_BODY: usize = 64 * 1024 * 1024;

/// Reads a whole response body to translate it; `None` when the client left first.
async fn read_whole_body(
    session: &mut ServerSession,
    up: &mut HttpSession,
    provider: &Provider,
    t: &Timeouts,
) -> Option<Result<Vec<u8>, GatewayError>> {
    up.set_read_timeout(Some(t.idle));
    let mut body = Vec::new();
    loop {
        match or_client_gone(session, up.read_response_body()).await? {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_TRANSLATED_BODY {
                    return Some(Err(GatewayError::new(
                        ErrorKind::BadGateway,
                        format!(
                            "Provider `{}` sent a response larger than {MAX_TRANSLATED_BODY} bytes.",
                            provider.name
                        ),
                    )
                    .code(Code::UpstreamResponseTooLarge)));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Some(Ok(body)),
            Err(e) => {
                return Some(Err(transport_error(
                    provider,
                    &e,
                    "reading the response",
                    t,
                )))
            }
        }
    }
}

fn request_header(
    provider: &Provider,
    path: &str,
    stream: bool,
    len: usize,
    traceparent: &str,
    passed: &[(http::HeaderName, http::HeaderValue)],
) -> Result<RequestHeader, GatewayError> {
    let bad = |_| GatewayError::new(ErrorKind::Internal, "cannot build the upstream request");
    // Without Pingora's map of header-name spellings (header names are case-insensitive, and
    // the HTTP/2 client copies the header twice for as long as the stream lasts).
    let mut req = RequestHeader::build_no_case(
        "POST",
        path.as_bytes(),
        Some(8 + provider.headers.len() + passed.len()),
    )
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
    req.insert_header("traceparent", traceparent).map_err(bad)?;
    providers::authenticate(provider, &mut req)?;
    for (name, value) in passed {
        req.insert_header(name.clone(), value.clone())
            .map_err(bad)?;
    }
    for (name, value) in &provider.headers {
        req.insert_header(name.clone(), value.expose().clone())
            .map_err(bad)?;
    }
    Ok(req)
}

/// Longest wait for an h2 connection's turn before taking one anyway.
const H2_TURN_WAIT: Duration = Duration::from_millis(100);

/// Sends the request and reads the response header. A stale pooled connection is retried once
/// on a fresh one. `Ok(None)`: the client went away first.
async fn send(
    connector: &Connector,
    session: &mut ServerSession,
    peer: &HttpPeer,
    provider: &Provider,
    t: &Timeouts,
    request: RequestHeader,
    body: Bytes,
) -> Result<Option<HttpSession>, GatewayError> {
    for attempt in 0..2 {
        let taking = async {
            let _turn = provider.upstream.h2_turn(H2_TURN_WAIT).await;
            // Connecting (TLS included) is an 18 KB future: boxed on its own, it is held only
            // while connecting, not while a burst of requests waits for its turn or for the
            // response header (10,000 streams: 63 MB at the peak per 5,000 when it was not).
            Box::pin(connector.get_http_session(peer)).await
        };
        let (mut up, reused) = match or_client_gone(session, taking).await {
            None => return Ok(None),
            Some(Ok(s)) => s,
            Some(Err(e)) => return Err(transport_error(provider, &e, "connecting", t)),
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
                return Err(transport_error(provider, &e, "waiting for the response", t));
            }
        }
    }
    unreachable!("the loop returns on its second pass")
}

/// An upstream's error (its status, or one it reported in its stream before the answer
/// began): a configured retry status, or an error that says so where it was made (our
/// credentials refused, the provider overloaded), lets another deployment try; any other
/// ends the request with it.
fn judged(e: GatewayError, status: u16, ctx: &Context<'_>) -> Attempt {
    let moves_on = ctx.retry_statuses.contains(&status) || e.fails_over;
    if !moves_on {
        return Attempt::Final(Err(e));
    }
    let failure = if status == 429 {
        Failure::RateLimited
    } else {
        Failure::Broken
    };
    failed(e, failure)
}

/// How a stream's opening went.
enum Opening {
    /// The answer began: what came before it and with it, translated, to send first.
    Answer(Option<Bytes>),
    Failed(Attempt),
    ClientGone,
}

/// Reads a stream until the upstream sends something of the answer (a token, a tool call,
/// its end), within the time-to-first-token deadline. What comes before (the opening
/// events: a message start, a created response) is held back, so a stream that fails first
/// (an error event such as Anthropic's `overloaded_error`, an end, a broken connection, the
/// deadline) is a failed attempt like an error status: nothing of it reached the client, and
/// another deployment may be tried. An upstream that opened its answer but is slow to go on
/// is not failed at the deadline: its opening goes out and the stream is relayed.
async fn opening(
    session: &mut ServerSession,
    up: &mut HttpSession,
    stream: &mut Stream,
    deadline: Instant,
    ctx: &Context<'_>,
    provider: &Provider,
    t: &Timeouts,
) -> Opening {
    let mut held: Option<Bytes> = None;
    loop {
        let next = match first_chunk(session, up, deadline, ctx).await {
            None => return Opening::ClientGone,
            Some(next) => next,
        };
        let e = match next {
            Err(_) if held.is_some() => return Opening::Answer(held),
            Err(_) => GatewayError::new(
                ErrorKind::GatewayTimeout,
                format!(
                    "Provider `{}` sent no first token within {} ms.",
                    provider.name,
                    t.ttft().as_millis()
                ),
            )
            .code(Code::UpstreamTimeout),
            Ok(Err(e)) => transport_error(provider, &e, "waiting for the first token", t),
            Ok(Ok(chunk)) => {
                let ended = chunk.is_none();
                let out = match chunk {
                    Some(chunk) => stream.feed(chunk),
                    None => stream.finish(),
                };
                held = join(held, out);
                if stream.started() && (!ended || stream.done()) {
                    return Opening::Answer(held);
                }
                if let Some(e) = stream.take_failure() {
                    let status = e.status();
                    return Opening::Failed(judged(e, status, ctx));
                }
                if !ended {
                    continue;
                }
                GatewayError::new(
                    ErrorKind::BadGateway,
                    format!(
                        "Provider `{}` ended the stream before sending anything.",
                        provider.name
                    ),
                )
                .code(Code::UpstreamStreamCut)
            }
        };
        return Opening::Failed(failed(e, Failure::Broken));
    }
}

fn join(head: Option<Bytes>, tail: Option<Bytes>) -> Option<Bytes> {
    match (head, tail) {
        (Some(h), Some(t)) => {
            let mut v = Vec::with_capacity(h.len() + t.len());
            v.extend_from_slice(&h);
            v.extend_from_slice(&t);
            Some(v.into())
        }
        (h, t) => h.or(t),
    }
}

/// Waits for a stream's first chunk until `deadline` (`None`: the client left first). Every
/// keep-alive period of the wait, the client gets a keep-alive (the SSE header first, once):
/// clients and proxies that give up on a silent connection keep waiting. Nothing else is
/// written, so another deployment may still be tried if this one fails.
async fn first_chunk(
    session: &mut ServerSession,
    up: &mut HttpSession,
    deadline: Instant,
    ctx: &Context<'_>,
) -> Option<Result<pingora_error::Result<Option<Bytes>>, pingora_timeout::Elapsed>> {
    // Pingora's timers, not tokio's: registering a tokio timer wakes the runtime's driver (an
    // eventfd write and an extra epoll round before the first token).
    let left = deadline.saturating_duration_since(Instant::now());
    let read = pingora_timeout::timeout(left, up.read_response_body());
    let Some(every) = ctx.keepalive else {
        return or_client_gone(session, read).await;
    };
    tokio::pin!(read);
    loop {
        match or_client_gone(session, pingora_timeout::timeout(every, &mut read)).await? {
            Ok(r) => return Some(r),
            Err(_) => {
                if !keep_alive(session, ctx.front, &ctx.rate).await {
                    return None;
                }
            }
        }
    }
}

/// Sends a stream's keep-alive (and its header, the first time); false if the client is gone.
async fn keep_alive(session: &mut ServerSession, front: Front, rate: &RateHeaders) -> bool {
    if !reply::header_sent(session)
        && session
            .write_response_header(Box::new(with_rate(reply::sse_header(), rate)))
            .await
            .is_err()
    {
        return false;
    }
    session
        .write_response_body(Bytes::from_static(front.keep_alive()), false)
        .await
        .is_ok()
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
        .code(Code::UpstreamTimeout),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => GatewayError::new(
            ErrorKind::GatewayTimeout,
            format!(
                "Provider `{name}` did not answer within {} ms ({phase}).",
                t.first_byte.as_millis()
            ),
        )
        .code(Code::UpstreamTimeout),
        other => GatewayError::new(
            ErrorKind::BadGateway,
            format!(
                "Provider `{name}` could not be reached ({phase}): {}.",
                other.as_str()
            ),
        )
        .code(Code::UpstreamUnreachable),
    }
}

/// Hands a finished upstream session back to the pool. Boxed: Pingora's release future is
/// 3 KB, and inline it would size the relay's future (and so every held stream's) by it.
async fn release(connector: &Connector, up: HttpSession, peer: &HttpPeer) {
    Box::pin(connector.release_http_session(up, peer, Some(POOL_IDLE))).await
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
        .and_then(|h| crate::routing::retry_after(&h.headers, std::time::SystemTime::now()))
        .map(|d| d.as_secs_f64().ceil() as u64);
    let body = read_small_body(&mut up, provider.timeouts.idle).await;
    if body.is_some() {
        release(connector, up, peer).await;
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
