//! Postbay's SMTP server. In the MX role (port 25) it accepts mail for local domains only,
//! writes each accepted message durably to the queue before replying 250, and the queue
//! runner delivers it to the mailbox component over LMTP.
//!
//! Layout: [`wire`] and [`receive`] move bytes (shared with the LMTP server), [`session`]
//! speaks the protocol, [`queue`] keeps messages safe, [`lmtp_client`] hands them on,
//! [`server`] owns the listening sockets.

pub mod config;
pub mod fuzzing;
pub mod lmtp_client;
pub mod queue;
pub mod receive;
pub mod received;
pub mod reply;
pub mod server;
pub mod session;
pub mod wire;

pub use config::SmtpConfig;

/// What every session of one server shares.
pub struct ServerContext {
    pub config: SmtpConfig,
    pub store: postbay_store::Store,
    pub queue: queue::Queue,
}

pub(crate) fn now_unix() -> i64 {
    postbay_store::now_unix()
}
