//! A Responses request passed through to a provider that serves the Responses API, and its answer watched for usage.

use super::*;
use crate::stream::watch::Seen;

/// Usage as the Responses API reports it.
#[derive(Deserialize, Default)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<crate::usage::PromptDetails>,
    #[serde(default)]
    output_tokens_details: Option<crate::usage::CompletionDetails>,
}

impl From<ResponsesUsage> for Usage {
    fn from(u: ResponsesUsage) -> Usage {
        Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u
                .input_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: u
                .output_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// The usage of a whole Responses `response` object, from the end of its body.
pub fn responses_usage_in_tail(tail: &[u8]) -> Option<Usage> {
    crate::usage::in_tail::<ResponsesUsage>(tail, b"\"usage\"").map(Usage::from)
}

/// Watches a Responses event stream passed through unchanged, for its usage and its end.
pub type ResponsesPass = crate::stream::watch::Watched<ResponsesState>;

/// What a passed-through Responses stream told of its usage: only the final events are read.
#[derive(Default)]
pub struct ResponsesState {
    usage: Option<Usage>,
    /// Keep the final response object (for the Responses store).
    pub keep: bool,
    /// The final response object, once it went by (when `keep`).
    pub kept: Option<Vec<u8>>,
}

impl crate::stream::watch::Watch for ResponsesState {
    fn observe(&mut self, data: &[u8]) -> Seen {
        let head = &data[..data.len().min(64)];
        let is = |t: &[u8]| memchr::memmem::find(head, t).is_some();
        if is(b"\"type\":\"error\"") {
            let v: Value = serde_json::from_slice(data).unwrap_or_default();
            return Seen::Failed(responses_in_band(v.get("error").unwrap_or(&v)));
        }
        let opening = [
            &b"\"response.created\""[..],
            b"\"response.in_progress\"",
            b"\"response.queued\"",
        ];
        let failed = is(b"\"response.failed\"");
        if !failed && opening.iter().any(|t| is(t)) {
            return Seen::Opening;
        }
        if !failed && !is(b"\"response.completed\"") && !is(b"\"response.incomplete\"") {
            return Seen::Answer;
        }
        #[derive(Deserialize)]
        struct Final {
            response: Option<Inner>,
        }
        #[derive(Deserialize)]
        struct Inner {
            usage: Option<ResponsesUsage>,
            #[serde(default)]
            error: Option<Value>,
        }
        let mut error = None;
        if let Ok(Final { response: Some(r) }) = serde_json::from_slice::<Final>(data) {
            if let Some(u) = r.usage {
                self.usage = Some(u.into());
            }
            error = r.error;
        }
        if failed {
            return Seen::Failed(responses_in_band(&error.unwrap_or_default()));
        }
        if self.keep {
            #[derive(Deserialize)]
            struct Raw<'a> {
                #[serde(borrow)]
                response: &'a serde_json::value::RawValue,
            }
            if let Ok(r) = serde_json::from_slice::<Raw<'_>>(data) {
                self.kept = Some(r.response.get().as_bytes().to_vec());
            }
        }
        Seen::End
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}
