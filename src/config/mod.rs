//! Configuration: the TOML file, its validation (every problem with its location), and the
//! immutable [`Snapshot`] the request path reads.

pub mod file;
pub mod reload;

use crate::secret::Secret;
use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

pub use crate::upstream::Upstream;

/// One problem found in a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Everything wrong with a config file.
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.line == 0 {
                write!(f, "{}: {}", self.file, p.message)?;
            } else {
                write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The kinds of upstream API the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI chat completions, and every OpenAI-compatible vendor.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini (AI Studio).
    Gemini,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
        }
    }
}

/// Upstream timeouts per phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub write: Duration,
    /// Streams: request sent → first body chunk; `None`: as `first_byte`.
    pub ttft: Option<Duration>,
    /// All attempts of a request together; `None`: no limit.
    pub total: Option<Duration>,
}

impl Timeouts {
    const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(600),
        idle: Duration::from_secs(300),
        write: Duration::from_secs(30),
        ttft: None,
        total: None,
    };

    fn overridden_by(self, t: &file::TimeoutsSection) -> Timeouts {
        let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
        Timeouts {
            connect: ms(t.connect_ms, self.connect),
            first_byte: ms(t.first_byte_ms, self.first_byte),
            idle: ms(t.idle_ms, self.idle),
            write: ms(t.write_ms, self.write),
            ttft: t.ttft_ms.map(Duration::from_millis).or(self.ttft),
            total: match t.total_ms {
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
                None => self.total,
            },
        }
    }

    /// The deadline for a stream's first body chunk.
    pub fn ttft(&self) -> Duration {
        self.ttft.unwrap_or(self.first_byte).min(self.first_byte)
    }
}

/// A configured upstream API.
#[derive(Debug)]
pub struct Provider {
    pub name: Arc<str>,
    pub kind: ProviderKind,
    pub upstream: Upstream,
    pub api_key: Option<Secret<String>>,
    /// Extra headers; values may hold secrets, so they are never printed.
    pub headers: Vec<(HeaderName, Secret<HeaderValue>)>,
    pub timeouts: Timeouts,
    pub unsupported: crate::providers::chat::Unsupported,
    /// Anthropic only.
    pub default_max_tokens: u64,
    /// Anthropic only.
    pub anthropic_version: HeaderValue,
    /// Anthropic only: how `response_format` is sent.
    pub structured_output: crate::providers::anthropic::StructuredOutput,
    /// OpenAI kind: serves the Responses API too (Responses requests pass through).
    pub responses: bool,
    /// Active health checks: (interval, path under the base URL).
    pub health_check: Option<(Duration, String)>,
    /// Takes this provider's key and header values out of what it says back.
    pub redactor: crate::secret::Redactor,
}

/// One place a model is served: a provider and the model name it knows.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Stable across reloads: `provider/upstream model`. Health state is keyed by it.
    pub id: Arc<str>,
    pub provider: Arc<Provider>,
    /// The model name sent upstream.
    pub upstream_model: Arc<str>,
    pub weight: u32,
    pub priority: u32,
    /// `None`: no price known (the cost is recorded as unknown, not as zero).
    pub price: Option<Price>,
    /// The provider's timeouts with the model's overrides.
    pub timeouts: Timeouts,
    /// The most output tokens the model allows: a request asking for more is clamped.
    pub max_output_tokens: Option<u64>,
}

/// How a model picks among its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// In order of `priority`, then file order: failover.
    Priority,
    /// At random, in proportion to `weight`.
    Weighted,
    /// The one with the fewest requests in flight.
    LeastInFlight,
    /// Power of two choices over the EWMA of time to first token.
    Latency,
    /// Cheapest first.
    Cost,
}

/// A public model name and where it is served.
#[derive(Debug)]
pub struct ModelRoute {
    pub name: Arc<str>,
    /// The other names it is asked by.
    pub aliases: Vec<Arc<str>>,
    pub strategy: Strategy,
    pub deployments: Vec<Deployment>,
    /// Models tried, in order, after every deployment of this one.
    pub fallbacks: Vec<Arc<str>>,
}

/// `[routing]`: the attempt loop.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    pub attempts: u32,
    pub retries_per_deployment: u32,
    pub retry_statuses: Vec<u16>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// `[log]`: the access log's destination (`stdout`, `off` or a path), fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub access: Option<String>,
}

/// `[ledger]`, fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// `None`: no ledger (or, with `postgres`, none in SQLite).
    pub path: Option<std::path::PathBuf>,
    /// The ledger in PostgreSQL (`[store] url`), instead of `path`.
    pub postgres: Option<crate::store::sql::Url>,
    pub store_content: bool,
    pub queue: usize,
}

