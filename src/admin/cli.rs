//! `junction admin …`: the admin API of teams, keys, usage and the audit trail from the
//! command line, against a running gateway's admin listener, for operators' scripts. The
//! admin key (or a team admin's) comes from `$JUNCTION_ADMIN_KEY`, never from the command
//! line (where every user of the machine could read it). Prints the answer's JSON (or CSV);
//! exits 1 with the error's message when the gateway refuses.

use clap::Subcommand;
use serde_json::{json, Value};
use std::io::{Read, Write};

#[derive(Subcommand, Debug)]
pub enum What {
    /// Teams: `list`, `create NAME`, `show ID`, `delete ID` (revokes its keys).
    Teams {
        #[command(subcommand)]
        op: TeamOp,
    },
    /// Keys: `list`, `create`, `show ID`, `change ID`, `revoke ID`, `rotate ID`.
    Keys {
        #[command(subcommand)]
        op: KeyOp,
    },
    /// Usage totals from the ledger.
    Usage {
        /// One or more of key, model, provider, team, user, project, day (comma-separated).
        #[arg(long, default_value = "model")]
        group_by: String,
        /// Unix ms or RFC 3339.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// CSV instead of JSON.
        #[arg(long)]
        csv: bool,
    },
    /// The audit trail, newest first.
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum TeamOp {
    List,
    Create {
        name: String,
        /// Allowed models (comma-separated); default all.
        #[arg(long)]
        models: Option<String>,
        /// Allowed client address ranges (comma-separated CIDRs); default any.
        #[arg(long)]
        ips: Option<String>,
    },
    Show {
        id: String,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyOp {
    List {
        #[arg(long)]
        team: Option<String>,
    },
    /// Prints the key and its secret (shown this once).
    Create {
        #[arg(long)]
        team: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        models: Option<String>,
        #[arg(long)]
        ips: Option<String>,
        /// Unix ms or RFC 3339.
        #[arg(long)]
        expires_at: Option<String>,
        /// member (default) or team_admin.
        #[arg(long)]
        role: Option<String>,
    },
    Show {
        id: String,
    },
    /// Changes what is given; `--models ''` clears the list.
    Change {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        models: Option<String>,
        #[arg(long)]
        ips: Option<String>,
        #[arg(long)]
        expires_at: Option<String>,
    },
    Revoke {
        id: String,
    },
    /// A new secret; the old one works for `--grace-seconds` more.
    Rotate {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace_seconds: i64,
    },
}

/// A comma-separated list as JSON (`''`: null, which clears it).
fn list(s: &Option<String>) -> Option<Value> {
    s.as_ref().map(|s| {
        if s.is_empty() {
            Value::Null
        } else {
            s.split(',').map(|x| x.trim().to_string()).collect()
        }
    })
}

fn time(s: &Option<String>) -> Option<Value> {
    s.as_ref().map(|s| match s.parse::<i64>() {
        Ok(ms) => json!(ms),
        Err(_) => json!(s),
    })
}

/// The fields given, as a JSON object.
fn object(fields: &[(&str, Option<Value>)]) -> Value {
    Value::Object(
        fields
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
            .collect(),
    )
}

/// A path segment or query value, escaped (ids stay readable: `-`, `_`, `.` are kept).
fn enc(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The request a command makes: method, path, body.
pub fn request(what: &What) -> (&'static str, String, Option<Value>) {
    match what {
        What::Teams { op } => match op {
            TeamOp::List => ("GET", "/admin/teams".into(), None),
            TeamOp::Create { name, models, ips } => (
                "POST",
                "/admin/teams".into(),
                Some(object(&[
                    ("name", Some(json!(name))),
                    ("models", list(models)),
                    ("ips", list(ips)),
                ])),
            ),
            TeamOp::Show { id } => ("GET", format!("/admin/teams/{}", enc(id)), None),
            TeamOp::Delete { id } => ("DELETE", format!("/admin/teams/{}", enc(id)), None),
        },
        What::Keys { op } => match op {
            KeyOp::List { team } => (
                "GET",
                match team {
                    Some(t) => format!("/admin/keys?team={}", enc(t)),
                    None => "/admin/keys".into(),
                },
                None,
            ),
            KeyOp::Create {
                team,
                name,
                user,
                project,
                models,
                ips,
                expires_at,
                role,
            } => (
                "POST",
                "/admin/keys".into(),
                Some(object(&[
                    ("team", Some(json!(team))),
                    ("name", Some(json!(name))),
                    ("user", user.as_ref().map(|u| json!(u))),
                    ("project", project.as_ref().map(|p| json!(p))),
                    ("models", list(models)),
                    ("ips", list(ips)),
                    ("expires_at", time(expires_at)),
                    ("role", role.as_ref().map(|r| json!(r))),
                ])),
            ),
            KeyOp::Show { id } => ("GET", format!("/admin/keys/{}", enc(id)), None),
            KeyOp::Change {
                id,
                name,
                models,
                ips,
                expires_at,
            } => (
                "PATCH",
                format!("/admin/keys/{}", enc(id)),
                Some(object(&[
                    ("name", name.as_ref().map(|n| json!(n))),
                    ("models", list(models)),
                    ("ips", list(ips)),
                    ("expires_at", time(expires_at)),
                ])),
            ),
            KeyOp::Revoke { id } => ("DELETE", format!("/admin/keys/{}", enc(id)), None),
            KeyOp::Rotate { id, grace_seconds } => (
                "POST",
                format!("/admin/keys/{}/rotate", enc(id)),
                Some(json!({ "grace_seconds": grace_seconds })),
            ),
        },
        What::Usage {
            group_by,
            from,
            to,
            csv,
        } => {
            let mut q = format!("group_by={}", enc(group_by));
            for (k, v) in [("from", from), ("to", to)] {
                if let Some(v) = v {
                    q.push_str(&format!("&{k}={}", enc(v)));
                }
            }
            if *csv {
                q.push_str("&format=csv");
            }
            ("GET", format!("/admin/usage?{q}"), None)
        }
        What::Audit { limit } => ("GET", format!("/admin/audit?limit={limit}"), None),
    }
}

/// Sends the command's request to the admin listener at `url` (`http://host:port`) with
/// `key`; the answer's body, or the error's message.
pub fn run(url: &str, key: &str, what: &What) -> Result<String, String> {
    let addr = url
        .strip_prefix("http://")
        .ok_or("the admin URL must be http://host:port (the admin listener)")?
        .trim_end_matches('/');
    let (method, path, body) = request(what);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut conn = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())
        .and_then(|()| conn.write_all(body.as_bytes()))
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)
        .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the admin listener's answer is not HTTP")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("the admin listener's answer has no status")?;
    if status >= 400 {
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        return Err(format!(
            "{status}: {}",
            v["error"]["message"].as_str().unwrap_or(body)
        ));
    }
    Ok(match serde_json::from_str::<Value>(body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => body.to_string(),
    })
}
