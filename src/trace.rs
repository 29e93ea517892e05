//! W3C trace context and OTLP span export.
//!
//! Every chat request is one span: its trace id comes from the client's `traceparent` when it
//! sent a valid one (else a new one), its span id is new, and upstream requests carry
//! `traceparent` with that span as their parent. With `[tracing] otlp_endpoint` set, spans
//! are exported in OTLP/HTTP JSON to `…/v1/traces` in batches by a background task, with the
//! OpenTelemetry GenAI semantic-convention attributes (`gen_ai.*`). The request path only
//! hands a finished span, a plain [`Span`], to a bounded queue; the exporter's task writes
//! the JSON.

use crate::usage::ledger::Entry;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_http::RequestHeader;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Spans waiting for export; beyond this new ones are dropped (and counted).
const QUEUE: usize = 8192;
/// Most spans in one export request.
const BATCH: usize = 512;

/// One request's trace context.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub trace_id: u128,
    /// The client's span, when it sent one.
    pub parent: Option<u64>,
    pub span_id: u64,
    pub flags: u8,
}

impl Context {
    /// Continues the client's trace (`traceparent`, version 00) or starts one.
    pub fn from_request(req: &RequestHeader) -> Context {
        let parsed = req
            .headers
            .get("traceparent")
            .and_then(|v| parse_traceparent(v.as_bytes()));
        let span_id = fastrand::u64(1..);
        match parsed {
            Some((trace_id, parent, flags)) => Context {
                trace_id,
                parent: Some(parent),
                span_id,
                flags,
            },
            None => Context {
                trace_id: fastrand::u128(1..),
                parent: None,
                span_id,
                flags: 1,
            },
        }
    }

