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

/// The HTTP status and message for an OpenAI error object (or a bare message).
pub(super) fn error_of(error: &Value) -> (u16, &str) {
    let message = error_message(error);
    let kind = error["type"].as_str().unwrap_or("");
    let code = error["code"].as_str().unwrap_or("");
    let status = match (kind, code) {
        ("rate_limit_error", _) | (_, "rate_limit_exceeded" | "insufficient_quota") => 429,
        ("overloaded" | "overloaded_error", _) | (_, "overloaded" | "server_overloaded") => 503,
        ("invalid_request_error", _) => 400,
        ("authentication_error", _) => 401,
        ("permission_error", _) => 403,
        ("not_found_error", _) => 404,
        ("upstream_error", _) | (_, "upstream_error") => 502,
        (_, "timeout" | "upstream_timeout") => 504,
        _ => error["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c))
            .unwrap_or(500),
    };
    (status, message)
}
