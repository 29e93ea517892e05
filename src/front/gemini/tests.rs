use super::*;
use crate::front::test_support::{self, call, chat_stream, delta, feed_pieces, finish, fixture};
use serde_json::json;

const MODEL: &str = "gemini-2.5-pro";

// ---------------------------------------------------------------------------------------
// Streams: helpers

/// Runs a stream through a fresh encoder, fed in the given pieces, then finished.
fn run_with(pieces: &[&[u8]]) -> (Vec<u8>, StreamEncoder) {
    feed_pieces(StreamEncoder::new(MODEL), pieces)
}

fn run(pieces: &[&[u8]]) -> Vec<u8> {
    run_with(pieces).0
}

/// Every event of a Gemini stream, parsed; each must be `data: <json>\r\n\r\n`.
fn events(out: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with("\r\n\r\n"), "{text}");
    text.split_terminator("\r\n\r\n")
        .map(|e| {
            let data = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e}"));
            serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}"))
        })
        .collect()
}

/// A usage chunk that also counts reasoning tokens.
fn usage(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Value {
    let mut u = test_support::usage(prompt, completion, cached);
    u["usage"]["completion_tokens_details"] = json!({"reasoning_tokens": reasoning});
    u
}

/// What a chat stream says, read directly from its chunks.
#[derive(Debug, Default)]
struct ChatSays {
    text: String,
    /// (id, name, arguments parsed), by index.
    calls: Vec<(String, String, Value)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
}

fn chat_says(stream: &[u8]) -> ChatSays {
    let mut says = ChatSays::default();
    let mut args: Vec<String> = Vec::new();
    for line in std::str::from_utf8(stream).unwrap().lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if let Some(c) = v["choices"].get(0) {
            if let Some(t) = c["delta"]["content"].as_str() {
                says.text.push_str(t);
            }
            for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"].as_u64().unwrap() as usize;
                if says.calls.len() <= i {
                    says.calls.resize(i + 1, Default::default());
                    args.resize(i + 1, String::new());
                }
                if let Some(id) = tc["id"].as_str() {
                    says.calls[i].0 = id.into();
                }
                if let Some(n) = tc["function"]["name"].as_str() {
                    says.calls[i].1 = n.into();
                }
                args[i].push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
            if let Some(r) = c["finish_reason"].as_str() {
                says.finish_reason = Some(r.into());
            }
        }
        if v["usage"].is_object() {
            says.usage = Some(v["usage"].clone());
        }
    }
    for (c, a) in says.calls.iter_mut().zip(args) {
        c.2 = serde_json::from_str(&a).unwrap();
    }
    says
}

/// What a Gemini stream says: (text, thoughts, function calls (id, name, args)).
fn gemini_says(events: &[Value]) -> (String, String, Vec<(String, String, Value)>) {
    let (mut text, mut thoughts, mut calls) = (String::new(), String::new(), Vec::new());
    for e in events {
        let c = &e["candidates"][0];
        assert_eq!(c["index"], 0);
        assert_eq!(c["content"]["role"], "model");
        assert_eq!(e["modelVersion"], MODEL);
        assert!(e["responseId"].is_string());
        for p in c["content"]["parts"].as_array().unwrap() {
            if let Some(t) = p["text"].as_str() {
                if p["thought"] == true {
                    thoughts.push_str(t);
                } else {
                    text.push_str(t);
                }
            } else if let Some(f) = p.get("functionCall") {
                assert!(f["args"].is_object(), "{f}");
                calls.push((
                    f["id"].as_str().unwrap().to_string(),
                    f["name"].as_str().unwrap().to_string(),
                    f["args"].clone(),
                ));
            } else {
                panic!("unexpected part {p}");
            }
        }
    }
    (text, thoughts, calls)
}

