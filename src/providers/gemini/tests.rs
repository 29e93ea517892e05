use super::*;
use crate::error::Code;
use crate::providers::conformance::*;
use bytes::Bytes;

fn stream(name: &str, include_usage: bool) -> Vec<u8> {
    stream_output(
        &|| {
            StreamTranslator::new(
                Translation { include_usage },
                "gemini-x",
                CREATED,
                CallIds::with_seed(1),
            )
        },
        &|s, b| s.feed(b),
        &|s| s.finish(),
        &fixture(name),
    )
}

#[test]
fn every_stream_capture_matches_its_checked_translation() {
    let names = fixtures("gemini_stream", ".sse");
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        let out = stream(&name, true);
        let events = check_openai_stream(&out);
        assert!(
            String::from_utf8_lossy(&out).ends_with("data: [DONE]\n\n"),
            "{name}"
        );
        assert!(
            events
                .iter()
                .any(|e| e["choices"][0]["finish_reason"].is_string()),
            "{name}"
        );
        expect(&format!("{name}.openai"), &out);
    }
}

#[test]
fn parallel_function_calls_become_two_indexed_tool_calls() {
    let out = stream("gemini_stream_parallel_function_calls.sse", false);
    let events = check_openai_stream(&out);
    let calls: Vec<&serde_json::Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0][0]["index"], 0);
    assert_eq!(calls[1][0]["index"], 1);
    for c in &calls {
        let id = c[0]["id"].as_str().unwrap();
        assert!(id.starts_with("call_") && id.len() == 29, "{id}");
        serde_json::from_str::<serde_json::Value>(c[0]["function"]["arguments"].as_str().unwrap())
            .unwrap();
    }
    assert_ne!(calls[0][0]["id"], calls[1][0]["id"]);
    let finish = events
        .iter()
        .find_map(|e| e["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "tool_calls");
}

#[test]
fn thoughts_become_reasoning_and_count_as_output() {
    let mut t = StreamTranslator::new(
        Translation {
            include_usage: true,
        },
        "g",
        CREATED,
        CallIds::with_seed(1),
    );
    let out = t
        .feed(Bytes::from(fixture(
            "gemini_stream_thinking_function_call.sse",
        )))
        .unwrap();
    let events = check_openai_stream(&out);
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["delta"]["reasoning_content"].is_string()));
    t.finish();
    assert_eq!(t.usage().unwrap().reasoning_tokens, 95);
    assert_eq!(t.usage().unwrap().output_tokens, 15 + 95);
}

#[test]
fn a_stream_without_a_finish_reason_is_not_done() {
    let whole = fixture("gemini_stream.sse");
    let text = String::from_utf8(whole).unwrap();
    let first_event = text.split("\r\n\r\n").next().unwrap().to_string() + "\r\n\r\n";
    let mut t = StreamTranslator::new(Translation::default(), "g", CREATED, CallIds::with_seed(1));
    t.feed(Bytes::from(first_event));
    let tail = t.finish();
    assert!(!t.done());
    assert!(tail.is_none_or(|b| !String::from_utf8_lossy(&b).contains("[DONE]")));
}

#[test]
fn every_generate_content_capture_matches_its_checked_translation() {
    for name in fixtures("gemini_generate_content", ".json") {
        let (out, usage) = translate_response(
            &fixture(&name),
            "gemini-x",
            CREATED,
            &mut CallIds::with_seed(1),
        )
        .unwrap();
        assert!(usage.input_tokens > 0, "{name}");
        expect(&format!("{name}.openai"), &pretty(&out));
    }
}

#[test]
fn finish_reasons_follow_the_documented_table() {
    for (g, o) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        ("NEW_REASON", "stop"),
    ] {
        assert_eq!(finish_reason(g, false), o, "{g}");
    }
    assert_eq!(finish_reason("STOP", true), "tool_calls");
}

fn translate(req: serde_json::Value, stream: bool) -> Result<serde_json::Value, GatewayError> {
    let req = ChatRequest::parse(&serde_json::to_vec(&req).unwrap())?;
    let (body, _) = translate_request(&req, Unsupported::Reject, stream)?;
    Ok(serde_json::from_slice(&body).unwrap())
}

