//! SASL for POP3 (RFC 5034): decoding client responses and the PLAIN mechanism (RFC 4616),
//! without I/O.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};

use crate::command::Secret;

/// Standard alphabet; padding optional, since some clients strip it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The mechanisms we offer. PLAIN only: the store keeps password hashes, so challenge-response
/// mechanisms that need the cleartext (CRAM-MD5, APOP) or per-mechanism keys (SCRAM) cannot
/// be served.
pub const MECHANISMS: &[&str] = &["PLAIN"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// RFC 5034 §4: a line of `*` aborts the exchange.
    #[error("authentication cancelled by the client")]
    Cancelled,
    #[error("response is not valid base64")]
    Base64,
    #[error("malformed PLAIN message")]
    Malformed,
}

/// PLAIN credentials (RFC 4616 §2). The authorization identity, if any, must equal the
/// authentication identity: we do not let one user act as another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    pub authzid: Option<String>,
    pub authcid: String,
    pub password: Secret,
}

/// Decodes one client response line (initial response or continuation), RFC 5034 §4:
/// `*` cancels, `=` is an empty initial response, anything else is base64.
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    match line {
        b"*" => Err(SaslError::Cancelled),
        b"=" => Ok(Vec::new()),
        text => BASE64.decode(text).map_err(|_| SaslError::Base64),
    }
}

/// Splits a decoded PLAIN message `[authzid] NUL authcid NUL passwd`.
pub fn parse_plain(message: &[u8]) -> Result<PlainCredentials, SaslError> {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    let authcid = identity(authcid)?;
    let authzid = match authzid {
        [] => None,
        z => Some(identity(z)?),
    };
    Ok(PlainCredentials {
        authzid,
        authcid,
        password: Secret::new(password),
    })
}

/// UTF-8 without control characters: identities end up in logs and directory lookups.
fn identity(bytes: &[u8]) -> Result<String, SaslError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SaslError::Malformed)?;
    if text.chars().any(char::is_control) {
        return Err(SaslError::Malformed);
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case = (&'static [u8], Result<&'static [u8], SaslError>);

    #[test]
    fn responses() {
        let cases: &[Case] = &[
            (b"*", Err(SaslError::Cancelled)),
            (b"=", Ok(b"")),
            (b"", Ok(b"")),
            (b"AGFsaWNlAHNlY3JldA==", Ok(b"\0alice\0secret")),
            (b"AGFsaWNlAHNlY3JldA", Ok(b"\0alice\0secret")),
            (b"not base64!", Err(SaslError::Base64)),
            (b"AGFsaWNlAHNlY3JldA===", Err(SaslError::Base64)),
            (b"AGFsa WNl", Err(SaslError::Base64)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                decode_response(input),
                expected.clone().map(<[u8]>::to_vec),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn plain_messages() {
        let ok = |z: Option<&str>, c: &str, p: &str| {
            Ok(PlainCredentials {
                authzid: z.map(str::to_string),
                authcid: c.to_string(),
                password: Secret::new(p.as_bytes()),
            })
        };
        let cases: &[(&[u8], Result<PlainCredentials, SaslError>)] = &[
            (b"\0alice\0secret", ok(None, "alice", "secret")),
            (
                b"alice\0alice\0two words",
                ok(Some("alice"), "alice", "two words"),
            ),
            (b"\0alice\0", Err(SaslError::Malformed)),
            (b"\0\0secret", Err(SaslError::Malformed)),
            (b"alice\0secret", Err(SaslError::Malformed)),
            (b"a\0b\0c\0d", Err(SaslError::Malformed)),
            (b"\0\xff\0secret", Err(SaslError::Malformed)),
            (b"\0ali\nce\0secret", Err(SaslError::Malformed)),
            (b"x\ty\0alice\0secret", Err(SaslError::Malformed)),
            (b"", Err(SaslError::Malformed)),
        ];
        for (input, expected) in cases {
            assert_eq!(&parse_plain(input), expected, "input {input:?}");
        }
    }
}
