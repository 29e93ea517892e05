// Shared by the stream targets (included with `include!`).
#[allow(dead_code)]

/// Feeds `stream` in pieces chosen by `cuts` and returns all output.
fn run(cuts: &[u8], stream: &[u8], mut feed: impl FnMut(bytes::Bytes) -> Option<bytes::Bytes>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        let end = (at + c as usize + 1).min(stream.len());
        if let Some(b) = feed(bytes::Bytes::copy_from_slice(&stream[at..end])) {
            out.extend_from_slice(&b);
        }
        at = end;
    }
    if let Some(b) = feed(bytes::Bytes::copy_from_slice(&stream[at..])) {
        out.extend_from_slice(&b);
    }
    out
}

/// Every event the gateway writes is `data: <valid JSON>` or `data: [DONE]`.
fn assert_valid_openai_sse(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("output is UTF-8");
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").expect("only data events");
        if data != "[DONE]" {
            serde_json::from_str::<serde_json::Value>(data).expect("valid JSON");
        }
    }
}
