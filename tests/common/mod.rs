//! Test harness: runs `junction mock` and `junction serve` as child processes on free ports.
#![allow(dead_code)]

pub mod accounting;
pub mod reload;

use sha2::{Digest, Sha256};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ALL_KEY: &str = "sk-test-all-models";
pub const LIMITED_KEY: &str = "sk-test-limited";
pub const PROVIDER_KEY: &str = "sk-provider-secret-0123456789";

/// A child process, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn tmp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "junction-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn spawn(args: &[&str], addr: SocketAddr, envs: &[(&str, &str)]) -> Proc {
    let log = tmp_path("log.txt");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_junction"));
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start junction");
    let mut p = Proc { child, addr, log };
    wait_until_listening(&mut p);
    p
}

fn wait_until_listening(p: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect_timeout(&p.addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("process exited with {status}: {}", p.log_text());
        }
        assert!(Instant::now() < deadline, "not listening: {}", p.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until something listens on `addr` (a second listener of a started process, such as
/// its admin listener, which opens beside the first in no set order).
pub fn wait_for_listener(addr: &str) {
    let addr: SocketAddr = addr.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn start_mock() -> Proc {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    spawn(
        &["mock", "--listen", &addr.to_string(), "--threads", "1"],
        addr,
        &[],
    )
}

/// A mock serving TLS (h2 and http/1.1 by ALPN) with the given PEM files.
pub fn start_mock_tls(cert: &str, key: &str) -> Proc {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    spawn(
        &[
            "mock",
            "--listen",
            &addr.to_string(),
            "--threads",
            "1",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ],
        addr,
        &[],
    )
}

/// Starts the gateway with `config`, where `{listen}` is replaced by its address.
pub fn start_gateway(config: &str) -> Proc {
    let listen = format!("127.0.0.1:{}", free_port());
    start_gateway_at(&listen, config).0
}

/// Starts the gateway on `listen` with `config`; returns it and its config file.
pub fn start_gateway_at(listen: &str, config: &str) -> (Proc, PathBuf) {
    let addr: SocketAddr = listen.parse().unwrap();
    let path = tmp_path("junction.toml");
    std::fs::write(&path, config.replace("{listen}", &addr.to_string())).unwrap();
    (start_gateway_on(addr, &path), path)
}

/// Starts the gateway on `addr` with the config file at `path` (written already).
pub fn start_gateway_on(addr: SocketAddr, path: &std::path::Path) -> Proc {
    spawn(
        &["serve", "--config", path.to_str().unwrap()],
        addr,
        &[
            ("JUNCTION_TEST_PROVIDER_KEY", PROVIDER_KEY),
            ("JUNCTION_TEST_LIMITED_KEY", LIMITED_KEY),
            ("RUST_LOG", "debug"),
        ],
    )
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The standard test config: one provider per mock behaviour, one model per provider.
pub fn config(mock: &Proc) -> String {
    let m = mock.addr;
    let dead = free_port();
    format!(
        r#"
[server]
listen = "{{listen}}"
threads = 2
max_body_bytes = 4194304

[timeouts]
first_byte_ms = 10000
idle_ms = 10000

[[keys]]
name = "all"
sha256 = "{all}"

[[keys]]
name = "limited"
key = "${{JUNCTION_TEST_LIMITED_KEY}}"
models = ["m-plain"]

[providers.plain]
kind = "openai"
base_url = "http://{m}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[providers.echo]
kind = "openai"
base_url = "http://{m}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"
headers = {{ "x-mock-echo" = "1" }}

[providers.h2]
kind = "openai"
base_url = "http://{m}/v1"
http2 = true
headers = {{ "x-mock-echo" = "1" }}

[providers.slow]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-chunk-delay-ms" = "150", "x-mock-chunks" = "4" }}

[providers.ratelimited]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-status" = "429", "x-mock-retry-after" = "7" }}

[providers.broken]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-status" = "500" }}

[providers.refused]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-status" = "401" }}

[providers.stalled]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-stall-ms" = "3000" }}
timeouts = {{ first_byte_ms = 300 }}

[providers.idle]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-chunk-delay-ms" = "3000", "x-mock-chunks" = "3" }}
timeouts = {{ idle_ms = 300 }}

[providers.dead]
kind = "openai"
base_url = "http://127.0.0.1:{dead}/v1"

[providers.cut]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-cut-after" = "3" }}

[models.m-plain]
provider = "plain"
model = "gpt-4o-mini"

[models.m-echo]
provider = "echo"
model = "echo-upstream"

[models.m-h2]
provider = "h2"
model = "h2-upstream"

[models.m-slow]
provider = "slow"

[models.m-429]
provider = "ratelimited"

[models.m-500]
provider = "broken"

[models.m-refused]
provider = "refused"

[models.m-stalled]
provider = "stalled"

[models.m-idle]
provider = "idle"

[models.m-dead]
provider = "dead"

[models.m-cut]
provider = "cut"
"#,
        all = sha256_hex(ALL_KEY.as_bytes()),
    )
}

pub fn chat_body(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hello"}}],"stream":{stream}}}"#
    )
}

/// Data payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        })
        .map(str::to_string)
        .collect()
}

const PROVIDER_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers/");

/// A real provider capture from the shared fixtures.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{PROVIDER_FIXTURES}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub head: String,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }
}

/// Reads one HTTP/1.1 request (its head, and a body of its `Content-Length`) from `conn`;
/// `buf` keeps what was read beyond it. `None` when the connection ends first.
pub async fn read_request<R: tokio::io::AsyncRead + Unpin>(
    conn: &mut R,
    buf: &mut Vec<u8>,
) -> Option<Received> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut received = Received {
        head,
        body: Vec::new(),
    };
    let len: usize = received
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + 4 + len {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    received.body = buf[head_end + 4..head_end + 4 + len].to_vec();
    buf.drain(..head_end + 4 + len);
    Some(received)
}

/// An upstream that records each request and answers with fixed bytes (a real capture),
/// the body sent in several writes.
pub async fn recording_upstream(
    status: u16,
    content_type: &'static str,
    answer: Vec<u8>,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(received) = read_request(&mut conn, &mut buf).await else {
                        return;
                    };
                    log.lock().unwrap().push(received);
                    let header = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    );
                    if conn.write_all(header.as_bytes()).await.is_err() {
                        return;
                    }
                    for piece in answer.chunks(97) {
                        if conn.write_all(piece).await.is_err() {
                            return;
                        }
                        let _ = conn.flush().await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Polls `f` until it gives a value, for at most 20 s (then fails, naming `what`).
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A door's streaming request for `model`, and the marks of its complete answer.
pub fn door_request(door: &str, model: &str) -> (String, String, &'static str, &'static str) {
    match door {
        "chat" => (
            "/v1/chat/completions".into(),
            chat_body(model, true),
            "authorization",
            "data: [DONE]",
        ),
        "messages" => (
            "/v1/messages".into(),
            format!(
                r#"{{"model":"{model}","max_tokens":10,"stream":true,"messages":[{{"role":"user","content":"hi"}}]}}"#
            ),
            "x-api-key",
            "event: message_stop",
        ),
        "responses" => (
            "/v1/responses".into(),
            format!(r#"{{"model":"{model}","input":"hi","stream":true}}"#),
            "authorization",
            "event: response.completed",
        ),
        _ => (
            format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#.into(),
            "x-goog-api-key",
            "\"finishReason\"",
        ),
    }
}

pub async fn ask_door(gw: &Proc, door: &str, model: &str) -> (u16, String) {
    let (path, body, header, _) = door_request(door, model);
    send_door(gw, &path, body, header).await
}

/// Posts `body` to `path` with the client key in the door's own header.
pub async fn send_door(gw: &Proc, path: &str, body: String, header: &str) -> (u16, String) {
    send_door_as(gw, path, body, header, ALL_KEY).await
}

/// Posts `body` to `path` with `key` in the door's own header.
pub async fn send_door_as(
    gw: &Proc,
    path: &str,
    body: String,
    header: &str,
    key: &str,
) -> (u16, String) {
    let value = if header == "authorization" {
        format!("Bearer {key}")
    } else {
        key.to_string()
    };
    let r = reqwest::Client::new()
        .post(gw.url(path))
        .header(header, value)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}
