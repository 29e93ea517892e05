//! Whatever a Gemini upstream sends, the client gets valid OpenAI SSE: no panic.
#![no_main]
use junction::providers::gemini::{CallIds, StreamTranslator, Translation};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = data.split_at(data.len().min(8));
    let t = Translation { include_usage: cuts.first().is_some_and(|c| c & 1 == 1) };
    let mut s = StreamTranslator::new(t, "m", 0, CallIds::with_seed(1));
    let mut out = run(cuts, stream, |b| s.feed(b));
    if let Some(b) = s.finish() {
        out.extend_from_slice(&b);
    }
    assert_valid_openai_sse(&out);
});
