//! Usage, cost and observability: the ledger and the metrics agree exactly with what the
//! upstream billed, for every provider kind, streaming or not, completed or aborted; nothing
//! is lost when the gateway is stopped.

mod common;

use common::accounting::*;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What one request asks of the mock.
struct Ask {
    model: String,
    stream: bool,
    key: &'static str,
    reasoning: bool,
    /// Read this many content deltas, then hang up.
    abort_after: Option<usize>,
}

fn body(a: &Ask) -> String {
    let mut v = serde_json::json!({
        "model": a.model,
        "stream": a.stream,
        "messages": [
            {"role": "system", "content": "You are a terse assistant for the accounting test."},
            {"role": "user", "content": "Count the tokens of this sentence, please, and say hello."},
        ],
    });
    if a.reasoning {
        v["reasoning_effort"] = "low".into();
    }
    v.to_string()
}

async fn send(http: &reqwest::Client, gw: &Proc, a: &Ask) -> u16 {
    let r = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(a.key)
        .body(body(a))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    match a.abort_after {
        None => {
            let _ = r.bytes().await.unwrap();
        }
        Some(n) => {
            let mut stream = r.bytes_stream();
            let mut text = String::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while text.matches("\"content\":\"").count() < n + 1 {
                assert!(Instant::now() < deadline, "no content deltas came: {text}");
                let chunk = stream.next().await.unwrap().unwrap();
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
            // Hang up mid-stream (the connection closes with the body unread).
            drop(stream);
        }
    }
    status
}

/// `GET /admin/usage?<query>` on the admin listener; `None` when it did not answer JSON.
async fn usage(http: &reqwest::Client, admin: &str, query: &str) -> Option<Value> {
    http.get(format!("http://{admin}/admin/usage{query}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Sample values of a Prometheus text exposition, by series (name with labels, as written).
/// Panics on any line that is not valid text format.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut typed: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut p = rest.splitn(3, ' ');
            let (kind, name, value) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
            assert!(kind == "HELP" || kind == "TYPE", "bad comment: {line}");
            if kind == "TYPE" {
                assert!(
                    ["counter", "gauge", "histogram"].contains(&value),
                    "bad type: {line}"
                );
                assert!(
                    typed.insert(name.to_string(), value.to_string()).is_none(),
                    "TYPE twice: {line}"
                );
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| typed.get(*f).is_some_and(|t| t == "histogram"))
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample without TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in split_labels(&labels[1..labels.len() - 1]) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(
                        v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                        "{line}"
                    );
                }
            }
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        assert!(
            out.insert(series.to_string(), v).is_none(),
            "series twice: {line}"
        );
    }
    out
}

