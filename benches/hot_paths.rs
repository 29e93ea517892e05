//! Criterion benches for every function on the request path that touches bytes: request
//! parsing and patching, SSE framing, the OpenAI stream filter, usage extraction.
//! Run: `cargo bench --bench hot_paths`; compare before and after a change to these paths.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use junction::providers::openai::{self, JsonScratch, StreamFilter};
use junction::stream::sse::SseFramer;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/providers/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture (../shared beside the checkout)")
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

criterion_group!(benches, parse_and_patch, sse, usage);
criterion_main!(benches);
