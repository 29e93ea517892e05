//! Limits and budgets: requests, tokens and requests in flight per minute, and money per
//! period, for every level a request belongs to (key → user → project → team) and for the
//! deployments it goes to (a provider's own rate tier).
//!
//! Admission is a reservation: before a request goes upstream, every level is checked and
//! charged in one atomic step (one request, its estimated tokens, a place among those in
//! flight, and a hold on its estimated cost). After the answer the [`Hold`] is settled to the
//! ledger's exact usage and cost, or released. Holds expire on their own (`hold_secs`): a
//! replica that dies mid-stream never pins a budget; a live one keeps its holds alive.
//!
//! The counters live in this process ([`memory`]) or, shared by every replica, in Redis
//! ([`shared`]): the same rules, each step one atomic operation.

pub mod memory;
pub mod period;
pub mod shared;

pub use period::Period;

use crate::error::{Code, ErrorKind, GatewayError};
use std::sync::Arc;
use std::time::Duration;

/// The limits of one level. `None`: no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute (prompt and output; the output a request allows is held until it is
    /// known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub budget: Option<Budget>,
}

/// Money a level may spend per period, in micro-dollars (as the ledger counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Budget {
    #[serde(rename = "budget_usd_micros")]
    pub micros: u64,
    #[serde(rename = "budget_period")]
    pub period: Period,
    /// Soft: crossing it alerts, nothing is refused.
    #[serde(rename = "budget_soft")]
    pub soft: bool,
}

impl Limits {
    /// The limits a config file's or an admin request's `limits` gives; the problem when
    /// they are no good.
    pub fn from_entry(e: &crate::config::file::LimitsEntry) -> Result<Limits, String> {
        let budget = match e.budget_usd {
            None if e.budget_period.is_some() || e.budget_soft => {
                return Err("budget_period and budget_soft need budget_usd".into())
            }
            None => None,
            Some(usd) if !(0.0..=1e12).contains(&usd) => {
                return Err(format!(
                    "budget_usd must be a number of dollars from 0, not {usd}"
                ))
            }
            Some(usd) => Some(Budget {
                micros: (usd * 1e6).round() as u64,
                period: match e.budget_period.as_deref() {
                    None => Period::Month,
                    Some(p) => Period::parse(p).ok_or_else(|| {
                        format!("budget_period must be {}, not `{p}`", Period::NAMES)
                    })?,
                },
                soft: e.budget_soft,
            }),
        };
        Ok(Limits {
            rpm: e.rpm,
            tpm: e.tpm,
            max_parallel: e.max_parallel,
            budget,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.max_parallel.is_none()
            && self.budget.is_none()
    }

    /// Whether admission needs the request's tokens or cost.
    pub fn counts_tokens(&self) -> bool {
        self.tpm.is_some() || self.budget.is_some()
    }
}

/// What a level is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Key,
    User,
    Project,
    Team,
    Deployment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::User => "user",
            Kind::Project => "project",
            Kind::Team => "team",
            Kind::Deployment => "deployment",
        }
    }
}

/// One level a request is charged to.
#[derive(Debug, Clone)]
pub struct Level {
    pub kind: Kind,
    /// As the ledger names it: a config key's name, a stored key's, user's, project's or
    /// team's id, a deployment's id.
    pub id: Arc<str>,
    pub limits: Arc<Limits>,
}

/// Every level of one request, and the tag that keeps their counters together (one Redis
/// Cluster slot: the team's id, or a config key's name).
#[derive(Debug, Clone)]
pub struct Levels {
    pub tag: Arc<str>,
    pub list: Vec<Level>,
}

impl Levels {
    pub fn counts_tokens(&self) -> bool {
        self.list.iter().any(|l| l.limits.counts_tokens())
    }
}

