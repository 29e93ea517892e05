//! The Responses front door (`POST /v1/responses`) to a provider that serves the Responses
//! API itself (`responses = true`): passed through byte for byte except the model.
//! (Translation to chat upstreams is covered by the SDK tests.)

mod common;

use common::*;

fn gateway_for(upstream: std::net::SocketAddr) -> Proc {
    start_gateway(&format!(
        r#"
[server]
listen = "{{listen}}"

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.openai]
kind = "openai"
base_url = "http://{upstream}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"
responses = true

[models.codex]
provider = "openai"
model = "gpt-5-codex-upstream"
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
    ))
}

/// A Codex-like request: a reasoning item with encrypted content from this same provider,
/// a function call and its output, a custom tool.
const REQUEST: &str = r#"{"model":"codex","instructions":"You are Codex.","store":false,"stream":true,
 "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"fix it"}]},
  {"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAAAABo-opaque=="},
  {"type":"function_call","call_id":"call_1","name":"shell","arguments":"{\"cmd\":[\"ls\"]}"},
  {"type":"function_call_output","call_id":"call_1","output":"a.rs"}],
 "tools":[{"type":"function","name":"shell","parameters":{"type":"object"}},{"type":"custom","name":"apply_patch"}],
 "include":["reasoning.encrypted_content"],"prompt_cache_key":"sess-1"}"#;

/// The shape of the Responses event stream (made to the SDK's types; no capture of one is
/// among the shared fixtures): the gateway must hand it on unchanged.
const STREAM: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[],\"usage\":null}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Done\",\"logprobs\":[]}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"output\":[],\"usage\":{\"input_tokens\":120,\"input_tokens_details\":{\"cached_tokens\":100},\"output_tokens\":7,\"output_tokens_details\":{\"reasoning_tokens\":3},\"total_tokens\":127}}}\n\n";

async fn post(gw: &Proc, body: &str) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new()
        .post(gw.url("/v1/responses"))
        .bearer_auth(ALL_KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_responses_stream_passes_through_to_a_provider_that_serves_it() {
    let (up, seen) = recording_upstream(200, "text/event-stream", STREAM.as_bytes().to_vec()).await;
    let gw = gateway_for(up);
    let (status, body) = post(&gw, REQUEST).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8_lossy(&body), STREAM);
    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(got.request_line(), "POST /v1/responses HTTP/1.1");
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        REQUEST.replacen(r#""model":"codex""#, r#""model":"gpt-5-codex-upstream""#, 1)
    );
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}"))
    );
}

#[tokio::test]
async fn a_whole_response_and_an_error_pass_through_unchanged() {
    let whole = br#"{"id":"resp_2","object":"response","status":"completed","output":[{"type":"message","id":"msg_2","status":"completed","role":"assistant","content":[{"type":"output_text","text":"ok","annotations":[]}]}],"usage":{"input_tokens":5,"output_tokens":1,"total_tokens":6}}"#;
    let (up, _) = recording_upstream(200, "application/json", whole.to_vec()).await;
    let gw = gateway_for(up);
    let (status, body) = post(
        &gw,
        &REQUEST.replace(r#""stream":true"#, r#""stream":false"#),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, whole);

    let error = fixture("openai_error_429_rate_limit.json");
    let (up, _) = recording_upstream(429, "application/json", error.clone()).await;
    let gw = gateway_for(up);
    let (status, body) = post(&gw, REQUEST).await;
    assert_eq!(status, 429);
    assert!(body == error, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn a_passed_through_response_is_stored_and_continued_with_the_whole_input() {
    let (up, seen) = recording_upstream(200, "text/event-stream", STREAM.as_bytes().to_vec()).await;
    let gw = gateway_for(up);
    // `store` on: the upstream's own response id is the one continued.
    let first = REQUEST.replacen(r#""store":false"#, r#""store":true"#, 1);
    let (status, body) = post(&gw, &first).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        String::from_utf8_lossy(&body),
        STREAM,
        "passed on unchanged"
    );
    let second = r#"{"model":"codex","previous_response_id":"resp_1","stream":true,"store":false,
        "input":[{"type":"message","role":"user","content":"and now?"}]}"#;
    let (status, body) = post(&gw, second).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let sent: serde_json::Value = serde_json::from_slice(&seen.lock().unwrap()[1].body).unwrap();
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    let asked: serde_json::Value = serde_json::from_str(&first).unwrap();
    let mut input = asked["input"].as_array().unwrap().clone();
    // The first answer's output (none in this stream), then the new input.
    input.push(serde_json::json!({"type":"message","role":"user","content":"and now?"}));
    assert_eq!(sent["input"], serde_json::Value::Array(input));
}
