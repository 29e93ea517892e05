//! Junction: an LLM API gateway on Pingora. One OpenAI-compatible endpoint in front of every
//! model provider. See `DESIGN.md` (in the shared folder) for the architecture.

pub mod access_log;
pub mod config;
pub mod error;
pub mod front;
pub mod gateway;
pub mod metrics;
pub mod providers;
pub mod routing;
pub mod secret;
pub mod server;
pub mod stream;
pub mod trace;
pub mod upstream;
pub mod usage;
