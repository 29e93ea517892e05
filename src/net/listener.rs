//! The client listener: our own accept loop over Pingora's listening socket, for an app that
//! serves HTTP/1 sessions itself ([`Serve`]; the gateway is the one).
//!
//! Pingora's listening service spawns one task per connection whose future holds the TLS
//! handshake's state inline (8.8 KB, even on plain TCP), then boxes the app's `process_new`
//! (3.8 KB) and, through `async_trait`, the app's request future. A held-open stream paid
//! about 12 KB for that wrapping alone: at 10,000 streams, 120 MB. Here a connection is one
//! task holding the HTTP/1 keep-alive loop and the request future, nothing else.
//!
//! What Pingora's service did and this keeps:
//! - the socket comes from the listening fds handed over by a binary upgrade when there are
//!   some, and is added to them otherwise (`ListenerEndpoint::listen`);
//! - `listeners_per_fd` accept loops; a shutdown stops accepting, and the connections in
//!   progress finish within the server's graceful shutdown;
//! - TCP_NODELAY on each connection, and a one-second pause when out of file descriptors;
//! - writes buffered up to one segment (a response header and its first bytes leave in one
//!   write);
//! - HTTP/1 keep-alive: 60 s until the gateway sets its own, Pingora's reuse of a finished
//!   connection, and its persistent settings;
//! - h2c with prior knowledge: such a connection is handed to Pingora's HTTP/2 server as it
//!   was before (an h2 connection carries many streams, so its wrapping is not per stream).

use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpPersistentSettings, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::listener::Listener;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest, TimingDigest,
};
use pingora_core::protocols::{Peek, Shutdown, Ssl, UniqueID, UniqueIDType};
use pingora_core::server::ListenFds;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::Service;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The write buffer in front of each client connection: one TCP segment.
const WRITE_BUFFER: usize = 1460;
/// HTTP/2's connection preface: a client speaking h2c with prior knowledge starts with it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The most bytes of a request read before its session parses them (Pingora's own first
/// read is as large).
const FIRST_READ: usize = 4096;
/// Keep-alive of a client connection until the gateway sets its own per request.
const DEFAULT_KEEPALIVE_SECS: u64 = 60;

/// What the client listener serves: an app that takes each HTTP/1 session as it comes (and
/// h2c connections through Pingora's HTTP/2 server, as a [`ServerApp`]).
pub trait Serve: ServerApp + Send + Sync + 'static {
    /// Whether the listener takes h2c (HTTP/2 with prior knowledge).
    fn h2c(&self) -> bool;
    /// How long an idle client connection is kept open between requests.
    fn keepalive_secs(&self) -> u64;
    /// Serves one request of a client session; the connection back when it may carry another.
    fn serve(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> impl std::future::Future<Output = Option<pingora_core::apps::ReusedHttpStream>> + Send;
}

/// A Pingora service: an app behind its client listening address.
pub struct ClientListener<A> {
    name: String,
    addr: String,
    gateway: Arc<A>,
}

impl<A: Serve> ClientListener<A> {
    pub fn new(name: &str, addr: &str, gateway: A) -> Self {
        ClientListener {
            name: name.to_string(),
            addr: addr.to_string(),
            gateway: Arc::new(gateway),
        }
    }
}

#[async_trait]
impl<A: Serve> Service for ClientListener<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        // As Pingora's own listening service does: a server that cannot listen does not start.
        let listener = match listen(&self.addr, fds).await {
            Ok(l) => Arc::new(l),
            Err(e) => panic!("cannot listen on {}: {e}", self.addr),
        };
        let loops: Vec<_> = (0..listeners_per_fd.max(1))
            .map(|_| {
                let listener = listener.clone();
                let gateway = self.gateway.clone();
                let shutdown = shutdown.clone();
                let addr = self.addr.clone();
                tokio::spawn(accept_loop(listener, addr, gateway, shutdown))
            })
            .collect();
        for l in loops {
            let _ = l.await;
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.addr.clone()])
    }
}

