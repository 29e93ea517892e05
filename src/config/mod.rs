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
    /// OpenAI kind: serves the Responses API too (Responses requests pass through).
    pub responses: bool,
    /// Active health checks: (interval, path under the base URL).
    pub health_check: Option<(Duration, String)>,
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

/// Prices in micro-dollars per million tokens (exact integers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write: u64,
}

impl From<file::PriceEntry> for Price {
    fn from(p: file::PriceEntry) -> Price {
        let micro = |usd: f64| (usd.max(0.0) * 1_000_000.0).round() as u64;
        Price {
            input: micro(p.input),
            output: micro(p.output),
            cached_input: micro(p.cached_input.unwrap_or(p.input)),
            cache_write: micro(p.cache_write.unwrap_or(p.input)),
        }
    }
}

/// The bundled default prices (`conf/prices.toml`).
const BUNDLED_PRICES: &str = include_str!("../../conf/prices.toml");

/// Prices by upstream model name: the bundled table with the operator's file over it.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: HashMap<String, Price>,
}

impl PriceTable {
    pub fn bundled() -> PriceTable {
        let f: file::PricesFile =
            toml::from_str(BUNDLED_PRICES).expect("conf/prices.toml is valid");
        PriceTable {
            models: f.models.into_iter().map(|(k, v)| (k, v.into())).collect(),
        }
    }

    fn merge(&mut self, f: file::PricesFile) {
        self.models
            .extend(f.models.into_iter().map(|(k, v)| (k, v.into())));
    }

    /// The price of `model`: its exact name, else the entry it extends with a dated
    /// snapshot suffix (`-2024-08-06`, `-20250929`, `-0613`) or `-latest`; a `vendor/` prefix
    /// is ignored. Anything else (`gpt-5-pro`, `claude-opus-4-5`) is a different model, whose
    /// price is unknown until it is listed.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        let bare = model.rsplit('/').next().unwrap_or(model);
        if let Some(p) = self.models.get(bare) {
            return Some(*p);
        }
        // The snapshot suffix starts at the first `-` followed by 4 digits or by `latest`.
        let b = bare.as_bytes();
        let at = (0..b.len()).find(|&i| {
            b[i] == b'-'
                && (b[i + 1..].starts_with(b"latest")
                    || b.get(i + 1..i + 5)
                        .is_some_and(|d| d.iter().all(u8::is_ascii_digit)))
        })?;
        self.models.get(&bare[..at]).copied()
    }
}

impl Price {
    /// Cost of a typical request (1000 tokens in, 500 out), for ordering by cost.
    pub fn typical_cost(&self) -> u64 {
        self.input * 1000 + self.output * 500
    }
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
    /// `None`: no ledger.
    pub path: Option<std::path::PathBuf>,
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
}

impl ClientKey {
    /// Whether this key may use `model` (a public name or `provider/model`).
    pub fn allows(&self, model: &str) -> bool {
        let Some(allowed) = &self.models else {
            return true;
        };
        allowed.iter().any(|a| {
            a == model
                || a.strip_suffix("/*").is_some_and(|p| {
                    model.len() > p.len() + 1
                        && model.starts_with(p)
                        && model.as_bytes()[p.len()] == b'/'
                })
        })
    }
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
    /// How often a stream waiting for its first token sends the client a keep-alive.
    pub stream_keepalive: Option<Duration>,
    pub upstream_pool_size: usize,
    pub shutdown_grace: Duration,
    pub upgrade_sock: String,
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
    pub tracing: TracingSettings,
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

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Snapshot, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: name.clone(),
        problems: vec![Problem {
            line: 0,
            column: 0,
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    parse_in(&name, &text, dir, &|k| std::env::var(k).ok())
}

/// Validates config text; `env` looks up `${NAME}` references.
pub fn parse(
    file_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Snapshot, ConfigError> {
    parse_in(file_name, text, Path::new(""), env)
}

/// Validates config text whose relative paths are relative to `dir`.
pub fn parse_in(
    file_name: &str,
    text: &str,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Snapshot, ConfigError> {
    let mut v = Validator {
        text,
        env,
        dir,
        problems: Vec::new(),
    };
    let file: file::File = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let (line, column) = e.span().map_or((0, 0), |s| v.position(s.start));
            return Err(ConfigError {
                file: file_name.to_string(),
                problems: vec![Problem {
                    line,
                    column,
                    message: e.message().trim().to_string(),
                }],
            });
        }
    };
    let snapshot = v.snapshot(file);
    if v.problems.is_empty() {
        Ok(snapshot)
    } else {
        v.problems.sort_by_key(|p| (p.line, p.column));
        Err(ConfigError {
            file: file_name.to_string(),
            problems: v.problems,
        })
    }
}

struct Validator<'a> {
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file's directory: relative paths start there.
    dir: &'a Path,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, column)
    }