#[test]
fn request_with_history_tools_and_images_translates_exactly() {
    let got = translate(
        serde_json::json!({
            "model": "public",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":18}"},
                {"role": "tool", "tool_call_id": "call_1", "content": "plain text"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather",
                "parameters": {"$schema": "x", "type": "object", "additionalProperties": false,
                    "properties": {"city": {"type": "string"}, "additionalProperties": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "temperature": 0.5,
            "top_p": 0.9,
            "max_tokens": 300,
            "stop": ["END", "STOP"],
            "seed": 7,
            "response_format": {"type": "json_object"},
            "reasoning_effort": "low"
        }),
        false,
    )
    .unwrap();
    let expected = serde_json::json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [
                {"text": "What is here?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp"}}
            ]},
            {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "weather", "response": {"temp": 18}}},
                {"functionResponse": {"name": "weather", "response": {"content": "plain text"}}},
                {"text": "Thanks"}
            ]}
        ],
        "tools": [{"functionDeclarations": [{"name": "weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "additionalProperties": {"type": "string"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
        "generationConfig": {
            "temperature": 0.5,
            "topP": 0.9,
            "maxOutputTokens": 300,
            "stopSequences": ["END", "STOP"],
            "seed": 7,
            "responseMimeType": "application/json",
            "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true}
        }
    });
    assert_eq!(got, expected);
}

#[test]
fn tool_choice_modes_and_schema_response_format() {
    let with = |choice: &str| {
        translate(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice}),
            false,
        )
        .unwrap()["toolConfig"]["functionCallingConfig"]["mode"]
            .clone()
    };
    assert_eq!(with("auto"), "AUTO");
    assert_eq!(with("required"), "ANY");
    assert_eq!(with("none"), "NONE");
    let v = translate(
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}),
        false,
    )
    .unwrap();
    assert_eq!(
        v["generationConfig"]["responseJsonSchema"],
        serde_json::json!({"type": "object"})
    );
}

#[test]
fn a_tool_result_without_its_call_is_400_and_n_cannot_stream() {
    let e = translate(
        serde_json::json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "x", "content": "1"}]}),
        false,
    )
    .unwrap_err();
    assert_eq!(e.status(), 400);
    let e = translate(
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}),
        true,
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("n"));
    let v = translate(
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}),
        false,
    )
    .unwrap();
    assert_eq!(v["generationConfig"]["candidateCount"], 2);
}

#[test]
fn error_bodies_map_to_statuses_the_client_can_act_on() {
    let e = map_error(
        "gem",
        429,
        &fixture("gemini_error_429_resource_exhausted.json"),
        None,
    );
    assert_eq!(e.status(), 429);
    assert_eq!(e.retry_after, Some(35));
    assert_eq!(e.code, Some(Code::RateLimitExceeded));
    let e = map_error(
        "gem",
        429,
        &fixture("gemini_error_429_quota_exceeded.json"),
        None,
    );
    assert_eq!((e.status(), e.retry_after), (429, None));
    let e = map_error(
        "gem",
        400,
        &fixture("gemini_error_400_api_key_invalid.json"),
        None,
    );
    assert_eq!(e.status(), 502);
    assert_eq!(e.code, Some(Code::UpstreamAuthFailed));
    assert!(e.fails_over, "a refused key moves on to another deployment");
    assert!(!e.retries_help, "and is not tried again on the same one");
    assert!(!e.message.contains("API key not valid"));
    let e = map_error(
        "gem",
        400,
        br#"{"error":{"code":400,"message":"bad schema","status":"INVALID_ARGUMENT"}}"#,
        None,
    );
    assert_eq!(e.status(), 400);
    assert!(e.message.contains("bad schema"));
}

#[test]
fn a_passed_through_stream_is_unchanged_and_reads_the_translators_usage() {
    for name in fixtures("gemini_stream", ".sse") {
        let bytes = fixture(&name);
        let mut full = StreamTranslator::new(
            Translation::default(),
            "gemini-x",
            CREATED,
            CallIds::with_seed(1),
        );
        let mut pass = PassThrough::default();
        let mut out = Vec::new();
        for piece in bytes.chunks(61) {
            let b = Bytes::copy_from_slice(piece);
            let _ = full.feed(b.clone());
            out.extend_from_slice(&pass.feed(b).unwrap_or_default());
        }
        let _ = full.finish();
        out.extend_from_slice(&pass.finish().unwrap_or_default());
        assert_eq!(out, bytes, "{name}");
        assert_eq!(pass.usage(), full.usage(), "{name}");
        assert!(pass.done(), "{name}");
    }
}