/// Checks a translated capture against what the chat stream said.
fn check_capture(name: &str, out: &[u8], finish_reason: &str) {
    let chat = fixture(name);
    let says = chat_says(&chat);
    let evs = events(out);
    assert!(!String::from_utf8_lossy(out).contains("thoughtSignature"));
    let (text, thoughts, calls) = gemini_says(&evs);
    assert_eq!(text, says.text, "{name}");
    assert_eq!(thoughts, "");
    assert_eq!(calls, says.calls, "{name}");
    // Only the last event ends the candidate.
    let last = evs.last().unwrap();
    for e in &evs[..evs.len() - 1] {
        assert!(
            e["candidates"][0].get("finishReason").is_none(),
            "{name}: {e}"
        );
        assert!(e.get("usageMetadata").is_none());
    }
    assert_eq!(
        last["candidates"][0]["finishReason"], finish_reason,
        "{name}"
    );
    let u = says.usage.unwrap();
    let prompt = u["prompt_tokens"].as_u64().unwrap();
    let completion = u["completion_tokens"].as_u64().unwrap();
    assert_eq!(
        last["usageMetadata"],
        json!({"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion}),
        "{name}"
    );
    // The responseId is the chat completion's id, on every event.
    let id = serde_json::from_slice::<Value>(
        chat.split(|&b| b == b'\n')
            .next()
            .unwrap()
            .strip_prefix(b"data: ")
            .unwrap(),
    )
    .unwrap()["id"]
        .clone();
    assert!(evs.iter().all(|e| e["responseId"] == id));
}

// ---------------------------------------------------------------------------------------
// Streams

#[test]
fn stream_captures_translate_to_gemini_events() {
    for (name, reason) in [
        ("openai_stream_usage.sse", "STOP"),
        ("openai_stream_tool_calls.sse", "STOP"),
        ("openai_stream_tool_calls_parallel.sse", "STOP"),
        ("openai_stream_finish_length.sse", "MAX_TOKENS"),
    ] {
        let chat = fixture(name);
        let (out, e) = run_with(&[&chat]);
        check_capture(name, &out, reason);
        assert!(e.done(), "{name}");
        assert!(e.usage().is_some());
    }
}

#[test]
fn stream_text_is_one_event_per_chunk_with_content() {
    let chat = fixture("openai_stream_usage.sse");
    let out = run(&[&chat]);
    let evs = events(&out);
    let says = chat_says(&chat);
    // Chunks with a non-empty content delta, plus the final event.
    let with_text = std::str::from_utf8(&chat)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert_eq!(evs.len(), with_text + 1);
    assert_eq!(
        evs.last().unwrap()["candidates"][0]["content"]["parts"],
        json!([{"text": ""}])
    );
    assert_eq!(gemini_says(&evs).0, says.text);
}

#[test]
fn parallel_tool_calls_split_at_every_byte_boundary_give_the_same_stream() {
    let chat = fixture("openai_stream_tool_calls_parallel.sse");
    let whole = run(&[&chat]);
    check_capture("openai_stream_tool_calls_parallel.sse", &whole, "STOP");
    // Each call is one whole functionCall part, in order.
    let (_, _, calls) = gemini_says(&events(&whole));
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1, "GetWeatherArgs");
    assert_eq!(calls[1].1, "get_stock_price");
    for k in 1..chat.len() {
        assert_eq!(run(&[&chat[..k], &chat[k..]]), whole, "split at {k}");
    }
    let bytes: Vec<&[u8]> = chat.chunks(1).collect();
    assert_eq!(run(&bytes), whole);
}

#[test]
fn a_call_is_sent_whole_when_the_next_starts_or_at_the_finish() {
    let chat = chat_stream(
        &[
            delta(json!({"tool_calls": [call(0, Some("call_a"), Some("read"), "{\"pa")]})),
            delta(json!({"tool_calls": [call(0, None, None, "th\":\"a\\\"b\"}")]})),
            delta(json!({"tool_calls": [call(1, Some("call_b"), Some("list"), "")]})),
            delta(json!({"tool_calls": [call(1, None, None, "{\"dir\":")]})),
            delta(json!({"tool_calls": [call(1, None, None, "\"/\"}")]})),
            finish("tool_calls"),
            usage(10, 5, 0, 0),
        ],
        true,
    );
    let mut e = StreamEncoder::new(MODEL);
    let mut per_chunk = Vec::new();
    for ev in chat
        .split_inclusive(|&b| b == b'\n')
        .collect::<Vec<_>>()
        .chunks(2)
    {
        let bytes: Vec<u8> = ev.concat();
        per_chunk.push(e.feed(Bytes::from(bytes)).map(|b| events(&b)));
    }
    // Nothing until the first call is complete and the second starts.
    assert!(per_chunk[0].is_none() && per_chunk[1].is_none());
    let first = per_chunk[2].as_ref().unwrap();
    assert_eq!(
        first[0]["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"id": "call_a", "name": "read", "args": {"path": "a\"b"}}}])
    );
    assert!(per_chunk[3].is_none() && per_chunk[4].is_none());
    // finish_reason sends the second.
    let second = per_chunk[5].as_ref().unwrap();
    assert_eq!(
        second[0]["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"id": "call_b", "name": "list", "args": {"dir": "/"}}}])
    );
    assert!(per_chunk[6].is_none(), "usage waits for [DONE]");
    let last = per_chunk[7].as_ref().unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        last[0]["usageMetadata"],
        json!({"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15})
    );
    assert!(e.done());
    assert!(e.finish().is_none());
}

#[test]
fn interleaved_fragments_of_parallel_calls_come_out_whole() {
    let chat = chat_stream(
        &[
            delta(
                json!({"tool_calls": [call(0, Some("c0"), Some("a"), "{\"x\":"), call(1, Some("c1"), Some("b"), "{\"y\":")]}),
            ),
            delta(json!({"tool_calls": [call(1, None, None, "2}"), call(0, None, None, "1}")]})),
            finish("tool_calls"),
        ],
        true,
    );
    let evs = events(&run(&[&chat]));
    let (_, _, calls) = gemini_says(&evs);
    assert_eq!(
        calls,
        vec![
            ("c0".into(), "a".into(), json!({"x": 1})),
            ("c1".into(), "b".into(), json!({"y": 2})),
        ]
    );
}

#[test]
fn reasoning_becomes_thought_parts_and_usage_splits_thoughts() {
    let chat = chat_stream(
        &[
            delta(json!({"reasoning_content": "Let me think."})),
            delta(json!({"reasoning": " More."})),
            delta(json!({"content": "Answer \u{2028} \"quoted\""})),
            finish("stop"),
            usage(100, 40, 64, 30),
        ],
        true,
    );
    let evs = events(&run(&[&chat]));
    assert_eq!(
        evs[0]["candidates"][0]["content"]["parts"],
        json!([{"text": "Let me think.", "thought": true}])
    );
    let (text, thoughts, _) = gemini_says(&evs);
    assert_eq!(thoughts, "Let me think. More.");
    assert_eq!(text, "Answer \u{2028} \"quoted\"");
    assert_eq!(
        evs.last().unwrap()["usageMetadata"],
        json!({"promptTokenCount": 100, "candidatesTokenCount": 10, "totalTokenCount": 140, "cachedContentTokenCount": 64, "thoughtsTokenCount": 30})
    );
    // Key order as in Gemini's captures.
    let out = String::from_utf8(run(&[&chat])).unwrap();
    let last = out.trim_end().rsplit("\r\n\r\n").next().unwrap();
    let order = [
        "\"candidates\"",
        "\"content\"",
        "\"parts\"",
        "\"role\"",
        "\"finishReason\"",
        "\"index\"",
        "\"usageMetadata\"",
        "\"promptTokenCount\"",
        "\"candidatesTokenCount\"",
        "\"totalTokenCount\"",
        "\"modelVersion\"",
        "\"responseId\"",
    ];
    let at: Vec<usize> = order.iter().map(|k| last.find(k).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{last}");
}

#[test]
fn a_cut_stream_is_left_open_and_a_finished_one_is_closed() {
    let cut = chat_stream(&[delta(json!({"content": "Hi"}))], false);
    let (out, e) = run_with(&[&cut, b"data: {\"choi"]);
    assert_eq!(events(&out).len(), 1);
    assert!(!e.done());

    let no_done = chat_stream(&[delta(json!({"content": "Hi"})), finish("length")], false);
    let (out, e) = run_with(&[&no_done]);
    let evs = events(&out);
    assert_eq!(
        evs.last().unwrap()["candidates"][0]["finishReason"],
        "MAX_TOKENS"
    );
    assert!(evs.last().unwrap().get("usageMetadata").is_none());
    assert!(e.done());
    assert!(e.usage().is_none());
}

#[test]
fn invalid_json_midstream_is_an_error_event() {
    let (out, e) = run_with(&[b"data: {nope\n\ndata: [DONE]\n\n"]);
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["error"]["status"], "UNAVAILABLE");
    assert!(e.done());
}

// ---------------------------------------------------------------------------------------
// Request

fn to_chat(req: &Value, stream: bool) -> (Value, Vec<String>) {
    let t = request_to_chat(req.to_string().as_bytes(), MODEL, stream).unwrap();
    (serde_json::from_slice(&t.body).unwrap(), t.dropped)
}

#[test]
fn a_gemini_cli_request_translates_to_chat() {
    let req = json!({
        "systemInstruction": {"role": "user", "parts": [{"text": "You are a CLI agent."}, {"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "What is in this picture and README.md?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]},
            {"role": "model", "parts": [
                {"text": "Planning the reads.", "thought": true, "thoughtSignature": "c2lnMQ=="},
                {"text": "Let me look."},
                {"functionCall": {"name": "read_file", "args": {"path": "README.md"}}, "thoughtSignature": "c2lnMg=="},
                {"functionCall": {"id": "fc-7", "name": "list_dir", "args": {"dir": "."}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "fc-7", "name": "list_dir", "response": {"output": "README.md\nsrc"}}},
                {"functionResponse": {"name": "read_file", "response": {"lines": 3, "text": "# Hi"}}}
            ]},
            {"role": "model", "parts": [{"text": "Done.", "thoughtSignature": "c2lnMw=="}]},
            {"parts": [{"text": "Thanks"}]}
        ],
        "tools": [
            {"functionDeclarations": [
                {"name": "read_file", "description": "Reads a file.", "parameters": {"type": "OBJECT", "properties": {"path": {"type": "STRING", "description": "Path"}, "type": {"type": "STRING", "enum": ["A", "B"]}, "ranges": {"type": "ARRAY", "items": {"type": "INTEGER"}}}, "required": ["path"]}},
                {"name": "list_dir", "parametersJsonSchema": {"type": "object", "properties": {"dir": {"type": "string"}}, "additionalProperties": false}}
            ]},
            {"googleSearch": {}}
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["read_file"]}},
        "generationConfig": {
            "temperature": 0.2, "topP": 0.95, "topK": 64, "maxOutputTokens": 8192,
            "stopSequences": ["END"], "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": 0.25,
            "responseMimeType": "application/json",
            "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": true}
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "labels": {"a": "b"}
    });
    let (chat, dropped) = to_chat(&req, true);
    assert_eq!(
        chat,
        json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a CLI agent.\nBe brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this picture and README.md?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
                ]},
                {"role": "assistant", "content": "Let me look.", "tool_calls": [
                    {"id": "call_1_2", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"README.md\"}"}},
                    {"id": "fc-7", "type": "function", "function": {"name": "list_dir", "arguments": "{\"dir\":\".\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "fc-7", "content": "README.md\nsrc"},
                {"role": "tool", "tool_call_id": "call_1_2", "content": "{\"lines\":3,\"text\":\"# Hi\"}"},
                {"role": "assistant", "content": "Done."},
                {"role": "user", "content": "Thanks"}
            ],
            "max_tokens": 8192,
            "temperature": 0.2,
            "top_p": 0.95,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "stop": ["END"],
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [
                {"type": "function", "function": {"name": "read_file", "description": "Reads a file.", "parameters": {"type": "object", "properties": {"path": {"type": "string", "description": "Path"}, "type": {"type": "string", "enum": ["A", "B"]}, "ranges": {"type": "array", "items": {"type": "integer"}}}, "required": ["path"]}}},
                {"type": "function", "function": {"name": "list_dir", "parameters": {"type": "object", "properties": {"dir": {"type": "string"}}, "additionalProperties": false}}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "read_file"}},
            "reasoning_effort": "medium",
            "response_format": {"type": "json_object"}
        })
    );
    assert_eq!(dropped, vec!["googleSearch".to_string()]);
    let body = request_to_chat(req.to_string().as_bytes(), MODEL, true)
        .unwrap()
        .body;
    let body = String::from_utf8(body).unwrap();
    assert!(!body.contains("thoughtSignature") && !body.contains("c2ln"));
    assert!(!body.contains("Planning the reads"));
}

