//! The admin API of teams and keys: `POST/GET /admin/teams`, `DELETE /admin/teams/{id}`,
//! `POST/GET /admin/keys`, `GET/PATCH/DELETE /admin/keys/{id}`, `POST /admin/keys/{id}/rotate`,
//! `GET /admin/audit`. Each change is written to the store, recorded in the audit trail (never
//! a secret), and in every request's view at once (the keys in memory are read again).

use crate::error::{Code, ErrorKind, GatewayError};
use crate::tenancy::{
    Cidr, KeyChange, Member, MemberKind, NewKey, NewTeam, Role, StoreError, StoredKey, Tenancy,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// What a handler answers: a status and a JSON body.
pub type Answer = Result<(u16, Value), GatewayError>;

fn store_error(e: StoreError) -> GatewayError {
    match e {
        StoreError::Invalid { field, message } => {
            GatewayError::invalid_request(format!("`{field}` {message}.")).param(field)
        }
        StoreError::NotFound(m) => GatewayError::new(ErrorKind::NotFound, m),
        StoreError::Conflict(m) => GatewayError::invalid_request(m),
        StoreError::Db(m) => {
            tracing::error!(error = %m, "the store failed");
            GatewayError::new(
                ErrorKind::Internal,
                "The store failed; see the gateway's log.",
            )
        }
    }
}

/// A JSON body of type `T`: 400 naming what is wrong (an unknown field, a wrong type).
fn body_of<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"))
            .map(str::to_string);
        let mut err =
            GatewayError::invalid_request(format!("The request body is not valid: {msg}."))
                .code(Code::InvalidRequest);
        if let Some(f) = field {
            err = err.param(f);
        }
        err
    })
}

fn cidrs(
    field: &'static str,
    list: Option<Vec<String>>,
) -> Result<Option<Vec<Cidr>>, GatewayError> {
    list.map(|l| {
        l.iter()
            .map(|c| {
                Cidr::parse(c).ok_or_else(|| {
                    GatewayError::invalid_request(format!(
                        "`{field}`: `{}` is not an address or a CIDR range (10.0.0.0/8, 2001:db8::/32).",
                        crate::error::Printable(c)
                    ))
                    .param(field)
                })
            })
            .collect()
    })
    .transpose()
}

/// A time: Unix milliseconds, or RFC 3339.
fn time_of(field: &'static str, v: &Value) -> Result<Option<i64>, GatewayError> {
    match v {
        Value::Null => Some(None),
        Value::Number(n) => n.as_i64().map(Some),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| Some(t.timestamp_millis())),
        _ => None,
    }
    .ok_or_else(|| {
        GatewayError::invalid_request(format!(
            "`{field}` must be Unix milliseconds or an RFC 3339 time."
        ))
        .param(field)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamBody {
    name: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    name: String,
    team: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    ips: Option<Vec<String>>,
    #[serde(default)]
    expires_at: Value,
    #[serde(default)]
    metadata: Option<Value>,
    /// `member` (default) or `team_admin`.
    #[serde(default)]
    role: Option<String>,
}

/// A change: a field absent is kept, `null` clears it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, with = "present")]
    user: Option<Option<String>>,
    #[serde(default, with = "present")]
    project: Option<Option<String>>,
    #[serde(default, with = "present")]
    models: Option<Option<Vec<String>>>,
    #[serde(default, with = "present")]
    ips: Option<Option<Vec<String>>>,
    #[serde(default, with = "present")]
    expires_at: Option<Option<Value>>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `Some(None)` for a field sent as `null`, `None` for one not sent.
mod present {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    grace_seconds: i64,
}

/// Who asks, from where, and over what: the operator (every team), or a team admin (its
/// own team only: another team's teams and keys are, to it, not there).
pub struct Actor<'a> {
    pub name: &'a str,
    pub address: Option<String>,
    /// A team admin's team.
    pub team: Option<String>,
}

impl Actor<'_> {
    /// The team it may see, when it is not the operator.
    fn only(&self) -> Option<&str> {
        self.team.as_deref()
    }

    /// 404 for a team that is not its own (as for one that does not exist).
    fn sees(&self, team: &str) -> Result<(), GatewayError> {
        match self.only() {
            Some(own) if own != team => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("No team `{}`.", crate::error::Printable(team)),
            )),
            _ => Ok(()),
        }
    }

    /// 403 for what only the operator may do.
    fn operator(&self) -> Result<(), GatewayError> {
        if self.team.is_some() {
            return Err(GatewayError::new(
                ErrorKind::PermissionDenied,
                "A team admin manages its own team's keys only.",
            ));
        }
        Ok(())
    }
}

/// The key `id`, when the actor may see it (404 otherwise, as for a key that does not exist).
fn visible_key(tenancy: &Tenancy, actor: &Actor<'_>, id: &str) -> Result<StoredKey, GatewayError> {
    let key = tenancy.store().key(id).map_err(store_error)?;
    actor
        .sees(&key.team)
        .map_err(|_| store_error(StoreError::NotFound(format!("No key `{id}`."))))?;
    Ok(key)
}

