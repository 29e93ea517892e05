//! Step 1, auth: the client's key, from `Authorization: Bearer` or `x-api-key`, to the
//! configured key it matches: the caller every later step reads (what it may use, whom the
//! request is accounted to). Run once per request, by the dispatch, for every authenticated
//! endpoint.

use crate::config::{hash_key, ClientKey, ModelRoute, Names, Snapshot};
use crate::error::{Code, ErrorKind, GatewayError};
use crate::tenancy::{Entry, Refusal, StoredKey, Tenancy};
use pingora_http::RequestHeader;
use std::net::IpAddr;
use std::sync::Arc;

/// The presented key, if any: `Authorization: Bearer`, else `x-api-key` (Anthropic's
/// clients), `x-goog-api-key` or a `key` query parameter (Gemini's).
pub fn presented_key(req: &RequestHeader) -> Option<&[u8]> {
    if let Some(v) = req.headers.get(http::header::AUTHORIZATION) {
        let v = v.as_bytes();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            let key = v[7..].trim_ascii();
            if !key.is_empty() {
                return Some(key);
            }
        }
    }
    ["x-api-key", "x-goog-api-key"]
        .iter()
        .find_map(|name| {
            req.headers
                .get(*name)
                .map(|v| v.as_bytes().trim_ascii())
                .filter(|k| !k.is_empty())
        })
        .or_else(|| {
            req.uri.query()?.split('&').find_map(|pair| {
                pair.strip_prefix("key=")
                    .filter(|k| !k.is_empty())
                    .map(str::as_bytes)
            })
        })
}

/// Who is calling: the key the request presented (from the config file, or stored), and what
/// it may do. Every step after auth reads this, never the key's source.
#[derive(Clone, Copy)]
pub struct Caller<'s> {
    /// The key's name (a config key's) or public id (a stored key's): whom the request is
    /// accounted to.
    pub name: &'s Arc<str>,
    key: Source<'s>,
    /// A short-lived token's models, within its parent's.
    scope: Option<&'s [String]>,
    /// The request came with a short-lived token, not the key itself.
    pub token: bool,
    /// It came with the secret a rotation replaced (still in its grace period).
    previous: bool,
}

#[derive(Clone, Copy)]
enum Source<'s> {
    Config(&'s ClientKey),
    Stored(&'s Arc<Entry>),
}

impl<'s> Caller<'s> {
    /// Whether the caller may use `model` (a public name, an alias or `provider/model`).
    pub fn allows(&self, model: &str) -> bool {
        self.allows_any(Names::one(model))
    }

    /// Whether the caller may use a model known by `names`: every list on the way (the
    /// key's, its team's, a token's scope) names it by one of them.
    fn allows_any(&self, names: Names<'_>) -> bool {
        let parent = match self.key {
            Source::Config(k) => k.allows(names),
            Source::Stored(e) => e.allows(names),
        };
        parent && self.scope.is_none_or(|s| names.allowed_by(s))
    }

    /// Whether the caller may use `route`, asked for as `asked`: a list may name it by the
    /// name it was asked by, its own, or any of its aliases.
    pub fn may_use(&self, asked: &str, route: &ModelRoute) -> bool {
        self.allows_any(Names::of(asked, route))
    }

    /// The tag of the secret the caller presented, for a token it mints; `None` for the
    /// secret a rotation replaced, which may not mint.
    pub fn secret_tag(&self) -> Option<String> {
        match self.key {
            Source::Config(k) => Some(crate::tenancy::secret_tag(&k.hash)),
            Source::Stored(_) if self.previous => None,
            Source::Stored(e) => Some(e.secret_tag.clone()),
        }
    }

    /// The levels the caller's requests are charged to, when any has limits.
    pub fn levels(&self) -> Option<&'s Arc<crate::limits::Levels>> {
        match self.key {
            Source::Config(k) => k.levels.as_ref(),
            Source::Stored(_) => None,
        }
    }

    /// The stored key, when the caller presented one.
    pub fn stored(&self) -> Option<&'s StoredKey> {
        self.entry().map(|e| &e.key)
    }

    /// The stored key with its team's bounds, when the caller presented one.
    pub fn entry(&self) -> Option<&'s Arc<Entry>> {
        match self.key {
            Source::Stored(e) => Some(e),
            Source::Config(_) => None,
        }
    }
}

/// The key a request presented, found: borrowed from the snapshot, or held from the store;
/// with a short-lived token's scope when it came as one.
pub struct Resolved<'s> {
    key: Found<'s>,
    /// A token's models (`Some(None)`: a token with all of its parent's).
    token: Option<Option<Vec<String>>>,
}

enum Found<'s> {
    Config(&'s ClientKey),
    Stored {
        entry: Arc<Entry>,
        id: Arc<str>,
        previous: bool,
    },
}

impl Resolved<'_> {
    pub fn caller(&self) -> Caller<'_> {
        let scope = self.token.as_ref().and_then(|t| t.as_deref());
        let token = self.token.is_some();
        match &self.key {
            Found::Config(k) => Caller {
                name: &k.name,
                key: Source::Config(k),
                scope,
                token,
                previous: false,
            },
            Found::Stored {
                entry,
                id,
                previous,
            } => Caller {
                name: id,
                key: Source::Stored(entry),
                scope,
                token,
                previous: *previous,
            },
        }
    }
}

