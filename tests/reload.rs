//! Config reload while traffic flows: admin API, SIGHUP and file changes; refused files keep
//! the old config serving; deployment health survives.

mod common;

use common::reload::config;
use common::reload::*;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

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
    assert_eq!(v["reloaded"], false, "{v}");
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
