//! The suite every front door and every provider kind passes, on the real captures: each door
//! is paired with each provider's streams, whole answers and errors, through the same
//! composition the gateway uses. A new door goes in [`DOORS`], a new provider kind in
//! [`kinds`], and every case below runs for it.
//!
//! What must hold for every pair:
//! - a stream translates to the same bytes however the upstream splits it (whole, byte by
//!   byte, in pieces of 7 and 64 bytes; each side's own tests split at every boundary);
//! - every event is well formed in the door's protocol, and a stream ends with the door's own
//!   last event, or with the door's error event when the upstream failed or was cut;
//! - the usage is the provider's, whatever the door (accounting never depends on the door);
//! - a native pair passes the upstream's bytes through unchanged, and reads the same usage as
//!   the translation does;
//! - a whole answer becomes one JSON object of the door's shape, with the same usage;
//! - every provider error becomes an error body and an error event of the door's format.

use super::{as_is, whole, Stream};
use crate::config::ProviderKind;
use crate::error::{Code, ErrorKind, GatewayError};
use crate::front::Front;
use crate::providers::conformance::{fixture, fixtures};
use crate::providers::openai::ChatRequestInfo;
use crate::providers::{self, anthropic, gemini, Dialect};
use crate::usage::Usage;
use serde_json::Value;

const DOORS: [Front; 4] = [
    Front::Chat,
    Front::Messages,
    Front::Responses,
    Front::Gemini,
];
const MODEL: &str = "the-model";

/// A provider kind under test: its translating dialect, its native door and pass-through
/// dialect (if any door speaks its protocol), and its captures.
struct Kind {
    kind: ProviderKind,
    dialect: Dialect,
    native: Option<(Front, Dialect)>,
    streams: Vec<String>,
    wholes: Vec<String>,
    errors: Vec<String>,
}

fn kinds() -> Vec<Kind> {
    let of = |prefix: &str, suffix: &str, but: &str| -> Vec<String> {
        fixtures(prefix, suffix)
            .into_iter()
            .filter(|n| but.is_empty() || !n.starts_with(but))
            .collect()
    };
    let mut openai_streams = of("openai_stream", ".sse", "");
    // Anthropic's OpenAI-compatible endpoint speaks OpenAI's protocol.
    openai_streams.extend(of("anthropic_openai_compat", ".sse", ""));
    vec![
        Kind {
            kind: ProviderKind::OpenAi,
            dialect: Dialect::OpenAi,
            native: None,
            streams: openai_streams,
            wholes: of("openai_chat_completion", ".json", ""),
            errors: of("openai_error", "", ""),
        },
        Kind {
            kind: ProviderKind::Anthropic,
            dialect: Dialect::Anthropic(anthropic::Translation {
                json_tool: false,
                include_usage: true,
            }),
            native: Some((Front::Messages, Dialect::AnthropicPass)),
            streams: of("anthropic_stream", ".sse", ""),
            wholes: of("anthropic_message", ".json", ""),
            errors: of("anthropic_error", "", ""),
        },
        Kind {
            kind: ProviderKind::Gemini,
            dialect: Dialect::Gemini(gemini::Translation {
                include_usage: true,
            }),
            native: Some((Front::Gemini, Dialect::GeminiPass)),
            streams: of("gemini_stream", ".sse", ""),
            wholes: of("gemini_generate_content", ".json", ""),
            errors: of("gemini_error", "", ""),
        },
    ]
}

fn info() -> ChatRequestInfo {
    ChatRequestInfo {
        model: MODEL.into(),
        stream: true,
        include_usage: true,
        session: None,
    }
}

/// The provider's key in the tests: it must never come out of the gateway.
const SECRET: &str = "sk-prov-0123456789abcdef";

/// A provider `p` of `kind` (its key is [`SECRET`]), as the config makes it.
fn provider_of(kind: ProviderKind) -> std::sync::Arc<crate::config::Provider> {
    let kind = match kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gemini",
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\n[providers.p]\nkind = \"{kind}\"\n\
         base_url = \"http://127.0.0.1:9/v1\"\napi_key = \"${{KEY}}\"\n"
    );
    let snapshot = crate::config::parse("test.toml", &text, &|_| Some(SECRET.into()))
        .unwrap_or_else(|e| panic!("{e}"));
    snapshot.providers["p"].clone()
}

/// The capture's upstream failed or broke off (its name says so).
fn is_error_capture(name: &str) -> bool {
    name.contains("error")
}

