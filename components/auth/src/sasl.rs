//! SASL mechanisms without I/O: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), and
//! the base64 client responses of line-based protocols (RFC 5034 §4, RFC 4954 §4). The
//! protocol moves the bytes; SCRAM-SHA-256 runs through [`crate::Authenticator::scram_start`].

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};

/// Standard alphabet; padding optional, since some clients strip it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Longest decoded client response accepted: a PLAIN message with a 1 KiB password and two
/// 1 KiB identities still fits, and nothing legitimate comes close.
pub const MAX_RESPONSE: usize = 4096;

/// The LOGIN mechanism's first challenge, and its base64 form as sent on the wire.
pub const LOGIN_USERNAME_PROMPT: &[u8] = b"Username:";
pub const LOGIN_USERNAME_PROMPT_B64: &str = "VXNlcm5hbWU6";
/// The LOGIN mechanism's second challenge, and its base64 form.
pub const LOGIN_PASSWORD_PROMPT: &[u8] = b"Password:";
pub const LOGIN_PASSWORD_PROMPT_B64: &str = "UGFzc3dvcmQ6";

/// Why a client's SASL response was refused. Carries no credential, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// RFC 5034 §4, RFC 4954 §4: a line of `*` aborts the exchange.
    #[error("authentication cancelled by the client")]
    Cancelled,
    #[error("response is not valid base64")]
    Base64,
    #[error("response longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error("malformed PLAIN message")]
    Malformed,
    /// PLAIN with an authorization identity other than the authentication identity: one
    /// user may not act as another (no proxy login).
    #[error("authorization identity differs from the authentication identity")]
    AuthzidNotPermitted,
    /// A LOGIN user name that is not UTF-8 or holds control characters.
    #[error("malformed user name")]
    BadUsername,
}

/// A password on its way to the check: kept out of `Debug` output and so out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Password {
        Password(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Decodes base64 of at most `max_decoded` bytes, checking the length before decoding so a
/// hostile line costs nothing.
pub fn decode_base64(text: &[u8], max_decoded: usize) -> Result<Vec<u8>, SaslError> {
    if text.len() > max_decoded.div_ceil(3) * 4 {
        return Err(SaslError::TooLong { limit: max_decoded });
    }
    let bytes = BASE64.decode(text).map_err(|_| SaslError::Base64)?;
    if bytes.len() > max_decoded {
        return Err(SaslError::TooLong { limit: max_decoded });
    }
    Ok(bytes)
}

/// Decodes one client response line (initial response or continuation) of at most
/// [`MAX_RESPONSE`] decoded bytes, RFC 5034 §4 / RFC 4954 §4: `*` cancels, `=` is an empty
/// initial response, anything else is base64.
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    match line {
        b"*" => Err(SaslError::Cancelled),
        b"=" => Ok(Vec::new()),
        text => decode_base64(text, MAX_RESPONSE),
    }
}

/// PLAIN credentials (RFC 4616 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// Present only when the client sent one, and then equal to `authcid` (case folded).
    pub authzid: Option<String>,
    pub authcid: String,
    pub password: Password,
}

/// Splits a decoded PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616 §2: both
/// `authcid` and `passwd` are one or more non-NUL octets). An `authzid` other than `authcid`
/// is refused with [`SaslError::AuthzidNotPermitted`].
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
    let authcid = identity(authcid).ok_or(SaslError::Malformed)?;
    let authzid = match authzid {
        [] => None,
        z => Some(identity(z).ok_or(SaslError::Malformed)?),
    };
    if let Some(z) = &authzid {
        if crate::policy::user_key(z) != crate::policy::user_key(&authcid) {
            return Err(SaslError::AuthzidNotPermitted);
        }
    }
    Ok(PlainCredentials {
        authzid,
        authcid,
        password: Password::new(password),
    })
}

/// UTF-8 without control characters: identities end up in logs and directory lookups.
fn identity(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.chars().any(char::is_control)).then(|| text.to_string())
}

/// The LOGIN mechanism (draft-murchison-sasl-login-00): the server prompts `Username:`, then
/// `Password:`; each client response is the bare value. A client with an initial response
/// (SASL-IR, RFC 4959) sends the user name with the command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LoginExchange {
    #[default]
    AwaitingUsername,
    AwaitingPassword {
        username: String,
    },
}

/// What a LOGIN step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send [`LoginExchange::challenge`] of this state and feed it the next response.
    Continue(LoginExchange),
    Done {
        username: String,
        password: Password,
    },
}

