//! The Responses API's state at the Responses door: a response created with `store` on (the
//! default) is kept, and a later request's `previous_response_id` and `item_reference` items
//! are resolved against it, for every upstream kind: the upstream receives the whole
//! conversation, in order. Upstreams answer with real captures.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const OTHER_KEY: &str = "sk-test-other-key";

/// A gateway whose model `m` goes to `upstream`, of `kind`.
fn gateway_for(kind: &str, upstream: std::net::SocketAddr) -> (Proc, std::path::PathBuf) {
    let base = match kind {
        "gemini" => format!("http://{upstream}/v1beta"),
        _ => format!("http://{upstream}/v1"),
    };
    let listen = format!("127.0.0.1:{}", free_port());
    start_gateway_at(
        &listen,
        &format!(
            r#"
[server]
listen = "{{listen}}"

[[keys]]
name = "all"
sha256 = "{hash}"

[[keys]]
name = "other"
sha256 = "{other}"

[providers.up]
kind = "{kind}"
base_url = "{base}"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[models.m]
provider = "up"
model = "upstream-model"
"#,
            hash = sha256_hex(ALL_KEY.as_bytes()),
            other = sha256_hex(OTHER_KEY.as_bytes()),
        ),
    )
}

/// Each upstream kind, streamed or not, with the capture it answers with and the answer's
/// text in it.
fn kinds() -> Vec<(&'static str, bool, Vec<u8>, &'static str)> {
    vec![
        (
            "openai",
            false,
            fixture("openai_chat_completion.json"),
            "application/json",
        ),
        (
            "openai",
            true,
            fixture("openai_stream_usage.sse"),
            "text/event-stream",
        ),
        (
            "anthropic",
            false,
            fixture("anthropic_message.json"),
            "application/json",
        ),
        (
            "anthropic",
            true,
            fixture("anthropic_stream_text.sse"),
            "text/event-stream",
        ),
        (
            "gemini",
            false,
            fixture("gemini_generate_content.json"),
            "application/json",
        ),
        (
            "gemini",
            true,
            fixture("gemini_stream.sse"),
            "text/event-stream",
        ),
    ]
}

async fn post(gw: &Proc, key: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(gw.url("/v1/responses"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    if !text.starts_with("event:") && !text.starts_with("data:") {
        return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
    }
    // A stream: the response object of its last event.
    let last = sse_data(&text)
        .into_iter()
        .filter_map(|d| serde_json::from_str::<Value>(&d).ok())
        .next_back()
        .unwrap();
    assert_eq!(last["type"], "response.completed", "{text}");
    (status, last["response"].clone())
}

/// The text of every message the upstream was sent, in order, whatever its protocol.
fn upstream_texts(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap();
    let mut out = Vec::new();
    let mut text_of = |c: &Value| match c {
        Value::String(s) => out.push(s.clone()),
        Value::Array(parts) => {
            for p in parts {
                if let Some(t) = p["text"].as_str() {
                    out.push(t.to_string());
                }
            }
        }
        _ => {}
    };
    // The instructions, where each protocol puts them.
    text_of(&v["system"]);
    text_of(&v["systemInstruction"]["parts"]);
    if let Some(messages) = v["messages"].as_array() {
        for m in messages {
            text_of(&m["content"]);
        }
    }
    if let Some(contents) = v["contents"].as_array() {
        for c in contents {
            text_of(&c["parts"]);
        }
    }
    out
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().clone())
        .filter_map(|c| c["text"].as_str().map(str::to_string))
        .collect()
}

/// A gateway in front of an upstream of `kind` answering `answer`, and its first turn
/// ("What is 2+2?", stored): the gateway, what the upstream received, the response, and a
/// label for the assertions.
async fn first_turn(
    kind: &'static str,
    stream: bool,
    answer: Vec<u8>,
    content_type: &'static str,
) -> (Proc, Arc<Mutex<Vec<Received>>>, Value, String) {
    let (up, seen) = recording_upstream(200, content_type, answer).await;
    let (gw, _) = gateway_for(kind, up);
    let what = format!("{kind} stream={stream}");
    let (status, first) = post(
        &gw,
        ALL_KEY,
        json!({"model": "m", "input": "What is 2+2?", "stream": stream}),
    )
    .await;
    assert_eq!(status, 200, "{what}: {first}");
    (gw, seen, first, what)
}

#[tokio::test]
async fn previous_response_id_sends_the_whole_conversation_to_every_upstream_kind() {
    for (kind, stream, answer, content_type) in kinds() {
        let (gw, seen, first, what) = first_turn(kind, stream, answer, content_type).await;
        assert_eq!(first["store"], true, "{what}");
        let answer = output_text(&first);
        assert!(!answer.is_empty(), "{what}: {first}");

        let (status, second) = post(
            &gw,
            ALL_KEY,
            json!({"model": "m", "previous_response_id": first["id"], "input": "And 3+3?", "stream": stream,
                   "instructions": "Be brief."}),
        )
        .await;
        assert_eq!(status, 200, "{what}: {second}");
        assert_eq!(second["previous_response_id"], first["id"], "{what}");
        assert_ne!(second["id"], first["id"], "{what}");

        let (status, third) = post(
            &gw,
            ALL_KEY,
            json!({"model": "m", "previous_response_id": second["id"], "input": [{"role": "user", "content": "And 4+4?"}], "stream": stream}),
        )
        .await;
        assert_eq!(status, 200, "{what}: {third}");

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "{what}");
        assert_eq!(upstream_texts(&seen[0].body), ["What is 2+2?"], "{what}");
        assert_eq!(
            upstream_texts(&seen[1].body),
            ["Be brief.", "What is 2+2?", answer.as_str(), "And 3+3?"],
            "{what}"
        );
        // The chain is walked back; the second turn's instructions are not carried over
        // (as OpenAI's are not).
        assert_eq!(
            upstream_texts(&seen[2].body),
            [
                "What is 2+2?",
                answer.as_str(),
                "And 3+3?",
                answer.as_str(),
                "And 4+4?"
            ],
            "{what}"
        );
    }
}