#[test]
fn a_plain_request_has_no_stream_fields_and_a_string_system() {
    let req = json!({"systemInstruction": "Be kind.", "contents": [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]});
    let (chat, dropped) = to_chat(&req, false);
    assert_eq!(
        chat,
        json!({"model": MODEL, "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "a\nb"}]})
    );
    assert!(dropped.is_empty());
}

#[test]
fn generation_config_maps_thinking_schemas_and_tool_modes() {
    let effort = |config: Value| {
        let req = json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"thinkingConfig": config}});
        to_chat(&req, false).0.get("reasoning_effort").cloned()
    };
    assert_eq!(effort(json!({"thinkingBudget": 0})), None);
    assert_eq!(effort(json!({"thinkingBudget": -1})), Some(json!("medium")));
    assert_eq!(effort(json!({"thinkingBudget": 1024})), Some(json!("low")));
    assert_eq!(
        effort(json!({"thinkingBudget": 4096})),
        Some(json!("medium"))
    );
    assert_eq!(
        effort(json!({"thinkingBudget": 16384})),
        Some(json!("high"))
    );
    assert_eq!(effort(json!({"thinkingLevel": "LOW"})), Some(json!("low")));
    assert_eq!(
        effort(json!({"thinkingLevel": "high"})),
        Some(json!("high"))
    );

    let req = json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseMimeType": "application/json", "responseSchema": {"type": "OBJECT", "properties": {"n": {"type": "NUMBER"}}}}});
    assert_eq!(
        to_chat(&req, false).0["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object", "properties": {"n": {"type": "number"}}}}})
    );
    let req = json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object", "title": "KEEP"}}});
    assert_eq!(
        to_chat(&req, false).0["response_format"]["json_schema"]["schema"],
        json!({"type": "object", "title": "KEEP"})
    );

    let choice = |config: Value| {
        let req = json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}], "toolConfig": {"functionCallingConfig": config}});
        to_chat(&req, false).0.get("tool_choice").cloned()
    };
    assert_eq!(choice(json!({"mode": "AUTO"})), Some(json!("auto")));
    assert_eq!(choice(json!({"mode": "VALIDATED"})), Some(json!("auto")));
    assert_eq!(choice(json!({"mode": "NONE"})), Some(json!("none")));
    assert_eq!(choice(json!({"mode": "ANY"})), Some(json!("required")));
    assert_eq!(
        choice(json!({"mode": "ANY", "allowedFunctionNames": ["f", "g"]})),
        Some(json!("required"))
    );
    // A declaration without parameters takes no arguments.
    let req = json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"name": "f"}]}, {"codeExecution": {}, "urlContext": {}}]});
    let (chat, dropped) = to_chat(&req, false);
    assert_eq!(
        chat["tools"][0]["function"]["parameters"],
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(
        dropped,
        vec!["codeExecution".to_string(), "urlContext".to_string()]
    );
}

