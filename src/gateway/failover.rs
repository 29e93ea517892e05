//! Step 5, failover: try the candidates in order until one answers; retry a deployment with
//! backoff, move on without delay, never after the first byte reached the client. Each try is
//! one [`attempt`](super::attempt).

use super::attempt::{self, Attempt, Context};
use super::relay::Outcome;
use super::Gateway;
use crate::config::{Deployment, ModelRoute, Snapshot};
use crate::error::{Code, ErrorKind, GatewayError};
use crate::metrics::AttemptOutcome;
use crate::providers;
use crate::routing::{self, health::Failure};
use pingora_core::protocols::http::ServerSession;
use std::time::{Duration, Instant};

/// What the attempt loop did, for accounting, whatever its result.
#[derive(Default)]
pub struct Tally {
    pub attempts: u32,
    /// The deployment that answered, or the last one tried.
    pub deployment: Option<Deployment>,
    pub ttft: Option<Duration>,
    /// Time spent waiting on upstreams and backing off: not the gateway's own.
    pub waited: Duration,
    /// What the client was sent (a prefix), for an estimate when usage is missing.
    pub relayed: crate::usage::Kept,
}

/// Serves a chat completion from the first candidate that answers.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
    route: &ModelRoute,
    inbound: &providers::Inbound<'_>,
    ctx: &Context<'_>,
    tally: &mut Tally,
) -> Result<Outcome, GatewayError> {
    let settings = &snapshot.routing;
    let candidates = routing::candidates(route, snapshot, &gateway.health, inbound.info.session);
    let deadline = route.deployments[0]
        .timeouts
        .total
        .map(|t| Instant::now() + t);
    let mut reasons: Vec<String> = Vec::new();
    let mut all_rate_limited = true;
    let mut soonest_retry: Option<Duration> = None;
    // Deployments that answered (or failed to) and the last error: when only one was tried,
    // the client gets its error as it is (status, message, Retry-After).
    let mut tried: Vec<&str> = Vec::new();
    let mut last_error: Option<GatewayError> = None;
    'candidates: for c in &candidates {
        let id = &c.deployment.id;
        let mut tries = 0;
        loop {
            if tally.attempts >= settings.attempts {
                reasons.push(format!("attempt budget of {} used up", settings.attempts));
                break 'candidates;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                reasons.push("total deadline reached".into());
                break 'candidates;
            }
            let Some(ticket) = c.health.try_acquire() else {
                match c.health.cooldown_left() {
                    Some(left) => {
                        reasons.push(format!(
                            "{id}: rate limited for {} ms more",
                            left.as_millis()
                        ));
                        soonest_retry = Some(soonest_retry.map_or(left, |s| s.min(left)));
                    }
                    None => {
                        reasons.push(format!("{id}: circuit open"));
                        all_rate_limited = false;
                    }
                }
                continue 'candidates;
            };
            // Re-translated for each candidate's provider kind; a request the provider kind
            // cannot take is the client's to fix.
            let native = ctx.front.native_to(&c.deployment.provider);
            let upstream = providers::build_request(&c.deployment, inbound, native)?;
            tally.attempts += 1;
            tally.deployment = Some(c.deployment.clone());
            let started = Instant::now();
            let result = attempt::attempt(
                &gateway.connector,
                session,
                &c.deployment,
                inbound.info,
                upstream,
                ctx,
                &mut tally.relayed,
            )
            .await;
            tally.waited += started.elapsed();
            let provider = &c.deployment.provider.name;
            match result {
                Attempt::Committed { outcome, ttft } => {
                    gateway
                        .health
                        .success(&ticket, Some(ttft), &snapshot.breaker);
                    gateway.metrics.attempt(provider, AttemptOutcome::Ok);
                    tally.ttft = Some(ttft);
                    tally.waited = tally.waited.saturating_sub(outcome.own);
                    return Ok(outcome);
                }
                Attempt::Final(r) => {
                    // The provider answered; the request or the client was the trouble.
                    gateway.health.success(&ticket, None, &snapshot.breaker);
                    let how = match &r {
                        Ok(_) => AttemptOutcome::ClientGone,
                        Err(_) => AttemptOutcome::Rejected,
                    };
                    gateway.metrics.attempt(provider, how);
                    return r;
                }
                Attempt::Failed {
                    error,
                    failure,
                    retry_after,
                } => {
                    gateway
                        .health
                        .failure(&ticket, failure, retry_after, &snapshot.breaker);
                    drop(ticket);
                    gateway.metrics.attempt(
                        provider,
                        match failure {
                            Failure::RateLimited => AttemptOutcome::RateLimited,
                            Failure::Broken => AttemptOutcome::Failed,
                        },
                    );
                    tracing::debug!(deployment = %id, status = error.status(), "attempt failed");
                    let reason = format!("{id}: {}", error.message_or_code().trim_end_matches('.'));
                    if reasons.last() != Some(&reason) {
                        reasons.push(reason);
                    }
                    if !tried.contains(&&**id) {
                        tried.push(id);
                    }
                    let retries_help = error.retries_help;
                    last_error = Some(error);
                    if failure == Failure::RateLimited {
                        let wait = retry_after.unwrap_or(Duration::from_secs(1));
                        soonest_retry = Some(soonest_retry.map_or(wait, |s| s.min(wait)));
                        // Not again before it said: on to the next.
                        continue 'candidates;
                    }
                    all_rate_limited = false;
                    if tries >= settings.retries_per_deployment || !retries_help {
                        continue 'candidates;
                    }
                    tries += 1;
                    let pause = backoff(settings.backoff_base, settings.backoff_max, tries);
                    let pause = match deadline {
                        Some(d) => pause.min(d.saturating_duration_since(Instant::now())),
                        None => pause,
                    };
                    // The client may leave while we wait.
                    let paused = Instant::now();
                    let gone = tokio::select! {
                        _ = tokio::time::sleep(pause) => false,
                        _ = session.read_body_or_idle(true) => true,
                    };
                    tally.waited += paused.elapsed();
                    if gone {
                        return Ok(Outcome::client_gone());
                    }
                }
            }
        }
    }
    if let (1, Some(e)) = (tried.len(), last_error) {
        if reasons.len() == 1 || candidates.len() == 1 {
            return Err(e);
        }
    }
    Err(all_failed(reasons, all_rate_limited, soonest_retry))
}

