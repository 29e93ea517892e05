//! The usage of a whole chat completion.

use super::*;

/// Usage from the end of a whole chat completion body, where it comes last but for a few
/// short fields; `tail` is the body's last few KiB.
pub fn usage_in_tail(tail: &[u8]) -> Option<Usage> {
    crate::usage::in_tail::<OpenAiUsage>(tail, b"\"usage\"").map(Usage::from)
}
