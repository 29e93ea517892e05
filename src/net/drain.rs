//! Graceful shutdown that waits for the work in flight: on SIGTERM the gateway reports not
//! ready, closes keep-alive connections after their current request, and lets every request
//! in flight (streams included) finish, up to a grace period; only then does Pingora stop.

use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// Requests in flight, and whether the process is draining.
#[derive(Default)]
pub struct Drain {
    in_flight: AtomicUsize,
    draining: AtomicBool,
}

/// Held for the life of one request.
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drain {
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Pingora's signal handling, with a drain before a graceful terminate.
pub struct DrainingSignals {
    pub drain: Arc<Drain>,
    /// Longest wait for requests in flight.
    pub grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot listen for signals");
            return std::future::pending().await;
        };
        tokio::select! {
            // The listeners go to the new process; Pingora's grace period lets what is in
            // flight here finish.
            _ = quit.recv() => {
                self.drain.draining.store(true, Ordering::Relaxed);
                ShutdownSignal::GracefulUpgrade
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = term.recv() => {
                self.drain.draining.store(true, Ordering::Relaxed);
                let deadline = Instant::now() + self.grace;
                tracing::info!(in_flight = self.drain.in_flight(), grace = ?self.grace, "SIGTERM: draining");
                while self.drain.in_flight() > 0 && Instant::now() < deadline {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                        // A second SIGTERM or a SIGINT: stop waiting.
                        _ = term.recv() => break,
                        _ = int.recv() => return ShutdownSignal::FastShutdown,
                    }
                }
                tracing::info!(left = self.drain.in_flight(), "drained");
                // Nothing is left to wait for: no grace period (Pingora's is for upgrades).
                ShutdownSignal::FastShutdown
            }
        }
    }
}