#[test]
fn function_responses_pair_with_the_earliest_unanswered_call_of_their_name() {
    let req = json!({"contents": [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "f", "args": {"n": 1}}},
            {"functionCall": {"name": "f", "args": {"n": 2}}},
            {"functionCall": {"name": "g"}}
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "g", "response": {"content": "G"}}},
            {"functionResponse": {"name": "f", "response": {"content": 1}}},
            {"functionResponse": {"name": "f", "response": {"output": "two"}}},
            {"text": "and then?"}
        ]}
    ]});
    let (chat, _) = to_chat(&req, false);
    let m = chat["messages"].as_array().unwrap();
    assert_eq!(m[1]["tool_calls"][2]["function"]["arguments"], "{}");
    assert_eq!(
        m[2],
        json!({"role": "tool", "tool_call_id": "call_1_2", "content": "G"})
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "call_1_0", "content": "{\"content\":1}"})
    );
    assert_eq!(
        m[4],
        json!({"role": "tool", "tool_call_id": "call_1_1", "content": "two"})
    );
    assert_eq!(m[5], json!({"role": "user", "content": "and then?"}));

    // A third answer to `f` answers nothing.
    let mut bad = req.clone();
    bad["contents"][2]["parts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"functionResponse": {"name": "f", "response": {}}}));
    let e = request_to_chat(bad.to_string().as_bytes(), MODEL, false).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.message.contains("contents[2].parts[4]"), "{}", e.message);
}

