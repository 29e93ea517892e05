//! Where a provider lives on the network: its base URL, parsed once, and the Pingora peer
//! (address, TLS, ALPN, timeouts) used to take pooled connections to it.

use crate::error::{Code, ErrorKind, GatewayError};
use pingora_core::protocols::tls::CaType;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::WrappedX509;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a DNS answer is reused.
const DNS_TTL: Duration = Duration::from_secs(30);

/// A provider's base URL, ready to connect to.
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The URL's path without a trailing slash, e.g. `/v1`.
    pub base_path: String,
    /// Whether HTTP/2 is offered (ALPN over TLS, prior knowledge over TCP).
    pub http2: bool,
    /// `Host` header value.
    pub authority: String,
    connect_timeout: Duration,
    /// CAs trusted instead of the system's roots.
    ca: Option<Arc<CaType>>,
    /// The peer when the host is an IP address: built once.
    fixed: Option<Arc<HttpPeer>>,
    /// The peer of the last DNS answer for a host name, with when it was resolved.
    resolved: Mutex<Option<(Instant, Arc<HttpPeer>)>>,
    /// Over HTTP/2, requests take a session one at a time (see [`Upstream::h2_turn`]).
    turn: tokio::sync::Semaphore,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(
            f,
            "{scheme}://{}{}{}",
            self.authority,
            self.base_path,
            if self.http2 { " (h2)" } else { "" }
        )
    }
}

impl Upstream {
    /// Parses `http(s)://host[:port][/path]`. `http2`: see `ProviderEntry::http2`.
    pub fn parse(url: &str, http2: Option<bool>) -> Result<Upstream, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| format!("`{url}` is not a URL like https://api.openai.com/v1"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("`{url}` must start with http:// or https://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("`{url}` has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if uri.query().is_some() {
            return Err(format!("`{url}` must not have a query string"));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let base_path = uri.path().trim_end_matches('/').to_string();
        let authority = match uri.port_u16() {
            Some(p) => format!("{}:{p}", uri.host().unwrap_or_default()),
            None => uri.host().unwrap_or_default().to_string(),
        };
        Ok(Upstream {
            tls,
            host,
            port,
            base_path,
            http2: http2.unwrap_or(tls),
            authority,
            connect_timeout: Duration::from_secs(5),
            ca: None,
            fixed: None,
            resolved: Mutex::new(None),
            turn: tokio::sync::Semaphore::new(1),
        })
    }

    /// For an HTTP/2 upstream, a turn at taking a session: one at a time, so that a burst of
    /// requests shares the first new connection instead of each opening its own (Pingora
    /// pools an h2 connection only once it is up; 10,000 streams opened 574 connections where
    /// 100 do). Bounded: after `wait` a request goes ahead without its turn. The gate lives
    /// with the upstream, so it goes with the snapshot that holds it.
    pub async fn h2_turn(&self, wait: Duration) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if !self.http2 {
            return None;
        }
        pingora_timeout::timeout(wait, self.turn.acquire())
            .await
            .ok()?
            .ok()
    }

    /// Sets the connect timeout and trusted CAs, and builds the peer once if the host is an
    /// IP address.
    pub fn prepare(mut self, connect_timeout: Duration, ca: Option<Arc<CaType>>) -> Upstream {
        self.connect_timeout = connect_timeout;
        self.ca = ca;
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            self.fixed = Some(Arc::new(self.peer_for(SocketAddr::new(ip, self.port))));
        }
        self
    }

    fn peer_for(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.tls, self.host.clone());
        peer.options.connection_timeout = Some(self.connect_timeout);
        // Covers the TLS handshake too.
        peer.options.total_connection_timeout = Some(self.connect_timeout * 2);
        peer.options.alpn = match (self.tls, self.http2) {
            (true, true) => ALPN::H2H1,
            (false, true) => ALPN::H2,
            (_, false) => ALPN::H1,
        };
        peer.options.ca = self.ca.clone();
        // Pingora's pool key leaves the trusted CAs out: without this, a provider trusting only
        // its own CA could be handed a connection verified against other roots, and the reverse.
        peer.group_key = self.ca.as_ref().map_or(0, |ca| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for cert in ca.iter() {
                cert.borrow_raw_cert().hash(&mut h);
            }
            h.finish() | 1
        });
        if self.http2 {
            // Many concurrent requests share one h2 connection.
            peer.options.max_h2_streams = 100;
        }
        peer
    }

    /// The peer to connect to; resolves the host name (async, cached for [`DNS_TTL`]).
    pub async fn peer(&self) -> Result<Arc<HttpPeer>, GatewayError> {
        if let Some(p) = &self.fixed {
            return Ok(p.clone());
        }
        if let Some((at, p)) = &*self.resolved.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < DNS_TTL {
                return Ok(p.clone());
            }
        }
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .ok()
            .and_then(|mut it| it.next())
            .ok_or_else(|| {
                GatewayError::new(
                    ErrorKind::BadGateway,
                    format!("cannot resolve the upstream host `{}`", self.host),
                )
                .code(Code::UpstreamUnreachable)
            })?;
        let peer = Arc::new(self.peer_for(addr));
        *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), peer.clone()));
        Ok(peer)
    }
}

/// Reads the CA certificates of a PEM file.
pub fn load_ca_file(path: &std::path::Path) -> Result<Arc<CaType>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut certs = Vec::new();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = cert.map_err(|e| format!("`{}` is not valid PEM: {e}", path.display()))?;
        certs.push(WrappedX509::new(der.to_vec(), |raw| {
            pingora_core::utils::tls::parse_x509(raw)
        }));
    }
    if certs.is_empty() {
        return Err(format!("`{}` holds no certificate", path.display()));
    }
    Ok(Arc::from(certs.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let u = Upstream::parse("https://api.openai.com/v1/", None).unwrap();
        assert!(u.tls && u.http2);
        assert_eq!((u.host.as_str(), u.port), ("api.openai.com", 443));
        assert_eq!(u.base_path, "/v1");
        assert_eq!(u.authority, "api.openai.com");

        let u = Upstream::parse("http://127.0.0.1:9000", None).unwrap();
        assert!(!u.tls && !u.http2);
        assert_eq!(u.port, 9000);
        assert_eq!(u.base_path, "");
        assert_eq!(u.authority, "127.0.0.1:9000");

        let u = Upstream::parse("http://[::1]:9000/v1", Some(true)).unwrap();
        assert_eq!(u.host, "::1");
        assert!(u.http2);
        assert!(u.prepare(Duration::from_secs(1), None).fixed.is_some());
    }

    #[test]
    fn rejects_bad_base_urls() {
        assert!(Upstream::parse("ftp://x/v1", None).is_err());
        assert!(Upstream::parse("not a url", None).is_err());
        assert!(Upstream::parse("http://x/v1?a=b", None).is_err());
    }
}
