//! Step 4b, limits: after the route is known and before any attempt, the caller's levels are
//! checked and charged at once ([`crate::limits`]): the request's estimated tokens (its prompt
//! counted, and the most output it allows) and its most expensive cost among the deployments
//! that may serve it. A refusal is a 429 in the door's format, with `Retry-After` and the
//! `x-ratelimit-*` headers.

use crate::config::{ModelRoute, Snapshot};
use crate::error::GatewayError;
use crate::limits::{self, Admission, Ask, Governor, Hold, Levels, RateHeaders};
use crate::usage::estimate::{openai_conversation, Tokenizer};
use crate::usage::{cost_micros, Usage};
use serde_json::Value;
use std::sync::Arc;

/// What a request asks of its levels: `chat` is its chat form (the OpenAI request sent to a
/// translated upstream), or the client's own body when there is none.
pub fn ask(snapshot: &Snapshot, route: &ModelRoute, chat: &[u8]) -> Ask {
    let deployments = || {
        route.deployments.iter().chain(
            route
                .fallbacks
                .iter()
                .filter_map(|f| snapshot.models.get(f))
                .flat_map(|r| r.deployments.iter()),
        )
    };
    let t = Tokenizer::for_model(route.deployments.first().map_or("", |d| &d.upstream_model));
    let v: Value = serde_json::from_slice(chat).unwrap_or(Value::Null);
    let conversation = openai_conversation(&v);
    let prompt = if conversation.messages.is_empty() {
        // Not a chat request: a token is rarely under four bytes of JSON.
        chat.len() as u64 / 4 + 1
    } else {
        conversation.tokens(t)
    };
    let models_most = deployments()
        .map(|d| d.max_output_tokens)
        .collect::<Option<Vec<_>>>();
    let models_most = models_most.and_then(|v| v.into_iter().max());
    let asked = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| v.get(k).and_then(Value::as_u64));
    let output = match (asked, models_most) {
        (Some(a), Some(m)) => a.min(m),
        (Some(a), None) => a,
        (None, Some(m)) => m,
        (None, None) => snapshot.limits.default_output_tokens,
    };
    let usage = Usage {
        input_tokens: prompt,
        output_tokens: output,
        ..Default::default()
    };
    let cost = deployments()
        .filter_map(|d| d.price.as_ref())
        .map(|p| cost_micros(&usage, p))
        .max()
        .unwrap_or(0);
    Ask {
        tokens: prompt + output,
        cost,
    }
}

/// Admits the request, or the refusal to send the client.
pub async fn admit(
    governor: &Arc<Governor>,
    levels: Arc<Levels>,
    ask: Ask,
) -> Result<(Hold, RateHeaders), GatewayError> {
    match governor.admit(levels.clone(), ask).await? {
        Admission::Admitted(hold, rate) => Ok((hold, rate)),
        Admission::Refused(r, rate) => {
            let mut e = limits::refusal(&r, &levels);
            e.rate = Some(Box::new(rate));
            Err(e)
        }
    }
}
