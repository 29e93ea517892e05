//! Criterion benches for every function on the request path that touches bytes: request
//! parsing and patching, SSE framing, the OpenAI stream filter, usage extraction.
//! Run: `cargo bench --bench hot_paths`; compare before and after a change to these paths.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use junction::providers::chat::{ChatRequest, Unsupported};
use junction::providers::openai::{self, JsonScratch, StreamFilter};
use junction::providers::{anthropic, gemini};
use junction::stream::sse::SseFramer;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture (tests/fixtures/providers)")
}

/// A chat request of about `size` bytes: a system prompt, a long user turn, tools.
fn request(size: usize, stream: bool) -> Vec<u8> {
    let filler = "lorem ipsum \\\"dolor\\\" sit amet, ".repeat(size / 32 + 1);
    format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are helpful."}},{{"role":"user","content":"{filler}"}}],"tools":[{{"type":"function","function":{{"name":"get_weather","parameters":{{"type":"object","properties":{{"city":{{"type":"string"}}}}}}}}}}],"temperature":0.2,"stream":{stream}}}"#
    )
    .into_bytes()
}

fn parse_and_patch(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    for size in [1024usize, 64 * 1024, 2 * 1024 * 1024] {
        let body = request(size, true);
        g.throughput(Throughput::Bytes(body.len() as u64));
        let mut scratch = JsonScratch::default();
        g.bench_with_input(BenchmarkId::new("parse_request", size), &body, |b, body| {
            b.iter(|| openai::parse_request(black_box(body), &mut scratch).unwrap())
        });
        let info = openai::parse_request(&body, &mut scratch).unwrap();
        g.bench_with_input(BenchmarkId::new("patch_request", size), &body, |b, body| {
            b.iter(|| openai::patch_request(black_box(body), &info, "gpt-4o-2024-08-06").unwrap())
        });
    }
    g.finish();
}

fn sse(c: &mut Criterion) {
    let stream = fixture("openai_stream_usage.sse");
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    // As the upstream sends it: one event per chunk.
    let per_event: Vec<Bytes> = String::from_utf8(stream.clone())
        .unwrap()
        .split_inclusive("\n\n")
        .map(|e| Bytes::copy_from_slice(e.as_bytes()))
        .collect();
    // Worst case: chunk boundaries in the middle of events.
    let ragged: Vec<Bytes> = stream.chunks(37).map(Bytes::copy_from_slice).collect();
    for (name, chunks) in [
        ("one_event_per_chunk", &per_event),
        ("ragged_37_bytes", &ragged),
    ] {
        g.bench_function(BenchmarkId::new("framer", name), |b| {
            b.iter(|| {
                let mut f = SseFramer::new();
                let mut n = 0;
                for c in chunks {
                    f.push(c.clone());
                    while let Some(e) = f.next_event() {
                        n += e.len();
                    }
                }
                black_box(n)
            })
        });
        for strip in [false, true] {
            g.bench_function(
                BenchmarkId::new(
                    if strip {
                        "filter_strip_usage"
                    } else {
                        "filter_keep_usage"
                    },
                    name,
                ),
                |b| {
                    b.iter(|| {
                        let mut f = StreamFilter::new(strip);
                        let mut n = 0;
                        for c in chunks {
                            if let Some(out) = f.filter(c.clone()) {
                                n += out.len();
                            }
                        }
                        black_box((n, f.usage))
                    })
                },
            );
        }
    }
    g.finish();
}

fn usage(c: &mut Criterion) {
    let body = fixture("openai_chat_completion.json");
    c.bench_function("usage_in_tail", |b| {
        b.iter(|| openai::usage_in_tail(black_box(&body)).unwrap())
    });
}

/// The events of a capture, one per chunk, as an upstream sends them.
fn events_of(name: &str) -> Vec<Bytes> {
    let text = String::from_utf8(fixture(name)).unwrap();
    let sep = if text.contains("\r\n\r\n") {
        "\r\n\r\n"
    } else {
        "\n\n"
    };
    text.split_inclusive(sep)
        .map(|e| Bytes::copy_from_slice(e.as_bytes()))
        .collect()
}