/// How many times, a second apart, binding retries an address still in use (Pingora's own
/// count: a restarted process may find the old one's socket not yet closed).
const BIND_TRIES: usize = 30;
/// The listening socket's backlog (Pingora's).
const BACKLOG: u32 = 65535;

/// The listening socket: the one a binary upgrade handed over for this address, or a new one,
/// which is then added to the handed-over set so that the next upgrade passes it on.
async fn listen(addr: &str, fds: Option<ListenFds>) -> std::io::Result<Listener> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let inherited = fds.as_ref().and_then(|f| f.lock().get(addr).copied());
    if let Some(fd) = inherited {
        // Safety: the fd was handed over for this address by the previous process and
        // nothing else in this process owns it.
        let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        std.set_nonblocking(true)?;
        return Ok(tokio::net::TcpListener::from_std(std)?.into());
    }
    let sock_addr: std::net::SocketAddr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("`{addr}` resolves to no address")))?;
    let mut tries = 0;
    let listener = loop {
        let socket = if sock_addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(sock_addr) {
            Ok(()) => break socket.listen(BACKLOG)?,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries + 1 < BIND_TRIES => {
                tries += 1;
                tracing::warn!("{addr} is in use, trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    if let Some(fds) = fds {
        fds.lock().add(addr.to_string(), listener.as_raw_fd());
    }
    Ok(listener.into())
}

async fn accept_loop<A: Serve>(
    listener: Arc<Listener>,
    addr: String,
    gateway: Arc<A>,
    mut shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => match changed {
                Ok(()) if !*shutdown.borrow() => continue,
                Ok(()) => {
                    tracing::info!(listen = %addr, "stopped accepting connections");
                    return;
                }
                Err(_) => return,
            },
        };
        match accepted {
            Ok(mut stream) => {
                if let Err(e) = stream.set_nodelay() {
                    tracing::debug!("TCP_NODELAY on a client connection: {e}");
                }
                let gateway = gateway.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(connection(stream, gateway, shutdown));
            }
            Err(e) => {
                tracing::error!(listen = %addr, "accept failed: {e}");
                if e.raw_os_error() == Some(EMFILE) {
                    // accept() would fail again at once: give the connections time to close.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// `EMFILE`: the process is out of file descriptors.
const EMFILE: i32 = 24;

/// One client connection: HTTP/1 requests one after another, or an h2c connection.
async fn connection<A: Serve>(stream: L4Stream, gateway: Arc<A>, shutdown: ShutdownWatch) {
    let mut conn = Buffered::new(stream);
    let Some(mut first) = first_bytes(&mut conn, DEFAULT_KEEPALIVE_SECS, &shutdown).await else {
        return;
    };
    if gateway.h2c() {
        while first.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&first) {
            match first_bytes(&mut conn, DEFAULT_KEEPALIVE_SECS, &shutdown).await {
                Some(more) => first.extend_from_slice(&more),
                None => return,
            }
        }
        if first.starts_with(H2_PREFACE) {
            // Pingora's HTTP/2 server reads the connection from its first byte.
            conn.io.rewind(&first);
            gateway.process_new(Box::new(conn), &shutdown).await;
            return;
        }
    }
    let mut stream: pingora_core::protocols::Stream = Box::new(conn);
    let mut settings = None;
    loop {
        let session = http1_session(stream, settings, first, &shutdown);
        let Some(reused) = gateway.serve(session, &shutdown).await else {
            return;
        };
        (stream, settings) = reused.consume();
        first = match first_bytes(&mut stream, gateway.keepalive_secs(), &shutdown).await {
            Some(f) => f,
            None => return,
        };
    }
}

/// The first bytes of a request (up to [`FIRST_READ`]), in a buffer of their size; `None`
/// when the client closes, stays idle `idle_secs`, or the server begins shutting down first.
///
/// Pingora's HTTP/1 session would read them into a 4 KB buffer of its own, and a request's
/// header keeps that whole buffer for as long as the answer streams; handed to it as the
/// start of the request, these bytes are parsed where they are.
async fn first_bytes<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    idle_secs: u64,
    shutdown: &ShutdownWatch,
) -> Option<BytesMut> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; FIRST_READ];
    let mut watch = shutdown.clone();
    let n = tokio::select! {
        biased;
        // Pingora's timer, not tokio's: registering a tokio timer wakes the runtime's driver
        // (an eventfd write and an extra epoll round per request).
        read = pingora_timeout::timeout(Duration::from_secs(idle_secs), stream.read(&mut buf)) => {
            match read {
                Ok(Ok(n)) if n > 0 => n,
                _ => return None,
            }
        }
        _ = watch.changed() => return None,
    };
    Some(BytesMut::from(&buf[..n]))
}

/// Lets the next flush of `session`'s connection leave its bytes buffered for the flush after
/// it: a stream whose first chunk is already in hand sends its header and that chunk in one
/// write. (Pingora flushes a chunked response's header on its own; the client would get the
/// header, then wait for a second segment to see the first token.) No effect on a connection
/// that is not ours (h2c).
pub fn hold_next_flush(session: &ServerSession) {
    if let Some(b) = session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<Buffered>())
    {
        b.hold.store(true, Relaxed);
    }
}

