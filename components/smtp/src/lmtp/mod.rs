//! LMTP (RFC 2033), the hop from the queue into mailboxes. [`client`] is what the queue
//! runner delivers with; [`server`], [`session`] and [`deliver`] are the receiving end, run
//! by `postbay imap` next to the mailbox store (a classic MTA such as Postfix can deliver to
//! it too).

pub mod client;
pub mod deliver;
pub mod server;
pub mod session;

pub use server::serve_lmtp;

/// LHLO extension and MAIL parameter (`XTRACE=<traceparent>`, W3C Trace Context) that
/// carries a message's trace from the queue into the mailbox role. Postbay's own; the
/// client sends it only to a server that advertises it.
pub const XTRACE: &str = "XTRACE";
