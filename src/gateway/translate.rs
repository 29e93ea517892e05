//! Where a front door meets a provider: the one place the two contracts are composed. A
//! request passes through when the door speaks the provider's protocol
//! ([`Front::native_to`], asked by the attempt loop for each candidate);
//! otherwise an answer is `door.encode(provider.decode(bytes))`, streamed ([`Stream`]) or
//! whole ([`whole`]), for every pair of door and provider alike.

use crate::error::GatewayError;
use crate::front::{responses, Encoder, Front};
use crate::providers::openai::ChatRequestInfo;
use crate::providers::{self, Decoder, Dialect};
use crate::usage::Usage;
use bytes::Bytes;

/// The upstream's answer is already in the client's protocol: it is relayed as it comes
/// (a pass-through, or an OpenAI answer to the chat door).
pub fn as_is(front: Front, dialect: Dialect) -> bool {
    dialect.passed_through() || (front == Front::Chat && matches!(dialect, Dialect::OpenAi))
}

/// A stream on its way back: the provider's decoder, then the door's encoder unless the
/// decoder's output is the client's protocol already.
pub struct Stream {
    front: Front,
    decoder: Decoder,
    encoder: Option<Box<Encoder>>,
}

impl Stream {
    pub fn new(
        front: Front,
        dialect: Dialect,
        info: &ChatRequestInfo,
        upstream_model: &str,
        responses: Option<&responses::Context>,
    ) -> Self {
        let encoder = if dialect.passed_through() {
            None
        } else {
            front.encoder(upstream_model, responses).map(Box::new)
        };
        Stream {
            front,
            decoder: Decoder::new(dialect, info, upstream_model),
            encoder,
        }
    }

    // hot path: every upstream chunk.
    /// What to send the client for an upstream chunk (`None`: nothing complete yet).
    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        let chat = self.decoder.feed(chunk)?;
        match &mut self.encoder {
            None => Some(chat),
            Some(e) => e.feed(chat),
        }
    }

    /// At the end of the upstream body: what is left to send.
    pub fn finish(&mut self) -> Option<Bytes> {
        let chat = self.decoder.finish();
        let Some(e) = &mut self.encoder else {
            return chat;
        };
        let head = chat.and_then(|c| e.feed(c));
        match (head, e.finish()) {
            (Some(h), Some(t)) => Some([h, t].concat().into()),
            (h, t) => h.or(t),
        }
    }

    /// The upstream's stream reached its proper end (or an error event told the client).
    pub fn done(&self) -> bool {
        self.decoder.done()
    }

    /// The upstream's usage report, once it is whole.
    pub fn whole_usage(&self) -> Option<Usage> {
        self.decoder.whole_usage()
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

#[cfg(test)]
mod contract;
