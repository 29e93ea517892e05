//! Every Prometheus metric Junction exports, in one registry (the `prometheus` crate); the
//! admin listener only serves [`Metrics::scrape`]. Label values are bounded by construction:
//! models and providers are the configured names (a `provider/model` addressed directly is
//! labelled `provider/*`), deployments are configured ids, and status classes, token kinds,
//! outcomes and breaker states are fixed sets.
//!
//! On the request path a (model, provider) pair's counters are resolved once and kept
//! ([`Series`]): a request costs one read-locked lookup and the atomic updates, never a
//! label hash per metric.

use crate::usage::Usage;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Seconds: request duration and time to first token.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Seconds: time spent in the gateway itself.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_007_5,
    0.000_01,
    0.000_015,
    0.000_025,
    0.000_05,
    0.000_075,
    0.000_1,
    0.000_15,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.1,
];

/// Status classes counted: 1xx–5xx.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Token kinds counted.
const TOKEN_KINDS: [&str; 5] = [
    "input",
    "output",
    "cached_input",
    "cache_write",
    "reasoning",
];

/// How an upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// Answered with a success.
    Ok,
    /// Answered 4xx about the request itself: the client's to fix.
    Rejected,
    RateLimited,
    /// 5xx, connection failure, timeout.
    Failed,
    /// The client left first.
    ClientGone,
}

impl AttemptOutcome {
    const ALL: [AttemptOutcome; 5] = [
        AttemptOutcome::Ok,
        AttemptOutcome::Rejected,
        AttemptOutcome::RateLimited,
        AttemptOutcome::Failed,
        AttemptOutcome::ClientGone,
    ];

    fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Rejected => "rejected",
            AttemptOutcome::RateLimited => "rate_limited",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::ClientGone => "client_gone",
        }
    }
}

/// A (model, provider) pair's metrics, resolved from their vectors once.
pub struct Series {
    requests: [IntCounter; 5],
    pub duration: Histogram,
    pub ttft: Histogram,
    tokens: [IntCounter; 5],
    cost_micros: IntCounter,
}

/// The label of a request's model and provider: configured names, or empty.
pub struct Labels {
    pub model: Arc<str>,
    pub provider: Arc<str>,
}

/// A breaker's state, as the `state` label says it (`routing::health::BreakerState`).
pub type BreakerState = &'static str;

/// What the process counts elsewhere, read when the metrics are scraped.
pub struct Sampled<'a> {
    pub in_flight: u64,
    pub ledger_queue_depth: u64,
    pub ledger_written: u64,
    pub ledger_dropped: u64,
    pub ledger_write_errors: u64,
    pub ledger_unestimated: u64,
    pub spans_exported: u64,
    pub spans_dropped: u64,
    /// Config reloads applied and refused, and whether the last one was applied (when the
    /// config came from a file).
    pub reloads: Option<(u64, u64, bool)>,
    /// Each deployment's breaker state, and every state there is.
    pub breakers: Vec<(&'a str, BreakerState)>,
    pub breaker_states: &'a [BreakerState],
}

/// Series by (model, provider) label values.
type SeriesMap = HashMap<(Arc<str>, Arc<str>), Arc<Series>>;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    pub overhead: Histogram,
    tokens: IntCounterVec,
    cost_micros: IntCounterVec,
    attempts: IntCounterVec,
    limit_refusals: IntCounterVec,
    budget_alerts: IntCounterVec,
    /// Admissions or settlements that could not reach the shared counters (Redis).
    pub limits_unreachable: IntCounter,
    series: RwLock<SeriesMap>,
    attempt_series: RwLock<HashMap<Arc<str>, Arc<[IntCounter; 5]>>>,
    sampled: SampledMetrics,
    /// One scrape at a time: the sampled counters are set from their sources while it runs.
    scraping: Mutex<()>,
}

/// The metrics whose values live elsewhere, set at each scrape.
struct SampledMetrics {
    in_flight: IntGauge,
    ledger_queue_depth: IntGauge,
    ledger_written: IntCounter,
    ledger_dropped: IntCounter,
    ledger_write_errors: IntCounter,
    ledger_unestimated: IntCounter,
    spans_exported: IntCounter,
    spans_dropped: IntCounter,
    reloads: IntCounterVec,
    last_reload_ok: IntGaugeVec,
    breaker_open: IntGaugeVec,
    breaker_state: IntGaugeVec,
}

