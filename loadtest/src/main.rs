//! `junction-load`: an HTTP/1.1 keep-alive load generator for 127.0.0.1 targets.
//!
//! - `--mode closed`: N workers, each sends a request, reads the whole response, sends the
//!   next. Targets are interleaved request by request (shuffled each round), so a noisy
//!   machine slows them all alike and their latencies compare as ratios.
//! - `--mode open`: requests are sent at a constant rate whatever the answers do (new
//!   connections are opened when all are busy), and latency is measured from each request's
//!   *scheduled* send time, so queueing in the target is not hidden. Targets run one after the
//!   other for each `--rates` step (shuffled per step), so they share the machine's state.
//!
//! Stream aware (`--stream`): time to the response header, time to the first `data:` event,
//! time to the first token (TTFT: the first event that carries text, reasoning or a tool
//! call, in whichever protocol the target speaks; opening events such as a role chunk or
//! `message_start` carry none), the gaps between events, and the total, per request. Every target and every loop
//! is bounded in time; results as JSON with `--out`.
//!
//! ```text
//! junction-load --duration 20 --concurrency 1 \
//!   --target 'direct|http://127.0.0.1:8081/v1/chat/completions|gpt-4o-mini|' \
//!   --target 'junction|http://127.0.0.1:8080/v1/chat/completions|demo-openai|sk-junction-demo' \
//!   --out loadtest/results/latency.json
//! junction-load --mode open --rates 1000,2000,4000 --step-secs 3 --target … --target …
//! ```

use clap::Parser;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "HTTP/1.1 keep-alive load generator for Junction (127.0.0.1 targets only)")]
struct Args {
    /// `name|url|model|key[|pid[|headers]]` (key may be empty; with a pid, CPU time per 1,000
    /// requests is measured; headers `a: 1;b: 2` are sent to this target only). The first
    /// target is the baseline.
    #[arg(long, required = true)]
    target: Vec<String>,
    /// `closed` (concurrency N) or `open` (constant rate, see `--rates`).
    #[arg(long, default_value = "closed")]
    mode: String,
    /// Seconds to run, closed loop (bounded: at most 600).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Concurrent connections per target, closed loop.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Requests per second to try, open loop, in order (each for `--step-secs` per target).
    #[arg(long, value_delimiter = ',')]
    rates: Vec<u64>,
    /// Seconds per rate step and target, open loop (at most 60).
    #[arg(long, default_value_t = 3)]
    step_secs: u64,
    /// Stop the ramp for a target once a step fails this p99 (ms) or any request fails.
    #[arg(long, default_value_t = 1000.0)]
    stop_p99_ms: f64,
    /// Most connections per target, open loop.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Ask for a streamed answer and time its events.
    #[arg(long)]
    stream: bool,
    /// Approximate size of the user message, in bytes.
    #[arg(long, default_value_t = 1024)]
    prompt_bytes: usize,
    /// Extra request header `name: value` for every target (e.g. mock controls).
    #[arg(long)]
    header: Vec<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

struct Target {
    name: String,
    addr: SocketAddr,
    request: Vec<u8>,
    pid: Option<u32>,
}

fn parse_target(spec: &str, a: &Args) -> Target {
    let parts: Vec<&str> = spec.split('|').collect();
    assert!(
        (4..=6).contains(&parts.len()),
        "target must be name|url|model|key[|pid[|headers]]: {spec}"
    );
    let uri: http::Uri = parts[1].parse().expect("target url");
    let host = uri.host().expect("host");
    assert!(
        host == "127.0.0.1" || host == "localhost",
        "targets must be on 127.0.0.1"
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", uri.port_u16().unwrap_or(80))
        .parse()
        .unwrap();
    let body = format!(
        r#"{{"model":"{}","messages":[{{"role":"user","content":"{}"}}],"stream":{}}}"#,
        parts[2],
        "a".repeat(a.prompt_bytes),
        a.stream
    );
    let mut headers = String::new();
    if !parts[3].is_empty() {
        headers.push_str(&format!("Authorization: Bearer {}\r\n", parts[3]));
    }
    let own = parts.get(5).map_or(Vec::new(), |h| {
        h.split(';').filter(|h| !h.trim().is_empty()).collect()
    });
    for h in a.header.iter().map(String::as_str).chain(own) {
        headers.push_str(h.trim());
        headers.push_str("\r\n");
    }
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        uri.path(),
        body.len()
    )
    .into_bytes();
    Target {
        name: parts[0].to_string(),
        addr,
        request,
        pid: parts.get(4).and_then(|p| p.parse().ok()),
    }
}

/// Times of one exchange, from when it was sent (or scheduled).
#[derive(Default, Clone, Copy)]
struct Timing {
    headers: f64,
    /// First `data:` event (streams).
    first_event: Option<f64>,
    /// First event with a token of the answer (streams).
    first_token: Option<f64>,
    /// Longest gap between two events (streams).
    max_gap: f64,
    total: f64,
}

struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::with_capacity(8 * 1024, s),
        })
    }

    /// Sends the request and reads the whole response; its status and timings (µs from
    /// `t0`), and every gap between events into `gaps`.
    async fn exchange(
        &mut self,
        req: &[u8],
        t0: Instant,
        gaps: &mut Vec<f64>,
    ) -> std::io::Result<(u16, Timing)> {
        let us = |t: Instant| t.duration_since(t0).as_secs_f64() * 1e6;
        self.r.get_mut().write_all(req).await?;
        let mut line = String::new();
        self.r.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.r.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut t = Timing {
            headers: us(Instant::now()),
            ..Default::default()
        };
        let mut buf = vec![0u8; 16 * 1024];
        let mut last_event: Option<Instant> = None;
        if chunked {
            loop {
                line.clear();
                self.r.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                if size + 2 > buf.len() {
                    buf.resize(size + 2, 0);
                }
                self.r.read_exact(&mut buf[..size + 2]).await?;
                if size == 0 {
                    break;
                }
                // Each chunk the gateways send carries whole events; count the data lines.
                let events = memchr::memmem::find_iter(&buf[..size], b"data:").count();
                if events > 0 {
                    let now = Instant::now();
                    if t.first_token.is_none() && has_token(&buf[..size]) {
                        t.first_token = Some(us(now));
                    }
                    match last_event {
                        None => t.first_event = Some(us(now)),
                        Some(prev) => {
                            let gap = now.duration_since(prev).as_secs_f64() * 1e6;
                            gaps.push(gap);
                            t.max_gap = t.max_gap.max(gap);
                        }
                    }
                    last_event = Some(now);
                }
            }
        } else {
            let mut left = length.ok_or_else(|| std::io::Error::other("no length"))?;
            while left > 0 {
                let n = left.min(buf.len());
                self.r.read_exact(&mut buf[..n]).await?;
                left -= n;
            }
        }
        t.total = us(Instant::now());
        Ok((status, t))
    }
}