/// What one request asks of its levels, before it is known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ask {
    /// The prompt counted plus the most output the request allows.
    pub tokens: u64,
    /// Its most expensive cost at the deployments' prices, in micro-dollars.
    pub cost: u64,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Requests,
    Tokens,
    Parallel,
    Budget,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Tokens => "tokens",
            Limit::Parallel => "parallel",
            Limit::Budget => "budget",
        }
    }
}

/// A refusal: the first level and limit that did not fit, and when it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Index into the levels.
    pub level: usize,
    pub limit: Limit,
    /// When trying again may succeed (the window's or the period's end; for requests in
    /// flight, a guess).
    pub retry_after: Duration,
}

/// The rate-limit state told to the client (OpenAI's `x-ratelimit-*` headers): the tightest
/// level with a limit of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u64,
    pub remaining: u64,
    /// Until the window's end.
    pub reset: Duration,
}

impl RateHeaders {
    /// The state of `limit` at a level, kept when it is tighter than the one held.
    fn tighter(slot: &mut Option<Window>, w: Window) {
        if slot.is_none_or(|s| w.remaining < s.remaining) {
            *slot = Some(w);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Writes the headers OpenAI sends (`x-ratelimit-limit-requests`, …).
    pub fn write(&self, h: &mut pingora_http::ResponseHeader) {
        for (name, w) in [("requests", self.requests), ("tokens", self.tokens)] {
            let Some(w) = w else { continue };
            let _ = h.append_header(format!("x-ratelimit-limit-{name}"), w.limit);
            let _ = h.append_header(format!("x-ratelimit-remaining-{name}"), w.remaining);
            let _ = h.append_header(format!("x-ratelimit-reset-{name}"), reset_text(w.reset));
        }
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `1s`, `6m0s`, `20ms`.
pub fn reset_text(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms.div_ceil(1000);
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

/// The one minute-long window rates are counted in: its number and the time left in it.
pub fn window_at(now_ms: u64) -> (u64, Duration) {
    let w = now_ms / 60_000;
    (w, Duration::from_millis((w + 1) * 60_000 - now_ms))
}

/// The answer to one admission.
pub enum Admission {
    Admitted(Hold, RateHeaders),
    Refused(Refused, RateHeaders),
}

/// What a request was granted: released or settled exactly once (settled at its estimate
/// if it is dropped unsettled, e.g. when its ledger record was let go).
pub struct Hold {
    governor: Arc<Governor>,
    pub id: u64,
    levels: Arc<Levels>,
    pub ask: Ask,
    /// The window and periods it was charged in (settled there, as the ledger dates a request
    /// by its start).
    pub window: u64,
    pub at_ms: u64,
    done: bool,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("id", &self.id)
            .field("ask", &self.ask)
            .finish()
    }
}

impl Hold {
    /// Settles the hold to what the request used: its tokens replace the estimate in the
    /// window, its cost is spent and the hold on the estimate let go.
    pub fn settle(mut self, tokens: u64, cost: u64) {
        self.done = true;
        self.governor.settle(&self, tokens, cost);
    }

    pub fn levels(&self) -> &Levels {
        &self.levels
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            let ask = self.ask;
            self.governor.settle(self, ask.tokens, ask.cost);
        }
    }
}

/// What to do when the shared counters cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Admit (unlimited) while they are away.
    FailOpen,
    /// Refuse with 503 while they are away.
    FailClosed,
}

/// A level whose budget crossed one of the alert thresholds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Alert {
    pub kind: &'static str,
    pub id: String,
    /// Percent of the budget.
    pub threshold_percent: u32,
    pub spent_usd_micros: u64,
    pub budget_usd_micros: u64,
    pub period: &'static str,
    pub soft: bool,
}

/// Where a budget's spending so far is read when its counter is new (this process started,
/// or Redis came back empty): the ledger.
pub trait Spent: Send + Sync {
    /// Micro-dollars spent by the level since `since_ms`.
    fn spent(&self, kind: Kind, id: &str, since_ms: i64) -> Result<u64, String>;
}

/// Settings of the governor (`[limits]`, `[redis]`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub hold: Duration,
    /// Percent thresholds of a budget at which an alert is raised.
    pub alert_at: Vec<u32>,
    pub on_error: OnError,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hold: Duration::from_secs(300),
            alert_at: vec![80, 100],
            on_error: OnError::FailClosed,
        }
    }
}

