//! Whatever an Anthropic upstream sends, the client gets valid OpenAI SSE: no panic.
#![no_main]
use junction::providers::anthropic::{StreamTranslator, Translation};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = data.split_at(data.len().min(8));
    let flags = cuts.first().copied().unwrap_or(0);
    let t = Translation { json_tool: flags & 1 == 1, include_usage: flags & 2 == 2 };
    let mut s = StreamTranslator::new(t, 0);
    let mut out = run(cuts, stream, |b| s.feed(b));
    if let Some(b) = s.finish() {
        out.extend_from_slice(&b);
    }
    assert_valid_openai_sse(&out);
});
