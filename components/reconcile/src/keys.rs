//! DKIM key pairs: generating them, reading supplied PEM, and the public half as DNS wants it.
//!
//! RSA (RFC 6376 `k=rsa`) publishes the base64 SubjectPublicKeyInfo DER; Ed25519 (RFC 8463
//! section 4.2, `k=ed25519`) publishes the raw 32-byte public key in base64, not an SPKI.

use std::fmt;

use base64::Engine;
use ed25519_dalek::SigningKey;
use postbay_api::DkimAlgorithm;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};

/// The RSA modulus size of generated keys: RFC 8301 section 3.2 requires at least 1024 bits
/// and recommends 2048, which every verifier handles and fits a TXT record in two strings.
pub const RSA_BITS: usize = 2048;
/// Smallest supplied RSA key accepted (RFC 8301 section 3.2: signers MUST use 1024 or more).
pub const RSA_MIN_BITS: usize = 1024;

/// Why a key could not be made or read. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating an RSA key failed: {0}")]
    Generate(#[source] rsa::Error),
    #[error("the private key is neither a PKCS#8 RSA or Ed25519 key nor a PKCS#1 RSA key in PEM")]
    Unreadable,
    #[error("the RSA key has {bits} bits; DKIM signers must use at least {RSA_MIN_BITS}")]
    TooSmall { bits: usize },
    #[error("encoding the key failed: {0}")]
    Encode(String),
    #[error("the key is {found} but spec.algorithm is {expected}")]
    WrongAlgorithm {
        expected: &'static str,
        found: &'static str,
    },
}

/// A DKIM signing key. `Debug` shows only the algorithm.
pub enum DkimPrivateKey {
    Rsa(Box<RsaPrivateKey>),
    Ed25519(Box<SigningKey>),
}

impl DkimPrivateKey {
    /// A fresh key: RSA of [`RSA_BITS`] or Ed25519.
    pub fn generate(algorithm: DkimAlgorithm) -> Result<DkimPrivateKey, KeyError> {
        let mut rng = rand::rngs::OsRng;
        Ok(match algorithm {
            DkimAlgorithm::RsaSha256 => DkimPrivateKey::Rsa(Box::new(
                RsaPrivateKey::new(&mut rng, RSA_BITS).map_err(KeyError::Generate)?,
            )),
            DkimAlgorithm::Ed25519Sha256 => {
                DkimPrivateKey::Ed25519(Box::new(SigningKey::generate(&mut rng)))
            }
        })
    }

    /// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`, RSA or Ed25519) or PKCS#1
    /// (`RSA PRIVATE KEY`, as `openssl genrsa` writes).
    pub fn from_pem(pem: &str) -> Result<DkimPrivateKey, KeyError> {
        let pem = pem.trim();
        if let Ok(key) = <SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_pem(pem)
        {
            return Ok(DkimPrivateKey::Ed25519(Box::new(key)));
        }
        let rsa = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| KeyError::Unreadable)?;
        let bits = rsa.size() * 8;
        if bits < RSA_MIN_BITS {
            return Err(KeyError::TooSmall { bits });
        }
        Ok(DkimPrivateKey::Rsa(Box::new(rsa)))
    }

    /// PKCS#8 PEM, for a Secret or a key file.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let pem = match self {
            DkimPrivateKey::Rsa(key) => key.to_pkcs8_pem(LineEnding::LF),
            DkimPrivateKey::Ed25519(key) => {
                ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(&**key, LineEnding::LF)
            }
        };
        pem.map(|p| p.to_string())
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    pub fn algorithm(&self) -> DkimAlgorithm {
        match self {
            DkimPrivateKey::Rsa(_) => DkimAlgorithm::RsaSha256,
            DkimPrivateKey::Ed25519(_) => DkimAlgorithm::Ed25519Sha256,
        }
    }

    /// The `p=` value of the DKIM TXT record.
    pub fn public_key_base64(&self) -> Result<String, KeyError> {
        let bytes = match self {
            DkimPrivateKey::Rsa(key) => RsaPublicKey::from(&**key)
                .to_public_key_der()
                .map_err(|e| KeyError::Encode(e.to_string()))?
                .as_bytes()
                .to_vec(),
            DkimPrivateKey::Ed25519(key) => key.verifying_key().to_bytes().to_vec(),
        };
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

impl fmt::Debug for DkimPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DkimPrivateKey({})", algorithm_name(self.algorithm()))
    }
}

/// The algorithm as spelled in the `dkim_keys` row and DKIM's `a=` tag.
pub fn algorithm_name(algorithm: DkimAlgorithm) -> &'static str {
    match algorithm {
        DkimAlgorithm::RsaSha256 => "rsa-sha256",
        DkimAlgorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_round_trips_and_publishes_32_raw_bytes() {
        let key = DkimPrivateKey::generate(DkimAlgorithm::Ed25519Sha256).unwrap();
        let pem = key.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let back = DkimPrivateKey::from_pem(&pem).unwrap();
        assert_eq!(back.algorithm(), DkimAlgorithm::Ed25519Sha256);
        let public = back.public_key_base64().unwrap();
        assert_eq!(public, key.public_key_base64().unwrap());
        let raw = base64::engine::general_purpose::STANDARD
            .decode(public)
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(format!("{key:?}"), "DkimPrivateKey(ed25519-sha256)");
    }

    #[test]
    fn rsa_round_trips_and_publishes_an_spki() {
        let key = DkimPrivateKey::generate(DkimAlgorithm::RsaSha256).unwrap();
        let back = DkimPrivateKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(back.algorithm(), DkimAlgorithm::RsaSha256);
        let public = back.public_key_base64().unwrap();
        assert_eq!(public, key.public_key_base64().unwrap());
        let der = base64::engine::general_purpose::STANDARD
            .decode(&public)
            .unwrap();
        // SEQUENCE { SEQUENCE { rsaEncryption OID, NULL }, BIT STRING }: 294 bytes for 2048.
        assert_eq!(der.len(), 294);
        assert!(public.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
    }

    #[test]
    fn refuses_what_is_not_a_key() {
        assert!(matches!(
            DkimPrivateKey::from_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(KeyError::Unreadable)
        ));
        assert!(matches!(
            DkimPrivateKey::from_pem("hello"),
            Err(KeyError::Unreadable)
        ));
    }
}
