//! Active health checks: a background service that asks each provider that wants it for an
//! unbilled page (its model list) and counts a failed check against its deployments.

use super::health::Health;
use crate::config::{Provider, Snapshot};
use crate::providers;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::connectors::http::Connector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_http::RequestHeader;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the service looks for checks that are due.
const TICK: Duration = Duration::from_millis(100);
/// Longest a check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HealthChecks {
    pub config: Arc<ArcSwap<Snapshot>>,
    pub health: Arc<Health>,
    pub connector: Connector,
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last: HashMap<Arc<str>, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let snapshot = self.config.load_full();
            for provider in snapshot.providers.values() {
                let Some((every, path)) = &provider.health_check else {
                    continue;
                };
                if last
                    .get(&provider.name)
                    .is_some_and(|t| t.elapsed() < *every)
                {
                    continue;
                }
                last.insert(provider.name.clone(), Instant::now());
                let ok = tokio::time::timeout(CHECK_TIMEOUT, self.check(provider, path))
                    .await
                    .unwrap_or(false);
                if ok {
                    continue;
                }
                tracing::warn!(provider = %provider.name, "health check failed");
                for route in snapshot.models.values() {
                    for d in route
                        .deployments
                        .iter()
                        .filter(|d| d.provider.name == provider.name)
                    {
                        self.health.check_failed(&d.id, &snapshot.breaker);
                    }
                }
            }
        }
    }
}

impl HealthChecks {
    /// True when the provider answered the check with a 2xx.
    async fn check(&self, provider: &Provider, path: &str) -> bool {
        let Ok(peer) = provider.upstream.peer().await else {
            return false;
        };
        let full = format!("{}{}", provider.upstream.base_path, path);
        let Ok(mut req) = RequestHeader::build("GET", full.as_bytes(), Some(4)) else {
            return false;
        };
        if req
            .insert_header(http::header::HOST, &provider.upstream.authority)
            .is_err()
            || providers::authenticate(provider, &mut req).is_err()
        {
            return false;
        }
        for (name, value) in &provider.headers {
            let _ = req.insert_header(name.clone(), value.expose().clone());
        }
        let Ok((mut up, _)) = self.connector.get_http_session(&*peer).await else {
            return false;
        };
        up.set_read_timeout(Some(provider.timeouts.first_byte));
        if up.write_request_header(Box::new(req)).await.is_err()
            || up.finish_request_body().await.is_err()
            || up.read_response_header().await.is_err()
        {
            return false;
        }
        let ok = up.response_header().is_some_and(|h| h.status.is_success());
        // Read the page to its end so that the connection can be pooled.
        let mut read = 0usize;
        while let Ok(Some(chunk)) = up.read_response_body().await {
            read += chunk.len();
            if read > 1 << 20 {
                return ok;
            }
        }
        self.connector
            .release_http_session(up, &*peer, Some(Duration::from_secs(60)))
            .await;
        ok
    }
}
