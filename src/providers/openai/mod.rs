//! OpenAI chat completions, and every OpenAI-compatible vendor: the client's request goes
//! upstream with only `model` (and `stream_options.include_usage`) patched in its bytes, and
//! the response comes back as the upstream sent it.

use crate::error::{Code, GatewayError};
use crate::stream::sse::{data_of, SseFramer};
use crate::stream::InBand;
use crate::usage::{OpenAiUsage, Usage};
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;
use std::ops::Range;

mod error;
mod pass;
mod request;
mod response;
mod stream;
pub use error::*;
pub use pass::*;
pub use request::*;
pub use response::*;
pub use stream::*;

#[cfg(test)]
mod tests;
