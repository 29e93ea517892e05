//! End-to-end: the gateway and the mock upstream as real processes, driven over HTTP.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

struct Env {
    _mock: Proc,
    gw: Proc,
    http: reqwest::Client,
}

fn env() -> Env {
    let mock = start_mock();
    let gw = start_gateway(&config(&mock));
    Env {
        _mock: mock,
        gw,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn post(&self, key: Option<&str>, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(self.gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r
    }

    async fn chat(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let r = self.post(Some(ALL_KEY), body).send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }
}

fn error_of(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let e = v["error"].clone();
    assert!(e["message"].is_string(), "{body}");
    assert!(e["type"].is_string(), "{body}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{body}"
    );
    e
}

/// What the mock saw, from an echo answer (non-streaming).
fn echoed(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap();
    serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn non_streaming_completion_comes_back_whole_with_usage() {
    let env = env();
    let (status, headers, body) = env.chat(chat_body("m-plain", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the Junction mock upstream, friend"
    );
}

#[tokio::test]
async fn only_the_model_is_changed_and_the_provider_key_is_sent() {
    let env = env();
    let body = r#"{"messages":[{"role":"user","content":"hi \"model\""}],"model" : "m-echo","temperature":0.5,"n":1,"extra_field":{"model":"keep"}}"#;
    let (status, _, text) = env.chat(body).await;
    assert_eq!(status, 200, "{text}");
    let seen = echoed(&text);
    let expected = body.replace(r#""m-echo""#, r#""echo-upstream""#);
    assert_eq!(seen["sha256"], sha256_hex(expected.as_bytes()));
    assert_eq!(seen["path"], "/v1/chat/completions");
    assert_eq!(
        seen["headers"]["authorization"],
        format!("Bearer {PROVIDER_KEY}")
    );
    assert_eq!(seen["headers"]["x-mock-echo"], "1");
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    let env = env();
    let mut peers = Vec::new();
    for _ in 0..5 {
        let (status, _, text) = env.chat(chat_body("m-echo", false)).await;
        assert_eq!(status, 200);
        peers.push(echoed(&text)["peer"].as_str().unwrap().to_string());
    }
    // Sequential requests ride one pooled upstream connection: one source port.
    assert!(peers.windows(2).all(|w| w[0] == w[1]), "{peers:?}");
}

#[tokio::test]
async fn two_mib_bodies_arrive_intact_with_either_framing() {
    let env = env();
    let filler = "x".repeat(2 * 1024 * 1024);
    let body =
        format!(r#"{{"model":"m-echo","messages":[{{"role":"user","content":"{filler}"}}]}}"#);
    let expected = body.replace(r#""m-echo""#, r#""echo-upstream""#);

    // Content-Length.
    let (status, _, text) = env.chat(body.clone()).await;
    assert_eq!(status, 200);
    let seen = echoed(&text);
    assert_eq!(seen["bytes"], expected.len());
    assert_eq!(seen["sha256"], sha256_hex(expected.as_bytes()));

    // Chunked: a streamed body has no Content-Length.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = body
        .as_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let stream_body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    let (status, _, text) = env.chat(stream_body).await;
    assert_eq!(status, 200, "{text}");
    let seen = echoed(&text);
    assert_eq!(seen["bytes"], expected.len());
    assert_eq!(seen["sha256"], sha256_hex(expected.as_bytes()));
}

#[tokio::test]
async fn stream_ends_with_done_and_hides_usage_unless_asked() {
    let env = env();
    let (status, headers, body) = env.chat(chat_body("m-plain", true)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let data = sse_data(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(!body.contains("prompt_tokens"), "usage leaked: {body}");
    let text: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "Hello from the Junction mock upstream, friend");

    let asked = r#"{"model":"m-plain","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}"#;
    let (_, _, body) = env.chat(asked).await;
    let data = sse_data(&body);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 8);
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn stream_chunks_arrive_as_the_upstream_sends_them() {
    let env = env();
    // The mock waits 150 ms between chunks; a buffering gateway would deliver them together.
    let r = env
        .post(Some(ALL_KEY), chat_body("m-slow", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut arrivals = Vec::new();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.unwrap());
        let events = buf.windows(2).filter(|w| w == b"\n\n").count();
        while arrivals.len() < events {
            arrivals.push(Instant::now());
        }
    }
    // role, 4 content chunks, finish, [DONE] (the usage chunk is removed).
    assert_eq!(arrivals.len(), 7, "{}", String::from_utf8_lossy(&buf));
    for pair in arrivals[..6].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(100),
            "events arrived together: gap {gap:?}"
        );
    }
}

#[tokio::test]
async fn http2_both_sides() {
    let env = env();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .post(env.gw.url("/v1/chat/completions"))
        .bearer_auth(ALL_KEY)
        .body(chat_body("m-h2", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let seen = echoed(&r.text().await.unwrap());
    // The mock saw an HTTP/2 request: h2 has no Content-Length requirement but carries
    // the :authority; the body arrived whole.
    assert_eq!(
        seen["sha256"],
        sha256_hex(chat_body("h2-upstream", false).as_bytes())
    );

    let r = h2
        .post(env.gw.url("/v1/chat/completions"))
        .bearer_auth(ALL_KEY)
        .body(chat_body("m-plain", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let body = r.text().await.unwrap();
    assert_eq!(sse_data(&body).last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let env = env();
    let mut conn = std::net::TcpStream::connect(env.gw.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = chat_body("m-plain", false);
    for _ in 0..3 {
        write!(
            conn,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALL_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let (head, body) = read_response(&mut conn);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        assert!(body.contains("chat.completion"));
    }
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let env = env();
    let mut conn = std::net::TcpStream::connect(env.gw.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = chat_body("m-plain", false);
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALL_KEY}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The client holds its body until it hears 100 Continue.
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(body.as_bytes()).unwrap();
    let (head, body) = read_response(&mut conn);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("chat.completion"));
}

/// Reads one Content-Length response from a raw connection.
fn read_response(conn: &mut std::net::TcpStream) -> (String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn bad_requests_get_openai_errors_with_the_right_status() {
    let env = env();
    let cases: &[(&str, u16, &str)] = &[
        ("{not json", 400, "invalid_json"),
        (r#"{"model":"m-plain"}"#, 400, "invalid_request"),
        (
            r#"{"model":"m-plain","messages":[]}"#,
            400,
            "invalid_request",
        ),
        (r#"{"model":42,"messages":[{}]}"#, 400, "invalid_request"),
        ("", 400, "invalid_request"),
        (&chat_body("no-such-model", false), 404, "model_not_found"),
        (&chat_body("nobody/gpt", false), 404, "model_not_found"),
    ];
    for (body, status, code) in cases {
        let (s, _, text) = env.chat(body.to_string()).await;
        assert_eq!(s, *status, "{body}: {text}");
        assert_eq!(error_of(&text)["code"], *code, "{body}");
    }
}

#[tokio::test]
async fn missing_or_wrong_keys_are_401() {
    let env = env();
    let r = env
        .post(None, chat_body("m-plain", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        error_of(&r.text().await.unwrap())["code"],
        "missing_api_key"
    );
    let r = env
        .post(Some("sk-wrong"), chat_body("m-plain", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        error_of(&r.text().await.unwrap())["code"],
        "invalid_api_key"
    );
    // x-api-key works too.
    let r = env
        .http
        .post(env.gw.url("/v1/chat/completions"))
        .header("x-api-key", ALL_KEY)
        .body(chat_body("m-plain", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn models_list_and_use_follow_the_key() {
    let env = env();
    let list = |key: &'static str| {
        let req = env.http.get(env.gw.url("/v1/models")).bearer_auth(key);
        async move {
            let v: Value = req.send().await.unwrap().json().await.unwrap();
            assert_eq!(v["object"], "list");
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let all = list(ALL_KEY).await;
    assert_eq!(all.len(), 11);
    assert!(all.contains(&"m-plain".to_string()) && all.contains(&"m-echo".to_string()));
    assert_eq!(list(LIMITED_KEY).await, vec!["m-plain".to_string()]);

    let r = env
        .post(Some(LIMITED_KEY), chat_body("m-echo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        error_of(&r.text().await.unwrap())["code"],
        "model_not_allowed"
    );
    let r = env
        .post(Some(LIMITED_KEY), chat_body("m-plain", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = env.http.get(env.gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn unknown_paths_answer_in_their_doors_format_with_a_hint_for_a_doubled_version() {
    let env = env();
    let r = env
        .http
        .get(env.gw.url("/v1beta/tunedModels"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "NOT_FOUND", "{v}");
    let r = env
        .http
        .post(env.gw.url("/v1/v1/messages"))
        .header("x-api-key", ALL_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("version twice"), "{message}");
    // An unknown model's 404 says where the models are listed.
    let r = env
        .post(Some(ALL_KEY), chat_body("no-such", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(error_of(&r.text().await.unwrap())["message"]
        .as_str()
        .unwrap()
        .contains("GET /v1/models"));
}

#[tokio::test]
async fn one_model_and_googles_list_follow_the_key_too() {
    let env = env();
    let get = |path: &str, key: &'static str, google: bool| {
        let req = env.http.get(env.gw.url(path));
        let req = if google {
            req.header("x-goog-api-key", key)
        } else {
            req.bearer_auth(key)
        };
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    // The shared list carries Gemini's `models` beside OpenAI's `data`.
    let (_, v) = get("/v1/models", LIMITED_KEY, false).await;
    assert_eq!(v["models"][0]["name"], "models/m-plain");
    assert_eq!(v["models"].as_array().unwrap().len(), 1);
    // One model, read by every client's fields.
    let (status, v) = get("/v1/models/m-plain", LIMITED_KEY, false).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&v["id"], &v["object"]),
        (&"m-plain".into(), &"model".into())
    );
    assert_eq!(v["name"], "models/m-plain");
    // A model the key may not use does not exist for it: in OpenAI's format, or in Google's
    // for a client that sent Google's key header.
    let (status, v) = get("/v1/models/m-echo", LIMITED_KEY, false).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &"model_not_found".into())
    );
    let (status, v) = get("/v1/models/m-echo", LIMITED_KEY, true).await;
    assert_eq!((status, &v["error"]["status"]), (404, &"NOT_FOUND".into()));
    // Google's own list and model.
    let (status, v) = get("/v1beta/models", ALL_KEY, true).await;
    assert_eq!(status, 200);
    assert_eq!(v["models"].as_array().unwrap().len(), 11);
    assert!(v.get("data").is_none());
    let (status, v) = get("/v1beta/models/models/m-plain", LIMITED_KEY, true).await;
    assert_eq!((status, &v["name"]), (200, &"models/m-plain".into()));
    assert_eq!(
        v["supportedGenerationMethods"],
        serde_json::json!(["generateContent", "streamGenerateContent", "countTokens"])
    );
    let (status, v) = get("/v1beta/models/m-echo", LIMITED_KEY, true).await;
    assert_eq!((status, &v["error"]["code"]), (404, &404.into()));
}

#[tokio::test]
async fn provider_slash_model_routes_to_that_provider() {
    let env = env();
    let (status, _, text) = env.chat(chat_body("echo/some-new-model", false)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        echoed(&text)["sha256"],
        sha256_hex(chat_body("some-new-model", false).as_bytes())
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_either_framing() {
    let env = env();
    let big = format!(
        r#"{{"model":"m-plain","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "y".repeat(5 * 1024 * 1024)
    );
    let (status, _, text) = env.chat(big.clone()).await;
    assert_eq!(status, 413);
    assert_eq!(error_of(&text)["code"], "request_too_large");

    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = big
        .as_bytes()
        .chunks(256 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let (status, _, text) = env
        .chat(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .await;
    assert_eq!(status, 413);
    assert_eq!(error_of(&text)["code"], "request_too_large");
}

#[tokio::test]
async fn upstream_failures_map_to_502_504_and_pass_statuses_on() {
    let env = env();
    // Unreachable.
    let (s, _, text) = env.chat(chat_body("m-dead", false)).await;
    assert_eq!(s, 502, "{text}");
    assert_eq!(error_of(&text)["code"], "upstream_unreachable");
    // No answer within first_byte_ms.
    let (s, _, text) = env.chat(chat_body("m-stalled", false)).await;
    assert_eq!(s, 504, "{text}");
    assert_eq!(error_of(&text)["code"], "upstream_timeout");
    // The provider's own statuses, with its message and Retry-After.
    let (s, headers, text) = env.chat(chat_body("m-429", false)).await;
    assert_eq!(s, 429);
    assert_eq!(headers["retry-after"], "7");
    let e = error_of(&text);
    assert_eq!(e["message"], "mock: injected failure");
    assert_eq!(e["code"], "rate_limit_exceeded");
    let (s, _, text) = env.chat(chat_body("m-500", true)).await;
    assert_eq!(s, 500);
    assert_eq!(error_of(&text)["message"], "mock: injected failure");
    // Our provider key refused: the client's key is fine, so not 401.
    let (s, _, text) = env.chat(chat_body("m-refused", false)).await;
    assert_eq!(s, 502);
    let e = error_of(&text);
    assert_eq!(e["code"], "upstream_auth_failed");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("refused the gateway's credentials"));
}

#[tokio::test]
async fn a_cut_or_silent_stream_ends_with_an_error_event() {
    let env = env();
    let (s, _, body) = env.chat(chat_body("m-cut", true)).await;
    assert_eq!(s, 200);
    let data = sse_data(&body);
    assert_ne!(data.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_cut");
    assert_eq!(data.len(), 4, "3 chunks then the error: {body}");

    // A whole response cut after its header: the client must see it incomplete, never a
    // shorter body that looks whole.
    let r = env
        .post(Some(ALL_KEY), chat_body("m-cut", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().await.is_err(),
        "a cut body must not look complete"
    );

    let (s, _, body) = env.chat(chat_body("m-idle", true)).await;
    assert_eq!(s, 200);
    let data = sse_data(&body);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "upstream_error");
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sent nothing for 300 ms"));
}

#[tokio::test]
async fn health_ready_and_unknown_paths() {
    let env = env();
    let r = env.http.get(env.gw.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = env.http.get(env.gw.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = env
        .http
        .get(env.gw.url("/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_of(&r.text().await.unwrap())["code"], "unknown_url");
    let r = env
        .http
        .get(env.gw.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn secrets_never_reach_the_log() {
    let env = env();
    for model in ["m-plain", "m-refused", "m-dead", "m-cut"] {
        for stream in [true, false] {
            let r = env
                .post(Some(ALL_KEY), chat_body(model, stream))
                .send()
                .await
                .unwrap();
            let _ = r.text().await;
        }
    }
    let _ = env
        .post(Some("sk-wrong-client-key"), chat_body("m-plain", false))
        .send()
        .await;
    let log = env.gw.log_text();
    assert!(log.contains("DEBUG"), "debug logging was on: {log}");
    assert!(!log.contains(PROVIDER_KEY));
    assert!(!log.contains(ALL_KEY));
    assert!(!log.contains("sk-wrong-client-key"));
}
