//! Config reload while traffic flows: admin API, SIGHUP and file changes; refused files keep
//! the old config serving; deployment health survives.

mod common;

use common::*;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "sk-admin-reload";
const OTHER_KEY: &str = "sk-other-client";

/// Where everything listens.
struct Addrs {
    listen: String,
    /// `http://…` of the admin listener.
    admin: String,
    mock: String,
}

struct Env {
    addrs: Addrs,
    _mock: Proc,
    gw: Proc,
    path: std::path::PathBuf,
    admin: String,
    http: reqwest::Client,
}

/// A config: model `m` served as `upstream`, plus `extra` models, and `OTHER_KEY` if asked.
fn config(env: &Env, upstream: &str, extra: &[&str], other_key: bool) -> String {
    config_for(&env.addrs, upstream, extra, other_key)
}

fn config_for(env: &Addrs, upstream: &str, extra: &[&str], other_key: bool) -> String {
    let mut c = format!(
        r#"
[server]
listen = "{listen}"

[admin]
listen = "{admin}"
sha256 = "{admin_hash}"

[[keys]]
name = "all"
sha256 = "{all}"

[providers.mock]
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[models.m]
provider = "mock"
model = "{upstream}"
"#,
        listen = env.listen,
        admin = env.admin.trim_start_matches("http://"),
        admin_hash = sha256_hex(ADMIN_KEY.as_bytes()),
        all = sha256_hex(ALL_KEY.as_bytes()),
        mock = env.mock,
    );
    for m in extra {
        c += &format!("\n[models.{m}]\nprovider = \"mock\"\n");
    }
    if other_key {
        c += &format!(
            "\n[[keys]]\nname = \"other\"\nsha256 = \"{}\"\n",
            sha256_hex(OTHER_KEY.as_bytes())
        );
    }
    c
}