/// The HTTP/1 session of a new or reused connection, given the request's first bytes. (Set
/// up here, not in `connection`: a session borrowed there would keep a second copy of its
/// 680 bytes in that future.)
fn http1_session(
    stream: pingora_core::protocols::Stream,
    reused: Option<HttpPersistentSettings>,
    first: BytesMut,
    shutdown: &ShutdownWatch,
) -> ServerSession {
    let mut h1 = pingora_core::protocols::http::v1::server::HttpSession::new(stream);
    h1.set_pipelined_prefix(first);
    let mut session = ServerSession::H1(h1);
    match reused {
        Some(settings) => settings.apply_to_session(&mut session),
        None => session.set_keepalive(if *shutdown.borrow() {
            None
        } else {
            Some(DEFAULT_KEEPALIVE_SECS)
        }),
    }
    session
}

/// A client connection with its write buffer (Pingora's listener gave it one too; its
/// `Stream` can only be given one inside Pingora). The buffer exists only while it holds
/// something: it is taken at the first write and given back once flushed, so a stream
/// waiting for its next chunk holds none (a held one was 1.5 KB of every open stream).
#[derive(Debug)]
struct Buffered {
    io: L4Stream,
    buf: Vec<u8>,
    /// Of `buf`, bytes already written to the socket (a flush interrupted by a full socket).
    written: usize,
    /// The next flush leaves what is buffered for the one after: see [`hold_next_flush`].
    hold: AtomicBool,
}

impl Buffered {
    fn new(io: L4Stream) -> Self {
        Buffered {
            io,
            buf: Vec::new(),
            written: 0,
            hold: AtomicBool::new(false),
        }
    }

