//! The admin listener: the operator's view, apart from the clients' listener and behind its
//! own key. `GET /admin/deployments`: every deployment with its health.

use super::session as lifecycle;
use crate::config::{hash_key, Snapshot};
use crate::error::{ErrorKind, GatewayError};
use crate::gateway::{auth, respond};
use crate::routing::health::Health;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use serde::Serialize;
use std::sync::Arc;

pub struct Admin {
    pub config: Arc<ArcSwap<Snapshot>>,
    pub health: Arc<Health>,
    pub reloader: Option<Arc<crate::config::reload::Reloader>>,
}

#[derive(Serialize)]
struct DeploymentView<'a> {
    id: &'a str,
    provider: &'a str,
    kind: &'static str,
    model: &'a str,
    /// Public models (and aliases) that route here.
    models: Vec<&'a str>,
    breaker: &'static str,
    in_flight: u32,
    ewma_ttft_ms: Option<f64>,
    rate_limited_for_ms: Option<u128>,
}

impl Admin {
    async fn handle(&self, session: &mut ServerSession) -> Result<(), GatewayError> {
        let snapshot = self.config.load_full();
        let Some(admin) = &snapshot.admin else {
            return Err(GatewayError::new(
                ErrorKind::NotFound,
                "The admin API is not configured.",
            ));
        };
        let key =
            auth::presented_key(session.req_header()).ok_or_else(GatewayError::missing_key)?;
        use subtle::ConstantTimeEq;
        if !bool::from(hash_key(key).ct_eq(&admin.key_hash)) {
            return Err(GatewayError::invalid_key());
        }
        let path = session.req_header().uri.path().to_string();
        let method = session.req_header().method.clone();
        match (method.as_str(), path.as_str()) {
            ("GET", "/admin/deployments") => {
                let body = self.deployments(&snapshot);
                respond::write_json(session, 200, body.into()).await;
                Ok(())
            }
            ("GET", "/metrics") => {
                let body = self.metrics();
                let mut h = respond::json_header(200, body.len());
                let _ = h.insert_header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4");
                if session.write_response_header(Box::new(h)).await.is_ok() {
                    let _ = session.write_response_body(body.into(), true).await;
                }
                Ok(())
            }
            ("GET", "/admin/config") => {
                let body = self.config_view(&snapshot);
                respond::write_json(session, 200, body.into()).await;
                Ok(())
            }
            ("POST", "/admin/reload") => {
                let Some(reloader) = &self.reloader else {
                    return Err(GatewayError::new(
                        ErrorKind::NotFound,
                        "This gateway has no config file to reload.",
                    ));
                };
                match reloader.reload("admin").await {
                    Ok(report) => {
                        let body = serde_json::to_vec(
                            &serde_json::json!({"reloaded": true, "changes": report}),
                        )
                        .unwrap_or_default();
                        respond::write_json(session, 200, body.into()).await;
                    }
                    Err(e) => {
                        let problems: Vec<String> =
                            e.to_string().lines().map(str::to_string).collect();
                        let body = serde_json::to_vec(&serde_json::json!({
                            "reloaded": false,
                            "error": {
                                "message": format!("The config was refused; the old one keeps serving. {}", problems.join(" ")),
                                "type": "invalid_request_error",
                                "param": null,
                                "code": "invalid_config",
                            },
                            "problems": problems,
                        }))
                        .unwrap_or_default();
                        respond::write_json(session, 400, body.into()).await;
                    }
                }
                Ok(())
            }
            _ => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("Unknown admin path {}.", crate::error::Printable(&path)),
            )
            .code("unknown_url")),
        }
    }

    /// Prometheus text: config reloads and deployment breaker states.
    fn metrics(&self) -> Vec<u8> {
        use std::fmt::Write;
        use std::sync::atomic::Ordering;
        let mut out = String::new();
        if let Some(r) = &self.reloader {
            let _ = writeln!(
                out,
                "# HELP junction_config_reloads_total Config reloads by result."
            );
            let _ = writeln!(out, "# TYPE junction_config_reloads_total counter");
            let _ = writeln!(
                out,
                "junction_config_reloads_total{{result=\"applied\"}} {}",
                r.applied.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "junction_config_reloads_total{{result=\"refused\"}} {}",
                r.refused.load(Ordering::Relaxed)
            );
            let last_ok = r.last().is_none_or(|l| l.ok);
            let _ = writeln!(out, "# HELP junction_config_last_reload_ok 1 when the last reload was applied (or none was tried).");
            let _ = writeln!(out, "# TYPE junction_config_last_reload_ok gauge");
            let _ = writeln!(out, "junction_config_last_reload_ok {}", u8::from(last_ok));
        }
        let _ = writeln!(out, "# HELP junction_deployment_breaker_open 1 when a deployment's breaker is open or half-open.");
        let _ = writeln!(out, "# TYPE junction_deployment_breaker_open gauge");
        for (id, h) in self.health.all() {
            let open = h.state() != crate::routing::health::BreakerState::Closed;
            let _ = writeln!(
                out,
                "junction_deployment_breaker_open{{deployment=\"{}\"}} {}",
                id.replace('\\', "\\\\").replace('"', "\\\""),
                u8::from(open)
            );
        }
        out.into_bytes()
    }

    /// The running config, secrets left out (keys appear by name, provider keys as `*****`).
    fn config_view(&self, s: &Snapshot) -> Vec<u8> {
        let mut providers: Vec<_> = s.providers.values().collect();
        providers.sort_by(|a, b| a.name.cmp(&b.name));
        let providers: Vec<serde_json::Value> = providers
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": &*p.name,
                    "kind": p.kind.as_str(),
                    "base_url": p.upstream.to_string(),
                    "api_key": p.api_key.as_ref().map(|_| "*****"),
                    "headers": p.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let models: Vec<serde_json::Value> = s
            .model_names
            .iter()
            .map(|name| {
                let r = &s.models[name];
                serde_json::json!({
                    "name": &**name,
                    "alias_of": (r.name != *name).then(|| &*r.name),
                    "strategy": format!("{:?}", r.strategy).to_lowercase(),
                    "deployments": r.deployments.iter().map(|d| serde_json::json!({
                        "id": &*d.id, "weight": d.weight, "priority": d.priority,
                    })).collect::<Vec<_>>(),
                    "fallbacks": r.fallbacks.iter().map(|f| &**f).collect::<Vec<_>>(),
                })
            })
            .collect();
        let keys: Vec<serde_json::Value> = s
            .keys
            .iter()
            .map(|k| serde_json::json!({"name": &*k.name, "models": k.models}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "file": self.reloader.as_ref().map(|r| r.path.display().to_string()),
            "last_reload": self.reloader.as_ref().and_then(|r| r.last()),
            "listen": s.server.listen.to_string(),
            "providers": providers,
            "models": models,
            "keys": keys,
        }))
        .unwrap_or_default()
    }

    fn deployments(&self, snapshot: &Snapshot) -> Vec<u8> {
        let mut views: Vec<DeploymentView<'_>> = Vec::new();
        for name in &snapshot.model_names {
            let route = &snapshot.models[name];
            for d in &route.deployments {
                if let Some(v) = views.iter_mut().find(|v| v.id == &*d.id) {
                    if !v.models.contains(&&**name) {
                        v.models.push(name);
                    }
                    continue;
                }
                let h = self.health.get(&d.id);
                views.push(DeploymentView {
                    id: &d.id,
                    provider: &d.provider.name,
                    kind: d.provider.kind.as_str(),
                    model: &d.upstream_model,
                    models: vec![name],
                    breaker: h.state().as_str(),
                    in_flight: h.in_flight(),
                    ewma_ttft_ms: h.ewma_ttft().map(|t| t.as_secs_f64() * 1000.0),
                    rate_limited_for_ms: h.cooldown_left().map(|d| d.as_millis()),
                });
            }
        }
        views.sort_by(|a, b| a.id.cmp(b.id));
        serde_json::to_vec(&serde_json::json!({ "deployments": views })).unwrap_or_default()
    }
}

#[async_trait]
impl HttpServerApp for Admin {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !lifecycle::read_request(&mut session, shutdown).await {
            return None;
        }
        session.set_keepalive(Some(60));
        if let Err(e) = self.handle(&mut session).await {
            respond::write_error(&mut session, &e).await;
        }
        lifecycle::finish(session, false).await
    }
}
