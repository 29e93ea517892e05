//! A Messages request passed through to Anthropic, and its answer watched for usage.

use super::*;
use crate::stream::watch::Seen;

/// The client's Messages request for an Anthropic upstream: the same bytes with only the
/// model replaced. Thinking blocks another backend produced (Junction marks their signature
/// empty) are removed first: Anthropic would reject them, and their reasoning is not its own.
pub fn pass_request(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, GatewayError> {
    let owned;
    let body = if memchr::memmem::find(body, b"\"signature\":\"\"").is_some() {
        owned = without_foreign_thinking(body)?;
        &owned[..]
    } else {
        body
    };
    crate::providers::splice_model(body, upstream_model)
}

/// Removes thinking blocks whose signature is empty from the assistant turns.
fn without_foreign_thinking(body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}."))
    })?;
    if let Some(messages) = v.get_mut("messages").and_then(Value::as_array_mut) {
        for m in messages {
            if let Some(blocks) = m.get_mut("content").and_then(Value::as_array_mut) {
                blocks.retain(|b| {
                    !(b.get("type").and_then(Value::as_str) == Some("thinking")
                        && b.get("signature").and_then(Value::as_str) == Some(""))
                });
            }
        }
    }
    Ok(serde_json::to_vec(&v).expect("a JSON value serializes"))
}

/// Watches an Anthropic stream passed through unchanged, for its usage and its end.
pub type PassThrough = crate::stream::watch::Watched<PassState>;

/// What a passed-through Anthropic stream told of its usage.
#[derive(Default)]
pub struct PassState {
    pub(super) usage: Usage,
}

impl crate::stream::watch::Watch for PassState {
    fn observe(&mut self, data: &[u8]) -> Seen {
        if fast_delta(data).is_some() {
            return Seen::Answer;
        }
        let Ok(ev) = serde_json::from_slice::<Event<'_>>(data) else {
            return Seen::Opening;
        };
        let seen = if ev.carries_answer() {
            Seen::Answer
        } else {
            Seen::Opening
        };
        match &*ev.kind {
            "message_start" => {
                if let Some(u) = ev.message.and_then(|m| m.usage) {
                    u.apply(&mut self.usage);
                }
            }
            "message_delta" => {
                if let Some(u) = ev.usage {
                    u.apply(&mut self.usage);
                }
            }
            "message_stop" => return Seen::End,
            "error" => return Seen::Failed(in_band(ev.error.as_ref(), data)),
            _ => {}
        }
        seen
    }

    fn usage(&self) -> Option<Usage> {
        Some(self.usage)
    }
}

/// The usage of a whole Messages response, from the end of its body.
pub fn usage_in_tail(tail: &[u8]) -> Option<Usage> {
    let u = crate::usage::in_tail::<AUsage>(tail, b"\"usage\"")?;
    let mut usage = Usage::default();
    u.apply(&mut usage);
    Some(usage)
}