fn translate_streams(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_event");
    // One event, as in the middle of a stream: what each token costs.
    let anthropic_events = events_of("anthropic_stream_text.sse");
    let mut a = anthropic::StreamTranslator::new(
        anthropic::Translation {
            json_tool: false,
            include_usage: true,
        },
        0,
    );
    for e in &anthropic_events[..4] {
        a.feed(e.clone());
    }
    let delta = anthropic_events[5].clone();
    g.bench_function("anthropic_text_delta", |b| {
        b.iter(|| black_box(a.feed(delta.clone())))
    });
    let gemini_events = events_of("gemini_stream.sse");
    let mut gm = gemini::StreamTranslator::new(
        gemini::Translation {
            include_usage: true,
        },
        "g",
        0,
        gemini::CallIds::with_seed(1),
    );
    gm.feed(gemini_events[0].clone());
    let middle = gemini_events[1].clone();
    g.bench_function("gemini_text_event", |b| {
        b.iter(|| black_box(gm.feed(middle.clone())))
    });
    // Whole captures, per event: setup, tool calls and the end included.
    for (name, file) in [
        ("anthropic_text_stream", "anthropic_stream_text.sse"),
        (
            "anthropic_tool_use_stream",
            "anthropic_stream_tool_use_text_and_tool.sse",
        ),
    ] {
        let events = events_of(file);
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let t = anthropic::Translation {
                    json_tool: false,
                    include_usage: true,
                };
                let mut s = anthropic::StreamTranslator::new(t, 0);
                let mut n = 0;
                for e in &events {
                    n += s.feed(e.clone()).map_or(0, |b| b.len());
                }
                black_box(n)
            })
        });
    }
    for (name, file) in [
        ("gemini_text_stream", "gemini_stream.sse"),
        (
            "gemini_thinking_call_stream",
            "gemini_stream_thinking_function_call.sse",
        ),
    ] {
        let events = events_of(file);
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let t = gemini::Translation {
                    include_usage: true,
                };
                let mut s = gemini::StreamTranslator::new(t, "g", 0, gemini::CallIds::with_seed(1));
                let mut n = 0;
                for e in &events {
                    n += s.feed(e.clone()).map_or(0, |b| b.len());
                }
                black_box(n)
            })
        });
    }
    g.finish();
}

/// A chat request of about `size` bytes with a multi-turn history and a tool round trip.
fn history_request(size: usize) -> Vec<u8> {
    let turn = r#"{"role":"user","content":"Please summarise the following paragraph about the weather in Paris, in two sentences."},{"role":"assistant","content":"Paris is mild today, with light wind and a chance of rain later in the evening."},"#;
    let turns = turn.repeat((size / turn.len()).max(1));
    format!(
        r#"{{"model":"m","messages":[{{"role":"system","content":"You are helpful."}},{turns}{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_1","type":"function","function":{{"name":"get_weather","arguments":"{{\"city\":\"Paris\"}}"}}}}]}},{{"role":"tool","tool_call_id":"call_1","content":"18C"}}],"tools":[{{"type":"function","function":{{"name":"get_weather","parameters":{{"type":"object","properties":{{"city":{{"type":"string"}}}}}}}}}}],"temperature":0.3,"max_tokens":512}}"#
    )
    .into_bytes()
}