#[tokio::test]
async fn item_references_become_the_items_they_name() {
    // The Vercel AI SDK's second turn with `store` on: earlier output as item references.
    for (kind, stream, answer, content_type) in kinds() {
        let (gw, seen, first, what) = first_turn(kind, stream, answer, content_type).await;
        let item = first["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "message")
            .unwrap()["id"]
            .clone();
        let (status, second) = post(
            &gw,
            ALL_KEY,
            json!({"model": "m", "stream": stream, "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "What is 2+2?"}]},
                {"type": "item_reference", "id": item},
                {"role": "user", "content": [{"type": "input_text", "text": "And 3+3?"}]}]}),
        )
        .await;
        assert_eq!(status, 200, "{what}: {second}");
        let seen = seen.lock().unwrap();
        assert_eq!(
            upstream_texts(&seen[1].body),
            ["What is 2+2?", output_text(&first).as_str(), "And 3+3?"],
            "{what}"
        );
    }
}

#[tokio::test]
async fn what_the_store_does_not_hold_for_this_key_is_a_clear_error() {
    let (up, seen) = recording_upstream(
        200,
        "application/json",
        fixture("openai_chat_completion.json"),
    )
    .await;
    let (gw, _) = gateway_for("openai", up);
    let (status, first) = post(&gw, ALL_KEY, json!({"model": "m", "input": "hi"})).await;
    assert_eq!(status, 200, "{first}");
    let (_, unstored) = post(
        &gw,
        ALL_KEY,
        json!({"model": "m", "input": "hi", "store": false}),
    )
    .await;
    assert_eq!(unstored["store"], false);

    let cases = [
        (
            ALL_KEY,
            json!({"model": "m", "input": "x", "previous_response_id": "resp_nope"}),
            400,
            "previous_response_not_found",
            "previous_response_id",
        ),
        (
            ALL_KEY,
            json!({"model": "m", "input": "x", "previous_response_id": unstored["id"]}),
            400,
            "previous_response_not_found",
            "previous_response_id",
        ),
        // Another key's response does not exist for this one.
        (
            OTHER_KEY,
            json!({"model": "m", "input": "x", "previous_response_id": first["id"]}),
            400,
            "previous_response_not_found",
            "previous_response_id",
        ),
        (
            OTHER_KEY,
            json!({"model": "m", "input": [{"type": "item_reference", "id": first["output"][0]["id"]}]}),
            404,
            "item_not_found",
            "input",
        ),
        (
            ALL_KEY,
            json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_nope"}]}),
            404,
            "item_not_found",
            "input",
        ),
        (
            ALL_KEY,
            json!({"model": "m", "input": "x", "previous_response_id": 7}),
            400,
            "invalid_request",
            "previous_response_id",
        ),
        (
            ALL_KEY,
            json!({"model": "m", "input": "x", "store": "yes"}),
            400,
            "invalid_request",
            "store",
        ),
    ];
    for (key, body, status, code, param) in cases {
        let (got, e) = post(&gw, key, body.clone()).await;
        assert_eq!(got, status, "{body}: {e}");
        assert_eq!(e["error"]["code"], code, "{body}: {e}");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{body}: {e}");
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "no refused request went upstream"
    );
}

#[tokio::test]
async fn stored_responses_outlive_a_restart() {
    let (up, seen) =
        recording_upstream(200, "application/json", fixture("anthropic_message.json")).await;
    let (gw, config) = gateway_for("anthropic", up);
    let (status, first) = post(&gw, ALL_KEY, json!({"model": "m", "input": "What is 2+2?"})).await;
    assert_eq!(status, 200, "{first}");
    let addr = gw.addr;
    // A graceful stop writes out what is queued.
    let mut gw = gw;
    let pid = gw.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(gw.child.wait().unwrap().success());
    drop(gw);
    let gw = start_gateway_on(addr, &config);
    let (status, second) = post(
        &gw,
        ALL_KEY,
        json!({"model": "m", "previous_response_id": first["id"], "input": "And 3+3?"}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let seen = seen.lock().unwrap();
    assert_eq!(
        upstream_texts(&seen[1].body),
        ["What is 2+2?", output_text(&first).as_str(), "And 3+3?"]
    );
}
