//! The rules of admission and settlement, on the counters of this process and, with
//! `JUNCTION_TEST_REDIS=redis://…` (what `tests/redis/start` prints), on Redis.

use super::*;
use std::sync::Mutex;

fn levels(tag: &str, list: Vec<(Kind, &str, Limits)>) -> Arc<Levels> {
    Arc::new(Levels {
        tag: tag.into(),
        list: list
            .into_iter()
            .map(|(kind, id, limits)| Level {
                kind,
                id: id.into(),
                limits: Arc::new(limits),
            })
            .collect(),
    })
}

/// Every governor under test: memory, and Redis when one is given.
fn governors() -> Vec<(&'static str, Arc<Governor>)> {
    let settings = Settings {
        hold: Duration::from_secs(30),
        alert_at: vec![50, 100],
        on_error: OnError::FailClosed,
    };
    let mut all = vec![("memory", Arc::new(Governor::memory(settings.clone())))];
    if let Ok(url) = std::env::var("JUNCTION_TEST_REDIS") {
        all.push((
            "redis",
            Arc::new(Governor::shared(&url, settings).expect("redis")),
        ));
    }
    all
}

/// A tag no other test run uses: the Redis keys of each test are its own.
fn fresh(name: &str) -> String {
    format!("{name}-{:x}", fastrand::u64(..))
}

fn budget(micros: u64) -> Option<Budget> {
    Some(Budget {
        micros,
        period: Period::Month,
        soft: false,
    })
}

async fn admitted(g: &Arc<Governor>, l: &Arc<Levels>, ask: Ask) -> Option<(Hold, RateHeaders)> {
    match g.admit(l.clone(), ask).await.expect("reachable") {
        Admission::Admitted(h, headers) => Some((h, headers)),
        Admission::Refused(..) => None,
    }
}

async fn refusal_of(g: &Arc<Governor>, l: &Arc<Levels>, ask: Ask) -> Refused {
    match g.admit(l.clone(), ask).await.expect("reachable") {
        Admission::Admitted(..) => panic!("admitted"),
        Admission::Refused(r, _) => r,
    }
}

