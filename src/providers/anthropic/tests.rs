use super::*;
use crate::error::Code;
use crate::providers::conformance::*;
use bytes::Bytes;

fn translation(include_usage: bool) -> Translation {
    Translation {
        json_tool: false,
        include_usage,
    }
}

fn stream(name: &str, t: Translation) -> Vec<u8> {
    stream_output(
        &|| StreamTranslator::new(t, CREATED),
        &|s, b| s.feed(b),
        &|s| s.finish(),
        &fixture(name),
    )
}

#[test]
fn every_stream_capture_matches_its_checked_translation() {
    let names = fixtures("anthropic_stream_", ".sse");
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        let out = stream(&name, translation(true));
        // A stream that is only an error says nothing itself (the gateway renders the error).
        if !out.is_empty() {
            check_openai_stream(&out);
        }
        expect(&format!("{name}.openai"), &out);
    }
}

#[test]
fn tool_call_indexes_count_tool_calls_not_content_blocks() {
    let out = stream("anthropic_stream_tool_use.sse", translation(false));
    let events = check_openai_stream(&out);
    let calls: Vec<&serde_json::Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"].get("tool_calls"))
        .collect();
    // The tool_use block is Anthropic index 1 (after a text block) but the first tool call.
    assert!(calls.iter().all(|c| c[0]["index"] == 0));
    assert_eq!(calls[0][0]["id"], "toolu_01NRLabsLyVHZPKxbKvkfSMn");
    let args: String = calls
        .iter()
        .map(|c| c[0]["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&args).unwrap()["location"],
        "Paris"
    );
    let last_choice = events
        .iter()
        .rev()
        .find(|e| e["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(last_choice["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn usage_is_reported_only_when_asked_but_always_kept() {
    let name = "anthropic_stream_text_sonnet45.sse";
    let without = stream(name, translation(false));
    assert!(!String::from_utf8_lossy(&without).contains("prompt_tokens"));
    let mut t = StreamTranslator::new(translation(false), CREATED);
    t.feed(Bytes::from(fixture(name)));
    t.finish();
    assert!(t.done());
    assert!(t.usage().unwrap().output_tokens > 0 && t.usage().unwrap().input_tokens > 0);
}

#[test]
fn an_error_event_ends_the_stream_and_is_kept_for_the_gateway() {
    for (name, status) in [
        ("anthropic_stream_error_midstream.sse", 500),
        ("anthropic_stream_error_overloaded.sse", 529),
        ("anthropic_stream_error_api_error.sse", 500),
    ] {
        let capture = fixture(name);
        let mut t = StreamTranslator::new(translation(true), CREATED);
        let out = t.feed(Bytes::from(capture.clone())).unwrap_or_default();
        assert!(t.done(), "{name}");
        assert!(!String::from_utf8_lossy(&out).contains("[DONE]"), "{name}");
        assert!(!String::from_utf8_lossy(&out).contains("error"), "{name}");
        // The event's data is Anthropic's error body, with the status its type stands for.
        let text = String::from_utf8_lossy(&capture);
        let data = text.lines().rfind(|l| l.starts_with("data:")).unwrap()[5..].trim();
        assert_eq!(
            t.state().failure,
            Some(InBand::Reported {
                status,
                body: Bytes::copy_from_slice(data.as_bytes())
            }),
            "{name}"
        );
        assert!(!t.state().started, "{name}: no text came before the error");
    }
}

#[test]
fn a_stream_cut_before_message_stop_is_not_done() {
    let whole = fixture("anthropic_stream_text.sse");
    let cut = &whole[..whole.len() / 2];
    let mut t = StreamTranslator::new(translation(true), CREATED);
    t.feed(Bytes::copy_from_slice(cut));
    t.finish();
    assert!(!t.done());
}

#[test]
fn every_message_capture_matches_its_checked_translation() {
    for name in fixtures("anthropic_message", ".json") {
        let (out, usage) =
            translate_response(&fixture(&name), translation(false), CREATED).unwrap();
        assert!(usage.input_tokens > 0, "{name}");
        expect(&format!("{name}.openai"), &pretty(&out));
    }
}

#[test]
fn usage_counts_cached_prompt_tokens_as_prompt_tokens() {
    let body = br#"{"id":"m","model":"c","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":3}}"#;
    let (out, usage) = translate_response(body, translation(false), CREATED).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 115);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 118);
    assert_eq!(usage.cache_write_tokens, 5);
}

#[test]
fn finish_reasons_follow_the_documented_table() {
    let cases = [
        (Some("end_turn"), "stop"),
        (Some("stop_sequence"), "stop"),
        (Some("max_tokens"), "length"),
        (Some("tool_use"), "tool_calls"),
        (Some("pause_turn"), "stop"),
        (Some("refusal"), "content_filter"),
        (Some("model_context_window_exceeded"), "length"),
        (Some("something_new"), "stop"),
        (None, "stop"),
    ];
    for (anthropic, openai) in cases {
        assert_eq!(finish_reason(anthropic, false), openai, "{anthropic:?}");
    }
    assert_eq!(finish_reason(Some("tool_use"), true), "stop");
}

// ---- requests

fn opts() -> Options {
    Options {
        default_max_tokens: 4096,
        unsupported: Unsupported::Reject,
        structured: StructuredOutput::Auto,
    }
}

fn translate(req: serde_json::Value) -> Result<serde_json::Value, GatewayError> {
    let req = ChatRequest::parse(&serde_json::to_vec(&req).unwrap())?;
    let (body, _) = translate_request(&req, "claude-x", &opts(), false)?;
    Ok(serde_json::from_slice(&body).unwrap())
}

#[test]
fn request_with_history_tools_and_images_translates_exactly() {
    let got = translate(serde_json::json!({
        "model": "public",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "noon"},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [
            {"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "time"}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "temperature": 0.5,
        "top_p": 0.9,
        "max_completion_tokens": 300,
        "stop": "END",
        "user": "u-42"
    }))
    .unwrap();
    let expected = serde_json::json!({
        "model": "claude-x",
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon"},
                {"type": "text", "text": "Thanks"}
            ]}
        ],
        "tools": [
            {"name": "weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "time", "input_schema": {"type": "object", "properties": {}}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 300,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-42"}
    });
    assert_eq!(got, expected);
}

#[test]
fn tool_choice_forms() {
    let with = |choice: serde_json::Value| {
        translate(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": choice
        }))
        .unwrap()["tool_choice"]
            .clone()
    };
    assert_eq!(with("auto".into()), serde_json::json!({"type": "auto"}));
    assert_eq!(with("none".into()), serde_json::json!({"type": "none"}));
    assert_eq!(with("required".into()), serde_json::json!({"type": "any"}));
    assert_eq!(
        with(serde_json::json!({"type": "function", "function": {"name": "f"}})),
        serde_json::json!({"type": "tool", "name": "f"})
    );
}

