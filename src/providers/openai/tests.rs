use super::*;
use crate::error::Code;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn info(body: &str) -> ChatRequestInfo {
    parse_request(body.as_bytes(), &mut JsonScratch::default()).unwrap()
}

#[test]
fn parses_model_stream_and_usage_flag() {
    let i = info(
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
    );
    assert_eq!(
        i,
        ChatRequestInfo {
            model: "m".into(),
            stream: true,
            include_usage: true,
            session: None,
        }
    );
    let i = info(r#"{"messages":[{}],"model":"m"}"#);
    assert!(!i.stream && !i.include_usage);
}

#[test]
fn bad_requests_are_400_with_a_reason() {
    let cases = [
        ("", "empty"),
        ("{", "not valid JSON"),
        ("[1]", "Invalid request"),
        (r#"{"messages":[{}]}"#, "missing field `model`"),
        (r#"{"model":"m"}"#, "missing field `messages`"),
        (r#"{"model":3,"messages":[{}]}"#, "invalid type"),
        (
            r#"{"model":"","messages":[{}]}"#,
            "`model` must not be empty",
        ),
        (r#"{"model":"m","messages":[]}"#, "at least one message"),
        (r#"{"model":"m","messages":"hi"}"#, "invalid type"),
        (
            r#"{"model":"a","messages":[{}],"model":"b"}"#,
            "duplicate field `model`",
        ),
        (
            r#"{"model":"a","stream":false,"messages":[{}],"stream":true}"#,
            "duplicate field `stream`",
        ),
    ];
    for (body, expect) in cases {
        let e = parse_request(body.as_bytes(), &mut JsonScratch::default()).unwrap_err();
        assert_eq!(e.status(), 400, "{body}");
        assert!(e.message.contains(expect), "{body}: {}", e.message);
    }
}

#[test]
fn patch_changes_only_the_model() {
    let body = r#"{ "model" : "public", "messages":[{"role":"user","content":"say \"model\": {x}"}], "temperature":0.2, "x":{"model":"inner"}}"#;
    let out = patch_request(body.as_bytes(), &info(body), "gpt-4o").unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        body.replace(r#""public""#, r#""gpt-4o""#)
    );
}

#[test]
fn patch_escapes_the_upstream_model() {
    let body = r#"{"model":"a","messages":[{}]}"#;
    let out = patch_request(body.as_bytes(), &info(body), "we\"ird").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["model"], "we\"ird");
}

#[test]
fn streams_always_ask_for_usage() {
    let body = r#"{"model":"a","stream":true,"messages":[{}]}"#;
    let out = patch_request(body.as_bytes(), &info(body), "b").unwrap();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{"stream_options":{"include_usage":true},"model":"b","stream":true,"messages":[{}]}"#
    );

    let body = r#"{"model":"a","stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true},"messages":[{}]}"#;
    let out = patch_request(body.as_bytes(), &info(body), "b").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(v["stream_options"]["continuous_usage_stats"], true);

    let body = r#"{"model":"a","stream":true,"stream_options":null,"messages":[{}]}"#;
    let out = patch_request(body.as_bytes(), &info(body), "b").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["stream_options"]["include_usage"], true);

    // Already asked for: the bytes stay as they were but for the model.
    let body =
        r#"{"model":"a","stream":true,"stream_options":{"include_usage":true},"messages":[{}]}"#;
    let out = patch_request(body.as_bytes(), &info(body), "b").unwrap();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        body.replace("\"a\"", "\"b\"")
    );
}

#[test]
fn an_escaped_model_key_still_gets_patched() {
    let body = r#"{"mod\u0065l":"a","messages":[{}]}"#;
    let i = info(body);
    assert_eq!(i.model, "a");
    let out = patch_request(body.as_bytes(), &i, "b").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["model"], "b");
}

fn run_filter(strip: bool, stream: &[u8], split: usize) -> (Vec<u8>, StreamFilter) {
    let mut f = StreamFilter::new(strip);
    let mut out = Vec::new();
    for part in stream.chunks(split) {
        if let Some(b) = f.filter(Bytes::copy_from_slice(part)) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = f.finish() {
        out.extend_from_slice(&b);
    }
    (out, f)
}

#[test]
fn usage_chunk_is_taken_and_stripped_from_the_real_capture() {
    let stream = fixture("openai_stream_usage.sse");
    for split in [1, 7, 100, stream.len()] {
        let (kept, f) = run_filter(false, &stream, split);
        assert_eq!(kept, stream, "split {split}");
        assert!(f.done);
        assert_eq!(
            f.usage,
            Some(Usage {
                input_tokens: 19,
                output_tokens: 238,
                cached_input_tokens: 0,
                reasoning_tokens: 0,
                cache_write_tokens: 0
            })
        );

        let (stripped, f) = run_filter(true, &stream, split);
        assert!(f.done && f.usage.is_some());
        let text = String::from_utf8(stripped).unwrap();
        assert!(!text.contains("\"prompt_tokens\""));
        assert!(text.ends_with("data: [DONE]\n\n"));
        // Everything else is there, byte for byte.
        let original = String::from_utf8(stream.clone()).unwrap();
        let usage_event = original
            .split("\n\n")
            .find(|e| e.contains("\"prompt_tokens\""))
            .unwrap();
        assert_eq!(text, original.replace(&format!("{usage_event}\n\n"), ""));
    }
}

#[test]
fn whole_chunks_pass_through_without_a_copy() {
    let mut f = StreamFilter::new(true);
    let chunk = Bytes::from_static(
        b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":null}\n\n",
    );
    let out = f.filter(chunk.clone()).unwrap();
    assert_eq!(out.as_ptr(), chunk.as_ptr());
}

#[test]
fn an_error_event_ends_the_stream_and_is_kept_for_the_gateway() {
    let stream = fixture("openai_stream_error_midstream.sse");
    let text = String::from_utf8_lossy(&stream);
    let at = text.find("data: {\"error\"").unwrap();
    for split in [1, 64, stream.len()] {
        let (out, f) = run_filter(true, &stream, split);
        // Everything before the error is passed on; the error is the gateway's to render.
        assert_eq!(out, &stream[..at]);
        assert!(f.done && f.started);
        let data = text[at + 6..].trim_end();
        assert_eq!(
            f.failure,
            Some(InBand::Reported {
                status: 500,
                body: Bytes::copy_from_slice(data.as_bytes())
            })
        );
    }
    // An error first: nothing of the answer began.
    let (out, f) = run_filter(true, &stream[at..], 5);
    assert!(out.is_empty() && !f.started && f.failure.is_some());
}

#[test]
fn usage_of_a_whole_response_comes_from_its_tail() {
    let body = fixture("openai_chat_completion.json");
    let tail = &body[body.len().saturating_sub(8 * 1024)..];
    assert_eq!(
        usage_in_tail(tail),
        Some(Usage {
            input_tokens: 16,
            output_tokens: 363,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            cache_write_tokens: 0
        })
    );
    let tools = fixture("openai_chat_completion_tool_calls.json");
    assert!(usage_in_tail(&tools).is_some());
}

/// Random mutations of real requests: parsing never panics, and whatever parses is patched
/// into valid JSON with the new model and every other top-level field unchanged.
#[test]
fn mutated_requests_never_panic_and_patch_correctly() {
    let seeds: Vec<Vec<u8>> = vec![
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#.to_vec(),
        br#"{"messages":[{"role":"user","content":[{"type":"text","text":"a\"b\\c"}]}],"model":"x","stream_options":{"include_usage":false},"stream":true,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#.to_vec(),
        br#" { "model" : "m" , "messages" : [ { } ] , "n" : [1,{"model":2}] } "#.to_vec(),
    ];
    let alphabet = br#"{}[]",:\ 0123456789.eE+-truefalsnmodel_stream"#;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut scratch = JsonScratch::default();
    let mut parsed = 0;
    for _ in 0..20_000 {
        let mut body = seeds[rng.usize(..seeds.len())].clone();
        for _ in 0..rng.usize(1..4) {
            match rng.u8(..3) {
                0 if !body.is_empty() => {
                    let i = rng.usize(..body.len());
                    body[i] = alphabet[rng.usize(..alphabet.len())];
                }
                1 => {
                    let i = rng.usize(..=body.len());
                    body.insert(i, alphabet[rng.usize(..alphabet.len())]);
                }
                _ if !body.is_empty() => {
                    let i = rng.usize(..body.len());
                    body.remove(i);
                }
                _ => {}
            }
        }
        let Ok(info) = parse_request(&body, &mut scratch) else {
            continue;
        };
        parsed += 1;
        let out = patch_request(&body, &info, "new-model").expect("a parsed body patches");
        let v: serde_json::Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        assert_eq!(
            v["model"],
            "new-model",
            "{}",
            String::from_utf8_lossy(&body)
        );
        let before: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for (k, val) in before.as_object().unwrap() {
            if k != "model" && k != "stream_options" {
                assert_eq!(
                    &v[k],
                    val,
                    "{k} changed in {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        if info.stream {
            assert_eq!(v["stream_options"]["include_usage"], true);
        }
    }
    assert!(
        parsed > 1000,
        "too few mutations parsed ({parsed}) to prove anything"
    );
}

/// Every OpenAI-format capture passes through byte for byte when the client asked for usage,
/// whatever the chunking; and only the usage chunk goes when it did not.
#[test]
fn every_openai_capture_passes_through_unchanged() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers/");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".sse")
                && (n.starts_with("openai_") || n.starts_with("anthropic_openai_compat"))
        })
        .collect();
    names.sort();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        let stream = fixture(&name);
        // An error event is taken out (the gateway renders it for the door).
        let text = String::from_utf8_lossy(&stream);
        let answer = &stream[..text.find("data: {\"error\"").unwrap_or(stream.len())];
        for split in [1, 13, stream.len()] {
            let (out, f) = run_filter(false, &stream, split);
            assert_eq!(out, answer, "{name} split {split}");
            assert_eq!(
                f.done,
                text.contains("[DONE]") || f.failure.is_some(),
                "{name}"
            );
            let (stripped, g) = run_filter(true, &stream, split);
            assert_eq!(g.usage, f.usage, "{name}");
            let removed = answer.len() - stripped.len();
            match f.usage {
                // Only the usage-only chunk is gone.
                Some(_) if String::from_utf8_lossy(&stream).contains("\"choices\":[]") => {
                    assert!(removed > 0, "{name}")
                }
                _ => assert_eq!(removed, 0, "{name}"),
            }
        }
    }
}

