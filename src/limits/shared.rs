//! The counters of every replica, in Redis: an admission is one server-side script over
//! every level of the request (one round trip), a settlement another. A request's keys share
//! one hash tag (its team, or its config key), so the scripts run on Redis Cluster too.
//!
//! Per level, under `jn:{tag}:<kind>:<id>:`: `r:<minute>` and `t:<minute>` (requests and
//! tokens in a minute), `live` (holds in flight, by when they expire), `held` (each hold's
//! cost) and `hsum` (their sum), `s:<period>` (spent in a budget period). Expired holds are
//! let go by the next admission that meets them; this process keeps its own holds alive.
//!
//! The connection is made again by itself when it is lost; its driver runs on a thread of
//! its own, where settlements and keep-alives are sent from, off the request path.

use super::{crossed, window_at, Ask, Decision, Governor, Hold, Level, LevelState, Levels};
use super::{Limit, RateHeaders, Refused, Seen};
use redis::aio::ConnectionManager;
use redis::Script;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

const ADMIT: &str = r#"
local now = tonumber(ARGV[1])
local id = ARGV[2]
local expires = tonumber(ARGV[3])
local ask_tokens = tonumber(ARGV[4])
local ask_cost = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local hold_ms = tonumber(ARGV[7])
local function num(v) if v then return tonumber(v) end return 0 end
local seen = {}
local missing = {}
for i = 0, n - 1 do
  local k = i * 6
  local a = 8 + i * 9
  local track = tonumber(ARGV[a + 6])
  local budget = tonumber(ARGV[a + 4])
  local seed = tonumber(ARGV[a + 7])
  if track == 1 then
    local gone = redis.call('ZRANGEBYSCORE', KEYS[k + 3], '-inf', now)
    for _, h in ipairs(gone) do
      local c = redis.call('HGET', KEYS[k + 4], h)
      if c then
        redis.call('DECRBY', KEYS[k + 5], c)
        redis.call('HDEL', KEYS[k + 4], h)
      end
      redis.call('ZREM', KEYS[k + 3], h)
    end
  end
  local spent = 0
  if budget >= 0 then
    local s = redis.call('GET', KEYS[k + 6])
    if not s then
      if seed >= 0 then
        local ttl = tonumber(ARGV[a + 8])
        if ttl > 0 then
          redis.call('SET', KEYS[k + 6], seed, 'EX', ttl, 'NX')
        else
          redis.call('SET', KEYS[k + 6], seed, 'NX')
        end
        s = redis.call('GET', KEYS[k + 6])
      else
        table.insert(missing, i)
      end
    end
    spent = num(s)
  end
  seen[i] = {num(redis.call('GET', KEYS[k + 1])), num(redis.call('GET', KEYS[k + 2])),
    redis.call('ZCARD', KEYS[k + 3]), spent, num(redis.call('GET', KEYS[k + 5]))}
