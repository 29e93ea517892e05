//! Teams and keys at run time, through the admin API: a key is made (its secret shown once),
//! used, narrowed, rotated with a grace period, expired, revoked; a team's bounds hold for
//! its keys; addresses are checked; every change is in the audit trail. Config keys keep
//! working beside the stored ones.

mod common;

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "sk-admin-tenancy";

struct Env {
    _mock: Proc,
    gw: Proc,
    admin: String,
    http: reqwest::Client,
    store: Store,
}

/// Where a gateway's store is: the embedded SQLite file, or a database on the PostgreSQL
/// cluster that `JUNCTION_TEST_STORE` names (`tests/postgres/start`), when it is set: the
/// same tests then run on PostgreSQL.
#[derive(Clone)]
enum Store {
    File(std::path::PathBuf),
    Postgres(String),
}

impl Store {
    fn fresh_is_postgres() -> bool {
        std::env::var("JUNCTION_TEST_STORE").is_ok_and(|v| !v.is_empty())
    }

    /// A new store, of the kind this run tests (`None`: the gateway's own file).
    fn fresh() -> Option<Store> {
        if !Store::fresh_is_postgres() {
            return None;
        }
        let base = std::env::var("JUNCTION_TEST_STORE").unwrap();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "jt_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let create = format!("CREATE DATABASE {name}");
        pg(&base, move |c| c.batch_execute(&create).unwrap());
        let (server, _) = base
            .rsplit_once('/')
            .expect("a database in JUNCTION_TEST_STORE");
        Some(Store::Postgres(format!("{server}/{name}")))
    }

    /// Its `[store]` line.
    fn line(&self) -> String {
        match self {
            Store::File(p) => format!("path = \"{}\"", p.display()),
            Store::Postgres(url) => format!("url = \"{url}\""),
        }
    }

    /// Whether any row of any of its tables holds `text`.
    fn holds(&self, text: &str) -> bool {
        match self {
            Store::File(p) => {
                // The file and its write-ahead log.
                let mut raw = std::fs::read(p).unwrap();
                let mut wal = p.clone().into_os_string();
                wal.push("-wal");
                raw.extend(std::fs::read(wal).unwrap_or_default());
                raw.windows(text.len()).any(|w| w == text.as_bytes())
            }
            Store::Postgres(url) => {
                let text = text.to_string();
                pg(url, move |c| {
                    let tables: Vec<String> = c
                        .query(
                            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                            &[],
                        )
                        .unwrap()
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    assert!(tables.len() >= 5, "{tables:?}");
                    tables.iter().any(|t| {
                        let q = format!(
                            "SELECT COUNT(*) FROM \"{t}\" r WHERE r::text LIKE '%' || $1 || '%'"
                        );
                        c.query_one(&q, &[&text]).unwrap().get::<_, i64>(0) > 0
                    })
                })
            }
        }
    }
}

/// `f` on a connection to the PostgreSQL database at `url`, on a thread of its own (the
/// synchronous client cannot run inside the tests' runtime).
fn pg<T: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut postgres::Client) -> T + Send + 'static,
) -> T {
    let url = url.to_string();
    std::thread::spawn(move || f(&mut postgres::Client::connect(&url, postgres::NoTls).unwrap()))
        .join()
        .unwrap()
}

fn start() -> Env {
    start_with("")
}

/// With more lines in `[server]`.
fn start_with(server: &str) -> Env {
    start_on(server, None, "")
}

/// With more lines in `[server]`, on `store` (a new one when `None`), with more lines in
/// `[store]`.
fn start_on(server: &str, store: Option<&Store>, store_lines: &str) -> Env {
    let store = store.cloned().or_else(Store::fresh);
    let mock = start_mock();
    let admin = format!("127.0.0.1:{}", free_port());
    let config = format!(
        r#"
[server]
listen = "{{listen}}"
{server}

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
aliases = ["gpt-alias"]

[models.other]
provider = "mock"
model = "gpt-4o"

[store]
{store_line}
{store_lines}
"#,
        store_line = store.as_ref().map(Store::line).unwrap_or_default(),
        admin_hash = sha256_hex(ADMIN.as_bytes()),
        all = sha256_hex(ALL_KEY.as_bytes()),
        mock = mock.addr,
    );
    let (gw, path) = start_gateway_at(&format!("127.0.0.1:{}", free_port()), &config);
    wait_for_listener(&admin);
    let store = store.unwrap_or_else(|| Store::File(path.with_file_name("junction-store.sqlite")));
    Env {
        _mock: mock,
        gw,
        admin,
        http: reqwest::Client::new(),
        store,
    }
}

