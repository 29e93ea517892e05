//! The Anthropic Messages front door's own steps: what routing needs from the body, which
//! client headers go to an Anthropic upstream, `count_tokens`.

use super::{auth, body, respond, Gateway};
use crate::config::Snapshot;
use crate::error::GatewayError;
use crate::usage::estimate::{prompt_tokens, Tokenizer};
use pingora_core::protocols::http::ServerSession;
use pingora_http::RequestHeader;
use serde::Deserialize;
use std::borrow::Cow;

/// What routing needs of a Messages request body: the model, whether to stream, and the
/// session (`metadata.user_id`, which Claude Code makes per session).
#[derive(Debug)]
pub struct Peeked {
    pub model: String,
    pub stream: bool,
    pub session: Option<u64>,
}

/// Reads [`Peeked`] from a Messages request body.
pub fn peek(body: &[u8]) -> Result<Peeked, GatewayError> {
    #[derive(Deserialize)]
    struct Metadata<'a> {
        #[serde(borrow, default)]
        user_id: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        model: Option<Cow<'a, str>>,
        #[serde(default)]
        stream: Option<bool>,
        #[serde(borrow, default)]
        metadata: Option<Metadata<'a>>,
    }
    let p: Peek<'_> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}."))
    })?;
    let model = p
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| GatewayError::invalid_request("model: Field required").param("model"))?;
    Ok(Peeked {
        model: model.into_owned(),
        stream: p.stream.unwrap_or(false),
        session: p
            .metadata
            .and_then(|m| m.user_id)
            .filter(|u| !u.is_empty())
            .map(|u| crate::routing::fnv1a(u.as_bytes())),
    })
}

/// The client's `anthropic-*` headers (version, betas), passed on to an Anthropic upstream
/// together with the body they describe.
pub fn passed_headers(req: &RequestHeader) -> Vec<(http::HeaderName, http::HeaderValue)> {
    req.headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("anthropic-"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// `POST /v1/messages/count_tokens`: the prompt's tokens, counted with the tokenizer of the
/// model it would be routed to (OpenAI's exactly; others' approximately, as estimates are).
pub async fn count_tokens(
    _gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
) -> Result<(), GatewayError> {
    let key = auth::authenticate(session.req_header(), snapshot)?;
    let body = body::read_body(
        session,
        snapshot.server.max_body_bytes,
        snapshot.server.body_timeout,
    )
    .await?;
    let n = count(&body, snapshot, key)?;
    let out = format!("{{\"input_tokens\":{n}}}");
    respond::write_json(session, 200, out.into()).await;
    Ok(())
}

fn count(
    body: &[u8],
    snapshot: &Snapshot,
    key: &crate::config::ClientKey,
) -> Result<u64, GatewayError> {
    let model = peek(body)?.model;
    let route = allowed_route(snapshot, key, &model)?;
    // A count request carries no `max_tokens`; the translation wants one.
    let mut v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}."))
    })?;
    if let Some(o) = v.as_object_mut() {
        o.entry("max_tokens").or_insert(1.into());
    }
    let with_max = serde_json::to_vec(&v).expect("a JSON value serializes");
    let chat = crate::front::messages::request_to_chat(&with_max)?;
    prompt_count(&route, &chat.body)
}

/// The route of a model the key may use: 404 when there is none, 403 when it may not.
pub(super) fn allowed_route(
    snapshot: &Snapshot,
    key: &crate::config::ClientKey,
    model: &str,
) -> Result<std::sync::Arc<crate::config::ModelRoute>, GatewayError> {
    let route = snapshot
        .route(model)
        .ok_or_else(|| GatewayError::model_not_found(model))?;
    if !key.allows(model) && !key.allows(&route.name) {
        return Err(GatewayError::model_not_allowed(model));
    }
    Ok(route)
}

/// A chat request's prompt tokens, with the tokenizer of the model it would be routed to.
pub(super) fn prompt_count(
    route: &crate::config::ModelRoute,
    chat: &[u8],
) -> Result<u64, GatewayError> {
    let t = Tokenizer::for_model(&route.deployments[0].upstream_model);
    prompt_tokens(chat, t)
        .ok_or_else(|| GatewayError::invalid_request("The request has nothing to count."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_model_and_stream_and_refuses_the_rest() {
        let p = peek(br#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[],"stream":true,"metadata":{"user_id":"u1"}}"#)
            .unwrap();
        assert_eq!((p.model.as_str(), p.stream), ("claude-sonnet-4-5", true));
        assert_eq!(p.session, Some(crate::routing::fnv1a(b"u1")));
        let p = peek(br#"{"model":"m","messages":[]}"#).unwrap();
        assert_eq!((p.model.as_str(), p.stream, p.session), ("m", false, None));
        let e = peek(br#"{"messages":[]}"#).unwrap_err();
        assert_eq!((e.status(), e.param), (400, Some("model")));
        assert_eq!(peek(b"{not json").unwrap_err().status(), 400);
    }

    #[test]
    fn only_anthropic_headers_are_passed() {
        let mut r = RequestHeader::build("POST", b"/v1/messages", None).unwrap();
        r.insert_header("anthropic-version", "2023-06-01").unwrap();
        r.insert_header("anthropic-beta", "interleaved-thinking-2025-05-14")
            .unwrap();
        r.insert_header("x-api-key", "sk-client").unwrap();
        r.insert_header("authorization", "Bearer sk-client")
            .unwrap();
        let passed = passed_headers(&r);
        let names: Vec<&str> = passed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["anthropic-version", "anthropic-beta"]);
    }
}
