//! `{PLAIN}`/`{CLEARTEXT}`: kept for migrating old directories, never written.

use subtle::ConstantTimeEq;

/// Compares in time independent of where the first difference is (the length still shows).
pub(crate) fn verify(password: &[u8], expected: &[u8]) -> bool {
    password.ct_eq(expected).into()
}
