//! Graceful shutdown: SIGTERM turns /ready off and lets the streams in flight finish.

use crate::common::*;
use futures_util::StreamExt;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_a_hundred_open_streams_complete() {
    let mock = start_mock();
    let gw = start_gateway(&format!(
        r#"
[server]
listen = "{{listen}}"

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.slow]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-chunk-delay-ms" = "50", "x-mock-chunks" = "30" }}

[models.slow]
provider = "slow"
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
        m = mock.addr,
    ));
    let http = reqwest::Client::new();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(100);
    let mut streams = Vec::new();
    for _ in 0..100 {
        let http = http.clone();
        let url = gw.url("/v1/chat/completions");
        let started = started_tx.clone();
        streams.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(ALL_KEY)
                .body(chat_body("slow", true))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let mut body = Vec::new();
            let mut s = r.bytes_stream();
            let mut told = false;
            while let Some(chunk) = s.next().await {
                body.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
                if !told {
                    told = true;
                    let _ = started.send(()).await;
                }
            }
            Ok::<String, String>(String::from_utf8_lossy(&body).into_owned())
        }));
    }
    // Every stream is open and under way (1.5 s each) before the signal.
    for _ in 0..100 {
        tokio::time::timeout(Duration::from_secs(20), started_rx.recv())
            .await
            .expect("streams started")
            .unwrap();
    }
    let pid = gw.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // While it drains, the gateway tells load balancers it is not ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let r = http.get(gw.url("/ready")).send().await.unwrap();
        if r.status() == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still ready while draining"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut complete = 0;
    for s in streams {
        let body = s.await.unwrap().expect("stream finished");
        if sse_data(&body).last().is_some_and(|d| d == "[DONE]") {
            complete += 1;
        }
    }
    assert_eq!(complete, 100);
}