#[test]
fn bad_requests_are_refused_with_messages_naming_the_field() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{nope".to_vec(), "not valid JSON"),
        (b"[]".to_vec(), "JSON object"),
        (json!({}).to_string().into_bytes(), "Missing field `contents`"),
        (json!({"contents": []}).to_string().into_bytes(), "at least one"),
        (json!({"contents": {}}).to_string().into_bytes(), "`contents` must be an array"),
        (json!({"contents": [{"role": "system", "parts": []}]}).to_string().into_bytes(), "`contents[0].role`"),
        (json!({"contents": [{"parts": [{"inlineData": {"mimeType": "application/pdf", "data": "x"}}]}]}).to_string().into_bytes(), "application/pdf"),
        (json!({"contents": [{"parts": [{"fileData": {"mimeType": "video/mp4", "fileUri": "gs://x"}}]}]}).to_string().into_bytes(), "video/mp4"),
        (json!({"contents": [{"parts": [{"executableCode": {"language": "PYTHON", "code": "1"}}]}]}).to_string().into_bytes(), "executableCode"),
        (json!({"contents": [{"role": "model", "parts": [{"codeExecutionResult": {"outcome": "OUTCOME_OK"}}]}]}).to_string().into_bytes(), "codeExecutionResult"),
        (json!({"contents": [{"parts": [{"text": 1}]}]}).to_string().into_bytes(), "`contents[0].parts[0]`: `text`"),
        (json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 2}}).to_string().into_bytes(), "candidateCount"),
        (json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}}).to_string().into_bytes(), "generationConfig.temperature"),
        (json!({"contents": [{"parts": [{"text": "x"}]}], "tools": {}}).to_string().into_bytes(), "`tools` must be an array"),
        (json!({"contents": [{"parts": [{"text": "x"}]}], "systemInstruction": 3}).to_string().into_bytes(), "systemInstruction"),
    ];
    for (body, needle) in cases {
        let e = request_to_chat(&body, MODEL, false).unwrap_err();
        assert_eq!(e.status(), 400, "{needle}");
        assert!(e.message.contains(needle), "{needle}: {}", e.message);
    }
}