fn translate_requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_translation");
    let opts = anthropic::Options {
        default_max_tokens: 4096,
        unsupported: Unsupported::Reject,
        structured: anthropic::StructuredOutput::Auto,
    };
    for size in [2 * 1024usize, 200 * 1024] {
        let body = history_request(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("anthropic", size), &body, |b, body| {
            b.iter(|| {
                let req = ChatRequest::parse(black_box(body)).unwrap();
                anthropic::translate_request(&req, "claude", &opts, true).unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("gemini", size), &body, |b, body| {
            b.iter(|| {
                let req = ChatRequest::parse(black_box(body)).unwrap();
                gemini::translate_request(&req, Unsupported::Reject, true).unwrap()
            })
        });
    }
    g.finish();
}

/// What the request path spends on accounting per request: the metrics (counters and
/// histograms) and handing the record to the accounting queue; and, per relayed chunk, keeping
/// a reference for a possible estimate. The estimate itself runs off the request path.
fn accounting(c: &mut Criterion) {
    use junction::metrics::{Labels, Metrics};
    use junction::usage::ledger::{Accounting, Entry};
    use std::sync::Arc;
    use std::time::Duration;
    let metrics: Arc<Metrics> = Arc::default();
    let accounting = Accounting::metrics_only(metrics.clone());
    let labels = Labels {
        model: "gpt-4o-mini".into(),
        provider: "openai".into(),
    };
    let mut g = c.benchmark_group("accounting");
    g.bench_function("metrics_request", |b| {
        b.iter(|| {
            metrics.request(
                black_box(&labels),
                200,
                Duration::from_micros(900),
                Some(Duration::from_micros(300)),
                Some(Duration::from_micros(40)),
            )
        })
    });
    g.bench_function("record_entry", |b| {
        b.iter(|| {
            accounting.record(Entry {
                status: 200,
                attempts: 1,
                usage: Some(Default::default()),
                labels: Some(Labels {
                    model: labels.model.clone(),
                    provider: labels.provider.clone(),
                }),
                ..Default::default()
            })
        })
    });
    let chunk = Bytes::from(vec![b'x'; 180]);
    g.bench_function("keep_chunk", |b| {
        b.iter(|| {
            let mut kept = junction::usage::Kept::with_limit(junction::usage::KEEP_FOR_ESTIMATE);
            for _ in 0..64 {
                kept.keep(black_box(&chunk));
            }
            kept.total
        })
    });
    g.finish();
    accounting.close();
}

/// The estimate made when an upstream reports no usage (off the request path): a 1 KiB
/// prompt and 64 relayed chunks.
fn estimate(c: &mut Criterion) {
    use junction::usage::estimate::{self, Tokenizer};
    let body = request(1024, true);
    let chunks: Vec<Bytes> = (0..64)
        .map(|i| {
            Bytes::from(format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}}}}]}}\n\n"
            ))
        })
        .collect();
    let relayed: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
    let total = relayed.len();
    // Load the tokenizer before measuring.
    Tokenizer::O200k.count("warm up");
    c.bench_function("estimate/1KiB_prompt_64_chunks", |b| {
        b.iter(|| estimate::estimate(black_box(&body), &relayed, total, true, Tokenizer::O200k))
    });
}

criterion_group!(
    benches,
    parse_and_patch,
    sse,
    usage,
    translate_streams,
    translate_requests,
    accounting,
    estimate,
    messages,
    responses,
    gemini_front
);
criterion_main!(benches);

/// A Claude Code-like Messages request of about `turns` tool round trips: a long cached
/// system prompt, a dozen tools, thinking blocks with signatures, tool results.
fn claude_code_request(turns: usize) -> Vec<u8> {
    use serde_json::json;
    let schema = json!({"type": "object", "properties": {"file_path": {"type": "string", "description": "The absolute path"}, "limit": {"type": "number"}}, "required": ["file_path"], "additionalProperties": false, "$schema": "http://json-schema.org/draft-07/schema#"});
    let tools: Vec<_> = (0..12)
        .map(|i| json!({"name": format!("Tool{i}"), "description": "Reads a file from the local filesystem. ".repeat(8), "input_schema": schema}))
        .collect();
    let mut messages = vec![json!({"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>Context for the session.</system-reminder>"},
        {"type": "text", "text": "Fix the failing test in src/lib.rs.", "cache_control": {"type": "ephemeral"}}
    ]})];
    for i in 0..turns {
        let id = format!("toolu_{i:024}");
        messages.push(json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should look at the file first. ".repeat(4), "signature": "EuYBCkQYAiJAQ7ZOmBu5pa8U03x".repeat(8)},
            {"type": "text", "text": "Let me read the file."},
            {"type": "tool_use", "id": id, "name": "Tool0", "input": {"file_path": "/repo/src/lib.rs"}}
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": "fn main() {\n    println!(\"hello\");\n}\n".repeat(20)}]}
        ]}));
    }
    json!({
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": "You help users with software engineering tasks. ".repeat(200), "cache_control": {"type": "ephemeral"}}
        ],
        "messages": messages,
        "tools": tools,
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "metadata": {"user_id": "user_abc_account_def_session_123"},
        "stream": true
    })
    .to_string()
    .into_bytes()
}