/// Waits for the settlements sent to Redis's thread to land (memory settles at once).
async fn settled(g: &Governor, l: &Level, tag: &str, held: u64) -> LevelState {
    for _ in 0..500 {
        let s = g.state(l, tag).await.unwrap();
        if s.held_usd_micros == held {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the holds never settled to {held}");
}

#[tokio::test]
async fn requests_per_minute_admit_exactly_the_limit_and_say_so_in_headers() {
    for (name, g) in governors() {
        let tag = fresh("rpm");
        let l = levels(
            &tag,
            vec![(
                Kind::Key,
                "k",
                Limits {
                    rpm: Some(3),
                    ..Default::default()
                },
            )],
        );
        let mut holds = Vec::new();
        for left in [2, 1, 0] {
            let (h, headers) = admitted(&g, &l, Ask::default()).await.expect(name);
            let w = headers.requests.expect("a requests window");
            assert_eq!((w.limit, w.remaining), (3, left), "{name}");
            assert!(
                headers.tokens.is_none(),
                "{name}: no token limit, no token headers"
            );
            holds.push(h);
        }
        let r = refusal_of(&g, &l, Ask::default()).await;
        assert_eq!((r.level, r.limit), (0, Limit::Requests), "{name}");
        assert!(r.retry_after <= Duration::from_secs(60), "{name}");
        // Settling does not give a request back: it was made.
        for h in holds {
            h.settle(0, 0);
        }
        assert_eq!(
            refusal_of(&g, &l, Ask::default()).await.limit,
            Limit::Requests,
            "{name}"
        );
    }
}

#[tokio::test]
async fn tokens_are_held_at_the_estimate_and_settled_to_what_was_used() {
    for (name, g) in governors() {
        let tag = fresh("tpm");
        let l = levels(
            &tag,
            vec![(
                Kind::Key,
                "k",
                Limits {
                    tpm: Some(1000),
                    ..Default::default()
                },
            )],
        );
        let ask = Ask {
            tokens: 600,
            cost: 0,
        };
        let (h, headers) = admitted(&g, &l, ask).await.expect(name);
        assert_eq!(headers.tokens.unwrap().remaining, 400, "{name}");
        assert_eq!(refusal_of(&g, &l, ask).await.limit, Limit::Tokens, "{name}");
        // It used 100 of its 600: 900 are left for the minute.
        h.settle(100, 0);
        let lv = &l.list[0];
        for _ in 0..500 {
            if g.state(lv, &tag).await.unwrap().tokens_this_minute == 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            g.state(lv, &tag).await.unwrap().tokens_this_minute,
            100,
            "{name}"
        );
        let (_, headers) = admitted(&g, &l, ask).await.expect(name);
        assert_eq!(headers.tokens.unwrap().remaining, 300, "{name}");
    }
}

#[tokio::test]
async fn requests_in_flight_are_bounded_and_a_settled_one_frees_its_place() {
    for (name, g) in governors() {
        let tag = fresh("par");
        let l = levels(
            &tag,
            vec![(
                Kind::Team,
                "t",
                Limits {
                    max_parallel: Some(2),
                    ..Default::default()
                },
            )],
        );
        let a = admitted(&g, &l, Ask::default()).await.expect(name).0;
        let _b = admitted(&g, &l, Ask::default()).await.expect(name).0;
        assert_eq!(
            refusal_of(&g, &l, Ask::default()).await.limit,
            Limit::Parallel,
            "{name}"
        );
        a.settle(0, 0);
        settled(&g, &l.list[0], &tag, 0).await;
        for _ in 0..500 {
            if g.state(&l.list[0], &tag).await.unwrap().in_flight == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(admitted(&g, &l, Ask::default()).await.is_some(), "{name}");
    }
}

#[tokio::test]
async fn a_hard_budget_holds_the_estimate_and_spends_the_exact_cost() {
    for (name, g) in governors() {
        let tag = fresh("budget");
        let l = levels(
            &tag,
            vec![(
                Kind::Key,
                "k",
                Limits {
                    budget: budget(1000),
                    ..Default::default()
                },
            )],
        );
        let ask = Ask {
            tokens: 10,
            cost: 400,
        };
        let a = admitted(&g, &l, ask).await.expect(name).0;
        let b = admitted(&g, &l, ask).await.expect(name).0;
        // 800 held: a third estimate of 400 does not fit, though nothing is spent yet.
        let r = refusal_of(&g, &l, ask).await;
        assert_eq!((r.limit, r.level), (Limit::Budget, 0), "{name}");
        a.settle(10, 150);
        b.settle(10, 250);
        let s = settled(&g, &l.list[0], &tag, 0).await;
        assert_eq!(s.spent_usd_micros, 400, "{name}");
        // 600 left: one more estimate of 400 fits, a second does not.
        let c = admitted(&g, &l, ask).await.expect(name).0;
        assert_eq!(refusal_of(&g, &l, ask).await.limit, Limit::Budget, "{name}");
        drop(c); // dropped unsettled: charged at its estimate
        let s = settled(&g, &l.list[0], &tag, 0).await;
        assert_eq!(s.spent_usd_micros, 800, "{name}");
    }
}

#[tokio::test]
async fn every_level_or_none_is_charged() {
    for (name, g) in governors() {
        let tag = fresh("levels");
        let key = (
            Kind::Key,
            "k",
            Limits {
                rpm: Some(10),
                ..Default::default()
            },
        );
        let team = (
            Kind::Team,
            "t",
            Limits {
                rpm: Some(1),
                ..Default::default()
            },
        );
        let l = levels(&tag, vec![key, team]);
        let _a = admitted(&g, &l, Ask::default()).await.expect(name);
        let r = refusal_of(&g, &l, Ask::default()).await;
        assert_eq!(
            (r.level, r.limit),
            (1, Limit::Requests),
            "{name}: the team refused"
        );
        // The key was not charged for the refused request.
        let s = g.state(&l.list[0], &tag).await.unwrap();
        assert_eq!(s.requests_this_minute, 1, "{name}");
    }
}

#[tokio::test]
async fn a_soft_budget_refuses_nothing_and_alerts_once_per_threshold() {
    for (name, g) in governors() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let g = match Arc::try_unwrap(g) {
            Ok(g) => Arc::new(g.on_alert(move |a| into.lock().unwrap().push(a.threshold_percent))),
            Err(_) => unreachable!(),
        };
        let tag = fresh("soft");
        let soft = Some(Budget {
            micros: 100,
            period: Period::Day,
            soft: true,
        });
        let l = levels(
            &tag,
            vec![(
                Kind::User,
                "u",
                Limits {
                    budget: soft,
                    ..Default::default()
                },
            )],
        );
        for _ in 0..3 {
            let (h, _) = admitted(
                &g,
                &l,
                Ask {
                    tokens: 1,
                    cost: 60,
                },
            )
            .await
            .expect(name);
            h.settle(1, 60);
        }
        let s = settled(&g, &l.list[0], &tag, 0).await;
        assert_eq!(s.spent_usd_micros, 180, "{name}");
        for _ in 0..500 {
            if seen.lock().unwrap().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*seen.lock().unwrap(), vec![50, 100], "{name}");
    }
}

struct Ledger(u64);

impl Spent for Ledger {
    fn spent(&self, kind: Kind, id: &str, _since: i64) -> Result<u64, String> {
        assert_eq!((kind, id), (Kind::Project, "p"));
        Ok(self.0)
    }
}

#[tokio::test]
async fn a_new_budget_counter_starts_from_what_the_ledger_says() {
    for (name, g) in governors() {
        let g = match Arc::try_unwrap(g) {
            Ok(g) => Arc::new(g.with_spent(Arc::new(Ledger(900)))),
            Err(_) => unreachable!(),
        };
        let tag = fresh("seed");
        let l = levels(
            &tag,
            vec![(
                Kind::Project,
                "p",
                Limits {
                    budget: budget(1000),
                    ..Default::default()
                },
            )],
        );
        let ask = Ask {
            tokens: 1,
            cost: 150,
        };
        assert_eq!(refusal_of(&g, &l, ask).await.limit, Limit::Budget, "{name}");
        let small = Ask {
            tokens: 1,
            cost: 100,
        };
        admitted(&g, &l, small).await.expect(name).0.settle(1, 100);
        let s = settled(&g, &l.list[0], &tag, 0).await;
        assert_eq!(s.spent_usd_micros, 1000, "{name}");
    }
}

#[test]
fn reset_is_written_as_openai_writes_it() {
    assert_eq!(reset_text(Duration::from_millis(20)), "20ms");
    assert_eq!(reset_text(Duration::from_millis(1500)), "2s");
    assert_eq!(reset_text(Duration::from_secs(360)), "6m0s");
}

#[test]
fn thresholds_are_crossed_once() {
    let b = Budget {
        micros: 1000,
        period: Period::Total,
        soft: false,
    };
    assert_eq!(crossed(&b, &[50, 100], 0, 499), Vec::<u32>::new());
    assert_eq!(crossed(&b, &[50, 100], 499, 500), vec![50]);
    assert_eq!(crossed(&b, &[50, 100], 500, 2000), vec![100]);
    assert_eq!(crossed(&b, &[50, 100], 0, 2000), vec![50, 100]);
}