impl Env {
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(
                method.parse().unwrap(),
                format!("http://{}{path}", self.admin),
            )
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn chat(&self, key: &str, model: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .body(chat_body(model, false))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn team(&self, body: Value) -> String {
        let (s, t) = self.admin("POST", "/admin/teams", Some(body)).await;
        assert_eq!(s, 201, "{t}");
        t["id"].as_str().unwrap().to_string()
    }

    /// A user or project (`kind`: `users`, `projects`) of `team`: its id.
    async fn member(&self, kind: &str, team: &str, name: &str) -> String {
        let (s, m) = self
            .admin(
                "POST",
                &format!("/admin/{kind}"),
                Some(json!({"team": team, "name": name})),
            )
            .await;
        assert_eq!(s, 201, "{m}");
        m["id"].as_str().unwrap().to_string()
    }

    async fn key(&self, body: Value) -> (String, String) {
        let (s, k) = self.admin("POST", "/admin/keys", Some(body)).await;
        assert_eq!(s, 201, "{k}");
        (
            k["key"]["id"].as_str().unwrap().to_string(),
            k["secret"].as_str().unwrap().to_string(),
        )
    }
}

#[tokio::test]
async fn a_stored_key_is_made_used_narrowed_and_revoked() {
    let env = start();
    let team = env.team(json!({"name": "research"})).await;
    let ada = env.member("users", &team, "ada").await;
    let eval = env.member("projects", &team, "eval").await;
    let (s, k) = env
        .admin(
            "POST",
            "/admin/keys",
            Some(json!({"name": "ci", "team": team, "user": ada, "project": eval, "metadata": {"pipeline": "nightly"}})),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    let secret = k["secret"].as_str().unwrap().to_string();
    let id = k["key"]["id"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("sk-jn-") && secret.len() == 38,
        "{secret}"
    );
    assert!(id.starts_with("key_"));
    assert_eq!(k["key"]["prefix"], &secret[..10]);
    assert_eq!(k["key"]["status"], "active");
    // Shown once: never again, and the store holds only its hash.
    let (_, listed) = env
        .admin("GET", &format!("/admin/keys?team={team}"), None)
        .await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret[10..]));
    assert!(env.store.holds(&id), "the store lost the key");
    assert!(!env.store.holds(&secret), "the secret is in the store");

    // Used at once, beside the config key.
    assert_eq!(env.chat(&secret, "gpt").await.0, 200);
    assert_eq!(env.chat(ALL_KEY, "gpt").await.0, 200);

    // Narrowed to one model (by its alias): the other is refused with 403.
    let (s, _) = env
        .admin(
            "PATCH",
            &format!("/admin/keys/{id}"),
            Some(json!({"models": ["gpt-alias"]})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(env.chat(&secret, "gpt-alias").await.0, 200);
    let (s, e) = env.chat(&secret, "other").await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["error"]["code"], "model_not_allowed");
    // Cleared again.
    env.admin(
        "PATCH",
        &format!("/admin/keys/{id}"),
        Some(json!({"models": null})),
    )
    .await;
    assert_eq!(env.chat(&secret, "other").await.0, 200);

    // Revoked: refused on the next request, saying so.
    let (s, k) = env
        .admin("DELETE", &format!("/admin/keys/{id}"), None)
        .await;
    assert_eq!((s, k["status"].as_str()), (200, Some("revoked")));
    let (s, e) = env.chat(&secret, "gpt").await;
    assert_eq!(s, 401);
    assert_eq!(e["error"]["message"], "This API key was revoked.");
    // An unknown key says nothing more than that.
    let (s, e) = env
        .chat("sk-jn-unknown0000000000000000000000000", "gpt")
        .await;
    assert_eq!(
        (s, e["error"]["message"].as_str()),
        (401, Some("Invalid API key."))
    );

    // The audit trail: who, what, from where; no secret anywhere in it.
    let (_, audit) = env.admin("GET", "/admin/audit", None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "key.revoke",
            "key.change",
            "key.change",
            "key.create",
            "project.create",
            "user.create",
            "team.create"
        ]
    );
    assert!(audit["entries"][0]["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1"));
    assert_eq!(audit["entries"][0]["actor"], "admin");
    assert!(!audit.to_string().contains(&secret[10..]));
}