#[test]
fn max_tokens_defaults_and_reasoning_effort_sets_a_thinking_budget() {
    let plain = translate(
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    assert_eq!(plain["max_tokens"], 4096);
    let v = translate(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "medium"})).unwrap();
    assert_eq!(
        v["thinking"],
        serde_json::json!({"type": "enabled", "budget_tokens": 8192})
    );
    assert_eq!(v["max_tokens"], 4096 + 8192);
    let v = translate(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high", "max_tokens": 5000})).unwrap();
    assert_eq!(v["thinking"]["budget_tokens"], 4999);
    let e = translate(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low", "max_tokens": 500})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
}

#[test]
fn response_format_becomes_a_forced_tool_and_comes_back_as_content() {
    let req = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"integer"}}}}}}"#).unwrap();
    let (body, t) = translate_request(&req, "c", &opts(), false).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(t.json_tool);
    assert_eq!(
        v["tool_choice"],
        serde_json::json!({"type": "tool", "name": JSON_TOOL})
    );
    assert_eq!(
        v["tools"][0]["input_schema"]["properties"]["a"]["type"],
        "integer"
    );
    let answer = br#"{"id":"m","model":"c","content":[{"type":"tool_use","id":"t","name":"json_response","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#;
    let (out, _) = translate_response(answer, t, CREATED).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "{\"a\":1}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
}

#[test]
fn native_structured_output_is_known_by_model_name() {
    for (model, native) in [
        ("claude-sonnet-4-5", true),
        ("claude-sonnet-4-5-20250929", true),
        ("claude-haiku-4-5-20251001", true),
        ("claude-opus-4-5-20251101", true),
        ("claude-opus-4-1-20250805", true),
        ("claude-opus-4-6", true),
        ("claude-sonnet-5", true),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", true),
        ("claude-sonnet-4.5", true),
        ("claude-sonnet-4-20250514", false),
        ("claude-opus-4-20250514", false),
        ("claude-3-7-sonnet-20250219", false),
        ("claude-3-5-haiku-latest", false),
        ("claude-3-opus-20240229", false),
        ("claude-instant-1.2", false),
        ("my-proxy-model", false),
    ] {
        assert_eq!(has_native_structured_output(model), native, "{model}");
    }
}

