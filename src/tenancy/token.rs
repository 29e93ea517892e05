//! Short-lived tokens: minted by a caller holding a key (`POST /v1/tokens`), valid for
//! minutes, scoped to some of the key's models, for clients that should never hold a
//! long-lived key (a browser, a CI job's step). A token is signed (HMAC-SHA256 with a key kept
//! in the store, so every replica on the store verifies it without a lookup); it names its
//! parent key, and dies with it: a revoked, expired or deleted parent refuses its tokens at
//! once. What a token spends is its parent's.
//!
//! `jt-` + base64url(payload JSON) + `.` + base64url(signature).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

pub const TOKEN_PREFIX: &str = "jt-";
/// The longest a token may live.
pub const MAX_TTL_MS: i64 = 3_600_000;

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The parent: a stored key's public id, or a config key's name.
    #[serde(rename = "k")]
    pub parent: String,
    /// The parent is a stored key (else a config key).
    #[serde(rename = "s")]
    pub stored: bool,
    /// The models it may use, within its parent's; `None`: all of its parent's.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Unix ms after which it is refused.
    #[serde(rename = "e")]
    pub expires_ms: i64,
    /// Random: no two tokens are alike.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The secret it was minted with ([`crate::tenancy::secret_tag`]): a rotation ends it.
    #[serde(rename = "g")]
    pub secret: String,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Not a token, or not signed by this store's key: forged or garbled.
    Forged,
    Expired,
}

fn mac(key: &[u8; 32], payload: &[u8]) -> Hmac<sha2::Sha256> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    m.update(payload);
    m
}

/// The token of `claims`, signed with `key`.
pub fn sign(key: &[u8; 32], claims: &Claims) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialize");
    let sig = mac(key, &payload).finalize().into_bytes();
    format!(
        "{TOKEN_PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// The claims of a token signed with `key` and not expired at `now_ms`.
pub fn verify(key: &[u8; 32], token: &[u8], now_ms: i64) -> Result<Claims, Bad> {
    let t = std::str::from_utf8(token).map_err(|_| Bad::Forged)?;
    let (payload, sig) = t
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|t| t.split_once('.'))
        .ok_or(Bad::Forged)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Bad::Forged)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| Bad::Forged)?;
    // Constant time: the signature is checked before anything of the payload is believed.
    mac(key, &payload)
        .verify_slice(&sig)
        .map_err(|_| Bad::Forged)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| Bad::Forged)?;
    if now_ms >= claims.expires_ms {
        return Err(Bad::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            parent: "key_0123456789abcdef".into(),
            stored: true,
            models: Some(vec!["gpt".into()]),
            expires_ms: 2_000,
            nonce: "n1".into(),
            secret: "a1b2c3d4e5f6".into(),
        }
    }

    #[test]
    fn a_token_verifies_until_it_expires_and_only_with_its_key() {
        let key = [7u8; 32];
        let t = sign(&key, &claims());
        assert!(t.starts_with(TOKEN_PREFIX));
        assert_eq!(verify(&key, t.as_bytes(), 1_999), Ok(claims()));
        assert_eq!(verify(&key, t.as_bytes(), 2_000), Err(Bad::Expired));
        assert_eq!(verify(&[8u8; 32], t.as_bytes(), 0), Err(Bad::Forged));
    }

    #[test]
    fn a_changed_payload_or_signature_is_forged() {
        let key = [7u8; 32];
        let t = sign(&key, &claims());
        let (payload, sig) = t[TOKEN_PREFIX.len()..].split_once('.').unwrap();
        // The payload of another token (wider models, longer life) under this signature.
        let mut wider = claims();
        wider.models = None;
        wider.expires_ms = i64::MAX;
        let other = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wider).unwrap());
        for forged in [
            format!("{TOKEN_PREFIX}{other}.{sig}"),
            format!("{TOKEN_PREFIX}{payload}.{}", &sig[1..]),
            format!("{TOKEN_PREFIX}{payload}"),
            format!("{TOKEN_PREFIX}{payload}.{sig}x"),
            "jt-".into(),
            "sk-jn-whatever".into(),
        ] {
            assert_eq!(
                verify(&key, forged.as_bytes(), 0),
                Err(Bad::Forged),
                "{forged}"
            );
        }
    }
}
