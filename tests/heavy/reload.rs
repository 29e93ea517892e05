use crate::common::reload::config;
use crate::common::reload::*;
use crate::common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

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
