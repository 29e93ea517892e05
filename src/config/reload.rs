//! Reload: a new file becomes a new snapshot, validated whole and swapped in atomically; an
//! invalid file is refused and the old snapshot keeps serving. The report says what changed.

use super::{load, ConfigError, Snapshot};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What a reload changed.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    pub models_added: Vec<String>,
    pub models_removed: Vec<String>,
    pub models_changed: Vec<String>,
    pub deployments_added: Vec<String>,
    pub deployments_removed: Vec<String>,
    pub providers_added: Vec<String>,
    pub providers_removed: Vec<String>,
    pub providers_changed: Vec<String>,
    pub keys_added: Vec<String>,
    pub keys_removed: Vec<String>,
    pub keys_changed: Vec<String>,
    /// Settings that changed in the file but take effect only after a restart.
    pub needs_restart: Vec<String>,
}

/// The outcome of the last reload attempt, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub trigger: &'static str,
    pub ok: bool,
    /// The file's problems when it was refused, as `junction check` prints them.
    pub problems: Vec<String>,
}

/// Reloads the config file into the shared snapshot.
pub struct Reloader {
    pub path: PathBuf,
    pub config: Arc<ArcSwap<Snapshot>>,
    last: Mutex<Option<LastReload>>,
    /// Reloads applied and refused since start (the `/metrics` counters).
    pub applied: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
    /// Serializes reloads from the file watcher, SIGHUP and the admin API.
    lock: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(path: PathBuf, config: Arc<ArcSwap<Snapshot>>) -> Self {
        Reloader {
            path,
            config,
            last: Mutex::new(None),
            applied: Default::default(),
            refused: Default::default(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads, validates and swaps in the file. Requests in flight keep the snapshot they
    /// started with.
    pub async fn reload(&self, trigger: &'static str) -> Result<Report, ConfigError> {
        let _one_at_a_time = self.lock.lock().await;
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || load(&path))
            .await
            .unwrap_or_else(|e| {
                Err(ConfigError {
                    file: self.path.display().to_string(),
                    problems: vec![super::Problem {
                        line: 0,
                        column: 0,
                        message: format!("reload task failed: {e}"),
                    }],
                })
            });
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match loaded {
            Ok(new) => {
                let report = diff(&self.config.load(), &new);
                self.config.store(Arc::new(new));
                self.applied
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(trigger, report = ?report, "config reloaded");
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastReload {
                    at,
                    trigger,
                    ok: true,
                    problems: Vec::new(),
                });
                Ok(report)
            }
            Err(e) => {
                tracing::error!(trigger, problems = %e, "config reload refused; the old config keeps serving");
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastReload {
                    at,
                    trigger,
                    ok: false,
                    problems: e.to_string().lines().map(str::to_string).collect(),
                });
                Err(e)
            }
        }
    }

    pub fn last(&self) -> Option<LastReload> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    it.map(str::to_string).collect()
}

