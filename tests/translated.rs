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
            ("cut", r#"{ "x-mock-cut-after" = "5" }"#),
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

/// Issue 15: an error the upstream sends inside its stream before the answer began (HTTP 200,
/// then `event: error`) is a failed attempt like an error status: the request moves on to the
/// next deployment and the client never sees it; with no other deployment, the client gets
/// the error with its status, in its door's format, and the ledger says what happened.
#[tokio::test]
async fn an_error_event_before_the_answer_moves_the_request_on_at_every_door() {
    let mock = start_mock();
    for (capture, kind, status) in [
        (
            "anthropic_stream_error_overloaded.sse",
            "overloaded_error",
            503,
        ),
        ("anthropic_stream_error_midstream.sse", "api_error", 500),
    ] {
        let (up, seen) = recording_upstream(200, "text/event-stream", fixture(capture)).await;
        let ledger = tmp_path("in-band.sqlite");
        let config = format!(
            r#"
[server]
listen = "{{listen}}"

[routing]
backoff_base_ms = 1
backoff_max_ms = 2
retries_per_deployment = 0

# Every request here tries the failing deployment first.
[breaker]
consecutive_failures = 1000
min_requests = 1000

[ledger]
path = "{ledger}"

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.flaky]
kind = "anthropic"
base_url = "http://{up}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[providers.good]
kind = "anthropic"
base_url = "http://{m}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[models.fails-over]
[[models.fails-over.deployments]]
provider = "flaky"
model = "claude-flaky"
[[models.fails-over.deployments]]
provider = "good"
model = "claude-good"

[models.alone]
provider = "flaky"
model = "claude-flaky"
"#,
            ledger = ledger.display(),
            hash = sha256_hex(ALL_KEY.as_bytes()),
            m = mock.addr,
        );
        let gw = start_gateway(&config);
        for door in ["chat", "messages", "responses", "gemini"] {
            let before = seen.lock().unwrap().len();
            let (got, text) = ask_door(&gw, door, "fails-over").await;
            let what = format!("{capture} at the {door} door: {text}");
            assert_eq!(got, 200, "{what}");
            assert!(text.contains(door_request(door, "").3), "{what}");
            for error in ["Overloaded", "\"error\":{", "event: error"] {
                assert!(!text.contains(error), "{what}");
            }
            assert_eq!(seen.lock().unwrap().len(), before + 1, "{what}: tried once");

            let (got, text) = ask_door(&gw, door, "alone").await;
            let what = format!("{capture} alone at the {door} door: {text}");
            assert_eq!(got, status, "{what}");
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
            match door {
                "messages" => assert_eq!(v["error"]["type"], kind, "{what}"),
                "gemini" => assert_eq!(v["error"]["code"], status, "{what}"),
                _ => assert!(
                    v["error"]["message"].as_str().unwrap().contains("flaky"),
                    "{what}"
                ),
            }
        }
        // Recorded as what it was: an upstream error with its code, never a 200.
        let rows = eventually("the ledger to hold the refused requests", || async {
            let db = rusqlite::Connection::open(&ledger).ok()?;
            let mut q = db
                .prepare("SELECT status, ending, error FROM requests WHERE model = 'alone'")
                .ok()?;
            let rows: Vec<(i64, String, Option<String>)> = q
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .ok()?
                .map(Result::unwrap)
                .collect();
            (rows.len() >= 4).then_some(rows)
        })
        .await;
        assert_eq!(rows.len(), 4, "{capture}: {rows:?}");
        for (s, ending, error) in rows {
            assert_eq!(s, i64::from(status), "{capture}");
            assert_eq!(ending, "upstream_error", "{capture}");
            assert!(error.is_some(), "{capture}");
        }
    }
}

