//! Step 0, dispatch: which endpoint a request asks for, by method and path; the caller
//! resolved once for every endpoint that needs a key; the handler's answer or its error
//! written in the door's format.

use super::{auth, body, count_tokens, models, reply, Gateway};
use crate::config::Snapshot;
use crate::error::{Code, ErrorKind, GatewayError};
use crate::front::{gemini, Front};
use bytes::Bytes;
use pingora_core::protocols::http::ServerSession;

/// What a request asks for, by method and path.
enum Endpoint {
    Chat,
    Messages,
    CountTokens,
    Responses,
    Gemini,
    GeminiCountTokens,
    Models,
    /// Gemini's `GET /v1beta/models` and `GET /v1beta/models/{model}`.
    GeminiModels,
    Health,
    Ready,
    WrongMethod,
    Unknown,
}

impl Endpoint {
    /// The endpoint needs a client key.
    fn authenticated(&self) -> bool {
        matches!(
            self,
            Endpoint::Chat
                | Endpoint::Messages
                | Endpoint::CountTokens
                | Endpoint::Responses
                | Endpoint::Gemini
                | Endpoint::GeminiCountTokens
                | Endpoint::Models
                | Endpoint::GeminiModels
        )
    }
}

/// Routes one request to its handler and writes the answer; true if the connection must be
/// closed afterwards.
pub async fn dispatch(
    gateway: &Gateway,
    session: &mut ServerSession,
    snapshot: &Snapshot,
    shutting_down: bool,
) -> bool {
    // hot path: the endpoint is found on the borrowed request line; nothing is copied
    // unless an error message needs it.
    let endpoint = {
        let req = session.req_header();
        match (req.method.as_str(), req.uri.path()) {
            ("POST", "/v1/chat/completions" | "/chat/completions") => Endpoint::Chat,
            ("POST", "/v1/messages") => Endpoint::Messages,
            ("POST", "/v1/responses" | "/responses") => Endpoint::Responses,
            ("POST", path) if gemini::route(path).is_some() => {
                match gemini::route(path).map(|(_, m)| m) {
                    Some(gemini::Method::CountTokens) => Endpoint::GeminiCountTokens,
                    _ => Endpoint::Gemini,
                }
            }
            ("POST", "/v1/messages/count_tokens") => Endpoint::CountTokens,
            ("GET", "/v1/models" | "/models") => Endpoint::Models,
            ("GET", path) if path.starts_with("/v1/models/") || path.starts_with("/models/") => {
                Endpoint::Models
            }
            ("GET", path) if path == "/v1beta/models" || path.starts_with("/v1beta/models/") => {
                Endpoint::GeminiModels
            }
            ("GET" | "HEAD", "/health") => Endpoint::Health,
            ("GET" | "HEAD", "/ready") => Endpoint::Ready,
            (
                _,
                "/v1/chat/completions"
                | "/chat/completions"
                | "/v1/messages"
                | "/v1/messages/count_tokens"
                | "/v1/responses"
                | "/responses"
                | "/v1/models"
                | "/models"
                | "/health"
                | "/ready",
            ) => Endpoint::WrongMethod,
            _ => Endpoint::Unknown,
        }
    };
    let front = match endpoint {
        Endpoint::Messages | Endpoint::CountTokens => Front::Messages,
        Endpoint::Responses => Front::Responses,
        Endpoint::Gemini | Endpoint::GeminiCountTokens | Endpoint::GeminiModels => Front::Gemini,
        // The shared list: a client that sent Google's key header is told in Google's format.
        Endpoint::Models if session.req_header().headers.contains_key("x-goog-api-key") => {
            Front::Gemini
        }
        _ => Front::Chat,
    };
    // Step 1, once for every endpoint that needs a key: the caller, or why there is none.
    let caller = endpoint
        .authenticated()
        .then(|| auth::authenticate(session.req_header(), snapshot));
    let caller = || caller.clone().expect("an authenticated endpoint");
    let result = match endpoint {
        Endpoint::Chat | Endpoint::Messages | Endpoint::Responses | Endpoint::Gemini => gateway
            .complete(session, snapshot, front, caller())
            .await
            .map(|o| o.close),
        Endpoint::CountTokens | Endpoint::GeminiCountTokens => match caller() {
            Ok(caller) => count_tokens::count_tokens(session, snapshot, caller, front)
                .await
                .map(|()| false),
            Err(e) => Err(e),
        },
        Endpoint::Models => match caller() {
            Ok(caller) => models::list_models(session, snapshot, caller)
                .await
                .map(|()| false),
            Err(e) => Err(e),
        },
        Endpoint::GeminiModels => match caller() {
            Ok(caller) => models::gemini_models(session, snapshot, caller)
                .await
                .map(|()| false),
            Err(e) => Err(e),
        },
        Endpoint::Health => {
            reply::write_json(session, 200, Bytes::from_static(b"{\"status\":\"ok\"}")).await;
            Ok(false)
        }
        Endpoint::Ready if shutting_down => Err(GatewayError::new(
            ErrorKind::Unavailable,
            "The gateway is shutting down.",
        )
        .code(Code::ShuttingDown)),
        Endpoint::Ready => {
            reply::write_json(session, 200, Bytes::from_static(b"{\"status\":\"ready\"}")).await;
            Ok(false)
        }
        Endpoint::WrongMethod => {
            let req = session.req_header();
            Err(GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!(
                    "Method {} is not allowed on {}.",
                    req.method,
                    req.uri.path()
                ),
            )
            .code(Code::MethodNotAllowed))
        }
        Endpoint::Unknown => Err(GatewayError::new(
            ErrorKind::NotFound,
            format!(
                "Unknown path {}.",
                crate::error::Printable(session.req_header().uri.path())
            ),
        )
        .code(Code::UnknownUrl)),
    };
    match result {
        Ok(close) => close,
        Err(e) => {
            reply::write_error(session, &e, front).await;
            if e.kind == ErrorKind::PayloadTooLarge {
                body::discard_rest(session).await;
                return true;
            }
            false
        }
    }
}
