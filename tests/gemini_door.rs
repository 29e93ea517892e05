//! The Gemini front door (`/v1beta/models/{model}:generateContent`, `:streamGenerateContent`):
//! passed through byte for byte to a Gemini upstream (the model is in the path).

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

[providers.google]
kind = "gemini"
base_url = "http://{upstream}/v1beta"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[models.flash]
provider = "google"
model = "gemini-upstream-x"
aliases = ["gemini-2.5-flash"]
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
    ))
}

/// A Gemini CLI-like request: a thought signature to replay, a function call and response.
const REQUEST: &str = r#"{"contents":[{"role":"user","parts":[{"text":"List files"}]},
 {"role":"model","parts":[{"functionCall":{"name":"ls","args":{"dir":"."}},"thoughtSignature":"CiQBcsjafE+sig=="}]},
 {"role":"user","parts":[{"functionResponse":{"name":"ls","response":{"output":"a.rs"}}}]}],
 "systemInstruction":{"parts":[{"text":"You are Gemini CLI."}]},
 "tools":[{"functionDeclarations":[{"name":"ls","parametersJsonSchema":{"type":"object"}}]}],
 "generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingBudget":-1}}}"#;

async fn post(gw: &Proc, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new()
        .post(gw.url(path))
        .header("x-goog-api-key", ALL_KEY)
        .header("content-type", "application/json")
        .body(REQUEST)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_gemini_stream_passes_through_byte_for_byte() {
    let capture = fixture("gemini_stream_thinking_function_call.sse");
    let (up, seen) = recording_upstream(200, "text/event-stream", capture.clone()).await;
    let gw = gateway_for(up);
    let (status, body) = post(
        &gw,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == capture, "the stream came back changed");
    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(
        got.request_line(),
        "POST /v1beta/models/gemini-upstream-x:streamGenerateContent?alt=sse HTTP/1.1"
    );
    assert_eq!(String::from_utf8_lossy(&got.body), REQUEST);
    assert_eq!(got.header("x-goog-api-key").as_deref(), Some(PROVIDER_KEY));
}

#[tokio::test]
async fn a_whole_answer_and_an_error_pass_through_unchanged() {
    let capture = fixture("gemini_generate_content_function_call.json");
    let (up, seen) = recording_upstream(200, "application/json", capture.clone()).await;
    let gw = gateway_for(up);
    let (status, body) = post(&gw, "/v1beta/models/flash:generateContent").await;
    assert_eq!(status, 200);
    assert!(body == capture, "the answer came back changed");
    assert_eq!(
        seen.lock().unwrap()[0].request_line(),
        "POST /v1beta/models/gemini-upstream-x:generateContent HTTP/1.1"
    );

    let error = fixture("gemini_error_429_resource_exhausted.json");
    let (up, _) = recording_upstream(429, "application/json", error.clone()).await;
    let gw = gateway_for(up);
    let (status, body) = post(&gw, "/v1beta/models/flash:generateContent").await;
    assert_eq!(status, 429);
    assert!(body == error, "{}", String::from_utf8_lossy(&body));
}
