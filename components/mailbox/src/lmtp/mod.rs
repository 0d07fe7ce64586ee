//! The LMTP listener: the session and the accept loop.

pub mod server;
pub mod session;