end
if #missing > 0 then
  local out = {2, #missing, 0}
  for _, i in ipairs(missing) do table.insert(out, i) end
  return out
end
local refused = -1
local limit = 0
for i = 0, n - 1 do
  local a = 8 + i * 9
  local s = seen[i]
  local rpm, tpm, par, budget, soft = tonumber(ARGV[a]), tonumber(ARGV[a + 1]),
    tonumber(ARGV[a + 2]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  if rpm >= 0 and s[1] + 1 > rpm then limit = 1
  elseif tpm >= 0 and s[2] + ask_tokens > tpm then limit = 2
  elseif par >= 0 and s[3] + 1 > par then limit = 3
  elseif budget >= 0 and soft == 0 and s[4] + s[5] + ask_cost > budget then limit = 4
  end
  if limit > 0 then refused = i break end
end
local out = {0, refused, limit}
for i = 0, n - 1 do
  local k = i * 6
  local s = seen[i]
  if refused < 0 then
    local a = 8 + i * 9
    s[1] = redis.call('INCR', KEYS[k + 1])
    redis.call('EXPIRE', KEYS[k + 1], 120)
    s[2] = redis.call('INCRBY', KEYS[k + 2], ask_tokens)
    redis.call('EXPIRE', KEYS[k + 2], 120)
    if tonumber(ARGV[a + 6]) == 1 then
      redis.call('ZADD', KEYS[k + 3], expires, id)
      redis.call('HSET', KEYS[k + 4], id, ask_cost)
      s[5] = redis.call('INCRBY', KEYS[k + 5], ask_cost)
      s[3] = s[3] + 1
      for j = 3, 5 do redis.call('PEXPIRE', KEYS[k + j], hold_ms * 2) end
    end
  end
  for j = 1, 5 do table.insert(out, s[j]) end
end
if refused >= 0 then out[1] = 1 end
return out
"#;

const SETTLE: &str = r#"
local id = ARGV[1]
local delta = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local out = {}
for i = 0, n - 1 do
  local k = i * 5
  local track = tonumber(ARGV[5 + i * 2])
  local budget = tonumber(ARGV[6 + i * 2])
  if delta ~= 0 and redis.call('EXISTS', KEYS[k + 1]) == 1 then
    if redis.call('INCRBY', KEYS[k + 1], delta) < 0 then
      redis.call('SET', KEYS[k + 1], 0, 'KEEPTTL')
    end
  end
  if track == 1 and redis.call('ZREM', KEYS[k + 2], id) == 1 then
    local c = redis.call('HGET', KEYS[k + 3], id)
    if c then
      redis.call('DECRBY', KEYS[k + 4], c)
      redis.call('HDEL', KEYS[k + 3], id)
    end
  end
  local before, after = -1, -1
  if budget == 1 and redis.call('EXISTS', KEYS[k + 5]) == 1 then
    after = redis.call('INCRBY', KEYS[k + 5], cost)
    before = after - cost
  end
  table.insert(out, before)
  table.insert(out, after)
end
return out
"#;

const STATE: &str = r#"
local now = tonumber(ARGV[1])
local function num(v) if v then return tonumber(v) end return 0 end
return {num(redis.call('GET', KEYS[1])), num(redis.call('GET', KEYS[2])),
  redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf'), num(redis.call('GET', KEYS[6])),
  num(redis.call('GET', KEYS[5]))}
"#;

/// What an admission script answered.
pub enum Admitted {
    Decided(Decision),
    /// These levels' budget counters are not in Redis: read them from the ledger.
    Unseeded(Vec<usize>),
}

enum Job {
    Settle {
        governor: Arc<Governor>,
        levels: Arc<Levels>,
        id: u64,
        window: u64,
        at_ms: u64,
        delta: i64,
        cost: u64,
    },
}

pub struct Shared {
    conn: ConnectionManager,
    admit: Script,
    state: Script,
    jobs: mpsc::UnboundedSender<Job>,
    hold: Duration,
    /// This process's holds in flight, kept alive until settled.
    live: Arc<Mutex<HashMap<u64, Arc<Levels>>>>,
}

fn prefix(tag: &str, l: &Level) -> String {
    format!("jn:{{{tag}}}:{}:{}:", l.kind.as_str(), l.id)
}

fn tracks(l: &Level) -> bool {
    l.limits.max_parallel.is_some() || l.limits.budget.is_some()
}

fn spent_key(p: &str, l: &Level, at_ms: u64) -> String {
    match l.limits.budget {
        Some(b) => format!("{p}s:{}{}", b.period.as_str(), b.period.at(at_ms).0),
        None => format!("{p}s:-"),
    }
}

impl Shared {
    /// Connects (the connection is made on a thread of its own, which keeps it and makes it
    /// again when lost).
    pub fn connect(url: &str, hold: Duration) -> Result<Shared, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis: {e}"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let live: Arc<Mutex<HashMap<u64, Arc<Levels>>>> = Arc::default();
        let kept = live.clone();
        std::thread::Builder::new()
            .name("junction-redis".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(Duration::from_secs(2)))
                        .set_response_timeout(Some(Duration::from_secs(2)))
                        .set_number_of_retries(2)
                        .set_max_delay(Duration::from_millis(500));
                    let conn = match ConnectionManager::new_lazy_with_config(client, config) {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = tx.send(Err(format!("redis: {e}")));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(conn.clone()));
                    let settle = Script::new(SETTLE);
                    let mut tick =
                        tokio::time::interval((hold / 3).max(Duration::from_millis(100)));
                    loop {
                        tokio::select! {
                            job = queue.recv() => match job {
                                Some(job) => run(&conn, &settle, job).await,
                                None => break,
                            },
                            _ = tick.tick() => keep_alive(&conn, &kept, hold).await,
                        }
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        let conn = rx
            .recv()
            .map_err(|_| "redis: the connection thread stopped".to_string())??;
        Ok(Shared {
            conn,
            admit: Script::new(ADMIT),
            state: Script::new(STATE),
            jobs,
            hold,
            live,
        })
    }

    pub async fn admit(
        &self,
        levels: &Arc<Levels>,
        ask: Ask,
        id: u64,
        now: u64,
        seeds: &[(usize, u64)],
    ) -> Result<Admitted, String> {
        let (window, _) = window_at(now);
        let hold_ms = self.hold_ms();
        let mut inv = self.admit.prepare_invoke();
        inv.arg(now)
            .arg(id)
            .arg(now + hold_ms)
            .arg(ask.tokens)
            .arg(ask.cost)
            .arg(levels.list.len())
            .arg(hold_ms);
        for l in &levels.list {
            let p = prefix(&levels.tag, l);
            inv.key(format!("{p}r:{window}"))
                .key(format!("{p}t:{window}"))
                .key(format!("{p}live"))
                .key(format!("{p}held"))
                .key(format!("{p}hsum"))
                .key(spent_key(&p, l, now));
        }
        for (i, l) in levels.list.iter().enumerate() {
            let lim = &l.limits;
            let n = |v: Option<u64>| v.map_or(-1, |v| v as i64);
            let seed = seeds
                .iter()
                .find(|(j, _)| *j == i)
                .map_or(-1, |(_, s)| *s as i64);
            let ttl = l.limits.budget.map_or(0, |b| {
                let (_, _, end) = b.period.at(now);
                if end == i64::MAX {
                    0
                } else {
                    // A week past the period's end: late settlements still find it.
                    (end - now as i64) / 1000 + 7 * 86_400
                }
            });
            inv.arg(n(lim.rpm))
                .arg(n(lim.tpm))
                .arg(n(lim.max_parallel))
                .arg(0)
                .arg(n(lim.budget.map(|b| b.micros)))
                .arg(lim.budget.is_some_and(|b| b.soft) as i64)
                .arg(tracks(l) as i64)
                .arg(seed)
                .arg(ttl);
        }
        let mut conn = self.conn.clone();
        let out: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        if out.first() == Some(&2) {
            return Ok(Admitted::Unseeded(
                out[3..].iter().map(|&i| i as usize).collect(),
            ));
        }
        let mut headers = RateHeaders::default();
        for (i, l) in levels.list.iter().enumerate() {
            let s = &out[3 + i * 5..3 + i * 5 + 5];
            let seen = Seen {
                requests: s[0] as u64,
                tokens: s[1].max(0) as u64,
                in_flight: s[2] as u64,
                spent: s[3].max(0) as u64,
                held: s[4].max(0) as u64,
            };
            super::headers_of(&l.limits, seen, now, &mut headers);
        }
        if out[0] == 1 {
            let level = out[1] as usize;
            let limit = match out[2] {
                1 => Limit::Requests,
                2 => Limit::Tokens,
                3 => Limit::Parallel,
                _ => Limit::Budget,
            };
            // The reason's own wait, from the rules (the same for both backends).
            let s = &out[3 + level * 5..3 + level * 5 + 5];
            let seen = Seen {
                requests: s[0] as u64,
                tokens: s[1].max(0) as u64,
                in_flight: s[2] as u64,
                spent: s[3].max(0) as u64,
                held: s[4].max(0) as u64,
            };
            let retry_after = super::check(&levels.list[level].limits, seen, ask, now)
                .map_or(Duration::from_secs(1), |(_, d)| d);
            return Ok(Admitted::Decided(Decision::Refused(
                Refused {
                    level,
                    limit,
                    retry_after,
                },
                headers,
            )));
        }
        if levels.list.iter().any(tracks) {
            self.live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, levels.clone());
        }
        Ok(Admitted::Decided(Decision::Admitted(headers)))
    }

    fn hold_ms(&self) -> u64 {
        self.hold.as_millis() as u64
    }

    /// Sent to the connection's thread: the request path does not wait for it.
    pub fn settle(&self, hold: &Hold, tokens: u64, cost: u64) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hold.id);
        let _ = self.jobs.send(Job::Settle {
            governor: hold.governor.clone(),
            levels: hold.levels.clone(),
            id: hold.id,
            window: hold.window,
            at_ms: hold.at_ms,
            delta: tokens as i64 - hold.ask.tokens as i64,
            cost,
        });
    }

    pub async fn state(&self, l: &Level, tag: &str, now: u64) -> Result<LevelState, String> {
        let (window, _) = window_at(now);
        let p = prefix(tag, l);
        let mut conn = self.conn.clone();
        let s: Vec<i64> = self
            .state
            .key(format!("{p}r:{window}"))
            .key(format!("{p}t:{window}"))
            .key(format!("{p}live"))
            .key(format!("{p}held"))
            .key(format!("{p}hsum"))
            .key(spent_key(&p, l, now))
            .arg(now)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        Ok(LevelState {
            requests_this_minute: s[0] as u64,
            tokens_this_minute: s[1].max(0) as u64,
            in_flight: s[2] as u64,
            spent_usd_micros: s[3].max(0) as u64,
            held_usd_micros: s[4].max(0) as u64,
        })
    }
}