/// `[tracing]`, fixed at start.
#[derive(Debug)]
pub struct TracingSettings {
    /// The OTLP endpoint as written, and where spans are exported (`…/v1/traces`).
    pub otlp_endpoint: Option<String>,
    pub otlp: Option<crate::upstream::Upstream>,
    pub service_name: String,
}

/// `[admin]`: the operator's listener and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub key_hash: [u8; 32],
}

/// `[breaker]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    pub consecutive_failures: u32,
    pub error_rate: f64,
    pub min_requests: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

/// A client key, held as the SHA-256 of the key.
#[derive(Debug)]
pub struct ClientKey {
    pub name: Arc<str>,
    pub hash: [u8; 32],
    /// Allowed public model names and `provider/*` patterns; `None` allows all.
    pub models: Option<Vec<String>>,
    /// Its limits, as the one level a config key's request is charged to; `None`: none.
    pub levels: Option<Arc<crate::limits::Levels>>,
}

impl ClientKey {
    /// Whether this key may use a model known by `names` (a public name and its aliases, or
    /// `provider/model`).
    pub fn allows(&self, names: Names<'_>) -> bool {
        self.models
            .as_ref()
            .is_none_or(|allowed| names.allowed_by(allowed))
    }
}

/// The names a model is known by: the one it was asked by, and its route's own and aliases
/// (borrowed, so a request's check allocates nothing).
#[derive(Clone, Copy)]
pub struct Names<'a> {
    pub asked: &'a str,
    pub route: Option<(&'a str, &'a [Arc<str>])>,
}

impl<'a> Names<'a> {
    /// One name only.
    pub fn one(model: &'a str) -> Self {
        Names {
            asked: model,
            route: None,
        }
    }

    /// `route`, asked for as `asked`.
    pub fn of(asked: &'a str, route: &'a ModelRoute) -> Self {
        Names {
            asked,
            route: Some((&route.name, &route.aliases)),
        }
    }

    /// Whether an allowlist holds any of them.
    pub fn allowed_by(self, allowed: &[String]) -> bool {
        model_allowed(allowed, self.asked)
            || self.route.is_some_and(|(own, aliases)| {
                model_allowed(allowed, own) || aliases.iter().any(|a| model_allowed(allowed, a))
            })
    }
}

/// Whether an allowlist (public names, aliases and `provider/*` patterns) holds `model`.
pub fn model_allowed(allowed: &[String], model: &str) -> bool {
    allowed.iter().any(|a| {
        a == model
            || a.strip_suffix("/*").is_some_and(|p| {
                model.len() > p.len() + 1
                    && model.starts_with(p)
                    && model.as_bytes()[p.len()] == b'/'
            })
    })
}

/// Settings of the client listener, fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub h2c: bool,
    pub keepalive_secs: u64,
    pub body_timeout: Duration,
    /// The longest a request header may take once its first bytes came.
    pub header_timeout: Duration,
    /// How often a stream waiting for its first token sends the client a keep-alive.
    pub stream_keepalive: Option<Duration>,
    pub upstream_pool_size: usize,
    pub shutdown_grace: Duration,
    pub upgrade_sock: String,
    /// Proxies whose `client_ip_header` names the client.
    pub trusted_proxies: Vec<Cidr>,
    pub client_ip_header: http::HeaderName,
}

