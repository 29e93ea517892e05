//! The counters of one process: every level's under one lock, so that an admission over
//! several levels is one step.

use super::{check, crossed, headers_of, window_at, Ask, Decision, Hold, Kind, Level, LevelState};
use super::{Levels, RateHeaders, Refused, Seen};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Counters {
    levels: Mutex<HashMap<(Kind, Arc<str>), State>>,
}

#[derive(Default)]
struct State {
    window: u64,
    requests: u64,
    tokens: u64,
    /// Holds in flight: id → (expires at, cost held).
    live: HashMap<u64, (u64, u64)>,
    held: u64,
    /// The budget period `spent` is of; `None` until read from the ledger.
    period: Option<u64>,
    spent: u64,
}

impl State {
    fn at(&mut self, window: u64, now: u64) -> &mut Self {
        if self.window != window {
            self.window = window;
            self.requests = 0;
            self.tokens = 0;
        }
        let mut freed = 0;
        self.live.retain(|_, (expires, cost)| {
            let keep = *expires > now;
            if !keep {
                freed += *cost;
            }
            keep
        });
        self.held -= freed;
        self
    }

    fn seen(&self, period: Option<u64>) -> Seen {
        Seen {
            requests: self.requests,
            tokens: self.tokens,
            in_flight: self.live.len() as u64,
            spent: if period.is_some() && period == self.period {
                self.spent
            } else {
                0
            },
            held: self.held,
        }
    }
}

fn period_of(l: &Level, now: u64) -> Option<u64> {
    l.limits.budget.map(|b| b.period.at(now).0)
}

impl Counters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Kind, Arc<str>), State>> {
        self.levels.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn admit(&self, levels: &Levels, ask: Ask, id: u64, now: u64, ttl: Duration) -> Decision {
        let (window, _) = window_at(now);
        let mut map = self.lock();
        let mut headers = RateHeaders::default();
        let mut refused = None;
        for (i, l) in levels.list.iter().enumerate() {
            let s = map
                .entry((l.kind, l.id.clone()))
                .or_default()
                .at(window, now);
            if refused.is_none() {
                if let Some((limit, retry_after)) =
                    check(&l.limits, s.seen(period_of(l, now)), ask, now)
                {
                    refused = Some(Refused {
                        level: i,
                        limit,
                        retry_after,
                    });
                }
            }
        }
        if let Some(r) = refused {
            for l in &levels.list {
                let s = &map[&(l.kind, l.id.clone())];
                headers_of(&l.limits, s.seen(None), now, &mut headers);
            }
            return Decision::Refused(r, headers);
        }
        let expires = now + ttl.as_millis() as u64;
        for l in &levels.list {
            let s = map.get_mut(&(l.kind, l.id.clone())).expect("made above");
            s.requests += 1;
            s.tokens += ask.tokens;
            if l.limits.max_parallel.is_some() || l.limits.budget.is_some() {
                s.live.insert(id, (expires, ask.cost));
                s.held += ask.cost;
            }
            headers_of(&l.limits, s.seen(None), now, &mut headers);
        }
        Decision::Admitted(headers)
    }

    /// Settles a hold; the budget thresholds crossed: `(level, percent, spent)`.
    pub fn settle(
        &self,
        hold: &Hold,
        tokens: u64,
        cost: u64,
        alert_at: &[u32],
    ) -> Vec<(usize, u32, u64)> {
        let mut map = self.lock();
        let mut alerts = Vec::new();
        for (i, l) in hold.levels.list.iter().enumerate() {
            let Some(s) = map.get_mut(&(l.kind, l.id.clone())) else {
                continue;
            };
            if s.window == hold.window {
                s.tokens = (s.tokens + tokens).saturating_sub(hold.ask.tokens);
            }
            if let Some((_, c)) = s.live.remove(&hold.id) {
                s.held -= c;
            }
            if let Some(b) = l.limits.budget {
                if s.period == Some(b.period.at(hold.at_ms).0) {
                    let before = s.spent;
                    s.spent += cost;
                    alerts.extend(
                        crossed(&b, alert_at, before, s.spent)
                            .into_iter()
                            .map(|p| (i, p, s.spent)),
                    );
                }
            }
        }
        alerts
    }

    pub fn seeded(&self, id: &Arc<str>, kind: Kind, period: u64) -> bool {
        self.lock()
            .get(&(kind, id.clone()))
            .is_some_and(|s| s.period == Some(period))
    }

    /// What the ledger says was spent in `period`, unless it is known already.
    pub fn seed(&self, id: &Arc<str>, kind: Kind, period: u64, spent: u64) {
        let mut map = self.lock();
        let s = map.entry((kind, id.clone())).or_default();
        if s.period != Some(period) {
            s.period = Some(period);
            s.spent = spent;
        }
    }

    pub fn state(&self, l: &Level, now: u64) -> LevelState {
        let (window, _) = window_at(now);
        let mut map = self.lock();
        let s = map
            .entry((l.kind, l.id.clone()))
            .or_default()
            .at(window, now);
        let seen = s.seen(period_of(l, now));
        LevelState {
            requests_this_minute: seen.requests,
            tokens_this_minute: seen.tokens,
            in_flight: seen.in_flight,
            spent_usd_micros: seen.spent,
            held_usd_micros: seen.held,
        }
    }
}
