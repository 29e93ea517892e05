//! A Gemini error status and body, as the client is told.

use super::*;

/// A Gemini error status and body, as the client is told.
pub fn map_error(
    provider: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
) -> GatewayError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = &v["error"];
    let reason_is = |r: &str| {
        err["details"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["reason"] == r))
    };
    // Gemini answers a bad key with 400 INVALID_ARGUMENT / API_KEY_INVALID.
    if status == 401 || status == 403 || reason_is("API_KEY_INVALID") {
        return crate::providers::credentials_refused(provider, status);
    }
    let message = err["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let status_name = err["status"].as_str().unwrap_or("UNKNOWN");
    // RetryInfo.retryDelay ("34.4s") when the header said nothing.
    let retry_after = retry_after.or_else(|| {
        err["details"].as_array()?.iter().find_map(|d| {
            let delay = d["retryDelay"].as_str()?.strip_suffix('s')?;
            delay.parse::<f64>().ok().map(|s| s.ceil() as u64)
        })
    });
    let mut e = GatewayError::new(
        ErrorKind::Upstream(status),
        format!("Provider `{provider}`: {}", Printable(&message)),
    );
    e.code = Some(crate::providers::static_code(status_name));
    e.retry_after = retry_after.map(|s| s.min(u32::MAX as u64) as u32);
    if err.is_object() {
        e.upstream_body = Some(crate::error::UpstreamBody::Gemini(Bytes::copy_from_slice(
            body,
        )));
    }
    e
}

/// The usage of a whole `generateContent` response, from the end of its body.
pub fn usage_in_tail(tail: &[u8]) -> Option<Usage> {
    crate::usage::in_tail::<GUsage>(tail, b"\"usageMetadata\"").map(Usage::from)
}

/// The HTTP status of a Google error: its `code`, else the one its canonical status name
/// stands for.
pub(super) fn status_of(code: Option<u16>, status: Option<&str>) -> u16 {
    if let Some(code) = code.filter(|c| (400..600).contains(c)) {
        return code;
    }
    match status.unwrap_or("") {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ABORTED" | "ALREADY_EXISTS" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

/// An error object in a Gemini stream: its data is Google's error body.
pub(super) fn in_band(error: &GError<'_>, data: &[u8]) -> InBand {
    InBand::Reported {
        status: status_of(error.code, error.status.as_deref()),
        body: Bytes::copy_from_slice(data),
    }
}