impl LoginExchange {
    pub fn new() -> LoginExchange {
        LoginExchange::AwaitingUsername
    }

    /// The decoded challenge to send before the next response.
    pub fn challenge(&self) -> &'static [u8] {
        match self {
            LoginExchange::AwaitingUsername => LOGIN_USERNAME_PROMPT,
            LoginExchange::AwaitingPassword { .. } => LOGIN_PASSWORD_PROMPT,
        }
    }

    /// Feeds one decoded client response.
    pub fn step(self, response: &[u8]) -> Result<LoginStep, SaslError> {
        match self {
            LoginExchange::AwaitingUsername => {
                let username = identity(response)
                    .filter(|u| !u.is_empty())
                    .ok_or(SaslError::BadUsername)?;
                Ok(LoginStep::Continue(LoginExchange::AwaitingPassword {
                    username,
                }))
            }
            LoginExchange::AwaitingPassword { username } => Ok(LoginStep::Done {
                username,
                password: Password::new(response),
            }),
        }
    }
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
    fn base64_length_bounds() {
        let max = vec![b'x'; MAX_RESPONSE];
        let encoded = BASE64.encode(&max);
        assert_eq!(decode_response(encoded.as_bytes()), Ok(max));
        let over = BASE64.encode(vec![b'x'; MAX_RESPONSE + 1]);
        assert_eq!(
            decode_response(over.as_bytes()),
            Err(SaslError::TooLong {
                limit: MAX_RESPONSE
            })
        );
        // Refused by length before any decoding: not even valid base64.
        assert_eq!(
            decode_base64(&[b'!'; 9], 4),
            Err(SaslError::TooLong { limit: 4 })
        );
        // Five bytes fit in eight characters, which the pre-check lets through for limit 4.
        assert_eq!(
            decode_base64(b"aGVsbG8=", 4),
            Err(SaslError::TooLong { limit: 4 })
        );
        assert_eq!(decode_base64(b"aGVsbA==", 4), Ok(b"hell".to_vec()));
    }

    #[test]
    fn plain_messages() {
        let ok = |z: Option<&str>, c: &str, p: &str| {
            Ok(PlainCredentials {
                authzid: z.map(str::to_string),
                authcid: c.to_string(),
                password: Password::new(p.as_bytes()),
            })
        };
        let cases: &[(&[u8], Result<PlainCredentials, SaslError>)] = &[
            (b"\0alice\0secret", ok(None, "alice", "secret")),
            (
                b"alice\0alice\0two words",
                ok(Some("alice"), "alice", "two words"),
            ),
            (
                b"Alice@X.test\0alice@x.test\0pw",
                ok(Some("Alice@X.test"), "alice@x.test", "pw"),
            ),
            (b"bob\0alice\0pw", Err(SaslError::AuthzidNotPermitted)),
            (b"\0alice\0", Err(SaslError::Malformed)),
            (b"\0\0secret", Err(SaslError::Malformed)),
            (b"alice\0secret", Err(SaslError::Malformed)),
            (b"alice", Err(SaslError::Malformed)),
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

    #[test]
    fn login_mechanism_prompts_then_credentials() {
        assert_eq!(
            BASE64.encode(LOGIN_USERNAME_PROMPT),
            LOGIN_USERNAME_PROMPT_B64
        );
        assert_eq!(
            BASE64.encode(LOGIN_PASSWORD_PROMPT),
            LOGIN_PASSWORD_PROMPT_B64
        );
        let start = LoginExchange::new();
        assert_eq!(start.challenge(), b"Username:");
        let LoginStep::Continue(next) = start.step(b"bob@example.test").unwrap() else {
            panic!("a password is asked next");
        };
        assert_eq!(next.challenge(), b"Password:");
        assert_eq!(
            next.step(b"hunter 2").unwrap(),
            LoginStep::Done {
                username: "bob@example.test".into(),
                password: Password::new(&b"hunter 2"[..]),
            }
        );
        for bad in [&b""[..], b"bo\nb", b"\xff"] {
            assert_eq!(
                LoginExchange::new().step(bad),
                Err(SaslError::BadUsername),
                "{bad:?}"
            );
        }
        // An empty password is a (wrong) password for the check, not a protocol error.
        let waiting = LoginExchange::AwaitingPassword {
            username: "a".into(),
        };
        assert!(matches!(waiting.step(b""), Ok(LoginStep::Done { .. })));
        assert_eq!(
            format!("{:?}", Password::new(&b"hunter2"[..])),
            "Password(<redacted>)"
        );
    }
}
