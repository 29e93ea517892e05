//! Binary upgrade under load: a new process takes the listening sockets over from the running
//! one (Pingora's hand-over on SIGQUIT) and no request fails.

use crate::common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binary_upgrade_under_load_fails_no_request() {
    let mock = start_mock();
    let sock = tmp_path("upgrade.sock");
    let text = format!(
        r#"
[server]
listen = "{{listen}}"
shutdown_grace_secs = 3
upgrade_sock = "{sock}"

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.mock]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-ttft-ms" = "20" }}

[models.m]
provider = "mock"
"#,
        sock = sock.display(),
        hash = sha256_hex(ALL_KEY.as_bytes()),
        m = mock.addr,
    );
    let (mut old, path) = start_gateway_at(&format!("127.0.0.1:{}", free_port()), &text);
    let url = old.url("/v1/chat/completions");

    // Load: fresh connections (a keep-alive connection idle at the hand-over may be closed
    // under a client that just wrote to it; HTTP clients retry only idempotent requests).
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, url) = (stop.clone(), ok.clone(), url.clone());
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match http
                    .post(&url)
                    .bearer_auth(ALL_KEY)
                    .body(chat_body("m", false))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(body) if body.contains("chat.completion") => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.push(format!("body: {other:?}")),
                    },
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("{e}")),
                }
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new process waits on the upgrade socket for the listeners.
    let log = tmp_path("new.log");
    let mut new = Command::new(env!("CARGO_BIN_EXE_junction"))
        .args(["serve", "--upgrade", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "the new process never opened the upgrade socket"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let served_before = ok.load(Ordering::Relaxed);
    let old_pid = old.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-QUIT", &old_pid])
        .status()
        .unwrap()
        .success());
    // Traffic goes on through the hand-over and after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for t in load {
        failures.extend(t.await.unwrap());
    }
    let served = ok.load(Ordering::Relaxed);
    // The old process finishes what it had and exits; the new one serves on the same port.
    let deadline = Instant::now() + Duration::from_secs(15);
    while old.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the old process did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth(ALL_KEY)
        .body(chat_body("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = new.kill();
    let _ = new.wait();
    assert!(
        served > served_before + 20,
        "too little traffic across the upgrade: {served_before} → {served}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:?}\nnew process log:\n{}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(3)],
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
