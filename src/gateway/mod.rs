//! The request path: a Pingora `HttpServerApp` that owns each client session. A request
//! meets, in order: [`dispatch`] (which endpoint; the caller found once, by [`auth`]), then
//! for a model request at any door ([`Gateway::complete`]): [`body`], parse (the door's,
//! `Front::parse`), [`route`], [`failover`] over the candidates, each one an [`attempt`]
//! whose answer is [`relay`]ed back through [`translate`] (where a door meets a provider),
//! and last [`account`]. [`reply`] writes what the gateway says itself; [`count_tokens`] and
//! [`models`] are the other endpoints.

pub mod account;
pub mod attempt;
pub mod auth;
pub mod body;
pub mod count_tokens;
pub mod dispatch;
pub mod failover;
pub mod limit;
pub mod models;
pub mod relay;
pub mod reply;
pub mod route;
pub mod state;
pub mod tokens;
pub mod translate;

use crate::config::Snapshot;
use crate::error::GatewayError;
use crate::front::Front;
use crate::net::session as lifecycle;
use crate::providers;
use crate::trace;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use auth::Caller;
use bytes::Bytes;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora_core::connectors::http::Connector;
use pingora_core::connectors::ConnectorOptions;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use relay::Outcome;
use std::sync::Arc;
use std::time::Duration;

/// Longest time spent draining an unread request body before reusing a connection.
const DRAIN_TIME: Duration = Duration::from_secs(2);

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
    /// The Responses API's stored responses.
    pub responses: Arc<crate::store::responses::Responses>,
    /// Teams and stored keys, held in memory.
    pub tenancy: Arc<crate::tenancy::Tenancy>,
    /// Limits and budgets: admission before the attempts, settlement by the accounting.
    pub governor: Arc<crate::limits::Governor>,
    options: HttpServerOptions,
}

impl Gateway {
    /// Every part the request path shares with the rest of the server.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<ArcSwap<Snapshot>>,
        health: Arc<crate::routing::health::Health>,
        drain: Arc<crate::net::drain::Drain>,
        accounting: Arc<crate::usage::ledger::Accounting>,
        metrics: Arc<crate::metrics::Metrics>,
        tracer: Arc<crate::trace::Tracer>,
        responses: Arc<crate::store::responses::Responses>,
        tenancy: Arc<crate::tenancy::Tenancy>,
        governor: Arc<crate::limits::Governor>,
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
            responses,
            tenancy,
            governor,
            connector: Connector::new(Some(connector_options)),
            config: config.clone(),
            options,
        }
    }

    /// A model request at any door (chat completions, Messages, Responses, Gemini), step by
    /// step; accounted for exactly once, however it ends.
    async fn complete(
        &self,
        session: &mut ServerSession,
        snapshot: &Snapshot,
        front: Front,
        caller: Result<Caller<'_>, GatewayError>,
    ) -> Result<Outcome, GatewayError> {
        let trace = trace::Context::from_request(session.req_header());
        let mut ctx = attempt::Context {
            front,
            keepalive: snapshot.server.stream_keepalive,
            responses: None,
            keep: None,
            traceparent: trace.traceparent(),
            retry_statuses: &snapshot.routing.retry_statuses,
            rate: Default::default(),
        };
        let mut accounted = account::Accounted::start(self, trace);
        let result = self
            .steps(session, snapshot, caller, &mut ctx, &mut accounted.seen)
            .await;
        accounted.finish(Some(&result));
        result
    }

    async fn steps(
        &self,
        session: &mut ServerSession,
        snapshot: &Snapshot,
        caller: Result<Caller<'_>, GatewayError>,
        ctx: &mut attempt::Context<'_>,
        seen: &mut account::Seen,
    ) -> Result<Outcome, GatewayError> {
        // 1. auth (resolved by the dispatch)
        let caller = caller?;
        seen.key = Some(caller.name.clone());
        seen.tenant = caller.entry().cloned();
        // 2. body
        let reading = std::time::Instant::now();
        let body = body::read_body(
            session,
            snapshot.server.max_body_bytes,
            snapshot.server.body_timeout,
        )
        .await;
        seen.body_read = reading.elapsed();
        let body = body?;
        // 2b. state: at the Responses door, the earlier responses the request refers to
        let mut previous = None;
        let body = if ctx.front == Front::Responses {
            let prepared = state::prepare(&self.responses, caller.name, body)?;
            ctx.keep = prepared.keep;
            previous = prepared.previous;
            prepared.body
        } else {
            body
        };
        // 3. parse, by the door
        let parsed = ctx.front.parse(&body, session.req_header())?;
        let info = parsed.info;
        seen.stream = info.stream;
        ctx.responses = parsed.responses.map(|mut c| {
            c.store = ctx.keep.is_some();
            c.previous = previous;
            c
        });
        // 4. route
        let route = route::resolve(snapshot, &info.model).inspect_err(|_| {
            seen.model = Some(info.model.as_str().into());
        })?;
        seen.model = Some(route.name.clone());
        seen.label = Some(route::label(snapshot, &route));
        route::check(caller, &info.model, &route)?;
        // 4b. limits: every level the caller belongs to, charged at once, or a 429
        if let Some(levels) = caller.levels() {
            let ask = if levels.counts_tokens() {
                limit::ask(
                    snapshot,
                    &route,
                    parsed
                        .chat
                        .as_ref()
                        .and_then(|c| c.as_ref().ok())
                        .map_or(&body[..], |c| &c[..]),
                )
            } else {
                Default::default()
            };
            let (hold, rate) = limit::admit(&self.governor, levels.clone(), ask).await?;
            seen.hold = Some(hold);
            ctx.rate = rate;
        }
        // 5. attempt, then relay (6), over the candidates in turn
        // The chat form goes to the upstreams that do not speak the door's protocol (and to
        // an estimate); the client's own bytes to those that do.
        let (chat, native, untranslatable) = match parsed.chat {
            None => (body.clone(), None, None),
            Some(Ok(chat)) => (Bytes::from(chat), Some(body.clone()), None),
            Some(Err(e)) => (body.clone(), Some(body.clone()), Some(e)),
        };
        let chat = seen.body.insert(chat);
        // The client's own key may be in the query (`?key=`, Gemini's way): never passed on.
        let query = session.req_header().uri.query().and_then(|q| {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|p| !p.is_empty() && !p.starts_with("key="))
                .collect();
            (!kept.is_empty()).then(|| kept.join("&"))
        });
        let inbound = providers::Inbound {
            info: &info,
            chat: match &untranslatable {
                Some(e) => Err(e),
                None => Ok(chat),
            },
            native: native.as_deref().map(|body| providers::Native {
                body,
                query: query.as_deref(),
                headers: &parsed.native_headers,
            }),
        };
        failover::run(
            self,
            session,
            snapshot,
            &route,
            &inbound,
            ctx,
            &mut seen.tally,
        )
        .await
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
        let header_timeout = self.config.load().server.header_timeout;
        if !lifecycle::read_request(&mut session, shutdown, header_timeout).await {
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
        let close = dispatch::dispatch(self, &mut session, &snapshot, shutting_down).await;
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
