//! The upstream side: TLS with a provider's own CA, HTTP/2 by ALPN, and cancellation of the
//! upstream request when the client goes away.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files.
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, pem: String| {
        let p = tmp_path(name);
        std::fs::write(&p, pem).unwrap();
        p.to_str().unwrap().to_string()
    };
    (
        write("ca.pem", ca.pem()),
        write("cert.pem", leaf.pem()),
        write("key.pem", leaf_key.serialize_pem()),
    )
}

fn echo_of(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn tls_upstreams_use_h2_by_alpn_or_h1_and_verify_the_certificate() {
    let (ca, cert, key) = certificates();
    let mock = start_mock_tls(&cert, &key);
    let m = mock.addr;
    let gw = start_gateway(&format!(
        r#"
[server]
listen = "{{listen}}"

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.tls-h2]
kind = "openai"
base_url = "https://{m}/v1"
ca_file = "{ca}"
headers = {{ "x-mock-echo" = "1" }}

[providers.tls-h1]
kind = "openai"
base_url = "https://{m}/v1"
ca_file = "{ca}"
http2 = false
headers = {{ "x-mock-echo" = "1" }}

[providers.untrusted]
kind = "openai"
base_url = "https://{m}/v1"

[models.h2]
provider = "tls-h2"

[models.h1]
provider = "tls-h1"

[models.untrusted]
provider = "untrusted"
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
    ));
    let http = reqwest::Client::new();
    let ask = |model: &'static str, stream: bool| {
        http.post(gw.url("/v1/chat/completions"))
            .bearer_auth(ALL_KEY)
            .body(chat_body(model, stream))
            .send()
    };
    let r = ask("h2", false).await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = echo_of(&r.text().await.unwrap());
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(
        seen["sha256"],
        sha256_hex(chat_body("h2", false).as_bytes())
    );

    let r = ask("h1", false).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(echo_of(&r.text().await.unwrap())["version"], "HTTP/1.1");

    let r = ask("h2", true).await.unwrap();
    let body = r.text().await.unwrap();
    assert_eq!(sse_data(&body).last().unwrap(), "[DONE]");

    // The system roots do not know our CA: the connection is refused, not trusted blindly.
    let r = ask("untrusted", false).await.unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unreachable");
}

async fn mock_stats(http: &reqwest::Client, mock: &Proc) -> Value {
    http.get(mock.url("/mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_upstream_stream() {
    let mock = start_mock();
    let m = mock.addr;
    let gw = start_gateway(&format!(
        r#"
[server]
listen = "{{listen}}"

[[keys]]
name = "all"
sha256 = "{hash}"

[providers.long]
kind = "openai"
base_url = "http://{m}/v1"
headers = {{ "x-mock-chunk-delay-ms" = "100", "x-mock-chunks" = "100" }}

[models.long]
provider = "long"
"#,
        hash = sha256_hex(ALL_KEY.as_bytes()),
    ));
    let http = reqwest::Client::new();
    let r = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(ALL_KEY)
        .body(chat_body("long", true))
        .send()
        .await
        .unwrap();
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(stream);

    // The 10 s stream must be abandoned upstream long before it would have completed.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let stats = mock_stats(&http, &mock).await;
        if stats["streams_aborted"] == 1 {
            assert_eq!(stats["streams_completed"], 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "upstream stream not cancelled: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
