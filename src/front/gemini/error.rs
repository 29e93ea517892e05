//! Errors in Google's format.

use super::*;

/// Google's canonical status name for an HTTP status.
pub fn google_status(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 | 529 => "UNAVAILABLE",
        408 | 504 => "DEADLINE_EXCEEDED",
        400..=499 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

/// A Google error body: `{"error":{"code":..,"message":..,"status":..}}`.
pub fn error_body(status: u16, message: &str) -> Bytes {
    let body = json!({"error": {
        "code": status,
        "message": message,
        "status": google_status(status),
    }});
    serde_json::to_vec(&body)
        .unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
        .into()
}
