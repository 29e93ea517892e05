//! What Junction keeps for its clients beyond a request: today the Responses API's stored
//! responses ([`responses`]), in an embedded SQLite file beside the ledger.

pub mod responses;
pub mod sql;
