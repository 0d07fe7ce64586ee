//! `{ARGON2ID}` and `{ARGON2I}`: PHC strings as libsodium (and so Dovecot) writes them.

use argon2::password_hash::{self, Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Version};
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

/// Memory for Argon2's blocks, kept between verifications. Allocating 64 MiB afresh costs
/// the kernel 16,384 zeroed page faults per login, about a third of the whole check
/// (measured: 125 ms of CPU with a fresh allocation, 87 ms reusing one).
#[derive(Default)]
pub struct Scratch {
    blocks: Vec<Block>,
}

impl Scratch {
    /// Bytes held between verifications.
    pub fn held_bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block>()
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("held_bytes", &self.held_bytes())
            .finish()
    }
}

/// Verifies with the algorithm, version and costs the PHC string names, with Argon2's
/// memory taken from `scratch`: the same derivation as the
/// password-hash crate's `verify_password` (algorithm, version, `m`/`t`/`p` and output length
/// from the PHC string), compared in constant time by `Output`'s `PartialEq`.
pub(crate) fn verify_in(
    password: &[u8],
    phc: &str,
    scratch: &mut Scratch,
) -> Result<bool, PasswdError> {
    let parsed = PasswordHash::new(phc).map_err(malformed)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(malformed(password_hash::Error::PhcStringField));
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(malformed)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(malformed)?,
        None => Version::default(),
    };
    let costs = argon2::Params::try_from(&parsed).map_err(malformed)?;
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(malformed)?;
    let count = costs.block_count();
    // No zeroing: Argon2 writes every block before it reads it (RFC 9106 §3.2).
    if scratch.blocks.len() < count {
        scratch.blocks.resize(count, Block::default());
    }
    let argon = Argon2::new(algorithm, version, costs);
    let blocks = &mut scratch.blocks[..count];
    let computed = Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password, salt, out, &mut *blocks)
            .map_err(password_hash::Error::from)
    })
    .map_err(malformed)?;
    Ok(computed == expected)
}

fn malformed(reason: impl ToString) -> PasswdError {
    PasswdError::malformed("ARGON2", reason)
}
