use super::*;
use crate::error::Code;
use crate::front::test_support::{
    call, calls, chat_stream, delta, feed_pieces, finish, fixture, usage,
};
use bytes::Bytes;
use pingora_http::RequestHeader;
use serde_json::json;

const MODEL: &str = "claude-sonnet-4-5";

// ---------------------------------------------------------------------------------------
// Streams: helpers

/// Runs a stream through a fresh encoder, fed in the given pieces, then finished.
fn run(pieces: &[&[u8]]) -> Vec<u8> {
    feed_pieces(StreamEncoder::new(MODEL), pieces).0
}

/// One content block of a translated stream, put back together.
#[derive(Debug, Default, Clone)]
struct Block {
    kind: String,
    /// text, thinking, or the joined partial_json.
    text: String,
    id: String,
    name: String,
    signature: Option<String>,
}

/// A translated stream, put back together after checking Anthropic's grammar.
#[derive(Debug, Default)]
struct Message {
    id: String,
    model: String,
    blocks: Vec<Block>,
    stop_reason: Option<String>,
    usage: Option<Value>,
    error: Option<Value>,
    stopped: bool,
}

/// Parses Anthropic SSE events and checks their order: message_start first; blocks opened
/// with the next index, one at a time; deltas of the open block's type; content_block_stop
/// for the open block; message_delta with no block open, then message_stop last. An error
/// event may come anywhere, and ends the stream.
fn check_grammar(out: &[u8]) -> Message {
    let text = std::str::from_utf8(out).expect("UTF-8");
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "unterminated event"
    );
    let mut m = Message::default();
    let mut open: Option<usize> = None;
    let mut started = false;
    let mut delta_seen = false;
    let mut ended = false;
    for raw in text.split("\n\n").filter(|e| !e.is_empty()) {
        assert!(!ended, "event after the end: {raw}");
        let (name, data) = raw
            .strip_prefix("event: ")
            .and_then(|r| r.split_once("\ndata: "))
            .unwrap_or_else(|| panic!("not `event:` then `data:`: {raw}"));
        assert!(!data.contains('\n'), "one data line: {raw}");
        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
        assert_eq!(v["type"], name, "event name is the payload type: {raw}");
        match name {
            "error" => {
                assert!(v["error"]["type"].is_string() && v["error"]["message"].is_string());
                m.error = Some(v["error"].clone());
                ended = true;
            }
            "message_start" => {
                assert!(!started, "second message_start");
                started = true;
                let msg = &v["message"];
                assert_eq!(msg["type"], "message");
                assert_eq!(msg["role"], "assistant");
                assert_eq!(msg["content"], json!([]));
                assert_eq!(msg["stop_reason"], Value::Null);
                assert_eq!(msg["usage"]["output_tokens"], 0);
                m.id = msg["id"].as_str().unwrap().to_string();
                m.model = msg["model"].as_str().unwrap().to_string();
            }
            "content_block_start" => {
                assert!(started && !delta_seen, "{raw}");
                assert_eq!(open, None, "a block is already open: {raw}");
                assert_eq!(v["index"], m.blocks.len(), "next index: {raw}");
                let b = &v["content_block"];
                let kind = b["type"].as_str().unwrap().to_string();
                let mut block = Block {
                    kind: kind.clone(),
                    ..Block::default()
                };
                match kind.as_str() {
                    "text" => assert_eq!(b["text"], ""),
                    "thinking" => {
                        assert_eq!(b["thinking"], "");
                        block.signature = Some(b["signature"].as_str().unwrap().to_string());
                    }
                    "tool_use" => {
                        assert_eq!(b["input"], json!({}));
                        block.id = b["id"].as_str().unwrap().to_string();
                        block.name = b["name"].as_str().unwrap().to_string();
                        assert!(!block.id.is_empty() && !block.name.is_empty());
                    }
                    other => panic!("unexpected block type {other}"),
                }
                open = Some(m.blocks.len());
                m.blocks.push(block);
            }
            "content_block_delta" => {
                let at = open.unwrap_or_else(|| panic!("delta with no open block: {raw}"));
                assert_eq!(v["index"], at, "delta for another block: {raw}");
                let block = &mut m.blocks[at];
                let d = &v["delta"];
                let (expected, field) = match block.kind.as_str() {
                    "text" => ("text_delta", "text"),
                    "thinking" => ("thinking_delta", "thinking"),
                    _ => ("input_json_delta", "partial_json"),
                };
                assert_eq!(d["type"], expected, "{raw}");
                block.text.push_str(d[field].as_str().unwrap());
            }
            "content_block_stop" => {
                assert_eq!(open.map(|o| json!(o)), Some(v["index"].clone()), "{raw}");
                open = None;
            }
            "message_delta" => {
                assert!(started && open.is_none() && !delta_seen, "{raw}");
                assert!(!m.blocks.is_empty(), "a message without content blocks");
                delta_seen = true;
                assert_eq!(v["delta"]["stop_sequence"], Value::Null);
                m.stop_reason = Some(v["delta"]["stop_reason"].as_str().unwrap().to_string());
                assert!(v["usage"]["output_tokens"].is_u64());
                m.usage = Some(v["usage"].clone());
            }
            "message_stop" => {
                assert!(delta_seen, "message_stop before message_delta");
                m.stopped = true;
                ended = true;
            }
            other => panic!("unknown event {other}"),
        }
    }
    m
}

