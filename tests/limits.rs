//! Limits and budgets at the door (issue 17): a config key's requests per minute and its
//! budget, refused in each door's format with OpenAI's headers; a budget that is never
//! overshot and that survives a restart (its spending read from the ledger); and, with
//! `JUNCTION_TEST_REDIS` (what `tests/redis/start` prints), one limit shared by two replicas.

mod common;

use common::*;
use serde_json::Value;

const ADMIN: &str = "sk-admin-limits";
const RATED: &str = "sk-limits-rated";
const FUNDED: &str = "sk-limits-funded";
const OPEN: &str = "sk-limits-open";
/// 1,000 micro-dollars a prompt token, 2,000 an output token.
const BUDGET_MICROS: u64 = 1_000_000;

fn config(mock: &Proc, admin: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
threads = 2

[log]
access = "off"

[store]
path = ""

[admin]
listen = "{admin}"
sha256 = "{admin_hash}"

[[keys]]
name = "rated"
sha256 = "{rated}"
limits = {{ rpm = 3 }}

[[keys]]
name = "open"
sha256 = "{open}"

[[keys]]
name = "funded"
sha256 = "{funded}"
limits = {{ budget_usd = 1.0, budget_period = "day" }}

[providers.mock]
kind = "openai"
base_url = "http://{m}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[providers.claude]
kind = "anthropic"
base_url = "http://{m}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[[models.m.deployments]]
provider = "mock"
price = {{ input = 1000.0, output = 2000.0 }}

[[models.c.deployments]]
provider = "claude"
price = {{ input = 1000.0, output = 2000.0 }}
{extra}
"#,
        m = mock.addr,
        admin_hash = sha256_hex(ADMIN.as_bytes()),
        rated = sha256_hex(RATED.as_bytes()),
        funded = sha256_hex(FUNDED.as_bytes()),
        open = sha256_hex(OPEN.as_bytes()),
    )
}

async fn chat(gw: &Proc, key: &str, model: &str, stream: bool) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .body(format!(
            r#"{{"model":"{model}","max_tokens":20,"messages":[{{"role":"user","content":"hello"}}],"stream":{stream}}}"#
        ))
        .send()
        .await
        .unwrap()
}