    /// Writes out what is buffered.
    fn poll_write_buf(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.buf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Buffered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Buffered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.buf.len() + data.len() > WRITE_BUFFER {
            if let Poll::Ready(Err(e)) = this.poll_write_buf(cx) {
                return Poll::Ready(Err(e));
            }
            if !this.buf.is_empty() {
                return Poll::Pending;
            }
        }
        if data.len() >= WRITE_BUFFER {
            return Pin::new(&mut this.io).poll_write(cx, data);
        }
        if this.buf.capacity() == 0 {
            this.buf.reserve_exact(WRITE_BUFFER);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.hold.swap(false, Relaxed) {
            return Poll::Ready(Ok(()));
        }
        match this.poll_write_buf(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        // Flushed: the buffer goes back until the next write.
        this.buf = Vec::new();
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.poll_write_buf(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        this.buf = Vec::new();
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Buffered {
    async fn shutdown(&mut self) {
        // Flushes what is buffered, then shuts the socket's write side.
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            tracing::debug!("closing a client connection: {e}");
        }
    }
}

impl UniqueID for Buffered {
    fn id(&self) -> UniqueIDType {
        self.io.id()
    }
}

impl Ssl for Buffered {}

#[async_trait]
impl Peek for Buffered {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.io.try_peek(buf).await
    }
}

impl GetTimingDigest for Buffered {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.io.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.io.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.io.get_write_pending_time()
    }
}

impl GetProxyDigest for Buffered {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.io.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.io.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Buffered {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.io.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.io.set_socket_digest(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (Buffered, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(l.local_addr().unwrap());
        let (client, server) = tokio::join!(client, l.accept());
        (
            Buffered::new(L4Stream::from(server.unwrap().0)),
            client.unwrap(),
        )
    }

    #[tokio::test]
    async fn a_request_whose_first_read_is_partial_is_parsed_whole() {
        let (mut conn, mut peer) = pair().await;
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        peer.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHo")
            .await
            .unwrap();
        let first = first_bytes(&mut conn, 5, &shutdown).await.unwrap();
        assert_eq!(&first[..], b"POST /v1/chat/completions HTTP/1.1\r\nHo");
        assert_eq!(first.capacity(), first.len(), "a buffer of the bytes' size");
        peer.write_all(b"st: x\r\ncontent-length: 5\r\n\r\nhello")
            .await
            .unwrap();
        let mut session = http1_session(Box::new(conn), None, first, &shutdown);
        assert!(session.read_request().await.unwrap());
        let req = session.req_header();
        assert_eq!(req.uri.path(), "/v1/chat/completions");
        assert_eq!(req.headers["host"], "x");
        let body = session.read_request_body().await.unwrap().unwrap();
        assert_eq!(&body[..], b"hello");
    }

    #[tokio::test]
    async fn an_idle_connection_ends_when_the_server_shuts_down() {
        let (mut conn, _peer) = pair().await;
        let (tx, shutdown) = tokio::sync::watch::channel(false);
        let waiting = first_bytes(&mut conn, 60, &shutdown);
        tx.send(true).unwrap();
        assert!(waiting.await.is_none());
    }

    #[tokio::test]
    async fn small_writes_wait_in_one_buffer_that_is_given_back_once_flushed() {
        let (mut b, mut peer) = pair().await;
        b.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        b.write_all(b"content-length: 2\r\n\r\n").await.unwrap();
        b.write_all(b"ok").await.unwrap();
        assert_eq!(b.buf, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(b.buf.capacity(), WRITE_BUFFER);
        b.flush().await.unwrap();
        assert_eq!(b.buf.capacity(), 0, "an idle connection holds no buffer");
        let mut got = vec![0u8; 40];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    }

    #[tokio::test]
    async fn a_held_flush_sends_the_header_with_the_first_chunk() {
        let (conn, mut peer) = pair().await;
        let mut io: pingora_core::protocols::Stream = Box::new(conn);
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        let b = io.as_any().downcast_ref::<Buffered>().unwrap();
        b.hold.store(true, Relaxed);
        io.flush().await.unwrap();
        let b = io.as_any().downcast_ref::<Buffered>().unwrap();
        assert_eq!(b.buf, b"HTTP/1.1 200 OK\r\n\r\n", "held, not written");
        io.write_all(b"data: 1\n\n").await.unwrap();
        io.flush().await.unwrap();
        let b = io.as_any().downcast_ref::<Buffered>().unwrap();
        assert!(b.buf.is_empty());
        let mut got = vec![0u8; 28];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\ndata: 1\n\n");
    }

    #[tokio::test]
    async fn a_large_write_goes_out_after_what_was_buffered_in_order() {
        let (mut b, mut peer) = pair().await;
        let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        b.write_all(b"head").await.unwrap();
        b.write_all(&big).await.unwrap();
        b.write_all(b"tail").await.unwrap();
        AsyncWriteExt::shutdown(&mut b).await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 4 + big.len() + 4);
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..4 + big.len()], &big[..]);
        assert_eq!(&got[4 + big.len()..], b"tail");
    }
}
