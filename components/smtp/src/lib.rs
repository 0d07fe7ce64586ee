//! Postbay's SMTP family: everything that speaks SMTP or LMTP, one folder per step of a
//! message's way.
//!
//! * [`proto`]: the protocol without I/O decisions: command lines, DATA/BDAT content and
//!   dot-stuffing, replies. Shared by every role below.
//! * [`inbound`]: the SMTP server session, MX on 25 and submission on 587/465 (AUTH,
//!   sender rules, DKIM signing): who may send what to whom.
//! * [`queue`]: the durable queue between `250 OK` and delivery, and its runner.
//! * [`lmtp`]: the hop into mailboxes: the LMTP client the queue runner uses, and the LMTP
//!   server (RFC 2033) that stores each message into the mailbox store.
//! * [`server`]: the SMTP listening sockets.

pub mod config;
pub mod fuzzing;
pub mod inbound;
pub mod lmtp;
pub mod outbound;
pub mod proto;
pub mod queue;
pub mod server;

pub use config::SmtpConfig;

/// What every session of one server shares.
pub struct ServerContext {
    pub config: SmtpConfig,
    pub store: postbay_store::Store,
    pub queue: queue::Queue,
    /// The one login module (AUTH on the submission ports).
    pub auth: postbay_auth::Authenticator,
    /// Signs submitted mail with the `From:` domain's DKIM keys.
    pub signer: postbay_dkim::Signer,
    /// Per-user sending counts for the hourly limits.
    pub sends: inbound::rate::SendCounter,
}

pub(crate) fn now_unix() -> i64 {
    postbay_store::now_unix()
}
