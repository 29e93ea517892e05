//! `junction-floor`: the least a Pingora proxy can do, to measure Junction against. One
//! upstream; every request is passed through as it is: header and body forwarded over a
//! pooled keep-alive connection, the response header and body chunks relayed as they arrive.
//! No auth, no parsing, no routing, no accounting: what is left is Pingora's own cost, the
//! floor under any gateway built on it. Binds 127.0.0.1 only.
//!
//! ```text
//! junction-floor --listen 127.0.0.1:18082 --upstream 127.0.0.1:18081 --threads 1
//! ```

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use clap::Parser;
use junction::net::session as lifecycle;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora_core::connectors::http::Connector;
use pingora_core::connectors::ConnectorOptions;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::listening::Service;
use pingora_core::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "A bare Pingora pass-through proxy: the floor Junction is measured against")]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Floor {
    connector: Connector,
    peer: HttpPeer,
    options: HttpServerOptions,
}

impl Floor {
    /// Forwards one request; false when the connection must close.
    async fn pass(&self, session: &mut ServerSession) -> Option<()> {
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_request_body().await.ok()? {
            body.extend_from_slice(&chunk);
        }
        let (mut up, _) = self.connector.get_http_session(&self.peer).await.ok()?;
        let header = session.req_header().clone();
        up.write_request_header(Box::new(header)).await.ok()?;
        up.write_request_body(body.freeze(), true).await.ok()?;
        up.finish_request_body().await.ok()?;
        up.read_response_header().await.ok()?;
        let response = up.response_header()?.clone();
        session
            .write_response_header(Box::new(response))
            .await
            .ok()?;
        while let Some(chunk) = up.read_response_body().await.ok()? {
            session.write_response_body(chunk, false).await.ok()?;
        }
        session.write_response_body(Bytes::new(), true).await.ok()?;
        self.connector
            .release_http_session(up, &self.peer, Some(Duration::from_secs(60)))
            .await;
        Some(())
    }
}

#[async_trait]
impl HttpServerApp for Floor {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !lifecycle::read_request(&mut session, shutdown, lifecycle::HEADER_TIMEOUT).await {
            return None;
        }
        session.set_keepalive(Some(60));
        let ok = self.pass(&mut session).await.is_some();
        lifecycle::finish(session, !ok).await
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

fn main() {
    let args = Args::parse();
    assert!(
        args.listen.ip().is_loopback() && args.upstream.ip().is_loopback(),
        "the floor proxy binds and connects to 127.0.0.1 only"
    );
    let conf = ServerConf {
        threads: args.threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut options = ConnectorOptions::new(1024);
    options.keepalive_pool_size = 1024;
    let floor = Floor {
        connector: Connector::new(Some(options)),
        peer: HttpPeer::new(args.upstream, false, String::new()),
        options: HttpServerOptions::default(),
    };
    let mut service = Service::new("junction floor".to_string(), floor);
    service.add_tcp(&args.listen.to_string());
    server.add_service(service);
    server.run_forever();
}
