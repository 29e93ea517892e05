//! One error type for everything a client can be told: the single place where HTTP statuses
//! and OpenAI error bodies are decided.

use bytes::Bytes;
use serde::Serialize;
use std::fmt;

/// What went wrong, as a client needs to know it. Each kind has exactly one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request cannot be understood (bad JSON, missing or wrongly typed fields).
    InvalidRequest,
    /// 401: no key, or a key the gateway does not know.
    Authentication,
    /// 403: a known key asked for something it may not use.
    PermissionDenied,
    /// 404: unknown model or path.
    NotFound,
    /// 405: known path, wrong method.
    MethodNotAllowed,
    /// 408: the client was too slow sending its request body.
    RequestTimeout,
    /// 413: request body over the configured limit.
    PayloadTooLarge,
    /// 429: rate limited (by the gateway or, passed on, by the provider).
    RateLimited,
    /// 500: a bug in the gateway.
    Internal,
    /// 502: the upstream could not be reached or answered with something unusable.
    BadGateway,
    /// 503: no upstream is available, or the gateway is shutting down.
    Unavailable,
    /// 504: the upstream did not answer in time.
    GatewayTimeout,
    /// An upstream's own error status, passed on.
    Upstream(u16),
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::GatewayTimeout => 504,
            ErrorKind::Upstream(status) => status,
        }
    }

    /// The OpenAI `error.type` for this kind.
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::RequestTimeout
            | ErrorKind::PayloadTooLarge => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Internal => "server_error",
            ErrorKind::BadGateway | ErrorKind::Unavailable | ErrorKind::GatewayTimeout => {
                "upstream_error"
            }
            ErrorKind::Upstream(429) => "rate_limit_error",
            ErrorKind::Upstream(400..=499) => "invalid_request_error",
            ErrorKind::Upstream(_) => "upstream_error",
        }
    }
}

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $wire:literal,)*) => {
        /// Why a request failed, as a closed set: its string is the `code` on the wire and a
        /// metrics label, so neither a client nor a provider can grow the set of values.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $name,)*
        }

        impl Code {
            /// Every code, for tests and metric descriptions.
            pub const ALL: &'static [Code] = &[$(Code::$name),*];

            /// The wire value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$name => $wire,)*
                }
            }
        }
    };
}

codes! {
    // The client's request.
    InvalidRequest = "invalid_request",
    InvalidJson = "invalid_json",
    /// A parameter the provider kind cannot honour, under the `error` policy.
    UnsupportedParameter = "unsupported_parameter",
    InvalidQuery = "invalid_query",
    MissingApiKey = "missing_api_key",
    InvalidApiKey = "invalid_api_key",
    ModelNotFound = "model_not_found",
    ModelNotAllowed = "model_not_allowed",
    /// A stored key used from an address it does not allow.
    AddressNotAllowed = "address_not_allowed",
    UnknownUrl = "unknown_url",
    MethodNotAllowed = "method_not_allowed",
    RequestTimeout = "request_timeout",
    RequestTooLarge = "request_too_large",
    /// A Responses `previous_response_id` the store does not hold (for this key).
    PreviousResponseNotFound = "previous_response_not_found",
    /// A Responses `item_reference` the store does not hold (for this key).
    ItemNotFound = "item_not_found",
    /// An Anthropic message thread (`thread`) sent to a model served by a translated
    /// upstream: the SDK then resends the whole conversation without it.
    ThreadUnsupportedRequest = "thread_unsupported_request",
    // The gateway's own state.
    RateLimitExceeded = "rate_limit_exceeded",
    /// A hard budget is spent (OpenAI's name for an exhausted quota).
    InsufficientQuota = "insufficient_quota",
    /// The shared counters of limits and budgets cannot be reached, and `fail_closed`.
    LimitsUnavailable = "limits_unavailable",
    ShuttingDown = "shutting_down",
    NoDeploymentAvailable = "no_deployment_available",
    /// The request was still in flight when the runtime stopped under it.
    Interrupted = "interrupted",
    /// A config file refused by a reload.
    InvalidConfig = "invalid_config",
    /// The admin API asked for the ledger, which is off.
    LedgerOff = "ledger_off",
    // An upstream's failure, as the gateway saw it.
    UpstreamTimeout = "upstream_timeout",
    UpstreamStreamCut = "upstream_stream_cut",
    UpstreamUnreachable = "upstream_unreachable",
    UpstreamResponseTooLarge = "upstream_response_too_large",
    UpstreamBadResponse = "upstream_bad_response",
    /// The provider refused the gateway's own credentials.
    UpstreamAuthFailed = "upstream_auth_failed",
    UpstreamError = "upstream_error",
    // An upstream's error, by the provider's own type.
    InvalidRequestError = "invalid_request_error",
    AuthenticationError = "authentication_error",
    PermissionError = "permission_error",
    NotFoundError = "not_found_error",
    Overloaded = "overloaded",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error to send to the client in OpenAI's format:
/// `{"error":{"message":..,"type":..,"param":..,"code":..}}`.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    pub param: Option<std::borrow::Cow<'static, str>>,
    pub code: Option<Code>,
    /// The failure is the deployment's, not the request's: another deployment may serve the
    /// request (set where the error is made; the configured retry statuses move on too).
    pub fails_over: bool,
    /// Trying the same deployment again may help (a transient failure); false where it
    /// cannot (the gateway's own key was refused): the request moves on at once.
    pub retries_help: bool,
    /// Seconds, passed on as `Retry-After`.
    pub retry_after: Option<u32>,
    /// The upstream's own error body, passed on unchanged to clients of its protocol.
    pub upstream_body: Option<UpstreamBody>,
    /// Fields written beside `error` in the body (a refused reload's `problems`).
    pub extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// A limited caller's rate-limit state, written as `x-ratelimit-*` headers.
    pub rate: Option<Box<crate::limits::RateHeaders>>,
}

