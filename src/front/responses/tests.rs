use super::*;
use crate::error::Code;
use crate::front::test_support::{self, chat_stream, delta, feed_pieces, finish, fixture};
use serde_json::json;
use std::collections::HashMap;

const MODEL: &str = "gpt-5-codex";

// ---------------------------------------------------------------------------------------
// Streams: helpers

/// Runs a stream through a fresh encoder, fed in the given pieces, then finished.
fn run_with(context: Context, pieces: &[&[u8]]) -> (Vec<u8>, StreamEncoder) {
    feed_pieces(StreamEncoder::new(MODEL, context), pieces)
}

fn run(pieces: &[&[u8]]) -> Vec<u8> {
    run_with(Context::default(), pieces).0
}

/// A chat chunk with the one tool call fragment `call`.
pub(super) fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
    test_support::calls(vec![test_support::call(index, id, name, arguments)])
}

/// One output item of a translated stream, put back together from its events.
#[derive(Debug, Default)]
struct Built {
    added: Value,
    pub(super) id: String,
    /// Per content part (message), or the one summary part (reasoning): (kind, text, done).
    pub(super) parts: Vec<(String, String, bool)>,
    /// Joined function_call_arguments / custom_tool_call_input deltas.
    arguments: String,
    arguments_done: Option<String>,
    item_done: Option<Value>,
}

/// A translated stream, checked and put back together.
#[derive(Debug, Default)]
struct Stream {
    events: Vec<Value>,
    pub(super) items: Vec<Built>,
    /// The last event's type and its response object.
    end: Option<(String, Value)>,
}

