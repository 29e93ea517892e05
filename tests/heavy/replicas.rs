//! Two replicas on one PostgreSQL store, under load from the load generator, while keys are
//! made and revoked on either of them: no request that should pass fails, and no revoked key
//! passes on any replica once a second has gone by. Needs the cluster `tests/postgres/start`
//! starts (`JUNCTION_TEST_STORE`; `tests/run` starts it).

use crate::common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN: &str = "sk-admin-replicas";

struct Replica {
    gw: Proc,
    admin: String,
}

fn replica(mock: &Proc, url: &str) -> Replica {
    let admin = format!("127.0.0.1:{}", free_port());
    let config = format!(
        r#"
[server]
listen = "{{listen}}"

[log]
access = "off"

[admin]
listen = "{admin}"
sha256 = "{admin_hash}"

[[keys]]
name = "config-key"
sha256 = "{all}"

[providers.mock]
kind = "openai"
base_url = "http://{mock}/v1"

[models.gpt]
provider = "mock"
model = "gpt-4o-mini"

[store]
url = "{url}"
# An hour: only the store's notifications can tell a replica of a change in time.
refresh_secs = 3600
"#,
        admin_hash = sha256_hex(ADMIN.as_bytes()),
        all = sha256_hex(ALL_KEY.as_bytes()),
        mock = mock.addr,
    );
    let (gw, _) = start_gateway_at(&format!("127.0.0.1:{}", free_port()), &config);
    wait_for_listener(&admin);
    Replica { gw, admin }
}

/// A new database on the test cluster.
fn fresh_database(test: &str) -> String {
    let base = std::env::var("JUNCTION_TEST_STORE")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("JUNCTION_TEST_STORE: start a cluster with `eval \"$(tests/postgres/start)\"`");
    let name = format!("jheavy_{test}_{}", std::process::id());
    let b = base.clone();
    let made = name.clone();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&b, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    })
    .join()
    .unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{made}")
}

struct Client {
    http: reqwest::Client,
}