/// One run of a stream through a fresh [`Stream`], fed in pieces of `size` bytes (0: whole),
/// then, as the relay does for a stream the upstream did not end properly, the door's error
/// event. The generated ids are seeded and the clock's fields blanked, so that runs compare.
fn run(front: Front, dialect: Dialect, capture: &[u8], size: usize) -> (Vec<u8>, Stream) {
    fastrand::seed(7);
    let mut s = Stream::new(
        front,
        dialect,
        &provider_of(dialect.kind()),
        &info(),
        MODEL,
        None,
        None,
    );
    let mut out = Vec::new();
    let size = if size == 0 {
        capture.len().max(1)
    } else {
        size
    };
    for piece in capture.chunks(size) {
        out.extend_from_slice(
            &s.feed(bytes::Bytes::copy_from_slice(piece))
                .unwrap_or_default(),
        );
    }
    out.extend_from_slice(&s.finish().unwrap_or_default());
    if !s.done() {
        let cut = GatewayError::new(ErrorKind::BadGateway, "cut").code(Code::UpstreamStreamCut);
        out.extend_from_slice(&s.error_event(&cut));
    }
    (blank_clock(&out), s)
}

/// `created` and `created_at` values (seconds of the clock) as 0.
fn blank_clock(out: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(out);
    let mut blanked = String::with_capacity(text.len());
    let mut rest = &*text;
    while let Some(at) = ["\"created\":", "\"created_at\":"]
        .iter()
        .filter_map(|k| rest.find(k).map(|i| (i, k.len())))
        .min()
    {
        let (i, len) = at;
        blanked.push_str(&rest[..i + len]);
        rest = &rest[i + len..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            blanked.push('0');
            rest = &rest[digits..];
        }
    }
    blanked.push_str(rest);
    blanked.into_bytes()
}

/// What the relay sends for a whole stream, checked to be the same however the upstream
/// splits it; and the stream, for its usage.
fn relayed(front: Front, dialect: Dialect, capture: &[u8]) -> (Vec<u8>, Stream) {
    let (whole, s) = run(front, dialect, capture, 0);
    for size in [1, 7, 64] {
        let (split, _) = run(front, dialect, capture, size);
        assert!(
            split == whole,
            "{front:?}: the output differs fed in pieces of {size} bytes:\n{}\n---\n{}",
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(&split)
        );
    }
    (whole, s)
}

/// The events of an SSE body: `(event name, data)` each.
fn events(out: &[u8]) -> Vec<(Option<String>, String)> {
    let text = std::str::from_utf8(out)
        .expect("UTF-8 output")
        .replace("\r\n", "\n");
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            let mut name = None;
            let mut data = None;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data = Some(d.trim_start().to_string());
                }
            }
            // Comments (keep-alives) carry no data.
            data.map(|d| (name, d))
        })
        .collect()
}

/// Checks that `out` is a well-formed stream of `front`'s protocol, and how it ended: true
/// when it ended with the door's error.
fn check_stream(front: Front, out: &[u8], what: &str) -> bool {
    let evs = events(out);
    assert!(!evs.is_empty(), "{what}: no event");
    let mut parsed = Vec::new();
    for (name, data) in &evs {
        if front == Front::Chat && data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{what}: {e}: {data}"));
        match front {
            Front::Messages | Front::Responses => {
                // Named events whose data says the same type.
                let name = name
                    .as_deref()
                    .unwrap_or_else(|| panic!("{what}: unnamed {data}"));
                assert_eq!(v["type"], name, "{what}: {data}");
            }
            Front::Chat => assert!(
                v.get("error").is_some() || v["object"] == "chat.completion.chunk",
                "{what}: {data}"
            ),
            Front::Gemini => assert!(
                v.get("error").is_some() || v["candidates"].is_array(),
                "{what}: {data}"
            ),
        }
        parsed.push(v);
    }
    let last = parsed
        .last()
        .unwrap_or_else(|| panic!("{what}: no JSON event"));
    match front {
        Front::Chat => {
            let errored = last.get("error").is_some();
            assert!(
                errored || evs.last().unwrap().1 == "[DONE]",
                "{what}: a chat stream ends with [DONE] or an error"
            );
            errored
        }
        Front::Messages => match last["type"].as_str() {
            Some("message_stop") => false,
            Some("error") => true,
            other => panic!("{what}: a Messages stream ends with {other:?}"),
        },
        Front::Responses => match last["type"].as_str() {
            Some("response.completed" | "response.incomplete") => false,
            Some("response.failed") => true,
            other => panic!("{what}: a Responses stream ends with {other:?}"),
        },
        Front::Gemini => {
            if last.get("error").is_some() {
                return true;
            }
            assert!(
                last["candidates"][0]["finishReason"].is_string(),
                "{what}: a Gemini stream ends with a finish reason"
            );
            false
        }
    }
}

