//! Postbay's IMAP server.
