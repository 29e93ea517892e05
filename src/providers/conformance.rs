//! Shared helpers for the conformance tests: real captures in, expected OpenAI output out.
#![cfg(test)]

use bytes::Bytes;
use std::path::PathBuf;

pub const CREATED: u64 = 1_700_000_000;

pub fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/providers")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every capture whose name starts with `prefix` and ends with `suffix`.
pub fn fixtures(prefix: &str, suffix: &str) -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/providers");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Compares `actual` with `tests/fixtures/conformance/<name>`, the hand-checked expected
/// output. With `JUNCTION_BLESS=1` the file is written instead (then read it, line by line,
/// against OpenAI's format before committing it).
pub fn expect(name: &str, actual: &[u8]) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/conformance")
        .join(name);
    if std::env::var_os("JUNCTION_BLESS").is_some() {
        std::fs::write(&p, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with JUNCTION_BLESS=1 to create it)",
            p.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from the expected output:\n--- expected\n{}\n--- actual\n{}",
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual)
    );
}

/// Pretty JSON, for readable expected files.
pub fn pretty(json: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let mut out = serde_json::to_vec_pretty(&v).unwrap();
    out.push(b'\n');
    out
}

/// Runs a stream through a fresh translator made by `make`, fed in the given pieces.
pub fn run_stream<T>(
    make: &dyn Fn() -> T,
    feed: &dyn Fn(&mut T, Bytes) -> Option<Bytes>,
    finish: &dyn Fn(&mut T) -> Option<Bytes>,
    pieces: &[&[u8]],
) -> Vec<u8> {
    let mut t = make();
    let mut out = Vec::new();
    for p in pieces {
        if let Some(b) = feed(&mut t, Bytes::copy_from_slice(p)) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = finish(&mut t) {
        out.extend_from_slice(&b);
    }
    out
}

/// The output for the whole stream in one piece, checked to be the same when the stream is
/// split at every byte boundary and when it comes one byte at a time.
pub fn stream_output<T>(
    make: &dyn Fn() -> T,
    feed: &dyn Fn(&mut T, Bytes) -> Option<Bytes>,
    finish: &dyn Fn(&mut T) -> Option<Bytes>,
    stream: &[u8],
) -> Vec<u8> {
    let whole = run_stream(make, feed, finish, &[stream]);
    for i in 1..stream.len() {
        let split = run_stream(make, feed, finish, &[&stream[..i], &stream[i..]]);
        assert!(split == whole, "output differs when split at byte {i}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert!(
        run_stream(make, feed, finish, &bytes) == whole,
        "output differs fed byte by byte"
    );
    whole
}

/// Every event of an OpenAI SSE output is valid JSON (or `[DONE]`), in OpenAI's chunk shape.
pub fn check_openai_stream(out: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(out).unwrap();
    let mut events = Vec::new();
    for e in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data = e
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not a data event: {e}"));
        if data == "[DONE]" {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}"));
        if v.get("error").is_none() {
            assert_eq!(v["object"], "chat.completion.chunk", "{data}");
            assert!(v["choices"].is_array(), "{data}");
        }
        events.push(v);
    }
    events
}

/// The captures in the repository are the ones their sources list: every file is named in
/// `SHA256SUMS` with its digest, and nothing else is there (a capture edited by hand, or added
/// without its source, fails here).
#[test]
fn captures_match_their_checksums() {
    use sha2::{Digest, Sha256};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/providers");
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let mut listed = Vec::new();
    for line in sums.lines() {
        let (digest, name) = line.split_once("  ").expect("`<sha256>  <file>`");
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            digest,
            "{name} changed"
        );
        listed.push(name.to_string());
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "SHA256SUMS")
        .collect();
    present.sort();
    listed.sort();
    assert_eq!(present, listed, "every capture is listed in SHA256SUMS");
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).unwrap();
    for name in listed.iter().filter(|n| !n.ends_with(".md")) {
        assert!(
            sources.contains(name.as_str()),
            "{name} has no source in SOURCES.md"
        );
    }
}