fn env() -> Env {
    let mock = start_mock();
    let addrs = Addrs {
        listen: format!("127.0.0.1:{}", free_port()),
        admin: format!("http://127.0.0.1:{}", free_port()),
        mock: mock.addr.to_string(),
    };
    let (gw, path) = start_gateway_at(&addrs.listen, &config_for(&addrs, "upstream-a", &[], true));
    Env {
        admin: addrs.admin.clone(),
        addrs,
        _mock: mock,
        gw,
        path,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn ask(&self, key: &str, model: &str) -> (u16, String) {
        let r = self
            .http
            .post(self.gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .body(chat_body(model, false))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn reload(&self) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/admin/reload", self.admin))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    fn write(&self, text: &str) {
        // Write then rename, as editors and deploy tools do: a reader never sees half a file.
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

fn upstream_model(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["model"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_admin_reload_applies_and_reports_the_changes() {
    let env = env();
    assert_eq!(env.ask(OTHER_KEY, "m").await.0, 200);
    env.write(&config(&env, "upstream-b", &["added"], false));
    let (status, v) = env.reload().await;
    assert_eq!(status, 200, "{v}");
    let changes = &v["changes"];
    assert_eq!(changes["models_added"], serde_json::json!(["added"]));
    assert_eq!(changes["models_changed"], serde_json::json!(["m"]));
    assert_eq!(changes["keys_removed"], serde_json::json!(["other"]));
    assert_eq!(changes["needs_restart"], serde_json::json!([]));
    // From the next request on: the new routing, the new model, the key gone.
    let (s, body) = env.ask(ALL_KEY, "m").await;
    assert_eq!(s, 200);
    assert_eq!(upstream_model(&body), "upstream-b");
    assert_eq!(env.ask(ALL_KEY, "added").await.0, 200);
    assert_eq!(env.ask(OTHER_KEY, "m").await.0, 401);
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_the_old_config_keeps_serving() {
    let env = env();
    let good = config(&env, "upstream-a", &[], true);
    env.write(&good.replace(
        "model = \"upstream-a\"",
        "model = \"upstream-a\"\nwrong_key = 1",
    ));
    let (status, v) = env.reload().await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_config");
    let problem = v["problems"][0].as_str().unwrap();
    assert!(problem.contains("unknown field `wrong_key`"), "{problem}");
    assert!(
        problem.contains(&format!("{}:", env.path.display())),
        "{problem}"
    );
    let (s, body) = env.ask(OTHER_KEY, "m").await;
    assert_eq!(s, 200);
    assert_eq!(upstream_model(&body), "upstream-a");
    // The refusal is visible in the admin API, and no secret is.
    let cfg: Value = env
        .http
        .get(format!("{}/admin/config", env.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["last_reload"]["ok"], false);
    assert!(cfg["last_reload"]["problems"][0]
        .as_str()
        .unwrap()
        .contains("wrong_key"));
    assert_eq!(cfg["providers"][0]["api_key"], "*****");
    assert!(!cfg.to_string().contains(PROVIDER_KEY));
    // And in the metrics.
    let metrics = env
        .http
        .get(format!("{}/metrics", env.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("junction_config_last_reload_ok 0"),
        "{metrics}"
    );
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("junction_config_reloads_total{result=\"refused\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 1, "{metrics}");
}

#[tokio::test]
async fn sighup_and_file_changes_reload() {
    let env = env();
    // SIGHUP.
    env.write(&config(&env, "upstream-hup", &[], true));
    let pid = env.gw.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = env.ask(ALL_KEY, "m").await;
        if upstream_model(&body) == "upstream-hup" {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The file watcher, with nothing else.
    env.write(&config(&env, "upstream-file", &["watched"], true));
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.ask(ALL_KEY, "watched").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the file change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, body) = env.ask(ALL_KEY, "m").await;
    assert_eq!(upstream_model(&body), "upstream-file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_reloads_and_an_invalid_file_under_load_lose_no_request() {
    let env = Arc::new(env());
    // The two configs differ in routing, models and keys.
    let a = config(&env, "upstream-a", &["only-a"], true);
    let b = config(&env, "upstream-b", &["only-b"], false);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (env, stop, sent) = (env.clone(), stop.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (s, body) = env.ask(ALL_KEY, "m").await;
                sent.fetch_add(1, Ordering::Relaxed);
                if s != 200 {
                    failures.push(format!("{s} {body}"));
                }
            }
            failures
        }));
    }
    for i in 0..100 {
        if i == 50 {
            // An invalid file in the middle of it all: refused, and no request notices.
            env.write("[server\nthis is not toml");
            let (status, v) = env.reload().await;
            assert_eq!(status, 400, "{v}");
        }
        let (text, expect, only, gone, other_key) = if i % 2 == 0 {
            (&b, "upstream-b", "only-b", "only-a", 401)
        } else {
            (&a, "upstream-a", "only-a", "only-b", 200)
        };
        env.write(text);
        let (status, v) = env.reload().await;
        assert_eq!(status, 200, "{v}");
        // After each reload the new routing is what the traffic shows.
        let (_, body) = env.ask(ALL_KEY, "m").await;
        assert_eq!(upstream_model(&body), expect, "reload {i}");
        assert_eq!(env.ask(ALL_KEY, only).await.0, 200, "reload {i}");
        assert_eq!(env.ask(ALL_KEY, gone).await.0, 404, "reload {i}");
        assert_eq!(env.ask(OTHER_KEY, "m").await.0, other_key, "reload {i}");
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for t in load {
        failures.extend(t.await.unwrap());
    }
    assert!(
        sent.load(Ordering::Relaxed) > 100,
        "too little load to prove anything"
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

#[tokio::test]
async fn deployment_health_survives_a_reload() {
    let env = env();
    let r = env
        .http
        .post(format!("http://{}/mock/controls", env.addrs.mock))
        .body(r#"{"status": 500}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Default breaker: five failures in a row open it (two attempts per request).
    for _ in 0..3 {
        assert_eq!(env.ask(ALL_KEY, "m").await.0, 500);
    }
    let breaker = |v: Value| {
        v["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == "mock/upstream-a")
            .map(|d| d["breaker"].as_str().unwrap().to_string())
            .unwrap()
    };
    let deployments = || async {
        env.http
            .get(format!("{}/admin/deployments", env.admin))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(breaker(deployments().await), "open");
    env.write(&config(&env, "upstream-a", &["unrelated"], true));
    assert_eq!(env.reload().await.0, 200);
    assert_eq!(
        breaker(deployments().await),
        "open",
        "the reload forgot the breaker"
    );
}