#[test]
fn an_answer_without_a_response_id_gets_an_id_of_its_own() {
    let capture = fixture("gemini_generate_content.json");
    assert!(!String::from_utf8_lossy(&capture).contains("responseId"));
    let id = |body: &[u8]| {
        let (json, _) = translate_response(body, "g", CREATED, &mut CallIds::new()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let (a, b) = (id(&capture), id(&capture));
    assert!(
        a.starts_with("chatcmpl-") && a.len() == "chatcmpl-".len() + 24,
        "{a}"
    );
    assert_ne!(a, b, "two answers, two ids");
    // Gemini's own id is kept when it sends one.
    let with_id = fixture("gemini_generate_content_gemini3.json");
    let v: serde_json::Value = serde_json::from_slice(&with_id).unwrap();
    let response_id = v["responseId"].as_str().unwrap();
    assert_eq!(id(&with_id), format!("chatcmpl-{response_id}"));
}

#[test]
fn a_finish_reason_on_every_event_gives_one_finish_at_the_end_with_all_the_text() {
    // Early Gemini models repeat `finishReason: STOP` on every event of a stream.
    let out = stream("gemini_stream_repeated_finish.sse", true);
    let events = check_openai_stream(&out);
    let finishes: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["choices"][0]["finish_reason"].is_string())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(finishes.len(), 1, "{}", String::from_utf8_lossy(&out));
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        "def bubble_sort(list1):\n  n = len(list1)\n  for i in range(n-1):\n    for j in range(n-i-1):\n      if list1[j] > list1[j+1]:\n        list1[j], list1[j+1] = list1[j+1], list1[j]\n  return list1\n"
    );
    // The finish comes after every piece of text, then the usage (the last report).
    let last_text = events
        .iter()
        .rposition(|e| e["choices"][0]["delta"]["content"].is_string())
        .unwrap();
    assert!(finishes[0] > last_text);
    assert_eq!(events[finishes[0]]["choices"][0]["finish_reason"], "stop");
    let usage = events.last().unwrap()["usage"].clone();
    assert_eq!(usage["prompt_tokens"], 21);
    assert_eq!(usage["completion_tokens"], 87);
}

#[test]
fn tool_use_prompt_tokens_are_prompt_and_the_total_is_geminis() {
    // Code execution and Search grounding: their prompts are billed as input, outside
    // promptTokenCount and inside totalTokenCount.
    let body = fixture("gemini_generate_content_tool_use.json");
    let (chat, usage) = crate::providers::decode_whole(
        crate::providers::Dialect::Gemini(Translation {
            include_usage: true,
        }),
        &body,
        "gemini-x",
    )
    .unwrap();
    assert_eq!(usage.input_tokens, 22 + 303);
    assert_eq!(usage.output_tokens, 212 + 114);
    assert_eq!(usage.cached_input_tokens, 16);
    let v: serde_json::Value = serde_json::from_slice(&chat).unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 325);
    assert_eq!(v["usage"]["total_tokens"], 651, "Gemini's totalTokenCount");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Factorial is not defined"));
}

/// Each tool call of a translated stream: (id, name, its argument deltas).
fn calls_of(events: &[serde_json::Value]) -> Vec<(String, String, Vec<String>)> {
    let mut calls: Vec<(String, String, Vec<String>)> = Vec::new();
    for e in events {
        for tc in e["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push((
                    tc["id"].as_str().unwrap().to_string(),
                    tc["function"]["name"].as_str().unwrap().to_string(),
                    Vec::new(),
                ));
            }
            assert!(i < calls.len(), "tool call indexes in order");
            if let Some(a) = tc["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                calls[i].2.push(a.to_string());
            }
        }
    }
    calls
}

