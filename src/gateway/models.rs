//! The model lists, the models the caller's key may use: `GET /v1/models` is one list that
//! OpenAI's, Anthropic's and Google's clients all read (each reads its own fields and ignores
//! the others': `data` with `id`/`type`, and Gemini's `models`), and `GET /v1/models/{model}`
//! one such model; `GET /v1beta/models` (and `/v1beta/models/{model}`) is Google's alone.
//! (Google's `google-genai` SDK lists at `/v1/models` when given a base URL; Gemini CLI at
//! `/v1beta/models`.)

use super::auth::Caller;
use super::reply;
use crate::config::Snapshot;
use crate::error::GatewayError;
use pingora_core::protocols::http::ServerSession;
use serde::Serialize;

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    /// What Gemini's clients read.
    models: Vec<GeminiModel<'a>>,
}

/// A model as OpenAI's and Anthropic's clients read it.
#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    display_name: &'a str,
    created_at: &'static str,
}

/// A model as Gemini's API lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GeminiModel<'a> {
    name: String,
    base_model_id: &'a str,
    version: &'static str,
    display_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_token_limit: Option<u64>,
    supported_generation_methods: [&'static str; 3],
}

/// One model, as every client reads it.
#[derive(Serialize)]
struct One<'a> {
    #[serde(flatten)]
    model: Model<'a>,
    #[serde(flatten)]
    gemini: GeminiModel<'a>,
}

fn model<'a>(snapshot: &'a Snapshot, name: &'a str) -> Model<'a> {
    Model {
        id: name,
        object: "model",
        created: 0,
        owned_by: &snapshot.models[name].deployments[0].provider.name,
        kind: "model",
        display_name: name,
        created_at: "1970-01-01T00:00:00Z",
    }
}

fn gemini_model<'a>(snapshot: &'a Snapshot, name: &'a str) -> GeminiModel<'a> {
    GeminiModel {
        name: format!("models/{name}"),
        base_model_id: name,
        version: "junction",
        display_name: name,
        output_token_limit: snapshot.models[name].deployments[0].max_output_tokens,
        supported_generation_methods: ["generateContent", "streamGenerateContent", "countTokens"],
    }
}

/// The configured models the caller may use, in order.
fn allowed<'a>(snapshot: &'a Snapshot, caller: Caller<'a>) -> impl Iterator<Item = &'a str> + 'a {
    snapshot
        .model_names
        .iter()
        .map(|n| &**n)
        .filter(move |name| caller.may_use(name, &snapshot.models[*name]))
}

/// The model a path names after `prefix` (`models/` before it is Google's spelling), if the
/// caller may use it: 404 otherwise. `None`: the path is the list.
fn named<'a>(
    snapshot: &'a Snapshot,
    caller: Caller<'a>,
    path: &str,
    prefix: &str,
) -> Option<Result<&'a str, GatewayError>> {
    let asked = path.strip_prefix(prefix).filter(|m| !m.is_empty())?;
    let asked = asked.strip_prefix("models/").unwrap_or(asked);
    Some(
        allowed(snapshot, caller)
            .find(|n| *n == asked)
            .ok_or_else(|| GatewayError::model_not_found(asked)),
    )
}

/// `GET /v1/models` and `GET /v1/models/{model}`.
pub async fn list_models(
    session: &mut ServerSession,
    snapshot: &Snapshot,
    caller: Caller<'_>,
) -> Result<(), GatewayError> {
    let path = session.req_header().uri.path().to_string();
    let prefix = if path.starts_with("/v1/") {
        "/v1/models/"
    } else {
        "/models/"
    };
    let body = match named(snapshot, caller, &path, prefix) {
        Some(name) => {
            let name = name?;
            serde_json::to_vec(&One {
                model: model(snapshot, name),
                gemini: gemini_model(snapshot, name),
            })
        }
        None => {
            let data: Vec<Model> = allowed(snapshot, caller)
                .map(|n| model(snapshot, n))
                .collect();
            serde_json::to_vec(&List {
                object: "list",
                has_more: false,
                first_id: data.first().map(|m| m.id),
                last_id: data.last().map(|m| m.id),
                models: allowed(snapshot, caller)
                    .map(|n| gemini_model(snapshot, n))
                    .collect(),
                data,
            })
        }
    }
    .unwrap_or_default();
    reply::write_json(session, 200, body.into()).await;
    Ok(())
}

/// `GET /v1beta/models` and `GET /v1beta/models/{model}`, in Google's format.
pub async fn gemini_models(
    session: &mut ServerSession,
    snapshot: &Snapshot,
    caller: Caller<'_>,
) -> Result<(), GatewayError> {
    let path = session.req_header().uri.path().to_string();
    let body = match named(snapshot, caller, &path, "/v1beta/models/") {
        Some(name) => serde_json::to_vec(&gemini_model(snapshot, name?)),
        None => {
            let models: Vec<GeminiModel> = allowed(snapshot, caller)
                .map(|n| gemini_model(snapshot, n))
                .collect();
            serde_json::to_vec(&serde_json::json!({ "models": models }))
        }
    }
    .unwrap_or_default();
    reply::write_json(session, 200, body.into()).await;
    Ok(())
}
