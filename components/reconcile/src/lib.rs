//! The one reconcile core: a desired Postbay resource (plus the Secret bytes it refers to) in,
//! directory rows out. `postbay apply` and the operator both call it, so a YAML file means the
//! same thing whether it is applied locally or to a cluster.
//!
//! Every row records the `namespace/name` of the resource that declared it ([`Owner`]). A
//! resource never touches a row another owner holds: it gets [`Blocked::Conflict`] back and
//! nothing changes. Deletion only removes rows the caller owns, and "already gone" is success.

pub mod alias;
pub mod dkim;
pub mod dns;
pub mod domain;
pub mod key_files;
pub mod keys;
pub mod mailbox;
mod outcome;
mod owner;
pub mod password;

pub use dns::MailHosts;
pub use keys::{DkimPrivateKey, KeyError};
pub use outcome::{Blocked, Change, Outcome};
pub use owner::Owner;

/// Why a reconcile step failed. Blocked states (conflicts, missing domains) are not errors:
/// they are [`Outcome::Blocked`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[source] postbay_store::Error),
    /// Raw queries for what the store's API does not offer (alias ownership).
    #[error("database: {0}")]
    Database(#[source] sqlx::Error),
    #[error("password: {0}")]
    Password(#[source] postbay_passwd::PasswdError),
    #[error("{0}")]
    InvalidPassword(String),
    #[error("spec.quota: {0}")]
    Quota(#[source] postbay_api::QuotaError),
    #[error("spec.spamFilter: {0}")]
    SpamFilter(#[source] serde_json::Error),
    #[error("spec.spamFilter: {0} bytes as JSON, more than the {max} the store keeps", max = postbay_store::directory::MAX_DOMAIN_FILTER)]
    SpamFilterTooLarge(usize),
    #[error("spec.quota: {0} bytes is more than the store can hold")]
    QuotaTooLarge(u64),
    #[error("DKIM key: {0}")]
    Key(#[source] KeyError),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether retrying may help (the database or disk), as opposed to a resource that must
    /// be corrected (a bad password value, quota or key), which waits for a change instead.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Store(_) | Error::Database(_) | Error::Io { .. }
        )
    }
}

impl From<postbay_store::Error> for Error {
    fn from(e: postbay_store::Error) -> Self {
        Error::Store(e)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