/// Registers `metric` and hands it back (names and labels are constants: a failure here is a
/// bug, caught by the tests).
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("a metric registers once");
    metric
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid metric"))
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(r, HistogramVec::new(opts, labels).expect("valid metric"))
}

impl Default for Metrics {
    fn default() -> Self {
        let r = Registry::new();
        let pair = &["model", "provider"];
        let requests = counter_vec(
            &r,
            "junction_requests_total",
            "Chat requests by model, provider and status class.",
            &["model", "provider", "status_class"],
        );
        let duration = histogram_vec(
            &r,
            "junction_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            LATENCY_BUCKETS,
            pair,
        );
        let ttft = histogram_vec(
            &r,
            "junction_ttft_seconds",
            "Time from the request's arrival to the first byte of the answer.",
            LATENCY_BUCKETS,
            pair,
        );
        let overhead = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "junction_gateway_overhead_seconds",
                    "Time spent in the gateway itself: the request's duration less reading its \
                     body, waiting on upstreams and backing off.",
                )
                .buckets(OVERHEAD_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
        );
        let tokens = counter_vec(
            &r,
            "junction_tokens_total",
            "Tokens accounted, by kind (cached_input and cache_write are part of input, \
             reasoning of output).",
            &["model", "provider", "kind"],
        );
        let cost_micros = counter_vec(
            &r,
            "junction_cost_usd_micros_total",
            "Cost accounted, in micro-dollars (requests of unknown price add nothing).",
            pair,
        );
        let attempts = counter_vec(
            &r,
            "junction_upstream_attempts_total",
            "Upstream attempts by provider and outcome.",
            &["provider", "outcome"],
        );
        let limit_refusals = counter_vec(
            &r,
            "junction_limit_refusals_total",
            "Requests refused by a limit or budget, by the level and the limit that refused.",
            &["level", "limit"],
        );
        let budget_alerts = counter_vec(
            &r,
            "junction_budget_alerts_total",
            "Budget thresholds crossed, by level and percent of the budget.",
            &["level", "percent"],
        );
        let limits_unreachable = counter(
            &r,
            "junction_limits_unreachable_total",
            "Admissions and settlements that could not reach the shared counters (Redis);              `[redis] on_error` decided the admissions.",
        );
        let sampled = SampledMetrics {
            in_flight: gauge(
                &r,
                "junction_in_flight_requests",
                "Client requests being served.",
            ),
            ledger_queue_depth: gauge(
                &r,
                "junction_ledger_queue_depth",
                "Records waiting for the accounting thread.",
            ),
            ledger_written: counter(
                &r,
                "junction_ledger_records_written_total",
                "Records written by the accounting thread (ledger and access log).",
            ),
            ledger_dropped: counter(
                &r,
                "junction_ledger_records_dropped_total",
                "Records dropped because the queue was full.",
            ),
            ledger_write_errors: counter(
                &r,
                "junction_ledger_write_errors_total",
                "Ledger rows lost because the database could not be written.",
            ),
            ledger_unestimated: counter(
                &r,
                "junction_ledger_unestimated_total",
                "Records whose body and chunks were let go (queue over its byte budget), so \
                 their usage could not be estimated.",
            ),
            spans_exported: counter(
                &r,
                "junction_spans_exported_total",
                "Spans the OTLP collector took.",
            ),
            spans_dropped: counter(
                &r,
                "junction_spans_dropped_total",
                "Spans dropped (queue full or export failed).",
            ),
            reloads: counter_vec(
                &r,
                "junction_config_reloads_total",
                "Config reloads by result.",
                &["result"],
            ),
            last_reload_ok: gauge_vec(
                &r,
                "junction_config_last_reload_ok",
                "1 when the last reload was applied (or none was tried).",
                &[],
            ),
            breaker_open: gauge_vec(
                &r,
                "junction_deployment_breaker_open",
                "1 when a deployment's breaker is open or half-open.",
                &["deployment"],
            ),
            breaker_state: gauge_vec(
                &r,
                "junction_deployment_breaker_state",
                "1 for the state each deployment's breaker is in.",
                &["deployment", "state"],
            ),
        };
        Metrics {
            registry: r,
            requests,
            duration,
            ttft,
            overhead,
            tokens,
            cost_micros,
            attempts,
            limit_refusals,
            budget_alerts,
            limits_unreachable,
            series: RwLock::default(),
            attempt_series: RwLock::default(),
            sampled,
            scraping: Mutex::new(()),
        }
    }
}

