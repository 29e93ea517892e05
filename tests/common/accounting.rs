//! The accounting tests' gateway: a provider and a model for each kind and mock behaviour.

use super::*;

pub const ADMIN_KEY: &str = "sk-admin-accounting";

/// Kinds of provider, their upstream model, and the mock wire's name in its stats.
pub const KINDS: [(&str, &str, &str); 3] = [
    ("openai", "gpt-4o-mini", "openai"),
    ("anthropic", "claude-sonnet-4-5", "anthropic"),
    ("gemini", "gemini-2.5-flash", "gemini"),
];

/// What each provider of a kind asks of the mock (the mock's controls are request headers,
/// which the gateway does not pass on from clients: they are set per provider).
pub const VARIANTS: [(&str, &str); 5] = [
    ("plain", r#""x-mock-chunks" = "5""#),
    (
        "cached",
        r#""x-mock-chunks" = "3", "x-mock-cached-tokens" = "7""#,
    ),
    (
        "hold",
        r#""x-mock-chunks" = "6", "x-mock-hold-after" = "2""#,
    ),
    ("refuse", r#""x-mock-status" = "400""#),
    ("echo", r#""x-mock-echo" = "1""#),
];

/// Providers `<kind>-<variant>` and models of the same names, all on the mock.
pub fn accounting_config(mock: &Proc, admin: &str, extra: &str) -> String {
    let mut out = format!(
        r#"
[server]
listen = "{{listen}}"

[log]
access = "off"

{extra}

[admin]
listen = "{admin}"
sha256 = "{admin_hash}"

[[keys]]
name = "team-a"
sha256 = "{a}"

[[keys]]
name = "team-b"
sha256 = "{b}"
"#,
        admin_hash = sha256_hex(ADMIN_KEY.as_bytes()),
        a = sha256_hex(ALL_KEY.as_bytes()),
        b = sha256_hex(LIMITED_KEY.as_bytes()),
    );
    for (kind, model, _) in KINDS {
        let base = match kind {
            "gemini" => format!("http://{}/v1beta", mock.addr),
            _ => format!("http://{}/v1", mock.addr),
        };
        for (variant, headers) in VARIANTS {
            out.push_str(&format!(
                r#"
[providers.{kind}-{variant}]
kind = "{kind}"
base_url = "{base}"
api_key = "${{JUNCTION_TEST_PROVIDER_KEY}}"
headers = {{ {headers} }}

[models.{kind}-{variant}]
provider = "{kind}-{variant}"
model = "{model}"
"#
            ));
        }
    }
    out
}
