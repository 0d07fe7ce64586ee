//! Cost parameters for hashing. Verification always takes them from the stored hash.

/// Costs used by [`hash_with`](crate::hash_with). The default is what Dovecot 2.3's
/// `doveadm pw` writes, so hashes look the same whichever tool made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Argon2 memory in KiB (`m=`); Dovecot: 65536.
    pub argon2_memory_kib: u32,
    /// Argon2 passes (`t=`); Dovecot: 3.
    pub argon2_iterations: u32,
    /// Argon2 lanes (`p=`); Dovecot: 1.
    pub argon2_parallelism: u32,
    /// bcrypt cost, 4..=31; Dovecot: 5. Low by today's standards: raise it (10-12) where
    /// logins are rare enough to afford it.
    pub bcrypt_cost: u32,
    /// SHA-crypt rounds, 1000..=999999999; 5000 is glibc's default and is written without a
    /// `rounds=` field.
    pub sha_crypt_rounds: u32,
    /// SCRAM-SHA-256 PBKDF2 iterations, 4096..=10000000; Dovecot: 4096, the RFC 7677 floor.
    pub scram_iterations: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            argon2_memory_kib: 65536,
            argon2_iterations: 3,
            argon2_parallelism: 1,
            bcrypt_cost: 5,
            sha_crypt_rounds: 5000,
            scram_iterations: crate::scram::DEFAULT_ITERATIONS,
        }
    }
}
