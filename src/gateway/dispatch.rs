//! Step 0, dispatch: which endpoint a request asks for, by method and path; the caller
//! resolved once for every endpoint that needs a key; the handler's answer or its error
//! written in the door's format.

use super::{auth, body, count_tokens, models, reply, tokens, Gateway};
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
    /// `POST /v1/tokens`: a short-lived token for the caller's key.
    Tokens,
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
                | Endpoint::Tokens
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
            ("POST", "/v1/tokens") => Endpoint::Tokens,
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
                | "/v1/tokens"
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
        // An unknown path is answered in the format of the door it is under.
        Endpoint::Unknown | Endpoint::WrongMethod => door_of_path(session.req_header().uri.path()),
        _ => Front::Chat,
    };
    // Step 1, once for every endpoint that needs a key: the caller, or why there is none.
    let addr = snapshot.server.client_ip(
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip()),
        &session.req_header().headers,
    );
    let resolved = endpoint
        .authenticated()
        .then(|| auth::authenticate(session.req_header(), snapshot, &gateway.tenancy, addr));
    // Each arm below takes it once (only authenticated endpoints read it).
    let caller = || match resolved.as_ref().expect("an authenticated endpoint") {
        Ok(r) => Ok(r.caller()),
        Err(e) => Err(e.clone()),
    };
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
        Endpoint::Tokens => match caller() {
            Ok(caller) => tokens::mint(session, gateway, caller).await.map(|()| false),
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
        Endpoint::Unknown => Err(unknown_path(session.req_header().uri.path())),
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

/// The door a path is under, for an error about it (a doubled version is looked through).
fn door_of_path(path: &str) -> Front {
    let path = ["/v1beta", "/v1"]
        .iter()
        .find_map(|v| path.strip_prefix(v).filter(|rest| rest.starts_with("/v1")))
        .unwrap_or(path);
    if path.starts_with("/v1beta/") {
        Front::Gemini
    } else if path.starts_with("/v1/messages") {
        Front::Messages
    } else if path.starts_with("/v1/responses") || path.starts_with("/responses") {
        Front::Responses
    } else {
        Front::Chat
    }
}

/// 404 for a path no endpoint serves, with a hint when the client's base URL repeats its
/// version (`…/v1` given where the SDK adds `/v1` itself).
fn unknown_path(path: &str) -> GatewayError {
    let shown = crate::error::Printable(path);
    let message = match ["/v1/v1/", "/v1beta/v1beta/", "/v1/v1beta/", "/v1beta/v1/"]
        .iter()
        .find(|doubled| path.starts_with(**doubled))
    {
        Some(doubled) => format!(
            "Unknown path {shown}: the base URL has its version twice (`{}`). Set the base URL \
             to the gateway's address with one version, or none where the SDK adds its own.",
            doubled.trim_end_matches('/')
        ),
        None => format!("Unknown path {shown}."),
    };
    GatewayError::new(ErrorKind::NotFound, message).code(Code::UnknownUrl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_are_answered_by_their_door_with_a_hint_for_a_doubled_version() {
        assert_eq!(door_of_path("/v1beta/tunedModels"), Front::Gemini);
        assert_eq!(door_of_path("/v1/messages/batches"), Front::Messages);
        assert_eq!(
            door_of_path("/v1/responses/resp_1/cancel"),
            Front::Responses
        );
        assert_eq!(door_of_path("/v1/embeddings"), Front::Chat);
        assert_eq!(door_of_path("/v1/v1/messages"), Front::Messages);
        assert_eq!(door_of_path("/v1beta/v1beta/models/m:x"), Front::Gemini);
        let e = unknown_path("/v1/v1/messages");
        assert_eq!((e.status(), e.code), (404, Some(Code::UnknownUrl)));
        assert!(
            e.message.contains("version twice (`/v1/v1`)"),
            "{}",
            e.message
        );
        assert_eq!(unknown_path("/v2/x").message, "Unknown path /v2/x.");
    }
}
