//! Per-deployment health: circuit breakers, rate-limit cooldowns, in-flight counts and TTFT
//! estimates. It lives outside the config snapshot, keyed by stable deployment ids, so a
//! reload keeps it.

use crate::config::BreakerSettings;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Why an attempt failed, as health sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 429 or an equivalent: a cooldown, not a sign of breakage.
    RateLimited,
    /// 5xx, connection errors, timeouts, cut streams.
    Broken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    /// Open until then; then one probe may pass (half-open).
    open_until: Instant,
    probe_in_flight: bool,
    consecutive_failures: u32,
    /// (when, failed) of recent requests, for the error rate.
    window: VecDeque<(Instant, bool)>,
    /// Rate limited until then (Retry-After, reset headers).
    cooldown_until: Option<Instant>,
}

/// One deployment's health.
#[derive(Debug)]
pub struct DeploymentHealth {
    in_flight: AtomicU32,
    /// Exponentially weighted mean time to first token, µs (0: unknown).
    ewma_ttft_us: AtomicU64,
    breaker: Mutex<Breaker>,
}

/// A deployment chosen for an attempt; dropping it ends its in-flight count.
pub struct Ticket {
    health: Arc<DeploymentHealth>,
    /// This attempt is the half-open probe.
    probe: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.probe {
            let mut b = self.health.lock();
            b.probe_in_flight = false;
        }
    }
}

impl DeploymentHealth {
    fn new() -> Self {
        DeploymentHealth {
            in_flight: AtomicU32::new(0),
            ewma_ttft_us: AtomicU64::new(0),
            breaker: Mutex::new(Breaker {
                state: BreakerState::Closed,
                open_until: Instant::now(),
                probe_in_flight: false,
                consecutive_failures: 0,
                window: VecDeque::new(),
                cooldown_until: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// EWMA of time to first token; `None` before the first success.
    pub fn ewma_ttft(&self) -> Option<Duration> {
        match self.ewma_ttft_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The breaker's state now (an open breaker whose cooldown passed reads half-open).
    pub fn state(&self) -> BreakerState {
        let b = self.lock();
        match b.state {
            BreakerState::Open if Instant::now() >= b.open_until => BreakerState::HalfOpen,
            s => s,
        }
    }

    /// Rate limited until then, if it still is.
    pub fn cooldown_left(&self) -> Option<Duration> {
        let b = self.lock();
        b.cooldown_until
            .and_then(|t| t.checked_duration_since(Instant::now()))
    }

    /// Takes a ticket to send a request here, or `None` when the breaker or a cooldown says
    /// no. Half-open: one probe at a time.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Ticket> {
        let now = Instant::now();
        let mut b = self.lock();
        if b.cooldown_until.is_some_and(|t| now < t) {
            return None;
        }
        let probe = match b.state {
            BreakerState::Closed => false,
            BreakerState::Open if now < b.open_until => return None,
            BreakerState::Open | BreakerState::HalfOpen => {
                if b.probe_in_flight {
                    return None;
                }
                b.state = BreakerState::HalfOpen;
                b.probe_in_flight = true;
                true
            }
        };
        drop(b);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Ticket {
            health: self.clone(),
            probe,
        })
    }

    fn success(&self, ttft: Option<Duration>, settings: &BreakerSettings) {
        if let Some(t) = ttft {
            let us = (t.as_micros() as u64).max(1);
            let old = self.ewma_ttft_us.load(Ordering::Relaxed);
            let new = if old == 0 { us } else { (old * 4 + us) / 5 };
            self.ewma_ttft_us.store(new, Ordering::Relaxed);
        }
        let now = Instant::now();
        let mut b = self.lock();
        b.consecutive_failures = 0;
        if b.state != BreakerState::Closed {
            b.state = BreakerState::Closed;
            b.window.clear();
        }
        push_window(&mut b, now, false, settings);
    }

    fn failure(&self, failure: Failure, retry_after: Option<Duration>, settings: &BreakerSettings) {
        let now = Instant::now();
        let mut b = self.lock();
        if failure == Failure::RateLimited {
            // Not broken, only busy: no attempts before the provider said, or a short pause.
            let pause = retry_after.unwrap_or(Duration::from_secs(1));
            let until = now + pause;
            b.cooldown_until = Some(b.cooldown_until.map_or(until, |t| t.max(until)));
            return;
        }
        b.consecutive_failures += 1;
        push_window(&mut b, now, true, settings);
        let failed = b.window.iter().filter(|(_, f)| *f).count() as f64;
        let total = b.window.len() as f64;
        let rate_tripped = b.window.len() >= settings.min_requests as usize
            && failed / total >= settings.error_rate;
        let open = b.state == BreakerState::HalfOpen
            || b.consecutive_failures >= settings.consecutive_failures
            || rate_tripped;
        if open {
            b.state = BreakerState::Open;
            // Longer when the provider said so.
            b.open_until = now + settings.cooldown.max(retry_after.unwrap_or_default());
            b.window.clear();
        }
    }
}

fn push_window(b: &mut Breaker, now: Instant, failed: bool, settings: &BreakerSettings) {
    b.window.push_back((now, failed));
    while b
        .window
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) > settings.window)
    {
        b.window.pop_front();
    }
    // Bounded whatever the traffic.
    while b.window.len() > 10_000 {
        b.window.pop_front();
    }
}

/// Health of every deployment seen, by id.
#[derive(Default)]
pub struct Health {
    deployments: RwLock<HashMap<Arc<str>, Arc<DeploymentHealth>>>,
}

impl Health {
    pub fn get(&self, id: &Arc<str>) -> Arc<DeploymentHealth> {
        if let Some(h) = self
            .deployments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return h.clone();
        }
        self.deployments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_insert_with(|| Arc::new(DeploymentHealth::new()))
            .clone()
    }