    /// The `traceparent` sent upstream: this request's span is the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; all-zero ids are invalid.
pub fn parse_traceparent(v: &[u8]) -> Option<(u128, u64, u8)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let mut parts = s.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |x: &str, n: usize| {
        x.len() == n
            && x.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    if version != "00"
        || parts.next().is_some()
        || !hex(trace, 32)
        || !hex(parent, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    let trace = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
    let parent = u64::from_str_radix(parent, 16).ok().filter(|p| *p != 0)?;
    Some((trace, parent, u8::from_str_radix(flags, 16).ok()?))
}

/// A finished request's span, as the request path hands it on: plain values and shared
/// names, no JSON (the exporter's task writes it, off the request thread).
pub struct Span {
    ctx: Context,
    start_ns: u64,
    end_ns: u64,
    model: Option<std::sync::Arc<str>>,
    status: u16,
    attempts: u32,
    ending: &'static str,
    deployment: Option<crate::config::Deployment>,
    /// Input and output tokens.
    usage: Option<(u64, u64)>,
    ttft: Option<Duration>,
    error: Option<crate::error::Code>,
}

impl Span {
    /// The span in OTLP JSON, with the GenAI semantic-convention attributes.
    fn to_otlp(&self) -> Value {
        let model = self.model.as_deref().unwrap_or("");
        let mut attrs = vec![
            attr_str("gen_ai.operation.name", "chat"),
            attr_str("gen_ai.request.model", model),
            attr_int("http.response.status_code", self.status as i64),
            attr_int("junction.attempts", self.attempts as i64),
            attr_str("junction.ending", self.ending),
        ];
        if let Some(d) = &self.deployment {
            attrs.push(attr_str(
                "gen_ai.provider.name",
                match d.provider.kind {
                    crate::config::ProviderKind::OpenAi => "openai",
                    crate::config::ProviderKind::Anthropic => "anthropic",
                    crate::config::ProviderKind::Gemini => "gcp.gemini",
                },
            ));
            attrs.push(attr_str("gen_ai.response.model", &d.upstream_model));
            attrs.push(attr_str("server.address", &d.provider.upstream.host));
            attrs.push(attr_int("server.port", d.provider.upstream.port as i64));
            attrs.push(attr_str("junction.deployment", &d.id));
        }
        if let Some((input, output)) = self.usage {
            attrs.push(attr_int("gen_ai.usage.input_tokens", input as i64));
            attrs.push(attr_int("gen_ai.usage.output_tokens", output as i64));
        }
        if let Some(t) = self.ttft {
            attrs.push(attr_int("junction.ttft_ms", t.as_millis() as i64));
        }
        if let Some(code) = self.error {
            attrs.push(attr_str("error.type", code.as_str()));
        }
        let mut span = json!({
            "traceId": format!("{:032x}", self.ctx.trace_id),
            "spanId": format!("{:016x}", self.ctx.span_id),
            "name": format!("chat {model}"),
            // SPAN_KIND_SERVER toward the client; upstream calls are its children.
            "kind": 2,
            "startTimeUnixNano": self.start_ns.to_string(),
            "endTimeUnixNano": self.end_ns.to_string(),
            "attributes": attrs,
            // Unset, or Error for the gateway's and upstreams' failures (a client's 4xx is
            // not a server span's error).
            "status": { "code": if self.status >= 500 { 2 } else { 0 } },
        });
        if let Some(p) = self.ctx.parent {
            span["parentSpanId"] = format!("{p:016x}").into();
        }
        span
    }
}

/// Hands finished spans to the exporter (when there is one).
pub struct Tracer {
    tx: Option<mpsc::Sender<Span>>,
    rx: Mutex<Option<mpsc::Receiver<Span>>>,
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
}

impl Tracer {
    pub fn new(export: bool) -> Tracer {
        let (tx, rx) = if export {
            let (tx, rx) = mpsc::channel(QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Tracer {
            tx,
            rx: Mutex::new(rx),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The request's span, queued for export.
    pub fn span(&self, ctx: &Context, e: &Entry, started: Instant) {
        let Some(tx) = &self.tx else { return };
        // The client's trace said not to record (sampled flag off).
        if ctx.flags & 1 == 0 {
            return;
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let end_ns = now.as_nanos() as u64;
        let span = Span {
            ctx: *ctx,
            start_ns: end_ns.saturating_sub(started.elapsed().as_nanos() as u64),
            end_ns,
            model: e.model.clone(),
            status: e.status,
            attempts: e.attempts,
            ending: e.ending.as_str(),
            deployment: e.deployment.clone(),
            usage: e.usage.map(|u| (u.input_tokens, u.output_tokens)),
            ttft: e.ttft,
            error: e.error,
        };
        if tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

fn attr_str(key: &str, v: &str) -> Value {
    json!({"key": key, "value": {"stringValue": v}})
}

fn attr_int(key: &str, v: i64) -> Value {
    // OTLP JSON carries 64-bit integers as strings.
    json!({"key": key, "value": {"intValue": v.to_string()}})
}

/// The background exporter: batches spans and posts them to the collector.
pub struct Exporter {
    pub tracer: std::sync::Arc<Tracer>,
    pub endpoint: crate::upstream::Upstream,
    pub service_name: String,
    pub connector: pingora_core::connectors::http::Connector,
}

#[async_trait]
impl BackgroundService for Exporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self
            .tracer
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let closing = tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => n == 0,
                _ = shutdown.changed() => true,
            };
            // Take what else came within a moment, to send fewer, larger requests.
            if !closing && batch.len() < BATCH {
                let room = BATCH - batch.len();
                let _ = tokio::time::timeout(
                    Duration::from_millis(200),
                    rx.recv_many(&mut batch, room),
                )
                .await;
            }
            if closing {
                while let Ok(s) = rx.try_recv() {
                    batch.push(s);
                }
            }
            if !batch.is_empty() {
                let n = batch.len() as u64;
                if self.post(std::mem::take(&mut batch)).await {
                    self.tracer.exported.fetch_add(n, Relaxed);
                } else {
                    self.tracer.dropped.fetch_add(n, Relaxed);
                }
            }
            if closing {
                return;
            }
        }
    }
}

impl Exporter {
    /// Posts one batch; true when the collector took it.
    async fn post(&self, spans: Vec<Span>) -> bool {
        let spans: Vec<Value> = spans.iter().map(Span::to_otlp).collect();
        let body = json!({
            "resourceSpans": [{
                "resource": { "attributes": [attr_str("service.name", &self.service_name)] },
                "scopeSpans": [{
                    "scope": { "name": "junction", "version": env!("CARGO_PKG_VERSION") },
                    "spans": spans,
                }],
            }],
        });
        let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let up = &self.endpoint;
        let Ok(peer) = up.peer().await else {
            return false;
        };
        let path = format!("{}/v1/traces", up.base_path);
        let Ok(mut req) = RequestHeader::build("POST", path.as_bytes(), Some(3)) else {
            return false;
        };
        let _ = req.insert_header(http::header::HOST, &up.authority);
        let _ = req.insert_header(http::header::CONTENT_TYPE, "application/json");
        let _ = req.insert_header(http::header::CONTENT_LENGTH, body.len());
        let Ok((mut s, _)) = self.connector.get_http_session(&*peer).await else {
            tracing::warn!(endpoint = %up, "cannot reach the OTLP collector");
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(10)));
        s.set_write_timeout(Some(Duration::from_secs(10)));
        if s.write_request_header(Box::new(req)).await.is_err()
            || s.write_request_body(body, true).await.is_err()
            || s.finish_request_body().await.is_err()
            || s.read_response_header().await.is_err()
        {
            return false;
        }
        let ok = s.response_header().is_some_and(|h| h.status.is_success());
        while let Ok(Some(_)) = s.read_response_body().await {}
        self.connector
            .release_http_session(s, &*peer, Some(Duration::from_secs(60)))
            .await;
        if !ok {
            tracing::warn!(endpoint = %up, "the OTLP collector refused a batch of spans");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly_and_continued() {
        let v = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace, parent, flags) = parse_traceparent(v).unwrap();
        assert_eq!(trace, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parent, 0x00f067aa0ba902b7);
        assert_eq!(flags, 1);
        for bad in [
            &b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"garbage",
        ] {
            assert!(
                parse_traceparent(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.insert_header("traceparent", std::str::from_utf8(v).unwrap())
            .unwrap();
        let ctx = Context::from_request(&req);
        let sent = ctx.traceparent();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(sent.ends_with("-01"));
        assert_ne!(
            &sent[36..52],
            "00f067aa0ba902b7",
            "a new span, child of the client's"
        );
        assert_eq!(ctx.parent, Some(0x00f067aa0ba902b7));
    }
}
