//! The SSE framer loses and invents nothing: its events, joined, are the input, whatever the
//! chunk boundaries; every event but a last unterminated one ends with a blank line.
#![no_main]
use bytes::Bytes;
use junction::stream::sse::SseFramer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = data.split_at(data.len().min(4));
    let mut f = SseFramer::new();
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts.iter().chain(std::iter::once(&255u8)) {
        let end = (at + c as usize + 1).min(stream.len());
        f.push(Bytes::copy_from_slice(&stream[at..end]));
        while let Some(e) = f.next_event() {
            assert!(e.ends_with(b"\n\n") || e.ends_with(b"\n\r\n"));
            out.extend_from_slice(&e);
        }
        at = end;
    }
    f.push(Bytes::copy_from_slice(&stream[at..]));
    while let Some(e) = f.next_event() {
        out.extend_from_slice(&e);
    }
    let rest = f.finish();
    if let Some(r) = &rest {
        out.extend_from_slice(r);
    }
    // finish() drops a whitespace-only remainder.
    assert!(stream.starts_with(&out));
    assert!(stream[out.len()..].iter().all(|b| b.is_ascii_whitespace()));
});
