//! `junction-load`: a small HTTP/1.1 keep-alive load generator for 127.0.0.1 targets.
//!
//! Closed loop: each worker sends one request, waits for the whole response, sends the next.
//! Targets are interleaved request by request (in a shuffled order each round), so that a
//! noisy machine slows them all alike and their latencies can be compared as ratios.
//!
//! ```text
//! junction-load --duration 20 --concurrency 1 \
//!   --target 'direct|http://127.0.0.1:8081/v1/chat/completions|gpt-4o-mini|' \
//!   --target 'junction|http://127.0.0.1:8080/v1/chat/completions|demo-openai|sk-junction-demo' \
//!   --out loadtest/results/latency.json
//! ```

use clap::Parser;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "HTTP/1.1 keep-alive load generator for Junction (127.0.0.1 targets only)")]
struct Args {
    /// `name|url|model|key` (key may be empty). The first target is the baseline.
    #[arg(long, required = true)]
    target: Vec<String>,
    /// Seconds to run (bounded: at most 600).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Concurrent connections per target.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Approximate size of the user message, in bytes.
    #[arg(long, default_value_t = 1024)]
    prompt_bytes: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

struct Target {
    name: String,
    addr: SocketAddr,
    request: Vec<u8>,
}

fn parse_target(spec: &str, prompt_bytes: usize) -> Target {
    let parts: Vec<&str> = spec.split('|').collect();
    assert!(
        parts.len() == 4,
        "target must be name|url|model|key: {spec}"
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
        r#"{{"model":"{}","messages":[{{"role":"user","content":"{}"}}],"stream":false}}"#,
        parts[2],
        "a".repeat(prompt_bytes)
    );
    let auth = if parts[3].is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {}\r\n", parts[3])
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        uri.path(),
        body.len()
    )
    .into_bytes();
    Target {
        name: parts[0].to_string(),
        addr,
        request,
    }
}

struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::with_capacity(64 * 1024, s),
        })
    }

    /// Sends the request and reads the whole response; returns the status.
    async fn exchange(&mut self, req: &[u8]) -> std::io::Result<u16> {
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
        let mut sink = vec![0u8; 16 * 1024];
        if chunked {
            loop {
                line.clear();
                self.r.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                let mut left = size + 2;
                while left > 0 {
                    let n = left.min(sink.len());
                    self.r.read_exact(&mut sink[..n]).await?;
                    left -= n;
                }
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut left = length.ok_or_else(|| std::io::Error::other("no length"))?;
            while left > 0 {
                let n = left.min(sink.len());
                self.r.read_exact(&mut sink[..n]).await?;
                left -= n;
            }
        }
        Ok(status)
    }
}

#[derive(Serialize)]
struct Summary {
    name: String,
    requests: usize,
    errors: usize,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
    /// Minus the baseline (the first target) at the same percentile.
    added_p50_us: f64,
    added_p99_us: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let duration = Duration::from_secs(args.duration.min(600));
    let targets: Vec<Target> = args
        .target
        .iter()
        .map(|t| parse_target(t, args.prompt_bytes))
        .collect();
    let n = targets.len();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut errors = vec![0usize; n];
    // One connection per target per worker; workers run concurrently.
    let mut workers = Vec::new();
    let targets = std::sync::Arc::new(targets);
    for _ in 0..args.concurrency {
        let targets = targets.clone();
        let warmup = Duration::from_secs(args.warmup);
        workers.push(tokio::spawn(async move {
            let mut conns = Vec::new();
            for t in targets.iter() {
                conns.push(Conn::open(t.addr).await.expect("connect"));
            }
            let mut out: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
            let mut errs = vec![0usize; targets.len()];
            let start = Instant::now();
            let mut order: Vec<usize> = (0..targets.len()).collect();
            while start.elapsed() < warmup + duration {
                fastrand::shuffle(&mut order);
                for &i in &order {
                    let t0 = Instant::now();
                    let r = conns[i].exchange(&targets[i].request).await;
                    let us = t0.elapsed().as_secs_f64() * 1e6;
                    let measured = start.elapsed() >= warmup;
                    match r {
                        Ok(200) if measured => out[i].push(us),
                        Ok(200) => {}
                        _ => {
                            if measured {
                                errs[i] += 1;
                            }
                            if let Ok(c) = Conn::open(targets[i].addr).await {
                                conns[i] = c;
                            }
                        }
                    }
                }
            }
            (out, errs)
        }));
    }
    for w in workers {
        let (out, errs) = w.await.expect("worker");
        for i in 0..n {
            samples[i].extend_from_slice(&out[i]);
            errors[i] += errs[i];
        }
    }
    for s in &mut samples {
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    let base50 = percentile(&samples[0], 0.5);
    let base99 = percentile(&samples[0], 0.99);
    let summaries: Vec<Summary> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| Summary {
            name: t.name.clone(),
            requests: samples[i].len(),
            errors: errors[i],
            p50_us: percentile(&samples[i], 0.5),
            p90_us: percentile(&samples[i], 0.9),
            p99_us: percentile(&samples[i], 0.99),
            max_us: samples[i].last().copied().unwrap_or(f64::NAN),
            added_p50_us: percentile(&samples[i], 0.5) - base50,
            added_p99_us: percentile(&samples[i], 0.99) - base99,
        })
        .collect();
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
    for s in &summaries {
        println!(
            "{:<12} {:>9} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>11.1} {:>11.1}",
            s.name,
            s.requests,
            s.errors,
            s.p50_us,
            s.p90_us,
            s.p99_us,
            s.max_us,
            s.added_p50_us,
            s.added_p99_us
        );
    }
    if let Some(path) = args.out {
        let json = serde_json::json!({
            "concurrency": args.concurrency,
            "duration_s": duration.as_secs(),
            "prompt_bytes": args.prompt_bytes,
            "targets": summaries,
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).expect("write results");
        println!("results written to {}", path.display());
    }
}
