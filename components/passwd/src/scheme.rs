//! The schemes Postbay writes, named as Dovecot names them.

use std::fmt;
use std::str::FromStr;

use crate::PasswdError;

/// A scheme [`hash`](crate::hash) can produce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Argon2id, memory-hard; Dovecot's recommendation and ours.
    #[default]
    Argon2id,
    /// bcrypt (`$2y$`), for installations whose other readers lack Argon2.
    BlfCrypt,
    /// SHA-512 crypt (`$6$`), what glibc's crypt(3) and most existing passwd-files use.
    Sha512Crypt,
    /// SCRAM-SHA-256 verifier (RFC 7677): enables AUTH SCRAM-SHA-256 and still checks
    /// plaintext logins; weaker against offline guessing than the others (PBKDF2).
    ScramSha256,
}

impl Scheme {
    /// Every scheme, in order of preference.
    pub const ALL: [Scheme; 4] = [
        Scheme::Argon2id,
        Scheme::BlfCrypt,
        Scheme::Sha512Crypt,
        Scheme::ScramSha256,
    ];

    /// Dovecot's name, as inside the `{...}` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "ARGON2ID",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::ScramSha256 => crate::scram::SCHEME_NAME,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Case-insensitive, as Dovecot reads scheme names.
impl FromStr for Scheme {
    type Err = PasswdError;

    fn from_str(s: &str) -> Result<Scheme, PasswdError> {
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| PasswdError::UnknownScheme(s.to_string()))
    }
}