/// Parses Responses SSE events and checks their grammar: sequence numbers 0, 1, ..;
/// response.created then response.in_progress first; items added with the next
/// output_index; every delta and `.done` refers to an added item that is not done yet (and
/// content parts likewise); `.done` texts equal the joined deltas; an item's done carries
/// them; completed / incomplete / failed comes once, last, and (but for failed) after every
/// item is done, with the done items as its output.
fn check(out: &[u8]) -> Stream {
    let text = std::str::from_utf8(out).expect("UTF-8");
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "unterminated event"
    );
    let mut s = Stream::default();
    for (n, raw) in text.split("\n\n").filter(|e| !e.is_empty()).enumerate() {
        assert!(s.end.is_none(), "event after the end: {raw}");
        let (name, data) = raw
            .strip_prefix("event: ")
            .and_then(|r| r.split_once("\ndata: "))
            .unwrap_or_else(|| panic!("not `event:` then `data:`: {raw}"));
        assert!(!data.contains('\n'), "one data line: {raw}");
        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
        assert_eq!(v["type"], name, "event name is the payload type: {raw}");
        assert_eq!(v["sequence_number"], n, "sequence number: {raw}");
        match n {
            0 => assert_eq!(name, "response.created"),
            1 => assert_eq!(name, "response.in_progress"),
            _ => {}
        }
        let item_at = |s: &Stream| -> usize {
            let at = v["output_index"].as_u64().expect("output_index") as usize;
            let b = s
                .items
                .get(at)
                .unwrap_or_else(|| panic!("no item {at}: {raw}"));
            assert!(b.item_done.is_none(), "item {at} is done: {raw}");
            if let Some(id) = v.get("item_id") {
                assert_eq!(id, &b.id, "item_id of item {at}: {raw}");
            }
            at
        };
        let open_part = |s: &Stream, at: usize| -> usize {
            let c = v["content_index"]
                .as_u64()
                .or(v["summary_index"].as_u64())
                .expect("content_index") as usize;
            let p = s.items[at]
                .parts
                .get(c)
                .unwrap_or_else(|| panic!("no part: {raw}"));
            assert!(!p.2, "part is done: {raw}");
            c
        };
        match name {
            "response.created" | "response.in_progress" => {
                assert!(n < 2, "{raw}");
                let r = &v["response"];
                assert_eq!(r["object"], "response");
                assert_eq!(r["status"], "in_progress");
                assert_eq!(r["output"], json!([]));
                assert_eq!(r["usage"], Value::Null);
                assert!(r["id"].as_str().unwrap().starts_with("resp_"));
                assert_eq!(r["model"], MODEL);
            }
            "response.output_item.added" => {
                assert_eq!(v["output_index"], s.items.len(), "next output_index: {raw}");
                let item = &v["item"];
                let id = item["id"].as_str().unwrap().to_string();
                assert!(s.items.iter().all(|b| b.id != id), "id reused: {raw}");
                match item["type"].as_str().unwrap() {
                    "message" => {
                        assert_eq!(item["content"], json!([]));
                        assert_eq!(item["status"], "in_progress");
                    }
                    "reasoning" => assert_eq!(item["summary"], json!([])),
                    "function_call" => assert_eq!(item["arguments"], ""),
                    "custom_tool_call" => assert_eq!(item["input"], ""),
                    other => panic!("item type {other}"),
                }
                s.items.push(Built {
                    added: item.clone(),
                    id,
                    ..Built::default()
                });
            }
            "response.content_part.added" | "response.reasoning_summary_part.added" => {
                let at = item_at(&s);
                let index = v["content_index"].as_u64().or(v["summary_index"].as_u64());
                assert_eq!(index, Some(s.items[at].parts.len() as u64), "{raw}");
                let kind = v["part"]["type"].as_str().unwrap().to_string();
                let empty = v["part"]["text"]
                    .as_str()
                    .or(v["part"]["refusal"].as_str())
                    .unwrap();
                assert_eq!(empty, "", "{raw}");
                s.items[at].parts.push((kind, String::new(), false));
            }
            "response.output_text.delta"
            | "response.refusal.delta"
            | "response.reasoning_summary_text.delta" => {
                let at = item_at(&s);
                let c = open_part(&s, at);
                let want = match name {
                    "response.output_text.delta" => "output_text",
                    "response.refusal.delta" => "refusal",
                    _ => "summary_text",
                };
                assert_eq!(s.items[at].parts[c].0, want, "{raw}");
                if want == "output_text" {
                    assert_eq!(v["logprobs"], json!([]));
                }
                let d = v["delta"].as_str().unwrap();
                assert!(!d.is_empty(), "empty delta: {raw}");
                s.items[at].parts[c].1.push_str(d);
            }
            "response.output_text.done"
            | "response.refusal.done"
            | "response.reasoning_summary_text.done" => {
                let at = item_at(&s);
                let c = open_part(&s, at);
                let full = v["text"].as_str().or(v["refusal"].as_str()).unwrap();
                assert_eq!(full, s.items[at].parts[c].1, "done text = deltas: {raw}");
            }
            "response.content_part.done" | "response.reasoning_summary_part.done" => {
                let at = item_at(&s);
                let c = open_part(&s, at);
                let p = &v["part"];
                assert_eq!(p["type"], s.items[at].parts[c].0.as_str());
                let full = p["text"].as_str().or(p["refusal"].as_str()).unwrap();
                assert_eq!(full, s.items[at].parts[c].1, "part text = deltas: {raw}");
                s.items[at].parts[c].2 = true;
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                let at = item_at(&s);
                let kind = if name.contains("function") {
                    "function_call"
                } else {
                    "custom_tool_call"
                };
                assert_eq!(s.items[at].added["type"], kind, "{raw}");
                assert!(s.items[at].arguments_done.is_none());
                s.items[at].arguments.push_str(v["delta"].as_str().unwrap());
            }
            "response.function_call_arguments.done" => {
                let at = item_at(&s);
                assert_eq!(v["arguments"], s.items[at].arguments.as_str(), "{raw}");
                assert_eq!(v["name"], s.items[at].added["name"], "{raw}");
                s.items[at].arguments_done = Some(s.items[at].arguments.clone());
            }
            "response.custom_tool_call_input.done" => {
                let at = item_at(&s);
                assert_eq!(v["input"], s.items[at].arguments.as_str(), "{raw}");
                s.items[at].arguments_done = Some(s.items[at].arguments.clone());
            }
            "response.output_item.done" => {
                let at = item_at(&s);
                let item = &v["item"];
                let b = &s.items[at];
                assert_eq!(item["id"], b.id.as_str());
                assert_eq!(item["type"], b.added["type"]);
                assert!(b.parts.iter().all(|p| p.2), "a part is open: {raw}");
                match item["type"].as_str().unwrap() {
                    "message" => {
                        assert_ne!(item["status"], "in_progress");
                        let parts = item["content"].as_array().unwrap();
                        assert_eq!(parts.len(), b.parts.len());
                        for (p, (kind, text, _)) in parts.iter().zip(&b.parts) {
                            assert_eq!(p["type"], kind.as_str());
                            assert_eq!(p["text"].as_str().or(p["refusal"].as_str()), Some(&**text));
                        }
                    }
                    "reasoning" => {
                        let texts: Vec<_> = b
                            .parts
                            .iter()
                            .map(|p| json!({"type": "summary_text", "text": p.1}))
                            .collect();
                        assert_eq!(item["summary"], json!(texts));
                    }
                    "function_call" => {
                        assert_eq!(
                            Some(item["arguments"].as_str().unwrap()),
                            b.arguments_done.as_deref()
                        );
                        assert_eq!(item["call_id"], b.added["call_id"]);
                        assert_ne!(item["status"], "in_progress");
                    }
                    "custom_tool_call" => {
                        assert_eq!(
                            Some(item["input"].as_str().unwrap()),
                            b.arguments_done.as_deref()
                        );
                    }
                    _ => unreachable!(),
                }
                s.items[at].item_done = Some(item.clone());
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let r = &v["response"];
                let status = name.strip_prefix("response.").unwrap();
                assert_eq!(r["status"], status);
                assert_eq!(r["object"], "response");
                assert_eq!(r["id"], s.events[0]["response"]["id"], "same response id");
                if status == "failed" {
                    assert!(r["error"]["code"].is_string() && r["error"]["message"].is_string());
                } else {
                    assert_eq!(r["error"], Value::Null);
                    let done: Vec<_> = s
                        .items
                        .iter()
                        .map(|b| b.item_done.clone().expect("every item done"))
                        .collect();
                    assert_eq!(r["output"], json!(done), "output = the done items");
                }
                assert_eq!(
                    r["incomplete_details"].is_null(),
                    status != "incomplete",
                    "{raw}"
                );
                s.end = Some((name.to_string(), r.clone()));
            }
            other => panic!("unexpected event {other}"),
        }
        s.events.push(v);
    }
    s
}

/// The joined content, reasoning and per-index tool call arguments and names of a chat
/// chunk stream, and its usage.
#[derive(Debug, Default)]
struct ChatParts {
    content: String,
    reasoning: String,
    calls: Vec<(u64, String, String, String)>,
    pub(super) usage: Value,
    pub(super) finish: Option<String>,
}

