//! The Gemini front door (`/v1beta/models/{model}:generateContent`, `:streamGenerateContent`):
//! passed through byte for byte to a Gemini upstream (the model is in the path).

mod common;

use common::*;

fn gateway_for(upstream: std::net::SocketAddr) -> Proc {
    start_gateway(&gateway_config(upstream))
}

fn gateway_config(upstream: std::net::SocketAddr) -> String {
    format!(
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
    )
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

/// An early Gemini stream that reports no usage at all (a real gemini-pro capture): the
/// client is told no made-up zeros, and the ledger holds an estimate, saying so, at both doors.
#[tokio::test]
async fn a_stream_that_reports_no_usage_is_billed_by_an_estimate() {
    let capture = fixture("gemini_stream_no_usage.sse");
    let (up, _) = recording_upstream(200, "text/event-stream", capture.clone()).await;
    let config = gateway_config(up);
    let (gw, path) = start_gateway_at(&format!("127.0.0.1:{}", free_port()), &config);
    // The text Gemini sent, chunk by chunk.
    let text: String = String::from_utf8_lossy(&capture)
        .split("data: ")
        .skip(1)
        .map(|d| {
            let v: serde_json::Value = serde_json::from_str(d.trim()).unwrap();
            v["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(ALL_KEY)
        .body(r#"{"model":"flash","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Tell me about cats and dogs"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let chunks: Vec<serde_json::Value> = sse_data(&body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let got: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(got, text);
    // One finish, at the end, though every chunk said STOP.
    let finishes = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"].is_string())
        .count();
    assert_eq!(finishes, 1);
    for c in &chunks {
        if let Some(u) = c.get("usage").filter(|u| !u.is_null()) {
            assert_ne!(u["completion_tokens"], 0, "a zero usage chunk: {u}");
        }
    }
    let (status, _) = post(&gw, "/v1beta/models/flash:streamGenerateContent?alt=sse").await;
    assert_eq!(status, 200);

    let db = path.with_file_name("junction-ledger.sqlite");
    let rows: Vec<(String, String, i64, i64)> = eventually("both requests in the ledger", || {
        let db = db.clone();
        async move {
            let db = rusqlite::Connection::open(db).ok()?;
            let mut q = db
                .prepare("SELECT request_id, usage_source, input_tokens, output_tokens FROM requests ORDER BY id")
                .ok()?;
            let rows: Vec<_> = q
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .ok()?
                .collect::<Result<_, _>>()
                .ok()?;
            (rows.len() == 2).then_some(rows)
        }
    })
    .await;
    // The answer's text, counted as the gateway estimates it (o200k_base standing in for
    // Gemini's tokenizer), whichever door.
    let tokens = junction::usage::estimate::Tokenizer::O200k.count(&text) as i64;
    for (id, source, input, output) in &rows {
        assert_eq!(source, "estimate", "{id}");
        assert!(*input > 0, "{id}: {input}");
        assert_eq!(*output, tokens, "{id}");
    }
}
