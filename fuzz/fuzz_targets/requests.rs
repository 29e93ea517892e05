//! Any request body: parsing never panics, and whatever is accepted translates into valid
//! JSON for every provider kind (or a clean 400).
#![no_main]
use junction::providers::chat::{ChatRequest, Unsupported};
use junction::providers::openai::{self, JsonScratch};
use junction::providers::{anthropic, gemini};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scratch = JsonScratch::default();
    let Ok(info) = openai::parse_request(data, &mut scratch) else { return };
    // What the gateway accepts is JSON by a second, independent parser too.
    serde_json::from_slice::<serde::de::IgnoredAny>(data).expect("accepted bodies are valid JSON");
    let patched = openai::patch_request(data, &info, "upstream-model").expect("parsed bodies patch");
    let v: serde_json::Value = serde_json::from_slice(&patched).expect("patched body is JSON");
    assert_eq!(v["model"], "upstream-model");
    let Ok(req) = ChatRequest::parse(data) else { return };
    for policy in [Unsupported::Reject, Unsupported::Drop] {
        let opts = anthropic::Options { default_max_tokens: 1024, unsupported: policy };
        if let Ok((body, _)) = anthropic::translate_request(&req, "claude", &opts, info.stream) {
            serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON");
        }
        if let Ok((body, _)) = gemini::translate_request(&req, policy, info.stream) {
            serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON");
        }
    }
});
