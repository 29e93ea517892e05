//! Wiring: Pingora `Server` and listening services for the gateway, its admin listener and background services.
//! No request logic lives here.

pub mod triggers;

use crate::admin;
use crate::net::{drain, listener};

use crate::config::Snapshot;
use crate::gateway::Gateway;
use arc_swap::ArcSwap;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use std::sync::Arc;

/// Seconds given to what is left when the runtimes stop.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// How a server process starts and stops.
pub struct Lifecycle {
    /// Worker threads per service (0: one per core).
    pub threads: usize,
    /// After a binary upgrade handed the listeners over, how long the old process keeps
    /// serving the requests it has (Pingora's grace period; a terminate drains on its own,
    /// see `drain.rs`).
    pub upgrade_grace: std::time::Duration,
    /// The Unix socket the listeners are handed over on.
    pub upgrade_sock: String,
    /// This process takes the listeners over from a running one.
    pub upgrade: bool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            threads: 0,
            upgrade_grace: std::time::Duration::from_secs(0),
            upgrade_sock: "/tmp/junction_upgrade.sock".into(),
            upgrade: false,
        }
    }
}

/// A Pingora server set up by `life`.
pub fn new_server(life: &Lifecycle) -> Server {
    let conf = ServerConf {
        threads: if life.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            life.threads
        },
        grace_period_seconds: Some(life.upgrade_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECS),
        upgrade_sock: life.upgrade_sock.clone(),
        ..ServerConf::default()
    };
    let opt = pingora_core::server::configuration::Opt {
        upgrade: life.upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    server
}

/// The gateway's services: the client listener, the admin listener (when configured), the
/// active health checks and the span exporter; they share the deployments' health, the
/// metrics and the accounting thread (which the caller closes after the server stops, so
/// that every queued record is written).
pub struct GatewayServices {
    pub gateway: listener::ClientListener<Gateway>,
    pub accounting: Arc<crate::usage::ledger::Accounting>,
    /// The Responses API's stored responses (closed, like the accounting, after the server stops).
    pub responses: Arc<crate::store::responses::Responses>,
    /// Reloads on file change and SIGHUP (when the config came from a file).
    pub reload:
        Option<pingora_core::services::background::GenBackgroundService<triggers::ReloadTriggers>>,
    pub admin: Option<Service<admin::Admin>>,
    pub checks: pingora_core::services::background::GenBackgroundService<
        crate::routing::checks::HealthChecks,
    >,
    pub exporter:
        Option<pingora_core::services::background::GenBackgroundService<crate::trace::Exporter>>,
}

pub fn gateway_services(
    config: Arc<ArcSwap<Snapshot>>,
    path: Option<std::path::PathBuf>,
    drain: Arc<drain::Drain>,
) -> Result<GatewayServices, String> {
    let snapshot = config.load_full();
    let health: Arc<crate::routing::health::Health> = Arc::default();
    let metrics: Arc<crate::metrics::Metrics> = Arc::default();
    let reloader = path.map(|p| Arc::new(crate::config::reload::Reloader::new(p, config.clone())));
    let accounting = crate::usage::ledger::Accounting::start(crate::usage::ledger::Outputs {
        ledger: snapshot.ledger.path.clone(),
        postgres: snapshot.ledger.postgres.clone(),
        store_content: snapshot.ledger.store_content,
        access_log: crate::access_log::Sink::from_setting(snapshot.log.access.as_deref()),
        queue: snapshot.ledger.queue,
        metrics: metrics.clone(),
    })?;
    let tracer = Arc::new(crate::trace::Tracer::new(snapshot.tracing.otlp.is_some()));
    let responses = crate::store::responses::Responses::open(snapshot.responses.clone())?;
    let tenancy = crate::tenancy::Tenancy::open(&snapshot.store)?;
    tenancy.refresh_every(snapshot.store_refresh);
    if let crate::tenancy::Location::Postgres(url) = &snapshot.store {
        tenancy.listen(url.clone());
    }
    let governor = governor(&snapshot.limits, &accounting, &metrics)?;
    let service = listener::ClientListener::new(
        "junction gateway",
        &snapshot.server.listen.to_string(),
        Gateway::new(
            config.clone(),
            health.clone(),
            drain.clone(),
            accounting.clone(),
            metrics.clone(),
            tracer.clone(),
            responses.clone(),
            tenancy.clone(),
            governor,
        ),
    );
    let admin = snapshot.admin.as_ref().map(|a| {
        let mut s = Service::new(
            "junction admin".to_string(),
            admin::Admin {
                config: config.clone(),
                health: health.clone(),
                reloader: reloader.clone(),
                metrics,
                accounting: accounting.clone(),
                drain,
                tracer: tracer.clone(),
                tenancy,
            },
        );
        s.add_tcp(&a.listen.to_string());
        s
    });
    let checks = pingora_core::services::background::background_service(
        "health checks",
        crate::routing::checks::HealthChecks {
            config,
            health,
            connector: pingora_core::connectors::http::Connector::new(None),
        },
    );
    let reload = reloader.map(|reloader| {
        pingora_core::services::background::background_service(
            "config reload",
            triggers::ReloadTriggers { reloader },
        )
    });
    let exporter = snapshot.tracing.otlp_endpoint.as_ref().and_then(|e| {
        let endpoint = crate::upstream::Upstream::parse(e, None).ok()?;
        Some(pingora_core::services::background::background_service(
            "span export",
            crate::trace::Exporter {
                tracer,
                endpoint,
                service_name: snapshot.tracing.service_name.clone(),
                connector: pingora_core::connectors::http::Connector::new(None),
            },
        ))
    });
    Ok(GatewayServices {
        gateway: service,
        accounting,
        responses,
        reload,
        admin,
        checks,
        exporter,
    })
}

/// Limits and budgets: counted in this process, or in Redis when `[redis] url` is set;
/// new budget counters start from the ledger.
fn governor(
    l: &crate::config::LimitsSettings,
    accounting: &crate::usage::ledger::Accounting,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<Arc<crate::limits::Governor>, String> {
    use crate::limits::Governor;
    let mut g = match &l.redis {
        Some(url) => Governor::shared(url.expose(), l.governor.clone())?,
        None => Governor::memory(l.governor.clone()),
    };
    if let Some(spent) = accounting.spent_source() {
        g = g.with_spent(spent);
    }
    Ok(Arc::new(g.with_metrics(metrics.clone())))
}
