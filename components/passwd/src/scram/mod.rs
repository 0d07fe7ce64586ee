//! SCRAM-SHA-256 (RFC 5802, RFC 7677): the stored credential and a sans-IO server exchange.
//!
//! The credential is stored as Dovecot writes it, `{SCRAM-SHA-256}<i>,<salt>,<StoredKey>,<ServerKey>`
//! (base64 fields), so that a row written by `doveadm pw -s SCRAM-SHA-256` serves both
//! Postbay and a classic Dovecot, and so LOGIN/PLAIN still work when only this form exists.
//!
//! Passwords are used as given, without SASLprep (RFC 4013), as Dovecot does: both stacks
//! then derive the same keys, and for ASCII passwords SASLprep changes nothing anyway.
//!
//! ```
//! use postbay_passwd::scram::{ClientFirst, ScramCredential, UnknownUserKey};
//!
//! let credential = ScramCredential::derive(b"pencil", 4096)?;
//! let stored = credential.to_string(); // "{SCRAM-SHA-256}4096,..."
//! assert!(postbay_passwd::verify(b"pencil", &stored)?);
//!
//! // Server side of an exchange: the caller moves bytes, this crate checks them.
//! let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")?;
//! assert_eq!(first.username(), "user");
//! let key = UnknownUserKey::random();
//! let (server, challenge) = first.respond(Some(&credential), &key);
//! assert!(challenge.starts_with("r=rOprNGfwEbeRWgbNEkqO"));
//! // ... send `challenge`, read the client-final message, then `server.finish(..)`.
//! # let _ = server;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod message;
mod server;

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::PasswdError;

pub use error::ScramError;
pub use server::{ClientFirst, ServerFinal, ServerFirst, UnknownUserKey};

/// Dovecot's name for the scheme, as inside the `{...}` prefix.
pub const SCHEME_NAME: &str = "SCRAM-SHA-256";
/// The SASL mechanism name (RFC 7677 section 2).
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// What `doveadm pw` writes, and the floor RFC 7677 section 4 asks for.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Lowest count we write or accept: RFC 7677 section 4 ("at least 4096").
pub const MIN_ITERATIONS: u32 = 4096;
/// Highest count we accept: every login and every client pays it, so a damaged or hostile
/// row must not turn one AUTH into minutes of CPU.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Salt length we write; Dovecot writes 16 bytes too.
pub const SALT_LEN: usize = 16;
/// Longest salt we accept from a stored row (decoded bytes).
const MAX_SALT_LEN: usize = 256;
/// SHA-256 output size: StoredKey, ServerKey, ClientProof and ServerSignature.
const KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;
pub(crate) type Key = [u8; KEY_LEN];

/// The server's verifier for one user (RFC 5802 section 3): no password, only what checks one.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Key,
    server_key: Key,
}

