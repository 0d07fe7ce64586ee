//! Dovecot-compatible password hashes.
//!
//! Postbay stores what Dovecot's `doveadm pw` prints, `{SCHEME}` prefix included, so that
//! passwd-files and SQL tables can move between Dovecot and Postbay in either direction, and
//! so that a Secret may hold a hash instead of a cleartext password.
//!
//! [`hash`] writes the three schemes worth choosing today, plus `{SCRAM-SHA-256}` for users
//! who log in with the SCRAM mechanism (see [`scram`]); [`verify`] also reads the older and
//! migration-only forms Dovecot installations carry (`{ARGON2I}`, `{SHA256-CRYPT}`, `{CRYPT}`,
//! `{PLAIN}`, bare `$6$...` strings).
//!
//! ```
//! use postbay_passwd::{hash, verify, Scheme};
//!
//! let stored = hash(b"secret", Scheme::Sha512Crypt)?;
//! assert!(stored.starts_with("{SHA512-CRYPT}$6$"));
//! assert!(verify(b"secret", &stored)?);
//! assert!(!verify(b"guess", &stored)?);
//! // Written by `doveadm pw -s BLF-CRYPT -p secret`:
//! assert!(verify(b"secret", "{BLF-CRYPT}$2y$05$sw6oK9yeWd.9iDB/DdzzvuBGcXz6ObIG4CRIDJNz8M5EatelwoF5a")?);
//! # Ok::<(), postbay_passwd::PasswdError>(())
//! ```

mod argon;
mod blf;
mod error;
mod params;
mod plain;
mod scheme;
pub mod scram;
mod shacrypt;
mod stored;

pub use argon::Scratch;
pub use error::PasswdError;
pub use params::Params;
pub use scheme::Scheme;

use stored::Stored;

/// Hashes `password` with Dovecot's default parameters for `scheme`.
pub fn hash(password: &[u8], scheme: Scheme) -> Result<String, PasswdError> {
    hash_with(password, scheme, &Params::default())
}

/// Hashes `password` with explicit parameters, returning `{SCHEME}...` as Dovecot stores it.
pub fn hash_with(password: &[u8], scheme: Scheme, params: &Params) -> Result<String, PasswdError> {
    let body = match scheme {
        Scheme::Argon2id => argon::hash(password, params)?,
        Scheme::BlfCrypt => blf::hash(password, params.bcrypt_cost)?,
        Scheme::Sha512Crypt => shacrypt::hash512(password, params.sha_crypt_rounds)?,
        Scheme::ScramSha256 => {
            scram::ScramCredential::derive(password, params.scram_iterations)?.body()
        }
    };
    Ok(format!("{{{scheme}}}{body}"))
}

/// Checks `password` against a stored value. `Ok(false)` means a well-formed hash that does not
/// match; a value we cannot interpret is an error, never a silent `false`, so that a broken
/// directory entry is noticed rather than looking like a wrong password.
///
/// Trailing CR/LF on `stored` is ignored: Secrets made with `--from-file` usually carry one.
pub fn verify(password: &[u8], stored: &str) -> Result<bool, PasswdError> {
    verify_in(password, stored, &mut Scratch::default())
}

/// [`verify`] reusing `scratch` for Argon2's memory, so that a pool of hashing threads does
/// not map and fault in 64 MiB afresh for every login.
pub fn verify_in(
    password: &[u8],
    stored: &str,
    scratch: &mut Scratch,
) -> Result<bool, PasswdError> {
    match Stored::parse(stored.trim_end_matches(['\r', '\n']))? {
        Stored::Argon2(phc) => argon::verify_in(password, phc, scratch),
        Stored::Bcrypt(crypt) => blf::verify(password, crypt),
        Stored::Sha512Crypt(crypt) => shacrypt::verify512(password, crypt),
        Stored::Sha256Crypt(crypt) => shacrypt::verify256(password, crypt),
        Stored::Plain(expected) => Ok(plain::verify(password, &expected)),
        Stored::ScramSha256(body) => {
            Ok(scram::ScramCredential::parse_body(body)?.verify_password(password))
        }
    }
}