#[tokio::test]
async fn a_team_bounds_its_keys_and_deleting_it_revokes_them() {
    let env = start();
    let team = env
        .team(json!({"name": "only-gpt", "models": ["gpt"]}))
        .await;
    // The key asks for more than its team allows: it gets only what both allow.
    let (_, secret) = env
        .key(json!({"name": "wide", "team": team, "models": ["gpt", "other"]}))
        .await;
    assert_eq!(env.chat(&secret, "gpt").await.0, 200);
    assert_eq!(env.chat(&secret, "other").await.0, 403);
    // The models list shows only what the key may use.
    let r = env
        .http
        .get(env.gw.url("/v1/models"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = r.json::<Value>().await.unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    // A model is one model by all its names: `gpt-alias` is `gpt`.
    assert_eq!(ids, ["gpt", "gpt-alias"]);
    assert_eq!(env.chat(&secret, "gpt-alias").await.0, 200);

    // A list may name a model by an alias, whatever name it is asked by: here the key
    // narrows the team's `gpt` to `gpt-alias`.
    let (_, narrow) = env
        .key(json!({"name": "alias", "team": team, "models": ["gpt-alias"]}))
        .await;
    assert_eq!(env.chat(&narrow, "gpt-alias").await.0, 200);
    assert_eq!(env.chat(&narrow, "gpt").await.0, 200);
    assert_eq!(env.chat(&narrow, "other").await.0, 403);

    let (s, d) = env
        .admin("DELETE", &format!("/admin/teams/{team}"), None)
        .await;
    assert_eq!((s, d["revoked_keys"].as_u64()), (200, Some(2)), "{d}");
    assert_eq!(env.chat(&narrow, "gpt").await.0, 401);
    assert_eq!(env.chat(&secret, "gpt").await.0, 401);
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_its_grace_period_only() {
    let env = start();
    let team = env.team(json!({"name": "ops"})).await;
    let (id, old) = env.key(json!({"name": "relay", "team": team})).await;
    let (s, r) = env
        .admin(
            "POST",
            &format!("/admin/keys/{id}/rotate"),
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let new = r["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(r["key"]["id"], id.as_str());
    // Both work during the grace period.
    assert_eq!(env.chat(&old, "gpt").await.0, 200);
    assert_eq!(env.chat(&new, "gpt").await.0, 200);
    // Rotated again with no grace: the secret before stops at once, the one before that too.
    let (_, r) = env
        .admin(
            "POST",
            &format!("/admin/keys/{id}/rotate"),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    let newest = r["secret"].as_str().unwrap().to_string();
    let (s, e) = env.chat(&new, "gpt").await;
    assert_eq!(s, 401, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("rotated"),
        "{e}"
    );
    assert_eq!(env.chat(&old, "gpt").await.0, 401);
    assert_eq!(env.chat(&newest, "gpt").await.0, 200);
}

#[tokio::test]
async fn expiry_and_address_rules_refuse_with_the_rule_that_did() {
    let env = start();
    let team = env.team(json!({"name": "net"})).await;
    // Allowed from loopback only (v4 and v6): the test's client is on 127.0.0.1.
    let (_, local) = env
        .key(json!({"name": "local", "team": team, "ips": ["127.0.0.0/8", "::1"]}))
        .await;
    assert_eq!(env.chat(&local, "gpt").await.0, 200);
    let (id, far) = env
        .key(json!({"name": "far", "team": team, "ips": ["10.0.0.0/8", "2001:db8::/32"]}))
        .await;
    let (s, e) = env.chat(&far, "gpt").await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["error"]["code"], "address_not_allowed");
    // A team's range bounds its keys too.
    let walled = env
        .team(json!({"name": "walled", "ips": ["192.168.0.0/16"]}))
        .await;
    let (_, inside) = env.key(json!({"name": "k", "team": walled})).await;
    assert_eq!(env.chat(&inside, "gpt").await.0, 403);

    // Expired (set in the past): 401, saying why.
    let (s, _) = env
        .admin(
            "PATCH",
            &format!("/admin/keys/{id}"),
            Some(json!({"ips": null, "expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, e) = env.chat(&far, "gpt").await;
    assert_eq!(
        (s, e["error"]["message"].as_str()),
        (401, Some("This API key has expired."))
    );
    // An expiry in the future: it works until then.
    let later = chrono_ms() + 3_600_000;
    env.admin(
        "PATCH",
        &format!("/admin/keys/{id}"),
        Some(json!({"expires_at": later})),
    )
    .await;
    assert_eq!(env.chat(&far, "gpt").await.0, 200);
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn bad_admin_input_is_a_400_naming_the_field() {
    let env = start();
    let (s, e) = env
        .admin(
            "POST",
            "/admin/teams",
            Some(json!({"name": "t", "colour": "red"})),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"]["param"], "colour");
    let team = env.team(json!({"name": "t"})).await;
    let (s, e) = env
        .admin("POST", "/admin/teams", Some(json!({"name": "t"})))
        .await;
    assert_eq!(s, 400, "a second team of the same name: {e}");
    for (body, field) in [
        (json!({"name": "k", "team": "team_missing"}), "team"),
        (json!({"name": "", "team": team}), "name"),
        (
            json!({"name": "k", "team": team, "ips": ["not-an-address"]}),
            "ips",
        ),
        (
            json!({"name": "k", "team": team, "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (json!({"team": team}), "name"),
    ] {
        let (s, e) = env.admin("POST", "/admin/keys", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {e}");
        assert_eq!(e["error"]["param"], field, "{body}: {e}");
    }
    let (s, _) = env
        .admin("GET", "/admin/keys/key_0000000000000000", None)
        .await;
    assert_eq!(s, 404);
    // Without the admin key: refused.
    let r = env
        .http
        .get(format!("http://{}/admin/keys", env.admin))
        .bearer_auth(ALL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn stored_keys_survive_a_restart() {
    let env = start();
    let team = env.team(json!({"name": "durable"})).await;
    let (_, secret) = env.key(json!({"name": "k", "team": team})).await;
    let store = env.store.clone();
    drop(env);
    // What is kept: the schema's version, and the key as its hash only.
    let (version, hashes) = match &store {
        Store::File(path) => {
            let db = rusqlite::Connection::open(path).unwrap();
            let version: i64 = db
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            let mut q = db.prepare("SELECT hash FROM keys").unwrap();
            let hashes: Vec<Vec<u8>> = q
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (version, hashes)
        }
        Store::Postgres(url) => pg(url, |c| {
            let version: i64 = c
                .query_one(
                    "SELECT version FROM junction_schema WHERE name = 'store'",
                    &[],
                )
                .unwrap()
                .get(0);
            let hashes: Vec<Vec<u8>> = c
                .query("SELECT hash FROM keys", &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (version, hashes)
        }),
    };
    let newest = match store {
        Store::File(_) => 4,
        Store::Postgres(_) => 1,
    };
    assert_eq!(version, newest);
    assert_eq!(hashes.len(), 1);
    assert_eq!(hex::encode(&hashes[0]), sha256_hex(secret.as_bytes()));
    // A new gateway on the same store takes the key.
    let again = start_on("", Some(&store), "");
    assert_eq!(again.chat(&secret, "gpt").await.0, 200);
}

#[tokio::test]
async fn usage_is_grouped_by_team_user_project_and_day_and_exported_as_csv() {
    let env = start();
    let team = env.team(json!({"name": "billing"})).await;
    let ada_id = env.member("users", &team, "ada").await;
    let bob_id = env.member("users", &team, "bob").await;
    let eval = env.member("projects", &team, "eval").await;
    let (id, ada) = env
        .key(json!({"name": "a", "team": team, "user": ada_id, "project": eval}))
        .await;
    let (_, bob) = env
        .key(json!({"name": "b", "team": team, "user": bob_id, "project": eval}))
        .await;
    for key in [&ada, &ada, &bob, ALL_KEY] {
        assert_eq!(env.chat(key, "gpt").await.0, 200);
    }
    let (s, v) = env
        .admin("GET", "/admin/usage?group_by=team,user,project", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["group_by"], "team,user,project");
    let rows: Vec<(Value, Value, Value, i64)> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["team"].clone(),
                g["user"].clone(),
                g["project"].clone(),
                g["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    // The config key has no team; each stored key's requests are its user's.
    let mut expected = vec![
        (json!(team), json!(ada_id), json!(eval), 2),
        (json!(team), json!(bob_id), json!(eval), 1),
    ];
    // Rows come ordered by the ids, which are random.
    expected.sort_by_key(|r| r.1.as_str().unwrap().to_string());
    expected.insert(0, (Value::Null, Value::Null, Value::Null, 1));
    assert_eq!(rows, expected);
    // By key: a stored key is accounted by its public id.
    let (_, v) = env.admin("GET", "/admin/usage?group_by=key", None).await;
    let keys: Vec<&str> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["key"].as_str())
        .collect();
    assert!(
        keys.contains(&id.as_str()) && keys.contains(&"config-key"),
        "{keys:?}"
    );
    // By day: today, all four.
    let (_, v) = env.admin("GET", "/admin/usage?group_by=day", None).await;
    let today = chrono_day();
    assert_eq!(v["groups"][0]["day"], today.as_str());
    assert_eq!(v["groups"][0]["requests"], 4);

    // Over a time range: [from, to), in Unix milliseconds or RFC 3339.
    let now = chrono_ms();
    let range =
        |from: String, to: String| format!("/admin/usage?group_by=team&from={from}&to={to}");
    let (_, v) = env
        .admin(
            "GET",
            &range((now - 600_000).to_string(), (now + 1).to_string()),
            None,
        )
        .await;
    let total: i64 = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["requests"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 4, "{v}");
    for (from, to) in [
        ((now + 60_000).to_string(), (now + 120_000).to_string()),
        ("2020-01-01T00:00:00Z".into(), "2020-01-02T00:00:00Z".into()),
    ] {
        let (s, v) = env.admin("GET", &range(from, to), None).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["groups"].as_array().unwrap().len(), 0, "{v}");
    }
    let (s, v) = env
        .admin("GET", &range("yesterday".into(), now.to_string()), None)
        .await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("from")),
        "{v}"
    );

    // CSV: the same numbers.
    let r = env
        .http
        .get(format!(
            "http://{}/admin/usage?group_by=project&format=csv",
            env.admin
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("project,requests,input_tokens,output_tokens,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with(",1,"), "{csv}");
    assert!(lines[2].starts_with(&format!("{eval},3,")), "{csv}");

    let (s, e) = env.admin("GET", "/admin/usage?group_by=colour", None).await;
    assert_eq!((s, e["error"]["param"].as_str()), (400, Some("group_by")));
}

fn chrono_day() -> String {
    let days = chrono_ms() / 86_400_000;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Env {
    async fn mint(&self, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.gw.url("/v1/tokens"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn short_lived_tokens_are_scoped_signed_and_die_with_their_key() {
    let env = start();
    let team = env.team(json!({"name": "web"})).await;
    let (id, key) = env
        .key(json!({"name": "browser-backend", "team": team}))
        .await;
    let (s, t) = env
        .mint(&key, json!({"models": ["gpt"], "ttl_seconds": 600}))
        .await;
    assert_eq!(s, 200, "{t}");
    let token = t["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("jt-"));
    assert!(t["expires_at"].as_i64().unwrap() > chrono_ms() + 590_000);
    // Scoped: the model it names, nothing else.
    assert_eq!(env.chat(&token, "gpt").await.0, 200);
    let (s, e) = env.chat(&token, "other").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("model_not_allowed"))
    );
    // Its usage is its key's.
    let (_, v) = env.admin("GET", "/admin/usage?group_by=key", None).await;
    let mine = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == id.as_str())
        .unwrap();
    assert_eq!(mine["requests"], 1);
    // A token cannot mint another, nor widen its key.
    assert_eq!(env.mint(&token, json!({})).await.0, 403);
    // Forged: a character of the signature changed, or a payload of its own.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let (s, e) = env.chat(std::str::from_utf8(&forged).unwrap(), "gpt").await;
    assert_eq!(
        (s, e["error"]["message"].as_str()),
        (401, Some("Invalid token."))
    );
    // Bad asks.
    assert_eq!(
        env.mint(&key, json!({"ttl_seconds": 7200})).await.1["error"]["param"],
        "ttl_seconds"
    );
    env.admin(
        "PATCH",
        &format!("/admin/keys/{id}"),
        Some(json!({"models": ["gpt"]})),
    )
    .await;
    let (s, e) = env.mint(&key, json!({"models": ["other"]})).await;
    assert_eq!((s, e["error"]["param"].as_str()), (403, Some("models")));
    // A config key mints too.
    let (s, c) = env.mint(ALL_KEY, json!({"ttl_seconds": 60})).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(env.chat(c["token"].as_str().unwrap(), "other").await.0, 200);

    // Expiry: a one-second token is refused once its second is over.
    let (_, short) = env.mint(&key, json!({"ttl_seconds": 1})).await;
    let short = short["token"].as_str().unwrap().to_string();
    let message = eventually("the token to expire", || async {
        let (s, e) = env.chat(&short, "gpt").await;
        (s == 401).then(|| e["error"]["message"].clone())
    })
    .await;
    assert_eq!(message, "This token has expired.");

    // The key revoked: its tokens stop at once.
    env.admin("DELETE", &format!("/admin/keys/{id}"), None)
        .await;
    let (s, e) = env.chat(&token, "gpt").await;
    assert_eq!(
        (s, e["error"]["message"].as_str()),
        (401, Some("This token's key is no longer valid."))
    );
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_no_one_else_does() {
    async fn ask(env: &Env, key: &str, forwarded: &str) -> u16 {
        env.http
            .post(env.gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-forwarded-for", forwarded)
            .body(chat_body("gpt", false))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
    // Behind a proxy on loopback (the test's client), which appends the address it saw.
    let env = start_with(r#"trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]"#);
    let team = env.team(json!({"name": "office"})).await;
    let (_, key) = env
        .key(json!({"name": "k", "team": team, "ips": ["203.0.113.0/24", "2001:db8::/32"]}))
        .await;
    assert_eq!(ask(&env, &key, "203.0.113.9").await, 200);
    assert_eq!(ask(&env, &key, "2001:db8::7").await, 200);
    // Through a second trusted hop: the last untrusted address is the client.
    assert_eq!(ask(&env, &key, "203.0.113.9, 10.1.2.3").await, 200);
    // A client that puts an allowed address first, behind its own real one: refused.
    assert_eq!(ask(&env, &key, "203.0.113.9, 198.51.100.1").await, 403);
    assert_eq!(ask(&env, &key, "198.51.100.1").await, 403);
    // Without trusted proxies the header is only a header.
    let plain = start();
    let team = plain.team(json!({"name": "office"})).await;
    let (_, key) = plain
        .key(json!({"name": "k", "team": team, "ips": ["203.0.113.0/24"]}))
        .await;
    assert_eq!(ask(&plain, &key, "203.0.113.9").await, 403);
}

#[tokio::test]
async fn a_team_admin_manages_its_own_team_and_sees_nothing_of_another() {
    let env = start();
    let mine = env.team(json!({"name": "mine"})).await;
    let theirs = env.team(json!({"name": "theirs"})).await;
    let (_, admin) = env
        .key(json!({"name": "lead", "team": mine, "role": "team_admin"}))
        .await;
    let (their_key_id, their_key) = env.key(json!({"name": "x", "team": theirs})).await;
    let as_lead = |method: &'static str, path: String, body: Option<Value>| {
        let env = &env;
        let admin = admin.clone();
        async move {
            let mut r = env
                .http
                .request(
                    method.parse().unwrap(),
                    format!("http://{}{path}", env.admin),
                )
                .bearer_auth(admin);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Its own team: keys made, listed, revoked.
    let (s, k) = as_lead(
        "POST",
        "/admin/keys".into(),
        Some(json!({"name": "dev", "team": mine})),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let dev = k["secret"].as_str().unwrap().to_string();
    let dev_id = k["key"]["id"].as_str().unwrap().to_string();
    assert_eq!(env.chat(&dev, "gpt").await.0, 200);
    let (_, list) = as_lead("GET", "/admin/keys".into(), None).await;
    let teams: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["team"].as_str().unwrap())
        .collect();
    assert!(
        !teams.is_empty() && teams.iter().all(|t| *t == mine),
        "{list}"
    );
    let (_, t) = as_lead("GET", "/admin/teams".into(), None).await;
    assert_eq!(t["teams"].as_array().unwrap().len(), 1);
    assert_eq!(t["teams"][0]["id"], mine.as_str());
    // Its usage only.
    assert_eq!(env.chat(&their_key, "gpt").await.0, 200);
    let (s, u) = as_lead("GET", "/admin/usage?group_by=team".into(), None).await;
    assert_eq!(s, 200, "{u}");
    let groups = u["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{u}");
    assert_eq!(groups[0]["team"], mine.as_str());
    // Another team: not there, whatever it asks.
    for (method, path, body) in [
        ("GET", format!("/admin/keys/{their_key_id}"), None),
        ("DELETE", format!("/admin/keys/{their_key_id}"), None),
        (
            "PATCH",
            format!("/admin/keys/{their_key_id}"),
            Some(json!({"models": ["gpt"]})),
        ),
        (
            "POST",
            format!("/admin/keys/{their_key_id}/rotate"),
            Some(json!({})),
        ),
        ("GET", format!("/admin/teams/{theirs}"), None),
        ("GET", format!("/admin/keys?team={theirs}"), None),
    ] {
        let (s, e) = as_lead(method, path.clone(), body).await;
        assert_eq!(s, 404, "{method} {path}: {e}");
        assert!(!e.to_string().contains("\"x\""), "{e}");
    }
    let (s, _) = as_lead(
        "POST",
        "/admin/keys".into(),
        Some(json!({"name": "y", "team": theirs})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        env.chat(&their_key, "gpt").await.0,
        200,
        "their key untouched"
    );
    // What only the operator does.
    for (method, path) in [
        ("POST", "/admin/teams"),
        ("DELETE", &*format!("/admin/teams/{mine}")),
        ("GET", "/admin/config"),
        ("POST", "/admin/reload"),
        ("GET", "/admin/deployments"),
    ] {
        let (s, _) = as_lead(method, path.to_string(), Some(json!({"name": "z"}))).await;
        assert_eq!(s, 403, "{method} {path}");
    }
    // Its audit trail: its team's changes only, by it.
    as_lead("DELETE", format!("/admin/keys/{dev_id}"), None).await;
    let (_, a) = as_lead("GET", "/admin/audit".into(), None).await;
    let entries = a["entries"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["team"] == mine.as_str()), "{a}");
    assert_eq!(entries[0]["action"], "key.revoke");
    assert!(entries[0]["actor"].as_str().unwrap().starts_with("key_"));
    // The credential is for the admin API only.
    let (s, e) = env.chat(&admin, "gpt").await;
    assert_eq!(s, 403, "{e}");
    // A member key is no admin.
    let r = env
        .http
        .get(format!("http://{}/admin/keys", env.admin))
        .bearer_auth(&their_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

fn admin_cli(env: &Env, key: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_junction"));
    cmd.arg("admin")
        .arg("--url")
        .arg(format!("http://{}", env.admin))
        .args(args)
        .env_remove("JUNCTION_ADMIN_KEY");
    if let Some(k) = key {
        cmd.env("JUNCTION_ADMIN_KEY", k);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn junction_admin_on_the_command_line() {
    let env = start();
    let (ok, out, err) = admin_cli(
        &env,
        Some(ADMIN),
        &["teams", "create", "scripts", "--models", "gpt"],
    );
    assert!(ok, "{err}");
    let team: Value = serde_json::from_str(&out).unwrap();
    let team = team["id"].as_str().unwrap().to_string();
    let ops = env.member("users", &team, "ops").await;
    let (ok, out, err) = admin_cli(
        &env,
        Some(ADMIN),
        &[
            "keys", "create", "--team", &team, "--name", "cron", "--user", &ops,
        ],
    );
    assert!(ok, "{err}");
    let k: Value = serde_json::from_str(&out).unwrap();
    let secret = k["secret"].as_str().unwrap().to_string();
    let id = k["key"]["id"].as_str().unwrap().to_string();
    assert_eq!(env.chat(&secret, "gpt").await.0, 200);
    let (ok, out, _) = admin_cli(&env, Some(ADMIN), &["keys", "list", "--team", &team]);
    assert!(ok && out.contains(&id), "{out}");
    let (ok, out, _) = admin_cli(&env, Some(ADMIN), &["usage", "--group-by", "user", "--csv"]);
    assert!(
        ok && out.lines().any(|l| l.starts_with(&format!("{ops},1,"))),
        "{out}"
    );
    let (ok, _, err) = admin_cli(&env, Some(ADMIN), &["keys", "revoke", &id]);
    assert!(ok, "{err}");
    assert_eq!(env.chat(&secret, "gpt").await.0, 401);
    let (ok, out, _) = admin_cli(&env, Some(ADMIN), &["audit", "--limit", "1"]);
    assert!(ok && out.contains("key.revoke"), "{out}");
    // Refusals: exit 1, the gateway's message.
    let (ok, _, err) = admin_cli(
        &env,
        Some(ADMIN),
        &["keys", "create", "--team", "team_nope", "--name", "x"],
    );
    assert!(!ok && err.contains("400") && err.contains("team"), "{err}");
    let (ok, _, err) = admin_cli(&env, Some("sk-wrong"), &["teams", "list"]);
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, _, err) = admin_cli(&env, None, &["teams", "list"]);
    assert!(!ok && err.contains("JUNCTION_ADMIN_KEY"), "{err}");
}

/// Two gateways on one store. On PostgreSQL the second is told of each change (its periodic
/// refresh is an hour away); two processes on one SQLite file see each other's changes at
/// their periodic refresh.
#[tokio::test]
async fn a_second_process_on_the_same_store_sees_changes() {
    let refresh = if Store::fresh_is_postgres() {
        "refresh_secs = 3600"
    } else {
        "refresh_secs = 1"
    };
    let a = start_on("", None, refresh);
    let b = start_on("", Some(&a.store), refresh);
    let team = a.team(json!({"name": "shared"})).await;
    let (id, secret) = a.key(json!({"name": "k", "team": team})).await;
    eventually("the other process to take the new key", || async {
        (b.chat(&secret, "gpt").await.0 == 200).then_some(())
    })
    .await;
    let revoked = std::time::Instant::now();
    a.admin("DELETE", &format!("/admin/keys/{id}"), None).await;
    eventually("the other process to refuse the revoked key", || async {
        (b.chat(&secret, "gpt").await.0 == 401).then_some(())
    })
    .await;
    eprintln!("refused on the other process after {:?}", revoked.elapsed());
    // And a key made on the second is taken by the first.
    let (_, other) = b.key(json!({"name": "k2", "team": team})).await;
    eventually("the first process to take the other's key", || async {
        (a.chat(&other, "gpt").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn users_and_projects_belong_to_a_team_and_take_their_keys_with_them() {
    let env = start();
    let team = env.team(json!({"name": "lab"})).await;
    let other = env.team(json!({"name": "elsewhere"})).await;
    let ada = env.member("users", &team, "ada").await;
    let proj = env.member("projects", &team, "vision").await;
    assert!(ada.starts_with("user_") && proj.starts_with("project_"));
    let (s, e) = env
        .admin(
            "POST",
            "/admin/users",
            Some(json!({"team": team, "name": "ada"})),
        )
        .await;
    assert_eq!(s, 400, "the same name twice in a team: {e}");
    let (_, users) = env
        .admin("GET", &format!("/admin/users?team={team}"), None)
        .await;
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
    // A key's user and project are the team's own.
    let (s, e) = env
        .admin(
            "POST",
            "/admin/keys",
            Some(json!({"name": "k", "team": other, "user": ada})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("user")),
        "{e}"
    );
    let (s, e) = env
        .admin(
            "POST",
            "/admin/keys",
            Some(json!({"name": "k", "team": team, "project": "project_nope"})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("project")),
        "{e}"
    );
    let (_, mine) = env
        .key(json!({"name": "k", "team": team, "user": ada, "project": proj}))
        .await;
    let (_, theirs) = env
        .key(json!({"name": "k2", "team": team, "project": proj}))
        .await;
    assert_eq!(env.chat(&mine, "gpt").await.0, 200);
    // Deleting the user revokes its keys, not the project's other ones; deleting the project
    // revokes the rest.
    let (s, d) = env
        .admin("DELETE", &format!("/admin/users/{ada}"), None)
        .await;
    assert_eq!((s, d["revoked_keys"].as_u64()), (200, Some(1)), "{d}");
    assert_eq!(env.chat(&mine, "gpt").await.0, 401);
    assert_eq!(env.chat(&theirs, "gpt").await.0, 200);
    env.admin("DELETE", &format!("/admin/projects/{proj}"), None)
        .await;
    assert_eq!(env.chat(&theirs, "gpt").await.0, 401);
    let (s, _) = env.admin("GET", &format!("/admin/users/{ada}"), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn review_fixes_rotation_ends_tokens_and_limits_hold_on_the_admin_listener() {
    let env = start();
    let team = env.team(json!({"name": "r"})).await;
    let (id, key) = env.key(json!({"name": "k", "team": team})).await;
    let (_, t) = env.mint(&key, json!({"ttl_seconds": 600})).await;
    let token = t["token"].as_str().unwrap().to_string();
    assert_eq!(env.chat(&token, "gpt").await.0, 200);
    // Rotated with a grace period: the old secret still serves, but its tokens are gone and
    // it mints no more.
    let (_, r) = env
        .admin(
            "POST",
            &format!("/admin/keys/{id}/rotate"),
            Some(json!({"grace_seconds": 600})),
        )
        .await;
    let new = r["secret"].as_str().unwrap().to_string();
    assert_eq!(env.chat(&key, "gpt").await.0, 200);
    assert_eq!(env.chat(&token, "gpt").await.0, 401);
    assert_eq!(env.mint(&key, json!({})).await.0, 403);
    let (s, t) = env.mint(&new, json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(env.chat(t["token"].as_str().unwrap(), "gpt").await.0, 200);
    // The grace period is bounded.
    let (s, e) = env
        .admin(
            "POST",
            &format!("/admin/keys/{id}/rotate"),
            Some(json!({"grace_seconds": 9_300_000_000_000_000i64})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("grace_seconds"))
    );
    // A team admin's address limits hold on the admin listener too.
    let walled = env
        .team(json!({"name": "walled", "ips": ["10.0.0.0/8"]}))
        .await;
    let (_, admin) = env
        .key(json!({"name": "lead", "team": walled, "role": "team_admin"}))
        .await;
    let r = env
        .http
        .get(format!("http://{}/admin/keys", env.admin))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_clients_key_in_the_query_is_never_passed_upstream() {
    let capture = fixture("anthropic_message.json");
    let (up, seen) = recording_upstream(200, "application/json", capture).await;
    let config = format!(
        r#"
[server]
listen = "{{listen}}"

[[keys]]
name = "k"
sha256 = "{all}"

[providers.anthropic]
kind = "anthropic"
base_url = "http://{up}/v1"

[models.claude]
provider = "anthropic"
model = "claude-sonnet-4-5"
"#,
        all = sha256_hex(ALL_KEY.as_bytes()),
    );
    let gw = start_gateway(&config);
    let r = reqwest::Client::new()
        .post(gw.url(&format!("/v1/messages?beta=true&key={ALL_KEY}")))
        .header("anthropic-version", "2023-06-01")
        .body(r#"{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(got.request_line(), "POST /v1/messages?beta=true HTTP/1.1");
    assert!(!String::from_utf8_lossy(&got.body).contains(ALL_KEY));
}

/// A stored key's refusals in each door's own error format: the model rule (403), then,
/// revoked, the key (401), saying which rule refused and naming nothing of anyone else.
#[tokio::test]
async fn each_door_refuses_a_stored_key_in_its_own_format() {
    let env = start();
    let team = env.team(json!({"name": "doors"})).await;
    let (id, secret) = env
        .key(json!({"name": "k", "team": team, "models": ["gpt"]}))
        .await;
    let doors = ["chat", "responses", "messages", "gemini"];
    for door in doors {
        let (path, body, header, done) = door_request(door, "gpt");
        let (s, text) = send_door_as(&env.gw, &path, body, header, &secret).await;
        assert_eq!(s, 200, "{door}: {text}");
        assert!(text.contains(done), "{door}: {text}");
        let (path, body, header, _) = door_request(door, "other");
        let (s, text) = send_door_as(&env.gw, &path, body, header, &secret).await;
        assert_eq!(s, 403, "{door}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        refusal(door, &v, 403, "may not use the model `other`");
    }
    env.admin("DELETE", &format!("/admin/keys/{id}"), None)
        .await;
    for door in doors {
        let (path, body, header, _) = door_request(door, "gpt");
        let (s, text) = send_door_as(&env.gw, &path, body, header, &secret).await;
        assert_eq!(s, 401, "{door}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        refusal(door, &v, 401, "revoked");
        assert!(!text.contains(&team) && !text.contains("doors"), "{text}");
    }
}

/// `v` is `door`'s error of `status`, its message holding `says`.
fn refusal(door: &str, v: &Value, status: u16, says: &str) {
    let message = match door {
        "messages" => {
            assert_eq!(v["type"], "error", "{v}");
            let t = if status == 401 {
                "authentication_error"
            } else {
                "permission_error"
            };
            assert_eq!(v["error"]["type"], t, "{v}");
            &v["error"]["message"]
        }
        "gemini" => {
            assert_eq!(v["error"]["code"], status, "{v}");
            let t = if status == 401 {
                "UNAUTHENTICATED"
            } else {
                "PERMISSION_DENIED"
            };
            assert_eq!(v["error"]["status"], t, "{v}");
            &v["error"]["message"]
        }
        _ => {
            assert!(v["error"]["type"].is_string(), "{v}");
            &v["error"]["message"]
        }
    };
    assert!(message.as_str().unwrap().contains(says), "{door}: {v}");
}
