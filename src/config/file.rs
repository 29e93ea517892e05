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
    #[serde(default)]
    pub routing: RoutingSection,
    #[serde(default)]
    pub log: LogSection,
    pub admin: Option<AdminSection>,
    #[serde(default)]
    pub breaker: BreakerSection,
    pub demo: Option<DemoSection>,
    /// A price table (the format of the bundled `conf/prices.toml`) whose entries win over
    /// the bundled ones; relative to the config file.
    pub prices_file: Option<Spanned<String>>,
    #[serde(default)]
    pub ledger: LedgerSection,
    #[serde(default)]
    pub responses: ResponsesSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub tracing: TracingSection,
    #[serde(default)]
    pub limits: LimitsSection,
    pub redis: Option<RedisSection>,
}

/// `[limits]`: how limits and budgets are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// A request's hold (its place in flight, its estimated cost) lasts this long unless
    /// its replica keeps it alive: a replica that dies never pins a budget. Default 300.
    pub hold_secs: u64,
    /// Percents of a budget at which an alert is raised (a log line and
    /// `junction_budget_alerts_total`). Default `[80, 100]`.
    pub alert_at: Vec<u32>,
    /// The output a request is assumed to ask for when it gives no `max_tokens` and its
    /// model's limit is not configured. Default 4096.
    pub default_output_tokens: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            hold_secs: 300,
            alert_at: vec![80, 100],
            default_output_tokens: 4096,
        }
    }
}

/// `[redis]`: limits and budgets shared by every replica on one Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://host:port/db` (or `${NAME}`).
    pub url: Spanned<String>,
    /// `fail_closed` (default: refuse with 503 while Redis is unreachable) or `fail_open`
    /// (admit without limits).
    pub on_error: Option<Spanned<String>>,
}

/// `limits = { … }` of a key: what it may use per minute, at once, and per period.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute (the prompt and the output the request allows are held until the
    /// answer says what was used).
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel: Option<u64>,
    /// USD per period.
    pub budget_usd: Option<f64>,
    /// `day`, `week`, `month` (default) or `total`; UTC.
    pub budget_period: Option<String>,
    /// Alert only, never refuse. Default false (a hard budget).
    #[serde(default)]
    pub budget_soft: bool,
}

/// `[ledger]`: the usage ledger, an SQLite file written in the background.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// Default true.
    pub enabled: bool,
    /// Relative to the config file. Default `junction-ledger.sqlite`.
    pub path: String,
    /// Store prompts and completions too. Default false: only numbers are stored.
    pub store_content: bool,
    /// Records waiting to be written; beyond this new ones are dropped (and counted).
    /// Default 65536.
    pub queue: usize,
}

impl Default for LedgerSection {
    fn default() -> Self {
        LedgerSection {
            enabled: true,
            path: "junction-ledger.sqlite".into(),
            store_content: false,
            queue: 65536,
        }
    }
}

/// `[store]`: teams and keys created at run time (the admin API), and their audit trail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// An SQLite file, relative to the config file. Default `junction-store.sqlite`; empty:
    /// memory only (every stored key is gone at a restart).
    pub path: String,
    /// A PostgreSQL database (`postgres://user@host:port/db`, or a `${NAME}` reference to one
    /// in the environment): the store and the ledger go there instead, shared by every replica
    /// on it. Junction creates and migrates their tables.
    pub url: Option<Spanned<String>>,
    /// Every this many seconds the keys are read again from the store, as a backstop for
    /// changes this process was not told of (another process on the same file). Default 30.
    pub refresh_secs: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: "junction-store.sqlite".into(),
            url: None,
            refresh_secs: 30,
        }
    }
}