/// Keys are secret-equivalent for impersonating the server, so they stay out of logs.
impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Derives a credential with a fresh random salt of [`SALT_LEN`] bytes.
    pub fn derive(password: &[u8], iterations: u32) -> Result<ScramCredential, PasswdError> {
        let mut salt = [0u8; SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        ScramCredential::derive_with_salt(password, &salt, iterations)
    }

    /// Derives a credential from a given salt: for tests and for reproducing known vectors.
    pub fn derive_with_salt(
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, PasswdError> {
        check_iterations(iterations).map_err(|reason| PasswdError::params(SCHEME_NAME, reason))?;
        if salt.is_empty() || salt.len() > MAX_SALT_LEN {
            return Err(PasswdError::params(
                SCHEME_NAME,
                format!("salt must be 1..={MAX_SALT_LEN} bytes"),
            ));
        }
        let (stored_key, server_key) = keys(password, salt, iterations);
        Ok(ScramCredential {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        })
    }

    /// Reads `{SCRAM-SHA-256}i,salt,StoredKey,ServerKey` (scheme name case-insensitive,
    /// trailing CR/LF ignored). Any other scheme is an error: the caller then knows this
    /// user cannot use the SCRAM mechanism.
    pub fn parse(stored: &str) -> Result<ScramCredential, PasswdError> {
        match crate::stored::Stored::parse(stored.trim_end_matches(['\r', '\n']))? {
            crate::stored::Stored::ScramSha256(body) => ScramCredential::parse_body(body),
            _ => Err(PasswdError::SchemeMismatch {
                scheme: SCHEME_NAME.to_string(),
            }),
        }
    }

    /// The part after the `{SCRAM-SHA-256}` prefix.
    pub(crate) fn parse_body(body: &str) -> Result<ScramCredential, PasswdError> {
        let malformed = |reason: &str| PasswdError::malformed(SCHEME_NAME, reason);
        let fields: Vec<&str> = body.split(',').collect();
        let [iterations, salt, stored_key, server_key] = fields.as_slice() else {
            return Err(malformed("expected 4 comma-separated fields"));
        };
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("iteration count is not a number"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| malformed("iteration count out of range"))?;
        check_iterations(iterations).map_err(|reason| malformed(&reason))?;
        let salt = B64
            .decode(salt)
            .map_err(|_| malformed("salt is not base64"))?;
        if salt.is_empty() || salt.len() > MAX_SALT_LEN {
            return Err(malformed("salt length out of range"));
        }
        let key = |text: &str, what: &str| -> Result<Key, PasswdError> {
            let bytes = B64
                .decode(text)
                .map_err(|_| malformed(&format!("{what} is not base64")))?;
            Key::try_from(bytes.as_slice())
                .map_err(|_| malformed(&format!("{what} is not 32 bytes")))
        };
        Ok(ScramCredential {
            iterations,
            salt,
            stored_key: key(stored_key, "StoredKey")?,
            server_key: key(server_key, "ServerKey")?,
        })
    }

    /// Checks a plaintext password (LOGIN, PLAIN) by deriving both keys again; both must match,
    /// compared in constant time.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let (stored_key, server_key) = keys(password, &self.salt, self.iterations);
        let stored_ok = stored_key.ct_eq(&self.stored_key);
        let server_ok = server_key.ct_eq(&self.server_key);
        (stored_ok & server_ok).into()
    }

    /// The PBKDF2 iteration count `i`.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// The salt, decoded.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// `StoredKey = H(ClientKey)` (RFC 5802 section 3).
    pub fn stored_key(&self) -> &[u8; 32] {
        &self.stored_key
    }

    /// `ServerKey = HMAC(SaltedPassword, "Server Key")` (RFC 5802 section 3).
    pub fn server_key(&self) -> &[u8; 32] {
        &self.server_key
    }

    /// The value without the `{SCRAM-SHA-256}` prefix, as `doveadm pw` prints after it.
    pub(crate) fn body(&self) -> String {
        format!(
            "{},{},{},{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// `{SCRAM-SHA-256}i,salt,StoredKey,ServerKey`, byte for byte as Dovecot writes it.
impl fmt::Display for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{SCHEME_NAME}}}{}", self.body())
    }
}

impl FromStr for ScramCredential {
    type Err = PasswdError;

    fn from_str(s: &str) -> Result<ScramCredential, PasswdError> {
        ScramCredential::parse(s)
    }
}

fn check_iterations(iterations: u32) -> Result<(), String> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        Ok(())
    } else {
        Err(format!(
            "iteration count must be {MIN_ITERATIONS}..={MAX_ITERATIONS}"
        ))
    }
}

/// `(StoredKey, ServerKey)` for a password (RFC 5802 section 3).
fn keys(password: &[u8], salt: &[u8], iterations: u32) -> (Key, Key) {
    let salted = hi(password, salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    (h(&client_key), hmac(&salted, b"Server Key"))
}

/// `Hi(str, salt, i)` of RFC 5802 section 2.2: PBKDF2 (RFC 8018) with HMAC-SHA-256 and one
/// output block, which is what SCRAM-SHA-256's 32-byte key length makes it.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> Key {
    // The keyed state is computed once; each round only clones it.
    let keyed = HmacSha256::new_from_slice(password).expect("HMAC takes keys of any length");
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes()); // INT(1)
    let mut u: Key = mac.finalize().into_bytes().into();
    let mut result = u;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        result.iter_mut().zip(u.iter()).for_each(|(r, x)| *r ^= x);
    }
    result
}

