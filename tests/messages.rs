//! The Anthropic Messages front door (`/v1/messages`): passed through byte for byte to an
//! Anthropic upstream (only the model replaced), translated for the others.

mod common;

use common::*;
use serde_json::Value;

fn gateway_for(upstream: std::net::SocketAddr) -> Proc {
    start_gateway(&format!(
        r#"
[server]
listen = "{{listen}}"

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.claude]
kind = "anthropic"
base_url = "http://{upstream}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[models.sonnet]
provider = "claude"
model = "claude-upstream-x"
aliases = ["claude-sonnet-4-5"]
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
    ))
}

/// A Claude Code-like request: system blocks with cache_control, a thinking block with its
/// signature, tool use, a field no translation knows, odd spacing.
fn claude_code_request(stream: bool) -> String {
    format!(
        r#"{{"model": "claude-sonnet-4-5","max_tokens":32000,"stream":{stream},
 "system":[{{"type":"text","text":"You are Claude Code.","cache_control":{{"type":"ephemeral"}}}}],
 "messages":[{{"role":"user","content":[{{"type":"text","text":"List the files."}}]}},
  {{"role":"assistant","content":[{{"type":"thinking","thinking":"I should call ls.","signature":"EqQBCkgIARABGAIiQJ+sig=="}},
   {{"type":"tool_use","id":"toolu_01","name":"Bash","input":{{"command":"ls"}}}}]}},
  {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_01","content":"a.rs\nb.rs","cache_control":{{"type":"ephemeral"}}}}]}}],
 "tools":[{{"name":"Bash","description":"Run a command","input_schema":{{"type":"object","properties":{{"command":{{"type":"string"}}}}}}}}],
 "thinking":{{"type":"enabled","budget_tokens":10000}},
 "metadata":{{"user_id":"user_abc_session_1"}},
 "context_management":{{"edits":[]}}}}"#
    )
}

async fn post_messages(
    gw: &Proc,
    query: &str,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = reqwest::Client::new()
        .post(gw.url(&format!("/v1/messages{query}")))
        .header("x-api-key", ALL_KEY)
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
        )
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_stream_to_an_anthropic_upstream_passes_through_byte_for_byte() {
    let capture = fixture("anthropic_stream_thinking.sse");
    let (up, seen) = recording_upstream(200, "text/event-stream", capture.clone()).await;
    let gw = gateway_for(up);
    let request = claude_code_request(true);
    let (status, headers, body) = post_messages(&gw, "?beta=true", &request).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "text/event-stream");
    assert!(body == capture, "the stream came back changed");

    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(got.request_line(), "POST /v1/messages?beta=true HTTP/1.1");
    let expected = request.replacen(
        r#""model": "claude-sonnet-4-5""#,
        r#""model": "claude-upstream-x""#,
        1,
    );
    assert!(expected != request);
    assert_eq!(String::from_utf8_lossy(&got.body), expected);
    assert_eq!(
        got.header("anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    assert_eq!(
        got.header("anthropic-beta").as_deref(),
        Some("interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14")
    );
    assert_eq!(got.header("x-api-key").as_deref(), Some(PROVIDER_KEY));
    assert_eq!(got.header("authorization"), None);
}

