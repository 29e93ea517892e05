//! The admin listener: the operator's view, apart from the clients' listener and behind its
//! own key. `GET /admin/deployments`: every deployment with its health.

use crate::config::{hash_key, Snapshot};
use crate::error::{Code, ErrorKind, GatewayError};
use crate::gateway::{auth, reply};
use crate::net::session as lifecycle;
use crate::routing::health::Health;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use serde::Serialize;
use std::sync::Arc;

pub mod cli;
mod tenancy;

pub struct Admin {
    pub config: Arc<ArcSwap<Snapshot>>,
    pub health: Arc<Health>,
    pub reloader: Option<Arc<crate::config::reload::Reloader>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub accounting: Arc<crate::usage::ledger::Accounting>,
    pub drain: Arc<crate::net::drain::Drain>,
    pub tracer: Arc<crate::trace::Tracer>,
    pub tenancy: Arc<crate::tenancy::Tenancy>,
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
        let hash = hash_key(key);
        // The operator, or a team admin (a stored key with that role): its own team only.
        let team_admin = if bool::from(hash.ct_eq(&admin.key_hash)) {
            None
        } else {
            let (entry, previous) = self
                .tenancy
                .lookup(&hash)
                .filter(|(e, _)| e.key.role == crate::tenancy::Role::TeamAdmin)
                .ok_or_else(GatewayError::invalid_key)?;
            entry
                .usable(previous, crate::tenancy::store_now_ms())
                .map_err(|_| GatewayError::invalid_key())?;
            let addr = snapshot.server.client_ip(
                session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
                &session.req_header().headers,
            );
            if !entry.allows_address(addr) {
                return Err(GatewayError::new(
                    ErrorKind::PermissionDenied,
                    "This API key may not be used from this address.",
                )
                .code(Code::AddressNotAllowed));
            }
            // A replaced secret, in its grace period, may still read but not change anything.
            if previous && session.req_header().method != http::Method::GET {
                return Err(GatewayError::new(
                    ErrorKind::PermissionDenied,
                    "This secret was replaced by a rotation: it may only read until its grace period ends.",
                ));
            }
            Some(entry)
        };
        let path = session.req_header().uri.path().to_string();
        let query = session.req_header().uri.query().unwrap_or("").to_string();
        let method = session.req_header().method.clone();
        if [
            "/admin/teams",
            "/admin/users",
            "/admin/projects",
            "/admin/keys",
            "/admin/audit",
        ]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        {
            let body = if matches!(method.as_str(), "POST" | "PATCH") {
                crate::gateway::body::read_body(
                    session,
                    1 << 20,
                    std::time::Duration::from_secs(10),
                )
                .await?
            } else {
                Default::default()
            };
            let actor = tenancy::Actor {
                name: team_admin.as_ref().map_or("admin", |e| e.key.id.as_str()),
                address: snapshot
                    .server
                    .client_ip(
                        session
                            .client_addr()
                            .and_then(|a| a.as_inet())
                            .map(|a| a.ip()),
                        &session.req_header().headers,
                    )
                    .map(|a| a.to_string()),
                team: team_admin.as_ref().map(|e| e.key.team.clone()),
            };
            if let Some(answer) =
                tenancy::handle(&self.tenancy, &actor, method.as_str(), &path, &query, &body)
            {
                let (status, v) = answer?;
                let body = serde_json::to_vec(&v).unwrap_or_default();
                reply::write_json(session, status, body.into()).await;
                return Ok(());
            }
        }
        if team_admin.is_some() && !(method == "GET" && path == "/admin/usage") {
            return Err(GatewayError::new(
                ErrorKind::PermissionDenied,
                "A team admin reads its own team's keys, usage and audit trail only.",
            ));
        }
        let only_team = team_admin.as_ref().map(|e| e.key.team.clone());
        match (method.as_str(), path.as_str()) {
            ("GET", "/admin/usage") => {
                let body = self.usage(&query, only_team).await?;
                if query.split('&').any(|p| p == "format=csv") {
                    let mut h = reply::json_header(200, body.len());
                    let _ = h.insert_header(http::header::CONTENT_TYPE, "text/csv; charset=utf-8");
                    let _ = h.insert_header(
                        http::header::CONTENT_DISPOSITION,
                        "attachment; filename=\"junction-usage.csv\"",
                    );
                    if session.write_response_header(Box::new(h)).await.is_ok() {
                        let _ = session.write_response_body(body.into(), true).await;
                    }
                } else {
                    reply::write_json(session, 200, body.into()).await;
                }
                Ok(())
            }
            ("GET", "/admin/deployments") => {
                let body = self.deployments(&snapshot);
                reply::write_json(session, 200, body.into()).await;
                Ok(())
            }
            ("GET", "/metrics") => {
                let body = self.metrics();
                let mut h = reply::json_header(200, body.len());
                let _ = h.insert_header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4");
                if session.write_response_header(Box::new(h)).await.is_ok() {
                    let _ = session.write_response_body(body.into(), true).await;
                }
                Ok(())
            }
            ("GET", "/admin/config") => {
                let body = self.config_view(&snapshot);
                reply::write_json(session, 200, body.into()).await;
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
                        reply::write_json(session, 200, body.into()).await;
                    }
                    Err(e) => {
                        let problems: Vec<String> =
                            e.to_string().lines().map(str::to_string).collect();
                        let mut refused = GatewayError::invalid_request(format!(
                            "The config was refused; the old one keeps serving. {}",
                            problems.join(" ")
                        ))
                        .code(Code::InvalidConfig);
                        let mut extra = serde_json::Map::new();
                        extra.insert("reloaded".into(), false.into());
                        extra.insert("problems".into(), problems.into());
                        refused.extra = Some(Box::new(extra));
                        return Err(refused);
                    }
                }
                Ok(())
            }
            _ => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("Unknown admin path {}.", crate::error::Printable(&path)),
            )
            .code(Code::UnknownUrl)),
        }
    }

    /// `GET /admin/usage?group_by=key|model|provider&from=&to=`: ledger totals per group over
    /// `[from, to)` (Unix milliseconds or RFC 3339; default: all time), once every record
    /// queued before the call is written.
    async fn usage(&self, query: &str, team: Option<String>) -> Result<Vec<u8>, GatewayError> {
        let bad = |m: String, param: &'static str| {
            GatewayError::new(ErrorKind::InvalidRequest, m)
                .param(param)
                .code(Code::InvalidQuery)
        };
        let mut group_by = vec![crate::usage::ledger::GroupBy::Model];
        let mut csv = false;
        let (mut from, mut to) = (0i64, i64::MAX);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "group_by" => {
                    group_by = crate::usage::ledger::GroupBy::parse_list(&v).ok_or_else(|| {
                        bad(
                            format!(
                                "group_by must be one or more (comma-separated) of {}, not `{}`.",
                                crate::usage::ledger::GroupBy::NAMES,
                                crate::error::Printable(&v)
                            ),
                            "group_by",
                        )
                    })?
                }
                "format" => match v.as_str() {
                    "json" => csv = false,
                    "csv" => csv = true,
                    _ => {
                        return Err(bad(
                            format!(
                                "format must be json or csv, not `{}`.",
                                crate::error::Printable(&v)
                            ),
                            "format",
                        ))
                    }
                },
                "from" | "to" => {
                    let ms = parse_time_ms(&v).ok_or_else(|| {
                        bad(
                            format!("{k} must be Unix milliseconds or an RFC 3339 time like 2026-11-22T10:00:00Z, not `{}`.", crate::error::Printable(&v)),
                            if k == "from" { "from" } else { "to" },
                        )
                    })?;
                    if k == "from" {
                        from = ms;
                    } else {
                        to = ms;
                    }
                }
                _ => {}
            }
        }
        if self.accounting.ledger().is_none() {
            return Err(GatewayError::new(
                ErrorKind::NotFound,
                "The ledger is off ([ledger] enabled = false).",
            )
            .code(Code::LedgerOff));
        }
        self.accounting.flush().await;
        let accounting = self.accounting.clone();
        let totals = tokio::task::spawn_blocking(move || match accounting.ledger() {
            Some(ledger) => {
                crate::usage::ledger::totals(ledger, &group_by, from, to, team.as_deref())
            }
            None => Ok(serde_json::Value::Null),
        })
        .await;
        match totals {
            Ok(Ok(v)) if csv => Ok(crate::usage::ledger::csv_of(&v).into_bytes()),
            Ok(Ok(v)) => Ok(serde_json::to_vec(&v).unwrap_or_default()),
            Ok(Err(e)) => Err(GatewayError::new(
                ErrorKind::Internal,
                format!("The ledger could not be read: {e}."),
            )),
            Err(_) => Err(GatewayError::new(
                ErrorKind::Internal,
                "The ledger query failed.",
            )),
        }
    }

    /// Prometheus text: every metric of `crate::metrics`, with the values that live
    /// elsewhere (in-flight requests, the ledger's queue, config reloads, breaker states) read
    /// now.
    fn metrics(&self) -> Vec<u8> {
        use crate::routing::health::BreakerState;
        use std::sync::atomic::Ordering::Relaxed;
        let a = &self.accounting;
        let t = &self.tracer;
        let health = self.health.all();
        let states = [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ]
        .map(BreakerState::as_str);
        self.metrics.scrape(&crate::metrics::Sampled {
            in_flight: self.drain.in_flight() as u64,
            ledger_queue_depth: a.depth(),
            ledger_written: a.written.load(Relaxed),
            ledger_dropped: a.dropped.load(Relaxed),
            ledger_write_errors: a.write_errors.load(Relaxed),
            ledger_unestimated: a.unestimated.load(Relaxed),
            spans_exported: t.exported.load(Relaxed),
            spans_dropped: t.dropped.load(Relaxed),
            reloads: self.reloader.as_ref().map(|r| {
                (
                    r.applied.load(Relaxed),
                    r.refused.load(Relaxed),
                    r.last().is_none_or(|l| l.ok),
                )
            }),
            breakers: health
                .iter()
                .map(|(id, h)| (&**id, h.state().as_str()))
                .collect(),
            breaker_states: &states,
        })
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
        if !lifecycle::read_request(&mut session, shutdown, lifecycle::HEADER_TIMEOUT).await {
            return None;
        }
        session.set_keepalive(Some(60));
        if let Err(e) = self.handle(&mut session).await {
            reply::write_error(&mut session, &e, crate::front::Front::Chat).await;
        }
        lifecycle::finish(session, false).await
    }
}