impl Client {
    async fn admin(
        &self,
        r: &Replica,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut q = self
            .http
            .request(method.parse().unwrap(), format!("http://{}{path}", r.admin))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            q = q.json(&b);
        }
        let a = q.send().await.unwrap();
        let s = a.status().as_u16();
        (s, a.json().await.unwrap_or(Value::Null))
    }

    /// A new team, made on `r`: its id.
    async fn team(&self, r: &Replica, name: &str) -> String {
        let (s, t) = self
            .admin(r, "POST", "/admin/teams", Some(json!({ "name": name })))
            .await;
        assert_eq!(s, 201, "{t}");
        t["id"].as_str().unwrap().to_string()
    }

    async fn key(&self, r: &Replica, team: &str, name: &str) -> (String, String) {
        let (s, k) = self
            .admin(
                r,
                "POST",
                "/admin/keys",
                Some(json!({"name": name, "team": team})),
            )
            .await;
        assert_eq!(s, 201, "{k}");
        (
            k["key"]["id"].as_str().unwrap().to_string(),
            k["secret"].as_str().unwrap().to_string(),
        )
    }

    async fn chat(&self, r: &Replica, key: &str) -> u16 {
        self.http
            .post(r.gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .body(chat_body("gpt", false))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// How long until `r` answers `key` with `status` (at most 20 s, then a failure).
    async fn until(&self, r: &Replica, key: &str, status: u16) -> Duration {
        let t = Instant::now();
        loop {
            if self.chat(r, key).await == status {
                return t.elapsed();
            }
            assert!(t.elapsed() < Duration::from_secs(20), "never {status}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The PostgreSQL tests share one cluster, and one of them restarts it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_under_load_while_keys_come_and_go() {
    let _one = ONE_AT_A_TIME.lock().await;
    let url = fresh_database("churn");
    let mock = start_mock();
    let replicas = [replica(&mock, &url), replica(&mock, &url)];
    let c = Client {
        http: reqwest::Client::new(),
    };
    let team = c.team(&replicas[0], "load").await;
    // The load's keys: one made on each replica, and the config key.
    let (stable_a_id, stable_a) = c.key(&replicas[0], &team, "stable-a").await;
    let (stable_b_id, stable_b) = c.key(&replicas[1], &team, "stable-b").await;
    for r in &replicas {
        c.until(r, &stable_a, 200).await;
        c.until(r, &stable_b, 200).await;
    }

    let target = |name: &str, r: &Replica, key: &str| {
        format!("{name}|{}|gpt|{key}", r.gw.url("/v1/chat/completions"))
    };
    let out = tmp_path("load.json");
    let duration = 20;
    let load = std::process::Command::new(env!("CARGO_BIN_EXE_junction-load"))
        .args(["--duration", &duration.to_string(), "--warmup", "1"])
        .args(["--concurrency", "2", "--prompt-bytes", "256"])
        .args(["--target", &target("a-stored-a", &replicas[0], &stable_a)])
        .args(["--target", &target("b-stored-a", &replicas[1], &stable_a)])
        .args(["--target", &target("a-stored-b", &replicas[0], &stable_b)])
        .args(["--target", &target("b-config", &replicas[1], ALL_KEY)])
        .args(["--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut load = load;

    // Keys made and revoked on either replica while the load runs.
    let end = Instant::now() + Duration::from_secs(duration);
    let mut revoked: Vec<(String, Instant)> = Vec::new();
    let mut slowest_revocation = Duration::ZERO;
    let mut slowest_creation = Duration::ZERO;
    let mut made = 0;
    while Instant::now() < end {
        let (maker, other) = if made % 2 == 0 {
            (&replicas[0], &replicas[1])
        } else {
            (&replicas[1], &replicas[0])
        };
        let (id, secret) = c.key(maker, &team, &format!("churn-{made}")).await;
        made += 1;
        // On the replica that made it, at once; on the other, when it is told.
        assert_eq!(
            c.chat(maker, &secret).await,
            200,
            "a new key on its replica"
        );
        slowest_creation = slowest_creation.max(c.until(other, &secret, 200).await);
        assert_eq!(c.chat(other, &secret).await, 200);
        // Revoked on either of them, alternately.
        let revoker = if made % 3 == 0 { other } else { maker };
        let (s, v) = c
            .admin(revoker, "DELETE", &format!("/admin/keys/{id}"), None)
            .await;
        assert_eq!(s, 200, "{v}");
        let at = Instant::now();
        assert_eq!(
            c.chat(revoker, &secret).await,
            401,
            "revoked on its replica"
        );
        for r in &replicas {
            slowest_revocation = slowest_revocation.max(c.until(r, &secret, 401).await);
        }
        revoked.push((secret, at));
        // Every key revoked over a second ago is refused everywhere.
        for (secret, at) in &revoked {
            if at.elapsed() >= Duration::from_secs(1) {
                for r in &replicas {
                    assert_eq!(c.chat(r, secret).await, 401, "a revoked key passed");
                }
            }
        }
    }
    let status = tokio::task::spawn_blocking(move || load.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "junction-load failed");
    let result: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let mut sent = std::collections::HashMap::new();
    for t in result["targets"].as_array().unwrap() {
        let (name, n, errors) = (
            t["name"].as_str().unwrap(),
            t["requests"].as_u64().unwrap(),
            t["errors"].as_u64().unwrap(),
        );
        eprintln!("{name}: {n} requests, {errors} errors");
        assert_eq!(errors, 0, "{name}: a request that should pass failed");
        assert!(n > 100, "{name}: too little load to prove anything ({n})");
        sent.insert(name.to_string(), n);
    }
    eprintln!(
        "{made} keys made and revoked; slowest creation seen by the other replica {slowest_creation:?}, slowest revocation {slowest_revocation:?}"
    );
    assert!(made >= 10, "too few keys came and went ({made})");
    assert!(
        slowest_revocation < Duration::from_secs(1),
        "a revoked key passed for {slowest_revocation:?}"
    );

    // One ledger: each replica's requests are in it, read from either replica.
    let per_key = |v: &Value, id: &str| {
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"] == id)
            .and_then(|g| g["requests"].as_u64())
            .unwrap_or(0)
    };
    eventually("both replicas' requests in the shared ledger", || async {
        let (s, v) = c
            .admin(&replicas[1], "GET", "/admin/usage?group_by=key", None)
            .await;
        assert_eq!(s, 200, "{v}");
        let a = per_key(&v, &stable_a_id);
        let b = per_key(&v, &stable_b_id);
        (a >= sent["a-stored-a"] + sent["b-stored-a"] && b >= sent["a-stored-b"]).then_some(())
    })
    .await;
}

/// The database restarts (every connection ended) while two replicas serve stored keys: the
/// request path never asks it, so no request fails; the ledger's writer holds its rows until
/// it is back, so every request is recorded once; and each replica listens again, so a
/// revocation afterwards reaches the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_loses_no_request_and_no_record() {
    let _one = ONE_AT_A_TIME.lock().await;
    let url = fresh_database("restart");
    let mock = start_mock();
    let replicas = std::sync::Arc::new([replica(&mock, &url), replica(&mock, &url)]);
    let c = std::sync::Arc::new(Client {
        http: reqwest::Client::new(),
    });
    let team = c.team(&replicas[0], "load").await;
    let (id, secret) = c.key(&replicas[0], &team, "through-it").await;
    c.until(&replicas[1], &secret, 200).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..2 {
        let (c, replicas, stop, secret) =
            (c.clone(), replicas.clone(), stop.clone(), secret.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let s = c.chat(&replicas[(i + n) % 2], &secret).await;
                n += 1;
                if s == 200 {
                    ok += 1;
                } else {
                    failed.push(s);
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/postgres/restart");
    let status =
        tokio::task::spawn_blocking(move || std::process::Command::new(restart).status().unwrap())
            .await
            .unwrap();
    assert!(status.success(), "tests/postgres/restart failed");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ok = 1; // the first request on the second replica
    for t in load {
        let (n, failed) = t.await.unwrap();
        assert!(failed.is_empty(), "requests failed: {failed:?}");
        ok += n;
    }
    assert!(ok > 100, "too little load to prove anything ({ok})");

    // Every request recorded once: the rows written while the database was away were held.
    let mut complete = 0;
    for _ in 0..2 {
        let (s, v) = c
            .admin(&replicas[0], "GET", "/admin/usage?group_by=key", None)
            .await;
        assert_eq!(s, 200, "{v}");
        complete = v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"] == id.as_str())
            .and_then(|g| g["endings"]["complete"].as_u64())
            .unwrap_or(0);
        if complete == ok {
            break;
        }
        // The other replica's rows: its flush is its own.
        c.admin(&replicas[1], "GET", "/admin/usage?group_by=key", None)
            .await;
    }
    eprintln!("{ok} requests through a database restart, {complete} recorded");
    assert_eq!(complete, ok, "the ledger lost or doubled rows");

    // Both listen again: a revocation on one is refused on the other.
    let (s, v) = c
        .admin(&replicas[0], "DELETE", &format!("/admin/keys/{id}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let took = c.until(&replicas[1], &secret, 401).await;
    eprintln!("revoked on the other replica after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "a revoked key passed for {took:?}"
    );
}
