//! The Gemini front door's own steps: which model and method a path names, `countTokens`.

use super::{auth, body, respond, Gateway};
use crate::config::Snapshot;
use crate::error::GatewayError;
use pingora_core::protocols::http::ServerSession;

/// A Gemini method on a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Generate,
    Stream,
    CountTokens,
}

/// The model and method of `/v1beta/models/{model}:{method}` (or `/v1/models/...`).
pub fn route(path: &str) -> Option<(&str, Method)> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    let method = match method {
        "generateContent" => Method::Generate,
        "streamGenerateContent" => Method::Stream,
        "countTokens" => Method::CountTokens,
        _ => return None,
    };
    (!model.is_empty()).then_some((model, method))
}

/// `:countTokens`: the prompt's tokens, counted with the routed model's tokenizer.
pub async fn count_tokens(
    _gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
) -> Result<(), GatewayError> {
    let key = auth::authenticate(session.req_header(), snapshot)?;
    let model = route(session.req_header().uri.path())
        .map(|(m, _)| m.to_string())
        .unwrap_or_default();
    let body = body::read_body(
        session,
        snapshot.server.max_body_bytes,
        snapshot.server.body_timeout,
    )
    .await?;
    let route = super::messages::allowed_route(snapshot, key, &model)?;
    // `countTokens` may wrap the request: `{"generateContentRequest": {...}}`.
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid JSON: {e}."))
    })?;
    let inner = v.get("generateContentRequest").unwrap_or(&v);
    let inner = serde_json::to_vec(inner).expect("a JSON value serializes");
    let chat = crate::front::gemini::request_to_chat(&inner, &model, false)?;
    let n = super::messages::prompt_count(&route, &chat.body)?;
    respond::write_json(session, 200, format!("{{\"totalTokens\":{n}}}").into()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_model_and_a_method() {
        assert_eq!(
            route("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            Some(("gemini-2.5-flash", Method::Stream))
        );
        assert_eq!(
            route("/v1/models/m:generateContent"),
            Some(("m", Method::Generate))
        );
        assert_eq!(
            route("/v1beta/models/m:countTokens"),
            Some(("m", Method::CountTokens))
        );
        assert_eq!(route("/v1beta/models/m:embedContent"), None);
        assert_eq!(route("/v1beta/models/:generateContent"), None);
        assert_eq!(route("/v1/chat/completions"), None);
    }
}