enum Backend {
    Memory(memory::Counters),
    Shared(shared::Shared),
}

/// Admission and settlement, over the counters of one process or of every replica.
pub struct Governor {
    backend: Backend,
    settings: Settings,
    spent: Option<Arc<dyn Spent>>,
    alerts: Box<dyn Fn(Alert) + Send + Sync>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Governor {
    /// Counters in this process.
    pub fn memory(settings: Settings) -> Governor {
        Governor {
            backend: Backend::Memory(memory::Counters::default()),
            settings,
            spent: None,
            alerts: Box::new(|_| {}),
            metrics: None,
        }
    }

    /// Counters in Redis, shared by every replica on it.
    pub fn shared(url: &str, settings: Settings) -> Result<Governor, String> {
        Ok(Governor {
            backend: Backend::Shared(shared::Shared::connect(url, settings.hold)?),
            settings,
            spent: None,
            alerts: Box::new(|_| {}),
            metrics: None,
        })
    }

    /// Where new budget counters read what was spent.
    pub fn with_spent(mut self, spent: Arc<dyn Spent>) -> Self {
        self.spent = Some(spent);
        self
    }

    /// Where alerts go.
    pub fn on_alert(mut self, f: impl Fn(Alert) + Send + Sync + 'static) -> Self {
        self.alerts = Box::new(f);
        self
    }

    pub fn with_metrics(mut self, m: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(m);
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Checks and charges every level at once: all of them, or none.
    pub async fn admit(
        self: &Arc<Self>,
        levels: Arc<Levels>,
        ask: Ask,
    ) -> Result<Admission, GatewayError> {
        let now = now_ms();
        let id = fastrand::u64(1..);
        let (window, _) = window_at(now);
        let decided = match &self.backend {
            Backend::Memory(c) => {
                self.seed_memory(c, &levels, now).await;
                Ok(c.admit(&levels, ask, id, now, self.settings.hold))
            }
            Backend::Shared(s) => self.admit_shared(s, &levels, ask, id, now).await,
        };
        let decided = match decided {
            Ok(d) => d,
            Err(e) => {
                if let Some(m) = &self.metrics {
                    m.limits_unreachable.inc();
                }
                tracing::warn!(error = %e, on_error = ?self.settings.on_error, "the shared limits cannot be reached");
                return match self.settings.on_error {
                    OnError::FailOpen => Ok(Admission::Admitted(
                        Hold {
                            governor: self.clone(),
                            id: 0,
                            levels,
                            ask,
                            window,
                            at_ms: now,
                            done: true,
                        },
                        RateHeaders::default(),
                    )),
                    OnError::FailClosed => Err(GatewayError::new(
                        ErrorKind::Unavailable,
                        "The gateway's limits cannot be checked now (its shared counters are unreachable); try again shortly.",
                    )
                    .code(Code::LimitsUnavailable)),
                };
            }
        };
        Ok(match decided {
            Decision::Admitted(headers) => Admission::Admitted(
                Hold {
                    governor: self.clone(),
                    id,
                    levels,
                    ask,
                    window,
                    at_ms: now,
                    done: false,
                },
                headers,
            ),
            Decision::Refused(r, headers) => {
                if let Some(m) = &self.metrics {
                    m.limit_refused(levels.list[r.level].kind.as_str(), r.limit.as_str());
                }
                Admission::Refused(r, headers)
            }
        })
    }

    async fn admit_shared(
        &self,
        s: &shared::Shared,
        levels: &Arc<Levels>,
        ask: Ask,
        id: u64,
        now: u64,
    ) -> Result<Decision, String> {
        match s.admit(levels, ask, id, now, &[]).await? {
            shared::Admitted::Decided(d) => Ok(d),
            // Budget counters Redis does not have: read from the ledger, then asked again.
            shared::Admitted::Unseeded(missing) => {
                let mut seeds = Vec::new();
                for i in missing {
                    let l = &levels.list[i];
                    let Some(b) = l.limits.budget else { continue };
                    seeds.push((i, self.read_spent(l, b, now).await?));
                }
                match s.admit(levels, ask, id, now, &seeds).await? {
                    shared::Admitted::Decided(d) => Ok(d),
                    shared::Admitted::Unseeded(_) => {
                        Err("a budget counter could not be seeded".into())
                    }
                }
            }
        }
    }

    /// Budgets new to this process read what was spent in their period from the ledger.
    async fn seed_memory(&self, c: &memory::Counters, levels: &Levels, now: u64) {
        for l in &levels.list {
            let Some(b) = l.limits.budget else { continue };
            let (period, _, _) = b.period.at(now);
            if c.seeded(&l.id, l.kind, period) {
                continue;
            }
            let spent = self.read_spent(l, b, now).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, level = l.kind.as_str(), "cannot read a budget's spending from the ledger; counting from zero");
                0
            });
            c.seed(&l.id, l.kind, period, spent);
        }
    }

    async fn read_spent(&self, l: &Level, b: Budget, now: u64) -> Result<u64, String> {
        let Some(source) = self.spent.clone() else {
            return Ok(0);
        };
        let (_, start, _) = b.period.at(now);
        let (kind, id) = (l.kind, l.id.clone());
        tokio::task::spawn_blocking(move || source.spent(kind, &id, start))
            .await
            .map_err(|e| e.to_string())?
    }

    fn settle(&self, hold: &Hold, tokens: u64, cost: u64) {
        if hold.id == 0 {
            return;
        }
        let crossed = match &self.backend {
            Backend::Memory(c) => c.settle(hold, tokens, cost, &self.settings.alert_at),
            Backend::Shared(s) => {
                // Its alerts are raised where it lands.
                s.settle(hold, tokens, cost);
                return;
            }
        };
        self.raise(&hold.levels, crossed);
    }

    /// Alerts for the thresholds crossed: `(level, percent, spent)`.
    fn raise(&self, levels: &Levels, crossed: Vec<(usize, u32, u64)>) {
        for (i, pct, spent) in crossed {
            let l = &levels.list[i];
            let Some(b) = l.limits.budget else { continue };
            if let Some(m) = &self.metrics {
                m.budget_alert(l.kind.as_str(), pct);
            }
            let alert = Alert {
                kind: l.kind.as_str(),
                id: l.id.to_string(),
                threshold_percent: pct,
                spent_usd_micros: spent,
                budget_usd_micros: b.micros,
                period: b.period.as_str(),
                soft: b.soft,
            };
            tracing::warn!(level = alert.kind, id = %alert.id, threshold = pct, spent, budget = b.micros, "budget threshold crossed");
            (self.alerts)(alert);
        }
    }

    /// What a level has spent and holds now in its current period, in micro-dollars, and its
    /// requests in flight.
    pub async fn state(&self, level: &Level, tag: &str) -> Result<LevelState, String> {
        let now = now_ms();
        match &self.backend {
            Backend::Memory(c) => Ok(c.state(level, now)),
            Backend::Shared(s) => s.state(level, tag, now).await,
        }
    }

    /// Keeps the holds of the requests still in flight alive (shared counters only).
    pub fn keep_alive(&self) -> Option<&shared::Shared> {
        match &self.backend {
            Backend::Shared(s) => Some(s),
            Backend::Memory(_) => None,
        }
    }
}

