use super::*;

const HASH_OF_SECRET: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

fn env(k: &str) -> Option<String> {
    match k {
        "OPENAI_KEY" => Some("sk-provider".into()),
        "CLIENT_KEY" => Some("sk-client".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn good() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:9999"

[[keys]]
name = "team-a"
sha256 = "{HASH_OF_SECRET}"

[[keys]]
name = "team-b"
key = "${{CLIENT_KEY}}"
models = ["gpt", "openai/*"]

[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key = "${{OPENAI_KEY}}"

[models.gpt]
provider = "openai"
model = "gpt-4o-mini"

[models.other]
provider = "openai"
"#
    )
}

fn problems(text: &str) -> Vec<String> {
    match parse("t.toml", text, &env) {
        Ok(_) => vec![],
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

#[test]
fn a_good_config_loads_and_routes() {
    let s = parse("t.toml", &good(), &env).unwrap();
    assert_eq!(s.server.listen.port(), 9999);
    let r = s.route("gpt").unwrap();
    assert_eq!(&*r.deployments[0].upstream_model, "gpt-4o-mini");
    assert_eq!(
        &*s.route("other").unwrap().deployments[0].upstream_model,
        "other"
    );
    let direct = s.route("openai/gpt-4.1").unwrap();
    assert_eq!(&*direct.deployments[0].upstream_model, "gpt-4.1");
    assert!(s.route("nope").is_none());
    assert!(s.route("nope/x").is_none());
    assert!(s.route("openai/").is_none());
    assert_eq!(
        s.providers["openai"].api_key.as_ref().unwrap().expose(),
        "sk-provider"
    );
}

#[test]
fn keys_are_found_by_hash_and_scoped() {
    let s = parse("t.toml", &good(), &env).unwrap();
    assert_eq!(
        &*s.key_by_hash(&hash_key(b"secret")).unwrap().name,
        "team-a"
    );
    let b = s.key_by_hash(&hash_key(b"sk-client")).unwrap();
    assert_eq!(&*b.name, "team-b");
    assert!(s.key_by_hash(&hash_key(b"sk-other")).is_none());
    assert!(b.allows(Names::one("gpt")));
    assert!(!b.allows(Names::one("other")));
    assert!(b.allows(Names::one("openai/gpt-4.1")));
    assert!(!b.allows(Names::one("openai/")));
    assert!(!b.allows(Names::one("openaix/gpt")));
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = r#"
[[keys]]
name = "a"
key = "sk-literal"

[[keys]]
name = "b"
sha256 = "xyz"
models = ["ghost"]

[providers.p]
kind = "anthropix"
base_url = "ftp://x"
api_key = "${MISSING}"

[models.m]
provider = "nobody"
"#;
    let p = problems(text);
    assert_eq!(p.len(), 7, "{p:#?}");
    assert!(p[0].starts_with("t.toml:4:7: keys.a.key must be an environment reference"));
    assert!(p[1].starts_with("t.toml:8:10: keys.b.sha256: must be 64 hex digits"));
    assert!(p[2].starts_with("t.toml:9:11: keys.b.models: `ghost`"));
    assert!(p[3].starts_with("t.toml:12:8: providers.p.kind: unknown kind `anthropix`"));
    assert!(p[4].starts_with("t.toml:13:12: providers.p.base_url:"));
    assert!(p[5]
        .starts_with("t.toml:14:11: providers.p.api_key: environment variable MISSING is not set"));
    assert!(p[6].starts_with("t.toml:17:12: models.m.provider: no provider named `nobody`"));
}

#[test]
fn missing_and_empty_env_vars_are_named() {
    let text = good().replace("${OPENAI_KEY}", "${NOT_SET}");
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].contains("environment variable NOT_SET is not set"),
        "{}",
        p[0]
    );
    let text = good().replace("${OPENAI_KEY}", "${EMPTY}");
    assert!(problems(&text)[0].contains("EMPTY is empty"));
}

#[test]
fn unknown_keys_and_syntax_errors_have_locations() {
    let p = problems("[server]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 1\n");
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("t.toml:3:1: unknown field `listen_typo`"),
        "{}",
        p[0]
    );
    let p = problems("[server\n");
    assert!(p[0].starts_with("t.toml:1:"), "{}", p[0]);
}

#[test]
fn duplicate_keys_are_refused() {
    let text = format!(
        "{}\n[[keys]]\nname = \"team-a\"\nsha256 = \"{HASH_OF_SECRET}\"\n",
        good()
    );
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0].contains("the name `team-a` is used twice"));
    assert!(p[1].contains("the same key is configured twice"));
}

#[test]
fn provider_keys_never_print() {
    let s = parse("t.toml", &good(), &env).unwrap();
    let dump = format!("{s:?}");
    assert!(!dump.contains("sk-provider"));
    assert!(!dump.contains("sk-client"));
}

