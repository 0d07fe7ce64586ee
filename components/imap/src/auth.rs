//! Who a session is logged in as. Password checks, brute-force throttling and the SASL
//! decoders are postbay-auth's, shared with POP3 and SMTP submission.

/// The authenticated account of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub mailbox_id: i64,
    pub address: String,
    /// The mailbox's blob directory, where APPENDs to the selected folder write.
    pub home: String,
}

impl From<postbay_store::MailboxRow> for User {
    fn from(mailbox: postbay_store::MailboxRow) -> User {
        User {
            mailbox_id: mailbox.id,
            address: mailbox.address,
            home: mailbox.home,
        }
    }
}
