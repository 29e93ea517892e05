//! A Gemini stream passed through to a Gemini client, watched for usage and its end.

use super::*;
use crate::stream::watch::Seen;

/// Watches a Gemini stream passed through unchanged, for its usage and its end: only events
/// that carry `usageMetadata`, a `finishReason` or an `error` are parsed. (Gemini sends no
/// other end marker.)
pub type PassThrough = crate::stream::watch::Watched<PassState>;

/// What a passed-through Gemini stream told of its usage.
#[derive(Default)]
pub struct PassState {
    usage: Option<Usage>,
}

impl crate::stream::watch::Watch for PassState {
    fn observe(&mut self, data: &[u8]) -> Seen {
        let has = |needle: &[u8]| memchr::memmem::find(data, needle).is_some();
        let finished = has(b"\"error\"") || has(b"\"finishReason\"");
        if !finished && !has(b"\"usageMetadata\"") {
            return Seen::Answer;
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Report<'a> {
            #[serde(default)]
            usage_metadata: Option<GUsage>,
            #[serde(default, borrow)]
            error: Option<GError<'a>>,
        }
        let report = serde_json::from_slice::<Report<'_>>(data);
        match report {
            Ok(Report { error: Some(e), .. }) => return Seen::Failed(in_band(&e, data)),
            Ok(Report {
                usage_metadata: Some(u),
                ..
            }) => self.usage = Some(u.into()),
            _ => {}
        }
        // Not an error object (a text or arguments that say "error"): only a finish ends it.
        if has(b"\"finishReason\"") {
            Seen::End
        } else {
            Seen::Answer
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}