/// Serves a teams-and-keys path, or `None` when the path is not one.
pub fn handle(
    tenancy: &Tenancy,
    actor: &Actor<'_>,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Option<Answer> {
    let rest = path.strip_prefix("/admin/")?;
    let decoded: Vec<String> = rest.split('/').map(super::percent_decode).collect();
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    Some(match (method, parts.as_slice()) {
        ("POST", ["teams"]) => actor
            .operator()
            .and_then(|()| create_team(tenancy, actor, body)),
        ("GET", ["teams"]) => tenancy
            .store()
            .teams()
            .map(|t| {
                let t: Vec<_> = t
                    .into_iter()
                    .filter(|t| actor.only().is_none_or(|own| own == t.id))
                    .collect();
                (200, json!({ "teams": t }))
            })
            .map_err(store_error),
        ("GET", ["teams", id]) => actor.sees(id).and_then(|()| {
            tenancy
                .store()
                .team(id)
                .map(|t| (200, json!(t)))
                .map_err(store_error)
        }),
        ("DELETE", ["teams", id]) => actor.operator().and_then(|()| {
            changed(
                tenancy,
                actor,
                Some(id),
                ("team.delete", id, json!({})),
                |s| {
                    s.delete_team(id)
                        .map(|n| json!({"deleted": id, "revoked_keys": n}))
                },
            )
        }),
        ("POST", [kind @ ("users" | "projects")]) => {
            create_member(tenancy, actor, member_kind(kind), body)
        }
        ("GET", [kind @ ("users" | "projects")]) => {
            let asked = query
                .split('&')
                .find_map(|p| p.strip_prefix("team="))
                .map(super::percent_decode);
            if let Some(t) = &asked {
                if let Err(e) = actor.sees(t) {
                    return Some(Err(e));
                }
            }
            let kind = member_kind(kind);
            tenancy
                .store()
                .members(kind, asked.as_deref().or(actor.only()))
                .map(|m| (200, json!({ (kind.as_str().to_string() + "s"): m })))
                .map_err(store_error)
        }
        ("GET", [kind @ ("users" | "projects"), id]) => {
            visible_member(tenancy, actor, member_kind(kind), id).map(|m| (200, json!(m)))
        }
        ("DELETE", [kind @ ("users" | "projects"), id]) => {
            let kind = member_kind(kind);
            visible_member(tenancy, actor, kind, id).and_then(|m| {
                let action = format!("{}.delete", kind.as_str());
                changed(
                    tenancy,
                    actor,
                    Some(&m.team),
                    (&action, id, json!({})),
                    |s| {
                        s.delete_member(kind, id)
                            .map(|n| json!({"deleted": id, "revoked_keys": n}))
                    },
                )
            })
        }
        ("POST", ["keys"]) => create_key(tenancy, actor, body),
        ("GET", ["keys"]) => {
            let asked = query
                .split('&')
                .find_map(|p| p.strip_prefix("team="))
                .map(super::percent_decode);
            if let Some(t) = &asked {
                if let Err(e) = actor.sees(t) {
                    return Some(Err(e));
                }
            }
            let team = asked.as_deref().or(actor.only());
            tenancy
                .store()
                .keys(team)
                .map(|k| (200, json!({ "keys": k })))
                .map_err(store_error)
        }
        ("GET", ["keys", id]) => visible_key(tenancy, actor, id).map(|k| (200, json!(k))),
        ("PATCH", ["keys", id]) => {
            visible_key(tenancy, actor, id).and_then(|k| change_key(tenancy, actor, &k, body))
        }
        ("DELETE", ["keys", id]) => visible_key(tenancy, actor, id).and_then(|k| {
            changed(
                tenancy,
                actor,
                Some(&k.team),
                ("key.revoke", id, json!({})),
                |s| s.revoke_key(id).map(|k| json!(k)),
            )
        }),
        ("POST", ["keys", id, "rotate"]) => {
            let key = match visible_key(tenancy, actor, id) {
                Ok(k) => k,
                Err(e) => return Some(Err(e)),
            };
            let b: RotateBody = match body_of(if body.is_empty() { b"{}" } else { body }) {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            let change = json!({"grace_seconds": b.grace_seconds});
            changed(
                tenancy,
                actor,
                Some(&key.team),
                ("key.rotate", id, change),
                |s| {
                    let (key, secret) = s.rotate_key(id, b.grace_seconds.saturating_mul(1000))?;
                    Ok(json!({"key": key, "secret": secret}))
                },
            )
        }
        ("GET", ["audit"]) => {
            let limit = query
                .split('&')
                .find_map(|p| p.strip_prefix("limit="))
                .and_then(|l| l.parse().ok())
                .unwrap_or(100u32)
                .min(10_000);
            tenancy
                .store()
                .audit_entries(actor.only(), limit)
                .map(|a| (200, json!({ "entries": a })))
                .map_err(store_error)
        }
        _ => return None,
    })
}

fn member_kind(path: &str) -> MemberKind {
    if path == "users" {
        MemberKind::User
    } else {
        MemberKind::Project
    }
}

/// The user or project `id`, when the actor may see it (404 otherwise).
fn visible_member(
    tenancy: &Tenancy,
    actor: &Actor<'_>,
    kind: MemberKind,
    id: &str,
) -> Result<Member, GatewayError> {
    let m = tenancy.store().member(kind, id).map_err(store_error)?;
    actor.sees(&m.team).map_err(|_| {
        store_error(StoreError::NotFound(format!(
            "No {} `{id}`.",
            kind.as_str()
        )))
    })?;
    Ok(m)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    team: String,
    name: String,
    /// Users only.
    #[serde(default)]
    email: Option<String>,
}

fn create_member(tenancy: &Tenancy, actor: &Actor<'_>, kind: MemberKind, body: &[u8]) -> Answer {
    let b: MemberBody = body_of(body)?;
    actor.sees(&b.team).map_err(|_| {
        GatewayError::invalid_request(format!(
            "`team`: no team `{}`.",
            crate::error::Printable(&b.team)
        ))
        .param("team")
    })?;
    if kind == MemberKind::Project && b.email.is_some() {
        return Err(GatewayError::invalid_request("`email`: a project has none.").param("email"));
    }
    let action = format!("{}.create", kind.as_str());
    let change = json!({"team": b.team, "name": b.name});
    let team = b.team.clone();
    let name = b.name.clone();
    changed(tenancy, actor, Some(&team), (&action, &name, change), |s| {
        s.create_member(kind, &b.team, &b.name, b.email)
            .map(|m| json!(m))
    })
}

/// A change: made in the store, recorded, then in every request's view.
fn changed(
    tenancy: &Tenancy,
    actor: &Actor<'_>,
    team: Option<&str>,
    (action, target, change): (&str, &str, Value),
    f: impl FnOnce(&crate::tenancy::Store) -> Result<Value, StoreError>,
) -> Answer {
    let out = f(tenancy.store()).map_err(store_error)?;
    let store = tenancy.store();
    if let Err(e) = store.audit(
        actor.name,
        actor.address.as_deref(),
        team,
        (action, target, &change),
    ) {
        tracing::error!(error = %e, "the audit trail could not be written");
    }
    tenancy.refresh().map_err(store_error)?;
    let status = if action.ends_with(".create") {
        201
    } else {
        200
    };
    Ok((status, out))
}

fn create_team(tenancy: &Tenancy, actor: &Actor<'_>, body: &[u8]) -> Answer {
    let b: TeamBody = body_of(body)?;
    let team = NewTeam {
        name: b.name,
        models: b.models,
        ips: cidrs("ips", b.ips)?,
    };
    let change = json!({"name": team.name, "models": team.models, "ips": team.ips});
    let name = team.name.clone();
    changed(tenancy, actor, None, ("team.create", &name, change), |s| {
        s.create_team(team).map(|t| json!(t))
    })
}

fn create_key(tenancy: &Tenancy, actor: &Actor<'_>, body: &[u8]) -> Answer {
    let b: KeyBody = body_of(body)?;
    actor.sees(&b.team).map_err(|_| {
        GatewayError::invalid_request(format!(
            "`team`: no team `{}`.",
            crate::error::Printable(&b.team)
        ))
        .param("team")
    })?;
    let role = match b.role.as_deref() {
        None => Role::Member,
        Some(r) => Role::parse(r).ok_or_else(|| {
            GatewayError::invalid_request("`role` must be `member` or `team_admin`.").param("role")
        })?,
    };
    let key = NewKey {
        role,
        name: b.name,
        team: b.team,
        user: b.user,
        project: b.project,
        models: b.models,
        ips: cidrs("ips", b.ips)?,
        expires_ms: time_of("expires_at", &b.expires_at)?,
        metadata: b.metadata,
    };
    let out = tenancy.store().create_key(key).map_err(store_error)?;
    let (key, secret) = out;
    let change = json!({"name": key.name, "team": key.team, "user": key.user, "project": key.project,
        "models": key.models, "ips": key.ips, "expires_ms": key.expires_ms});
    let id = key.id.clone();
    let team = key.team.clone();
    // The secret is in the answer only: the store holds its hash, the audit trail nothing.
    let answer = json!({"key": key, "secret": secret});
    changed(
        tenancy,
        actor,
        Some(&team),
        ("key.create", &id, change),
        |_| Ok(answer),
    )
}

fn change_key(tenancy: &Tenancy, actor: &Actor<'_>, key: &StoredKey, body: &[u8]) -> Answer {
    let id = key.id.as_str();
    let raw: Value = body_of(body)?;
    let b: KeyPatch = body_of(body)?;
    let change = KeyChange {
        name: b.name,
        user: b.user,
        project: b.project,
        models: b.models,
        ips: match b.ips {
            None => None,
            Some(list) => Some(cidrs("ips", list)?),
        },
        expires_ms: match b.expires_at {
            None => None,
            Some(v) => Some(time_of("expires_at", &v.unwrap_or(Value::Null))?),
        },
        metadata: b.metadata,
    };
    changed(
        tenancy,
        actor,
        Some(&key.team),
        ("key.change", id, raw),
        |s| s.change_key(id, change).map(|k| json!(k)),
    )
}