/// What an OpenAI stream says, read the simple way, to compare with the translation.
#[derive(Debug, Default)]
struct Said {
    text: String,
    /// (index, id, name, arguments), by first appearance.
    calls: Vec<(u64, String, String, String)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    error: Option<Value>,
}

fn said(stream: &[u8]) -> Said {
    let mut s = Said::default();
    for event in std::str::from_utf8(stream).unwrap().split("\n\n") {
        let Some(data) = event.trim().strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if v.get("error").is_some() {
            s.error = Some(v["error"].clone());
            break;
        }
        if !v["usage"].is_null() {
            s.usage = Some(v["usage"].clone());
        }
        let Some(choice) = v["choices"].get(0) else {
            continue;
        };
        let d = &choice["delta"];
        s.text.push_str(d["content"].as_str().unwrap_or(""));
        for c in d["tool_calls"].as_array().into_iter().flatten() {
            let index = c["index"].as_u64().unwrap();
            let f = &c["function"];
            match s.calls.iter_mut().find(|c| c.0 == index) {
                Some(known) => known.3.push_str(f["arguments"].as_str().unwrap_or("")),
                None => s.calls.push((
                    index,
                    c["id"].as_str().unwrap().to_string(),
                    f["name"].as_str().unwrap().to_string(),
                    f["arguments"].as_str().unwrap_or("").to_string(),
                )),
            }
        }
        if let Some(r) = choice["finish_reason"].as_str() {
            s.finish_reason = Some(r.to_string());
        }
    }
    s
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

// ---------------------------------------------------------------------------------------
// Streams: captures

#[test]
fn captures_become_anthropic_streams_that_say_the_same() {
    for (name, stop) in [
        ("openai_stream_usage.sse", "end_turn"),
        ("openai_stream_usage_obfuscation.sse", "end_turn"),
        ("openai_stream_tool_calls.sse", "tool_use"),
        ("openai_stream_tool_calls_single_sdk.sse", "tool_use"),
        ("openai_stream_tool_calls_parallel.sse", "tool_use"),
        ("openai_stream_finish_length.sse", "max_tokens"),
    ] {
        let stream = fixture(name);
        let expected = said(&stream);
        let m = check_grammar(&run(&[&stream]));
        assert!(m.stopped && m.error.is_none(), "{name}");
        assert_eq!(m.model, MODEL);
        assert!(
            m.id.starts_with("msg_") && !m.id.contains("chatcmpl"),
            "{name}"
        );
        let text: String = m
            .blocks
            .iter()
            .filter(|b| b.kind == "text")
            .map(|b| b.text.as_str())
            .collect();
        assert_eq!(text, expected.text, "{name}");
        let tools: Vec<&Block> = m.blocks.iter().filter(|b| b.kind == "tool_use").collect();
        assert_eq!(tools.len(), expected.calls.len(), "{name}");
        for (block, (_, id, tool, arguments)) in tools.iter().zip(&expected.calls) {
            assert_eq!(&block.id, id, "{name}");
            assert_eq!(&block.name, tool, "{name}");
            assert_eq!(json_of(&block.text), json_of(arguments), "{name}");
        }
        assert_eq!(m.stop_reason.as_deref(), Some(stop), "{name}");
        let u = expected.usage.unwrap();
        let cached = u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0);
        assert_eq!(
            m.usage.unwrap(),
            json!({
                "input_tokens": u["prompt_tokens"].as_u64().unwrap() - cached,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": cached,
                "output_tokens": u["completion_tokens"],
            }),
            "{name}"
        );
    }
}

#[test]
fn usage_numbers_are_the_captures() {
    let m = check_grammar(&run(&[&fixture("openai_stream_usage.sse")]));
    assert_eq!(m.usage.unwrap()["output_tokens"], 238);
    let m = check_grammar(&run(&[&fixture("openai_stream_finish_length.sse")]));
    assert_eq!(m.usage.unwrap()["input_tokens"], 79);
    let mut e = StreamEncoder::new(MODEL);
    e.feed(Bytes::from(fixture("openai_stream_tool_calls.sse")));
    assert!(e.done() && e.usage().is_some());
    assert_eq!(e.usage().unwrap().input_tokens, 60);
    assert_eq!(e.usage().unwrap().output_tokens, 15);
}

