//! Errors of hashing and verification. None of them carries a password or a hash, so they
//! are safe to log.

/// Why a password could not be hashed or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswdError {
    /// A `{SCHEME}` prefix we do not implement (e.g. `{MD5-CRYPT}`, `{SSHA}`).
    #[error("unsupported password scheme {0:?}")]
    UnknownScheme(String),
    /// No `{SCHEME}` prefix, and not a bare `$argon2...$`, `$2y$`/`$2b$`/`$2a$`, `$6$` or `$5$`
    /// hash either.
    #[error("stored password has no {{SCHEME}} prefix and is not a recognised crypt hash")]
    Unrecognized,
    /// The value after the prefix is not the kind of hash the prefix names.
    #[error("stored {scheme} value is not a {scheme} hash")]
    SchemeMismatch { scheme: String },
    /// The right kind of hash, but damaged (bad base64, bad parameters, wrong length).
    #[error("stored {scheme} hash is malformed: {reason}")]
    Malformed {
        scheme: &'static str,
        reason: String,
    },
    /// Hashing parameters out of the scheme's range.
    #[error("invalid {scheme} parameters: {reason}")]
    Params {
        scheme: &'static str,
        reason: String,
    },
}

impl PasswdError {
    pub(crate) fn malformed(scheme: &'static str, reason: impl ToString) -> Self {
        PasswdError::Malformed {
            scheme,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn params(scheme: &'static str, reason: impl ToString) -> Self {
        PasswdError::Params {
            scheme,
            reason: reason.to_string(),
        }
    }
}