/// Splits `a="x",b="y,z"` at the commas between labels.
fn split_labels(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Sum of the samples of `name` whose labels include every one of `with`.
fn sum(m: &HashMap<String, f64>, name: &str, with: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| k.split('{').next() == Some(name) && with.iter().all(|w| k.contains(w)))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_and_metrics_match_what_the_upstream_billed_exactly() {
    let mock = start_mock();
    let admin = format!("127.0.0.1:{}", free_port());
    let gw = start_gateway(&accounting_config(&mock, &admin, ""));
    let http = reqwest::Client::new();

    let mut asks = Vec::new();
    for (kind, _, _) in KINDS {
        let ask = |variant: &str, stream, key, reasoning, abort_after| Ask {
            model: format!("{kind}-{variant}"),
            stream,
            key,
            reasoning,
            abort_after,
        };
        for stream in [false, true] {
            asks.push(ask("plain", stream, ALL_KEY, false, None));
            asks.push(ask("cached", stream, LIMITED_KEY, false, None));
            asks.push(ask("plain", stream, ALL_KEY, true, None));
        }
        // Aborted by the client after two content deltas; the mock holds the rest back.
        asks.push(ask("hold", true, ALL_KEY, false, Some(2)));
        // Refused by the upstream: reached it, billed nothing.
        asks.push(ask("refuse", false, LIMITED_KEY, false, None));
    }
    let mut statuses = Vec::new();
    for a in &asks {
        statuses.push(send(&http, &gw, a).await);
    }
    // Rejected before any upstream: in the metrics, not in the ledger.
    let r = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-unknown")
        .body(body(&asks[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 3);
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        asks.len() - 3
    );

    // The mock has billed every aborted stream once it noticed the hang-up.
    let billed: Value = eventually("the mock to see the aborted streams", || async {
        let s: Value = http
            .get(mock.url("/mock/stats"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (s["streams_aborted"] == 3).then_some(s["billed"].clone())
    })
    .await;
    let ledger_requests = asks.len() as i64;
    let by_provider: Value = eventually("the ledger to hold every request", || async {
        let v = usage(&http, &admin, "?group_by=provider").await?;
        let n: i64 = v["groups"]
            .as_array()?
            .iter()
            .map(|g| g["requests"].as_i64().unwrap_or(0))
            .sum();
        (n == ledger_requests).then_some(v)
    })
    .await;
    let metrics = parse_prometheus(
        &http
            .get(format!("http://{admin}/metrics"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    for (kind, _, wire) in KINDS {
        // The kind's providers added up, as the mock bills per wire.
        let mut group = serde_json::Map::new();
        let mut endings: HashMap<String, i64> = HashMap::new();
        for g in by_provider["groups"].as_array().unwrap() {
            if !g["provider"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{kind}-"))
            {
                continue;
            }
            for (k, v) in g.as_object().unwrap() {
                if let Some(n) = v.as_i64() {
                    let e = group.entry(k.clone()).or_insert(0.into());
                    *e = (e.as_i64().unwrap() + n).into();
                }
            }
            for (k, v) in g["endings"].as_object().unwrap() {
                *endings.entry(k.clone()).or_default() += v.as_i64().unwrap();
            }
        }
        group.insert("endings".into(), serde_json::to_value(&endings).unwrap());
        let group = Value::Object(group);
        let b = &billed[wire];
        assert!(b["reasoning"].as_u64().is_some());
        for (ledger_field, billed_field, metric_kind) in [
            ("input_tokens", "input", "input"),
            ("output_tokens", "output", "output"),
            ("cached_input_tokens", "cached_input", "cached_input"),
            ("cache_write_tokens", "cache_write", "cache_write"),
            ("reasoning_tokens", "reasoning", "reasoning"),
        ] {
            assert_eq!(
                group[ledger_field], b[billed_field],
                "{kind} {ledger_field}: ledger {group} billed {b}"
            );
            let p = format!("provider=\"{kind}-");
            let k = format!("kind=\"{metric_kind}\"");
            assert_eq!(
                sum(&metrics, "junction_tokens_total", &[&p, &k]),
                b[billed_field].as_f64().unwrap(),
                "{kind} {metric_kind} metric"
            );
        }
        assert!(b["input"].as_u64().unwrap() > 0 && b["output"].as_u64().unwrap() > 0);
        assert_eq!(group["requests"], 8);
        assert_eq!(group["endings"]["client_aborted"], 1, "{group}");
        assert_eq!(group["endings"]["upstream_error"], 1, "{group}");
        assert_eq!(group["endings"]["complete"], 6, "{group}");
        assert_eq!(group["estimated_requests"], 1, "{group}");
        // Priced from the bundled table; the metric adds up the same micro-dollars.
        assert_eq!(group["unpriced_requests"], 0);
        let cost = group["cost_usd_micros"].as_i64().unwrap();
        assert!(cost > 0, "{group}");
        let p = format!("provider=\"{kind}-");
        assert_eq!(
            sum(&metrics, "junction_cost_usd_micros_total", &[&p]),
            cost as f64
        );
        // Requests by status class, attempts by outcome.
        assert_eq!(
            sum(
                &metrics,
                "junction_requests_total",
                &[&p, "status_class=\"2xx\""]
            ),
            7.0
        );
        assert_eq!(
            sum(
                &metrics,
                "junction_requests_total",
                &[&p, "status_class=\"4xx\""]
            ),
            1.0
        );
        assert_eq!(
            sum(
                &metrics,
                "junction_upstream_attempts_total",
                &[&p, "outcome=\"ok\""]
            ),
            7.0
        );
        assert_eq!(
            sum(
                &metrics,
                "junction_upstream_attempts_total",
                &[&p, "outcome=\"rejected\""]
            ),
            1.0
        );
    }
    assert_eq!(
        sum(&metrics, "junction_requests_total", &[]),
        asks.len() as f64 + 1.0
    );
    assert_eq!(
        sum(
            &metrics,
            "junction_requests_total",
            &["model=\"\"", "status_class=\"4xx\""]
        ),
        1.0,
        "the unauthenticated request, with no model label"
    );
    // Every served request observed once in the duration and overhead histograms.
    assert_eq!(
        sum(&metrics, "junction_request_duration_seconds_count", &[]),
        asks.len() as f64 + 1.0
    );
    assert_eq!(
        sum(&metrics, "junction_gateway_overhead_seconds_count", &[]),
        asks.len() as f64
    );
    assert_eq!(sum(&metrics, "junction_ledger_queue_depth", &[]), 0.0);
    // Every series the Grafana dashboard queries is one the gateway exports.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/conf/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("junction_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried += 1;
                assert!(
                    metrics
                        .keys()
                        .any(|k| k.split('{').next() == Some(name.as_str())),
                    "the dashboard queries {name}, which /metrics lacks"
                );
            }
        }
    }
    assert!(queried >= 16);
    assert_eq!(
        sum(&metrics, "junction_ledger_records_dropped_total", &[]),
        0.0
    );

    // By key: team-b sent the cached-token requests and the refused ones.
    let by_key = usage(&http, &admin, "?group_by=key").await.unwrap();
    let team_b = by_key["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "team-b")
        .unwrap();
    assert_eq!(team_b["requests"], 9);
    assert_eq!(team_b["cached_input_tokens"], 7 * 6);
    // A window that ends before the run holds nothing.
    let none = usage(&http, &admin, "?group_by=model&to=2020-01-01T00:00:00Z")
        .await
        .unwrap();
    assert_eq!(none["groups"], serde_json::json!([]));
    let bad = http
        .get(format!("http://{admin}/admin/usage?group_by=color"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let err: Value = bad.json().await.unwrap();
    assert_eq!(err["error"]["param"], "group_by");
}

#[tokio::test]
async fn traceparent_goes_upstream_and_spans_reach_the_collector() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A collector that answers 200 to every POST and hands over the bodies.
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = collector.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = collector.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    // One request: header, then Content-Length bytes of body.
                    let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") else {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = buf[end + 4..end + 4 + len].to_vec();
                    buf.drain(..end + 4 + len);
                    let _ = tx.send((head.lines().next().unwrap_or("").to_string(), body));
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                }
            });
        }
    });
    let mock = start_mock();
    let admin = format!("127.0.0.1:{}", free_port());
    let gw = start_gateway(&accounting_config(
        &mock,
        &admin,
        &format!("[tracing]\notlp_endpoint = \"http://{collector_addr}\"\nservice_name = \"junction-test\""),
    ));
    let http = reqwest::Client::new();
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(ALL_KEY)
        .header(
            "traceparent",
            format!("00-{client_trace}-00f067aa0ba902b7-01"),
        )
        .body(chat_body("openai-echo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    // The mock echoes the headers it got: the trace continues, under a new span.
    let echoed: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    let sent = echoed["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent upstream: {echoed}"))
        .to_string();
    assert!(sent.starts_with(&format!("00-{client_trace}-")), "{sent}");
    let span_id = &sent[36..52];
    assert_ne!(span_id, "00f067aa0ba902b7");

    let (line, body) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a span export within 20 s")
        .unwrap();
    assert_eq!(line, "POST /v1/traces HTTP/1.1");
    let export: Value = serde_json::from_slice(&body).unwrap();
    let rs = &export["resourceSpans"][0];
    assert_eq!(
        rs["resource"]["attributes"][0]["value"]["stringValue"],
        "junction-test"
    );
    let span = &rs["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], client_trace);
    assert_eq!(span["spanId"], span_id);
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(span["name"], "chat openai-echo");
    let attrs: HashMap<String, Value> = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
        .collect();
    assert_eq!(attrs["gen_ai.operation.name"]["stringValue"], "chat");
    assert_eq!(attrs["gen_ai.provider.name"]["stringValue"], "openai");
    assert_eq!(attrs["gen_ai.request.model"]["stringValue"], "openai-echo");
    assert_eq!(attrs["gen_ai.response.model"]["stringValue"], "gpt-4o-mini");
    let usage = &v["usage"];
    assert_eq!(
        attrs["gen_ai.usage.input_tokens"]["intValue"],
        usage["prompt_tokens"].to_string()
    );
    assert_eq!(
        attrs["gen_ai.usage.output_tokens"]["intValue"],
        usage["completion_tokens"].to_string()
    );
}

#[tokio::test]
async fn content_is_stored_only_when_the_operator_opts_in() {
    let mock = start_mock();
    let admin = format!("127.0.0.1:{}", free_port());
    let (gw, config) = start_gateway_at(
        &format!("127.0.0.1:{}", free_port()),
        &accounting_config(
            &mock,
            &admin,
            "[ledger]\nstore_content = true\npath = \"content.sqlite\"",
        ),
    );
    let http = reqwest::Client::new();
    for stream in [true, false] {
        let a = Ask {
            model: "anthropic-plain".into(),
            stream,
            key: ALL_KEY,
            reasoning: false,
            abort_after: None,
        };
        assert_eq!(send(&http, &gw, &a).await, 200);
    }
    eventually("two rows", || async {
        let v = usage(&http, &admin, "").await?;
        (v["groups"][0]["requests"] == 2).then_some(())
    })
    .await;
    let db = rusqlite::Connection::open(config.with_file_name("content.sqlite")).unwrap();
    let mut stmt = db
        .prepare("SELECT stream, prompt, completion FROM requests ORDER BY id")
        .unwrap();
    let rows: Vec<(bool, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2);
    for (stream, prompt, completion) in rows {
        assert!(
            prompt.contains("Count the tokens of this sentence"),
            "{prompt}"
        );
        // What the client was sent (translated from Anthropic), stream or not.
        assert_eq!(
            completion, "Hello from the Junction mock",
            "stream {stream}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_off_by_shutdown_is_recorded_as_interrupted() {
    let mock = start_mock();
    let admin = format!("127.0.0.1:{}", free_port());
    let config = accounting_config(&mock, &admin, "")
        .replace("[server]\n", "[server]\nshutdown_grace_secs = 1\n");
    let (mut gw, path) = start_gateway_at(&format!("127.0.0.1:{}", free_port()), &config);
    let http = reqwest::Client::new();
    // Two text chunks, then the mock holds the stream open (30 s): longer than the grace.
    let r = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(ALL_KEY)
        .body(body(&Ask {
            model: "openai-hold".into(),
            stream: true,
            key: ALL_KEY,
            reasoning: false,
            abort_after: None,
        }))
        .send()
        .await
        .unwrap();
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    while text.matches("\"content\":\"").count() < 3 {
        text.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    let pid = gw.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The stream ends when the gateway gives up on it.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived the shutdown");
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the gateway did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db = rusqlite::Connection::open(path.with_file_name("junction-ledger.sqlite")).unwrap();
    let (ending, source, output, error): (String, String, i64, String) = db
        .query_row(
            "SELECT ending, usage_source, output_tokens, error FROM requests",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap_or_else(|e| panic!("{e}: {}", gw.log_text()));
    assert_eq!(ending, "interrupted");
    assert_eq!(error, "interrupted");
    // What the client was sent before the cut is billed: "Hello from".
    assert_eq!(source, "estimate");
    assert_eq!(output, 2);
}
