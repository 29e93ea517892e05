//! Issue 19: the gateway killed with SIGKILL under load, then restarted on the same ledger.
use crate::common::accounting::*;
use crate::common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a SIGKILL under load costs the ledger: the file stays sound (`PRAGMA
/// integrity_check`), every record it has is whole, and the records lost are at most those
/// the writer had not committed yet (one batch: what queued in one poll interval, and the
/// requests still in flight). The gateway restarts on it and goes on recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_leaves_a_sound_ledger_missing_at_most_the_last_batch() {
    let mock = start_mock();
    let admin = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let config_text = accounting_config(&mock, &admin, "");
    let (mut gw, config) = start_gateway_at(&listen, &config_text);
    let ledger = config.with_file_name("junction-ledger.sqlite");
    let http = reqwest::Client::new();
    let url = gw.url("/v1/chat/completions");
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (http, url, answered, stop) =
            (http.clone(), url.clone(), answered.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let models = ["openai-cached", "anthropic-cached", "gemini-cached"];
            let mut i = w;
            while !stop.load(Relaxed) {
                i += 1;
                let sent = http
                    .post(&url)
                    .bearer_auth(ALL_KEY)
                    .body(chat_body(models[i % 3], i % 2 == 0))
                    .send()
                    .await;
                // After the kill: refused or cut, and the loop ends.
                let Ok(r) = sent else { break };
                if r.status() == 200 && r.bytes().await.is_ok() {
                    answered.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    // Under load for a while (bounded), then killed without a chance to write anything.
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.load(Relaxed) < 3_000 {
        assert!(Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    stop.store(true, Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.load(Relaxed) as i64;

    let db = rusqlite::Connection::open(&ledger).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let (rows, whole): (i64, i64) = db
        .query_row(
            "SELECT COUNT(*), SUM(ending = 'complete' AND output_tokens = 3) FROM requests",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let lost = answered - whole;
    println!("answered {answered}, recorded {rows} ({whole} complete), lost {lost}");
    assert!(
        whole <= answered && rows >= whole,
        "{answered} {rows} {whole}"
    );
    // The writer commits what queued in each 10 ms poll (at most 1,024 rows a transaction):
    // what a kill can take is that batch and the requests answered since.
    assert!(lost <= 1024, "lost {lost} of {answered}");
    drop(db);

    // Restarted on the same ledger: it opens, serves, and records on top.
    let gw = start_gateway_on(listen.parse().unwrap(), &config);
    for stream in [false, true] {
        let r = http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(ALL_KEY)
            .body(chat_body("openai-cached", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    let more = eventually("the restarted gateway's records", || async {
        let db = rusqlite::Connection::open(&ledger).ok()?;
        let n: i64 = db
            .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))
            .ok()?;
        (n >= rows + 2).then_some(n)
    })
    .await;
    assert_eq!(more, rows + 2);
    drop(gw);
}