/// What changed from `old` to `new`.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Report {
    let mut r = Report::default();
    let (om, nm) = (
        names(old.models.keys().map(|k| &**k)),
        names(new.models.keys().map(|k| &**k)),
    );
    r.models_added = nm.difference(&om).cloned().collect();
    r.models_removed = om.difference(&nm).cloned().collect();
    for name in om.intersection(&nm) {
        let (a, b) = (&old.models[name.as_str()], &new.models[name.as_str()]);
        let ids = |m: &super::ModelRoute| {
            m.deployments
                .iter()
                .map(|d| format!("{}:{}:{}", d.id, d.weight, d.priority))
                .collect::<Vec<_>>()
        };
        if ids(a) != ids(b) || a.strategy != b.strategy || a.fallbacks != b.fallbacks {
            r.models_changed.push(name.clone());
        }
    }
    let deployments = |s: &Snapshot| {
        names(
            s.models
                .values()
                .flat_map(|m| m.deployments.iter().map(|d| &*d.id)),
        )
    };
    let (od, nd) = (deployments(old), deployments(new));
    r.deployments_added = nd.difference(&od).cloned().collect();
    r.deployments_removed = od.difference(&nd).cloned().collect();
    let (op, np) = (
        names(old.providers.keys().map(|k| &**k)),
        names(new.providers.keys().map(|k| &**k)),
    );
    r.providers_added = np.difference(&op).cloned().collect();
    r.providers_removed = op.difference(&np).cloned().collect();
    for name in op.intersection(&np) {
        let (a, b) = (&old.providers[name.as_str()], &new.providers[name.as_str()]);
        let same = a.kind == b.kind
            && a.upstream.to_string() == b.upstream.to_string()
            && a.api_key == b.api_key
            && a.headers == b.headers
            && a.timeouts == b.timeouts;
        if !same {
            r.providers_changed.push(name.clone());
        }
    }
    let (ok, nk) = (
        names(old.keys.iter().map(|k| &*k.name)),
        names(new.keys.iter().map(|k| &*k.name)),
    );
    r.keys_added = nk.difference(&ok).cloned().collect();
    r.keys_removed = ok.difference(&nk).cloned().collect();
    for name in ok.intersection(&nk) {
        let a = old.keys.iter().find(|k| &*k.name == name.as_str());
        let b = new.keys.iter().find(|k| &*k.name == name.as_str());
        if let (Some(a), Some(b)) = (a, b) {
            if a.hash != b.hash || a.models != b.models {
                r.keys_changed.push(name.clone());
            }
        }
    }
    let (os, ns) = (&old.server, &new.server);
    let mut restart = |what: &str, changed: bool| {
        if changed {
            r.needs_restart.push(what.to_string());
        }
    };
    restart("server.listen", os.listen != ns.listen);
    restart("server.threads", os.threads != ns.threads);
    restart("server.h2c", os.h2c != ns.h2c);
    restart(
        "server.upstream_pool_size",
        os.upstream_pool_size != ns.upstream_pool_size,
    );
    restart("ledger", old.ledger != new.ledger);
    restart("responses", old.responses != new.responses);
    restart("log.access", old.log != new.log);
    restart(
        "tracing.otlp_endpoint",
        old.tracing.otlp_endpoint != new.tracing.otlp_endpoint,
    );
    restart(
        "admin.listen",
        old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen),
    );
    restart(
        "demo.mock_listen",
        old.demo_mock_listen != new.demo_mock_listen,
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(text: &str) -> Snapshot {
        super::super::parse("t.toml", text, &|_| None).unwrap()
    }

    #[test]
    fn the_report_names_what_changed() {
        let a = snap(
            r#"
[server]
listen = "127.0.0.1:1000"
[[keys]]
name = "k1"
sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
[[keys]]
name = "k2"
sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25c"
[providers.p]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
[models.m]
provider = "p"
[models.gone]
provider = "p"
"#,
        );
        let b = snap(
            r#"
[server]
listen = "127.0.0.1:2000"
[[keys]]
name = "k1"
sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25d"
[providers.p]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
[providers.q]
kind = "openai"
base_url = "http://127.0.0.1:2/v1"
[models.m]
[[models.m.deployments]]
provider = "p"
[[models.m.deployments]]
provider = "q"
[models.new]
provider = "q"
"#,
        );
        let r = diff(&a, &b);
        assert_eq!(r.models_added, vec!["new"]);
        assert_eq!(r.models_removed, vec!["gone"]);
        assert_eq!(r.models_changed, vec!["m"]);
        assert_eq!(r.deployments_added, vec!["q/m", "q/new"]);
        assert_eq!(r.deployments_removed, vec!["p/gone"]);
        assert_eq!(r.providers_added, vec!["q"]);
        assert_eq!(r.keys_removed, vec!["k2"]);
        assert_eq!(r.keys_changed, vec!["k1"]);
        assert_eq!(r.needs_restart, vec!["server.listen"]);
        assert_eq!(diff(&b, &b), Report::default());
    }
}
