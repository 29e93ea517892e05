//! Junction: an LLM API gateway on Pingora. One OpenAI-compatible endpoint in front of every
//! model provider. `ARCHITECTURE.md` is the map of the code.

pub mod access_log;
pub mod admin;
pub mod config;
pub mod error;
pub mod front;
pub mod gateway;
pub mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
pub mod net;
pub mod providers;
pub mod routing;
pub mod secret;
pub mod server;
pub mod stream;
pub mod trace;
pub mod upstream;
pub mod usage;
