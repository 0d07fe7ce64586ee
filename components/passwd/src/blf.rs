//! `{BLF-CRYPT}`: bcrypt, written as `$2y$` as Dovecot (via libxcrypt) does.

use bcrypt::Version;
use rand::RngCore;

use crate::PasswdError;

pub(crate) fn hash(password: &[u8], cost: u32) -> Result<String, PasswdError> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    // Like crypt(3), passwords beyond 72 bytes are truncated rather than refused, so that
    // hashes and verification agree with Dovecot's.
    let parts = bcrypt::hash_with_salt(password, cost, salt)
        .map_err(|e| PasswdError::params("BLF-CRYPT", e))?;
    Ok(parts.format_for_version(Version::TwoY))
}

/// Verifies `$2y$`, `$2b$` and `$2a$` hashes (the caller has checked the prefix).
pub(crate) fn verify(password: &[u8], crypt: &str) -> Result<bool, PasswdError> {
    bcrypt::verify(password, crypt).map_err(|e| PasswdError::malformed("BLF-CRYPT", e))
}