#[test]
fn a_schema_is_reduced_to_what_anthropic_accepts() {
    // A Pydantic model's schema, with constraints Anthropic does not enforce.
    let schema = serde_json::json!({
        "$defs": {"Tag": {"properties": {"name": {"maxLength": 20, "type": "string"}}, "required": ["name"], "title": "Tag", "type": "object"}},
        "properties": {
            "age": {"minimum": 0, "title": "Age", "type": "integer"},
            "site": {"format": "uri", "type": "string"},
            "code": {"format": "binary", "type": "string"},
            "tags": {"items": {"$ref": "#/$defs/Tag"}, "minItems": 2, "type": "array"},
            "kind": {"oneOf": [{"const": "a"}, {"const": "b"}]}
        },
        "required": ["age"],
        "title": "Person",
        "type": "object"
    });
    let r = native_schema(&schema).unwrap();
    assert_eq!(r["additionalProperties"], false);
    assert_eq!(r["$defs"]["Tag"]["additionalProperties"], false);
    assert_eq!(r["properties"]["age"]["type"], "integer");
    assert!(r["properties"]["age"].get("minimum").is_none());
    assert_eq!(r["properties"]["age"]["description"], "{\"minimum\":0}");
    assert_eq!(r["properties"]["site"]["format"], "uri");
    assert!(r["properties"]["code"].get("format").is_none());
    assert!(r["properties"]["tags"].get("minItems").is_none());
    assert_eq!(r["properties"]["tags"]["items"]["$ref"], "#/$defs/Tag");
    assert_eq!(r["properties"]["kind"]["anyOf"][1]["const"], "b");
    assert_eq!(r["required"], serde_json::json!(["age"]));
    // A map (other properties allowed) cannot be closed; a root that is not an object.
    let map = serde_json::json!({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": {"type": "integer"}}}});
    assert!(native_schema(&map).is_none());
    assert!(native_schema(&serde_json::json!({"type": "array"})).is_none());
}

#[test]
fn response_format_is_native_structured_output_where_the_model_has_it() {
    let req = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"integer"}}}}}}"#).unwrap();
    let (body, t) = translate_request(&req, "claude-sonnet-4-5", &opts(), false).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(!t.json_tool);
    assert_eq!(v["output_config"]["format"]["type"], "json_schema");
    assert_eq!(
        v["output_config"]["format"]["schema"]["additionalProperties"],
        false
    );
    // The client's tool stays callable, thinking stays on, nothing is forced.
    assert_eq!(v["tools"].as_array().unwrap().len(), 1);
    assert!(v.get("tool_choice").is_none());
    assert_eq!(v["thinking"]["type"], "enabled");
    // The answer is the model's text.
    let (out, _) = translate_response(&fixture("anthropic_message.json"), t, CREATED).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // `structured_output = "tool"` keeps the tool for the same model; json_object always does.
    let tool = Options {
        structured: StructuredOutput::Tool,
        ..opts()
    };
    let (_, t) = translate_request(&req, "claude-sonnet-4-5", &tool, false).unwrap();
    assert!(t.json_tool);
    let req = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#).unwrap();
    let (_, t) = translate_request(&req, "claude-sonnet-4-5", &opts(), false).unwrap();
    assert!(t.json_tool);
}

