//! The config file's schema, exactly as written in TOML. Unknown keys are errors.
//! [`super::load`] validates it and turns it into a [`super::Snapshot`].

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub timeouts: TimeoutsSection,
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderEntry>,
    #[serde(default)]
    pub models: BTreeMap<Spanned<String>, ModelEntry>,
    pub demo: Option<DemoSection>,
}

/// `[server]`: the client listener and request limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address of the client listener. Default `127.0.0.1:8080`.
    pub listen: Spanned<String>,
    /// Worker threads; 0 means one per core. Default 0.
    pub threads: usize,
    /// Largest request body accepted, in bytes. Default 32 MiB.
    pub max_body_bytes: usize,
    /// Accept HTTP/2 with prior knowledge (h2c) on the client listener. Default true.
    pub h2c: bool,
    /// How long an idle client keep-alive connection stays open, in seconds. Default 60.
    pub keepalive_secs: u64,
    /// Longest time a client may take to send its request body, in ms. Default 30000.
    pub body_timeout_ms: u64,
    /// Idle upstream connections kept per worker pool. Default 128.
    pub upstream_pool_size: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: Spanned::new(0..0, "127.0.0.1:8080".to_string()),
            threads: 0,
            max_body_bytes: 32 * 1024 * 1024,
            h2c: true,
            keepalive_secs: 60,
            body_timeout_ms: 30_000,
            upstream_pool_size: 128,
        }
    }
}

/// `[timeouts]` (and `[providers.X.timeouts]`): upstream timeouts per phase, in ms.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSection {
    /// TCP (and TLS) connect. Default 5000.
    pub connect_ms: Option<u64>,
    /// From the request sent to the response header (for a non-streaming request, this covers
    /// the whole generation). Default 600000.
    pub first_byte_ms: Option<u64>,
    /// Longest silence between two chunks of a response body. Default 300000.
    pub idle_ms: Option<u64>,
    /// Sending the request to the upstream. Default 30000.
    pub write_ms: Option<u64>,
}

/// `[[keys]]`: a client key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Name of the key, used in logs and accounting (never the key itself).
    pub name: Spanned<String>,
    /// SHA-256 of the key, 64 hex digits.
    pub sha256: Option<Spanned<String>>,
    /// The key as an environment reference, `${NAME}`, hashed at load.
    pub key: Option<Spanned<String>>,
    /// Models this key may use (public names, or `provider/*`). Absent: all.
    pub models: Option<Vec<Spanned<String>>>,
}

/// `[providers.NAME]`: one upstream API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// `openai` (OpenAI and every OpenAI-compatible API), `anthropic` (Messages API) or
    /// `gemini` (Google AI Studio).
    pub kind: Spanned<String>,
    /// The API root with its version: `https://api.openai.com/v1`,
    /// `https://api.anthropic.com/v1`, `https://generativelanguage.googleapis.com/v1beta`.
    pub base_url: Spanned<String>,
    /// `${ENV}` reference to the provider key. Absent: no key sent.
    pub api_key: Option<Spanned<String>>,
    /// Extra headers sent upstream; values may be `${ENV}` references.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Offer HTTP/2: by ALPN over TLS (default true), with prior knowledge over plain TCP
    /// (default false).
    pub http2: Option<bool>,
    /// PEM file of the CAs trusted for this provider's TLS certificate, instead of the
    /// system's roots (for internal endpoints). Default: the system's roots.
    pub ca_file: Option<Spanned<String>>,
    /// Overrides of `[timeouts]` for this provider.
    #[serde(default)]
    pub timeouts: TimeoutsSection,
    /// `reject` (400 naming the parameter, default) or `drop`: what to do with a request
    /// parameter this provider cannot honour. Translated kinds only.
    pub unsupported_params: Option<Spanned<String>>,
    /// Anthropic: `max_tokens` sent when the client gives none. Default 4096.
    pub default_max_tokens: Option<u64>,
    /// Anthropic: the `anthropic-version` header. Default `2023-06-01`.
    pub anthropic_version: Option<String>,
}

/// `[models.NAME]`: a public model name and where it is served.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// A key of `[providers]`.
    pub provider: Spanned<String>,
    /// The model name the provider knows. Default: the public name.
    pub model: Option<String>,
}

/// `[demo]`: used by `junction demo` only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSection {
    /// Where the demo runs the mock upstream.
    pub mock_listen: String,
}