/// Waits, when less than ten seconds are left of this minute, for the next one: limits
/// count in minute windows, and the assertions below want one window.
async fn early_in_a_minute() {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let left = 60_000 - ms % 60_000;
    if left < 10_000 {
        tokio::time::sleep(std::time::Duration::from_millis(left + 50)).await;
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// Spent by a key today, from the ledger (`/admin/usage`), once every record is written.
async fn ledger_spent(admin: &str, key: &str, requests: u64) -> u64 {
    let http = reqwest::Client::new();
    eventually("the ledger to have every admitted request", || async {
        let v: Value = http
            .get(format!("http://{admin}/admin/usage?group_by=key"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let g = v["groups"]
            .as_array()?
            .iter()
            .find(|g| g["key"] == key)?
            .clone();
        (g["requests"].as_u64()? >= requests).then(|| g["cost_usd_micros"].as_u64().unwrap())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_per_minute_are_counted_and_told_in_openai_headers() {
    let mock = start_mock();
    let admin = format!("127.0.0.1:{}", free_port());
    let gw = start_gateway(&config(&mock, &admin, ""));
    wait_for_listener(&admin);
    let mut admitted = 0;
    let mut refused = Vec::new();
    early_in_a_minute().await;
    for i in 0..5 {
        let r = chat(&gw, RATED, "m", i % 2 == 0).await;
        match r.status().as_u16() {
            200 => {
                admitted += 1;
                assert_eq!(
                    header(&r, "x-ratelimit-limit-requests").as_deref(),
                    Some("3")
                );
                let left: u64 = header(&r, "x-ratelimit-remaining-requests")
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(left, 3 - admitted);
                assert!(header(&r, "x-ratelimit-reset-requests")
                    .unwrap()
                    .ends_with('s'));
                let _ = r.text().await;
            }
            429 => refused.push(r),
            s => panic!("status {s}"),
        }
    }
    assert_eq!(admitted, 3);
    let r = refused.remove(0);
    assert_eq!(
        header(&r, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    let secs: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    // Another door refuses in its own format.
    let (status, body) = send_door_as(
        &gw,
        "/v1/messages",
        r#"{"model":"c","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#.into(),
        "x-api-key",
        RATED,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("rate_limit_error")),
        "{v}"
    );
    // A key without limits is never told any.
    let r = chat(&gw, FUNDED, "m", false).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "x-ratelimit-limit-requests").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hard_budget_is_never_overshot_and_survives_a_restart() {
    let mock = start_mock();
    let admin = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let (gw, path) = start_gateway_at(&listen, &config(&mock, &admin, ""));
    wait_for_listener(&admin);
    // Ten at a time, half streamed, until the budget refuses.
    let mut admitted = 0u64;
    let mut refused = 0;
    for round in 0..12 {
        let answers = futures_util::future::join_all(
            (0..10).map(|i| chat(&gw, FUNDED, "m", (round + i) % 2 == 0)),
        )
        .await;
        for r in answers {
            match r.status().as_u16() {
                200 => {
                    admitted += 1;
                    let _ = r.text().await;
                }
                429 => {
                    refused += 1;
                    assert!(header(&r, "retry-after").is_some());
                    let v: Value = r.json().await.unwrap();
                    assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
                }
                s => panic!("status {s}"),
            }
        }
    }
    assert!(
        refused > 0 && admitted > 0,
        "{admitted} admitted, {refused} refused"
    );
    // One at a time until one is refused with nothing in flight: then what is left is less
    // than one request's worst case (its prompt and 20 output tokens at the price).
    loop {
        let r = chat(&gw, FUNDED, "m", false).await;
        if r.status() == 429 {
            break;
        }
        assert_eq!(r.status(), 200);
        admitted += 1;
        let _ = r.text().await;
    }
    let spent = ledger_spent(&admin, "funded", admitted).await;
    let worst = 30 * 1000 + 20 * 2000;
    assert!(spent <= BUDGET_MICROS, "spent {spent} of {BUDGET_MICROS}");
    assert!(
        spent + worst > BUDGET_MICROS,
        "spent only {spent}: refused too early"
    );
    // A new process reads today's spending from the ledger: still refused.
    drop(gw);
    let gw = start_gateway_on(listen.parse().unwrap(), &path);
    let r = chat(&gw, FUNDED, "m", true).await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_redis_share_one_limit() {
    let Ok(redis) = std::env::var("JUNCTION_TEST_REDIS") else {
        eprintln!("JUNCTION_TEST_REDIS is not set: tests/redis/start");
        return;
    };
    let mock = start_mock();
    // A key name of its own: the counters of earlier runs are other keys.
    let name = format!("shared{:x}", fastrand::u64(..));
    let extra = format!(
        "\n[redis]\nurl = \"{redis}\"\n\n[[keys]]\nname = \"{name}\"\nkey = \"${{JUNCTION_TEST_LIMITED_KEY}}\"\nlimits = {{ rpm = 4 }}\n"
    );
    let a = start_gateway(&config(
        &mock,
        &format!("127.0.0.1:{}", free_port()),
        &extra,
    ));
    let b = start_gateway(&config(
        &mock,
        &format!("127.0.0.1:{}", free_port()),
        &extra,
    ));
    wait_for_listener(&a.addr.to_string());
    wait_for_listener(&b.addr.to_string());
    let mut admitted = 0;
    early_in_a_minute().await;
    for i in 0..8 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = chat(gw, LIMITED_KEY, "m", false).await;
        match r.status().as_u16() {
            200 => admitted += 1,
            429 => {}
            s => panic!("status {s}"),
        }
    }
    // Four across both (eight, were each counting alone).
    assert_eq!(admitted, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_redis_fails_closed_or_open_as_configured() {
    let mock = start_mock();
    let dead = free_port();
    for (on_error, want) in [("fail_closed", 503), ("fail_open", 200)] {
        let extra =
            format!("\n[redis]\nurl = \"redis://127.0.0.1:{dead}\"\non_error = \"{on_error}\"\n");
        let admin = format!("127.0.0.1:{}", free_port());
        let gw = start_gateway(&config(&mock, &admin, &extra));
        wait_for_listener(&admin);
        let r = chat(&gw, RATED, "m", false).await;
        assert_eq!(r.status().as_u16(), want, "{on_error}");
        if want == 503 {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "limits_unavailable", "{v}");
        }
        // A key without limits never asks Redis.
        let r = reqwest::Client::new()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(OPEN)
            .body(chat_body("m", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{on_error}");
        let metrics = reqwest::Client::new()
            .get(format!("http://{admin}/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("junction_limits_unreachable_total ") && !l.ends_with(" 0")),
            "{on_error}: the unreachable Redis is counted"
        );
    }
}