/// The Anthropic Messages front door: request translation, the chunk stream encoder and the
/// whole-response translation.
fn messages(c: &mut Criterion) {
    use junction::front::messages;
    let mut g = c.benchmark_group("messages");
    let body = claude_code_request(20);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("request_to_chat", |b| {
        b.iter(|| messages::request_to_chat(black_box(&body)).unwrap())
    });
    for (name, file) in [
        ("stream_encoder", "openai_stream_usage.sse"),
        (
            "stream_encoder_tool_calls",
            "openai_stream_tool_calls_parallel.sse",
        ),
    ] {
        let events = events_of(file);
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut e = messages::StreamEncoder::new("claude-sonnet-4-5");
                let mut n = 0;
                for ev in &events {
                    n += e.feed(ev.clone()).map_or(0, |b| b.len());
                }
                black_box(n)
            })
        });
    }
    let whole = fixture("openai_chat_completion.json");
    g.throughput(Throughput::Bytes(whole.len() as u64));
    g.bench_function("response_from_chat", |b| {
        b.iter(|| messages::response_from_chat(black_box(&whole), "claude-sonnet-4-5").unwrap())
    });
    g.finish();
}

/// A Codex-like Responses request of about `turns` tool round trips: long instructions, a
/// developer message, function and custom (apply_patch) tools and a namespace, reasoning
/// items with encrypted content, calls and their outputs.
fn codex_request(turns: usize) -> Vec<u8> {
    use serde_json::json;
    let schema = json!({"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}, "workdir": {"type": "string"}, "timeout_ms": {"type": "number"}}, "required": ["command"], "additionalProperties": false});
    let mut tools: Vec<_> = (0..6)
        .map(|i| json!({"type": "function", "name": format!("tool_{i}"), "description": "Runs a shell command and returns its output. ".repeat(6), "strict": false, "parameters": schema}))
        .collect();
    tools.push(json!({"type": "custom", "name": "apply_patch", "description": "Use the `apply_patch` tool to edit files.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\n".repeat(10)}}));
    tools.push(json!({"type": "namespace", "name": "mcp_github", "description": "GitHub", "tools": [
        {"type": "function", "name": "get_issue", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        {"type": "function", "name": "list_prs", "parameters": {"type": "object", "properties": {}}}
    ]}));
    tools.push(json!({"type": "web_search"}));
    let mut input = vec![
        json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions instructions>sandbox: workspace-write</permissions instructions>"}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context><cwd>/repo</cwd></environment_context>"}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the failing test in src/lib.rs."}]}),
    ];
    for i in 0..turns {
        let id = format!("call_{i:024}");
        input.push(json!({"type": "reasoning", "id": format!("rs_{i}"), "summary": [{"type": "summary_text", "text": "I should look at the file first."}], "encrypted_content": "gAAAAABo".repeat(64)}));
        input.push(json!({"type": "function_call", "call_id": id, "name": "tool_0", "arguments": "{\"command\":[\"cat\",\"src/lib.rs\"]}"}));
        input.push(json!({"type": "function_call_output", "call_id": id, "output": "fn main() {\n    println!(\"hello\");\n}\n".repeat(20)}));
    }
    json!({
        "model": "gpt-5-codex",
        "instructions": "You are Codex, based on GPT-5. You are running as a coding agent in the Codex CLI. ".repeat(100),
        "input": input,
        "tools": tools,
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": false,
        "stream": true,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a7c3-session"
    })
    .to_string()
    .into_bytes()
}

/// The OpenAI Responses front door: request translation, the chunk stream encoder and the
/// whole-response translation.
fn responses(c: &mut Criterion) {
    use junction::front::responses;
    let mut g = c.benchmark_group("responses");
    let body = codex_request(20);
    let context = responses::request_to_chat(&body).unwrap().context;
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("request_to_chat", |b| {
        b.iter(|| responses::request_to_chat(black_box(&body)).unwrap())
    });
    for (name, file) in [
        ("stream_encoder", "openai_stream_usage.sse"),
        (
            "stream_encoder_tool_calls",
            "openai_stream_tool_calls_parallel.sse",
        ),
    ] {
        let events = events_of(file);
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut e = responses::StreamEncoder::new("gpt-5-codex", context.clone());
                let mut n = 0;
                for ev in &events {
                    n += e.feed(ev.clone()).map_or(0, |b| b.len());
                }
                black_box(n)
            })
        });
    }
    let whole = fixture("openai_chat_completion.json");
    g.throughput(Throughput::Bytes(whole.len() as u64));
    g.bench_function("response_from_chat", |b| {
        b.iter(|| {
            responses::response_from_chat(black_box(&whole), "gpt-5-codex", &context).unwrap()
        })
    });
    g.finish();
}

