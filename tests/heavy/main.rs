//! The heavy tests, a target of their own so that the default `cargo test` stays quick:
//! 10,000 requests then SIGTERM, SIGKILL under load, 100 reloads under load, a binary upgrade
//! under load, two replicas on one PostgreSQL under load while keys come and go, 100 streams through a graceful shutdown. `cargo test --test heavy` runs them (`tests/run`
//! and `.ci/run` do).

#[path = "../common/mod.rs"]
mod common;

mod accounting;
mod durability;
mod reload;
mod replicas;
mod shutdown;
mod upgrade;
