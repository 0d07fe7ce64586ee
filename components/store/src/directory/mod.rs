//! The directory: which domains are local, which mailboxes and aliases exist, which DKIM keys
//! sign for a domain. Rows are shaped so Postfix's and Dovecot's SQL lookups can read them too
//! (docs/classic-stack.md).

mod aliases;
mod dkim;
mod domain_filter;
mod domains;
mod mailboxes;
mod resolve;

pub use dkim::DkimKeyRow;
pub use domain_filter::MAX_DOMAIN_FILTER;
pub use domains::DomainRow;
pub(crate) use mailboxes::mailbox_from_row;
pub use mailboxes::{MailboxRow, MailboxSpec, Sending};
pub use resolve::{Recipient, Resolution};

/// Splits `local@domain` at the last `@` and lowercases the domain.
pub fn split_address(address: &str) -> Option<(&str, String)> {
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some((local, domain.to_ascii_lowercase()))
}

/// The canonical form used as key everywhere: local part and domain lowercased.
pub fn canonical_address(address: &str) -> String {
    address.trim().to_lowercase()
}
