//! Routing: which deployments a request tries, in which order, and their health.

pub mod checks;
pub mod health;

use crate::config::{Deployment, ModelRoute, Snapshot, Strategy};
use health::{DeploymentHealth, Health};
use std::sync::Arc;

/// A deployment to try, with its health.
pub struct Candidate {
    pub deployment: Deployment,
    pub health: Arc<DeploymentHealth>,
}

/// The deployments of `route` in its strategy's order, then those of its fallback models
/// (each in its own order), each deployment once. With a session (`affinity`), the order of
/// the strategies that would pick at random or by load is the session's own, so that a
/// session stays on one deployment (its prompt cache and reasoning blobs stay valid) and
/// moves only when that deployment cannot take it.
pub fn candidates(
    route: &ModelRoute,
    snapshot: &Snapshot,
    health: &Health,
    affinity: Option<u64>,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut seen_models: Vec<&str> = Vec::new();
    let mut queue: Vec<&ModelRoute> = vec![route];
    let mut next = 0;
    while next < queue.len() {
        let r = queue[next];
        next += 1;
        if seen_models.contains(&&*r.name) {
            continue;
        }
        seen_models.push(&r.name);
        for d in order(r, health, affinity) {
            if !out.iter().any(|c| c.deployment.id == d.id) {
                out.push(Candidate {
                    health: health.get(&d.id),
                    deployment: d.clone(),
                });
            }
        }
        for f in &r.fallbacks {
            if let Some(fr) = snapshot.models.get(f) {
                queue.push(fr);
            }
        }
    }
    // Held for the whole request: no room for the three more a first push reserves.
    out.shrink_to_fit();
    out
}

/// One model's deployments in the order its strategy gives; deployments that cannot take a
/// request now (breaker open, rate-limit cooldown) go last.
fn order<'a>(route: &'a ModelRoute, health: &Health, affinity: Option<u64>) -> Vec<&'a Deployment> {
    let ds = &route.deployments;
    let mut ordered: Vec<&Deployment> = match (route.strategy, affinity) {
        (Strategy::Priority | Strategy::Cost, _) | (_, None) => strategy_order(route, health),
        (_, Some(session)) => session_order(ds, session),
    };
    // Stable: the strategy's order holds within the available and the unavailable. Cached:
    // each deployment's health is looked up once, not once per comparison.
    ordered.sort_by_cached_key(|d| {
        let h = health.get(&d.id);
        h.state() == health::BreakerState::Open || h.cooldown_left().is_some()
    });
    ordered
}

/// A session's own order of deployments: weighted rendezvous hashing, so each session's
/// first choice follows the weights, stays put while the set of deployments does, and only
/// the sessions of a removed deployment move.
fn session_order(ds: &[Deployment], session: u64) -> Vec<&Deployment> {
    let mut scored: Vec<(f64, &Deployment)> = ds
        .iter()
        .map(|d| {
            let h = mix(session ^ fnv1a(d.id.as_bytes()));
            // A uniform in (0, 1]; -ln(u)/w is exponential with rate w: the smallest wins
            // with probability w / Σw.
            let u = ((h >> 11) + 1) as f64 / (1u64 << 53) as f64;
            (-u.ln() / d.weight.max(1) as f64, d)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().map(|(_, d)| d).collect()
}

/// A session key (a header or body field the client sends) as a number.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finalizer: spreads close inputs apart.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn strategy_order<'a>(route: &'a ModelRoute, health: &Health) -> Vec<&'a Deployment> {
    let ds = &route.deployments;
    match route.strategy {
        Strategy::Priority => ds.iter().collect(),
        Strategy::Weighted => weighted_order(ds, &mut fastrand::Rng::new()),
        Strategy::LeastInFlight => {
            let mut v: Vec<(&Deployment, u32)> = ds
                .iter()
                .map(|d| (d, health.get(&d.id).in_flight()))
                .collect();
            v.sort_by_key(|(_, n)| *n);
            v.into_iter().map(|(d, _)| d).collect()
        }
        Strategy::Latency => latency_order(ds, health, &mut fastrand::Rng::new()),
        Strategy::Cost => {
            let mut v: Vec<&Deployment> = ds.iter().collect();
            v.sort_by_key(|d| d.price.map_or(u64::MAX, |p| p.typical_cost()));
            v
        }
    }
}

/// Weighted random order without replacement: the first pick follows the weights exactly.
pub fn weighted_order<'a>(ds: &'a [Deployment], rng: &mut fastrand::Rng) -> Vec<&'a Deployment> {
    let mut left: Vec<&Deployment> = ds.iter().collect();
    let mut out = Vec::with_capacity(ds.len());
    while !left.is_empty() {
        let total: u64 = left.iter().map(|d| d.weight as u64).sum();
        let i = if total == 0 {
            0
        } else {
            let mut x = rng.u64(..total);
            left.iter()
                .position(|d| {
                    if x < d.weight as u64 {
                        true
                    } else {
                        x -= d.weight as u64;
                        false
                    }
                })
                .unwrap_or(0)
        };
        out.push(left.remove(i));
    }
    out
}

