//! A Gemini stream passed through to a Gemini client, watched for usage and its end.

use super::*;

/// Watches a Gemini stream passed through unchanged, for its usage and its end: only events
/// that carry `usageMetadata`, a `finishReason` or an `error` are parsed. (Gemini sends no
/// other end marker.)
pub type PassThrough = crate::stream::watch::Watched<PassState>;

/// What a passed-through Gemini stream told of its usage.
#[derive(Default)]
pub struct PassState {
    usage: Usage,
}

impl crate::stream::watch::Watch for PassState {
    fn observe(&mut self, data: &[u8]) -> bool {
        let has = |needle: &[u8]| memchr::memmem::find(data, needle).is_some();
        let finished = has(b"\"finishReason\"") || has(b"\"error\"");
        if !finished && !has(b"\"usageMetadata\"") {
            return false;
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Report {
            #[serde(default)]
            usage_metadata: Option<GUsage>,
        }
        if let Ok(Report {
            usage_metadata: Some(u),
        }) = serde_json::from_slice::<Report>(data)
        {
            self.usage = u.into();
        }
        finished
    }

    fn usage(&self) -> Option<Usage> {
        Some(self.usage)
    }
}
