//! One JSON access-log line per request: who, what, where it went, tokens, cost, timings;
//! never a secret.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test]
async fn every_request_gets_one_line_with_tokens_cost_and_no_secrets() {
    let mock = start_mock();
    let log = tmp_path("access.log");
    let gw = start_gateway(&format!(
        r#"
[server]
listen = "{{listen}}"

[log]
access = "{log}"

[[keys]]
name = "team-a"
sha256 = "{hash}"

[providers.mock]
kind = "openai"
base_url = "http://{m}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[models.m]
[[models.m.deployments]]
provider = "mock"
model = "gpt-x"
price = {{ input = 2.5, output = 10.0 }}
"#,
        log = log.display(),
        hash = sha256_hex(ALL_KEY.as_bytes()),
        m = mock.addr,
    ));
    let http = reqwest::Client::new();
    let ask = |key: &'static str, body: String| {
        http.post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .body(body)
            .send()
    };
    let r = ask(ALL_KEY, chat_body("m", false)).await.unwrap();
    let whole: Value = r.json().await.unwrap();
    let r = ask(ALL_KEY, chat_body("m", true)).await.unwrap();
    let _ = r.text().await.unwrap();
    assert_eq!(
        ask(ALL_KEY, chat_body("nope", false))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        ask("sk-not-a-key", chat_body("m", false))
            .await
            .unwrap()
            .status(),
        401
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 4 {
            assert!(
                !text.contains(PROVIDER_KEY)
                    && !text.contains(ALL_KEY)
                    && !text.contains("sk-not-a-key")
            );
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "only {} lines: {text}",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 4);
    let ok = &lines[0];
    assert_eq!(ok["key"], "team-a");
    assert_eq!(ok["model"], "m");
    assert_eq!(ok["deployment"], "mock/gpt-x");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["attempts"], 1);
    let (input, output) = (
        whole["usage"]["prompt_tokens"].as_u64().unwrap(),
        whole["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(ok["input_tokens"], input);
    assert_eq!(ok["output_tokens"], output);
    // $2.50 and $10 per million tokens, in integer micro-dollars.
    assert_eq!(
        ok["cost_usd_micros"],
        (input * 2_500_000 + output * 10_000_000 + 500_000) / 1_000_000
    );
    assert!(ok["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["ttft_ms"].as_f64().unwrap() > 0.0);
    let stream = &lines[1];
    assert_eq!(stream["stream"], true);
    assert_eq!(stream["output_tokens"], 8);
    assert_eq!(lines[2]["status"], 404);
    assert_eq!(lines[2]["error"], "model_not_found");
    assert_eq!(lines[3]["status"], 401);
    assert!(lines[3]["key"].is_null());
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
}