/// Whether a chunk of events carries a token of the answer (text, reasoning, a tool call)
/// in any protocol a target speaks: OpenAI chat, Anthropic Messages, Responses, Gemini.
fn has_token(b: &[u8]) -> bool {
    const MARKS: [&[u8]; 5] = [
        b"\"content_block_delta\"",
        b"\"response.output_text.delta\"",
        b"\"parts\":[{\"text\":\"",
        b"\"tool_calls\"",
        b"\"reasoning_content\":\"",
    ];
    if MARKS.iter().any(|m| memchr::memmem::find(b, m).is_some()) {
        return true;
    }
    // An OpenAI chunk with a content string that is not empty.
    let key = b"\"content\":\"";
    memchr::memmem::find_iter(b, key).any(|i| b.get(i + key.len()) != Some(&b'"'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn opening_events_carry_no_token_and_deltas_do() {
        use super::has_token;
        let role = br#"data: {"choices":[{"delta":{"role":"assistant","content":""}}]}"#;
        assert!(!has_token(role));
        assert!(has_token(
            br#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#
        ));
        assert!(!has_token(
            b"event: message_start\ndata: {\"type\":\"message_start\"}"
        ));
        assert!(has_token(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}"
        ));
        assert!(has_token(
            br#"data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]}}]}"#
        ));
    }
}

/// Everything measured of one target in one run or step.
#[derive(Default)]
struct Samples {
    total: Vec<f64>,
    headers: Vec<f64>,
    ttft: Vec<f64>,
    first_event: Vec<f64>,
    gaps: Vec<f64>,
    errors: usize,
}

impl Samples {
    fn add(&mut self, t: Timing) {
        self.total.push(t.total);
        self.headers.push(t.headers);
        if let Some(f) = t.first_token {
            self.ttft.push(f);
        }
        if let Some(f) = t.first_event {
            self.first_event.push(f);
        }
    }

    fn merge(&mut self, o: Samples) {
        self.total.extend(o.total);
        self.headers.extend(o.headers);
        self.ttft.extend(o.ttft);
        self.first_event.extend(o.first_event);
        self.gaps.extend(o.gaps);
        self.errors += o.errors;
    }

    fn sort(&mut self) {
        for v in [
            &mut self.total,
            &mut self.headers,
            &mut self.ttft,
            &mut self.first_event,
            &mut self.gaps,
        ] {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some((sorted[idx] * 10.0).round() / 10.0)
}

#[derive(Serialize)]
struct Dist {
    p50_us: Option<f64>,
    p90_us: Option<f64>,
    p99_us: Option<f64>,
    max_us: Option<f64>,
}

fn dist(sorted: &[f64]) -> Dist {
    Dist {
        p50_us: percentile(sorted, 0.5),
        p90_us: percentile(sorted, 0.9),
        p99_us: percentile(sorted, 0.99),
        max_us: sorted.last().copied(),
    }
}

/// 200 quantiles of a sorted sample, for CDF plots.
fn cdf(sorted: &[f64]) -> Vec<f64> {
    if sorted.is_empty() {
        return Vec::new();
    }
    (0..200)
        .map(|i| sorted[((sorted.len() - 1) * i) / 199])
        .collect()
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Closed loop: `concurrency` workers, each with one connection per target, interleaved.
async fn closed(args: &Args, targets: Arc<Vec<Target>>) -> Vec<Samples> {
    let duration = Duration::from_secs(args.duration.min(600));
    let warmup = Duration::from_secs(args.warmup);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let targets = targets.clone();
        workers.push(tokio::spawn(async move {
            let mut conns = Vec::new();
            for t in targets.iter() {
                conns.push(Conn::open(t.addr).await.expect("connect"));
            }
            let mut out: Vec<Samples> = targets.iter().map(|_| Samples::default()).collect();
            let start = Instant::now();
            let mut order: Vec<usize> = (0..targets.len()).collect();
            let mut gaps = Vec::new();
            while start.elapsed() < warmup + duration {
                fastrand::shuffle(&mut order);
                for &i in &order {
                    gaps.clear();
                    let r = conns[i]
                        .exchange(&targets[i].request, Instant::now(), &mut gaps)
                        .await;
                    let measured = start.elapsed() >= warmup;
                    match r {
                        Ok((200, t)) if measured => {
                            out[i].add(t);
                            out[i].gaps.extend_from_slice(&gaps);
                        }
                        Ok((200, _)) => {}
                        _ => {
                            if measured {
                                out[i].errors += 1;
                            }
                            if let Ok(c) = Conn::open(targets[i].addr).await {
                                conns[i] = c;
                            }
                        }
                    }
                }
            }
            out
        }));
    }
    let mut all: Vec<Samples> = targets.iter().map(|_| Samples::default()).collect();
    for w in workers {
        for (i, s) in w.await.expect("worker").into_iter().enumerate() {
            all[i].merge(s);
        }
    }
    all
}

/// Open loop: `rate` requests per second for `secs` to one target, timed from schedule.
async fn open(
    target: &Target,
    rate: u64,
    secs: u64,
    max_connections: usize,
) -> (Samples, f64, usize) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Option<Conn>, Result<Timing, ()>)>();
    let mut idle: Vec<Conn> = Vec::new();
    let mut opened = 0usize;
    let mut out = Samples::default();
    let request: Arc<[u8]> = target.request.clone().into();
    let total = rate * secs;
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut in_flight = 0usize;
    let mut waiting: std::collections::VecDeque<Instant> = Default::default();
    let mut sent = 0u64;
    let deadline = start + Duration::from_secs(secs) + Duration::from_secs(10);
    let handle = |msg: (Option<Conn>, Result<Timing, ()>),
                  idle: &mut Vec<Conn>,
                  out: &mut Samples,
                  in_flight: &mut usize| {
        *in_flight -= 1;
        match msg.1 {
            Ok(t) => out.add(t),
            Err(()) => out.errors += 1,
        }
        if let Some(c) = msg.0 {
            idle.push(c);
        }
    };
    while (sent < total || in_flight > 0 || !waiting.is_empty())
        && tokio::time::Instant::now() < deadline
    {
        // Requests due are queued with their scheduled time.
        let next_due = start + interval.mul_f64(sent as f64);
        if sent < total && tokio::time::Instant::now() >= next_due {
            waiting.push_back(next_due.into_std());
            sent += 1;
            continue;
        }
        // Dispatch what waits on idle (or new) connections.
        while let Some(&scheduled) = waiting.front() {
            let conn = match idle.pop() {
                Some(c) => Some(c),
                None if opened < max_connections => {
                    opened += 1;
                    None
                }
                None => break,
            };
            waiting.pop_front();
            in_flight += 1;
            let (tx, request, addr) = (tx.clone(), request.clone(), target.addr);
            tokio::spawn(async move {
                let mut conn = match conn {
                    Some(c) => c,
                    None => match Conn::open(addr).await {
                        Ok(c) => c,
                        Err(_) => {
                            let _ = tx.send((None, Err(())));
                            return;
                        }
                    },
                };
                let mut gaps = Vec::new();
                match conn.exchange(&request, scheduled, &mut gaps).await {
                    Ok((200, t)) => {
                        let _ = tx.send((Some(conn), Ok(t)));
                    }
                    _ => {
                        let _ = tx.send((None, Err(())));
                    }
                }
            });
        }
        let sleep_until = if sent < total {
            start + interval.mul_f64(sent as f64)
        } else {
            deadline
        };
        tokio::select! {
            Some(msg) = rx.recv() => handle(msg, &mut idle, &mut out, &mut in_flight),
            _ = tokio::time::sleep_until(sleep_until) => {}
        }
        while let Ok(msg) = rx.try_recv() {
            handle(msg, &mut idle, &mut out, &mut in_flight);
        }
        // Connections that failed are opened again on demand.
        opened = idle.len() + in_flight;
    }
    // What never finished within the bound counts as failed.
    out.errors += in_flight + waiting.len();
    let elapsed = start.elapsed().as_secs_f64();
    (out, elapsed, opened)
}

#[derive(Serialize)]
struct Summary {
    name: String,
    requests: usize,
    errors: usize,
    total: Dist,
    headers: Dist,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttft: Option<Dist>,
    /// Time to the first event, token or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_event: Option<Dist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gap: Option<Dist>,
    /// Minus the baseline (the first target) at the same percentile.
    added_p50_us: Option<f64>,
    added_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    added_ttft_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    added_ttft_p99_us: Option<f64>,
    /// CPU seconds per 1,000 requests of the target's process (when its pid was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_ms_per_1000: Option<f64>,
    cdf_us: Vec<f64>,
}

fn sub(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(((a? - b?) * 10.0).round() / 10.0)
}

fn summarize(targets: &[Target], samples: &mut [Samples], cpu: &[Option<f64>]) -> Vec<Summary> {
    for s in samples.iter_mut() {
        s.sort();
    }
    let base = &samples[0];
    let (b50, b99) = (percentile(&base.total, 0.5), percentile(&base.total, 0.99));
    let (t50, t99) = (percentile(&base.ttft, 0.5), percentile(&base.ttft, 0.99));
    targets
        .iter()
        .zip(samples.iter())
        .zip(cpu)
        .map(|((t, s), cpu)| Summary {
            name: t.name.clone(),
            requests: s.total.len(),
            errors: s.errors,
            total: dist(&s.total),
            headers: dist(&s.headers),
            ttft: (!s.ttft.is_empty()).then(|| dist(&s.ttft)),
            first_event: (!s.first_event.is_empty()).then(|| dist(&s.first_event)),
            gap: (!s.gaps.is_empty()).then(|| dist(&s.gaps)),
            added_p50_us: sub(percentile(&s.total, 0.5), b50),
            added_p99_us: sub(percentile(&s.total, 0.99), b99),
            added_ttft_p50_us: sub(percentile(&s.ttft, 0.5), t50),
            added_ttft_p99_us: sub(percentile(&s.ttft, 0.99), t99),
            cpu_ms_per_1000: cpu
                .map(|c| (c * 1000.0 / s.total.len().max(1) as f64 * 1000.0 * 10.0).round() / 10.0),
            cdf_us: cdf(&s.total),
        })
        .collect()
}

fn print_table(summaries: &[Summary], stream: bool) {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    if stream {
        println!(
            "{:<12} {:>9} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "target",
            "requests",
            "errors",
            "ttft p50",
            "ttft p99",
            "+ttft p50",
            "+ttft p99",
            "gap p50",
            "gap p99",
            "total p50"
        );
        for s in summaries {
            let (ttft, gap) = (s.ttft.as_ref(), s.gap.as_ref());
            println!(
                "{:<12} {:>9} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                s.name,
                s.requests,
                s.errors,
                f(ttft.and_then(|d| d.p50_us)),
                f(ttft.and_then(|d| d.p99_us)),
                f(s.added_ttft_p50_us),
                f(s.added_ttft_p99_us),
                f(gap.and_then(|d| d.p50_us)),
                f(gap.and_then(|d| d.p99_us)),
                f(s.total.p50_us)
            );
        }
    } else {
        println!(
            "{:<12} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11}",
            "target",
            "requests",
            "errors",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "max µs",
            "+p50 µs",
            "+p99 µs"
        );
        for s in summaries {
            println!(
                "{:<12} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11}",
                s.name,
                s.requests,
                s.errors,
                f(s.total.p50_us),
                f(s.total.p90_us),
                f(s.total.p99_us),
                f(s.total.max_us),
                f(s.added_p50_us),
                f(s.added_p99_us)
            );
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let targets: Arc<Vec<Target>> =
        Arc::new(args.target.iter().map(|t| parse_target(t, &args)).collect());
    let json = match args.mode.as_str() {
        "closed" => {
            let cpu0: Vec<Option<f64>> = targets.iter().map(|t| t.pid.and_then(cpu_secs)).collect();
            let mut samples = closed(&args, targets.clone()).await;
            let cpu: Vec<Option<f64>> = targets
                .iter()
                .zip(&cpu0)
                .map(|(t, c0)| Some(t.pid.and_then(cpu_secs)? - (*c0)?))
                .collect();
            let summaries = summarize(&targets, &mut samples, &cpu);
            print_table(&summaries, args.stream);
            serde_json::json!({
                "mode": "closed",
                "concurrency": args.concurrency,
                "duration_s": args.duration.min(600),
                "stream": args.stream,
                "prompt_bytes": args.prompt_bytes,
                "targets": summaries,
            })
        }
        "open" => {
            assert!(!args.rates.is_empty(), "--rates is needed in open mode");
            let step = args.step_secs.clamp(1, 60);
            let mut steps = Vec::new();
            let mut stopped = vec![false; targets.len()];
            // Warm every target up at the first rate, unmeasured.
            for t in targets.iter() {
                let _ = open(t, args.rates[0], args.warmup.max(1), args.max_connections).await;
            }
            for &rate in &args.rates {
                let mut order: Vec<usize> = (0..targets.len()).collect();
                fastrand::shuffle(&mut order);
                let mut row = serde_json::Map::new();
                for i in order {
                    if stopped[i] {
                        continue;
                    }
                    let t = &targets[i];
                    let cpu0 = t.pid.and_then(cpu_secs);
                    let (mut s, elapsed, conns) = open(t, rate, step, args.max_connections).await;
                    let cpu = t.pid.and_then(cpu_secs).zip(cpu0).map(|(a, b)| a - b);
                    s.sort();
                    let achieved = s.total.len() as f64 / elapsed;
                    let p99 = percentile(&s.total, 0.99);
                    println!(
                        "rate {rate:>6}/s  {:<12} ok {:>7} errors {:>5} achieved {:>8.0}/s  p50 {:>9} µs  p99 {:>9} µs  conns {conns}{}",
                        t.name,
                        s.total.len(),
                        s.errors,
                        achieved,
                        percentile(&s.total, 0.5).map_or("-".into(), |v| format!("{v:.0}")),
                        p99.map_or("-".into(), |v| format!("{v:.0}")),
                        cpu.map_or(String::new(), |c| format!("  cpu {:.1} ms/1k", c * 1e6 / s.total.len().max(1) as f64))
                    );
                    if s.errors > 0 || p99.is_none_or(|p| p > args.stop_p99_ms * 1000.0) {
                        stopped[i] = true;
                    }
                    row.insert(
                        t.name.clone(),
                        serde_json::json!({
                            "ok": s.total.len(),
                            "errors": s.errors,
                            "achieved_rps": (achieved * 10.0).round() / 10.0,
                            "latency": dist(&s.total),
                            "connections": conns,
                            "cpu_ms_per_1000": cpu.map(|c| (c * 1e6 / s.total.len().max(1) as f64 * 10.0).round() / 10.0),
                        }),
                    );
                }
                steps.push(serde_json::json!({"rate": rate, "targets": row}));
                if stopped.iter().all(|s| *s) {
                    break;
                }
            }
            serde_json::json!({
                "mode": "open",
                "step_s": step,
                "stream": args.stream,
                "prompt_bytes": args.prompt_bytes,
                "targets": targets.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
                "steps": steps,
            })
        }
        other => panic!("unknown mode {other} (closed or open)"),
    };
    if let Some(path) = args.out {
        std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).expect("write results");
        println!("results written to {}", path.display());
    }
}
