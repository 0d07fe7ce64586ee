//! `{ARGON2ID}` and `{ARGON2I}`: PHC strings as libsodium (and so Dovecot) writes them.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Version};
use rand::RngCore;

use crate::{Params, PasswdError};

/// libsodium's salt and output sizes, which Dovecot inherits.
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

pub(crate) fn hash(password: &[u8], params: &Params) -> Result<String, PasswdError> {
    let costs = argon2::Params::new(
        params.argon2_memory_kib,
        params.argon2_iterations,
        params.argon2_parallelism,
        Some(OUTPUT_LEN),
    )
    .map_err(|e| PasswdError::params("ARGON2ID", e))?;
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswdError::params("ARGON2ID", e))?;
    let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, costs)
        .hash_password(password, &salt)
        .map_err(|e| PasswdError::params("ARGON2ID", e))?;
    Ok(phc.to_string())
}

/// Verifies with the algorithm, version and costs the PHC string names.
pub(crate) fn verify(password: &[u8], phc: &str) -> Result<bool, PasswdError> {
    let parsed = PasswordHash::new(phc).map_err(|e| PasswdError::malformed("ARGON2", e))?;
    // `Argon2::default()` only supplies the machinery; verify_password re-derives with the
    // parameters of `parsed` and compares in constant time.
    match Argon2::default().verify_password(password, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(PasswdError::malformed("ARGON2", e)),
    }
}
