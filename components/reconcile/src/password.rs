//! Turning a Secret's password value into what the `mailboxes` row stores.
//!
//! A Secret may hold the cleartext, or a Dovecot-style hash (`{ARGON2ID}$argon2id$...`,
//! or a bare `$6$...` crypt string) so that the cleartext never has to exist in the cluster.
//! Cleartext is hashed as `{ARGON2ID}`; an existing row's hash is kept while the cleartext
//! still verifies against it, because a fresh salt on every reconcile would rewrite the row
//! each time and make "unchanged" impossible to report.

use std::fmt;

use postbay_passwd::{PasswdError, Scheme};

use crate::{Error, Result};

/// A password value as read from a Secret, cleartext redacted from `Debug`.
pub enum SecretPassword<'a> {
    /// Stored as given.
    Hash(String),
    /// Hashed before it is stored.
    Cleartext(&'a [u8]),
}

impl fmt::Debug for SecretPassword<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretPassword::Hash(_) => f.write_str("Hash(..)"),
            SecretPassword::Cleartext(_) => f.write_str("Cleartext(..)"),
        }
    }
}

/// Reads a Secret value. Trailing CR/LF is dropped: `kubectl create secret --from-file` and
/// editors leave one, and nobody means a newline to be part of a password.
///
/// A value with a `{SCHEME}` prefix must be a hash we can check (an unknown scheme is refused
/// rather than taken for a cleartext password that happens to start with a brace); a value
/// starting with `$` is a hash when it parses as one, cleartext otherwise.
pub fn classify(value: &[u8]) -> Result<SecretPassword<'_>> {
    let value = trim_line_end(value);
    if value.is_empty() {
        return Err(Error::InvalidPassword("the password is empty".into()));
    }
    let text = std::str::from_utf8(value).ok();
    let prefixed = text.is_some_and(|t| t.starts_with('{') && t.contains('}'));
    let crypt_like = text.is_some_and(|t| t.starts_with('$'));
    if let (true, Some(text)) = (prefixed || crypt_like, text) {
        // Verifying an empty password only parses the hash (and fails to match).
        match postbay_passwd::verify(b"", text) {
            Ok(_) => return Ok(SecretPassword::Hash(text.to_string())),
            Err(e) if prefixed => return Err(Error::Password(e)),
            Err(PasswdError::Unrecognized) | Err(_) => {}
        }
    }
    Ok(SecretPassword::Cleartext(value))
}

/// The `password_hash` to store for `value`, keeping `existing` when it still matches.
pub fn stored_hash(value: &[u8], existing: Option<&str>) -> Result<String> {
    match classify(value)? {
        SecretPassword::Hash(hash) => Ok(hash),
        SecretPassword::Cleartext(clear) => {
            let still_valid =
                existing.is_some_and(|h| postbay_passwd::verify(clear, h).unwrap_or(false));
            match existing {
                Some(h) if still_valid => Ok(h.to_string()),
                _ => postbay_passwd::hash(clear, Scheme::Argon2id).map_err(Error::Password),
            }
        }
    }
}

/// The SCRAM-SHA-256 credential to store next to `password_hash` (RFC 7677; Dovecot's
/// `{SCRAM-SHA-256}` form), so SCRAM logins work while the main hash stays slow Argon2id.
/// Only a cleartext Secret can give one (a hash cannot be turned into another), unless the
/// Secret's hash is itself SCRAM. `existing` is kept while the cleartext still fits it, for
/// the same reason as in [`stored_hash`].
pub fn stored_scram(
    value: &[u8],
    password_hash: &str,
    existing: Option<&str>,
) -> Result<Option<String>> {
    use postbay_passwd::scram::{ScramCredential, DEFAULT_ITERATIONS};
    match classify(value)? {
        SecretPassword::Hash(hash) => Ok(ScramCredential::parse(&hash)
            .ok()
            .map(|_| hash)
            .filter(|h| h == password_hash)),
        SecretPassword::Cleartext(clear) => {
            if let Some(kept) = existing
                .and_then(|e| ScramCredential::parse(e).ok())
                .filter(|c| c.verify_password(clear))
            {
                return Ok(Some(kept.to_string()));
            }
            let credential =
                ScramCredential::derive(clear, DEFAULT_ITERATIONS).map_err(Error::Password)?;
            Ok(Some(credential.to_string()))
        }
    }
}

fn trim_line_end(mut value: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = value {
        value = rest;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleartext_is_hashed_as_argon2id_and_kept_while_it_verifies() {
        let first = stored_hash(b"hunter2\n", None).unwrap();
        assert!(first.starts_with("{ARGON2ID}$argon2id$"), "{first}");
        assert!(postbay_passwd::verify(b"hunter2", &first).unwrap());
        assert_eq!(stored_hash(b"hunter2", Some(&first)).unwrap(), first);
        let changed = stored_hash(b"hunter3", Some(&first)).unwrap();
        assert_ne!(changed, first);
        assert!(postbay_passwd::verify(b"hunter3", &changed).unwrap());
    }

    #[test]
    fn hashes_are_stored_as_given() {
        let hash = postbay_passwd::hash(b"pw", Scheme::Sha512Crypt).unwrap();
        assert_eq!(stored_hash(hash.as_bytes(), None).unwrap(), hash);
        let bare = hash.trim_start_matches("{SHA512-CRYPT}");
        assert_eq!(stored_hash(bare.as_bytes(), None).unwrap(), bare);
        assert_eq!(stored_hash(b"{PLAIN}pw\n", None).unwrap(), "{PLAIN}pw");
    }

    #[test]
    fn refuses_empty_and_unknown_schemes_but_not_dollar_passwords() {
        assert!(matches!(classify(b"\n"), Err(Error::InvalidPassword(_))));
        assert!(matches!(
            classify(b"{MD5-CRYPT}$1$abc"),
            Err(Error::Password(_))
        ));
        assert!(matches!(
            classify(b"$ecret"),
            Ok(SecretPassword::Cleartext(b"$ecret"))
        ));
        assert!(matches!(
            classify(b"{braces"),
            Ok(SecretPassword::Cleartext(_))
        ));
    }

    #[test]
    fn scram_credential_comes_from_cleartext_and_is_kept_while_it_fits() {
        use postbay_passwd::scram::ScramCredential;
        let first = stored_scram(b"pencil\n", "{ARGON2ID}x", None)
            .unwrap()
            .expect("derived");
        let parsed = ScramCredential::parse(&first).unwrap();
        assert!(
            parsed.verify_password(b"pencil"),
            "the trailing newline is not part of it"
        );
        assert_eq!(parsed.iterations(), 4096);
        // Unchanged password: the same credential (no new salt, no row rewrite).
        assert_eq!(
            stored_scram(b"pencil", "{ARGON2ID}x", Some(&first)).unwrap(),
            Some(first.clone())
        );
        // Changed password: a new one.
        let changed = stored_scram(b"other", "{ARGON2ID}x", Some(&first))
            .unwrap()
            .expect("derived");
        assert_ne!(changed, first);
        assert!(ScramCredential::parse(&changed)
            .unwrap()
            .verify_password(b"other"));
        // A Secret holding a hash gives none, unless it is itself the SCRAM credential.
        let hash = postbay_passwd::hash(b"pencil", Scheme::Argon2id).unwrap();
        assert_eq!(stored_scram(hash.as_bytes(), &hash, None).unwrap(), None);
        assert_eq!(
            stored_scram(first.as_bytes(), &first, None).unwrap(),
            Some(first.clone())
        );
    }
}
