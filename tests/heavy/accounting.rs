use crate::common::accounting::*;
use crate::common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_requests_then_sigterm_leave_ten_thousand_records() {
    let mock = start_mock();
    let admin = format!("127.0.0.1:{}", free_port());
    let (mut gw, config) = start_gateway_at(
        &format!("127.0.0.1:{}", free_port()),
        &accounting_config(&mock, &admin, ""),
    );
    let ledger = config.with_file_name("junction-ledger.sqlite");
    let http = reqwest::Client::new();
    let url = gw.url("/v1/chat/completions");
    let n = 10_000usize;
    let workers = 32;
    let ok = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (http, url, ok) = (http.clone(), url.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let models = ["openai-cached", "anthropic-cached", "gemini-cached"];
            for i in (w..n).step_by(workers) {
                let stream = i % 2 == 0;
                let r = http
                    .post(&url)
                    .bearer_auth(ALL_KEY)
                    .body(chat_body(models[i % 3], stream))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
                ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ok.load(std::sync::atomic::Ordering::Relaxed), n);
    // Stop it at once, with records possibly still queued.
    let pid = gw.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the gateway did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}: {}", gw.log_text());
    let db = rusqlite::Connection::open(&ledger).unwrap();
    let (rows, complete, tokens, content): (i64, i64, i64, i64) = db
        .query_row(
            "SELECT COUNT(*), SUM(ending = 'complete'), SUM(output_tokens),
                SUM(prompt IS NOT NULL OR completion IS NOT NULL) FROM requests",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        content, 0,
        "no prompt or completion text unless the operator opts in"
    );
    assert_eq!(rows, n as i64, "{}", gw.log_text());
    assert_eq!(complete, n as i64);
    assert_eq!(
        tokens,
        3 * n as i64,
        "3 output tokens each, as the mock reported"
    );
    let journal: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}