#[test]
fn image_file_data_becomes_an_image_url() {
    let req = json!({"contents": [{"parts": [{"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x/y.jpg"}}]}]});
    assert_eq!(
        to_chat(&req, false).0["messages"][0]["content"],
        json!([{"type": "image_url", "image_url": {"url": "https://x/y.jpg"}}])
    );
}

// ---------------------------------------------------------------------------------------
// Whole response

fn from_chat(body: &[u8]) -> Value {
    serde_json::from_slice(&response_from_chat(body, MODEL).unwrap()).unwrap()
}

#[test]
fn a_chat_completion_becomes_a_generate_content_response() {
    let chat = fixture("openai_chat_completion.json");
    let text =
        serde_json::from_slice::<Value>(&chat).unwrap()["choices"][0]["message"]["content"].clone();
    let out = response_from_chat(&chat, MODEL).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 16, "candidatesTokenCount": 363, "totalTokenCount": 379},
            "modelVersion": MODEL,
            "responseId": "chatcmpl-D8Z5f52zQqikDBEKQMQoYcWMcWPeU"
        })
    );
    // Keys in the order of Gemini's captures.
    let s = String::from_utf8(out).unwrap();
    let order = [
        "\"candidates\"",
        "\"parts\"",
        "\"role\"",
        "\"finishReason\"",
        "\"index\"",
        "\"usageMetadata\"",
        "\"promptTokenCount\"",
        "\"candidatesTokenCount\"",
        "\"totalTokenCount\"",
        "\"modelVersion\"",
        "\"responseId\"",
    ];
    let at: Vec<usize> = order.iter().map(|k| s.find(k).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{s}");
}

