//! Postbay's mailbox component: where mail comes to rest. The LMTP listener (RFC 2033)
//! receives messages from the SMTP queue (or any LMTP client, such as Postfix) and stores
//! them into mailboxes, answering for each recipient separately. IMAP and POP3 access
//! live beside it and share the same store.

pub mod deliver;
pub mod lmtp;

pub use lmtp::server::serve_lmtp;