fn chat_parts(sse: &[u8]) -> ChatParts {
    let mut p = ChatParts::default();
    for event in std::str::from_utf8(sse).unwrap().split("\n\n") {
        let Some(data) = event.trim().strip_prefix("data: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if !v["usage"].is_null() {
            p.usage = v["usage"].clone();
        }
        let Some(c) = v["choices"].get(0) else {
            continue;
        };
        let d = &c["delta"];
        p.content.push_str(d["content"].as_str().unwrap_or(""));
        p.reasoning
            .push_str(d["reasoning_content"].as_str().unwrap_or(""));
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let index = tc["index"].as_u64().unwrap();
            if !p.calls.iter().any(|c| c.0 == index) {
                p.calls
                    .push((index, String::new(), String::new(), String::new()));
            }
            let entry = p.calls.iter_mut().find(|c| c.0 == index).unwrap();
            if let Some(id) = tc["id"].as_str() {
                entry.1 = id.to_string();
            }
            if let Some(name) = tc["function"]["name"].as_str() {
                entry.2 = name.to_string();
            }
            entry
                .3
                .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = c["finish_reason"].as_str() {
            p.finish = Some(f.to_string());
        }
    }
    p
}

/// The usage object a Responses answer must carry for a chat usage object.
fn responses_usage(u: &Value) -> Value {
    let input = u["prompt_tokens"].as_u64().unwrap();
    let output = u["completion_tokens"].as_u64().unwrap();
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0),
            "cache_write_tokens": 0,
        },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap_or(0),
        },
        "total_tokens": input + output,
    })
}

/// The events with their random ids taken out, for comparing runs.
fn without_ids(events: &[Value]) -> Vec<Value> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("id");
                m.remove("item_id");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut events = events.to_vec();
    events.iter_mut().for_each(strip);
    events
}

// ---------------------------------------------------------------------------------------
// Streams: captures

#[test]
fn text_stream_capture_becomes_a_completed_message() {
    let sse = fixture("openai_stream_usage.sse");
    let chat = chat_parts(&sse);
    let (out, e) = run_with(Context::default(), &[&sse]);
    let s = check(&out);
    let (end, r) = s.end.expect("an end");
    assert_eq!(end, "response.completed");
    assert!(e.done());
    assert_eq!(s.items.len(), 1);
    assert_eq!(r["output"][0]["type"], "message");
    assert_eq!(r["output"][0]["status"], "completed");
    assert_eq!(r["output"][0]["content"][0]["text"], chat.content.as_str());
    assert!(!chat.content.is_empty());
    assert_eq!(r["usage"], responses_usage(&chat.usage));
    assert_eq!(r["created_at"], 1753357673);
    assert_eq!(r["incomplete_details"], Value::Null);
    let u = e.usage().expect("usage");
    assert_eq!(
        u.input_tokens,
        chat.usage["prompt_tokens"].as_u64().unwrap()
    );
    // Every delta event carries its piece; the counts match the chunks with content.
    let deltas = s
        .events
        .iter()
        .filter(|v| v["type"] == "response.output_text.delta")
        .count();
    let pieces = std::str::from_utf8(&sse)
        .unwrap()
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    assert_eq!(deltas, pieces);
}

#[test]
fn tool_call_capture_becomes_a_function_call() {
    let sse = fixture("openai_stream_tool_calls.sse");
    let chat = chat_parts(&sse);
    let s = check(&run(&[&sse]));
    let (end, r) = s.end.expect("an end");
    assert_eq!(end, "response.completed");
    let calls: Vec<_> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    assert_eq!(calls.len(), chat.calls.len());
    let (_, id, name, arguments) = &chat.calls[0];
    assert_eq!(calls[0]["call_id"], id.as_str());
    assert_eq!(calls[0]["name"], name.as_str());
    assert_eq!(calls[0]["arguments"], arguments.as_str());
    assert_eq!(calls[0]["status"], "completed");
    assert!(calls[0]["id"].as_str().unwrap().starts_with("fc_"));
    assert!(calls[0].get("namespace").is_none());
    if !chat.usage.is_null() {
        assert_eq!(r["usage"], responses_usage(&chat.usage));
    }
}

#[test]
fn every_split_of_a_capture_gives_the_same_events() {
    let sse = fixture("openai_stream_tool_calls.sse");
    let whole = without_ids(&check(&run(&[&sse])).events);
    for k in 1..sse.len() {
        let s = check(&run(&[&sse[..k], &sse[k..]]));
        assert_eq!(without_ids(&s.events), whole, "split at {k}");
    }
    // Byte by byte.
    let bytes: Vec<&[u8]> = sse.chunks(1).collect();
    assert_eq!(without_ids(&check(&run(&bytes)).events), whole);
}

