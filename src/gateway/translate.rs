//! Where a front door meets a provider: the one place the two contracts are composed. A
//! request passes through when the door speaks the provider's protocol
//! ([`Front::native_to`], asked by the attempt loop for each candidate);
//! otherwise an answer is `door.encode(provider.decode(bytes))`, streamed ([`Stream`]) or
//! whole ([`whole`]), for every pair of door and provider alike.

use super::state::Keep;
use crate::config::Provider;
use crate::error::{Code, ErrorKind, GatewayError};
use crate::front::{responses, Encoder, Front};
use crate::providers::openai::ChatRequestInfo;
use crate::providers::{self, Decoder, Dialect};
use crate::stream::InBand;
use crate::usage::Usage;
use bytes::Bytes;
use std::sync::Arc;

/// The upstream's answer is already in the client's protocol: it is relayed as it comes
/// (a pass-through, or an OpenAI answer to the chat door).
pub fn as_is(front: Front, dialect: Dialect) -> bool {
    dialect.passed_through() || (front == Front::Chat && matches!(dialect, Dialect::OpenAi))
}

/// A stream on its way back: the provider's decoder, then the door's encoder unless the
/// decoder's output is the client's protocol already. An error the upstream reports inside
/// its stream becomes a [`GatewayError`] here, as an error status would, and is rendered
/// once, by the door.
pub struct Stream {
    front: Front,
    /// The upstream's own events go to the client (a pass-through): its error event too.
    passed_through: bool,
    provider: Arc<Provider>,
    decoder: Decoder,
    encoder: Option<Box<Encoder>>,
    failure: Option<GatewayError>,
    /// The upstream's body ended ([`Stream::finish`] was called).
    finished: bool,
    /// Where the final response goes (a Responses request with `store` on).
    keep: Option<Arc<Keep>>,
}

impl Stream {
    pub fn new(
        front: Front,
        dialect: Dialect,
        provider: &Arc<Provider>,
        info: &ChatRequestInfo,
        upstream_model: &str,
        responses: Option<&responses::Context>,
        keep: Option<&Arc<Keep>>,
    ) -> Self {
        let passed_through = dialect.passed_through();
        let encoder = if passed_through {
            None
        } else {
            front.encoder(upstream_model, responses).map(Box::new)
        };
        let mut decoder = Decoder::new(dialect, info, upstream_model);
        if keep.is_some() {
            decoder.keep_final();
        }
        Stream {
            front,
            passed_through,
            provider: provider.clone(),
            decoder,
            encoder,
            failure: None,
            finished: false,
            keep: keep.cloned(),
        }
    }

    /// Stores the final response, once it was made, before it leaves for the client.
    #[cold]
    fn store(&mut self) {
        let Some(keep) = &self.keep else { return };
        let kept = match &mut self.encoder {
            Some(e) => e.take_kept(),
            None => self.decoder.take_kept(),
        };
        if let Some(response) = kept {
            keep.put(&response);
        }
    }

    // hot path: every upstream chunk.
    /// What to send the client for an upstream chunk (`None`: nothing complete yet).
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        let out = match (self.decoder.feed(chunk), &mut self.encoder) {
            (None, _) => None,
            (Some(chat), None) => Some(chat),
            (Some(chat), Some(e)) => e.feed(chat),
        };
        if self.failure.is_none() && self.decoder.failure().is_some() {
            return self.fail(out);
        }
        if self.keep.is_some() {
            self.store();
        }
        out
    }

    /// At the end of the upstream body: what is left to send (nothing the second time).
    pub fn finish(&mut self) -> Option<Bytes> {
        if std::mem::replace(&mut self.finished, true) {
            return None;
        }
        let chat = self.decoder.finish();
        if self.failure.is_none() && self.decoder.failure().is_some() {
            let head = chat.and_then(|c| match &mut self.encoder {
                Some(e) => e.feed(c),
                None => Some(c),
            });
            return self.fail(head);
        }
        let Some(e) = &mut self.encoder else {
            if self.keep.is_some() {
                self.store();
            }
            return chat;
        };
        if self.failure.is_some() {
            return None;
        }
        let head = chat.and_then(|c| e.feed(c));
        let out = join(head, e.finish());
        if self.keep.is_some() {
            self.store();
        }
        out
    }

    /// The stream ended with the upstream's error: what the decoder found, made the error
    /// the client is told (as the provider's error status would be), and its event in the
    /// door's protocol after `head` (a pass-through's bytes carry the upstream's own).
    #[cold]
    fn fail(&mut self, head: Option<Bytes>) -> Option<Bytes> {
        let e = match self.decoder.failure() {
            Some(InBand::Reported { status, body }) => {
                providers::map_error(&self.provider, *status, body, None)
            }
            _ => GatewayError::new(
                ErrorKind::BadGateway,
                format!(
                    "Provider `{}` sent an event that is not valid JSON.",
                    self.provider.name
                ),
            )
            .code(Code::UpstreamBadResponse),
        };
        if self.passed_through {
            // The upstream's own error event goes out, without the provider's secrets.
            self.failure = Some(e);
            return head.map(|h| match self.provider.redactor.redact(&h) {
                std::borrow::Cow::Borrowed(_) => h,
                std::borrow::Cow::Owned(r) => r.into(),
            });
        }
        let tail = self.error_event(&e);
        self.failure = Some(e);
        join(head, Some(tail))
    }

    /// The upstream's body ended.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The upstream's stream reached its proper end, or ended with an error.
    pub fn done(&self) -> bool {
        self.decoder.done()
    }

    /// The error the upstream's stream ended with.
    pub fn failure(&self) -> Option<&GatewayError> {
        self.failure.as_ref()
    }

    /// Takes the error the stream ended with (for an attempt that failed before anything
    /// reached the client).
    pub fn take_failure(&mut self) -> Option<GatewayError> {
        self.failure.take()
    }

    /// The upstream sent something of the answer, beyond its opening events.
    pub fn started(&self) -> bool {
        self.decoder.started()
    }

    /// The upstream's usage report, once it is whole.
    pub fn whole_usage(&self) -> Option<Usage> {
        self.decoder.whole_usage()
    }

    /// The usage reported so far.
    pub fn partial_usage(&self) -> Option<Usage> {
        self.decoder.usage()
    }

    /// The event that ends the client's stream with an error, in its protocol.
    pub fn error_event(&mut self, e: &GatewayError) -> Bytes {
        match &mut self.encoder {
            Some(encoder) => encoder.error_event(e),
            None => self.front.error_event(e),
        }
    }
}

/// A whole answer in the client's protocol, with its usage: the provider's answer decoded
/// into a chat completion, then written as the door's.
pub fn whole(
    front: Front,
    dialect: Dialect,
    body: &[u8],
    upstream_model: &str,
    responses: Option<&responses::Context>,
) -> Result<(Vec<u8>, Usage), String> {
    let (chat, usage) = providers::decode_whole(dialect, body, upstream_model)?;
    Ok((
        front.whole_from_chat(chat, upstream_model, responses)?,
        usage,
    ))
}

fn join(head: Option<Bytes>, tail: Option<Bytes>) -> Option<Bytes> {
    match (head, tail) {
        (Some(h), Some(t)) => Some([h, t].concat().into()),
        (h, t) => h.or(t),
    }
}

#[cfg(test)]
mod contract;