fn refused(r: Refusal) -> GatewayError {
    let message = match r {
        Refusal::Revoked => "This API key was revoked.",
        Refusal::Expired => "This API key has expired.",
        Refusal::Rotated => {
            "This API key was rotated and its grace period is over: use the new one."
        }
    };
    GatewayError::new(ErrorKind::Authentication, message).code(Code::InvalidApiKey)
}

fn admin_only() -> GatewayError {
    GatewayError::new(
        ErrorKind::PermissionDenied,
        "This is a team admin credential: it is for the admin API only.",
    )
}

fn address_refused() -> GatewayError {
    GatewayError::new(
        ErrorKind::PermissionDenied,
        "This API key may not be used from this address.",
    )
    .code(Code::AddressNotAllowed)
}

/// A short-lived token: verified by its signature, then its parent, which must still be
/// there and usable (a token dies with its key).
fn from_token<'s>(
    t: &[u8],
    snapshot: &'s Snapshot,
    tenancy: &Tenancy,
    addr: Option<IpAddr>,
    now: i64,
) -> Result<Resolved<'s>, GatewayError> {
    let claims = tenancy.verify(t, now).map_err(|bad| {
        let message = match bad {
            crate::tenancy::token::Bad::Forged => "Invalid token.",
            crate::tenancy::token::Bad::Expired => "This token has expired.",
        };
        GatewayError::new(ErrorKind::Authentication, message).code(Code::InvalidApiKey)
    })?;
    let gone = || {
        GatewayError::new(
            ErrorKind::Authentication,
            "This token's key is no longer valid.",
        )
        .code(Code::InvalidApiKey)
    };
    let key = if claims.stored {
        let entry = tenancy.by_id(&claims.parent).ok_or_else(gone)?;
        entry.usable(false, now).map_err(|_| gone())?;
        if entry.secret_tag != claims.secret {
            return Err(gone());
        }
        if entry.key.role == crate::tenancy::Role::TeamAdmin {
            return Err(admin_only());
        }
        if !entry.allows_address(addr) {
            return Err(address_refused());
        }
        Found::Stored {
            id: Arc::from(entry.key.id.as_str()),
            entry,
            previous: false,
        }
    } else {
        Found::Config(
            snapshot
                .keys
                .iter()
                .find(|k| {
                    *k.name == *claims.parent
                        && crate::tenancy::secret_tag(&k.hash) == claims.secret
                })
                .ok_or_else(gone)?,
        )
    };
    Ok(Resolved {
        key,
        token: Some(claims.models),
    })
}

/// Finds the caller of this request: 401 when its key is missing, unknown, revoked, expired
/// or replaced; 403 when the client's address is not one the key allows. The message says
/// which rule refused it, and nothing of any other key.
pub fn authenticate<'s>(
    req: &RequestHeader,
    snapshot: &'s Snapshot,
    tenancy: &Tenancy,
    addr: Option<IpAddr>,
) -> Result<Resolved<'s>, GatewayError> {
    let key = presented_key(req).ok_or_else(GatewayError::missing_key)?;
    let hash = hash_key(key);
    if let Some(k) = snapshot.key_by_hash(&hash) {
        return Ok(Resolved {
            key: Found::Config(k),
            token: None,
        });
    }
    let now = crate::tenancy::store_now_ms();
    if key.starts_with(crate::tenancy::token::TOKEN_PREFIX.as_bytes()) {
        return from_token(key, snapshot, tenancy, addr, now);
    }
    let (entry, previous) = tenancy
        .lookup(&hash)
        .ok_or_else(GatewayError::invalid_key)?;
    entry.usable(previous, now).map_err(refused)?;
    if entry.key.role == crate::tenancy::Role::TeamAdmin {
        return Err(admin_only());
    }
    if !entry.allows_address(addr) {
        return Err(address_refused());
    }
    let id = Arc::from(entry.key.id.as_str());
    Ok(Resolved {
        key: Found::Stored {
            entry,
            id,
            previous,
        },
        token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn key_from_bearer_or_x_api_key() {
        assert_eq!(
            presented_key(&req(&[("authorization", "Bearer sk-1")])),
            Some(&b"sk-1"[..])
        );
        assert_eq!(
            presented_key(&req(&[("authorization", "bearer  sk-1 ")])),
            Some(&b"sk-1"[..])
        );
        assert_eq!(
            presented_key(&req(&[("x-api-key", "sk-2")])),
            Some(&b"sk-2"[..])
        );
        assert_eq!(
            presented_key(&req(&[("x-goog-api-key", "sk-3")])),
            Some(&b"sk-3"[..])
        );
        let mut r = RequestHeader::build(
            "POST",
            b"/v1beta/models/m:generateContent?alt=sse&key=sk-4",
            None,
        )
        .unwrap();
        assert_eq!(presented_key(&r), Some(&b"sk-4"[..]));
        r.insert_header("x-api-key", "sk-5").unwrap();
        assert_eq!(presented_key(&r), Some(&b"sk-5"[..]));
        assert_eq!(presented_key(&req(&[("authorization", "Basic abc")])), None);
        assert_eq!(presented_key(&req(&[("authorization", "Bearer ")])), None);
        assert_eq!(presented_key(&req(&[])), None);
    }
}