async fn run(conn: &ConnectionManager, settle: &Script, job: Job) {
    let Job::Settle {
        governor,
        levels,
        id,
        window,
        at_ms,
        delta,
        cost,
    } = job;
    let mut inv = settle.prepare_invoke();
    inv.arg(id).arg(delta).arg(cost).arg(levels.list.len());
    for l in &levels.list {
        let p = prefix(&levels.tag, l);
        inv.key(format!("{p}t:{window}"))
            .key(format!("{p}live"))
            .key(format!("{p}held"))
            .key(format!("{p}hsum"))
            .key(spent_key(&p, l, at_ms));
    }
    for l in &levels.list {
        inv.arg(tracks(l) as i64)
            .arg(l.limits.budget.is_some() as i64);
    }
    let mut conn = conn.clone();
    // A settlement is tried for a while: Redis may be restarting. One that never lands
    // leaves its hold to expire, and its spending to the ledger when the counter is rebuilt.
    let mut wait = Duration::from_millis(50);
    let out: Vec<i64> = loop {
        match inv.invoke_async(&mut conn).await {
            Ok(out) => break out,
            Err(e) if wait < Duration::from_secs(10) => {
                tracing::warn!(error = %e, "a settlement could not reach redis; trying again");
                if let Some(m) = &governor.metrics {
                    m.limits_unreachable.inc();
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, "a settlement could not reach redis; its hold will expire");
                return;
            }
        }
    };
    let mut all = Vec::new();
    for (i, l) in levels.list.iter().enumerate() {
        let (before, after) = (out[i * 2], out[i * 2 + 1]);
        let Some(b) = l.limits.budget else { continue };
        if before < 0 {
            continue;
        }
        for pct in crossed(&b, &governor.settings.alert_at, before as u64, after as u64) {
            all.push((i, pct, after as u64));
        }
    }
    governor.raise(&levels, all);
}

async fn keep_alive(
    conn: &ConnectionManager,
    live: &Mutex<HashMap<u64, Arc<Levels>>>,
    hold: Duration,
) {
    let holds: Vec<(u64, Arc<Levels>)> = live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(id, l)| (*id, l.clone()))
        .collect();
    if holds.is_empty() {
        return;
    }
    let expires = super::now_ms() + hold.as_millis() as u64;
    let mut pipe = redis::pipe();
    for (id, levels) in &holds {
        for l in levels.list.iter().filter(|l| tracks(l)) {
            pipe.cmd("ZADD")
                .arg(format!("{}live", prefix(&levels.tag, l)))
                .arg("XX")
                .arg(expires)
                .arg(*id)
                .ignore();
        }
    }
    let mut conn = conn.clone();
    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
        tracing::warn!(error = %e, "the holds in flight could not be kept alive in redis");
    }
}