    /// Every deployment with its health, sorted by id.
    pub fn all(&self) -> Vec<(Arc<str>, Arc<DeploymentHealth>)> {
        let mut v: Vec<_> = self
            .deployments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn success(&self, ticket: &Ticket, ttft: Option<Duration>, settings: &BreakerSettings) {
        ticket.health.success(ttft, settings);
    }

    /// An active health check of a deployment's provider failed.
    pub fn check_failed(&self, id: &Arc<str>, settings: &BreakerSettings) {
        self.get(id).failure(Failure::Broken, None, settings);
    }

    pub fn failure(
        &self,
        ticket: &Ticket,
        failure: Failure,
        retry_after: Option<Duration>,
        settings: &BreakerSettings,
    ) {
        ticket.health.failure(failure, retry_after, settings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: 3,
            error_rate: 0.5,
            min_requests: 10,
            window: Duration::from_secs(30),
            cooldown: Duration::from_millis(50),
        }
    }

    #[test]
    fn consecutive_failures_open_then_one_probe_closes() {
        let h = Arc::new(DeploymentHealth::new());
        let s = settings();
        for _ in 0..3 {
            let t = h.try_acquire().unwrap();
            h.failure(Failure::Broken, None, &s);
            drop(t);
        }
        assert_eq!(h.state(), BreakerState::Open);
        assert!(h.try_acquire().is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(h.state(), BreakerState::HalfOpen);
        let probe = h.try_acquire().expect("one probe passes");
        assert!(h.try_acquire().is_none(), "only one probe at a time");
        h.success(Some(Duration::from_millis(5)), &s);
        drop(probe);
        assert_eq!(h.state(), BreakerState::Closed);
        assert!(h.try_acquire().is_some());
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let h = Arc::new(DeploymentHealth::new());
        let s = settings();
        for _ in 0..3 {
            h.failure(Failure::Broken, None, &s);
        }
        std::thread::sleep(Duration::from_millis(60));
        let probe = h.try_acquire().unwrap();
        h.failure(Failure::Broken, None, &s);
        drop(probe);
        assert_eq!(h.state(), BreakerState::Open);
    }

    #[test]
    fn the_error_rate_opens_it_after_enough_requests() {
        let h = Arc::new(DeploymentHealth::new());
        let s = BreakerSettings {
            consecutive_failures: 100,
            ..settings()
        };
        for i in 0..9 {
            if i % 2 == 0 {
                h.failure(Failure::Broken, None, &s);
            } else {
                h.success(None, &s);
            }
        }
        assert_eq!(h.state(), BreakerState::Closed, "under min_requests");
        h.failure(Failure::Broken, None, &s);
        h.failure(Failure::Broken, None, &s);
        assert_eq!(h.state(), BreakerState::Open);
    }

    #[test]
    fn rate_limits_are_a_cooldown_not_a_breakage() {
        let h = Arc::new(DeploymentHealth::new());
        let s = settings();
        for _ in 0..10 {
            h.failure(Failure::RateLimited, Some(Duration::from_millis(40)), &s);
        }
        assert_eq!(h.state(), BreakerState::Closed);
        assert!(h.try_acquire().is_none());
        assert!(h.cooldown_left().is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert!(h.try_acquire().is_some());
    }

    #[test]
    fn ttft_is_averaged() {
        let h = Arc::new(DeploymentHealth::new());
        let s = settings();
        h.success(Some(Duration::from_millis(100)), &s);
        assert_eq!(h.ewma_ttft(), Some(Duration::from_millis(100)));
        h.success(Some(Duration::from_millis(200)), &s);
        assert_eq!(h.ewma_ttft(), Some(Duration::from_millis(120)));
    }
}
