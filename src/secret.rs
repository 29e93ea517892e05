//! `Secret<T>`: a value (a provider key) that cannot reach a log, an error or a Debug print.

use std::fmt;

/// Holds a secret. `Debug` and `Display` print `*****`; the value is reachable only through
/// [`Secret::expose`], which is called where the key goes on the wire and nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl<T> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("*****")
    }
}

/// The shortest value taken out of an upstream's answers: shorter header values (a version
/// number, a flag) would be found everywhere, and no credential is that short.
const SHORTEST_SECRET: usize = 8;

/// The secrets one upstream is sent (its key, its configured header values), taken out of
/// what it says back before that is relayed, logged or stored: an upstream that echoes the
/// request's credentials in its error (a misconfigured relay, a debugging proxy, a hostile
/// endpoint) must not hand them to a client. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, each as sent and, where it differs, as a JSON string would escape it.
    secrets: std::sync::Arc<[Secret<Box<[u8]>>]>,
}

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut all: Vec<Box<[u8]>> = Vec::new();
        for s in secrets.into_iter().filter(|s| s.len() >= SHORTEST_SECRET) {
            all.push(s.into());
            if let Ok(text) = std::str::from_utf8(s) {
                let escaped = serde_json::to_string(text).expect("a string serializes");
                let inside = &escaped.as_bytes()[1..escaped.len() - 1];
                if inside != s {
                    all.push(inside.into());
                }
            }
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Redactor {
            secrets: all.into_iter().map(Secret::new).collect(),
        }
    }

    /// `text` with every secret replaced by [`REDACTED`] (borrowed when there was none).
    pub fn redact<'a>(&self, text: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        use std::borrow::Cow;
        let mut out = Cow::Borrowed(text);
        for secret in self.secrets.iter().map(Secret::expose) {
            if memchr::memmem::find(&out, secret).is_none() {
                continue;
            }
            let mut replaced = Vec::with_capacity(out.len());
            let mut rest = &out[..];
            while let Some(at) = memchr::memmem::find(rest, secret) {
                replaced.extend_from_slice(&rest[..at]);
                replaced.extend_from_slice(REDACTED.as_bytes());
                rest = &rest[at + secret.len()..];
            }
            replaced.extend_from_slice(rest);
            out = Cow::Owned(replaced);
        }
        out
    }

    /// [`Redactor::redact`] for text.
    pub fn redact_str<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match self.redact(text.as_bytes()) {
            std::borrow::Cow::Borrowed(_) => text.into(),
            // Whole UTF-8 sequences were replaced by ASCII: still UTF-8.
            std::borrow::Cow::Owned(b) => String::from_utf8_lossy(&b).into_owned().into(),
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("sk-live-123".to_string());
        assert_eq!(format!("{s:?}"), "*****");
        assert_eq!(format!("{s}"), "*****");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"*****\"");
        assert_eq!(s.expose(), "sk-live-123");
    }

    #[test]
    fn every_secret_is_taken_out_as_sent_and_as_json_escaped() {
        let r = Redactor::new([
            &b"sk-prov-123456"[..],
            b"sk-prov-123456789",
            b"short",
            b"tok\"en/with\\quote",
        ]);
        let said = br#"auth=Bearer sk-prov-123456789 key=sk-prov-123456 {"h":"tok\"en/with\\quote"} short"#;
        let out = r.redact(said);
        let out = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            out,
            r#"auth=Bearer [redacted] key=[redacted] {"h":"[redacted]"} short"#
        );
        assert!(matches!(
            r.redact(b"nothing here"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(format!("{r:?}"), "Redactor(4 secrets)");
    }
}