/// An upstream that echoes the credentials it was sent in its errors, as a misconfigured
/// relay or a hostile endpoint does: a 500 for whole requests, a 200 and an error event for
/// streams, each in the protocol of the path it was asked on.
async fn echoing_upstream() -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(request) = read_request(&mut conn, &mut Vec::new()).await else {
                    return;
                };
                let header = |name: &str| request.header(name).unwrap_or_default();
                let head = &request.head;
                let body = String::from_utf8_lossy(&request.body);
                let echo = format!(
                    "auth={} key={} goog={} relay={}",
                    header("authorization"),
                    header("x-api-key"),
                    header("x-goog-api-key"),
                    header("x-relay-secret")
                );
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let stream = body.contains("\"stream\":true") || path.contains("stream");
                let (error, event) = if path.contains("/messages") {
                    let e = format!(
                        r#"{{"type":"error","error":{{"type":"api_error","message":"{echo}"}}}}"#
                    );
                    (e.clone(), format!("event: error\ndata: {e}\n\n"))
                } else if path.contains("generateContent") {
                    let e = format!(
                        r#"{{"error":{{"code":500,"message":"{echo}","status":"INTERNAL"}}}}"#
                    );
                    (e.clone(), format!("data: {e}\r\n\r\n"))
                } else {
                    let e = format!(r#"{{"error":{{"message":"{echo}","type":"server_error"}}}}"#);
                    (e.clone(), format!("data: {e}\n\n"))
                };
                let (status, kind, answer) = if stream {
                    (200, "text/event-stream", event)
                } else {
                    (500, "application/json", error)
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// Issue 19: a provider's key (and its secret headers) never reach a client, whatever the
/// upstream echoes: at every door, for every upstream kind, streamed and not.
#[tokio::test]
async fn a_provider_key_echoed_by_the_upstream_never_reaches_the_client() {
    const RELAY_SECRET: &str = "relay-secret-0123456789";
    let up = echoing_upstream().await;
    let mut config = format!(
        r#"
[server]
listen = "{{listen}}"

[routing]
retries_per_deployment = 0
backoff_base_ms = 1
backoff_max_ms = 2

[breaker]
consecutive_failures = 1000
min_requests = 1000

[[keys]]
name = "all"
sha256 = "{hash}"
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
    );
    for (kind, base) in [("openai", "v1"), ("anthropic", "v1"), ("gemini", "v1beta")] {
        config += &format!(
            r#"
[providers.{kind}-echo]
kind = "{kind}"
base_url = "http://{up}/{base}"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"
headers = {{ "x-relay-secret" = "{RELAY_SECRET}" }}

[models.{kind}-echo]
provider = "{kind}-echo"
model = "echo-model"
"#
        );
    }
    let gw = start_gateway(&config);
    let mut redacted = 0;
    for kind in ["openai", "anthropic", "gemini"] {
        let model = format!("{kind}-echo");
        for door in ["chat", "messages", "responses", "gemini"] {
            for stream in [true, false] {
                let (mut path, mut body, header, _) = door_request(door, &model);
                if !stream {
                    body = body.replace("\"stream\":true", "\"stream\":false");
                    path = path.replace(":streamGenerateContent?alt=sse", ":generateContent");
                }
                let (status, text) = send_door(&gw, &path, body, header).await;
                let what = format!(
                    "{kind} upstream at the {door} door (stream: {stream}): {status} {text}"
                );
                assert!(!text.contains(PROVIDER_KEY), "{what}");
                assert!(!text.contains(RELAY_SECRET), "{what}");
                assert_eq!(status, 500, "{what}");
                redacted += usize::from(text.contains("[redacted]"));
            }
        }
    }
    // The upstream's text was passed on (redacted), not only replaced by the gateway's own.
    assert_eq!(redacted, 24);
    assert!(!gw.log_text().contains(PROVIDER_KEY));
}

/// Issue 19: a model name that cannot go into the upstream's request path is the client's
/// mistake (400 naming the model, in the door's format), never a 500 or a request to
/// another path.
#[tokio::test]
async fn a_model_name_a_provider_path_cannot_carry_is_a_400() {
    let mock = start_mock();
    let gw = start_gateway(&config(&mock));
    for model in [
        "gemini-ok/a b",
        "gemini-ok/../../files",
        "gemini-ok/x:y?z",
        "gemini-ok/%0d%0a",
    ] {
        let (status, _, body) = ask(&gw, model, false).await;
        assert_eq!(status, 400, "{model}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["param"], "model", "{model}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("gemini-ok"),
            "{model}"
        );
        for door in ["messages", "responses"] {
            let (status, text) = ask_door(&gw, door, model).await;
            assert_eq!(status, 400, "{model} at the {door} door: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(v["error"]["message"].is_string(), "{door}: {text}");
        }
    }
    // A well-formed direct name still goes through.
    let (status, _, body) = ask(&gw, "gemini-ok/gemini-2.5-flash", false).await;
    assert_eq!(status, 200, "{body}");
}
