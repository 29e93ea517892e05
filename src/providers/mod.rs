//! Provider adapters, one module per provider kind, dispatched by `match` on
//! [`crate::config::ProviderKind`].

pub mod openai;
