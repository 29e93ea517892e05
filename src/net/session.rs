//! The lifecycle of one request on a Pingora server session, shared by every app.

use pingora_core::apps::{HttpPersistentSettings, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;

/// The longest a request header may take once its first bytes came, where no config says
/// (the admin listener, the mock).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the request header; false when there is none (closed, malformed, not whole within
/// `timeout` of its first bytes: a slowloris client holds no connection for longer) or the
/// server began shutting down first (an idle keep-alive connection must not hold up a
/// shutdown).
pub async fn read_request(
    session: &mut ServerSession,
    shutdown: &ShutdownWatch,
    timeout: std::time::Duration,
) -> bool {
    let mut watch = shutdown.clone();
    let read = tokio::select! {
        biased;
        r = pingora_timeout::timeout(timeout, session.read_request()) => r,
        _ = watch.changed() => return false,
    };
    matches!(read, Ok(Ok(true)))
}

/// Ends a served request: closes the connection when `close`, otherwise hands it back for
/// the next request.
pub async fn finish(mut session: ServerSession, close: bool) -> Option<ReusedHttpStream> {
    if close {
        session.shutdown().await;
        return None;
    }
    let settings = HttpPersistentSettings::for_session(&session);
    match session.finish().await {
        Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, settings)),
        _ => None,
    }
}

/// Runs `fut` unless the client disconnects first (then `None`): a client's close shows at
/// once here, where a write would notice it only on its second try.
pub async fn or_client_gone<T>(
    session: &mut ServerSession,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        r = fut => Some(r),
        _ = session.read_body_or_idle(true) => None,
    }
}