/// An upstream's error body, by the protocol it is written in.
#[derive(Debug, Clone)]
pub enum UpstreamBody {
    OpenAi(Bytes),
    Anthropic(Bytes),
    Gemini(Bytes),
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
            param: None,
            code: None,
            fails_over: false,
            retries_help: true,
            retry_after: None,
            upstream_body: None,
            extra: None,
            rate: None,
        }
    }

    pub fn code(mut self, code: Code) -> Self {
        self.code = Some(code);
        self
    }

    /// Marks the failure as the deployment's: another may serve the request.
    pub fn fails_over(mut self) -> Self {
        self.fails_over = true;
        self
    }

    /// Marks the failure as one the same deployment would repeat: no retry there.
    pub fn not_retried(mut self) -> Self {
        self.retries_help = false;
        self
    }

    pub fn param(mut self, param: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message).code(Code::InvalidRequest)
    }

    pub fn missing_key() -> Self {
        Self::new(
            ErrorKind::Authentication,
            "Missing API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
        )
        .code(Code::MissingApiKey)
    }

    pub fn invalid_key() -> Self {
        Self::new(ErrorKind::Authentication, "Invalid API key.").code(Code::InvalidApiKey)
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!(
                "The model `{}` does not exist or is not served by this gateway; `GET /v1/models` lists the models this key may use.",
                Printable(model)
            ),
        )
        .param("model")
        .code(Code::ModelNotFound)
    }

    pub fn model_not_allowed(model: &str) -> Self {
        GatewayError::new(
            ErrorKind::PermissionDenied,
            format!("This key may not use the model `{}`.", Printable(model)),
        )
        .param("model")
        .code(Code::ModelNotAllowed)
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            format!("Request body is larger than the limit of {limit} bytes."),
        )
        .code(Code::RequestTooLarge)
    }

    /// A short description for lists of reasons: the message, or the code of a passed-on
    /// upstream body.
    pub fn message_or_code(&self) -> String {
        if !self.message.is_empty() {
            return self.message.clone();
        }
        let body = self.body();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        match v["error"]["message"].as_str() {
            Some(m) => format!("{} {}", self.status(), Printable(m)),
            None => format!("status {}", self.status()),
        }
    }

    /// What the error says, for a client: the message, or a passed-on upstream body's.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        if !self.message.is_empty() {
            return self.message.as_str().into();
        }
        let v: serde_json::Value = serde_json::from_slice(&self.body()).unwrap_or_default();
        match v["error"]["message"].as_str() {
            Some(m) => m.to_string().into(),
            None => format!("status {}", self.status()).into(),
        }
    }

    /// The JSON body, in OpenAI's error format.
    pub fn body(&self) -> Bytes {
        if let Some(UpstreamBody::OpenAi(b)) = &self.upstream_body {
            return b.clone();
        }
        let envelope = Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind.openai_type(),
                param: self.param.as_deref(),
                code: self.code.map(Code::as_str),
            },
            extra: self.extra.as_deref(),
        };
        serde_json::to_vec(&envelope)
            .unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
            .into()
    }

    /// The same error as one SSE event, for streams that already started.
    pub fn sse_event(&self) -> Bytes {
        sse_event(b"data: ", &self.body(), b"\n\n")
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message)
    }
}

