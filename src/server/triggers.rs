//! Reload triggers: the config file changing on disk (polled, debounced) and SIGHUP.

use crate::config::reload::Reloader;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(200);

pub struct ReloadTriggers {
    pub reloader: Arc<Reloader>,
}

/// What identifies a version of the file: modification time, length and content hash.
fn fingerprint(path: &std::path::Path) -> Option<(SystemTime, u64, [u8; 32])> {
    let meta = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    Some((
        meta.modified().ok()?,
        meta.len(),
        crate::config::hash_key(&bytes),
    ))
}

#[async_trait]
impl BackgroundService for ReloadTriggers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let path = self.reloader.path.clone();
        let mut seen = fingerprint(&path);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        loop {
            let sighup = async {
                match hangup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = sighup => {
                    let _ = self.reloader.reload("SIGHUP").await;
                    seen = fingerprint(&path);
                }
                _ = tokio::time::sleep(POLL) => {
                    let now = fingerprint(&path);
                    if now.is_none() || now == seen {
                        continue;
                    }
                    // Debounce: an editor may still be writing; wait until the file holds still.
                    tokio::time::sleep(POLL).await;
                    let settled = fingerprint(&path);
                    if settled != now {
                        continue;
                    }
                    seen = settled;
                    let _ = self.reloader.reload("file change").await;
                }
            }
        }
    }
}