/// `[responses]`: the Responses API's stored responses (`store`, `previous_response_id`,
/// `item_reference`), an SQLite file beside the ledger.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponsesSection {
    /// Keep responses created with `store` on (the Responses API's default). Default true;
    /// false: the door is stateless (references are refused).
    pub store: bool,
    /// Relative to the config file. Default `junction-responses.sqlite`; empty: memory only.
    pub path: String,
    /// Days a stored response is kept. Default 30.
    pub retention_days: u32,
    /// What the most recent responses may take in memory, in MiB. Default 64.
    pub memory_mb: u32,
}

impl Default for ResponsesSection {
    fn default() -> Self {
        ResponsesSection {
            store: true,
            path: "junction-responses.sqlite".into(),
            retention_days: 30,
            memory_mb: 64,
        }
    }
}

/// `[tracing]`: W3C trace context and OTLP export.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSection {
    /// OTLP/HTTP endpoint to export spans to (JSON encoding), e.g.
    /// `http://127.0.0.1:4318`; `/v1/traces` is appended. Default: no export.
    pub otlp_endpoint: Option<Spanned<String>>,
    /// `service.name` of the exported spans. Default `junction`.
    pub service_name: Option<String>,
}

/// A price table file: `[models."name"]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesFile {
    pub models: BTreeMap<String, PriceEntry>,
}

/// `[routing]`: the attempt loop.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSection {
    /// Upstream attempts per request, retries and failovers together. Default 4.
    pub attempts: u32,
    /// Extra tries of the same deployment before moving to the next. Default 1.
    pub retries_per_deployment: u32,
    /// Statuses that move a request on (retry or fail over). Default 429, 500, 502, 503,
    /// 504, 529.
    pub retry_statuses: Vec<u16>,
    /// Backoff before retrying the same deployment: full jitter over base × 2^n, capped, ms.
    /// Defaults 100 and 2000.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for RoutingSection {
    fn default() -> Self {
        RoutingSection {
            attempts: 4,
            retries_per_deployment: 1,
            retry_statuses: vec![429, 500, 502, 503, 504, 529],
            backoff_base_ms: 100,
            backoff_max_ms: 2000,
        }
    }
}

/// `[breaker]`: when a deployment is taken out of rotation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSection {
    /// Consecutive failures that open the breaker. Default 5.
    pub consecutive_failures: u32,
    /// Error rate over the window that opens it (0..1). Default 0.5.
    pub error_rate: f64,
    /// Requests in the window before the error rate counts. Default 20.
    pub min_requests: u32,
    /// The sliding window, seconds. Default 30.
    pub window_secs: u64,
    /// How long an open breaker stays open before one probe may pass, ms. Default 10000.
    pub cooldown_ms: u64,
}

