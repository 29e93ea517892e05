//! Step 2b, at the Responses door: the stored state a request refers to. A
//! `previous_response_id` becomes the conversation it continues (each earlier response's
//! input and output items, oldest first) in front of the request's own input, and each
//! `item_reference` becomes the item it names, so that what goes on is a whole request any
//! upstream can answer, translated or passed through. A request with `store` on (the
//! Responses API's default) is answered with a [`Keep`], which stores the response the
//! client is given before its last byte leaves, so the next turn always finds it.

use crate::error::{Code, ErrorKind, GatewayError};
use crate::front::shared::invalid;
use crate::store::responses::Responses;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};

/// How many responses a conversation may go back.
const MAX_CHAIN: usize = 10_000;

/// What is kept of a request's answer: the store, whose the response is, and its own input.
pub struct Keep {
    store: Arc<Responses>,
    owner: String,
    previous: Option<String>,
    /// Taken by the one answer that is kept.
    input: Mutex<Option<Vec<Value>>>,
}

impl Keep {
    /// Stores the response object the client is about to be given (once: a later call does
    /// nothing).
    pub fn put(&self, response: &[u8]) {
        let Some(input) = self.input.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        if let Err(e) = self
            .store
            .put(&self.owner, self.previous.clone(), input, response)
        {
            tracing::warn!(error = %e, "a response could not be stored");
        }
    }
}

/// A request's state resolved: the body to go on with, and what to keep of its answer.
pub struct Prepared {
    pub body: Bytes,
    pub keep: Option<Arc<Keep>>,
    /// The response the request continues (its answer repeats it).
    pub previous: Option<String>,
}

/// Resolves what a Responses request refers to; `owner`: the caller's key, whose responses
/// alone it may refer to. A body that is not a JSON object goes on unchanged (the door's
/// parse says what is wrong with it).
pub fn prepare(store: &Arc<Responses>, owner: &str, body: Bytes) -> Result<Prepared, GatewayError> {
    let unchanged = |body| Prepared {
        body,
        keep: None,
        previous: None,
    };
    if !store.enabled() || refers_to_nothing(&body) {
        return Ok(unchanged(body));
    }
    let Ok(Value::Object(mut req)) = serde_json::from_slice::<Value>(&body) else {
        return Ok(unchanged(body));
    };
    let keep = match req.get("store") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("`store` must be a boolean.", "store")),
    };
    let previous = match req.remove("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.is_empty() => Some(id),
        Some(_) => {
            return Err(invalid(
                "`previous_response_id` must be a non-empty string.",
                "previous_response_id",
            ))
        }
    };
    let mut input = match req.remove("input") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => {
            vec![json!({"type": "message", "role": "user", "content": text})]
        }
        Some(Value::Array(items)) => items,
        // Not an input the door reads: it says so.
        Some(_) => return Ok(unchanged(body)),
    };
    let mut changed = previous.is_some();
    for item in &mut input {
        if let Some(id) = reference(item) {
            let found = store
                .holding(owner, &id)
                .and_then(|s| s.item(&id).cloned())
                .ok_or_else(|| {
                    GatewayError::new(
                        ErrorKind::NotFound,
                        format!("Item with id '{id}' not found."),
                    )
                    .param("input")
                    .code(Code::ItemNotFound)
                })?;
            *item = found;
            changed = true;
        }
    }
    let mut conversation = Vec::new();
    if let Some(id) = &previous {
        let not_found = || {
            invalid(
                format!("Previous response with id '{id}' not found."),
                "previous_response_id",
            )
            .code(Code::PreviousResponseNotFound)
        };
        let mut chain = Vec::new();
        let mut next = Some(id.clone());
        while let Some(id) = next {
            let Some(stored) = store.get(owner, &id) else {
                // The first is the client's reference; a missing earlier one is past
                // retention: the conversation cannot be rebuilt either way.
                return Err(not_found());
            };
            next = stored.previous.clone();
            chain.push(stored);
            if chain.len() > MAX_CHAIN {
                return Err(not_found());
            }
        }
        for stored in chain.iter().rev() {
            conversation.extend(stored.input.iter().cloned());
            conversation.extend(stored.output.iter().cloned());
        }
    }
    let keep_of = |input: Vec<Value>| {
        keep.then(|| {
            Arc::new(Keep {
                store: store.clone(),
                owner: owner.to_string(),
                previous: previous.clone(),
                input: Mutex::new(Some(input)),
            })
        })
    };
    if !changed {
        return Ok(Prepared {
            keep: keep_of(input),
            body,
            previous,
        });
    }
    let keep = keep_of(input.clone());
    conversation.extend(input);
    req.insert("input".into(), Value::Array(conversation));
    let body = serde_json::to_vec(&Value::Object(req))
        .map_err(|e| GatewayError::new(ErrorKind::Internal, e.to_string()))?;
    Ok(Prepared {
        body: body.into(),
        keep,
        previous,
    })
}

