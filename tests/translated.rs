//! Anthropic and Gemini upstreams behind the OpenAI endpoint, end to end through the
//! gateway and the mock: errors mapped, broken streams closed OpenAI-style.

mod common;

use common::*;
use serde_json::Value;

fn config(mock: &Proc) -> String {
    let m = mock.addr;
    let mut c = format!(
        r#"
[server]
listen = "{{listen}}"

[[keys]]
name = "all"
sha256 = "{hash}"
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
    );
    for (kind, base) in [("anthropic", "v1"), ("gemini", "v1beta")] {
        for (name, headers) in [
            ("ok", r#"{ "x-mock-echo" = "1" }"#),
            ("overloaded", r#"{ "x-mock-status" = "529" }"#),
            (
                "limited",
                r#"{ "x-mock-status" = "429", "x-mock-retry-after" = "3" }"#,
            ),
            ("refused", r#"{ "x-mock-status" = "401" }"#),
            ("bad", r#"{ "x-mock-status" = "400" }"#),
            ("cut", r#"{ "x-mock-cut-after" = "3" }"#),
        ] {
            c += &format!(
                r#"
[providers.{kind}-{name}]
kind = "{kind}"
base_url = "http://{m}/{base}"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"
headers = {headers}

[models.{kind}-{name}]
provider = "{kind}-{name}"
model = "{kind}-upstream"
"#
            );
        }
    }
    c
}

async fn ask(gw: &Proc, model: &str, stream: bool) -> (u16, reqwest::header::HeaderMap, String) {
    let r = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(ALL_KEY)
        .body(chat_body(model, stream))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

#[tokio::test]
async fn translated_requests_reach_the_native_endpoint_with_the_native_key_header() {
    let mock = start_mock();
    let gw = start_gateway(&config(&mock));
    let (s, _, body) = ask(&gw, "anthropic-ok", false).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let seen: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(seen["path"], "/v1/messages");
    assert_eq!(seen["headers"]["x-api-key"], PROVIDER_KEY);
    assert_eq!(seen["headers"]["anthropic-version"], "2023-06-01");
    assert!(seen["headers"].get("authorization").is_none());

    let (s, _, body) = ask(&gw, "gemini-ok", true).await;
    assert_eq!(s, 200);
    let data = sse_data(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let text: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let seen: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        seen["path"],
        "/v1beta/models/gemini-upstream:streamGenerateContent?alt=sse"
    );
    assert_eq!(seen["headers"]["x-goog-api-key"], PROVIDER_KEY);
}

#[tokio::test]
async fn provider_errors_map_to_statuses_clients_can_act_on() {
    let mock = start_mock();
    let gw = start_gateway(&config(&mock));
    for kind in ["anthropic", "gemini"] {
        for stream in [false, true] {
            let (s, h, body) = ask(&gw, &format!("{kind}-limited"), stream).await;
            assert_eq!(s, 429, "{kind}: {body}");
            assert_eq!(h["retry-after"], "3");
            let (s, _, body) = ask(&gw, &format!("{kind}-refused"), stream).await;
            assert_eq!(s, 502, "{kind}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], "upstream_auth_failed");
            let (s, _, body) = ask(&gw, &format!("{kind}-bad"), stream).await;
            assert_eq!(s, 400, "{kind}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert!(v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("mock: injected failure"));
        }
    }
    // Anthropic's 529 overloaded is the provider's trouble: 503.
    let (s, _, body) = ask(&gw, "anthropic-overloaded", false).await;
    assert_eq!(s, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "overloaded");
}

#[tokio::test]
async fn a_translated_stream_cut_short_ends_with_an_error_event() {
    let mock = start_mock();
    let gw = start_gateway(&config(&mock));
    for kind in ["anthropic", "gemini"] {
        let (s, _, body) = ask(&gw, &format!("{kind}-cut"), true).await;
        assert_eq!(s, 200);
        let data = sse_data(&body);
        assert!(!data.iter().any(|d| d == "[DONE]"), "{kind}: {body}");
        let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
        assert_eq!(last["error"]["code"], "upstream_stream_cut", "{kind}");
        // A translated whole response cut short is a clean 502: nothing was sent yet.
        let (s, _, body) = ask(&gw, &format!("{kind}-cut"), false).await;
        assert_eq!(s, 502, "{kind}: {body}");
    }
}