#[test]
fn every_split_gives_the_same_events() {
    for name in [
        "openai_stream_tool_calls.sse",
        "openai_stream_finish_length.sse",
        "openai_stream_error_midstream.sse",
    ] {
        let stream = fixture(name);
        let whole = run(&[&stream]);
        check_grammar(&whole);
        for i in 1..stream.len() {
            let split = run(&[&stream[..i], &stream[i..]]);
            assert!(split == whole, "{name}: differs split at byte {i}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert!(run(&bytes) == whole, "{name}: differs fed byte by byte");
    }
    // The long one in small pieces of varying size.
    let stream = fixture("openai_stream_tool_calls_parallel.sse");
    let whole = run(&[&stream]);
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20 {
        let mut pieces = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = rng.usize(1..=rest.len().min(40));
            pieces.push(&rest[..n]);
            rest = &rest[n..];
        }
        assert!(run(&pieces) == whole, "differs in random pieces");
    }
}

// ---------------------------------------------------------------------------------------
// Streams: tool calls

/// The output of each fed event, one by one.
fn outputs(events: &[Value]) -> Vec<String> {
    let mut e = StreamEncoder::new(MODEL);
    events
        .iter()
        .map(|v| {
            let chunk = if v == "[DONE]" {
                Bytes::from_static(b"data: [DONE]\n\n")
            } else {
                Bytes::from(format!("data: {v}\n\n"))
            };
            e.feed(chunk)
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn contiguous_parallel_calls_stream_live() {
    let stream = fixture("openai_stream_tool_calls_parallel.sse");
    let text = String::from_utf8(stream).unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
        .collect();
    let out = outputs(&events);
    // The first fragment of call 0 goes out with its own event.
    assert!(
        out[2].contains(r#""index":0,"delta":{"type":"input_json_delta","partial_json":"{\"ci"}"#)
    );
    // Call 1 starting closes call 0 (its arguments are complete) and opens block 1 at once.
    let second = events
        .iter()
        .position(|e| e["choices"][0]["delta"]["tool_calls"][0]["index"] == 1)
        .unwrap();
    let o = &out[second];
    let stop = o
        .find(r#"{"type":"content_block_stop","index":0}"#)
        .unwrap();
    let start = o
        .find(r#""index":1,"content_block":{"type":"tool_use","id":"call_DNYTawLBoN8fj3KN6qU9N1Ou","name":"get_stock_price","input":{}}"#)
        .unwrap();
    assert!(stop < start);
    assert!(out[second + 1].contains(r#""index":1,"delta":{"type":"input_json_delta""#));
}

#[test]
fn interleaved_calls_are_held_back_never_interleaved() {
    let events = vec![
        delta(json!({"role": "assistant", "content": "Checking both."})),
        calls(vec![
            call(0, Some("call_a"), Some("weather"), ""),
            call(1, Some("call_b"), Some("stock"), ""),
        ]),
        calls(vec![call(0, None, None, "{\"city\":")]),
        calls(vec![call(1, None, None, "{\"ticker\":\"}{\\\"")]),
        calls(vec![call(0, None, None, "\"Paris\"")]),
        calls(vec![call(1, None, None, "\"}")]),
        calls(vec![call(0, None, None, "}")]),
        calls(vec![call(1, None, None, " ")]),
        finish("tool_calls"),
        usage(10, 5, 0),
        json!("[DONE]"),
    ];
    let out = outputs(&events);
    let m = check_grammar(out.concat().as_bytes());
    let kinds: Vec<&str> = m.blocks.iter().map(|b| b.kind.as_str()).collect();
    assert_eq!(kinds, ["text", "tool_use", "tool_use"]);
    assert_eq!(m.blocks[0].text, "Checking both.");
    assert_eq!(
        (&*m.blocks[1].id, &*m.blocks[1].name),
        ("call_a", "weather")
    );
    assert_eq!(json_of(&m.blocks[1].text), json!({"city": "Paris"}));
    assert_eq!((&*m.blocks[2].id, &*m.blocks[2].name), ("call_b", "stock"));
    assert_eq!(json_of(&m.blocks[2].text), json!({"ticker": "}{\""}));
    // Call 0 streams live from the start; call 1 waits until call 0's arguments close.
    assert!(out[1].contains(r#""name":"weather""#) && !out[1].contains("stock"));
    assert!(out[2].contains("city"));
    assert!(out[3].is_empty() && out[4].contains("Paris") && out[5].is_empty());
    let closed = &out[6];
    assert!(
        closed.find(r#""partial_json":"}""#).unwrap()
            < closed
                .find(r#"{"type":"content_block_stop","index":1}"#)
                .unwrap()
    );
    assert!(closed.contains(r#""index":2,"content_block":{"type":"tool_use","id":"call_b""#));
    assert!(closed.contains(r#""partial_json":"{\"ticker\":\"}{\\\"\"}"#));
    assert_eq!(m.stop_reason.as_deref(), Some("tool_use"));
}

#[test]
fn a_call_never_completed_is_sent_at_the_finish() {
    // Call 0 never closes its object; call 1's fragments wait for the finish_reason.
    let events = vec![
        calls(vec![call(0, Some("call_a"), Some("f"), "{\"a\":1")]),
        calls(vec![call(1, Some("call_b"), Some("g"), "{}")]),
        finish("tool_calls"),
        json!("[DONE]"),
    ];
    let out = outputs(&events);
    assert!(!out[1].contains("call_b"));
    assert!(out[2].contains("call_b"));
    let m = check_grammar(out.concat().as_bytes());
    assert_eq!(m.blocks.len(), 2);
    assert_eq!(m.blocks[0].text, "{\"a\":1");
    assert_eq!(m.blocks[1].text, "{}");
}

#[test]
fn whole_calls_in_one_chunk_become_successive_blocks() {
    // As the gateway's Gemini translation sends them: complete, several in one chunk, and
    // without an `index` the position counts.
    let m = check_grammar(&run(&[&chat_stream(
        &[
            delta(json!({"tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{\"y\":[2]}"}},
            ]})),
            finish("stop"),
        ],
        true,
    )]));
    let got: Vec<(&str, Value)> = m
        .blocks
        .iter()
        .map(|b| (b.id.as_str(), json_of(&b.text)))
        .collect();
    assert_eq!(
        got,
        [("call_1", json!({"x": 1})), ("call_2", json!({"y": [2]}))]
    );
    // finish_reason `stop` with tool calls: Anthropic's clients run tools on tool_use.
    assert_eq!(m.stop_reason.as_deref(), Some("tool_use"));
}

#[test]
fn balance_reads_escaped_arguments() {
    let complete = |pieces: &[&str]| {
        let mut b = Balance::default();
        for p in pieces {
            b.feed(p.as_bytes());
        }
        b.complete
    };
    // Insides of JSON string literals: `\"` is a quote of the arguments.
    assert!(complete(&[r#"{\"a\":1}"#]));
    assert!(complete(&[r#"{\"a"#, r#"\":[1,{}]"#, "}"]));
    assert!(!complete(&[r#"{\"a\":[1,{}]"#]));
    // Braces in argument strings do not count, escaped quotes there do not end them.
    assert!(!complete(&[r#"{\"a\":\"}\""#]));
    assert!(!complete(&[r#"{\"a\":\"\\\"}"#]), "an escaped quote");
    assert!(complete(&[r#"{\"a\":\"\\\\\"}"#]), "an escaped backslash");
    // The escape of an argument string may end one fragment and act in the next.
    assert!(!complete(&[r#"{\"a\":\"\\"#, r#"\"}"#]));
    // \u escapes of the literal.
    assert!(complete(&[r#"\u007b\u007d"#]));
    assert!(!complete(&[r#"{\"\u00e9\":\"\u007d"#]));
    assert!(!complete(&[""]) && !complete(&["42"]));
}

// ---------------------------------------------------------------------------------------
// Streams: other shapes

#[test]
fn reasoning_becomes_a_thinking_block_without_signature() {
    for field in ["reasoning_content", "reasoning"] {
        let m = check_grammar(&run(&[&chat_stream(
            &[
                delta(json!({"role": "assistant", "content": ""})),
                delta(json!({ field: "Let me " })),
                delta(json!({ field: "see.", "content": null })),
                delta(json!({"content": "It is \"42\"\n"})),
                finish("stop"),
                usage(20, 7, 4),
            ],
            true,
        )]));
        let kinds: Vec<&str> = m.blocks.iter().map(|b| b.kind.as_str()).collect();
        assert_eq!(kinds, ["thinking", "text"], "{field}");
        assert_eq!(m.blocks[0].text, "Let me see.");
        assert_eq!(m.blocks[0].signature.as_deref(), Some(""));
        assert_eq!(m.blocks[1].text, "It is \"42\"\n");
        assert_eq!(m.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(
            m.usage.unwrap(),
            json!({"input_tokens": 16, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4, "output_tokens": 7})
        );
    }
    // A backend that sends both fields with the same text: said once.
    let m = check_grammar(&run(&[&chat_stream(
        &[
            delta(json!({"reasoning_content": "once", "reasoning": "once"})),
            finish("stop"),
        ],
        true,
    )]));
    assert_eq!(m.blocks[0].text, "once");
}

#[test]
fn an_empty_answer_still_has_one_block() {
    let m = check_grammar(&run(&[&chat_stream(
        &[
            delta(json!({"role": "assistant", "content": ""})),
            finish("content_filter"),
        ],
        true,
    )]));
    assert_eq!(m.blocks.len(), 1);
    assert_eq!(
        (m.blocks[0].kind.as_str(), m.blocks[0].text.as_str()),
        ("text", "")
    );
    assert_eq!(m.stop_reason.as_deref(), Some("refusal"));
    assert_eq!(m.usage.unwrap()["input_tokens"], 0);
    // Only [DONE]: still a whole message.
    let m = check_grammar(&run(&[b"data: [DONE]\n\n"]));
    assert!(m.stopped && m.blocks.len() == 1);
}

#[test]
fn a_finished_stream_without_done_is_ended_by_finish() {
    let stream = chat_stream(
        &[
            delta(json!({"content": "Hi"})),
            finish("length"),
            usage(3, 1, 0),
        ],
        false,
    );
    let mut e = StreamEncoder::new(MODEL);
    let mut out = e.feed(Bytes::from(stream)).unwrap().to_vec();
    assert!(!e.done());
    out.extend_from_slice(&e.finish().unwrap());
    assert!(e.done());
    let m = check_grammar(&out);
    assert!(m.stopped);
    assert_eq!(m.stop_reason.as_deref(), Some("max_tokens"));
    assert_eq!(m.usage.unwrap()["output_tokens"], 1);
}

#[test]
fn a_cut_stream_is_left_open_for_the_gateway_error() {
    let stream = chat_stream(&[delta(json!({"content": "Hel"}))], false);
    let mut e = StreamEncoder::new(MODEL);
    let mut out = e.feed(Bytes::from(stream)).unwrap().to_vec();
    // The last event was cut in the middle: nothing to say.
    assert_eq!(
        e.feed(Bytes::from_static(b"data: {\"choices\":[{\"de")),
        None
    );
    assert_eq!(e.finish(), None);
    assert!(!e.done());
    let error = GatewayError::new(ErrorKind::GatewayTimeout, "The upstream stopped answering.")
        .code(Code::UpstreamTimeout);
    out.extend_from_slice(&Front::Messages.error_event(&error));
    let m = check_grammar(&out);
    assert_eq!(m.blocks[0].text, "Hel");
    assert_eq!(
        m.error.unwrap(),
        json!({"type": "timeout_error", "message": "The upstream stopped answering."})
    );
}

#[test]
fn upstream_errors_map_to_anthropics_types() {
    // The same mapping for an error status and for an error inside a stream: both are one
    // GatewayError by the time the door writes them.
    let cases = [
        (
            429,
            r#"{"error":{"message":"m","type":"tokens","code":"rate_limit_exceeded"}}"#,
            "rate_limit_error",
        ),
        (
            400,
            r#"{"error":{"message":"m","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
            "invalid_request_error",
        ),
        (
            500,
            r#"{"error":{"message":"m","type":"server_error"}}"#,
            "api_error",
        ),
        (500, "plain text", "api_error"),
    ];
    for (status, body, kind) in cases {
        let e = crate::providers::openai::map_error("p", status, body.as_bytes(), None);
        let m = check_grammar(&Front::Messages.error_event(&e));
        assert_eq!(m.error.unwrap()["type"], kind, "{body}");
    }
    let m = check_grammar(&run(&[b"data: {not json\n\n"]));
    assert_eq!(m.error.unwrap()["type"], "api_error");
}

#[test]
fn message_start_names_the_clients_model_and_the_upstream_id() {
    let out = run(&[&fixture("openai_stream_finish_length.sse")]);
    let first = std::str::from_utf8(&out)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        first,
        format!("event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_ABfw3Oqj8RD0z6aJiiX37oTjV2HFh\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{MODEL}\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":0,\"output_tokens\":0}}}}}}")
    );
}

// ---------------------------------------------------------------------------------------
// Requests

fn claude_code_request() -> Value {
    json!({
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "You help users with software engineering tasks.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>Be brief.</system-reminder>"},
                {"type": "text", "text": "What does README.md say? Screenshot attached.", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "The user wants the README.", "signature": "EuYBCkQYAiJAQ7ZOmBu5pa8U03x"},
                {"type": "text", "text": "I'll read it."},
                {"type": "tool_use", "id": "toolu_01A", "name": "Read", "input": {"file_path": "/repo/README.md"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": [{"type": "text", "text": "# Junction\nAn LLM gateway."}]},
                {"type": "text", "text": "Also show the license."}
            ]},
            {"role": "assistant", "content": [
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
                {"type": "tool_use", "id": "toolu_01B", "name": "Bash", "input": {"command": "cat LICENSE", "description": "Show the license"}},
                {"type": "tool_use", "id": "toolu_01C", "name": "Read", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "Apache License 2.0", "cache_control": {"type": "ephemeral"}},
                {"type": "tool_result", "tool_use_id": "toolu_01C", "is_error": true, "content": [
                    {"type": "text", "text": "Error: file_path is required"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}}
                ]}
            ]},
            {"role": "assistant", "content": "The license is Apache 2.0."},
            {"role": "user", "content": "Thanks!"}
        ],
        "tools": [
            {"name": "Read", "description": "Reads a file", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"], "additionalProperties": false, "$schema": "http://json-schema.org/draft-07/schema#"}},
            {"type": "custom", "name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "temperature": 1,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:"],
        "metadata": {"user_id": "user_abc_account_def_session_123"},
        "stream": true,
        "service_tier": "auto",
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}
    })
}

#[test]
fn a_claude_code_request_becomes_this_chat_request() {
    let body = claude_code_request().to_string();
    let t = request_to_chat(body.as_bytes()).unwrap();
    assert_eq!(t.model, "claude-sonnet-4-5-20250929");
    assert!(t.stream);
    assert_eq!(t.dropped, ["web_search"]);
    let got: Value = serde_json::from_slice(&t.body).unwrap();
    let expected = json!({
        "model": "claude-sonnet-4-5-20250929",
        "messages": [
            {"role": "system", "content": "You are Claude Code, Anthropic's official CLI for Claude.\nYou help users with software engineering tasks."},
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>Be brief.</system-reminder>"},
                {"type": "text", "text": "What does README.md say? Screenshot attached."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": "I'll read it.", "tool_calls": [
                {"id": "toolu_01A", "type": "function", "function": {"name": "Read", "arguments": "{\"file_path\":\"/repo/README.md\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "# Junction\nAn LLM gateway."},
            {"role": "user", "content": "Also show the license."},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_01B", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\":\"cat LICENSE\",\"description\":\"Show the license\"}"}},
                {"id": "toolu_01C", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_01B", "content": "Apache License 2.0"},
            {"role": "tool", "tool_call_id": "toolu_01C", "content": "Error: file_path is required\n[image]"},
            {"role": "assistant", "content": "The license is Apache 2.0."},
            {"role": "user", "content": "Thanks!"}
        ],
        "max_tokens": 32000,
        "temperature": 1,
        "stop": ["\n\nHuman:"],
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "user_abc_account_def_session_123",
        "tools": [
            {"type": "function", "function": {"name": "Read", "description": "Reads a file", "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"], "additionalProperties": false, "$schema": "http://json-schema.org/draft-07/schema#"}}},
            {"type": "function", "function": {"name": "Bash", "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "reasoning_effort": "high"
    });
    assert_eq!(got, expected);
    // Field order too (maps compare without it).
    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    let expected_keys: Vec<&String> = expected.as_object().unwrap().keys().collect();
    assert_eq!(keys, expected_keys);
    // Nothing that belongs to Anthropic reaches another backend.
    let text = String::from_utf8(t.body).unwrap();
    for word in [
        "signature",
        "thinking",
        "cache_control",
        "EuYBCk",
        "EmwKAh",
        "ephemeral",
        "top_k",
        "web_search",
        "service_tier",
        "context_management",
        "metadata",
        "is_error",
    ] {
        assert!(!text.contains(word), "{word} in {text}");
    }
    // The result is a chat request the gateway's own translators read.
    crate::providers::chat::ChatRequest::parse(text.as_bytes()).unwrap();
}

#[test]
fn plain_text_turns_and_no_stream() {
    let t = request_to_chat(
        br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc"}},{"type":"text","text":"b"}]}]}"#,
    )
    .unwrap();
    assert!(!t.stream && t.dropped.is_empty());
    assert_eq!(
        serde_json::from_slice::<Value>(&t.body).unwrap(),
        json!({"model": "m", "messages": [{"role": "user", "content": "a\ndoc\nb"}], "max_tokens": 5})
    );
}

#[test]
fn tool_choice_and_thinking_map_to_openai() {
    let with = |extra: Value| {
        let mut req = json!({
            "model": "m", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}, {"type": "bash_20250124", "name": "bash"}],
        });
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        let t = request_to_chat(req.to_string().as_bytes()).unwrap();
        assert_eq!(t.dropped, ["bash"]);
        serde_json::from_slice::<Value>(&t.body).unwrap()
    };
    for (choice, expected) in [
        (json!({"type": "auto"}), json!("auto")),
        (json!({"type": "any"}), json!("required")),
        (json!({"type": "none"}), json!("none")),
        (
            json!({"type": "tool", "name": "f"}),
            json!({"type": "function", "function": {"name": "f"}}),
        ),
    ] {
        let out = with(json!({ "tool_choice": choice }));
        assert_eq!(out["tool_choice"], expected);
        assert!(out.get("parallel_tool_calls").is_none());
    }
    let out = with(json!({"tool_choice": {"type": "any", "disable_parallel_tool_use": true}}));
    assert_eq!(out["parallel_tool_calls"], false);
    for (thinking, effort) in [
        (
            json!({"type": "enabled", "budget_tokens": 1024}),
            Some("low"),
        ),
        (
            json!({"type": "enabled", "budget_tokens": 4096}),
            Some("medium"),
        ),
        (
            json!({"type": "enabled", "budget_tokens": 16383}),
            Some("medium"),
        ),
        (
            json!({"type": "enabled", "budget_tokens": 16384}),
            Some("high"),
        ),
        (json!({"type": "adaptive"}), Some("medium")),
        (json!({"type": "disabled"}), None),
    ] {
        let out = with(json!({ "thinking": thinking }));
        assert_eq!(out.get("reasoning_effort").and_then(Value::as_str), effort);
    }
    // Only server tools: no tools, and no tool_choice, reach the backend.
    let t = request_to_chat(
        br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"q"}],"tools":[{"type":"web_search_20250305","name":"web_search"}],"tool_choice":{"type":"any"}}"#,
    )
    .unwrap();
    let out: Value = serde_json::from_slice(&t.body).unwrap();
    assert!(out.get("tools").is_none() && out.get("tool_choice").is_none());
    assert_eq!(t.dropped, ["web_search"]);
}

#[test]
fn bad_requests_are_400s_that_say_why() {
    let huge = "x".repeat(100_000);
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        ("{\"model\":".into(), None, "not valid JSON"),
        ("[1]".into(), None, "JSON object"),
        (r#"{"max_tokens":1,"messages":[{"role":"user","content":"a"}]}"#.into(), Some("model"), "`model`"),
        (r#"{"model":"m","messages":[{"role":"user","content":"a"}]}"#.into(), Some("max_tokens"), "`max_tokens`"),
        (r#"{"model":"m","max_tokens":"10","messages":[{"role":"user","content":"a"}]}"#.into(), Some("max_tokens"), "positive integer"),
        (r#"{"model":"m","max_tokens":1}"#.into(), Some("messages"), "`messages`"),
        (r#"{"model":"m","max_tokens":1,"messages":{"role":"user"}}"#.into(), Some("messages"), "must be an array"),
        (r#"{"model":"m","max_tokens":1,"messages":[]}"#.into(), Some("messages"), "at least one"),
        (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":7}]}"#.into(), Some("messages"), "messages[0].content"),
        (format!(r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"{huge}","content":"a"}}]}}"#), Some("messages"), "`user`, `assistant` or `system`"),
        (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","name":"f"}]}]}"#.into(), Some("messages"), "messages[1].content"),
        (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBER"}}]}]}"#.into(), Some("messages"), "`text` source"),
        (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}"#.into(), Some("messages"), "image sources"),
        (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"search_result"}]}]}"#.into(), Some("messages"), "`search_result`"),
        (r#"{"model":"m","max_tokens":1,"temperature":"hot","messages":[{"role":"user","content":"a"}]}"#.into(), Some("temperature"), "number"),
        (r#"{"model":"m","max_tokens":1,"system":[{"type":"image"}],"messages":[{"role":"user","content":"a"}]}"#.into(), Some("system"), "text blocks"),
        (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"a"}],"tools":[{"name":"f"}],"tool_choice":{"type":"tool","name":"web_search"}}"#.into(), Some("tool_choice"), "`web_search`"),
    ];
    for (body, param, says) in cases {
        let e = request_to_chat(body.as_bytes()).unwrap_err();
        let shown = &body[..body.len().min(80)];
        assert_eq!(e.status(), 400, "{shown}");
        assert_eq!(e.param.as_deref(), param, "{shown}");
        assert!(e.message.contains(says), "{shown}: {}", e.message);
        assert!(e.message.len() < 400, "{shown}: message too long");
    }
}

// ---------------------------------------------------------------------------------------
// Whole responses

#[test]
fn a_text_completion_becomes_a_message() {
    let body = fixture("openai_chat_completion.json");
    let openai: Value = serde_json::from_slice(&body).unwrap();
    let out = response_from_chat(&body, MODEL).unwrap();
    let got: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        got,
        json!({
            "id": "msg_D8Z5f52zQqikDBEKQMQoYcWMcWPeU",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": openai["choices"][0]["message"]["content"]}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 16, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 363},
        })
    );
    // Keys in the order of Anthropic's own bodies (anthropic_message_tool_use.json).
    let anthropic: Value =
        serde_json::from_slice(&fixture("anthropic_message_tool_use.json")).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got), keys(&anthropic));
}

#[test]
fn a_tool_call_completion_becomes_tool_use() {
    let out =
        response_from_chat(&fixture("openai_chat_completion_tool_calls.json"), MODEL).unwrap();
    let got: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(got["id"], "msg_BwkyFElDIr1egmFyfQ9z4vPBto7m2");
    assert_eq!(
        got["content"],
        json!([{"type": "tool_use", "id": "call_KjzAbhiZC6nk81tQzL7pwlpc", "name": "read_file", "input": {"path": "README.md"}}])
    );
    assert_eq!(got["stop_reason"], "tool_use");
    assert_eq!(got["usage"]["input_tokens"], 60);
    assert_eq!(got["usage"]["output_tokens"], 15);
}

#[test]
fn reasoning_cache_and_odd_completions() {
    let body = json!({
        "id": "gen-1",
        "choices": [{"index": 0, "finish_reason": "length", "message": {
            "role": "assistant",
            "reasoning_content": "Thinking it over.",
            "content": "Partial",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":"}}]
        }}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 60}}
    });
    let got: Value =
        serde_json::from_slice(&response_from_chat(body.to_string().as_bytes(), MODEL).unwrap())
            .unwrap();
    assert_eq!(got["id"], "msg_gen-1");
    assert_eq!(
        got["content"],
        json!([
            {"type": "thinking", "thinking": "Thinking it over.", "signature": ""},
            {"type": "text", "text": "Partial"},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
        ])
    );
    assert_eq!(got["stop_reason"], "max_tokens");
    assert_eq!(
        got["usage"],
        json!({"input_tokens": 40, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60, "output_tokens": 9})
    );
    // Nothing at all: one empty text block; no usage: zeros.
    let empty =
        br#"{"choices":[{"message":{"role":"assistant","content":null},"finish_reason":"stop"}]}"#;
    let got: Value = serde_json::from_slice(&response_from_chat(empty, MODEL).unwrap()).unwrap();
    assert_eq!(got["content"], json!([{"type": "text", "text": ""}]));
    assert!(got["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(got["usage"]["output_tokens"], 0);
    assert!(response_from_chat(b"{\"choices\":[]}", MODEL).is_err());
    assert!(response_from_chat(b"<html>", MODEL).is_err());
}

#[test]
fn a_real_claude_code_request_translates_with_its_mid_conversation_system_message() {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/agents/claude_code_2.1.197_messages_request.json"
    ))
    .unwrap();
    let original: Value = serde_json::from_slice(&body).unwrap();
    let chat = request_to_chat(&body).unwrap();
    assert!(chat.stream);
    let v: Value = serde_json::from_slice(&chat.body).unwrap();
    let roles: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    // The top-level system prompt first, then the turns in place (the second is a system one).
    assert_eq!(roles, ["system", "user", "system"]);
    assert_eq!(
        v["messages"][2]["content"],
        original["messages"][1]["content"]
    );
    assert_eq!(
        v["tools"].as_array().unwrap().len(),
        original["tools"].as_array().unwrap().len()
    );
    assert_eq!(v["reasoning_effort"], "medium");
    assert_eq!(v["stream_options"]["include_usage"], true);
    let text = String::from_utf8_lossy(&chat.body);
    assert!(!text.contains("cache_control") && !text.contains("context_management"));
}

// ---------------------------------------------------------------------------------------
// What routing needs of a request

#[test]
fn peek_reads_model_and_stream_and_refuses_the_rest() {
    let p = peek(br#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[],"stream":true,"metadata":{"user_id":"u1"}}"#)
        .unwrap();
    assert_eq!((p.model.as_str(), p.stream), ("claude-sonnet-4-5", true));
    assert_eq!(p.session, Some(crate::routing::fnv1a(b"u1")));
    let p = peek(br#"{"model":"m","messages":[]}"#).unwrap();
    assert_eq!((p.model.as_str(), p.stream, p.session), ("m", false, None));
    let e = peek(br#"{"messages":[]}"#).unwrap_err();
    assert_eq!((e.status(), e.param.as_deref()), (400, Some("model")));
    assert_eq!(peek(b"{not json").unwrap_err().status(), 400);
}

#[test]
fn only_anthropic_headers_are_passed() {
    let mut r = RequestHeader::build("POST", b"/v1/messages", None).unwrap();
    r.insert_header("anthropic-version", "2023-06-01").unwrap();
    r.insert_header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .unwrap();
    r.insert_header("x-api-key", "sk-client").unwrap();
    r.insert_header("authorization", "Bearer sk-client")
        .unwrap();
    let passed = passed_headers(&r);
    let names: Vec<&str> = passed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["anthropic-version", "anthropic-beta"]);
}

#[test]
fn structured_output_reaches_chat_and_gemini_upstreams_as_their_own() {
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}},
        "required": ["answer"], "additionalProperties": false});
    for (field, value) in [
        (
            "output_config",
            json!({"format": {"type": "json_schema", "schema": schema}}),
        ),
        // The beta's older field.
        (
            "output_format",
            json!({"type": "json_schema", "schema": schema}),
        ),
    ] {
        let mut req = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "2+2?"}]});
        req[field] = value;
        let t = request_to_chat(req.to_string().as_bytes()).unwrap();
        let chat: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            chat["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}),
            "{field}"
        );
        let parsed: crate::providers::chat::ChatRequest = serde_json::from_slice(&t.body).unwrap();
        let (gemini, _) = crate::providers::gemini::translate_request(
            &parsed,
            crate::providers::chat::Unsupported::Reject,
            false,
        )
        .unwrap();
        let gemini: Value = serde_json::from_slice(&gemini).unwrap();
        assert_eq!(
            gemini["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert_eq!(gemini["generationConfig"]["responseJsonSchema"], schema);
    }
    let effort = request_to_chat(
        br#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"x"}],"output_config":{"effort":"low"}}"#,
    )
    .unwrap();
    let chat: Value = serde_json::from_slice(&effort.body).unwrap();
    assert_eq!(chat["reasoning_effort"], "low");
    assert!(chat.get("response_format").is_none());
    for bad in [
        r#""output_config":7"#,
        r#""output_config":{"format":{"type":"json_schema"}}"#,
        r#""output_format":{"type":"xml"}"#,
    ] {
        let body = format!(
            r#"{{"model":"m","max_tokens":10,"messages":[{{"role":"user","content":"x"}}],{bad}}}"#
        );
        let e = request_to_chat(body.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400, "{bad}");
        assert!(e.param.is_some(), "{bad}");
    }
}

#[test]
fn a_message_thread_cannot_be_translated_and_says_so_as_the_sdks_expect() {
    // What the SDK's tool runner sends on a continuation (captured from anthropic 2.16.0).
    let body = br#"{"model":"claude-opus-5","max_tokens":256,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"Sunny in Paris"}]}],"thread":{"type":"continue","previous_message_id":"msg_1"},"stream":false}"#;
    let Err(e) = request_to_chat(body) else {
        panic!("a thread was translated")
    };
    assert_eq!(e.status(), 400);
    let v: serde_json::Value = serde_json::from_slice(&Front::Messages.error_body(&e)).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(
        v["error"]["details"]["error_code"],
        "thread_unsupported_request"
    );
    // Without a thread (or with `thread: null`), the same request translates.
    let plain = String::from_utf8_lossy(body).replace(
        r#""thread":{"type":"continue","previous_message_id":"msg_1"}"#,
        r#""thread":null"#,
    );
    assert!(request_to_chat(plain.as_bytes()).is_ok());
}
