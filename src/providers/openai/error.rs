//! An OpenAI(-compatible) error status and body, as the client is told.

use super::*;

/// An OpenAI(-compatible) error status and body, as the client is told: the provider's own
/// error body is passed on unchanged when it is in OpenAI's format.
pub fn map_error(
    provider: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
) -> GatewayError {
    if status == 401 || status == 403 {
        return crate::providers::credentials_refused(provider, status);
    }
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        message: String,
    }
    let mut e = if serde_json::from_slice::<Envelope>(body).is_ok() {
        let mut e = GatewayError::new(crate::error::ErrorKind::Upstream(status), String::new());
        e.upstream_body = Some(crate::error::UpstreamBody::OpenAi(Bytes::copy_from_slice(
            body,
        )));
        e
    } else {
        let text = String::from_utf8_lossy(body);
        GatewayError::new(
            crate::error::ErrorKind::Upstream(status),
            format!(
                "Provider `{provider}` answered with status {status}: {}",
                crate::error::Printable(text.trim())
            ),
        )
        .code(Code::UpstreamError)
    };
    e.retry_after = retry_after.map(|s| s.min(u32::MAX as u64) as u32);
    e
}

/// The HTTP status an OpenAI error object's type or code stands for.
pub(super) fn status_of(kind: &str, code: &str) -> u16 {
    match (kind, code) {
        ("rate_limit_error" | "tokens" | "requests", _)
        | (_, "rate_limit_exceeded" | "insufficient_quota") => 429,
        ("invalid_request_error", _) => 400,
        ("authentication_error", _) | (_, "invalid_api_key") => 401,
        ("permission_error", _) => 403,
        ("not_found_error", _) => 404,
        (_, "server_overloaded" | "overloaded") | ("overloaded_error", _) => 503,
        _ => 500,
    }
}

/// A chat stream's error event (`{"error":{..}}`, OpenAI's error body), with its status.
pub(super) fn in_band(data: &[u8]) -> InBand {
    let v: Value = serde_json::from_slice(data).unwrap_or_default();
    let error = &v["error"];
    InBand::Reported {
        status: status_of(
            error["type"].as_str().unwrap_or(""),
            error["code"].as_str().unwrap_or(""),
        ),
        body: Bytes::copy_from_slice(data),
    }
}

/// A Responses stream's error (its `error` event, or the error of a failed response) as an
/// OpenAI error body, with its status.
pub(super) fn responses_in_band(error: &Value) -> InBand {
    let kind = error["type"].as_str().unwrap_or("");
    let code = error["code"].as_str().unwrap_or("");
    let body = serde_json::json!({"error": {
        "message": error["message"].as_str().unwrap_or("The provider reported an error."),
        "type": if kind.is_empty() { "server_error" } else { kind },
        "param": error.get("param").cloned().unwrap_or(Value::Null),
        "code": error.get("code").cloned().unwrap_or(Value::Null),
    }});
    InBand::Reported {
        status: status_of(kind, code),
        body: serde_json::to_vec(&body)
            .expect("a JSON value serializes")
            .into(),
    }
}

/// True when an event's data is an error object (`{"error": ..}`), without parsing it.
pub(super) fn is_error_object(data: &[u8]) -> bool {
    let rest = data.trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b"{") else {
        return false;
    };
    rest.trim_ascii_start().starts_with(b"\"error\"")
}