/// Power of two choices over the EWMA of TTFT: of two at random, the faster first (one never
/// measured counts as fastest, so that it gets measured); then the rest, fastest first.
fn latency_order<'a>(
    ds: &'a [Deployment],
    health: &Health,
    rng: &mut fastrand::Rng,
) -> Vec<&'a Deployment> {
    let ttft = |d: &Deployment| health.get(&d.id).ewma_ttft().map_or(0, |t| t.as_micros());
    let mut rest: Vec<&Deployment> = ds.iter().collect();
    if rest.len() < 2 {
        return rest;
    }
    let a = rng.usize(..rest.len());
    let mut b = rng.usize(..rest.len() - 1);
    if b >= a {
        b += 1;
    }
    let first = if ttft(rest[a]) <= ttft(rest[b]) { a } else { b };
    let first = rest.remove(first);
    rest.sort_by_key(|d| ttft(d));
    rest.insert(0, first);
    rest
}

/// How long a provider asked us to wait, from `retry-after-ms`, `Retry-After` (seconds or an
/// HTTP date), or the longest rate-limit reset header it sent (OpenAI's
/// `x-ratelimit-reset-*` durations like `6m0s`, Anthropic's `anthropic-ratelimit-*-reset`
/// RFC 3339 times).
pub fn retry_after(
    headers: &http::HeaderMap,
    now: std::time::SystemTime,
) -> Option<std::time::Duration> {
    use std::time::Duration;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    if let Some(v) = text("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return Some(Duration::from_secs_f64(secs.max(0.0)));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    let mut longest: Option<Duration> = None;
    for (name, value) in headers {
        let name = name.as_str();
        let Ok(v) = value.to_str() else { continue };
        let wait = if name.starts_with("x-ratelimit-reset") {
            go_duration(v.trim())
        } else if name.starts_with("anthropic-ratelimit-") && name.ends_with("-reset") {
            rfc3339_secs(v.trim()).map(|at| {
                let now_secs = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                Duration::from_secs_f64((at - now_secs).max(0.0))
            })
        } else {
            None
        };
        if let Some(w) = wait {
            longest = Some(longest.map_or(w, |l| l.max(w)));
        }
    }
    longest
}

/// `1h2m3.5s`, `20ms`, `6m0s`.
fn go_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// Seconds since the epoch of an RFC 3339 time such as `2025-01-01T00:00:30Z`.
fn rfc3339_secs(s: &str) -> Option<f64> {
    let at = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(at.timestamp() as f64 + f64::from(at.timestamp_subsec_nanos()) / 1e9)
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_reads_every_form_providers_use() {
        use std::time::{Duration, SystemTime, UNIX_EPOCH};
        let now = UNIX_EPOCH + Duration::from_secs(1_735_689_600); // 2025-01-01T00:00:00Z
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert_eq!(
            super::retry_after(&h(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            super::retry_after(&h(&[("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            super::retry_after(&h(&[("retry-after", "Wed, 01 Jan 2025 00:00:30 GMT")]), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            super::retry_after(
                &h(&[
                    ("x-ratelimit-reset-requests", "1m2.5s"),
                    ("x-ratelimit-reset-tokens", "20ms")
                ]),
                now
            ),
            Some(Duration::from_secs_f64(62.5))
        );
        assert_eq!(
            super::retry_after(
                &h(&[("anthropic-ratelimit-requests-reset", "2025-01-01T00:00:12Z")]),
                now
            ),
            Some(Duration::from_secs(12))
        );
        assert_eq!(super::retry_after(&h(&[]), now), None);
        let _ = SystemTime::now();
    }
}

#[cfg(test)]
mod strategy_tests {
    use super::*;
    use crate::config::Price;

    fn snapshot() -> Snapshot {
        let text = r#"
[providers.a]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"

[providers.b]
kind = "openai"
base_url = "http://127.0.0.1:2/v1"

[models.m]
strategy = "weighted"
fallbacks = ["f"]
[[models.m.deployments]]
provider = "a"
weight = 3
[[models.m.deployments]]
provider = "b"
weight = 1

[models.f]
provider = "b"
model = "other"
fallbacks = ["m"]

[models.cheap]
strategy = "cost"
[[models.cheap.deployments]]
provider = "a"
price = { input = 5.0, output = 15.0 }
[[models.cheap.deployments]]
provider = "b"
price = { input = 0.5, output = 1.5 }
"#;
        crate::config::parse("t.toml", text, &|_| None).unwrap()
    }

    #[test]
    fn weights_hold_within_five_percent_over_ten_thousand_picks() {
        let s = snapshot();
        let r = s.route("m").unwrap();
        let mut rng = fastrand::Rng::with_seed(42);
        let n = 10_000;
        let firsts = (0..n)
            .filter(|_| &*weighted_order(&r.deployments, &mut rng)[0].provider.name == "a")
            .count();
        let share = firsts as f64 / n as f64;
        assert!((share - 0.75).abs() <= 0.75 * 0.05, "share of a: {share}");
    }

    #[test]
    fn a_session_stays_on_its_deployment_and_sessions_follow_the_weights() {
        let s = snapshot();
        let health = Health::default();
        let r = s.route("m").unwrap();
        let first = |session: u64| {
            candidates(&r, &s, &health, Some(session))[0]
                .deployment
                .id
                .clone()
        };
        // The same session, the same deployment, every time.
        let pinned = first(fnv1a(b"session-1"));
        for _ in 0..100 {
            assert_eq!(first(fnv1a(b"session-1")), pinned);
        }
        // Across sessions, first choices follow the weights (3:1).
        let n = 4000;
        let on_a = (0..n)
            .filter(|i| &*first(fnv1a(format!("session-{i}").as_bytes())) == "a/m")
            .count();
        let share = on_a as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.04, "share of a: {share}");
    }

    #[test]
    fn a_session_moves_only_when_its_deployment_cannot_take_it() {
        let s = snapshot();
        let health = Health::default();
        let r = s.route("m").unwrap();
        let session = (0..)
            .map(|i: u32| fnv1a(format!("s{i}").as_bytes()))
            .find(|&k| &*candidates(&r, &s, &health, Some(k))[0].deployment.id == "a/m")
            .unwrap();
        let settings = s.breaker;
        let a = health.get(&"a/m".into());
        for _ in 0..settings.consecutive_failures.max(1) {
            let ticket = a.try_acquire();
            if let Some(t) = ticket {
                health.failure(&t, health::Failure::Broken, None, &settings);
            }
        }
        assert_eq!(a.state(), health::BreakerState::Open);
        let c = candidates(&r, &s, &health, Some(session));
        assert_eq!(&*c[0].deployment.id, "b/m");
        assert_eq!(&*c[1].deployment.id, "a/m");
    }

    #[test]
    fn fallbacks_follow_each_deployment_once_without_looping() {
        let s = snapshot();
        let health = Health::default();
        let c = candidates(&s.route("m").unwrap(), &s, &health, None);
        let ids: Vec<&str> = c.iter().map(|c| &*c.deployment.id).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[2], "b/other");
        assert!(ids.contains(&"a/m") && ids.contains(&"b/m"));
    }

    fn two_way(strategy: &str) -> Snapshot {
        let text = format!(
            r#"
[providers.a]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
[providers.b]
kind = "openai"
base_url = "http://127.0.0.1:2/v1"
[models.m]
strategy = "{strategy}"
[[models.m.deployments]]
provider = "a"
[[models.m.deployments]]
provider = "b"
"#
        );
        crate::config::parse("t.toml", &text, &|_| None).unwrap()
    }

    #[test]
    fn least_inflight_prefers_the_idle_deployment() {
        let s = two_way("least_inflight");
        let health = Health::default();
        let first = candidates(&s.route("m").unwrap(), &s, &health, None);
        assert_eq!(&*first[0].deployment.id, "a/m");
        let _busy = first[0].health.try_acquire().unwrap();
        let next = candidates(&s.route("m").unwrap(), &s, &health, None);
        assert_eq!(&*next[0].deployment.id, "b/m");
    }

    #[test]
    fn latency_prefers_the_lower_ttft_estimate() {
        let s = two_way("latency");
        let health = Health::default();
        let c = candidates(&s.route("m").unwrap(), &s, &health, None);
        for cand in &c {
            let t = cand.health.try_acquire().unwrap();
            let ms = if &*cand.deployment.id == "a/m" {
                300
            } else {
                20
            };
            health.success(&t, Some(std::time::Duration::from_millis(ms)), &s.breaker);
        }
        // With two deployments, both are always the two choices: the faster wins every time.
        for _ in 0..50 {
            let c = candidates(&s.route("m").unwrap(), &s, &health, None);
            assert_eq!(&*c[0].deployment.id, "b/m");
        }
    }

    #[test]
    fn cost_puts_the_cheapest_first_and_unhealthy_last() {
        let s = snapshot();
        let health = Health::default();
        let c = candidates(&s.route("cheap").unwrap(), &s, &health, None);
        assert_eq!(&*c[0].deployment.id, "b/cheap");
        assert_eq!(
            c[0].deployment.price,
            Some(Price {
                input: 500_000,
                output: 1_500_000,
                cached_input: 500_000,
                cache_write: 500_000,
            })
        );
        // b rate limited: a goes first now.
        let t = c[0].health.try_acquire().unwrap();
        health.failure(
            &t,
            health::Failure::RateLimited,
            Some(std::time::Duration::from_secs(5)),
            &s.breaker,
        );
        drop(t);
        let c = candidates(&s.route("cheap").unwrap(), &s, &health, None);
        assert_eq!(&*c[0].deployment.id, "a/cheap");
    }
}
