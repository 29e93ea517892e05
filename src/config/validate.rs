//! Loading a config file: parsed, then validated into a [`Snapshot`], every problem reported
//! with its line.

use super::*;

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

    /// `[store] url`: a PostgreSQL URL, written out or in the environment (`${NAME}`).
    fn limits(
        &mut self,
        l: &file::LimitsSection,
        redis: Option<&file::RedisSection>,
    ) -> crate::config::LimitsSettings {
        use crate::limits::OnError;
        let mut on_error = OnError::FailClosed;
        let mut url = None;
        if let Some(r) = redis {
            url = match env_reference(r.url.get_ref()) {
                Some(_) => self.env_ref(&r.url, "redis.url"),
                None => Some(r.url.get_ref().clone()),
            };
            if let Some(u) = url
                .as_deref()
                .filter(|u| !(u.starts_with("redis://") || u.starts_with("unix://")))
            {
                let scheme = u.split("://").next().unwrap_or("");
                self.problem(
                    &r.url,
                    format!(
                        "redis.url must be redis://host:port (or unix://path), not `{scheme}://…`"
                    ),
                );
                url = None;
            }
            if let Some(o) = &r.on_error {
                on_error = match o.get_ref().as_str() {
                    "fail_closed" => OnError::FailClosed,
                    "fail_open" => OnError::FailOpen,
                    other => {
                        self.problem(
                            o,
                            format!(
                                "redis.on_error must be fail_closed or fail_open, not `{other}`"
                            ),
                        );
                        OnError::FailClosed
                    }
                };
            }
        }
        if l.alert_at.iter().any(|&p| p == 0 || p > 1000) {
            self.problems.push(Problem {
                line: 0,
                column: 0,
                message:
                    "limits.alert_at: each threshold is a percent of the budget, from 1 to 1000"
                        .into(),
            });
        }
        crate::config::LimitsSettings {
            governor: crate::limits::Settings {
                hold: Duration::from_secs(l.hold_secs.max(1)),
                alert_at: l.alert_at.clone(),
                on_error,
            },
            redis: url.map(crate::secret::Secret::new),
            default_output_tokens: l.default_output_tokens.max(1),
        }
    }

    fn store_url(&mut self, value: &Spanned<String>) -> Option<crate::store::sql::Url> {
        let url = match env_reference(value.get_ref()) {
            Some(_) => self.env_ref(value, "store.url")?,
            None => value.get_ref().clone(),
        };
        match crate::store::sql::Url::parse(&url) {
            Ok(u) => Some(u),
            Err(why) => {
                // Never the URL itself: it may hold a password.
                self.problem(value, format!("store.url {why}"));
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
            header_timeout: Duration::from_millis(f.server.header_timeout_ms.max(1)),
            stream_keepalive: (f.server.stream_keepalive_ms > 0)
                .then(|| Duration::from_millis(f.server.stream_keepalive_ms)),
            upstream_pool_size: f.server.upstream_pool_size,
            shutdown_grace: Duration::from_secs(f.server.shutdown_grace_secs),
            upgrade_sock: f.server.upgrade_sock.clone(),
            trusted_proxies: f
                .server
                .trusted_proxies
                .iter()
                .filter_map(|c| {
                    let parsed = Cidr::parse(c.get_ref());
                    if parsed.is_none() {
                        self.problem(
                            c,
                            format!(
                                "server.trusted_proxies: `{}` is not an address or a CIDR range",
                                c.get_ref()
                            ),
                        );
                    }
                    parsed
                })
                .collect(),
            client_ip_header: match http::HeaderName::from_bytes(
                f.server.client_ip_header.to_ascii_lowercase().as_bytes(),
            ) {
                Ok(h) => h,
                Err(_) => {
                    self.problem(
                        &f.server.listen,
                        "server.client_ip_header: not a valid header name".to_string(),
                    );
                    http::HeaderName::from_static("x-forwarded-for")
                }
            },
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
        let store_url = f.store.url.as_ref().and_then(|u| self.store_url(u));
        let limits = self.limits(&f.limits, f.redis.as_ref());
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
                postgres: store_url.clone().filter(|_| f.ledger.enabled),
                store_content: f.ledger.store_content,
                queue: f.ledger.queue.max(1),
            },
            responses: crate::store::responses::Settings {
                enabled: f.responses.store,
                path: (f.responses.store && !f.responses.path.is_empty())
                    .then(|| self.dir.join(&f.responses.path)),
                retention: std::time::Duration::from_secs(
                    u64::from(f.responses.retention_days.max(1)) * 86_400,
                ),
                memory_bytes: (f.responses.memory_mb.max(1) as usize) << 20,
            },
            store: match &store_url {
                Some(url) => crate::tenancy::Location::Postgres(url.clone()),
                None => crate::tenancy::Location::Sqlite(
                    (!f.store.path.is_empty()).then(|| self.dir.join(&f.store.path)),
                ),
            },
            store_refresh: Duration::from_secs(f.store.refresh_secs.max(1)),
            tracing: self.tracing(&f.tracing),
            limits,
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
        let structured_output = {
            use crate::providers::anthropic::StructuredOutput;
            match p
                .structured_output
                .as_ref()
                .map(|u| (u, u.get_ref().as_str()))
            {
                None | Some((_, "auto")) => StructuredOutput::Auto,
                Some((_, "native")) => StructuredOutput::Native,
                Some((_, "tool")) => StructuredOutput::Tool,
                Some((u, other)) => {
                    self.problem(
                        u,
                        format!("providers.{name}.structured_output: `{other}` is not `auto`, `native` or `tool`"),
                    );
                    StructuredOutput::Auto
                }
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
        let redactor = crate::secret::Redactor::new(
            api_key
                .iter()
                .map(|k| k.expose().as_bytes())
                .chain(headers.iter().map(|(_, v)| v.expose().as_bytes())),
        );
        Some(Provider {
            redactor,
            name: Arc::from(name),
            kind: kind?,
            upstream: upstream?.prepare(timeouts.connect, ca),
            api_key,
            headers,
            timeouts,
            unsupported,
            default_max_tokens: p.default_max_tokens.unwrap_or(4096),
            anthropic_version,
            structured_output,
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
                if p.kind == ProviderKind::Gemini
                    && !crate::providers::gemini::fits_path(&upstream_model)
                {
                    self.problem(
                        &d.provider,
                        format!("models.{public}: `{upstream_model}` cannot go into a Gemini request path (letters, digits and `-._@/` only, no empty, `.` or `..` part)"),
                    );
                }
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
                aliases: m
                    .aliases
                    .iter()
                    .map(|a| Arc::from(a.get_ref().as_str()))
                    .collect(),
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
            let limits = k.limits.as_ref().and_then(|l| {
                match crate::limits::Limits::from_entry(l.get_ref()) {
                    Ok(limits) if limits.is_empty() => None,
                    Ok(limits) => Some(limits),
                    Err(why) => {
                        self.problem(l, format!("keys.{name}.limits: {why}"));
                        None
                    }
                }
            });
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
                levels: limits.map(|limits| {
                    let id: Arc<str> = Arc::from(name.as_str());
                    Arc::new(crate::limits::Levels {
                        tag: format!("cfg:{name}").into(),
                        list: vec![crate::limits::Level {
                            kind: crate::limits::Kind::Key,
                            id,
                            limits: Arc::new(limits),
                        }],
                    })
                }),
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