/// Full jitter: uniform in [0, min(max, base × 2^try)].
pub fn backoff(base: Duration, max: Duration, tries: u32) -> Duration {
    let cap = base
        .saturating_mul(1u32 << tries.min(16))
        .min(max)
        .as_millis() as u64;
    Duration::from_millis(fastrand::u64(..=cap))
}

fn all_failed(
    reasons: Vec<String>,
    all_rate_limited: bool,
    soonest_retry: Option<Duration>,
) -> GatewayError {
    let list = reasons.join("; ");
    if all_rate_limited && soonest_retry.is_some() {
        let mut e = GatewayError::new(
            ErrorKind::RateLimited,
            format!("Every deployment is rate limited: {list}."),
        )
        .code(Code::RateLimitExceeded);
        e.retry_after = soonest_retry.map(|d| d.as_secs_f64().ceil().max(1.0) as u32);
        return e;
    }
    GatewayError::new(
        ErrorKind::Unavailable,
        format!("No deployment could serve the request: {list}."),
    )
    .code(Code::NoDeploymentAvailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_its_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(2000);
        for tries in 0..20 {
            for _ in 0..100 {
                let b = backoff(base, max, tries);
                assert!(b <= (base * (1 << tries.min(16))).min(max));
            }
        }
    }

    #[test]
    fn all_rate_limited_is_429_with_the_soonest_retry() {
        let e = all_failed(
            vec!["a: rate limited".into()],
            true,
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after, Some(2));
        let e = all_failed(vec!["a: circuit open".into()], false, None);
        assert_eq!(e.status(), 503);
        assert!(e.message.contains("a: circuit open"));
    }
}