impl std::error::Error for GatewayError {}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// Serializes an OpenAI error body.
pub fn error_body(kind: &str, message: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    let envelope = Envelope {
        error: Body {
            message,
            kind,
            param,
            code,
        },
        extra: None,
    };
    // Serializing plain strings into a Vec cannot fail.
    serde_json::to_vec(&envelope)
        .unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
        .into()
}

/// A JSON body on one line, for an SSE `data:` field: providers pretty-print their error
/// bodies (OpenAI's and Google's span lines), and a line break inside `data:` would end the
/// field there and leave the client half a JSON object.
pub fn one_line(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    if !body.iter().any(|b| matches!(b, b'\n' | b'\r')) {
        return Cow::Borrowed(body);
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => Cow::Owned(serde_json::to_vec(&v).expect("a JSON value serializes")),
        Err(_) => Cow::Owned(
            body.iter()
                .map(|&b| if matches!(b, b'\n' | b'\r') { b' ' } else { b })
                .collect(),
        ),
    }
}

/// An error body as one SSE event: `head`, the body on one line ([`one_line`]), `end`.
pub fn sse_event(head: &[u8], body: &[u8], end: &[u8]) -> Bytes {
    let body = one_line(body);
    let mut out = Vec::with_capacity(head.len() + body.len() + end.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&body);
    out.extend_from_slice(end);
    out.into()
}

/// Shows client-supplied text in a message without letting it grow the message unboundedly.
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 200;
        if self.0.len() <= MAX {
            return f.write_str(self.0);
        }
        let mut end = MAX;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}…", &self.0[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_openai_shaped() {
        let e = GatewayError::model_not_found("nope");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(e.status(), 404);
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    }

    #[test]
    fn codes_are_distinct_snake_case_wire_values() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(
                c.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{c}"
            );
        }
        let e = GatewayError::invalid_key();
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key");
        // Only errors that say so move a request on.
        assert!(!e.fails_over);
    }

    #[test]
    fn a_pretty_printed_upstream_body_is_one_line_in_a_stream_error_event() {
        let pretty = b"{\n  \"error\": {\n    \"message\": \"no\",\n    \"code\": 7\n  }\n}\n";
        let mut e = GatewayError::new(ErrorKind::Upstream(400), "");
        e.upstream_body = Some(UpstreamBody::OpenAi(Bytes::from_static(pretty)));
        let event = e.sse_event();
        let data = event
            .strip_prefix(b"data: ")
            .unwrap()
            .strip_suffix(b"\n\n")
            .unwrap();
        assert!(
            !data.contains(&b'\n'),
            "{}",
            String::from_utf8_lossy(&event)
        );
        let v: serde_json::Value = serde_json::from_slice(data).unwrap();
        assert_eq!(
            v,
            serde_json::from_slice::<serde_json::Value>(pretty).unwrap()
        );
        // A body that is not JSON still stays on its line.
        assert_eq!(&*one_line(b"a\r\nb"), b"a  b");
        assert!(matches!(one_line(b"{}"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn long_client_text_is_truncated_in_messages() {
        let long = "é".repeat(1000);
        let e = GatewayError::model_not_found(&long);
        assert!(e.message.len() < 400);
    }
}