#[test]
fn parallel_calls_get_their_own_items_and_arguments() {
    let sse = fixture("openai_stream_tool_calls_parallel.sse");
    let chat = chat_parts(&sse);
    assert!(chat.calls.len() >= 2, "the capture has parallel calls");
    let s = check(&run(&[&sse]));
    let (end, r) = s.end.expect("an end");
    assert_eq!(end, "response.completed");
    let output = r["output"].as_array().unwrap();
    let calls: Vec<_> = s
        .items
        .iter()
        .enumerate()
        .filter(|(_, b)| b.added["type"] == "function_call")
        .collect();
    assert_eq!(calls.len(), chat.calls.len());
    let mut indexes: Vec<_> = calls.iter().map(|(at, _)| *at).collect();
    indexes.dedup();
    assert_eq!(indexes.len(), calls.len(), "distinct output_index values");
    for ((at, b), (_, id, name, arguments)) in calls.iter().zip(&chat.calls) {
        assert_eq!(b.arguments, *arguments, "streamed arguments of {name}");
        assert_eq!(output[*at]["arguments"], arguments.as_str());
        assert_eq!(output[*at]["call_id"], id.as_str());
        assert_eq!(output[*at]["name"], name.as_str());
        serde_json::from_str::<Value>(arguments).expect("complete JSON arguments");
    }
}

#[test]
fn interleaved_calls_stream_live_each_in_its_item() {
    let sse = chat_stream(
        &[
            call(0, Some("call_a"), Some("read"), ""),
            call(1, Some("call_b"), Some("grep"), "{\"q\":"),
            call(0, None, None, "{\"path\":"),
            call(1, None, None, "\"x\"}"),
            call(0, None, None, "\"a.rs\"}"),
            finish("tool_calls"),
        ],
        true,
    );
    let s = check(&run(&[&sse]));
    let (end, r) = s.end.expect("an end");
    assert_eq!(end, "response.completed");
    assert_eq!(r["output"][0]["arguments"], "{\"path\":\"a.rs\"}");
    assert_eq!(r["output"][1]["arguments"], "{\"q\":\"x\"}");
    // The second call's fragment went out before the first call's second fragment.
    let deltas: Vec<_> = s
        .events
        .iter()
        .filter(|v| v["type"] == "response.function_call_arguments.delta")
        .map(|v| v["output_index"].as_u64().unwrap())
        .collect();
    assert_eq!(deltas, [1, 0, 1, 0]);
}