#[test]
fn tool_calls_become_function_call_parts() {
    let v = from_chat(&fixture("openai_chat_completion_tool_calls.json"));
    assert_eq!(
        v,
        json!({
            "candidates": [{"content": {"parts": [{"functionCall": {"id": "call_KjzAbhiZC6nk81tQzL7pwlpc", "name": "read_file", "args": {"path": "README.md"}}}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 60, "candidatesTokenCount": 15, "totalTokenCount": 75},
            "modelVersion": MODEL,
            "responseId": "chatcmpl-BwkyFElDIr1egmFyfQ9z4vPBto7m2"
        })
    );
    assert!(!v.to_string().contains("thoughtSignature"));
}

#[test]
fn reasoning_length_and_broken_arguments() {
    let chat = json!({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": "hmm", "content": "part", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":"}}]}, "finish_reason": "length"}], "usage": {"prompt_tokens": 10, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 15}}});
    let v = from_chat(chat.to_string().as_bytes());
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([{"text": "hmm", "thought": true}, {"text": "part"}, {"functionCall": {"id": "c", "name": "f", "args": {}}}])
    );
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(
        v["usageMetadata"],
        json!({"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 30, "cachedContentTokenCount": 4, "thoughtsTokenCount": 15})
    );
    let filtered =
        json!({"choices": [{"message": {"content": null}, "finish_reason": "content_filter"}]});
    let v = from_chat(filtered.to_string().as_bytes());
    assert_eq!(v["candidates"][0]["finishReason"], "SAFETY");
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([{"text": ""}])
    );
    assert!(v.get("usageMetadata").is_none());
    assert!(response_from_chat(b"{}", MODEL).is_err());
}

#[test]
fn translated_responses_have_the_shape_of_gemini_captures() {
    // Every key path of ours exists in a real capture.
    fn paths(v: &Value, prefix: String, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    let p = format!("{prefix}/{k}");
                    out.push(p.clone());
                    // Arguments are data, not shape.
                    if k != "args" {
                        paths(v, p, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| paths(v, prefix.clone(), out)),
            _ => {}
        }
    }
    let mut known = Vec::new();
    for f in [
        "gemini_generate_content_gemini3.json",
        "gemini_generate_content_function_call_gemini3.json",
        "gemini_generate_content.json",
    ] {
        paths(
            &serde_json::from_slice(&fixture(f)).unwrap(),
            String::new(),
            &mut known,
        );
    }
    known.push("/candidates/content/parts/functionCall/id".into());
    let mut ours = Vec::new();
    for f in [
        "openai_chat_completion.json",
        "openai_chat_completion_tool_calls.json",
    ] {
        paths(&from_chat(&fixture(f)), String::new(), &mut ours);
    }
    for p in ours {
        assert!(known.contains(&p), "{p} not in the Gemini captures");
    }
}

#[test]
fn error_bodies_use_google_statuses() {
    for (status, name) in [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (413, "INVALID_ARGUMENT"),
        (429, "RESOURCE_EXHAUSTED"),
        (499, "CANCELLED"),
        (500, "INTERNAL"),
        (502, "UNAVAILABLE"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ] {
        let v: Value = serde_json::from_slice(&error_body(status, "m \"q\"")).unwrap();
        assert_eq!(
            v,
            json!({"error": {"code": status, "message": "m \"q\"", "status": name}})
        );
    }
    // The shape of Gemini's own error bodies.
    let real: Value =
        serde_json::from_slice(&fixture("gemini_error_429_resource_exhausted.json")).unwrap();
    let ours: Value = serde_json::from_slice(&error_body(429, "x")).unwrap();
    for k in ["code", "message", "status"] {
        assert!(real["error"].get(k).is_some() && ours["error"].get(k).is_some());
    }
    assert_eq!(real["error"]["status"], ours["error"]["status"]);
}

// ---------------------------------------------------------------------------------------
// Paths

#[test]
fn paths_name_a_model_and_a_method() {
    assert_eq!(
        route("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
        Some(("gemini-2.5-flash", Method::Stream))
    );
    assert_eq!(
        route("/v1/models/m:generateContent"),
        Some(("m", Method::Generate))
    );
    assert_eq!(
        route("/v1beta/models/m:countTokens"),
        Some(("m", Method::CountTokens))
    );
    assert_eq!(route("/v1beta/models/m:embedContent"), None);
    assert_eq!(route("/v1beta/models/:generateContent"), None);
    assert_eq!(route("/v1/chat/completions"), None);
}
