//! LMTP (RFC 2033), the hop from the queue into mailboxes. [`client`] is what the queue
//! runner delivers with; [`server`], [`session`] and [`deliver`] are the receiving end, run
//! by `postbay imap` next to the mailbox store (a classic MTA such as Postfix can deliver to
//! it too).

pub mod client;
pub mod deliver;
pub mod server;
pub mod session;

pub use server::serve_lmtp;