#[test]
fn length_capture_ends_incomplete() {
    let sse = fixture("openai_stream_finish_length.sse");
    let chat = chat_parts(&sse);
    assert_eq!(chat.finish.as_deref(), Some("length"));
    let s = check(&run(&[&sse]));
    let (end, r) = s.end.expect("an end");
    assert_eq!(end, "response.incomplete");
    assert_eq!(r["status"], "incomplete");
    assert_eq!(
        r["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(r["output"][0]["status"], "incomplete");
    assert_eq!(r["output"][0]["content"][0]["text"], chat.content.as_str());
    assert_eq!(r["usage"], responses_usage(&chat.usage));
}

#[test]
fn error_codes_map_to_the_responses_ones() {
    for (status, error, code) in [
        (
            429,
            json!({"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}),
            "rate_limit_exceeded",
        ),
        (
            429,
            json!({"message": "slow down", "type": "rate_limit_error"}),
            "rate_limit_exceeded",
        ),
        (
            400,
            json!({"message": "bad", "type": "invalid_request_error", "code": "context_length_exceeded"}),
            "invalid_prompt",
        ),
        (
            500,
            json!({"message": "boom", "type": "server_error", "code": "upstream_error"}),
            "server_error",
        ),
        (
            400,
            json!({"message": "img", "type": "invalid_request_error", "code": "invalid_image_url"}),
            "invalid_image_url",
        ),
    ] {
        let body = serde_json::to_vec(&json!({ "error": error })).unwrap();
        let e = crate::providers::openai::map_error("p", status, &body, None);
        let mut enc = StreamEncoder::new(MODEL, Context::default());
        let mut out = enc
            .feed(Bytes::from(chat_stream(
                &[delta(json!({"content": "Hi"}))],
                false,
            )))
            .map(|b| b.to_vec())
            .unwrap_or_default();
        out.extend_from_slice(&enc.failed_event(&e));
        let s = check(&out);
        let (end, r) = s.end.expect("an end");
        assert_eq!(end, "response.failed");
        assert_eq!(r["error"]["code"], code, "{error}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains(error["message"].as_str().unwrap()),
            "{r}"
        );
        assert_eq!(r["output"][0]["content"][0]["text"], "Hi");
    }
}

#[test]
fn a_cut_stream_is_left_for_failed_event() {
    // [DONE] without a finish_reason, and no [DONE] at all.
    for done in [true, false] {
        let sse = chat_stream(&[delta(json!({"content": "Hel"}))], done);
        let (out, mut e) = run_with(Context::default(), &[&sse]);
        let s = check(&out);
        assert!(s.end.is_none(), "no end for a cut stream");
        assert!(!e.done());
        let mut all = out.clone();
        let limited = GatewayError::new(ErrorKind::RateLimited, "cut off");
        all.extend_from_slice(&e.failed_event(&limited));
        assert!(e.done());
        let s = check(&all);
        let (end, r) = s.end.expect("an end");
        assert_eq!(end, "response.failed");
        assert_eq!(
            r["error"],
            json!({"code": "rate_limit_exceeded", "message": "cut off"})
        );
        assert_eq!(r["output"][0]["content"][0]["text"], "Hel");
    }
    // A code outside the protocol's list becomes server_error; a stream that never started
    // still gets created / in_progress first.
    let mut e = StreamEncoder::new(MODEL, Context::default());
    let timeout = GatewayError::new(ErrorKind::GatewayTimeout, "The upstream timed out.")
        .code(crate::error::Code::UpstreamTimeout);
    let s = check(&e.failed_event(&timeout));
    assert_eq!(s.events.len(), 3);
    assert_eq!(s.end.unwrap().1["error"]["code"], "server_error");
}

#[test]
fn a_finished_stream_without_done_is_completed_at_finish() {
    let sse = chat_stream(&[delta(json!({"content": "Hi"})), finish("stop")], false);
    let mut e = StreamEncoder::new(MODEL, Context::default());
    let first = e.feed(Bytes::from(sse)).unwrap();
    assert!(!e.done());
    let s = check(&first);
    assert!(s.end.is_none());
    // The item was closed at finish_reason already.
    assert!(s.items[0].item_done.is_some());
    let mut all = first.to_vec();
    all.extend_from_slice(&e.finish().expect("the end"));
    assert!(e.done());
    assert_eq!(check(&all).end.unwrap().0, "response.completed");
}

#[test]
fn reasoning_comes_as_a_summary_before_the_message() {
    let sse = chat_stream(
        &[
            delta(json!({"role": "assistant", "content": ""})),
            delta(json!({"reasoning_content": "Let me \"think\"."})),
            delta(json!({"reasoning_content": " Done."})),
            delta(json!({"content": "The answer\nis 4."})),
            finish("stop"),
            json!({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
                "prompt_tokens_details": {"cached_tokens": 64}, "completion_tokens_details": {"reasoning_tokens": 30}}}),
        ],
        true,
    );
    let s = check(&run(&[&sse]));
    let (end, r) = s.end.expect("an end");
    assert_eq!(end, "response.completed");
    assert_eq!(r["output"][0]["type"], "reasoning");
    assert_eq!(
        r["output"][0]["summary"],
        json!([{"type": "summary_text", "text": "Let me \"think\". Done."}])
    );
    assert!(r["output"][0]["id"].as_str().unwrap().starts_with("rs_"));
    assert!(r["output"][0].get("encrypted_content").is_none());
    assert_eq!(r["output"][1]["content"][0]["text"], "The answer\nis 4.");
    // The reasoning item was done before the message was added.
    let order: Vec<_> = s
        .events
        .iter()
        .filter(|v| {
            v["type"]
                .as_str()
                .unwrap()
                .starts_with("response.output_item")
        })
        .map(|v| {
            (
                v["type"].as_str().unwrap().to_string(),
                v["output_index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("response.output_item.added".to_string(), 0),
            ("response.output_item.done".to_string(), 0),
            ("response.output_item.added".to_string(), 1),
            ("response.output_item.done".to_string(), 1),
        ]
    );
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
               "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 150})
    );
}

#[test]
fn a_refusal_is_a_refusal_part() {
    let sse = chat_stream(
        &[
            delta(json!({"refusal": "I can't"})),
            delta(json!({"refusal": " help."})),
            finish("stop"),
        ],
        true,
    );
    let s = check(&run(&[&sse]));
    let r = s.end.unwrap().1;
    assert_eq!(
        r["output"][0]["content"],
        json!([{"type": "refusal", "refusal": "I can't help."}])
    );
}

/// The context of a request declaring a custom tool and a namespace.
fn tools_context() -> Context {
    let body = json!({
        "model": MODEL,
        "input": "hi",
        "tools": [
            {"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
            {"type": "namespace", "name": "mcp_github", "description": "GitHub", "tools": [
                {"type": "function", "name": "get_issue", "parameters": {"type": "object", "properties": {}}}
            ]},
        ],
    });
    request_to_chat(body.to_string().as_bytes())
        .unwrap()
        .context
}

#[test]
fn custom_tool_calls_stream_their_input_whole() {
    let patch = "*** Begin Patch\n*** Add File: a.txt\n+\"hi\"\n*** End Patch";
    let arguments = json!({ "input": patch }).to_string();
    let (a, b) = arguments.split_at(arguments.len() / 2);
    let sse = chat_stream(
        &[
            call(0, Some("call_p"), Some("apply_patch"), a),
            call(0, None, None, b),
            call(
                1,
                Some("call_g"),
                Some("mcp_github__get_issue"),
                "{\"n\":1}",
            ),
            finish("tool_calls"),
        ],
        true,
    );
    let s = check(&run_with(tools_context(), &[&sse]).0);
    let (end, r) = s.end.expect("an end");
    assert_eq!(end, "response.completed");
    let custom = &r["output"][0];
    assert_eq!(custom["type"], "custom_tool_call");
    assert_eq!(custom["name"], "apply_patch");
    assert_eq!(custom["call_id"], "call_p");
    assert_eq!(custom["input"], patch);
    assert!(custom["id"].as_str().unwrap().starts_with("ctc_"));
    assert_eq!(
        s.items[0].arguments, patch,
        "one input delta with the whole input"
    );
    let function = &r["output"][1];
    assert_eq!(function["type"], "function_call");
    assert_eq!(function["name"], "get_issue");
    assert_eq!(function["namespace"], "mcp_github");
    assert_eq!(function["arguments"], "{\"n\":1}");
    // No function_call_arguments events for the custom call.
    assert!(s
        .events
        .iter()
        .all(|v| v["type"] != "response.function_call_arguments.delta" || v["output_index"] == 1));
}

#[test]
fn arguments_before_the_name_are_held_for_the_item() {
    let sse = chat_stream(
        &[
            call(0, Some("call_x"), None, "{\"a\":"),
            call(0, None, Some("f"), "1}"),
            finish("tool_calls"),
        ],
        true,
    );
    let s = check(&run(&[&sse]));
    let r = s.end.unwrap().1;
    assert_eq!(r["output"][0]["name"], "f");
    assert_eq!(r["output"][0]["arguments"], "{\"a\":1}");
    assert_eq!(s.items[0].arguments, "{\"a\":1}");
}

#[test]
fn the_response_echoes_the_request() {
    let body = json!({
        "model": MODEL, "instructions": "Be brief.", "input": "hi", "temperature": 0.5,
        "max_output_tokens": 100, "parallel_tool_calls": false, "tool_choice": "required",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": true}, {"type": "web_search"}],
        "reasoning": {"effort": "low"}, "metadata": {"k": "v"},
    });
    let context = request_to_chat(body.to_string().as_bytes())
        .unwrap()
        .context;
    let sse = chat_stream(&[delta(json!({"content": "ok"})), finish("stop")], true);
    let s = check(&run_with(context, &[&sse]).0);
    for r in [&s.events[0]["response"], &s.end.as_ref().unwrap().1] {
        assert_eq!(r["instructions"], "Be brief.");
        assert_eq!(r["temperature"], 0.5);
        assert_eq!(r["max_output_tokens"], 100);
        assert_eq!(r["parallel_tool_calls"], false);
        assert_eq!(r["tool_choice"], "required");
        assert_eq!(r["tools"], json!([body["tools"][0]]));
        assert_eq!(r["reasoning"], json!({"effort": "low"}));
        assert_eq!(r["metadata"], json!({"k": "v"}));
        assert_eq!(r["store"], false);
    }
}

// ---------------------------------------------------------------------------------------
// Requests

fn chat_of(body: &Value) -> (Value, ToChat) {
    let t = request_to_chat(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    (serde_json::from_slice(&t.body).unwrap(), t)
}

fn refused(body: &[u8]) -> GatewayError {
    let e = request_to_chat(body).expect_err("refused");
    assert_eq!(e.status(), 400, "{e}");
    assert!(!e.message.is_empty());
    e
}

#[test]
fn a_codex_like_request_becomes_the_chat_request() {
    let parameters = json!({"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}, "required": ["command"], "additionalProperties": false});
    let body = json!({
        "model": "gpt-5-codex",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions>sandboxed</permissions>"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is in this screenshot?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Look at files."}], "encrypted_content": "gAAAAABsecret"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": "{\"command\":[\"ls\"]}"},
            {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch\n*** End Patch"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.rs\nb.rs"},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "Done!"}]},
            {"type": "function_call", "call_id": "call_3", "name": "get_issue", "namespace": "mcp_github", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_3", "output": [{"type": "input_text", "text": "Issue 1"}, {"type": "input_image", "image_url": "https://x/y.png"}]},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [
            {"type": "function", "name": "shell", "description": "Runs a command.", "strict": false, "parameters": parameters},
            {"type": "custom", "name": "apply_patch", "description": "Edits files.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}},
            {"type": "namespace", "name": "mcp_github", "description": "GitHub tools", "tools": [
                {"type": "function", "name": "get_issue", "description": "Gets an issue.", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}},
                {"type": "function", "name": "list_prs", "parameters": {"type": "object", "properties": {}}}
            ]},
            {"type": "web_search"}
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": true,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": false,
        "stream": true,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "session-123",
        "text": {"verbosity": "low"}
    });
    let (chat, t) = chat_of(&body);
    let expected = json!({
        "model": "gpt-5-codex",
        "messages": [
            {"role": "system", "content": "You are Codex."},
            {"role": "developer", "content": "<permissions>sandboxed</permissions>"},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this screenshot?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}}
            ]},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "shell", "arguments": "{\"command\":[\"ls\"]}"}},
                {"id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\\n*** End Patch\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a.rs\nb.rs"},
            {"role": "tool", "tool_call_id": "call_2", "content": "Done!"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_3", "type": "function", "function": {"name": "mcp_github__get_issue", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_3", "content": "Issue 1\n[image]"},
            {"role": "user", "content": "Thanks"}
        ],
        "stream": true,
        "stream_options": {"include_usage": true},
        "prompt_cache_key": "session-123",
        "tools": [
            {"type": "function", "function": {"name": "shell", "description": "Runs a command.", "parameters": parameters, "strict": false}},
            {"type": "function", "function": {"name": "apply_patch", "description": "Edits files.\n`input` must follow this lark grammar:\nstart: begin_patch",
                "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}}},
            {"type": "function", "function": {"name": "mcp_github__get_issue", "description": "Gets an issue.", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}},
            {"type": "function", "function": {"name": "mcp_github__list_prs", "parameters": {"type": "object", "properties": {}}}}
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": true,
        "reasoning_effort": "medium"
    });
    assert_eq!(chat, expected);
    assert!(!String::from_utf8_lossy(&t.body).contains("gAAAAABsecret"));
    assert!(!String::from_utf8_lossy(&t.body).contains("Look at files."));
    assert_eq!(t.dropped, ["web_search"]);
    assert!(t.stream);
    assert_eq!(t.model, "gpt-5-codex");
    let c = &t.context;
    assert!(c
        .lookup("apply_patch")
        .is_some_and(|r| r.custom && r.namespace.is_none()));
    let ns = c.lookup("mcp_github__list_prs").expect("namespaced");
    assert_eq!(
        (ns.name.as_str(), ns.namespace.as_deref(), ns.custom),
        ("list_prs", Some("mcp_github"), false)
    );
    assert!(
        c.lookup("shell").is_none(),
        "plain functions keep their names"
    );
}

#[test]
fn settings_map_to_chat_ones() {
    let (chat, t) = chat_of(&json!({
        "model": "m", "input": "Hello", "max_output_tokens": 256, "temperature": 0.2, "top_p": 0.9,
        "reasoning": {"effort": "minimal"}, "safety_identifier": "user-1",
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": true}},
        "store": false, "background": false, "metadata": {"a": "b"}, "truncation": "auto", "service_tier": "auto",
        "tools": [{"type": "file_search", "vector_store_ids": []}], "tool_choice": "required", "parallel_tool_calls": false,
    }));
    assert_eq!(
        chat,
        json!({
            "model": "m",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 256, "temperature": 0.2, "top_p": 0.9, "user": "user-1",
            "reasoning_effort": "low",
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}},
        })
    );
    assert!(!t.stream);
    assert_eq!(t.dropped, ["file_search"]);

    let (chat, _) = chat_of(
        &json!({"model": "m", "input": "x", "reasoning": {"effort": "none"}, "text": {"format": {"type": "json_object"}}}),
    );
    assert!(chat.get("reasoning_effort").is_none());
    assert_eq!(chat["response_format"], json!({"type": "json_object"}));
    let (chat, _) =
        chat_of(&json!({"model": "m", "input": "x", "text": {"format": {"type": "text"}}}));
    assert!(chat.get("response_format").is_none());
}

