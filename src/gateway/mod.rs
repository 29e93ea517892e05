//! The request path: a Pingora `HttpServerApp` that owns each client session. Steps, in the
//! order a request meets them: [`auth`], [`body`], parse and route ([`chat`]), [`forward`].

pub mod attempt;
pub mod auth;
pub mod body;
pub mod chat;
pub mod forward;
pub mod gemini;
pub mod messages;
pub mod models;
pub mod respond;
pub mod translate;

use crate::config::Snapshot;
use crate::error::{ErrorKind, GatewayError};
use crate::front::Front;
use crate::net::session as lifecycle;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora_core::connectors::http::Connector;
use pingora_core::connectors::ConnectorOptions;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;

/// Longest time spent draining an unread request body before reusing a connection.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// What a request asks for, by method and path.
enum Endpoint {
    Chat,
    Messages,
    CountTokens,
    Responses,
    Gemini,
    GeminiCountTokens,
    Models,
    Health,
    Ready,
    WrongMethod,
    Unknown,
}

/// The gateway application: the current config snapshot and the upstream connection pools.
pub struct Gateway {
    pub config: Arc<ArcSwap<Snapshot>>,
    pub connector: Connector,
    /// Deployment health: outside the snapshot, so that reloads keep it.
    pub health: Arc<crate::routing::health::Health>,
    /// Requests in flight, for a graceful shutdown.
    pub drain: Arc<crate::net::drain::Drain>,
    /// Where each request's record goes (ledger, access log, token metrics).
    pub accounting: Arc<crate::usage::ledger::Accounting>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub tracer: Arc<crate::trace::Tracer>,
    options: HttpServerOptions,
}

impl Gateway {
    pub fn new(
        config: Arc<ArcSwap<Snapshot>>,
        health: Arc<crate::routing::health::Health>,
        drain: Arc<crate::net::drain::Drain>,
        accounting: Arc<crate::usage::ledger::Accounting>,
        metrics: Arc<crate::metrics::Metrics>,
        tracer: Arc<crate::trace::Tracer>,
    ) -> Self {
        let snapshot = config.load();
        let mut connector_options = ConnectorOptions::new(snapshot.server.upstream_pool_size);
        connector_options.keepalive_pool_size = snapshot.server.upstream_pool_size;
        let mut options = HttpServerOptions::default();
        options.h2c = snapshot.server.h2c;
        Gateway {
            health,
            drain,
            accounting,
            metrics,
            tracer,
            connector: Connector::new(Some(connector_options)),
            config: config.clone(),
            options,
        }
    }