/// Found by the `requests` fuzz target: simd-json took a NUL after a number for the end of
/// its padded input, and such a body would have gone upstream as invalid JSON.
#[test]
fn nul_bytes_are_refused_like_any_invalid_json() {
    for body in [
        &b"{\"model\":\"m\",\"messages\":[{}],\"x\":30\x00}"[..],
        b"{\"model\":\"m\",\"messages\":[{}],\"x\":true\x00\x00}",
        b"{\"model\":\"m\x00\",\"messages\":[{}]}",
        // Also found by the fuzzer: a control byte after a long float.
        b"{\"model\":\"m\",\"messages\":[{}],\"x\":3333333332.333333333\x13333}",
        b"{\"model\":\"m\",\"messages\":[{\"content\":\"a\x01b\"}]}",
    ] {
        let e = parse_request(body, &mut JsonScratch::default()).unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(e.code, Some(Code::InvalidJson));
    }
}

/// Found by the `requests` fuzz target on simd-json 0.14: a 19-digit number followed by a
/// stray byte passed. 0.19 refuses it.
#[test]
fn a_long_number_followed_by_junk_is_refused() {
    for tail in [
        "3333333333333332000?",
        "33333333333333333333333?",
        "3333333332.333333333x",
    ] {
        let body = format!("{{\"model\":\"m\",\"messages\":[{{}}],\"x\":{tail}}}");
        let e = parse_request(body.as_bytes(), &mut JsonScratch::default()).unwrap_err();
        assert_eq!(e.code, Some(Code::InvalidJson), "{tail}");
    }
}