/// A Gemini CLI-like `generateContent` request of about `turns` tool round trips: a long
/// system instruction, a dozen function declarations (OpenAPI schemas), thoughts with
/// signatures, calls and their responses.
fn gemini_cli_request(turns: usize) -> Vec<u8> {
    use serde_json::json;
    let schema = json!({"type": "OBJECT", "properties": {"file_path": {"type": "STRING", "description": "The absolute path"}, "limit": {"type": "NUMBER"}}, "required": ["file_path"]});
    let declarations: Vec<_> = (0..12)
        .map(|i| json!({"name": format!("tool_{i}"), "description": "Reads a file from the local filesystem. ".repeat(8), "parameters": schema}))
        .collect();
    let mut contents =
        vec![json!({"role": "user", "parts": [{"text": "Fix the failing test in src/lib.rs."}]})];
    for i in 0..turns {
        let id = format!("fc-{i}");
        contents.push(json!({"role": "model", "parts": [
            {"text": "I should look at the file first. ".repeat(4), "thought": true},
            {"text": "Let me read the file."},
            {"functionCall": {"id": id, "name": "tool_0", "args": {"file_path": "/repo/src/lib.rs"}}, "thoughtSignature": "EuYBCkQYAiJAQ7ZOmBu5pa8U03x".repeat(8)}
        ]}));
        contents.push(json!({"role": "user", "parts": [
            {"functionResponse": {"id": id, "name": "tool_0", "response": {"output": "fn main() {\n    println!(\"hello\");\n}\n".repeat(20)}}}
        ]}));
    }
    json!({
        "systemInstruction": {"parts": [{"text": "You are an interactive CLI agent. ".repeat(200)}]},
        "contents": contents,
        "tools": [{"functionDeclarations": declarations}],
        "generationConfig": {"temperature": 0, "topP": 1, "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 8192}}
    })
    .to_string()
    .into_bytes()
}

/// The Gemini front door: request translation, the chunk stream encoder and the
/// whole-response translation.
fn gemini_front(c: &mut Criterion) {
    use junction::front::gemini as front;
    let mut g = c.benchmark_group("gemini_front");
    let body = gemini_cli_request(20);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("request_to_chat", |b| {
        b.iter(|| front::request_to_chat(black_box(&body), "gemini-2.5-pro", true).unwrap())
    });
    for (name, file) in [
        ("stream_encoder", "openai_stream_usage.sse"),
        (
            "stream_encoder_tool_calls",
            "openai_stream_tool_calls_parallel.sse",
        ),
    ] {
        let events = events_of(file);
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut e = front::StreamEncoder::new("gemini-2.5-pro");
                let mut n = 0;
                for ev in &events {
                    n += e.feed(ev.clone()).map_or(0, |b| b.len());
                }
                black_box(n)
            })
        });
    }
    let whole = fixture("openai_chat_completion.json");
    g.throughput(Throughput::Bytes(whole.len() as u64));
    g.bench_function("response_from_chat", |b| {
        b.iter(|| front::response_from_chat(black_box(&whole), "gemini-2.5-pro").unwrap())
    });
    g.finish();
}