    /// Routes one request to its handler and writes the answer; true if the connection must
    /// be closed afterwards.
    async fn request_filter(
        &self,
        session: &mut ServerSession,
        snapshot: &Snapshot,
        shutting_down: bool,
    ) -> bool {
        // hot path: the endpoint is found on the borrowed request line; nothing is copied
        // unless an error message needs it.
        let endpoint = {
            let req = session.req_header();
            match (req.method.as_str(), req.uri.path()) {
                ("POST", "/v1/chat/completions" | "/chat/completions") => Endpoint::Chat,
                ("POST", "/v1/messages") => Endpoint::Messages,
                ("POST", "/v1/responses" | "/responses") => Endpoint::Responses,
                ("POST", path) if gemini::route(path).is_some() => {
                    match gemini::route(path).map(|(_, m)| m) {
                        Some(gemini::Method::CountTokens) => Endpoint::GeminiCountTokens,
                        _ => Endpoint::Gemini,
                    }
                }
                ("POST", "/v1/messages/count_tokens") => Endpoint::CountTokens,
                ("GET", "/v1/models" | "/models") => Endpoint::Models,
                ("GET" | "HEAD", "/health") => Endpoint::Health,
                ("GET" | "HEAD", "/ready") => Endpoint::Ready,
                (
                    _,
                    "/v1/chat/completions"
                    | "/chat/completions"
                    | "/v1/messages"
                    | "/v1/messages/count_tokens"
                    | "/v1/responses"
                    | "/responses"
                    | "/v1/models"
                    | "/models"
                    | "/health"
                    | "/ready",
                ) => Endpoint::WrongMethod,
                _ => Endpoint::Unknown,
            }
        };
        let front = match endpoint {
            Endpoint::Messages | Endpoint::CountTokens => Front::Messages,
            Endpoint::Responses => Front::Responses,
            Endpoint::Gemini | Endpoint::GeminiCountTokens => Front::Gemini,
            _ => Front::Chat,
        };
        let result = match endpoint {
            Endpoint::Chat | Endpoint::Messages | Endpoint::Responses | Endpoint::Gemini => {
                chat::chat_completions(self, session, snapshot, front)
                    .await
                    .map(|o| o.close)
            }
            Endpoint::CountTokens => messages::count_tokens(self, session, snapshot)
                .await
                .map(|()| false),
            Endpoint::GeminiCountTokens => gemini::count_tokens(self, session, snapshot)
                .await
                .map(|()| false),
            Endpoint::Models => models::list_models(session, snapshot).await.map(|()| false),
            Endpoint::Health => {
                respond::write_json(session, 200, Bytes::from_static(b"{\"status\":\"ok\"}")).await;
                Ok(false)
            }
            Endpoint::Ready if shutting_down => Err(GatewayError::new(
                ErrorKind::Unavailable,
                "The gateway is shutting down.",
            )
            .code("shutting_down")),
            Endpoint::Ready => {
                respond::write_json(session, 200, Bytes::from_static(b"{\"status\":\"ready\"}"))
                    .await;
                Ok(false)
            }
            Endpoint::WrongMethod => {
                let req = session.req_header();
                Err(GatewayError::new(
                    ErrorKind::MethodNotAllowed,
                    format!(
                        "Method {} is not allowed on {}.",
                        req.method,
                        req.uri.path()
                    ),
                )
                .code("method_not_allowed"))
            }
            Endpoint::Unknown => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!(
                    "Unknown path {}.",
                    crate::error::Printable(session.req_header().uri.path())
                ),
            )
            .code("unknown_url")),
        };
        match result {
            Ok(close) => close,
            Err(e) => {
                respond::write_error(session, &e, front).await;
                if e.kind == ErrorKind::PayloadTooLarge {
                    body::discard_rest(session).await;
                    return true;
                }
                false
            }
        }
    }
}

impl crate::net::listener::Serve for Gateway {
    fn h2c(&self) -> bool {
        self.options.h2c
    }

    fn keepalive_secs(&self) -> u64 {
        self.config.load().server.keepalive_secs
    }

    async fn serve(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !lifecycle::read_request(&mut session, shutdown).await {
            return None;
        }
        let _in_flight = self.drain.begin();
        let snapshot = self.config.load_full();
        let shutting_down = *shutdown.borrow() || self.drain.draining();
        session.set_keepalive(if shutting_down {
            None
        } else {
            Some(snapshot.server.keepalive_secs)
        });
        session.set_abort_on_close(true);
        session.set_total_drain_timeout(Some(DRAIN_TIME));
        let close = self
            .request_filter(&mut session, &snapshot, shutting_down)
            .await;
        // Boxed: finishing (draining the request body, handing the connection back) is a
        // 5 KB future that would otherwise size this one while the answer streams.
        Box::pin(lifecycle::finish(session, close)).await
    }
}

/// HTTP/2 client connections (h2c) reach the gateway through Pingora's HTTP/2 server; HTTP/1
/// ones through `net::listener`, which calls [`Serve::serve`](crate::net::listener::Serve) directly.
#[async_trait]
impl HttpServerApp for Gateway {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        crate::net::listener::Serve::serve(self, session, shutdown).await
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}
