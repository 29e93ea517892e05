//! An Anthropic error status and body, as the client is told.

use super::*;

/// An Anthropic error status and body, as the client is told.
pub fn map_error(
    provider: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
) -> GatewayError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(rename = "type")]
        kind: String,
        message: String,
    }
    let parsed = serde_json::from_slice::<Envelope>(body).ok();
    if status == 401 || status == 403 {
        return crate::providers::credentials_refused(provider, status);
    }
    let (kind_code, message) = match &parsed {
        Some(e) => (e.error.kind.clone(), e.error.message.clone()),
        None => (
            "api_error".to_string(),
            String::from_utf8_lossy(body).trim().to_string(),
        ),
    };
    let kind = match status {
        // Overloaded: the provider's trouble, and worth retrying elsewhere.
        529 => ErrorKind::Unavailable,
        s => ErrorKind::Upstream(s),
    };
    let mut e = GatewayError::new(
        kind,
        format!("Provider `{provider}`: {}", Printable(&message)),
    );
    e.fails_over = status == 529;
    e.code = Some(crate::providers::static_code(&kind_code));
    e.retry_after = retry_after.map(|s| s.min(u32::MAX as u64) as u32);
    if parsed.is_some() {
        e.upstream_body = Some(UpstreamBody::Anthropic(Bytes::copy_from_slice(body)));
    }
    e
}

/// The HTTP status an Anthropic error type stands for (the pairs Anthropic documents).
pub(super) fn status_of(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        // api_error, and types newer than this code.
        _ => 500,
    }
}

/// An Anthropic stream's `error` event: its data is Anthropic's error body.
pub(super) fn in_band(error: Option<&EventError<'_>>, data: &[u8]) -> InBand {
    InBand::Reported {
        status: status_of(error.map_or("api_error", |e| &e.kind)),
        body: Bytes::copy_from_slice(data),
    }
}