#[test]
fn the_demo_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml");
    let s = load(Path::new(path)).unwrap();
    assert!(s.route("demo-openai").is_some());
    assert!(s.key_by_hash(&hash_key(b"sk-junction-demo")).is_some());
    assert!(s.demo_mock_listen.is_some());
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let s = parse(path, &text, &|_| Some("from-env".into())).unwrap();
    let gpt = s.route("gpt-4o").unwrap();
    assert_eq!(gpt.fallbacks.len(), 2);
    assert_eq!(
        &*s.route("claude-sonnet-4-5").unwrap().name,
        "claude-sonnet"
    );
    assert!(s.admin.is_some());
}

#[test]
fn prices_come_from_the_deployment_then_the_operators_file_then_the_bundled_table() {
    let dir = std::env::temp_dir().join(format!("junction-prices-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prices.toml"),
        "[models.\"gpt-4o-mini\"]\ninput = 0.2\noutput = 0.8\n[models.\"house-model\"]\ninput = 1\noutput = 2\ncache_write = 1.5\n",
    )
    .unwrap();
    let text = format!(
        "prices_file = \"prices.toml\"\n{}\n[models.dated]\nprovider = \"openai\"\nmodel = \"gpt-4o-2024-08-06\"\n[models.house]\nprovider = \"openai\"\nmodel = \"house-model\"\n[models.own]\nprovider = \"openai\"\nmodel = \"gpt-4o\"\n[models.own.price]\ninput = 9\noutput = 9\n[models.unknown]\nprovider = \"openai\"\nmodel = \"no-such-model\"\n",
        good()
    )
    // `own` gives its price inline: rewrite it as a deployment entry.
    .replace(
        "[models.own]\nprovider = \"openai\"\nmodel = \"gpt-4o\"\n[models.own.price]\ninput = 9\noutput = 9\n",
        "[[models.own.deployments]]\nprovider = \"openai\"\nmodel = \"gpt-4o\"\nprice = { input = 9, output = 9 }\n",
    );
    let s = parse_in("c.toml", &text, &dir, &env).unwrap();
    let price = |m: &str| s.route(m).unwrap().deployments[0].price;
    // The operator's file wins over the bundled entry.
    assert_eq!(price("gpt").unwrap().input, 200_000);
    assert_eq!(price("gpt").unwrap().cached_input, 200_000);
    // A dated version takes its family's bundled price (not gpt-4o-mini's).
    let dated = price("dated").unwrap();
    assert_eq!(
        (dated.input, dated.output, dated.cached_input),
        (2_500_000, 10_000_000, 1_250_000)
    );
    assert_eq!(price("house").unwrap().cache_write, 1_500_000);
    assert_eq!(price("own").unwrap().input, 9_000_000);
    assert_eq!(
        price("unknown"),
        None,
        "an unknown price is unknown, not zero"
    );
    // Direct addressing is priced too.
    assert_eq!(
        price("openai/claude-sonnet-4-5-20250929")
            .unwrap()
            .cache_write,
        3_750_000
    );

    let missing = format!("prices_file = \"nope.toml\"\n{}", good());
    let e = parse_in("c.toml", &missing, &dir, &env).unwrap_err();
    assert!(e.problems[0].message.contains("prices_file"), "{e}");
    assert_eq!(e.problems[0].line, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_ledger_path_is_relative_to_the_config_file() {
    let s = parse_in(
        "c.toml",
        &good(),
        std::path::Path::new("/etc/junction"),
        &env,
    )
    .unwrap();
    assert_eq!(
        s.ledger.path.as_deref(),
        Some(std::path::Path::new("/etc/junction/junction-ledger.sqlite"))
    );
    let off = format!("{}\n[ledger]\nenabled = false\n", good());
    assert_eq!(
        parse_in("c.toml", &off, std::path::Path::new("/x"), &env)
            .unwrap()
            .ledger
            .path,
        None
    );
}

#[test]
fn trusted_proxies_name_the_client_and_bad_ones_are_problems() {
    let text = good().replace(
        "listen = \"127.0.0.1:9999\"",
        "listen = \"127.0.0.1:9999\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nclient_ip_header = \"X-Real-Client\"",
    );
    let s = parse("t.toml", &text, &env).unwrap();
    let ip = |a: &str| a.parse::<std::net::IpAddr>().ok();
    let mut h = http::HeaderMap::new();
    h.insert("x-real-client", "203.0.113.5, 10.0.0.2".parse().unwrap());
    assert_eq!(s.server.client_ip(ip("10.9.9.9"), &h), ip("203.0.113.5"));
    assert_eq!(s.server.client_ip(ip("::1"), &h), ip("203.0.113.5"));
    // Not from a trusted proxy: the connection's own address.
    assert_eq!(
        s.server.client_ip(ip("198.51.100.7"), &h),
        ip("198.51.100.7")
    );
    // A trusted proxy that names no one: the proxy.
    assert_eq!(
        s.server.client_ip(ip("10.9.9.9"), &http::HeaderMap::new()),
        ip("10.9.9.9")
    );
    let bad = good().replace(
        "listen = \"127.0.0.1:9999\"",
        "listen = \"127.0.0.1:9999\"\ntrusted_proxies = [\"10.0.0.0/99\"]",
    );
    assert!(
        problems(&bad)
            .iter()
            .any(|p| p.contains("server.trusted_proxies: `10.0.0.0/99`")),
        "{:?}",
        problems(&bad)
    );
}