/// A level's counters now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LevelState {
    pub requests_this_minute: u64,
    pub tokens_this_minute: u64,
    pub in_flight: u64,
    pub spent_usd_micros: u64,
    pub held_usd_micros: u64,
}

/// The rules' verdict, before a hold is made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admitted(RateHeaders),
    Refused(Refused, RateHeaders),
}

/// One level's counters, as the rules read them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    pub requests: u64,
    pub tokens: u64,
    pub in_flight: u64,
    pub spent: u64,
    pub held: u64,
}

/// The rules, in one place for both backends' tests: whether `ask` fits a level whose
/// counters are `seen` now; `None` when it does.
pub fn check(l: &Limits, seen: Seen, ask: Ask, now: u64) -> Option<(Limit, Duration)> {
    let (_, reset) = window_at(now);
    if l.rpm.is_some_and(|max| seen.requests + 1 > max) {
        return Some((Limit::Requests, reset));
    }
    if l.tpm.is_some_and(|max| seen.tokens + ask.tokens > max) {
        return Some((Limit::Tokens, reset));
    }
    if l.max_parallel.is_some_and(|max| seen.in_flight + 1 > max) {
        return Some((Limit::Parallel, Duration::from_secs(1)));
    }
    if let Some(b) = l.budget.filter(|b| !b.soft) {
        if seen.spent + seen.held + ask.cost > b.micros {
            let (_, _, end) = b.period.at(now);
            let left = (end.max(0) as u64).saturating_sub(now);
            return Some((Limit::Budget, Duration::from_millis(left)));
        }
    }
    None
}