#[test]
fn every_door_streams_every_providers_captures() {
    for k in kinds() {
        assert!(!k.streams.is_empty(), "{:?} has stream captures", k.kind);
        for name in &k.streams {
            let capture = fixture(name);
            // The provider's own reading of the usage, as the chat door relays it.
            let (_, reference) = relayed(Front::Chat, k.dialect, &capture);
            for front in DOORS {
                let what = format!("{name} at the {front:?} door");
                let (out, stream) = relayed(front, k.dialect, &capture);
                let errored = check_stream(front, &out, &what);
                assert_eq!(errored, is_error_capture(name), "{what}: how it ended");
                assert_eq!(
                    stream.whole_usage(),
                    reference.whole_usage(),
                    "{what}: the usage is the provider's"
                );
                if !errored {
                    assert!(stream.done(), "{what}: the upstream ended it");
                }
            }
        }
    }
}

#[test]
fn native_pairs_pass_the_upstream_bytes_unchanged_and_read_the_same_usage() {
    for k in kinds() {
        let Some((door, pass)) = k.native else {
            continue;
        };
        assert!(as_is(door, pass));
        for name in &k.streams {
            let capture = fixture(name);
            let (translated, reference) = relayed(door, k.dialect, &capture);
            let mut s = Stream::new(
                door,
                pass,
                &provider_of(pass.kind()),
                &info(),
                MODEL,
                None,
                None,
            );
            let mut out = Vec::new();
            for piece in capture.chunks(7) {
                out.extend_from_slice(
                    &s.feed(bytes::Bytes::copy_from_slice(piece))
                        .unwrap_or_default(),
                );
            }
            out.extend_from_slice(&s.finish().unwrap_or_default());
            assert_eq!(out, capture, "{name}: passed through as it came");
            let complete = s.done();
            assert_eq!(
                s.whole_usage(),
                reference.whole_usage(),
                "{name}: the pass-through reads the usage the translation reads"
            );
            // The translated stream is well formed too, so either path can serve the door.
            check_stream(door, &translated, name);
            assert_eq!(complete, reference.done(), "{name}: both see the same end");
        }
    }
}

#[test]
fn every_door_answers_every_providers_whole_captures() {
    for k in kinds() {
        assert!(!k.wholes.is_empty(), "{:?} has whole captures", k.kind);
        for name in &k.wholes {
            let capture = fixture(name);
            let (_, reference) = whole(Front::Chat, k.dialect, &capture, MODEL, None)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(reference.input_tokens > 0, "{name}: the capture has usage");
            for front in DOORS {
                let what = format!("{name} at the {front:?} door");
                assert!(!as_is(front, k.dialect) || front == Front::Chat, "{what}");
                let (json, usage) = whole(front, k.dialect, &capture, MODEL, None)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let v: Value =
                    serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{what}: {e}"));
                match front {
                    Front::Chat => assert_eq!(v["object"], "chat.completion", "{what}"),
                    Front::Messages => {
                        assert_eq!(
                            (&v["type"], &v["role"]),
                            (&"message".into(), &"assistant".into()),
                            "{what}"
                        )
                    }
                    Front::Responses => assert_eq!(v["object"], "response", "{what}"),
                    Front::Gemini => assert!(v["candidates"][0]["content"].is_object(), "{what}"),
                }
                assert_eq!(usage, reference, "{what}: the usage is the provider's");
            }
        }
    }
}

/// The status and body of an error capture (`.http`: a status line and headers first; a
/// `.json` body: the status is in its name).
fn error_capture(name: &str) -> (u16, Vec<u8>) {
    let raw = fixture(name);
    if name.ends_with(".http") {
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .or_else(|| text.split_once("\n\n"))
            .unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        return (status, body.as_bytes().to_vec());
    }
    let status = name
        .split('_')
        .find_map(|p| p.trim_end_matches(".json").parse::<u16>().ok())
        .unwrap_or_else(|| panic!("{name}: no status in the name"));
    (status, raw)
}