impl Metrics {
    // hot path: a read lock and a hash lookup; the write lock only for a new pair.
    pub fn series(&self, labels: &Labels) -> Arc<Series> {
        let key = (labels.model.clone(), labels.provider.clone());
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return s.clone();
        }
        let pair = [&*labels.model, &*labels.provider];
        let series = Series {
            requests: CLASSES
                .map(|class| self.requests.with_label_values(&[pair[0], pair[1], class])),
            duration: self.duration.with_label_values(&pair),
            ttft: self.ttft.with_label_values(&pair),
            tokens: TOKEN_KINDS
                .map(|kind| self.tokens.with_label_values(&[pair[0], pair[1], kind])),
            cost_micros: self.cost_micros.with_label_values(&pair),
        };
        self.series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(series))
            .clone()
    }

    /// A request refused by `limit` at a level of `kind`.
    pub fn limit_refused(&self, kind: &str, limit: &str) {
        self.limit_refusals.with_label_values(&[kind, limit]).inc();
    }

    /// A budget crossed `percent` of itself.
    pub fn budget_alert(&self, kind: &str, percent: u32) {
        self.budget_alerts
            .with_label_values(&[kind, &percent.to_string()])
            .inc();
    }

    /// A finished request: its status, duration, TTFT and the time the gateway itself took.
    pub fn request(
        &self,
        labels: &Labels,
        status: u16,
        duration: Duration,
        ttft: Option<Duration>,
        overhead: Option<Duration>,
    ) {
        let s = self.series(labels);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        s.requests[class].inc();
        s.duration.observe(duration.as_secs_f64());
        if let Some(t) = ttft {
            s.ttft.observe(t.as_secs_f64());
        }
        if let Some(o) = overhead {
            self.overhead.observe(o.as_secs_f64());
        }
    }

    /// Tokens and cost of an accounted request (called by the accounting thread).
    pub fn usage(&self, labels: &Labels, usage: &Usage, cost_micros: Option<u64>) {
        let s = self.series(labels);
        let kinds = [
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
        ];
        for (counter, n) in s.tokens.iter().zip(kinds) {
            counter.inc_by(n);
        }
        if let Some(c) = cost_micros {
            s.cost_micros.inc_by(c);
        }
    }

    pub fn attempt(&self, provider: &Arc<str>, outcome: AttemptOutcome) {
        let i = AttemptOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        if let Some(c) = self
            .attempt_series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(provider)
        {
            c[i].inc();
            return;
        }
        let counters = AttemptOutcome::ALL
            .map(|o| self.attempts.with_label_values(&[&**provider, o.as_str()]));
        self.attempt_series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(provider.clone())
            .or_insert_with(|| Arc::new(counters))[i]
            .inc();
    }

    /// Every metric in Prometheus' text format, the sampled ones set from `sampled` first.
    pub fn scrape(&self, sampled: &Sampled<'_>) -> Vec<u8> {
        let _one = self.scraping.lock().unwrap_or_else(|e| e.into_inner());
        let m = &self.sampled;
        m.in_flight.set(sampled.in_flight as i64);
        m.ledger_queue_depth.set(sampled.ledger_queue_depth as i64);
        for (c, v) in [
            (&m.ledger_written, sampled.ledger_written),
            (&m.ledger_dropped, sampled.ledger_dropped),
            (&m.ledger_write_errors, sampled.ledger_write_errors),
            (&m.ledger_unestimated, sampled.ledger_unestimated),
            (&m.spans_exported, sampled.spans_exported),
            (&m.spans_dropped, sampled.spans_dropped),
        ] {
            c.reset();
            c.inc_by(v);
        }
        if let Some((applied, refused, last_ok)) = sampled.reloads {
            for (result, n) in [("applied", applied), ("refused", refused)] {
                let c = m.reloads.with_label_values(&[result]);
                c.reset();
                c.inc_by(n);
            }
            m.last_reload_ok
                .with_label_values(&[] as &[&str])
                .set(i64::from(last_ok));
        }
        // Deployments removed by a reload leave the lists.
        m.breaker_open.reset();
        m.breaker_state.reset();
        for (id, state) in &sampled.breakers {
            let open = *state != sampled.breaker_states[0];
            m.breaker_open.with_label_values(&[id]).set(i64::from(open));
            for s in sampled.breaker_states {
                m.breaker_state
                    .with_label_values(&[id, s])
                    .set(i64::from(state == s));
            }
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("the text format writes to a Vec");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled() -> Sampled<'static> {
        Sampled {
            in_flight: 3,
            ledger_queue_depth: 0,
            ledger_written: 9,
            ledger_dropped: 0,
            ledger_write_errors: 0,
            ledger_unestimated: 0,
            spans_exported: 0,
            spans_dropped: 0,
            reloads: None,
            breakers: vec![("a/m", "open")],
            breaker_states: &["closed", "open", "half_open"],
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        for us in [5, 20, 20, 40, 2000] {
            m.overhead.observe(Duration::from_micros(us).as_secs_f64());
        }
        let out = String::from_utf8(m.scrape(&sampled())).unwrap();
        let name = "junction_gateway_overhead_seconds";
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"0.000005\"}} 1\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"0.00001\"}} 1\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"0.000025\"}} 3\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"0.00005\"}} 4\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 5\n")),
            "{out}"
        );
        assert!(out.contains(&format!("{name}_count 5\n")), "{out}");
        let sum: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_sum ")))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 0.002085).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn labels_are_escaped_and_series_counted_by_class() {
        let m = Metrics::default();
        let l = Labels {
            model: "a\"b".into(),
            provider: "p".into(),
        };
        m.request(&l, 200, Duration::from_millis(3), None, None);
        m.request(&l, 503, Duration::from_millis(3), None, None);
        m.request(&l, 200, Duration::from_millis(3), None, None);
        m.attempt(&"p".into(), AttemptOutcome::Failed);
        let out = String::from_utf8(m.scrape(&sampled())).unwrap();
        assert!(
            out.contains(
                "junction_requests_total{model=\"a\\\"b\",provider=\"p\",status_class=\"2xx\"} 2\n"
            ),
            "{out}"
        );
        assert!(out.contains("status_class=\"5xx\"} 1\n"));
        assert!(
            out.contains("junction_upstream_attempts_total{outcome=\"failed\",provider=\"p\"} 1\n")
        );
        // The sampled values, and no reload metrics where the config came from no file.
        assert!(out.contains("junction_in_flight_requests 3\n"));
        assert!(out.contains("junction_ledger_records_written_total 9\n"));
        assert!(out.contains("junction_deployment_breaker_open{deployment=\"a/m\"} 1\n"));
        assert!(out
            .contains("junction_deployment_breaker_state{deployment=\"a/m\",state=\"open\"} 1\n"));
        assert!(!out.contains("junction_config_last_reload_ok "));
        assert!(out.contains("# TYPE junction_ledger_records_written_total counter\n"));
    }

    #[test]
    fn a_second_scrape_counts_from_the_sources_not_on_top_of_the_first() {
        let m = Metrics::default();
        let mut s = sampled();
        s.reloads = Some((4, 1, true));
        let _ = m.scrape(&s);
        s.ledger_written = 12;
        s.breakers.clear();
        let out = String::from_utf8(m.scrape(&s)).unwrap();
        assert!(
            out.contains("junction_ledger_records_written_total 12\n"),
            "{out}"
        );
        assert!(out.contains("junction_config_reloads_total{result=\"applied\"} 4\n"));
        assert!(out.contains("junction_config_last_reload_ok 1\n"));
        // A deployment gone from the config is gone from the metrics.
        assert!(!out.contains("deployment=\"a/m\""), "{out}");
    }
}
