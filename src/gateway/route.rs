//! Step 4, route: the model a request names, to the configured route that serves it (a model,
//! an alias, or `provider/model` straight to a provider), if the caller may use it.

use super::auth::Caller;
use crate::config::{ModelRoute, ProviderKind, Snapshot};
use crate::error::{GatewayError, Printable};
use crate::providers::gemini;
use std::sync::Arc;

/// The route of a model: 404 when there is none, 400 when the client addressed a provider's
/// model directly (`provider/model`) by a name that provider's requests cannot carry.
pub fn resolve(snapshot: &Snapshot, model: &str) -> Result<Arc<ModelRoute>, GatewayError> {
    let route = snapshot
        .route(model)
        .ok_or_else(|| GatewayError::model_not_found(model))?;
    if !snapshot.models.contains_key(model) {
        let d = &route.deployments[0];
        if d.upstream_model.chars().any(char::is_control) {
            return Err(GatewayError::invalid_request(format!(
                "The model `{}` has control characters: no provider's model is named so.",
                Printable(&model.escape_debug().to_string())
            ))
            .param("model"));
        }
        if d.provider.kind == ProviderKind::Gemini && !gemini::fits_path(&d.upstream_model) {
            return Err(GatewayError::invalid_request(format!(
                "The model `{}` cannot be sent to provider `{}`: a Gemini model name has only letters, digits and `-._@/`, and no empty, `.` or `..` part.",
                Printable(model),
                d.provider.name
            ))
            .param("model"));
        }
    }
    Ok(route)
}

/// The caller's allowlist, the one place it is checked: 403 when it may not use `route`
/// (asked for as `model`).
pub fn check(caller: Caller<'_>, model: &str, route: &ModelRoute) -> Result<(), GatewayError> {
    if caller.may_use(model, route) {
        Ok(())
    } else {
        Err(GatewayError::model_not_allowed(model))
    }
}

/// The route of a model the caller may use: 404 when there is none, 403 when it may not.
pub fn allowed(
    snapshot: &Snapshot,
    caller: Caller<'_>,
    model: &str,
) -> Result<Arc<ModelRoute>, GatewayError> {
    let route = resolve(snapshot, model)?;
    check(caller, model, &route)?;
    Ok(route)
}

/// The route's metrics label: a configured model's name, `provider/*` for a direct address
/// (so that clients cannot grow the label set).
pub fn label(snapshot: &Snapshot, route: &ModelRoute) -> Arc<str> {
    if snapshot.models.contains_key(&*route.name) {
        route.name.clone()
    } else {
        format!("{}/*", route.deployments[0].provider.name).into()
    }
}