/// `HMAC(key, str)` of RFC 5802 section 2.2.
pub(crate) fn hmac(key: &[u8], data: &[u8]) -> Key {
    hmac_parts(key, &[data])
}

/// HMAC over the concatenation of `parts`, so AuthMessage need not be assembled twice.
pub(crate) fn hmac_parts(key: &[u8], parts: &[&[u8]]) -> Key {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `H(str)` of RFC 5802 section 2.2.
pub(crate) fn h(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    const RFC7677_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

    #[test]
    fn hi_matches_pbkdf2_sha256_reference_vectors() {
        // RFC 7914 section 11 (P="passwd", S="salt", c=1; the first of its two output blocks)
        // and the widely published P="password", S="salt" vectors for c=2 and c=4096.
        let table: [(&[u8], u32, &str); 3] = [
            (
                b"passwd",
                1,
                "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc",
            ),
            (
                b"password",
                2,
                "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43",
            ),
            (
                b"password",
                4096,
                "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a",
            ),
        ];
        for (password, iterations, want) in table {
            assert_eq!(
                hex(&hi(password, b"salt", iterations)),
                want,
                "c={iterations}"
            );
        }
    }

    #[test]
    fn rfc7677_credential_round_trips() {
        let salt = B64.decode(RFC7677_SALT).unwrap();
        let credential = ScramCredential::derive_with_salt(b"pencil", &salt, 4096).unwrap();
        let text = credential.to_string();
        assert!(
            text.starts_with("{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"),
            "{text}"
        );
        assert_eq!(ScramCredential::parse(&text).unwrap(), credential);
        assert!(credential.verify_password(b"pencil"));
        assert!(!credential.verify_password(b"pencil "));
    }

    #[test]
    fn refuses_bad_parameters_when_deriving() {
        for (salt, iterations) in [
            (&b"salt"[..], 4095),
            (&b"salt"[..], MAX_ITERATIONS + 1),
            (&b""[..], 4096),
            (&[0u8; MAX_SALT_LEN + 1][..], 4096),
        ] {
            let result = ScramCredential::derive_with_salt(b"pw", salt, iterations);
            assert!(
                matches!(result, Err(PasswdError::Params { .. })),
                "{} {iterations}: {result:?}",
                salt.len()
            );
        }
    }

    #[test]
    fn rejects_malformed_bodies() {
        let key = B64.encode([7u8; 32]);
        let short = B64.encode([7u8; 31]);
        let salt = "c2FsdA==";
        let table = [
            String::new(),
            format!("4096,{salt},{key}"),
            format!("4096,{salt},{key},{key},"),
            format!("4096,{salt},{key},{key},{key}"),
            format!("+4096,{salt},{key},{key}"),
            format!("4095,{salt},{key},{key}"),
            format!("99999999999,{salt},{key},{key}"),
            format!("4096,,{key},{key}"),
            format!("4096,***,{key},{key}"),
            format!("4096,{salt},{short},{key}"),
            format!("4096,{salt},{key},{short}"),
            format!("4096,{salt},{key},not base64!"),
        ];
        for body in &table {
            let result = ScramCredential::parse_body(body);
            assert!(
                matches!(
                    result,
                    Err(PasswdError::Malformed {
                        scheme: SCHEME_NAME,
                        ..
                    })
                ),
                "{body}: {result:?}"
            );
        }
    }

    #[test]
    fn parse_refuses_other_schemes() {
        assert_eq!(
            ScramCredential::parse("{PLAIN}secret"),
            Err(PasswdError::SchemeMismatch {
                scheme: SCHEME_NAME.into()
            })
        );
        assert_eq!(
            ScramCredential::parse("{SCRAM-SHA-1}4096,c2FsdA==,a,b"),
            Err(PasswdError::UnknownScheme("SCRAM-SHA-1".into()))
        );
    }

    #[test]
    fn debug_hides_keys() {
        let credential = ScramCredential::derive(b"pw", 4096).unwrap();
        let debug = format!("{credential:?}");
        assert!(
            !debug.contains(&B64.encode(credential.stored_key())),
            "{debug}"
        );
        assert!(debug.contains("iterations: 4096"), "{debug}");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
