//! Reading a stored password: the `{SCHEME}` prefix, or the shape of a bare crypt string.

use base64::Engine;

use crate::PasswdError;

/// A stored value, classified by the algorithm that checks it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stored<'a> {
    /// A PHC string, `$argon2id$...` or `$argon2i$...`.
    Argon2(&'a str),
    /// `$2y$`, `$2b$` or `$2a$`.
    Bcrypt(&'a str),
    /// `$6$`.
    Sha512Crypt(&'a str),
    /// `$5$`.
    Sha256Crypt(&'a str),
    /// The password itself.
    Plain(Vec<u8>),
    /// `i,salt,StoredKey,ServerKey`, checked when it is used.
    ScramSha256(&'a str),
}

const BCRYPT_PREFIXES: [&str; 3] = ["$2y$", "$2b$", "$2a$"];

impl<'a> Stored<'a> {
    pub(crate) fn parse(stored: &'a str) -> Result<Stored<'a>, PasswdError> {
        // Dovecot reads a value without a closing brace as unprefixed, and so do we.
        let prefixed = stored
            .strip_prefix('{')
            .and_then(|rest| rest.split_once('}'));
        match prefixed {
            Some((scheme, body)) => Stored::with_scheme(scheme, body),
            None => Stored::bare(stored),
        }
    }

    fn with_scheme(scheme: &str, body: &'a str) -> Result<Stored<'a>, PasswdError> {
        let (name, encoding) = match scheme.split_once('.') {
            Some((name, encoding)) => (name, Some(encoding)),
            None => (scheme, None),
        };
        let name = name.to_ascii_uppercase();
        let mismatch = || PasswdError::SchemeMismatch {
            scheme: name.clone(),
        };
        let unknown = || PasswdError::UnknownScheme(scheme.to_string());

        if matches!(name.as_str(), "PLAIN" | "CLEARTEXT") {
            return decode_plain(body, encoding).map(Stored::Plain);
        }
        if encoding.is_some() {
            // An encoding suffix only means something for binary digests, which we lack.
            return Err(unknown());
        }
        match name.as_str() {
            "ARGON2ID" if body.starts_with("$argon2id$") => Ok(Stored::Argon2(body)),
            "ARGON2I" if body.starts_with("$argon2i$") => Ok(Stored::Argon2(body)),
            "BLF-CRYPT" if is_bcrypt(body) => Ok(Stored::Bcrypt(body)),
            "SHA512-CRYPT" if body.starts_with("$6$") => Ok(Stored::Sha512Crypt(body)),
            "SHA256-CRYPT" if body.starts_with("$5$") => Ok(Stored::Sha256Crypt(body)),
            "ARGON2ID" | "ARGON2I" | "BLF-CRYPT" | "SHA512-CRYPT" | "SHA256-CRYPT" => {
                Err(mismatch())
            }
            "CRYPT" => crypt(body).ok_or_else(|| unsupported_crypt(body)),
            "SCRAM-SHA-256" => Ok(Stored::ScramSha256(body)),
            _ => Err(unknown()),
        }
    }

    /// A value without prefix: Dovecot would hand it to crypt(3), which picks the algorithm
    /// from its `$id$`; we take the ids we implement, plus Argon2 PHC strings.
    fn bare(stored: &'a str) -> Result<Stored<'a>, PasswdError> {
        if stored.starts_with("$argon2id$") || stored.starts_with("$argon2i$") {
            return Ok(Stored::Argon2(stored));
        }
        crypt(stored).ok_or(PasswdError::Unrecognized)
    }
}

/// The crypt(3) formats we implement.
fn crypt(body: &str) -> Option<Stored<'_>> {
    if is_bcrypt(body) {
        Some(Stored::Bcrypt(body))
    } else if body.starts_with("$6$") {
        Some(Stored::Sha512Crypt(body))
    } else if body.starts_with("$5$") {
        Some(Stored::Sha256Crypt(body))
    } else {
        None
    }
}

fn is_bcrypt(body: &str) -> bool {
    BCRYPT_PREFIXES.iter().any(|p| body.starts_with(p))
}

fn unsupported_crypt(body: &str) -> PasswdError {
    let id = match body.strip_prefix('$').and_then(|rest| rest.split_once('$')) {
        Some((id, _)) => format!("CRYPT (${id}$)"),
        None => "CRYPT (traditional DES)".to_string(),
    };
    PasswdError::UnknownScheme(id)
}

/// `{PLAIN}`, `{PLAIN.B64}`/`{PLAIN.BASE64}` and `{PLAIN.HEX}`, as `doveadm pw` writes them.
fn decode_plain(body: &str, encoding: Option<&str>) -> Result<Vec<u8>, PasswdError> {
    let encoding = encoding.map(str::to_ascii_uppercase);
    match encoding.as_deref() {
        None => Ok(body.as_bytes().to_vec()),
        Some("B64" | "BASE64") => base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| PasswdError::malformed("PLAIN", e)),
        Some("HEX") => {
            decode_hex(body).ok_or_else(|| PasswdError::malformed("PLAIN", "invalid hex"))
        }
        Some(other) => Err(PasswdError::UnknownScheme(format!("PLAIN.{other}"))),
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_prefixed_values() {
        let table: &[(&str, Stored)] = &[
            ("{ARGON2ID}$argon2id$x", Stored::Argon2("$argon2id$x")),
            ("{argon2i}$argon2i$x", Stored::Argon2("$argon2i$x")),
            ("{BLF-CRYPT}$2y$05$x", Stored::Bcrypt("$2y$05$x")),
            ("{BLF-CRYPT}$2b$05$x", Stored::Bcrypt("$2b$05$x")),
            ("{SHA512-CRYPT}$6$x", Stored::Sha512Crypt("$6$x")),
            ("{Sha256-Crypt}$5$x", Stored::Sha256Crypt("$5$x")),
            ("{CRYPT}$6$x", Stored::Sha512Crypt("$6$x")),
            ("{CRYPT}$5$x", Stored::Sha256Crypt("$5$x")),
            ("{CRYPT}$2y$05$x", Stored::Bcrypt("$2y$05$x")),
            ("{CRYPT}$2b$05$x", Stored::Bcrypt("$2b$05$x")),
            ("{PLAIN}secret", Stored::Plain(b"secret".to_vec())),
            ("{CLEARTEXT}", Stored::Plain(Vec::new())),
            ("{PLAIN}{odd}", Stored::Plain(b"{odd}".to_vec())),
            ("{PLAIN.B64}c2VjcmV0", Stored::Plain(b"secret".to_vec())),
            ("{plain.base64}c2VjcmV0", Stored::Plain(b"secret".to_vec())),
            ("{PLAIN.HEX}736563726574", Stored::Plain(b"secret".to_vec())),
            ("$argon2id$x", Stored::Argon2("$argon2id$x")),
            ("$argon2i$x", Stored::Argon2("$argon2i$x")),
            ("$2y$05$x", Stored::Bcrypt("$2y$05$x")),
            ("$6$x", Stored::Sha512Crypt("$6$x")),
            ("$5$x", Stored::Sha256Crypt("$5$x")),
            (
                "{SCRAM-SHA-256}4096,a,b,c",
                Stored::ScramSha256("4096,a,b,c"),
            ),
            ("{scram-sha-256}x", Stored::ScramSha256("x")),
        ];
        for (input, want) in table {
            assert_eq!(Stored::parse(input).as_ref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        let unknown = |s: &str| PasswdError::UnknownScheme(s.into());
        let mismatch = |s: &str| PasswdError::SchemeMismatch { scheme: s.into() };
        let table: &[(&str, PasswdError)] = &[
            ("{MD5-CRYPT}$1$abc$def", unknown("MD5-CRYPT")),
            ("{SSHA}abc", unknown("SSHA")),
            ("{SCRAM-SHA-1}4096,a,b,c", unknown("SCRAM-SHA-1")),
            (
                "{SCRAM-SHA-256.HEX}4096,a,b,c",
                unknown("SCRAM-SHA-256.HEX"),
            ),
            ("{SHA512-CRYPT.HEX}$6$x", unknown("SHA512-CRYPT.HEX")),
            ("{PLAIN.ROT13}frperg", unknown("PLAIN.ROT13")),
            ("{CRYPT}$1$abc$def", unknown("CRYPT ($1$)")),
            ("{CRYPT}abJnggxhB/yJU", unknown("CRYPT (traditional DES)")),
            ("{CRYPT}$argon2id$x", unknown("CRYPT ($argon2id$)")),
            ("{BLF-CRYPT}$6$x", mismatch("BLF-CRYPT")),
            ("{BLF-CRYPT}$2x$05$x", mismatch("BLF-CRYPT")),
            ("{SHA512-CRYPT}$5$x", mismatch("SHA512-CRYPT")),
            ("{ARGON2ID}$argon2i$x", mismatch("ARGON2ID")),
            ("{ARGON2I}$argon2id$x", mismatch("ARGON2I")),
            ("secret", PasswdError::Unrecognized),
            ("", PasswdError::Unrecognized),
            ("{PLAIN secret", PasswdError::Unrecognized),
            ("$1$abc$def", PasswdError::Unrecognized),
        ];
        for (input, want) in table {
            assert_eq!(Stored::parse(input).as_ref(), Err(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_plain_encodings() {
        for input in ["{PLAIN.B64}***", "{PLAIN.HEX}7", "{PLAIN.HEX}zz"] {
            assert!(
                matches!(Stored::parse(input), Err(PasswdError::Malformed { .. })),
                "{input}"
            );
        }
    }
}