impl ServerSettings {
    /// The client's address: the connection's, or, when that is a trusted proxy, the last
    /// address in the proxy's header that is not itself a trusted proxy.
    pub fn client_ip(
        &self,
        peer: Option<std::net::IpAddr>,
        headers: &http::HeaderMap,
    ) -> Option<std::net::IpAddr> {
        let trusted = |a: &std::net::IpAddr| self.trusted_proxies.iter().any(|c| c.contains(*a));
        let peer = peer?;
        if !trusted(&peer) {
            return Some(peer);
        }
        let mut named = headers
            .get_all(&self.client_ip_header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .map(|a| a.parse::<std::net::IpAddr>().ok())
            .collect::<Vec<_>>();
        let mut client = peer;
        while let Some(a) = named.pop() {
            // Anything unreadable stops the walk: what is left of it cannot be believed.
            let Some(a) = a else { break };
            client = a;
            if !trusted(&a) {
                break;
            }
        }
        Some(client)
    }
}

/// `[limits]` and `[redis]`: how limits are kept. The backend is chosen at start.
#[derive(Debug, Clone)]
pub struct LimitsSettings {
    pub governor: crate::limits::Settings,
    pub redis: Option<crate::secret::Secret<String>>,
    pub default_output_tokens: u64,
}

/// A validated config, immutable; requests hold one `Arc<Snapshot>` from start to end.
#[derive(Debug)]
pub struct Snapshot {
    pub server: ServerSettings,
    pub keys: Vec<ClientKey>,
    pub providers: HashMap<Arc<str>, Arc<Provider>>,
    /// Public model names and aliases → route.
    pub models: HashMap<Arc<str>, Arc<ModelRoute>>,
    /// Public model names and aliases, sorted, for `/v1/models`.
    pub model_names: Vec<Arc<str>>,
    pub routing: RoutingSettings,
    pub breaker: BreakerSettings,
    pub admin: Option<AdminSettings>,
    pub log: LogSettings,
    pub ledger: LedgerSettings,
    pub responses: crate::store::responses::Settings,
    /// The store of teams and keys. Read at start.
    pub store: crate::tenancy::Location,
    /// How often the keys are read again from the store, whatever this process was told.
    pub store_refresh: Duration,
    pub tracing: TracingSettings,
    pub limits: LimitsSettings,
    /// Default prices by upstream model, for deployments without their own.
    pub prices: Arc<PriceTable>,
    /// Where `junction demo` runs its mock upstream.
    pub demo_mock_listen: Option<SocketAddr>,
}

impl Snapshot {
    /// Routes a requested model: a configured public name or alias, or `provider/model` for
    /// any configured provider.
    pub fn route(&self, model: &str) -> Option<Arc<ModelRoute>> {
        if let Some(r) = self.models.get(model) {
            return Some(r.clone());
        }
        let (provider_name, upstream_model) = model.split_once('/')?;
        if upstream_model.is_empty() {
            return None;
        }
        let provider = self.providers.get(provider_name)?;
        Some(Arc::new(ModelRoute {
            name: model.into(),
            aliases: Vec::new(),
            strategy: Strategy::Priority,
            deployments: vec![Deployment {
                id: model.into(),
                provider: provider.clone(),
                upstream_model: upstream_model.into(),
                weight: 1,
                priority: 0,
                price: self.prices.lookup(upstream_model),
                timeouts: provider.timeouts,
                max_output_tokens: None,
            }],
            fallbacks: Vec::new(),
        }))
    }

    /// Finds the client key whose hash is `hash`, comparing every configured key in constant
    /// time so that timing tells nothing about which keys exist.
    pub fn key_by_hash(&self, hash: &[u8; 32]) -> Option<&ClientKey> {
        use subtle::ConstantTimeEq;
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.hash.ct_eq(hash)) {
                found = Some(k);
            }
        }
        found
    }

    /// A short human summary of what this config serves, for `junction check`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "listen {} (h2c {}), max body {} bytes\n{} provider(s):\n",
            self.server.listen,
            if self.server.h2c { "on" } else { "off" },
            self.server.max_body_bytes,
            self.providers.len()
        );
        let mut providers: Vec<_> = self.providers.values().collect();
        providers.sort_by(|a, b| a.name.cmp(&b.name));
        for p in providers {
            s.push_str(&format!(
                "  {} ({}) {}{}\n",
                p.name,
                p.kind.as_str(),
                p.upstream,
                if p.api_key.is_some() { ", key set" } else { "" }
            ));
        }
        s.push_str(&format!("{} model(s):\n", self.model_names.len()));
        for name in &self.model_names {
            let r = &self.models[name];
            if *r.name != **name {
                s.push_str(&format!("  {name} -> alias of {}\n", r.name));
                continue;
            }
            let targets: Vec<String> = r.deployments.iter().map(|d| d.id.to_string()).collect();
            s.push_str(&format!("  {name} -> {}", targets.join(", ")));
            if r.deployments.len() > 1 {
                s.push_str(&format!(" ({:?})", r.strategy));
            }
            if !r.fallbacks.is_empty() {
                let f: Vec<&str> = r.fallbacks.iter().map(|f| &**f).collect();
                s.push_str(&format!(", then {}", f.join(", ")));
            }
            s.push('\n');
        }
        s.push_str(&format!("{} client key(s):", self.keys.len()));
        for k in &self.keys {
            match &k.models {
                None => s.push_str(&format!("\n  {} (all models)", k.name)),
                Some(m) => s.push_str(&format!("\n  {} ({})", k.name, m.join(", "))),
            }
        }
        s
    }
}

/// SHA-256 of a client key.
pub fn hash_key(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

mod cidr;
pub use cidr::Cidr;
mod prices;
mod validate;
pub use prices::*;
pub use validate::*;

#[cfg(test)]
mod tests;