#[test]
fn with_tools_of_its_own_the_json_tool_is_offered_not_forced() {
    let req = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"search","parameters":{"type":"object"}}}],"response_format":{"type":"json_object"}}"#).unwrap();
    let (body, t) = translate_request(&req, "claude-3-7-sonnet-20250219", &opts(), true).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(t.json_tool);
    let names: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["search", JSON_TOOL]);
    assert!(v.get("tool_choice").is_none());

    // The model calls the client's tool after some text (a real stream): the call is a
    // tool call, the text is kept (sent before the finish), the finish is tool_calls.
    let t = Translation {
        json_tool: true,
        include_usage: false,
    };
    let out = stream("anthropic_stream_tool_use_text_and_tool.sse", t);
    let events = check_openai_stream(&out);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.starts_with("I'll help you find information"), "{text}");
    let finish = events
        .iter()
        .find_map(|e| e["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "tool_calls");
    let first_call = events
        .iter()
        .position(|e| e["choices"][0]["delta"].get("tool_calls").is_some())
        .unwrap();
    let first_text = events
        .iter()
        .position(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .unwrap();
    assert!(first_call < first_text, "the text was held back");

    // The same stream where the tool called is the JSON tool (the capture with its tool's
    // name replaced): the JSON is the whole answer, the text before it is left out.
    let bytes = String::from_utf8(fixture("anthropic_stream_tool_use_text_and_tool.sse"))
        .unwrap()
        .replacen(r#""name":"search""#, r#""name":"json_response""#, 1);
    let out = stream_output(
        &|| StreamTranslator::new(t, CREATED),
        &|s, b| s.feed(b),
        &|s| s.finish(),
        bytes.as_bytes(),
    );
    let events = check_openai_stream(&out);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    serde_json::from_str::<serde_json::Value>(&text).expect("only the JSON");
    assert!(!text.contains("Tigers game today"), "{text}");
    // A whole answer likewise.
    let answer = br#"{"id":"m","model":"c","content":[{"type":"text","text":"Here it is:"},{"type":"tool_use","id":"t","name":"json_response","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#;
    let (out, _) = translate_response(answer, t, CREATED).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "{\"a\":1}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[test]
fn hints_never_fail_a_request_and_an_unknown_field_is_named() {
    // What Codex sends on every turn, under the default policy (reject).
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"prompt_cache_key":"019a-session","prompt_cache_retention":"24h","safety_identifier":"u-1","metadata":{"a":"b"},"store":false}"#;
    let req = ChatRequest::parse(body).unwrap();
    let (out, _) = translate_request(&req, "c", &opts(), false).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    for hint in [
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
    ] {
        assert!(
            v.get(hint).is_none(),
            "{hint} is left out of the Anthropic request"
        );
    }
    // A field that changes the answer, unknown to OpenAI too: refused, and named.
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"top_k":5}"#;
    let e = translate_request(&ChatRequest::parse(body).unwrap(), "c", &opts(), false).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("top_k"));
    assert!(e.message.contains("`top_k`"), "{}", e.message);
}

#[test]
fn unsupported_parameters_follow_the_policy() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2,"logit_bias":{"1":2},"seed":3}"#;
    let req = ChatRequest::parse(body).unwrap();
    let e = translate_request(&req, "c", &opts(), false).unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(e.code, Some(Code::UnsupportedParameter));
    assert_eq!(e.param.as_deref(), Some("logit_bias"));
    let drop = Options {
        unsupported: Unsupported::Drop,
        ..opts()
    };
    let (out, _) = translate_request(&req, "c", &drop, false).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v.get("n").is_none() && v.get("logit_bias").is_none() && v.get("seed").is_none());
    // Values that ask for nothing are fine under either policy.
    let neutral = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":1,"logprobs":false,"presence_penalty":0,"store":false}"#).unwrap();
    assert!(translate_request(&neutral, "c", &opts(), false).is_ok());
}

#[test]
fn bad_tool_arguments_and_roles_are_400() {
    let e = translate(serde_json::json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}
    ]}))
    .unwrap_err();
    assert_eq!(e.status(), 400);
    let e = translate(
        serde_json::json!({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}),
    )
    .unwrap_err();
    assert!(e.message.contains("wizard"));
}

