//! The reload tests' gateway: model `m` on the mock, an admin listener, and the config file
//! they rewrite.

use super::*;
use serde_json::Value;

pub const ADMIN_KEY: &str = "sk-admin-reload";
pub const OTHER_KEY: &str = "sk-other-client";

/// Where everything listens.
pub struct Addrs {
    pub listen: String,
    /// `http://…` of the admin listener.
    pub admin: String,
    pub mock: String,
}

pub struct Env {
    pub addrs: Addrs,
    pub _mock: Proc,
    pub gw: Proc,
    pub path: std::path::PathBuf,
    pub admin: String,
    pub http: reqwest::Client,
}

/// A config: model `m` served as `upstream`, plus `extra` models, and `OTHER_KEY` if asked.
pub fn config(env: &Env, upstream: &str, extra: &[&str], other_key: bool) -> String {
    config_for(&env.addrs, upstream, extra, other_key)
}

pub fn config_for(env: &Addrs, upstream: &str, extra: &[&str], other_key: bool) -> String {
    let mut c = format!(
        r#"
[server]
listen = "{listen}"

[admin]
listen = "{admin}"
sha256 = "{admin_hash}"

[[keys]]
name = "all"
sha256 = "{all}"

[providers.mock]
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"

[models.m]
provider = "mock"
model = "{upstream}"
"#,
        listen = env.listen,
        admin = env.admin.trim_start_matches("http://"),
        admin_hash = sha256_hex(ADMIN_KEY.as_bytes()),
        all = sha256_hex(ALL_KEY.as_bytes()),
        mock = env.mock,
    );
    for m in extra {
        c += &format!("\n[models.{m}]\nprovider = \"mock\"\n");
    }
    if other_key {
        c += &format!(
            "\n[[keys]]\nname = \"other\"\nsha256 = \"{}\"\n",
            sha256_hex(OTHER_KEY.as_bytes())
        );
    }
    c
}

pub fn env() -> Env {
    let mock = start_mock();
    let addrs = Addrs {
        listen: format!("127.0.0.1:{}", free_port()),
        admin: format!("http://127.0.0.1:{}", free_port()),
        mock: mock.addr.to_string(),
    };
    let (gw, path) = start_gateway_at(&addrs.listen, &config_for(&addrs, "upstream-a", &[], true));
    Env {
        admin: addrs.admin.clone(),
        addrs,
        _mock: mock,
        gw,
        path,
        http: reqwest::Client::new(),
    }
}

impl Env {
    pub async fn ask(&self, key: &str, model: &str) -> (u16, String) {
        let r = self
            .http
            .post(self.gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .body(chat_body(model, false))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn reload(&self) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/admin/reload", self.admin))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    pub fn write(&self, text: &str) {
        // Write then rename, as editors and deploy tools do: a reader never sees half a file.
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

pub fn upstream_model(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["model"].as_str().unwrap().to_string()
}
