//! The OpenAI pass-through filter never panics and never invents bytes: what it passes on
//! is a subsequence of whole input events.
#![no_main]
use junction::providers::openai::StreamFilter;
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = data.split_at(data.len().min(8));
    let strip = cuts.first().is_some_and(|c| c & 1 == 1);
    let mut f = StreamFilter::new(strip);
    let mut out = run(cuts, stream, |b| f.filter(b));
    if let Some(b) = f.finish() {
        out.extend_from_slice(&b);
    }
    assert!(out.len() <= stream.len());
    if !strip {
        assert_eq!(&out[..], &stream[..out.len()]);
    }
});