#[test]
fn tool_choices_map_to_chat_ones() {
    let tools = json!([{"type": "function", "name": "f"}, {"type": "custom", "name": "c"}]);
    for (choice, want) in [
        (json!("none"), json!("none")),
        (
            json!({"type": "function", "name": "f"}),
            json!({"type": "function", "function": {"name": "f"}}),
        ),
        (
            json!({"type": "custom", "name": "c"}),
            json!({"type": "function", "function": {"name": "c"}}),
        ),
        (
            json!({"type": "allowed_tools", "mode": "auto", "tools": []}),
            json!("auto"),
        ),
        (json!({"type": "web_search_preview"}), json!("auto")),
    ] {
        let (chat, _) =
            chat_of(&json!({"model": "m", "input": "x", "tools": tools, "tool_choice": choice}));
        assert_eq!(chat["tool_choice"], want, "{choice}");
    }
}

#[test]
fn consecutive_calls_merge_and_text_after_calls_does_not() {
    let (chat, _) = chat_of(&json!({"model": "m", "input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "reasoning", "summary": [], "encrypted_content": "x"},
        {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "1"},
        {"type": "function_call_output", "call_id": "b", "output": "2"},
        {"role": "assistant", "content": "done"},
    ]}));
    let m = chat["messages"].as_array().unwrap();
    assert_eq!(m.len(), 5);
    assert_eq!(m[1]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(m[1]["content"], Value::Null);
    assert_eq!(m[4], json!({"role": "assistant", "content": "done"}));
}