/// `%XX` and `+` decoded (query values); a malformed escape is kept as it is.
fn percent_decode(v: &str) -> String {
    let v = v.replace('+', " ");
    percent_encoding::percent_decode_str(&v)
        .decode_utf8_lossy()
        .into_owned()
}

/// Unix milliseconds, or RFC 3339 (`2026-11-22`, `2026-11-22T10:00:00Z`, with fraction or
/// `+hh:mm` offset).
fn parse_time_ms(v: &str) -> Option<i64> {
    if let Ok(ms) = v.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(at.timestamp_millis());
    }
    let day = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_unix_ms_or_rfc3339() {
        assert_eq!(parse_time_ms("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time_ms("1970-01-01"), Some(0));
        assert_eq!(
            parse_time_ms("2026-11-22T00:00:00Z"),
            Some(1_795_305_600_000)
        );
        assert_eq!(
            parse_time_ms("2026-11-22T01:00:00+01:00"),
            Some(1_795_305_600_000)
        );
        assert_eq!(
            parse_time_ms("2026-11-22T00:00:00.25Z"),
            Some(1_795_305_600_250)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-22T25:00:00Z",
            "2026-11-22T10:00",
            "2026-01-01T00:00:00.aa\u{e9}Z",
            "99999999999999-01-01",
            "2026-01-01T00:00:00+99999999999:00",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
        assert_eq!(
            percent_decode("2026-11-22T01%3A00%3A00%2B01%3A00"),
            "2026-11-22T01:00:00+01:00"
        );
        assert_eq!(percent_decode("a+b%zz%4"), "a b%zz%4");
    }
}