#[test]
fn vertex_streamed_arguments_become_argument_deltas_in_order() {
    use serde_json::json;
    let arguments = |name: &str| -> Vec<(String, serde_json::Value, usize)> {
        let events = check_openai_stream(&stream(name, false));
        let calls = calls_of(&events);
        let ids: std::collections::HashSet<_> = calls.iter().map(|c| &c.0).collect();
        assert_eq!(ids.len(), calls.len(), "one id per call");
        calls
            .into_iter()
            .map(|(_, n, pieces)| {
                let v = serde_json::from_str(&pieces.concat()).unwrap_or_else(|e| {
                    panic!("{name}: {e}: {}", pieces.concat());
                });
                (n, v, pieces.len())
            })
            .collect()
    };
    let calls = arguments("gemini_stream_vertex_partial_args.sse");
    let got: Vec<_> = calls.iter().map(|(n, v, _)| (n.as_str(), v)).collect();
    assert_eq!(
        got,
        [
            ("getWeather", &json!({"location": "Boston"})),
            ("getWeather", &json!({"location": "San Francisco"}))
        ]
    );
    // The arguments stream: a delta per piece, not one at the end.
    assert!(calls.iter().all(|c| c.2 >= 3), "{calls:?}");

    // As Vercel's snapshot of the same capture assembles it.
    let calls = arguments("gemini_stream_vertex_partial_args_numbers.sse");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].1,
        json!({"operations": [
            {"action": "add", "description": "Fresh red apple", "itemid": "apple_001", "price": 0.5},
            {"action": "add", "description": "Ripe yellow banana", "itemid": "banana_001", "price": 0.3}
        ]})
    );

    let calls = arguments("gemini_stream_vertex_partial_args_nested.sse");
    let recipe = &calls[0].1["recipe"];
    assert_eq!(recipe["name"], "Lasagna");
    assert_eq!(recipe["ingredients"].as_array().unwrap().len(), 10);
    assert_eq!(
        recipe["ingredients"][0],
        json!({"amount": "16 oz", "name": "Lasagna noodles"})
    );
    // A string continued over three pieces on one path.
    assert_eq!(
        recipe["steps"][1],
        "Cook lasagna noodles according to package directions, drain and set aside."
    );
    assert_eq!(recipe["steps"].as_array().unwrap().len(), 10);

    let calls = arguments("gemini_stream_vertex_partial_args_no_args.sse");
    let got: Vec<_> = calls
        .iter()
        .map(|(n, v, _)| (n.as_str(), v.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("read_theme", json!({})),
            ("read_screen", json!({"id": "A"})),
            ("read_screen", json!({"id": "B"})),
            ("read_screen", json!({"id": "C"})),
        ]
    );
}

#[test]
fn streamed_arguments_at_any_path_are_well_formed_json() {
    // Paths and values as Vertex documents them (bracketed keys, booleans, nulls): each
    // piece's JSON is written as it comes, and closes whatever the next path leaves.
    let pieces = br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","willContinue":true}}]}}]}"#;
    let more = [
        r#"{"candidates":[{"content":{"parts":[{"functionCall":{"partialArgs":[{"jsonPath":"$.a['b c'][0].x","boolValue":true},{"jsonPath":"$.a['b c'][0].y","nullValue":null},{"jsonPath":"$.a['b c'][1]","numberValue":2},{"jsonPath":"$.q","stringValue":"say \"hi\"","willContinue":true}],"willContinue":true}}]}}]}"#,
        r#"{"candidates":[{"content":{"parts":[{"functionCall":{"partialArgs":[{"jsonPath":"$.q","stringValue":"\n!","willContinue":true}]}}]}}]}"#,
    ];
    let mut s = StreamTranslator::new(
        Translation::default(),
        "gemini-x",
        CREATED,
        CallIds::with_seed(1),
    );
    let mut out = Vec::new();
    for e in std::iter::once(&pieces[..]).chain(more.iter().map(|m| m.as_bytes())) {
        let mut event = b"data: ".to_vec();
        event.extend_from_slice(e);
        event.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&s.feed(Bytes::from(event)).unwrap_or_default());
    }
    let end = br#"{"candidates":[{"content":{"parts":[{"text":""}]},"finishReason":"STOP"}]}"#;
    let mut event = b"data: ".to_vec();
    event.extend_from_slice(end);
    event.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&s.feed(Bytes::from(event)).unwrap_or_default());
    out.extend_from_slice(&s.finish().unwrap_or_default());
    let calls = calls_of(&check_openai_stream(&out));
    let args: serde_json::Value = serde_json::from_str(&calls[0].2.concat()).unwrap();
    assert_eq!(
        args,
        serde_json::json!({"a": {"b c": [{"x": true, "y": null}, 2]}, "q": "say \"hi\"\n!"})
    );
}
