//! Token usage as reported by upstreams.

pub mod estimate;
pub mod ledger;

use serde::Deserialize;

/// Token counts of one request, as the upstream reported them, in OpenAI's sense:
/// `input_tokens` counts every prompt token (cached ones included), `output_tokens` every
/// generated token (reasoning included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `input_tokens`, read from the provider's prompt cache.
    pub cached_input_tokens: u64,
    /// Of `input_tokens`, written to the provider's prompt cache (Anthropic bills them apart).
    pub cache_write_tokens: u64,
    /// Of `output_tokens`, spent on reasoning.
    pub reasoning_tokens: u64,
}

/// What was relayed to the client, kept for an estimate when the upstream reports no usage:
/// a copy of the first bytes (a reference would pin the upstream connection's whole read
/// buffer for the stream's life), and the total relayed.
#[derive(Default)]
pub struct Kept {
    bytes: Vec<u8>,
    limit: usize,
    pub total: usize,
}

/// Bytes kept of each response for estimates; beyond it the count is scaled by bytes. A
/// sample, not the answer: it grows with the answer, so it is spent in full only on long
/// ones (10,000 such streams at once: 160 MB), and read only when an upstream reports no
/// usage. An answer under it (most: 16 KiB of SSE is some hundreds of tokens) is counted
/// whole; with 2 KiB, a six-chunk Gemini answer was under-counted by 40%.
pub const KEEP_FOR_ESTIMATE: usize = 16 * 1024;
/// Bytes kept when the ledger stores content.
pub const KEEP_FOR_CONTENT: usize = 8 * 1024 * 1024;

impl Kept {
    pub fn with_limit(limit: usize) -> Kept {
        Kept {
            limit,
            ..Default::default()
        }
    }

    // hot path: a small copy while under the limit, then only a count.
    /// Keeps a contiguous prefix: the chunk that crosses the limit is kept up to it.
    pub fn keep(&mut self, chunk: &[u8]) {
        self.total += chunk.len();
        let room = self.limit - self.bytes.len();
        if room > 0 {
            let take = &chunk[..chunk.len().min(room)];
            let need = self.bytes.len() + take.len();
            if need > self.bytes.capacity() {
                // Doubling, but never past the limit: a full prefix holds `limit` bytes, not
                // the next power of two above it.
                let grown = need.max(self.bytes.capacity() * 2).min(self.limit);
                self.bytes.reserve_exact(grown - self.bytes.len());
            }
            self.bytes.extend_from_slice(take);
        }
    }

    /// The bytes kept.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes kept.
    pub fn kept(&self) -> usize {
        self.bytes.len()
    }
}

/// OpenAI's `usage` object.
#[derive(Debug, Deserialize, Default)]
pub struct OpenAiUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Deserialize, Default)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
pub struct CompletionDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Usage {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_input_tokens: u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// Cost of `usage` at `price`, in micro-dollars, rounded to the nearest: prices are integers
/// (micro-dollars per million tokens) and so is the result; no float is ever summed.
/// The usage object a whole answer ends with, read from the last few KiB of its body: the
/// value after the last `quoted` key (`b"\"usage\""`) and its colon (providers put usage
/// last but for a few short fields). One scanner for every dialect; `T` is the dialect's own
/// usage shape.
pub fn in_tail<T: serde::de::DeserializeOwned>(tail: &[u8], quoted: &[u8]) -> Option<T> {
    let at = memchr::memmem::rfind(tail, quoted)?;
    let rest = &tail[at + quoted.len()..];
    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[colon] != b':' {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(&rest[colon + 1..]);
    T::deserialize(&mut de).ok()
}

pub fn cost_micros(usage: &Usage, price: &crate::config::Price) -> u64 {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let written = usage.cache_write_tokens.min(usage.input_tokens - cached);
    let uncached = (usage.input_tokens - cached - written) as u128;
    let total = uncached * price.input as u128
        + cached as u128 * price.cached_input as u128
        + written as u128 * price.cache_write as u128
        + usage.output_tokens as u128 * price.output as u128;
    ((total + 500_000) / 1_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_chunks_are_a_contiguous_prefix() {
        let mut k = Kept::with_limit(10);
        for c in ["abcd", "efghij", "klm", "n"] {
            k.keep(c.as_bytes());
        }
        assert_eq!(k.bytes(), b"abcdefghij");
        assert_eq!((k.kept(), k.total), (10, 14));
        let mut big = Kept::with_limit(4);
        big.keep(b"0123456789");
        assert_eq!(big.bytes(), b"0123");
    }

    #[test]
    fn a_full_prefix_holds_no_more_than_its_limit() {
        let mut k = Kept::with_limit(1000);
        for _ in 0..100 {
            k.keep(&[b'x'; 33]);
        }
        assert_eq!((k.kept(), k.total), (1000, 3300));
        assert_eq!(k.bytes.capacity(), 1000);
    }
    use crate::config::Price;

    #[test]
    fn cost_is_exact_integer_micro_dollars() {
        // $2.50 / $10 per million, cached at $1.25.
        let price = Price {
            input: 2_500_000,
            output: 10_000_000,
            cached_input: 1_250_000,
            cache_write: 3_125_000,
        };
        let u = Usage {
            input_tokens: 1000,
            output_tokens: 500,
            cached_input_tokens: 200,
            ..Default::default()
        };
        // 800 × 2.5 + 200 × 1.25 + 500 × 10 = 2000 + 250 + 5000 = 7250 µ$.
        assert_eq!(cost_micros(&u, &price), 7250);
        // 100 of the 800 uncached were written to the cache, at $3.125: +31.25 µ$ net.
        let written = Usage {
            cache_write_tokens: 100,
            ..u
        };
        assert_eq!(cost_micros(&written, &price), 7250 - 250 + 313);
        assert_eq!(cost_micros(&Usage::default(), &price), 0);
        // Rounded to the nearest micro-dollar: 1 token at $0.40/M is 0.4 µ$.
        let cheap = Price {
            input: 400_000,
            output: 0,
            cached_input: 0,
            cache_write: 0,
        };
        assert_eq!(
            cost_micros(
                &Usage {
                    input_tokens: 1,
                    ..Default::default()
                },
                &cheap
            ),
            0
        );
        assert_eq!(
            cost_micros(
                &Usage {
                    input_tokens: 2,
                    ..Default::default()
                },
                &cheap
            ),
            1
        );
    }
}