impl Default for BreakerSection {
    fn default() -> Self {
        BreakerSection {
            consecutive_failures: 5,
            error_rate: 0.5,
            min_requests: 20,
            window_secs: 30,
            cooldown_ms: 10_000,
        }
    }
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
    /// Longest time a request header may take once its first bytes came, in ms (a client
    /// sending it a byte at a time holds no connection for longer). Default 10000.
    pub header_timeout_ms: u64,
    /// While a stream waits for its first token, a keep-alive (an SSE comment; Anthropic's
    /// `ping` event at `/v1/messages`) goes to the client this often, in ms; 0: never.
    /// Default 15000.
    pub stream_keepalive_ms: u64,
    /// Idle upstream connections kept per worker pool. Default 128.
    pub upstream_pool_size: usize,
    /// On SIGTERM (and after a binary upgrade), the longest wait for requests in flight to
    /// finish, seconds. Default 60.
    pub shutdown_grace_secs: u64,
    /// The Unix socket listeners are handed over on in a binary upgrade.
    /// Default `/tmp/junction_upgrade.sock`.
    pub upgrade_sock: String,
    /// Proxies (addresses or CIDR ranges) whose `client_ip_header` is believed: a request
    /// from one of them is from the address it names. Default none: the client address is
    /// the connection's.
    pub trusted_proxies: Vec<Spanned<String>>,
    /// The header a trusted proxy names the client in. Default `x-forwarded-for`.
    pub client_ip_header: String,
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
            header_timeout_ms: 10_000,
            stream_keepalive_ms: 15_000,
            upstream_pool_size: 128,
            shutdown_grace_secs: 60,
            upgrade_sock: "/tmp/junction_upgrade.sock".into(),
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".into(),
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
    /// Streams: from the request sent to the first body chunk; beyond it the request moves to
    /// the next deployment (before anything reached the client). Default: `first_byte_ms`.
    pub ttft_ms: Option<u64>,
    /// The whole request, all attempts together; 0 = no limit. Default 0.
    pub total_ms: Option<u64>,
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
    /// Its limits and budget. Absent: none.
    pub limits: Option<Spanned<LimitsEntry>>,
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
    /// Anthropic: how `response_format` is sent: `native` (`output_config.format`), `tool` (a
    /// forced tool whose input is the answer) or `auto` (native where the model has it:
    /// Claude 4.5 and later, Opus 4.1). Default `auto`.
    pub structured_output: Option<Spanned<String>>,
    /// OpenAI kind: the provider also serves the Responses API (`{base_url}/responses`), so
    /// Responses requests pass through instead of being translated. Default false.
    #[serde(default)]
    pub responses: bool,
    /// Active health checks: an unbilled `GET {base_url}{health_check_path}` every this many
    /// ms; a failed check counts as a failure of each of the provider's deployments.
    /// Default: off.
    pub health_check_ms: Option<u64>,
    /// Default `/models` (every kind lists its models there, free of charge).
    pub health_check_path: Option<String>,
}

/// `[models.NAME]`: a public model name and where it is served: one deployment given
/// inline (`provider`, `model`), or a list of `[[models.NAME.deployments]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// A key of `[providers]` (single-deployment shorthand).
    pub provider: Option<Spanned<String>>,
    /// The model name the provider knows. Default: the public name.
    pub model: Option<String>,
    #[serde(default)]
    pub deployments: Vec<DeploymentEntry>,
    /// `priority` (default), `weighted`, `least_inflight`, `latency`, `cost`.
    pub strategy: Option<Spanned<String>>,
    /// Models tried, in order, when every deployment of this one failed.
    #[serde(default)]
    pub fallbacks: Vec<Spanned<String>>,
    /// Other names for this model (e.g. ids that agents hard-code).
    #[serde(default)]
    pub aliases: Vec<Spanned<String>>,
    /// Overrides of the provider timeouts for this model.
    #[serde(default)]
    pub timeouts: TimeoutsSection,
    /// The most output tokens the (inline) deployment's model allows; a request asking for
    /// more is clamped to it.
    pub max_output_tokens: Option<u64>,
}

/// `[[models.NAME.deployments]]`: one place a model is served.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentEntry {
    pub provider: Spanned<String>,
    /// Default: the public name.
    pub model: Option<String>,
    /// Share of traffic under `weighted`. Default 1.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Lower goes first under `priority`. Default 0, then file order.
    #[serde(default)]
    pub priority: Option<u32>,
    /// USD per million tokens.
    #[serde(default)]
    pub price: Option<PriceEntry>,
    /// The most output tokens this deployment's model allows; requests are clamped to it.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
}

/// Prices in USD per million tokens.
#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
}

/// `[log]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// One JSON line per request: `stdout` (default), `off`, or a file path.
    pub access: Option<String>,
}

/// `[admin]`: the operator's listener, apart from the clients'.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin listener, e.g. `127.0.0.1:9091`.
    pub listen: Spanned<String>,
    /// SHA-256 of the admin key (hex).
    pub sha256: Option<Spanned<String>>,
    /// Or the admin key as an environment reference, `${NAME}`.
    pub key: Option<Spanned<String>>,
}

/// `[demo]`: used by `junction demo` only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSection {
    /// Where the demo runs the mock upstream.
    pub mock_listen: String,
}
