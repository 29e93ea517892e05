//! Prometheus metrics: atomic counters and fixed-bucket histograms, rendered as text on the
//! admin listener. Label values are bounded by construction: models and providers are the
//! configured names (a `provider/model` addressed directly is labelled `provider/*`), status
//! classes and outcomes are fixed sets.

use crate::usage::Usage;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
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

/// A histogram with fixed bucket bounds (seconds); the sum is kept in microseconds (a u64 of
/// them lasts 580,000 years of summed durations).
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), the last one for +Inf.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < s);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The `q` quantile, interpolated within its bucket as Prometheus' `histogram_quantile`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, c) in counts.iter().enumerate() {
            if (below + c) as f64 >= rank && *c > 0 {
                let lo = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let Some(&hi) = self.bounds.get(i) else {
                    return Some(lo);
                };
                return Some(lo + (hi - lo) * (rank - below as f64) / *c as f64);
            }
            below += c;
        }
        None
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Relaxed);
            let le = match self.bounds.get(i) {
                Some(b) => format!("{b}"),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

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

/// Everything counted for one (model, provider) pair.
pub struct Series {
    requests: [AtomicU64; 5],
    pub duration: Histogram,
    pub ttft: Histogram,
    tokens: [AtomicU64; 5],
    cost_micros: AtomicU64,
}

impl Series {
    fn new() -> Series {
        Series {
            requests: Default::default(),
            duration: Histogram::new(LATENCY_BUCKETS),
            ttft: Histogram::new(LATENCY_BUCKETS),
            tokens: Default::default(),
            cost_micros: AtomicU64::new(0),
        }
    }
}

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

/// Series by (model, provider) label values.
type SeriesMap = HashMap<(Arc<str>, Arc<str>), Arc<Series>>;

/// The process's metrics.
pub struct Metrics {
    series: RwLock<SeriesMap>,
    attempts: RwLock<HashMap<Arc<str>, Arc<[AtomicU64; 5]>>>,
    pub overhead: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            series: RwLock::default(),
            attempts: RwLock::default(),
            overhead: Histogram::new(OVERHEAD_BUCKETS),
        }
    }
}

/// The label of a request's model and provider: configured names, or empty.
pub struct Labels {
    pub model: Arc<str>,
    pub provider: Arc<str>,
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
        self.series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(Series::new()))
            .clone()
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
        s.requests[class].fetch_add(1, Relaxed);
        s.duration.observe(duration);
        if let Some(t) = ttft {
            s.ttft.observe(t);
        }
        if let Some(o) = overhead {
            self.overhead.observe(o);
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
            counter.fetch_add(n, Relaxed);
        }
        if let Some(c) = cost_micros {
            s.cost_micros.fetch_add(c, Relaxed);
        }
    }

    pub fn attempt(&self, provider: &Arc<str>, outcome: AttemptOutcome) {
        let i = AttemptOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        if let Some(c) = self
            .attempts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(provider)
        {
            c[i].fetch_add(1, Relaxed);
            return;
        }
        self.attempts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(provider.clone())
            .or_default()[i]
            .fetch_add(1, Relaxed);
    }

    /// Prometheus text of the request, token, cost and attempt metrics.
    pub fn render(&self, out: &mut String) {
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut pairs: Vec<_> = series.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let labels = |(m, p): &(Arc<str>, Arc<str>)| {
            format!("model=\"{}\",provider=\"{}\"", escape(m), escape(p))
        };
        header(
            out,
            "junction_requests_total",
            "counter",
            "Chat requests by model, provider and status class.",
        );
        for (k, s) in &pairs {
            for (class, c) in CLASSES.iter().zip(&s.requests) {
                let n = c.load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "junction_requests_total{{{},status_class=\"{class}\"}} {n}",
                        labels(k)
                    );
                }
            }
        }
        header(
            out,
            "junction_request_duration_seconds",
            "histogram",
            "Time from the request's arrival to the end of its response.",
        );
        for (k, s) in &pairs {
            s.duration
                .render(out, "junction_request_duration_seconds", &labels(k));
        }
        header(
            out,
            "junction_ttft_seconds",
            "histogram",
            "Time from the request's arrival to the first byte of the answer.",
        );
        for (k, s) in &pairs {
            if s.ttft.count() > 0 {
                s.ttft.render(out, "junction_ttft_seconds", &labels(k));
            }
        }
        header(out, "junction_gateway_overhead_seconds", "histogram", "Time spent in the gateway itself: the request's duration less reading its body, waiting on upstreams and backing off.");
        self.overhead
            .render(out, "junction_gateway_overhead_seconds", "");
        header(out, "junction_tokens_total", "counter", "Tokens accounted, by kind (cached_input and cache_write are part of input, reasoning of output).");
        for (k, s) in &pairs {
            for (kind, c) in TOKEN_KINDS.iter().zip(&s.tokens) {
                let _ = writeln!(
                    out,
                    "junction_tokens_total{{{},kind=\"{kind}\"}} {}",
                    labels(k),
                    c.load(Relaxed)
                );
            }
        }
        header(
            out,
            "junction_cost_usd_micros_total",
            "counter",
            "Cost accounted, in micro-dollars (requests of unknown price add nothing).",
        );
        for (k, s) in &pairs {
            let _ = writeln!(
                out,
                "junction_cost_usd_micros_total{{{}}} {}",
                labels(k),
                s.cost_micros.load(Relaxed)
            );
        }
        drop(series);
        header(
            out,
            "junction_upstream_attempts_total",
            "counter",
            "Upstream attempts by provider and outcome.",
        );
        let attempts = self.attempts.read().unwrap_or_else(|e| e.into_inner());
        let mut providers: Vec<_> = attempts.iter().collect();
        providers.sort_by(|a, b| a.0.cmp(b.0));
        for (p, counts) in providers {
            for (o, c) in AttemptOutcome::ALL.iter().zip(counts.iter()) {
                let _ = writeln!(
                    out,
                    "junction_upstream_attempts_total{{provider=\"{}\",outcome=\"{}\"}} {}",
                    escape(p),
                    o.as_str(),
                    c.load(Relaxed)
                );
            }
        }
    }
}

pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped for the text format.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_quantiles_interpolate() {
        let h = Histogram::new(OVERHEAD_BUCKETS);
        for us in [5, 20, 20, 40, 2000] {
            h.observe(Duration::from_micros(us));
        }
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.000005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.00001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.000025\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.00005\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_count 5\n"));
        assert!(out.contains("x_sum 0.002085\n"), "{out}");
        // The median (rank 2.5 of 5) lies in the 10–25 µs bucket.
        let p50 = h.quantile(0.5).unwrap();
        assert!((0.000_01..=0.000_025).contains(&p50), "{p50}");
        assert_eq!(Histogram::new(OVERHEAD_BUCKETS).quantile(0.5), None);
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
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "junction_requests_total{model=\"a\\\"b\",provider=\"p\",status_class=\"2xx\"} 2\n"
        ));
        assert!(out.contains("status_class=\"5xx\"} 1\n"));
    }
}