    fn problem<T>(&mut self, at: &Spanned<T>, message: String) {
        let span = at.span();
        let (line, column) = if span.end == 0 {
            (0, 0)
        } else {
            self.position(span.start)
        };
        self.problems.push(Problem {
            line,
            column,
            message,
        });
    }

    /// Resolves a `${NAME}` reference. `what` names the field in messages.
    fn env_ref(&mut self, value: &Spanned<String>, what: &str) -> Option<String> {
        let Some(var) = env_reference(value.get_ref()) else {
            self.problem(
                value,
                format!(
                    "{what} must be an environment reference like \"${{NAME}}\", so that the secret stays out of the file"
                ),
            );
            return None;
        };
        match (self.env)(var) {
            Some(v) if !v.is_empty() => Some(v),
            Some(_) => {
                self.problem(
                    value,
                    format!("{what}: environment variable {var} is empty"),
                );
                None
            }
            None => {
                self.problem(
                    value,
                    format!("{what}: environment variable {var} is not set"),
                );
                None
            }
        }
    }

    fn snapshot(&mut self, f: file::File) -> Snapshot {
        let listen = match f.server.listen.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.problem(
                    &f.server.listen,
                    format!(
                        "server.listen: `{}` is not an address like 127.0.0.1:8080",
                        f.server.listen.get_ref()
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };
        if f.server.max_body_bytes == 0 {
            self.problems.push(Problem {
                line: 0,
                column: 0,
                message: "server.max_body_bytes must be more than 0".into(),
            });
        }
        let server = ServerSettings {
            listen,
            threads: f.server.threads,
            max_body_bytes: f.server.max_body_bytes.max(1),
            h2c: f.server.h2c,
            keepalive_secs: f.server.keepalive_secs,
            body_timeout: Duration::from_millis(f.server.body_timeout_ms),
            stream_keepalive: (f.server.stream_keepalive_ms > 0)
                .then(|| Duration::from_millis(f.server.stream_keepalive_ms)),
            upstream_pool_size: f.server.upstream_pool_size,
            shutdown_grace: Duration::from_secs(f.server.shutdown_grace_secs),
            upgrade_sock: f.server.upgrade_sock.clone(),
        };
        let timeouts = Timeouts::DEFAULT.overridden_by(&f.timeouts);

        // Names of every provider in the file, valid or not: a reference to an invalid one
        // is not a second problem.
        let declared: Vec<String> = f.providers.keys().cloned().collect();
        let mut providers = HashMap::new();
        for (name, p) in f.providers {
            if let Some(provider) = self.provider(&name, p, timeouts) {
                providers.insert(Arc::from(name.as_str()), Arc::new(provider));
            }
        }

        let prices = Arc::new(self.prices(f.prices_file.as_ref()));
        let models = self.models(&f.models, &providers, &declared, &prices);
        let mut model_names: Vec<Arc<str>> = models.keys().cloned().collect();
        model_names.sort();
        let routing = RoutingSettings {
            attempts: f.routing.attempts.max(1),
            retries_per_deployment: f.routing.retries_per_deployment,
            retry_statuses: f.routing.retry_statuses.clone(),
            backoff_base: Duration::from_millis(f.routing.backoff_base_ms),
            backoff_max: Duration::from_millis(f.routing.backoff_max_ms),
        };
        if !(0.0..=1.0).contains(&f.breaker.error_rate) {
            self.problems.push(Problem {
                line: 0,
                column: 0,
                message: "breaker.error_rate must be between 0 and 1".into(),
            });
        }
        let breaker = BreakerSettings {
            consecutive_failures: f.breaker.consecutive_failures.max(1),
            error_rate: f.breaker.error_rate,
            min_requests: f.breaker.min_requests,
            window: Duration::from_secs(f.breaker.window_secs.max(1)),
            cooldown: Duration::from_millis(f.breaker.cooldown_ms),
        };

        let keys = self.keys(f.keys, &f.models, &declared);

        let demo_mock_listen = f
            .demo
            .and_then(|d| match d.mock_listen.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.problems.push(Problem {
                        line: 0,
                        column: 0,
                        message: format!(
                            "demo.mock_listen: `{}` is not an address like 127.0.0.1:8081",
                            d.mock_listen
                        ),
                    });
                    None
                }
            });