/// The headers' part of one level, after `ask` was counted (or not, when refused).
pub fn headers_of(l: &Limits, seen: Seen, now: u64, into: &mut RateHeaders) {
    let (_, reset) = window_at(now);
    if let Some(max) = l.rpm {
        RateHeaders::tighter(
            &mut into.requests,
            Window {
                limit: max,
                remaining: max.saturating_sub(seen.requests),
                reset,
            },
        );
    }
    if let Some(max) = l.tpm {
        RateHeaders::tighter(
            &mut into.tokens,
            Window {
                limit: max,
                remaining: max.saturating_sub(seen.tokens),
                reset,
            },
        );
    }
}

/// The thresholds a budget's spending crossed from `before` to `after`.
pub fn crossed(b: &Budget, alert_at: &[u32], before: u64, after: u64) -> Vec<u32> {
    alert_at
        .iter()
        .copied()
        .filter(|&pct| {
            let at = (b.micros as u128 * pct as u128).div_ceil(100) as u64;
            before < at && after >= at
        })
        .collect()
}

/// The refusal a client is told, in its door's format: 429 with `Retry-After`; an exhausted
/// budget is `insufficient_quota`.
pub fn refusal(r: &Refused, levels: &Levels) -> GatewayError {
    let l = &levels.list[r.level];
    let who = l.kind.as_str();
    let secs = r.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let (message, code) = match r.limit {
        Limit::Requests => (
            format!("Rate limit reached: this {who}'s requests per minute are used up; try again in {secs}s."),
            Code::RateLimitExceeded,
        ),
        Limit::Tokens => (
            format!("Rate limit reached: this {who}'s tokens per minute would be exceeded by this request; try again in {secs}s, or ask for fewer tokens (max_tokens)."),
            Code::RateLimitExceeded,
        ),
        Limit::Parallel => (
            format!("Too many requests in flight at once for this {who}; try again when one has finished."),
            Code::RateLimitExceeded,
        ),
        Limit::Budget => (
            format!("This {who}'s budget is used up for its period (it resets in {secs}s); the request was not sent."),
            Code::InsufficientQuota,
        ),
    };
    let mut e = GatewayError::new(ErrorKind::RateLimited, message).code(code);
    e.retry_after = Some(secs.min(u32::MAX as u64) as u32);
    e
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