/// A request that is not stored (`store: false`), continues nothing and refers to no item:
/// it goes on untouched, read without building its JSON (the common case for clients that
/// send their whole history, such as Codex). False whenever in doubt: [`prepare`] decides.
fn refers_to_nothing(body: &[u8]) -> bool {
    use serde::Deserialize;
    use serde_json::value::RawValue;
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(default)]
        store: Option<Value>,
        #[serde(default)]
        previous_response_id: Option<Value>,
        #[serde(default, borrow)]
        input: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Item<'a> {
        #[serde(rename = "type", default, borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        role: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        id: Option<serde::de::IgnoredAny>,
    }
    let Ok(head) = serde_json::from_slice::<Head<'_>>(body) else {
        return false;
    };
    if head.store != Some(Value::Bool(false)) || head.previous_response_id.is_some() {
        return false;
    }
    let Some(input) = head.input.filter(|i| i.get().starts_with('[')) else {
        return true;
    };
    let Ok(items) = serde_json::from_str::<Vec<Item<'_>>>(input.get()) else {
        return false;
    };
    !items.iter().any(|i| {
        let reference = match &i.kind {
            Some(kind) => kind == "item_reference",
            None => i.role.is_none(),
        };
        reference && i.id.is_some()
    })
}

/// The id an `item_reference` item names (an item of only an id is one too, as OpenAI reads it).
fn reference(item: &Value) -> Option<String> {
    let item: &Map<String, Value> = item.as_object()?;
    let is_reference = match item.get("type") {
        Some(Value::String(t)) => t == "item_reference",
        None | Some(Value::Null) => !item.contains_key("role"),
        Some(_) => false,
    };
    if !is_reference {
        return None;
    }
    item.get("id").and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::refers_to_nothing;

    #[test]
    fn only_an_unstored_request_that_refers_to_nothing_skips_the_store() {
        for (body, nothing) in [
            (r#"{"model":"m","store":false,"input":"hi"}"#, true),
            (
                r#"{"model":"m","store":false,"input":[{"role":"user","content":"hi"},{"type":"function_call_output","call_id":"c","output":"x"}]}"#,
                true,
            ),
            (r#"{"model":"m","input":"hi"}"#, false),
            (r#"{"model":"m","store":null,"input":"hi"}"#, false),
            (
                r#"{"model":"m","store":false,"previous_response_id":"resp_1","input":"hi"}"#,
                false,
            ),
            (
                r#"{"model":"m","store":false,"input":[{"type":"item_reference","id":"msg_1"}]}"#,
                false,
            ),
            (
                r#"{"model":"m","store":false,"input":[{"id":"msg_1"}]}"#,
                false,
            ),
            (r#"{"model":"m","store":false,"input":[7]}"#, false),
            (r#"not json"#, false),
        ] {
            assert_eq!(refers_to_nothing(body.as_bytes()), nothing, "{body}");
        }
    }
}