#[test]
fn a_passed_through_responses_stream_gives_its_usage_at_the_end() {
    let events = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"usage\":null}}\n\n\
        event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"usage\"}\n\n\
        event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"usage\":{\"input_tokens\":120,\"input_tokens_details\":{\"cached_tokens\":100},\"output_tokens\":7,\"output_tokens_details\":{\"reasoning_tokens\":3},\"total_tokens\":127}}}\n\n";
    let mut p = ResponsesPass::default();
    // Split anywhere: the events come back as they were, each once whole, and the end is
    // seen once whole.
    let mut out = Vec::new();
    for piece in events.as_bytes().chunks(37) {
        let b = bytes::Bytes::copy_from_slice(piece);
        if let Some(o) = p.feed(b) {
            assert!(o.ends_with(b"\n\n"), "whole events");
            out.extend_from_slice(&o);
        }
    }
    assert_eq!(p.finish(), None);
    assert_eq!(out, events.as_bytes());
    assert!(p.done());
    let u = p.usage().unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cached_input_tokens,
            u.output_tokens,
            u.reasoning_tokens
        ),
        (120, 100, 7, 3)
    );
    let whole = br#"{"id":"r","object":"response","output":[],"usage":{"input_tokens":5,"output_tokens":1,"total_tokens":6}}"#;
    let u = responses_usage_in_tail(whole).unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (5, 1));
}
