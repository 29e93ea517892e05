//! Provider failures the client never sees: retries, failover, breakers, cooldowns and TTFT
//! deadlines, driven by the mock's fault injection and counted at each mock.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};

struct Env {
    a: Proc,
    b: Proc,
    gw: Proc,
    admin: String,
    http: reqwest::Client,
}

const ADMIN_KEY: &str = "sk-admin-test";

/// Two mocks, A and B; every model tries a flavour of A first, then B.
fn env() -> Env {
    let a = start_mock();
    let b = start_mock();
    let admin = format!("127.0.0.1:{}", free_port());
    let mut c = format!(
        r#"
[server]
listen = "{{listen}}"
threads = 2

[routing]
attempts = 4
retries_per_deployment = 1
backoff_base_ms = 5
backoff_max_ms = 20

[breaker]
consecutive_failures = 3
min_requests = 1000
cooldown_ms = 1000

[timeouts]
first_byte_ms = 2000
ttft_ms = 300

[admin]
listen = "{admin}"
sha256 = "{admin_hash}"

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.b]
kind = "openai"
base_url = "http://{b}/v1"
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
        b = b.addr,
        admin = admin,
        admin_hash = sha256_hex(ADMIN_KEY.as_bytes()),
    );
    for (name, headers) in [
        ("plain", "{}"),
        (
            "flaky",
            r#"{ "x-mock-fail-rate" = "0.3", "x-mock-fail-with" = "429,500,503,reset,stall" }"#,
        ),
        ("slow-start", r#"{ "x-mock-ttft-ms" = "3000" }"#),
        ("cut", r#"{ "x-mock-cut-after" = "5" }"#),
        ("broken", r#"{ "x-mock-status" = "500" }"#),
        ("refused-key", r#"{ "x-mock-status" = "401" }"#),
    ] {
        c += &format!(
            r#"
[providers.a-{name}]
kind = "openai"
base_url = "http://{a}/v1"
headers = {headers}

[models.{name}]
[[models.{name}.deployments]]
provider = "a-{name}"
model = "model-a"
[[models.{name}.deployments]]
provider = "b"
model = "model-b"
"#,
            a = a.addr,
        );
    }
    c += &format!(
        r#"
[providers.a-checked]
kind = "openai"
base_url = "http://{a}/v1"
health_check_ms = 100

[models.checked]
[[models.checked.deployments]]
provider = "a-checked"
model = "model-a"
[[models.checked.deployments]]
provider = "b"
model = "model-b"
"#,
        a = a.addr
    );
    c += r#"
[providers.b-broken]
kind = "openai"
base_url = "http://B/v1"
headers = { "x-mock-status" = "503" }

[models.all-broken]
[[models.all-broken.deployments]]
provider = "a-broken"
model = "model-a"
[[models.all-broken.deployments]]
provider = "b-broken"
model = "model-b"
"#
    .replace("B", &b.addr.to_string())
    .as_str();
    let gw = start_gateway(&c);
    Env {
        a,
        b,
        gw,
        admin: format!("http://{admin}"),
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn ask(&self, model: &str, stream: bool) -> (u16, String) {
        let r = self
            .http
            .post(self.gw.url("/v1/chat/completions"))
            .bearer_auth(ALL_KEY)
            .body(chat_body(model, stream))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    async fn requests_at(&self, mock: &Proc) -> u64 {
        let v: Value = self
            .http
            .get(mock.url("/mock/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["requests"].as_u64().unwrap()
    }

    /// The breaker state of a deployment, from the admin API.
    async fn breaker(&self, id: &str) -> String {
        let v: Value = self
            .http
            .get(format!("{}/admin/deployments", self.admin))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let d = v["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {v}"))
            .clone();
        d["breaker"].as_str().unwrap().to_string()
    }

    async fn set_controls(&self, mock: &Proc, controls: &str) {
        let r = self
            .http
            .post(mock.url("/mock/controls"))
            .body(controls.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// The model that answered, from a whole body or a stream.
fn served_by(body: &str) -> String {
    let first = body
        .strip_prefix("data: ")
        .map(|s| s.split("\n\n").next().unwrap().to_string())
        .unwrap_or_else(|| body.to_string());
    let v: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["model"].as_str().unwrap().to_string()
}

fn complete(body: &str, stream: bool) -> bool {
    if stream {
        sse_data(body).last().is_some_and(|d| d == "[DONE]")
    } else {
        serde_json::from_str::<Value>(body)
            .is_ok_and(|v| v["choices"][0]["message"]["content"].is_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_percent_failures_at_a_are_invisible_to_clients() {
    let env = std::sync::Arc::new(env());
    let total = 2000;
    let mut tasks = Vec::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..32 {
        let env = env.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return failures;
                }
                let stream = i.is_multiple_of(2);
                let (status, body) = env.ask("flaky", stream).await;
                if status != 200 || !complete(&body, stream) {
                    failures.push(format!("{i}: {status} {body}"));
                }
            }
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // A was tried, failed about a third of the time, and its breaker and 429 cooldowns sent
    // the rest to B: the failures the clients did not see were real.
    let at_a = env.requests_at(&env.a).await;
    let at_b = env.requests_at(&env.b).await;
    assert!(at_a >= 20, "A saw {at_a}");
    assert!(at_b as usize >= total / 2, "B saw {at_b}");
}

#[tokio::test]
async fn a_broken_deployment_is_cut_off_by_its_breaker_and_returns_after_the_cooldown() {
    let env = env();
    env.set_controls(&env.a, r#"{"status": 500}"#).await;
    let started = Instant::now();
    for _ in 0..40 {
        let (status, body) = env.ask("plain", false).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(served_by(&body), "model-b");
    }
    let elapsed = started.elapsed();
    // Three failures open the breaker; then at most one probe per cooldown (1 s).
    let probes = elapsed.as_secs() + 1;
    let at_a = env.requests_at(&env.a).await;
    assert!(at_a <= 3 + probes, "A got {at_a} requests in {elapsed:?}");
    assert_ne!(env.breaker("a-plain/model-a").await, "closed");
    assert_eq!(env.breaker("b/model-b").await, "closed");
    // The admin API wants its own key.
    let r = env
        .http
        .get(format!("{}/admin/deployments", env.admin))
        .bearer_auth(ALL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A recovers: after the cooldown a probe succeeds and A (first by priority) serves again.
    env.set_controls(&env.a, "{}").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = env.ask("plain", false).await;
        assert_eq!(status, 200);
        if served_by(&body) == "model-a" {
            break;
        }
        assert!(Instant::now() < deadline, "A never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let came_back_after = started.elapsed() - elapsed;
    assert!(
        came_back_after <= Duration::from_millis(2500),
        "{came_back_after:?}"
    );
}

#[tokio::test]
async fn retry_after_keeps_requests_away_for_as_long_as_it_says() {
    let env = env();
    env.set_controls(&env.a, r#"{"status": 429, "retry_after": 2}"#)
        .await;
    let (status, body) = env.ask("plain", false).await;
    assert_eq!(status, 200);
    assert_eq!(served_by(&body), "model-b");
    let limited_at = Instant::now();
    assert_eq!(env.requests_at(&env.a).await, 1);
    env.set_controls(&env.a, "{}").await;
    // For the next 1.5 s (well inside the 2 s), A gets nothing.
    while limited_at.elapsed() < Duration::from_millis(1500) {
        let (status, body) = env.ask("plain", true).await;
        assert_eq!(status, 200);
        assert_eq!(served_by(&body), "model-b");
    }
    assert_eq!(env.requests_at(&env.a).await, 1);
    // After it, A serves again.
    tokio::time::sleep(Duration::from_millis(2200).saturating_sub(limited_at.elapsed())).await;
    let (_, body) = env.ask("plain", false).await;
    assert_eq!(served_by(&body), "model-a");
}

#[tokio::test]
async fn a_stall_before_the_first_token_moves_the_stream_to_b() {
    let env = env();
    let started = Instant::now();
    let (status, body) = env.ask("slow-start", true).await;
    assert_eq!(status, 200);
    assert_eq!(served_by(&body), "model-b");
    assert_eq!(sse_data(&body).last().unwrap(), "[DONE]");
    // A was asked (and abandoned at the TTFT deadline, 300 ms), long before its 3 s token.
    assert!(env.requests_at(&env.a).await >= 1);
    assert!(started.elapsed() < Duration::from_millis(2500));
}

#[tokio::test]
async fn a_stream_cut_after_five_chunks_ends_with_an_error_event_and_no_failover() {
    let env = env();
    let r = env
        .http
        .post(env.gw.url("/v1/chat/completions"))
        .bearer_auth(ALL_KEY)
        .body(chat_body("cut", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = Vec::new();
    let mut s = r.bytes_stream();
    while let Some(chunk) = s.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    let data = sse_data(&String::from_utf8(body).unwrap());
    assert_eq!(data.len(), 6, "5 chunks and the error: {data:?}");
    for d in &data[..5] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["model"], "model-a");
    }
    let last: Value = serde_json::from_str(&data[5]).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_cut");
    // The first byte had gone to the client: B was not asked.
    assert_eq!(env.requests_at(&env.b).await, 0);
}

#[tokio::test]
async fn a_refused_provider_key_moves_on_without_a_retry_on_the_same_deployment() {
    let env = env();
    let (status, body) = env.ask("refused-key", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_by(&body), "model-b");
    // retries_per_deployment = 1, but the same key would be refused again: one try at A.
    assert_eq!(env.requests_at(&env.a).await, 1);
    assert_eq!(env.requests_at(&env.b).await, 1);
}

#[tokio::test]
async fn when_every_candidate_fails_the_client_gets_503_with_the_reasons() {
    let env = env();
    let (status, body) = env.ask("all-broken", false).await;
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "no_deployment_available");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("a-broken/model-a") && message.contains("b-broken/model-b"),
        "{message}"
    );
}

#[tokio::test]
async fn failed_health_checks_open_the_breaker_before_any_client_is_hurt() {
    let env = env();
    env.set_controls(&env.a, r#"{"status": 503}"#).await;
    // Checks every 100 ms; three failures open the breaker.
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.breaker("a-checked/model-a").await == "closed" {
        assert!(
            Instant::now() < deadline,
            "health checks never opened the breaker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = env.ask("checked", false).await;
    assert_eq!(status, 200);
    assert_eq!(served_by(&body), "model-b");
    // No chat request went to A: the checks alone found it down.
    assert_eq!(env.requests_at(&env.a).await, 0);
}