#[test]
fn stateful_and_unsupported_requests_are_refused() {
    let e = refused(br#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#);
    assert_eq!(e.param.as_deref(), Some("previous_response_id"));
    assert!(
        e.message.contains("previous_response_id is not supported"),
        "{}",
        e.message
    );
    assert!(e.message.contains("store: false"));
    let e = refused(br#"{"model":"m","input":"x","conversation":"conv_1"}"#);
    assert_eq!(e.param.as_deref(), Some("conversation"));
    let e = refused(br#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}"#);
    assert!(e.message.contains("item_reference"), "{}", e.message);
    assert_eq!(e.param.as_deref(), Some("input"));
    let e = refused(br#"{"model":"m","input":[{"id":"msg_1"}]}"#);
    assert!(e.message.contains("item_reference"), "{}", e.message);
    let e = refused(br#"{"model":"m","input":"x","background":true}"#);
    assert_eq!(e.param.as_deref(), Some("background"));
    let e = refused(br#"{"model":"m","input":[{"type":"web_search_call","id":"ws_1"}]}"#);
    assert!(e.message.contains("`web_search_call`"), "{}", e.message);
    let e = refused(br#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"file_1"}]}]}"#);
    assert!(e.message.contains("file_id"), "{}", e.message);
    let e = refused(br#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_data":"..."}]}]}"#);
    assert!(e.message.contains("input_file"), "{}", e.message);
}

#[test]
fn malformed_requests_are_refused_naming_the_field() {
    let e = refused(b"{not json");
    assert_eq!(e.code, Some(Code::InvalidJson));
    let e = refused(br#"{"input":"x"}"#);
    assert_eq!(e.param.as_deref(), Some("model"));
    assert!(e.message.contains("model"));
    let e = refused(br#"{"model":"m"}"#);
    assert_eq!(e.param.as_deref(), Some("input"));
    let e = refused(br#"{"model":"m","input":[]}"#);
    assert_eq!(e.param.as_deref(), Some("input"));
    let e = refused(br#"{"model":"m","input":42}"#);
    assert_eq!(e.param.as_deref(), Some("input"));
    let e = refused(br#"{"model":"m","input":"x","max_output_tokens":-1}"#);
    assert_eq!(e.param.as_deref(), Some("max_output_tokens"));
    let e = refused(br#"{"model":"m","input":"x","temperature":"hot"}"#);
    assert_eq!(e.param.as_deref(), Some("temperature"));
    let e = refused(br#"{"model":"m","input":"x","tools":{}}"#);
    assert_eq!(e.param.as_deref(), Some("tools"));
    let e = refused(br#"{"model":"m","input":[{"role":"tool","content":"x"}]}"#);
    assert!(e.message.contains("role"), "{}", e.message);
    let e = refused(br#"{"model":"m","input":[{"type":"function_call","name":"f"}]}"#);
    assert!(e.message.contains("call_id"), "{}", e.message);
    // Instructions alone are enough to answer.
    let (chat, _) = chat_of(&json!({"model": "m", "instructions": "Say hi."}));
    assert_eq!(
        chat["messages"],
        json!([{"role": "system", "content": "Say hi."}])
    );
}

// ---------------------------------------------------------------------------------------
// Whole responses

fn answer(body: &[u8], context: &Context) -> Value {
    serde_json::from_slice(&response_from_chat(body, MODEL, context).unwrap()).unwrap()
}

#[test]
fn a_chat_completion_becomes_a_response() {
    let body = fixture("openai_chat_completion.json");
    let chat: Value = serde_json::from_slice(&body).unwrap();
    let r = answer(&body, &Context::default());
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(r["object"], "response");
    assert_eq!(r["created_at"], chat["created"]);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], MODEL);
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["incomplete_details"], Value::Null);
    let output = r["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    let m = &output[0];
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        m["content"],
        json!([{"type": "output_text", "annotations": [], "logprobs": [], "text": chat["choices"][0]["message"]["content"]}])
    );
    assert_eq!(
        (&m["type"], &m["role"], &m["status"]),
        (&json!("message"), &json!("assistant"), &json!("completed"))
    );
    assert_eq!(r["usage"], responses_usage(&chat["usage"]));
    assert_eq!(r["tool_choice"], "auto");
    assert_eq!(r["tools"], json!([]));
    assert_eq!(r["parallel_tool_calls"], true);
}

#[test]
fn chat_tool_calls_become_function_calls() {
    let body = fixture("openai_chat_completion_tool_calls.json");
    let chat: Value = serde_json::from_slice(&body).unwrap();
    let r = answer(&body, &Context::default());
    let c = &chat["choices"][0]["message"]["tool_calls"][0];
    let output = r["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "no message for null content");
    let f = &output[0];
    assert!(f["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(f["type"], "function_call");
    assert_eq!(f["call_id"], c["id"]);
    assert_eq!(f["name"], c["function"]["name"]);
    assert_eq!(f["arguments"], c["function"]["arguments"]);
    assert_eq!(f["status"], "completed");
    assert_eq!(r["status"], "completed");
}

#[test]
fn custom_and_namespaced_calls_come_back_as_declared() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "x",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Patching.",
            "reasoning_content": "Need a patch.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\\n*** End Patch\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": "not json"}},
                {"id": "call_3", "type": "function", "function": {"name": "mcp_github__get_issue", "arguments": "{}"}}
            ]}}],
    });
    let r = answer(body.to_string().as_bytes(), &tools_context());
    let o = r["output"].as_array().unwrap();
    assert_eq!(o.len(), 5);
    assert_eq!(o[0]["type"], "reasoning");
    assert_eq!(
        o[0]["summary"],
        json!([{"type": "summary_text", "text": "Need a patch."}])
    );
    assert_eq!(o[1]["content"][0]["text"], "Patching.");
    assert_eq!(o[2]["type"], "custom_tool_call");
    assert_eq!(o[2]["input"], "*** Begin Patch\n*** End Patch");
    assert_eq!(o[2]["call_id"], "call_1");
    assert_eq!(o[2]["name"], "apply_patch");
    assert_eq!(
        o[3]["input"], "not json",
        "unparsable arguments come as they are"
    );
    assert_eq!(o[4]["type"], "function_call");
    assert_eq!(o[4]["name"], "get_issue");
    assert_eq!(o[4]["namespace"], "mcp_github");
    assert_eq!(r["usage"], Value::Null);
}

#[test]
fn length_and_content_filter_answers_are_incomplete() {
    for (reason, detail) in [
        ("length", "max_output_tokens"),
        ("content_filter", "content_filter"),
    ] {
        let body = json!({"id": "c", "created": 2, "choices": [{"index": 0, "finish_reason": reason, "message": {"role": "assistant", "content": "Trunc"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}});
        let r = answer(body.to_string().as_bytes(), &Context::default());
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"], json!({ "reason": detail }));
        assert_eq!(r["output"][0]["status"], "incomplete");
        assert_eq!(r["usage"]["total_tokens"], 12);
    }
    assert!(response_from_chat(b"{}", MODEL, &Context::default()).is_err());
    assert!(response_from_chat(b"nope", MODEL, &Context::default()).is_err());
}

#[test]
fn ids_are_unique_per_item() {
    let body = fixture("openai_chat_completion.json");
    let mut seen = HashMap::new();
    for _ in 0..50 {
        let r = answer(&body, &Context::default());
        for id in [
            r["id"].as_str().unwrap(),
            r["output"][0]["id"].as_str().unwrap(),
        ] {
            assert!(seen.insert(id.to_string(), ()).is_none(), "{id} reused");
        }
    }
}
