//! Step 1, auth: the client's key, from `Authorization: Bearer` or `x-api-key`, to the
//! configured key it matches: the caller every later step reads (what it may use, whom the
//! request is accounted to). Run once per request, by the dispatch, for every authenticated
//! endpoint.

use crate::config::{hash_key, ClientKey, ModelRoute, Snapshot};
use crate::error::GatewayError;
use pingora_http::RequestHeader;

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

/// Who is calling: the client key the request presented, and what it may do.
#[derive(Clone, Copy)]
pub struct Caller<'s> {
    pub key: &'s ClientKey,
}

impl Caller<'_> {
    /// Whether the caller may use `route`, asked for as `asked` (a key may allow either the
    /// name it was asked by or the route's own).
    pub fn may_use(&self, asked: &str, route: &ModelRoute) -> bool {
        self.key.allows(asked) || self.key.allows(&route.name)
    }
}

/// Finds the caller of this request: 401 when its key is missing or unknown.
pub fn authenticate<'s>(
    req: &RequestHeader,
    snapshot: &'s Snapshot,
) -> Result<Caller<'s>, GatewayError> {
    let key = presented_key(req).ok_or_else(GatewayError::missing_key)?;
    snapshot
        .key_by_hash(&hash_key(key))
        .map(|key| Caller { key })
        .ok_or_else(GatewayError::invalid_key)
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