#[test]
fn every_door_writes_every_providers_errors_in_its_own_format() {
    for k in kinds() {
        assert!(!k.errors.is_empty(), "{:?} has error captures", k.kind);
        for name in &k.errors {
            let (status, body) = error_capture(name);
            let e = providers::map_error(&provider_of(k.kind), status, &body, None);
            for front in DOORS {
                let what = format!("{name} at the {front:?} door");
                let v: Value = serde_json::from_slice(&front.error_body(&e))
                    .unwrap_or_else(|err| panic!("{what}: {err}"));
                match front {
                    Front::Chat | Front::Responses => {
                        assert!(v["error"]["message"].is_string(), "{what}: {v}")
                    }
                    Front::Messages => {
                        assert_eq!(v["type"], "error", "{what}");
                        assert!(v["error"]["type"].is_string(), "{what}: {v}");
                    }
                    Front::Gemini => {
                        assert!(v["error"]["code"].is_u64(), "{what}: {v}");
                        assert!(v["error"]["status"].is_string(), "{what}: {v}");
                    }
                }
                // The same error ends a stream already under way, in the door's protocol.
                let ended = check_stream(front, &front.error_event(&e), &what);
                assert!(ended, "{what}: the error event is the door's error");
            }
        }
    }
}

#[test]
fn usage_is_zero_nowhere_it_was_reported() {
    // Guards the suite itself: the references above are real reports, not empty ones.
    for k in kinds() {
        for name in k.streams.iter().filter(|n| !is_error_capture(n)) {
            let (_, s) = relayed(Front::Chat, k.dialect, &fixture(name));
            if let Some(u) = s.whole_usage() {
                assert_ne!(u, Usage::default(), "{name}");
            }
        }
    }
}

#[test]
fn an_error_inside_a_stream_is_the_providers_error_rendered_once_by_the_door() {
    for k in kinds() {
        let passes = k.native.iter().map(|&(door, pass)| (door, pass));
        let translated = DOORS.iter().map(|&door| (door, k.dialect));
        for name in k.streams.iter().filter(|n| n.contains("_error_")) {
            let capture = fixture(name);
            for (front, dialect) in translated.clone().chain(passes.clone()) {
                let what = format!("{name} at the {front:?} door ({dialect:?})");
                let (out, s) = relayed(front, dialect, &capture);
                let e = s.failure().unwrap_or_else(|| panic!("{what}: no error"));
                // The provider's own mapping, as for an error status: the status its type
                // stands for, its code, and whether another deployment may be tried.
                let data = events(&capture)
                    .into_iter()
                    .map(|(_, d)| d)
                    .rfind(|d| d.contains("error"))
                    .unwrap();
                let v: Value = serde_json::from_str(&data).unwrap();
                let kind = v["error"]["type"].as_str().unwrap_or("");
                let status = match (k.kind, kind) {
                    (ProviderKind::Anthropic, "overloaded_error") => 503,
                    (ProviderKind::Gemini, _) => v["error"]["code"].as_u64().unwrap() as u16,
                    _ => 500,
                };
                assert_eq!(e.status(), status, "{what}: {e}");
                assert_eq!(e.fails_over, kind == "overloaded_error", "{what}");
                if dialect.passed_through() {
                    // The client speaks the upstream's protocol: its own event went out.
                    assert_eq!(out, capture, "{what}");
                    continue;
                }
                // Rendered once, by the door, from that error.
                let error_of = |d: &str| {
                    let mut v: Value = serde_json::from_str(d).unwrap_or_default();
                    let inner = v["response"]["error"].take();
                    [v["error"].take(), inner]
                        .into_iter()
                        .find(Value::is_object)
                };
                let errors: Vec<Value> = events(&out)
                    .iter()
                    .filter_map(|(_, d)| error_of(d))
                    .collect();
                assert_eq!(errors.len(), 1, "{what}: one error event");
                let alone = events(&front.error_event(e));
                assert_eq!(
                    Some(&errors[0]),
                    error_of(&alone.last().unwrap().1).as_ref(),
                    "{what}: the door's rendering of the error"
                );
            }
        }
    }
}

