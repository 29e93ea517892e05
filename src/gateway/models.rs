//! `GET /v1/models`: the models the caller's key may use, in OpenAI's list format.

use super::{auth, respond};
use crate::config::Snapshot;
use crate::error::GatewayError;
use pingora_core::protocols::http::ServerSession;
use serde::Serialize;

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
}

pub async fn list_models(
    session: &mut ServerSession,
    snapshot: &Snapshot,
) -> Result<(), GatewayError> {
    let key = auth::authenticate(session.req_header(), snapshot)?;
    let data = snapshot
        .model_names
        .iter()
        .filter(|name| key.allows(name))
        .map(|name| Model {
            id: name,
            object: "model",
            created: 0,
            owned_by: &snapshot.models[name].deployments[0].provider.name,
        })
        .collect();
    let body = serde_json::to_vec(&List {
        object: "list",
        data,
    })
    .unwrap_or_default();
    respond::write_json(session, 200, body.into()).await;
    Ok(())
}