/// Issue 19: the client's query string and `anthropic-*` headers are the only client values
/// that reach an Anthropic upstream's request line and header as they are; neither can add a
/// header or a line there (the query stays percent-encoded, a header value cannot hold CRLF).
#[tokio::test]
async fn a_client_query_or_header_cannot_inject_into_the_upstream_request() {
    let capture = fixture("anthropic_message_tool_use.json");
    let (up, seen) = recording_upstream(200, "application/json", capture.clone()).await;
    let gw = gateway_for(up);
    let query = "?beta=true%0D%0Ax-injected:%201&b=%20HTTP/1.1%0D%0A";
    let (status, _, body) = post_messages(&gw, query, &claude_code_request(false)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(
        got.request_line(),
        format!("POST /v1/messages{query} HTTP/1.1")
    );
    assert_eq!(got.header("x-injected"), None);
    // A header value with a line break is refused by the client side already: the nearest a
    // client gets is an obs-fold-free value, passed on as one header.
    let r = reqwest::Client::new()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", ALL_KEY)
        .header("anthropic-beta", "a, b\tc")
        .body(claude_code_request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = seen.lock().unwrap()[1].clone();
    assert_eq!(got.header("anthropic-beta").as_deref(), Some("a, b\tc"));
    assert_eq!(got.header("x-injected"), None);
}

#[tokio::test]
async fn a_whole_answer_and_an_error_pass_through_unchanged() {
    let capture = fixture("anthropic_message_tool_use.json");
    let (up, seen) = recording_upstream(200, "application/json", capture.clone()).await;
    let gw = gateway_for(up);
    let (status, _, body) = post_messages(&gw, "", &claude_code_request(false)).await;
    assert_eq!(status, 200);
    assert!(body == capture, "the answer came back changed");
    assert_eq!(
        seen.lock().unwrap()[0].request_line(),
        "POST /v1/messages HTTP/1.1"
    );

    let error = fixture("anthropic_error_overloaded_529.json");
    let (up, _) = recording_upstream(529, "application/json", error.clone()).await;
    let gw = gateway_for(up);
    let (status, _, body) = post_messages(&gw, "", &claude_code_request(true)).await;
    assert!(status == 529 || status == 503, "{status}");
    assert!(body == error, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn thinking_another_backend_produced_is_not_replayed_to_anthropic() {
    let capture = fixture("anthropic_message.json");
    let (up, seen) = recording_upstream(200, "application/json", capture).await;
    let gw = gateway_for(up);
    // A thinking block Junction made from another backend's reasoning: no signature.
    let request = claude_code_request(false).replace(
        r#""signature":"EqQBCkgIARABGAIiQJ+sig==""#,
        r#""signature":"""#,
    );
    let (status, _, _) = post_messages(&gw, "", &request).await;
    assert_eq!(status, 200);
    let sent: Value = serde_json::from_slice(&seen.lock().unwrap()[0].body).unwrap();
    let assistant = &sent["messages"][1]["content"];
    assert_eq!(assistant.as_array().unwrap().len(), 1, "{assistant}");
    assert_eq!(assistant[0]["type"], "tool_use");
    assert_eq!(sent["model"], "claude-upstream-x");
}

#[tokio::test]
async fn errors_at_the_messages_door_are_in_anthropic_format() {
    let (up, _) = recording_upstream(200, "application/json", b"{}".to_vec()).await;
    let gw = gateway_for(up);
    let r = reqwest::Client::new()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", "sk-wrong")
        .body(claude_code_request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");

    let (status, _, body) =
        post_messages(&gw, "", r#"{"model":"nope","max_tokens":1,"messages":[]}"#).await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");

    let (status, _, body) = post_messages(&gw, "", "{broken").await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn a_session_stays_on_one_deployment_of_a_weighted_model() {
    let mock = start_mock();
    let m = mock.addr;
    let gw = start_gateway(&format!(
        r#"
[server]
listen = "{{listen}}"

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.mock]
kind = "openai"
base_url = "http://{m}/v1"

[models.shared]
strategy = "weighted"
[[models.shared.deployments]]
provider = "mock"
model = "gpt-a"
[[models.shared.deployments]]
provider = "mock"
model = "gpt-b"
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
    ));
    let ask = |user: String, header: Option<String>| {
        let gw_url = gw.url("/v1/messages");
        async move {
            let body = format!(
                r#"{{"model":"shared","max_tokens":10,"messages":[{{"role":"user","content":"hi"}}],"metadata":{{"user_id":"{user}"}}}}"#
            );
            let mut r = reqwest::Client::new()
                .post(gw_url)
                .header("x-api-key", ALL_KEY)
                .body(body);
            if let Some(h) = header {
                r = r.header("x-claude-code-session-id", h);
            }
            let v: Value = r.send().await.unwrap().json().await.unwrap();
            v["model"].as_str().unwrap().to_string()
        }
    };
    // One session: one deployment, every turn.
    let first = ask("session-x".into(), None).await;
    for _ in 0..20 {
        assert_eq!(ask("session-x".into(), None).await, first);
    }
    // Many sessions: both deployments serve some.
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        seen.insert(ask(format!("user-{i}"), None).await);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // The session header outranks the body's user id.
    let by_header = ask("user-0".into(), Some("claude-session-1".into())).await;
    for i in 1..20 {
        assert_eq!(
            ask(format!("user-{i}"), Some("claude-session-1".into())).await,
            by_header
        );
    }
}

fn keepalive_config(mock: &Proc) -> String {
    let m = mock.addr;
    format!(
        r#"
[server]
listen = "{{listen}}"
stream_keepalive_ms = 200

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.thinking]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-ttft-ms" = "1100" }}

[providers.dead-slow]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-ttft-ms" = "5000" }}
timeouts = {{ ttft_ms = 900 }}

[providers.fine]
kind = "openai"
base_url = "http://{m}/v1"

[models.slow-start]
provider = "thinking"

[models.fails-over]
[[models.fails-over.deployments]]
provider = "dead-slow"
priority = 0
[[models.fails-over.deployments]]
provider = "fine"
priority = 1

[models.never-starts]
provider = "dead-slow"

[providers.goes-quiet]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-chunk-delay-ms" = "3000", "x-mock-chunks" = "3" }}
timeouts = {{ idle_ms = 300 }}

[models.goes-quiet]
provider = "goes-quiet"
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
    )
}

async fn stream_text(gw: &Proc, path: &str, model: &str) -> (u16, String) {
    let door = if path == "/v1/messages" {
        "messages"
    } else {
        "chat"
    };
    ask_door(gw, door, model).await
}

#[tokio::test]
async fn a_stream_waiting_for_its_first_token_keeps_the_client_alive() {
    let mock = start_mock();
    let gw = start_gateway(&keepalive_config(&mock));
    let (status, text) = stream_text(&gw, "/v1/chat/completions", "slow-start").await;
    assert_eq!(status, 200);
    let first_data = text.find("data: ").unwrap();
    let pings = text[..first_data].matches(": keep-alive\n\n").count();
    assert!(
        pings >= 3,
        "{pings} keep-alives before the first token: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    let (status, text) = stream_text(&gw, "/v1/messages", "slow-start").await;
    assert_eq!(status, 200);
    let start = text.find("event: message_start").unwrap();
    let pings = text[..start]
        .matches("event: ping\ndata: {\"type\": \"ping\"}\n\n")
        .count();
    assert!(pings >= 3, "{pings} pings before message_start: {text}");
    assert!(
        text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{text}"
    );
}

#[tokio::test]
async fn after_keep_alives_a_dead_deployment_still_fails_over_or_ends_with_an_error_event() {
    let mock = start_mock();
    let gw = start_gateway(&keepalive_config(&mock));
    // The first deployment sends nothing within its TTFT deadline (after keep-alives went
    // out); the second answers, in the same response.
    let (status, text) = stream_text(&gw, "/v1/chat/completions", "fails-over").await;
    assert_eq!(status, 200);
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");

    // No deployment starts: the stream ends with an error event in the client's protocol.
    let (status, text) = stream_text(&gw, "/v1/chat/completions", "never-starts").await;
    assert_eq!(status, 200);
    let last: Value = serde_json::from_str(sse_data(&text).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{text}");

    let (status, text) = stream_text(&gw, "/v1/messages", "never-starts").await;
    assert_eq!(status, 200);
    assert!(text.contains("event: ping"), "{text}");
    let tail = text.rsplit("event: ").next().unwrap();
    assert!(tail.starts_with("error\ndata: "), "{text}");
    let v: Value = serde_json::from_str(tail.trim_start_matches("error\ndata: ").trim()).unwrap();
    assert_eq!(v["error"]["type"], "timeout_error", "{v}");
}

#[tokio::test]
async fn max_tokens_above_the_models_limit_is_clamped_on_the_way_through() {
    let capture = fixture("anthropic_message.json");
    let (up, seen) = recording_upstream(200, "application/json", capture).await;
    let gw = start_gateway(&format!(
        r#"
[server]
listen = "{{listen}}"

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.claude]
kind = "anthropic"
base_url = "http://{up}/v1"

[models.small]
provider = "claude"
model = "claude-small"
max_output_tokens = 8192
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
    ));
    let request = claude_code_request(false).replacen("claude-sonnet-4-5", "small", 1);
    let (status, _, _) = post_messages(&gw, "", &request).await;
    assert_eq!(status, 200);
    let sent: Value = serde_json::from_slice(&seen.lock().unwrap()[0].body).unwrap();
    assert_eq!(sent["max_tokens"], 8192);
    assert_eq!(sent["model"], "claude-small");
}

#[tokio::test]
async fn an_upstream_gone_quiet_mid_stream_ends_with_each_protocols_error_event() {
    let mock = start_mock();
    let gw = start_gateway(&keepalive_config(&mock));
    let client = reqwest::Client::new();
    let send = |path: &str, body: String| {
        client
            .post(gw.url(path))
            .header("x-api-key", ALL_KEY)
            .body(body)
            .send()
    };
    // Anthropic: an `error` event after the stream began.
    let r = send(
        "/v1/messages",
        r#"{"model":"goes-quiet","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#.into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("event: message_start"), "{text}");
    let tail = text.rsplit("event: ").next().unwrap();
    assert!(tail.starts_with("error\ndata: "), "{text}");
    let v: Value = serde_json::from_str(tail.trim_start_matches("error\ndata: ").trim()).unwrap();
    assert_eq!(v["error"]["type"], "timeout_error", "{v}");

    // Responses: response.failed, in sequence, as the last event.
    let r = send(
        "/v1/responses",
        r#"{"model":"goes-quiet","input":"hi","stream":true,"store":false}"#.into(),
    )
    .await
    .unwrap();
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["type"], "response.failed", "{text}");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    let numbers: Vec<u64> = data
        .iter()
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["sequence_number"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());

    // Gemini: a Google status object as the last event.
    let r = send(
        "/v1beta/models/goes-quiet:streamGenerateContent?alt=sse",
        r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#.into(),
    )
    .await
    .unwrap();
    let text = r.text().await.unwrap();
    let last: Value = serde_json::from_str(sse_data(&text).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], 504, "{text}");
    assert_eq!(last["error"]["status"], "DEADLINE_EXCEEDED");
}
