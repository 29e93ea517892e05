//! `GET /v1/models`: the models the caller's key may use, in one list both OpenAI's and
//! Anthropic's clients read (each reads its own fields and ignores the other's).

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
}

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

pub async fn list_models(
    session: &mut ServerSession,
    snapshot: &Snapshot,
    caller: Caller<'_>,
) -> Result<(), GatewayError> {
    let key = caller.key;
    let data: Vec<Model> = snapshot
        .model_names
        .iter()
        .filter(|name| key.allows(name))
        .map(|name| Model {
            id: name,
            object: "model",
            created: 0,
            owned_by: &snapshot.models[name].deployments[0].provider.name,
            kind: "model",
            display_name: name,
            created_at: "1970-01-01T00:00:00Z",
        })
        .collect();
    let body = serde_json::to_vec(&List {
        object: "list",
        has_more: false,
        first_id: data.first().map(|m| m.id),
        last_id: data.last().map(|m| m.id),
        data,
    })
    .unwrap_or_default();
    reply::write_json(session, 200, body.into()).await;
    Ok(())
}