#[test]
fn an_error_before_the_answer_began_leaves_the_stream_unstarted() {
    // Before: nothing of the answer reached the decoder (the attempt may move on); after
    // some text: the answer began, and the error ends it.
    for (name, dialect, started) in [
        (
            "anthropic_stream_error_overloaded.sse",
            kinds()[1].dialect,
            false,
        ),
        (
            "anthropic_stream_error_api_error.sse",
            kinds()[1].dialect,
            false,
        ),
        (
            "anthropic_stream_error_midstream.sse",
            kinds()[1].dialect,
            false,
        ),
        (
            "anthropic_stream_error_midstream.sse",
            Dialect::AnthropicPass,
            false,
        ),
        ("openai_stream_error_midstream.sse", Dialect::OpenAi, true),
    ] {
        let (_, s) = run(Front::Chat, dialect, &fixture(name), 0);
        assert!(s.failure().is_some(), "{name}");
        assert_eq!(s.started(), started, "{name} ({dialect:?})");
    }
    // An answer's first text starts it.
    let capture = fixture("anthropic_stream_text.sse");
    let mut s = Stream::new(
        Front::Chat,
        kinds()[1].dialect,
        &provider_of(ProviderKind::Anthropic),
        &info(),
        MODEL,
        None,
        None,
    );
    let first_delta = std::str::from_utf8(&capture)
        .unwrap()
        .find("content_block_delta")
        .unwrap();
    s.feed(bytes::Bytes::copy_from_slice(&capture[..first_delta]));
    assert!(!s.started());
    s.feed(bytes::Bytes::copy_from_slice(&capture[first_delta..]));
    assert!(s.started());
}

#[test]
fn an_overloaded_event_is_the_same_error_as_an_overloaded_status() {
    let (status, body) = error_capture("anthropic_error_overloaded_529.json");
    let by_status =
        providers::map_error(&provider_of(ProviderKind::Anthropic), status, &body, None);
    let (_, s) = run(
        Front::Chat,
        kinds()[1].dialect,
        &fixture("anthropic_stream_error_overloaded.sse"),
        0,
    );
    let in_band = s.failure().unwrap();
    assert_eq!(
        (in_band.status(), in_band.code, in_band.fails_over),
        (by_status.status(), by_status.code, by_status.fails_over)
    );
    for front in DOORS {
        let v =
            |e: &GatewayError| -> Value { serde_json::from_slice(&front.error_body(e)).unwrap() };
        assert_eq!(
            v(in_band)["error"]["type"],
            v(&by_status)["error"]["type"],
            "{front:?}"
        );
    }
}

/// Issue 19: an upstream that echoes the request's credentials in its error text (a
/// misconfigured relay, a debugging proxy, a hostile endpoint) has them taken out before any
/// byte of it leaves: in the error body and event of every door, from an error status and
/// from an error inside a stream, translated or passed through.
#[test]
fn a_providers_key_echoed_in_its_error_never_leaves() {
    let echo = format!("auth=Bearer {SECRET}; x-api-key: {SECRET}");
    let redacted = std::cell::Cell::new(0);
    let leaks = |what: &str, out: &[u8]| {
        let text = String::from_utf8_lossy(out);
        assert!(!text.contains(SECRET), "{what}: {text}");
        // Where the upstream's text is passed on at all (not for a refused key, which is
        // the gateway's own message).
        redacted.set(redacted.get() + usize::from(text.contains(crate::secret::REDACTED)));
    };
    for k in kinds() {
        let provider = provider_of(k.kind);
        for name in &k.errors {
            let (status, body) = error_capture(name);
            let mut v: Value = serde_json::from_slice(&body).unwrap();
            v["error"]["message"] = Value::from(echo.clone());
            let body = serde_json::to_vec_pretty(&v).unwrap();
            // Not the refused-key statuses: their message is the gateway's own anyway.
            let e = providers::map_error(&provider, status.max(500), &body, None);
            for front in DOORS {
                let what = format!("{name} at the {front:?} door");
                leaks(&what, &front.error_body(&e));
                leaks(&what, &front.error_event(&e));
                assert!(!e.message_or_code().contains(SECRET), "{what}");
            }
        }
        for name in k.streams.iter().filter(|n| n.contains("_error_")) {
            let text = String::from_utf8(fixture(name)).unwrap();
            let message = |t: &str| -> String {
                let at = t.rfind("\"message\"").unwrap();
                let open = at + t[at + 9..].find('"').unwrap() + 10;
                let close = open + t[open..].find('"').unwrap();
                format!("{}{}{}", &t[..open], echo, &t[close..])
            };
            let capture = message(&text).into_bytes();
            let passes = k.native.iter().copied();
            for (front, dialect) in DOORS.iter().map(|&d| (d, k.dialect)).chain(passes) {
                let what = format!("{name} at the {front:?} door ({dialect:?})");
                let (out, _) = relayed(front, dialect, &capture);
                leaks(&what, &out);
            }
        }
    }
    assert!(
        redacted.get() > 40,
        "the echo was passed on, redacted: {}",
        redacted.get()
    );
}
