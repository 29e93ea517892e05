//! The HTTP plumbing under every app (the gateway, the admin API, the mock): the client
//! listener and its connections, the lifecycle of one request on a session, and the drain
//! that lets a shutdown wait for the requests in flight. Nothing here knows what a request
//! asks for.

pub mod drain;
pub mod listener;
pub mod session;
