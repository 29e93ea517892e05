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
    e.retry_after = retry_after;
    e
}