        let admin = f.admin.as_ref().and_then(|a| self.admin(a));
        Snapshot {
            server,
            keys,
            providers,
            models,
            model_names,
            routing,
            breaker,
            admin,
            log: LogSettings {
                access: Some(f.log.access.clone().unwrap_or_else(|| "stdout".into())),
            },
            ledger: LedgerSettings {
                path: (f.ledger.enabled && !f.ledger.path.is_empty())
                    .then(|| self.dir.join(&f.ledger.path)),
                store_content: f.ledger.store_content,
                queue: f.ledger.queue.max(1),
            },
            tracing: self.tracing(&f.tracing),
            prices,
            demo_mock_listen,
        }
    }

    fn provider(
        &mut self,
        name: &str,
        p: file::ProviderEntry,
        defaults: Timeouts,
    ) -> Option<Provider> {
        let timeouts = defaults.overridden_by(&p.timeouts);
        let kind = match p.kind.get_ref().as_str() {
            "openai" => Some(ProviderKind::OpenAi),
            "anthropic" => Some(ProviderKind::Anthropic),
            "gemini" => Some(ProviderKind::Gemini),
            other => {
                self.problem(
                    &p.kind,
                    format!("providers.{name}.kind: unknown kind `{other}` (supported: openai, anthropic, gemini)"),
                );
                None
            }
        };
        let unsupported = match p
            .unsupported_params
            .as_ref()
            .map(|u| (u, u.get_ref().as_str()))
        {
            None | Some((_, "reject")) => crate::providers::chat::Unsupported::Reject,
            Some((_, "drop")) => crate::providers::chat::Unsupported::Drop,
            Some((u, other)) => {
                self.problem(
                    u,
                    format!(
                        "providers.{name}.unsupported_params: `{other}` is not `reject` or `drop`"
                    ),
                );
                crate::providers::chat::Unsupported::Reject
            }
        };
        let anthropic_version =
            match HeaderValue::from_str(p.anthropic_version.as_deref().unwrap_or("2023-06-01")) {
                Ok(v) => v,
                Err(_) => {
                    self.problem(
                        &p.kind,
                        format!("providers.{name}.anthropic_version: not a valid header value"),
                    );
                    HeaderValue::from_static("2023-06-01")
                }
            };
        let upstream = match Upstream::parse(p.base_url.get_ref(), p.http2) {
            Ok(u) => Some(u),
            Err(why) => {
                self.problem(&p.base_url, format!("providers.{name}.base_url: {why}"));
                None
            }
        };
        let ca = p.ca_file.as_ref().and_then(|f| {
            match crate::upstream::load_ca_file(std::path::Path::new(f.get_ref())) {
                Ok(ca) => Some(ca),
                Err(why) => {
                    self.problem(f, format!("providers.{name}.ca_file: {why}"));
                    None
                }
            }
        });
        let api_key = p
            .api_key
            .as_ref()
            .and_then(|k| self.env_ref(k, &format!("providers.{name}.api_key")))
            .map(Secret::new);
        let mut headers = Vec::new();
        for (h, value) in &p.headers {
            let hname = match HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    self.problem(
                        value,
                        format!("providers.{name}.headers: `{h}` is not a valid header name"),
                    );
                    continue;
                }
            };
            let raw = if env_reference(value.get_ref()).is_some() {
                match self.env_ref(value, &format!("providers.{name}.headers.{h}")) {
                    Some(v) => v,
                    None => continue,
                }
            } else {
                value.get_ref().clone()
            };
            match HeaderValue::from_str(&raw) {
                Ok(v) => headers.push((hname, Secret::new(v))),
                Err(_) => self.problem(
                    value,
                    format!("providers.{name}.headers.{h}: not a valid header value"),
                ),
            }
        }
        Some(Provider {
            name: Arc::from(name),
            kind: kind?,
            upstream: upstream?.prepare(timeouts.connect, ca),
            api_key,
            headers,
            timeouts,
            unsupported,
            default_max_tokens: p.default_max_tokens.unwrap_or(4096),
            anthropic_version,
            responses: p.responses && kind == Some(ProviderKind::OpenAi),
            health_check: p.health_check_ms.map(|ms| {
                let path = p
                    .health_check_path
                    .clone()
                    .unwrap_or_else(|| "/models".into());
                (Duration::from_millis(ms.max(100)), path)
            }),
        })
    }

    /// The bundled prices with the operator's file over them.
    fn prices(&mut self, file: Option<&Spanned<String>>) -> PriceTable {
        let mut table = PriceTable::bundled();
        let Some(name) = file else { return table };
        let path = self.dir.join(name.get_ref());
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                toml::from_str::<file::PricesFile>(&t).map_err(|e| e.message().to_string())
            });
        match parsed {
            Ok(f) => table.merge(f),
            Err(e) => self.problem(
                name,
                format!("prices_file: cannot use `{}`: {}", path.display(), e.trim()),
            ),
        }
        table
    }

    fn tracing(&mut self, t: &file::TracingSection) -> TracingSettings {
        let otlp = t.otlp_endpoint.as_ref().and_then(|e| {
            match crate::upstream::Upstream::parse(e.get_ref(), None) {
                Ok(u) => Some(u),
                Err(m) => {
                    self.problem(e, format!("tracing.otlp_endpoint: {m}"));
                    None
                }
            }
        });
        TracingSettings {
            otlp_endpoint: t.otlp_endpoint.as_ref().map(|e| e.get_ref().clone()),
            otlp,
            service_name: t.service_name.clone().unwrap_or_else(|| "junction".into()),
        }
    }

    fn admin(&mut self, a: &file::AdminSection) -> Option<AdminSettings> {
        let listen = match a.listen.get_ref().parse::<SocketAddr>() {
            Ok(l) => Some(l),
            Err(_) => {
                self.problem(
                    &a.listen,
                    format!(
                        "admin.listen: `{}` is not an address like 127.0.0.1:9091",
                        a.listen.get_ref()
                    ),
                );
                None
            }
        };
        let key_hash = self.key_hash("admin", &a.listen, a.sha256.as_ref(), a.key.as_ref());
        Some(AdminSettings {
            listen: listen?,
            key_hash: key_hash?,
        })
    }

    /// A key given as `sha256` (hex) or `key` (`${ENV}`), exactly one of them.
    fn key_hash(
        &mut self,
        what: &str,
        at: &Spanned<String>,
        sha256: Option<&Spanned<String>>,
        key: Option<&Spanned<String>>,
    ) -> Option<[u8; 32]> {
        match (sha256, key) {
            (Some(h), None) => {
                let mut out = [0u8; 32];
                match hex::decode_to_slice(h.get_ref().trim(), &mut out) {
                    Ok(()) => Some(out),
                    Err(_) => {
                        self.problem(
                            h,
                            format!("{what}.sha256: must be 64 hex digits (the SHA-256 of the key, e.g. from `printf %s \"$KEY\" | sha256sum`)"),
                        );
                        None
                    }
                }
            }
            (None, Some(key)) => self
                .env_ref(key, &format!("{what}.key"))
                .map(|v| hash_key(v.as_bytes())),
            _ => {
                self.problem(
                    at,
                    format!("{what}: set exactly one of `sha256` (the key's SHA-256 in hex) or `key` (an environment reference like \"${{NAME}}\")"),
                );
                None
            }
        }
    }

    /// `[models]`: routes by public name and alias, with their deployments resolved.
    fn models(
        &mut self,
        entries: &std::collections::BTreeMap<Spanned<String>, file::ModelEntry>,
        providers: &HashMap<Arc<str>, Arc<Provider>>,
        declared: &[String],
        prices: &PriceTable,
    ) -> HashMap<Arc<str>, Arc<ModelRoute>> {
        let mut models: HashMap<Arc<str>, Arc<ModelRoute>> = HashMap::new();
        let mut spans: HashMap<Arc<str>, &Spanned<String>> = HashMap::new();
        for (name, m) in entries {
            let public = name.get_ref().as_str();
            if public.is_empty() {
                self.problem(name, "models: a model name cannot be empty".into());
                continue;
            }
            let inline = m.provider.as_ref().map(|p| file::DeploymentEntry {
                provider: p.clone(),
                model: m.model.clone(),
                weight: None,
                priority: None,
                price: None,
                max_output_tokens: m.max_output_tokens,
            });
            let entries: Vec<&file::DeploymentEntry> = match (&inline, m.deployments.is_empty()) {
                (Some(d), true) => vec![d],
                (None, false) => m.deployments.iter().collect(),
                (Some(_), false) => {
                    self.problem(name, format!("models.{public}: give either `provider` or `[[models.{public}.deployments]]`, not both"));
                    continue;
                }
                (None, true) => {
                    self.problem(name, format!("models.{public}: needs `provider` (and optionally `model`) or `[[models.{public}.deployments]]`"));
                    continue;
                }
            };
            let mut deployments = Vec::new();
            for d in entries {
                let Some(p) = providers.get(d.provider.get_ref().as_str()) else {
                    if !declared.contains(d.provider.get_ref()) {
                        self.problem(
                            &d.provider,
                            format!(
                                "models.{public}.provider: no provider named `{}` (configured: {})",
                                d.provider.get_ref(),
                                if declared.is_empty() {
                                    "none".to_string()
                                } else {
                                    declared.join(", ")
                                }
                            ),
                        );
                    }
                    continue;
                };
                let upstream_model: Arc<str> = Arc::from(d.model.as_deref().unwrap_or(public));
                let price = d
                    .price
                    .map(Price::from)
                    .or_else(|| prices.lookup(&upstream_model));
                deployments.push(Deployment {
                    id: format!("{}/{}", p.name, upstream_model).into(),
                    provider: p.clone(),
                    upstream_model,
                    weight: d.weight.unwrap_or(1),
                    priority: d.priority.unwrap_or(0),
                    price,
                    timeouts: p.timeouts.overridden_by(&m.timeouts),
                    max_output_tokens: d.max_output_tokens.or(m.max_output_tokens),
                });
            }
            if deployments.is_empty() {
                continue;
            }
            // Priority order is kept stable: by priority, then as written.
            deployments.sort_by_key(|d| d.priority);
            let strategy = match m.strategy.as_ref().map(|s| (s, s.get_ref().as_str())) {
                None | Some((_, "priority")) => Strategy::Priority,
                Some((_, "weighted")) => Strategy::Weighted,
                Some((_, "least_inflight")) => Strategy::LeastInFlight,
                Some((_, "latency")) => Strategy::Latency,
                Some((_, "cost")) => Strategy::Cost,
                Some((span, other)) => {
                    self.problem(span, format!("models.{public}.strategy: unknown strategy `{other}` (priority, weighted, least_inflight, latency, cost)"));
                    Strategy::Priority
                }
            };
            if strategy == Strategy::Weighted && deployments.iter().all(|d| d.weight == 0) {
                self.problem(
                    name,
                    format!("models.{public}: every deployment has weight 0"),
                );
            }
            let route = Arc::new(ModelRoute {
                name: Arc::from(public),
                strategy,
                deployments,
                fallbacks: m
                    .fallbacks
                    .iter()
                    .map(|f| Arc::from(f.get_ref().as_str()))
                    .collect(),
            });
            for alias in std::iter::once(name).chain(&m.aliases) {
                let key: Arc<str> = Arc::from(alias.get_ref().as_str());
                if let Some(first) = spans.get(&key) {
                    let (line, _) = self.position(first.span().start);
                    self.problem(
                        alias,
                        format!("models: the name `{key}` is already used (line {line})"),
                    );
                    continue;
                }
                spans.insert(key.clone(), alias);
                models.insert(key, route.clone());
            }
        }
        for m in entries.values() {
            for f in &m.fallbacks {
                if !models.contains_key(f.get_ref().as_str())
                    && !entries.keys().any(|n| n.get_ref() == f.get_ref())
                {
                    self.problem(f, format!("fallbacks: no model named `{}`", f.get_ref()));
                }
            }
        }
        models
    }

    fn keys(
        &mut self,
        entries: Vec<file::KeyEntry>,
        models: &std::collections::BTreeMap<Spanned<String>, file::ModelEntry>,
        providers: &[String],
    ) -> Vec<ClientKey> {
        let mut keys: Vec<ClientKey> = Vec::new();
        for k in entries {
            let name = k.name.get_ref().clone();
            if keys.iter().any(|other| *other.name == *name) {
                self.problem(&k.name, format!("keys: the name `{name}` is used twice"));
            }
            let hash = self.key_hash(
                &format!("keys.{name}"),
                &k.name,
                k.sha256.as_ref(),
                k.key.as_ref(),
            );
            if let Some(models_allowed) = &k.models {
                for m in models_allowed {
                    let m_str = m.get_ref().as_str();
                    let ok = match m_str.strip_suffix("/*") {
                        Some(p) => providers.iter().any(|d| d == p),
                        None => {
                            models.iter().any(|(n, e)| {
                                n.get_ref() == m_str
                                    || e.aliases.iter().any(|a| a.get_ref() == m_str)
                            }) || m_str
                                .split_once('/')
                                .is_some_and(|(p, _)| providers.iter().any(|d| d == p))
                        }
                    };
                    if !ok {
                        self.problem(
                            m,
                            format!("keys.{name}.models: `{m_str}` is neither a configured model nor `provider/*` for a configured provider"),
                        );
                    }
                }
            }
            let Some(hash) = hash else { continue };
            if keys.iter().any(|other| other.hash == hash) {
                self.problem(
                    &k.name,
                    format!("keys.{name}: the same key is configured twice"),
                );
            }
            keys.push(ClientKey {
                name: Arc::from(name.as_str()),
                hash,
                models: k
                    .models
                    .map(|v| v.into_iter().map(|s| s.into_inner()).collect()),
            });
        }
        keys
    }
}

/// `Some("NAME")` when `s` is exactly `${NAME}`.
fn env_reference(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("${")?.strip_suffix('}')?;
    let valid = !inner.is_empty()
        && inner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then_some(inner)
}

#[cfg(test)]
mod tests;
