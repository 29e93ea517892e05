//! `POST /v1/tokens`: a short-lived token for the caller's key (`tenancy::token`): valid for
//! `ttl_seconds` (default 900, at most 3600), for `models` (within the key's; default all of
//! them). A token cannot mint another.

use super::auth::Caller;
use super::{body, reply, Gateway};
use crate::error::{ErrorKind, GatewayError};
use crate::tenancy::token::{Claims, MAX_TTL_MS};
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

pub async fn mint(
    session: &mut ServerSession,
    gateway: &Gateway,
    caller: Caller<'_>,
) -> Result<(), GatewayError> {
    if caller.token {
        return Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            "A token cannot mint tokens: use the key it came from.",
        ));
    }
    let raw = body::read_body(session, 64 * 1024, std::time::Duration::from_secs(10)).await?;
    let raw: &[u8] = if raw.is_empty() { b"{}" } else { &raw };
    let ask: Ask = serde_json::from_slice(raw).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not valid: {e}."))
    })?;
    let ttl_ms = ask.ttl_seconds.unwrap_or(900).saturating_mul(1000);
    if !(1000..=MAX_TTL_MS).contains(&ttl_ms) {
        return Err(GatewayError::invalid_request(format!(
            "`ttl_seconds` must be from 1 to {}.",
            MAX_TTL_MS / 1000
        ))
        .param("ttl_seconds"));
    }
    if let Some(models) = &ask.models {
        if models.is_empty() {
            return Err(GatewayError::invalid_request(
                "`models` must name at least one model (leave it out for all of the key's).",
            )
            .param("models"));
        }
        if let Some(m) = models.iter().find(|m| !caller.allows(m)) {
            return Err(GatewayError::model_not_allowed(m).param("models"));
        }
    }
    let Some(secret) = caller.secret_tag() else {
        return Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            "This secret was replaced by a rotation: mint tokens with the new one.",
        ));
    };
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce)
        .map_err(|e| GatewayError::new(ErrorKind::Internal, format!("no randomness: {e}")))?;
    let expires_ms = crate::tenancy::store_now_ms() + ttl_ms;
    let claims = Claims {
        parent: caller.name.to_string(),
        stored: caller.stored().is_some(),
        models: ask.models,
        expires_ms,
        nonce: hex::encode(nonce),
        secret,
    };
    let token = gateway.tenancy.sign(&claims);
    let body = serde_json::to_vec(&serde_json::json!({
        "object": "token",
        "token": token,
        "expires_at": expires_ms,
        "models": claims.models,
    }))
    .unwrap_or_default();
    reply::write_json(session, 200, body.into()).await;
    Ok(())
}