#[test]
fn error_bodies_map_to_statuses_the_client_can_act_on() {
    let overloaded = fixture("anthropic_error_overloaded_529.json");
    let e = map_error("claude", 529, &overloaded, None);
    assert_eq!(e.status(), 503);
    assert_eq!(e.code, Some(Code::Overloaded));
    assert!(e.fails_over, "overloaded moves on to another deployment");
    assert!(e.message.contains("Overloaded"));
    let http = String::from_utf8(fixture("anthropic_error_400_invalid_request.http")).unwrap();
    let body = http.split("\n\n").nth(1).unwrap().as_bytes();
    let e = map_error("claude", 400, body, None);
    assert_eq!(e.status(), 400);
    assert_eq!(e.code, Some(Code::InvalidRequestError));
    assert!(e.message.contains("prompt is too long"));
    let e = map_error("claude", 401, br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#, None);
    assert_eq!(e.status(), 502);
    assert_eq!(e.code, Some(Code::UpstreamAuthFailed));
    assert!(e.fails_over, "a refused key moves on to another deployment");
    assert!(!e.retries_help, "and is not tried again on the same one");
    let e = map_error(
        "claude",
        429,
        br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        Some(9),
    );
    assert_eq!((e.status(), e.retry_after), (429, Some(9)));
}

#[test]
fn cache_marks_on_content_parts_reach_anthropic_blocks() {
    // What OpenAI-compatible agents (Cline, Roo, opencode) send for prompt caching.
    let cc = serde_json::json!({"type": "ephemeral"});
    let got = translate(serde_json::json!({
        "model": "public",
        "max_completion_tokens": 900,
        "messages": [
            {"role": "developer", "content": [
                {"type": "text", "text": "You are an agent.", "cache_control": cc},
                {"type": "text", "text": "Uncached."}
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "Long context", "cache_control": cc},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}, "cache_control": cc}
            ]}
        ]
    }))
    .unwrap();
    assert_eq!(got["max_tokens"], 900);
    assert_eq!(
        got["system"],
        serde_json::json!([
            {"type": "text", "text": "You are an agent.", "cache_control": cc},
            {"type": "text", "text": "Uncached."}
        ])
    );
    let blocks = &got["messages"][0]["content"];
    assert_eq!(blocks[0]["cache_control"], cc);
    assert_eq!(blocks[1]["type"], "image");
    assert_eq!(blocks[1]["cache_control"], cc);
}

#[test]
fn reasoning_replayed_by_openai_compatible_agents_is_accepted_and_not_forwarded() {
    // DeepSeek-style `reasoning_content` and OpenRouter-style `reasoning` on assistant turns:
    // accepted; Anthropic cannot take reasoning without its own signature, so it is left out.
    let got = translate(serde_json::json!({
        "model": "public",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello.", "reasoning_content": "They greet.", "reasoning": "They greet."},
            {"role": "user", "content": "again"}
        ]
    }))
    .unwrap();
    assert_eq!(
        got["messages"][1]["content"],
        serde_json::json!([{"type": "text", "text": "Hello."}])
    );
    assert!(!got.to_string().contains("They greet."));
}

#[test]
fn compaction_passes_and_thinking_tokens_are_billed_as_anthropic_reports_them() {
    let whole = |name: &str| {
        crate::providers::decode_whole(
            crate::providers::Dialect::Anthropic(Translation {
                json_tool: false,
                include_usage: true,
            }),
            &fixture(name),
            "claude-x",
        )
        .unwrap()
        .1
    };
    // The top level is the message pass only (682 / 1320); iterations add the compaction
    // pass (60385 / 592).
    let u = whole("anthropic_message_compaction.json");
    assert_eq!((u.input_tokens, u.output_tokens), (682 + 60385, 1320 + 592));
    // Of the output, the extended thinking.
    let u = whole("anthropic_message_thinking_tokens.json");
    assert_eq!((u.output_tokens, u.reasoning_tokens), (1699, 139));
    // Streamed: the compaction pass's 55,096 cache reads and 100 input tokens are only in
    // the final message_delta's iterations, beside its top-level 181.
    let mut s = StreamTranslator::new(
        Translation {
            json_tool: false,
            include_usage: true,
        },
        CREATED,
    );
    let _ = s.feed(Bytes::from(fixture(
        "anthropic_stream_compaction_cache.sse",
    )));
    let _ = s.finish();
    let u = s.usage().unwrap();
    assert_eq!(u.input_tokens, 181 + 100 + 55096);
    assert_eq!(u.cached_input_tokens, 55096);
    assert_eq!(u.output_tokens, 8 + 83);
}

#[test]
fn thinking_is_never_sent_with_a_forced_tool() {
    // Anthropic refuses thinking with tool_choice any or a named tool.
    for extra in [
        serde_json::json!({"response_format": {"type": "json_object"}}),
        serde_json::json!({"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}),
        serde_json::json!({"tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}),
    ] {
        let mut req = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low"});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        let v = translate(req.clone()).unwrap();
        assert!(v.get("thinking").is_some(), "{req}");
        assert_eq!(v["tool_choice"]["type"], "auto", "{req}: {v}");
        assert!(v["tool_choice"].get("name").is_none(), "{v}");
        // Without thinking the choice is forced, as asked.
        req.as_object_mut().unwrap().remove("reasoning_effort");
        let v = translate(req.clone()).unwrap();
        assert_ne!(v["tool_choice"]["type"], "auto", "{req}: {v}");
    }
}
